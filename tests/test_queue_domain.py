"""The pure queue domain, without I/O: numbering, call order, ageing, the lifecycle."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from counter_server.queueing import (
    Action,
    CounterBusy,
    Estimate,
    IllegalMove,
    Priority,
    QueuePolicy,
    ServiceTimes,
    ServiceTimeSeed,
    Status,
    SubstationQueue,
    TransferRejected,
    UnknownToken,
    allowed_actions,
    estimate_wait,
    format_number,
)
from counter_server.queueing.estimate import OpenCounter, Waiter, expected_residual_s, plan_calls

POLICY = QueuePolicy(
    head_start_s={Priority.NORMAL: 0, Priority.SENIOR: 600, Priority.DISABLED: 900},
    recalls_before_no_show=1,
    max_requeues=1,
)
BILL = ("bill_payment", "B")
COMPLAINT = ("complaint", "C")


def make_queue(policy: QueuePolicy = POLICY) -> SubstationQueue:
    return SubstationQueue("S01", "2026-11-25", policy)


def issue(q: SubstationQueue, at: float, priority: Priority = Priority.NORMAL, service=BILL, ident=None):
    ident = ident or f"t{len(q.tokens) + 1}"
    return q.issue(ident, service[0], service[1], priority, at)


def test_numbers_are_letter_and_daily_sequence_per_service():
    q = make_queue()
    numbers = [issue(q, i, service=BILL if i % 3 else COMPLAINT).number for i in range(7)]
    assert numbers == ["C-001", "B-001", "B-002", "C-002", "B-003", "B-004", "C-003"]
    assert format_number("B", 1234) == "B-1234"


def test_numbering_continues_from_loaded_sequences_and_never_reuses_after_cancel():
    q = make_queue()
    first = issue(q, 0)
    q.act(first.id, Action.CANCEL, 1)
    assert issue(q, 2).number == "B-002"
    reloaded = SubstationQueue("S01", "2026-11-25", POLICY, q.tokens.values(), q.last_seq)
    assert issue(reloaded, 3, ident="t9").number == "B-003"


def test_call_order_is_fifo_within_a_class():
    q = make_queue()
    tokens = [issue(q, t) for t in (0, 10, 20)]
    assert [t.id for t in q.waiting()] == [t.id for t in tokens]


def test_priority_goes_ahead_of_recent_normal_tokens_but_ageing_bounds_the_delay():
    q = make_queue()
    old_normal = issue(q, 0)                              # issued 20 min before the senior
    recent_normal = issue(q, 1000)
    senior = issue(q, 1200, Priority.SENIOR)              # effective 600: after old, before recent
    disabled = issue(q, 1250, Priority.DISABLED)          # effective 350: also after old
    order = [t.id for t in q.waiting()]
    assert order == [old_normal.id, disabled.id, senior.id, recent_normal.id]


def test_call_next_takes_the_first_token_the_counter_serves():
    q = make_queue()
    complaint = issue(q, 0, service=COMPLAINT)
    bill = issue(q, 5)
    called = q.call_next("S01-C1", ["bill_payment"], 10)
    assert called.id == bill.id and called.status is Status.CALLED and called.counter == "S01-C1"
    assert q.call_next("S01-C2", ["bill_payment"], 11) is None
    assert q.call_next("S01-C4", ["bill_payment", "complaint"], 12).id == complaint.id


def test_a_counter_with_a_token_cannot_call_another():
    q = make_queue()
    issue(q, 0)
    issue(q, 1)
    first = q.call_next("S01-C1", ["bill_payment"], 2)
    with pytest.raises(CounterBusy) as err:
        q.call_next("S01-C1", ["bill_payment"], 3)
    assert err.value.token.id == first.id


def test_full_lifecycle_and_event_log():
    q = make_queue()
    token = issue(q, 0)
    q.call_next("S01-C1", ["bill_payment"], 10)
    q.act(token.id, Action.RECALL, 20)
    q.act(token.id, Action.START, 30)
    done = q.act(token.id, Action.COMPLETE, 120)
    assert done.status is Status.DONE
    assert (done.called_at, done.started_at, done.finished_at, done.recalls) == (10, 30, 120, 1)
    assert [e.kind for e in q.drain()] == ["issued", "called", "recalled", "started", "completed"]
    assert q.drain() == []


def test_no_show_needs_a_recall_then_requeue_once_keeps_the_place():
    q = make_queue()
    token = issue(q, 0)
    later = issue(q, 50)
    q.call_next("S01-C1", ["bill_payment"], 60)
    with pytest.raises(IllegalMove) as err:
        q.act(token.id, Action.NO_SHOW, 61)
    assert "no-show" not in err.value.allowed and "recall" in err.value.allowed
    q.act(token.id, Action.RECALL, 62)
    q.act(token.id, Action.NO_SHOW, 63)
    back = q.act(token.id, Action.REQUEUE, 64)
    assert back.status is Status.WAITING and back.requeues == 1 and back.counter is None
    assert [t.id for t in q.waiting()] == [token.id, later.id]      # back at its old place
    q.call_next("S01-C1", ["bill_payment"], 65)
    q.act(token.id, Action.RECALL, 66)
    q.act(token.id, Action.NO_SHOW, 67)
    with pytest.raises(IllegalMove) as err:
        q.act(token.id, Action.REQUEUE, 68)
    assert err.value.allowed == []


def test_transfer_to_another_service_and_to_one_counter():
    q = make_queue()
    token = issue(q, 0)
    q.call_next("S01-C1", ["bill_payment"], 1)
    q.act(token.id, Action.START, 2)
    moved = q.act(token.id, Action.TRANSFER, 3, to_service="complaint")
    assert (moved.status, moved.service, moved.number, moved.counter) == (
        Status.WAITING, "complaint", "B-001", None)
    assert q.call_next("S01-C1", ["bill_payment"], 4) is None
    moved = q.call_next("S01-C4", ["bill_payment", "complaint"], 5)
    pinned = q.act(moved.id, Action.TRANSFER, 6, to_counter="S01-C3")
    assert pinned.target_counter == "S01-C3"
    assert q.call_next("S01-C2", ["complaint"], 7) is None       # pinned to C3 only
    assert q.call_next("S01-C3", ["bill_payment"], 8).id == token.id
    with pytest.raises(TransferRejected):
        q.act(token.id, Action.TRANSFER, 9)


def test_illegal_moves_name_the_allowed_ones_and_change_nothing():
    q = make_queue()
    token = issue(q, 0)
    q.drain()
    for action in (Action.START, Action.COMPLETE, Action.RECALL, Action.NO_SHOW, Action.REQUEUE):
        version = q.version
        with pytest.raises(IllegalMove) as err:
            q.act(token.id, action, 1)
        assert err.value.allowed == ["call", "transfer", "cancel"]
        assert "waiting" in err.value.message and action.value in err.value.message
        assert q.version == version and q.pending == []
    with pytest.raises(UnknownToken):
        q.act("nope", Action.CANCEL, 1)


def test_allowed_actions_table():
    q = make_queue()
    token = issue(q, 0)
    assert allowed_actions(token, POLICY) == ["call", "transfer", "cancel"]
    called = q.call_next("S01-C1", ["bill_payment"], 1)
    assert allowed_actions(called, POLICY) == ["recall", "start", "transfer", "cancel"]
    serving = q.act(token.id, Action.START, 2)
    assert allowed_actions(serving, POLICY) == ["complete", "transfer"]
    done = q.act(token.id, Action.COMPLETE, 3)
    assert allowed_actions(done, POLICY) == []


class QueueMachine(RuleBasedStateMachine):
    """Random sequences of every operation keep the queue's invariants."""

    counters = {"C1": ("bill_payment",), "C2": ("bill_payment",), "C4": ("bill_payment", "complaint")}

    def __init__(self) -> None:
        super().__init__()
        self.q = make_queue()
        self.clock = itertools.count(1)
        self.issued: list[str] = []
        self.numbers: set[tuple[str, str]] = set()

    @rule(priority=st.sampled_from(list(Priority)), complaint=st.booleans())
    def issue(self, priority, complaint):
        service = COMPLAINT if complaint else BILL
        token = issue(self.q, next(self.clock), priority, service, ident=f"t{len(self.issued)}")
        assert (token.service, token.number) not in self.numbers
        self.numbers.add((token.service, token.number))
        self.issued.append(token.id)

    @rule(counter=st.sampled_from(sorted(counters)))
    def call_next(self, counter):
        try:
            self.q.call_next(counter, self.counters[counter], next(self.clock))
        except CounterBusy as err:
            assert self.q.current_at(counter).id == err.token.id

    @precondition(lambda self: self.issued)
    @rule(data=st.data(), action=st.sampled_from([a for a in Action if a is not Action.CALL]))
    def act(self, data, action):
        token_id = data.draw(st.sampled_from(self.issued))
        before = self.q.tokens[token_id]
        version = self.q.version
        kwargs = {"to_service": "complaint"} if action is Action.TRANSFER else {}
        try:
            after = self.q.act(token_id, action, next(self.clock), **kwargs)
        except (IllegalMove, TransferRejected):
            assert self.q.version == version and self.q.tokens[token_id] == before
            if action.value in allowed_actions(before, POLICY):
                assert action is Action.TRANSFER and before.service == "complaint"
        else:
            assert action.value in allowed_actions(before, POLICY)
            assert after.number == before.number and after.issued_at == before.issued_at

    @invariant()
    def waiting_list_is_exactly_the_waiting_tokens_in_call_order(self):
        waiting = self.q.waiting()
        assert {t.id for t in waiting} == {
            t.id for t in self.q.tokens.values() if t.status is Status.WAITING}
        keys = [POLICY.call_key(t) for t in waiting]
        assert keys == sorted(keys)
        for service in ("bill_payment", "complaint"):     # the kept counts behind the estimates
            expected = sum(1 for t in waiting if t.service == service)
            assert self.q.estimate_new(service).ahead == expected
        estimates = self.q.estimates()                     # one token's shortcut agrees with all
        assert {t.id: self.q.estimate_for(t) for t in waiting} == estimates

    @invariant()
    def a_counter_holds_at_most_one_token(self):
        holders = [t.counter for t in self.q.tokens.values() if t.at_counter]
        assert len(holders) == len(set(holders))

    @invariant()
    def every_change_is_one_event(self):
        assert len(self.q.pending) == self.q.version


TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = hyp_settings(max_examples=150, stateful_step_count=40, deadline=None)


# -- wait estimates ------------------------------------------------------------------------

SEEDED = QueuePolicy(
    head_start_s=POLICY.head_start_s,
    service_seeds={"bill_payment": ServiceTimeSeed(90.0, 20.0), "complaint": ServiceTimeSeed(300.0, 60.0)},
    ewma_alpha=0.5,
)
LAYOUT = {"C1": ("bill_payment",), "C2": ("bill_payment",), "C4": ("bill_payment", "complaint")}


def test_estimate_formula_by_hand():
    # 8 ahead, 4 counters, mean 90 s, sd 20 s, the counters' state unknown:
    # p50 = 8*90/4 = 180; sd^2 = 20^2/4 + 8*20^2/16 = 100 + 200 = 300; p90 = 180 + 1.2816*17.32 = 202.2
    e = estimate_wait(8, 4, 90.0, 20.0)
    assert (e.p50_s, e.p90_s, e.ahead, e.counters) == (180.0, 202.2, 8, 4)
    assert estimate_wait(0, 2, 90.0, 20.0).p50_s == 0.0
    assert estimate_wait(0, 2, 90.0, 20.0).p90_s == round(1.2816 * 20, 1)   # one counter to free
    # The learned mean's own error widens the range in proportion to the line: 8*5/4 = 10 s more sd
    assert estimate_wait(8, 4, 90.0, 20.0, mean_error_s=5.0).p90_s == round(180 + 1.2816 * 400 ** 0.5, 1)
    nobody = estimate_wait(5, 0, 90.0, 20.0)
    assert (nobody.p50_s, nobody.p90_s) == (None, None)


