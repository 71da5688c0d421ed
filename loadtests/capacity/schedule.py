"""``peak-sim``'s work in the pool, and each plot drawn as soon as its figures are in.

Both cores stay busy to the end: the main runs go first (their plots are drawn on a thread of
the main process while the rest runs), then the online share's what-if runs (their answer
decides the second round of shares, which then runs next), then the rest, costliest first (the
estimate coverage's halls among them). A plot is drawn when the last run it shows is in, not
after every run.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from . import coverage, report
from .halls import HallJob, HallWeek
from .month import MonthPlan, MonthResult
from .whatif import BOOKING, COUNTERS, ONLINE, RunResult, Task, WhatIfPoint, run_tasks

PLOTTED = (COUNTERS, ONLINE, BOOKING)   # the what-if axes with a plot of their own


@dataclass(frozen=True)
class PlotFigures:
    """What the plots need besides the runs."""

    out: Path
    labels: dict[str, str]
    target_s: float
    counters_now: int
    online_share_now: float
    whatif_days: int
    last_week_days: int
    booking_day_choice: str


@dataclass(frozen=True)
class Finished:
    """Everything the runs found, in the order the tasks were made (the second round last)."""

    months: list[MonthResult]
    points: list[WhatIfPoint]
    coverage: coverage.Coverage
    plots: list[Path]
    runs: int                 # month runs made (one per plan and policy)
    hall_weeks: list[HallWeek] = ()   # the advice per hall, in the order of the hall jobs


def run_all(plan: MonthPlan, tasks: Sequence[Task], halls: Sequence[coverage.HallDay],
            processes: int, figures: PlotFigures,
            second_round: Callable[[list[WhatIfPoint]], list[Task]] | None,
            progress: bool = True, hall_jobs: Sequence[HallJob] = ()) -> Finished:
    """Run ``tasks`` (the first: the main runs), ``halls`` and ``hall_jobs`` (the advice per
    hall, plotted once all are in); ``second_round`` (given the points so far) makes the online
    share's second round once its first is in."""
    jobs = in_pool_order(tasks, [*halls, *hall_jobs])
    weeks_of: dict[int, HallWeek] = {}   # id(hall job) -> its week
    bar = tqdm(total=len(jobs), desc="peak-sim runs", unit="run", disable=not progress,
               file=sys.stderr)
    left = Counter(axis for task in tasks for axis, _ in task.marks)   # runs still to come
    found: list[WhatIfPoint] = []
    second: list[Task] = []
    # Its thread starts with the first plot, after the pool has started every process (a
    # forking pool starts them all at its first job), so no process is forked beside it.
    drawing = ThreadPoolExecutor(max_workers=1)
    drawn: dict[str, Future] = {}

    def done(job: Task | coverage.HallDay | HallJob,
             result: RunResult | coverage.Coverage | HallWeek) -> list[Task]:
        bar.update()
        if isinstance(job, HallJob):
            weeks_of[id(job)] = result
            if len(weeks_of) == len(hall_jobs):
                weeks = [weeks_of[id(j)] for j in hall_jobs]
                drawn["halls"] = drawing.submit(report.plot_halls, weeks, figures.labels,
                                                figures.target_s, figures.out / report.PLOTS["halls"])
            return []
        if not isinstance(job, Task):
            return []
        found.extend(result.points)
        if result.months is not None:
            drawn["main"] = drawing.submit(_main_plots, result.months, plan.sample_times, figures)
        more: list[Task] = []
        for axis in dict.fromkeys(axis for axis, _ in job.marks):
            left[axis] -= 1
            if left[axis] == 0 and axis == ONLINE and second_round and not second:
                more = second_round(list(found))
                second.extend(more)
                left[axis] += len(more)
                bar.total += len(more)
                bar.refresh()
            if left[axis] == 0 and axis in PLOTTED:
                drawn[axis] = drawing.submit(_axis_plot, axis, list(found), figures)
        return more

    outcomes = run_tasks(jobs, processes, on_done=done)
    bar.close()
    result_of = {id(job): out for job, out in zip([*jobs, *second], outcomes, strict=True)}
    ordered = [result_of[id(task)] for task in [*tasks, *second]]
    points = _points(ordered)
    for axis in (COUNTERS, ONLINE) if points else ():   # no run on that axis: drawn empty
        if axis not in drawn:
            drawn[axis] = drawing.submit(_axis_plot, axis, points, figures)
    drawing.shutdown()
    return Finished(
        months=[month for o in ordered if o.months is not None for month in o.months],
        points=points,
        coverage=coverage.total(result_of[id(hall)] for hall in halls),
        plots=[*drawn["main"].result(),
               *(drawn[axis].result() for axis in (*PLOTTED, "halls") if axis in drawn)],
        runs=sum(len(task.policies) for task in [*tasks, *second]),
        hall_weeks=[weeks_of[id(job)] for job in hall_jobs],
    )


def in_pool_order(tasks: Sequence[Task],
                  halls: Sequence[coverage.HallDay | HallJob]) -> list[Task | coverage.HallDay | HallJob]:
    """The main runs (``tasks[0]``) first, then the online share's, then the rest costliest
    first."""
    online = [t for t in tasks[1:] if any(axis == ONLINE for axis, _ in t.marks)]
    rest = [t for t in tasks[1:] if t not in online]
    return [tasks[0], *online, *sorted([*rest, *halls], key=lambda job: -job.cost)]


def _points(outputs: Iterable[RunResult]) -> list[WhatIfPoint]:
    return [p for o in outputs for p in o.points]


def _main_plots(results: list[MonthResult], sample_times: list[float],
                figures: PlotFigures) -> list[Path]:
    plots = [report.plot_queues(results, sample_times, figures.out / report.PLOTS["queue"])]
    if any(r.last_week() for r in results):
        plots.append(report.plot_waits(results, figures.target_s,
                                       figures.out / report.PLOTS["waits"]))
    return plots


def _axis_plot(axis: str, points: list[WhatIfPoint], figures: PlotFigures) -> Path:
    f = figures
    if axis == COUNTERS:
        return report.plot_counters(points, f.labels, f.target_s, f.counters_now,
                                    f.out / report.PLOTS["counters"])
    if axis == ONLINE:
        return report.plot_online(points, f.labels, f.target_s, f.online_share_now,
                                  f.whatif_days, f.out / report.PLOTS["online"])
    return report.plot_booking([p for p in points if p.axis == BOOKING], f.labels, f.target_s,
                               f.last_week_days, f.out / report.PLOTS["booking"],
                               f.booking_day_choice)
