"""One substation's queue for one day: the aggregate every change goes through."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from operator import itemgetter

from .errors import (
    AlreadyHolding,
    CannotServeToday,
    CounterBusy,
    IllegalMove,
    LeaseRefused,
    SlotUnavailable,
    TransferRejected,
    UnknownToken,
)
from .estimate import (
    CallPlan,
    Estimate,
    OpenCounter,
    ServiceTimes,
    expected_residual_s,
    plan_calls,
    plan_one_service,
)
from .lifecycle import (
    AT_CLOSING,
    AT_DAY_END,
    CLOSING_EVENT_KIND,
    EVENT_KIND,
    TRANSITIONS,
    Action,
    allowed_actions,
    guard,
)
from .events import (
    AdmissionChanged,
    CounterClosed,
    CounterOpened,
    DomainEvent,
    NumbersLeased,
    SlotsPublished,
    TokenBooked,
    TokenCompleted,
    TokenEvent,
    TokenIssued,
)
from .model import Lease, Origin, Priority, QueuePolicy, Status, Token, format_number
from .slots import SlotPlan


CLOCK_SKEW_S = 120.0   # how far ahead a kiosk's clock may run when it reconciles offline tokens


@dataclass(frozen=True, slots=True)
class CounterView:
    id: str
    open: bool
    services: tuple[str, ...]
    token: Token | None


@dataclass(frozen=True, slots=True)
class ServiceView:
    """What a hall needs per service: how many wait, and the wait for a token issued now."""

    id: str
    waiting: int
    open_counters: int
    mean_service_s: float
    estimate: Estimate


@dataclass(frozen=True, slots=True)
class HallView:
    """A substation's state as a hall board shows it, after a given change."""

    substation: str
    day: str
    counters: tuple[CounterView, ...]
    services: tuple[ServiceView, ...]
    waiting_total: int
    waiting_head: tuple[tuple[Token, Estimate], ...]
    issued_today: int = 0
    admission: bool = True
    daily_cap: int | None = None


@dataclass(frozen=True, slots=True)
class Holder:
    """Who takes a token from a phone, as digests (the queue never sees the numbers)."""

    account_ref: str
    phone_ref: str
    account_hint: str | None = None


