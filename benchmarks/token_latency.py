"""How fast the server issues tokens, against a bare aiohttp handler on the same machine.

Starts ``counter-server`` and a bare aiohttp app (same JSON size, no work) as processes on
loopback ports, then measures in one run:
  * sequential latency (one request at a time): median and p99 of issue and call-next;
  * closed-loop throughput, N concurrent clients issuing tokens, server and bare handler in
    alternating rounds (the median of each), and their ratio (target: at least 0.5);
  * open-loop p99 at a fixed 200 issues/s, timed from each request's scheduled moment so a
    stall counts against every request it delays (target: under 20 ms);
  * durability: the server is killed with SIGKILL and every acknowledged token is looked up
    in its SQLite file (target: all of them).

    python -m benchmarks.token_latency [--requests 2000] [--concurrency 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from testkit.figures import Figure, memory_mb, percentile, print_table, progress
from testkit.processes import ServerProcess, free_port, wait_for_port

NAME = "token issue"
BARE_APP = """
import sys
from aiohttp import web
async def handler(request):
    await request.read()
    return web.json_response({"token": {"id": "t_x", "number": "B-001", "status": "waiting"}}, status=201)
app = web.Application()
app.router.add_post("/{tail:.*}", handler)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


async def timed_post(session: aiohttp.ClientSession, url: str, **kw) -> tuple[float, dict]:
    start = time.perf_counter()
    async with session.post(url, **kw) as resp:
        body = await resp.json()
        assert resp.status in (200, 201), body
    return (time.perf_counter() - start) * 1000, body


def issue_url(base: str, i: int) -> str:
    return f"{base}/api/v1/substations/S{i % 10 + 1:02d}/tokens"


async def sequential(base: str, key: str, n: int) -> tuple[list[float], list[float]]:
    headers = {"Authorization": f"Bearer {key}"}
    issue_ms, next_ms = [], []
    async with aiohttp.ClientSession(headers=headers) as session:
        for _ in range(n):
            ms, _ = await timed_post(session, f"{base}/api/v1/substations/S01/tokens",
                                     json={"service": "bill_payment"})
            issue_ms.append(ms)
            ms, body = await timed_post(session, f"{base}/api/v1/counters/S01-C1/next")
            next_ms.append(ms)
            await session.post(f"{base}/api/v1/tokens/{body['token']['id']}/cancel")
    return issue_ms, next_ms


async def closed_loop(base: str, key: str, n: int, concurrency: int) -> tuple[float, float, list[str]]:
    """Tokens issued per second, p99 ms and the acknowledged ids, ``concurrency`` clients
    each sending its next request as soon as the last is answered."""
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    acknowledged: list[str] = []
    todo = iter(range(n))

    async def client(session: aiohttp.ClientSession) -> None:
        for i in todo:
            ms, body = await timed_post(session, issue_url(base, i), json={"service": "bill_payment"})
            latencies.append(ms)
            acknowledged.append(body["token"]["id"])

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*[client(session) for _ in range(concurrency)])
        elapsed = time.perf_counter() - start
    return n / elapsed, percentile(latencies, 0.99), acknowledged


async def open_loop(base: str, key: str, rate: float, seconds: float) -> tuple[float, float, list[str]]:
    """p50 and p99 ms at a fixed arrival rate, each timed from its scheduled send moment."""
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    acknowledged: list[str] = []

    async def one(session: aiohttp.ClientSession, i: int, due: float) -> None:
        async with session.post(issue_url(base, i), json={"service": "bill_payment"}) as resp:
            body = await resp.json()
            assert resp.status == 201, body
        latencies.append((time.perf_counter() - due) * 1000)
        acknowledged.append(body["token"]["id"])

    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=0)) as session:
        for i in range(50):                               # warm the connection pool first
            await timed_post(session, issue_url(base, i), json={"service": "bill_payment"})
        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(session, i, due)))
        await asyncio.gather(*tasks)
    return percentile(latencies, 0.5), percentile(latencies, 0.99), acknowledged


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


async def measure(requests: int = 2000, concurrency: int = 50, rounds: int = 3, rate: float = 200.0,
                  rate_seconds: float = 10.0) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(data_dir=Path(tmp) / "data")
        server.start()
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(bare_port)])
        acknowledged: list[str] = []
        try:
            wait_for_port(bare_port, bare, "the bare aiohttp server")
            key = server.admin_key
            progress(f"{NAME}: {requests // 4} sequential issue + call-next pairs ...")
            issue_ms, next_ms = await sequential(server.url, key, requests // 4)
            server_rps, server_p99, bare_rps = [], [], []
            for r in range(rounds):
                progress(f"{NAME}: throughput round {r + 1}/{rounds}, {requests} issues from "
                         f"{concurrency} clients, server then bare handler ...")
                rps, p99, ids = await closed_loop(server.url, key, requests, concurrency)
                server_rps.append(rps)
                server_p99.append(p99)
                acknowledged += ids
                bare_rps.append((await closed_loop(f"http://127.0.0.1:{bare_port}", key, requests,
                                                   concurrency))[0])
            progress(f"{NAME}: open loop, {rate:.0f} issues/s for {rate_seconds:g} s ...")
            open_p50, open_p99, ids = await open_loop(server.url, key, rate, rate_seconds)
            acknowledged += ids
            _, peak_mb = memory_mb(server.proc.pid)
            progress(f"{NAME}: SIGKILL the server, then look for every acknowledged token ...")
            server.kill()
            found = committed(server.data_dir / "counter.db", acknowledged)
        finally:
            server.stop()
            bare.terminate()
            bare.wait()

    ratio = statistics.median(server_rps) / statistics.median(bare_rps)
    rows = [
        ("issue, median (one at a time)", statistics.median(issue_ms), "ms", "", None),
        ("issue, p99 (one at a time)", percentile(issue_ms, 0.99), "ms", "", None),
        ("call next, median (one at a time)", statistics.median(next_ms), "ms", "", None),
        ("call next, p99 (one at a time)", percentile(next_ms, 0.99), "ms", "", None),
        (f"server, {concurrency} clients", statistics.median(server_rps), "tokens/s", "", None),
        (f"server p99, {concurrency} clients", statistics.median(server_p99), "ms", "", None),
        (f"bare aiohttp handler, {concurrency} clients", statistics.median(bare_rps), "req/s", "", None),
        ("throughput, server / bare", ratio, "", ">= 0.5", ratio >= 0.5),
        (f"p50 at {rate:.0f} issues/s", open_p50, "ms", "", None),
        (f"p99 at {rate:.0f} issues/s", open_p99, "ms", "< 20 ms", open_p99 < 20),
        ("acknowledged tokens in the file after SIGKILL", found, f"of {len(acknowledged)}",
         "all", found == len(acknowledged)),
    ]
    return [Figure(NAME, name, value, unit, target, met, peak_mb) for name, value, unit, target, met in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="issues per throughput round")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="alternating server / bare rounds")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop issues per second")
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    args = parser.parse_args()
    print_table(asyncio.run(measure(args.requests, args.concurrency, args.rounds, args.rate,
                                    args.rate_seconds)))


if __name__ == "__main__":
    main()
