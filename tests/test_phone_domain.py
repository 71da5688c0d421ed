"""Remote tokens, booked slots and their limits in the pure queue domain (no I/O)."""

from __future__ import annotations

import heapq

import pytest

from counter_server.queueing import (
    Action,
    AlreadyHolding,
    CannotServeToday,
    Estimate,
    Holder,
    Origin,
    Priority,
    QueuePolicy,
    ServiceTimeSeed,
    SlotPlan,
    SlotUnavailable,
    Status,
    SubstationQueue,
    leave_advice,
    slot_capacity,
)

DAY = "2026-11-27"
OPENS = 1_000_000.0          # the day's first slot (counters open)
CLOSES = OPENS + 8 * 3600
MEAN_S = 240.0
SLOT_S = 900
LETTERS = {"bill_payment": "B"}
SERVICES = ("bill_payment",)


def new_queue(counters: int = 4, plan: SlotPlan | None = None) -> SubstationQueue:
    policy = QueuePolicy(service_seeds={"bill_payment": ServiceTimeSeed(MEAN_S, 0.0)})
    return SubstationQueue("S01", DAY, policy, counters={f"C{i}": SERVICES for i in range(counters)},
                           slot_plan=plan)


def holder(n: int, phone: int | None = None) -> Holder:
    return Holder(f"acct{n}", f"phone{n if phone is None else phone}", f"{n:04d}"[-4:])


def plan(capacity: int = 3, count: int = 32) -> SlotPlan:
    return SlotPlan(first_at=OPENS, slot_s=SLOT_S, count=count, capacity=capacity, share=0.25)


def test_a_remote_token_is_a_real_token_in_the_same_numbering():
    q = new_queue()
    walk_in = q.issue("t1", "bill_payment", "B", Priority.NORMAL, OPENS)
    remote = q.issue("t2", "bill_payment", "B", Priority.NORMAL, OPENS + 1, holder=holder(1))
    assert (walk_in.number, walk_in.origin) == ("B-001", Origin.COUNTER)
    assert (remote.number, remote.origin, remote.status) == ("B-002", Origin.REMOTE, Status.WAITING)
    assert remote.account_hint == "0001" and remote.account_ref == "acct1"
    assert [t.id for t in q.waiting()] == ["t1", "t2"]


def test_one_active_token_per_account_and_per_phone():
    q = new_queue()
    first = q.issue("t1", "bill_payment", "B", Priority.NORMAL, OPENS, holder=holder(1))
    with pytest.raises(AlreadyHolding) as same:
        q.issue("t2", "bill_payment", "B", Priority.NORMAL, OPENS, holder=holder(1))
    assert same.value.same_holder and same.value.token.id == first.id   # both numbers match
    assert same.value.details() == {}                     # no link yet: the phone service makes it
    same.value.link = "t1.mac"
    assert same.value.details() == {"token": "t1.mac"}    # its own link back
    with pytest.raises(AlreadyHolding) as phone_only:
        q.issue("t3", "bill_payment", "B", Priority.NORMAL, OPENS, holder=Holder("acct9", "phone1"))
    assert phone_only.value.details() == {}               # only one matches: nothing revealed
    with pytest.raises(AlreadyHolding):
        q.issue("t4", "bill_payment", "B", Priority.NORMAL, OPENS, holder=Holder("acct1", "phone9"))
    q.act("t1", Action.CANCEL, OPENS + 5)                  # a finished token frees the holder
    again = q.issue("t5", "bill_payment", "B", Priority.NORMAL, OPENS + 6, holder=holder(1))
    assert again.number == "B-002"
    assert [t.id for t in q.held_by(holder(1))] == ["t5"]
    assert [t.id for t in q.held_by(Holder("acct9", "phone1"))] == ["t5"]   # by the phone alone
    assert q.held_by(Holder("acct9", "phone9")) == []