def bill_line(n: int) -> list[Waiter]:
    return [Waiter("bill_payment") for _ in range(n)]


BILL_TIMES = ServiceTimes({"bill_payment": ServiceTimeSeed(90.0, 20.0)}, alpha=0.1)


def test_the_first_in_line_waits_for_a_busy_counter_to_free():
    """Counters free after 30 s and 70 s, then every 90 s: the tokens ahead are called at
    30, 70, 120, 160, 210 ... and a free counter calls at once."""
    busy = [OpenCounter("A", ("bill_payment",), 70.0, "bill_payment"),
            OpenCounter("B", ("bill_payment",), 30.0, "bill_payment")]
    plan = plan_calls(bill_line(5), [], busy, BILL_TIMES)
    assert [e.p50_s for e in plan.line] == [30.0, 70.0, 120.0, 160.0, 210.0]     # not "now"
    assert plan.new_token("bill_payment").p50_s == 250.0
    # A counter busy with a long token of another service frees last; the line goes round
    # the others meanwhile.
    long = [OpenCounter("A", ("bill_payment",), 500.0, "new_connection"),
            OpenCounter("B", ("bill_payment",), 10.0, "bill_payment")]
    plan = plan_calls(bill_line(7), [], long, BILL_TIMES)
    assert [e.p50_s for e in plan.line] == [10.0, 100.0, 190.0, 280.0, 370.0, 460.0, 500.0]
    idle = [OpenCounter("A", ("bill_payment",)), OpenCounter("B", ("bill_payment",), 40.0, "bill_payment")]
    plan = plan_calls(bill_line(2), [], idle, BILL_TIMES)
    assert plan.line[0] == Estimate(0.0, 0.0, 0, 2)
    assert plan.line[1].p50_s == 40.0


