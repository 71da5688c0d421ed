"""The data dir ``serve`` serves: checked before anything is written, locked while served, and
readable by the server's user only, with the server's secret kept in it beside the database.

The SQLite engine keeps each hall's queue in the server's memory and numbers tokens from it, so
two servers on one data dir would each hand out B-021, B-022... to different people. ``serve``
therefore takes an exclusive ``flock`` on ``server.lock`` in the data dir and holds it for the
process's life. The kernel drops the lock when the process ends, however it ends (``kill -9``,
a power cut), so it never goes stale the way a PID file does; the pid and address written into
the file are only there to name the other server in the refusal.

``keys`` and ``report`` do not take the lock: they are short, and SQLite's own locking keeps
them safe beside a running server. With the Redis engine no lock is taken either: replicas
share Redis, whose numbering is atomic, and the data dir holds nothing but ``admin.key``.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "server.lock"


class DataDirError(Exception):
    """A data dir that cannot be used; the message says why in one line and names it."""


class DataDirBusy(DataDirError):
    """Another live process serves this data dir."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        self.data_dir = data_dir
        self.holder = holder
        other = f"another counter-server ({holder})" if holder else "another counter-server"
        super().__init__(f"data dir {data_dir} is being served by {other}; stop that one first, "
                         "or give another --data-dir")


def check_data_dir(data_dir: Path) -> bool:
    """Refuse a data dir that cannot be created or used, before anything is written.

    Returns whether it exists already. A missing parent is refused rather than created: it is
    most often a typo, and creating it would start an empty service in the wrong place."""
    where = data_dir.absolute()
    if where.exists():
        if not where.is_dir():
            raise DataDirError(f"data dir {where} is a file, not a directory")
        if not os.access(where, os.W_OK | os.X_OK):
            raise DataDirError(f"data dir {where} is not writable by this user")
        return True
    parent = where.parent
    if not parent.is_dir():
        raise DataDirError(f"data dir {where}: its parent {parent} does not exist (a typo? "
                           "create the parent first, or give an existing path)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataDirError(f"data dir {where} cannot be created: {parent} is not writable by this user")
    return False


@dataclass
class DataDirLock:
    """The lock on a data dir, held by this process until ``release`` or its end."""

    path: Path
    fd: int

    def claim(self, address: str = "") -> None:
        """Write who holds the lock (pid, address), for the refusal another server will print."""
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()}{f', {address}' if address else ''}\n".encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)   # closing the descriptor drops the flock
            self.fd = -1


def lock_data_dir(data_dir: Path) -> DataDirLock:
    """Take the data dir's lock without waiting, or raise ``DataDirBusy`` naming its holder.

    The data dir must exist. Nothing is written but an empty lock file the first time; what
    the holder says about itself is written by ``claim`` once serving is sure to go ahead."""
    path = data_dir.absolute() / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)   # like the data dir's other files
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise DataDirBusy(data_dir.absolute(), holder) from None
    except BaseException:
        os.close(fd)
        raise
    return DataDirLock(path, fd)


def _read_holder(fd: int) -> str:
    """What the lock's holder wrote about itself ("pid 1234, http://127.0.0.1:8080"), or ''."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace")
    except OSError:
        return ""
    return text.splitlines()[0].strip() if text.strip() else ""


# -- what the data dir holds is the server's user's alone ---------------------------------------

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private(path: Path) -> list[str]:
    """The data dir readable by the server's user only (0700) and the database, its WAL and
    shared-memory files, the server secret and the admin key 0600; the database file made
    0600 before SQLite opens it (SQLite gives its -wal and -shm files the database's mode).
    Tightens a data dir made by an older version; returns what it tightened.

    A directory this user does not own, or a shared sticky one such as /tmp, is left as it is."""
    tightened = []
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    info = folder.stat()
    if (info.st_uid == os.getuid() and not info.st_mode & stat.S_ISVTX
            and stat.S_IMODE(info.st_mode) != PRIVATE_DIR_MODE):
        os.chmod(folder, PRIVATE_DIR_MODE)
        tightened.append(str(folder))
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE))
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), path.with_name("server.secret"),
                 path.with_name("admin.key")):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & ~PRIVATE_FILE_MODE:
            os.chmod(file, PRIVATE_FILE_MODE)
            tightened.append(file.name)
    return tightened


def read_or_make_secret(path: Path) -> bytes:
    """The secret in ``path``, made there (mode 0600) when there is none yet."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        text = path.read_text("ascii").strip()
        try:
            secret = bytes.fromhex(text)
        except ValueError:
            secret = b""
        if len(secret) < 32:
            raise ValueError(f"{path} does not hold a server secret (64 hex digits); "
                             "move it away to make a new one (phones' links will stop working)") from None
        return secret
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret.hex() + "\n")
    return secret
