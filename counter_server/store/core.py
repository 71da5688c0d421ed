"""The persistence rules both engines share, written once.

* ``rows_changed``: which rows each domain event changes. An engine only knows how to write
  each kind of row (a table on SQLite, a hash on Redis), so a new event kind is added here
  and in the domain, and nowhere else.
* ``QueueRows`` and ``build_queue``: a queue rebuilt from the rows of a (substation, day).
* ``QueueCache``: the queues an engine keeps in memory, and which queue holds each token.
* ``replayed``: the first answer to a retried request, from what the log kept of it.
* ``StoreCore``: what both engines do the same way around their own storage (listeners, the
  cache, the reads made of a queue, a payment's settling and amending), so an engine writes only
  how it loads, commits and rewrites its rows.
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from ..outbox import Payment, PaymentStatus
from ..queueing import (
    DomainEvent,
    Estimate,
    Lease,
    QueuePolicy,
    SlotPlan,
    SubstationQueue,
    Token,
    TokenEvent,
)
from ..queueing.events import (
    AdmissionChanged,
    CounterClosed,
    CounterOpened,
    NumbersLeased,
    SlotsPublished,
    TokenIssued,
)
from .base import Applied, CommitListener, Committed, QueueSnapshot
from .codec import from_row

log = logging.getLogger(__name__)

QueueKey = tuple[str, str]   # (substation, day)
T = TypeVar("T")

# -- the rows an event changes ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PutToken:
    token: Token


@dataclass(frozen=True, slots=True)
class PutSequence:
    """The last number handed out for a service that day (never lowered)."""

    service: str
    last: int


@dataclass(frozen=True, slots=True)
class PutCounterOpen:
    counter: str
    open: bool


@dataclass(frozen=True, slots=True)
class PutLease:
    lease: Lease


@dataclass(frozen=True, slots=True)
class PutSlotPlan:
    plan: SlotPlan | None


@dataclass(frozen=True, slots=True)
class PutAdmission:
    """Kept per substation, not per day: the door rule stays as ops left it."""

    admission: bool
    daily_cap: int | None


RowChange = PutToken | PutSequence | PutCounterOpen | PutLease | PutSlotPlan | PutAdmission


def rows_changed(q: SubstationQueue, event: DomainEvent) -> list[RowChange]:
    """The rows ``event`` changes, with their values as they are in ``q`` after it."""
    match event:
        case TokenIssued(changed=token):
            return [PutToken(token), PutSequence(token.service, q.last_seq.get(token.service, 0))]
        case TokenEvent(changed=token):
            return [PutToken(token)]
        case CounterOpened() | CounterClosed():
            return [PutCounterOpen(event.counter or "", isinstance(event, CounterOpened))]
        case NumbersLeased(lease=lease):
            return [PutLease(lease), PutSequence(lease.service, q.last_seq.get(lease.service, 0))]
        case SlotsPublished(plan=plan):
            return [PutSlotPlan(plan)]
        case AdmissionChanged(admission=admission, daily_cap=daily_cap):
            return [PutAdmission(admission, daily_cap)]
    raise TypeError(f"no rows are known for a {type(event).__name__} event")


# -- a queue from its rows -------------------------------------------------------------------


@dataclass
class QueueRows:
    """What an engine reads back of one (substation, day) to rebuild its queue."""

    tokens: Iterable[Token]
    last_seq: Mapping[str, int] = field(default_factory=dict)
    closed: Iterable[str] = ()
    admission: bool | None = None     # None: ops never switched it, the scenario's rule holds
    daily_cap: int | None = None
    leases: Iterable[Lease] = ()
    slot_plan: SlotPlan | None = None


def build_queue(key: QueueKey, rows: QueueRows, policy: QueuePolicy,
                layouts: Mapping[str, Mapping[str, Iterable[str]]]) -> SubstationQueue:
    substation, day = key
    return SubstationQueue(substation, day, policy, rows.tokens, dict(rows.last_seq),
                           layouts.get(substation, {}), list(rows.closed),
                           admission=policy.admission if rows.admission is None else rows.admission,
                           daily_cap=rows.daily_cap,
                           leases=list(rows.leases), slot_plan=rows.slot_plan)


def snapshot_of(q: SubstationQueue, hall_head: int) -> QueueSnapshot:
    return QueueSnapshot(q.at_counters(), q.waiting(), q.estimates(), q.hall_view(hall_head))


def view_of(q: SubstationQueue, token_id: str) -> tuple[Token, Estimate | None] | None:
    """A token of the queue and, while it waits, its estimate."""
    token = q.tokens.get(token_id)
    return (token, q.estimate_for(token)) if token is not None else None


def applied(q: SubstationQueue, result: Token | None) -> Applied:
    """A change's answer: the token it returned and, while that token waits, its estimate."""
    return Applied(result, estimate=q.estimate_for(result) if result is not None else None)


@dataclass
class CachedQueue:
    """A queue in memory and the version of the stored queue it was read at (the sequence
    number of the last event that changed it; engines that check it on commit keep it)."""

    queue: SubstationQueue
    version: int = 0


