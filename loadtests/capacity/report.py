"""What ops read: the per-day table, six PNG plots and a Markdown summary with the answer.

Plots are drawn on ``matplotlib.figure.Figure`` objects (the Agg renderer, no pyplot), so making
them touches no global state and needs no display. matplotlib is imported by the first plot, not
with this module: ``peak-sim`` draws while its simulations still run, so the import costs no
waiting. Margins are set by hand: matplotlib's automatic layouts draw each figure twice, which
``peak-sim`` cannot afford within its 10 s budget.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .halls import CityPlan, HallWeek, city_plan
from .month import DayStats, MonthResult
from .whatif import BOOKING, COUNTERS, CYCLES, ONLINE, WhatIfPoint

PLOTS = {
    "queue": "queue-last-week.png",
    "waits": "wait-distribution.png",
    "counters": "whatif-counters.png",
    "online": "whatif-online-share.png",
    "booking": "whatif-booking.png",
    "halls": "advice-per-hall.png",
}
BOOKING_ANSWER_SHARE = 0.2   # the booking share the one-line answer is about, when it was tried
SUMMARY = "summary.md"
DPI = 110
PNG_OPTIONS = {"compress_level": 3}   # zlib's default 6 takes longer than drawing the plot

COLUMNS = ("day", "", "arrivals", "back", "served", "away@close", "refused", "balked", "gave up",
           "online", "p50 min", "p90 min", "longest")
LEGEND = ("  *: last week; back: arrivals sent home on an earlier day; turned away by cause: "
          "away@close: still waiting\n  at closing; refused: at the door; balked: saw the shown "
          "wait and went home; gave up: left the line\n  before being called; online: paid online "
          "instead (hint or door); p50/p90: wait of the served;\n  longest: longest line at one "
          "substation")
WAIT_COLUMNS = (10, 11)   # p50 and p90 in a row


def _row(d: DayStats | None, label: str, rows: Sequence[DayStats]) -> list[str]:
    """One table row: a day, or a total over ``rows`` (waits of a total: pooled over its days)."""
    if d is not None:
        return [str(d.day), "*" if d.last_week else "", f"{d.arrivals:,}", f"{d.returning:,}",
                f"{d.served:,}", f"{d.turned_away_closing:,}", f"{d.refused_at_door:,}",
                f"{d.balked:,}", f"{d.reneged:,}",
                f"{d.online_hint + d.online_door:,}", f"{d.wait_p50_s / 60:.1f}",
                f"{d.wait_p90_s / 60:.1f}", f"{d.longest_queue:,}"]
    total = {k: sum(getattr(r, k) for r in rows) for k in
             ("arrivals", "returning", "served", "turned_away_closing", "refused_at_door",
              "balked", "reneged", "online_hint", "online_door")}
    return [label, "", f"{total['arrivals']:,}", f"{total['returning']:,}", f"{total['served']:,}",
            f"{total['turned_away_closing']:,}", f"{total['refused_at_door']:,}",
            f"{total['balked']:,}", f"{total['reneged']:,}",
            f"{total['online_hint'] + total['online_door']:,}", "", "",
            f"{max((r.longest_queue for r in rows), default=0):,}"]


def table_rows(result: MonthResult, last_week_only: bool = False) -> list[list[str]]:
    """The rows of a policy's table, with totals for the last week and the whole run."""
    days = result.last_week() if last_week_only else result.days
    rows = [_row(d, "", []) for d in days]
    lw = result.last_week()
    if lw:
        waits = result.last_week_waits()
        row = _row(None, "last wk", lw)
        row[WAIT_COLUMNS[0]], row[WAIT_COLUMNS[1]] = _minutes(waits, 50), _minutes(waits, 90)
        rows.append(row)
    if not last_week_only and len(result.days) > len(lw):
        waits = np.concatenate([result.waits[d.day] for d in result.days])
        row = _row(None, "all", result.days)
        row[WAIT_COLUMNS[0]], row[WAIT_COLUMNS[1]] = _minutes(waits, 50), _minutes(waits, 90)
        rows.append(row)
    return rows


def _minutes(waits: np.ndarray, q: float) -> str:
    return f"{np.percentile(waits, q) / 60:.1f}" if len(waits) else "-"


