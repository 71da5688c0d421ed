"""PNG charts of a report: waits by hour of a day, or waits and turned away by day of a month.

matplotlib is optional (``pip install 'counter-server[charts]'``); without it the report command
says so and still prints the figures.
"""

from __future__ import annotations

from pathlib import Path

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


def daily_chart(report: DailyReport, path: Path) -> Path:
    """Bars: tokens issued and turned away per hour; lines: p50 and p90 wait of those issued
    in that hour (to their first call). A manager sees when the line built up and for how long."""
    plt = _pyplot()
    hours = [h.hour for h in report.hours]
    fig, counts = plt.subplots(figsize=(10, 5.2), dpi=110)
    waits = counts.twinx()
    counts.bar([h - 0.2 for h in hours], [h.issued for h in report.hours], width=0.4,
               color="#9ecae1", label="tokens issued")
    counts.bar([h + 0.2 for h in hours], [h.turned_away for h in report.hours], width=0.4,
               color="#fc9272", label="turned away at the door")
    waits.plot(hours, [_minutes(h.wait_p50_s) for h in report.hours], "o-", color="#08519c",
               label="wait p50 (min)")
    waits.plot(hours, [_minutes(h.wait_p90_s) for h in report.hours], "s--", color="#a50f15",
               label="wait p90 (min)")
    for limit in (15, 30):
        waits.axhline(limit, color="#999999", linewidth=0.8, linestyle=":")
        waits.annotate(f"{limit} min", (1.0, limit), xycoords=("axes fraction", "data"),
                       fontsize=8, color="#666666", ha="right", va="bottom")
    counts.set_xlabel("hour of issue (local time)")
    counts.set_ylabel("tokens")
    waits.set_ylabel("wait to first call (minutes)")
    waits.set_ylim(bottom=0)
    if hours:
        counts.set_xticks(range(min(hours), max(hours) + 1))
        counts.set_xticklabels([f"{h:02d}:00" for h in range(min(hours), max(hours) + 1)], rotation=45)
    total = report.total
    where = report.substation or "all substations"
    counts.set_title(
        f"Waits by hour, {report.day}, {where}: {total.issued} issued, {total.served} served, "
        f"{total.turned_away} turned away; p90 wait {_fmt(total.wait_p90_s)} min", fontsize=10)
    return _save(plt, fig, counts, waits, path)


def monthly_chart(report: MonthlyReport, path: Path) -> Path:
    """Per day: served and turned away (bars), p50 and p90 wait (lines)."""
    plt = _pyplot()
    days = [day[-2:] for day, _ in report.days]
    xs = range(len(days))
    fig, counts = plt.subplots(figsize=(11, 5.2), dpi=110)
    waits = counts.twinx()
    counts.bar([x - 0.2 for x in xs], [r.served for _, r in report.days], width=0.4, color="#9ecae1",
               label="served")
    counts.bar([x + 0.2 for x in xs], [r.turned_away or 0 for _, r in report.days], width=0.4,
               color="#fc9272", label="turned away")
    waits.plot(list(xs), [_minutes(r.wait_p50_s) for _, r in report.days], "o-", color="#08519c",
               label="wait p50 (min)")
    waits.plot(list(xs), [_minutes(r.wait_p90_s) for _, r in report.days], "s--", color="#a50f15",
               label="wait p90 (min)")
    counts.set_xticks(list(xs))
    counts.set_xticklabels(days)
    counts.set_xlabel(f"day of {report.month}")
    counts.set_ylabel("tokens")
    waits.set_ylabel("wait to first call (minutes)")
    waits.set_ylim(bottom=0)
    where = report.substation or "all substations"
    counts.set_title(f"{report.month}, {where}: served, turned away and waits by day", fontsize=10)
    return _save(plt, fig, counts, waits, path)


def _save(plt, fig, counts, waits, path: Path) -> Path:
    """One legend for both axes (counts and waits), then write the PNG and free the figure."""
    lines = counts.get_legend_handles_labels()
    more = waits.get_legend_handles_labels()
    counts.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.0f}"
