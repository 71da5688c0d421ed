"""The gateway's protections, in plain asyncio: adaptive concurrency limit that sheds look-ups
before payments, circuit breaker, retry budget with jittered backoff, and a single-flight cache.

Each takes its clock as an argument so tests drive time by hand.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")
Clock = Callable[[], float]


# -- adaptive concurrency limit -------------------------------------------------------------

class AIMDLimit:
    """Netflix concurrency-limits' AIMDLimit: on a drop (timeout, error, or latency far above
    the no-load minimum) ``limit = max(min, min(limit - 1, limit * backoff_ratio))``; otherwise
    grow while the limit is in use (``in_flight * 2 >= limit``). Netflix grows by one per
    sample; we grow by one per limit's worth of samples (one per round trip, as TCP's
    congestion avoidance does), which keeps the sawtooth well under the billing server's
    crash point. Never below ``min_limit`` nor above the configured ceiling.
    """

    def __init__(self, initial: int = 10, min_limit: int = 1, max_limit: int = 200,
                 backoff_ratio: float = 0.9) -> None:
        self.limit = float(min(max(initial, min_limit), max_limit))
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.backoff_ratio = backoff_ratio

    def on_sample(self, in_flight: int, dropped: bool) -> None:
        if dropped:
            self.limit = max(self.min_limit, min(self.limit - 1, self.limit * self.backoff_ratio))
        elif in_flight * 2 >= self.limit:
            self.limit = min(self.max_limit, self.limit + 1 / self.limit)


class CallKind(IntEnum):
    """What a billing call is for, which ranks it when the limit is reached: look-ups are shed
    before payments."""

    LOOKUP = 1
    PAYMENT = 2


# Share of the limit each kind of call may fill: a look-up never takes the last fifth of the
# limit, so payments always find room first.
LIMIT_SHARE = {CallKind.LOOKUP: 0.8, CallKind.PAYMENT: 1.0}


class LimitExceeded(Exception):
    """Shed: the billing server is at its concurrency limit for this kind of call."""

    def __init__(self, kind: CallKind) -> None:
        super().__init__(f"billing is at its concurrency limit; {kind.name.lower()} shed")
        self.kind = kind


class LoadSignal(StrEnum):
    """What a finished billing call says about the billing server's load."""

    SUCCESS = "success"
    DROPPED = "dropped"      # timeout, overload answer: the limit must fall
    IGNORE = "ignore"        # says nothing about load (e.g. a refused account number)


