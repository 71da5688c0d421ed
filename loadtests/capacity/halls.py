"""Advice per hall: the counters each hall needs on each last-week day, and the cheapest city plan.

Halls differ (their weights, hours and counters), so one number for every hall over- or
under-staffs some. For each hall, day by day through the last week, the fewest counters that keep
that day's p90 wait of the served under the target, at today's online share: a hall's consumers
keep their hall, so each hall is worked out on its own, those it sends home coming back the next
day to it. The week starts with nobody coming back, as the what-if runs do.

The city plan then moves counters (their cashiers) between halls day by day and opens extra ones
only on the days the halls together need more than the city has; its cost is the extra
counter-days, beside what opening one number everywhere, or each hall its own week's most
without moving anyone, would cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .demand import ArrivalBatch
from .model import Layout, run_day
from .month import MonthPlan, coming_back, fresh_means, make_batch
from .policies import DoorWaits, Policy

MOST_PER_HALL_FACTOR = 4   # counters tried per hall: up to this many times today's


@dataclass(frozen=True)
class HallWeek:
    """One hall's last week under one policy: counters needed and the p90 they give, per day."""

    policy: str
    substation: str
    today: int
    days: tuple[int, ...]
    needed: tuple[int, ...]       # fewest counters whose p90 is under the target (or the most tried)
    p90_s: tuple[float, ...]
    met: tuple[bool, ...]         # False: even the most tried did not meet the target


@dataclass(frozen=True)
class HallJob:
    """A pool job: one hall's week under one policy."""

    plan: MonthPlan
    policy: Policy
    seed: int
    where: int
    target_s: float

    @property
    def cost(self) -> float:
        return 0.02 * len(last_week_days(self.plan))

    def run(self) -> HallWeek:
        return hall_week(self.plan, self.policy, self.seed, self.where, self.target_s)


def last_week_days(plan: MonthPlan) -> list[int]:
    return [d for d in plan.days if plan.demand.is_last_week(d)]


def with_counters(layout: Layout, n: int) -> Layout:
    """The hall with ``n`` counters: its own counters repeated in order (as ``layouts`` does)."""
    own = layout.counters
    return Layout(layout.substation, layout.opens_s, layout.closes_s,
                  tuple(own[k % len(own)] for k in range(n)))


def hall_week(plan: MonthPlan, policy: Policy, seed: int, where: int, target_s: float) -> HallWeek:
    """Day by day, the fewest counters keeping the day's p90 under ``target_s``; searched from
    the day before's answer, up while short of the target and down while still meeting it."""
    layout = plan.layouts[where]
    today = len(layout.counters)
    most = max(1, MOST_PER_HALL_FACTOR * today)
    door_waits = DoorWaits()
    back: dict[int, int] = {}
    days = last_week_days(plan)
    needed, p90s, met = [], [], []
    guess = today

    def run(batch: ArrivalBatch, n: int):
        out = run_day(with_counters(layout, n), plan.services, batch, policy, plan.payment,
                      door_waits=door_waits, balk_wait_s=plan.demand.balk_wait_s)
        p90 = float(np.percentile(out.waits, 90)) if out.waits else 0.0
        return out, p90

    for day in days:
        tried: dict[int, tuple] = {}
        batch = make_batch(plan, where, day, seed, fresh_means(plan, day)[where], back)

        def at(n: int):
            if n not in tried:
                tried[n] = run(batch, n)
            return tried[n]

        n = guess
        if at(n)[1] < target_s:
            while n > 1 and at(n - 1)[1] < target_s:
                n -= 1
        else:
            while n < most and at(n)[1] >= target_s:
                n += 1
        out, p90 = at(n)
        needed.append(n)
        p90s.append(p90)
        met.append(p90 < target_s)
        back = coming_back(plan, seed, day, where, out.sent_home)
        guess = n
    return HallWeek(policy.name, layout.substation, today, tuple(days), tuple(needed),
                    tuple(p90s), tuple(met))


@dataclass(frozen=True)
class CityPlan:
    """One policy's halls together: the cheapest plan and what simpler ones would cost."""

    policy: str
    halls: tuple[HallWeek, ...]
    counters_now: int                 # the city's counters today
    moved: tuple[int, ...]            # per day: counters moved from halls with some to spare
    extra: tuple[int, ...]            # per day: extra counters opened (none to move)
    same_everywhere: int              # counters per hall if every hall had one number all week
    same_extra_days: int              # that plan's extra counter-days
    own_most_extra_days: int          # each hall its week's most, nobody moved: extra counter-days

    @property
    def extra_days(self) -> int:
        return sum(self.extra)

    @property
    def needed_per_day(self) -> tuple[int, ...]:
        return tuple(sum(h.needed[k] for h in self.halls) for k in range(len(self.halls[0].days)))


def city_plan(weeks: Sequence[HallWeek]) -> CityPlan:
    """The cheapest plan in counter-days: each day, halls with counters to spare lend them to
    halls short of them, and only what the city lacks that day is opened extra."""
    weeks = tuple(weeks)
    n_days = len(weeks[0].days)
    now = sum(h.today for h in weeks)
    moved, extra = [], []
    for k in range(n_days):
        short = sum(max(0, h.needed[k] - h.today) for h in weeks)
        spare = sum(max(0, h.today - h.needed[k]) for h in weeks)
        moved.append(min(short, spare))
        extra.append(max(0, short - spare))
    same = max(max(h.needed) for h in weeks)
    same_extra = n_days * sum(max(0, same - h.today) for h in weeks)
    own = n_days * sum(max(0, max(h.needed) - h.today) for h in weeks)
    return CityPlan(weeks[0].policy, weeks, now, tuple(moved), tuple(extra), same, same_extra, own)