def format_table(result: MonthResult, last_week_only: bool = False) -> str:
    """A policy's per-day table as fixed-width text (``*`` marks the last week's days)."""
    rows = [list(COLUMNS)] + table_rows(result, last_week_only)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [f"Policy: {result.policy.label}"]
    for k, r in enumerate(rows):
        lines.append("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(LEGEND)
    lines.append(f"  {_afterword(result)}")
    return "\n".join(lines)


def _afterword(result: MonthResult) -> str:
    return (f"Still unpaid after the last day (sent home, coming back): "
            f"{result.unpaid_at_month_end:,}; hours spent in line by those then turned away at "
            f"closing: {result.total('lost_hours'):,.0f}, by those who gave up: "
            f"{result.total('gave_up_hours'):,.0f}.")


def markdown_table(result: MonthResult, last_week_only: bool = False) -> str:
    """The same table in Markdown."""
    header = ["day", "last week", "arrivals", "coming back", "served", "turned away at closing",
              "refused at the door", "balked (saw the wait, went home)", "gave up in line",
              "paid online instead", "wait p50 (min)", "wait p90 (min)", "longest line"]
    rows = [[r[0], "yes" if r[1] == "*" else "", *r[2:]] for r in table_rows(result, last_week_only)]
    return as_markdown([header, *rows])


def as_markdown(rows: Sequence[Sequence[str]]) -> str:
    """Rows, the first of them the header, as a Markdown table."""
    return "\n".join(["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
                     + ["| " + " | ".join(r) + " |" for r in rows[1:]])


def as_fixed_width(rows: Sequence[Sequence[str]], left: Collection[int] = (1,)) -> str:
    """Rows, the first of them the header, as a terminal table: columns ``left`` aligned left,
    the others right, a rule under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths,
             strict=True))) for r in rows]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


# -- plots ------------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # here, not at the top: see the module docstring

    return Figure(figsize=(width, height))


def _clock_hours(seconds: Sequence[float]) -> np.ndarray:
    return np.asarray(seconds, dtype=float) / 3600.0


def _clock_ticks(ax, start_h: float, end_h: float) -> None:
    ticks = np.arange(np.floor(start_h), np.ceil(end_h) + 1)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{int(h):02d}:00" for h in ticks], rotation=45, fontsize=8)


def plot_queues(results: Sequence[MonthResult], sample_times: Sequence[float], path: Path) -> Path:
    """Line length through each day of the last week, one panel per policy."""
    hours = _clock_hours(sample_times)
    fig = _figure(5.2 * len(results), 4.8)
    fig.subplots_adjust(left=0.75 / (5.2 * len(results)), right=0.99, bottom=0.2, top=0.86, wspace=0.08)
    axes = fig.subplots(1, len(results), sharey=True, squeeze=False)[0]
    for ax, result in zip(axes, results, strict=True):
        for d in result.last_week():
            per_sub = result.queues[d.day]
            ax.plot(hours, per_sub.mean(axis=0), label=f"day {d.day}")
        ax.set_title(result.policy.label, fontsize=10)
        ax.set_xlabel("time of day (hh:mm)")
        _clock_ticks(ax, hours[0], hours[-1])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("people waiting per substation (mean of substations)")
    axes[0].legend(title="working day", fontsize=8)
    fig.suptitle("Line length through each day of the last week")
    fig.savefig(path, dpi=DPI, pil_kwargs=PNG_OPTIONS)
    return path


def plot_waits(results: Sequence[MonthResult], target_s: float, path: Path) -> Path:
    """Waits of served consumers in the last week: histogram and share served within x minutes."""
    fig = _figure(12, 5)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.86, wspace=0.22)
    hist_ax, cdf_ax = fig.subplots(1, 2)
    top = max((float(r.last_week_waits().max()) for r in results if len(r.last_week_waits())),
              default=target_s) / 60
    bins = np.linspace(0, max(top, target_s / 60) * 1.02, 60)
    for result in results:
        waits = result.last_week_waits() / 60
        if not len(waits):
            continue
        weights = np.full(len(waits), 100.0 / len(waits))
        hist_ax.hist(waits, bins=bins, weights=weights, histtype="step", linewidth=1.6,
                     label=result.policy.label)
        shares = np.linspace(0, 100, 401)  # the curve at every quarter percent is smooth enough
        line = cdf_ax.plot(np.percentile(waits, shares), shares,
                           label=f"{result.policy.label}: p90 {np.percentile(waits, 90):.0f} min")
        cdf_ax.plot([np.percentile(waits, 90)], [90], "o", color=line[0].get_color())
    for ax in (hist_ax, cdf_ax):
        ax.axvline(target_s / 60, color="black", linestyle="--", linewidth=1,
                   label=f"target {target_s / 60:.0f} min")
        ax.set_xlabel("wait before service starts (minutes)")
        ax.grid(alpha=0.3)
    hist_ax.set_ylabel("share of served consumers per bin (%)")
    hist_ax.set_title("Distribution of waits")
    cdf_ax.set_ylabel("served within that wait (%)")
    cdf_ax.set_title("Share served within x minutes (dot: p90)")
    hist_ax.legend(fontsize=8)
    cdf_ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Waits of served consumers in the last week (turned-away consumers not included)")
    fig.savefig(path, dpi=DPI, pil_kwargs=PNG_OPTIONS)
    return path


def _by_policy(points: Sequence[WhatIfPoint], axis: str) -> dict[str, list[WhatIfPoint]]:
    found: dict[str, list[WhatIfPoint]] = {}
    for p in points:
        if p.axis == axis:
            found.setdefault(p.policy, []).append(p)
    return {k: sorted(v, key=lambda p: p.x) for k, v in found.items()}


def plot_counters(points: Sequence[WhatIfPoint], labels: dict[str, str], target_s: float,
                  current: float, path: Path) -> Path:
    """What-if: counters open per substation against the last week's p90 wait."""
    fig = _figure(8, 5)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.12, top=0.92)
    ax = fig.subplots()
    for name, pts in _by_policy(points, COUNTERS).items():
        ax.plot([p.x for p in pts], [p.p90_wait_s / 60 for p in pts], "o-", label=labels.get(name, name))
    ax.axhline(target_s / 60, color="black", linestyle="--", linewidth=1,
               label=f"target: p90 under {target_s / 60:.0f} min")
    ax.axvline(current, color="grey", linestyle=":", linewidth=1, label=f"scenario now: {current:g}")
    ax.set_xlabel("counters open per substation")
    ax.set_ylabel("last-week p90 wait (minutes)")
    ax.set_title("What if each substation opened more counters?")
    ax.set_xticks(sorted({p.x for p in points if p.axis == COUNTERS}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=DPI, pil_kwargs=PNG_OPTIONS)
    return path


def plot_online(points: Sequence[WhatIfPoint], labels: dict[str, str], target_s: float,
                current: float, last_week_days: int, path: Path) -> Path:
    """What-if: the online share against turned away and against the p90 wait, last week."""
    fig = _figure(12, 5)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.82, wspace=0.22)
    away_ax, wait_ax = fig.subplots(1, 2)
    for name, pts in _by_policy(points, ONLINE).items():
        xs = [p.x * 100 for p in pts]
        label = labels.get(name, name)
        away_ax.plot(xs, [p.turned_away / last_week_days for p in pts], "o-", label=label)
        wait_ax.plot(xs, [p.p90_wait_s / 60 for p in pts], "o-", label=label)
    for ax in (away_ax, wait_ax):
        ax.axvline(current * 100, color="grey", linestyle=":", linewidth=1,
                   label=f"scenario now: {current * 100:.0f} %")
        ax.set_xlabel("share of paying consumers who pay online (%)")
        ax.grid(alpha=0.3)
    wait_ax.axhline(target_s / 60, color="black", linestyle="--", linewidth=1,
                    label=f"target: p90 under {target_s / 60:.0f} min")
    away_ax.set_ylabel("turned away per last-week day (people)")
    away_ax.set_title("Turned away: at closing, at the door, balked, gave up\n(whoever comes back counts again)",
                      fontsize=11)
    wait_ax.set_ylabel("last-week p90 wait (minutes)")
    wait_ax.set_title("Last-week p90 wait of served consumers", fontsize=11)
    away_ax.legend(fontsize=8)
    wait_ax.legend(fontsize=8)
    fig.suptitle("What if more consumers paid online?")
    fig.savefig(path, dpi=DPI, pil_kwargs=PNG_OPTIONS)
    return path


def plot_booking(points: Sequence[WhatIfPoint], labels: dict[str, str], target_s: float,
                 last_week_days: int, path: Path, day_choice: str = "earliest") -> Path:
    """What-if: the share who book a slot against the walk-ins' last-week p90 wait, turned away,
    the booked consumers' wait from their slot's start, and bookings that found no slot."""
    fig = _figure(12, 8.4)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.07, top=0.86, wspace=0.2, hspace=0.42)
    (wait_ax, away_ax), (booked_ax, none_ax) = fig.subplots(2, 2)
    curves = _by_policy(points, BOOKING)
    for name, pts in curves.items():
        xs = [p.x * 100 for p in pts]
        label = labels.get(name, name)
        wait_ax.plot(xs, [p.p90_wait_s / 60 for p in pts], "o-", label=label)
        away_ax.plot(xs, [p.turned_away / last_week_days for p in pts], "o-", label=label)
        some = [p for p in pts if p.bookings]   # nobody booked: no booked wait to show
        booked_ax.plot([p.x * 100 for p in some], [p.booked_p90_s / 60 for p in some], "o-",
                       label=label)
    if curves:  # who books and which slot they get do not depend on the policy: one curve
        pts = next(iter(curves.values()))
        none_ax.plot([p.x * 100 for p in pts], [p.unbooked for p in pts], "o-", color="grey",
                     label="every policy (bookings are made before the door or the hint)")
    wait_ax.axhline(target_s / 60, color="black", linestyle="--", linewidth=1,
                    label=f"target: p90 under {target_s / 60:.0f} min")
    wait_ax.set_ylim(bottom=0)
    for ax, title, ylabel in (
            (wait_ax, "Last-week p90 wait of walk-ins", "minutes"),
            (away_ax, "Turned away per last-week day: at closing, at the door, balked, gave up\n"
             "(whoever comes back counts again)", "people"),
            (booked_ax, "Booked consumers: p90 wait from their slot's start (whole month)", "minutes"),
            (none_ax, "Wanted to book but found no free slot (whole month; they walked in)",
             "people")):
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("share of the last week's counter payers who book a slot (%)")
        ax.set_xlim(wait_ax.get_xlim())
        ax.set_ylim(0, max(ax.get_ylim()[1] * 1.1, 1.0))   # room for the legend
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("What if consumers booked a 15-minute slot from their phone instead of walking in?\n"
                 "(bookings hold at most a set share of counter time; bookers take the "
                 f"{day_choice} day with a free slot)", fontsize=12)
    fig.savefig(path, dpi=DPI, pil_kwargs=PNG_OPTIONS)
    return path