class ConcurrencyLimiter:
    """Admits calls while in flight < limit (scaled by the call kind's share) and learns the limit.

    A call whose round trip exceeds ``latency_tolerance`` x the no-load round trip counts as a
    drop, so the limit falls as the billing server slows past its knee, before it fails. Drops
    cut the limit at most once per round trip. The no-load round trip is re-measured every
    ``min_rtt_interval_s`` with concurrency pinned to ``probe_concurrency`` for a few calls,
    as Envoy's adaptive concurrency does: measured under load it would creep up and let the
    limit creep past the billing server's crash point.
    """

    def __init__(self, limit: AIMDLimit, clock: Clock = time.monotonic,
                 latency_tolerance: float = 1.5, min_rtt_interval_s: float = 30.0,
                 probe_concurrency: int = 1, probe_samples: int = 5) -> None:
        self.algorithm = limit
        self.clock = clock
        self.latency_tolerance = latency_tolerance
        self.min_rtt_interval_s = min_rtt_interval_s
        self.probe_concurrency = probe_concurrency
        self.probe_samples = probe_samples
        self.in_flight = 0
        self.min_rtt: float | None = None
        self.shed = {kind: 0 for kind in CallKind}
        self.samples = 0
        self._last_cut = float("-inf")
        self._next_probe = clock() + min_rtt_interval_s
        self._probe: list[float] | None = None

    @property
    def limit(self) -> int:
        return int(self.algorithm.limit)

    @property
    def measuring(self) -> bool:
        """True while the no-load round trip is being re-measured."""
        return self._probe is not None

    def available(self, kind: CallKind = CallKind.PAYMENT) -> int:
        if self._probe is None and self.min_rtt is not None and self.clock() >= self._next_probe:
            self._probe = []
        if self._probe is not None:
            return max(0, self.probe_concurrency - self.in_flight)
        return max(0, int(self.algorithm.limit * LIMIT_SHARE[kind]) - self.in_flight)

    def try_acquire(self, kind: CallKind = CallKind.PAYMENT) -> Permit:
        if self.available(kind) < 1:
            self.shed[kind] += 1
            raise LimitExceeded(kind)
        self.in_flight += 1
        return Permit(self, self.clock())

    def _release(self, started: float, signal: LoadSignal) -> None:
        now = self.clock()
        rtt = now - started
        in_flight = self.in_flight
        self.in_flight -= 1
        if signal is LoadSignal.IGNORE:
            return
        self.samples += 1
        if self._probe is not None:
            if signal is LoadSignal.SUCCESS:
                self._probe.append(rtt)
            if len(self._probe) >= self.probe_samples:
                self.min_rtt = min(self._probe)
                self._probe = None
                self._next_probe = now + self.min_rtt_interval_s
            return
        dropped = signal is LoadSignal.DROPPED
        if not dropped:
            if self.min_rtt is None or rtt < self.min_rtt:
                self.min_rtt = rtt
            dropped = rtt > self.latency_tolerance * max(self.min_rtt, 1e-3)
        if dropped:
            # All the calls in flight when billing slowed come back slow together: that is one
            # congestion signal, so cut once per round trip, not once per call.
            if now - self._last_cut < rtt:
                return
            self._last_cut = now
        self.algorithm.on_sample(in_flight, dropped)

    def snapshot(self) -> dict[str, object]:
        return {"limit": self.limit, "in_flight": self.in_flight,
                "min_rtt_ms": round(self.min_rtt * 1000, 1) if self.min_rtt is not None else None,
                "measuring_min_rtt": self.measuring,
                "max_limit": self.algorithm.max_limit,
                "shed": {kind.name.lower(): n for kind, n in self.shed.items()}}


@dataclass
class Permit:
    limiter: ConcurrencyLimiter
    started: float
    released: bool = False

    def release(self, signal: LoadSignal) -> None:
        if not self.released:
            self.released = True
            self.limiter._release(self.started, signal)


# -- circuit breaker ---------------------------------------------------------------------------

