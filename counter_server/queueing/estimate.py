"""Honest wait estimates: a range, learned from the counters' recent service times.

A consumer with ``ahead`` people of the same service before them is called at the
``ahead + 1``-th moment one of the ``c`` open counters serving that service frees. Counter i
frees first after ``free_i`` seconds (0 when idle; for a busy one, the expected remainder of the
token at it, from how long it has been there and its service's learned mean and spread, see
``expected_residual_s``) and then every mean service time ``m`` after that. So

    p50 = the (ahead + 1)-th smallest of { free_i + j * m : i counters, j = 0, 1, ... }

which is ``ahead * m / c`` plus the wait for the first counter to free: when every counter is
busy, even the first in line waits (the board's "now" was a lie then). The p90 adds Z90 times
the spread of that moment, all of it from what the counters were seen to do:

    sd^2 = s^2 / min(ahead + 1, c)        when the busy counters free: the first in line waits
                                          for one of them (a whole service's spread), a long
                                          line for all c of them (their average)
         + ahead * s^2 / c^2              the service times of those ahead
         + (ahead * e / c)^2              the learned mean's own error, for every one ahead

with ``s`` the learned spread of service times and ``e = s * sqrt(alpha / (2 - alpha))`` the
spread of an EWMA of weight ``alpha`` over such times: a long line multiplies the mean's error by
its length, so its range widens in proportion. The mean and spread are exponentially weighted
moving averages over completed tokens, seeded by the scenario's figures; ``ServiceTimes`` says
which observations they take.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Z90 = 1.2816
HUBER_K = 3.0          # without a plausible range, one observation moves the mean at most this many sd


@dataclass(frozen=True, slots=True)
class ServiceTimeSeed:
    """A service's figures from the scenario: mean and spread, and its plausible range."""

    mean_s: float
    sd_s: float
    min_s: float | None = None
    max_s: float | None = None


@dataclass(frozen=True, slots=True)
class Estimate:
    """Seconds until service starts, as a range; None when no open counter serves it."""

    p50_s: float | None
    p90_s: float | None
    ahead: int
    counters: int


class ServiceTimes:
    """EWMA of how long a counter is occupied per token (called to finished), per service.

    Observations outside the service's plausible range (the scenario's ``min_service_s`` ..
    ``max_service_s``) do not drag it:

    * shorter than the minimum: ignored. A bill paid in 1 s was not a service (a token completed
      by mistake, or for someone who left at the counter); it says nothing about how long serving
      takes, and three of them moved bill payment's mean from 90 s to 65 s. Clipping it to the
      minimum would still pull the mean down by a third of the range each time.
    * longer than the maximum: counted as the maximum. A token left open over lunch must not
      double the mean, yet counters slower than planned are news the estimate should follow.

    A service without a range takes every observation, but one observation moves the mean by at
    most ``HUBER_K`` learned spreads (a Huber-type step), so no single outlier drags it far.
    """

    def __init__(self, seeds: Mapping[str, ServiceTimeSeed], alpha: float = 0.1) -> None:
        self.alpha = alpha
        self._mean = {name: seed.mean_s for name, seed in seeds.items()}
        self._var = {name: seed.sd_s ** 2 for name, seed in seeds.items()}
        self._range = {name: (seed.min_s, seed.max_s) for name, seed in seeds.items()}
        self.samples: dict[str, int] = {name: 0 for name in seeds}

    def observe(self, service: str, seconds: float) -> bool:
        """Learn from one completed token; False when the observation was left out."""
        if seconds <= 0 or service not in self._mean:
            return False
        low, high = self._range[service]
        if low is not None and seconds < low:
            return False
        if high is not None:
            seconds = min(seconds, high)
        mean, var = self._mean[service], self._var[service]
        diff = seconds - mean
        if low is None and high is None and var > 0:
            limit = HUBER_K * math.sqrt(var)
            diff = max(-limit, min(limit, diff))
        self._mean[service] = mean + self.alpha * diff
        self._var[service] = (1 - self.alpha) * (var + self.alpha * diff * diff)
        self.samples[service] += 1
        return True

    def mean(self, service: str) -> float:
        return self._mean.get(service, 0.0)

    def sd(self, service: str) -> float:
        return math.sqrt(self._var.get(service, 0.0))

    def mean_error(self, service: str) -> float:
        """The spread of the learned mean itself: an EWMA of weight alpha over times of spread s
        varies by s * sqrt(alpha / (2 - alpha))."""
        alpha = min(max(self.alpha, 0.0), 1.0)
        return self.sd(service) * math.sqrt(alpha / (2 - alpha)) if alpha < 1 else self.sd(service)


def expected_residual_s(elapsed_s: float, mean_s: float, sd_s: float) -> float:
    """How much longer a token already ``elapsed_s`` at a counter is expected to stay.

    ``mean - elapsed`` while it is early, but never below zero: at the mean, a service of spread
    s has about s * sqrt(2 / pi) left (that of a normal), and past it the remainder shrinks
    smoothly. ``(d + sqrt(d^2 + (8 / pi) s^2)) / 2`` with ``d = mean - elapsed`` does both.
    """
    d = mean_s - max(elapsed_s, 0.0)
    return (d + math.sqrt(d * d + (8 / math.pi) * sd_s * sd_s)) / 2


class CounterFrees:
    """When each of a service's open counters frees next, and after that every ``mean_s``:
    ``at(k)`` is the (k + 1)-th such moment, the call of the token with ``k`` ahead of it."""

    __slots__ = ("_early", "_cycle", "_mean", "idle")

    def __init__(self, free_in_s: Sequence[float], mean_s: float) -> None:
        cycle = sorted(max(0.0, f) for f in free_in_s)
        self.idle = sum(1 for f in cycle if f == 0.0)
        early: list[float] = []
        # Take moments off the front until every counter's next one lies within one mean of
        # the first: from then on they come round in the same order, one mean apart.
        while mean_s > 0 and len(cycle) > 1 and cycle[-1] - cycle[0] >= mean_s:
            first = cycle.pop(0)
            early.append(first)
            bisect.insort(cycle, first + mean_s)
        self._early, self._cycle, self._mean = early, cycle, mean_s

    def at(self, k: int) -> float:
        if k < len(self._early):
            return self._early[k]
        k -= len(self._early)
        rounds, index = divmod(k, len(self._cycle))
        return self._cycle[index] + rounds * self._mean


def estimate_wait(ahead: int, counters: int, mean_s: float, sd_s: float,
                  frees: CounterFrees | None = None, mean_error_s: float = 0.0) -> Estimate:
    """The wait range behind ``ahead`` people with ``counters`` open counters serving them.

    With ``frees`` (the counters' next free moments, see ``CounterFrees``) the p50 is the moment
    the token is called; without it (the counters' state unknown, as in the capacity model) the
    average ``ahead * mean / counters``.
    """
    if counters <= 0:
        return Estimate(None, None, ahead, 0)
    if frees is not None and ahead < frees.idle:     # a free counter will call it: no wait
        return Estimate(0.0, 0.0, ahead, counters)
    p50 = frees.at(ahead) if frees is not None else ahead * mean_s / counters
    variance = (sd_s * sd_s / min(ahead + 1, counters)
                + ahead * sd_s * sd_s / counters ** 2
                + (ahead * mean_error_s / counters) ** 2)
    return Estimate(round(p50, 1), round(p50 + Z90 * math.sqrt(variance), 1), ahead, counters)
