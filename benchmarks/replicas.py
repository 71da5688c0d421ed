"""Token issue throughput: SQLite vs Redis engine, one replica vs two, measured in one run.

Starts ``counter-server`` processes on loopback ports and a redis-server of its own (in memory,
and once more with an AOF fsynced on every write), door admission off, and drives each with wrk
(``benchmarks.token_wrk``: a load generator in C, its own Idempotency-Key per request, over the
scenario's halls):
  * SQLite engine, one process (the engine is embedded: one process owns the file);
  * Redis engine, one replica;
  * Redis engine, two replicas, each taking half the connections over every hall (a load
    balancer that spreads requests), and once more with the halls split between them (one that
    sends each hall to one replica, as a hash on the hall would);
  * Redis engine with ``appendonly yes, appendfsync always``, one replica.
Beside each: changes run again (another replica changed the queue first) per 1,000 writes.

    python -m benchmarks.replicas [--seconds 5] [--connections 50]

All processes share this machine's cores, so two replicas compete with Redis and wrk for CPU:
the table shows what a second replica buys *here*, not on separate machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.token_latency import RAISED_LIMITS, Load, admission_off
from benchmarks.token_wrk import issue_script, run_wrk
from testkit.figures import Figure, memory_mb, print_table, progress
from testkit.processes import RedisProcess, ServerProcess
from testkit.scenarios import OPEN_ALL_DAY, REDIS_SCENARIO

NAME = "replicas"


async def store_counts(servers: list[ServerProcess], key: str) -> tuple[float, float]:
    """Commits and conflicts (changes run again) of all ``servers``, from their /metrics."""
    commits = conflicts = 0.0
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
        for server in servers:
            async with session.get(f"{server.url}/metrics") as resp:
                text = await resp.text()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "counter_server_store_commits_total":
                        commits += sample.value
                    elif sample.name == "counter_server_store_conflicts_total":
                        conflicts += sample.value
    return commits, conflicts


async def run(label: str, servers: list[ServerProcess], load: Load, seconds: float, connections: int,
              split_halls: bool, scratch: Path) -> tuple[str, float, float, float, float]:
    """(label, tokens/s over all replicas, worst p99 ms, peak RSS MB of the largest replica,
    changes run again per 1,000 writes)."""
    for server in servers:   # one after the other: the first writes the admin key
        server.start()
    try:
        key = servers[0].admin_key
        await admission_off(servers[0].url, key, load.halls)
        shares = [load.halls[i::len(servers)] if split_halls else load.halls for i in range(len(servers))]
        each = max(1, connections // len(servers))

        async def drive(duration: float) -> list:
            # Scripts of their own each run: wrk numbers its requests from 1 again, and a key of
            # the warm-up would be answered as a replay, not a new token.
            scripts = [issue_script(halls, load.service, key) for halls in shares]
            return await asyncio.gather(*[asyncio.to_thread(run_wrk, server.url, script, scratch, duration, each)
                                          for server, script in zip(servers, scripts)])

        await drive(1.0)                                               # warm up: caches, scripts
        _, conflicts_before = await store_counts(servers, key)
        progress(f"{NAME}: {label}: wrk for {seconds:g} s, {connections} connections ...")
        runs = await drive(seconds)
        _, conflicts_after = await store_counts(servers, key)
        peak = max(memory_mb(s.proc.pid)[1] for s in servers)
    finally:
        for server in servers:
            server.stop()
    written = sum(r.requests - r.failed for r in runs)
    per_1000 = (conflicts_after - conflicts_before) / max(1, written) * 1000
    return (label, sum(r.ok_per_s for r in runs), max(r.latency_p99_ms for r in runs), peak, per_1000)


async def measure(seconds: float = 5.0, connections: int = 50) -> list[Figure]:
    rows = []
    load = Load.of(OPEN_ALL_DAY)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        def server(name: str, config: Path) -> ServerProcess:
            return ServerProcess(data_dir=root / name, config=config, extra_args=RAISED_LIMITS)

        rows.append(await run("SQLite, 1 process", [server("sqlite", OPEN_ALL_DAY)], load, seconds,
                              connections, False, root))
        for label, appendonly, replicas, split in (
                ("Redis, 1 replica", False, 1, False), ("Redis, 2 replicas", False, 2, False),
                ("Redis, 2 replicas, halls split", False, 2, True),
                ("Redis AOF always, 1 replica", True, 1, False)):
            redis = RedisProcess(dir=root / f"redis-{len(rows)}", appendonly=appendonly)
            redis.start()
            try:
                config = root / f"redis-{len(rows)}.toml"
                config.write_text(REDIS_SCENARIO.format(url=redis.url))
                servers = [server(f"r{len(rows)}-{i}", config) for i in range(replicas)]
                rows.append(await run(label, servers, load, seconds, connections, split, root))
            finally:
                redis.stop()
    base, one_replica = rows[0][1], rows[1][1]
    figures = []
    for label, rate, p99, peak, per_1000 in rows:
        figures += [Figure(NAME, f"{label}, {connections} connections", rate, "tokens/s", peak_rss_mb=peak),
                    Figure(NAME, f"{label}, p99", p99, "ms", peak_rss_mb=peak)]
        if label.startswith("Redis, 1"):     # per-token cost within 1.5x of SQLite's
            figures.append(Figure(NAME, f"{label}, vs SQLite", rate / base, "x", ">= 0.67",
                                  rate / base >= 1 / 1.5, peak))
        elif label.startswith("Redis, 2"):   # a second replica must not make writes slower
            figures.append(Figure(NAME, f"{label}, vs 1 replica", rate / one_replica, "x", ">= 1.0",
                                  rate / one_replica >= 1.0, peak))
        else:
            figures.append(Figure(NAME, f"{label}, vs SQLite", rate / base, "x", peak_rss_mb=peak))
        if not label.startswith("SQLite"):
            figures.append(Figure(NAME, f"{label}, changes run again per 1,000 writes", per_1000, "",
                                  peak_rss_mb=peak))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="how long wrk drives each setup")
    parser.add_argument("--connections", type=int, default=50, help="wrk's connections, over all replicas")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.seconds, args.connections))
    print(f"machine: {os.cpu_count()} CPU cores, shared by the servers, Redis and wrk")
    print_table(figures)


if __name__ == "__main__":
    main()
