"""Honest wait estimates: a range, learned from the counters' recent service times.

Wait for a consumer with ``ahead`` people of the same service before them, with ``c`` open
counters serving that service and service times of mean ``m`` and spread ``s``:

    p50 = ahead * m / c
    p90 = (ahead * m + 1.2816 * sqrt(ahead + 1) * s) / c

p50 is the design's rule (people ahead x mean service time / open counters); p90 adds the
90th-percentile spread of the sum of ahead + 1 service times (normal approximation), so a board
shows a range rather than a falsely precise number. The mean and spread are exponentially
weighted moving averages over completed tokens, seeded by the scenario's figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

Z90 = 1.2816


@dataclass(frozen=True, slots=True)
class ServiceTimeSeed:
    mean_s: float
    sd_s: float


@dataclass(frozen=True, slots=True)
class Estimate:
    """Seconds until service starts, as a range; None when no open counter serves it."""

    p50_s: float | None
    p90_s: float | None
    ahead: int
    counters: int


class ServiceTimes:
    """EWMA of how long a counter is occupied per token (called to finished), per service."""

    def __init__(self, seeds: Mapping[str, ServiceTimeSeed], alpha: float = 0.1) -> None:
        self.alpha = alpha
        self._mean = {name: seed.mean_s for name, seed in seeds.items()}
        self._var = {name: seed.sd_s ** 2 for name, seed in seeds.items()}
        self.samples: dict[str, int] = {name: 0 for name in seeds}

    def observe(self, service: str, seconds: float) -> None:
        if seconds <= 0 or service not in self._mean:
            return
        mean, var = self._mean[service], self._var[service]
        diff = seconds - mean
        self._mean[service] = mean + self.alpha * diff
        self._var[service] = (1 - self.alpha) * (var + self.alpha * diff * diff)
        self.samples[service] += 1

    def mean(self, service: str) -> float:
        return self._mean.get(service, 0.0)

    def sd(self, service: str) -> float:
        return math.sqrt(self._var.get(service, 0.0))


def estimate_wait(ahead: int, counters: int, mean_s: float, sd_s: float) -> Estimate:
    if counters <= 0:
        return Estimate(None, None, ahead, 0)
    p50 = ahead * mean_s / counters
    p90 = (ahead * mean_s + Z90 * math.sqrt(ahead + 1) * sd_s) / counters
    return Estimate(round(p50, 1), round(p90, 1), ahead, counters)
