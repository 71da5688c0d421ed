"""The Store contract, run against every engine (SQLite now; Redis joins the parameter list)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from counter_server.queueing import Action, Priority, QueuePolicy, Status, SubstationQueue, UnknownToken
from counter_server.store import IdempotencyConflict, IdempotencyKey, SQLiteStore, Store

DAY = "2026-11-25"
POLICY = QueuePolicy()


def sqlite_engine(tmp_path: Path) -> Callable[[], Store]:
    return lambda: SQLiteStore(tmp_path / "store.db", POLICY)


ENGINES = {"sqlite": sqlite_engine}


@pytest.fixture(params=sorted(ENGINES))
def make_store(request, tmp_path: Path) -> Callable[[], Store]:
    """A factory: each call opens another instance over the same data, as a restart would."""
    return ENGINES[request.param](tmp_path)


@pytest.fixture
async def store(make_store) -> AsyncIterator[Store]:
    s = make_store()
    await s.open()
    yield s
    await s.close()


def issuing(token_id: str, at: float = 0.0, service: str = "bill_payment", letter: str = "B"):
    return lambda q: q.issue(token_id, service, letter, Priority.NORMAL, at, "tester")


async def test_changes_survive_a_restart_and_numbering_continues(make_store):
    first = make_store()
    await first.open()
    for i in range(3):
        await first.mutate_queue("S01", DAY, issuing(f"t{i}", i))
    await first.mutate_queue("S01", DAY, lambda q: q.call_next("S01-C1", ["bill_payment"], 5))
    await first.close()

    second = make_store()
    await second.open()
    try:
        snapshot = await second.queue_snapshot("S01", DAY)
        at_counters, waiting = snapshot.at_counters, snapshot.waiting
        assert [t.id for t in at_counters] == ["t0"] and at_counters[0].status is Status.CALLED
        assert [t.id for t in waiting] == ["t1", "t2"]
        applied = await second.mutate_queue("S01", DAY, issuing("t3", 6))
        assert applied.token.number == "B-004"
        assert (await second.get_token("t0")).counter == "S01-C1"
    finally:
        await second.close()


async def test_every_change_is_an_appended_event_with_who_and_when(store: Store):
    await store.mutate_queue("S01", DAY, issuing("t1", 10))
    await store.mutate_token("t1", lambda q, t: q.act(t.id, Action.CANCEL, 11, "cashier@S01-C1:k1"))
    events = await store.events()
    assert [(e["kind"], e["token_id"], e["at"]) for e in events] == [
        ("issued", "t1", 10), ("cancelled", "t1", 11)]
    assert events[1]["actor"] == "cashier@S01-C1:k1" and events[1]["data"]["status"] == "cancelled"
    assert await store.events(after=events[0]["seq"]) == events[1:]


async def test_a_failing_change_leaves_nothing_behind(store: Store):
    def issue_then_fail(q: SubstationQueue):
        q.issue("t1", "bill_payment", "B", Priority.NORMAL, 1)
        raise RuntimeError("boom after the domain changed")

    with pytest.raises(RuntimeError):
        await store.mutate_queue("S01", DAY, issue_then_fail)
    assert await store.get_token("t1") is None
    snapshot = await store.queue_snapshot("S01", DAY)
    assert (snapshot.at_counters, snapshot.waiting) == ([], [])
    applied = await store.mutate_queue("S01", DAY, issuing("t2"))
    assert applied.token.number == "B-001"           # the failed change used no number


async def test_unknown_token(store: Store):
    with pytest.raises(UnknownToken):
        await store.mutate_token("nope", lambda q, t: t)
    assert await store.get_token("nope") is None


async def test_idempotency_replays_and_refuses_a_different_request(store: Store):
    key = IdempotencyKey("k1", "slip-7", "fingerprint-a")
    first = await store.mutate_queue("S01", DAY, issuing("t1"), key)
    again = await store.mutate_queue("S01", DAY, issuing("t2"), key)
    assert not first.replayed and again.replayed and again.token == first.token
    assert await store.get_token("t2") is None
    with pytest.raises(IdempotencyConflict):
        await store.mutate_queue("S01", DAY, issuing("t3"), IdempotencyKey("k1", "slip-7", "other"))
    other_principal = await store.mutate_queue("S01", DAY, issuing("t4"), IdempotencyKey("k2", "slip-7", "x"))
    assert other_principal.token.id == "t4"

    empty = IdempotencyKey("k1", "call-1", "fp")
    none = await store.mutate_queue("S02", DAY, lambda q: q.call_next("S02-C1", ["bill_payment"], 1), empty)
    assert none.token is None
    await store.mutate_queue("S02", DAY, issuing("t5"))
    replay = await store.mutate_queue("S02", DAY, lambda q: q.call_next("S02-C1", ["bill_payment"], 2), empty)
    assert replay.replayed and replay.token is None        # the first answer was "nobody waits"


async def test_concurrent_changes_are_serialised(store: Store):
    await asyncio.gather(*[store.mutate_queue("S01", DAY, issuing(f"t{i}", i)) for i in range(50)])
    await asyncio.gather(*[store.mutate_queue("S01", DAY, issuing(f"u{i}", 100 + i)) for i in range(50)])
    calls = await asyncio.gather(*[
        store.mutate_queue("S01", DAY, lambda q, c=c: q.call_next(c, ["bill_payment"], 200))
        for c in ("S01-C1", "S01-C2", "S01-C3", "S01-C4")])
    assert len({a.token.id for a in calls}) == 4
    waiting = (await store.queue_snapshot("S01", DAY)).waiting
    assert len(waiting) == 96
    assert sorted(int(t.number[2:]) for t in waiting + [a.token for a in calls]) == list(range(1, 101))


async def test_keys_are_found_by_hash_and_revoked_at_once(store: Store):
    record = await store.add_key("hash-1", "cashier", "S01-C1", "front desk", 1.0)
    assert (await store.find_key("hash-1")).id == record.id
    assert await store.find_key("hash-2") is None
    assert await store.revoke_key(record.id, 2.0)
    assert await store.find_key("hash-1") is None
    assert not await store.revoke_key(record.id, 3.0)
    assert [k.revoked_at for k in await store.list_keys()] == [2.0]


async def test_sqlite_commits_concurrent_writes_together(tmp_path: Path):
    """Group commit: a burst of acknowledged writes shares fsyncs instead of one each."""
    store = SQLiteStore(tmp_path / "group.db", POLICY)
    await store.open()
    try:
        before = store.commits
        await asyncio.gather(*[store.mutate_queue("S01", DAY, issuing(f"t{i}", i)) for i in range(200)])
        assert store.commits - before < 200
        assert len((await store.queue_snapshot("S01", DAY)).waiting) == 200
    finally:
        await store.close()
