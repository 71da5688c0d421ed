"""The kiosk's offline journal: a local SQLite file (WAL) that keeps the counter working when the
server is away.

Actions that need no answer from the server (start, recall, complete, no-show, a cash payment,
a token issued from a leased number block) are written here with the idempotency key of their
first attempt and replayed in order by ``replay`` once the server answers again. A replay the
server refuses for good (a 4xx other than 429) is kept as ``failed`` with the server's message,
for a person to look at; it is not retried. The journal also keeps the number leases and a few
facts learned online (which counter the key belongs to, the counter's current token) so that a
kiosk started while the server is down still knows where it stands.

Writes are a few milliseconds on one local file and the journal has one user, so it uses stdlib
sqlite3 directly; ``synchronous=FULL`` because an entry the cashier saw accepted must survive a
power cut.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

from .client import Call, Json, KioskError, ServerError

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    counter TEXT NOT NULL,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    body TEXT,
    idem TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    answer TEXT,
    updated_at REAL
);
CREATE INDEX IF NOT EXISTS entries_by_status ON entries (counter, status, seq);
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    counter TEXT NOT NULL,
    service TEXT NOT NULL,
    day TEXT NOT NULL,
    numbers TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

PENDING, DONE, FAILED = "pending", "done", "failed"


@dataclass(frozen=True)
class Entry:
    """One journalled action."""

    seq: int
    counter: str
    kind: str
    label: str
    call: Call
    idem: str
    created_at: float
    status: str = PENDING
    attempts: int = 0
    error_code: str | None = None
    error_message: str | None = None
    answer: Json | None = None

    def as_json(self) -> Json:
        return {"seq": self.seq, "counter": self.counter, "kind": self.kind, "label": self.label,
                "method": self.call.method, "path": self.call.path, "body": self.call.body,
                "idempotency_key": self.idem, "created_at": self.created_at, "status": self.status,
                "attempts": self.attempts, "error_code": self.error_code,
                "error_message": self.error_message, "answer": self.answer}


@dataclass(frozen=True)
class Lease:
    """A block of numbers the server set aside for this counter to issue while offline."""

    id: str
    counter: str
    service: str
    day: str
    numbers: tuple[str, ...]
    used: int = 0

    @property
    def left(self) -> int:
        return len(self.numbers) - self.used


class Sender(Protocol):
    async def send(self, call: Call, *, idem: str | None = None, retries: int | None = None) -> Json: ...


@dataclass
class SyncReport:
    """What one replay did: entries now done, refused for good, and still pending."""

    done: list[Entry] = field(default_factory=list)
    failed: list[Entry] = field(default_factory=list)
    pending: int = 0
    stopped: KioskError | None = None  # why the replay stopped early (server away again)

    def as_json(self) -> Json:
        return {"done": [e.as_json() for e in self.done], "failed": [e.as_json() for e in self.failed],
                "pending": self.pending,
                "stopped": None if self.stopped is None else self.stopped.message}


class Journal:
    """The journal file; open it with ``Journal(path)`` (or ``with Journal(path) as journal``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- entries ------------------------------------------------------------------------------

    def append(self, counter: str, kind: str, label: str, call: Call, idem: str,
               at: float | None = None) -> Entry:
        """Keep an action for a later replay; the same ``idem`` twice keeps it once."""
        now = time.time() if at is None else at
        body = None if call.body is None else json.dumps(call.body, sort_keys=True)
        self.db.execute(
            "INSERT OR IGNORE INTO entries (counter, kind, label, method, path, body, idem, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (counter, kind, label, call.method, call.path, body, idem, now, now))
        row = self.db.execute("SELECT * FROM entries WHERE idem = ?", (idem,)).fetchone()
        return _entry(row)

    def entries(self, counter: str | None = None, status: str | None = None) -> list[Entry]:
        sql, args = "SELECT * FROM entries WHERE 1=1", []
        if counter is not None:
            sql += " AND counter = ?"
            args.append(counter)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        return [_entry(r) for r in self.db.execute(sql + " ORDER BY seq", args)]

    def pending(self, counter: str) -> list[Entry]:
        return self.entries(counter, PENDING)

    def pending_count(self, counter: str) -> int:
        return self._count(counter, PENDING)

    def failed_count(self, counter: str) -> int:
        return self._count(counter, FAILED)

    def _count(self, counter: str, status: str) -> int:
        row = self.db.execute("SELECT count(*) FROM entries WHERE counter = ? AND status = ?",
                              (counter, status)).fetchone()
        return int(row[0])

    def mark_done(self, seq: int, answer: Json) -> None:
        self.db.execute("UPDATE entries SET status = ?, answer = ?, attempts = attempts + 1,"
                        " error_code = NULL, error_message = NULL, updated_at = ? WHERE seq = ?",
                        (DONE, json.dumps(answer), time.time(), seq))

    def mark_failed(self, seq: int, code: str, message: str, answer: Json | None = None) -> None:
        self.db.execute("UPDATE entries SET status = ?, error_code = ?, error_message = ?, answer = ?,"
                        " attempts = attempts + 1, updated_at = ? WHERE seq = ?",
                        (FAILED, code, message, None if answer is None else json.dumps(answer),
                         time.time(), seq))

    def note_attempt(self, seq: int, error: KioskError) -> None:
        code = error.code if isinstance(error, ServerError) else "unreachable"
        self.db.execute("UPDATE entries SET attempts = attempts + 1, error_code = ?, error_message = ?,"
                        " updated_at = ? WHERE seq = ?", (code, error.message, time.time(), seq))

    # --- leases -------------------------------------------------------------------------------

    def add_lease(self, lease: Json) -> Lease:
        self.db.execute(
            "INSERT OR IGNORE INTO leases (id, counter, service, day, numbers, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (lease["id"], lease["counter"], lease["service"], lease["day"],
             json.dumps(list(lease["numbers"])), time.time()))
        return self.lease(lease["id"])  # type: ignore[return-value]

    def lease(self, lease_id: str) -> Lease | None:
        row = self.db.execute("SELECT * FROM leases WHERE id = ?", (lease_id,)).fetchone()
        return None if row is None else _lease(row)

    def leases(self, counter: str, service: str | None = None, day: str | None = None) -> list[Lease]:
        sql, args = "SELECT * FROM leases WHERE counter = ?", [counter]
        if service is not None:
            sql += " AND service = ?"
            args.append(service)
        if day is not None:
            sql += " AND day = ?"
            args.append(day)
        return [_lease(r) for r in self.db.execute(sql + " ORDER BY created_at, id", args)]

    def numbers_left(self, counter: str, service: str, day: str) -> int:
        return sum(lease.left for lease in self.leases(counter, service, day))

    def take_number(self, counter: str, service: str, day: str) -> tuple[Lease, str] | None:
        """The next unused leased number for ``service`` on ``day``, now marked used; None if none."""
        with self._transaction():
            for lease in self.leases(counter, service, day):
                if lease.left > 0:
                    self.db.execute("UPDATE leases SET used = used + 1 WHERE id = ?", (lease.id,))
                    return lease, lease.numbers[lease.used]
        return None

    # --- facts learned online -----------------------------------------------------------------

    def get_state(self, name: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_state(self, name: str, value: Any) -> None:
        """Keep a fact; an unchanged one costs a read, not a synced write (the screen refreshes often)."""
        text = json.dumps(value, sort_keys=True)
        row = self.db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
        if row is not None and row[0] == text:
            return
        self.db.execute("INSERT INTO state (name, value) VALUES (?, ?)"
                        " ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, text))

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, so two kiosk processes never take the same leased number."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


async def replay(journal: Journal, sender: Sender, counter: str, *, retries: int = 1) -> SyncReport:
    """Send the counter's pending entries in order, each with its original idempotency key.

    Stops at the first entry the server cannot take now (unreachable, 429, 5xx): later entries
    may depend on it. An entry refused for good is marked failed and the replay goes on.
    """
    report = SyncReport()
    for entry in journal.pending(counter):
        try:
            answer = await sender.send(entry.call, idem=entry.idem, retries=retries)
        except KioskError as exc:
            if exc.transient:
                journal.note_attempt(entry.seq, exc)
                report.stopped = exc
                break
            code = exc.code if isinstance(exc, ServerError) else "client_error"
            details = exc.as_json() if isinstance(exc, ServerError) else None
            journal.mark_failed(entry.seq, code, exc.message, details)
            report.failed.append(_refetch(journal, entry.seq))
            continue
        journal.mark_done(entry.seq, answer)
        report.done.append(_refetch(journal, entry.seq))
    report.pending = journal.pending_count(counter)
    return report


def _refetch(journal: Journal, seq: int) -> Entry:
    return _entry(journal.db.execute("SELECT * FROM entries WHERE seq = ?", (seq,)).fetchone())


def _entry(row: sqlite3.Row) -> Entry:
    return Entry(
        seq=row["seq"], counter=row["counter"], kind=row["kind"], label=row["label"],
        call=Call(row["method"], row["path"], None if row["body"] is None else json.loads(row["body"])),
        idem=row["idem"], created_at=row["created_at"], status=row["status"], attempts=row["attempts"],
        error_code=row["error_code"], error_message=row["error_message"],
        answer=None if row["answer"] is None else json.loads(row["answer"]),
    )


def _lease(row: sqlite3.Row) -> Lease:
    return Lease(id=row["id"], counter=row["counter"], service=row["service"], day=row["day"],
                 numbers=tuple(json.loads(row["numbers"])), used=row["used"])
