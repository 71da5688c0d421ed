"""A month of working days: fresh arrivals each day, plus those sent home the day before.

Random numbers come from one stream per (seed, purpose, day, substation), so a run is repeatable
and every policy faces the same fresh consumers with the same service times and the same coin
flips; only the people coming back differ, because each policy sends different people home.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from counter_server.config import Scenario

from .demand import ArrivalBatch, DemandParams, arrival_times
from .model import DayOutcome, Layout, ServiceTime, index_of, layouts, run_day, service_times
from .policies import Policy

FRESH, BACK, RETURNS = 0, 1, 2   # purposes of the random streams


@dataclass(frozen=True)
class MonthPlan:
    """Everything a run needs besides the policy and the seed: built once, shared by runs."""

    demand: DemandParams
    layouts: tuple[Layout, ...]
    services: tuple[ServiceTime, ...]
    days: tuple[int, ...]              # working days to simulate (1-based, in order)
    sample_step_s: float = 300.0

    @property
    def payment(self) -> int:
        return index_of(self.services)[self.demand.payment_service]

    @property
    def sample_times(self) -> list[float]:
        """Clock times the line is recorded at: from the earliest opening to the latest closing."""
        start = min(lay.opens_s for lay in self.layouts)
        end = max(lay.closes_s for lay in self.layouts)
        return np.arange(start, end + self.sample_step_s / 2, self.sample_step_s).tolist()

    def weights(self) -> np.ndarray:
        """Each substation's share of the consumers (weights not given count 1)."""
        raw = np.array([self.demand.substation_weights.get(lay.substation, 1.0) for lay in self.layouts])
        if raw.sum() <= 0:
            raise ValueError("substation_weights: at least one substation needs a weight above 0")
        return raw / raw.sum()


def make_plan(scenario: Scenario, demand: DemandParams, days: int | None = None,
              counters_per_substation: int | None = None, sample_step_s: float = 300.0) -> MonthPlan:
    """A plan for the last ``days`` working days of the month (all of them when None)."""
    n = demand.working_days if days is None else days
    if not 1 <= n <= demand.working_days:
        raise ValueError(f"days: must be between 1 and {demand.working_days}, got {n}")
    if sample_step_s <= 0:
        raise ValueError("sample step must be above 0")
    if counters_per_substation is not None and counters_per_substation < 1:
        raise ValueError("counters per substation: must be 1 or more")
    first = demand.working_days - n + 1
    plan = MonthPlan(
        demand=demand,
        layouts=layouts(scenario, counters_per_substation),
        services=service_times(scenario, demand.service_time_distribution),
        days=tuple(range(first, demand.working_days + 1)),
        sample_step_s=sample_step_s,
    )
    plan.weights()  # refuse weights that send nobody anywhere now, not in the middle of a run
    return plan


@dataclass
class DayStats:
    """One day, all substations together: a row of the per-day table."""

    day: int
    last_week: bool
    arrivals: int
    returning: int
    served: int
    turned_away_closing: int
    refused_at_door: int
    online_hint: int
    online_door: int
    longest_queue: int
    wait_p50_s: float
    wait_p90_s: float
    lost_hours: float       # time in line of those turned away at closing


@dataclass
class MonthResult:
    """A policy's month: the table rows, and what the plots need."""

    policy: Policy
    days: list[DayStats] = field(default_factory=list)
    waits: dict[int, np.ndarray] = field(default_factory=dict)        # day -> waits (s)
    queues: dict[int, np.ndarray] = field(default_factory=dict)       # day -> (substation, sample)
    unpaid_at_month_end: int = 0

    def last_week(self) -> list[DayStats]:
        return [d for d in self.days if d.last_week]

    def last_week_waits(self) -> np.ndarray:
        chosen = [self.waits[d.day] for d in self.last_week()]
        return np.concatenate(chosen) if chosen else np.zeros(0)

    def last_week_p90_s(self) -> float:
        waits = self.last_week_waits()
        return float(np.percentile(waits, 90)) if len(waits) else 0.0

    def total(self, name: str, last_week_only: bool = False) -> int | float:
        rows = self.last_week() if last_week_only else self.days
        return sum(getattr(d, name) for d in rows)


def _rng(seed: int, purpose: int, day: int, where: int) -> np.random.Generator:
    return np.random.default_rng([seed, purpose, day, where])


