"""The billing gateway against a real billing-sim process and a real server process."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from testkit.api import bearer
from testkit.processes import BillingSimProcess, ServerProcess
from testkit.waiting import wait_until_async

GATEWAY_SCENARIO = """
extends = "builtin"
[hours]
opens = "00:00"
closes = "23:59:59"
[billing]
initial_limit = 4
max_concurrency = 16
timeout_s = 1.0
bill_ttl_s = 0.5
breaker_failures = 3
breaker_open_s = 0.5
retry_base_s = 0.05
retry_cap_s = 1.0
"""


@pytest.fixture
def gateway_server(tmp_path: Path, billing_sim: BillingSimProcess) -> Iterator[ServerProcess]:
    """A server process whose gateway talks to ``billing_sim``; start the sim first."""
    config = tmp_path / "gateway.toml"
    config.write_text(GATEWAY_SCENARIO)
    server = ServerProcess(data_dir=tmp_path / "data", config=config,
                           extra_args=["--rate-limit", "0", "--billing-url", billing_sim.url])
    yield server
    server.stop()


class Counters:
    """Four counters, each serving one consumer, to take payments for."""

    def __init__(self, session: aiohttp.ClientSession, server: ServerProcess) -> None:
        self.session = session
        self.url = server.url
        self.headers = bearer(server.admin_key)
        self.tokens: list[str] = []

    async def call(self, method: str, path: str, **kw) -> tuple[int, dict]:
        async with self.session.request(method, self.url + path, headers=self.headers, **kw) as resp:
            return resp.status, await resp.json()

    async def open(self, count: int = 4) -> None:
        for c in range(1, count + 1):
            await self.call("POST", "/api/v1/substations/S01/tokens", json={"service": "bill_payment"})
            _, body = await self.call("POST", f"/api/v1/counters/S01-C{c}/next")
            await self.call("POST", f"/api/v1/tokens/{body['token']['id']}/start")
            self.tokens.append(body["token"]["id"])

    async def pay(self, i: int) -> str:
        status, body = await self.call("POST", "/api/v1/payments", json={
            "token_id": self.tokens[i % len(self.tokens)], "account": f"21400{i % 37:05d}",
            "amount_paise": 1000 + i, "part": True})   # many payments for a few tokens
        assert status == 202, body
        return body["payment"]["id"]

    async def billing(self) -> dict:
        return (await self.call("GET", "/api/v1/ops/billing"))[1]["billing"]

    async def drained(self, timeout: float = 30.0) -> dict:
        return await wait_until_async(self.billing, done=lambda state: state["outbox"]["queued"] == 0,
                                      what="the outbox drained", timeout=timeout, interval=0.1)


@contextlib.asynccontextmanager
async def running(sim: BillingSimProcess, server: ServerProcess
                  ) -> AsyncIterator[tuple[aiohttp.ClientSession, Counters]]:
    """Start the billing sim, then the server whose gateway talks to it; yield an HTTP session
    and the counters of that server."""
    sim.start()
    server.start()
    async with aiohttp.ClientSession() as session:
        yield session, Counters(session, server)


async def sim_stats(session: aiohttp.ClientSession, sim: BillingSimProcess) -> dict:
    async with session.get(f"{sim.url}/stats") as resp:
        return await resp.json()


async def test_billing_killed_and_restarted_mid_load_loses_and_doubles_nothing(billing_sim, gateway_server):
    async with running(billing_sim, gateway_server) as (session, counters):
        await counters.open()
        first = await asyncio.gather(*[counters.pay(i) for i in range(100)])
        await asyncio.sleep(0.3)
        billing_sim.kill()                              # mid-load: some posted, some not
        during = await asyncio.gather(*[counters.pay(i) for i in range(100, 200)])
        await asyncio.sleep(1.5)
        assert (await counters.billing())["outbox"]["queued"] > 0
        billing_sim.start()                             # back, with what it had posted
        state = await counters.drained()
        for payment_id in first + during:
            status, body = await counters.call("GET", f"/api/v1/payments/{payment_id}")
            assert body["payment"]["status"] == "posted", body
        stats = await sim_stats(session, billing_sim)
        assert stats["payments_posted"] == 200 and stats["duplicate_payments"] == 0
        assert state["outbox"] == {"queued": 0, "posted": 200, "failed": 0, "oldest_queued_s": None}
        assert state["breaker"]["times_opened"] >= 1


async def test_breaker_opens_while_billing_is_down_and_closes_when_it_is_back(billing_sim, gateway_server):
    billing_sim.args = ["--recovery-seconds", "2"]
    async with running(billing_sim, gateway_server) as (session, counters):
        await counters.open(2)
        async with session.post(f"{billing_sim.url}/admin/crash") as resp:
            assert resp.status == 200
        ids = [await counters.pay(i) for i in range(20)]
        states = []

        async def breaker_state() -> dict:
            state = await counters.billing()
            states.append(state["breaker"]["state"])
            return state

        await wait_until_async(breaker_state, what="the outbox drained and the breaker closed again",
                               done=lambda s: s["outbox"]["queued"] == 0 and s["breaker"]["state"] == "closed",
                               timeout=15)
        assert "open" in states and states[-1] == "closed"
        assert (await counters.call("GET", "/healthz"))[1]["billing"]["state"] in ("up", "slow")
        stats = await sim_stats(session, billing_sim)
        rejected_while_down = stats["rejected"]
        # While open, the breaker kept calls away: a handful of probes, not a stream of retries.
        assert rejected_while_down < 40
        for payment_id in ids:
            assert (await counters.call("GET", f"/api/v1/payments/{payment_id}"))[1]["payment"]["status"] == "posted"


async def test_limit_falls_when_billing_slows_and_rises_after(billing_sim, gateway_server):
    billing_sim.args = ["--capacity", "100", "--knee", "50", "--base-latency-ms", "20"]
    async with running(billing_sim, gateway_server) as (session, counters):
        await counters.open()
        stop = asyncio.Event()

        async def load() -> None:
            i = 0
            while not stop.is_set():
                await asyncio.gather(*[counters.pay(i + k) for k in range(20)])
                i += 20
                await asyncio.sleep(0.02)

        async def peak_limit(seconds: float) -> tuple[int, int]:
            seen = []
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                seen.append((await counters.billing())["limit"])
                await asyncio.sleep(0.05)
            return max(seen), seen[-1]

        loader = asyncio.create_task(load())
        grown, _ = await peak_limit(3.0)
        async with session.post(f"{billing_sim.url}/admin/latency", json={"extra_latency_ms": 400}):
            pass
        _, slowed = await peak_limit(4.0)     # about one cut per (slow) round trip
        async with session.post(f"{billing_sim.url}/admin/latency", json={"extra_latency_ms": 0}):
            pass
        recovered, _ = await peak_limit(3.0)
        stop.set()
        await loader
        assert grown > 4                     # grew from its start while billing was quick
        assert slowed < grown * 0.6          # fell when billing slowed
        assert recovered > slowed            # and rose again after
        await counters.drained()
        assert (await sim_stats(session, billing_sim))["crashes"] == 0


async def test_bill_lookups_coalesce_and_go_stale_while_billing_is_down(billing_sim, gateway_server):
    async with running(billing_sim, gateway_server) as (session, counters):
        before = (await sim_stats(session, billing_sim))["requests"]
        answers = await asyncio.gather(*[counters.call("GET", "/api/v1/bills/2140012345")
                                         for _ in range(40)])
        assert {status for status, _ in answers} == {200}
        assert (await sim_stats(session, billing_sim))["requests"] - before == 1
        bill = answers[0][1]["bill"]
        billing_sim.kill()
        await asyncio.sleep(0.6)                 # past the cache's freshness (0.5 s)
        status, body = await counters.call("GET", "/api/v1/bills/2140012345")
        assert status == 200 and body["stale"] is True and body["bill"] == bill
        status, body = await counters.call("GET", "/api/v1/bills/9999000011")
        assert status == 503 and body["error"]["code"] == "billing_unavailable"
        status, body = await counters.call("GET", "/api/v1/bills/bad!")
        assert status in (404, 422)


async def test_a_payment_whose_post_timed_out_says_so_in_its_reason(billing_sim, gateway_server):
    async with running(billing_sim, gateway_server) as (session, counters):
        await counters.open(1)
        async with session.post(f"{billing_sim.url}/admin/latency", json={"extra_latency_ms": 1500}):
            pass                                 # past the gateway's timeout (1 s): a bare TimeoutError
        payment_id = await counters.pay(0)

        async def payment() -> dict:
            return (await counters.call("GET", f"/api/v1/payments/{payment_id}"))[1]["payment"]

        tried = await wait_until_async(payment, what="the payment's first attempt",
                                       done=lambda p: p["attempts"] >= 1)
        assert tried["status"] == "queued"
        assert tried["reason"] == "billing: TimeoutError"   # not "billing: " with no reason
