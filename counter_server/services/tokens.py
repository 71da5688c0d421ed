"""Token use cases: issue, call next, act on a token, read queues.

Each one checks the request against the scenario and the caller's role, then hands the store
a pure change on the domain's SubstationQueue to run atomically.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta

from ..config import Scenario, ScenarioCounter, Substation
from ..queueing import (
    Action,
    CannotServeToday,
    Estimate,
    HallView,
    Holder,
    Lease,
    Priority,
    Status,
    SubstationQueue,
    Token,
)
from ..store import Applied, IdempotencyKey, QueueSnapshot, Store
from .access import Actor
from .errors import InvalidField, NotFound
from .nearby import nearest

log = logging.getLogger(__name__)

DAY_CLOSE_ACTOR = "day-close"
# A consumer called in the last minutes before closing still gets this long to reach the
# counter before the call is closed unserved.
CALLED_GRACE_S = 120.0
# How far back a server coming up looks for days left open (it was down over midnight).
PAST_DAYS_CHECKED = 7
_OPEN = frozenset({Status.BOOKED.value, Status.WAITING.value, Status.CALLED.value, Status.SERVING.value})


class TokenIds:
    """Unguessable ids, so a token's URL can be handed to a consumer without exposing others:
    12 bytes from the OS's CSPRNG each, as ``secrets.token_urlsafe(12)`` gives, but read 256
    ids' worth at a time, since one getrandom call per token showed in the issue path's profile."""

    ID_BYTES = 12
    IDS_PER_READ = 256

    def __init__(self) -> None:
        self._pool = b""
        self._next = 0

    def __call__(self) -> str:
        if self._next >= len(self._pool):
            self._pool, self._next = os.urandom(self.ID_BYTES * self.IDS_PER_READ), 0
        chunk = self._pool[self._next:self._next + self.ID_BYTES]
        self._next += self.ID_BYTES
        return "t_" + base64.urlsafe_b64encode(chunk).rstrip(b"=").decode("ascii")


def refuse_on_closed_day(substation: Substation, day: str) -> None:
    """A phone takes no token on a day the counters stay shut (a cashier at work issues as
    usual: the counter is open then, whatever the calendar says)."""
    today = date.fromisoformat(day)
    if substation.days.is_open(today):
        return
    reopens = substation.days.next_open(today)
    when = f"; it opens again on {reopens:%A %d %B}" if reopens else ""
    raise CannotServeToday("closed_day", f"Substation {substation.id} is closed today{when}.",
                           opens_on=reopens.isoformat() if reopens else None)


class TokenService:
    def __init__(
        self,
        scenario: Scenario,
        store: Store,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] | None = None,
        cached_hall: Callable[[str], HallView | None] = lambda substation_id: None,
    ) -> None:
        self.scenario = scenario
        self.store = store
        self.clock = clock
        self.new_id = new_id or TokenIds()
        self.letters = {s.id: s.letter for s in scenario.services.values()}
        # The halls as last committed, kept by whoever listens to the store (the live hub):
        # refusals at the door and today's figures read halls from here instead of the store.
        self.cached_hall = cached_hall
        # How far closing has gone: per substation, (day, rounds of close_hall done that day),
        # and the last day every substation's queue was closed through.
        self._closing_rounds: dict[str, tuple[str, int]] = {}
        self._closed_through: str | None = None

    def today(self, now: float | None = None) -> str:
        """The business day in the scenario's time zone; numbering restarts with it."""
        return self.scenario.day_of(self.clock() if now is None else now)

    def substation(self, substation_id: str) -> Substation:
        try:
            return self.scenario.substations[substation_id]
        except KeyError:
            raise NotFound("substation", substation_id) from None

    def counter(self, counter_id: str) -> ScenarioCounter:
        try:
            return self.scenario.counters[counter_id]
        except KeyError:
            raise NotFound("counter", counter_id) from None

    async def issue(
        self,
        actor: Actor,
        substation_id: str,
        service_id: str,
        priority: Priority = Priority.NORMAL,
        idem: IdempotencyKey | None = None,
    ) -> Applied:
        actor.require_substation(self.substation(substation_id).id)
        return await self.issue_for(actor.label, substation_id, service_id, priority, idem)

    async def issue_for(
        self,
        actor_label: str,
        substation_id: str,
        service_id: str,
        priority: Priority = Priority.NORMAL,
        idem: IdempotencyKey | None = None,
        holder: Holder | None = None,
        guard: Callable[[SubstationQueue], None] | None = None,
    ) -> Applied:
        """Issue a token for whoever the caller has already let in: a counter's key, or a
        consumer's phone (``holder``), whose token is marked remote. ``guard`` may refuse
        inside the change, after a retry of the same request has had its first answer back."""
        substation = self.substation(substation_id)
        if service_id not in substation.services:
            raise InvalidField(
                "service",
                f"Substation {substation.id} offers {', '.join(substation.services)}, "
                f"not {service_id!r}.",
            )
        letter = self.scenario.services[service_id].letter
        now = self.clock()
        token_id = self.new_id()
        day = self.today(now)
        closes_at = self.closes_at(substation, day)

        def change(q: SubstationQueue) -> Token:
            if guard is not None:
                guard(q)
            return q.issue(token_id, service_id, letter, priority, now, actor_label, closes_at, holder)

        try:
            if holder is not None:
                refuse_on_closed_day(substation, day)
            return await self.store.mutate_queue(substation.id, day, change, idem)
        except CannotServeToday as refusal:
            await self.store.record_turned_away(substation.id, day, service_id, refusal.reason, now, idem)
            refusal.extra["alternatives"] = await self.alternatives(substation, service_id, now)
            online = self.scenario.online
            refusal.extra["online"] = {"text": online.text, "text_hi": online.text_hi}
            raise

    def closes_at(self, substation: Substation, day: str) -> float:
        """When the substation's counters close on ``day``, as a timestamp."""
        moment = datetime.combine(date.fromisoformat(day), substation.closes, self.scenario.timezone)
        return moment.timestamp()

    async def close_days(self) -> list[Token]:
        """Close what the day leaves open, everywhere, and return the tokens closed.

        Every earlier day still open is closed for good (``close_day``): at the day boundary
        yesterday, and on the first run after a start the last ``PAST_DAYS_CHECKED`` days, so a
        server that was down over midnight closes yesterday when it is back. Today's hall is
        closed once its counters close (``close_hall``), and again when the last calls' grace
        is over. Safe to run at any moment, on any replica: what is closed stays closed."""
        now = self.clock()
        today = date.fromisoformat(self.today(now))
        closed = await self._close_past_days(today, now)
        for substation in self.scenario.substations.values():
            closed += await self._close_hall(substation, today.isoformat(), now)
        return closed

    async def _close_past_days(self, today: date, now: float) -> list[Token]:
        yesterday = today - timedelta(days=1)
        first = today - timedelta(days=PAST_DAYS_CHECKED)
        if self._closed_through is not None:
            first = max(first, date.fromisoformat(self._closed_through) + timedelta(days=1))
        closed: list[Token] = []
        substations = list(self.scenario.substations)
        day = first
        while day <= yesterday:
            counts = await self.store.token_counts(day.isoformat(), substations)
            left_open = sorted({sid for sid, _, status, n in counts if status in _OPEN and n})
            for sid in left_open:
                closed += await self._closing(sid, day.isoformat(),
                                              lambda q: q.close_day(now, DAY_CLOSE_ACTOR))
            day += timedelta(days=1)
        self._closed_through = max(yesterday, first - timedelta(days=1)).isoformat()
        return closed

    async def _close_hall(self, substation: Substation, day: str, now: float) -> list[Token]:
        closes_at = self.closes_at(substation, day)
        rounds = 0 if now < closes_at else 1 if now < closes_at + CALLED_GRACE_S else 2
        done_day, done = self._closing_rounds.get(substation.id, ("", 0))
        if rounds == 0 or (done_day == day and done >= rounds):
            return []
        closed = await self._closing(substation.id, day, lambda q: q.close_hall(
            now, closes_at, DAY_CLOSE_ACTOR, CALLED_GRACE_S))
        self._closing_rounds[substation.id] = (day, rounds)
        return closed

    async def _closing(self, substation_id: str, day: str,
                       close: Callable[[SubstationQueue], list[Token]]) -> list[Token]:
        found: list[Token] = []

        def change(q: SubstationQueue) -> None:
            found[:] = close(q)   # the Redis engine may run a change again: keep the last run

        await self.store.mutate_queue(substation_id, day, change)
        if found:
            log.info("closed %d token(s) left open at %s on %s", len(found), substation_id, day)
        return found

    async def alternatives(self, substation: Substation, service_id: str, now: float,
                           count: int = 3) -> list[dict]:
        """Nearby substations that could still serve ``service_id`` today, nearest first."""
        day = self.today(now)
        calendar_day = date.fromisoformat(day)
        found = []
        for other, km in nearest(self.scenario, substation.id, count=len(self.scenario.substations),
                                 offering=service_id):
            if not other.days.is_open(calendar_day):
                continue
            hall = await self.hall(other.id, day)
            view = next((s for s in hall.services if s.id == service_id), None)
            if view is None or view.estimate.p90_s is None:
                continue
            capped = hall.daily_cap is not None and hall.issued_today >= hall.daily_cap
            if capped or now + view.estimate.p90_s > self.closes_at(other, day):
                continue
            found.append({"substation": other.id, "name": other.name, "name_hi": other.name_hi,
                          "distance_km": round(km, 1),
                          "estimate": {"p50_s": view.estimate.p50_s, "p90_s": view.estimate.p90_s}})
            if len(found) == count:
                break
        return found

    async def hall(self, substation_id: str, day: str) -> HallView:
        """A substation's hall as last committed. The cached copy when it is of ``day``: a
        refusal at the month-end peak looks at up to nine nearby halls, and a store snapshot
        walks each one's whole line on the writer."""
        cached = self.cached_hall(substation_id)
        if cached is not None and cached.day == day:
            return cached
        return (await self.store.queue_snapshot(substation_id, day)).hall

    async def current_halls(self) -> list[HallView]:
        """Every substation's hall today, read only: the cached copy where it is of today, else
        the store's (what /metrics shows; it moves no board on to a new day)."""
        day = self.today()
        return [await self.hall(sid, day) for sid in self.scenario.substations]

    async def admission(self, substation_id: str) -> tuple[HallView, int]:
        """A substation's hall today (admission, cap, issued) and how many its door turned away."""
        hall = (await self.queue(substation_id)).hall
        return hall, await self.store.turned_away_count(hall.substation, hall.day)

    async def set_admission(self, actor: Actor, substation_id: str, enabled: bool,
                            daily_cap: int | None) -> None:
        """Ops switch admission at the door and the daily cap of one substation."""
        actor.require_admin()
        substation = self.substation(substation_id)
        now = self.clock()
        await self.store.mutate_queue(
            substation.id, self.today(now),
            lambda q: q.set_admission(enabled, daily_cap, now, actor.label))

    async def lease_numbers(self, actor: Actor, counter_id: str, service_id: str, size: int,
                            idem: IdempotencyKey | None = None) -> Lease:
        """Set aside numbers for the counter to issue from while the server is unreachable."""
        counter = self.counter(counter_id)
        actor.require_counter(counter.id)
        if service_id not in counter.services:
            raise InvalidField("service", f"Counter {counter.id} does not serve {service_id!r}.")
        letter = self.scenario.services[service_id].letter
        now = self.clock()
        lease_id = "l_" + secrets.token_urlsafe(9)
        leased: list[Lease] = []

        def change(q: SubstationQueue) -> None:
            leased.append(q.lease_numbers(lease_id, counter.id, service_id, letter, size, now, actor.label))

        applied = await self.store.mutate_queue(counter.substation, self.today(now), change, idem)
        if leased and not applied.replayed:
            return leased[-1]   # the Redis engine may run a change again; the last run is the one kept
        detail = applied.detail or {}  # a retried request: answer with the lease it made
        return Lease(str(detail["lease"]), counter.id, service_id, letter,
                     int(detail["first_seq"]), int(detail["last_seq"]))

    async def issue_offline(self, actor: Actor, counter_id: str, lease_id: str, number: str,
                            priority: Priority, issued_at: float,
                            idem: IdempotencyKey | None = None) -> Applied:
        """Reconcile a token the counter issued from its lease while offline."""
        counter = self.counter(counter_id)
        actor.require_counter(counter.id)
        now = self.clock()
        day = self.today(issued_at)
        if day != self.today(now):
            raise InvalidField("issued_at", f"Offline tokens are reconciled the same day; {day} is over.")
        token_id = self.new_id()

        def change(q: SubstationQueue) -> Token:
            return q.issue_offline(token_id, lease_id, counter.id, number, priority, issued_at, now,
                                   actor.label)

        return await self.store.mutate_queue(counter.substation, day, change, idem)

    async def call_next(self, actor: Actor, counter_id: str, idem: IdempotencyKey | None = None) -> Applied:
        counter = self.counter(counter_id)
        actor.require_counter(counter.id)
        now = self.clock()

        def change(q: SubstationQueue) -> Token | None:
            q.start_due_bookings(now, self.letters, actor.label)   # booked consumers on time
            return q.call_next(counter.id, counter.services, now, actor.label)

        return await self.store.mutate_queue(counter.substation, self.today(now), change, idem)

    async def act(
        self,
        actor: Actor,
        token_id: str,
        action: Action,
        *,
        to_service: str | None = None,
        to_counter: str | None = None,
        idem: IdempotencyKey | None = None,
    ) -> Applied:
        actor.require_writer()
        now = self.clock()

        def change(q: SubstationQueue, token: Token) -> Token:
            actor.require_token(token)
            if action is Action.TRANSFER:
                self._check_transfer(q.substation, token, to_service, to_counter)
            return q.act(token.id, action, now, actor.label, to_service=to_service, to_counter=to_counter)

        return await self.store.mutate_token(token_id, change, idem)

    def _check_transfer(
        self, substation_id: str, token: Token, to_service: str | None, to_counter: str | None
    ) -> None:
        substation = self.scenario.substations[substation_id]
        service = to_service or token.service
        if service not in substation.services:
            raise InvalidField("service", f"Substation {substation_id} does not offer {service!r}.")
        if to_counter is not None:
            counter = self.scenario.counters.get(to_counter)
            if counter is None or counter.substation != substation_id:
                raise InvalidField("counter", f"Substation {substation_id} has no counter {to_counter!r}.")
            if service not in counter.services:
                raise InvalidField("counter", f"Counter {to_counter} does not serve {service!r}.")

    async def set_counter_open(
        self, actor: Actor, counter_id: str, open_: bool, idem: IdempotencyKey | None = None
    ) -> None:
        """Open or close a counter (closing one that holds a token is refused)."""
        counter = self.counter(counter_id)
        actor.require_counter(counter.id)
        now = self.clock()

        def change(q: SubstationQueue) -> None:
            if open_:
                q.open_counter(counter.id, now, actor.label)
            else:
                q.close_counter(counter.id, now, actor.label)

        await self.store.mutate_queue(counter.substation, self.today(now), change, idem)

    async def get(self, token_id: str) -> tuple[Token, Estimate | None]:
        """A token and its wait estimate while it waits."""
        found = await self.store.token_view(token_id)
        if found is None:
            raise NotFound("token", token_id)
        return found

    async def queue(self, substation_id: str) -> QueueSnapshot:
        substation = self.substation(substation_id)
        return await self.store.queue_snapshot(substation.id, self.today())

    async def halls(self) -> list[HallView]:
        """Every substation's hall view today, for the ops channel's snapshot."""
        day = self.today()
        return [(await self.store.queue_snapshot(sid, day)).hall for sid in self.scenario.substations]

    async def waiting_counts(self) -> dict[str, int]:
        return await self.store.waiting_counts(self.today())

    async def token_counts(self, day: str) -> list[tuple[str, str | None, str, int]]:
        """``day``'s tokens counted by (substation, counter, status), every substation."""
        return await self.store.token_counts(day, list(self.scenario.substations))
