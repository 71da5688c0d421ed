"""Two ``counter-server`` replicas sharing one real Redis, as behind a load balancer.

Each test starts its own redis-server on a free port and two server processes on the Redis
engine, and talks to both over HTTP and WebSockets: numbering, call-next, live boards, a
replica killed with SIGKILL, the payment outbox, and Redis itself going away and coming back.
They run on the Lakeside scenario; its halls, counters and paid service come from it, never by
name.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from counter_server.config import load_scenario
from testkit.api import bearer
from testkit.live import receive_until
from testkit.processes import BillingSimProcess, RedisProcess, ServerProcess, run_cli
from testkit.scenarios import LAKESIDE, paid_service, paying_halls, write_layered
from testkit.waiting import wait_until_async

# Laid over Lakeside: admission off, so no token is refused for the line's length, and the
# gateway retrying quickly after a replica dies.
QUEUE = {"admission": False}
BILLING = {"lease_s": 2.0, "timeout_s": 10.0, "retry_base_s": 0.05, "retry_cap_s": 0.5}


class Replicas:
    """Redis, replicas A and B, an HTTP session holding the admin key, and where they work, from
    the scenario: the paid service and its letter, every hall serving it with its counters that
    do (and each such counter's hall), and the first of those halls."""

    def __init__(self, tmp_path: Path, *, appendonly: bool = False, extra_args: list[str] = ()) -> None:
        self.redis = RedisProcess(dir=tmp_path / "redis", appendonly=appendonly)
        self.config = write_layered(tmp_path / "replicas.toml", LAKESIDE, self.redis.url,
                                    queue=QUEUE, billing=BILLING)
        scenario = load_scenario(self.config)
        self.service = paid_service(scenario)
        self.letter = scenario.services[self.service].letter
        self.halls = paying_halls(scenario)
        self.hall = next(iter(self.halls))
        self.counters = {counter: hall for hall, counters in self.halls.items() for counter in counters}
        self.servers = [
            ServerProcess(data_dir=tmp_path / name, config=self.config,
                          extra_args=["--rate-limit", "0", *extra_args])
            for name in ("a", "b")
        ]
        self.session: aiohttp.ClientSession | None = None
        self.key = ""

    @property
    def a(self) -> ServerProcess:
        return self.servers[0]

    @property
    def b(self) -> ServerProcess:
        return self.servers[1]

    def start(self) -> None:
        self.redis.start()
        self.a.start()                       # the first start writes the admin key
        self.key = self.a.admin_key
        self.b.start()
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        for server in self.servers:
            server.stop()
        self.redis.stop()

    async def call(self, server: ServerProcess, method: str, path: str, **kw) -> tuple[int, dict]:
        assert self.session is not None
        async with self.session.request(method, server.url + path, headers=bearer(self.key), **kw) as resp:
            return resp.status, await resp.json()

    async def take(self, server: ServerProcess, hall: str | None = None) -> tuple[int, dict]:
        """Ask for a token of the paid service (default: in the first hall); the answer as given."""
        return await self.call(server, "POST", f"/api/v1/substations/{hall or self.hall}/tokens",
                               json={"service": self.service})

    async def issue(self, server: ServerProcess, hall: str | None = None) -> dict:
        status, body = await self.take(server, hall)
        assert status == 201, body
        return body["token"]

    async def board(self, server: ServerProcess, hall: str | None = None,
                    since: int | None = None) -> aiohttp.ClientWebSocketResponse:
        assert self.session is not None
        query = f"?since={since}" if since is not None else ""
        path = f"/api/v1/substations/{hall or self.hall}/live{query}"
        return await self.session.ws_connect(server.url + path)


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[Replicas]:
    cluster = Replicas(tmp_path)
    cluster.start()
    yield cluster
    await cluster.stop()


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 2.0) -> dict:
    """The next snapshot or delta (heartbeats skipped)."""
    return await receive_until(ws, lambda message: message["type"] != "heartbeat", what="a snapshot or delta",
                               timeout=timeout)


async def heard(ws: aiohttp.ClientWebSocketResponse, issued: int) -> dict:
    """The first message whose hall shows ``issued`` tokens. A board's snapshot may come before
    its replica's follower has heard the last token issued elsewhere (its delta then follows)."""
    message = await receive(ws)
    while message["hall"]["issued_today"] < issued:
        message = await receive(ws)
    return message


def numbers(delta: dict) -> list[str]:
    return [e["token"]["number"] for e in delta["events"] if e["token"]]


