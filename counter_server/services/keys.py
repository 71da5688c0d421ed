"""API keys: created once, shown once, stored only as a SHA-256 digest.

Keys are 256-bit random strings, so a plain digest is enough to make a stolen database useless
for logging in (there is nothing to brute-force, unlike a password).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

from ..config import Scenario
from ..store import KeyRecord, Store
from .access import Actor, Role
from .errors import InvalidField

KEY_PREFIX = "ccq_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyService:
    def __init__(self, store: Store, scenario: Scenario, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.scenario = scenario
        self.clock = clock

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
        record = await self.store.find_key(hash_key(plain))
        if record is None:
            return None
        counter = self.scenario.counters.get(record.counter) if record.counter else None
        return Actor(
            key_id=record.id,
            role=Role(record.role),
            counter=record.counter,
            substation=counter.substation if counter else None,
        )

    async def has_admin(self) -> bool:
        return any(k.role == Role.ADMIN and k.revoked_at is None for k in await self.store.list_keys())
