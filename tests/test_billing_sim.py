"""billing-sim behaves like the fragile legacy billing server."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from testkit.processes import BillingSimProcess


async def timed_lookups(session: aiohttp.ClientSession, url: str, concurrency: int) -> float:
    async def one() -> float:
        start = time.perf_counter()
        async with session.get(f"{url}/bills/2140012345") as resp:
            assert resp.status == 200
        return time.perf_counter() - start

    times = await asyncio.gather(*[one() for _ in range(concurrency)])
    return sorted(times)[len(times) // 2]


async def test_latency_grows_past_the_knee_and_sustained_overload_crashes_it(billing_sim: BillingSimProcess):
    billing_sim.args = ["--capacity", "6", "--knee", "2", "--base-latency-ms", "50",
                        "--overload-seconds", "0.5", "--recovery-seconds", "1.5"]
    billing_sim.start()
    async with aiohttp.ClientSession() as session:
        quiet = await timed_lookups(session, billing_sim.url, 2)
        busy = await timed_lookups(session, billing_sim.url, 10)
        assert busy > 2 * quiet                      # median ~5 in flight, knee 2: 2.5x the base

        async def hammer(until: float) -> list[int]:
            codes = []
            while time.monotonic() < until:
                try:
                    async with session.post(f"{billing_sim.url}/payments", json={
                            "payment_id": f"p{time.monotonic_ns()}", "account": "2140012345",
                            "amount_paise": 100}) as resp:
                        codes.append(resp.status)
                except aiohttp.ClientError:
                    codes.append(0)
            return codes

        until = time.monotonic() + 1.5
        codes = [c for batch in await asyncio.gather(*[hammer(until) for _ in range(20)]) for c in batch]
        async with session.get(f"{billing_sim.url}/stats") as resp:
            stats = await resp.json()
        assert stats["crashes"] == 1 and stats["up"] is False and 503 in codes
        assert stats["max_in_flight"] > 6
        await asyncio.sleep(1.6)
        async with session.get(f"{billing_sim.url}/bills/2140012345") as resp:
            assert resp.status == 200                # back after the recovery period


async def test_payments_are_idempotent_and_kept_across_a_restart(billing_sim: BillingSimProcess):
    billing_sim.start()
    body = {"payment_id": "p_1", "account": "2140012345", "amount_paise": 5000}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{billing_sim.url}/payments", json=body) as resp:
            assert resp.status == 201
            first = await resp.json()
        async with session.post(f"{billing_sim.url}/payments", json={"payment_id": "p_2"}) as resp:
            assert resp.status == 422
    billing_sim.kill()
    billing_sim.start()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{billing_sim.url}/payments", json=body) as resp:
            again = await resp.json()
        assert again["billing_ref"] == first["billing_ref"] and again["duplicate"] is True
        async with session.get(f"{billing_sim.url}/stats") as resp:
            stats = await resp.json()
        assert stats["payments_posted"] == 1 and stats["duplicate_payments"] == 1


async def test_bills_are_deterministic_and_a_forced_crash_refuses_all_but_stats(billing_sim: BillingSimProcess):
    billing_sim.args = ["--recovery-seconds", "60"]        # only /admin/recover brings it back
    billing_sim.start()
    async with aiohttp.ClientSession() as session:
        async def call(method: str, path: str, **kw) -> tuple[int, dict]:
            async with session.request(method, f"{billing_sim.url}{path}", **kw) as resp:
                return resp.status, await resp.json()

        status, bill = await call("GET", "/bills/2140012345")
        assert status == 200 and bill["account"] == "2140012345"
        assert bill["consumer"].endswith("2345") and bill["amount_paise"] > 0 and bill["due_date"]
        assert await call("GET", "/bills/2140012345") == (200, bill)           # same bill every time
        assert (await call("GET", "/bills/2140099999"))[1]["amount_paise"] != bill["amount_paise"]
        assert (await call("GET", "/bills/bad!"))[0] == 404

        payment = {"payment_id": "p_9", "account": "2140012345", "amount_paise": 481649}
        status, first = await call("POST", "/payments", json=payment)
        assert status == 201
        status, again = await call("POST", "/payments", json=payment)
        assert status == 200 and again == {**first, "duplicate": True}

        assert (await call("POST", "/admin/crash"))[1]["up"] is False
        assert (await call("GET", "/bills/2140012345"))[0] == 503
        assert (await call("POST", "/payments", json={**payment, "payment_id": "p_10"}))[0] == 503
        status, stats = await call("GET", "/stats")
        assert status == 200 and stats["up"] is False and stats["crashes"] == 1
        assert stats["rejected"] == 2 and stats["payments_posted"] == 1
        assert stats["duplicate_payments"] == 1

        assert (await call("POST", "/admin/recover"))[1]["up"] is True
        assert await call("GET", "/bills/2140012345") == (200, bill)