def make_batch(plan: MonthPlan, where: int, day: int, seed: int, fresh: Sequence[float],
               back: dict[int, int]) -> ArrivalBatch:
    """One substation's arrivals: Poisson counts of fresh consumers per service, plus ``back``.

    Fresh consumers come from their own random stream, so they are the same whoever came back.
    """
    layout = plan.layouts[where]
    rng_fresh = _rng(seed, FRESH, day, where)
    rng_back = _rng(seed, BACK, day, where)
    groups = []
    for rng, counts in ((rng_fresh, [int(rng_fresh.poisson(m)) for m in fresh]),
                        (rng_back, [back.get(s, 0) for s in range(len(plan.services))])):
        for s, count in enumerate(counts):
            if count:
                groups.append((s, arrival_times(rng, count, layout.opens_s, layout.closes_s,
                                                plan.demand.intraday_profile),
                               plan.services[s].draw(rng, count), rng.random(count), rng.random(count)))
    returning = sum(back.values())
    if not groups:
        empty = np.zeros(0)
        return ArrivalBatch(empty, np.zeros(0, dtype=int), empty, empty, empty, 0)
    if len(groups) == 1:
        s, times, lengths, u_hint, u_door = groups[0]
        return ArrivalBatch(times, np.full(len(times), s), lengths, u_hint, u_door, returning)
    times = np.concatenate([g[1] for g in groups])
    order = np.argsort(times, kind="stable")  # a merge of already sorted runs
    kinds = np.concatenate([np.full(len(g[1]), g[0]) for g in groups])
    lengths, u_hint, u_door = (np.concatenate([g[k] for g in groups])[order] for k in (2, 3, 4))
    return ArrivalBatch(times[order], kinds[order], lengths, u_hint, u_door, returning)


def fresh_means(plan: MonthPlan, day: int) -> np.ndarray:
    """Expected fresh arrivals per (substation, service) on ``day``."""
    weights = plan.weights()
    per_service = np.zeros(len(plan.services))
    per_service[plan.payment] = plan.demand.counter_payments_on(day)
    for sid, visits in plan.demand.visits_per_day.items():
        per_service[index_of(plan.services)[sid]] = visits
    return np.outer(weights, per_service)


def simulate_month(plan: MonthPlan, policy: Policy, seed: int) -> MonthResult:
    """Run the plan's days under ``policy``, day by day, those sent home coming back next day."""
    result = MonthResult(policy=policy)
    back: list[dict[int, int]] = [{} for _ in plan.layouts]
    sample_times = plan.sample_times
    payment = plan.payment
    for day in plan.days:
        means = fresh_means(plan, day)
        outcomes: list[DayOutcome] = []
        for where, layout in enumerate(plan.layouts):
            batch = make_batch(plan, where, day, seed, means[where], back[where])
            outcomes.append(run_day(layout, plan.services, batch, policy, payment, sample_times))
        back = [_coming_back(plan, seed, day, where, o.sent_home) for where, o in enumerate(outcomes)]
        result.days.append(_day_stats(plan, day, outcomes))
        waits = np.concatenate([np.asarray(o.waits, dtype=np.float32) for o in outcomes])
        result.waits[day] = waits
        result.queues[day] = np.array([o.queue_samples for o in outcomes], dtype=np.int32)
    result.unpaid_at_month_end = sum(sum(b.values()) for b in back)
    return result


def _coming_back(plan: MonthPlan, seed: int, day: int, where: int,
                 sent_home: dict[int, int]) -> dict[int, int]:
    share = plan.demand.come_back_share
    if share >= 1.0:
        return dict(sent_home)
    rng = _rng(seed, RETURNS, day, where)
    return {s: int(rng.binomial(n, share)) for s, n in sorted(sent_home.items())}


def _day_stats(plan: MonthPlan, day: int, outcomes: Sequence[DayOutcome]) -> DayStats:
    waits = np.concatenate([np.asarray(o.waits) for o in outcomes]) if outcomes else np.zeros(0)
    has = len(waits) > 0
    return DayStats(
        day=day,
        last_week=plan.demand.is_last_week(day),
        arrivals=sum(o.arrivals for o in outcomes),
        returning=sum(o.returning for o in outcomes),
        served=sum(o.served for o in outcomes),
        turned_away_closing=sum(o.turned_away_closing for o in outcomes),
        refused_at_door=sum(o.refused_at_door for o in outcomes),
        online_hint=sum(o.online_hint for o in outcomes),
        online_door=sum(o.online_door for o in outcomes),
        longest_queue=max((o.max_queue for o in outcomes), default=0),
        wait_p50_s=float(np.percentile(waits, 50)) if has else 0.0,
        wait_p90_s=float(np.percentile(waits, 90)) if has else 0.0,
        lost_hours=sum(o.lost_s for o in outcomes) / 3600.0,
    )
