"""The Store contract, run against every engine: SQLite, and Redis on a real Redis server.

The Redis runs use their own database number and a key prefix unique to the test, removed after
it. Without a Redis server answering they fail (``.ci/run`` starts one when none answers).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from redis.asyncio import Redis

from counter_server.notices import Notice, SmsRequest, Webhook
from counter_server.outbox import Payment, PaymentMode, PaymentStatus
from counter_server.store.base import EARLIER_PAYMENTS_READ
from counter_server.queueing import (
    Action,
    AlreadyHolding,
    Holder,
    Origin,
    Priority,
    QueuePolicy,
    SlotPlan,
    Status,
    SubstationQueue,
    Token,
    UnknownToken,
)
from counter_server.store import (
    IDEMPOTENCY_TTL_S,
    Committed,
    IdempotencyConflict,
    IdempotencyKey,
    RedisStore,
    SQLiteStore,
    Store,
    StoreUnavailable,
)
from testkit.waiting import wait_until_async

DAY = "2026-11-25"
POLICY = QueuePolicy()
TEST_REDIS_URL = os.environ.get("COUNTER_SERVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def sqlite_engine(tmp_path: Path) -> Callable[[], Store]:
    return lambda policy=POLICY: SQLiteStore(tmp_path / "store.db", policy)


class RedisEngine:
    """Instances over one key prefix of their own: a restart, or another replica."""

    def __init__(self, url: str = TEST_REDIS_URL) -> None:
        self.url = url
        self.prefix = f"test-{uuid.uuid4().hex[:12]}:"

    def __call__(self, policy: QueuePolicy = POLICY) -> RedisStore:
        return RedisStore(self.url, policy, prefix=self.prefix)

    async def cleanup(self) -> None:
        client = Redis.from_url(self.url)
        try:
            keys = [k async for k in client.scan_iter(match=self.prefix + "*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


def redis_engine(tmp_path: Path) -> RedisEngine:
    return RedisEngine()


ENGINES = {"sqlite": sqlite_engine, "redis": redis_engine}


@pytest.fixture(params=sorted(ENGINES))
async def make_store(request, tmp_path: Path) -> AsyncIterator[Callable[[], Store]]:
    """A factory: each call opens another instance over the same data, as a restart would."""
    engine = ENGINES[request.param](tmp_path)
    yield engine
    cleanup = getattr(engine, "cleanup", None)
    if cleanup is not None:
        await cleanup()


@pytest.fixture
async def store(make_store) -> AsyncIterator[Store]:
    s = make_store()
    await s.open()
    yield s
    await s.close()


def issuing(token_id: str, at: float = 0.0, service: str = "bill_payment", letter: str = "B"):
    return lambda q: q.issue(token_id, service, letter, Priority.NORMAL, at, "tester")


async def token_of(store: Store, token_id: str) -> Token | None:
    """The token as the store holds it now, or None."""
    view = await store.token_view(token_id)
    return view[0] if view is not None else None


async def logged(store: Store, day: str = DAY, after: int = 0) -> list[dict]:
    """The day's logged events after seq ``after``, oldest first (refusals at the door left out)."""
    return [e for e in await store.day_events(day) if e["seq"] is not None and e["seq"] > after]


async def add_payment(store: Store, payment: Payment, idem: IdempotencyKey | None = None) -> tuple[Payment, bool]:
    """Write ``payment`` as it is, whatever the token: how these tests fill the outbox."""
    return await store.take_payment(payment.token_id, lambda token, earlier: payment, idem)


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
        assert (await token_of(second, "t0")).counter == "S01-C1"
    finally:
        await second.close()


async def test_the_door_rule_starts_as_the_scenario_says_and_ops_switch_outlives_it(make_store):
    door_off = replace(POLICY, admission=False)
    first = make_store(door_off)
    await first.open()
    try:
        assert await first.read_queue("S01", DAY, lambda q: q.admission) is False
        await first.mutate_queue("S01", DAY, lambda q: q.set_admission(True, None, 1.0, "ops"))
    finally:
        await first.close()
    second = make_store(door_off)
    await second.open()
    try:
        assert await second.read_queue("S01", DAY, lambda q: q.admission) is True   # as ops left it
        assert await second.read_queue("S02", DAY, lambda q: q.admission) is False  # never switched
    finally:
        await second.close()
    third = make_store()                   # a scenario with the door on: the default
    await third.open()
    try:
        assert await third.read_queue("S02", DAY, lambda q: q.admission) is True
    finally:
        await third.close()


