"""Token issue throughput: SQLite vs Redis engine, one replica vs two, measured in one run.

Starts ``counter-server`` processes on loopback ports and a redis-server of its own (in memory,
and once more with an AOF fsynced on every write), then has N concurrent clients issue tokens
over the ten substations, as ``benchmarks.token_latency`` does:
  * SQLite engine, one process (the engine is embedded: one process owns the file);
  * Redis engine, one replica;
  * Redis engine, two replicas, the clients split evenly between them (as a load balancer would);
  * Redis engine with ``appendonly yes, appendfsync always``, one replica.

    python -m benchmarks.replicas [--requests 2000] [--concurrency 50] [--rounds 1]

All processes share this machine's cores, so two replicas compete with Redis and the clients
for CPU: the table shows what a second replica buys *here*, not on separate machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.token_latency import closed_loop
from testkit.figures import Figure, memory_mb, percentile, print_table, progress
from testkit.processes import RedisProcess, ServerProcess
from testkit.scenarios import OPEN_ALL_DAY, REDIS_SCENARIO

NAME = "replicas"


async def together(servers: list[ServerProcess], key: str, n: int, concurrency: int) -> tuple[float, float]:
    """Tokens issued per second over all ``servers`` at once, and the worst replica's p99 ms.

    Each replica gets an equal share of the requests and of the clients, as from a load balancer."""
    share, clients = n // len(servers), max(1, concurrency // len(servers))
    start = time.perf_counter()
    results = await asyncio.gather(*[closed_loop(s.url, key, share, clients) for s in servers])
    elapsed = time.perf_counter() - start
    return share * len(servers) / elapsed, max(p99 for _, p99, _ in results)


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


async def run(label: str, servers: list[ServerProcess], n: int, concurrency: int,
              rounds: int) -> tuple[str, float, float, float, float]:
    """(label, median tokens/s, median p99 ms, peak RSS MB of the largest replica, changes run
    again per 1,000 writes)."""
    for server in servers:   # one after the other: the first writes the admin key
        server.start()
    try:
        key = servers[0].admin_key
        await together(servers, key, min(200, n), concurrency)          # warm up: caches, scripts
        rates, p99s = [], []
        _, conflicts_before = await store_counts(servers, key)
        for r in range(rounds):
            progress(f"{NAME}: {label}, round {r + 1}/{rounds}: {n} issues from {concurrency} clients ...")
            rate, p99 = await together(servers, key, n, concurrency)
            rates.append(rate)
            p99s.append(p99)
        _, conflicts_after = await store_counts(servers, key)
        peak = max(memory_mb(s.proc.pid)[1] for s in servers)
    finally:
        for server in servers:
            server.stop()
    per_1000 = (conflicts_after - conflicts_before) / (n * rounds) * 1000
    return label, percentile(rates, 0.5), percentile(p99s, 0.5), peak, per_1000


async def measure(requests: int = 2000, concurrency: int = 50, rounds: int = 1) -> list[Figure]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows.append(await run("SQLite, 1 process",
                              [ServerProcess(data_dir=root / "sqlite", config=OPEN_ALL_DAY)],
                              requests, concurrency, rounds))
        for label, appendonly, replicas in (("Redis, 1 replica", False, 1), ("Redis, 2 replicas", False, 2),
                                            ("Redis AOF always, 1 replica", True, 1)):
            redis = RedisProcess(dir=root / f"redis-{len(rows)}", appendonly=appendonly)
            redis.start()
            try:
                config = root / f"redis-{len(rows)}.toml"
                config.write_text(REDIS_SCENARIO.format(url=redis.url))
                servers = [ServerProcess(data_dir=root / f"r{len(rows)}-{i}", config=config)
                           for i in range(replicas)]
                rows.append(await run(label, servers, requests, concurrency, rounds))
            finally:
                redis.stop()
    base, one_replica = rows[0][1], rows[1][1]
    figures = []
    for label, rate, p99, peak, per_1000 in rows:
        figures += [Figure(NAME, f"{label}, {concurrency} clients", rate, "tokens/s", peak_rss_mb=peak),
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
    parser.add_argument("--requests", type=int, default=2000, help="issues per round")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    figures = asyncio.run(measure(args.requests, args.concurrency, args.rounds))
    print(f"machine: {os.cpu_count()} CPU cores, shared by the servers, Redis and the clients")
    print_table(figures)


if __name__ == "__main__":
    main()
