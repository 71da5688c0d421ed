"""Storage: one Store contract (base.py) and its engines."""

from .base import (
    Applied,
    CommitListener,
    Committed,
    IdempotencyConflict,
    IdempotencyKey,
    KeyRecord,
    QueueChange,
    QueueSnapshot,
    Store,
    TokenChange,
)
from .sqlite import SQLiteStore

__all__ = [
    "Applied",
    "CommitListener",
    "Committed",
    "QueueSnapshot",
    "IdempotencyConflict",
    "IdempotencyKey",
    "KeyRecord",
    "QueueChange",
    "SQLiteStore",
    "Store",
    "TokenChange",
]