def test_a_holding_refusal_says_the_same_whatever_matched():
    """A stranger who knows one number learns no more than that it holds a token: the words
    do not say whether the account, the phone or both matched."""
    q = new_queue()
    q.issue("t1", "bill_payment", "B", Priority.NORMAL, OPENS, holder=holder(1))
    said = []
    for other in (holder(1), Holder("acct9", "phone1"), Holder("acct1", "phone9")):
        with pytest.raises(AlreadyHolding) as refused:
            q.issue("t2", "bill_payment", "B", Priority.NORMAL, OPENS, holder=other)
        said.append((refused.value.code, str(refused.value)))
    assert said[0] == said[1] == said[2]
    assert " or " in said[0][1] and " and " not in said[0][1]


def test_remote_tokens_meet_the_same_door_rule():
    q = new_queue(counters=1)
    for i in range(200):
        q.issue(f"w{i}", "bill_payment", "B", Priority.NORMAL, OPENS)
    with pytest.raises(CannotServeToday):
        q.issue("r", "bill_payment", "B", Priority.NORMAL, OPENS, closes_at=CLOSES, holder=holder(1))


def test_a_booking_has_no_number_until_its_slot_starts_then_goes_first():
    q = new_queue(plan=plan())
    slot = OPENS + 2 * SLOT_S
    booked = q.book("b1", "bill_payment", Priority.NORMAL, slot, OPENS - 3600, holder(1))
    assert (booked.status, booked.number, booked.origin) == (Status.BOOKED, "", Origin.SLOT)
    assert q.issued_count() == 0 and q.waiting() == []
    for i in range(5):
        q.issue(f"w{i}", "bill_payment", "B", Priority.NORMAL, OPENS + i)
    assert q.start_due_bookings(slot - 1, LETTERS) == []
    [started] = q.start_due_bookings(slot, LETTERS)
    assert (started.number, started.status, started.issued_at) == ("B-006", Status.WAITING, slot)
    assert q.waiting()[0].id == "b1"                        # ahead of walk-ins who came earlier
    assert q.issued_count() == 6
    assert q.call_next("C0", SERVICES, slot + 1).id == "b1"


def test_slots_refuse_what_is_not_offered_passed_or_full():
    q = new_queue(plan=plan(capacity=2))
    slot = OPENS + SLOT_S
    with pytest.raises(SlotUnavailable, match="no such slot"):
        q.book("x", "bill_payment", Priority.NORMAL, slot + 60, OPENS - 10, holder(1))
    with pytest.raises(SlotUnavailable) as passed:
        q.book("x", "bill_payment", Priority.NORMAL, OPENS, OPENS + 10, holder(1))
    assert passed.value.reason == "passed"
    q.book("a", "bill_payment", Priority.NORMAL, slot, OPENS - 10, holder(1))
    q.book("b", "bill_payment", Priority.NORMAL, slot, OPENS - 10, holder(2))
    with pytest.raises(SlotUnavailable) as full:
        q.book("c", "bill_payment", Priority.NORMAL, slot, OPENS - 10, holder(3))
    assert full.value.reason == "full"
    with pytest.raises(AlreadyHolding):                       # one booking per holder, too
        q.book("d", "bill_payment", Priority.NORMAL, slot + SLOT_S, OPENS - 10, holder(1))
    q.act("a", Action.CANCEL, OPENS - 5)                      # cancelling frees the place
    assert q.slot_bookings() == {slot: 1}
    q.book("c", "bill_payment", Priority.NORMAL, slot, OPENS - 4, holder(3))
    assert q.allowed(q.get("c")) == ["cancel"]


