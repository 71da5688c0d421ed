"""How long a change takes to reach every connected hall board.

Starts ``counter-server`` as a process on loopback, connects N boards to one substation's live
channel, then issues tokens one at a time and records, per board and per delta, the time from
sending the issue request to the delta's arrival. Prints p50/p99 for each board count and the
server's resident memory (VmRSS now, VmHWM peak) with those boards connected.

    python -m benchmarks.live_fanout [--boards 100 500 2000] [--deltas 20]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.conftest import ServerProcess


SEQ = re.compile(r'"seq": (\d+)')


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def memory_mb(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


async def run(server: ServerProcess, boards: int, deltas: int) -> dict[str, float]:
    arrivals: dict[int, list[float]] = {}
    sent: dict[int, float] = {}
    url = f"{server.url}/api/v1/substations/S01/live"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets = []
        for start in range(0, boards, 100):
            sockets += await asyncio.gather(*[session.ws_connect(url, heartbeat=None)
                                              for _ in range(start, min(boards, start + 100))])
        for ws in sockets:
            await ws.receive()                                    # the snapshot

        async def listen(ws: aiohttp.ClientWebSocketResponse) -> None:
            # Read only the head of each message: parsing 2,000 full JSON halls per delta here
            # would measure this client, not the server.
            async for msg in ws:
                head = msg.data[:80]
                if head.startswith('{"type": "delta"'):
                    seq = int(SEQ.search(head).group(1))
                    arrivals.setdefault(seq, []).append(time.perf_counter())

        listeners = [asyncio.create_task(listen(ws)) for ws in sockets]
        headers = {"Authorization": f"Bearer {server.admin_key}"}
        async with aiohttp.ClientSession(headers=headers) as api:
            for i in range(deltas):
                started = time.perf_counter()
                async with api.post(f"{server.url}/api/v1/substations/S01/tokens",
                                    json={"service": "bill_payment"}) as resp:
                    assert resp.status == 201
                deadline = time.perf_counter() + 10
                while time.perf_counter() < deadline:
                    fresh = [s for s in arrivals if s not in sent]
                    if fresh and len(arrivals[fresh[0]]) >= boards:
                        break
                    await asyncio.sleep(0.005)
                for seq in arrivals:
                    sent.setdefault(seq, started)
                await asyncio.sleep(0.05)
        rss, peak = memory_mb(server.proc.pid)
        for ws in sockets:
            await ws.close()
        for task in listeners:
            task.cancel()
    latencies = [(t - sent[s]) * 1000 for s, times in arrivals.items() if s in sent for t in times]
    missing = boards * deltas - len(latencies)
    return {"boards": boards, "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
            "missing": missing, "rss_mb": rss, "peak_rss_mb": peak}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boards", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--deltas", type=int, default=20)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * max(args.boards) + 256)), hard))
    rows = []
    for boards in args.boards:
        with tempfile.TemporaryDirectory() as tmp:
            server = ServerProcess(data_dir=Path(tmp) / "data")
            server.start()
            try:
                print(f"{boards} boards, {args.deltas} deltas ...", flush=True)
                rows.append(await run(server, boards, args.deltas))
            finally:
                server.stop()
    print()
    print(f"{'boards':>8}{'p50 ms':>10}{'p99 ms':>10}{'missing':>9}{'RSS MB':>9}{'peak MB':>9}")
    for r in rows:
        print(f"{r['boards']:>8}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}{r['missing']:>9}"
              f"{r['rss_mb']:>9.0f}{r['peak_rss_mb']:>9.0f}")


if __name__ == "__main__":
    asyncio.run(main())
