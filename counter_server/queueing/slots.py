"""Bookable slots, and when a consumer waiting at home should set off.

Slots move consumers from the month-end rush to quieter days without starving walk-ins: a
slot's capacity is a set share of the counters' time, so bookings never take more than that
share, and walk-ins keep the rest however many book.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .estimate import Estimate


@dataclass(frozen=True, slots=True)
class SlotPlan:
    """The slots ops publish for one substation and day: ``count`` slots of ``slot_s``
    seconds from ``first_at``, each taking at most ``capacity`` bookings."""

    first_at: float
    slot_s: int
    count: int
    capacity: int
    share: float = 0.0

    def starts(self) -> list[float]:
        return [self.first_at + i * self.slot_s for i in range(self.count)]

    def offers(self, slot_at: float) -> bool:
        index = (slot_at - self.first_at) / self.slot_s
        return 0 <= index < self.count and index == int(index)

    def as_dict(self) -> dict[str, float | int]:
        return {"first_at": self.first_at, "slot_s": self.slot_s, "count": self.count,
                "capacity": self.capacity, "share": self.share}

    @classmethod
    def from_dict(cls, raw: dict) -> SlotPlan:
        return cls(float(raw["first_at"]), int(raw["slot_s"]), int(raw["count"]), int(raw["capacity"]),
                   float(raw.get("share", 0.0)))


def slot_capacity(share: float, open_counters: int, slot_s: float, mean_service_s: float) -> int:
    """Bookings one slot may take so that they use at most ``share`` of the counters' time.

    ``open_counters`` counters serve ``open_counters * slot_s / mean_service_s`` consumers in a
    slot; rounding down keeps bookings within their share.
    """
    if share <= 0 or open_counters <= 0 or mean_service_s <= 0:
        return 0
    return math.floor(share * open_counters * slot_s / mean_service_s)


LEAVE_MARGIN_S = 5 * 60   # arrive a little before the earliest likely call


@dataclass(frozen=True, slots=True)
class LeaveAdvice:
    """``leave_in_s`` 0 means "leave now"; None when no estimate can be made (no open counter)."""

    leave_in_s: float | None
    leave_now: bool


def leave_advice(estimate: Estimate | None, travel_s: float, called: bool = False) -> LeaveAdvice:
    """When a consumer ``travel_s`` away should set off so as not to miss their call.

    The p50 wait is the earliest likely call (half of tokens wait longer); leaving ``travel_s``
    plus a margin before it brings most consumers in before they are called. A token already
    called means now.
    """
    if called:
        return LeaveAdvice(0.0, True)
    if estimate is None or estimate.p50_s is None:
        return LeaveAdvice(None, False)
    leave_in = max(0.0, estimate.p50_s - travel_s - LEAVE_MARGIN_S)
    return LeaveAdvice(round(leave_in, 1), leave_in == 0.0)
