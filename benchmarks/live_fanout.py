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
from contextlib import suppress
from pathlib import Path

import aiohttp

from testkit.figures import Figure, memory_mb, percentile, print_table, progress
from testkit.processes import ServerProcess
from testkit.waiting import WaitTimedOut, wait_until_async

NAME = "live fan-out"


SEQ = re.compile(r'"seq": (\d+)')


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
                with suppress(WaitTimedOut):   # a delta some boards never got is counted missing
                    await wait_until_async(lambda: every_board_has_the_new_delta(arrivals, sent, boards),
                                           what=f"delta {i + 1} at all {boards} boards", timeout=10,
                                           interval=0.005)
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


def every_board_has_the_new_delta(arrivals: dict[int, list[float]], sent: dict[int, float],
                                  boards: int) -> bool:
    fresh = [seq for seq in arrivals if seq not in sent]
    return bool(fresh) and len(arrivals[fresh[0]]) >= boards


async def measure(board_counts: list[int], deltas: int = 20) -> list[Figure]:
    """Delta latency to every board and the server's memory, one fresh server per board count."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * max(board_counts) + 256)), hard))
    figures = []
    for boards in board_counts:
        with tempfile.TemporaryDirectory() as tmp:
            server = ServerProcess(data_dir=Path(tmp) / "data")
            server.start()
            try:
                progress(f"{NAME}: {boards} boards, {deltas} deltas ...")
                r = await run(server, boards, deltas)
            finally:
                server.stop()
        peak = r["peak_rss_mb"]
        figures += [
            Figure(NAME, f"{boards} boards, delta p50", r["p50_ms"], "ms", peak_rss_mb=peak),
            Figure(NAME, f"{boards} boards, delta p99", r["p99_ms"], "ms", peak_rss_mb=peak),
            Figure(NAME, f"{boards} boards, deltas missing", r["missing"], "", "0", r["missing"] == 0, peak),
        ]
        if boards >= 2000:
            figures.append(Figure(NAME, f"{boards} boards, server RSS", r["rss_mb"], "MB", "< 256 MB",
                                  r["rss_mb"] < 256, peak))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boards", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--deltas", type=int, default=20)
    args = parser.parse_args()
    print_table(asyncio.run(measure(args.boards, args.deltas)))


if __name__ == "__main__":
    main()
