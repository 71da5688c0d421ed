"""Plans from this month's own data: ``peak-sim --from-store DATA_DIR`` (or ``--store redis``).

The server's store holds every token it issued, called, served or marked a no-show, and every
consumer refused at the door. Read through the Store contract only (``day_events``), as the
``counter-server report`` command reads it (no server need run, nothing is written), the month so
far gives the figures a planner otherwise guesses: arrivals per hall and hour (tokens issued plus
those refused at the door, who came and were turned away), each service's time at the counter
(from the call to done, the span the server's estimate learns from), the no-show share, and how
many paid at the counters on the days so far. Those replace the scenario's [demand] figures and
service times; the rest of the month is then simulated with the scenario's month shape (its
last-week share), which the days before the last week cannot show. Every figure says whether it
was MEASURED (over how many days and tokens) or ASSUMED (and from where).
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from counter_server.config import STORE_ENGINES, Scenario, Settings
from counter_server.store import STORE_UNAVAILABLE, open_store

from .demand import DemandParams, demand_from_scenario

MEASURED, ASSUMED = "MEASURED", "ASSUMED"
# Sources of peak-sim's figures that are assumptions about demand (the rest are its settings).
ASSUMED_SOURCES = ("scenario [demand]", "scenario [phones]", "simulator default",
                   "online_payments_per_month")
ONLINE_NOTE = ("nothing in the store records payments made online (the counters' payments, "
               "cash or UPI, are all counter payments)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that make peak-sim read the month so far from a counter-server's store."""
    g = parser.add_argument_group(
        "plans from this month's own data (read from the counter-server's store; see docs/peak.md)")
    g.add_argument("--from-store", type=Path, metavar="DATA_DIR",
                   help="measure the month so far from the store of the counter-server whose "
                   "--data-dir this is, and simulate the rest of the month from it")
    g.add_argument("--store", choices=STORE_ENGINES, default=None,
                   help="the store's engine, as counter-server names it (default: the config's "
                   "[store], else sqlite); --store redis reads Redis, no data dir needed")
    g.add_argument("--redis-url", default=None,
                   help="the Redis server of --store redis (default: the config's [store] redis_url)")
    g.add_argument("--month", default=None, metavar="YYYY-MM",
                   help="the month to read (default: this month in the scenario's time zone)")


def wanted(args: argparse.Namespace) -> bool:
    return args.from_store is not None or args.store is not None


# -- what the store says -------------------------------------------------------------------------

@dataclass
class MonthRecord:
    """What the recorded days of a month say, before it is shaped into simulator inputs."""

    month: str
    days: list[str] = field(default_factory=list)              # dates with any arrival, in order
    arrivals: Counter = field(default_factory=Counter)         # (hall, local hour) -> came
    refused: Counter = field(default_factory=Counter)          # hall -> refused at the door
    by_service: Counter = field(default_factory=Counter)       # service -> came
    payment_by_day: list[int] = field(default_factory=list)    # the payment service's, per day
    service_s: dict[str, list[float]] = field(default_factory=dict)    # call to done, per service
    started_s: dict[str, list[float]] = field(default_factory=dict)    # start to done, per service
    no_shows: Counter = field(default_factory=Counter)         # service -> ended a no-show
    no_show_hold_s: dict[str, list[float]] = field(default_factory=dict)   # call to no-show
    slices: Counter = field(default_factory=Counter)           # share of opening hours -> came

    @property
    def tokens(self) -> int:
        return sum(self.arrivals.values()) - sum(self.refused.values())

    def halls(self) -> Counter:
        """Arrivals per hall."""
        found: Counter = Counter()
        for (hall, _), n in self.arrivals.items():
            found[hall] += n
        return found

    def mean_service_s(self, service: str) -> float | None:
        times = self.service_s.get(service, [])
        return sum(times) / len(times) if times else None

    def no_show_share(self, service: str | None = None) -> float | None:
        """No-shows among the tokens that ended served or a no-show (a no-show who came back
        and was served counts as served, as the reports count it)."""
        services = [service] if service else set(self.service_s) | set(self.no_shows)
        shows = sum(len(self.service_s.get(s, [])) for s in services)
        missed = sum(self.no_shows[s] for s in services)
        return missed / (shows + missed) if shows + missed else None


