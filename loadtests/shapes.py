"""Load shapes for the peak rehearsals: how many consumers arrive at once, over a run.

The profile functions are pure (seconds in, arriving users out) so they are tested on their
own; the locust LoadTestShape classes are thin wrappers around them.
"""

from __future__ import annotations

import math

# An end-of-month day as shares of its peak arrival rate, hour by hour from opening (09:30):
# a morning surge, a lunch dip, an afternoon surge, a quiet last hour.
END_OF_MONTH_DAY = [0.55, 0.9, 1.0, 0.85, 0.45, 0.7, 0.95, 0.6]


def end_of_month(t: float, duration: float, peak_users: int) -> int:
    """Arriving consumers at ``t`` seconds into a run that squeezes one day into ``duration``."""
    if t >= duration:
        return 0
    hours = len(END_OF_MONTH_DAY)
    position = t / duration * hours
    hour = min(int(position), hours - 1)
    following = END_OF_MONTH_DAY[min(hour + 1, hours - 1)]
    share = END_OF_MONTH_DAY[hour] + (following - END_OF_MONTH_DAY[hour]) * (position - hour)
    return max(1, round(peak_users * share))


def stress(t: float, duration: float, base_users: int, factor: float = 10.0) -> int:
    """Ramp from the normal load to ``factor`` times it over the first 80 % of the run, hold."""
    if t >= duration:
        return 0
    ramp = min(1.0, t / (0.8 * duration))
    return max(1, math.ceil(base_users * (1 + (factor - 1) * ramp)))