class QueueCache:
    """The most recently used queues, and which queue holds each of their tokens."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._queues: OrderedDict[QueueKey, CachedQueue] = OrderedDict()
        self._homes: dict[str, QueueKey] = {}

    def get(self, key: QueueKey) -> CachedQueue | None:
        cached = self._queues.get(key)
        if cached is not None:
            self._queues.move_to_end(key)
        return cached

    def put(self, key: QueueKey, cached: CachedQueue) -> CachedQueue:
        self._queues[key] = cached
        self._queues.move_to_end(key)
        self._homes.update((token_id, key) for token_id in cached.queue.tokens)
        while len(self._queues) > self.size:
            _, old = self._queues.popitem(last=False)
            self._forget_homes(old.queue)
        return cached

    def home(self, token_id: str) -> QueueKey | None:
        return self._homes.get(token_id)

    def note_home(self, token_id: str, key: QueueKey) -> None:
        self._homes[token_id] = key

    def evict(self, key: QueueKey) -> None:
        old = self._queues.pop(key, None)
        if old is not None:
            self._forget_homes(old.queue)

    def clear(self) -> None:
        self._queues.clear()
        self._homes.clear()

    def _forget_homes(self, q: SubstationQueue) -> None:
        for token_id in q.tokens:
            self._homes.pop(token_id, None)


# -- what both engines share ----------------------------------------------------------------


class StoreCore:
    """The part of the Store contract both engines fulfil the same way. An engine adds how it
    reads a queue in turn with its changes (``read_queue``) and finds a token's queue
    (``_read_home``), how it commits, and its payments, keys and event log."""

    def __init__(self, policy: QueuePolicy, layouts: Mapping[str, Mapping[str, Iterable[str]]] | None,
                 *, hall_head: int, cache_size: int) -> None:
        self.policy = policy
        self.layouts = layouts or {}
        self.hall_head = hall_head
        self.commits = 0       # transactions (group commits) this process made
        self.conflicts = 0     # changes run again because another replica came first
        self._listeners: list[CommitListener] = []
        self._cache = QueueCache(cache_size)

    async def read_queue(self, substation: str, day: str, read: Callable[[SubstationQueue], T]) -> T:
        raise NotImplementedError

    async def _read_home(self, token_id: str, read: Callable[[SubstationQueue], T]) -> T | None:
        """``read`` run on the queue that holds the token, None when no queue does."""
        raise NotImplementedError

    async def queue_snapshot(self, substation: str, day: str) -> QueueSnapshot:
        return await self.read_queue(substation, day, lambda q: snapshot_of(q, self.hall_head))

    async def token_view(self, token_id: str) -> tuple[Token, Estimate | None] | None:
        return await self._read_home(token_id, lambda q: view_of(q, token_id))

    async def _rewrite_payment(self, payment_id: str, change: Callable[[Payment], Payment],
                               kind: str | None, actor: str | None, retry_at: float | None) -> Payment:
        """The payment as ``change`` makes it of the stored one, written atomically with that read
        (with its event of ``kind``, if any), unclaimed and not to be tried before ``retry_at``;
        KeyError when there is no such payment."""
        raise NotImplementedError

    async def settle_payment(self, payment_id: str, status: PaymentStatus, now: float, *,
                             reason: str | None = None, billing_ref: str | None = None,
                             retry_at: float | None = None, attempted: bool = True) -> Payment:
        """Record the outcome of one forwarding attempt: posted, failed for good, or (queued
        with ``retry_at``) to be tried again later. ``attempted`` is False when the payment was
        handed back without being sent (limit reached, breaker open)."""

        def settle(current: Payment) -> Payment:
            return settled(current, status, now, reason=reason, billing_ref=billing_ref, attempted=attempted)

        kind = f"payment_{status.value}" if status is not PaymentStatus.QUEUED else None
        return await self._rewrite_payment(payment_id, settle, kind, None, retry_at)

    async def amend_payment(self, payment_id: str, amend: Callable[[Payment], Payment], kind: str,
                            actor: str) -> Payment:
        return await self._rewrite_payment(payment_id, amend, kind, actor, None)

    def add_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    def _notify(self, change: Committed) -> None:
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:  # noqa: BLE001 - one listener must not stop the others
                log.exception("commit listener failed")

    def _cached(self, key: QueueKey, rows: QueueRows, version: int = 0) -> CachedQueue:
        """The queue built from ``rows``, cached as read at ``version``."""
        return self._cache.put(key, CachedQueue(build_queue(key, rows, self.policy, self.layouts), version))


# -- idempotent replays ----------------------------------------------------------------------


class _NoResult:
    def __repr__(self) -> str:
        return "NO_RESULT"


# The answer kept for a request whose change made no event (nobody waited to be called).
NO_RESULT: Any = _NoResult()


def replayed(data: Any, estimate_for: Callable[[Token], Estimate | None]) -> Applied:
    """The first answer to a retried request, from the data of the event it produced
    (``NO_RESULT`` when it produced none); a token's estimate is worked out as it is now."""
    if data is NO_RESULT:
        return Applied(None, replayed=True)
    if "number" not in data:   # a change that made no token (a lease, a counter opened)
        return Applied(None, replayed=True, detail=data)
    token = from_row(Token, data)
    return Applied(token, replayed=True, estimate=estimate_for(token))


# -- payments ------------------------------------------------------------------------------


def settled(current: Payment, status: PaymentStatus, now: float, *, reason: str | None,
            billing_ref: str | None, attempted: bool) -> Payment:
    """A payment after one forwarding attempt: a billing reference once given is kept."""
    return replace(current, status=status, reason=reason,
                   billing_ref=billing_ref if billing_ref is not None else current.billing_ref,
                   attempts=current.attempts + int(attempted), updated_at=now)


def merge_day(events: list[dict], refused: list[dict]) -> list[dict]:
    """A day's logged events and its refusals at the door, in time order."""
    return list(heapq.merge(events, refused, key=lambda e: e["at"]))
