"""A server process killed with SIGKILL mid-way through issuing tokens loses nothing it acknowledged."""

from __future__ import annotations

import asyncio

import aiohttp

from testkit.api import bearer
from testkit.processes import ServerProcess
from testkit.waiting import wait_until_async


async def _issue_until_killed(session, url, key, acked, stop: asyncio.Event, substation: str):
    while not stop.is_set():
        try:
            async with session.post(f"{url}/api/v1/substations/{substation}/tokens", headers=bearer(key),
                                    json={"service": "bill_payment"}) as resp:
                if resp.status == 201:
                    token = (await resp.json())["token"]
                    acked[token["id"]] = token
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return


async def _serve_some(session, url, key, acked, counter):
    async with session.post(f"{url}/api/v1/counters/{counter}/next", headers=bearer(key)) as resp:
        token = (await resp.json())["token"]
    if token is None:
        return
    acked[token["id"]] = token
    async with session.post(f"{url}/api/v1/tokens/{token['id']}/start", headers=bearer(key)) as resp:
        acked[token["id"]] = (await resp.json())["token"]


async def test_sigkill_while_issuing_loses_no_acknowledged_token(server_process: ServerProcess):
    server_process.start()
    key = server_process.admin_key
    acked: dict[str, dict] = {}
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        stop = asyncio.Event()
        workers = [asyncio.create_task(
            _issue_until_killed(session, server_process.url, key, acked, stop, sub))
            for sub in ("S01", "S01", "S01", "S02", "S02", "S03")]
        await wait_until_async(lambda: len(acked) >= 60, what="60 tokens acknowledged", timeout=30, interval=0.01)
        # Serve some, so states other than "waiting" must survive too.
        for counter in ("S01-C1", "S01-C2", "S02-C1"):
            await _serve_some(session, server_process.url, key, acked, counter)
        await wait_until_async(lambda: len(acked) >= 300, what="300 tokens acknowledged", timeout=60,
                               interval=0.005)
        server_process.kill()                      # mid-flight: six workers are still issuing
        stop.set()
        await asyncio.gather(*workers)

    assert len(acked) >= 300
    server_process.start()
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for token_id, seen in acked.items():
            async with session.get(f"{server_process.url}/api/v1/tokens/{token_id}",
                                   headers=bearer(key)) as resp:
                assert resp.status == 200, f"acknowledged token {seen['number']} lost"
                stored = (await resp.json())["token"]
            assert (stored["number"], stored["status"], stored["counter"]) == (
                seen["number"], seen["status"], seen["counter"])
        assert {t["status"] for t in acked.values()} >= {"waiting", "serving"}

        for sub in ("S01", "S02", "S03"):
            used = {t["number"] for t in acked.values() if t["substation"] == sub}
            async with session.get(f"{server_process.url}/api/v1/substations/{sub}/queue",
                                   headers=bearer(key)) as resp:
                queue = (await resp.json())["tokens"]
            numbers = [t["number"] for t in queue]
            assert len(numbers) == len(set(numbers))
            used |= set(numbers)
            async with session.post(f"{server_process.url}/api/v1/substations/{sub}/tokens",
                                    headers=bearer(key), json={"service": "bill_payment"}) as resp:
                fresh = (await resp.json())["token"]["number"]
            assert fresh not in used
            assert int(fresh[2:]) > max(int(n[2:]) for n in used)