def booking_rows(points: Sequence[WhatIfPoint], labels: dict[str, str],
                 last_week_days: int) -> list[list[str]]:
    """The booking what-if as rows: share, policy, the four figures the plot shows."""
    rows = []
    for name, pts in _by_policy(points, BOOKING).items():
        for p in pts:
            rows.append([f"{p.x * 100:.0f} %", labels.get(name, name), f"{p.p90_wait_s / 60:.1f}",
                         f"{p.booked_p90_s / 60:.1f}" if p.bookings else "-",
                         f"{p.turned_away / last_week_days:,.0f}", f"{p.bookings:,}", f"{p.unbooked:,}"])
    return rows


BOOKING_HEADER = ("booking share", "policy", "last-week walk-in p90 (min)",
                  "booked p90 from slot start (min)", "turned away per last-week day",
                  "wanted a slot", "found no slot")


def booking_table(points: Sequence[WhatIfPoint], labels: dict[str, str], last_week_days: int,
                  markdown: bool = False) -> str:
    """The booking what-if's table, fixed-width for the terminal or Markdown for the summary."""
    rows = [list(BOOKING_HEADER)] + booking_rows(points, labels, last_week_days)
    return as_markdown(rows) if markdown else as_fixed_width(rows)


def booking_answer_lines(points: Sequence[WhatIfPoint], labels: dict[str, str]) -> list[str]:
    """Per policy: how much booking share B (20 % when tried) lowers the walk-ins' last-week p90
    wait against nobody booking, and what it does to those turned away."""
    lines = []
    for name, pts in _by_policy(points, BOOKING).items():
        base = next((p for p in pts if p.x == 0), None)
        tried = [p for p in pts if p.x > 0]
        if base is None or not tried:
            continue
        b = next((p for p in tried if abs(p.x - BOOKING_ANSWER_SHARE) < 1e-9), tried[0])
        change = base.p90_wait_s - b.p90_wait_s
        verb = "lowers" if change >= 0 else "raises"
        lines.append(
            f"{labels.get(name, name)}: {b.x * 100:.0f} % booking a slot {verb} the walk-ins' "
            f"last-week p90 wait by {abs(change) / 60:.1f} min ({base.p90_wait_s / 60:.1f} -> "
            f"{b.p90_wait_s / 60:.1f} min) and turned away in the last week by "
            f"{base.turned_away - b.turned_away:,} ({base.turned_away:,} -> {b.turned_away:,}); "
            f"the booked wait {b.booked_p90_s / 60:.1f} min (p90) from their slot's start, "
            f"{b.unbooked:,} of {b.bookings:,} found no slot.")
    return lines