async def test_slot_plans_bookings_and_remote_holders_survive_a_restart(make_store):
    plan = SlotPlan(first_at=1000.0, slot_s=900, count=4, capacity=2, share=0.25)
    first = make_store()
    await first.open()
    await first.mutate_queue("S01", DAY, lambda q: q.publish_slots(plan, 0.0, "ops"))
    await first.mutate_queue("S01", DAY, lambda q: q.book(
        "b1", "bill_payment", Priority.NORMAL, 1900.0, 10.0, Holder("a1", "p1", "4321")))
    await first.mutate_queue("S01", DAY, lambda q: q.issue(
        "r1", "bill_payment", "B", Priority.NORMAL, 20.0, holder=Holder("a2", "p2", "9876")))
    await first.close()

    second = make_store()
    await second.open()
    try:
        kept = await second.read_queue("S01", DAY, lambda q: (q.slot_plan, q.slot_bookings(),
                                                               q.issued_count()))
        assert kept == (plan, {1900.0: 1}, 1)
        with pytest.raises(AlreadyHolding):                       # the holders' digests came back
            await second.mutate_queue("S01", DAY, lambda q: q.issue(
                "r2", "bill_payment", "B", Priority.NORMAL, 30.0, holder=Holder("a9", "p1")))
        await second.mutate_queue("S01", DAY, lambda q: q.start_due_bookings(1900.0, {"bill_payment": "B"})[0])
        booked = await token_of(second, "b1")
        assert (booked.status, booked.number, booked.origin, booked.account_hint) == (
            Status.WAITING, "B-002", Origin.SLOT, "4321")
        assert (await token_of(second, "r1")).origin is Origin.REMOTE
        assert [t.id for t in (await second.queue_snapshot("S01", DAY)).waiting] == ["b1", "r1"]
    finally:
        await second.close()


async def test_every_change_is_an_appended_event_with_who_and_when(store: Store):
    await store.mutate_queue("S01", DAY, issuing("t1", 10))
    await store.mutate_token("t1", lambda q, t: q.act(t.id, Action.CANCEL, 11, "cashier@S01-C1:k1"))
    events = await logged(store)
    assert [(e["kind"], e["token_id"], e["at"]) for e in events] == [
        ("issued", "t1", 10), ("cancelled", "t1", 11)]
    assert events[1]["actor"] == "cashier@S01-C1:k1" and events[1]["data"]["status"] == "cancelled"
    assert await logged(store, after=events[0]["seq"]) == events[1:]


async def test_a_failing_change_leaves_nothing_behind(store: Store):
    def issue_then_fail(q: SubstationQueue):
        q.issue("t1", "bill_payment", "B", Priority.NORMAL, 1)
        raise RuntimeError("boom after the domain changed")

    with pytest.raises(RuntimeError):
        await store.mutate_queue("S01", DAY, issue_then_fail)
    assert await token_of(store, "t1") is None
    snapshot = await store.queue_snapshot("S01", DAY)
    assert (snapshot.at_counters, snapshot.waiting) == ([], [])
    applied = await store.mutate_queue("S01", DAY, issuing("t2"))
    assert applied.token.number == "B-001"           # the failed change used no number


async def test_unknown_token(store: Store):
    with pytest.raises(UnknownToken):
        await store.mutate_token("nope", lambda q, t: t)
    assert await token_of(store, "nope") is None


async def test_idempotency_replays_and_refuses_a_different_request(store: Store):
    key = IdempotencyKey("k1", "slip-7", "fingerprint-a")
    first = await store.mutate_queue("S01", DAY, issuing("t1"), key)
    again = await store.mutate_queue("S01", DAY, issuing("t2"), key)
    assert not first.replayed and again.replayed and again.token == first.token
    assert await token_of(store, "t2") is None
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


async def test_the_server_secret_is_made_once_and_kept_across_restarts(make_store):
    first = make_store()
    await first.open()
    secret = await first.server_secret()
    assert len(secret) == 32 and await first.server_secret() == secret
    await first.close()
    again = make_store()      # a restart, or (Redis) another replica
    await again.open()
    try:
        assert await again.server_secret() == secret
    finally:
        await again.close()


