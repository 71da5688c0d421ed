"""``display-board``: the hall board in a terminal, for a spare PC or a serial console.

    display-board --server http://127.0.0.1:8080 --substation S01

Built on the ``websockets`` client and rich; reconnects with backoff and resumes with ``since``.
``BoardState`` applies the feed's messages and notices gaps; ``Link`` says how the connection
stands; ``render`` lays the board out as lines measured the way the terminal draws them
(display_board/cells.py); ``HallScreen`` paints those lines as they are, each at its own row.
rich's tables and panels measure a Devanagari vowel sign as 0 cells and would pad such a line
one cell past the edge for each, so the layout is ours and rich only styles the text.

An unknown substation ends the program (exit status 2) with the server's words; while the
server cannot be reached the board says so, with the URL, and keeps trying.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import websockets
from rich.console import Console
from rich.control import Control
from rich.segment import ControlType
from rich.text import Text

from .cells import Align, cells, clip, first_fitting, fit, wrap

EXIT_UNKNOWN_SUBSTATION = 2
OPEN_TIMEOUT_S = 5.0


@dataclass
class BoardState:
    """What a board knows: the hall as of ``seq``, and when it last heard from the server."""

    seq: int | None = None
    hall: dict[str, Any] | None = None
    nearby: list[dict[str, Any]] = field(default_factory=list)
    online: dict[str, Any] | None = None
    payment_service: str | None = None       # as the snapshot names it, if it does
    interval_s: float = 5.0
    last_heard: float = 0.0
    called: list[tuple[str, str]] = field(default_factory=list)   # (token number, counter id)

    def apply(self, message: dict[str, Any], now: float | None = None) -> bool:
        """Take one message; False when a delta shows one was missed (resume with since)."""
        self.last_heard = time.monotonic() if now is None else now
        kind = message.get("type")
        if kind == "snapshot":
            self.seq, self.hall = message["seq"], message["hall"]
            self.nearby, self.online = message.get("nearby", []), message.get("online")
            self.payment_service = message.get("payment_service", self.payment_service)
        elif kind == "delta":
            if self.seq is not None and message["prev"] != self.seq:
                return False
            self.seq, self.hall = message["seq"], message["hall"]
            for event in message["events"]:
                if event["kind"] in ("called", "recalled") and event["token"]:
                    self.called = [(event["token"]["number"], event["counter"]), *self.called][:3]
        elif kind == "heartbeat":
            self.interval_s = message["interval_s"]
            self.nearby = message.get("nearby", self.nearby)
        return True

    def stale(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return now - self.last_heard > 2.5 * self.interval_s

    def paid_service(self) -> str | None:
        """The service the server names as paid (its wait decides the pay-online hint); None
        while it names none, and then no service is singled out."""
        hall, online = self.hall or {}, self.online or {}
        return hall.get("payment_service") or self.payment_service or online.get("payment_service")

    def counter_names(self, counter_id: str) -> tuple[str, str]:
        """A counter's display names (English, Hindi) as the hall sends them."""
        for counter in (self.hall or {}).get("counters", []):
            if counter["id"] == counter_id:
                name = counter.get("name") or counter_id
                return name, counter.get("name_hi") or name
        return counter_id, counter_id


@dataclass
class Link:
    """How the connection to the server stands, in words a person at the hall can act on."""

    server: str
    connected: bool = False
    problem: str | None = None          # what went wrong on the last attempt, naming the URL
    retry_at: float | None = None       # monotonic time of the next attempt


class UnknownSubstation(Exception):
    """The server has no substation of that id: retrying would never help."""


# -- words ----------------------------------------------------------------------------------

def both(english: str, hindi: str | None) -> str:
    """'English · हिंदी', or the English alone when there is no other Hindi."""
    return english if not hindi or hindi == english else f"{english} · {hindi}"


def minutes(estimate: dict[str, Any] | None) -> str:
    """A wait range in English: 'now', '5 min', '5-7 min' or 'no counter open'."""
    return wait_words(estimate)[0]


def wait_words(estimate: dict[str, Any] | None) -> tuple[str, str]:
    """A wait range in English and in both languages ('5-7 min', '5-7 min · मिनट')."""
    if not estimate or estimate.get("p50_s") is None:
        return "no counter open", "no counter open · काउंटर बंद"
    low, high = round(estimate["p50_s"] / 60), round(estimate["p90_s"] / 60)
    if high < 1:
        return "now", "now · तुरंत"
    span = f"{low}" if low == high else f"{low}-{high}"
    return f"{span} min", f"{span} min · मिनट"


# -- layout ---------------------------------------------------------------------------------

@dataclass
class Column:
    """A table column: header variants (longest first) and how its cells line up."""

    header: tuple[str, ...]
    align: Align = "left"