# -- advice per hall and billing cycles ----------------------------------------------------------


def city_plans(weeks: Sequence[HallWeek]) -> list[CityPlan]:
    """Each policy's halls, as a city plan, in the order the policies came."""
    by_policy: dict[str, list[HallWeek]] = {}
    for week in weeks:
        by_policy.setdefault(week.policy, []).append(week)
    return [city_plan(v) for v in by_policy.values()]


def hall_table(plan: CityPlan, labels: dict[str, str], markdown: bool = False) -> str:
    """Counters needed per hall and last-week day (``+`` after a figure: even that many did not
    meet the target), the city's total beside what it has, and what is moved and opened extra."""
    days = plan.halls[0].days
    header = ["hall", "today", *[f"day {d}" for d in days], "week's most"]
    rows = [[h.substation, str(h.today),
             *[f"{n}{'' if ok else '+'}" for n, ok in zip(h.needed, h.met, strict=True)],
             str(max(h.needed))] for h in plan.halls]
    rows.append(["city", str(plan.counters_now), *[str(n) for n in plan.needed_per_day], ""])
    rows.append(["moved", "", *[str(n) for n in plan.moved], ""])
    rows.append(["extra", "", *[str(n) for n in plan.extra], str(plan.extra_days)])
    title = f"{labels.get(plan.policy, plan.policy)}:"
    if markdown:
        return f"**{title}**\n\n" + as_markdown([header, *rows])
    return f"{title}\n" + as_fixed_width([header, *rows], left=())