async def test_sqlite_keeps_the_secret_beside_the_database_not_in_it(tmp_path: Path):
    store = SQLiteStore(tmp_path / "store.db", POLICY)
    await store.open()
    try:
        secret = await store.server_secret()
    finally:
        await store.close()
    kept = tmp_path / "server.secret"
    assert kept.stat().st_mode & 0o777 == 0o600 and bytes.fromhex(kept.read_text().strip()) == secret
    kept.write_text("not a secret\n")
    store = SQLiteStore(tmp_path / "store.db", POLICY)
    await store.open()
    try:
        with pytest.raises(ValueError, match="server.secret"):
            await store.server_secret()
    finally:
        await store.close()


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


async def test_sqlite_answers_reads_of_a_queue_without_a_turn_on_the_writer(tmp_path: Path):
    """The only writer's copy is the committed queue: reads alone make no transaction, and a
    read queued behind a change still sees it (answered once that change is committed)."""
    store = SQLiteStore(tmp_path / "reads.db", POLICY)
    await store.open()
    try:
        await store.mutate_queue("S01", DAY, issuing("t0", 0))
        before = store.commits
        snapshots = await asyncio.gather(*[store.queue_snapshot("S01", DAY) for _ in range(20)])
        assert store.commits == before and all(len(s.waiting) == 1 for s in snapshots)
        issued, seen = await asyncio.gather(store.mutate_queue("S01", DAY, issuing("t1", 1)),
                                            store.queue_snapshot("S01", DAY))
        assert [t.id for t in seen.waiting] == ["t0", "t1"] and store.commits == before + 1
    finally:
        await store.close()


async def test_sqlite_forgets_idempotency_keys_past_their_ttl(tmp_path: Path):
    """A retry within the TTL replays; a key older than that is pruned when the store opens."""
    path = tmp_path / "keys.db"
    store = SQLiteStore(path, POLICY)
    await store.open()
    try:
        for name in ("old", "recent"):
            await store.mutate_queue("S01", DAY, issuing(f"t-{name}", 1), IdempotencyKey("kiosk", name, "f"))
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE idempotency SET created_at = created_at - ? WHERE key = 'old'", [IDEMPOTENCY_TTL_S + 60])
    store = SQLiteStore(path, POLICY)
    await store.open()
    try:
        with sqlite3.connect(path) as db:
            assert [k for (k,) in db.execute("SELECT key FROM idempotency")] == ["recent"]
        replay = await store.mutate_queue("S01", DAY, issuing("t-other", 2), IdempotencyKey("kiosk", "recent", "f"))
        assert replay.replayed and replay.token.id == "t-recent"
        assert await token_of(store, "t-old") is not None        # the token itself stays
    finally:
        await store.close()


async def test_listeners_get_committed_changes_in_sequence_order(store: Store):
    seen: list[Committed] = []
    store.add_listener(seen.append)
    start = await store.last_seq()
    await store.mutate_queue("S01", DAY, issuing("t1", 1))
    await store.mutate_queue("S02", DAY, issuing("t2", 2))
    await store.mutate_queue("S01", DAY, lambda q: q.call_next("S01-C1", ["bill_payment"], 3))
    await wait_until_async(lambda: sum(len(c.events) for c in seen) == 3, what="three events heard")
    seqs = [seq for change in seen for seq, _ in change.events]
    assert seqs == sorted(seqs) and seqs[0] > start and len(set(seqs)) == 3
    assert [(c.substation, [e.kind for _, e in c.events]) for c in seen] in (
        [("S01", ["issued"]), ("S02", ["issued"]), ("S01", ["called"])],)
    assert seen[-1].hall.counters == () or seen[-1].hall.waiting_total == 0
    assert seen[0].events[0][1].token.number == "B-001"
    assert await store.last_seq() == seqs[-1]
    assert [e["seq"] for e in await logged(store, after=start)] == seqs


# -- Redis: several replicas over one Redis ------------------------------------------------------


@pytest.fixture
async def replicas() -> AsyncIterator[list[RedisStore]]:
    """Two Redis stores over one prefix, as two server processes behind a load balancer."""
    engine = RedisEngine()
    stores = [engine(), engine()]
    for s in stores:
        await s.open()
    yield stores
    for s in stores:
        await s.close()
    await engine.cleanup()


