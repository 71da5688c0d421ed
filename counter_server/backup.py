"""Online backups of the SQLite store, and restoring one into an empty data dir.

``take_backup`` copies the live database with SQLite's online backup API while the server keeps
serving. It first opens a read transaction on its own connection, so every step of the copy
reads the same snapshot: in WAL mode a reader never blocks the server's writer, and the copy is
exactly the database as it stood when the backup began (without that transaction SQLite would
restart the copy each time the server commits, and under steady load it might never end).

A backup is a directory: the database, the server's secret (kept beside the database, never
inside it; phones' links and the holder digests derive from it) and ``backup.json``, written
last, which says what the backup holds. ``check_backup`` believes none of it until the file's
digest, ``PRAGMA integrity_check``, its schema and its counts agree; ``restore_backup`` checks
the data dir (empty, not served) and the backup before it writes anything.

Redis is not copied here: Redis keeps its own AOF and RDB files (docs/backups.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .datadir import LOCK_NAME, DataDirError, check_data_dir, lock_data_dir
from .store.sqlite import create_schema, forget_unkeyed_digests

MANIFEST_NAME = "backup.json"
SECRET_NAME = "server.secret"   # the SQLite store keeps its secret under this name beside the file
BACKUP_FORMAT = 1
DOCS = "docs/backups.md"
PAGES_PER_STEP = 4096           # 16 MB a step at SQLite's 4 KB pages
COUNTED_TABLES = ("tokens", "payments", "events")
# Without these a file is not a counter-server store at all, whatever else it holds.
CORE_TABLES = ("tokens", "events", "payments", "sequences", "api_keys")

Progress = Callable[[int, int], None]   # (pages copied, pages in all)


class BackupError(Exception):
    """A backup or restore that cannot go ahead; the message names what and why in one line."""


@dataclass(frozen=True)
class BackupSummary:
    """What a backup holds, as ``backup.json`` records it and a restore checks it."""

    format: int
    taken_at: float
    source: str
    database_bytes: int
    database_sha256: str
    pages: int
    counts: dict[str, int]
    schema: dict[str, list[str]]
    has_secret: bool
    seconds: float = 0.0

    def describe(self) -> str:
        counts = ", ".join(f"{n:,} {table}" for table, n in self.counts.items())
        return f"{counts}; {self.database_bytes / 1e6:.1f} MB"


# -- what this version's store looks like ------------------------------------------------------

def known_schema() -> dict[str, set[str]]:
    """Tables and their columns as this version's SQLite store makes them (in memory)."""
    import sqlite_utils

    db = sqlite_utils.Database(sqlite3.connect(":memory:"))
    try:
        create_schema(db)
        forget_unkeyed_digests(db)   # makes store_meta, where the store notes what it did once
        return _schema_of(db.conn)
    finally:
        db.conn.close()


def _schema_of(conn: sqlite3.Connection) -> dict[str, set[str]]:
    names = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {name: {row[1] for row in conn.execute(f'PRAGMA table_info("{name}")')} for name in names}


def schema_problem(found: dict[str, set[str]]) -> str | None:
    """Why this version cannot serve a file of this schema, or None when it can.

    An older version's file misses tables or columns the store adds when it opens; a file with
    tables or columns this version does not know was made by a newer one, which may keep
    something there that this version would silently lose."""
    missing = [t for t in CORE_TABLES if t not in found]
    if missing:
        return f"it is not a counter-server store (no {', '.join(missing)} table)"
    known = known_schema()
    for table, columns in sorted(found.items()):
        if table not in known:
            return f"its table {table!r} is unknown to this version (made by a newer counter-server?)"
        extra = sorted(columns - known[table])
        if extra:
            return (f"its table {table!r} has column(s) {', '.join(extra)} unknown to this version "
                    "(made by a newer counter-server?)")
    return None


def _counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in COUNTED_TABLES}


