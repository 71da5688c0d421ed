"""SIGTERM under load: a replica stops in bounded time, leaving nothing for leases to lapse on.

Two replicas share the test's own redis-server and a billing-sim made slow (so payments are in
flight to billing); clients keep issuing, calling and paying on replica A with boards open on
it; A gets SIGTERM. It must exit cleanly within 10 s, and replica B must finish A's payments at
once (A's posts in flight landed and were settled, its claimed but unsent ones handed back),
not after the 30 s a lapsed lease takes, with no payment posted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from pathlib import Path

import aiohttp

from counter_server.config import load_scenario
from testkit.api import bearer
from testkit.processes import BillingSimProcess, RedisProcess, ServerProcess
from testkit.scenarios import REDIS_SCENARIO, paid_service
from testkit.waiting import wait_until_async

SCENARIO = REDIS_SCENARIO + """
[billing]
lease_s = 30.0
timeout_s = 10.0
"""
LOAD_CLIENTS = 8
BILLING_LATENCY_MS = 1500
MAX_PAYMENTS = 24   # then the load goes on issuing and calling: the outbox stays quick to drain


async def test_sigterm_under_load_stops_within_10_s_and_hands_its_payments_on(tmp_path: Path):
    redis = RedisProcess(dir=tmp_path / "redis")
    sim = BillingSimProcess(journal=tmp_path / "billing.jsonl")
    config = tmp_path / "replicas.toml"
    replicas = [ServerProcess(data_dir=tmp_path / name, config=config,
                              extra_args=["--rate-limit", "0", "--billing-url", sim.url])
                for name in ("a", "b")]
    a, b = replicas
    redis.start()
    sim.start()
    config.write_text(SCENARIO.format(url=redis.url))
    scenario = load_scenario(config)
    service = paid_service(scenario)
    halls = [(s.id, s.counters[0].id) for s in scenario.substations.values() if s.counters]
    try:
        for replica in replicas:
            replica.start()
        key = a.admin_key
        session = aiohttp.ClientSession(headers=bearer(key), timeout=aiohttp.ClientTimeout(total=15))
        async with session:
            async with session.post(f"{sim.url}/admin/latency",
                                    json={"extra_latency_ms": BILLING_LATENCY_MS}) as resp:
                assert resp.status == 200
            boards = [await session.ws_connect(f"{a.url}/api/v1/substations/{sid}/live") for sid, _ in halls[:2]]
            accepted: list[str] = []
            stopping = asyncio.Event()
            accounts = itertools.count(1)

            async def client(n: int) -> None:
                """Issue, call, pay, serve on A until A is gone (its connections then fail)."""
                sid, counter = halls[n % len(halls)]
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    while not stopping.is_set():
                        async with session.post(f"{a.url}/api/v1/substations/{sid}/tokens",
                                                json={"service": service}) as resp:
                            if resp.status != 201:
                                continue
                        async with session.post(f"{a.url}/api/v1/counters/{counter}/next") as resp:
                            token = (await resp.json()).get("token") if resp.status == 200 else None
                        if token is None:
                            continue
                        if len(accepted) < MAX_PAYMENTS:
                            async with session.post(f"{a.url}/api/v1/payments", json={
                                    "token_id": token["id"], "account": f"31{next(accounts):08d}",
                                    "amount_paise": 5000, "part": True}) as resp:
                                if resp.status == 202:
                                    accepted.append((await resp.json())["payment"]["id"])
                        for action in ("start", "complete"):   # the counter is free again
                            async with session.post(f"{a.url}/api/v1/tokens/{token['id']}/{action}"):
                                pass

            load = [asyncio.create_task(client(n)) for n in range(LOAD_CLIENTS)]

            async def billing_of(replica: ServerProcess) -> dict:
                async with session.get(f"{replica.url}/api/v1/ops/billing") as resp:
                    return (await resp.json())["billing"]

            await wait_until_async(lambda: billing_of(a), done=lambda state: state["in_flight"] > 0,
                                   what="A forwarding payments", timeout=15, interval=0.05)
            await asyncio.sleep(1.0)             # the load runs on: work in every stage
            assert a.proc is not None
            a.proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = await asyncio.to_thread(a.proc.wait, 15)
            took = time.monotonic() - started
            stopping.set()
            await asyncio.wait(load, timeout=15)
            for board in boards:
                await board.close()
            assert code == 0, a.log()
            assert took < 10.0, (took, a.log())

            # B finishes the outbox before a 30 s lease could lapse, and takes over no lapsed claim.
            handed_on = time.monotonic()
            state = await wait_until_async(lambda: billing_of(b), done=lambda s: s["outbox"]["queued"] == 0,
                                           what="B draining the outbox", timeout=28, interval=0.2)
            drained = time.monotonic() - handed_on
            async with aiohttp.ClientSession() as raw, raw.get(f"{sim.url}/stats") as resp:
                stats = await resp.json()
    finally:
        for replica in replicas:
            replica.stop()
        sim.stop()
        redis.stop()
    assert len(accepted) >= LOAD_CLIENTS, "the load should have taken a few payments"
    assert state["outbox"]["posted"] == len(accepted) and state["outbox"]["failed"] == 0, state
    assert stats["duplicate_payments"] == 0
    assert state["forwarded"]["checked_before_retry"] == 0, state   # no claim of A's had to lapse
    print(f"SIGTERM under load: exited in {took:.2f} s; {len(accepted)} payments, "
          f"B drained the rest in {drained:.2f} s")


def test_sigterm_while_redis_is_away_stops_within_10_s(tmp_path: Path):
    """Nothing waits for a Redis that is gone: the follower's reconnects, the gateway's hand-back
    and the store's close all give up in bounded time."""
    redis = RedisProcess(dir=tmp_path / "redis")
    redis.start()
    config = tmp_path / "replica.toml"
    config.write_text(REDIS_SCENARIO.format(url=redis.url))
    replica = ServerProcess(data_dir=tmp_path / "a", config=config)
    try:
        replica.start()
        redis.kill()                                   # Redis goes away under a running replica
        assert "lost Redis" in replica.log_once("lost Redis")
        assert replica.proc is not None
        started = time.monotonic()
        replica.proc.send_signal(signal.SIGTERM)
        code = replica.proc.wait(timeout=15)
        took = time.monotonic() - started
    finally:
        replica.stop()
        redis.stop()
    assert code == 0 and took < 10.0, (code, took, replica.log())
