"""Runs: the policies side by side, and what-if runs with other counter numbers, online shares
or shares of consumers booking a slot.

Each run is one task (plan, policy, seed); tasks run in a process pool because each is
single-threaded Python and ops' machines have a few cores. Results do not depend on the number of
workers: every task seeds its own random streams.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace

from counter_server.config import Scenario

from .demand import DemandParams
from .month import MonthPlan, MonthResult, make_plan, simulate_month
from .policies import Policy

COUNTERS, ONLINE, BOOKING = "counters", "online", "booking"   # the what-if axes


@dataclass(frozen=True)
class Task:
    """One run: ``axis``/``x`` say which what-if point it is (None for the main runs), ``also``
    which other points the same run stands for (today's counters at today's online share is on
    both curves)."""

    plan: MonthPlan
    policy: Policy
    seed: int
    axis: str | None = None
    x: float = 0.0
    also: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class WhatIfPoint:
    """A what-if run in a few numbers: its last week, all substations together (the p90 wait is
    of walk-ins: the booked wait from their slot's start, over the whole run)."""

    axis: str
    x: float
    policy: str
    p90_wait_s: float
    turned_away_closing: int
    refused_at_door: int
    online_steered: int
    served: int
    booked_p90_s: float = 0.0
    bookings: int = 0       # consumers who wanted a slot, whole run
    unbooked: int = 0       # of them, those who found none free

    @property
    def turned_away(self) -> int:
        return self.turned_away_closing + self.refused_at_door


def whatif_tasks(scenario: Scenario, demand: DemandParams, policies: Sequence[Policy], seed: int,
                 days: int, counters: Iterable[int], online_shares: Iterable[float],
                 counters_per_substation: int | None = None, booking_shares: Iterable[float] = (),
                 booking_days: int | None = None) -> list[Task]:
    """Tasks for the what-if curves, each over the month's last ``days`` working days; a run
    that two curves need is made once. Booking runs cover ``booking_days`` (None: the whole
    month) instead: bookers move to earlier days, which a last-week replay would not have."""
    tasks: list[Task] = []

    def add(plan: MonthPlan, axis: str, x: float) -> None:
        for p in policies:
            same = next((k for k, t in enumerate(tasks) if t.plan == plan and t.policy == p), None)
            if same is None:
                tasks.append(Task(plan, p, seed, axis, x))
            else:
                tasks[same] = replace(tasks[same], also=(*tasks[same].also, (axis, x)))

    for n in counters:
        add(make_plan(scenario, demand, days, counters_per_substation=n), COUNTERS, float(n))
    for share in online_shares:
        add(make_plan(scenario, demand.with_changes(online_share=share), days,
                      counters_per_substation=counters_per_substation), ONLINE, float(share))
    for share in booking_shares:
        add(make_plan(scenario, demand.with_changes(booking_share=share), booking_days,
                      counters_per_substation=counters_per_substation), BOOKING, float(share))
    return tasks


def refine_online(points: Sequence[WhatIfPoint], target_s: float,
                  step: float) -> dict[str, list[float]]:
    """Per policy, online shares every ``step`` between the last one short of the p90 target
    and the first one meeting it: the coarse grid's answer, made finer where it matters."""
    found: dict[str, list[float]] = {}
    for name in dict.fromkeys(p.policy for p in points):
        pts = sorted((p for p in points if p.policy == name and p.axis == ONLINE), key=lambda p: p.x)
        ok = [k for k, p in enumerate(pts) if p.p90_wait_s < target_s]
        if step <= 0 or not ok or ok[0] == 0:
            continue
        low, high = pts[ok[0] - 1].x, pts[ok[0]].x
        first = int(low / step + 1e-9) + 1
        shares = [round(k * step, 6) for k in range(first, int(high / step - 1e-9) + 1)]
        found[name] = [x for x in shares if low < x < high]
    return found


def run_task(task: Task) -> MonthResult | list[WhatIfPoint]:
    """A main run returns the whole month; a what-if run only its summary (less to pickle), one
    per point it stands for."""
    result = simulate_month(task.plan, task.policy, task.seed)
    if task.axis is None:
        return result
    return [WhatIfPoint(
        axis=axis,
        x=x,
        policy=task.policy.name,
        p90_wait_s=result.last_week_p90_s(),
        turned_away_closing=result.total("turned_away_closing", last_week_only=True),
        refused_at_door=result.total("refused_at_door", last_week_only=True),
        online_steered=result.total("online_hint", True) + result.total("online_door", True),
        served=result.total("served", last_week_only=True),
        booked_p90_s=result.booked_p90_s(),
        bookings=result.bookings,
        unbooked=result.unbooked,
    ) for axis, x in ((task.axis, task.x), *task.also)]


def run_tasks(tasks: Sequence[Task], jobs: int = 1,
              on_done: Callable[[int, MonthResult | list[WhatIfPoint]], None] | None = None,
              ) -> list[MonthResult | list[WhatIfPoint]]:
    """Results in the order of ``tasks``; ``jobs`` > 1 runs them in that many processes.

    ``on_done(index, result)`` is called as each task finishes (progress, or starting on the
    main runs' plots while the what-if runs go on).
    """
    results: list[MonthResult | list[WhatIfPoint] | None] = [None] * len(tasks)
    if jobs <= 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            results[i] = run_task(task)
            if on_done:
                on_done(i, results[i])
        return results  # type: ignore[return-value]
    # Longest first: the main (whole-month) runs, then the what-if runs with the heaviest load.
    order = sorted(range(len(tasks)), key=lambda i: (tasks[i].axis is not None, -len(tasks[i].plan.days)))
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_task, tasks[i]): i for i in order}
        for future in as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            if on_done:
                on_done(i, results[i])
    return results  # type: ignore[return-value]