def test_a_token_at_a_counter_is_expected_to_stay_its_mean_less_its_time_there():
    assert expected_residual_s(30.0, 90.0, 0.0) == 60.0
    assert expected_residual_s(30.0, 90.0, 15.0) == pytest.approx(60.0, abs=3.0)
    at_mean = expected_residual_s(90.0, 90.0, 15.0)
    assert at_mean == pytest.approx(15.0 * (2 / math.pi) ** 0.5, rel=1e-9)     # a normal's
    assert 0 < expected_residual_s(200.0, 90.0, 15.0) < 2.0                       # overdue: soon


def test_while_every_counter_is_busy_nobody_is_called_now():
    """Issue 15 item 6: the board said "now" for the first in line with every counter busy."""
    q = SubstationQueue("S01", "d", SEEDED, counters={"C1": ("bill_payment",), "C2": ("bill_payment",)})
    first, second = issue(q, 0), issue(q, 1)
    q.call_next("C1", ["bill_payment"], 10)
    q.call_next("C2", ["bill_payment"], 40)
    head = issue(q, 50)
    e = q.estimate_for(head)
    # C1 has had its token 40 s, C2 10 s (mean 90, sd 20): they free in about 50 s and 80 s
    assert e.p50_s == pytest.approx(expected_residual_s(40, 90, 20), abs=0.1)
    assert e.p50_s > 45 and e.p90_s > e.p50_s
    assert q.estimates()[head.id] == e
    assert q.estimate_new("bill_payment").p50_s == pytest.approx(expected_residual_s(10, 90, 20), abs=0.1)
    hall = q.hall_view()
    assert hall.waiting_head[0][1] == e and hall.services[0].estimate == q.estimate_new("bill_payment")
    q.act(first.id, Action.START, 55)
    q.act(first.id, Action.COMPLETE, 60)                 # C1 frees: a free counter calls at once
    assert q.estimate_for(head).p50_s == 0.0 and q.current_at("C2").id == second.id


