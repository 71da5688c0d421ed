"""A plan run: the month's last days with the counters ops choose per hall, for the ops page.

Where ``peak-sim`` sweeps what-ifs over every core for half a minute, a plan is one focused
run of the figures ops pick (counters per hall, online share, booking share, due-date cycles),
under the server's own door rule and the same days with no policy beside it, then the advice per
hall at those figures: a few seconds in one process, so the server can run it in a worker and
show the per-hall table and the plots in the page. Progress is reported as the run goes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from counter_server.config import Scenario

from . import report
from .demand import DemandParams, demand_from_scenario
from .halls import HallJob, HallWeek, last_week_days, with_counters
from .model import DayOutcome
from .month import FreshArrivals, MonthPlan, MonthResult, book_month, make_plan, simulate_month
from .policies import Policy, make_policy

MOST_COUNTERS = 60          # per hall: a plan asking for more is a typing slip, not a plan
PLOTS = {name: report.PLOTS[name] for name in ("queue", "waits", "halls")}   # what a plan draws
SEED = 1
# Rough seconds of each part (what the progress goes by): one policy's day at one hall, one
# hall's advice for one last-week day (several runs of it), one plot.
DAY_COST, HALL_DAY_COST, PLOT_COST = 0.002, 0.004, 0.3


class PlanInputError(ValueError):
    """A plan figure that cannot be run; ``field`` names it as the request did."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class PlanInputs:
    """Every figure of a plan, checked: counters for each hall that has any, in scenario order."""

    counters: Mapping[str, int]
    online_share: float
    booking_share: float
    due_date_cycles: int
    days: int

    def as_json(self) -> dict[str, Any]:
        return {"counters": dict(self.counters), "online_share": self.online_share,
                "booking_share": self.booking_share, "due_date_cycles": self.due_date_cycles,
                "days": self.days}


@dataclass(frozen=True)
class PlanLimits:
    """What a plan may ask for on this scenario, and the scenario's own figures (the defaults)."""

    defaults: PlanInputs
    hall_names: Mapping[str, str]     # the halls a plan sets counters for, by id
    working_days: int
    last_week_days: int
    most_counters: int = MOST_COUNTERS
    plots: tuple[str, ...] = tuple(PLOTS)

    def as_json(self) -> dict[str, Any]:
        halls = [{"id": sid, "name": self.hall_names[sid], "counters": n}
                 for sid, n in self.defaults.counters.items()]
        return {"defaults": self.defaults.as_json(), "halls": halls, "working_days": self.working_days,
                "last_week_days": self.last_week_days, "most_counters": self.most_counters,
                "plots": list(self.plots)}


def plan_limits(scenario: Scenario) -> PlanLimits:
    """The scenario's figures as a plan's defaults (a run of its last week); raises
    ``DemandError`` when its ``[demand]`` table cannot be simulated."""
    demand = demand_from_scenario(scenario)
    counters = {sid: len(sub.counters) for sid, sub in scenario.substations.items() if sub.counters}
    defaults = PlanInputs(counters, round(demand.online_share, 4), demand.booking_share,
                          demand.due_date_cycles, max(1, demand.last_week_days))
    names = {sid: scenario.substations[sid].name for sid in counters}
    return PlanLimits(defaults, names, demand.working_days, demand.last_week_days)


def checked_inputs(scenario: Scenario, counters: Mapping[str, int] | None = None,
                   online_share: float | None = None, booking_share: float | None = None,
                   due_date_cycles: int | None = None, days: int | None = None) -> PlanInputs:
    """The figures asked for over the scenario's (None: the scenario's), or ``PlanInputError``
    naming the first that cannot be run here."""
    limits = plan_limits(scenario)
    given = limits.defaults
    for hall, n in (counters or {}).items():
        field = f"counters.{hall}"
        if hall not in scenario.substations:
            raise PlanInputError(field, f"{field}: no hall {hall[:64]!r} in this scenario; its halls: "
                                        f"{', '.join(scenario.substations)}")
        if hall not in given.counters:
            raise PlanInputError(field, f"{field}: the hall has no counters in the scenario to repeat")
        if not 1 <= n <= MOST_COUNTERS:
            raise PlanInputError(field, f"{field}: between 1 and {MOST_COUNTERS} counters, not {n}")
    for name, value in (("online_share", online_share), ("booking_share", booking_share)):
        if value is not None and not 0 <= value <= 1:
            raise PlanInputError(name, f"{name}: a share between 0 and 1, not {value}")
    month = limits.working_days
    for name, value in (("due_date_cycles", due_date_cycles), ("days", days)):
        if value is not None and not 1 <= value <= month:
            raise PlanInputError(name, f"{name}: between 1 and the month's {month} working days "
                                       f"([demand] working_days_per_month), not {value}")
    return PlanInputs(
        counters={**given.counters, **(counters or {})},
        online_share=given.online_share if online_share is None else online_share,
        booking_share=given.booking_share if booking_share is None else booking_share,
        due_date_cycles=given.due_date_cycles if due_date_cycles is None else due_date_cycles,
        days=given.days if days is None else days,
    )


def plan_policies(scenario: Scenario, demand: DemandParams) -> tuple[Policy, Policy]:
    """The server's own rule (the online hint, and the door rule when the scenario starts with
    it on), then no policy at all beside it."""
    own = "door+hint" if scenario.policy.admission else "hint"
    return tuple(make_policy(name, door_estimate="p90", door_online_accept=demand.door_online_accept,
                             hint_after_s=scenario.online.hint_after_s,
                             hint_uptake=demand.online_hint_uptake) for name in (own, "none"))


