"""Ops use cases: reports from the store's events, today's overview, live tickets for the page,
pausing the forwarding of payments to billing.

Reports are computed off the event loop (the arithmetic over a busy day's events takes a
noticeable fraction of a second), so the counters' requests keep flowing while a manager reads.
"""

from __future__ import annotations

import asyncio
import calendar
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from ..config import Scenario
from ..queueing import Status
from ..services import Actor, InvalidField, NotFound
from ..services.dates import RANGE_WORDS, check_day, day_in_range
from ..store import Store
from .reports import DailyReport, MonthlyReport, cash_ups, daily_report, monthly_report

if TYPE_CHECKING:
    from ..billing.gateway import BillingGateway

TICKET_TTL_S = 30.0
MAX_TICKETS = 1000


@dataclass(frozen=True)
class _Ticket:
    actor: Actor
    expires_at: float


class OpsService:
    def __init__(self, scenario: Scenario, store: Store, clock: Callable[[], float] = time.time,
                 gateway: BillingGateway | None = None) -> None:
        """``gateway``: the server's own, which ops may pause; reports run without one (the CLI)."""
        self.scenario = scenario
        self.store = store
        self.gateway = gateway
        self.clock = clock
        self._tickets: dict[str, _Ticket] = {}

    # -- days and months ---------------------------------------------------------------------

    def today(self) -> str:
        return self.scenario.day_of(self.clock())

    def parse_day(self, raw: str | None) -> str:
        """A report's day: ``YYYY-MM-DD``, or today when not given (given empty is refused:
        the API document asks for a date when the parameter is there)."""
        if raw is None:
            return self.today()
        try:
            return check_day("date", date.fromisoformat(raw)).isoformat() if _DAY.match(raw) else _bad_day(raw)
        except ValueError:
            return _bad_day(raw)

    def parse_month(self, raw: str | None) -> str:
        """A report's month: ``YYYY-MM``, or this month when not given."""
        if raw is None:
            return self.today()[:7]
        try:
            if not _MONTH.match(raw):
                raise ValueError
            first = date.fromisoformat(raw + "-01")
        except ValueError:
            raise InvalidField("month", f"month must be YYYY-MM, not {raw[:20]!r}.") from None
        if not day_in_range(first):
            raise InvalidField("month", f"month must be a month {RANGE_WORDS}, not {raw}.")
        return raw

    def parse_substation(self, raw: str | None) -> str | None:
        if raw is None:
            return None
        if raw == "":
            raise InvalidField("substation", "substation must name a substation; leave it out for all.")
        if raw not in self.scenario.substations:
            raise NotFound("substation", raw[:40])
        return raw

    def layout(self, substation: str | None) -> dict[str, list[str]]:
        return {sid: [c.id for c in s.counters] for sid, s in self.scenario.substations.items()
                if substation is None or sid == substation}

    # -- reports -----------------------------------------------------------------------------

    async def daily(self, day: str, substation: str | None = None) -> DailyReport:
        events = await self.store.day_events(day, substation)
        return await asyncio.to_thread(daily_report, day, events, self.scenario.timezone,
                                       layout=self.layout(substation), substation=substation)

    async def cash_up(self, actor: Actor, counter: str, day: str) -> dict:
        """The counter's cash-up for ``day``: its cashier's own, or any counter's for an admin."""
        found = self.scenario.counters.get(counter)
        if found is None:
            raise NotFound("counter", counter[:40])
        actor.require_counter(counter)
        events = await self.store.day_events(day, found.substation)
        (one,) = await asyncio.to_thread(cash_ups, day, {found.substation: [counter]}, events,
                                         self.scenario.timezone)
        return one

    async def all_cash_ups(self, day: str, substation: str | None = None) -> list[dict]:
        """Every counter's cash-up for ``day`` (of one substation, or all), in the scenario's order."""
        events = await self.store.day_events(day, substation)
        return await asyncio.to_thread(cash_ups, day, self.layout(substation), events, self.scenario.timezone)

    async def monthly(self, month: str, substation: str | None = None) -> MonthlyReport:
        year, number = int(month[:4]), int(month[5:7])
        last = min(calendar.monthrange(year, number)[1],
                   31 if month != self.today()[:7] else int(self.today()[8:10]))
        days = [f"{month}-{d:02d}" for d in range(1, last + 1)]
        found = [(day, await self.store.day_events(day, substation)) for day in days]
        return await asyncio.to_thread(monthly_report, month, found, self.scenario.timezone,
                                       substation=substation)

    # -- today at a glance -------------------------------------------------------------------

    async def overview(self) -> dict:
        """Today's tokens by status per substation, served and no-shows per counter, and how
        many were turned away: what the live channel's halls do not carry. With the scenario's
        paid service (None when it takes no payments), which the page shows first in each hall."""
        day = self.today()
        substations = {sid: {"tokens": {s.value: 0 for s in Status}, "turned_away": 0}
                       for sid in self.scenario.substations}
        counters = {cid: {"served": 0, "no_shows": 0} for cid in self.scenario.counters}
        for sid, counter, status, n in await self.store.token_counts(day, list(substations)):
            substations[sid]["tokens"][status] = substations[sid]["tokens"].get(status, 0) + n
            if counter in counters and status == Status.DONE.value:
                counters[counter]["served"] += n
            elif counter in counters and status == Status.NO_SHOW.value:
                counters[counter]["no_shows"] += n
        for sid, entry in substations.items():
            entry["turned_away"] = await self.store.turned_away_count(sid, day)
        return {"day": day, "payment_service": self.scenario.payment_service,
                "substations": substations, "counters": counters}

    # -- the billing outbox ------------------------------------------------------------------

    def pause_forwarding(self, actor: Actor, paused: bool) -> None:
        """Pause or resume forwarding payments to billing (admin); they keep queueing durably
        meanwhile, and a resumed gateway starts on them at once."""
        actor.require_admin()
        if self.gateway is None:
            raise RuntimeError("This ops service has no billing gateway to pause.")
        self.gateway.paused = paused
        if not paused:
            self.gateway.wake()

    # -- tickets for the ops page's live channel -------------------------------------------

    def issue_ticket(self, actor: Actor) -> tuple[str, float]:
        """A one-time ticket to open the ops channel from a browser, which cannot send an
        Authorization header with a WebSocket: short-lived, so one seen in a log is useless."""
        actor.require_admin()
        now = self.clock()
        for key in [k for k, t in self._tickets.items() if t.expires_at <= now]:
            del self._tickets[key]
        if len(self._tickets) >= MAX_TICKETS:
            self._tickets.pop(next(iter(self._tickets)))
        ticket = "lt_" + secrets.token_urlsafe(24)
        self._tickets[ticket] = _Ticket(actor, now + TICKET_TTL_S)
        return ticket, TICKET_TTL_S

    def redeem_ticket(self, ticket: str) -> Actor | None:
        found = self._tickets.pop(ticket, None)
        if found is None or found.expires_at <= self.clock():
            return None
        return found.actor


# ASCII digits only: date.fromisoformat alone also takes 20251125 and week dates (2025-W48-2).
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}\Z")


def _bad_day(raw: str) -> str:
    raise InvalidField("date", f"date must be YYYY-MM-DD, not {raw[:20]!r}.")
