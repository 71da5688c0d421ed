"""The persistence rules both engines share, written once.

* ``rows_changed``: which rows each domain event changes. An engine only knows how to write
  each kind of row (a table on SQLite, a hash on Redis), so a new event kind is added here
  and in the domain, and nowhere else.
* ``QueueRows`` and ``build_queue``: a queue rebuilt from the rows of a (substation, day).
* ``QueueCache``: the queues an engine keeps in memory, and which queue holds each token.
* ``replayed``: the first answer to a retried request, from what the log kept of it.
* ``StoreCore``: what both engines do the same way around their own storage: each queue's
  changes run in turn on its cached copy and go to the engine as one ``Batch`` (group commit),
  idempotent replays, listeners, the reads made of a queue, a payment's settling and amending.
  An engine writes only how it loads a queue's rows, commits a batch atomically, finds a token's
  queue and an idempotency key's kept answer, and its payments, keys and event log.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
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
    UnknownToken,
)
from ..queueing.events import (
    AdmissionChanged,
    CounterClosed,
    CounterOpened,
    NumbersLeased,
    SlotsPublished,
    TokenIssued,
)
from .base import Applied, CommitListener, Committed, IdempotencyKey, QueueChange, QueueSnapshot, StoreUnavailable
from .base import TokenChange
from .codec import event_record, from_row

log = logging.getLogger(__name__)

QueueKey = tuple[str, str]   # (substation, day)
T = TypeVar("T")
MAX_ATTEMPTS = 200           # a batch refused as stale runs again; past this, the store is "busy"

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


def rebased(q: SubstationQueue, found: Mapping[str, Token | None], rows: QueueRows, policy: QueuePolicy) -> bool:
    """``q`` mended in place to the committed state (see ``SubstationQueue.rebase``), given the
    tokens read again and the queue's other rows; False when only a rebuild can."""
    return q.rebase(found, rows.last_seq, rows.closed,
                    policy.admission if rows.admission is None else rows.admission,
                    rows.daily_cap, rows.leases, rows.slot_plan)


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


# -- a batch of changes to one queue -------------------------------------------------------


@dataclass(eq=False)
class Job:
    """One change (or read) of a queue, waiting for its queue's turn."""

    run: Callable[[SubstationQueue], Any]
    idem: IdempotencyKey | None
    future: asyncio.Future
    at_least: int | None = None      # a read that needs the queue only as of this version


@dataclass(frozen=True)
class KeptAnswer:
    """An idempotency key of a batch: the commit is refused if it was used before; else, when
    ``keep``, it keeps its request's last event (1-based in the batch; 0: the change made none).
    A refused change is not kept, so a retry runs it again."""

    idem: IdempotencyKey
    event: int
    keep: bool


@dataclass
class Batch:
    """What an engine commits atomically: a queue's pending events, the rows they change and
    the batch's idempotency keys, run against the stored queue's ``version``."""

    queue: SubstationQueue
    version: int
    records: list[dict[str, Any]]     # the events as the log keeps them
    rows: list[RowChange]
    answers: list[KeptAnswer]
    touched: set[str]                 # tokens changed on the copy: read again if refused as stale

    @property
    def key(self) -> QueueKey:
        return self.queue.substation, self.queue.day


@dataclass(frozen=True)
class Seen:
    """A batch refused because its ``index``-th key was used before, and what that key kept."""

    index: int
    kept: Any


def _settle(job: Job, result: Any = None, exc: BaseException | None = None) -> None:
    if job.future.done():            # its caller gave up waiting
        return
    if exc is not None:
        job.future.set_exception(exc)
    else:
        job.future.set_result(result)


def _touched(q: SubstationQueue) -> set[str]:
    """Tokens a batch changed on this copy without committing: to be read again."""
    return {event.token.id for event in q.pending if event.token is not None}


# -- what both engines share ----------------------------------------------------------------