def month_plan(scenario: Scenario, inputs: PlanInputs) -> MonthPlan:
    """The plan's days with each hall's counters as asked (its own counters repeated in order)."""
    demand = demand_from_scenario(scenario).with_changes(
        online_share=inputs.online_share, booking_share=inputs.booking_share,
        due_date_cycles=inputs.due_date_cycles)
    plan = make_plan(scenario, demand, inputs.days)
    layouts = tuple(with_counters(lay, inputs.counters[lay.substation]) if lay.substation in inputs.counters
                    else lay for lay in plan.layouts)
    return replace(plan, layouts=layouts)


class _HallFigures:
    """Each hall's own last-week figures from a month's days (``simulate_month``'s ``on_day``)."""

    def __init__(self, plan: MonthPlan) -> None:
        self.plan = plan
        self.waits: list[list[np.ndarray]] = [[] for _ in plan.layouts]
        self.turned_away = [0] * len(plan.layouts)
        self.served = [0] * len(plan.layouts)

    def add(self, day: int, outcomes: Sequence[DayOutcome]) -> None:
        if not self.plan.demand.is_last_week(day):
            return
        for where, o in enumerate(outcomes):
            self.waits[where].append(np.asarray(o.waits, dtype=float))
            self.turned_away[where] += o.turned_away_closing + o.refused_at_door + o.balked + o.reneged
            self.served[where] += o.served

    def p90_s(self, where: int) -> float | None:
        waits = np.concatenate(self.waits[where]) if self.waits[where] else np.zeros(0)
        return float(np.percentile(waits, 90)) if len(waits) else None


def run_plan(scenario: Scenario, inputs: PlanInputs, out: Path,
             progress: Callable[[float], None] = lambda done: None) -> dict[str, Any]:
    """Run the plan, draw its plots into ``out`` and give what the page shows, as JSON:
    per hall the counters, what each last-week day needs, the p90 wait and the turned away
    (last week, under the server's own rule), per policy the city's figures, the plots' names.
    ``progress(share done)`` is called as the run goes, from 0 to 1."""
    plan = month_plan(scenario, inputs)
    target_s = scenario.online.hint_after_s
    policies = plan_policies(scenario, plan.demand)
    week = last_week_days(plan)
    hall_jobs = [HallJob(plan, policies[0], SEED, where, target_s) for where in range(len(plan.layouts))
                 if week and plan.layouts[where].counters]
    plots = ["queue", "waits", "halls"] if week else ["queue"]
    halls_n = len(plan.layouts)
    total = (DAY_COST * halls_n * len(plan.days) * len(policies)
             + HALL_DAY_COST * len(week) * len(hall_jobs) + PLOT_COST * len(plots))
    spent = 0.0

    def step(cost: float) -> None:
        nonlocal spent
        spent += cost
        progress(min(spent / total, 0.99))

    progress(0.0)
    arrivals = FreshArrivals(plan, SEED)
    booked = book_month(plan, SEED, arrivals) if plan.demand.booking_share > 0 else None
    halls = _HallFigures(plan)
    months: list[MonthResult] = []
    for policy in policies:
        def on_day(day: int, outcomes: Sequence[DayOutcome], own: bool = policy is policies[0]) -> None:
            if own:
                halls.add(day, outcomes)
            step(DAY_COST * halls_n)
        months.append(simulate_month(plan, policy, SEED, booked, arrivals, on_day=on_day))
    weeks: list[HallWeek] = []
    for job in hall_jobs:
        weeks.append(job.run())
        step(HALL_DAY_COST * len(week))
    out.mkdir(parents=True, exist_ok=True)
    labels = {p.name: p.label for p in policies}
    for name in plots:
        path = out / PLOTS[name]
        if name == "queue":
            report.plot_queues(months, plan.sample_times, path)
        elif name == "waits":
            report.plot_waits(months, target_s, path)
        else:
            report.plot_halls(weeks, labels, target_s, path, have_words="planned",
                              share_words=f"online share {inputs.online_share:.0%}")
        step(PLOT_COST)
    result = _result(scenario, plan, policies, months, halls, weeks, plots, target_s)
    progress(1.0)
    return result


def _result(scenario: Scenario, plan: MonthPlan, policies: Sequence[Policy],
            months: Sequence[MonthResult], halls: _HallFigures, weeks: Sequence[HallWeek],
            plots: Sequence[str], target_s: float) -> dict[str, Any]:
    week_of = {w.substation: w for w in weeks}
    rows = []
    for where, lay in enumerate(plan.layouts):
        sub = scenario.substations[lay.substation]
        advice = week_of.get(lay.substation)
        rows.append({
            "substation": lay.substation, "name": sub.name,
            "counters": len(lay.counters), "scenario_counters": len(sub.counters),
            "needed": [{"day": d, "counters": n, "met": met}
                       for d, n, met in zip(advice.days, advice.needed, advice.met, strict=True)]
            if advice else [],
            "p90_wait_s": halls.p90_s(where), "turned_away": halls.turned_away[where],
            "served": halls.served[where],
        })
    city = [{"policy": m.policy.name, "label": m.policy.label,
             "p90_wait_s": m.last_week_p90_s() if m.last_week() else None,
             "turned_away": m.total("turned_away", last_week_only=True),
             "served": m.total("served", last_week_only=True),
             "arrivals": m.total("arrivals", last_week_only=True)} for m in months]
    return {
        "days": list(plan.days), "last_week_days": last_week_days(plan),
        "target_s": target_s, "policy": policies[0].name, "policy_label": policies[0].label,
        "halls": rows, "city": city, "plots": list(plots),
    }