async def test_two_replicas_never_reuse_a_number_or_hand_one_token_to_two_counters(replicas):
    a, b = replicas
    await asyncio.gather(*[(a, b)[i % 2].mutate_queue("S01", DAY, issuing(f"t{i}", i)) for i in range(120)])
    numbers = sorted(int(t.number[2:]) for t in (await b.queue_snapshot("S01", DAY)).waiting)
    assert numbers == list(range(1, 121))
    # Copies whose changes were refused and mended in place agree with each other.
    assert (await a.queue_snapshot("S01", DAY)) == (await b.queue_snapshot("S01", DAY))
    counters = [f"S01-C{c}" for c in range(1, 5)]
    served: dict[str, str] = {}

    async def counter_works(counter: str, replica_order: int) -> None:
        for round_ in range(200):
            store = (a, b)[(round_ + replica_order) % 2]
            applied = await store.mutate_queue(
                "S01", DAY, lambda q: q.call_next(counter, ["bill_payment"], 500 + round_))
            if applied.token is None:
                return
            assert applied.token.id not in served, f"{applied.token.number} handed out twice"
            served[applied.token.id] = counter
            other = (b, a)[(round_ + replica_order) % 2]
            await other.mutate_token(applied.token.id,
                                     lambda q, t: q.act(t.id, Action.CANCEL, 501 + round_, "tester"))

    await asyncio.gather(*[counter_works(c, i) for i, c in enumerate(counters)])
    assert len(served) == 120 and len(set(served.values())) == 4
    assert a.conflicts + b.conflicts > 0          # they really did race


async def test_a_replica_hears_the_other_replicas_changes_in_order(replicas):
    a, b = replicas
    heard: dict[str, list[int]] = {"a": [], "b": []}
    a.add_listener(lambda c: heard["a"].extend(seq for seq, _ in c.events))
    b.add_listener(lambda c: heard["b"].extend(seq for seq, _ in c.events))
    for i in range(20):
        await (a, b)[i % 2].mutate_queue(f"S0{i % 3 + 1}", DAY, issuing(f"t{i}", i))
    await wait_until_async(lambda: len(heard["a"]) == 20 and len(heard["b"]) == 20,
                           what="both replicas hearing all 20 changes")
    assert heard["a"] == heard["b"] == sorted(heard["a"])
    assert heard["a"] == [e["seq"] for e in await logged(a)]


async def test_a_replica_that_has_heard_the_others_change_commits_without_running_again(replicas):
    a, b = replicas
    heard = {"a": 0, "b": 0}
    a.add_listener(lambda c: heard.__setitem__("a", c.events[-1][0]))
    b.add_listener(lambda c: heard.__setitem__("b", c.events[-1][0]))

    async def both_have_heard_all() -> None:
        last = (await logged(a))[-1]["seq"]
        await wait_until_async(lambda: heard["a"] == heard["b"] == last,
                               what=f"both replicas hearing event {last}")

    for i in range(12):
        applied = await (a, b)[i % 2].mutate_queue("S01", DAY, issuing(f"t{i}", i))
        assert applied.token.number == f"B-{i + 1:03d}"
        await both_have_heard_all()
    called = await a.mutate_queue("S01", DAY, lambda q: q.call_next("S01-C1", ["bill_payment"], 20))
    await both_have_heard_all()
    started = await b.mutate_token(called.token.id, lambda q, t: q.act(t.id, Action.START, 21))
    assert called.token.id == "t0" and started.token.status is Status.SERVING
    assert a.conflicts == b.conflicts == 0       # each replica's copy was brought up to date
    await both_have_heard_all()
    assert (await a.queue_snapshot("S01", DAY)) == (await b.queue_snapshot("S01", DAY))


