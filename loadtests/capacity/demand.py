"""Demand: how many consumers come to the counters on each working day, when, and where.

Every figure comes from the scenario's ``[demand]`` table or a flag. The reference figures
(``REQUIRED``, all in the built-in scenario) have no default in code: a scenario without them is
refused. The simulator's own assumptions (``DEFAULTS``) have defaults, used only when neither
the scenario nor a flag sets them; the report says where each figure came from. The month's
counter payments are

    connections x paying_share x (1 - online_share)

spread over the working days, the last ``last_week_working_days`` of them carrying
``last_week_share_of_counter_payments`` of the month. Within a day, arrivals are a Poisson
process whose rate follows ``intraday_profile`` (relative weights of equal slices of the opening
hours: morning surge, lunch dip, afternoon surge). Consumers choose a substation by
``substation_weights`` (1 for any not named): splitting a Poisson stream by independent choices
gives each substation its own Poisson stream, so each is drawn on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from counter_server.config import Scenario


class DemandError(ValueError):
    """A demand figure that cannot be used; the message names the key or flag."""


# [demand] keys every scenario must have (or a flag must give); the online share comes from
# online_share or, failing that, online_payments_per_month.
REQUIRED = ("connections", "paying_share", "working_days_per_month", "last_week_working_days",
            "last_week_share_of_counter_payments")

# [demand] keys this simulator adds, with the value used when neither scenario nor flag sets one.
DEFAULTS: dict[str, Any] = {
    # Morning surge, lunch dip, afternoon surge over 8 equal slices of the opening hours.
    "intraday_profile": [0.9, 1.4, 1.3, 1.0, 0.6, 1.1, 1.2, 0.7],
    # Share of consumers sent home (at closing or at the door) who come back the next working day.
    "come_back_share": 1.0,
    # Refused at the door: share who pay online instead of coming back.
    "door_online_accept": 0.5,
    # Shown the "pay online" hint: share who pay online instead of joining the line.
    "online_hint_uptake": 0.25,
    # Bounded service times (min..max with the service's mean) or exponential (mean only).
    "service_time_distribution": "bounded",
    # Share of the last week's fresh counter payers who book a slot from their phone instead of
    # walking in (0: nobody, today; the booking what-if tries others) ...
    "booking_share": 0.0,
    # ... and earlier in the month, this fraction of that share (0: only those facing the last
    # week's lines book; 1: everyone alike, so early bookers, who have no line to avoid, take
    # slots first).
    "booking_early_factor": 0.0,
    # The server's slot rules (defaults: the scenario's [phones], see FROM_PHONES): bookings
    # take at most this share of the counters' time, in slots this long from opening until this
    # long before closing ...
    "booking_share_of_counter_time": 0.25,
    "booking_slot_minutes": 15,
    "booking_last_slot_before_close_minutes": 60,
    # ... on days up to this many working days before the day one would have come
    # (default: [phones] booking_days calendar days in working days).
    "booking_horizon_days": 10,
    # Which day of the horizon the slot screen offers: "earliest" with a free slot, or
    # "quietest" (most free slots).
    "booking_day_choice": "earliest",
    # People leave (see docs/peak.md, "People who leave"). Reneging: a person in line gives up
    # when their patience runs out, patience exponential with this mean (0: nobody gives up).
    "patience_mean_minutes": 60,
    # Balking: a person who sees the shown wait (people ahead x mean service / counters, the
    # boards' figure) goes home at once with probability shown wait / this, all of them at or
    # past it (linear discouragement; 0: nobody balks).
    "balk_wait_minutes": 240,
    # Billing cycles: accounts split into this many groups by account number, their due dates
    # spread evenly over the month, each group paying as today's month pays before month-end.
    "due_date_cycles": 1,
}


# Booking figures whose default is the server's own setting in the scenario's [phones] table.
FROM_PHONES = {"booking_share_of_counter_time": "booking_share",
               "booking_slot_minutes": "slot_minutes",
               "booking_last_slot_before_close_minutes": "last_slot_before_close_minutes",
               "booking_horizon_days": "booking_days"}
CALENDAR_DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True)
class DemandParams:
    """The month's demand, after scenario keys and flags are applied."""

    connections: float
    paying_share: float
    online_share: float
    working_days: int
    last_week_days: int
    last_week_share: float
    intraday_profile: tuple[float, ...]
    come_back_share: float
    door_online_accept: float
    online_hint_uptake: float
    service_time_distribution: str
    payment_service: str
    substation_weights: Mapping[str, float] = field(default_factory=dict)
    visits_per_day: Mapping[str, float] = field(default_factory=dict)
    booking_share: float = 0.0
    booking_early_factor: float = 0.0
    booking_share_of_counter_time: float = 0.25
    booking_slot_s: float = 900.0
    booking_last_slot_before_close_s: float = 3600.0
    booking_horizon_days: int = 10
    booking_day_choice: str = "earliest"
    patience_mean_s: float = 0.0      # 0: nobody gives up in line
    balk_wait_s: float = 0.0          # 0: nobody balks at the shown wait
    due_date_cycles: int = 1

    @property
    def impatient(self) -> bool:
        """Whether anybody leaves the line of their own accord (reneging or balking)."""
        return self.patience_mean_s > 0 or self.balk_wait_s > 0

    @property
    def payments_per_month(self) -> float:
        return self.connections * self.paying_share

    @property
    def counter_payments_per_month(self) -> float:
        return self.payments_per_month * (1.0 - self.online_share)

    def counter_payments_on(self, day: int) -> float:
        """Expected counter payments city-wide on working day ``day`` (1-based).

        With ``due_date_cycles`` K above 1, accounts fall in K equal groups, group k due
        round(k x working_days / K) working days before month-end; each group pays over the
        working days before its due date as the month pays today before month-end (the last
        week's share in the last week before it), wrapping round the month.
        """
        month = self.counter_payments_per_month
        k = self.due_date_cycles
        if k <= 1:
            return month * self._share_on(day)
        n = self.working_days
        return month / k * sum(self._share_on((day - 1 + round(i * n / k)) % n + 1) for i in range(k))

    def _share_on(self, day: int) -> float:
        """Today's share of the month's counter payments on ``day``: one due date, month-end."""
        if self.is_last_week(day):
            return self.last_week_share / self.last_week_days
        return (1.0 - self.last_week_share) / (self.working_days - self.last_week_days)

    def month_end_share(self) -> float:
        """The last week's share of the month's counter payments under these cycles."""
        days = range(self.working_days - self.last_week_days + 1, self.working_days + 1)
        return sum(self.counter_payments_on(d) for d in days) / max(self.counter_payments_per_month, 1e-12)

    def is_last_week(self, day: int) -> bool:
        return day > self.working_days - self.last_week_days

    def with_changes(self, **changes: Any) -> DemandParams:
        """A copy with some figures replaced, checked again (what-if runs use this)."""
        return _checked(replace(self, **changes))


