"""Wait estimates at counters shared between services: the call order run, by hand and over a
busy day (issue 15 item 12: a p90 right about 90 % of the time, a p50 about half)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from counter_server.queueing import (
    Action,
    Estimate,
    Holder,
    Priority,
    QueuePolicy,
    ServiceTimeSeed,
    SlotPlan,
    SubstationQueue,
)
from counter_server.queueing.estimate import (Z90, OpenCounter, ServiceTimes, Waiter,
                                              expected_residual_s, plan_calls)
from loadtests.capacity.coverage import coverage_day
from loadtests.capacity.demand import ArrivalBatch
from loadtests.capacity.model import Layout, ServiceTime

PAY, CONNECT, COMPLAIN = "pay", "connect", "complain"
ALPHA = 0.1
ERROR = math.sqrt(ALPHA / (2 - ALPHA))          # a learned mean's spread, per unit of spread
SEEDS = {PAY: ServiceTimeSeed(100.0, 10.0), CONNECT: ServiceTimeSeed(600.0, 60.0)}


def shared_hall() -> SubstationQueue:
    """A1 takes payments only; A2 payments and new connections."""
    policy = QueuePolicy(service_seeds=SEEDS, ewma_alpha=ALPHA)
    return SubstationQueue("H", "d", policy, counters={"A1": (PAY,), "A2": (PAY, CONNECT)})


def test_a_payment_waits_behind_the_connection_a_shared_counter_takes_first():
    """A1 has had a payment 40 s; A2 is free, and the line is a connection then two payments.
    A2 calls the connection (the first it may serve), so the payments wait for A1: the
    same-service count said the first payment was called at once by A2 and the second when
    A1 freed."""
    q = shared_hall()
    q.issue("p0", PAY, "P", Priority.NORMAL, 0)
    q.call_next("A1", [PAY], 10)
    for token_id, service, at in (("c1", CONNECT, 20), ("p1", PAY, 30), ("p2", PAY, 50)):
        q.issue(token_id, service, service[0].upper(), Priority.NORMAL, at)
    e = q.estimates()
    r = expected_residual_s(40, 100, 10)          # A1 frees in about 61.0 s
    assert r == pytest.approx(61.04, abs=0.01)
    assert e["c1"] == Estimate(0.0, 0.0, 0, 1)       # A2 is free: called at once
    assert (e["p1"].p50_s, e["p1"].ahead, e["p1"].counters) == (round(r, 1), 0, 2)
    assert e["p2"].p50_s == round(r + 100, 1)
    # p1's range: the pool of A1 and A2 has taken the connection (spread 60, its mean's error
    # 60 x ERROR) and p1 waits on A1's payment (spread 10):
    #   sd^2 = 10^2 / min(1 + 1, 2) + (60^2 + (60 ERROR)^2) / 2^2
    sd = math.sqrt(100 / 2 + (3600 + (60 * ERROR) ** 2) / 4)
    assert e["p1"].p90_s == round(r + Z90 * sd, 1)
    # A new payment is called when A1 has done both; a new connection when A2 is done with c1.
    assert q.estimate_new(PAY).p50_s == round(r + 200, 1) and q.estimate_new(PAY).ahead == 2
    assert q.estimate_new(CONNECT).p50_s == 600.0 and q.estimate_new(CONNECT).ahead == 1
    # Every way of asking agrees: one token, the hall's head, and the line again from the store.
    assert {t.id: q.estimate_for(t) for t in q.waiting()} == e
    assert [estimate for _, estimate in q.hall_view().waiting_head] == [e["c1"], e["p1"], e["p2"]]
    reloaded = SubstationQueue("H", "d", q.policy, q.tokens.values(), q.last_seq, q.counters)
    assert reloaded.estimates() == e


def test_a_token_transferred_to_one_counter_waits_for_that_counter_only():
    """A1 sends p1 to A2, busy with a connection: A1 is free, yet only A2 may call p1."""
    q = shared_hall()
    q.issue("c0", CONNECT, "C", Priority.NORMAL, 0)
    q.call_next("A2", [PAY, CONNECT], 5)
    q.issue("p1", PAY, "P", Priority.NORMAL, 6)
    q.call_next("A1", [PAY], 8)
    q.act("p1", Action.TRANSFER, 10, to_counter="A2")        # back in line, for A2 alone
    q.issue("p2", PAY, "P", Priority.NORMAL, 20)
    e = q.estimates()
    r = expected_residual_s(15, 600, 60)                       # A2's connection: about 585 s more
    assert (e["p1"].p50_s, e["p1"].counters) == (round(r, 1), 1)
    assert e["p2"] == Estimate(0.0, 0.0, 1, 2)                 # A1 is free: at once
    q.close_counter("A1", 30)
    e = q.estimates()
    assert e["p2"].p50_s == round(expected_residual_s(25, 600, 60) + 100, 1)   # A2, after p1


def test_a_booking_of_another_service_passes_a_walk_in_at_a_shared_counter():
    """A booking is called before every walk-in once its slot starts, at any counter serving
    its service: A2 takes the connection booked for 50 s from now before the second payment."""
    q = shared_hall()
    q.close_counter("A1", 0)
    q.publish_slots(SlotPlan(first_at=50.0, slot_s=900, count=4, capacity=2), 0)
    q.book("b1", CONNECT, Priority.NORMAL, 50.0, 0.0, Holder("acct", "phone"))
    q.issue("p1", PAY, "P", Priority.NORMAL, 0)
    q.issue("p2", PAY, "P", Priority.NORMAL, 1)
    e = q.estimates()
    assert e["p1"].p50_s == 0.0
    assert e["p2"].p50_s == 700.0                             # p1 100 s, then the booking 600 s
    assert q.estimate_new(CONNECT).p50_s == 800.0             # behind p2 too


def test_the_issued_token_is_given_the_door_s_estimate_without_a_second_run():
    q = shared_hall()
    for i in range(30):
        service = CONNECT if i % 5 == 0 else PAY
        q.issue(f"t{i}", service, "X", Priority.NORMAL, float(i), closes_at=30_000.0)
    q.call_next("A1", [PAY], 40.0)
    door = q.estimate_at_door(PAY, 45.0)
    token = q.issue("last", PAY, "P", Priority.NORMAL, 45.0, closes_at=30_000.0)
    assert q.estimate_for(token) == door
    reloaded = SubstationQueue("H", "d", q.policy, q.tokens.values(), q.last_seq, q.counters)
    assert reloaded.estimate_for(token) == door                  # a full run says the same


# -- a busy mixed day ---------------------------------------------------------------------

OPENS, CLOSES = 9.5 * 3600, 17.5 * 3600
DAY_SERVICES = (ServiceTime(PAY, 90.0, 60 / 12 ** 0.5, 60.0, 120.0),
                ServiceTime(CONNECT, 600.0, 600 / 12 ** 0.5, 300.0, 900.0),
                ServiceTime(COMPLAIN, 300.0, 480 / 12 ** 0.5, 120.0, 600.0))
# Two counters take payments only, a third payments and new connections, a fourth payments
# and complaints: the paid service's line runs through counters busy with the other two.
HALL = Layout("H", OPENS, CLOSES, ((0,), (0,), (0, 1), (0, 2)))


def busy_mixed_day(seed: int, arrivals: int = 900) -> ArrivalBatch:
    """``arrivals`` over the opening hours, heavier mid-morning and late afternoon, 8 payments
    to one connection and one complaint (as peak-load mixes them): more than the counters serve."""
    rng = np.random.default_rng(seed)
    weights = np.array([0.9, 1.4, 1.3, 1.0, 0.6, 1.1, 1.2, 0.7])
    slices = rng.choice(len(weights), arrivals, p=weights / weights.sum())
    times = np.sort(OPENS + (slices + rng.random(arrivals)) * (CLOSES - OPENS) / len(weights))
    kinds = rng.choice(3, arrivals, p=[0.8, 0.1, 0.1])
    lengths = np.empty(arrivals)
    for k, service in enumerate(DAY_SERVICES):
        lengths[kinds == k] = service.draw(rng, int((kinds == k).sum()))
    return ArrivalBatch(times, kinds, lengths, rng.random(arrivals), rng.random(arrivals))


def test_estimates_hold_their_promise_over_a_busy_mixed_day():
    """The share of tokens called within the p50 and p90 they were given when issued, over a
    seeded busy day through the server's own queue, door rule and estimator (the measurement
    peak-sim prints). Target 40-60 % and 85-95 %; the band here leaves room for one hall's
    day of chance. The same-service count gave p50 12 % and p90 20 % here."""
    seeds = {s.id: ServiceTimeSeed(s.mean_s, s.sd_s, s.min_s, s.max_s) for s in DAY_SERVICES}
    policy = QueuePolicy(service_seeds=seeds, ewma_alpha=ALPHA)
    measured = [coverage_day(HALL, DAY_SERVICES, "PNC", busy_mixed_day(seed), policy) for seed in (1, 2)]
    tokens = sum(m.tokens for m in measured)
    p50 = sum(m.within_p50 for m in measured) / tokens
    p90 = sum(m.within_p90 for m in measured) / tokens
    assert tokens > 800 and sum(m.refused for m in measured) > 0      # busy: the door turned some away
    print(f"busy mixed day: {tokens} tokens, p50 {p50:.0%}, p90 {p90:.0%}")
    assert 0.38 <= p50 <= 0.65, (p50, p90)
    assert 0.82 <= p90 <= 0.97, (p50, p90)


@pytest.mark.parametrize("seed", range(4))
def test_a_one_service_line_gets_the_general_run_s_estimates(seed: int) -> None:
    """A busy hall's line of one service takes a shortcut through the call order; a booking
    whose slot never starts sends the same line through the general run, which must give the
    same estimates: ties between counters freeing together, counters serving other services
    too, busy and idle ones, and the new-token waits of every service. A long line's counters
    soon take turns, where the shortcut jumps to the line's end: the same there too."""
    rng = np.random.default_rng(seed)
    times = ServiceTimes({PAY: SEEDS[PAY], CONNECT: SEEDS[CONNECT],
                          COMPLAIN: ServiceTimeSeed(300.0, 50.0)}, alpha=ALPHA)
    for seconds in rng.uniform(50, 700, 12):
        times.observe(PAY, float(seconds))
    served = [(PAY,), (PAY,), (PAY, CONNECT), (COMPLAIN, PAY), (CONNECT,), (COMPLAIN,)]
    for n in (0, 1, 7, 150, 2500):
        counters = [OpenCounter(f"A{k}", s, float(rng.choice([0.0, 20.0, 20.0, rng.uniform(0, 400)])),
                                PAY if rng.random() < 0.7 else None)
                    for k, s in enumerate(served[:int(rng.integers(1, len(served) + 1))])]
        line = [Waiter(PAY)] * n
        never = [(n, Waiter(PAY, slot_at=math.inf))]
        short, general = (plan_calls(line, booked, counters, times, 30.0, (CONNECT, COMPLAIN))
                          for booked in ([], never))
        assert short.line == general.line
        assert [short.estimate(k) for k in range(n)] == list(general.line)
        assert all(short.new_token(s) == general.new_token(s) for s in (PAY, CONNECT, COMPLAIN))


def test_a_walk_in_chosen_after_a_booking_of_another_service_is_taken_from_the_line():
    """One counter serving two services: its first look finds a booking whose slot has begun,
    the second a walk-in ahead of it. The walk-in is the one called (the run once took it from
    the bookings, and failed there)."""
    times = ServiceTimes({CONNECT: SEEDS[CONNECT], PAY: SEEDS[PAY]}, alpha=ALPHA)
    counters = [OpenCounter("A1", (CONNECT, PAY))]
    line = [Waiter(PAY), Waiter(PAY)]
    plan = plan_calls(line, [(2, Waiter(CONNECT, slot_at=50.0))], counters, times, 10.0)
    first, second = (plan.estimate(k) for k in range(2))
    assert (first.p50_s, first.ahead) == (0.0, 0) and second.ahead == 1   # walk-ins in their order
    assert second.p50_s > 0 and plan.new_token(PAY).p50_s > second.p50_s # the booking after them
