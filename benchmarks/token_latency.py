"""How long issuing a token and calling the next one take, against a bare aiohttp handler.

Starts ``counter-server`` and a bare aiohttp app (same JSON size, no work) as processes on
loopback ports, then measures in one run:
  * sequential latency (one request at a time): median and p99 of issue and call-next;
  * throughput with N concurrent clients issuing tokens, and its ratio to the bare handler.

    python -m benchmarks.token_latency [--requests 2000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.conftest import ServerProcess, free_port

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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed_post(session: aiohttp.ClientSession, url: str, **kw) -> tuple[float, dict]:
    start = time.perf_counter()
    async with session.post(url, **kw) as resp:
        body = await resp.json()
        assert resp.status in (200, 201), body
    return (time.perf_counter() - start) * 1000, body


async def sequential(base: str, key: str, n: int) -> tuple[list[float], list[float]]:
    headers = {"Authorization": f"Bearer {key}"}
    issue_ms, next_ms = [], []
    async with aiohttp.ClientSession(headers=headers) as session:
        for i in range(n):
            ms, _ = await timed_post(session, f"{base}/api/v1/substations/S01/tokens",
                                     json={"service": "bill_payment"})
            issue_ms.append(ms)
            ms, body = await timed_post(session, f"{base}/api/v1/counters/S01-C1/next")
            next_ms.append(ms)
            await session.post(f"{base}/api/v1/tokens/{body['token']['id']}/cancel")
    return issue_ms, next_ms


async def throughput(base: str, key: str, n: int, concurrency: int) -> tuple[float, float]:
    """Tokens issued per second and p99 ms with ``concurrency`` clients over 10 substations."""
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    todo = iter(range(n))

    async def client(session: aiohttp.ClientSession) -> None:
        for i in todo:
            ms, _ = await timed_post(session, f"{base}/api/v1/substations/S{i % 10 + 1:02d}/tokens",
                                     json={"service": "bill_payment"})
            latencies.append(ms)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*[client(session) for _ in range(concurrency)])
        elapsed = time.perf_counter() - start
    return n / elapsed, percentile(latencies, 0.99)


def wait_for_port(port: int, proc: subprocess.Popen) -> None:
    import socket
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("bare server exited")
            time.sleep(0.05)
    raise RuntimeError("bare server did not start")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(data_dir=Path(tmp) / "data")
        server.start()
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(bare_port)])
        try:
            wait_for_port(bare_port, bare)
            key = server.admin_key
            print(f"sequential: {args.requests // 4} issue + call-next pairs ...", flush=True)
            issue_ms, next_ms = await sequential(server.url, key, args.requests // 4)
            print(f"throughput: {args.requests} issues, {args.concurrency} clients ...", flush=True)
            server_rps, server_p99 = await throughput(server.url, key, args.requests, args.concurrency)
            bare_rps, bare_p99 = await throughput(f"http://127.0.0.1:{bare_port}", key,
                                                  args.requests, args.concurrency)
        finally:
            server.stop()
            bare.terminate()
            bare.wait()

    print()
    print(f"{'figure':<44}{'value':>12}")
    print(f"{'issue token, median ms (sequential)':<44}{statistics.median(issue_ms):>12.2f}")
    print(f"{'issue token, p99 ms (sequential)':<44}{percentile(issue_ms, 0.99):>12.2f}")
    print(f"{'call next, median ms (sequential)':<44}{statistics.median(next_ms):>12.2f}")
    print(f"{'call next, p99 ms (sequential)':<44}{percentile(next_ms, 0.99):>12.2f}")
    print(f"{'issue throughput, tokens/s':<44}{server_rps:>12.0f}")
    print(f"{'issue p99 ms under load':<44}{server_p99:>12.2f}")
    print(f"{'bare aiohttp handler, requests/s':<44}{bare_rps:>12.0f}")
    print(f"{'bare aiohttp handler, p99 ms':<44}{bare_p99:>12.2f}")
    print(f"{'ratio server / bare':<44}{server_rps / bare_rps:>12.2f}")


if __name__ == "__main__":
    asyncio.run(main())