def demand_from_scenario(scenario: Scenario, overrides: Mapping[str, Any] | None = None) -> DemandParams:
    """Demand figures from ``scenario.demand``, then ``overrides`` (flags; None means unset)."""
    raw = dict(scenario.demand)
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}

    def get(key: str) -> Any:
        if key in flags:
            return flags[key]
        if key in raw:
            return raw[key]
        if key in FROM_PHONES:
            return phones_default(scenario, key)
        if key in DEFAULTS:
            return DEFAULTS[key]
        raise DemandError(f"demand.{key}: missing; set it in the scenario's [demand] table "
                          "or with its flag")

    connections = _number(get("connections"), "connections")
    paying = _number(get("paying_share"), "paying_share")
    if "online_share" in flags:
        online = _number(flags["online_share"], "online_share")
    elif "online_share" in raw:
        online = _number(raw["online_share"], "demand.online_share")
    else:
        # The reported online payments as a share of the month's payments (22.8 % in Kanpur).
        if "online_payments_per_month" not in raw:
            raise DemandError("demand.online_payments_per_month: missing; set it or online_share "
                              "in the scenario's [demand] table, or use --online-share")
        online_payments = _number(raw["online_payments_per_month"], "online_payments_per_month")
        online = online_payments / (connections * paying) if connections * paying > 0 else 0.0
        if online > 1:
            raise DemandError(f"online_payments_per_month: {online_payments:g} is more than the "
                              f"month's payments ({connections * paying:g} = connections x "
                              "paying_share); lower it or set online_share")
    payment = flags.get("payment_service", scenario.payment_service)
    if payment is None:
        raise DemandError("payment_service: the scenario's [demand] names no payment_service; "
                          "give --payment-service SERVICE")
    weights = _table(flags.get("substation_weights", raw.get("substation_weights", {})),
                     "substation_weights", scenario.substations)
    visits = _table(flags.get("visits_per_day", raw.get("visits_per_day", {})),
                    "visits_per_day", scenario.services)
    if payment not in scenario.services:
        raise DemandError(f"payment_service: unknown service {payment!r}")
    if payment in visits:
        raise DemandError(f"visits_per_day: {payment!r} is the payment service; its demand comes "
                          "from connections, paying_share and online_share")
    return _checked(DemandParams(
        connections=connections,
        paying_share=paying,
        online_share=online,
        working_days=int(_number(get("working_days_per_month"), "working_days_per_month")),
        last_week_days=int(_number(get("last_week_working_days"), "last_week_working_days")),
        last_week_share=_number(get("last_week_share_of_counter_payments"),
                                "last_week_share_of_counter_payments"),
        intraday_profile=tuple(_number(w, "intraday_profile") for w in get("intraday_profile")),
        come_back_share=_number(get("come_back_share"), "come_back_share"),
        door_online_accept=_number(get("door_online_accept"), "door_online_accept"),
        online_hint_uptake=_number(get("online_hint_uptake"), "online_hint_uptake"),
        service_time_distribution=str(get("service_time_distribution")),
        payment_service=payment,
        substation_weights=weights,
        visits_per_day=visits,
        booking_share=_number(get("booking_share"), "booking_share"),
        booking_early_factor=_number(get("booking_early_factor"), "booking_early_factor"),
        booking_share_of_counter_time=_number(get("booking_share_of_counter_time"),
                                              "booking_share_of_counter_time"),
        booking_slot_s=_number(get("booking_slot_minutes"), "booking_slot_minutes") * 60.0,
        booking_last_slot_before_close_s=_number(get("booking_last_slot_before_close_minutes"),
                                                 "booking_last_slot_before_close_minutes") * 60.0,
        booking_horizon_days=int(_number(get("booking_horizon_days"), "booking_horizon_days")),
        booking_day_choice=str(get("booking_day_choice")),
        patience_mean_s=_number(get("patience_mean_minutes"), "patience_mean_minutes") * 60.0,
        balk_wait_s=_number(get("balk_wait_minutes"), "balk_wait_minutes") * 60.0,
        due_date_cycles=int(_number(get("due_date_cycles"), "due_date_cycles")),
    ))


