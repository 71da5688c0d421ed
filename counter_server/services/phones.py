"""Consumers' phones: a token taken from home, a slot booked on a quieter day, and the page
that follows the token live.

Remote tokens and bookings are real tokens in the substation's queue and numbering; what the
phone adds is who holds them, kept only as keyed digests (HMAC-SHA256 under a key derived from
the server's secret, which lives outside the database), so the queue can allow one active token
per account and per phone number, and cap an account across the city, without storing either
number in a form a copied database gives back.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ..config import PhonesConfig, Scenario, Substation
from ..queueing import (
    Action,
    AlreadyHolding,
    CannotServeToday,
    Estimate,
    HallView,
    Holder,
    Origin,
    Priority,
    ServiceView,
    SlotPlan,
    SlotUnavailable,
    SubstationQueue,
    Token,
    slot_capacity,
)
from ..store import Applied, IdempotencyKey, Store
from .access import Actor
from .errors import InvalidField, NotFound
from .tokens import TokenService

PHONE_ACTOR = "phone"
PUBLISH_AHEAD_DAYS = 90
SLOT_LIST_TTL_S = 5.0

# The billing gateway's look-up of an account: "known", "unknown" or "unchecked" (billing
# could not be asked; the consumer is accepted provisionally and the cashier checks).
AccountLookup = Callable[[str], Awaitable[str]]


HOLDER_DIGEST_PURPOSE = b"holder-digest"
HOLDER_LOCKS = 64   # striped locks: one account's takes run one at a time on this server
MIN_ACCOUNT_CHARS = 4


def account_number(account: str) -> str:
    """The account as one holder: upper-case, separators and spaces dropped, so
    ``kan-2043 1877`` and ``KAN20431877`` are the same account."""
    return "".join(ch for ch in account.upper() if ch.isascii() and ch.isalnum())


def phone_digits(phone: str) -> str:
    """The last ten digits, so +91 98765 43210 and 09876543210 are the same phone."""
    return "".join(ch for ch in phone if ch.isascii() and ch.isdigit())[-10:]


class HolderDigests:
    """Keyed digests of account and phone numbers: enough to tell two holders apart, never
    shown. Keyed so that a copy of the database alone gives no number back: an unkeyed
    digest of a 10-digit phone number falls to brute force in seconds."""

    DIGEST_CHARS = 24   # 96 bits of HMAC-SHA256, hex

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a holder digest key needs 32 bytes or more")
        self._key = key

    @classmethod
    def from_secret(cls, secret: bytes) -> HolderDigests:
        """A key of its own, derived from the server's secret (the links phones hold use another)."""
        return cls(hmac.new(secret, HOLDER_DIGEST_PURPOSE, hashlib.sha256).digest())

    def digest(self, kind: str, value: str) -> str:
        mac = hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256)
        return mac.hexdigest()[:self.DIGEST_CHARS]

    def holder(self, account: str, phone: str) -> Holder:
        """The holder of a normalised account and any spelling of a phone number."""
        account = account_number(account)
        return Holder(self.digest("account", account), self.digest("phone", phone_digits(phone)),
                      account[-4:])


def holding_refusal(holder: Holder, here: str, matches: Mapping[str, Sequence[Token]],
                    per_account_city: int) -> AlreadyHolding | None:
    """Whether ``holder`` may take a token at ``here``, from the day's active tokens that match
    its account or phone at each substation: refused while its account or phone holds one
    here, or its account holds ``per_account_city`` across the city. One refusal whatever
    matched; it names a token both numbers match where there is one, so whoever gave both
    gets their own link back (see ``PhoneService._name_link``) and nobody else gets any."""
    def both(token: Token) -> bool:
        return token.account_ref == holder.account_ref and token.phone_ref == holder.phone_ref

    here_held = list(matches.get(here, ()))
    by_account = [t for found in matches.values() for t in found if t.account_ref == holder.account_ref]
    refused = here_held if here_held else by_account if len(by_account) >= max(1, per_account_city) else []
    if not refused:
        return None
    mine = [t for t in [*here_held, *by_account] if both(t)]
    token = mine[0] if mine else refused[0]
    return AlreadyHolding(token, both(token))


