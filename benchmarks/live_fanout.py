"""How long a change takes to reach every live connection that should see it: hall boards on
their substation's channel and phones following their own token.

Starts ``counter-server`` as a process on loopback (pinned to one core when the machine has two
or more, the clients on the others), takes the phones' tokens through the public API, opens the
connections from a few client processes (``benchmarks.live_clients``: cheap enough not to be the
bottleneck), then makes changes in rounds, one at each hall at once, and records per connection
and per round the time from the round's start to the message's arrival. A round where phones
wait has the head of the line give up its token (every phone's place moves); elsewhere it issues
a token (a delta for the boards). Rounds are further apart than the phones' one answer a second.

    python -m benchmarks.live_fanout [--boards 100 500 2000] [--deltas 20]
    python -m benchmarks.live_fanout --connections 10000 [--json]    # 500 boards, 9,500 phones
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from benchmarks.live_clients import LiveClients, Target
from counter_server.listen import raise_open_files
from testkit.figures import Figure, memory_mb, percentile, print_table, progress
from testkit.processes import ServerProcess
from testkit.scenarios import OPEN_ALL_DAY

NAME = "live fan-out"
BOARD_SHARE = 0.05                     # of --connections: 500 boards and 9,500 phones in 10,000
SOCKETS_PER_CLIENT_PROCESS = 2500
ROUND_GAP_S = 1.5                      # phones are answered at most once a second (TokenWatch)
BOARDS_ROUND_GAP_S = 0.3               # boards get every delta at once
TAKES_IN_FLIGHT = 32
DELTA_HEAD = b'{"type":"delta"'
TOKEN_HEAD = b'{"type":"token"'
# Phones may take as many tokens as the run needs from loopback (one address for all of them).
SCENARIO = f"""
extends = "builtin"
{OPEN_ALL_DAY.read_text().split('extends = "builtin"', 1)[1]}
[phones]
takes_per_hour_per_address = 1000000
"""


@dataclass
class Hall:
    """One substation in the run: its boards, its phones' links, the tokens ahead of them."""

    id: str
    service: str               # the scenario's paid service, which every hall here serves
    boards: int = 0
    links: list[str] = field(default_factory=list)
    leaders: list[str] = field(default_factory=list)


def _halls(boards: int, phones: int, all_in_one: bool) -> list[Hall]:
    from counter_server.config import load_scenario   # heavy; the clients never import it
    scenario = load_scenario(OPEN_ALL_DAY)
    paid = scenario.payment_service
    halls = [Hall(s.id, paid) for s in scenario.substations.values() if paid in s.services]
    halls = halls[:1] if all_in_one else halls
    for i in range(boards):
        halls[i % len(halls)].boards += 1
    return halls


async def _take_phone_tokens(session: aiohttp.ClientSession, url: str, halls: list[Hall], phones: int,
                             leaders: int) -> None:
    """``leaders`` tokens at the head of each hall's line (cancelled one a round), then the
    phones that follow theirs behind them."""
    gate = asyncio.Semaphore(TAKES_IN_FLIGHT)

    async def take(i: int, hall: Hall, into: list[str]) -> None:
        async with gate, session.post(f"{url}/api/v1/public/substations/{hall.id}/tokens",
                                      json={"account": f"KAN{i:08d}", "phone": f"9{i:09d}"}) as resp:
            assert resp.status == 201, await resp.text()
            into.append((await resp.json())["token"]["link"])

    await asyncio.gather(*[take(i * len(halls) + n, hall, hall.leaders)
                           for n, hall in enumerate(halls) for i in range(leaders)])
    first = leaders * len(halls)
    await asyncio.gather(*[take(first + i, halls[i % len(halls)], halls[i % len(halls)].links)
                           for i in range(phones)])


