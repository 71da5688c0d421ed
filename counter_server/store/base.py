"""The contract every storage engine fulfils.

A change to a queue is a function over the domain's SubstationQueue. The engine runs it
atomically against the current state and persists, in one transaction, the events it recorded,
the tokens they carry and the idempotency record of the request. Only after that transaction
commits does the caller get an answer, so whatever was acknowledged survives a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ..notices import Notice, SmsRequest, Webhook
from ..outbox import OutboxStats, Payment, PaymentStatus
from ..queueing import DomainEvent, Estimate, HallView, SubstationQueue, Token

QueueChange = Callable[[SubstationQueue], Token | None]
TokenChange = Callable[[SubstationQueue, Token], Token | None]
T = TypeVar("T")


@dataclass(frozen=True)
class IdempotencyKey:
    """A client's ``Idempotency-Key``, scoped to the API key that sent it.

    ``fingerprint`` digests method, path and body, so the same key reused for a different
    request is refused instead of silently answered with another request's result.
    """

    principal: str
    key: str
    fingerprint: str


@dataclass(frozen=True)
class Applied:
    """The outcome of a change: the token it returned, its wait estimate when it waits, and
    whether this is a replayed answer to a retried request."""

    token: Token | None
    replayed: bool = False
    estimate: Estimate | None = None
    detail: Mapping[str, object] | None = None


@dataclass(frozen=True)
class QueueSnapshot:
    """A substation's queue as committed: tokens at counters, the waiting line in call order
    with each token's estimate, and the hall view boards show."""

    at_counters: list[Token]
    waiting: list[Token]
    estimates: dict[str, Estimate]
    hall: HallView


@dataclass(frozen=True)
class Committed:
    """Events committed changes appended to one queue (with their sequence numbers), and the
    hall after them. Changes committed in one transaction may come as one Committed.

    Stores hand these to listeners only after the transaction commits, ordered by the sequence
    number of their last event."""

    substation: str
    day: str
    events: list[tuple[int, DomainEvent]]
    hall: HallView


CommitListener = Callable[[Committed], None]


# How long a retry with the same Idempotency-Key still replays the first answer: a kiosk's
# journal retries within days, not months. Older keys are forgotten (Redis: a TTL; SQLite: pruned).
IDEMPOTENCY_TTL_S = 30 * 24 * 3600


# How many of a token's earlier payments ``take_payment`` hands its ``build``: the first ones
# decide whether it may take another (a token has one, or a few marked part), and reading a
# bounded number keeps each payment one cheap step however many a load test piles on a token.
EARLIER_PAYMENTS_READ = 20


# How long webhook notices stay in the log: an endpoint down longer than this misses the older
# ones (ops see it disabled long before: see [webhooks] disable_after_minutes).
NOTICE_KEEP_S = 7 * 24 * 3600


class IdempotencyConflict(Exception):
    """The idempotency key was first used for a different request."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used for a different request.")
        self.key = key


class StoreUnavailable(Exception):
    """The store cannot answer now (its server is away or too busy); nothing was acknowledged,
    and a retry with the same Idempotency-Key learns whether the change was made."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class KeyRecord:
    id: str
    role: str
    counter: str | None
    label: str
    created_at: float
    revoked_at: float | None = None