def test_implausible_service_times_do_not_drag_the_learned_mean():
    """Issue 15 item 11: three 1-second bill payments moved the mean from 90 s to about 65 s."""
    seeds = {"b": ServiceTimeSeed(90.0, 17.0, min_s=60.0, max_s=120.0), "free": ServiceTimeSeed(90.0, 17.0)}
    times = ServiceTimes(seeds, alpha=0.1)
    for _ in range(3):
        assert not times.observe("b", 1.0)
    assert times.mean("b") == 90.0 and times.samples["b"] == 0
    times.observe("b", 3600.0)                            # left open over lunch: counts as 120 s
    assert times.mean("b") == pytest.approx(93.0)
    for _ in range(3):                                     # no range: each step at most 3 sd
        times.observe("free", 1.0)
    assert times.mean("free") > 70.0                       # unbounded steps: 65.6
    q = SubstationQueue("S01", "d", QueuePolicy(service_seeds={"bill_payment": seeds["b"]}),
                        counters={"C1": ("bill_payment",)})
    for i in range(3):
        token = issue(q, i * 10)
        q.call_next("C1", ["bill_payment"], i * 10 + 1)
        q.act(token.id, Action.START, i * 10 + 1)
        q.act(token.id, Action.COMPLETE, i * 10 + 2)
    assert q.service_times.mean("bill_payment") == 90.0


def test_queue_estimates_count_same_service_tokens_ahead_and_open_counters():
    q = SubstationQueue("S01", "d", SEEDED, counters=LAYOUT)
    bills = [issue(q, i) for i in range(6)]
    complaint = issue(q, 10, service=COMPLAINT)
    estimates = q.estimates()
    # three idle counters call three at once, then three more a service later
    assert [estimates[t.id].p50_s for t in bills] == [0.0, 0.0, 0.0, 90.0, 90.0, 90.0]
    # C4, the only one serving complaints, takes two of the bills first (they came earlier)
    assert estimates[complaint.id].p50_s == 180.0 and estimates[complaint.id].counters == 1
    assert q.estimate_new("bill_payment").p50_s == 180.0                                  # 6//3 rounds
    q.close_counter("C2", 20)
    assert q.estimate_new("bill_payment").p50_s == 270.0                                  # 6//2 rounds
    q.close_counter("C4", 21)
    assert q.estimate_new("complaint").p50_s is None                                      # nobody serves it
    assert [e.kind for e in q.drain()][-2:] == ["counter_closed", "counter_closed"]


def test_service_time_is_learned_from_completions_and_rebuilt_on_reload():
    q = SubstationQueue("S01", "d", SEEDED, counters=LAYOUT)
    token = issue(q, 0)
    q.call_next("C1", ["bill_payment"], 100)
    q.act(token.id, Action.START, 110)
    q.act(token.id, Action.COMPLETE, 250)               # 150 s at the counter, alpha 0.5
    assert q.service_times.mean("bill_payment") == 120.0
    reloaded = SubstationQueue("S01", "d", SEEDED, q.tokens.values(), q.last_seq, LAYOUT)
    assert reloaded.service_times.mean("bill_payment") == 120.0
    times = ServiceTimes({"b": ServiceTimeSeed(100.0, 0.0)}, alpha=0.5)
    times.observe("b", 200.0)
    assert times.mean("b") == 150.0 and times.sd("b") == 50.0    # var = 0.5*(0 + 0.5*100^2)


def test_calling_at_a_closed_counter_opens_it_and_closing_a_busy_one_is_refused():
    q = SubstationQueue("S01", "d", SEEDED, counters=LAYOUT, closed=["C1"])
    issue(q, 0)
    q.call_next("C1", ["bill_payment"], 1)
    assert q.is_open("C1")
    assert [e.kind for e in q.drain()] == ["issued", "counter_opened", "called"]
    with pytest.raises(CounterBusy):
        q.close_counter("C1", 2)
    assert not q.open_counter("C2", 3) and q.pending == []     # already open: no event


def test_hall_view_shows_counters_services_and_the_head_of_the_line():
    q = SubstationQueue("S01", "d", SEEDED, counters=LAYOUT)
    for i in range(15):
        issue(q, i)
    called = q.call_next("C1", ["bill_payment"], 20)
    hall = q.hall_view(head=5)
    assert [c.id for c in hall.counters] == ["C1", "C2", "C4"]
    assert hall.counters[0].token.id == called.id and hall.counters[1].token is None
    assert hall.waiting_total == 14 and len(hall.waiting_head) == 5
    # C2 and C4 are free; C1's token just came and stays about 92.7 s (mean 90, sd 20)
    assert [e.p50_s for _, e in hall.waiting_head] == [0.0, 0.0, 90.0, 90.0, 92.7]
    bill = next(s for s in hall.services if s.id == "bill_payment")
    assert (bill.waiting, bill.open_counters, bill.estimate.p50_s) == (14, 3, 450.0)


