"""/healthz says the process lives, /readyz whether it can serve: a replica on its own
redis-server, which the test kills, restarts, or starts only after the replica."""

from __future__ import annotations

import signal
import time
from dataclasses import replace
from pathlib import Path

import aiohttp

from counter_server.config import load_scenario
from counter_server.app import create_app
from counter_server.config import Settings
from testkit.api import bearer
from testkit.processes import RedisProcess, ServerProcess
from testkit.scenarios import REDIS_SCENARIO, paid_service
from testkit.waiting import wait_until_async


def replica_on(tmp_path: Path, redis: RedisProcess) -> ServerProcess:
    config = tmp_path / "redis.toml"
    config.write_text(REDIS_SCENARIO.format(url=redis.url))
    return ServerProcess(data_dir=tmp_path / "replica", config=config)


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with session.get(url) as resp:
        return resp.status, await resp.json()


async def test_a_server_on_its_sqlite_file_is_ready_and_health_checks_are_never_rate_limited(
        aiohttp_client, settings: Settings):
    client = await aiohttp_client(create_app(replace(settings, write_admin_key=False,
                                                     rate_limit_per_s=1, rate_limit_burst=2)))
    for path in ("/readyz", "/healthz"):
        for _ in range(30):   # an address gets ten times a key's burst of 2: far past it
            async with client.get(path) as resp:
                assert resp.status == 200, await resp.text()
    async with client.get("/readyz") as resp:
        assert await resp.json() == {"status": "ready"}
    statuses = set()
    for _ in range(30):                                       # the limit does apply elsewhere
        async with client.get("/api/v1/openapi.json") as resp:
            statuses.add(resp.status)
    assert statuses == {200, 429}


async def test_readiness_is_503_with_the_reason_while_redis_is_away_and_200_again_after(tmp_path: Path):
    redis = RedisProcess(dir=tmp_path / "redis")
    redis.start()
    replica = replica_on(tmp_path, redis)
    replica.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            # Ready once its event follower's first read has come back (within a second).
            await wait_until_async(lambda: get(session, replica.url + "/readyz"),
                                   done=lambda answer: answer == (200, {"status": "ready"}),
                                   what="/readyz to say ready", timeout=5)
            redis.kill()
            started = time.monotonic()
            status, body = await wait_until_async(lambda: get(session, replica.url + "/readyz"),
                                                  done=lambda answer: answer[0] == 503,
                                                  what="/readyz to say not ready", timeout=10)
            went_down = time.monotonic() - started
            assert body["error"]["code"] == "not_ready"
            assert body["error"]["reason"] in ("store_unreachable", "events_not_followed")
            status, health = await get(session, replica.url + "/healthz")   # the process lives
            assert status == 200 and health["status"] == "ok"
            redis.start()                                                   # same port
            started = time.monotonic()
            await wait_until_async(lambda: get(session, replica.url + "/readyz"),
                                   done=lambda answer: answer == (200, {"status": "ready"}),
                                   what="/readyz to say ready again", timeout=15)
            came_back = time.monotonic() - started
    finally:
        replica.stop()
        redis.stop()
    assert went_down < 3.0 and came_back < 10.0, (went_down, came_back)


async def test_a_replica_started_before_redis_is_alive_not_ready_and_serves_once_redis_answers(tmp_path: Path):
    redis = RedisProcess(dir=tmp_path / "redis")     # its port is chosen; it is not started yet
    replica = replica_on(tmp_path, redis)
    scenario = load_scenario(replica.config)
    substation = next(iter(scenario.substations))
    replica.start()                                  # listens although Redis does not answer
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            assert await get(session, replica.url + "/healthz") == (200, {"status": "ok", "ready": False})
            status, body = await get(session, replica.url + "/readyz")
            assert status == 503 and body["error"]["reason"] == "store_unreachable", body
            async with session.post(f"{replica.url}/api/v1/substations/{substation}/tokens",
                                    json={"service": paid_service(scenario)}) as resp:
                assert resp.status == 503 and resp.headers["Retry-After"] == "1"
                assert (await resp.json())["error"]["code"] == "not_ready"
            redis.start()
            started = time.monotonic()
            await wait_until_async(lambda: get(session, replica.url + "/readyz"),
                                   done=lambda answer: answer == (200, {"status": "ready"}),
                                   what="the replica to become ready", timeout=15)
            became_ready = time.monotonic() - started
            async with session.post(f"{replica.url}/api/v1/substations/{substation}/tokens",
                                    headers=bearer(replica.admin_key),
                                    json={"service": paid_service(scenario)}) as resp:
                assert resp.status == 201, await resp.text()
    finally:
        replica.stop()
        redis.stop()
    log = replica.log()
    assert "does not answer" in log and "answers after" in log, log
    assert became_ready < 8.0, became_ready   # the pause doubles to store_retry_max_s (5 s)


def test_a_replica_waiting_for_redis_stops_at_once_on_sigterm(tmp_path: Path):
    redis = RedisProcess(dir=tmp_path / "redis")     # never started
    replica = replica_on(tmp_path, redis)
    replica.start()
    assert replica.proc is not None
    started = time.monotonic()
    replica.proc.send_signal(signal.SIGTERM)
    assert replica.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 2.0