class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerOpen(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"billing server is down; next probe in {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class CircuitBreaker:
    """Stops calling a billing server that keeps failing, then lets exactly one probe through.

    closed -> open after ``failure_threshold`` failures in a row; open -> half-open once
    ``open_s`` has passed; one probe at a time while half-open: success closes, failure opens
    again (for twice as long, up to ``max_open_s``).
    """

    def __init__(self, failure_threshold: int = 5, open_s: float = 1.0, max_open_s: float = 15.0,
                 clock: Clock = time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.base_open_s = open_s
        self.max_open_s = max_open_s
        self.clock = clock
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.open_s = open_s
        self.opened_at = 0.0
        self.probing = False
        self.opened = 0

    def before_call(self) -> None:
        """Raise BreakerOpen unless a call may go ahead now (it may be the one probe)."""
        if self.state is BreakerState.OPEN:
            waited = self.clock() - self.opened_at
            if waited < self.open_s:
                raise BreakerOpen(self.open_s - waited)
            self.state = BreakerState.HALF_OPEN
        if self.state is BreakerState.HALF_OPEN:
            if self.probing:
                raise BreakerOpen(self.open_s / 2)
            self.probing = True

    def cancel_probe(self) -> None:
        """The probe this caller was given will not be made after all."""
        self.probing = False

    def on_success(self) -> None:
        self.failures = 0
        self.probing = False
        if self.state is not BreakerState.CLOSED:
            self.state = BreakerState.CLOSED
            self.open_s = self.base_open_s

    def on_failure(self) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN:
            self.probing = False
            self._open(min(self.max_open_s, self.open_s * 2))
        elif self.state is BreakerState.CLOSED and self.failures >= self.failure_threshold:
            self._open(self.base_open_s)

    def _open(self, seconds: float) -> None:
        self.state = BreakerState.OPEN
        self.open_s = seconds
        self.opened_at = self.clock()
        self.opened += 1

    def snapshot(self) -> dict[str, object]:
        return {"state": self.state.value, "consecutive_failures": self.failures,
                "open_s": self.open_s, "times_opened": self.opened}


# -- retries -----------------------------------------------------------------------------------

def backoff_s(attempt: int, base_s: float = 0.2, cap_s: float = 30.0,
              rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): uniform in [0, min(cap, base*2^n)]."""
    return rng() * min(cap_s, base_s * 2 ** max(0, attempt))


def _forget_before(cutoff: float, *windows: deque[float]) -> None:
    """Drop the times older than ``cutoff`` from sliding windows of event times."""
    for times in windows:
        while times and times[0] < cutoff:
            times.popleft()


class RetryBudget:
    """Retries allowed up to ``ratio`` of recent calls, plus ``min_per_s`` (Google SRE's
    retry budget), so retries cannot multiply the load on a struggling billing server."""

    def __init__(self, ratio: float = 0.1, min_per_s: float = 1.0, window_s: float = 10.0,
                 clock: Clock = time.monotonic) -> None:
        self.ratio = ratio
        self.min_per_s = min_per_s
        self.window_s = window_s
        self.clock = clock
        self._calls: deque[float] = deque()
        self._retries: deque[float] = deque()
        self.refused = 0

    def record_call(self) -> None:
        self._calls.append(self.clock())

    def try_retry(self) -> bool:
        now = self.clock()
        _forget_before(now - self.window_s, self._calls, self._retries)
        allowed = self.ratio * len(self._calls) + self.min_per_s * self.window_s
        if len(self._retries) >= allowed:
            self.refused += 1
            return False
        self._retries.append(now)
        return True


# -- single-flight cache -----------------------------------------------------------------------

@dataclass(frozen=True)
class Cached(Generic[T]):
    value: T
    stale: bool
    age_s: float


@dataclass
class _Entry(Generic[T]):
    value: T
    at: float


@dataclass
class SingleFlightCache(Generic[T]):
    """Concurrent look-ups of one key share one call; answers live ``ttl_s``; when a refresh
    fails, a value up to ``stale_s`` old is served marked stale (stale-while-error)."""

    ttl_s: float = 60.0
    stale_s: float = 3600.0
    clock: Clock = time.monotonic
    max_entries: int = 10_000
    _entries: dict[str, _Entry[T]] = field(default_factory=dict)
    _flights: dict[str, asyncio.Future[T]] = field(default_factory=dict)
    calls: int = 0
    coalesced: int = 0

    async def get(self, key: str, load: Callable[[], Awaitable[T]]) -> Cached[T]:
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None and now - entry.at < self.ttl_s:
            return Cached(entry.value, False, now - entry.at)
        try:
            value = await self._flight(key, load)
        except Exception:
            if entry is not None and now - entry.at < self.stale_s:
                return Cached(entry.value, True, now - entry.at)
            raise
        return Cached(value, False, 0.0)

    async def _flight(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        flight = self._flights.get(key)
        if flight is not None:
            self.coalesced += 1
            return await asyncio.shield(flight)
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        self.calls += 1
        try:
            value = await load()
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()  # mark retrieved: waiters may be none
            raise
        else:
            flight.set_result(value)
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = _Entry(value, self.clock())
            return value
        finally:
            del self._flights[key]