def profile_slices(scenario: Scenario) -> int:
    """Slices of the opening hours the measured profile has: one per hour of the longest day."""
    spans = [_seconds(s.closes) - _seconds(s.opens) for s in scenario.substations.values()]
    return max(1, round(max(spans) / 3600))


def measure(days: Iterable[tuple[str, Sequence[Mapping[str, Any]]]], scenario: Scenario,
            month: str) -> MonthRecord:
    """Fold each day's events (``Store.day_events``) into the month's record; days nobody came
    on are left out (the counters were closed, or the server was not yet in use)."""
    record = MonthRecord(month)
    n_slices = profile_slices(scenario)
    payment = scenario.payment_service
    for day, events in days:
        came = _fold_day(events, scenario, record, n_slices)
        if sum(came.values()):
            record.days.append(day)
            record.payment_by_day.append(came[payment])
    return record


def _fold_day(events: Sequence[Mapping[str, Any]], scenario: Scenario, record: MonthRecord,
              n_slices: int) -> Counter:
    """Add one day to ``record``; returns the day's arrivals per service."""
    came: Counter = Counter()
    tz = scenario.timezone

    def arrive(hall: str, service: str, at: float) -> None:
        local = datetime.fromtimestamp(at, tz)
        record.arrivals[hall, local.hour] += 1
        record.by_service[service] += 1
        came[service] += 1
        sub = scenario.substations.get(hall)
        if sub is not None:
            opens, closes = _seconds(sub.opens), _seconds(sub.closes)
            into = (local.hour * 3600 + local.minute * 60 + local.second - opens) / max(closes - opens, 1)
            record.slices[min(max(int(into * n_slices), 0), n_slices - 1)] += 1

    ended: dict[str, tuple[str, str]] = {}       # token -> (status, service) after its last event
    for event in events:
        kind, data = event["kind"], event.get("data") or {}
        if kind == "turned_away":
            record.refused[event["substation"]] += 1
            arrive(event["substation"], data.get("service", "?"), event["at"])
            continue
        token = event.get("token_id")
        if not token or "number" not in data:
            continue   # payments, counters opened and closed, leases
        if kind == "issued":
            arrive(event["substation"], data["service"], data.get("issued_at") or event["at"])
        if kind == "completed" and data.get("called_at") and data.get("finished_at"):
            record.service_s.setdefault(data["service"], []).append(data["finished_at"] - data["called_at"])
            if data.get("started_at"):
                record.started_s.setdefault(data["service"], []).append(
                    data["finished_at"] - data["started_at"])
        if kind == "no_show" and data.get("called_at") and data.get("finished_at"):
            record.no_show_hold_s.setdefault(data["service"], []).append(
                data["finished_at"] - data["called_at"])
        ended[token] = (data["status"], data["service"])
    for status, service in ended.values():
        if status == "no_show":
            record.no_shows[service] += 1
    return came


async def read_month(settings: Settings, scenario: Scenario, month: str,
                     today: str | None = None) -> MonthRecord:
    """The month's record from the store ``settings`` name, opened as the reports open it: an
    existing SQLite file (never created here) or Redis; only ``day_events`` is read."""
    if settings.store.engine == "sqlite" and not settings.database_path.exists():
        where = settings.data_dir.absolute()
        why = "no such directory" if not where.is_dir() else "no counter-server database in it"
        raise ValueError(f"--from-store {where}: {why} (give the counter-server's --data-dir)")
    try:
        store = await open_store(settings)
    except STORE_UNAVAILABLE as exc:
        raise ValueError(f"--store {settings.store.engine}: cannot read the store: {exc}") from None
    try:
        year, number = int(month[:4]), int(month[5:7])
        last = calendar.monthrange(year, number)[1]
        if today is not None and today[:7] == month:
            last = int(today[8:10])
        found = [(day, await store.day_events(day))
                 for day in (f"{month}-{d:02d}" for d in range(1, last + 1))]
    finally:
        await store.close()
    return measure(found, scenario, month)


