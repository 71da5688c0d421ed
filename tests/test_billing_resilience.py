"""The gateway's protections on their own, with clocks driven by hand."""

from __future__ import annotations

import asyncio

import pytest

from counter_server.billing.resilience import (
    AIMDLimit,
    BreakerOpen,
    BreakerState,
    CallKind,
    CircuitBreaker,
    ConcurrencyLimiter,
    LimitExceeded,
    LoadSignal,
    RetryBudget,
    SingleFlightCache,
    backoff_s,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_aimd_grows_only_while_used_cuts_on_drops_and_respects_the_ceiling():
    limit = AIMDLimit(initial=10, max_limit=12)
    limit.on_sample(in_flight=2, dropped=False)            # 2*2 < 10: not using the limit
    assert limit.limit == 10
    for _ in range(10):
        limit.on_sample(in_flight=6, dropped=False)
    assert limit.limit == pytest.approx(11, abs=0.05)      # about one per limit's worth of samples
    for _ in range(50):
        limit.on_sample(in_flight=6, dropped=False)
    assert limit.limit == 12                               # ceiling
    limit.on_sample(in_flight=6, dropped=True)
    assert limit.limit == pytest.approx(10.8)              # max(1, min(12 - 1, 12 * 0.9))
    for _ in range(40):
        limit.on_sample(in_flight=1, dropped=True)
    assert limit.limit == 1


def test_limiter_sheds_lookups_before_payments():
    limiter = ConcurrencyLimiter(AIMDLimit(initial=10, max_limit=10))
    held = [limiter.try_acquire(CallKind.LOOKUP) for _ in range(8)]       # look-ups up to 8
    with pytest.raises(LimitExceeded):
        limiter.try_acquire(CallKind.LOOKUP)
    held += [limiter.try_acquire(CallKind.PAYMENT) for _ in range(2)]     # payments to 10
    with pytest.raises(LimitExceeded):
        limiter.try_acquire(CallKind.PAYMENT)
    assert limiter.shed == {CallKind.LOOKUP: 1, CallKind.PAYMENT: 1}
    for permit in held:
        permit.release(LoadSignal.SUCCESS)
    assert limiter.in_flight == 0


def test_limit_falls_when_latency_rises_far_above_the_minimum_and_recovers_after():
    clock = Clock()
    limiter = ConcurrencyLimiter(AIMDLimit(initial=10, max_limit=40), clock, latency_tolerance=2.5)

    def wave(rtt: float, calls: int) -> None:
        permits = [limiter.try_acquire() for _ in range(min(calls, limiter.limit))]
        clock.now += rtt
        for permit in permits:
            permit.release(LoadSignal.SUCCESS)

    for _ in range(10):
        wave(0.040, 40)
    grown = limiter.limit
    assert grown > 10
    for _ in range(10):
        wave(0.400, 40)                                    # ten times slower: drops
    slowed = limiter.limit
    assert slowed < grown / 2
    for _ in range(10):
        wave(0.045, 40)
    assert limiter.limit > slowed


def test_no_load_round_trip_is_re_measured_with_concurrency_pinned_low():
    clock = Clock()
    limiter = ConcurrencyLimiter(AIMDLimit(initial=10, max_limit=10), clock, min_rtt_interval_s=30,
                                 probe_samples=3)
    permit = limiter.try_acquire()
    clock.now += 0.040
    permit.release(LoadSignal.SUCCESS)
    assert limiter.min_rtt == pytest.approx(0.040) and limiter.available() == 10
    clock.now = 31.0                                       # time to re-measure
    assert limiter.available() == 1 and limiter.measuring
    for _ in range(3):
        permit = limiter.try_acquire()
        with pytest.raises(LimitExceeded):
            limiter.try_acquire()                          # pinned to one in flight
        clock.now += 0.060                                 # billing got slower for good
        permit.release(LoadSignal.SUCCESS)
    assert not limiter.measuring and limiter.min_rtt == pytest.approx(0.060)
    assert limiter.available() == 10


def test_breaker_opens_probes_once_and_closes_or_reopens_for_longer():
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, open_s=1.0, max_open_s=4.0, clock=clock)
    for _ in range(3):
        breaker.before_call()
        breaker.on_failure()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(BreakerOpen) as err:
        breaker.before_call()
    assert err.value.retry_after_s == pytest.approx(1.0)
    clock.now += 1.0
    breaker.before_call()                                  # the one probe
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(BreakerOpen):
        breaker.before_call()                              # no second probe meanwhile
    breaker.on_failure()
    assert breaker.state is BreakerState.OPEN and breaker.open_s == 2.0
    clock.now += 2.0
    breaker.before_call()
    breaker.on_success()
    assert breaker.state is BreakerState.CLOSED and breaker.open_s == 1.0 and breaker.opened == 2


def test_retry_budget_allows_about_ten_percent():
    clock = Clock()
    budget = RetryBudget(ratio=0.1, min_per_s=0.0, window_s=10.0, clock=clock)
    for _ in range(100):
        budget.record_call()
    allowed = sum(budget.try_retry() for _ in range(30))
    assert allowed == 10 and budget.refused == 20
    clock.now += 11                                        # the window moved on
    assert not budget.try_retry()


def test_backoff_has_full_jitter_under_a_cap():
    assert backoff_s(0, 0.2, 30, rng=lambda: 1.0) == 0.2
    assert backoff_s(3, 0.2, 30, rng=lambda: 0.5) == pytest.approx(0.8)
    assert backoff_s(20, 0.2, 30, rng=lambda: 1.0) == 30
    assert backoff_s(5, 0.2, 30, rng=lambda: 0.0) == 0.0


async def test_single_flight_coalesces_and_serves_stale_on_error():
    clock = Clock()
    cache: SingleFlightCache[str] = SingleFlightCache(ttl_s=60, stale_s=3600, clock=clock)
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return f"bill-{calls}"

    answers = await asyncio.gather(*[cache.get("2140012345", load) for _ in range(40)])
    assert calls == 1 and {a.value for a in answers} == {"bill-1"} and cache.coalesced == 39
    clock.now += 61

    async def broken() -> str:
        raise ConnectionError("billing down")

    stale = await cache.get("2140012345", broken)
    assert stale.stale and stale.value == "bill-1" and stale.age_s == 61
    with pytest.raises(ConnectionError):
        await cache.get("another", broken)
