"""Storage: one Store contract (base.py) and its engines."""

from .base import (
    Applied,
    IdempotencyConflict,
    IdempotencyKey,
    KeyRecord,
    QueueChange,
    Store,
    TokenChange,
)
from .sqlite import SQLiteStore

__all__ = [
    "Applied",
    "IdempotencyConflict",
    "IdempotencyKey",
    "KeyRecord",
    "QueueChange",
    "SQLiteStore",
    "Store",
    "TokenChange",
]
