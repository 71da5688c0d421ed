"""API keys: created once, shown once, stored only as a SHA-256 digest.

Keys are 256-bit random strings, so a plain digest is enough to make a stolen database useless
for logging in (there is nothing to brute-force, unlike a password).

``counter-server keys revoke`` writes to the store while the server runs, and nothing tells
the server: a key read from the store is trusted for ``LIVE_IDS_MAX_AGE_S`` at most (a peak's
requests then cost no read each), so a revoked key is refused within half a second; a live
connection, checked only at its handshake, asks ``is_live`` every half second, answered from
one list of live key ids read at most every ``LIVE_IDS_MAX_AGE_S`` however many connections ask.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable

from ..config import Scenario
from ..store import KeyRecord, Store
from .access import Actor, Role
from .errors import InvalidField

KEY_PREFIX = "ccq_"
# How stale a key read from the store, and the live key ids, may be when a request or a live
# connection asks: with the connections' check every 0.5 s, a revoked key's sockets close
# within a second, and its requests are refused within this.
LIVE_IDS_MAX_AGE_S = 0.4
KEYS_TRUSTED = 10_000   # keys whose reads are kept at once (more: all read afresh)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyService:
    def __init__(self, store: Store, scenario: Scenario, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.scenario = scenario
        self.clock = clock
        self.monotonic = monotonic
        self._live_ids: frozenset[str] = frozenset()
        self._live_ids_read_at: float | None = None
        self._reading: asyncio.Future[frozenset[str]] | None = None
        self._trusted: dict[str, tuple[float, Actor]] = {}   # key digest -> when read, its actor

    async def create(self, role: str, counter: str | None = None, label: str = "") -> tuple[str, KeyRecord]:
        """A new key and its record; the plain key is returned here and nowhere else."""
        try:
            role = Role(role)
        except ValueError:
            raise InvalidField("role", f"Unknown role {role!r}; use admin, cashier or board.") from None
        if role is Role.CASHIER:
            if counter is None:
                raise InvalidField("counter", "A cashier key needs the counter it belongs to.")
            if counter not in self.scenario.counters:
                raise InvalidField("counter", f"No counter has the id {counter!r}.")
        elif counter is not None:
            raise InvalidField("counter", "Only cashier keys belong to a counter.")
        plain = KEY_PREFIX + secrets.token_urlsafe(32)
        record = await self.store.add_key(hash_key(plain), role.value, counter, label, self.clock())
        return plain, record

    async def authenticate(self, plain: str) -> Actor | None:
        """The key's actor, or None for a key that is unknown or revoked (never kept: a key
        made a moment later works at once)."""
        digest = hash_key(plain)
        now = self.monotonic()
        trusted = self._trusted.get(digest)
        if trusted is not None and now - trusted[0] <= LIVE_IDS_MAX_AGE_S:
            return trusted[1]
        record = await self.store.find_key(digest)
        if record is None:
            self._trusted.pop(digest, None)
            return None
        counter = self.scenario.counters.get(record.counter) if record.counter else None
        actor = Actor(
            key_id=record.id,
            role=Role(record.role),
            counter=record.counter,
            substation=counter.substation if counter else None,
        )
        if len(self._trusted) >= KEYS_TRUSTED:
            self._trusted.clear()
        self._trusted[digest] = (now, actor)
        return actor

    async def is_live(self, key_id: str) -> bool:
        """Whether the key is still valid (not revoked): for live connections, which outlast
        the request that checked their key. The ids read for one asker serve every other for
        ``LIVE_IDS_MAX_AGE_S``, and askers arriving during a read share it."""
        read_at = self._live_ids_read_at
        if read_at is None or self.monotonic() - read_at > LIVE_IDS_MAX_AGE_S:
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._read_live_ids())
                self._reading.add_done_callback(self._read_done)
            await asyncio.shield(self._reading)
        return key_id in self._live_ids

    async def _read_live_ids(self) -> frozenset[str]:
        started = self.monotonic()
        ids = frozenset(k.id for k in await self.store.list_keys() if k.revoked_at is None)
        self._live_ids, self._live_ids_read_at = ids, started
        return ids

    def _read_done(self, reading: asyncio.Future[frozenset[str]]) -> None:
        self._reading = None
        if not reading.cancelled():
            reading.exception()   # retrieved here; the askers awaiting it see it raised

    async def has_admin(self) -> bool:
        return any(k.role == Role.ADMIN and k.revoked_at is None for k in await self.store.list_keys())
