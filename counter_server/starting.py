"""A replica whose store does not answer at start (Redis boots after it) serves anyway.

Until the store answers, a stand-in app on the replica's own sockets says "alive, not ready":
/healthz 200, /readyz and every other route 503 with the reason, so the balancer and the
service manager see a live process to wait for rather than one that exits and is restarted in
a loop. The store is tried again with a doubling pause (``Settings.store_retry_first_s`` up to
``store_retry_max_s``); once it answers, the stand-in steps aside and the real app serves on the
same sockets (connections arriving meanwhile wait in the listen backlog).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable

from aiohttp import web

from .appkeys import STARTING
from .config import Settings
from .routes import starting_route_table
from .store import StoreUnavailable, open_store

log = logging.getLogger(__name__)


class StoreWait:
    """What the stand-in says: which store it waits for, why it does not answer, how long."""

    def __init__(self, where: str, clock: Callable[[], float]) -> None:
        self.where = where
        self.reason = ""
        self.attempts = 0
        self._clock = clock
        self._since = clock()

    def failed(self, reason: str) -> None:
        self.reason = reason
        self.attempts += 1

    def message(self) -> str:
        waited = self._clock() - self._since
        return (f"starting: {self.where} does not answer yet "
                f"({self.tries()} in {waited:.0f} s): {self.reason}")

    def tries(self) -> str:
        return f"{self.attempts} {'try' if self.attempts == 1 else 'tries'}"


async def can_open(settings: Settings) -> None:
    """Open the configured store and close it again; StoreUnavailable if it does not answer."""
    store = await open_store(settings)
    await store.close()


async def wait_for_store(settings: Settings, sockets: list[socket.socket],
                         probe: Callable[[Settings], Awaitable[None]] = can_open) -> bool:
    """Return True once the store answers (at once, when it does on the first try), serving the
    stand-in on ``sockets`` meanwhile; False when SIGTERM or SIGINT came first."""
    try:
        await probe(settings)
        return True
    except StoreUnavailable as exc:
        first = str(exc)
    wait = StoreWait(settings.store_address, settings.clock)
    wait.failed(first)
    log.warning("%s; serving \"not ready\" and trying again", first.rstrip("."))
    app = web.Application()
    app[STARTING] = wait
    app.router.add_routes(starting_route_table())
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    for sock in sockets:   # duplicates: closing the stand-in's sites leaves the sockets listening
        await web.SockSite(runner, sock.dup()).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    pause = settings.store_retry_first_s
    try:
        while True:
            try:
                await asyncio.wait_for(stop.wait(), pause)
                return False
            except TimeoutError:
                pass
            try:
                await probe(settings)
            except StoreUnavailable as exc:
                wait.failed(str(exc))
                pause = min(pause * 2, settings.store_retry_max_s)
                continue
            log.warning("%s answers after %s; serving", wait.where, wait.tries())
            return True
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await runner.cleanup()