class PhoneLinks:
    """What a phone holds of its token: the token's id and a MAC of it under the server's secret.

    Token ids reach cashiers and the queue API; on the public routes an id alone opens nothing,
    so nobody but the phone that took a token can see or cancel it there."""

    MAC_CHARS = 22   # 132 bits of HMAC-SHA256, base64url

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def link(self, token_id: str) -> str:
        return f"{token_id}.{self._mac(token_id)}"

    def digests(self) -> HolderDigests:
        """Holder digests under a key derived from the same secret (never the links' own key)."""
        return HolderDigests.from_secret(self._secret)

    def token_id(self, link: str) -> str:
        """The token a link names; NotFound for anything the server did not hand out."""
        token_id, _, mac = link.rpartition(".")
        if not token_id or not hmac.compare_digest(mac.encode(), self._mac(token_id).encode()):
            raise NotFound("token", link)
        return token_id

    def _mac(self, token_id: str) -> str:
        digest = hmac.new(self._secret, b"phone-link:" + token_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode()[:self.MAC_CHARS]


@dataclass(frozen=True)
class SlotDay:
    """One day's slots as the booking screen shows them."""

    day: str
    month_end: bool
    slots: list[tuple[float, int, int]]   # (start, capacity, booked)

    @property
    def free(self) -> int:
        return sum(max(0, capacity - booked) for _, capacity, booked in self.slots)


@dataclass(frozen=True)
class ListedHall:
    """A substation as the phone's list shows it: its hall now (None before it has one), the
    service whose wait its card shows, and whether it opens today and its hours are on."""

    substation: Substation
    hall: HallView | None
    default_service: str | None
    shown_service: str      # the default service, else the first one offered
    reopens: date | None    # the first open day from today on
    open_today: bool
    in_hours: bool

    def service_view(self, service_id: str) -> ServiceView | None:
        return next((v for v in self.hall.services if v.id == service_id), None) if self.hall else None

    @property
    def paid_wait_s(self) -> float | None:
        """What orders the list: the p50 wait for the default (paid) service; None without one."""
        view = self.service_view(self.shown_service) if self.default_service else None
        return view.estimate.p50_s if view is not None else None


@dataclass(frozen=True)
class HallList:
    """The phone's list of substations and whether to suggest paying online instead."""

    halls: list[ListedHall]
    suggest_online: bool


class PhoneService:
    def __init__(self, tokens: TokenService, store: Store, lookup_account: AccountLookup,
                 links: PhoneLinks, clock: Callable[[], float] = time.time) -> None:
        self.tokens = tokens
        self.links = links
        self.scenario: Scenario = tokens.scenario
        self.config: PhonesConfig = tokens.scenario.phones
        self.store = store
        self.lookup_account = lookup_account
        self.digests = links.digests()
        self.clock = clock
        self._holder_locks = [asyncio.Lock() for _ in range(HOLDER_LOCKS)]
        # Slot lists by substation, for a few seconds: at the month-end peak many phones ask,
        # and each list reads two weeks of queues. Bookings made here clear it at once.
        self._slot_lists: dict[str, tuple[float, list[SlotDay]]] = {}

    # -- the list of substations ---------------------------------------------------------------

    def hall_list(self) -> HallList:
        """Every substation, open today first, then by the wait for the paid service (halls
        without it after), shortest first; paying online is suggested when no hall open today
        has a wait for it below the boards' "pay online" hint. Read from the cached halls:
        every phone visit asks."""
        now = datetime.fromtimestamp(self.clock(), self.scenario.timezone)
        halls = [self._listed(substation, now) for substation in self.scenario.substations.values()]
        halls.sort(key=lambda h: (not h.open_today, h.paid_wait_s is None, h.paid_wait_s or 0, h.substation.id))
        shortest = next((h.paid_wait_s for h in halls if h.open_today and h.paid_wait_s is not None), None)
        return HallList(halls, suggest_online=shortest is None or shortest >= self.scenario.online.hint_after_s)

    def _listed(self, substation: Substation, now: datetime) -> ListedHall:
        today = now.date()
        reopens = substation.days.next_open(today)
        default = self.default_service(substation)
        open_today = reopens == today
        return ListedHall(substation=substation, hall=self.tokens.cached_hall(substation.id),
                          default_service=default, shown_service=default or substation.services[0],
                          reopens=reopens, open_today=open_today,
                          in_hours=open_today and substation.opens <= now.time() < substation.closes)

    # -- taking a token now -------------------------------------------------------------------

    async def take(self, substation_id: str, service_id: str | None, account: str, phone: str,
                   idem: IdempotencyKey | None = None) -> tuple[Applied, str]:
        """A remote token in today's queue, and how the account was checked. A refusal at the
        door comes with nearby substations, online payment and the first free slots here.
        No ``service_id``: the scenario's paid service, if this substation offers it."""
        substation, service_id = self._offering(substation_id, service_id)
        checked = await self._check_account(account)
        holder = self.digests.holder(account, phone)
        try:
            async with self._holder_lock(holder):
                refusal = await self._holding(self.tokens.today(self.clock()), substation.id, holder)
                applied = await self.tokens.issue_for(PHONE_ACTOR, substation.id, service_id,
                                                      Priority.NORMAL, idem, holder, _refuse(refusal))
        except AlreadyHolding as held:
            self._name_link(held)
            raise
        except CannotServeToday as refusal:
            # Not today: the first free slots of the first quiet day (else of any later day).
            today = self.tokens.today(self.clock())
            later = [d for d in await self.slot_days(substation.id) if d.day != today and d.free > 0]
            offer = next((d for d in later if not d.month_end), later[0] if later else None)
            refusal.extra["booking"] = [] if offer is None else [
                {"day": offer.day, "slot_at": start, "free": capacity - booked}
                for start, capacity, booked in offer.slots if capacity > booked][:3]
            raise
        return applied, checked

    # -- slots ---------------------------------------------------------------------------------

    def default_plan(self, substation: Substation, q: SubstationQueue, day: str) -> SlotPlan:
        """The slots of a day ops have not published: ``slot_minutes`` slots from opening to
        ``last_slot_before_close_minutes`` before closing, each holding ``booking_share`` of
        the open counters' time."""
        tz = self.scenario.timezone
        start = datetime.combine(date.fromisoformat(day), substation.opens, tz).timestamp()
        last = (datetime.combine(date.fromisoformat(day), substation.closes, tz).timestamp()
                - self.config.last_slot_before_close_minutes * 60)
        return self.plan(substation, q, start, last, self.config.slot_minutes, self.config.booking_share)

    def plan(self, substation: Substation, q: SubstationQueue, first_at: float, last_at: float,
             slot_minutes: int, share: float, capacity: int | None = None) -> SlotPlan:
        slot_s = slot_minutes * 60
        service = self.default_service(substation) or substation.services[0]
        if capacity is None:
            capacity = slot_capacity(share, q.open_counters_for(service), slot_s,
                                     q.service_times.mean(service))
        count = max(0, int((last_at - first_at) // slot_s) + 1)
        return SlotPlan(first_at, slot_s, count, capacity, share)

    async def slot_days(self, substation_id: str) -> list[SlotDay]:
        """Bookable slots from now over the booking horizon, at most ``SLOT_LIST_TTL_S`` old."""
        substation = self.tokens.substation(substation_id)
        now = self.clock()
        cached = self._slot_lists.get(substation.id)
        if cached is not None and 0 <= now - cached[0] < SLOT_LIST_TTL_S:
            return cached[1]
        first = date.fromisoformat(self.tokens.today(now))
        found = []
        for offset in range(self.config.booking_days):
            day = (first + timedelta(days=offset)).isoformat()

            def read(q: SubstationQueue, day: str = day) -> tuple[SlotPlan | None, dict[float, int]]:
                return q.slot_plan or self._unpublished_plan(substation, q, day), q.slot_bookings()

            plan, booked = await self.store.read_queue(substation.id, day, read)
            if plan is None:
                continue
            slots = [(start, plan.capacity, booked.get(start, 0)) for start in plan.starts() if start > now]
            found.append(SlotDay(day, _month_end(day), slots))
        self._slot_lists[substation.id] = (now, found)
        return found

    async def book(self, substation_id: str, service_id: str | None, account: str, phone: str,
                   slot_at: float, idem: IdempotencyKey | None = None) -> tuple[Applied, str]:
        substation, service_id = self._offering(substation_id, service_id)
        now = self.clock()
        if not now <= slot_at <= now + (self.config.booking_days + 1) * 86_400:
            raise InvalidField("slot_at", f"Slots can be booked from now up to {self.config.booking_days} "
                                          "days ahead.")
        day = self.tokens.today(slot_at)
        horizon = date.fromisoformat(self.tokens.today(now)) + timedelta(days=self.config.booking_days)
        if date.fromisoformat(day) >= horizon:
            raise InvalidField("slot_at", f"Slots can be booked up to {self.config.booking_days} days ahead.")
        checked = await self._check_account(account)
        token_id = self.tokens.new_id()
        holder = self.digests.holder(account, phone)

        refusal: AlreadyHolding | None = None

        def change(q: SubstationQueue) -> Token:
            _refuse(refusal)(q)
            if q.slot_plan is None:   # the day's default slots, fixed by the first booking
                plan = self._unpublished_plan(substation, q, day)
                if plan is None:
                    raise SlotUnavailable("closed_day", f"Substation {substation.id} is closed on {day}.")
                q.publish_slots(plan, now, PHONE_ACTOR)
            return q.book(token_id, service_id, Priority.NORMAL, slot_at, now, holder, PHONE_ACTOR)

        try:
            async with self._holder_lock(holder):
                refusal = await self._holding(day, substation.id, holder)
                return await self.store.mutate_queue(substation.id, day, change, idem), checked
        except AlreadyHolding as held:
            self._name_link(held)
            raise
        finally:
            self._slot_lists.pop(substation.id, None)

    def _holder_lock(self, holder: Holder) -> asyncio.Lock:
        """One account's takes and bookings on this server run one at a time, so two at once at
        two substations cannot both pass the city cap."""
        return self._holder_locks[int(holder.account_ref[:8], 16) % HOLDER_LOCKS]

    async def _holding(self, day: str, here: str, holder: Holder) -> AlreadyHolding | None:
        """The refusal for a holder who holds a token here, or as many as the city allows, on
        ``day``; raised inside the change (``_refuse``), so a retry with the same
        Idempotency-Key still gets its first answer.

        Every refusal comes by this one path (each substation's queue read, one decision, then
        the change), whether the account, the phone or both matched: none is answered sooner
        than another. Reads all the day's queues at once (about 2 ms for 10 substations of 600
        tokens each on SQLite, from the engine's cached queues)."""
        def matching(q: SubstationQueue) -> list[Token]:
            return q.held_by(holder)

        substations = list(self.scenario.substations)
        found = await asyncio.gather(*(self.store.read_queue(sid, day, matching) for sid in substations))
        return holding_refusal(holder, here, dict(zip(substations, found)),
                               self.config.tokens_per_account_city)

    def _name_link(self, held: AlreadyHolding) -> None:
        """Whoever gave both numbers of a holder gets the link to the token they hold."""
        if held.same_holder:
            held.link = self.links.link(held.token.id)

    def _unpublished_plan(self, substation: Substation, q: SubstationQueue, day: str) -> SlotPlan | None:
        """The default slots of a day ops have not published; none on a closed day."""
        if not substation.days.is_open(date.fromisoformat(day)):
            return None
        return self.default_plan(substation, q, day)

    async def publish(self, actor: Actor, substation_id: str, day: str, slot_minutes: int,
                      share: float, capacity: int | None) -> SlotPlan:
        """Ops publish one day's slots (capacity from the counters open, unless given)."""
        actor.require_admin()
        substation = self.tokens.substation(substation_id)
        now = self.clock()
        today = self.tokens.today(now)
        if day < today:
            raise InvalidField("day", f"{day} has passed.")
        if date.fromisoformat(day) > date.fromisoformat(today) + timedelta(days=PUBLISH_AHEAD_DAYS):
            raise InvalidField("day", f"Slots are published up to {PUBLISH_AHEAD_DAYS} days ahead.")
        published: list[SlotPlan] = []

        def change(q: SubstationQueue) -> None:
            default = self.default_plan(substation, q, day)
            last_at = default.first_at + (default.count - 1) * default.slot_s
            plan = self.plan(substation, q, default.first_at, last_at, slot_minutes, share, capacity)
            q.publish_slots(plan, now, actor.label)
            published.append(plan)

        await self.store.mutate_queue(substation.id, day, change)
        self._slot_lists.pop(substation.id, None)
        return published[-1]

    async def start_due_bookings(self) -> int:
        """Turn today's bookings whose slot has started into waiting tokens, everywhere."""
        started = 0
        now = self.clock()
        day = self.tokens.today(now)
        letters = self.tokens.letters
        for substation_id in self.scenario.substations:
            found: list[Token] = []

            def change(q: SubstationQueue) -> None:
                found[:] = q.start_due_bookings(now, letters, PHONE_ACTOR)

            await self.store.mutate_queue(substation_id, day, change)
            started += len(found)
        return started

    # -- the consumer's own token -------------------------------------------------------------

    async def view(self, link: str) -> tuple[Token, Estimate | None]:
        """The token a phone's link names, if it was taken from a phone."""
        found = await self.store.token_view(self.links.token_id(link))
        if found is None or found[0].origin is Origin.COUNTER:
            raise NotFound("token", link)
        return found

    async def cancel(self, link: str, idem: IdempotencyKey | None = None) -> Applied:
        """The holder of a phone's link gives up its token or booking (only before it is
        called); the event names the holder by the account's last digits."""
        now = self.clock()
        token_id = self.links.token_id(link)

        def change(q: SubstationQueue, token: Token) -> Token:
            if token.origin is Origin.COUNTER:   # links are only handed out for phones' tokens
                raise NotFound("token", link)
            if token.at_counter:
                raise InvalidField("token", "The token is at a counter now; ask the cashier there.")
            return q.act(token.id, Action.CANCEL, now, f"{PHONE_ACTOR}:holder-{token.account_hint}")

        applied = await self.store.mutate_token(token_id, change, idem)
        if applied.token is not None:
            self._slot_lists.pop(applied.token.substation, None)
        return applied

    async def _check_account(self, account: str) -> str:
        """"verified" once billing knows the account, or "provisional" while billing cannot be
        asked; an account billing does not know is refused. Billing is asked for the account
        as the consumer typed it (as a cashier would), upper-cased."""
        if len(account_number(account)) < MIN_ACCOUNT_CHARS:
            raise InvalidField("account", f"An account number has at least {MIN_ACCOUNT_CHARS} "
                                          "letters or digits; check it against your bill.")
        status = await self.lookup_account(account.strip().upper())
        if status == "unknown":
            raise InvalidField("account", "The billing server knows no such account number; "
                                          "check it against your bill.")
        return "verified" if status == "known" else "provisional"

    def default_service(self, substation: Substation) -> str | None:
        """The service a phone gets when it names none: the scenario's paid service where this
        substation offers it; elsewhere none (the phone must say which)."""
        paid = self.scenario.payment_service
        return paid if paid is not None and paid in substation.services else None

    def _offering(self, substation_id: str, service_id: str | None) -> tuple[Substation, str]:
        """The substation and the service asked for (or its default); a service it does not
        offer, or none where it has no default, is refused naming the field."""
        substation = self.tokens.substation(substation_id)
        offered = ", ".join(substation.services)
        if service_id is None:
            service_id = self.default_service(substation)
            if service_id is None:
                raise InvalidField("service", f"Substation {substation.id} offers {offered}: "
                                              "name the service.")
        if service_id not in substation.services:
            raise InvalidField("service", f"Substation {substation.id} offers {offered}, not {service_id!r}.")
        return substation, service_id


def _refuse(refusal: AlreadyHolding | None) -> Callable[[SubstationQueue], None]:
    """A guard for a queue change that raises ``refusal``, if there is one."""
    def guard(q: SubstationQueue) -> None:
        if refusal is not None:
            raise refusal
    return guard


def _month_end(day: str) -> bool:
    """The month's last week: the rush the slot screen steers bookings away from."""
    d = date.fromisoformat(day)
    return d.day > calendar.monthrange(d.year, d.month)[1] - 7