class Store(Protocol):
    commits: int     # transactions (group commits) this process made
    conflicts: int   # changes run again because another replica changed their queue first
    # Whether this process follows the store's shared event stream, so its boards see every
    # replica's changes (an engine with no shared stream always does). Read by GET /readyz.
    following: bool

    async def open(self) -> None:
        """Connect, create the schema if needed, recover state."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """One cheap round trip to the store, for GET /readyz: returns when it answers, raises
        (what the API answers 503 to) when it does not."""

    async def mutate_queue(
        self, substation: str, day: str, change: QueueChange, idem: IdempotencyKey | None = None
    ) -> Applied:
        """Run ``change`` on the substation's queue for ``day`` and persist what it recorded."""

    async def mutate_token(
        self, token_id: str, change: TokenChange, idem: IdempotencyKey | None = None
    ) -> Applied:
        """Run ``change`` on the queue that holds ``token_id``; UnknownToken when none does."""

    async def queue_snapshot(self, substation: str, day: str) -> QueueSnapshot: ...

    async def read_queue(self, substation: str, day: str, read: Callable[[SubstationQueue], T]) -> T:
        """``read`` run on the queue as committed, in turn with its changes; it must not change
        the queue. For answers a snapshot would walk the whole line to give."""

    async def token_view(self, token_id: str) -> tuple[Token, Estimate | None] | None:
        """A token and, while it waits, its estimate."""

    async def record_turned_away(self, substation: str, day: str, service: str, reason: str,
                                 at: float, idem: IdempotencyKey | None = None) -> None:
        """Count a consumer refused at the door (once per idempotency key)."""

    async def turned_away_count(self, substation: str, day: str) -> int: ...

    def add_listener(self, listener: CommitListener) -> None:
        """Call ``listener`` on the event loop with every Committed change."""

    async def last_seq(self) -> int:
        """The sequence number of the newest event."""

    async def waiting_counts(self, day: str) -> dict[str, int]: ...

    async def add_key(self, key_hash: str, role: str, counter: str | None, label: str, now: float) -> KeyRecord: ...

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        """The live (not revoked) key with this hash."""

    async def revoke_key(self, key_id: str, now: float) -> bool: ...

    async def list_keys(self) -> list[KeyRecord]: ...

    async def day_events(self, day: str, substation: str | None = None) -> list[dict]:
        """One day's events (as ``events`` gives them, payments included) and its refusals at
        the door (kind ``turned_away``, ``seq`` None, data: service and reason), in time order."""

    async def token_counts(self, day: str, substations: Iterable[str]) -> list[tuple[str, str | None, str, int]]:
        """(substation, counter, status, how many) of the day's tokens, for metrics and ops."""

    # -- the payments outbox ---------------------------------------------------------------

    async def take_payment(self, token_id: str, build: Callable[[Token | None, list[Payment]], Payment],
                           idem: IdempotencyKey | None = None) -> tuple[Payment, bool]:
        """Write the payment ``build`` makes of the token as committed (None when there is no
        such token) and of the payments already taken for it (oldest first, the first
        EARLIER_PAYMENTS_READ of them), atomically with that read; what ``build`` raises goes
        to the caller."""

    async def get_payment(self, payment_id: str) -> Payment | None: ...

    async def claim_payments(self, worker: str, now: float, lease_s: float, limit: int) -> list[Payment]:
        """Lease up to ``limit`` queued payments, the oldest of each account only, to ``worker``."""

    async def settle_payment(self, payment_id: str, status: PaymentStatus, now: float, *,
                             reason: str | None = None, billing_ref: str | None = None,
                             retry_at: float | None = None, attempted: bool = True) -> Payment: ...

    async def amend_payment(self, payment_id: str, amend: Callable[[Payment], Payment], kind: str,
                            actor: str) -> Payment:
        """Rewrite a payment as ``amend`` makes it of the stored one, logging an event of ``kind``
        by ``actor``, atomically with that read (what ``amend`` raises goes to the caller and
        nothing is written): a failed payment resubmitted, queued again in its account's order
        (its account perhaps corrected), or refunded. KeyError when there is no such payment."""

    async def failed_payments(self, limit: int = 500) -> list[Payment]:
        """Payments billing refused for good, not yet resubmitted or refunded, oldest first."""

    async def outbox_stats(self, now: float) -> OutboxStats: ...

    # -- webhooks -----------------------------------------------------------------------------

    async def add_notice(self, notice: Notice) -> None:
        """Append a notice no change of state causes (an ops alert). Notices of changes are
        written by the engine in the change's own transaction (``notices.notices_of``)."""

    async def notices_after(self, cursor: str, limit: int) -> list[Notice]:
        """Up to ``limit`` notices written after ``cursor`` ('' for the start), oldest first,
        each with its own cursor."""

    async def notice_cursor(self) -> str:
        """The cursor of the newest notice: where an endpoint registered now starts."""

    async def webhooks(self) -> list[Webhook]: ...

    async def save_webhook(self, hook: Webhook) -> bool:
        """Write ``hook`` if the stored one is its ``version`` - 1 (version 1: if there is none);
        False, and nothing written, otherwise."""

    async def remove_webhook(self, hook_id: str) -> bool: ...

    async def put_sms_request(self, request: SmsRequest) -> None:
        """Keep (or replace) a token's SMS request."""

    async def sms_request(self, token_id: str) -> SmsRequest | None: ...

    async def sms_requests(self) -> list[SmsRequest]:
        """Every SMS request kept (one per token that asked and has not ended)."""

    async def mark_sms_near(self, token_id: str, at: float, notice: Notice) -> bool:
        """Mark the request's "near" message as due and write its notice, in one step; False
        (nothing written) when it was marked before or there is no request."""

    async def forget_sms_requests(self, token_ids: Iterable[str]) -> int:
        """Erase these tokens' requests, their mobile numbers with them; how many there were."""

    # -- the server's own secret -------------------------------------------------------------

    async def server_secret(self) -> bytes:
        """32 random bytes made on first use and the same ever after (on every replica), that
        key the links phones hold: kept apart from the state, so a copy of the state alone
        forges nothing."""
