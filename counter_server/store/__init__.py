"""Storage: one Store contract (base.py) and its engines."""

import redis.exceptions as _redis_errors

from ..config import Settings
from ..scenario.schema import split_host_port
from .base import IDEMPOTENCY_TTL_S, Applied, CommitListener, Committed, IdempotencyConflict
from .base import IdempotencyKey, KeyRecord, QueueChange, QueueSnapshot, Store, StoreUnavailable
from .base import TokenChange
from .redis import RedisStore
from .sqlite import SQLiteStore

# What "the store cannot answer now" looks like, whichever engine: the API answers 503 with
# Retry-After for these, not 500.
STORE_UNAVAILABLE: tuple[type[Exception], ...] = (
    StoreUnavailable, _redis_errors.ConnectionError, _redis_errors.TimeoutError)


async def open_store(settings: Settings) -> Store:
    """Open the engine the settings name: the SQLite file in the data dir (one process), or
    the Redis server that several replicas share."""
    chosen = settings.store
    layouts = settings.scenario.layouts()
    if chosen.engine == "redis":
        store: Store = RedisStore(chosen.redis_url, settings.scenario.policy, layouts,
                                  prefix=chosen.redis_prefix,
                                  sentinels=[split_host_port(s) for s in chosen.redis_sentinels],
                                  master=chosen.redis_master, min_replicas_ack=chosen.replicas_ack,
                                  ack_timeout_ms=chosen.replicas_ack_timeout_ms)
    else:
        store = SQLiteStore(settings.database_path, settings.scenario.policy, layouts)
    await store.open()
    return store

__all__ = [
    "IDEMPOTENCY_TTL_S",
    "Applied",
    "CommitListener",
    "Committed",
    "QueueSnapshot",
    "IdempotencyConflict",
    "IdempotencyKey",
    "KeyRecord",
    "QueueChange",
    "RedisStore",
    "STORE_UNAVAILABLE",
    "SQLiteStore",
    "Store",
    "StoreUnavailable",
    "TokenChange",
    "open_store",
]