def hall_answer_lines(plans: Sequence[CityPlan], labels: dict[str, str], target_s: float) -> list[str]:
    """Per policy, the cheapest city plan in a sentence, beside the simpler ones."""
    lines = []
    for p in plans:
        halls = len(p.halls)
        short = [h.substation for h in p.halls if not all(h.met)]
        lines.append(
            f"{labels.get(p.policy, p.policy)}: to keep each last-week day's p90 under "
            f"{target_s / 60:.0f} min in every hall, the halls need {min(p.needed_per_day)} to "
            f"{max(p.needed_per_day)} counters a day against the city's {p.counters_now}; moving "
            f"counters between halls and opening extra ones only on the days short of them costs "
            f"{p.extra_days} extra counter-days (one number everywhere, {p.same_everywhere} per "
            f"hall: {p.same_extra_days}; each of the {halls} halls its own week's most, nobody "
            f"moved: {p.own_most_extra_days})"
            + (f"; not met even with the most tried at {', '.join(short)}" if short else "") + ".")
    return lines


def plot_halls(weeks: Sequence[HallWeek], labels: dict[str, str], target_s: float, path: Path,
               share_words: str = "today's online share", have_words: str = "now") -> Path:
    """Per policy: a grid of halls by last-week day, each cell the counters that hall needs that
    day (darker: more above today's; today's or fewer: white), and the city's total per day
    beside what it has. ``share_words`` and ``have_words`` say what the online share and the
    halls' counters are (a plan's own, not today's)."""
    plans = city_plans(weeks)
    rows = len(plans)
    names = [f"{h.substation} ({h.today} {have_words})" for h in plans[0].halls]
    left = max(0.07, (0.3 + 0.065 * max(map(len, names))) / 12)   # room for the longest hall label
    fig = _figure(12, 0.6 + 3.3 * rows)
    fig.subplots_adjust(left=left, right=0.98, bottom=0.08 / rows, top=1 - 0.75 / (0.6 + 3.3 * rows),
                        wspace=0.18, hspace=0.45)
    axes = fig.subplots(rows, 2, squeeze=False, gridspec_kw={"width_ratios": [3, 2]})
    top = max(max(max(h.needed) - h.today for h in p.halls) for p in plans)
    for (grid, city), p in zip(axes, plans, strict=True):
        days = p.halls[0].days
        over = np.array([[n - h.today for n in h.needed] for h in p.halls], dtype=float)
        grid.imshow(over, cmap="Reds", vmin=0, vmax=max(1, top), aspect="auto")
        for i, h in enumerate(p.halls):
            for k, n in enumerate(h.needed):
                grid.text(k, i, f"{n}{'' if h.met[k] else '+'}", ha="center", va="center", fontsize=8,
                          color="white" if over[i, k] > 0.6 * max(1, top) else "black")
        grid.set_xticks(range(len(days)))
        grid.set_xticklabels([f"day {d}" for d in days], fontsize=8)
        grid.set_yticks(range(len(p.halls)))
        grid.set_yticklabels(names, fontsize=8)
        grid.set_title(f"{labels.get(p.policy, p.policy)}: counters each hall needs "
                       f"(p90 under {target_s / 60:.0f} min)", fontsize=10)
        x = np.arange(len(days))
        city.bar(x, p.needed_per_day, color="tab:red", label="needed, all halls")
        city.bar(x, [min(n, p.counters_now) for n in p.needed_per_day], color="tab:blue",
                 label="of them, the city's own (some moved between halls)")
        city.axhline(p.counters_now, color="black", linestyle="--", linewidth=1,
                     label=f"the city's counters: {p.counters_now}")
        city.set_xticks(x)
        city.set_xticklabels([f"day {d}" for d in days], fontsize=8)
        city.set_ylabel("counters")
        city.set_ylim(0, max(max(p.needed_per_day), p.counters_now) * 1.6)
        city.set_title(f"City: {p.extra_days} extra counter-days (red) in the week", fontsize=10)
        city.legend(fontsize=7, loc="upper left")
        city.grid(alpha=0.3, axis="y")
    fig.suptitle(f"Advice per hall, last week, {share_words}  (+: not met even with the most tried)",
                 fontsize=12)
    fig.savefig(path, dpi=DPI, pil_kwargs=PNG_OPTIONS)
    return path