def test_counter_index_follows_every_move():
    q = make_queue()
    a, b = issue(q, 0), issue(q, 1)
    q.call_next("C1", ["bill_payment"], 2)
    assert q.current_at("C1").id == a.id and [t.id for t in q.at_counters()] == [a.id]
    q.act(a.id, Action.TRANSFER, 3, to_counter="C2")
    assert q.current_at("C1") is None and q.at_counters() == []
    q.call_next("C1", ["bill_payment"], 4)                     # b: a is pinned to C2
    q.call_next("C2", ["bill_payment"], 5)
    assert {t.id for t in q.at_counters()} == {a.id, b.id}
    q.act(b.id, Action.START, 6)
    q.act(b.id, Action.COMPLETE, 7)
    assert q.current_at("C1") is None and q.current_at("C2").id == a.id
    reloaded = SubstationQueue("S01", "d", POLICY, q.tokens.values(), q.last_seq)
    assert reloaded.current_at("C2").id == a.id


def test_a_copy_caught_up_with_every_kind_of_event_matches_the_queue_that_made_them():
    from counter_server.queueing import EVENT_KINDS, Holder, SlotPlan

    q = SubstationQueue("S01", "d", SEEDED, counters=LAYOUT, closed=["C4"])
    copy = SubstationQueue("S01", "d", SEEDED, counters=LAYOUT, closed=["C4"])
    for i in range(6):
        issue(q, i, priority=Priority.SENIOR if i == 4 else Priority.NORMAL)
    q.publish_slots(SlotPlan(first_at=100.0, slot_s=900, count=2, capacity=1), 6)
    q.book("b1", "bill_payment", Priority.NORMAL, 100.0, 7, Holder("a1", "p1", "4321"))
    q.set_admission(False, 50, 8)
    lease = q.lease_numbers("L1", "C2", "bill_payment", "B", 5, 9)
    q.issue_offline("off1", lease.id, "C2", lease.numbers()[0], Priority.NORMAL, 9.5, 10)
    q.open_counter("C4", 11)
    first = q.call_next("C1", ["bill_payment"], 12)
    q.act(first.id, Action.START, 13)
    q.act(first.id, Action.COMPLETE, 150)
    q.start_due_bookings(151, {"bill_payment": "B"})
    second = q.call_next("C1", ["bill_payment"], 152)
    q.act(second.id, Action.TRANSFER, 153, to_service="complaint")
    q.call_next("C2", ["bill_payment"], 154)
    q.act(q.waiting()[-1].id, Action.CANCEL, 155)
    q.close_counter("C4", 156)
    q.close_hall(200, closes_at=190)
    q.lease_numbers("L2", "C4", "complaint", "C", 3, 201)     # numbering moves on by a lease alone
    events = q.drain()
    assert {type(e) for e in events} >= set(EVENT_KINDS.values()) - {
        EVENT_KINDS[k] for k in ("recalled", "no_show", "requeued", "completed_at_close")}
    for event in events:
        copy.catch_up(event)
    assert copy.version == q.version and copy.tokens == q.tokens and copy.last_seq == q.last_seq
    assert (copy.closed, copy.leases, copy.slot_plan, copy.admission, copy.daily_cap) == (
        q.closed, q.leases, q.slot_plan, q.admission, q.daily_cap)
    assert copy.hall_view(12) == q.hall_view(12) and copy.estimates() == q.estimates()
    assert copy.issue("t-next", "bill_payment", "B", Priority.NORMAL, 300).number == \
        q.issue("t-next", "bill_payment", "B", Priority.NORMAL, 300).number


