"""Online backups: taken from a live server under a load of token issues, checked, restored into
an empty data dir and served from there; and each refusal, before anything is written."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from counter_server.config import load_scenario
from testkit.api import bearer
from testkit.processes import ROOT, ServerProcess, run_cli
from testkit.scenarios import OPEN_ALL_DAY
from testkit.waiting import wait_until_async

SCENARIO = load_scenario(OPEN_ALL_DAY)
# Every substation's first service: a hall each, so the load spreads like a real day's.
HALLS = [(sub.id, sub.services[0]) for sub in SCENARIO.substations.values()]


async def _issue_until(session: aiohttp.ClientSession, url: str, key: str, substation: str,
                       service: str, acked: dict[str, float], stop: asyncio.Event) -> None:
    """Issue tokens until told to stop; each acknowledged one is kept with when it was."""
    while not stop.is_set():
        async with session.post(f"{url}/api/v1/substations/{substation}/tokens", headers=bearer(key),
                                json={"service": service}) as resp:
            body = await resp.json()
            assert resp.status == 201, body
            acked[body["token"]["id"]] = time.monotonic()


def _door_open_all_day(url: str, key: str) -> None:
    """Admission off in every hall, so a long queue or the closing hour turns nobody away: the
    load here is of writes, whatever the time of day the suite runs at."""
    import urllib.request

    for sub, _ in HALLS:
        request = urllib.request.Request(
            f"{url}/api/v1/ops/substations/{sub}/admission", method="PUT",
            data=json.dumps({"admission": False}).encode(),
            headers={**bearer(key), "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200


def _token_ids(database: Path) -> set[str]:
    conn = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return {row[0] for row in conn.execute("SELECT id FROM tokens")}
    finally:
        conn.close()


def _backup_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "counter_server", "backup", *args]


async def test_backup_under_load_holds_every_acknowledged_token_and_restores(tmp_path: Path):
    server = ServerProcess(data_dir=tmp_path / "data")
    restored = ServerProcess(data_dir=tmp_path / "restored")
    out = tmp_path / "backup"
    acked: dict[str, float] = {}
    stop = asyncio.Event()
    try:
        server.start()
        key = server.admin_key
        _door_open_all_day(server.url, key)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            workers = [asyncio.create_task(_issue_until(session, server.url, key, sub, service, acked, stop))
                       for sub, service in HALLS * 2]
            await wait_until_async(lambda: len(acked) >= 1500, what="1,500 tokens acknowledged",
                                   timeout=60, interval=0.01)
            before = set(acked)            # acknowledged before the backup process even starts
            # Small steps and a rest between them make the copy last over a second, so tokens
            # are issued while it runs and must not hold it up.
            backup = await asyncio.create_subprocess_exec(
                *_backup_cli("--data-dir", str(server.data_dir), str(out), "--pages-per-step", "16",
                             "--step-pause", "0.02", "--progress-every", "0.2"),
                cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            first = await asyncio.wait_for(backup.stderr.readline(), 30)
            assert first.startswith(b"backup: copying"), first
            copying_from = time.monotonic()
            stdout, stderr = await asyncio.wait_for(backup.communicate(), 60)
            copied_by = time.monotonic()
            assert backup.returncode == 0, stderr.decode()
            during = [t for t, at in acked.items() if copying_from <= at <= copied_by]
            stop.set()
            await asyncio.gather(*workers)
        progress = stderr.decode().splitlines()
        assert any("%" in line and "pages" in line for line in progress), progress   # long copy: shown
        assert copied_by - copying_from > 0.5
        assert len(during) > 50, f"only {len(during)} tokens issued while the backup copied"
        print(f"\nbackup of {len(acked):,} tokens: {stdout.decode().strip()}; "
              f"{len(during):,} tokens acknowledged during the copy")
    finally:
        stop.set()
        server.stop()

    in_backup = _token_ids(out / "counter.db")
    assert before <= in_backup, f"{len(before - in_backup)} acknowledged tokens missing from the backup"
    manifest = json.loads((out / "backup.json").read_text())
    assert manifest["counts"]["tokens"] == len(in_backup)
    assert (out / "server.secret").read_bytes() == (server.data_dir / "server.secret").read_bytes()
    assert oct((out / "counter.db").stat().st_mode & 0o777) == oct(0o600)

    result = run_cli("restore", str(out), "--data-dir", str(restored.data_dir))
    assert f"{len(in_backup):,} tokens" in result.stdout
    assert sorted(p.name for p in restored.data_dir.iterdir()) == ["counter.db", "server.lock", "server.secret"]
    try:
        restored.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for token_id in sorted(before):   # the old admin key works: keys are in the database
                async with session.get(f"{restored.url}/api/v1/tokens/{token_id}", headers=bearer(key)) as resp:
                    assert resp.status == 200, f"token {token_id} not served after the restore"
                    assert (await resp.json())["token"]["id"] == token_id
    finally:
        restored.stop()


@pytest.fixture(scope="module")
def a_days_backup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A backup of a server that issued a token in each hall (taken after it stopped); made
    once, copied for each test, which may damage its copy."""
    import urllib.request

    base = tmp_path_factory.mktemp("day")
    server = ServerProcess(data_dir=base / "data")
    try:
        server.start()
        _door_open_all_day(server.url, server.admin_key)
        for sub, service in HALLS:
            request = urllib.request.Request(
                f"{server.url}/api/v1/substations/{sub}/tokens", method="POST",
                data=json.dumps({"service": service}).encode(),
                headers={**bearer(server.admin_key), "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as resp:
                assert resp.status == 201
    finally:
        server.stop()
    run_cli("backup", "--data-dir", str(server.data_dir), str(base / "backup"))
    return base / "backup"


@pytest.fixture
def backup_of_a_day(a_days_backup: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "backup"
    shutil.copytree(a_days_backup, copy)
    return copy


def _refused(*args: str) -> str:
    result = run_cli(*args, check=False)
    assert result.returncode == 2, (result.stdout, result.stderr)
    return result.stderr


def test_restore_refuses_a_data_dir_that_is_not_empty(backup_of_a_day: Path, tmp_path: Path):
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    message = _refused("restore", str(backup_of_a_day), "--data-dir", str(target))
    assert f"data dir {target} is not empty (it holds notes.txt)" in message
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_restore_refuses_a_data_dir_a_server_holds(backup_of_a_day: Path, tmp_path: Path):
    running = ServerProcess(data_dir=tmp_path / "served")
    try:
        running.start()
        before = sorted(p.name for p in running.data_dir.iterdir())
        message = _refused("restore", str(backup_of_a_day), "--data-dir", str(running.data_dir))
        assert f"is being served by another counter-server (pid {running.proc.pid}" in message
        assert sorted(p.name for p in running.data_dir.iterdir()) == before
    finally:
        running.stop()


def test_restore_refuses_a_damaged_backup_before_writing(backup_of_a_day: Path, tmp_path: Path):
    database = backup_of_a_day / "counter.db"
    data = bytearray(database.read_bytes())
    data[len(data) // 2] ^= 0xFF
    database.write_bytes(bytes(data))
    target = tmp_path / "new"
    message = _refused("restore", str(backup_of_a_day), "--data-dir", str(target))
    assert "counter.db is not the file the backup wrote" in message
    assert not target.exists()


def _rewrite(backup: Path, change) -> None:
    """Change the backup's database and make backup.json agree, as if it had been written so."""
    database = backup / "counter.db"
    conn = sqlite3.connect(database)
    change(conn)
    conn.commit()
    conn.close()
    manifest = json.loads((backup / "backup.json").read_text())
    import hashlib

    manifest["database_sha256"] = hashlib.sha256(database.read_bytes()).hexdigest()
    (backup / "backup.json").write_text(json.dumps(manifest))


def test_restore_refuses_a_backup_failing_integrity_check(backup_of_a_day: Path, tmp_path: Path):
    def corrupt(conn: sqlite3.Connection) -> None:   # an index that no longer matches its table
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute("UPDATE sqlite_master SET sql = replace(sql, '(substation, day)', '(day)')"
                     " WHERE name = 'idx_tokens_substation_day'")
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'idx_tokens_substation_day'").fetchone()
        assert sql.endswith("(day)"), sql

    _rewrite(backup_of_a_day, corrupt)
    target = tmp_path / "new"
    message = _refused("restore", str(backup_of_a_day), "--data-dir", str(target))
    assert "fails PRAGMA integrity_check" in message
    assert not target.exists()


def test_restore_refuses_a_schema_this_version_does_not_know(backup_of_a_day: Path, tmp_path: Path):
    _rewrite(backup_of_a_day, lambda conn: conn.execute("ALTER TABLE payments ADD COLUMN refunded_at REAL"))
    message = _refused("restore", str(backup_of_a_day), "--data-dir", str(tmp_path / "new"))
    assert "table 'payments' has column(s) refunded_at unknown to this version" in message
    assert not (tmp_path / "new").exists()


def test_restore_refuses_counts_that_disagree_with_the_manifest(backup_of_a_day: Path, tmp_path: Path):
    _rewrite(backup_of_a_day, lambda conn: conn.execute(
        "DELETE FROM tokens WHERE rowid = (SELECT min(rowid) FROM tokens)"))
    message = _refused("restore", str(backup_of_a_day), "--data-dir", str(tmp_path / "new"))
    assert "backup.json says" in message and f"'tokens': {len(HALLS)}" in message


def test_backup_refuses_redis_with_the_docs_pointer(tmp_path: Path):
    for command in (["backup", "--data-dir", str(tmp_path), str(tmp_path / "out")],
                    ["restore", str(tmp_path / "out"), "--data-dir", str(tmp_path / "new")]):
        message = _refused(*command, "--store", "redis")
        assert "AOF and RDB" in message and "docs/backups.md" in message
    assert not (tmp_path / "out").exists() and not (tmp_path / "new").exists()
    assert (ROOT / "docs" / "backups.md").exists()


def test_backup_refuses_no_data_and_an_occupied_out(a_days_backup: Path, backup_of_a_day: Path, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert f"no data in {empty}" in _refused("backup", "--data-dir", str(empty), str(tmp_path / "o"))
    earlier = os.listdir(backup_of_a_day)
    message = _refused("backup", "--data-dir", str(a_days_backup.parent / "data"), str(backup_of_a_day))
    assert f"backup {backup_of_a_day} is not empty" in message
    assert os.listdir(backup_of_a_day) == earlier


def test_restore_into_an_empty_data_dir_left_with_a_lock_nobody_holds(backup_of_a_day: Path, tmp_path: Path):
    target = tmp_path / "emptied"
    target.mkdir(mode=0o700)
    (target / "server.lock").write_text("pid 1, http://127.0.0.1:8080\n")   # from a server long gone
    result = run_cli("restore", str(backup_of_a_day), "--data-dir", str(target))
    assert f"restored {len(HALLS)} tokens" in result.stdout
    assert (target / "counter.db").read_bytes() == (backup_of_a_day / "counter.db").read_bytes()
    assert (target / "server.secret").read_bytes() == (backup_of_a_day / "server.secret").read_bytes()
    assert {oct(p.stat().st_mode & 0o777) for p in target.iterdir() if p.name != "server.lock"} == {oct(0o600)}