class SubstationQueue:
    """All of one substation's tokens for one day, with the waiting ones in call order.

    Methods check everything first and change state only when the move is allowed, then
    record a DomainEvent in ``pending``; a store persists the pending events and the tokens they
    carry in one transaction, then calls ``drain()``. ``version`` counts applied changes so a
    store can tell whether a failed job left this object changed.
    """

    def __init__(
        self,
        substation: str,
        day: str,
        policy: QueuePolicy,
        tokens: Iterable[Token] = (),
        last_seq: Mapping[str, int] | None = None,
        counters: Mapping[str, Iterable[str]] | None = None,
        closed: Iterable[str] = (),
        admission: bool = True,
        daily_cap: int | None = None,
        leases: Iterable[Lease] = (),
        slot_plan: SlotPlan | None = None,
    ) -> None:
        self.substation = substation
        self.day = day
        self.policy = policy
        self.tokens: dict[str, Token] = {}
        self._waiting: list[tuple[tuple[float, int, str], str]] = []
        self._at_counter: dict[str, str] = {}   # counter -> id of its called or serving token
        self._waiting_per_service: dict[str, int] = {}
        self._pinned = 0                        # waiting tokens transferred to one counter
        self.last_seq: dict[str, int] = dict(last_seq or {})
        self.counters: dict[str, tuple[str, ...]] = {c: tuple(s) for c, s in (counters or {}).items()}
        self.closed: set[str] = set(closed)
        self.admission = admission
        self.daily_cap = daily_cap
        self.leases: dict[str, Lease] = {lease.id: lease for lease in leases}
        self.slot_plan = slot_plan
        self._booked: dict[str, Token] = {}     # id -> booked token whose slot has not started
        self._due: list[Token] | None = None    # _booked in call order
        self._unnumbered = 0                    # bookings (and cancelled ones) never numbered
        # Active tokens by their holder's account and phone digests: a phone taking a token is
        # checked against every hall's line, which at month-end holds thousands.
        self._active_by_ref: dict[str, set[str]] = {}
        self.service_times = ServiceTimes(policy.service_seeds, policy.ewma_alpha)
        self._plans: dict[tuple[float, int], CallPlan] = {}   # (as of, version) -> its run
        self._issued_last: tuple[int, str, tuple[float, int]] | None = None   # see issue()
        self.pending: list[DomainEvent] = []
        self.version = 0
        # The moment the estimates are made for: the queue's latest change (bookings whose
        # slots start within a walk-in's wait are counted ahead of it from then).
        self.as_of = 0.0
        for token in tokens:
            self._put(token)
            self.as_of = max(self.as_of, _last_moment(token))
        self._learn_in_order(t for t in self.tokens.values() if t.status is Status.DONE)
        self._settled_as_of = self.as_of        # as_of without the pending changes

    # -- reading -------------------------------------------------------------------------

    def waiting(self) -> list[Token]:
        """Waiting tokens in the order counters will call them."""
        return [self.tokens[token_id] for _, token_id in self._waiting]

    def waiting_count(self) -> int:
        """How many wait, without listing them (a store writes it with every commit)."""
        return len(self._waiting)

    def at_counters(self) -> list[Token]:
        """Called and serving tokens, earliest called first."""
        found = [self.tokens[token_id] for token_id in self._at_counter.values()]
        return sorted(found, key=lambda t: (t.called_at or 0.0, t.id))

    def current_at(self, counter: str) -> Token | None:
        token_id = self._at_counter.get(counter)
        return self.tokens[token_id] if token_id is not None else None

    def get(self, token_id: str) -> Token:
        try:
            return self.tokens[token_id]
        except KeyError:
            raise UnknownToken(token_id) from None

    def allowed(self, token: Token) -> list[str]:
        return allowed_actions(token, self.policy)

    def is_open(self, counter: str) -> bool:
        return counter not in self.closed

    def open_counters_for(self, service: str) -> int:
        return sum(1 for c, s in self.counters.items() if service in s and c not in self.closed)

    def call_plan(self, now: float | None = None) -> CallPlan:
        """The estimates of the whole line and of a new token per service, as of ``now``
        (default: the latest change): one run of the call order (see ``plan_calls``), kept
        until the queue changes or the moment does."""
        now = self.as_of if now is None else now
        key = (now, self.version)
        cached = self._plans.get(key)
        if cached is not None:
            return cached
        times = self.service_times
        counters = []
        for counter, served in self.counters.items():
            if counter in self.closed:
                continue
            token = self.current_at(counter)
            if token is None:
                counters.append(OpenCounter(counter, served))
                continue
            since = token.called_at if token.called_at is not None else now
            counters.append(OpenCounter(counter, served, expected_residual_s(
                now - since, times.mean(token.service), times.sd(token.service)), token.service))
        services = (s for served in self.counters.values() for s in served)
        kinds = [s for s, n in self._waiting_per_service.items() if n]
        if not self._booked and len(kinds) <= 1 and not self._pinned:   # a busy hall's usual line
            plan = plan_one_service(kinds[0] if kinds else None, len(self._waiting), counters, times,
                                    services)
        else:
            line = list(map(self.tokens.__getitem__, map(itemgetter(1), self._waiting)))
            call_key = self.policy.call_key
            booked = [(bisect.bisect_left(self._waiting, (call_key(token), token.id)), token)
                      for token in self._bookings_in_order()]
            plan = plan_calls(line, booked, counters, times, now, services)
        if len(self._plans) >= 2:           # the latest change's, and one at the door
            self._plans.pop(next(iter(self._plans)))
        self._plans[key] = plan
        return plan

    def _bookings_in_order(self) -> list[Token]:
        """The bookings whose slots have not started, in call order."""
        if self._due is None:
            self._due = sorted(self._booked.values(), key=self.policy.call_key)
        return self._due

    def estimate_new(self, service: str) -> Estimate:
        """The wait for a token of ``service`` issued now (normal priority, last in line),
        counting the bookings whose slots start before it would be called."""
        return self.call_plan().new_token(service)

    def estimate_at_door(self, service: str, now: float) -> Estimate:
        """The wait for a walk-in arriving at ``now``, counting the bookings whose slots start
        before that wait is over: they will be called ahead of it."""
        return self.call_plan(now).new_token(service)

    def estimates(self) -> dict[str, Estimate]:
        """The wait of every waiting token, from one run of the call order."""
        line = self.call_plan().line
        return {token_id: line[i] for i, (_, token_id) in enumerate(self._waiting)}

    def estimate_for(self, token: Token) -> Estimate | None:
        """One waiting token's estimate, as ``estimates()`` gives it."""
        current = self.tokens.get(token.id)
        if current is None or current.status is not Status.WAITING:
            return None
        last = self._issued_last
        if last is not None and last[:2] == (self.version, current.id) and last[2][0] == self.as_of:
            door = self._plans.get(last[2])
            if door is not None:
                return door.new_token(current.service)
        index = bisect.bisect_left(self._waiting, (self.policy.call_key(current), current.id))
        return self.call_plan().estimate(index)

    def hall_view(self, head: int = 12) -> HallView:
        """Counters, per-service waits and the next ``head`` tokens with their estimates."""
        counts: dict[str, int] = {s: 0 for served in self.counters.values() for s in served}
        counts.update(self._waiting_per_service)
        plan = self.call_plan()
        head_tokens = [(self.tokens[token_id], plan.estimate(i))
                       for i, (_, token_id) in enumerate(self._waiting[:head])]
        at = {t.counter: t for t in self.at_counters()}
        return HallView(
            substation=self.substation,
            day=self.day,
            counters=tuple(CounterView(c, self.is_open(c), s, at.get(c))
                           for c, s in sorted(self.counters.items())),
            services=tuple(
                ServiceView(
                    id=name,
                    waiting=waiting,
                    open_counters=self.open_counters_for(name),
                    mean_service_s=round(self.service_times.mean(name), 1),
                    estimate=self.estimate_new(name),
                )
                for name, waiting in sorted(counts.items())
            ),
            waiting_total=len(self._waiting),
            waiting_head=tuple(head_tokens),
            issued_today=self.issued_count(),
            admission=self.admission,
            daily_cap=self.daily_cap,
        )

    def issued_count(self) -> int:
        """Tokens issued today (bookings count once their slot has started)."""
        return len(self.tokens) - self._unnumbered

    def slot_bookings(self) -> dict[float, int]:
        """Bookings per slot start, cancelled ones left out."""
        counts: dict[float, int] = {}
        for token in self.tokens.values():
            if token.slot_at is not None and token.status is not Status.CANCELLED:
                counts[token.slot_at] = counts.get(token.slot_at, 0) + 1
        return counts

    def holding(self, holder: Holder) -> Token | None:
        """The active token of this account or phone number here today, if any."""
        held = self.held_by(holder)
        return held[0] if held else None

    def held_by(self, holder: Holder) -> list[Token]:
        """Every active token here today of this account or this phone number, in issue order."""
        ids = self._active_by_ref.get(holder.account_ref, set()) | self._active_by_ref.get(holder.phone_ref, set())
        return sorted((self.tokens[i] for i in ids), key=lambda t: (t.issued_at, t.id))

    # -- changing ------------------------------------------------------------------------

    def issue(
        self,
        token_id: str,
        service: str,
        letter: str,
        priority: Priority,
        now: float,
        actor: str | None = None,
        closes_at: float | None = None,
        holder: Holder | None = None,
    ) -> Token:
        """A new waiting token numbered with the next sequence of its service today.

        With ``closes_at`` (when the counters close today) and admission switched on, a token
        whose p90 wait would end after closing is refused rather than issued to be turned away
        at the end of a long line; so is any token past the ops' daily cap. A token taken from
        a phone (``holder`` given) is marked remote and refused while its account or phone
        number holds another active token here today.
        """
        if token_id in self.tokens:
            raise ValueError(f"token id {token_id!r} is already used")
        self._check_holder(holder)
        self._admit(service, now, closes_at)
        token = Token(
            id=token_id,
            substation=self.substation,
            day=self.day,
            service=service,
            number="",
            seq=0,
            priority=Priority(priority),
            status=Status.WAITING,
            issued_at=now,
            ordinal=len(self.tokens),
            origin=Origin.REMOTE if holder is not None else Origin.COUNTER,
            **self._holder_fields(holder),
        )
        before = self.version
        issued = self._record(TokenIssued, self._numbered(token, letter), now, actor, None)
        if self._waiting[-1][1] == issued.id:
            # Last in line: nothing ahead of it changed and its wait is the one the door just
            # worked out for a new token, so answering it needs no second run of the line.
            self._issued_last = (self.version, issued.id, (now, before))
        return issued

    def publish_slots(self, plan: SlotPlan | None, now: float, actor: str | None = None) -> None:
        """Ops publish (or, with None, withdraw) the bookable slots of this day. Bookings
        already made keep their slots."""
        self.slot_plan = plan
        self._event(SlotsPublished(now, actor, None, plan))

    def book(
        self,
        token_id: str,
        service: str,
        priority: Priority,
        slot_at: float,
        now: float,
        holder: Holder,
        actor: str | None = None,
    ) -> Token:
        """Book a slot: a token without a number yet, which becomes a waiting token when its
        slot starts (``start_due_bookings``) and is then called ahead of walk-ins."""
        if token_id in self.tokens:
            raise ValueError(f"token id {token_id!r} is already used")
        plan = self.slot_plan
        if plan is None or not plan.offers(slot_at):
            raise SlotUnavailable("not_offered", f"Substation {self.substation} offers no such slot "
                                                 f"on {self.day}.")
        if slot_at <= now:
            raise SlotUnavailable("passed", "That slot has already started; pick a later one.")
        if self.slot_bookings().get(slot_at, 0) >= plan.capacity:
            raise SlotUnavailable("full", "That slot is fully booked; pick another.")
        self._check_holder(holder)
        token = Token(
            id=token_id, substation=self.substation, day=self.day, service=service, number="",
            seq=0, priority=Priority(priority), status=Status.BOOKED, issued_at=now,
            ordinal=len(self.tokens), origin=Origin.SLOT, slot_at=slot_at,
            **self._holder_fields(holder),
        )
        return self._record(TokenBooked, token, now, actor, None)

    def start_due_bookings(self, now: float, letters: Mapping[str, str],
                           actor: str | None = None) -> list[Token]:
        """Turn every booking whose slot has started into a numbered waiting token."""
        due = sorted((t for t in self._booked.values() if t.slot_at is not None and t.slot_at <= now),
                     key=self.policy.call_key)
        started = []
        for booked in due:
            token = replace(booked, status=Status.WAITING, issued_at=booked.slot_at)
            started.append(self._record(TokenIssued, self._numbered(token, letters[token.service]),
                                        now, actor, None))
        return started

    def call_next(
        self, counter: str, services: Iterable[str], now: float, actor: str | None = None
    ) -> Token | None:
        """Call the first waiting token this counter may serve, or None when nobody waits."""
        busy = self.current_at(counter)
        if busy is not None:
            raise CounterBusy(counter, busy)
        if counter in self.closed:  # a cashier calling is plainly at work: open the counter
            self.open_counter(counter, now, actor)
        offered = frozenset(services)
        for _, token_id in self._waiting:
            token = self.tokens[token_id]
            if token.target_counter == counter or (
                token.target_counter is None and token.service in offered
            ):
                called = replace(
                    token, status=Status.CALLED, counter=counter, target_counter=None, called_at=now
                )
                return self._record(EVENT_KIND[Action.CALL], called, now, actor, counter)
        return None

    def act(
        self,
        token_id: str,
        action: Action,
        now: float,
        actor: str | None = None,
        *,
        to_service: str | None = None,
        to_counter: str | None = None,
    ) -> Token:
        """Apply a cashier's action (anything but call) to a token."""
        action = Action(action)
        if action is Action.CALL:
            raise ValueError("tokens are called through call_next")
        token = self.get(token_id)
        refusal = guard(token, action, self.policy)
        if refusal is not None:
            raise IllegalMove(token, action.value, self.allowed(token), refusal)
        new_status = TRANSITIONS[token.status][action]
        acting_counter = token.counter
        if action is Action.RECALL:
            changed = replace(token, recalls=token.recalls + 1)
        elif action is Action.START:
            changed = replace(token, status=new_status, started_at=now)
        elif action in (Action.COMPLETE, Action.NO_SHOW, Action.CANCEL):
            changed = replace(token, status=new_status, finished_at=now)
        elif action is Action.REQUEUE:
            changed = replace(
                token, status=new_status, counter=None, finished_at=None, called_at=None,
                recalls=0, requeues=token.requeues + 1,
            )
        else:  # transfer
            changed = self._transferred(token, to_service, to_counter)
        return self._record(EVENT_KIND[action], changed, now, actor, acting_counter)

    def lease_numbers(self, lease_id: str, counter: str, service: str, letter: str, size: int,
                      now: float, actor: str | None = None) -> Lease:
        """Set aside the next ``size`` numbers of ``service`` for ``counter``'s offline use."""
        if not 1 <= size <= 100:
            raise ValueError("a lease holds 1 to 100 numbers")
        first = self.last_seq.get(service, 0) + 1
        lease = Lease(lease_id, counter, service, letter, first, first + size - 1)
        self.last_seq[service] = lease.last_seq
        self.leases[lease.id] = lease
        self._event(NumbersLeased(now, actor, counter, lease))
        return lease

    def issue_offline(self, token_id: str, lease_id: str, counter: str, number: str,
                      priority: Priority, issued_at: float, now: float,
                      actor: str | None = None) -> Token:
        """Reconcile a token a counter issued from its lease while the server was away.

        It keeps its number and takes its place in line by the time it was really issued.
        """
        lease = self.leases.get(lease_id)
        if lease is None or lease.counter != counter:
            raise LeaseRefused(f"Counter {counter} holds no lease {lease_id!r} today.")
        seq = lease.seq_of(number)
        if seq is None:
            raise LeaseRefused(f"Number {number} is not in lease {lease_id} "
                               f"({lease.numbers()[0]} to {lease.numbers()[-1]}).")
        if any(t.number == number for t in self.tokens.values()):
            raise LeaseRefused(f"Number {number} is already in use today.")
        if issued_at > now + CLOCK_SKEW_S:
            raise LeaseRefused("issued_at lies in the future.")
        issued_at = min(issued_at, now)   # a kiosk clock a little fast is not an error
        token = Token(
            id=token_id, substation=self.substation, day=self.day, service=lease.service,
            number=number, seq=seq, priority=Priority(priority), status=Status.WAITING,
            issued_at=issued_at, ordinal=len(self.tokens),
        )
        return self._record(TokenIssued, token, now, actor, counter)

    def _numbered(self, token: Token, letter: str) -> Token:
        seq = self.last_seq.get(token.service, 0) + 1
        self.last_seq[token.service] = seq
        return replace(token, number=format_number(letter, seq), seq=seq)

    def _check_holder(self, holder: Holder | None) -> None:
        if holder is None:
            return
        held = self.holding(holder)
        if held is not None:
            raise AlreadyHolding(held, held.account_ref == holder.account_ref
                                 and held.phone_ref == holder.phone_ref)

    @staticmethod
    def _holder_fields(holder: Holder | None) -> dict[str, str | None]:
        if holder is None:
            return {}
        return {"account_ref": holder.account_ref, "phone_ref": holder.phone_ref,
                "account_hint": holder.account_hint}

    def _admit(self, service: str, now: float, closes_at: float | None) -> None:
        if self.daily_cap is not None and self.issued_count() >= self.daily_cap:
            raise CannotServeToday(
                "daily_cap",
                f"Substation {self.substation} has issued all {self.daily_cap} tokens it takes today.",
                daily_cap=self.daily_cap,
            )
        if not self.admission or closes_at is None:
            return
        if now >= closes_at:
            raise CannotServeToday("closed", f"Substation {self.substation} is closed for today.")
        estimate = self.estimate_at_door(service, now)
        if estimate.p90_s is not None and now + estimate.p90_s > closes_at:
            raise CannotServeToday(
                "after_closing",
                f"The wait at {self.substation} (up to {estimate.p90_s / 60:.0f} min) would run "
                "past closing time.",
                estimate={"p50_s": estimate.p50_s, "p90_s": estimate.p90_s},
                minutes_to_closing=round((closes_at - now) / 60, 1),
            )

    def set_admission(self, enabled: bool, daily_cap: int | None, now: float,
                      actor: str | None = None) -> None:
        """Ops switch the door rule and the daily cap for this substation."""
        self.admission = enabled
        self.daily_cap = daily_cap
        self._event(AdmissionChanged(now, actor, None, enabled, daily_cap))

    def open_counter(self, counter: str, now: float, actor: str | None = None) -> bool:
        """Open a counter; False (and no event) when it already was."""
        if counter not in self.closed:
            return False
        self.closed.discard(counter)
        self._event(CounterOpened(now, actor, counter))
        return True

    def close_counter(self, counter: str, now: float, actor: str | None = None) -> bool:
        """Close a counter that holds no token; False (and no event) when it already was."""
        busy = self.current_at(counter)
        if busy is not None:
            raise CounterBusy(counter, busy, "closing the counter")
        if counter in self.closed:
            return False
        self.closed.add(counter)
        self._event(CounterClosed(now, actor, counter))
        return True

    # -- closing the day -----------------------------------------------------------------

    def close_hall(self, now: float, closes_at: float, actor: str | None = None,
                   called_grace_s: float = 0.0) -> list[Token]:
        """The counters closed at ``closes_at``: nobody more is served today, so say so now
        rather than let people wait for a call that will not come. Closes unserved every
        booking whose slot never started, every token waiting since before closing, and every
        token called before closing and not started within ``called_grace_s`` of its call
        (time to reach the counter). A token being served may finish; tokens issued or called
        after closing (a cashier working late) are left to the day's end. Running it again
        closes only what has fallen due since."""
        if now < closes_at:
            return []
        due = [t for t in self._open_tokens() if _due_at_closing(t, now, closes_at, called_grace_s)]
        return [self._close(t, AT_CLOSING[t.status], now, actor) for t in due]

    def close_day(self, now: float, actor: str | None = None) -> list[Token]:
        """The day is over: whatever is still booked, waiting or called is closed unserved and
        a token still being served is finished with the day, so no counter and no phone
        carries a token of this day into the next."""
        return [self._close(t, AT_DAY_END[t.status], now, actor) for t in self._open_tokens()]

    def _open_tokens(self) -> list[Token]:
        """Every token still open, in the order a close records them: bookings by slot, the
        line in call order, then the counters' tokens."""
        booked = sorted(self._booked.values(), key=self.policy.call_key)
        return [*booked, *self.waiting(), *self.at_counters()]

    def _close(self, token: Token, status: Status, now: float, actor: str | None) -> Token:
        closed = replace(token, status=status, finished_at=now)
        return self._record(CLOSING_EVENT_KIND[status], closed, now, actor, token.counter)

    def catch_up(self, event: DomainEvent) -> None:
        """Bring this copy up to the state a change committed elsewhere (by another replica)
        left the queue in, recording nothing: what a rebuild from the stored rows would give."""
        match event:
            case TokenEvent(changed=token):
                self._put(token)
                if isinstance(event, TokenIssued):
                    self.last_seq[token.service] = max(self.last_seq.get(token.service, 0), token.seq)
                elif isinstance(event, TokenCompleted):
                    self._learn(token)
            case CounterOpened():
                self.closed.discard(event.counter)
            case CounterClosed():
                self.closed.add(event.counter)
            case NumbersLeased(lease=lease):
                self.leases[lease.id] = lease
                self.last_seq[lease.service] = max(self.last_seq.get(lease.service, 0), lease.last_seq)
            case SlotsPublished(plan=plan):
                self.slot_plan = plan
            case AdmissionChanged(admission=admission, daily_cap=daily_cap):
                self.admission, self.daily_cap = admission, daily_cap
            case _:
                raise TypeError(f"a {type(event).__name__} event cannot be caught up with")
        self.version += 1
        self.as_of = max(self.as_of, event.at)
        if not self.pending:
            self._settled_as_of = self.as_of

    def drain(self) -> list[DomainEvent]:
        """Hand over the recorded events once they are persisted."""
        events, self.pending = self.pending, []
        self._settled_as_of = self.as_of
        return events

    def rebase(self, found: Mapping[str, Token | None], last_seq: Mapping[str, int], closed: Iterable[str],
               admission: bool, daily_cap: int | None, leases: Iterable[Lease],
               slot_plan: SlotPlan | None) -> bool:
        """Throw away the pending changes (their commit was refused: another replica changed the
        queue first) and take the state as committed, given every token changed since this copy
        was read or by the pending changes (None: it does not exist) and the queue's other rows.
        Mends the copy in place instead of rebuilding it from every token of a long line.

        False, and nothing changed, when a pending change taught the service times something
        (a completion): only a rebuild forgets that."""
        if any(isinstance(event, TokenCompleted) for event in self.pending):
            return False
        finished = []
        for token_id, token in found.items():
            old = self.tokens.get(token_id)
            if token is None:
                if old is not None:
                    self._unindex(old)
                    del self.tokens[token_id]
                continue
            if token.status is Status.DONE and (old is None or old.status is not Status.DONE):
                finished.append(token)
            self._put(token)
            self._settled_as_of = max(self._settled_as_of, _last_moment(token))
        self._learn_in_order(finished)
        self.last_seq = dict(last_seq)
        self.closed = set(closed)
        self.admission, self.daily_cap = admission, daily_cap
        self.leases = {lease.id: lease for lease in leases}
        self.slot_plan = slot_plan
        self.pending = []
        self._plans.clear()
        self._issued_last = None
        self.version += 1
        self.as_of = self._settled_as_of
        return True

    # -- internals -----------------------------------------------------------------------

    def _transferred(self, token: Token, to_service: str | None, to_counter: str | None) -> Token:
        service = to_service or token.service
        if service == token.service and to_counter in (None, token.counter, token.target_counter):
            raise TransferRejected(
                f"Transfer of {token.number} names no other service or counter."
            )
        return replace(
            token,
            status=Status.WAITING,
            service=service,
            counter=None,
            target_counter=to_counter,
            called_at=None,
            started_at=None,
            recalls=0,
            transfers=token.transfers + 1,
        )

    def _record(
        self, kind: type[TokenEvent], token: Token, now: float, actor: str | None,
        counter: str | None
    ) -> Token:
        self._put(token)
        if kind is TokenCompleted:
            self._learn(token)
        self._event(kind(now, actor, counter, token))
        return token

    def _event(self, event: DomainEvent) -> None:
        self.pending.append(event)
        self.version += 1
        self.as_of = max(self.as_of, event.at)

    def _learn_in_order(self, finished: Iterable[Token]) -> None:
        """Learn from completed tokens in the order they finished, as they were served."""
        for token in sorted(finished, key=lambda t: (t.finished_at or 0.0, t.id)):
            self._learn(token)

    def _learn(self, token: Token) -> None:
        if token.called_at is not None and token.finished_at is not None:
            self.service_times.observe(token.service, token.finished_at - token.called_at)

    def _put(self, token: Token) -> None:
        """Store a token's new state and keep the waiting line and the counters' index in step."""
        old = self.tokens.get(token.id)
        if old is not None:
            self._unindex(old)
        self.tokens[token.id] = token
        if token.status is Status.BOOKED:
            self._booked[token.id] = token
            self._due = None
        if not token.number:
            self._unnumbered += 1
        if token.at_counter and token.counter is not None:
            self._at_counter[token.counter] = token.id
        if token.active:
            for ref in (token.account_ref, token.phone_ref):
                if ref is not None:
                    self._active_by_ref.setdefault(ref, set()).add(token.id)
        if token.status is Status.WAITING:
            self._waiting_per_service[token.service] = self._waiting_per_service.get(token.service, 0) + 1
            self._pinned += token.target_counter is not None
            bisect.insort(self._waiting, (self.policy.call_key(token), token.id))

    def _unindex(self, old: Token) -> None:
        """Take a token's state out of the line and the indexes (``tokens`` still holds it)."""
        if self._booked.pop(old.id, None) is not None:
            self._due = None
        if not old.number:
            self._unnumbered -= 1
        if old.at_counter and self._at_counter.get(old.counter) == old.id:
            del self._at_counter[old.counter]
        if old.status is Status.WAITING:
            self._waiting_per_service[old.service] -= 1
            self._pinned -= old.target_counter is not None
            entry = (self.policy.call_key(old), old.id)
            index = bisect.bisect_left(self._waiting, entry)
            if index < len(self._waiting) and self._waiting[index] == entry:
                del self._waiting[index]
        if old.active:
            for ref in (old.account_ref, old.phone_ref):
                if ref is not None:
                    self._active_by_ref[ref].discard(old.id)


def _last_moment(token: Token) -> float:
    """The latest moment a token's state names (issued, called or finished)."""
    return max(token.issued_at, token.called_at or 0.0, token.finished_at or 0.0)


def _due_at_closing(token: Token, now: float, closes_at: float, called_grace_s: float) -> bool:
    """Whether closing time ends this token's day (see ``SubstationQueue.close_hall``)."""
    if token.status is Status.BOOKED:
        return True
    if token.status is Status.WAITING:
        return token.issued_at < closes_at
    if token.status is Status.CALLED:
        called_at = token.issued_at if token.called_at is None else token.called_at
        return called_at < closes_at and now >= called_at + called_grace_s
    return False
