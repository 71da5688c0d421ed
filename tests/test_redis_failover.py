"""Redis itself fails: a primary, two replicas and three Sentinels (real ``redis-server``
processes on loopback), and a ``counter-server`` following them. Tokens are issued all along;
the primary is killed with SIGKILL; after the Sentinels promote the replica, every token the
server acknowledged is there and no number was handed out twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from counter_server.config import load_scenario
from testkit.api import bearer
from testkit.processes import RedisProcess, ServerProcess
from testkit.scenarios import LAKESIDE, paid_service
from testkit.sentinel import MASTER, SentinelProcess, replica_of
from testkit.waiting import wait_until_async

ISSUING_S = 12.0          # tokens are issued for this long in all; the primary dies at 2 s


async def test_acknowledged_tokens_survive_the_loss_of_the_redis_primary(tmp_path: Path):
    scenario = load_scenario(LAKESIDE)
    service = paid_service(scenario)
    halls = [sid for sid, s in scenario.substations.items() if service in s.services]
    primary = RedisProcess(dir=tmp_path / "primary")
    primary.start()
    replicas = [replica_of(primary, tmp_path / f"replica{i}") for i in range(2)]
    for replica in replicas:     # two: after one is promoted, the other confirms changes (WAIT)
        replica.start()
    sentinels = [SentinelProcess(dir=tmp_path / f"sentinel{i}", primary_port=primary.port) for i in range(3)]
    server: ServerProcess | None = None
    try:
        for sentinel in sentinels:
            sentinel.start()

        async def replicas_ready() -> bool:
            """Both replicas in sync with the primary, and known to the Sentinels."""
            on_primary = Redis(port=primary.port, decode_responses=True)
            on_sentinel = Redis(port=sentinels[0].port, decode_responses=True)
            try:
                info = await on_primary.info("replication")
                online = sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                             and v.get("state") == "online")
                known = await on_sentinel.execute_command("SENTINEL", "REPLICAS", MASTER)
                return online == 2 and len(known) == 2
            finally:
                await on_primary.aclose()
                await on_sentinel.aclose()

        await wait_until_async(replicas_ready, what="both replicas in sync and known to the Sentinels", timeout=20)
        config = tmp_path / "lakeside-redis.toml"
        config.write_text(LAKESIDE.read_text() + '\n[store]\nengine = "redis"\n'
                          f'redis_url = "redis://127.0.0.1:{primary.port}/0"\n')
        server = ServerProcess(data_dir=tmp_path / "data", config=config, extra_args=[
            "--rate-limit", "0", "--redis-master", MASTER,
            *[arg for s in sentinels for arg in ("--redis-sentinel", s.address)]])
        server.start()
        assert "changes wait for 1 replica(s)" in server.log_once("Sentinels")
        key = server.admin_key
        acknowledged: dict[str, tuple[str, str]] = {}     # token id -> (hall, number)
        refused: list[int] = []
        killed_at: float | None = None
        first_after_kill: float | None = None
        deadline = time.monotonic() + ISSUING_S

        async with aiohttp.ClientSession(headers=bearer(key),
                                         timeout=aiohttp.ClientTimeout(total=5)) as session:
            for hall in halls:    # the line grows long: the door must not turn anyone away
                async with session.put(f"{server.url}/api/v1/ops/substations/{hall}/admission",
                                       json={"admission": False}) as resp:
                    assert resp.status == 200, await resp.text()

            async def issuer(k: int) -> None:
                nonlocal first_after_kill
                hall = halls[k % len(halls)]
                while time.monotonic() < deadline:
                    idem = uuid.uuid4().hex
                    while time.monotonic() < deadline:      # the same key until it is answered
                        sent_at = time.monotonic()
                        try:
                            async with session.post(f"{server.url}/api/v1/substations/{hall}/tokens",
                                                    json={"service": service},
                                                    headers={"Idempotency-Key": idem}) as resp:
                                body = await resp.json()
                                status = resp.status
                        except (aiohttp.ClientError, asyncio.TimeoutError):
                            status, body = 0, None
                        if status == 201:
                            token = body["token"]
                            acknowledged[token["id"]] = (hall, token["number"])
                            if killed_at is not None and sent_at > killed_at and first_after_kill is None:
                                first_after_kill = time.monotonic()   # asked of the new primary
                            break
                        refused.append(status)
                        assert status in (0, 503), body
                        await asyncio.sleep(0.1)

            tasks = [asyncio.create_task(issuer(k)) for k in range(4)]
            await asyncio.sleep(2.0)
            before_kill = len(acknowledged)
            primary.kill()
            killed_at = time.monotonic()
            await asyncio.gather(*tasks)

        assert before_kill > 0 and first_after_kill is not None, (before_kill, refused[-5:], server.log()[-2000:])
        followed_s = first_after_kill - killed_at
        after_kill = len(acknowledged) - before_kill
        print(f"\nfailover: {before_kill} tokens before the kill, {after_kill} after; "
              f"issuing again {followed_s:.1f} s after the primary died; {len(refused)} answers refused meanwhile")
        # Every acknowledged token is in the new primary, and no number was used twice.
        found: dict[str, tuple[str, str]] = {}
        async with aiohttp.ClientSession(headers=bearer(key)) as session:
            for hall in halls:
                async with session.get(f"{server.url}/api/v1/substations/{hall}/queue") as resp:
                    body = await resp.json()
                    assert resp.status == 200, body
                for token in body["tokens"]:
                    found[token["id"]] = (hall, token["number"])
        lost = set(acknowledged) - set(found)
        assert not lost, f"{len(lost)} acknowledged tokens lost in the failover"
        numbers = [(hall, number) for hall, number in found.values()]
        assert len(numbers) == len(set(numbers)), "a number was handed out twice"
        assert followed_s < 15
    finally:
        if server is not None:
            server.stop()
        for process in (*sentinels, *replicas, primary):
            process.stop()
