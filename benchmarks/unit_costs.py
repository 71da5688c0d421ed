"""What one token and one live connection cost: the measured units the scaling sheet projects from.

Starts a ``counter-server`` (SQLite, then Redis with a redis-server of its own, in memory) on
loopback, keeps one hall board connected, issues tokens over every hall of the scenario, and
reads per token: the server's CPU time, Redis commands, bytes to and from Redis and Redis
memory; per change, the bytes of the delta a board receives; and per idle board connection,
the server's memory. docs/scaling.md is worked out from these figures.

    python -m benchmarks.unit_costs [--tokens 2000] [--connections 1000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path

import aiohttp
import redis

from benchmarks.token_latency import admission_off
from counter_server.config import load_scenario
from testkit.figures import Figure, memory_mb, print_table, progress
from testkit.processes import RedisProcess, ServerProcess
from testkit.scenarios import OPEN_ALL_DAY, REDIS_SCENARIO, paid_service
from testkit.waiting import wait_until_async

NAME = "unit costs"
CLIENTS = 20


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_counts(client: redis.Redis) -> tuple[int, int, int]:
    """Commands run, bytes in and out, and memory used by a redis-server."""
    commands = sum(v["calls"] for k, v in client.info("commandstats").items())
    stats, memory = client.info("stats"), client.info("memory")
    return commands, stats["total_net_input_bytes"] + stats["total_net_output_bytes"], memory["used_memory"]


async def issue_tokens(server: ServerProcess, halls: list[str], service: str, n: int) -> None:
    """``n`` tokens over ``halls`` from CLIENTS clients, door admission off."""
    await admission_off(server.url, server.admin_key, halls)
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    todo = iter(range(n))
    async with aiohttp.ClientSession(headers=headers) as session:
        async def client() -> None:
            for i in todo:
                async with session.post(f"{server.url}/api/v1/substations/{halls[i % len(halls)]}/tokens",
                                        json={"service": service}) as resp:
                    assert resp.status == 201, await resp.text()

        await asyncio.gather(*[client() for _ in range(CLIENTS)])


async def measure_engine(label: str, server: ServerProcess, n: int, redis_port: int | None,
                         connections: int) -> list[Figure]:
    scenario = load_scenario(server.config)
    halls, service = list(scenario.substations), paid_service(scenario)
    server.start()
    try:
        headers = {"Authorization": f"Bearer {server.admin_key}"}
        await issue_tokens(server, halls, service, 50)              # warm up
        client = redis.Redis(port=redis_port) if redis_port else None
        connector = aiohttp.TCPConnector(limit=0)   # every board holds its connection
        async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
            deltas: list[int] = []
            board = await session.ws_connect(f"{server.url}/api/v1/substations/{halls[0]}/live")

            async def read_board() -> None:
                async for message in board:
                    if message.type == aiohttp.WSMsgType.TEXT and json.loads(message.data)["type"] == "delta":
                        deltas.append(len(message.data.encode()))

            reader = asyncio.create_task(read_board())
            cpu_before = cpu_seconds(server.proc.pid)
            redis_before = redis_counts(client) if client else None
            progress(f"{NAME}: {label}: {n} tokens over {len(halls)} halls ...")
            await issue_tokens(server, halls, service, n)
            cpu = cpu_seconds(server.proc.pid) - cpu_before
            figures = [Figure(NAME, f"{label}: server CPU per token", cpu / n * 1000, "ms")]
            if client is not None:
                commands, moved, used = (after - before for after, before
                                         in zip(redis_counts(client), redis_before))
                figures += [Figure(NAME, f"{label}: Redis commands per token", commands / n),
                            Figure(NAME, f"{label}: bytes to and from Redis per token", moved / n, "B"),
                            Figure(NAME, f"{label}: Redis memory per token", used / n, "B")]
            await wait_until_async(lambda: len(deltas), what="a delta on the board", timeout=5)
            figures.append(Figure(NAME, f"{label}: bytes per delta to a board", sum(deltas) / len(deltas), "B"))
            reader.cancel()
            await board.close()

            progress(f"{NAME}: {label}: {connections} idle board connections ...")
            rss_before = memory_mb(server.proc.pid)[0]
            boards = [await session.ws_connect(f"{server.url}/api/v1/substations/{halls[i % len(halls)]}/live")
                      for i in range(connections)]
            for ws in boards:
                await ws.receive()                                      # its snapshot
            rss = memory_mb(server.proc.pid)[0] - rss_before
            figures.append(Figure(NAME, f"{label}: server memory per board connection",
                                  rss * 1024 / connections, "KB"))
            for ws in boards:
                await ws.close()
        peak = memory_mb(server.proc.pid)[1]
        return [Figure(f.benchmark, f.name, f.value, f.unit, peak_rss_mb=peak) for f in figures]
    finally:
        server.stop()


async def measure(tokens: int = 2000, connections: int = 1000) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        figures = await measure_engine("SQLite", ServerProcess(data_dir=root / "sqlite", config=OPEN_ALL_DAY),
                                       tokens, None, connections)
        store = RedisProcess(dir=root / "redis")
        store.start()
        try:
            config = root / "redis.toml"
            config.write_text(REDIS_SCENARIO.format(url=store.url))
            figures += await measure_engine("Redis", ServerProcess(data_dir=root / "r", config=config),
                                            tokens, store.port, connections)
        finally:
            store.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="one JSON object of the figures")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.tokens, args.connections))
    if args.json:
        print(json.dumps({f.name: round(f.value, 3) for f in figures}, indent=1))
    else:
        print_table(figures)


if __name__ == "__main__":
    main()