def cycles_answer_lines(points: Sequence[WhatIfPoint], labels: dict[str, str]) -> list[str]:
    """Per policy: what the most cycles tried do to the last week against today's one."""
    lines = []
    for name, pts in _by_policy(points, CYCLES).items():
        base = next((p for p in pts if p.x == 1), None)
        most = pts[-1]
        if base is None or most.x == 1:
            continue
        lines.append(
            f"{labels.get(name, name)}: bills due on {most.x:g} cycles instead of one change the "
            f"last-week p90 wait from {base.p90_wait_s / 60:.1f} to {most.p90_wait_s / 60:.1f} min "
            f"and those turned away in the last week from {base.turned_away:,} to "
            f"{most.turned_away:,}.")
    return lines


CYCLES_HEADER = ("due-date cycles", "policy", "month-end share of counter payments",
                 "last-week p90 (min)", "turned away, last week", "of them balked / gave up",
                 "worst day's p90 (min)")


def cycles_table(points: Sequence[WhatIfPoint], labels: dict[str, str], month_end_share: dict[int, float],
                 markdown: bool = False) -> str:
    """The staggered due dates what-if: per cycle count and policy, the last week's p90 wait and
    those turned away (by any cause), and the worst day's p90 anywhere in the month."""
    rows = [list(CYCLES_HEADER)]
    for name, pts in _by_policy(points, CYCLES).items():
        for p in pts:
            k = int(p.x)
            rows.append([f"{k}{' (today)' if k == 1 else ''}", labels.get(name, name),
                         f"{month_end_share.get(k, 0.0) * 100:.0f} %", f"{p.p90_wait_s / 60:.1f}",
                         f"{p.turned_away:,}", f"{p.balked:,} / {p.reneged:,}",
                         f"{p.worst_day_p90_s / 60:.1f} (day {p.worst_day})"])
    return as_markdown(rows) if markdown else as_fixed_width(rows)