Cell = tuple[tuple[str, ...], str]       # text variants (longest first), style


def table(columns: list[Column], rows: list[list[Cell]], width: int, indent: int = 1,
          gap: int = 2) -> list[Text]:
    """Header and rows laid out in ``width`` cells, every line within it: bilingual while it
    fits; when not, the column part (header or cells) whose shorter variant saves the most steps
    down first; the spare cells are shared out between the columns."""
    count = len(columns)
    head_level, body_level = [0] * count, [0] * count

    def pick(variants: tuple[str, ...], level: int) -> str:
        return variants[min(level, len(variants) - 1)]

    def column_width(i: int, head: int, body: int) -> int:
        return max([cells(pick(columns[i].header, head)), *(cells(pick(r[i][0], body)) for r in rows)])

    def deeper(variants: list[tuple[str, ...]], level: int) -> bool:
        return any(level + 1 < len(v) for v in variants)

    widths = [column_width(i, 0, 0) for i in range(count)]
    room = width - indent - gap * (count - 1)
    while sum(widths) > room:
        steps = []                                       # (saving, header first, column, part)
        for i in range(count):
            if deeper([columns[i].header], head_level[i]):
                new = column_width(i, head_level[i] + 1, body_level[i])
                steps.append((widths[i] - new, 1, widths[i], i, "head"))
            if deeper([r[i][0] for r in rows], body_level[i]):
                new = column_width(i, head_level[i], body_level[i] + 1)
                steps.append((widths[i] - new, 0, widths[i], i, "body"))
        if not steps:
            break
        *_, i, part = max(steps)
        if part == "head":
            head_level[i] += 1
        else:
            body_level[i] += 1
        widths[i] = column_width(i, head_level[i], body_level[i])
    spare = room - sum(widths)
    for i in range(count):                               # share the spare cells out
        widths[i] += max(spare, 0) // count + (1 if i < max(spare, 0) % count else 0)
    while spare < 0 and max(widths) > 1:                 # or take from the widest, one at a time
        widths[widths.index(max(widths))] -= 1
        spare += 1
    lines = [_row([(pick(c.header, head_level[i]), "bold") for i, c in enumerate(columns)],
                  columns, widths, indent, gap)]
    for row in rows:
        lines.append(_row([(pick(variants, body_level[i]), style)
                           for i, (variants, style) in enumerate(row)], columns, widths, indent, gap))
    return lines


def _row(cells_: list[tuple[str, str]], columns: list[Column], widths: list[int], indent: int,
         gap: int) -> Text:
    line = Text(" " * indent)
    for i, ((text, style), column, width) in enumerate(zip(cells_, columns, widths)):
        if i:
            line.append(" " * gap)
        line.append(fit(text, width, column.align), style=style or None)
    return line


def rule(title: str, width: int, style: str = "bold") -> Text:
    """'━━ title ━━━━' across the width."""
    title = clip(title, max(width - 4, 0))
    line = Text("━━ ", style="dim")
    line.append(title, style=style)
    line.append(" " + "━" * max(width - 4 - cells(title), 0), style="dim")
    return _within(line, width)


def _within(line: Text, width: int) -> Text:
    """``line`` cut to ``width`` cells by our count (a safety net for very narrow terminals)."""
    if cells(line.plain) <= width:
        return line
    return Text(clip(line.plain, width))


def banner(text: str, width: int, style: str) -> list[Text]:
    """``text`` word-wrapped into full-width lines of one style."""
    return [Text(fit(" " + part, width), style=style)
            for part in wrap(text.split(" "), width - 2, separator=" ")]


def render(state: BoardState, link: Link | bool, width: int = 80, now: float | None = None,
           height: int | None = None) -> list[Text]:
    """The board as lines of at most ``width`` cells; with ``height``, cut to fit, keeping the
    status lines at the bottom."""
    if isinstance(link, bool):
        link = Link(server="", connected=link)
    now = time.monotonic() if now is None else now
    footer = _status(state, link, width, now)
    hall = state.hall
    if hall is None:
        body = [rule(first_fitting(width - 4, "Token board · टोकन बोर्ड", "Token board"), width)]
        if link.problem is None:
            waiting = f"Connecting to {link.server} · जुड़ रहा है" if link.server else "Connecting ..."
            body.append(Text(clip(waiting, width), style="bold yellow"))
    else:
        body = _hall(state, hall, width)
    if height is not None and len(body) + len(footer) > height:
        body = body[:max(height - len(footer), 0)]
    return [*body, *footer][:height] if height is not None else [*body, *footer]


