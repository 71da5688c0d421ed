"""Limits: a flooding client is held back without starving the others; slow and idle clients
(slowloris on headers or body, idle keep-alive connections, WebSockets that never read) are
closed; the server keeps answering and its memory stays bounded meanwhile."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from pathlib import Path

import aiohttp

from testkit.figures import memory_mb, percentile, progress
from testkit.processes import ServerProcess

from .common import PartTally, Places, call, make_keys, write_scenario


def handshake(hall: str) -> bytes:
    """A WebSocket upgrade to ``hall``'s live feed, as a board sends it."""
    return (f"GET /api/v1/substations/{hall}/live HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


async def flood(server: ServerProcess, keys: list[str], seconds: float, tally: PartTally, part: str) -> None:
    """Eight loops on one key as fast as they go; four polite kiosks (other keys, same address)
    at five requests a second each. The flood gets 429s; the polite ones none, and stay fast."""
    stop = time.monotonic() + seconds
    flooder: Counter = Counter()
    polite: Counter = Counter()
    latencies: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async def flood_loop() -> None:
            while time.monotonic() < stop:
                answered = await call(session, "GET", f"{server.url}/api/v1/substations", keys[0])
                flooder[answered[0] if answered else None] += 1

        async def polite_loop(key: str) -> None:
            while time.monotonic() < stop:
                started = time.monotonic()
                answered = await call(session, "GET", f"{server.url}/api/v1/substations", key)
                latencies.append(time.monotonic() - started)
                polite[answered[0] if answered else None] += 1
                await asyncio.sleep(0.2)

        await asyncio.gather(*[flood_loop() for _ in range(8)], *[polite_loop(k) for k in keys[1:5]])
    refused = flooder[429] / max(1, sum(flooder.values()))
    polite_refused = sum(n for s, n in polite.items() if s != 200)
    p95 = percentile(latencies, 0.95) * 1000
    progress(f"  flood: flooder {dict(flooder)}, polite {dict(polite)}, polite p95 {p95:.0f} ms")
    tally.figure(part, "flooding key: share refused with 429", refused * 100, "%", target="> 50 %", met=refused > 0.5)
    tally.figure(part, "polite kiosks refused during the flood", polite_refused, target="0", met=polite_refused == 0)
    tally.figure(part, "polite kiosks p95 during the flood", p95, "ms", target="< 250 ms", met=p95 < 250)
    if polite_refused:
        tally.problem(f"limits: polite kiosks refused {polite_refused} times during one key's flood")
    tally.five_xx += sum(n for s, n in [*flooder.items(), *polite.items()] if s is None or s >= 500)


async def _closed_after(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trickle: bytes | None,
                        limit_s: float) -> tuple[float | None, bytes]:
    """Seconds until the server closed the connection (None: still open at ``limit_s``),
    trickling ``trickle`` a byte a second meanwhile; and what it answered."""
    started = time.monotonic()
    answer = b""
    i = 0
    while time.monotonic() - started < limit_s:
        if trickle is not None and i < len(trickle):
            try:
                writer.write(trickle[i:i + 1])
                await writer.drain()
            except ConnectionError:
                return time.monotonic() - started, answer
            i += 1
        try:
            data = await asyncio.wait_for(reader.read(4096), 1.0)
        except asyncio.TimeoutError:
            continue
        except ConnectionError:
            return time.monotonic() - started, answer
        if not data:
            return time.monotonic() - started, answer
        answer += data
    return None, answer


async def slow_clients(server: ServerProcess, key: str, hall: str, tally: PartTally, part: str,
                       limit_s: float = 40) -> None:
    """A slowloris on the headers, one on the body (a token issue at ``hall``), and an idle
    connection: each closed by the server, while a normal client keeps getting fast answers."""
    head = b"GET /api/v1/substations HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    body_head = (f"POST /api/v1/substations/{hall}/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n").encode()

    async def one(kind: str) -> tuple[str, float | None, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            if kind == "slow headers":
                writer.write(head[:20])
                closed, answer = await _closed_after(reader, writer, head[20:], limit_s)
            elif kind == "slow body":
                writer.write(body_head + b'{"service"')
                closed, answer = await _closed_after(reader, writer, b": " + b" " * 190, limit_s)
            else:
                closed, answer = await _closed_after(reader, writer, None, limit_s)
        finally:
            writer.close()
        return kind, closed, answer

    async def normal() -> list[float]:
        waits = []
        async with aiohttp.ClientSession() as session:
            for _ in range(20):
                started = time.monotonic()
                await call(session, "GET", f"{server.url}/healthz")
                waits.append(time.monotonic() - started)
                await asyncio.sleep(0.5)
        return waits

    kinds = ["slow headers"] * 20 + ["slow body"] * 20 + ["idle"] * 20
    *results, waits = await asyncio.gather(*[one(k) for k in kinds], normal())
    for kind in ("slow headers", "slow body", "idle"):
        times = [c for k, c, _ in results if k == kind]
        still_open = sum(c is None for c in times)
        worst = max((c for c in times if c is not None), default=float("nan"))
        tally.figure(part, f"{kind} connections closed by the server (of 20)", 20 - still_open,
                       target="20", met=still_open == 0)
        tally.figure(part, f"{kind}: slowest close", worst, "s", target=f"< {limit_s:g} s", met=still_open == 0)
        if still_open:
            tally.problem(f"limits: {still_open} {kind} connections still open after {limit_s:g} s")
    timeouts = sum(b"408" in a.split(b"\r\n", 1)[0] for k, _, a in results if k == "slow body")
    p95 = percentile(waits, 0.95) * 1000
    progress(f"  slow clients: closed {sum(c is not None for _, c, _ in results)} of {len(results)}, "
             f"slow bodies answered 408 {timeouts}; healthz p95 meanwhile {p95:.0f} ms")
    tally.figure(part, "healthz p95 beside the slow clients", p95, "ms", target="< 250 ms", met=p95 < 250)


def _open_silent_websockets(port: int, n: int, hall: str) -> list[socket.socket]:
    """``n`` WebSocket clients of ``hall``'s feed that complete the handshake and then never
    read a byte."""
    request = handshake(hall)
    sockets = []
    for _ in range(n):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(request)
        sockets.append(sock)
    return sockets


def _count_closed(sockets: list[socket.socket]) -> int:
    """Read what is there: a socket the server has closed ends in EOF or a reset."""
    closed = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    closed += 1
                    break
        except BlockingIOError:
            pass
        except ConnectionError:
            closed += 1
    return closed


async def silent_websockets(server: ServerProcess, key: str, at: Places, n: int, tally: PartTally, part: str,
                            wait_s: float = 20.0) -> None:
    """``n`` boards of ``at``'s hall that never read while tokens of the paid service are issued
    there: the server stays fast, its memory bounded, and it closes them (heartbeat unanswered,
    buffer full)."""
    rss_before, _ = memory_mb(server.proc.pid)
    sockets = await asyncio.to_thread(_open_silent_websockets, server.port, n, at.hall)
    waits = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            started = time.monotonic()
            issued = 0
            while time.monotonic() - started < wait_s:
                t = time.monotonic()
                answered = await call(session, "POST", f"{server.url}/api/v1/substations/{at.hall}/tokens", key,
                                      json={"service": at.service})
                waits.append(time.monotonic() - t)
                issued += answered is not None and answered[0] == 201
                if answered is not None and answered[0] >= 500:
                    tally.five_xx += 1
                await asyncio.sleep(0.05)
        rss_now, rss_peak = memory_mb(server.proc.pid)
        closed = await asyncio.to_thread(_count_closed, sockets)
    finally:
        for sock in sockets:
            sock.close()
    p95 = percentile(waits, 0.95) * 1000
    progress(f"  {n} silent WebSockets: {closed} closed by the server within {wait_s:g} s; {issued} tokens "
             f"issued meanwhile, p95 {p95:.0f} ms; RSS {rss_before:.0f} -> peak {rss_peak:.0f} MB")
    tally.figure(part, f"never-reading WebSockets closed (of {n})", closed, target=str(n), met=closed == n,
                   peak_rss_mb=rss_peak)
    tally.figure(part, "token issue p95 beside them", p95, "ms", target="< 250 ms", met=p95 < 250)
    tally.figure(part, "server RSS growth with them", rss_peak - rss_before, "MB", target="< 200 MB",
                   met=rss_peak - rss_before < 200)
    if closed < n:
        tally.problem(f"limits: {n - closed} never-reading WebSockets still open after {wait_s:g} s")


async def run(workdir: Path, tally: PartTally, websockets: int = 1000, flood_s: float = 4.0,
              scenario: Path | None = None) -> None:
    """The limits against a server running ``scenario`` (a file; None: the built-in one)."""
    part = "limits"
    config = write_scenario(workdir / "limits.toml", base=scenario)
    at = Places.load(config)
    # The default rate limit (20 a second per key, bursts of 40) for the flood.
    server = ServerProcess(data_dir=workdir / "limits-data", config=config, extra_args=[])
    server.start()
    try:
        keys = await make_keys(server.data_dir, [("board", None)] * 5, config)
        await flood(server, keys, flood_s, tally, part)
    finally:
        server.stop()
    server = ServerProcess(data_dir=workdir / "limits-data", config=config)   # no rate limit
    server.start()
    try:
        await slow_clients(server, server.admin_key, at.hall, tally, part)
        await silent_websockets(server, server.admin_key, at, websockets, tally, part)
    finally:
        server.stop()