def _integrity(conn: sqlite3.Connection) -> str | None:
    """None when ``PRAGMA integrity_check`` says ok, else its first complaints."""
    rows = [row[0] for row in conn.execute("PRAGMA integrity_check(5)")]
    return None if rows == ["ok"] else "; ".join(rows)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_private(source: Path, target: Path) -> None:
    """Copy a file into a new one readable by this user only from its first byte, fsynced."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle, source.open("rb") as reading:
        shutil.copyfileobj(reading, handle, 1 << 20)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- taking one --------------------------------------------------------------------------------

def _empty_or_new(out: Path) -> None:
    """Refuse an OUT that holds anything (an earlier backup must never be half overwritten)."""
    where = out.absolute()
    if where.exists():
        if not where.is_dir():
            raise BackupError(f"backup {where} is a file; give a new directory to write the backup into")
        if any(where.iterdir()):
            raise BackupError(f"backup {where} is not empty; give a new directory (an earlier "
                              "backup is never overwritten)")
    elif not where.parent.is_dir():
        raise BackupError(f"backup {where}: its parent {where.parent} does not exist")


def take_backup(database: Path, out: Path, *, pages_per_step: int = PAGES_PER_STEP,
                step_pause_s: float = 0.0, progress: Progress | None = None,
                clock: Callable[[], float] = time.time,
                monotonic: Callable[[], float] = time.monotonic) -> BackupSummary:
    """Copy ``database`` (live or not) into the new directory ``out``, with its secret.

    ``step_pause_s`` rests between steps, leaving the disk to the server during a long copy;
    the snapshot stays the one the backup began with however long it takes."""
    if not database.exists():
        raise BackupError(f"no data in {database.parent.absolute()} (no {database.name}; give --data-dir)")
    _empty_or_new(out)
    out.mkdir(mode=0o700, exist_ok=True)
    partial = out / (database.name + ".partial")
    began = monotonic()
    source = sqlite3.connect(f"{database.absolute().as_uri()}?mode=ro", uri=True, isolation_level=None,
                             timeout=10.0)
    try:
        source.execute("BEGIN")      # one snapshot for every step (see the module's docstring)
        total = source.execute("PRAGMA page_count").fetchone()[0]
        if progress is not None:
            progress(0, total)
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        target = sqlite3.connect(partial)
        try:
            def step(_status: int, remaining: int, pages: int) -> None:
                if progress is not None:
                    progress(pages - remaining, pages)
                if step_pause_s > 0 and remaining:
                    time.sleep(step_pause_s)

            source.backup(target, pages=max(1, pages_per_step), progress=step)
            source.execute("COMMIT")
            # A rollback-journal file stands alone (no -wal or -shm to keep with it, none made
            # when it is read); the server turns WAL back on when it opens the restored file.
            target.execute("PRAGMA journal_mode = DELETE")
            problem = _integrity(target)
            if problem is not None:
                raise BackupError(f"the copy of {database} fails its integrity check: {problem}")
            counts, schema = _counts(target), _schema_of(target)
        finally:
            target.close()
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"backup of {database} failed: {exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    _fsync(partial)
    final = out / database.name
    os.replace(partial, final)
    secret = database.with_name(SECRET_NAME)
    if secret.exists():
        _copy_private(secret, out / SECRET_NAME)
    summary = BackupSummary(
        format=BACKUP_FORMAT, taken_at=clock(), source=str(database.absolute()),
        database_bytes=final.stat().st_size, database_sha256=_sha256(final), pages=total,
        counts=counts, schema={t: sorted(c) for t, c in sorted(schema.items())},
        has_secret=secret.exists(), seconds=round(monotonic() - began, 3))
    manifest = out / MANIFEST_NAME
    fd = os.open(manifest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(asdict(summary), indent=1) + "\n")
    _fsync(manifest)
    _fsync(out)
    return summary


# -- checking and restoring one ---------------------------------------------------------------

def check_backup(backup: Path, database_name: str) -> BackupSummary:
    """The backup's summary once every check agrees, or ``BackupError`` naming the first that
    does not: the manifest, the file's digest, ``PRAGMA integrity_check``, the schema, the counts."""
    where = backup.absolute()
    if not where.is_dir():
        raise BackupError(f"backup {where} is not a directory written by counter-server backup")
    manifest = where / MANIFEST_NAME
    try:
        raw = json.loads(manifest.read_text())
        summary = BackupSummary(**raw)
    except FileNotFoundError:
        raise BackupError(f"backup {where} has no {MANIFEST_NAME}: it is unfinished, or not a "
                          "backup") from None
    except (ValueError, TypeError) as exc:
        raise BackupError(f"backup {where}: {MANIFEST_NAME} cannot be read ({exc})") from None
    if summary.format != BACKUP_FORMAT:
        raise BackupError(f"backup {where} is in format {summary.format}; this version reads "
                          f"format {BACKUP_FORMAT}")
    database = where / database_name
    if not database.is_file():
        raise BackupError(f"backup {where} has no {database_name}")
    if summary.has_secret and not (where / SECRET_NAME).is_file():
        raise BackupError(f"backup {where} has lost its {SECRET_NAME} (phones' links need it)")
    if _sha256(database) != summary.database_sha256:
        raise BackupError(f"backup {where}: {database_name} is not the file the backup wrote "
                          "(its SHA-256 differs from backup.json's): damaged or changed since")
    conn = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
    try:
        problem = _integrity(conn)
        if problem is not None:
            raise BackupError(f"backup {where}: {database_name} fails PRAGMA integrity_check: {problem}")
        problem = schema_problem(_schema_of(conn))
        if problem is not None:
            raise BackupError(f"backup {where}: {database_name} cannot be served: {problem}")
        counts = _counts(conn)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"backup {where}: {database_name} cannot be read as SQLite ({exc})") from None
    finally:
        conn.close()
    if counts != summary.counts:
        raise BackupError(f"backup {where}: {database_name} holds {counts}, backup.json says "
                          f"{summary.counts}")
    return summary