class StoreCore:
    """The part of the Store contract both engines fulfil the same way.

    Each queue has one drainer task at a time: it takes every job waiting for the queue, runs
    them one after the other on the cached copy and hands their events to the engine's
    ``_commit_batch`` in one piece (group commit: one write and one hall for many changes). A
    caller that gives up does not stop its job half-way. An engine whose copies can go stale
    (other replicas write too) refuses a batch with the queue as it is now; it runs again. A
    retried request runs in turn like any other: the commit finds its key, throws away what it
    changed and answers it as the first time (one look-up per request, on the writer)."""

    # The engine hands its own commits to the listeners (none follows a shared stream).
    notifies_own_commits = False

    def __init__(self, policy: QueuePolicy, layouts: Mapping[str, Mapping[str, Iterable[str]]] | None,
                 *, hall_head: int, cache_size: int) -> None:
        self.policy = policy
        self.layouts = layouts or {}
        self.hall_head = hall_head
        self.commits = 0       # transactions (group commits) this process made
        self.conflicts = 0     # changes run again because another replica came first
        self._listeners: list[CommitListener] = []
        self._cache = QueueCache(cache_size)
        self._jobs: dict[QueueKey, list[Job]] = {}
        self._drainers: dict[QueueKey, asyncio.Task[None]] = {}

    # -- what an engine writes ---------------------------------------------------------------

    async def _load(self, key: QueueKey, base: CachedQueue | None, recheck: Iterable[str]) -> CachedQueue:
        """The queue as stored, cached. Given ``base`` (this copy, at its version) an engine may
        read only the tokens changed since, and ``recheck``."""
        raise NotImplementedError

    async def _commit_batch(self, batch: Batch) -> list[int] | Seen | CachedQueue:
        """Write the batch atomically: its events' sequence numbers; or nothing written and
        Seen; or, when the stored queue is no longer at ``batch.version``, the queue as it is
        now (cached)."""
        raise NotImplementedError

    async def _home_of(self, token_id: str) -> QueueKey | None:
        """The (substation, day) of a token not in the cache, as stored."""
        raise NotImplementedError

    def _refresh(self, key: QueueKey, cached: CachedQueue) -> None:
        """Bring the cached copy up to what this process has heard committed elsewhere, before
        a batch runs on it (an engine with one writer hears nothing: no-op)."""

    def _answers_reads(self, cached: CachedQueue, jobs: Iterable[Job]) -> bool:
        """Whether the copy answers a batch of reads without asking the store: when each read
        needs only a version the copy has reached. (An engine whose copy is always the committed
        queue, having the only writer, answers every read so.)"""
        return all(job.at_least is not None and job.at_least <= cached.version for job in jobs)

    async def _kept(self, idem: IdempotencyKey) -> Any:
        """What the store kept for this key, as ``_answer_of`` reads it; None for a new key."""
        raise NotImplementedError

    def _answer_of(self, idem: IdempotencyKey, kept: Any) -> Any:
        """The data of the event the key's first request produced, or ``NO_RESULT``; a key
        reused for another request is refused (IdempotencyConflict)."""
        raise NotImplementedError

    async def _rewrite_payment(self, payment_id: str, change: Callable[[Payment], Payment],
                               kind: str | None, actor: str | None, retry_at: float | None) -> Payment:
        """The payment as ``change`` makes it of the stored one, written atomically with that read
        (with its event of ``kind``, if any), unclaimed and not to be tried before ``retry_at``;
        KeyError when there is no such payment."""
        raise NotImplementedError

    # -- changes -----------------------------------------------------------------------------

    async def mutate_queue(
        self, substation: str, day: str, change: QueueChange, idem: IdempotencyKey | None = None
    ) -> Applied:
        return await self._queued((substation, day), lambda q: applied(q, change(q)), idem)

    async def mutate_token(
        self, token_id: str, change: TokenChange, idem: IdempotencyKey | None = None
    ) -> Applied:
        home = await self._home(token_id)
        if home is None:
            replay = await self._replay(idem)
            if replay is not None:
                return replay
        if home is None:
            raise UnknownToken(token_id)
        return await self._queued(home, lambda q: applied(q, change(q, q.get(token_id))), idem)

    async def read_queue(self, substation: str, day: str, read: Callable[[SubstationQueue], T]) -> T:
        return await self._queued((substation, day), read)

    async def _read_home(self, token_id: str, read: Callable[[SubstationQueue], T]) -> T | None:
        """``read`` run on the queue that holds the token, None when no queue does."""
        home = await self._home(token_id)
        return await self._queued(home, read) if home is not None else None

    async def _home(self, token_id: str) -> QueueKey | None:
        return self._cache.home(token_id) or await self._home_of(token_id)

    async def _queued(self, key: QueueKey, run: Callable[[SubstationQueue], Any],
                      idem: IdempotencyKey | None = None, at_least: int | None = None) -> Any:
        """Run ``run`` on the queue's committed state, in turn with whatever else waits for it
        (``at_least``: a read content with the state as of that version, or later)."""
        job = Job(run, idem, asyncio.get_running_loop().create_future(), at_least)
        self._jobs.setdefault(key, []).append(job)
        if key not in self._drainers:
            self._drainers[key] = asyncio.create_task(self._drain(key), name=f"queue-{key[0]}-{key[1]}")
        return await job.future

    async def _drain(self, key: QueueKey) -> None:
        try:
            while self._jobs.get(key):
                batch = self._jobs.pop(key)
                try:
                    later = await self._run_batch(key, batch)
                except BaseException as exc:
                    self._cache.evict(key)
                    failure = exc if isinstance(exc, Exception) else StoreUnavailable("the store is closing")
                    for job in batch:
                        _settle(job, exc=failure)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                if later:
                    self._jobs.setdefault(key, [])[:0] = later
        finally:
            self._drainers.pop(key, None)

    async def _stop_drainers(self) -> None:
        """Cancel every queue's drainer: their waiting callers get StoreUnavailable."""
        drainers = list(self._drainers.values())
        for task in drainers:
            task.cancel()
        if drainers:
            await asyncio.wait(drainers, timeout=5.0)

    async def _run_batch(self, key: QueueKey, batch: list[Job]) -> list[Job]:
        """Run and commit ``batch``; returns the jobs left for the next batch (a second use of
        an idempotency key waits until the first is committed)."""
        recheck: set[str] | None = None      # after a refusal: re-read these and what changed
        for attempt in range(MAX_ATTEMPTS):
            cached = self._cache.get(key)
            if cached is None or recheck is not None:
                cached = await self._load(key, cached, recheck or ())
                recheck = None
            else:
                self._refresh(key, cached)
            q = cached.queue
            done: list[tuple[Job, bool, Any, int, int]] = []
            later: list[Job] = []
            keys_seen: set[tuple[str, str]] = set()
            broken = False
            for job in batch:
                ident = (job.idem.principal, job.idem.key) if job.idem is not None else None
                if ident is not None and ident in keys_seen:
                    later.append(job)
                    continue
                if ident is not None:
                    keys_seen.add(ident)
                start, before = len(q.pending), q.version
                try:
                    value = job.run(q)
                except Exception as exc:
                    if q.version != before:
                        # It changed this copy before failing: answer it, and run the others
                        # again on a copy read afresh.
                        _settle(job, exc=exc)
                        batch = [j for j in batch if j is not job]
                        broken = True
                        break
                    done.append((job, False, exc, start, start))
                else:
                    done.append((job, True, value, start, len(q.pending)))
            if broken:
                recheck = _touched(q)
                if not batch:
                    self._cache.evict(key)
                    return []
                continue
            events = list(q.pending)
            if not events and not any(job.idem for job in batch) and self._answers_reads(cached, batch):
                for job, ok, value, _, _ in done:     # reads only, of a copy known to be current
                    _settle(job, result=value) if ok else _settle(job, exc=value)
                return later
            outcome = await self._commit_batch(Batch(
                q, cached.version, [event_record(q.substation, q.day, event) for event in events],
                [row for event in events for row in rows_changed(q, event)],
                [KeptAnswer(job.idem, end if ok and end > start else 0, ok)
                 for job, ok, _, start, end in done if job.idem is not None],
                _touched(q)))
            if isinstance(outcome, CachedQueue):          # another replica changed the queue first
                await self._backoff(attempt)
                continue
            if isinstance(outcome, Seen):                 # its key answered an earlier request
                answered = [job for job, *_ in done if job.idem is not None][outcome.index]
                self._cache.evict(key)
                try:
                    _settle(answered, result=await self._replay_from(answered.idem, outcome.kept, key))
                except Exception as exc:  # noqa: BLE001 - e.g. the key was used for another request
                    _settle(answered, exc=exc)
                batch = [j for j in batch if j is not answered]
                if not batch:
                    return later
                continue
            q.drain()
            if outcome:
                cached.version = outcome[-1]
            for event in events:
                if event.token is not None:
                    self._cache.note_home(event.token.id, key)
            if outcome and self.notifies_own_commits and self._listeners:
                self._notify_hall(key, list(zip(outcome, events)), q)
            for job, ok, value, _, _ in done:
                _settle(job, result=value) if ok else _settle(job, exc=value)
            return later
        raise StoreUnavailable("The queue is changing too fast on other replicas; retry.")

    async def _backoff(self, attempt: int) -> None:
        self.conflicts += 1
        if attempt >= 3:   # a storm of conflicts: spread the contenders out a little
            await asyncio.sleep(random.uniform(0, min(0.02, 0.001 * attempt)))

    # -- idempotent replays ------------------------------------------------------------------

    async def _replay(self, idem: IdempotencyKey | None) -> Applied | None:
        if idem is None:
            return None
        kept = await self._kept(idem)
        return await self._replay_from(idem, kept, None) if kept is not None else None

    async def _replay_from(self, idem: IdempotencyKey, kept: Any, draining: QueueKey | None) -> Applied:
        """The first answer to a retried request. ``draining``: the queue whose drainer asks,
        read directly (asking through the drainer would wait for itself)."""
        data = self._answer_of(idem, kept)
        if data is NO_RESULT or "number" not in data:
            return replayed(data, lambda token: None)
        token_id = data["id"]
        if draining is not None:
            cached = self._cache.get(draining) or await self._load(draining, None, ())
            view = view_of(cached.queue, token_id)
        else:
            view = await self.token_view(token_id)
        return replayed(data, lambda token: view[1] if view else None)

    # -- reads and listeners -----------------------------------------------------------------

    async def queue_snapshot(self, substation: str, day: str) -> QueueSnapshot:
        return await self.read_queue(substation, day, lambda q: snapshot_of(q, self.hall_head))

    async def token_view(self, token_id: str) -> tuple[Token, Estimate | None] | None:
        return await self._read_home(token_id, lambda q: view_of(q, token_id))

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

    def _notify_hall(self, key: QueueKey, events: list[tuple[int, DomainEvent]], q: SubstationQueue) -> None:
        """One Committed for a batch, with the hall after it: worked out once per batch, not
        once per change, so the cost per token stays flat as the line grows under load."""
        try:
            hall = q.hall_view(self.hall_head)
        except Exception:  # noqa: BLE001 - the answers are committed; the boards resync
            log.exception("hall of %s on %s could not be built", *key)
            return
        self._notify(Committed(*key, events, hall))

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