def _hall(state: BoardState, hall: dict[str, Any], width: int) -> list[Text]:
    name, sid, name_hi = hall["name"], hall["substation"], hall.get("name_hi")
    lines = [rule(first_fitting(width - 4, f"{name} ({sid}) · {name_hi}", both(name, name_hi),
                                name), width)]
    rows: list[list[Cell]] = []
    for counter in hall["counters"]:
        label = (both(counter.get("name") or counter["id"], counter.get("name_hi")),
                 counter.get("name") or counter["id"])
        if counter["token"]:
            now_serving: Cell = ((counter["token"]["number"],), "bold")
        elif counter["open"]:
            now_serving = (("free · खाली", "free"), "dim")
        else:
            now_serving = (("closed · बंद", "closed"), "dim")
        rows.append([(label, ""), now_serving])
    lines += table([Column(("Counter · काउंटर", "Counter")),
                    Column(("Now serving · अभी सेवा में", "Now serving"), "center")], rows, width)
    lines.append(Text(""))
    paid = state.paid_service()
    services = sorted(hall["services"], key=lambda s: s["id"] != paid)   # the paid one first
    rows = [[((both(s["name"], s.get("name_hi")), s["name"]), ""),
             ((str(s["waiting"]),), ""),
             (tuple(reversed(wait_words(s["estimate"]))), "")] for s in services]
    lines += table([Column(("Service · सेवा", "Service")),
                    Column(("Waiting · प्रतीक्षा में", "Waiting"), "right"),
                    Column(("Wait for a new token · नया टोकन लें तो प्रतीक्षा",
                            "Wait for a new token", "New token"), "right")], rows, width)
    paid_view = next((s for s in hall["services"] if s["id"] == paid), None)
    wait = (paid_view or {}).get("estimate") or {}
    if state.online and (wait.get("p50_s") or 0) > state.online["hint_after_s"]:
        lines.append(Text(""))
        for text in (state.online.get("text_hi"), state.online["text"]):
            if text:
                lines += banner(text, width, "black on yellow")
    nearby = [f"{both(n['name'], n.get('name_hi'))} {minutes(n['estimate'])} ({n['distance_km']} km)"
              for n in state.nearby if n.get("estimate")]
    if nearby:
        lines.append(Text(""))
        named = (state.online or {}).get("payment_service_name")   # whose waits these are
        lead = f"Nearby · पास के केंद्र ({named}): " if named else "Nearby · पास के केंद्र: "
        lines += [Text(line) for line in wrap(nearby, width, lead=lead)]
    if state.called:
        calls = [f"{number} → {both(*state.counter_names(counter))}" for number, counter in state.called]
        lines += [Text(line, style="bold yellow") for line in wrap(calls, width, ", ", "Called: ")]
    return lines


def _status(state: BoardState, link: Link, width: int, now: float) -> list[Text]:
    lines: list[Text] = []
    if state.hall is not None and (not link.connected or state.stale(now)):
        lines.append(Text(fit(" " + first_fitting(
            width - 2, "OFFLINE: information may be out of date · ऑफ़लाइन — जानकारी पुरानी हो सकती है",
            "OFFLINE: information may be out of date", "OFFLINE"), width),
            style="bold white on red"))
    if link.problem and not link.connected:
        words = link.problem
        if link.retry_at is not None:
            words += f" Trying again in {max(round(link.retry_at - now), 0)} s."
        lines += [Text(line, style="bold red") for line in wrap(words.split(" "), width, " ")]
    return lines


# -- the screen -----------------------------------------------------------------------------

class HallScreen:
    """Paints whole frames on the terminal's alternate screen, each line at its own row and
    as it is (no re-padding, no wrapping by a count that differs from ours); on a pipe, prints
    each new frame once."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._last = ""

    def __enter__(self) -> HallScreen:
        if self.console.is_terminal:
            self.console.set_alt_screen(True)
            self.console.show_cursor(False)
        return self

    def __exit__(self, *_: object) -> None:
        if self.console.is_terminal:
            self.console.show_cursor(True)
            self.console.set_alt_screen(False)

    def size(self) -> tuple[int, int]:
        width, height = self.console.size
        return width, height

    def draw(self, lines: list[Text]) -> None:
        console = self.console
        if not console.is_terminal:
            plain = "\n".join(line.plain.rstrip() for line in lines)
            if plain != self._last:
                self._last = plain
                console.print(Text("\n").join(lines), soft_wrap=True)
            return
        _, height = self.size()
        with console:                                  # one write per frame
            for row in range(height):
                console.control(Control.move_to(0, row), Control((ControlType.ERASE_IN_LINE, 2)))
                if row < len(lines):
                    console.print(lines[row], soft_wrap=True, end="")


# -- the feed -------------------------------------------------------------------------------

def _refusal(response: Any) -> tuple[int, str | None, str]:
    """(status, error code, message) of an HTTP answer that refused the WebSocket upgrade."""
    status = getattr(response, "status_code", 0)
    try:
        error = json.loads(bytes(response.body or b"")).get("error") or {}
    except (ValueError, AttributeError, TypeError):
        error = {}
    return status, error.get("code"), error.get("message") or getattr(response, "reason_phrase", "")


def _why_unreachable(exc: BaseException, server: str) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is counter-server running there?)"
    if isinstance(exc, socket.gaierror):
        return f"the host name {urlsplit(server).hostname!r} is not known"
    if isinstance(exc, TimeoutError):
        return f"no answer within {OPEN_TIMEOUT_S:g} s"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


async def _known_substations(server: str) -> str:
    """'S01 Kidwai Nagar, S02 ...' from the server's public list, or '' when it cannot say."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=OPEN_TIMEOUT_S)) as session:
            async with session.get(f"{server}/api/v1/public/substations") as resp:
                listed = (await resp.json())["substations"]
        return ", ".join(f"{s['id']} ({s['name']})" for s in sorted(listed, key=lambda s: s["id"]))
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
        return ""


