"""PNG charts of a report: waits by hour of a day, or waits and turned away by day of a month.

matplotlib is optional (``pip install 'counter-server[charts]'``); without it the report command
says so and still prints the figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .reports import DailyReport, MonthlyReport

INSTALL_HINT = ("The chart needs matplotlib: pip install 'counter-server[charts]' "
                "(or: .venv/bin/pip install matplotlib).")


class ChartUnavailable(RuntimeError):
    pass


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ChartUnavailable(INSTALL_HINT) from None
    return plt


def _minutes(seconds: float | None) -> float:
    return float("nan") if seconds is None else seconds / 60


# Colours and marks: the wait lines are read against the bars, so each keeps its own shape.
ISSUED, AWAY, P50, P90 = "#9ecae1", "#fc9272", "#08519c", "#a50f15"
BAR_WIDTH = 0.6


def daily_chart(report: DailyReport, path: Path) -> Path:
    """Bars: tokens issued and turned away per hour; lines: p50 and p90 wait of those issued
    in that hour (to their first call). A manager sees when the line built up and for how long."""
    plt = _pyplot()
    fig, counts, waits = draw_daily(plt, report)
    return _save(plt, fig, path)


def draw_daily(plt: Any, report: DailyReport) -> tuple[Any, Any, Any]:
    """The day's figure, its count axes and its wait axes (the test reads pixels through them)."""
    hours = [h.hour for h in report.hours]
    fig, counts = plt.subplots(figsize=(10, 5.2), dpi=110)
    waits = counts.twinx()
    _bars(counts, hours, [h.issued for h in report.hours], [h.turned_away for h in report.hours],
          ("tokens issued", "turned away at the door"))
    _wait_lines(waits, hours, [h.wait_p50_s for h in report.hours], [h.wait_p90_s for h in report.hours])
    for limit in (15, 30):
        waits.axhline(limit, color="#999999", linewidth=0.8, linestyle=":")
        waits.annotate(f"{limit} min", (0.995, limit), xycoords=("axes fraction", "data"),
                       fontsize=8, color="#666666", ha="right", va="bottom")
    waits.set_ylim(bottom=0)
    counts.set_xlabel("hour of issue (local time)")
    counts.set_ylabel("tokens")
    waits.set_ylabel("wait to first call (minutes)")
    if hours:
        ticks = list(range(min(hours), max(hours) + 1))
        counts.set_xticks(ticks)
        counts.set_xticklabels([f"{h:02d}:00" for h in ticks], rotation=45)
        counts.set_xlim(min(hours) - 0.75, max(hours) + 0.75)
    total = report.total
    where = report.substation or "all substations"
    counts.set_title(
        f"Waits by hour, {report.day}, {where}: {total.issued} issued, {total.served} served, "
        f"{total.turned_away} turned away; p90 wait {_fmt(total.wait_p90_s)} min", fontsize=10)
    _legend(fig, counts, waits)
    return fig, counts, waits


def monthly_chart(report: MonthlyReport, path: Path) -> Path:
    """Per day: served and turned away (bars), p50 and p90 wait (lines)."""
    plt = _pyplot()
    fig, counts, waits = draw_monthly(plt, report)
    return _save(plt, fig, path)


def draw_monthly(plt: Any, report: MonthlyReport) -> tuple[Any, Any, Any]:
    days = [day[-2:] for day, _ in report.days]
    xs = list(range(len(days)))
    fig, counts = plt.subplots(figsize=(11, 5.2), dpi=110)
    waits = counts.twinx()
    _bars(counts, xs, [r.served for _, r in report.days], [r.turned_away or 0 for _, r in report.days],
          ("served", "turned away"))
    _wait_lines(waits, xs, [r.wait_p50_s for _, r in report.days], [r.wait_p90_s for _, r in report.days])
    counts.set_xticks(xs)
    counts.set_xticklabels(days)
    if xs:
        counts.set_xlim(-0.75, len(xs) - 0.25)
    waits.set_ylim(bottom=0)
    counts.set_xlabel(f"day of {report.month}")
    counts.set_ylabel("tokens")
    waits.set_ylabel("wait to first call (minutes)")
    where = report.substation or "all substations"
    counts.set_title(f"{report.month}, {where}: served, turned away and waits by day", fontsize=10)
    _legend(fig, counts, waits)
    return fig, counts, waits


def _bars(counts: Any, xs: list[int], below: list[int], above: list[int], labels: tuple[str, str]) -> None:
    """One bar per tick, centred on it: ``above`` stacked on ``below`` (together: everyone who
    came that hour or day), so a lone bar never sits beside its tick."""
    from matplotlib.ticker import MaxNLocator

    counts.bar(xs, below, width=BAR_WIDTH, color=ISSUED, label=labels[0])
    counts.bar(xs, above, width=BAR_WIDTH, bottom=below, color=AWAY, label=labels[1])
    counts.yaxis.set_major_locator(MaxNLocator(integer=True))
    tallest = max((b + a for b, a in zip(below, above)), default=0)
    counts.set_ylim(0, max(1, tallest) * 1.12)   # headroom: the tallest bar stays inside the frame


def _wait_lines(waits: Any, xs: list[int], p50: list[float | None], p90: list[float | None]) -> None:
    """p90 as a large hollow square under p50's small filled dot: where they are equal (one
    token, or a steady hour) both stay visible instead of p90 covering p50."""
    waits.plot(xs, [_minutes(v) for v in p90], "--", color=P90, marker="s", markersize=10,
               markerfacecolor="none", markeredgewidth=1.8, zorder=3, label="wait p90 (min)")
    waits.plot(xs, [_minutes(v) for v in p50], "-", color=P50, marker="o", markersize=5, zorder=4,
               label="wait p50 (min)")


def _legend(fig: Any, counts: Any, waits: Any) -> None:
    """One legend for both axes (counts and waits), under the plot where it covers no bar."""
    lines = counts.get_legend_handles_labels()
    more = waits.get_legend_handles_labels()
    order = [0, 1, 3, 2] if len(more[0]) == 2 else list(range(len(lines[0]) + len(more[0])))
    handles, labels = lines[0] + more[0], lines[1] + more[1]
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="lower center",
               ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))


def _save(plt: Any, fig: Any, path: Path) -> Path:
    """Write the PNG and free the figure."""
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.0f}"