# -- what the simulator is given -----------------------------------------------------------------

@dataclass(frozen=True)
class FromStore:
    """The scenario with the measured figures laid over its [demand] and services, and what
    says, figure by figure, which were measured and which assumed."""

    scenario: Scenario
    record: MonthRecord
    where: str
    rows: tuple[tuple[str, str, str, str], ...]      # figure, value, MEASURED/ASSUMED, basis
    measured_keys: frozenset[str]
    comparison: tuple[str, ...]

    @property
    def remaining(self) -> int:
        """The month's working days not yet recorded."""
        working = int(self.scenario.demand["working_days_per_month"])
        return working - len(self.record.days)

    def days_to_run(self, given: int | None) -> int:
        """``--days`` as given, else the rest of the month."""
        if given is not None:
            return given
        if self.remaining < 1:
            raise ValueError(f"{self.where}: all {len(self.record.days)} working days of "
                             f"{self.record.month} are recorded, nothing is left to project; give "
                             "--days N to replay the month's last N days on its measured figures")
        return self.remaining

    def relabel(self, figures: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        """peak-sim's 'figures used' with each source saying MEASURED or ASSUMED."""
        basis = f"{MEASURED} ({_n(len(self.record.days), 'day')}, {_n(self.record.tokens, 'token')})"
        out = []
        for name, value, source in figures:
            if source == "flag":
                pass
            elif name in self.measured_keys:
                source = f"{basis}, {self.where}"
            elif source.startswith(ASSUMED_SOURCES) and name != "payment service":
                note = f"; {ONLINE_NOTE}" if name == "online_share" else ""
                source = f"{ASSUMED}: {source}{note}"
            out.append((name, value, source))
        return out

    def read(self, days: int) -> str:
        """What was read and what is simulated, in a sentence or two."""
        r, working = self.record, int(self.scenario.demand["working_days_per_month"])
        simulated = (f" Simulated: working days {working - days + 1}-{working} of {working}, "
                     "starting with nobody coming back from earlier days." if 1 <= days <= working else "")
        return (f"Read from {self.where}, {r.month}: {_n(len(r.days), 'day')} recorded ({r.days[0]} to "
                f"{r.days[-1]}, {_days(len(r.days))}), {_n(r.tokens, 'token')} issued and "
                f"{sum(r.refused.values())} refused at the door.{simulated}")

    def lines(self, days: int) -> list[str]:
        """The printed report: what was read, each figure measured or assumed, the hall x hour
        arrivals and how the days so far compare with the scenario's [demand]."""
        r = self.record
        out = [self.read(days), ""]
        width = max(len(row[0]) for row in self.rows)
        value_width = min(max(len(row[1]) for row in self.rows), 36)
        out += [f"  {name:<{width}}  {value:>{value_width}}  {label:<8}  {basis}"
                for name, value, label, basis in self.rows]
        out += ["", f"Arrivals per hall and hour (tokens issued + refused at the door, "
                f"{_n(len(r.days), 'day')}):", hall_hours(r)]
        out += ["", "Against the scenario's [demand]:"] + [f"  {line}" for line in self.comparison]
        return out

    def markdown(self, days: int) -> str:
        r = self.record
        body = [self.read(days), "", "| figure | value | | basis |", "|---|---|---|---|"]
        body += [f"| {name} | {value} | {label} | {basis} |" for name, value, label, basis in self.rows]
        body += ["", f"Arrivals per hall and local hour, over {_n(len(r.days), 'day')}:", "",
                 "```", hall_hours(r), "```", "", "Against the scenario's [demand]:", ""]
        body += [f"- {line}" for line in self.comparison]
        return "\n".join(body)


def from_record(record: MonthRecord, scenario: Scenario, flags: Mapping[str, Any],
                where: str) -> FromStore:
    """Lay the measured figures over ``scenario``: [demand] substation_weights, intraday_profile,
    visits_per_day and the counter payments (as the connections that give them, the scenario's
    paying and online shares kept), and each measured service's mean time at the counter."""
    if not record.days:
        raise ValueError(f"{where}: no days recorded in {record.month} (no tokens issued, nobody "
                         "refused at the door); nothing to measure")
    base = demand_from_scenario(scenario, flags)
    payment = base.payment_service
    k = len(record.days)
    if k > base.working_days:
        raise ValueError(f"{where}: {k} days recorded in {record.month}, more than the month's "
                         f"{base.working_days} working days; give --working-days {k} or more")
    shape = sum(base.counter_payments_on(d) for d in range(1, k + 1)) / max(
        base.counter_payments_per_month, 1e-12)
    paid = sum(record.payment_by_day)
    month_payments = paid / shape if shape > 0 else 0.0
    takes = base.paying_share * (1 - base.online_share)
    if takes <= 0:
        raise ValueError("paying_share x (1 - online_share) is 0: counter payments cannot be projected")
    halls = record.halls()
    demand = dict(scenario.demand)
    demand.update(
        online_share=base.online_share,      # kept as assumed, whatever connections become
        connections=round(month_payments / takes, 2),
        substation_weights={h: float(halls.get(h, 0)) for h in scenario.substations},
        intraday_profile=[record.slices.get(i, 0) for i in range(profile_slices(scenario))],
        visits_per_day={s: record.by_service.get(s, 0) / k for s in scenario.services if s != payment},
    )
    services, service_rows = _services(record, scenario)
    measured = frozenset({"connections", "counter payments per month", "substation_weights",
                          "intraday_profile", "visits_per_day"})
    scenario_now = replace(scenario, demand=demand, services=services)
    rows = _rows(record, base, scenario, month_payments, demand["connections"], service_rows, flags)
    return FromStore(scenario_now, record, where, tuple(rows), measured,
                     tuple(_compare(record, base, scenario)))


def _services(record: MonthRecord, scenario: Scenario) -> tuple[dict, list[tuple[str, str, str, str]]]:
    """Each service with its measured time at the counter per token, no-shows' holds folded
    in ((1 - no-show share) x service + share x time a no-show held the counter), its min..max
    scaled with it (the scenario's spread, relative to its mean); the scenario's own where
    nothing was timed."""
    out, rows = {}, []
    for sid, s in scenario.services.items():
        mean = record.mean_service_s(sid)
        if mean is None:
            out[sid] = s
            rows.append((f"counter time {sid} (s)", f"{s.mean_service_s:g}", ASSUMED,
                         "scenario [[services]] mean_service_s (none timed in the store)"))
            continue
        share = record.no_show_share(sid) or 0.0
        holds = record.no_show_hold_s.get(sid, [])
        hold = sum(holds) / len(holds) if holds else 0.0
        fed = (1 - share) * mean + share * hold
        scale = fed / s.mean_service_s if s.mean_service_s > 0 else 1.0
        out[sid] = replace(s, mean_service_s=fed,
                           min_service_s=None if s.min_service_s is None else s.min_service_s * scale,
                           max_service_s=None if s.max_service_s is None else s.max_service_s * scale)
        started = record.started_s.get(sid) or [0.0]
        rows.append((f"service time {sid} (s)", f"{mean:.1f}", MEASURED,
                     f"call to done (start to done {sum(started) / len(started):.1f}), "
                     f"{_n(len(record.service_s[sid]), 'token')} (scenario: {s.mean_service_s:g})"))
        if record.no_shows[sid]:
            rows.append((f"counter time {sid} (s)", f"{fed:.1f}", MEASURED,
                         f"service time with no-shows' holds ({hold:.0f} s) folded in; what is simulated"))
    return out, rows


def _rows(record: MonthRecord, base: DemandParams, scenario: Scenario, month_payments: float,
          connections: float, service_rows: list,
          flags: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    paid = sum(record.payment_by_day)
    k, payment = len(record.days), base.payment_service
    basis = f"{_n(k, 'day')}, {_n(record.tokens, 'token')}"
    halls = record.halls()
    total = sum(halls.values()) or 1
    share = record.no_show_share()
    raw = scenario.demand

    def assumed(key: str, value: Any, what: str = "") -> tuple[str, str, str, str]:
        where = ("flag" if flags.get(key) is not None else "scenario [demand]" if key in raw
                 else "simulator default")
        return (key, f"{value:g}" if isinstance(value, float) else str(value),
                "flag" if where == "flag" else ASSUMED, f"{where}{what}")

    def measured(key: str, name: str, value: str, basis: str) -> tuple[str, str, str, str]:
        if flags.get(key) is not None:    # a flag wins over what was measured
            return (name, "(flag)", "flag", f"its flag (measured: {value}, {basis})")
        return (name, value, MEASURED, basis)

    rows = [
        ("arrivals", f"{record.tokens + sum(record.refused.values())}", MEASURED,
         f"tokens issued + refused at the door, {_n(k, 'day')}"),
        (f"{payment} arrivals a day", f"{paid / k:.1f}", MEASURED, f"{paid} over {_n(k, 'day')}"),
        measured("connections", "counter payments per month", f"{month_payments:,.0f}",
                 f"{paid} on {_days(k)}, scaled by the month shape (ASSUMED below)"),
        measured("connections", "connections (implied)", f"{connections:,.0f}",
                 "the counter payments / (paying_share x (1 - online_share)); "
                 f"scenario: {raw.get('connections', '-')}"),
        measured("substation_weights", "substation_weights",
                 ", ".join(f"{h} {halls.get(h, 0) / total:.0%}" for h in scenario.substations),
                 f"arrivals per hall, {basis}"),
        measured("intraday_profile", "intraday_profile", f"{profile_slices(scenario)} hourly slices",
                 f"arrivals by share of opening hours, {basis}"),
        measured("visits_per_day", "visits_per_day",
                 ", ".join(f"{s} {record.by_service.get(s, 0) / k:.1f}"
                           for s in scenario.services if s != payment) or "-",
                 f"other services' arrivals / {_n(k, 'day')}"),
        ("no-show share", "-" if share is None else f"{share:.1%}", MEASURED,
         f"{sum(record.no_shows.values())} of the tokens that ended served or a no-show; folded "
         "into counter time"),
        *service_rows,
        ("online_share", f"{base.online_share:.4f}", "flag", "its flag")
        if flags.get("online_share") is not None else
        ("online_share", f"{base.online_share:.4f}", ASSUMED, f"scenario [demand]: {ONLINE_NOTE}"),
        assumed("paying_share", base.paying_share),
        assumed("working_days_per_month", base.working_days, f"; {k} recorded, the rest simulated"),
        assumed("last_week_working_days", base.last_week_days),
        assumed("last_week_share_of_counter_payments", base.last_week_share,
                " (the month shape the days so far are scaled by)"),
        assumed("due_date_cycles", base.due_date_cycles),
        assumed("come_back_share", base.come_back_share),
        assumed("door_online_accept", base.door_online_accept),
        assumed("online_hint_uptake", base.online_hint_uptake),
        assumed("patience_mean_minutes", base.patience_mean_s / 60),
        assumed("balk_wait_minutes", base.balk_wait_s / 60),
        assumed("service_time_distribution", base.service_time_distribution,
                " (spread: the scenario's min..max, scaled with the mean)"),
    ]
    return rows


def _compare(record: MonthRecord, base: DemandParams, scenario: Scenario) -> list[str]:
    """The days so far against what the scenario's [demand] expects on them."""
    k, payment = len(record.days), base.payment_service
    expected = sum(base.counter_payments_on(d) for d in range(1, k + 1))
    paid = sum(record.payment_by_day)
    out = [f"{payment}: {paid} came on {_days(k)} ({paid / k:.1f} a day); the scenario "
           f"expects {expected:,.0f} ({expected / k:,.1f} a day): {_ratio(paid, expected)}"]
    for sid in scenario.services:
        if sid == payment:
            continue
        got, want = record.by_service.get(sid, 0) / k, base.visits_per_day.get(sid, 0.0)
        out.append(f"{sid}: {got:.1f} a day; " + (f"the scenario expects {want:g}: {_ratio(got, want)}"
                                                  if want > 0 else "the scenario expects none"))
    halls = record.halls()
    total = sum(halls.values()) or 1
    weights = {h: base.substation_weights.get(h, 1.0) for h in scenario.substations}
    wsum = sum(weights.values()) or 1
    out.append("halls' shares of arrivals: " + ", ".join(
        f"{h} {halls.get(h, 0) / total:.0%} (scenario {weights[h] / wsum:.0%})" for h in scenario.substations))
    for sid, s in scenario.services.items():
        mean = record.mean_service_s(sid)
        if mean is not None:
            out.append(f"{sid} service time: {mean:.0f} s over {_n(len(record.service_s[sid]), 'token')}; "
                       f"the scenario's {s.mean_service_s:g} s: {_ratio(mean, s.mean_service_s)}")
    refused = sum(record.refused.values())
    out.append(f"refused at the door: {refused} ({refused / max(record.tokens + refused, 1):.1%} of arrivals)")
    return out


def _n(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def _days(k: int) -> str:
    """The recorded days as working days: 'working day 1' or 'working days 1-3'."""
    return "working day 1" if k == 1 else f"working days 1-{k}"


def _ratio(got: float, want: float) -> str:
    return f"{got / want:.2f} x the scenario's" if want > 0 else "the scenario has none"


def hall_hours(record: MonthRecord) -> str:
    """A text table: one row per hall, a column per local hour anyone came in."""
    hours = sorted({h for _, h in record.arrivals})
    halls = sorted({hall for hall, _ in record.arrivals})
    width = max(len(h) for h in halls)
    lines = [" " * width + "".join(f"{h:>6}" for h in hours) + "   total"]
    for hall in halls:
        row = [record.arrivals.get((hall, h), 0) for h in hours]
        lines.append(f"{hall:<{width}}" + "".join(f"{n:>6}" for n in row) + f"{sum(row):>8}")
    return "\n".join(lines)


def load(args: argparse.Namespace, scenario: Scenario, flags: Mapping[str, Any],
         clock: Callable[[], float] = time.time) -> FromStore:
    """Read the month the flags name from the store they name; refuse (ValueError, one line)
    a data dir that does not exist or holds nothing, before anything is written."""
    settings = Settings(data_dir=args.from_store or Path("counter-data"), scenario=scenario,
                        store_engine=args.store, redis_url=args.redis_url)
    if settings.store.engine == "sqlite" and args.from_store is None:
        raise ValueError("--store sqlite: give --from-store DATA_DIR, the counter-server's data dir")
    month = args.month or scenario.day_of(clock())[:7]
    if len(month) != 7 or month[4] != "-" or not (month[:4] + month[5:]).isdigit() \
            or not 1 <= int(month[5:]) <= 12:
        raise ValueError(f"--month: must be YYYY-MM, not {month!r}")
    where = (f"data dir {settings.data_dir.absolute()}" if settings.store.engine == "sqlite"
             else f"Redis {settings.store_address}")
    record = asyncio.run(read_month(settings, scenario, month, scenario.day_of(clock())))
    return from_record(record, scenario, flags, where)


def _seconds(t: Any) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second