async def test_an_idempotent_retry_on_the_other_replica_replays(replicas):
    a, b = replicas
    key = IdempotencyKey("k1", "slip-9", "fp")
    first = await a.mutate_queue("S01", DAY, issuing("t1"), key)
    again = await b.mutate_queue("S01", DAY, issuing("t2"), key)
    assert again.replayed and again.token == first.token and again.estimate is not None
    assert await token_of(b, "t2") is None
    called = IdempotencyKey("k2", "call-1", "fp")
    one = await a.mutate_queue("S01", DAY, lambda q: q.call_next("S01-C1", ["bill_payment"], 5), called)
    two = await b.mutate_queue("S01", DAY, lambda q: q.call_next("S01-C1", ["bill_payment"], 6), called)
    assert one.token.id == "t1" and two.replayed and two.token == one.token


async def test_the_redis_stream_is_trimmed_and_carries_what_changed_not_the_hall():
    """The stream is only the replicas' live feed: it keeps about ``stream_keep`` entries of a
    few hundred bytes, while the day's event log and the answers kept for retries stay whole."""
    engine = RedisEngine()
    writer = RedisStore(engine.url, POLICY, prefix=engine.prefix, stream_keep=100)
    follower = RedisStore(engine.url, POLICY, prefix=engine.prefix, stream_keep=100)
    heard: list[Committed] = []
    follower.add_listener(heard.append)
    await writer.open()
    await follower.open()
    try:
        key = IdempotencyKey("kiosk", "slip-1", "fp")
        first = await writer.mutate_queue("S01", DAY, issuing("t0", 0), key)
        for i in range(1, 400):
            await writer.mutate_queue("S01", DAY, issuing(f"t{i}", i))
        await wait_until_async(lambda: heard and heard[-1].events[-1][0] == 400, what="the follower at event 400")
        client = writer.redis
        stream = writer.prefix + "events"
        assert await client.xlen(stream) <= 100 + 100          # trimmed whole nodes, about keep
        entries = await client.xrange(stream, "-", "+")
        assert all(set(fields) <= {"e", "v", "pay"} for _, fields in entries)
        assert max(len(fields["e"]) for _, fields in entries) < 1000
        assert [e["token_id"] for e in await logged(writer)] == [f"t{i}" for i in range(400)]
        replay = await follower.mutate_queue("S01", DAY, issuing("t-again", 500), key)
        assert replay.replayed and replay.token == first.token    # its event left the stream long ago
        assert heard[-1].hall.waiting_total == 400 and heard[-1].hall == (
            await writer.queue_snapshot("S01", DAY)).hall   # the follower's hall is the writer's
    finally:
        await follower.close()
        await writer.close()
        await engine.cleanup()


async def test_a_change_redis_replicas_do_not_confirm_is_not_acknowledged():
    """With replicas_ack, a change is answered only once WAIT says enough Redis replicas have
    it: against a Redis with none, it is refused as unavailable (and a retry with its key
    replays it once it is confirmed), while reads still answer."""
    engine = RedisEngine()
    store = RedisStore(engine.url, POLICY, prefix=engine.prefix, replicas_ack=1, ack_timeout_ms=100)
    await store.open()
    try:
        key = IdempotencyKey("kiosk", "slip-1", "fp")
        with pytest.raises(StoreUnavailable, match="0 of the 1 Redis replica"):
            await store.mutate_queue("S01", DAY, issuing("t1"), key)
        assert [t.id for t in (await store.queue_snapshot("S01", DAY)).waiting] == ["t1"]   # made, not confirmed
        store.replicas_ack = 0
        again = await store.mutate_queue("S01", DAY, issuing("t2"), key)
        assert again.replayed and again.token.id == "t1"
    finally:
        await store.close()
        await engine.cleanup()


async def test_redis_outbox_claims_are_shared_and_a_lapsed_claim_is_taken_over(replicas):
    from .test_payments_outbox import payment

    a, b = replicas
    for i in range(6):
        await add_payment((a, b)[i % 2], payment(f"p{i}", f"A{i % 3}"))
    first = await a.claim_payments("wa", now=10, lease_s=5, limit=10)
    second = await b.claim_payments("wb", now=10, lease_s=5, limit=10)
    assert [p.id for p in first] == ["p0", "p1", "p2"] and second == []
    assert all(p.attempts == 0 for p in first)
    await a.settle_payment("p0", PaymentStatus.POSTED, 11, billing_ref="BILL-1")
    assert [p.id for p in await b.claim_payments("wb", now=12, lease_s=5, limit=10)] == ["p3"]
    # wa dies with p1 and p2 claimed: once their lease lapses, wb takes them, marked as tried
    # (so the gateway asks billing whether they landed before posting them again).
    taken = await b.claim_payments("wb", now=16, lease_s=5, limit=10)
    assert [p.id for p in taken] == ["p1", "p2"] and all(p.attempts == 1 for p in taken)
    stats = await b.outbox_stats(now=20)
    assert (stats.queued, stats.posted) == (5, 1)