def phones_default(scenario: Scenario, key: str) -> Any:
    """A booking figure from the server's [phones] settings; the horizon, which the server
    counts in calendar days, in working days (a month's working days over its calendar days)."""
    value = getattr(scenario.phones, FROM_PHONES[key])
    if key == "booking_horizon_days":
        working = scenario.demand.get("working_days_per_month", 26)
        return int(value * working / CALENDAR_DAYS_PER_MONTH)
    return value


def _checked(p: DemandParams) -> DemandParams:
    for name in ("paying_share", "online_share", "last_week_share", "come_back_share",
                 "door_online_accept", "online_hint_uptake", "booking_share",
                 "booking_early_factor", "booking_share_of_counter_time"):
        value = getattr(p, name)
        if not 0.0 <= value <= 1.0:
            raise DemandError(f"{name}: must be between 0 and 1, got {value}")
    if p.connections < 0:
        raise DemandError("connections: must be 0 or more")
    if p.working_days < 1 or not 0 <= p.last_week_days < p.working_days:
        raise DemandError("working_days_per_month must be 1 or more and last_week_working_days "
                          "between 0 and one less than it")
    if p.last_week_days == 0 and p.last_week_share > 0:
        raise DemandError("last_week_share_of_counter_payments: needs last_week_working_days > 0")
    if not p.intraday_profile or min(p.intraday_profile) < 0 or sum(p.intraday_profile) <= 0:
        raise DemandError("intraday_profile: needs one or more weights, 0 or more, not all 0")
    if p.booking_slot_s <= 0 or p.booking_horizon_days < 0 or p.booking_last_slot_before_close_s < 0:
        raise DemandError("booking_slot_minutes must be above 0, booking_horizon_days and "
                          "booking_last_slot_before_close_minutes 0 or more")
    if p.booking_day_choice not in ("earliest", "quietest"):
        raise DemandError("booking_day_choice: must be \"earliest\" or \"quietest\"")
    if p.patience_mean_s < 0 or p.balk_wait_s < 0:
        raise DemandError("patience_mean_minutes and balk_wait_minutes: must be 0 (off) or more")
    if not 1 <= p.due_date_cycles <= p.working_days:
        raise DemandError(f"due_date_cycles: must be between 1 and working_days_per_month "
                          f"({p.working_days}), got {p.due_date_cycles}")
    if p.service_time_distribution not in ("bounded", "exponential"):
        raise DemandError("service_time_distribution: must be \"bounded\" or \"exponential\"")
    return p


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DemandError(f"{where}: must be a number, got {value!r}")
    return float(value)


