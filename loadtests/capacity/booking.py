"""Slot bookings from consumers' phones: how many slots there are, and who gets which.

The server's rules, mirrored here:

* a 15-minute slot at a substation holds floor(share x counters serving the service x slot
  seconds / mean service seconds) bookings (the server's own ``slot_capacity``; ``share`` is
  [phones] booking_share, 0.25), slots starting from opening until an hour before closing (the
  server's default plan); so bookings take at most that share of the counters' time and walk-ins
  keep the rest;
* a booked consumer arrives at the slot's start and is called before every walk-in once the
  slot has started (``model.event_loop``);
* the slot screen nudges bookers earlier in the month: a consumer who would have come on working
  day d books on the **earliest** day of d - horizon .. d with a free slot (the earliest moves
  people out of the last week, which is the point; ``quietest``, the day with the most free
  slots, earliest on a tie, is the other choice the what-if can try), at the free slot nearest the
  one holding the time of day they would have come (earlier first on a tie). No free slot:
  they walk in on day d as before.

Pure functions: the month (``month.book_month``) draws who books and builds the requests.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from counter_server.queueing.slots import slot_capacity  # the server's rule, not a copy

__all__ = ["Request", "assign_slots", "booked_per_slot", "slot_capacity", "slot_starts"]


def slot_starts(first_s: float, last_s: float, slot_s: float) -> np.ndarray:
    """Start times of slots every ``slot_s`` from ``first_s`` to ``last_s`` included, as the
    server's ``PhoneService.plan`` lays them out."""
    count = max(0, int((last_s - first_s) // slot_s) + 1) if last_s >= first_s else 0
    return first_s + slot_s * np.arange(count)


@dataclass(frozen=True)
class Request:
    """One consumer who wants to book: the day and time they would have walked in."""

    day: int
    time_s: float


DAY_CHOICES = ("earliest", "quietest")


def assign_slots(requests: Sequence[Request], days: Sequence[int], starts: np.ndarray,
                 capacity: int, horizon_days: int,
                 choice: str = "earliest") -> list[tuple[int, int] | None]:
    """Per request (taken in order of the day they would have come, then time), the (day, slot
    index) booked, or None when no slot was free on days d - horizon .. d of ``days``.

    Requests of earlier days book first: in the month they are made first, so later bookers
    find their slots gone, as on the server.
    """
    free = {d: [capacity] * len(starts) for d in days}
    free_at = {d: list(range(len(starts))) if capacity > 0 else [] for d in days}   # sorted
    open_days = {d: len(starts) * capacity for d in days}
    starts_list = starts.tolist()
    chosen: list[tuple[int, int] | None] = [None] * len(requests)
    order = sorted(range(len(requests)), key=lambda k: (requests[k].day, requests[k].time_s))
    for k in order:
        want = requests[k]
        reach = range(want.day - horizon_days, want.day + 1)
        if choice == "earliest":
            day = next((d for d in reach if open_days.get(d, 0) > 0), None)
        else:
            window = [d for d in reach if open_days.get(d, 0) > 0]
            day = max(window, key=lambda d: (open_days[d], -d)) if window else None
        if day is None:
            continue
        near = _nearest_free(free_at[day], bisect_right(starts_list, want.time_s) - 1, len(starts))
        slots = free[day]
        slots[near] -= 1
        if not slots[near]:
            free_at[day].remove(near)
        open_days[day] -= 1
        chosen[k] = (day, near)
    return chosen


def _nearest_free(free_at: list[int], at: int, count: int) -> int:
    """The free slot nearest slot ``at`` (the one holding the time they would have come), of
    ``count`` slots, ``free_at`` the free ones in order: ``at`` itself, then the one before, the
    one after, two before, and so on."""
    if not free_at:
        raise ValueError("no free slot on a day counted as open")
    at = min(max(at, 0), count - 1)
    p = bisect_left(free_at, at)
    after = free_at[p] if p < len(free_at) else None
    if after == at or p == 0:
        return after
    before = free_at[p - 1]
    return before if after is None or at - before <= after - at else after


def booked_per_slot(chosen: Sequence[tuple[int, int] | None]) -> Mapping[tuple[int, int], int]:
    """(day, slot) -> bookings: what the tests hold against the capacity."""
    counts: dict[tuple[int, int], int] = {}
    for c in chosen:
        if c is not None:
            counts[c] = counts.get(c, 0) + 1
    return counts