async def test_take_payment_sees_the_tokens_earlier_payments_in_the_same_step(store: Store):
    """The "one payment per token" rule is only as good as this: ``build`` gets the token's
    payments as committed, and payments racing for one token are written one after another,
    each seeing those before it, so a rule refusing a second one lets exactly one through."""
    from .test_payments_outbox import payment

    await store.mutate_queue("S01", DAY, issuing("t1", 1))
    seen: list[list[str]] = []

    def only_one(pid: str):
        def build(token, earlier):
            seen.append([p.id for p in earlier])
            if earlier:
                raise LookupError(f"{token.number} already paid by {earlier[0].id}")
            return payment(pid, "A")
        return build

    outcomes = await asyncio.gather(*[store.take_payment("t1", only_one(f"p{i}")) for i in range(6)],
                                    return_exceptions=True)
    taken = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(taken) == 1, outcomes
    first = taken[0][0]
    assert all(isinstance(o, LookupError) and first.id in str(o) for o in outcomes if o is not taken[0])
    assert [e["kind"] for e in await logged(store)].count("payment_queued") == 1
    assert seen.count([]) >= 1 and [first.id] in seen
    # The payments a later build sees are whole (status, amount, part), oldest first.
    second, _ = await store.take_payment("t1", lambda token, earlier: replace(
        payment("p9", "B"), part=True) if earlier[0] == first else None)
    got: list = []
    await store.take_payment("t1", lambda token, earlier: got.extend(earlier) or payment("p10", "C"))
    assert [p.id for p in got] == [first.id, "p9"] and got[1].part and not got[0].part
    assert got[0].amount_paise == first.amount_paise and got[0].status is PaymentStatus.QUEUED
    # However many a token has, build sees the first EARLIER_PAYMENTS_READ: one bounded read.
    for i in range(EARLIER_PAYMENTS_READ):
        await add_payment(store, payment(f"q{i}", "D"))
    sizes: list[int] = []
    await store.take_payment("t1", lambda token, earlier: sizes.append(len(earlier)) or payment("p11", "E"))
    assert sizes == [EARLIER_PAYMENTS_READ]


async def test_redis_a_payment_another_replica_writes_between_read_and_write_is_seen():
    """Replica B takes the token's payment after A has read the token and its payments but
    before A writes: A's write is refused as stale and its ``build`` runs again, seeing B's."""
    from .test_payments_outbox import payment

    engine = RedisEngine()
    a = engine()
    await a.open()

    def b_pays() -> None:   # another process, in effect: its own event loop and connection
        async def pay() -> None:
            b = engine()
            await b.open()
            try:
                await b.take_payment("t1", lambda token, earlier: payment("pB", "B"))
            finally:
                await b.close()
        asyncio.run(pay())

    try:
        await a.mutate_queue("S01", DAY, issuing("t1", 1))
        seen: list[list[str]] = []

        def build(token, earlier):
            seen.append([p.id for p in earlier])
            if len(seen) == 1:
                thread = threading.Thread(target=b_pays)
                thread.start()
                thread.join()
            if earlier:
                raise LookupError(f"already paid by {earlier[0].id}")
            return payment("pA", "A")

        with pytest.raises(LookupError, match="pB"):
            await a.take_payment("t1", build)
        assert seen == [[], ["pB"]]
        assert await a.get_payment("pA") is None
    finally:
        await a.close()
        await engine.cleanup()