def _table(value: Any, where: str, known: Mapping[str, Any]) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise DemandError(f"{where}: must be a table of name = number")
    table = {}
    for key, number in value.items():
        if key not in known:
            raise DemandError(f"{where}.{key}: unknown; known: {', '.join(known)}")
        table[key] = _number(number, f"{where}.{key}")
        if table[key] < 0:
            raise DemandError(f"{where}.{key}: must be 0 or more")
    return table


@dataclass(frozen=True)
class ArrivalBatch:
    """One substation's arrivals for one day, sorted by time (seconds since midnight).

    ``u_hint`` and ``u_door`` are each consumer's own uniform draws for the policy decisions,
    drawn with the arrival so every policy sees the same consumers decide the same way. Arrays
    (or lists) of equal length; ``services`` holds service indices. Booked consumers arrive at
    their slot's start and pass neither the hint nor the door: they are expected.
    """

    times: Sequence[float]
    services: Sequence[int]
    service_s: Sequence[float]
    u_hint: Sequence[float]
    u_door: Sequence[float]
    returning: int = 0
    booked: Sequence[bool] | None = None   # True: came at their slot's start (None: nobody)
    # Each consumer's patience in line (s; inf: never gives up) and uniform draw for balking;
    # None when nobody leaves of their own accord (then the draws are not made at all).
    patience_s: Sequence[float] | None = None
    u_balk: Sequence[float] | None = None


def arrival_times(rng: np.random.Generator, count: int, opens_s: float, closes_s: float,
                  profile: Sequence[float]) -> np.ndarray:
    """``count`` sorted arrival times over the opening hours, rate proportional to ``profile``.

    Given the day's Poisson count, a Poisson process's times are independent draws from the
    rate's density; sorted uniforms (normalised sums of exponential gaps, no sort needed) pushed
    through the inverse of the piecewise-linear cumulative profile give them in order.
    """
    weights = np.asarray(profile, dtype=float)
    edges = np.concatenate(([0.0], np.cumsum(weights))) / weights.sum()
    gaps = rng.standard_exponential(count + 1).cumsum()
    u = gaps[:-1] / gaps[-1]
    span = np.arange(len(weights) + 1) * ((closes_s - opens_s) / len(weights))
    return opens_s + np.interp(u, edges, span)
