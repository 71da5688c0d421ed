"""``peak-sim``: simulate a month at the cash counters under each policy, before month-end.

    peak-sim [--config F] [--days N] [--out DIR] [--seed S] [figures and policy flags]

Prints a per-day table for each policy (arrivals, served, turned away at closing and refused at
the door, wait p50/p90, longest line), writes PNG plots and summary.md to --out, and answers how
many counters per substation, or what online share, keep the last week's p90 wait under the
target, and how much booking slots from phones (a share of consumers booking instead of walking
in) lowers it. Every figure comes from the scenario's [demand] table or a flag; see --help.
With --from-store, the month so far recorded in the server's store gives them (recorded.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from counter_server.config import Scenario, ScenarioError, load_scenario

from . import coverage, recorded, report
from .demand import (DEFAULTS, FROM_PHONES, REQUIRED, DemandError, DemandParams,
                     demand_from_scenario, phones_default)
from .halls import HallJob, last_week_days
from .month import make_plan
from .policies import DOOR_ESTIMATES, POLICY_NAMES, Policy, make_policy
from .schedule import PlotFigures, run_all
from .whatif import BOOKING, CYCLES, Task, WhatIfPoint, fold_same_runs, refine_online, whatif_tasks

# Flag -> [demand] key it overrides.
DEMAND_FLAGS = {
    "connections": "connections",
    "paying_share": "paying_share",
    "online_share": "online_share",
    "working_days": "working_days_per_month",
    "last_week_days": "last_week_working_days",
    "last_week_share": "last_week_share_of_counter_payments",
    "profile": "intraday_profile",
    "come_back": "come_back_share",
    "door_online_accept": "door_online_accept",
    "hint_uptake": "online_hint_uptake",
    "service_dist": "service_time_distribution",
    "substation_weights": "substation_weights",
    "visits": "visits_per_day",
    "payment_service": "payment_service",
    "booking_share": "booking_share",
    "booking_early": "booking_early_factor",
    "booking_time_share": "booking_share_of_counter_time",
    "slot_minutes": "booking_slot_minutes",
    "booking_horizon": "booking_horizon_days",
    "last_slot_before_close": "booking_last_slot_before_close_minutes",
    "booking_day": "booking_day_choice",
    "patience_min": "patience_mean_minutes",
    "balk_wait_min": "balk_wait_minutes",
    "due_date_cycles": "due_date_cycles",
}
DEFAULT_BOOKING_SHARES = "0,0.1,0.2,0.3,0.4"


def _floats(text: str) -> list[float]:
    """``a,b,c`` or ``start:stop:step`` (stop included)."""
    if ":" in text:
        start, stop, step = (float(x) for x in text.split(":"))
        if step <= 0:
            raise argparse.ArgumentTypeError("step must be above 0")
        count = int(round((stop - start) / step)) + 1
        return [round(start + i * step, 10) for i in range(max(count, 0))]
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    """``a,b,c`` or ``first-last``."""
    if "-" in text and "," not in text:
        first, last = (int(x) for x in text.split("-"))
        return list(range(first, last + 1))
    return [int(x) for x in text.split(",") if x.strip()]


def _named(text: str) -> dict[str, float]:
    """``S01=2,S02=0.5``."""
    table = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if not value:
            raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, got {part!r}")
        table[name.strip()] = float(value)
    return table


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="peak-sim",
        description="Simulate a month at the cash counters under each policy, before month-end: "
        "per-day table, PNG plots and summary.md, and the counters or online share that keep "
        "the last week's p90 wait under the target.")
    run = p.add_argument_group("run")
    run.add_argument("--config", type=Path, default=None, help="scenario TOML (default: built-in)")
    run.add_argument("--days", type=int, default=None,
                     help="simulate the month's last N working days (default: the whole month)")
    run.add_argument("--out", type=Path, default=Path("peak-sim-out"),
                     help="where plots and summary.md go (default: %(default)s)")
    run.add_argument("--seed", type=int, default=1,
                     help="random seed: same seed, same results (default: %(default)s)")
    run.add_argument("--counters", type=int, default=None,
                     help="counters per substation (default: the scenario's)")
    run.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                     help="processes to run in (default: the number of cores, %(default)s)")
    run.add_argument("--sample-min", type=float, default=5.0,
                     help="minutes between line samples (default: %(default)s)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    d = p.add_argument_group("demand (default: the scenario's [demand], else the simulator's default)")
    d.add_argument("--connections", type=float)
    d.add_argument("--paying-share", type=float, help="share of connections paying each month")
    d.add_argument("--online-share", type=float,
                   help="share of payments made online (default: online_payments_per_month / payments)")
    d.add_argument("--working-days", type=int, help="working days per month")
    d.add_argument("--last-week-days", type=int, help="working days in the last week")
    d.add_argument("--last-week-share", type=float, help="share of counter payments in the last week")
    d.add_argument("--profile", type=_floats, help="intra-day arrival weights over equal slices of the "
                   "opening hours, e.g. 0.9,1.4,1.3,1,0.6,1.1,1.2,0.7")
    d.add_argument("--come-back", type=float,
                   help="share of those sent home who come back the next working day")
    d.add_argument("--substation-weights", type=_named, help="e.g. S01=2,S02=0.5 (others: 1)")
    d.add_argument("--visits", type=_named,
                   help="other services' visits per working day, city-wide, e.g. complaint=200")
    d.add_argument("--payment-service", help="the service paid online (default: the scenario's "
                   "[demand] payment_service); its arrivals go only to halls that serve it")
    d.add_argument("--service-dist", choices=["bounded", "exponential"],
                   help="service times within min..max with the mean, or exponential")
    d.add_argument("--booking-share", type=float,
                   help="share of the last week's fresh counter payers who book a slot from their "
                   "phone (default 0)")
    d.add_argument("--booking-early", type=float,
                   help="earlier payers book at this fraction of that share (default 0: none; 1: alike)")
    d.add_argument("--booking-time-share", type=float,
                   help="most of the counters' time bookings may take (default: [phones] "
                   "booking_share, 0.25)")
    d.add_argument("--slot-minutes", type=float,
                   help="length of a bookable slot (default: the scenario's [phones], 15)")
    d.add_argument("--last-slot-before-close", type=float,
                   help="minutes before closing the last slot starts (default: [phones], 60)")
    d.add_argument("--booking-horizon", type=int,
                   help="working days before their own day a booker may book (default: [phones] "
                   "booking_days in working days, 11)")
    d.add_argument("--booking-day", choices=["earliest", "quietest"],
                   help="the day the slot screen offers within the horizon: the earliest with a "
                   "free slot, or the one with the most free slots (default: earliest)")
    d.add_argument("--patience-min", type=float,
                   help="mean minutes a person waits in line before giving up (exponential; "
                   "0: nobody gives up; default: the scenario's, else 60)")
    d.add_argument("--balk-wait-min", type=float,
                   help="shown wait (minutes) at which everyone arriving goes home at once, "
                   "fewer in proportion below it (0: nobody balks; default: the scenario's, else 240)")
    d.add_argument("--due-date-cycles", type=int,
                   help="billing cycles with due dates spread over the month (default 1: one, "
                   "at month-end)")

    pol = p.add_argument_group("policies")
    pol.add_argument("--policies", default="none,door,hint",
                     help=f"comma-separated, from: {', '.join(POLICY_NAMES)} (default: %(default)s)")
    pol.add_argument("--door-estimate", choices=DOOR_ESTIMATES, default="p90",
                     help="wait the door compares with closing: the server's p50 or p90 "
                     "estimate, or the max bound (never admits anyone who cannot be served; "
                     "default: %(default)s)")
    pol.add_argument("--door-online-accept", type=float,
                   help="share of those refused at the door who pay online instead")
    pol.add_argument("--hint-after-min", type=float, default=None,
                     help="wait (p50) above which boards show the online hint "
                     "(default: the scenario's [online] hint_after_minutes)")
    pol.add_argument("--hint-uptake", type=float, help="share who pay online when shown the hint")

    w = p.add_argument_group("what-if")
    w.add_argument("--whatif-days", type=int, default=None,
                   help="last working days each what-if run covers (default: the last week; 0: none)")
    w.add_argument("--whatif-counters", type=_ints, default=None,
                   help="counters per substation to try, e.g. 4-12 (default: today's to twice that)")
    w.add_argument("--whatif-online", type=_floats, default=None,
                   help="online shares to try, e.g. 0.3:0.9:0.05 (default: today's, then 0.3 to 0.9 by 0.1)")
    w.add_argument("--whatif-online-step", type=float, default=0.05,
                   help="with the default shares, try shares this far apart where the p90 "
                   "target is first met (0: no second round; default: %(default)s)")
    w.add_argument("--whatif-booking", type=_floats, default=_floats(DEFAULT_BOOKING_SHARES),
                   help="shares of the last week's counter payers who book a slot instead of "
                   "walking in, each run over the simulated days ('' for none; default: %s)"
                   % DEFAULT_BOOKING_SHARES)
    w.add_argument("--whatif-cycles", type=_ints, default=[1, 2, 4],
                   help="billing cycles to try, due dates spread over the month by account "
                   "number, each run over the simulated days ('' for none; default: 1,2,4, "
                   "1 being today's)")
    w.add_argument("--no-hall-advice", action="store_true",
                   help="skip the advice per hall (counters each hall needs each last-week day)")
    w.add_argument("--target-min", type=float, default=None,
                   help="p90 wait target in minutes (default: the scenario's hint_after_minutes)")
    recorded.add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ScenarioError, DemandError, ValueError) as exc:
        print(f"peak-sim: {exc}", file=sys.stderr)
        return 2


def _check_days(args: argparse.Namespace, demand: DemandParams) -> None:
    """Refuse a --days the month does not have, saying what it counts and where the month's
    length comes from (a bare "between 1 and 26" left people guessing)."""
    month = demand.working_days
    for flag, given, low in (("--days", args.days, 1), ("--whatif-days", args.whatif_days, 0)):
        if given is not None and not low <= given <= month:
            source = ("--working-days" if args.working_days is not None
                      else "the scenario's [demand] working_days_per_month")
            longer = f", or make the month longer with --working-days {given}" if given > month else ""
            raise ValueError(
                f"{flag} {given}: counts working days back from the month's end, and the month has "
                f"{month} ({source}); give {flag} {low} to {month}{longer}")


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    scenario = load_scenario(args.config)
    flags = {key: getattr(args, flag) for flag, key in DEMAND_FLAGS.items()}
    so_far = recorded.load(args, scenario, flags) if recorded.wanted(args) else None
    if so_far is not None:   # the month so far, from the store: its figures, the rest of the month
        scenario, args.days = so_far.scenario, so_far.days_to_run(args.days)
        print("\n".join(so_far.lines(args.days)) + "\n")
    demand = demand_from_scenario(scenario, flags)
    hint_after_min = (args.hint_after_min if args.hint_after_min is not None
                      else scenario.online.hint_after_s / 60)
    target_min = args.target_min if args.target_min is not None else scenario.online.hint_after_s / 60
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    policies = [make_policy(n, door_estimate=args.door_estimate,
                            door_online_accept=demand.door_online_accept,
                            hint_after_s=hint_after_min * 60, hint_uptake=demand.online_hint_uptake)
                for n in names]
    if not policies:
        raise ValueError("--policies: name at least one policy")
    _check_days(args, demand)
    plan = make_plan(scenario, demand, args.days, args.counters, args.sample_min * 60)
    now_counters = max(len(lay.counters) for lay in plan.layouts)
    whatif_days = demand.last_week_days if args.whatif_days is None else args.whatif_days
    counters = args.whatif_counters or list(range(max(1, now_counters), 2 * now_counters + 1))
    shares = args.whatif_online if args.whatif_online is not None else _shares_from(demand.online_share)
    if any(n < 1 for n in counters) or any(not 0 <= s <= 1 for s in shares):
        raise ValueError("--whatif-counters must be 1 or more and --whatif-online between 0 and 1")
    booking = args.whatif_booking if whatif_days > 0 else []
    if any(not 0 <= s <= 1 for s in booking):
        raise ValueError("--whatif-booking: shares must be between 0 and 1")
    cycles = args.whatif_cycles if whatif_days > 0 else []
    if any(not 1 <= k <= demand.working_days for k in cycles):
        raise ValueError(f"--whatif-cycles: each must be between 1 and the month's "
                         f"{demand.working_days} working days")

    args.out.mkdir(parents=True, exist_ok=True)
    target_s = target_min * 60
    tasks = [Task(plan, tuple(policies), args.seed)]
    if whatif_days > 0:
        tasks = fold_same_runs(tasks + whatif_tasks(scenario, demand, policies, args.seed,
                                                    whatif_days, counters, shares, args.counters,
                                                    booking, args.days, cycles,
                                                    _booking_days(demand, args.days)))
    labels = {p.name: p.label for p in policies}
    figures = PlotFigures(args.out, labels, target_s, now_counters, demand.online_share,
                          whatif_days, demand.last_week_days, demand.booking_day_choice)

    def second_round(points: list[WhatIfPoint]) -> list[Task]:
        """Online shares every step where each policy first meets the p90 target."""
        finer = refine_online(points, target_s, args.whatif_online_step)
        by_name = {p.name: p for p in policies}
        return [task for name, more in finer.items()
                for task in whatif_tasks(scenario, demand, [by_name[name]], args.seed,
                                         whatif_days, [], more, args.counters)]

    halls = coverage.hall_days(plan, scenario, args.seed)
    hall_jobs = ([HallJob(plan, policy, args.seed, where, target_s) for policy in policies
                  for where in range(len(plan.layouts))]
                 if last_week_days(plan) and not args.no_hall_advice else [])
    finished = run_all(plan, tasks, halls, args.jobs, figures,
                       second_round if args.whatif_online is None else None,
                       progress=not args.no_progress, hall_jobs=hall_jobs)
    simulated = time.perf_counter() - started
    results, points, measured, plots = (finished.months, finished.points, finished.coverage,
                                        finished.plots)
    booking_points = [p for p in points if p.axis == BOOKING]

    for result in results:
        print(report.format_table(result))
        print()
    answer = report.answer_lines(report.answers(points, target_s), labels, target_s) if points else []
    city = report.city_plans(finished.hall_weeks) if finished.hall_weeks else []
    answer += report.hall_answer_lines(city, labels, target_s)
    answer += report.booking_answer_lines(booking_points, labels)
    answer += report.cycles_answer_lines(points, labels)
    for line in answer:
        print(line)
    print(measured.line())
    sections = [("Estimate coverage", coverage.summary_text(measured, coverage.busiest_day(plan)))]
    if so_far is not None:
        sections.insert(0, ("Measured from the store: the month so far", so_far.markdown(args.days)))
    if booking_points:
        title = ("What if consumers booked slots (walk-in waits and turned away: last week; "
                 "booked and slots: whole run)")
        print(f"\n{title}:")
        print(report.booking_table(booking_points, labels, demand.last_week_days))
        sections.append((title, report.booking_table(booking_points, labels, demand.last_week_days,
                                                     markdown=True)))
    if city:
        title = (f"Advice per hall: counters each hall needs on each last-week day for a p90 "
                 f"under {target_min:g} min, today's online share")
        print(f"\n{title}:")
        for one in city:
            print(report.hall_table(one, labels))
            print()
        sections.append((title, "\n\n".join(report.hall_table(one, labels, markdown=True)
                                             for one in city) + "\n\n" + HALL_NOTE))
    cycle_points = [p for p in points if p.axis == CYCLES]
    if cycle_points:
        shares = {int(p.x): demand.with_changes(due_date_cycles=int(p.x)).month_end_share()
                  for p in cycle_points}
        title = "What if bills fell due on several cycles (last week; worst day: whole run)"
        print(f"\n{title}:")
        print(report.cycles_table(cycle_points, labels, shares))
        print(CYCLES_NOTE)
        sections.append((title, report.cycles_table(cycle_points, labels, shares, markdown=True)
                         + "\n\n" + CYCLES_NOTE))
    notes = _notes(demand, whatif_days, plan.days, now_counters, bool(booking_points))
    figures = _figures(scenario, flags, demand, policies, hint_after_min, target_min, args.seed)
    summary = report.write_summary(
        args.out / report.SUMMARY, scenario_name=scenario.name,
        figures=so_far.relabel(figures) if so_far is not None else figures,
        results=results, answer_text=answer, plots=plots, notes=notes, sections=sections)
    print(f"\nwrote {', '.join(str(p) for p in [*plots, summary])}")
    processes = f"{args.jobs} process{'es' if args.jobs != 1 else ''}"
    print(f"{finished.runs} runs and {len(halls)} halls' estimate coverage in {simulated:.1f} s, all written "
          f"{time.perf_counter() - started:.1f} s after start-up ({processes})")
    return 0


HALL_NOTE = (
    "Each hall is worked out on its own (its consumers keep their hall), day by day through the "
    "last week from nobody coming back, those it sends home coming back to it the next day; a "
    "figure is the fewest counters (its own counters repeated) whose day's p90 wait of the "
    "served is under the target, `+` when even four times today's did not reach it. city: the "
    "halls' total; moved: counters lent by halls with some to spare that day; extra: opened "
    "beyond the city's own. The built-in scenario's halls are alike (same counters, hours and "
    "weight), so there they differ by chance only: read the week's most per hall, not one "
    "day's figure.")
CYCLES_NOTE = (
    "Assumption: with K cycles, accounts fall in K equal groups by account number, group k due "
    "round(k x working days / K) working days before month-end, and each group pays over the "
    "working days before its due date as the whole city pays before month-end today (the last "
    "week's share of counter payments in its last week), wrapping round the month; nothing "
    "else changes. K = 1 is today's month. Runs cover the same days as the main runs, since the "
    "other cycles' rushes come earlier in the month.")


def _booking_days(demand: DemandParams, days: int | None) -> int | None:
    """The days booking runs cover: the last week and the booking horizon before it, and a day
    before that for those it sends home, when nobody books earlier (days before those see no
    booking, so a run of them is today's); the whole run otherwise."""
    if demand.booking_early_factor > 0:
        return days
    reach = demand.last_week_days + demand.booking_horizon_days + 1
    return min(reach, days) if days is not None else min(reach, demand.working_days)


def _shares_from(now: float) -> list[float]:
    """Online shares for the what-if: today's, then every 10 points up to 90 %."""
    steps = [round(x / 10, 2) for x in range(int(now * 10) + 1, 10)]
    return [now] + [s for s in steps if s > now]


def _figures(scenario: Scenario, flags: dict[str, Any], demand: DemandParams,
             policies: Sequence[Policy], hint_after_min: float, target_min: float,
             seed: int) -> list[tuple[str, str, str]]:
    """(figure, value, where it came from) for the summary."""
    raw = scenario.demand

    def source(key: str) -> str:
        if flags.get(key) is not None:
            return "flag"
        return "scenario [demand]" if key in raw else "simulator default (not in the scenario)"

    rows = []
    for key in [*REQUIRED, "online_payments_per_month", *DEFAULTS]:
        if key == "online_payments_per_month" and key not in raw:
            continue
        value = flags.get(key) if flags.get(key) is not None else raw.get(key, DEFAULTS.get(key))
        where = source(key)
        if key in FROM_PHONES and where.startswith("simulator"):
            value, where = phones_default(scenario, key), f"scenario [phones] {FROM_PHONES[key]}"
        rows.append((key, f"{value}", where))
    online_src = ("flag" if flags.get("online_share") is not None
                  else "scenario [demand]" if "online_share" in raw
                  else "online_payments_per_month / (connections x paying_share)")
    rows.append(("online_share", f"{demand.online_share:.4f}", online_src))
    rows.append(("counter payments per month", f"{demand.counter_payments_per_month:,.0f}",
                 "connections x paying_share x (1 - online_share)"))
    rows.append(("payment service", demand.payment_service,
                 "flag" if flags.get("payment_service") else "scenario [demand]"))
    rows.append(("hint after (min)", f"{hint_after_min:g}", "scenario [online] unless --hint-after-min"))
    rows.append(("p90 wait target (min)", f"{target_min:g}", "scenario [online] unless --target-min"))
    rows.append(("door estimate", policies[0].door_estimate, "--door-estimate"))
    rows.append(("seed", str(seed), "--seed"))
    return rows


def _notes(demand: DemandParams, whatif_days: int, days: Sequence[int], counters: int,
           booking: bool = False) -> list[str]:
    notes = [
        "Turned away and refused consumers who do not pay online come back the next working day "
        f"(come_back_share = {demand.come_back_share:g}), so a day's arrivals include them and "
        "one person may be turned away on several days.",
        "Waits are of served consumers only: those turned away at closing waited too, and the "
        "table's turned-away count is the measure of that.",
        f"The month starts with nobody coming back from the month before (day {days[0]}).",
    ]
    if whatif_days:
        notes.append(f"What-if runs replay the month's last {whatif_days} working days only, "
                     "starting with nobody coming back from earlier days; at the scenario's "
                     f"{counters} counters the days before hardly send anyone home.")
    if booking:
        notes.append(
            "Booking what-if runs with anyone booking cover the last week, the booking horizon "
            "before it and a day more (the main runs' days when earlier payers book too; share 0 "
            "is the main runs): bookers move to earlier "
            f"days (the {demand.booking_day_choice} day with a free slot among their own and the "
            f"{demand.booking_horizon_days} working days before), so a last-week replay would "
            "miss them. The share is of the last week's fresh payers; earlier payers book at "
            f"{demand.booking_early_factor:g} x that share; those sent home come back as "
            "walk-ins. A slot holds "
            f"floor({demand.booking_share_of_counter_time:g} x counters x "
            f"{demand.booking_slot_s / 60:g} min / mean service time) bookings; the booked are "
            "called before walk-ins once their slot starts. The door and the hint count the "
            "booked waiting, not bookings still to come. The slot rule does not look at a day's "
            "walk-ins: days before the last week already run near full, so the days bookers move "
            "to get lines of their own, which the last-week figures here do not show.")
    return notes
