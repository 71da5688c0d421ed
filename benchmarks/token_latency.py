"""How fast the server issues tokens, against a bare aiohttp handler on the same machine.

Starts ``counter-server`` (SQLite, ``synchronous=FULL``, door admission off, rate limits
raised but on) and a bare aiohttp app (same JSON size, no work) as processes on loopback ports,
both pinned to core 0, then measures in one run:
  * sequential latency (one request at a time): median and p99 of issue and call-next;
  * throughput driven by wrk pinned to core 1 (``benchmarks.token_wrk``; Debian's
    ``apt-get install -y wrk``), every request its own Idempotency-Key over the scenario's
    halls, server and bare handler in alternating rounds (the median of each), and their
    ratio (target: at least 0.5); compare ratios, not absolute figures, when something else
    runs on the machine;
  * the same wrk against GET /api/v1/me (every middleware and the key, no work of its own)
    over the bare handler: the ceiling of that ratio, before a token's own work;
  * the server's CPU a token during its wrk runs, split between the event loop's thread and
    the store's threads (the kernel's count from /proc): which one to make cheaper;
  * open-loop p99 at a fixed 200 issues/s, timed from each request's scheduled moment so a
    stall counts against every request it delays (target: under 20 ms);
  * durability: the server is killed with SIGKILL and every acknowledged token is looked up
    in its SQLite file (target: all of them).

    python -m benchmarks.token_latency [--seconds 10] [--concurrency 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from benchmarks.token_wrk import LOAD_CORE, SERVER_CORE, get_script, issue_script, pin, require_wrk, run_wrk
from benchmarks.token_wrk import start_bare
from counter_server.config import load_scenario
from testkit.figures import Figure, memory_mb, percentile, print_table, progress, thread_cpu_s
from testkit.processes import ServerProcess
from testkit.scenarios import OPEN_ALL_DAY, paid_service

NAME = "token issue"
# Rate limits stay on, as for every real request, but far above what one core can issue.
RAISED_LIMITS = ["--rate-limit", "1000000", "--rate-burst", "1000000"]
# What every request pays before a handler's own work: how near 1 the token ratio could get.
CHAIN_PATH = "/api/v1/me"


@dataclass(frozen=True)
class Load:
    """What the requests ask for, taken from the scenario: its halls and its paid service."""

    halls: list[str]
    service: str
    first_counter: str

    @classmethod
    def of(cls, config: Path) -> Load:
        scenario = load_scenario(config)
        service = paid_service(scenario)
        halls = [hall.id for hall in scenario.substations.values()
                 if any(service in counter.services for counter in hall.counters)]
        first = next(c.id for c in scenario.substations[halls[0]].counters if service in c.services)
        return cls(halls, service, first)

    def issue_url(self, base: str, i: int) -> str:
        return f"{base}/api/v1/substations/{self.halls[i % len(self.halls)]}/tokens"


async def timed_post(session: aiohttp.ClientSession, url: str, **kw) -> tuple[float, dict]:
    start = time.perf_counter()
    async with session.post(url, **kw) as resp:
        body = await resp.json()
        assert resp.status in (200, 201), body
    return (time.perf_counter() - start) * 1000, body


async def admission_off(base: str, key: str, halls: list[str]) -> None:
    """Door admission off at every hall, as an admin: the door would refuse tokens that cannot
    be served before closing, and a benchmark issues far more than a day's worth."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
        for hall in halls:
            async with session.put(f"{base}/api/v1/ops/substations/{hall}/admission",
                                   json={"admission": False}) as resp:
                assert resp.status == 200, await resp.text()


async def sequential(base: str, key: str, load: Load, n: int) -> tuple[list[float], list[float]]:
    headers = {"Authorization": f"Bearer {key}"}
    issue_ms, next_ms = [], []
    async with aiohttp.ClientSession(headers=headers) as session:
        for _ in range(n):
            ms, _ = await timed_post(session, load.issue_url(base, 0), json={"service": load.service})
            issue_ms.append(ms)
            ms, body = await timed_post(session, f"{base}/api/v1/counters/{load.first_counter}/next")
            next_ms.append(ms)
            await session.post(f"{base}/api/v1/tokens/{body['token']['id']}/cancel")
    return issue_ms, next_ms


async def open_loop(base: str, key: str, load: Load, rate: float, seconds: float) -> tuple[float, float, list[str]]:
    """p50 and p99 ms at a fixed arrival rate, each timed from its scheduled send moment."""
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    acknowledged: list[str] = []

    async def one(session: aiohttp.ClientSession, i: int, due: float) -> None:
        async with session.post(load.issue_url(base, i), json={"service": load.service}) as resp:
            body = await resp.json()
            assert resp.status == 201, body
        latencies.append((time.perf_counter() - due) * 1000)
        acknowledged.append(body["token"]["id"])

    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=0)) as session:
        for i in range(50):                               # warm the connection pool first
            await timed_post(session, load.issue_url(base, i), json={"service": load.service})
        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(session, i, due)))
        await asyncio.gather(*tasks)
    return percentile(latencies, 0.5), percentile(latencies, 0.99), acknowledged


def tokens_in(database: Path) -> int:
    """How many tokens the SQLite file holds in all."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT count(*) FROM tokens").fetchone()[0]


def committed(database: Path, token_ids: list[str]) -> int:
    """How many of ``token_ids`` the SQLite file holds."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        found = 0
        for start in range(0, len(token_ids), 500):
            chunk = token_ids[start:start + 500]
            (n,) = conn.execute(f"SELECT count(*) FROM tokens WHERE id IN ({','.join('?' * len(chunk))})",
                                chunk).fetchone()
            found += n
    return found