async def _change(api: aiohttp.ClientSession, url: str, hall: Hall) -> None:
    """One commit at ``hall``: where phones follow, the head of the line gives up its token
    (every phone behind it moves up a place); elsewhere a token is issued."""
    if hall.leaders:
        async with api.post(f"{url}/api/v1/public/tokens/{hall.leaders.pop(0)}/cancel") as resp:
            assert resp.status == 200, await resp.text()
    else:
        async with api.post(f"{url}/api/v1/substations/{hall.id}/tokens",
                            json={"service": hall.service}) as resp:
            assert resp.status == 201, await resp.text()


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` onto ``cpus`` (the SQLite writer's too)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), cpus)


@contextmanager
def _clients_on_other_cores(server_pid: int) -> Iterator[list[int] | None]:
    """The server on the first core, this process (and the client processes it starts) on the
    others; back on every core after, or what runs next (in ``python -m benchmarks``: the
    billing server, the replicas, peak-sim's workers) would inherit one core only."""
    cpus = sorted(os.sched_getaffinity(0))
    client_cpus = cpus[1:] if len(cpus) > 1 else None
    if client_cpus:
        _pin(server_pid, {cpus[0]})
        os.sched_setaffinity(0, set(client_cpus))
    try:
        yield client_cpus
    finally:
        os.sched_setaffinity(0, set(cpus))


async def run(server: ServerProcess, boards: int, phones: int, deltas: int,
              all_in_one: bool = False) -> dict[str, float]:
    """Latency of each round's messages at every connection, missing ones, the server's memory."""
    halls = _halls(boards, phones, all_in_one)
    url = server.url
    with _clients_on_other_cores(server.proc.pid) as client_cpus:
        headers = {"Authorization": f"Bearer {server.admin_key}"}
        async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=0)) as api:
            for hall in halls:     # a long line must not be refused at the door
                async with api.put(f"{url}/api/v1/ops/substations/{hall.id}/admission",
                                   json={"admission": False}) as resp:
                    assert resp.status == 200, await resp.text()
            async with aiohttp.ClientSession() as public:
                await _take_phone_tokens(public, url, halls, phones, deltas if phones else 0)
            targets = [Target(f"/api/v1/substations/{h.id}/live", DELTA_HEAD) for h in halls for _ in range(h.boards)]
            targets += [Target(f"/api/v1/public/tokens/{link}/live", TOKEN_HEAD) for h in halls for link in h.links]
            processes = max(1, math.ceil(len(targets) / SOCKETS_PER_CLIENT_PROCESS))
            clients = LiveClients("127.0.0.1", server.port, targets, processes, client_cpus)
            try:
                await asyncio.to_thread(clients.wait_ready, 120)
                rss, _ = memory_mb(server.proc.pid)
                starts: list[float] = []
                gap = ROUND_GAP_S if phones else BOARDS_ROUND_GAP_S
                for _ in range(deltas):
                    starts.append(time.monotonic())
                    await asyncio.gather(*[_change(api, url, h) for h in halls])
                    await asyncio.sleep(max(0.0, starts[-1] + gap - time.monotonic()))
                await asyncio.sleep(gap)
                _, peak = memory_mb(server.proc.pid)
            finally:
                arrivals, closed = await asyncio.to_thread(clients.stop)
    latencies: list[float] = []
    for times in arrivals:
        for r, start in enumerate(starts):
            end = starts[r + 1] if r + 1 < len(starts) else math.inf
            first = next((t for t in times if start <= t < end), None)
            if first is not None:
                latencies.append((first - start) * 1000)
    return {"connections": len(targets), "boards": boards, "phones": phones,
            "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
            "missing": len(targets) * deltas - len(latencies), "closed": closed,
            "rss_mb": rss, "peak_rss_mb": peak}


async def run_fresh(boards: int, phones: int, deltas: int, all_in_one: bool = False) -> dict[str, float]:
    """One run on a server of its own."""
    raise_open_files(2 * (boards + phones) + 1024)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "scenario.toml"
        config.write_text(SCENARIO)
        server = ServerProcess(data_dir=Path(tmp) / "data", config=config)
        server.start()
        try:
            return await run(server, boards, phones, deltas, all_in_one)
        finally:
            server.stop()


def split(connections: int) -> tuple[int, int]:
    """Boards and phones in ``connections``: 500 and 9,500 in 10,000."""
    boards = max(1, round(connections * BOARD_SHARE))
    return boards, connections - boards


async def measure(board_counts: list[int], deltas: int = 20, connections: int | None = 10_000) -> list[Figure]:
    """Delta latency to every board (all on one hall) and the server's memory, one fresh server
    per board count; then ``connections`` boards and phones over every hall."""
    figures = []
    for boards in board_counts:
        progress(f"{NAME}: {boards} boards, {deltas} deltas ...")
        r = await run_fresh(boards, 0, deltas, all_in_one=True)
        peak = r["peak_rss_mb"]
        figures += [
            Figure(NAME, f"{boards} boards, delta p50", r["p50_ms"], "ms", peak_rss_mb=peak),
            Figure(NAME, f"{boards} boards, delta p99", r["p99_ms"], "ms", peak_rss_mb=peak),
            Figure(NAME, f"{boards} boards, deltas missing", r["missing"], "", "0", r["missing"] == 0, peak),
        ]
        if boards >= 2000:
            figures.append(Figure(NAME, f"{boards} boards, server RSS", r["rss_mb"], "MB", "< 256 MB",
                                  r["rss_mb"] < 256, peak))
    if connections:
        boards, phones = split(connections)
        progress(f"{NAME}: {boards} boards + {phones} phones, {deltas} rounds ...")
        r = await run_fresh(boards, phones, deltas)
        peak, what = r["peak_rss_mb"], f"{connections} connections"
        figures += [
            Figure(NAME, f"{what}, p50", r["p50_ms"], "ms", peak_rss_mb=peak),
            Figure(NAME, f"{what}, p99", r["p99_ms"], "ms", "< 250 ms", r["p99_ms"] < 250, peak),
            Figure(NAME, f"{what}, missing", r["missing"], "", "0", r["missing"] == 0, peak),
            Figure(NAME, f"{what}, server RSS", r["rss_mb"], "MB", "< 512 MB", r["rss_mb"] < 512, peak),
        ]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boards", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--connections", type=int, default=None,
                        help="boards and phones over every hall (5%% boards), instead of --boards")
    parser.add_argument("--deltas", type=int, default=20, help="changes (rounds) to time")
    parser.add_argument("--json", action="store_true", help="one JSON object (with --connections)")
    args = parser.parse_args()
    if args.connections is None:
        print_table(asyncio.run(measure(args.boards, args.deltas, connections=None)))
        return
    boards, phones = split(args.connections)
    if not args.json:
        progress(f"{NAME}: {boards} boards + {phones} phones, {args.deltas} rounds ...")
    result = asyncio.run(run_fresh(boards, phones, args.deltas))
    if args.json:
        print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()}))
    else:
        print_table([Figure(NAME, k, v) for k, v in result.items()])


if __name__ == "__main__":
    main()
