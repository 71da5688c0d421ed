"""Runs: the policies side by side, and what-if runs with other counter numbers, online shares
or shares of consumers booking a slot.

Each task is one plan under every policy (bookings, which no policy changes, made once for all);
tasks run in a process pool, beside the estimate coverage's halls, because each is
single-threaded Python and ops' machines have a few cores. Results do not depend on the number of
workers: every task seeds its own random streams.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any, Protocol

from counter_server.config import Scenario

from .demand import DemandParams
from .month import FreshArrivals, MonthPlan, MonthResult, book_month, make_plan, simulate_month
from .policies import Policy

COUNTERS, ONLINE, BOOKING, CYCLES = "counters", "online", "booking", "cycles"   # the what-if axes


@dataclass(frozen=True)
class Task:
    """One plan run under each of ``policies``: ``axis``/``x`` say which what-if point it is
    (None for the main runs), ``also`` which other points the same runs stand for (today's
    counters at today's online share is on both curves)."""

    plan: MonthPlan
    policies: tuple[Policy, ...]
    seed: int
    axis: str | None = None
    x: float = 0.0
    also: tuple[tuple[str, float], ...] = ()

    @property
    def marks(self) -> tuple[tuple[str, float], ...]:
        """The what-if points (axis, x) its runs stand for."""
        return self.also if self.axis is None else ((self.axis, self.x), *self.also)

    @property
    def cost(self) -> float:
        """Roughly the seconds it takes (what the pool's order goes by): a day under one policy
        takes about 6 ms, more the more consumers book a slot."""
        per_day = 0.006 * (1 + 2 * self.plan.demand.booking_share)
        return per_day * len(self.plan.days) * len(self.policies)

    def run(self) -> RunResult:
        return run_task(self)


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
    balked: int = 0         # saw the shown wait and went home
    reneged: int = 0        # gave up waiting in line
    worst_day_p90_s: float = 0.0   # the run's worst day's p90 wait (any day, not only the last week)
    worst_day: int = 0

    @property
    def turned_away(self) -> int:
        """Left unserved, by any cause: at closing, at the door, balking, giving up."""
        return self.turned_away_closing + self.refused_at_door + self.balked + self.reneged


@dataclass(frozen=True)
class RunResult:
    """A task's answer: the whole months for the main runs (None for a what-if run: less to
    pickle), and the what-if points its runs stand for."""

    months: list[MonthResult] | None
    points: list[WhatIfPoint]


class Job(Protocol):
    """What the pool runs: a ``Task`` or any other piece of the work with a rough cost."""

    @property
    def cost(self) -> float: ...

    def run(self) -> Any: ...


def whatif_tasks(scenario: Scenario, demand: DemandParams, policies: Sequence[Policy], seed: int,
                 days: int, counters: Iterable[int], online_shares: Iterable[float],
                 counters_per_substation: int | None = None, booking_shares: Iterable[float] = (),
                 booking_days: int | None = None, cycles: Iterable[int] = (),
                 booking_reach: int | None = None) -> list[Task]:
    """Tasks for the what-if curves, each over the month's last ``days`` working days; a run
    that two curves need is made once. Booking runs cover ``booking_days`` (None: the whole
    month) instead: bookers move to earlier days, which a last-week replay would not have; so
    do the billing-cycle runs (``cycles``: due dates on that many cycles), whose other cycles'
    rushes come before the last week. ``booking_reach`` (None: ``booking_days``) shortens the
    booking runs with anyone booking to the days bookers can reach (the days before see no
    booking, so little changes but the cost)."""
    tasks: list[Task] = []
    policies = tuple(policies)

    def add(plan: MonthPlan, axis: str, x: float) -> None:
        same = next((k for k, t in enumerate(tasks) if t.plan == plan), None)
        if same is None:
            tasks.append(Task(plan, policies, seed, axis, x))
        else:
            tasks[same] = replace(tasks[same], also=(*tasks[same].also, (axis, x)))

    for n in counters:
        add(make_plan(scenario, demand, days, counters_per_substation=n), COUNTERS, float(n))
    for share in online_shares:
        add(make_plan(scenario, demand.with_changes(online_share=share), days,
                      counters_per_substation=counters_per_substation), ONLINE, float(share))
    for share in booking_shares:
        # nobody booking is today's run: over the booking days, the main runs when they are
        reach = booking_days if share == 0 or booking_reach is None else booking_reach
        add(make_plan(scenario, demand.with_changes(booking_share=share), reach,
                      counters_per_substation=counters_per_substation), BOOKING, float(share))
    for k in cycles:
        add(make_plan(scenario, demand.with_changes(due_date_cycles=int(k)), booking_days,
                      counters_per_substation=counters_per_substation), CYCLES, float(k))
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


def fold_same_runs(tasks: Sequence[Task]) -> list[Task]:
    """``tasks`` less those whose plan and policies an earlier task runs already, that one
    standing for their points too (nobody booking over the main runs' days is the main runs)."""
    kept: list[Task] = []
    for task in tasks:
        same = next((k for k, t in enumerate(kept)
                     if t.plan == task.plan and t.policies == task.policies), None)
        if same is None or task.axis is None:
            kept.append(task)
            continue
        kept[same] = replace(kept[same], also=(*kept[same].also, (task.axis, task.x), *task.also))
    return kept


def run_task(task: Task) -> RunResult:
    """The plan under each policy, bookings and fresh consumers made once for all of them. A
    main run keeps the whole months; a what-if run only its points (less to pickle), one per
    point it stands for."""
    arrivals = FreshArrivals(task.plan, task.seed)
    booked = (book_month(task.plan, task.seed, arrivals) if task.plan.demand.booking_share > 0
              else None)
    months = [simulate_month(task.plan, policy, task.seed, booked, arrivals)
              for policy in task.policies]
    points = [point for month in months for point in points_of(month, task.marks)]
    return RunResult(months if task.axis is None else None, points)


def points_of(result: MonthResult, marks: Iterable[tuple[str, float]]) -> list[WhatIfPoint]:
    """A run's what-if summary, once per (axis, x) it stands for."""
    worst = max(result.days, key=lambda d: d.wait_p90_s, default=None)
    return [WhatIfPoint(
        axis=axis,
        x=x,
        policy=result.policy.name,
        p90_wait_s=result.last_week_p90_s(),
        turned_away_closing=result.total("turned_away_closing", last_week_only=True),
        refused_at_door=result.total("refused_at_door", last_week_only=True),
        online_steered=result.total("online_hint", True) + result.total("online_door", True),
        served=result.total("served", last_week_only=True),
        booked_p90_s=result.booked_p90_s(),
        bookings=result.bookings,
        unbooked=result.unbooked,
        balked=result.total("balked", last_week_only=True),
        reneged=result.total("reneged", last_week_only=True),
        worst_day_p90_s=worst.wait_p90_s if worst else 0.0,
        worst_day=worst.day if worst else 0,
    ) for axis, x in marks]


def run_tasks(jobs: Sequence[Job], processes: int = 1,
              on_done: Callable[[Job, Any], Sequence[Job] | None] | None = None) -> list[Any]:
    """Each job's ``run()``, in the order given (put the costliest first, so no core waits on
    one long job at the end); ``processes`` > 1 runs them in that many processes.

    ``on_done(job, result)`` is called as each job finishes (progress, or drawing plots while
    the rest runs) and may return more jobs: they run next, before those not yet started, and
    their results follow in the list.
    """
    jobs = list(jobs)
    queue = deque(range(len(jobs)))
    results: list[Any] = [None] * len(jobs)

    def finished(i: int, result: Any) -> None:
        results[i] = result
        more = list(on_done(jobs[i], result) or ()) if on_done else []
        queue.extendleft(reversed(range(len(jobs), len(jobs) + len(more))))
        jobs.extend(more)
        results.extend([None] * len(more))

    if processes <= 1:
        while queue:
            i = queue.popleft()
            finished(i, jobs[i].run())
        return results
    with ProcessPoolExecutor(max_workers=processes) as pool:
        running: dict[Future, int] = {}
        while queue or running:
            while queue and len(running) < processes:  # no more in flight: later jobs may come first
                i = queue.popleft()
                running[pool.submit(jobs[i].run)] = i
            ready, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in ready:
                finished(running.pop(future), future.result())
    return results
