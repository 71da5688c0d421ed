"""Soak: a steady day's work (cashiers issuing, calling, serving, paying; boards watching, some
coming and going) for a fixed time; the server's memory is sampled throughout and must level off."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import aiohttp

from testkit.figures import memory_mb, progress

from .common import PartTally, sqlite_view
from .crash import check_store, server_and_load


async def _boards(url: str, stop: asyncio.Event, n: int, halls: list[str]) -> int:
    """``n`` boards reading their hall's feed, spread over ``halls``; each reconnects now and
    then, as screens do."""
    received = 0

    async def board(i: int) -> None:
        nonlocal received
        sid = halls[i % len(halls)]
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    async with session.ws_connect(f"{url}/api/v1/substations/{sid}/live", heartbeat=5) as ws:
                        until = time.monotonic() + random.uniform(5, 30)
                        while not stop.is_set() and time.monotonic() < until:
                            try:
                                await ws.receive(timeout=1.0)
                                received += 1
                            except asyncio.TimeoutError:
                                pass
                except (aiohttp.ClientError, ConnectionError):
                    await asyncio.sleep(1)

    await asyncio.gather(*[board(i) for i in range(n)])
    return received


async def run(workdir: Path, seconds: float, tally: PartTally, boards: int = 40, every_s: float = 10.0,
              scenario: Path | None = None) -> None:
    part = "soak"
    server, load = await server_and_load(workdir, "soak", scenario=scenario)
    halls = list(dict.fromkeys(c.substation for c in load.cashiers))    # where the cashiers work
    try:
        load.pace_s = 0.1
        samples: list[tuple[float, float]] = []
        stop = asyncio.Event()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            cashiers = asyncio.create_task(load.run(session, stop, tally))
            watching = asyncio.create_task(_boards(server.url, stop, boards, halls))
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                rss, _ = memory_mb(server.proc.pid)
                samples.append((time.monotonic() - started, rss))
                if len(samples) % 6 == 1:
                    progress(f"  soak {samples[-1][0]:.0f}/{seconds:g} s: RSS {rss:.0f} MB, "
                             f"{load.ledger.acknowledged} acknowledged")
                await asyncio.sleep(min(every_s, max(0.1, seconds - (time.monotonic() - started))))
            stop.set()
            await cashiers
            received = await watching
        rss_end, rss_peak = memory_mb(server.proc.pid)
        tokens, payments = sqlite_view(server.data_dir / "counter.db")
        lost, dup = check_store(load.ledger, tokens, payments, tally, "soak")
    finally:
        server.stop()
    rss_start = samples[0][1]
    # Growth after the first fifth (caches, pools and the live backlog fill early on).
    warm = next((rss for t, rss in samples if t >= seconds / 5), rss_start)
    growth = rss_end - warm
    progress(f"  soak: RSS at start {rss_start:.0f} MB, after warm-up {warm:.0f} MB, at end {rss_end:.0f} MB "
             f"(peak {rss_peak:.0f} MB); {load.ledger.acknowledged} acknowledged, {received} board messages")
    tally.acknowledged += load.ledger.acknowledged
    tally.lost += lost
    tally.duplicated += dup
    tally.five_xx += load.ledger.five_xx
    tally.figure(part, "duration", seconds, "s")
    tally.figure(part, "acknowledged answers", load.ledger.acknowledged)
    tally.figure(part, "board messages received", received)
    tally.figure(part, "server RSS at start", rss_start, "MB")
    tally.figure(part, "server RSS at end", rss_end, "MB", peak_rss_mb=rss_peak)
    tally.figure(part, "RSS growth after warm-up", growth, "MB", target="< 50 MB", met=growth < 50)
    if growth >= 50:
        tally.problem(f"soak: RSS grew {growth:.0f} MB after warm-up")
