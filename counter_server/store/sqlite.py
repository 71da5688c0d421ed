"""The SQLite engine: one file in WAL mode, one writer thread with group commit.

A queue's changes run on its cached copy in the store core, which hands each queue's batch
here as one job for the writer thread. The thread takes all jobs waiting at that moment (of
every queue), runs each inside its own SAVEPOINT and commits them in one transaction (group
commit: one fsync for many acknowledged writes, durability unchanged). Futures are settled only
after COMMIT returns. Queues are loaded, and plain reads made, on a second thread with its own
connection, so they never wait behind writes; the small point reads every request makes (its
API key, a token's queue, a retried request's answer) use the event loop's own connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from ..datadir import make_private, read_or_make_secret
from ..notices import Notice, SmsRequest, Webhook, notices_of, webhook_from_record, webhook_record
from ..outbox import OutboxStats, Payment
from ..queueing import Lease, QueuePolicy, SlotPlan, Token
from . import codec, core
from .base import EARLIER_PAYMENTS_READ, IDEMPOTENCY_TTL_S, NOTICE_KEEP_S, IdempotencyConflict, IdempotencyKey, KeyRecord

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[sqlite_utils.Database], Any]

TOKEN_COLUMNS = [f.name for f in fields(Token)]
_STOP = object()
PRUNE_EVERY_S = 6 * 3600   # how often the writer forgets idempotency keys past IDEMPOTENCY_TTL_S


def connect(path: Path) -> sqlite_utils.Database:
    """A connection in autocommit mode (transactions are explicit) with WAL and full sync."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10.0)
    db = sqlite_utils.Database(conn)
    db.execute("PRAGMA busy_timeout = 10000")
    db.execute("PRAGMA synchronous = FULL")
    return db


HOLDER_DIGESTS = ("holder_digests", "hmac-sha256")   # store_meta: how account_ref/phone_ref are made


def forget_unkeyed_digests(db: sqlite_utils.Database) -> tuple[int, int]:
    """Once per database: blank the account and phone digests an older version wrote.

    They were unkeyed SHA-256 of the numbers, which brute force turns back into phone numbers
    in seconds; today's keyed digests cannot be compared with them anyway, so a holder of such
    a token could take a second one that day. Overwritten with zeros (secure_delete) and
    checkpointed, so the old bytes leave the file and its WAL. (tokens, events) blanked."""
    name, value = HOLDER_DIGESTS
    if db.execute("SELECT 1 FROM store_meta WHERE name = ?", [name]).fetchone() is not None:
        return 0, 0
    db.execute("PRAGMA secure_delete = ON")
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            tokens = db.execute("UPDATE tokens SET account_ref = NULL, phone_ref = NULL"
                                " WHERE account_ref IS NOT NULL OR phone_ref IS NOT NULL").rowcount
            events = db.execute(
                "UPDATE events SET data = json_remove(data, '$.account_ref', '$.phone_ref')"
                " WHERE token_id IS NOT NULL"   # the substring test first: most rows say null
                " AND (instr(data, '\"account_ref\": null') = 0 OR instr(data, '\"phone_ref\": null') = 0)"
                " AND (json_extract(data, '$.account_ref') IS NOT NULL"
                " OR json_extract(data, '$.phone_ref') IS NOT NULL)").rowcount
            db.execute("INSERT INTO store_meta (name, value) VALUES (?, ?)", [name, value])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if tokens or events:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.execute("PRAGMA secure_delete = OFF")
    return tokens, events


SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY, substation TEXT, day TEXT, service TEXT, number TEXT, seq INTEGER,
  priority TEXT, status TEXT, issued_at REAL, counter TEXT, target_counter TEXT, called_at REAL,
  started_at REAL, finished_at REAL, recalls INTEGER, requeues INTEGER, transfers INTEGER,
  ordinal INTEGER, origin TEXT, slot_at REAL, account_ref TEXT, phone_ref TEXT, account_hint TEXT);
CREATE INDEX IF NOT EXISTS idx_tokens_substation_day ON tokens (substation, day);
CREATE TABLE IF NOT EXISTS sequences (
  substation TEXT, day TEXT, service TEXT, last INTEGER, PRIMARY KEY (substation, day, service));
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, substation TEXT NOT NULL,
  day TEXT NOT NULL, token_id TEXT, kind TEXT NOT NULL, actor TEXT, counter TEXT, data TEXT NOT NULL);
