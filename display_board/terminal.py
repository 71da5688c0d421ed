"""``display-board``: the hall board in a terminal, for a spare PC or a serial console.

    display-board --server http://127.0.0.1:8080 --substation S01

Built on the ``websockets`` client and rich; reconnects with backoff and resumes with ``since``.
``BoardState`` applies the feed's messages and notices gaps; the renderer only draws it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import websockets
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text


@dataclass
class BoardState:
    """What a board knows: the hall as of ``seq``, and when it last heard from the server."""

    seq: int | None = None
    hall: dict[str, Any] | None = None
    nearby: list[dict[str, Any]] = field(default_factory=list)
    online: dict[str, Any] | None = None
    interval_s: float = 5.0
    last_heard: float = 0.0
    called: list[str] = field(default_factory=list)

    def apply(self, message: dict[str, Any], now: float | None = None) -> bool:
        """Take one message; False when a delta shows one was missed (resume with since)."""
        self.last_heard = time.monotonic() if now is None else now
        kind = message.get("type")
        if kind == "snapshot":
            self.seq, self.hall = message["seq"], message["hall"]
            self.nearby, self.online = message.get("nearby", []), message.get("online")
        elif kind == "delta":
            if self.seq is not None and message["prev"] != self.seq:
                return False
            self.seq, self.hall = message["seq"], message["hall"]
            for event in message["events"]:
                if event["kind"] in ("called", "recalled") and event["token"]:
                    self.called = [f"{event['token']['number']} → {event['counter']}", *self.called][:3]
        elif kind == "heartbeat":
            self.interval_s = message["interval_s"]
            self.nearby = message.get("nearby", self.nearby)
        return True

    def stale(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return now - self.last_heard > 2.5 * self.interval_s


def minutes(estimate: dict[str, Any] | None) -> str:
    if not estimate or estimate.get("p50_s") is None:
        return "no counter open"
    low, high = round(estimate["p50_s"] / 60), round(estimate["p90_s"] / 60)
    return "now" if high < 1 else (f"{low} min" if low == high else f"{low}-{high} min")


def render(state: BoardState, connected: bool, now: float | None = None) -> Group:
    hall = state.hall
    if hall is None:
        return Group(Text("Connecting ...", style="bold yellow"))
    title = f"{hall['name']} ({hall['substation']}) · {hall['name_hi']}"
    counters = Table(show_header=True, header_style="bold", expand=True)
    counters.add_column("Counter")
    counters.add_column("Now serving", style="bold white", justify="center")
    for counter in hall["counters"]:
        token = counter["token"]["number"] if counter["token"] else ("free" if counter["open"] else "closed")
        counters.add_row(counter["id"], Text(token, style="bold" if counter["token"] else "dim"))
    waits = Table(show_header=True, header_style="bold", expand=True)
    waits.add_column("Service")
    waits.add_column("Waiting", justify="right")
    waits.add_column("Wait for a new token", justify="right")
    for service in hall["services"]:
        waits.add_row(service["name"], str(service["waiting"]), minutes(service["estimate"]))
    parts: list[Any] = [Panel(counters, title=title), waits]
    bill = next((s for s in hall["services"] if s["id"] == "bill_payment"), None)
    if state.online and bill and bill["estimate"] and (bill["estimate"]["p50_s"] or 0) > state.online["hint_after_s"]:
        parts.append(Panel(state.online["text"], style="black on yellow"))
    if state.nearby:
        parts.append(Text("Nearby: " + " | ".join(
            f"{n['name']} {minutes(n['estimate'])} ({n['distance_km']} km)" for n in state.nearby)))
    if state.called:
        parts.append(Text("Called: " + ", ".join(state.called), style="bold yellow"))
    if not connected or state.stale(now):
        parts.append(Text(" OFFLINE: information may be out of date ", style="bold white on red"))
    return Group(*parts)


async def follow(server: str, substation: str, state: BoardState, live: Live | None = None,
                 stop: asyncio.Event | None = None) -> None:
    """Keep the board fed, reconnecting with backoff and jitter and resuming with ``since``.

    websockets' own ``async for ws in connect(url)`` reconnects to one fixed URL; a board must
    ask for ``?since=`` its latest seq each time, so the loop is ours.
    """
    base = server.rstrip("/").replace("http", "ws", 1) + f"/api/v1/substations/{substation}/live"
    delay = 0.5
    while stop is None or not stop.is_set():
        url = base if state.seq is None else f"{base}?since={state.seq}"
        try:
            async with websockets.connect(url, open_timeout=5, ping_interval=10) as ws:
                delay = 0.5
                async for raw in ws:
                    if not state.apply(json.loads(raw)):
                        break                               # a gap: resume from what we hold
                    if live is not None:
                        live.update(render(state, True))
                    if stop is not None and stop.is_set():
                        return
        except (OSError, asyncio.TimeoutError, websockets.WebSocketException):
            pass
        if live is not None:
            live.update(render(state, False))
        await asyncio.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(15.0, delay * 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="display-board", description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="http://127.0.0.1:8080")
    parser.add_argument("--substation", required=True, help="e.g. S01")
    args = parser.parse_args(argv)
    state = BoardState()
    console = Console()
    with Live(render(state, False), console=console, refresh_per_second=4, screen=console.is_terminal) as live:
        try:
            asyncio.run(follow(args.server, args.substation, state, live))
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