# -- the answer and the summary -----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One policy, one what-if axis: the smallest value meeting the target, and the one below."""

    policy: str
    axis: str
    met: WhatIfPoint | None        # the smallest value tried whose p90 is under the target
    below: WhatIfPoint | None      # the largest value tried under that one (not enough)
    tried: tuple[float, ...]


def answers(points: Sequence[WhatIfPoint], target_s: float) -> list[Answer]:
    """Per policy and axis, where the last-week p90 wait first drops under the target."""
    found = []
    for name in dict.fromkeys(p.policy for p in points):
        for axis in (COUNTERS, ONLINE):
            pts = sorted((p for p in points if p.policy == name and p.axis == axis), key=lambda p: p.x)
            if not pts:
                continue
            ok = [k for k, p in enumerate(pts) if p.p90_wait_s < target_s]
            met = pts[ok[0]] if ok else None
            below = pts[ok[0] - 1] if ok and ok[0] > 0 else (None if ok else pts[-1])
            found.append(Answer(name, axis, met, below, tuple(p.x for p in pts)))
    return found


def _value(axis: str, x: float) -> str:
    return f"{x:g} counters per substation" if axis == COUNTERS else f"an online share of {x * 100:.0f} %"


def answer_lines(found: Sequence[Answer], labels: dict[str, str], target_s: float) -> list[str]:
    """The answer in sentences, one per policy and what-if axis."""
    lines = []
    for a in found:
        label = labels.get(a.policy, a.policy)
        goal = f"{label}: last-week p90 wait under {target_s / 60:.0f} min"
        if a.met is None:
            tried = _value(a.axis, max(a.tried))
            lines.append(f"{goal}: not reached with up to {tried} (p90 there: "
                         f"{a.below.p90_wait_s / 60:.1f} min); try larger values.")
            continue
        today = "today's online share" if a.axis == COUNTERS else "today's counters"
        text = f"{goal} with {_value(a.axis, a.met.x)} at {today} (p90 {a.met.p90_wait_s / 60:.1f} min"
        if a.below is not None:
            text += f"; {_value(a.axis, a.below.x)} gives {a.below.p90_wait_s / 60:.1f} min"
        else:
            text += "; already the smallest value tried"
        lines.append(text + ").")
    return lines


def write_summary(path: Path, *, scenario_name: str, figures: Sequence[tuple[str, str, str]],
                  results: Sequence[MonthResult], answer_text: Sequence[str], plots: Sequence[Path],
                  notes: Sequence[str], sections: Sequence[tuple[str, str]] = ()) -> Path:
    """The Markdown summary: figures used, per-policy tables, the answer, ``sections`` (title,
    Markdown body: the what-if tables), the plots."""
    days = results[0].days if results else []
    first, last = (days[0].day, days[-1].day) if days else (0, 0)
    out = [f"# Month capacity simulation: {scenario_name}", "",
           f"Working days {first} to {last} of the month; `*`/yes marks the last week.", "",
           "## The answer", ""]
    out += [f"- {line}" for line in answer_text] or ["- (no what-if runs)"]
    out += ["", "## Figures used", "", "| figure | value | from |", "|---|---|---|"]
    out += [f"| {name} | {value} | {source} |" for name, value, source in figures]
    for result in results:
        out += ["", f"## {result.policy.label}", "", markdown_table(result), "", _afterword(result)]
    for title, body in sections:
        out += ["", f"## {title}", "", body]
    out += ["", "## Plots", ""]
    out += [f"![{p.stem}]({p.name})" for p in plots]
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path