-- Daily reports read one day's events; without this they scanned every event ever kept.
CREATE INDEX IF NOT EXISTS idx_events_day ON events (day, substation);
CREATE TABLE IF NOT EXISTS idempotency (
  principal TEXT, key TEXT, fingerprint TEXT, event_seq INTEGER, created_at REAL,
  PRIMARY KEY (principal, key));
CREATE INDEX IF NOT EXISTS idx_idempotency_created ON idempotency (created_at);
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY, hash TEXT, role TEXT, counter TEXT, label TEXT, created_at REAL, revoked_at REAL);
CREATE UNIQUE INDEX IF NOT EXISTS idx_api_keys_hash ON api_keys (hash);
CREATE TABLE IF NOT EXISTS substation_settings (
  substation TEXT PRIMARY KEY, admission INTEGER, daily_cap INTEGER);
CREATE TABLE IF NOT EXISTS turned_away (
  id INTEGER PRIMARY KEY, substation TEXT, day TEXT, service TEXT, reason TEXT, at REAL,
  principal TEXT, idempotency_key TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS idx_turned_away_principal_idempotency_key
  ON turned_away (principal, idempotency_key);
CREATE TABLE IF NOT EXISTS payments (
  ordinal INTEGER PRIMARY KEY, id TEXT, token_id TEXT, substation TEXT, counter TEXT, account TEXT,
  amount_paise INTEGER, mode TEXT, status TEXT, day TEXT, created_at REAL, updated_at REAL,
  attempts INTEGER, reason TEXT, billing_ref TEXT, claimed_by TEXT, not_before REAL, part INTEGER);
CREATE UNIQUE INDEX IF NOT EXISTS idx_payments_id ON payments (id);
CREATE INDEX IF NOT EXISTS idx_payments_status_account_ordinal ON payments (status, account, ordinal);
CREATE INDEX IF NOT EXISTS idx_payments_token_id ON payments (token_id);
-- The claim scans only queued payments, oldest first, and stops at its limit: without this
-- it sorted the whole backlog on the writer each time (2.3 ms at 2,000 queued, vs 0.03 ms).
CREATE INDEX IF NOT EXISTS idx_payments_queued ON payments (ordinal) WHERE status = 'queued';
CREATE TABLE IF NOT EXISTS leases (
  id TEXT PRIMARY KEY, substation TEXT, day TEXT, counter TEXT, service TEXT, letter TEXT,
  first_seq INTEGER, last_seq INTEGER);
CREATE INDEX IF NOT EXISTS idx_leases_substation_day ON leases (substation, day);
CREATE TABLE IF NOT EXISTS slot_plans (substation TEXT, day TEXT, plan TEXT, PRIMARY KEY (substation, day));
CREATE TABLE IF NOT EXISTS counter_state (
  substation TEXT, day TEXT, counter TEXT, open INTEGER, PRIMARY KEY (substation, day, counter));
CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Webhook notices, in the order written (the ordinal is an endpoint's cursor), and the endpoints.
CREATE TABLE IF NOT EXISTS notices (
  ordinal INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, type TEXT NOT NULL, at REAL NOT NULL,
  data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_notices_at ON notices (at);
CREATE TABLE IF NOT EXISTS webhooks (id TEXT PRIMARY KEY, version INTEGER NOT NULL, record TEXT NOT NULL);
-- Consumers' SMS requests: the mobile number lives here only, until the token ends.
CREATE TABLE IF NOT EXISTS sms_requests (
  token_id TEXT PRIMARY KEY, substation TEXT, day TEXT, mobile TEXT, near_ahead INTEGER,
  near_minutes REAL, created_at REAL, near_sent_at REAL);
"""

# Columns added after the first release: a file made before them gets them on open.
COLUMNS_ADDED = {"tokens": {"origin": "TEXT", "slot_at": "REAL", "account_ref": "TEXT",
                            "phone_ref": "TEXT", "account_hint": "TEXT"},
                 "payments": {"part": "INTEGER"}}


def create_schema(db: sqlite_utils.Database) -> None:
    db.execute("PRAGMA journal_mode = WAL")
    for table, added in COLUMNS_ADDED.items():   # before the indexes, which may name them
        if db[table].exists():
            for name, kind in added.items():
                if name not in db[table].columns_dict:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
    db.conn.executescript(SCHEMA)


_UPSERT_TOKEN = (
    f"INSERT INTO tokens ({', '.join(TOKEN_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in TOKEN_COLUMNS)}) "
    f"ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in TOKEN_COLUMNS if c != "id")
)


class SQLiteStore(core.StoreCore):
    """The default engine: embedded, one file, survives ``kill -9`` with nothing acknowledged lost."""

    notifies_own_commits = True

    def __init__(
        self,
        path: str | Path,
        policy: QueuePolicy,
        layouts: Mapping[str, Mapping[str, Iterable[str]]] | None = None,
        *,
        hall_head: int = 12,
        cache_size: int = 64,
        batch_limit: int = 512,
    ) -> None:
        super().__init__(policy, layouts, hall_head=hall_head, cache_size=cache_size)
        self.path = Path(path)
        self._batch_limit = batch_limit
        self._writes: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        self._point_db: sqlite_utils.Database | None = None
        self._loop: asyncio.AbstractEventLoop | None = None   # one writer: conflicts stay 0
        self.following = True   # no shared stream: this process makes every change it publishes

    # -- life cycle ------------------------------------------------------------------------

    async def open(self) -> None:
        tightened = make_private(self.path)
        if tightened:
            log.warning("Data readable by other users on this machine made private (0700/0600): %s",
                        ", ".join(tightened))
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._writer = threading.Thread(
            target=self._write_loop, args=(ready,), name="sqlite-writer", daemon=True
        )
        self._writer.start()
        await ready
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")
        self._point_db = connect(self.path)
        self._point_db.execute("PRAGMA busy_timeout = 50")  # never hold the event loop for long

    async def close(self) -> None:
        await self._stop_drainers()
        if self._point_db is not None:
            self._point_db.conn.close()
            self._point_db = None
        if self._writer is not None:
            self._writes.put(_STOP)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._reader is not None:
            self._reader.submit(self._close_reader).result()
            self._reader.shutdown(wait=True)
            self._reader = None

    # -- changes ---------------------------------------------------------------------------

    async def _load(self, key: core.QueueKey, base: core.CachedQueue | None,
                    recheck: Iterable[str]) -> core.CachedQueue:
        return self._cached(key, await self._read(lambda db: _load_rows(db, key)))

    async def _commit_batch(self, batch: core.Batch) -> list[int] | core.Seen:
        def job(db: sqlite_utils.Database) -> list[int] | core.Seen:
            for i, answer in enumerate(batch.answers):
                kept = _kept(db, answer.idem)
                if kept is not None:
                    return core.Seen(i, kept)
            for change in batch.rows:
                _write_row(db, batch.key, change)
            seqs = [_append_event(db, record) for record in batch.records]
            for answer in batch.answers:
                if answer.keep:
                    _remember(db, answer.idem, seqs[answer.event - 1] if answer.event else None)
            return seqs

        return await self._write(job)

    def _answers_reads(self, cached: core.CachedQueue, jobs: Iterable[core.Job]) -> bool:
        """Always: this process is the file's only writer, so its copy is the committed queue
        (a batch of reads alone no longer takes a turn on the writer thread)."""
        return True

    async def _home_of(self, token_id: str) -> core.QueueKey | None:
        row = await self._point(lambda db: db.execute(
            "SELECT substation, day FROM tokens WHERE id = ?", [token_id]).fetchone())
        return (row[0], row[1]) if row is not None else None

    async def _kept(self, idem: IdempotencyKey) -> tuple[str, int | None, str | None] | None:
        return await self._point(lambda db: _kept(db, idem))

    def _answer_of(self, idem: IdempotencyKey, kept: tuple[str, int | None, str | None]) -> Any:
        fingerprint, event_seq, data = kept
        if fingerprint != idem.fingerprint:
            raise IdempotencyConflict(idem.key)
        return core.NO_RESULT if event_seq is None else json.loads(data)

    async def record_turned_away(self, substation: str, day: str, service: str, reason: str,
                                 at: float, idem: IdempotencyKey | None = None) -> None:
        def job(db: sqlite_utils.Database) -> None:
            db.execute(
                "INSERT OR IGNORE INTO turned_away"
                " (substation, day, service, reason, at, principal, idempotency_key)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [substation, day, service, reason, at, idem.principal if idem else None,
                 idem.key if idem else None],
            )

        await self._write(job)

    async def turned_away_count(self, substation: str, day: str) -> int:
        def read(db: sqlite_utils.Database) -> int:
            (n,) = db.execute("SELECT count(*) FROM turned_away WHERE substation = ? AND day = ?",
                              [substation, day]).fetchone()
            return n

        return await self._read(read)

    # -- payments outbox --------------------------------------------------------------------

    async def take_payment(self, token_id: str, build: Callable[[Token | None, list[Payment]], Payment],
                           idem: IdempotencyKey | None = None) -> tuple[Payment, bool]:
        """Write the payment ``build`` makes of the token and its earlier payments as committed,
        with its event, in one job on the writer: the cashier waits for one hop, not a read and
        then a write, and no other payment for the token can land in between."""

        def job(db: sqlite_utils.Database) -> tuple[Payment, bool]:
            kept = _kept(db, idem) if idem is not None else None
            if kept is not None:
                return codec.from_row(Payment, self._answer_of(idem, kept)), True
            token = next(iter(db.query("SELECT * FROM tokens WHERE id = ?", [token_id])), None)
            earlier = [codec.from_row(Payment, r) for r in db.query(
                "SELECT * FROM payments WHERE token_id = ? ORDER BY ordinal LIMIT ?",
                [token_id, EARLIER_PAYMENTS_READ])]
            payment = build(codec.from_row(Token, token) if token is not None else None, earlier)
            row = codec.to_row(payment)
            row.pop("ordinal")
            cur = db.execute(
                f"INSERT INTO payments ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
            stored = replace(payment, ordinal=cur.lastrowid)
            seq = _append_event(db, codec.payment_record(stored, "payment_queued"))
            if idem is not None:
                _remember(db, idem, seq)
            return stored, False

        return await self._write(job)

    async def get_payment(self, payment_id: str) -> Payment | None:
        def read(db: sqlite_utils.Database) -> Payment | None:
            rows = list(db.query("SELECT * FROM payments WHERE id = ?", [payment_id]))
            return codec.from_row(Payment, rows[0]) if rows else None

        return await self._read(read)

    async def claim_payments(self, worker: str, now: float, lease_s: float, limit: int) -> list[Payment]:
        """Queued payments free to forward: the oldest of each account, not leased by another
        worker and not waiting for a retry. Claims them for ``lease_s`` seconds."""

        def job(db: sqlite_utils.Database) -> list[Payment]:
            rows = list(db.query(
                "SELECT p.* FROM payments p INDEXED BY idx_payments_queued WHERE p.status = 'queued'"
                " AND (p.not_before IS NULL OR p.not_before <= :now)"
                " AND NOT EXISTS (SELECT 1 FROM payments e WHERE e.status = 'queued'"
                "   AND e.account = p.account AND e.ordinal < p.ordinal)"
                " ORDER BY p.ordinal LIMIT :limit",
                {"now": now, "limit": limit},
            ))
            for row in rows:
                # A claim that lapsed unsettled (its worker died mid-post) may have reached
                # billing: count it as an attempt, so the gateway asks billing before posting.
                if row["claimed_by"] is not None:
                    row["attempts"] += 1
                db.execute("UPDATE payments SET claimed_by = ?, not_before = ?, attempts = ?"
                           " WHERE ordinal = ?", [worker, now + lease_s, row["attempts"], row["ordinal"]])
            return [codec.from_row(Payment, row) for row in rows]

        return await self._write(job)

    async def _rewrite_payment(self, payment_id: str, change: Callable[[Payment], Payment],
                               kind: str | None, actor: str | None, retry_at: float | None) -> Payment:
        return await self._write(lambda db: self._rewrite_row(db, payment_id, change, kind, actor, retry_at))

    def _rewrite_row(self, db: sqlite_utils.Database, payment_id: str, change: Callable[[Payment], Payment],
                     kind: str | None, actor: str | None, retry_at: float | None) -> Payment:
        """The payment as ``change`` makes it of the stored one, written with its event (if
        ``kind``); unclaimed, and not to be tried before ``retry_at``."""
        rows = list(db.query("SELECT * FROM payments WHERE id = ?", [payment_id]))
        if not rows:
            raise KeyError(payment_id)
        payment = change(codec.from_row(Payment, rows[0]))
        row = codec.to_row(payment)
        row.pop("ordinal")
        db.execute(f"UPDATE payments SET {', '.join(f'{c} = :{c}' for c in row)}, claimed_by = NULL,"
                   " not_before = :not_before WHERE id = :id", {**row, "not_before": retry_at})
        if kind is not None:
            _append_event(db, codec.payment_record(payment, kind, actor))
        return payment

    async def failed_payments(self, limit: int = 500) -> list[Payment]:
        def read(db: sqlite_utils.Database) -> list[Payment]:
            return [codec.from_row(Payment, row) for row in db.query(
                "SELECT * FROM payments WHERE status = 'failed' ORDER BY ordinal LIMIT ?", [limit])]

        return await self._read(read)

    async def outbox_stats(self, now: float) -> OutboxStats:
        def read(db: sqlite_utils.Database) -> OutboxStats:
            counts = dict(db.execute("SELECT status, count(*) FROM payments GROUP BY status").fetchall())
            (oldest,) = db.execute(
                "SELECT min(created_at) FROM payments WHERE status = 'queued'").fetchone()
            return OutboxStats(counts.get("queued", 0), counts.get("posted", 0),
                               counts.get("failed", 0), now - oldest if oldest is not None else None)

        return await self._read(read)

    # -- webhooks ---------------------------------------------------------------------------

    async def add_notice(self, notice: Notice) -> None:
        await self._write(lambda db: _append_notice(db, notice))

    async def notices_after(self, cursor: str, limit: int) -> list[Notice]:
        def read(db: sqlite_utils.Database) -> list[Notice]:
            rows = db.execute("SELECT ordinal, id, type, at, data FROM notices WHERE ordinal > ?"
                              " ORDER BY ordinal LIMIT ?", [int(cursor or 0), limit]).fetchall()
            return [Notice(i, kind, at, json.loads(data), str(ordinal)) for ordinal, i, kind, at, data in rows]

        return await self._read(read)

    async def notice_cursor(self) -> str:
        return await self._read(lambda db: str(db.execute(
            "SELECT coalesce(max(ordinal), 0) FROM notices").fetchone()[0]))

    async def webhooks(self) -> list[Webhook]:
        return await self._read(lambda db: [webhook_from_record(json.loads(record)) for (record,) in db.execute(
            "SELECT record FROM webhooks ORDER BY rowid").fetchall()])

    async def save_webhook(self, hook: Webhook) -> bool:
        def job(db: sqlite_utils.Database) -> bool:
            record = codec.dumps(webhook_record(hook))
            if hook.version == 1:
                return db.execute("INSERT OR IGNORE INTO webhooks (id, version, record) VALUES (?, 1, ?)",
                                  [hook.id, record]).rowcount == 1
            return db.execute("UPDATE webhooks SET version = ?, record = ? WHERE id = ? AND version = ?",
                              [hook.version, record, hook.id, hook.version - 1]).rowcount == 1

        return await self._write(job)

    async def remove_webhook(self, hook_id: str) -> bool:
        return await self._write(lambda db: db.execute(
            "DELETE FROM webhooks WHERE id = ?", [hook_id]).rowcount == 1)

    async def put_sms_request(self, request: SmsRequest) -> None:
        row = codec.to_row(request)
        await self._write(lambda db: db.execute(
            f"INSERT OR REPLACE INTO sms_requests ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            list(row.values())))

    async def sms_request(self, token_id: str) -> SmsRequest | None:
        rows = await self._read(lambda db: list(db.query("SELECT * FROM sms_requests WHERE token_id = ?", [token_id])))
        return codec.from_row(SmsRequest, rows[0]) if rows else None

    async def sms_requests(self) -> list[SmsRequest]:
        return await self._read(lambda db: [codec.from_row(SmsRequest, row) for row in db.query(
            "SELECT * FROM sms_requests ORDER BY created_at")])

    async def mark_sms_near(self, token_id: str, at: float, notice: Notice) -> bool:
        def job(db: sqlite_utils.Database) -> bool:
            marked = db.execute("UPDATE sms_requests SET near_sent_at = ? WHERE token_id = ?"
                                " AND near_sent_at IS NULL", [at, token_id]).rowcount == 1
            if marked:
                _append_notice(db, notice)
            return marked

        return await self._write(job)

    async def forget_sms_requests(self, token_ids: Iterable[str]) -> int:
        ids = list(token_ids)
        if not ids:
            return 0
        return await self._write(lambda db: db.execute(
            f"DELETE FROM sms_requests WHERE token_id IN ({', '.join('?' * len(ids))})", ids).rowcount)

    async def server_secret(self) -> bytes:
        """Kept in ``server.secret`` beside the database file, never inside it."""
        return await asyncio.to_thread(read_or_make_secret, self.path.with_name("server.secret"))

    async def ping(self) -> None:
        """A read through the store's own thread: answers while the file can be read."""
        await self._read(lambda db: db.execute("SELECT 1").fetchone())

    async def last_seq(self) -> int:
        def read(db: sqlite_utils.Database) -> int:
            (seq,) = db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
            return seq

        return await self._read(read)

    async def waiting_counts(self, day: str) -> dict[str, int]:
        def read(db: sqlite_utils.Database) -> dict[str, int]:
            rows = db.execute(
                "SELECT substation, count(*) FROM tokens WHERE day = ? AND status = 'waiting'"
                " GROUP BY substation",
                [day],
            ).fetchall()
            return {sub: n for sub, n in rows}

        return await self._read(read)

    # -- reads -----------------------------------------------------------------------------

    async def day_events(self, day: str, substation: str | None = None) -> list[dict]:
        """One day's events (as ``events`` gives them, payments included) and its refusals at
        the door (kind ``turned_away``, no seq), in time order: what daily reports are made of."""

        def read(db: sqlite_utils.Database) -> list[dict]:
            where, args = "day = ?", [day]
            if substation is not None:
                where, args = "day = ? AND substation = ?", [day, substation]
            events = [{**row, "data": json.loads(row["data"])}
                      for row in db.query(f"SELECT * FROM events WHERE {where} ORDER BY seq", args)]
            refused = [codec.refusal_record(row["substation"], day, row["at"], row["service"], row["reason"])
                       for row in db.query(f"SELECT * FROM turned_away WHERE {where} ORDER BY id", args)]
            return core.merge_day(events, refused)

        return await self._read(read)

    async def token_counts(self, day: str, substations: Iterable[str]) -> list[tuple[str, str | None, str, int]]:
        """How many of the day's tokens are in each status, per substation and counter."""

        def read(db: sqlite_utils.Database) -> list[tuple[str, str | None, str, int]]:
            rows = []
            for sid in names:
                rows += [tuple(row) for row in db.execute(
                    "SELECT substation, counter, status, count(*) FROM tokens"
                    " WHERE substation = ? AND day = ? GROUP BY counter, status", [sid, day])]
            return rows

        names = list(substations)
        return await self._read(read)

    # -- keys ------------------------------------------------------------------------------

    async def add_key(
        self, key_hash: str, role: str, counter: str | None, label: str, now: float
    ) -> KeyRecord:
        def job(db: sqlite_utils.Database) -> KeyRecord:
            record = KeyRecord(id="k" + secrets.token_hex(4), role=role, counter=counter, label=label,
                               created_at=now)
            db.execute(
                "INSERT INTO api_keys (id, hash, role, counter, label, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [record.id, key_hash, role, counter, label, now],
            )
            return record

        return await self._write(job)

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        """Every request asks this, so it is a point read; it reads the file each time, so a key
        revoked by ``counter-server keys revoke`` is refused at once."""

        def read(db: sqlite_utils.Database) -> KeyRecord | None:
            row = db.execute(
                "SELECT id, role, counter, label, created_at, revoked_at FROM api_keys"
                " WHERE hash = ? AND revoked_at IS NULL",
                [key_hash],
            ).fetchone()
            return KeyRecord(*row) if row else None

        return await self._point(read)

    async def revoke_key(self, key_id: str, now: float) -> bool:
        def job(db: sqlite_utils.Database) -> bool:
            cur = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                [now, key_id],
            )
            return cur.rowcount > 0

        return await self._write(job)

    async def list_keys(self) -> list[KeyRecord]:
        def read(db: sqlite_utils.Database) -> list[KeyRecord]:
            rows = db.query(
                "SELECT id, role, counter, label, created_at, revoked_at FROM api_keys"
                " ORDER BY created_at"
            )
            return [KeyRecord(**row) for row in rows]

        return await self._read(read)

    # -- the writer thread -----------------------------------------------------------------

    def _write(self, job: Callable[[sqlite_utils.Database], T]) -> asyncio.Future[T]:
        if self._writer is None or self._loop is None:
            raise RuntimeError("the store is not open")
        future: asyncio.Future[T] = self._loop.create_future()
        self._writes.put((job, future))
        return future

    def _write_loop(self, ready: asyncio.Future[None]) -> None:
        assert self._loop is not None
        try:
            db = connect(self.path)
            create_schema(db)
            blanked = forget_unkeyed_digests(db)
            if any(blanked):
                log.warning("Unkeyed account and phone digests of %d tokens (%d events) written by an older "
                            "version blanked: they could be turned back into phone numbers", *blanked)
            while self._forget_old_keys(db):
                pass
        except Exception as exc:  # noqa: BLE001 - handed to the opener
            self._loop.call_soon_threadsafe(ready.set_exception, exc)
            return
        self._loop.call_soon_threadsafe(ready.set_result, None)
        stopping = False
        prune_at = time.monotonic() + PRUNE_EVERY_S
        while not stopping:
            if time.monotonic() >= prune_at:   # a chunk between batches, until none is left
                prune_at = time.monotonic() + (0 if self._forget_old_keys(db) else PRUNE_EVERY_S)
            batch = [self._writes.get()]
            while len(batch) < self._batch_limit:
                try:
                    batch.append(self._writes.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
                batch = [item for item in batch if item is not _STOP]
            if batch:
                self._write_batch(db, batch)
        db.conn.close()

    @staticmethod
    def _forget_old_keys(db: sqlite_utils.Database, chunk: int = 5000) -> bool:
        """Drop up to ``chunk`` idempotency records past their TTL (about 150,000 are written
        on a month-end day at 40 counters; the table would otherwise grow for ever). Their
        events stay. Webhook notices older than NOTICE_KEEP_S go too. True when there may be
        more to drop."""
        try:
            gone = db.execute(
                "DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM idempotency"
                " WHERE created_at < CAST(strftime('%s', 'now') AS REAL) - ? LIMIT ?)",
                [IDEMPOTENCY_TTL_S, chunk]).rowcount
            gone = max(gone, db.execute(
                "DELETE FROM notices WHERE ordinal IN (SELECT ordinal FROM notices"
                " WHERE at < CAST(strftime('%s', 'now') AS REAL) - ? LIMIT ?)",
                [NOTICE_KEEP_S, chunk]).rowcount)
        except sqlite3.Error as exc:
            log.warning("forgetting old idempotency keys failed (tried again later): %s", exc)
            return False
        if gone:
            log.info("forgot %d idempotency keys older than %d days", gone, IDEMPOTENCY_TTL_S // 86400)
        return gone == chunk

    def _write_batch(self, db: sqlite_utils.Database, batch: list[tuple[Job, asyncio.Future]]) -> None:
        outcomes: list[tuple[asyncio.Future, Any, BaseException | None]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._settle([(future, None, exc) for _, future in batch])
            return
        for job, future in batch:
            db.execute("SAVEPOINT job")
            try:
                result = job(db)
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to its caller
                if db.conn.in_transaction:
                    db.execute("ROLLBACK TO job")
                    db.execute("RELEASE job")
                outcomes.append((future, None, exc))
            else:
                db.execute("RELEASE job")
                outcomes.append((future, result, None))
        try:
            db.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as exc:
            log.error("commit failed, %d job(s) refused: %s", len(batch), exc)
            if db.conn.in_transaction:
                db.execute("ROLLBACK")
            outcomes = [(future, None, exc) for future, _, _ in outcomes]
        self._settle(outcomes)

    def _settle(self, outcomes: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
        assert self._loop is not None

        def settle() -> None:   # in commit order: each queue's drainer then tells its listeners
            for future, result, exc in outcomes:
                if future.done():
                    continue
                if exc is not None:
                    future.set_exception(exc)
                else:
                    future.set_result(result)

        try:
            self._loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    # -- the reader thread -----------------------------------------------------------------

    async def _read(self, read: Callable[[sqlite_utils.Database], T]) -> T:
        if self._reader is None:
            raise RuntimeError("the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._run_read, read)

    def _run_read(self, read: Callable[[sqlite_utils.Database], T]) -> T:
        db = getattr(self._reader_local, "db", None)
        if db is None:
            db = connect(self.path)
            self._reader_local.db = db
        return read(db)

    async def _point(self, read: Callable[[sqlite_utils.Database], T]) -> T:
        """A point read on the event loop's own connection: a small indexed read takes
        microseconds in WAL mode, where readers never wait for the writer, far less than a hop
        to the reader thread and back. Busy past its short timeout, it waits on the reader."""
        if self._point_db is not None:
            try:
                return read(self._point_db)
            except sqlite3.OperationalError:
                pass
        return await self._read(read)

    def _close_reader(self) -> None:
        db = getattr(self._reader_local, "db", None)
        if db is not None:
            db.conn.close()
            self._reader_local.db = None


# -- rows ------------------------------------------------------------------------------------


def _load_rows(db: sqlite_utils.Database, key: core.QueueKey) -> core.QueueRows:
    """The rows of one (substation, day), as the store core rebuilds a queue from them."""
    substation, day = key
    settings = db.execute(
        "SELECT admission, daily_cap FROM substation_settings WHERE substation = ?", [substation]
    ).fetchone() or (None, None)
    plan = db.execute("SELECT plan FROM slot_plans WHERE substation = ? AND day = ?",
                      [substation, day]).fetchone()
    plan_data = json.loads(plan[0]) if plan and plan[0] else None
    return core.QueueRows(
        tokens=[codec.from_row(Token, r) for r in db.query(
            "SELECT * FROM tokens WHERE substation = ? AND day = ?", [substation, day])],
        last_seq=dict(db.execute(
            "SELECT service, last FROM sequences WHERE substation = ? AND day = ?", [substation, day]
        ).fetchall()),
        closed=[row[0] for row in db.execute(
            "SELECT counter FROM counter_state WHERE substation = ? AND day = ? AND open = 0",
            [substation, day]).fetchall()],
        admission=None if settings[0] is None else bool(settings[0]),
        daily_cap=settings[1],
        leases=[Lease(r["id"], r["counter"], r["service"], r["letter"], r["first_seq"], r["last_seq"])
                for r in db.query("SELECT * FROM leases WHERE substation = ? AND day = ?", [substation, day])],
        slot_plan=SlotPlan.from_dict(plan_data) if plan_data else None,
    )


def _write_row(db: sqlite_utils.Database, key: core.QueueKey, change: core.RowChange) -> None:
    """Write one row the store core says an event changed."""
    substation, day = key
    match change:
        case core.PutToken(token=token):
            db.execute(_UPSERT_TOKEN, codec.to_row(token))
        case core.PutSequence(service=service, last=last):
            db.execute(
                "INSERT INTO sequences (substation, day, service, last) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO UPDATE SET last = max(last, excluded.last)",
                [substation, day, service, last])
        case core.PutCounterOpen(counter=counter, open=is_open):
            db.execute(
                "INSERT INTO counter_state (substation, day, counter, open) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO UPDATE SET open = excluded.open",
                [substation, day, counter, int(is_open)])
        case core.PutLease(lease=lease):
            db.execute(
                "INSERT INTO leases (id, substation, day, counter, service, letter, first_seq, last_seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [lease.id, substation, day, lease.counter, lease.service, lease.letter,
                 lease.first_seq, lease.last_seq])
        case core.PutSlotPlan(plan=plan):
            db.execute(
                "INSERT INTO slot_plans (substation, day, plan) VALUES (?, ?, ?)"
                " ON CONFLICT DO UPDATE SET plan = excluded.plan",
                [substation, day, codec.dumps(plan.as_dict() if plan is not None else None)])
        case core.PutAdmission(admission=admission, daily_cap=daily_cap):
            db.execute(
                "INSERT INTO substation_settings (substation, admission, daily_cap) VALUES (?, ?, ?)"
                " ON CONFLICT DO UPDATE SET admission = excluded.admission, daily_cap = excluded.daily_cap",
                [substation, int(admission), daily_cap])


def _kept(db: sqlite_utils.Database, idem: IdempotencyKey) -> tuple[str, int | None, str | None] | None:
    """What the log kept for a key: its request's fingerprint, event and that event's data."""
    return db.execute(
        "SELECT i.fingerprint, i.event_seq, e.data FROM idempotency i LEFT JOIN events e ON e.seq = i.event_seq"
        " WHERE i.principal = ? AND i.key = ?", [idem.principal, idem.key]).fetchone()


def _remember(db: sqlite_utils.Database, idem: IdempotencyKey, event_seq: int | None) -> None:
    db.execute(
        "INSERT INTO idempotency (principal, key, fingerprint, event_seq, created_at)"
        " VALUES (?, ?, ?, ?, CAST(strftime('%s', 'now') AS REAL))",
        [idem.principal, idem.key, idem.fingerprint, event_seq],
    )


def _append_event(db: sqlite_utils.Database, record: Mapping[str, Any]) -> int:
    """Append an event record to the log, and the webhook notices it gives in the same
    transaction; its sequence number."""
    cur = db.execute(
        "INSERT INTO events (at, substation, day, token_id, kind, actor, counter, data)"
        " VALUES (:at, :substation, :day, :token_id, :kind, :actor, :counter, :data)",
        {**record, "data": codec.dumps(record["data"])})
    for notice in notices_of(record):
        _append_notice(db, notice)
    return cur.lastrowid


def _append_notice(db: sqlite_utils.Database, notice: Notice) -> None:
    db.execute("INSERT INTO notices (id, type, at, data) VALUES (?, ?, ?, ?)",
               [notice.id, notice.type, notice.at, codec.dumps(notice.data)])