async def measure(seconds: float = 10.0, concurrency: int = 50, rounds: int = 3, rate: float = 200.0,
                  rate_seconds: float = 10.0, sequential_pairs: int = 500) -> list[Figure]:
    require_wrk()
    load = Load.of(OPEN_ALL_DAY)
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(data_dir=Path(tmp) / "data", extra_args=RAISED_LIMITS)
        server.start()
        pin(server.proc.pid, SERVER_CORE)
        bare, bare_url = start_bare()
        acknowledged: list[str] = []
        wrk_answered = 0
        try:
            key = server.admin_key
            await admission_off(server.url, key, load.halls)
            progress(f"{NAME}: {sequential_pairs} sequential issue + call-next pairs ...")
            issue_ms, next_ms = await sequential(server.url, key, load, sequential_pairs)
            server_runs, bare_runs, chain_runs = [], [], []
            loop_cpu_s = store_threads_cpu_s = 0.0     # the server's, during its wrk runs
            for r in range(rounds):
                progress(f"{NAME}: wrk round {r + 1}/{rounds}, {seconds:g} s at {concurrency} connections, "
                         f"server (core {SERVER_CORE}) then bare handler, wrk on core {LOAD_CORE} ...")
                # A script of its own each round: wrk numbers its requests from 1 again, and a
                # key used in an earlier round would be answered as a replay, not a new token.
                script = issue_script(load.halls, load.service, key)
                before = thread_cpu_s(server.proc.pid)
                server_runs.append(run_wrk(server.url, script, Path(tmp), seconds, concurrency))
                after = thread_cpu_s(server.proc.pid)
                loop_cpu_s += after[0] - before[0]
                store_threads_cpu_s += after[1] - before[1]
                wrk_answered += server_runs[-1].requests - server_runs[-1].failed
                bare_runs.append(run_wrk(bare_url, script, Path(tmp), seconds, concurrency))
                chain_runs.append(run_wrk(server.url, get_script(CHAIN_PATH, key), Path(tmp),
                                          max(1, round(seconds / 2)), concurrency))
            progress(f"{NAME}: open loop, {rate:.0f} issues/s for {rate_seconds:g} s ...")
            open_p50, open_p99, ids = await open_loop(server.url, key, load, rate, rate_seconds)
            acknowledged += ids
            _, peak_mb = memory_mb(server.proc.pid)
            progress(f"{NAME}: SIGKILL the server, then look for every acknowledged token ...")
            server.kill()
            database = server.data_dir / "counter.db"
            found = committed(database, acknowledged)
            in_file = tokens_in(database)
        finally:
            server.stop()
            bare.terminate()
            bare.wait()

    tokens_per_s = statistics.median(run.ok_per_s for run in server_runs)
    bare_per_s = statistics.median(run.ok_per_s for run in bare_runs)
    failed = sum(run.failed for run in server_runs)
    ratio = tokens_per_s / bare_per_s
    chain_ratio = statistics.median(run.ok_per_s for run in chain_runs) / bare_per_s
    # Where a token's CPU goes: the event loop's thread, or the store's (SQLite's statements and
    # commits; its fsync waits on the disk and costs no CPU).
    wrk_tokens = max(1, sum(run.requests - run.failed for run in server_runs))
    # wrk acknowledged tokens it cannot name; the file must hold at least as many in all.
    acknowledged_total = wrk_answered + len(acknowledged) + sequential_pairs
    rows = [
        ("issue, median (one at a time)", statistics.median(issue_ms), "ms", "", None),
        ("issue, p99 (one at a time)", percentile(issue_ms, 0.99), "ms", "", None),
        ("call next, median (one at a time)", statistics.median(next_ms), "ms", "", None),
        ("call next, p99 (one at a time)", percentile(next_ms, 0.99), "ms", "", None),
        (f"server under wrk, {concurrency} connections", tokens_per_s, "tokens/s", "", None),
        (f"server p99 under wrk, {concurrency} connections",
         statistics.median(run.latency_p99_ms for run in server_runs), "ms", "", None),
        ("server answers other than 2xx under wrk", failed, "", "0", failed == 0),
        (f"bare aiohttp handler under wrk, {concurrency} connections", bare_per_s, "req/s", "", None),
        ("throughput, server / bare", ratio, "", ">= 0.5", ratio >= 0.5),
        (f"middlewares and key alone (GET {CHAIN_PATH}) / bare", chain_ratio, "", "", None),
        ("server CPU a token under wrk: event loop thread", loop_cpu_s / wrk_tokens * 1e6, "us", "", None),
        ("server CPU a token under wrk: store threads (SQLite)", store_threads_cpu_s / wrk_tokens * 1e6,
         "us", "", None),
        (f"p50 at {rate:.0f} issues/s", open_p50, "ms", "", None),
        (f"p99 at {rate:.0f} issues/s", open_p99, "ms", "< 20 ms", open_p99 < 20),
        ("acknowledged tokens in the file after SIGKILL", found, f"of {len(acknowledged)}",
         "all", found == len(acknowledged)),
        ("tokens in the file after SIGKILL, wrk's included", in_file, f"of {acknowledged_total} acknowledged",
         "all", in_file >= acknowledged_total),
    ]
    return [Figure(NAME, name, value, unit, target, met, peak_mb) for name, value, unit, target, met in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each wrk run")
    parser.add_argument("--concurrency", type=int, default=50, help="wrk's open connections")
    parser.add_argument("--rounds", type=int, default=3, help="alternating server / bare rounds")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop issues per second")
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    args = parser.parse_args()
    print_table(asyncio.run(measure(args.seconds, args.concurrency, args.rounds, args.rate,
                                    args.rate_seconds)))


if __name__ == "__main__":
    main()