def _rebuilt(q: SubstationQueue) -> SubstationQueue:
    """``q`` as a store rebuilds it from its rows."""
    return SubstationQueue(q.substation, q.day, q.policy, q.tokens.values(), q.last_seq, LAYOUT, q.closed,
                           admission=q.admission, daily_cap=q.daily_cap, leases=q.leases.values(),
                           slot_plan=q.slot_plan)


def _committed(q: SubstationQueue) -> SubstationQueue:
    q.drain()
    return _rebuilt(q)


def test_a_copy_whose_changes_were_refused_is_mended_to_what_a_rebuild_gives():
    from counter_server.queueing import SlotPlan

    base = SubstationQueue("S01", "d", SEEDED, counters=LAYOUT)
    for i in range(8):
        issue(base, i, service=BILL if i % 3 else COMPLAINT)
    done = base.call_next("C1", ["bill_payment"], 10)
    base.act(done.id, Action.START, 11)
    base.act(done.id, Action.COMPLETE, 80)
    base = _committed(base)
    mine, theirs = _rebuilt(base), _rebuilt(base)
    # The other replica commits first: a call, a completion (the service times learn), a new
    # token, a counter closed, a lease and a slot plan.
    served = theirs.call_next("C2", ["bill_payment"], 100)
    theirs.act(served.id, Action.START, 101)
    theirs.act(served.id, Action.COMPLETE, 160)
    theirs.call_next("C2", ["bill_payment"], 161)
    issue(theirs, 162, ident="theirs-1")
    theirs.close_counter("C4", 163)
    theirs.lease_numbers("L1", "C1", "bill_payment", "B", 3, 164)
    theirs.publish_slots(SlotPlan(first_at=1000.0, slot_s=900, count=2, capacity=1), 165)
    changed_there = {e.token.id for e in theirs.pending if e.token is not None}
    theirs = _committed(theirs)
    # This copy's own changes, refused on commit: new tokens, a call, a cancel, a transfer.
    issue(mine, 101, ident="mine-1")
    issue(mine, 102, ident="mine-2", priority=Priority.SENIOR)
    called = mine.call_next("C1", ["bill_payment"], 103)
    mine.act(mine.waiting()[-1].id, Action.CANCEL, 104)
    mine.act(called.id, Action.TRANSFER, 105, to_service="complaint")
    touched = {e.token.id for e in mine.pending if e.token is not None}
    version = mine.version
    found = {token_id: theirs.tokens.get(token_id) for token_id in changed_there | touched}
    assert mine.rebase(found, theirs.last_seq, theirs.closed, theirs.admission, theirs.daily_cap,
                       theirs.leases.values(), theirs.slot_plan)
    assert mine.pending == [] and mine.version > version
    assert mine.tokens == theirs.tokens and [t.id for t in mine.waiting()] == [t.id for t in theirs.waiting()]
    assert (mine.last_seq, mine.closed, mine.leases, mine.slot_plan) == (
        theirs.last_seq, theirs.closed, theirs.leases, theirs.slot_plan)
    assert mine.as_of == theirs.as_of
    assert mine.service_times.mean("bill_payment") == theirs.service_times.mean("bill_payment")
    assert mine.hall_view(12) == theirs.hall_view(12) and mine.estimates() == theirs.estimates()
    assert [t.id for t in mine.at_counters()] == [t.id for t in theirs.at_counters()]
    assert mine.issue("next", "bill_payment", "B", Priority.NORMAL, 300).number == \
        theirs.issue("next", "bill_payment", "B", Priority.NORMAL, 300).number


def test_a_refused_copy_that_learnt_from_a_completion_is_left_for_a_rebuild():
    q = SubstationQueue("S01", "d", SEEDED, counters=LAYOUT)
    first = issue(q, 0)
    q = _committed(q)
    q.call_next("C1", ["bill_payment"], 1)
    q.act(first.id, Action.START, 2)
    q.act(first.id, Action.COMPLETE, 400)
    before = (dict(q.tokens), q.version, q.service_times.mean("bill_payment"))
    assert not q.rebase({first.id: None}, {}, (), True, None, (), None)
    assert (dict(q.tokens), q.version, q.service_times.mean("bill_payment")) == before
