"""The figures a queue system is judged by, per substation and counter per day (and month).

Pure arithmetic over the store's events (``Store.day_events``): no I/O, no clock, so each
figure is tested against a hand-built day with known answers. Definitions, as managers read them:

- **issued**: tokens issued that day (a counter row counts those its cashier issued).
- **served**: tokens completed; **no-shows** and **cancelled**: tokens that ended that way
  (a no-show who came back and was served counts as served); **open at end**: tokens still
  waiting or at a counter when the report was made.
- **closed unserved**: tokens (and booked slots that never started) still waiting or called
  when the counters closed or the day ended: the day closed them, nobody served them. A counter
  row counts those called there and not started. A token still being served when the day
  ended is finished with it: served, without a service time (nobody timed its end).
- **turned away**: consumers refused at the door by admission or the daily cap (substation rows).
- **wait**: from issue to the first call to a counter. Substation rows take every token that
  was called; a counter row the tokens it called first. p50/p90 are nearest-rank percentiles.
- **service time**: from the (last) call to done: how long a consumer holds a counter, the same
  span the wait estimate learns from. Counted on the counter that completed the token.
- **served within 15 / 30 min**: of the tokens served, the share whose wait was at most that.
- **busiest hour**: a substation's hour (local time) with the most tokens issued; a counter's
  hour with the most tokens it served.
- **payments taken**: taken at the counters that day (written to the outbox, each with its
  provisional receipt), and of those, **posted** to billing, **pending** (not yet posted:
  waiting for billing, or resubmitted), **failed** for good and not yet resubmitted or
  refunded, and **refunded** to the consumer, with their amounts in paise; taken = posted +
  pending + failed + refunded. "Taken" is the word everywhere (text, CSV, JSON): a payment
  still waiting for billing and one already posted were both taken.

On a substation (or total) row every issued token ends in one column: issued = served +
no-shows + cancelled + closed unserved + open at end, except that closed unserved also counts
booked slots the day closed before they started (never issued). A counter row counts the tokens
its cashier issued and those that ended there, so it need not add up.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, tzinfo
from typing import Any

WITHIN_S = (15 * 60, 30 * 60)
AT_END = ("waiting", "called", "serving")
_ACTOR_COUNTER = re.compile(r"@([^:]+):")


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def counter_of_actor(actor: str | None) -> str | None:
    """The counter named in an event's actor label (``cashier@S01-C1:k12``), if any."""
    if not actor:
        return None
    found = _ACTOR_COUNTER.search(actor)
    return found.group(1) if found else None


