"""Redis Sentinel: a replica of ours follows a failover by itself, and a token it acknowledged
survives the loss of the Redis primary (it waits for a Redis replica to have it first).

The test's own Redis primary, two Redis replicas and three Sentinels on loopback; one
counter-server replica given the Sentinels. Clients issue tokens through it; the primary is
SIGKILLed mid-way; the Sentinels promote a replica; issuing goes on. Every token acknowledged
(201) before, during or after must be there afterwards, and no number may repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from pathlib import Path

import aiohttp
import redis

from counter_server.config import load_scenario
from testkit.api import bearer
from testkit.processes import RedisProcess, SentinelProcess, ServerProcess, run_cli
from testkit.scenarios import REDIS_SCENARIO, paid_service
from testkit.waiting import wait_until, wait_until_async

MASTER = "mymaster"
ISSUERS = 4
BEFORE_KILL = 60      # tokens acknowledged before the primary is killed
AFTER_FAILOVER = 60   # and after the first one acknowledged by the new primary


def sentinels_see_everyone(sentinels: list[SentinelProcess]) -> bool:
    for sentinel in sentinels:
        with redis.Redis(port=sentinel.port, socket_timeout=1, decode_responses=True) as client:
            state = client.sentinel_master(MASTER)
        if int(state["num-other-sentinels"]) < len(sentinels) - 1 or int(state["num-slaves"]) < 2:
            return False
    return True


def in_sync(replica: RedisProcess) -> bool:
    with redis.Redis(port=replica.port, socket_timeout=1, decode_responses=True) as client:
        return client.info("replication").get("master_link_status") == "up"


def primary_port(sentinel: SentinelProcess) -> int:
    with redis.Redis(port=sentinel.port, socket_timeout=1, decode_responses=True) as client:
        return int(client.sentinel_get_master_addr_by_name(MASTER)[1])


async def test_acknowledged_tokens_survive_a_sentinel_failover_and_no_number_repeats(tmp_path: Path):
    primary = RedisProcess(dir=tmp_path / "primary")
    replicas = [RedisProcess(dir=tmp_path / f"replica-{n}", args=["--replicaof", "127.0.0.1", str(primary.port)])
                for n in (1, 2)]
    sentinels = [SentinelProcess(dir=tmp_path / f"sentinel-{n}", primary_port=primary.port, master=MASTER)
                 for n in (1, 2, 3)]
    config = tmp_path / "sentinel.toml"
    config.write_text(REDIS_SCENARIO.format(url="redis://127.0.0.1:6379/0"))  # the address is the Sentinels'
    scenario = load_scenario(config)
    service = paid_service(scenario)
    halls = list(scenario.substations)
    server = ServerProcess(data_dir=tmp_path / "replica", config=config, extra_args=[
        "--rate-limit", "0", "--redis-master", MASTER,
        *(arg for s in sentinels for arg in ("--redis-sentinel", s.address))])
    processes = [primary, *replicas, *sentinels, server]
    try:
        for process in (primary, *replicas, *sentinels):
            process.start()
        wait_until(lambda: sentinels_see_everyone(sentinels), what="the Sentinels to know each other and the replicas",
                   timeout=20, interval=0.2)
        wait_until(lambda: all(in_sync(r) for r in replicas), what="the replicas in sync", timeout=10)
        server.start()
        key = server.admin_key
        acked: dict[str, dict] = {}
        refused = Counter()
        first_after: list[float] = []
        killed_at: list[float] = []
        stop = asyncio.Event()
        async with aiohttp.ClientSession(headers=bearer(key), timeout=aiohttp.ClientTimeout(total=10)) as session:
            async def issuer(n: int) -> None:
                for i in range(n, 10**9, ISSUERS):
                    if stop.is_set():
                        return
                    sid = halls[i % len(halls)]
                    sent_at = time.monotonic()
                    try:
                        async with session.post(f"{server.url}/api/v1/substations/{sid}/tokens",
                                                json={"service": service}) as resp:
                            body = await resp.json()
                    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                        refused[type(exc).__name__] += 1
                        continue
                    if resp.status != 201:
                        refused[resp.status] += 1
                        await asyncio.sleep(0.05)
                        continue
                    acked[body["token"]["id"]] = body["token"]
                    if killed_at and sent_at > killed_at[0] and not first_after:
                        first_after.append(time.monotonic())   # sent after the kill: the new primary

            issuers = [asyncio.create_task(issuer(n)) for n in range(ISSUERS)]
            await wait_until_async(lambda: len(acked) >= BEFORE_KILL, what=f"{BEFORE_KILL} tokens", timeout=30)
            old_primary = primary.port
            primary.kill()
            killed_at.append(time.monotonic())
            at_kill = len(acked)
            await wait_until_async(lambda: bool(first_after), what="a token acknowledged after the failover",
                                   timeout=40, interval=0.1)
            after = len(acked)
            await wait_until_async(lambda: len(acked) >= after + AFTER_FAILOVER, what="tokens after the failover",
                                   timeout=30)
            stop.set()
            await asyncio.wait(issuers, timeout=15)
            promoted = primary_port(sentinels[0])

            missing, wrong = [], []
            for token_id, seen in acked.items():
                async with session.get(f"{server.url}/api/v1/tokens/{token_id}") as resp:
                    if resp.status != 200:
                        missing.append(seen["number"])
                        continue
                    stored = (await resp.json())["token"]
                if stored["number"] != seen["number"]:
                    wrong.append((seen["number"], stored["number"]))
            numbers = Counter((t["day"], t["substation"], t["number"]) for t in acked.values())
            repeated = [n for n, times in numbers.items() if times > 1]
            for sid in halls:                          # nor in what the queue holds now
                async with session.get(f"{server.url}/api/v1/substations/{sid}/queue") as resp:
                    queue = (await resp.json())["tokens"]
                listed = Counter((t["day"], t["number"]) for t in queue)
                repeated += [n for n, times in listed.items() if times > 1]
    finally:
        for process in processes:
            with contextlib.suppress(Exception):
                process.stop()
    follow_s = first_after[0] - killed_at[0]
    print(f"Sentinel failover: {len(acked)} acknowledged ({at_kill} before the kill), {len(missing)} lost, "
          f"{len(repeated)} repeated; the new primary served {follow_s:.2f} s after the kill; refused {dict(refused)}")
    assert promoted != old_primary, "the Sentinels should have promoted a replica"
    assert not missing and not wrong and not repeated, (missing, wrong, repeated)
    assert follow_s < 20.0


async def test_with_sentinels_a_change_no_replica_has_is_not_acknowledged(tmp_path: Path):
    """min_replicas_ack defaults to 1 with Sentinels: once the primary's only replica is gone,
    the primary still takes a write, but WAIT finds no replica with it, so the client is told
    503 (retry with the same Idempotency-Key), not 201."""
    primary = RedisProcess(dir=tmp_path / "primary")
    replica = RedisProcess(dir=tmp_path / "replica-1", args=["--replicaof", "127.0.0.1", str(primary.port)])
    sentinel = SentinelProcess(dir=tmp_path / "sentinel", primary_port=primary.port, master=MASTER, quorum=1)
    config = tmp_path / "sentinel.toml"
    config.write_text(REDIS_SCENARIO.format(url="redis://127.0.0.1:6379/0"))
    scenario = load_scenario(config)
    sid = next(iter(scenario.substations))
    server = ServerProcess(data_dir=tmp_path / "replica", config=config, extra_args=[
        "--rate-limit", "0", "--redis-master", MASTER, "--redis-sentinel", sentinel.address])
    try:
        for process in (primary, replica, sentinel):
            process.start()
        wait_until(lambda: in_sync(replica), what="the replica in sync", timeout=10)
        server.start()
        async with aiohttp.ClientSession(headers=bearer(server.admin_key),
                                         timeout=aiohttp.ClientTimeout(total=10)) as session:
            async def issue() -> tuple[int, dict]:
                async with session.post(f"{server.url}/api/v1/substations/{sid}/tokens",
                                        json={"service": paid_service(scenario)}) as resp:
                    return resp.status, await resp.json()

            assert (await issue())[0] == 201              # the replica has it
            replica.kill()
            status, body = await wait_until_async(issue, done=lambda answer: answer[0] != 201,
                                                  what="a change no replica has", timeout=10)
            assert status == 503 and "not acknowledged" in body["error"]["message"], body
    finally:
        for process in (server, sentinel, replica, primary):
            process.stop()


def test_a_sentinel_that_is_not_host_port_is_refused_where_it_is_written(tmp_path: Path):
    config = tmp_path / "bad.toml"
    config.write_text(REDIS_SCENARIO.format(url="redis://127.0.0.1:6379/0")
                      + 'redis_sentinels = ["127.0.0.1:26379", "sentinel-without-port"]\n')
    checked = run_cli("check-config", str(config), check=False)
    assert checked.returncode == 2 and "redis_sentinels" in checked.stderr, checked.stderr
    served = run_cli("serve", "--store", "redis", "--redis-sentinel", "nowhere", check=False)
    assert served.returncode == 2 and "HOST:PORT" in served.stderr, served.stderr