async def test_numbering_live_boards_and_call_next_across_two_replicas(replicas: Replicas):
    boards = [await replicas.board(server) for server in replicas.servers]
    seqs = [(await receive(ws))["seq"] for ws in boards]
    assert seqs[0] == seqs[1]

    # A board on B sees a token issued on A within a second, and the other way round.
    first = []
    for issuing, watching in ((replicas.a, boards[1]), (replicas.b, boards[0])):
        started = time.monotonic()
        token = await replicas.issue(issuing)
        first.append(token)
        delta = await receive(watching, timeout=1.0)
        assert numbers(delta) == [token["number"]] and time.monotonic() - started < 1.0
        await receive(boards[replicas.servers.index(issuing)])      # its own board too

    # 200 tokens over every hall serving the paid service, issued concurrently and alternately
    # through A and B: each hall's numbers run on from the tokens it had, without gaps or repeats.
    halls = list(replicas.halls)
    targets = [halls[i % len(halls)] for i in range(200)]
    gate = asyncio.Semaphore(20)

    async def issue(i: int) -> dict:
        async with gate:
            return await replicas.issue(replicas.servers[i % 2], targets[i])

    issued = await asyncio.gather(*[issue(i) for i in range(len(targets))])
    for hall in halls:
        got = sorted(int(t["number"].removeprefix(f"{replicas.letter}-")) for t in issued
                     if t["substation"] == hall)
        had = sum(t["substation"] == hall for t in first)
        assert got == list(range(had + 1, had + 1 + targets.count(hall))), (hall, got)

    # Both boards got the same deltas, in the same order, with the same seq and prev.
    async def deltas(ws, n: int) -> list[tuple[int, int, list[str]]]:
        found = []
        while sum(len(f[2]) for f in found) < n:
            d = await receive(ws)
            found.append((d["seq"], d["prev"], numbers(d)))
        return found

    watched = targets.count(replicas.hall)
    on_a, on_b = await deltas(boards[0], watched), await deltas(boards[1], watched)
    assert on_a == on_b
    assert all(prev < seq for seq, prev, _ in on_a)
    assert all(on_a[i + 1][1] == on_a[i][0] for i in range(len(on_a) - 1))

    # 200 call-next requests at once (at least five per counter serving the paid service),
    # spread over both replicas: each counter gets exactly one token and no token goes to two
    # counters; the others are told it is busy.
    async def call_next(counter: str, server) -> tuple[int, dict]:
        return await replicas.call(server, "POST", f"/api/v1/counters/{counter}/next")

    counters = list(replicas.counters)
    asks = counters * max(5, 200 // len(counters))
    answers = await asyncio.gather(*[call_next(c, replicas.servers[i % 2]) for i, c in enumerate(asks)])
    called = [(body["token"]["id"], body["token"]["counter"]) for status, body in answers if status == 200]
    assert len(called) == len(counters) and len({t for t, _ in called}) == len(counters)
    assert {c for _, c in called} == set(counters)
    assert {body["error"]["code"] for status, body in answers if status != 200} == {"counter_busy"}

    # Then every counter serves until its line is empty, alternating replicas at each step:
    # every token issued is called exactly once, by one counter.
    holder = {token_id: counter for token_id, counter in called}
    served: dict[str, str] = dict(holder)
    flip = itertools.count()

    async def serve(counter: str, token_id: str | None) -> None:
        while token_id is not None:
            for action in ("start", "complete"):
                status, body = await replicas.call(replicas.servers[next(flip) % 2], "POST",
                                                   f"/api/v1/tokens/{token_id}/{action}")
                assert status == 200, body
            status, body = await call_next(counter, replicas.servers[next(flip) % 2])
            assert status == 200, body
            token_id = body["token"]["id"] if body["token"] else None
            if token_id is not None:
                assert token_id not in served, f"{body['token']['number']} called twice"
                served[token_id] = counter

    await asyncio.gather(*[serve(c, next((t for t, h in holder.items() if h == c), None))
                           for c in counters])
    assert len(served) == len(first) + len(issued)
    for hall in halls:
        status, body = await replicas.call(replicas.b, "GET", f"/api/v1/substations/{hall}/queue")
        assert status == 200 and all(t["status"] == "done" for t in body["tokens"]), body
    for ws in boards:
        await ws.close()


async def test_a_replica_killed_the_other_carries_on_and_boards_reconnect(replicas: Replicas):
    board = await replicas.board(replicas.a)
    seq = (await receive(board))["seq"]
    for server in (replicas.a, replicas.b):
        await replicas.issue(server)
        seq = (await receive(board))["seq"]

    replicas.a.kill()
    with pytest.raises((aiohttp.ClientError, AssertionError, asyncio.TimeoutError)):
        await receive(board, timeout=5.0)      # the board's link to A is gone
    after_kill = [await replicas.issue(replicas.b) for _ in range(2)]

    # The board reconnects (to B, as the load balancer would send it) and resumes from its
    # last seq: it gets exactly the deltas it missed, numbered as A numbered them.
    board = await replicas.board(replicas.b, since=seq)
    missed = [await receive(board), await receive(board)]
    assert [m["type"] for m in missed] == ["delta", "delta"]
    assert missed[0]["prev"] == seq and missed[1]["prev"] == missed[0]["seq"]
    assert [n for m in missed for n in numbers(m)] == [t["number"] for t in after_kill] == [
        f"{replicas.letter}-003", f"{replicas.letter}-004"]
    await board.close()

    # A comes back and joins in; numbering carries on where B left it.
    replicas.a.start()
    assert (await replicas.issue(replicas.a))["number"] == f"{replicas.letter}-005"


async def test_redis_restart_replicas_reconnect_by_themselves(tmp_path: Path):
    cluster = Replicas(tmp_path, appendonly=True)     # AOF, fsync always: the data comes back
    cluster.start()
    try:
        before = [await cluster.issue(server) for server in cluster.servers]
        board = await cluster.board(cluster.b)
        seq = (await heard(board, issued=len(before)))["seq"]

        cluster.redis.kill()
        started = time.monotonic()
        status, body = await cluster.take(cluster.a)
        assert status == 503 and body["error"]["code"] == "store_unavailable", body   # not a hang
        assert time.monotonic() - started < 10

        cluster.redis.start()
        status, body = await wait_until_async(      # the replicas find Redis again by themselves
            lambda: cluster.take(cluster.a),
            done=lambda answer: answer[0] == 201, what="a token issued on A after Redis came back",
            timeout=15, interval=0.2)
        assert body["token"]["number"] == f"{cluster.letter}-003"   # nothing before the restart was lost
        for token in before:
            status, got = await cluster.call(cluster.b, "GET", f"/api/v1/tokens/{token['id']}")
            assert status == 200 and got["token"]["number"] == token["number"]

        # B's board (its WebSocket never dropped) hears the change made on A after the restart.
        delta = await receive(board, timeout=10.0)
        assert delta["type"] == "delta" and numbers(delta) == [f"{cluster.letter}-003"] and delta["seq"] > seq
        await board.close()
    finally:
        await cluster.stop()


async def test_in_memory_redis_restart_loses_its_data_but_sequences_never_go_back(tmp_path: Path):
    cluster = Replicas(tmp_path)                  # no persistence: a restart empties Redis
    cluster.start()
    try:
        await cluster.issue(cluster.a)
        board = await cluster.board(cluster.b)
        seq = (await heard(board, issued=1))["seq"]
        cluster.redis.kill()
        cluster.redis.start()
        # The admin key went with the data; `keys create` against Redis makes a new one.
        done = run_cli("keys", "create", "--role", "admin", "--store", "redis",
                       "--redis-url", cluster.redis.url, "--data-dir", str(tmp_path / "cli"))
        cluster.key = done.stdout.strip()
        status, body = await wait_until_async(
            lambda: cluster.take(cluster.b),
            done=lambda answer: answer[0] == 201, what="a token issued on B after Redis came back",
            timeout=15, interval=0.2)
        assert body["token"]["number"] == f"{cluster.letter}-001"   # the day's numbering went with the data
        delta = await receive(board, timeout=10.0)
        assert numbers(delta) == [f"{cluster.letter}-001"] and delta["seq"] > seq and delta["prev"] == seq
        await board.close()
    finally:
        await cluster.stop()


async def test_outbox_shared_by_replicas_posts_each_payment_once_when_one_dies(tmp_path: Path):
    sim = BillingSimProcess(journal=tmp_path / "billing.jsonl")
    sim.start()
    cluster = Replicas(tmp_path, extra_args=["--billing-url", sim.url])
    cluster.start()
    try:
        async with aiohttp.ClientSession() as raw:
            async with raw.post(f"{sim.url}/admin/latency", json={"extra_latency_ms": 800}) as resp:
                assert resp.status == 200
        # A token at each counter serving the paid service, through A and B in turn.
        tokens = []
        for i, (counter, hall) in enumerate(cluster.counters.items()):
            server = cluster.servers[i % 2]
            await cluster.issue(server, hall)
            status, body = await cluster.call(server, "POST", f"/api/v1/counters/{counter}/next")
            assert status == 200 and body["token"], body
            tokens.append(body["token"]["id"])
        paid = []
        for i in range(24):
            status, body = await cluster.call(cluster.servers[i % 2], "POST", "/api/v1/payments", json={
                "token_id": tokens[i % len(tokens)], "account": f"21400{i:05d}", "amount_paise": 1000 + i,
                "part": True})   # several payments a token
            assert status == 202, body
            paid.append(body["payment"]["id"])

        # Kill A while it has posts in flight to billing: they land, but A never records it.
        async def billing_of(server: ServerProcess) -> dict:
            return (await cluster.call(server, "GET", "/api/v1/ops/billing"))[1]["billing"]

        await wait_until_async(lambda: billing_of(cluster.a), done=lambda state: state["in_flight"] > 0,
                               what="A forwarding a payment", interval=0.02)
        cluster.a.kill()

        state = await wait_until_async(lambda: billing_of(cluster.b),
                                       done=lambda state: state["outbox"]["queued"] == 0,
                                       what="B draining the outbox", timeout=30, interval=0.2)
        assert state["outbox"] == {**state["outbox"], "queued": 0, "posted": 24, "failed": 0}
        assert state["forwarded"]["checked_before_retry"] >= 1     # B took over A's claims
        async with aiohttp.ClientSession() as raw:
            async with raw.get(f"{sim.url}/stats") as resp:
                stats = await resp.json()
        assert stats["payments_posted"] == 24 and stats["duplicate_payments"] == 0
        for pid in paid:
            status, body = await cluster.call(cluster.b, "GET", f"/api/v1/payments/{pid}")
            assert status == 200 and body["payment"]["status"] == "posted"
    finally:
        await cluster.stop()
        sim.stop()