def test_the_door_counts_bookings_due_before_a_walk_in_would_be_called():
    """Bookings starting within a walk-in's wait will be called ahead of it, so the door rule
    counts them: without them this walk-in would be promised a call it cannot get today."""
    closes_at = OPENS + 3000
    with_bookings, without = new_queue(counters=1, plan=plan(capacity=3)), new_queue(counters=1)
    for n in range(6):                        # 6 bookings in the next half hour, ahead of walk-ins
        with_bookings.book(f"b{n}", "bill_payment", Priority.NORMAL, OPENS + (n // 3) * SLOT_S,
                           OPENS - 60, holder(n))
    for q in (with_bookings, without):
        for i in range(8):
            q.issue(f"w{i}", "bill_payment", "B", Priority.NORMAL, OPENS - 30)
    assert with_bookings.estimate_at_door("bill_payment", OPENS - 30).p90_s == 14 * MEAN_S
    assert with_bookings.estimate_new("bill_payment").p90_s == 14 * MEAN_S    # the boards say so too
    assert without.estimate_new("bill_payment").p90_s == 8 * MEAN_S
    # 8 walk-ins x 4 min end before closing; with the 6 bookings called first, 56 min do not.
    without.issue("next", "bill_payment", "B", Priority.NORMAL, OPENS - 30, closes_at=closes_at)
    with pytest.raises(CannotServeToday):
        with_bookings.issue("next", "bill_payment", "B", Priority.NORMAL, OPENS - 30, closes_at=closes_at)


def test_waiting_walk_ins_are_told_of_the_bookings_that_will_pass_them():
    """Each waiting walk-in's wait (boards, phones) counts the bookings whose slots start before
    it would be called; a started booking is called before every walk-in and counts none."""
    q = new_queue(counters=1, plan=plan(capacity=3))
    for n in range(3):                                    # three bookings for the first slot
        q.book(f"b{n}", "bill_payment", Priority.NORMAL, OPENS + SLOT_S, OPENS - 60, holder(n))
    for i in range(8):
        q.issue(f"w{i}", "bill_payment", "B", Priority.NORMAL, OPENS)
    estimates = q.estimates()
    # w0..w2 are called (4 min each) before the slot starts 15 min after opening; w3 is not.
    assert [estimates[f"w{i}"].ahead for i in range(8)] == [0, 1, 2, 3, 7, 8, 9, 10]
    assert {t.id: q.estimate_for(t) for t in q.waiting()} == estimates
    hall = q.hall_view()
    assert [e.ahead for _, e in hall.waiting_head] == [0, 1, 2, 3, 7, 8, 9, 10]
    assert hall.services[0].estimate.ahead == 8 + 3
    # The slot starts: the bookings are waiting tokens at the front, and count nobody else.
    q.start_due_bookings(OPENS + SLOT_S, {"bill_payment": "B"})
    estimates = q.estimates()
    assert [estimates[f"b{n}"].ahead for n in range(3)] == [0, 1, 2]
    assert [estimates[f"w{i}"].ahead for i in range(8)] == [3, 4, 5, 6, 7, 8, 9, 10]


def test_no_slots_without_a_plan():
    with pytest.raises(SlotUnavailable) as refused:
        new_queue().book("x", "bill_payment", Priority.NORMAL, OPENS + SLOT_S, OPENS, holder(1))
    assert refused.value.reason == "not_offered"


def test_slot_capacity_is_the_share_of_counter_time():
    assert slot_capacity(0.25, 4, 900, 240) == 3          # 15 consumers a slot, a quarter booked
    assert slot_capacity(0.25, 0, 900, 240) == 0
    assert slot_capacity(0.0, 4, 900, 240) == 0
    assert slot_capacity(0.5, 2, 900, 600) == 1


def test_leave_advice():
    wait = Estimate(p50_s=3600.0, p90_s=5000.0, ahead=20, counters=4)
    assert leave_advice(wait, travel_s=1200).leave_in_s == 3600 - 1200 - 300
    soon = Estimate(p50_s=900.0, p90_s=1500.0, ahead=5, counters=4)
    assert leave_advice(soon, travel_s=1200).leave_now
    assert leave_advice(None, travel_s=600).leave_in_s is None
    assert leave_advice(wait, travel_s=600, called=True).leave_now


# -- fairness between booked and walk-in consumers ------------------------------------------

def simulate_day(booking_plan: SlotPlan | None, walk_in_every_s: float = 60.0):
    """One busy day at four counters with deterministic service times: walk-ins a little faster
    than the counters serve and, with a plan, every slot fully booked. Gives each walk-in's
    (arrival, called) times in line order and each booking's wait from its slot's start."""
    q = new_queue(plan=booking_plan)
    if booking_plan is not None:
        n = 0
        for slot_at in booking_plan.starts():
            for _ in range(booking_plan.capacity):
                q.book(f"b{n}", "bill_payment", Priority.NORMAL, slot_at, OPENS - 3600, holder(n))
                n += 1
    arrivals = []
    t = OPENS
    while t < CLOSES - 3600:
        arrivals.append(t)
        t += walk_in_every_s
    arrivals.reverse()
    walk_ins: dict[str, list[float]] = {}
    booked_waits: dict[str, float] = {}
    free = [(OPENS, f"C{i}") for i in range(4)]
    heapq.heapify(free)
    while free:
        now, counter = heapq.heappop(free)
        while arrivals and arrivals[-1] <= now:
            at = arrivals.pop()
            token = q.issue(f"w{len(walk_ins):04d}", "bill_payment", "B", Priority.NORMAL, at)
            walk_ins[token.id] = [at]
        q.start_due_bookings(now, LETTERS)
        token = q.call_next(counter, SERVICES, now)
        if token is None:
            upcoming = arrivals[-1:] + [t.slot_at for t in q.tokens.values()
                                        if t.status is Status.BOOKED and t.slot_at > now]
            if upcoming:
                heapq.heappush(free, (min(upcoming), counter))
            continue
        if token.origin is Origin.SLOT:
            booked_waits[token.id] = now - token.slot_at
        else:
            walk_ins[token.id].append(now)
        q.act(token.id, Action.START, now)
        q.act(token.id, Action.COMPLETE, now + MEAN_S)
        heapq.heappush(free, (now + MEAN_S, counter))
    return [walk_ins[k] for k in sorted(walk_ins)], booked_waits


def head_of_line_delays(walk_ins: list[list[float]]) -> list[float]:
    """How long each walk-in waited once it was first among waiting walk-ins (they keep their
    order among themselves): the part of its wait that bookings can add to."""
    delays, previous_call = [], float("-inf")
    for arrived, called in walk_ins:
        delays.append(called - max(arrived, previous_call))
        previous_call = called
    return delays


SHARE = 0.25
# The agreed bound: a walk-in first in line waits for at most one slot's bookings (their share
# of the counters' time in a slot) plus one service in progress: 0.25 * 15 min + 4 min here.
HEAD_OF_LINE_BOUND_S = SHARE * SLOT_S + MEAN_S


def test_bookings_are_called_on_time_and_walk_ins_within_the_agreed_bound():
    capacity = slot_capacity(SHARE, 4, SLOT_S, MEAN_S)
    walk_ins, booked = simulate_day(plan(capacity=capacity))
    assert len(booked) == capacity * 32
    assert max(booked.values()) <= MEAN_S                  # every booking called within one service
    assert max(head_of_line_delays(walk_ins)) <= HEAD_OF_LINE_BOUND_S
    without, _ = simulate_day(None)
    assert max(head_of_line_delays(without)) <= MEAN_S
    # Walk-ins keep at least (1 - share) of the counters' calls in every hour of the day.
    for hour in range(7):
        start, end = OPENS + hour * 3600, OPENS + (hour + 1) * 3600
        walk_in_calls = sum(1 for _, called in walk_ins if start <= called < end)
        total_calls = walk_in_calls + 4 * capacity          # four fully booked slots an hour
        assert walk_in_calls >= (1 - SHARE) * total_calls - capacity, (hour, walk_in_calls, total_calls)


def test_the_bound_holds_because_slots_are_capped():
    """Slots sold past their share (three times the capacity) break the walk-in bound: the cap,
    not luck, is what protects walk-ins."""
    walk_ins, _ = simulate_day(plan(capacity=3 * slot_capacity(SHARE, 4, SLOT_S, MEAN_S)))
    assert max(head_of_line_delays(walk_ins)) > HEAD_OF_LINE_BOUND_S