@dataclass
class Tally:
    """Raw observations behind one row; rows are figures of a tally, months pool tallies."""

    issued: int = 0
    served: int = 0
    no_shows: int = 0
    cancelled: int = 0
    closed_unserved: int = 0
    open_at_end: int = 0
    turned_away: int = 0
    waits: list[float] = field(default_factory=list)
    served_waits: list[float] = field(default_factory=list)
    service: list[float] = field(default_factory=list)
    hours: Counter = field(default_factory=Counter)
    payments: dict[str, list[int]] = field(default_factory=lambda: {
        "taken": [0, 0], "posted": [0, 0], "pending": [0, 0], "failed": [0, 0], "refunded": [0, 0]})
    modes: dict[str, list[int]] = field(default_factory=dict)   # taken, by mode: [count, paise]
    refund_modes: dict[str, list[int]] = field(default_factory=dict)   # refunded, by mode

    def add(self, other: Tally) -> None:
        for name in ("issued", "served", "no_shows", "cancelled", "closed_unserved", "open_at_end",
                     "turned_away"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.waits += other.waits
        self.served_waits += other.served_waits
        self.service += other.service
        self.hours.update(other.hours)
        for mine, theirs in ((self.payments, other.payments), (self.modes, other.modes),
                             (self.refund_modes, other.refund_modes)):
            for status, (n, paise) in theirs.items():
                kept = mine.setdefault(status, [0, 0])
                kept[0] += n
                kept[1] += paise


@dataclass(frozen=True)
class Figures:
    """One report row: a substation (``counter`` None), one of its counters, or a total."""

    substation: str
    counter: str | None
    issued: int
    served: int
    no_shows: int
    cancelled: int
    closed_unserved: int
    open_at_end: int | None
    turned_away: int | None
    wait_p50_s: float | None
    wait_p90_s: float | None
    wait_max_s: float | None
    service_p50_s: float | None
    service_p90_s: float | None
    busiest_hour: str | None
    busiest_hour_count: int
    served_within_15_min: float | None
    served_within_30_min: float | None
    payments_taken: int
    payments_taken_paise: int
    payments_posted: int
    payments_posted_paise: int
    payments_pending: int
    payments_pending_paise: int
    payments_failed: int
    payments_failed_paise: int
    payments_refunded: int
    payments_refunded_paise: int


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _share(waits: Sequence[float], limit: float) -> float | None:
    if not waits:
        return None
    return round(sum(1 for w in waits if w <= limit) / len(waits), 4)


def figures(substation: str, counter: str | None, tally: Tally, *, door: bool) -> Figures:
    """The row of ``tally``; ``door`` rows (substations, totals) carry turned away and open at end."""
    hour, count = (None, 0)
    if tally.hours:
        best, count = min(tally.hours.items(), key=lambda item: (-item[1], item[0]))
        hour = f"{best:02d}:00"
    pay = tally.payments
    return Figures(
        substation=substation,
        counter=counter,
        issued=tally.issued,
        served=tally.served,
        no_shows=tally.no_shows,
        cancelled=tally.cancelled,
        closed_unserved=tally.closed_unserved,
        open_at_end=tally.open_at_end if door else None,
        turned_away=tally.turned_away if door else None,
        wait_p50_s=_round(percentile(tally.waits, 0.5)),
        wait_p90_s=_round(percentile(tally.waits, 0.9)),
        wait_max_s=_round(max(tally.waits) if tally.waits else None),
        service_p50_s=_round(percentile(tally.service, 0.5)),
        service_p90_s=_round(percentile(tally.service, 0.9)),
        busiest_hour=hour,
        busiest_hour_count=count,
        served_within_15_min=_share(tally.served_waits, WITHIN_S[0]),
        served_within_30_min=_share(tally.served_waits, WITHIN_S[1]),
        payments_taken=pay["taken"][0],
        payments_taken_paise=pay["taken"][1],
        payments_posted=pay["posted"][0],
        payments_posted_paise=pay["posted"][1],
        payments_pending=pay["pending"][0],
        payments_pending_paise=pay["pending"][1],
        payments_failed=pay["failed"][0],
        payments_failed_paise=pay["failed"][1],
        payments_refunded=pay["refunded"][0],
        payments_refunded_paise=pay["refunded"][1],
    )


@dataclass(frozen=True)
class HourFigures:
    """Tokens issued in one local hour and how long those that were called waited."""

    hour: int
    issued: int
    called: int
    turned_away: int
    wait_p50_s: float | None
    wait_p90_s: float | None


@dataclass
class _Life:
    """One token's day, rebuilt from its events."""

    substation: str
    issued_at: float | None = None
    issuer: str | None = None
    first_called_at: float | None = None
    first_caller: str | None = None
    status: str = "waiting"
    status_counter: str | None = None
    service_s: float | None = None
    done_at: float | None = None


@dataclass
class DayTallies:
    """Everything one day's events say, before it is shaped into rows."""

    substations: dict[str, Tally] = field(default_factory=dict)
    counters: dict[tuple[str, str], Tally] = field(default_factory=dict)
    by_hour: dict[int, tuple[int, int, int, list[float]]] = field(default_factory=dict)
    reasons: Counter = field(default_factory=Counter)

    def substation(self, sid: str) -> Tally:
        return self.substations.setdefault(sid, Tally())

    def counter(self, sid: str, cid: str | None) -> Tally | None:
        return None if cid is None else self.counters.setdefault((sid, cid), Tally())

    def total(self) -> Tally:
        total = Tally()
        for tally in self.substations.values():
            total.add(tally)
        return total


_PAYMENT_COLUMN = {"posted": "posted", "failed": "failed", "refunded": "refunded"}   # else pending


def tally_day(events: Iterable[Mapping[str, Any]], tz: tzinfo) -> DayTallies:
    """Fold one day's events (any order of substations; each token's events in seq order)."""
    lives: dict[str, _Life] = {}
    payments: dict[str, tuple[str, str | None, str, int, str]] = {}
    day = DayTallies()
    hours: dict[int, list] = {}

    def hour_of(moment: float) -> int:
        return datetime.fromtimestamp(moment, tz).hour

    for event in events:
        kind = event["kind"]
        sid = event["substation"]
        data = event.get("data") or {}
        if kind == "turned_away":
            day.substation(sid).turned_away += 1
            day.reasons[data.get("reason", "unknown")] += 1
            hours.setdefault(hour_of(event["at"]), [0, 0, 0, []])[2] += 1
            continue
        if kind.startswith("payment_"):
            payments[data["id"]] = (sid, data.get("counter"), data["status"], int(data["amount_paise"]),
                                    data.get("mode", "cash"))
            continue
        token_id = event.get("token_id")
        if not token_id or "number" not in data:
            continue  # counters opened and closed, leases, admission switches
        life = lives.get(token_id)
        if life is None:
            life = lives[token_id] = _Life(sid)
        if kind == "issued":
            life.issued_at = data.get("issued_at", event["at"])
            life.issuer = event.get("counter") or counter_of_actor(event.get("actor"))
        elif kind == "called" and life.first_called_at is None:
            life.first_called_at = data.get("called_at") or event["at"]
            life.first_caller = event.get("counter")
        life.status = data["status"]
        life.status_counter = event.get("counter")
        if kind == "completed" and data.get("called_at") is not None and data.get("finished_at") is not None:
            life.service_s = data["finished_at"] - data["called_at"]
        if kind == "completed":
            life.done_at = data.get("finished_at") or event["at"]

    for life in lives.values():
        if life.issued_at is None and life.status in ("booked", "cancelled"):
            continue   # a booked slot never started (or given up): not a token of the day
        sub = day.substation(life.substation)
        wait = None
        if life.issued_at is not None:
            sub.issued += 1
            sub.hours[hour_of(life.issued_at)] += 1
            issuer = day.counter(life.substation, life.issuer)
            if issuer is not None:
                issuer.issued += 1
            slot = hours.setdefault(hour_of(life.issued_at), [0, 0, 0, []])
            slot[0] += 1
            if life.first_called_at is not None:
                wait = max(0.0, life.first_called_at - life.issued_at)
                slot[1] += 1
                slot[3].append(wait)
                sub.waits.append(wait)
                caller = day.counter(life.substation, life.first_caller)
                if caller is not None:
                    caller.waits.append(wait)
        where = day.counter(life.substation, life.status_counter)
        if life.status == "done":
            sub.served += 1
            if wait is not None:
                sub.served_waits.append(wait)
            if life.service_s is not None:
                sub.service.append(life.service_s)
            if where is not None:
                where.served += 1
                if life.done_at is not None:
                    where.hours[hour_of(life.done_at)] += 1
                if wait is not None:
                    where.served_waits.append(wait)
                if life.service_s is not None:
                    where.service.append(life.service_s)
        elif life.status == "no_show":
            sub.no_shows += 1
            if where is not None:
                where.no_shows += 1
        elif life.status == "cancelled":
            sub.cancelled += 1
            if where is not None:
                where.cancelled += 1
        elif life.status == "closed_unserved":
            sub.closed_unserved += 1
            if where is not None:
                where.closed_unserved += 1
        elif life.status in AT_END:
            sub.open_at_end += 1

    for sid, counter, status, paise, mode in payments.values():
        targets = [day.substation(sid), day.counter(sid, counter)]
        for tally in targets:
            if tally is None:
                continue
            column = _PAYMENT_COLUMN.get(status, "pending")
            kept_in = [tally.payments["taken"], tally.payments[column], tally.modes.setdefault(mode, [0, 0])]
            if column == "refunded":
                kept_in.append(tally.refund_modes.setdefault(mode, [0, 0]))
            for kept in kept_in:
                kept[0] += 1
                kept[1] += paise
    day.by_hour = {h: (v[0], v[1], v[2], v[3]) for h, v in hours.items()}
    return day


# -- reports ---------------------------------------------------------------------------------

ALL = "ALL"
COLUMNS = [f.name for f in fields(Figures)]


@dataclass(frozen=True)
class DailyReport:
    """One day: a row per substation followed by its counters' rows, the total over all of
    them, waits by hour of issue (over the whole selection), and why people were turned away."""

    day: str
    substation: str | None
    rows: list[Figures]
    total: Figures
    hours: list[HourFigures]
    turned_away_reasons: dict[str, int]


def daily_report(day: str, events: Iterable[Mapping[str, Any]], tz: tzinfo, *,
                 layout: Mapping[str, Sequence[str]] | None = None,
                 substation: str | None = None) -> DailyReport:
    """The day's report from its events. ``layout`` (substation -> its counters) lists every
    substation and counter, idle ones too, in the scenario's order."""
    tallies = tally_day(events, tz)
    return _shape_day(day, tallies, layout, substation)


def _shape_day(day: str, tallies: DayTallies, layout: Mapping[str, Sequence[str]] | None,
               substation: str | None) -> DailyReport:
    order: dict[str, list[str]] = {}
    for sid, counters in (layout or {}).items():
        if substation is None or sid == substation:
            order[sid] = list(counters)
    for sid in sorted(tallies.substations):
        order.setdefault(sid, [])
    for sid, cid in sorted(tallies.counters):
        if sid in order and cid not in order[sid]:
            order[sid].append(cid)
    rows = []
    for sid, counters in order.items():
        rows.append(figures(sid, None, tallies.substations.get(sid, Tally()), door=True))
        rows += [figures(sid, cid, tallies.counters.get((sid, cid), Tally()), door=False)
                 for cid in counters]
    total = figures(substation or ALL, None, tallies.total(), door=True)
    hours = [HourFigures(h, issued, called, away, _round(percentile(waits, 0.5)),
                         _round(percentile(waits, 0.9)))
             for h, (issued, called, away, waits) in sorted(tallies.by_hour.items())]
    return DailyReport(day, substation, rows, total, hours, dict(tallies.reasons))


@dataclass(frozen=True)
class MonthlyReport:
    """One row per day (the day's total over the selection), and the month's own figures
    pooled from every token of the month (a month's p90 is not an average of daily p90s)."""

    month: str
    substation: str | None
    days: list[tuple[str, Figures]]
    total: Figures


def monthly_report(month: str, days: Iterable[tuple[str, Iterable[Mapping[str, Any]]]], tz: tzinfo, *,
                   substation: str | None = None) -> MonthlyReport:
    """``days`` yields (day, that day's events); days with no events are left out."""
    pooled = Tally()
    rows = []
    for day, events in days:
        tallies = tally_day(events, tz)
        total = tallies.total()
        if not tallies.substations:
            continue
        rows.append((day, figures(substation or ALL, None, total, door=True)))
        pooled.add(total)
    return MonthlyReport(month, substation, rows, figures(substation or ALL, None, pooled, door=True))


#: Modes whose money stays in the counter's drawer (notes, cheques, drafts); card and UPI go
#: straight to the bank.
DRAWER_MODES = ("cash", "cheque", "dd")


def cash_ups(day: str, layout: Mapping[str, Sequence[str]], events: Iterable[Mapping[str, Any]],
             tz: tzinfo) -> list[dict[str, Any]]:
    """Each counter's payments of the day (``layout``: substation -> its counters, in order) as
    its cashier counts the drawer: taken (by mode), and of those posted, pending, failed and
    refunded (by mode too), each a count and paise; they add up to taken. ``in_drawer`` is what
    the drawer should hold: cash taken less cash refunded (always), and the same for cheques
    and demand drafts when any were taken."""
    tallies = tally_day(events, tz).counters
    found = []
    for substation, counters in layout.items():
        for counter in counters:
            tally = tallies.get((substation, counter), Tally())
            money = {name: _money(kept) for name, kept in tally.payments.items()}
            found.append({"day": day, "substation": substation, "counter": counter, **money,
                          "by_mode": {mode: _money(kept) for mode, kept in sorted(tally.modes.items())},
                          "refunded_by_mode": {mode: _money(kept)
                                               for mode, kept in sorted(tally.refund_modes.items())},
                          "in_drawer": _in_drawer(tally)})
    return found


def _money(kept: Sequence[int]) -> dict[str, int]:
    return {"count": kept[0], "paise": kept[1]}


def _in_drawer(tally: Tally) -> dict[str, dict[str, int]]:
    drawer = {}
    for mode in DRAWER_MODES:
        taken = tally.modes.get(mode)
        if taken is None and mode != "cash":
            continue
        taken, refunded = taken or [0, 0], tally.refund_modes.get(mode, [0, 0])
        drawer[mode] = _money([taken[0] - refunded[0], taken[1] - refunded[1]])
    return drawer


def figures_json(row: Figures) -> dict[str, Any]:
    return {name: getattr(row, name) for name in COLUMNS}


def daily_json(report: DailyReport) -> dict[str, Any]:
    return {
        "day": report.day,
        "substation": report.substation,
        "total": figures_json(report.total),
        "rows": [figures_json(r) for r in report.rows],
        "hours": [{"hour": h.hour, "issued": h.issued, "called": h.called, "turned_away": h.turned_away,
                   "wait_p50_s": h.wait_p50_s, "wait_p90_s": h.wait_p90_s} for h in report.hours],
        "turned_away_reasons": report.turned_away_reasons,
        "definitions": DEFINITIONS,
    }


def monthly_json(report: MonthlyReport) -> dict[str, Any]:
    return {
        "month": report.month,
        "substation": report.substation,
        "total": figures_json(report.total),
        "days": [{"day": day, **figures_json(row)} for day, row in report.days],
        "definitions": DEFINITIONS,
    }


def daily_csv(report: DailyReport) -> str:
    """One line per substation and counter, then the total; amounts in paise, shares 0..1."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["day", *COLUMNS])
    for row in [*report.rows, report.total]:
        writer.writerow([report.day, *(_cell(getattr(row, c)) for c in COLUMNS)])
    return out.getvalue()


def monthly_csv(report: MonthlyReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["day", *COLUMNS])
    for day, row in report.days:
        writer.writerow([day, *(_cell(getattr(row, c)) for c in COLUMNS)])
    writer.writerow([report.month, *(_cell(getattr(report.total, c)) for c in COLUMNS)])
    return out.getvalue()


def _cell(value: Any) -> Any:
    return "" if value is None else value


DEFINITIONS = {
    "wait": "issue to first call; nearest-rank p50/p90; counter rows: tokens that counter called first",
    "service": "last call to done, on the counter that completed the token",
    "closed_unserved": "still booked, waiting or called when the counters closed or the day ended: "
                       "closed by the day, not served; counter rows: called there, not started",
    "served_within": "share of served tokens whose wait was at most 15 / 30 minutes",
    "busiest_hour": "substation: local hour with most tokens issued; counter: with most served",
    "turned_away": "refused at the door by admission or the daily cap (substation rows only)",
    "open_at_end": "still waiting, called or being served when the report was made (substation "
                   "and total rows): issued = served + no_shows + cancelled + closed_unserved + "
                   "open_at_end, but for booked slots the day closed before they started",
    "payments": "taken at the counters that day (each given a provisional receipt); of those, "
                "posted to billing, pending (not yet posted), failed for good and refunded so far: "
                "taken = posted + pending + failed + refunded; amounts in paise",
}


# -- text for a terminal ---------------------------------------------------------------------

def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"


def _rupees(paise: int) -> str:
    return f"{paise / 100:,.2f}"


TEXT_HEADER = ("where", "issued", "served", "no-show", "cancel", "closed", "open", "away",
               "wait p50/p90/max min", "svc p50/p90 min", "busiest", "<=15m", "<=30m",
               "payments (Rs) taken/posted/pending/failed/refunded")
TEXT_KEY = ("Substation rows: issued = served + no-show + cancel + closed + open. closed: closed "
            "unserved by the day's\nclose (booked slots that never started count there, not as issued); "
            "open: still waiting, called or\nbeing served at the end (when the report was made); away: "
            "turned away at the door, never issued.\nCounter rows: issued by that counter's cashier, the "
            "rest ended there. Payments taken: given a provisional\nreceipt at a counter; of those, posted "
            "by billing, pending (not yet posted), failed for good, and\nrefunded: taken = posted + "
            "pending + failed + refunded.")


def _text_row(name: str, row: Figures) -> tuple[str, ...]:
    return (
        name, str(row.issued), str(row.served), str(row.no_shows), str(row.cancelled),
        str(row.closed_unserved),
        "" if row.open_at_end is None else str(row.open_at_end),
        "" if row.turned_away is None else str(row.turned_away),
        f"{_minutes(row.wait_p50_s)}/{_minutes(row.wait_p90_s)}/{_minutes(row.wait_max_s)}",
        f"{_minutes(row.service_p50_s)}/{_minutes(row.service_p90_s)}",
        row.busiest_hour or "-", _percent(row.served_within_15_min), _percent(row.served_within_30_min),
        f"{row.payments_taken} {_rupees(row.payments_taken_paise)} / "
        f"{row.payments_posted} {_rupees(row.payments_posted_paise)} / "
        f"{row.payments_pending} {_rupees(row.payments_pending_paise)} / "
        f"{row.payments_failed} {_rupees(row.payments_failed_paise)} / "
        f"{row.payments_refunded} {_rupees(row.payments_refunded_paise)}",
    )


def _table(lines: list[tuple[str, ...]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
                     for line in lines)


def daily_text(report: DailyReport) -> str:
    lines = [TEXT_HEADER]
    for row in report.rows:
        lines.append(_text_row(row.substation if row.counter is None else f"  {row.counter}", row))
    lines.append(_text_row("total", report.total))
    where = report.substation or "all substations"
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(report.turned_away_reasons.items())) or "none"
    return (f"Daily report {report.day}, {where}\n\n{_table(lines)}\n\nTurned away: {reasons}\n\n"
            f"{TEXT_KEY}\n")


def monthly_text(report: MonthlyReport) -> str:
    lines = [("day", *TEXT_HEADER[1:])]
    lines += [_text_row(day, row) for day, row in report.days]
    lines.append(_text_row(report.month, report.total))
    where = report.substation or "all substations"
    return f"Monthly report {report.month}, {where}\n\n{_table(lines)}\n\n{TEXT_KEY}\n"