async def test_what_ops_read_a_days_events_and_token_counts(store: Store):
    from .test_payments_outbox import payment

    await store.mutate_queue("S01", DAY, issuing("t1", 1))
    await store.mutate_queue("S01", DAY, issuing("t2", 2))
    await store.mutate_queue("S02", DAY, issuing("t3", 3))
    await store.mutate_queue("S01", DAY, lambda q: q.call_next("S01-C1", ["bill_payment"], 4))
    await store.record_turned_away("S01", DAY, "bill_payment", "daily_cap", 5,
                                   IdempotencyKey("k1", "door-1", "fp"))
    await store.record_turned_away("S01", DAY, "bill_payment", "daily_cap", 5,
                                   IdempotencyKey("k1", "door-1", "fp"))      # a retry: counted once
    await add_payment(store, payment("p1", "A", at=6))
    await store.mutate_queue("S01", "2026-11-26", issuing("t4", 7))           # another day

    found = await store.day_events(DAY, "S01")
    assert [(e["kind"], e["at"]) for e in found] == [
        ("issued", 1), ("issued", 2), ("called", 4), ("turned_away", 5), ("payment_queued", 6)]
    assert found[3]["seq"] is None and found[3]["data"] == {"service": "bill_payment", "reason": "daily_cap"}
    assert len(await store.day_events(DAY)) == 6
    assert await store.turned_away_count("S01", DAY) == 1
    assert sorted(await store.token_counts(DAY, ["S01", "S02"]), key=str) == sorted(
        [("S01", None, "waiting", 1), ("S01", "S01-C1", "called", 1), ("S02", None, "waiting", 1)], key=str)


async def test_the_days_close_is_kept_like_any_change(make_store):
    """Closing time and the day's end: their events and the closed tokens survive a restart,
    the counters come back free, and ops' counts see the new status."""
    plan = SlotPlan(first_at=1000.0, slot_s=900, count=4, capacity=2, share=0.25)
    first = make_store()
    await first.open()
    await first.mutate_queue("S01", DAY, lambda q: q.publish_slots(plan, 0.0, "ops"))
    await first.mutate_queue("S01", DAY, lambda q: q.book(
        "b1", "bill_payment", Priority.NORMAL, 1900.0, 10.0, Holder("a1", "p1", "4321")))
    for i in range(4):
        await first.mutate_queue("S01", DAY, issuing(f"t{i}", 20 + i))
    await first.mutate_queue("S01", DAY, lambda q: q.call_next("S01-C1", ["bill_payment"], 30))
    await first.mutate_queue("S01", DAY, lambda q: q.call_next("S01-C2", ["bill_payment"], 31))
    await first.mutate_token("t1", lambda q, t: q.act(t.id, Action.START, 32))
    await first.mutate_queue("S01", DAY, lambda q: q.close_hall(5000, 4000, "day-close") and None)
    await first.close()

    second = make_store()
    await second.open()
    try:
        statuses = {f"t{i}": (await token_of(second, f"t{i}")).status for i in range(4)}
        assert statuses == {"t0": Status.CLOSED_UNSERVED, "t1": Status.SERVING,
                            "t2": Status.CLOSED_UNSERVED, "t3": Status.CLOSED_UNSERVED}
        assert (await token_of(second, "b1")).status is Status.CLOSED_UNSERVED
        await second.mutate_queue("S01", DAY, lambda q: q.close_day(90_000, "day-close") and None)
        assert (await token_of(second, "t1")).status is Status.DONE
        snapshot = await second.queue_snapshot("S01", DAY)
        assert snapshot.at_counters == [] and snapshot.waiting == [] and snapshot.hall.waiting_total == 0
        assert all(n == 0 for n in (await second.waiting_counts(DAY)).values())
        kinds = [(e["kind"], e["token_id"], e["counter"]) for e in await second.day_events(DAY, "S01")]
        assert kinds[-5:] == [("closed_unserved", "b1", None), ("closed_unserved", "t2", None),
                              ("closed_unserved", "t3", None), ("closed_unserved", "t0", "S01-C1"),
                              ("completed_at_close", "t1", "S01-C2")]
        counts = {(counter, status): n for _, counter, status, n in await second.token_counts(DAY, ["S01"])}
        assert counts == {(None, "closed_unserved"): 3, ("S01-C1", "closed_unserved"): 1,
                          ("S01-C2", "done"): 1}
    finally:
        await second.close()