def _refuse_unusable(data_dir: Path, locked_by_us: bool = False) -> None:
    """Refuse a data dir a server holds, or one that holds anything, writing nothing."""
    where = data_dir.absolute()
    try:
        if not check_data_dir(where):
            return
        if not locked_by_us and (where / LOCK_NAME).exists():
            lock_data_dir(where).release()   # DataDirBusy names the server holding it
    except DataDirError as exc:
        raise BackupError(str(exc)) from None
    inside = sorted(p.name for p in where.iterdir() if p.name != LOCK_NAME)
    if inside:
        shown = ", ".join(inside[:4]) + (", ..." if len(inside) > 4 else "")
        raise BackupError(f"data dir {where} is not empty (it holds {shown}); restore only into "
                          "an empty or new data dir, so nothing is overwritten")


def restore_backup(backup: Path, data_dir: Path, database_name: str) -> BackupSummary:
    """Put a checked backup in place in an empty (or new) data dir. Nothing is written until
    the data dir and the backup pass every check; the data dir is then locked, so no server
    starts on it half-restored."""
    _refuse_unusable(data_dir)
    summary = check_backup(backup, database_name)
    where = data_dir.absolute()
    where.mkdir(mode=0o700, exist_ok=True)
    try:
        held = lock_data_dir(where)
    except DataDirError as exc:
        raise BackupError(str(exc)) from None
    names = [database_name] + ([SECRET_NAME] if summary.has_secret else [])
    try:
        _refuse_unusable(where, locked_by_us=True)   # again under the lock: nothing came in meanwhile
        for name in names:
            _copy_private(backup / name, where / (name + ".restoring"))
        if _sha256(where / (database_name + ".restoring")) != summary.database_sha256:
            raise BackupError(f"the copy into {where} differs from the backup (disk full or failing?)")
        for name in names:
            os.replace(where / (name + ".restoring"), where / name)
        _fsync(where)
        return summary
    finally:
        for name in names:
            (where / (name + ".restoring")).unlink(missing_ok=True)
        held.release()