async def follow(server: str, substation: str, state: BoardState, link: Link | None = None,
                 on_change: Callable[[], None] | None = None,
                 stop: asyncio.Event | None = None) -> None:
    """Keep the board fed, reconnecting with backoff and jitter and resuming with ``since``.

    websockets' own ``async for ws in connect(url)`` reconnects to one fixed URL; a board must
    ask for ``?since=`` its latest seq each time, so the loop is ours. Raises
    ``UnknownSubstation`` when the server answers 404 substation_not_found.
    """
    server = server.rstrip("/")
    link = link if link is not None else Link(server)
    changed = on_change or (lambda: None)
    base = server.replace("http", "ws", 1) + f"/api/v1/substations/{substation}/live"
    delay = 0.5
    while stop is None or not stop.is_set():
        url = base if state.seq is None else f"{base}?since={state.seq}"
        gap = False
        try:
            async with websockets.connect(url, open_timeout=OPEN_TIMEOUT_S, ping_interval=10) as ws:
                delay = 0.5
                link.connected, link.problem, link.retry_at = True, None, None
                changed()
                async for raw in ws:
                    if not state.apply(json.loads(raw)):
                        gap = True                  # resume from what we hold, at once
                        break
                    changed()
                    if stop is not None and stop.is_set():
                        return
            if not gap:
                link.problem = f"The server at {server} closed the connection."
        except websockets.InvalidStatus as exc:
            status, code, message = _refusal(exc.response)
            if status == 404 and code == "substation_not_found":
                known = await _known_substations(server)
                raise UnknownSubstation(f"{message.rstrip('.')} at {server}."
                                        + (f" Substations there: {known}." if known else "")) from None
            link.problem = (f"The server at {server} refused the board's connection: {status} "
                            f"{message}".rstrip() + ".")
        except (OSError, TimeoutError) as exc:
            link.problem = f"Cannot reach the server at {server}: {_why_unreachable(exc, server)}."
        except websockets.ConnectionClosedError as exc:
            why = f"close code {exc.rcvd.code}" if exc.rcvd else "no close frame"
            link.problem = f"The connection to {server} broke ({why})."
        except websockets.WebSocketException as exc:
            link.problem = f"The server at {server} did not answer as a counter server does: {exc}."
        if gap:
            continue
        link.connected = False
        wait_s = delay * random.uniform(0.5, 1.5)
        link.retry_at = time.monotonic() + wait_s
        changed()
        await asyncio.sleep(wait_s)
        delay = min(15.0, delay * 2)


async def run_board(server: str, substation: str, screen: HallScreen, tick_s: float = 0.5) -> None:
    """Follow the feed and paint the board on every change and every tick (for the retry
    countdown, staleness and a resized terminal)."""
    state, link = BoardState(), Link(server.rstrip("/"))

    def paint() -> None:
        width, height = screen.size()
        screen.draw(render(state, link, width, height=height))

    follower = asyncio.create_task(follow(server, substation, state, link, on_change=paint))
    try:
        while not follower.done():
            paint()
            await asyncio.wait({follower}, timeout=tick_s)
        follower.result()
    finally:
        follower.cancel()


def server_url(text: str) -> str:
    """An http(s) URL, for argparse."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected a URL like http://127.0.0.1:8080, not {text!r}")
    return text.rstrip("/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="display-board", description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="http://127.0.0.1:8080", type=server_url)
    parser.add_argument("--substation", required=True, help="a substation id on that server")
    args = parser.parse_args(argv)
    try:
        with HallScreen(Console()) as screen:
            asyncio.run(run_board(args.server, args.substation, screen))
    except UnknownSubstation as exc:
        print(f"display-board: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN_SUBSTATION
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