async def test_changes_write_their_webhook_notices_in_the_same_step(make_store):
    now = time.time()      # notices older than NOTICE_KEEP_S are dropped when a store opens
    first = make_store()
    await first.open()
    try:
        start = await first.notice_cursor()
        for i in range(2):
            await first.mutate_queue("S01", DAY, issuing(f"t{i}", now + i))
        called = (await first.mutate_queue("S01", DAY, lambda q: q.call_next("S01-C1", ["bill_payment"], now + 5))).token
        await first.mutate_token(called.id, lambda q, t: q.act(t.id, Action.RECALL, now + 5.5, "cashier"))
        await first.mutate_token(called.id, lambda q, t: q.act(t.id, Action.NO_SHOW, now + 6, "cashier"))
        paid = Payment(id="p1", token_id="t1", substation="S01", counter="S01-C1", account="A1",
                       amount_paise=100_00, mode=PaymentMode.CASH, status=PaymentStatus.QUEUED, day=DAY,
                       created_at=now + 7, updated_at=now + 7)
        await add_payment(first, paid)
        await first.settle_payment("p1", PaymentStatus.FAILED, now + 8, reason="no such account")
        await first.add_notice(Notice("evt_alert", "hall.alert", now + 9, {"title": "Counter stuck"}))
    finally:
        await first.close()
    again = make_store()                                  # what was acknowledged is kept
    await again.open()
    try:
        found = await again.notices_after(start, 100)
        assert [n.type for n in found] == ["token.called", "token.called", "token.no_show", "payment.failed",
                                           "hall.alert"]              # a recall calls again
        assert len({n.id for n in found}) == 5 and all(n.id.startswith("evt_") for n in found)
        assert found[0].data["token"]["number"] == called.number and found[0].data["counter"] == "S01-C1"
        assert found[1].data["token"]["recalls"] == 1
        assert found[3].data["payment"]["reason"] == "no such account"
        assert "account_ref" not in found[0].data["token"] and "phone_ref" not in found[0].data["token"]
        # Each cursor reads on from its notice; the newest's cursor reads nothing more.
        assert [n.id for n in await again.notices_after(found[1].cursor, 1)] == [found[2].id]
        assert await again.notices_after(found[-1].cursor, 100) == []
        assert await again.notice_cursor() == found[-1].cursor
    finally:
        await again.close()


async def test_a_webhook_is_written_only_over_the_version_it_was_read_at(store: Store):
    hook = Webhook("wh1", "http://127.0.0.1:9/in", ("token.called",), "whsec_x", created_at=1.0)
    assert await store.save_webhook(hook) is True
    assert await store.save_webhook(hook) is False                       # version 1 exists
    moved = replace(hook, cursor="5", version=2, recent=({"id": "evt_1", "status": 200},))
    assert await store.save_webhook(moved) is True
    assert await store.save_webhook(replace(hook, cursor="3", version=2)) is False   # lost the race
    assert await store.webhooks() == [moved]
    assert await store.remove_webhook("wh1") is True and await store.remove_webhook("wh1") is False
    assert await store.webhooks() == []


async def test_sms_requests_are_kept_marked_near_once_with_their_notice_and_erased(make_store):
    now = time.time()
    first = make_store()
    await first.open()
    try:
        start = await first.notice_cursor()
        asked = SmsRequest("t1", "S01", DAY, "+91 98765 43210", near_ahead=3, near_minutes=10.0, created_at=now)
        await first.put_sms_request(asked)
        await first.put_sms_request(SmsRequest("t2", "S02", DAY, "9876500000", 3, 10.0, now + 1))
        near = Notice("evt_near_t1", "token.near", now + 2, {"token": {"id": "t1"}})
        assert await first.mark_sms_near("t1", now + 2, near) is True
        assert await first.mark_sms_near("t1", now + 3, replace(near, id="evt_again")) is False   # once
        assert await first.mark_sms_near("t9", now + 3, replace(near, id="evt_none")) is False    # nobody asked
    finally:
        await first.close()
    again = make_store()
    await again.open()
    try:
        assert await again.sms_requests() == [replace(asked, near_sent_at=now + 2),
                                              SmsRequest("t2", "S02", DAY, "9876500000", 3, 10.0, now + 1)]
        assert [n.id for n in await again.notices_after(start, 10)] == ["evt_near_t1"]
        assert await again.sms_request("t1") == replace(asked, near_sent_at=now + 2)
        assert await again.sms_request("t9") is None
        assert await again.forget_sms_requests(["t1", "t3"]) == 1
        assert [r.token_id for r in await again.sms_requests()] == ["t2"]
    finally:
        await again.close()
