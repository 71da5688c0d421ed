"""The contract every storage engine fulfils.

A change to a queue is a function over the domain's SubstationQueue. The engine runs it
atomically against the current state and persists, in one transaction, the events it recorded,
the tokens they carry and the idempotency record of the request. Only after that transaction
commits does the caller get an answer, so whatever was acknowledged survives a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..queueing import SubstationQueue, Token

QueueChange = Callable[[SubstationQueue], Token | None]
TokenChange = Callable[[SubstationQueue, Token], Token | None]


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
    """The outcome of a change: the token it returned, and whether it is a replayed answer."""

    token: Token | None
    replayed: bool = False


class IdempotencyConflict(Exception):
    """The idempotency key was first used for a different request."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used for a different request.")
        self.key = key


@dataclass(frozen=True)
class KeyRecord:
    id: str
    role: str
    counter: str | None
    label: str
    created_at: float
    revoked_at: float | None = None


class Store(Protocol):
    async def open(self) -> None:
        """Connect, create the schema if needed, recover state."""

    async def close(self) -> None: ...

    async def mutate_queue(
        self, substation: str, day: str, change: QueueChange, idem: IdempotencyKey | None = None
    ) -> Applied:
        """Run ``change`` on the substation's queue for ``day`` and persist what it recorded."""

    async def mutate_token(
        self, token_id: str, change: TokenChange, idem: IdempotencyKey | None = None
    ) -> Applied:
        """Run ``change`` on the queue that holds ``token_id``; UnknownToken when none does."""

    async def get_token(self, token_id: str) -> Token | None: ...

    async def queue_view(self, substation: str, day: str) -> tuple[list[Token], list[Token]]:
        """(tokens at counters, waiting tokens in call order) as committed."""

    async def waiting_counts(self, day: str) -> dict[str, int]: ...

    async def add_key(self, key_hash: str, role: str, counter: str | None, label: str, now: float) -> KeyRecord: ...

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        """The live (not revoked) key with this hash."""

    async def revoke_key(self, key_id: str, now: float) -> bool: ...

    async def list_keys(self) -> list[KeyRecord]: ...

    async def events(self, after: int = 0, limit: int = 1000) -> list[dict]:
        """Appended events with ``seq`` greater than ``after``, oldest first."""
