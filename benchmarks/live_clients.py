"""Many live WebSocket clients in a few processes, cheap enough not to be what a fan-out
benchmark measures.

aiohttp's client spends ~50 us parsing each message: 10,000 of them a change would take the
client half a second, on the same two cores as the server. These clients speak just enough
WebSocket (the upgrade, unmasked text frames from the server, pongs to its pings) to stamp each
message's arrival, and read only the head of it. Each process holds its share of sockets on one
core of its own when the machine has one to spare.
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

from counter_server.listen import raise_open_files

CONNECT_BATCH = 200          # handshakes in flight at once per process
HEAD_BYTES = 40              # enough of a message to read its type


class _LiveSocket(asyncio.Protocol):
    """One client: the time of each message of the ``counted`` type after its first message."""

    def __init__(self, host: str, path: str, counted: bytes) -> None:
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        self.counted = counted
        self.buffer = bytearray()
        self.upgraded = False
        self.first = asyncio.get_running_loop().create_future()
        self.arrivals: list[float] = []
        self.closed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.first.done():
            self.first.set_exception(ConnectionError("closed before its first message"))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in self.buffer[:end]:
                self.first.set_exception(ConnectionError(bytes(self.buffer[:end]).decode(errors="replace")))
                self.transport.close()
                return
            self.upgraded = True
            del self.buffer[:end + 4]
        self._frames(now)

    def _frames(self, now: float) -> None:
        buf, at = self.buffer, 0
        while len(buf) - at >= 2:
            opcode, size, start = buf[at] & 0x0F, buf[at + 1] & 0x7F, at + 2
            if size == 126:
                if len(buf) - at < 4:
                    break
                size, start = int.from_bytes(buf[at + 2:at + 4], "big"), at + 4
            elif size == 127:
                if len(buf) - at < 10:
                    break
                size, start = int.from_bytes(buf[at + 2:at + 10], "big"), at + 10
            if len(buf) < start + size:
                break
            if opcode == 0x1:
                self._text(bytes(buf[start:start + min(size, HEAD_BYTES)]), now)
            elif opcode == 0x9:      # ping: a pong, masked with a zero key (payload as it is)
                payload = bytes(buf[start:start + size])
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
            elif opcode == 0x8:
                self.transport.close()
            at = start + size
        del buf[:at]

    def _text(self, head: bytes, now: float) -> None:
        if not self.first.done():
            self.first.set_result(now)
        elif head.replace(b" ", b"").startswith(self.counted):   # whichever JSON encoder wrote it
            self.arrivals.append(now)


@dataclass(frozen=True)
class Target:
    """A live path to follow and the head of the messages to time on it (without spaces)."""

    path: str
    counted: bytes


async def _hold(host: str, port: int, targets: list[Target], pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    sockets: list[_LiveSocket] = []
    for start in range(0, len(targets), CONNECT_BATCH):
        batch = [_LiveSocket(f"{host}:{port}", t.path, t.counted) for t in targets[start:start + CONNECT_BATCH]]
        await asyncio.gather(*[loop.create_connection(lambda s=s: s, host, port) for s in batch])
        await asyncio.gather(*[s.first for s in batch])
        sockets += batch
    pipe.send("ready")
    await loop.run_in_executor(None, pipe.recv)          # "stop"
    pipe.send(([s.arrivals for s in sockets], sum(s.closed for s in sockets)))
    for s in sockets:
        s.transport.close()


def _client_process(host: str, port: int, targets: list[Target], pipe: Connection, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    raise_open_files(len(targets) + 256)
    try:
        asyncio.run(_hold(host, port, targets, pipe))
    except Exception as exc:  # noqa: BLE001 - said to the parent, which fails the run
        pipe.send(f"failed: {exc!r}")


class LiveClients:
    """``targets`` held open across ``processes`` processes; arrivals collected on ``stop``."""

    def __init__(self, host: str, port: int, targets: list[Target], processes: int,
                 cpus: list[int] | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self.targets = targets
        self._shares = [targets[i::processes] for i in range(processes)]
        self._pipes: list[Connection] = []
        self._procs = []
        for i, share in enumerate(self._shares):
            ours, theirs = context.Pipe()
            cpu = cpus[i % len(cpus)] if cpus else None
            proc = context.Process(target=_client_process, args=(host, port, share, theirs, cpu), daemon=True)
            proc.start()
            self._pipes.append(ours)
            self._procs.append(proc)

    def wait_ready(self, timeout: float) -> None:
        """Every socket connected and past its first message, or RuntimeError."""
        deadline = time.monotonic() + timeout
        for pipe in self._pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"live clients not connected within {timeout} s")
            said = pipe.recv()
            if said != "ready":
                raise RuntimeError(f"live clients: {said}")

    def stop(self) -> tuple[list[list[float]], int]:
        """Each target's arrival times (in ``targets`` order) and how many sockets had closed."""
        for pipe in self._pipes:
            pipe.send("stop")
        arrivals: list[list[float]] = [[] for _ in self.targets]
        closed = 0
        for i, pipe in enumerate(self._pipes):
            share, share_closed = pipe.recv()
            closed += share_closed
            for j, times in enumerate(share):
                arrivals[i + j * len(self._pipes)] = times
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        return arrivals, closed
