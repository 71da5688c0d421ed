"""The terminal board against a real server process, on both scenarios.

Widths are checked two ways: by glibc's ``wcswidth()`` (what tmux and xterm advance the cursor
by; rich counts a Devanagari vowel sign as 0 cells where they give it 1), and in a real terminal
(tmux) whose pane is captured: the title shows the hall's names and no line wrapped.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import locale
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from rich.cells import cell_len

from counter_server.config import Scenario, Substation, load_scenario
from display_board.terminal import EXIT_UNKNOWN_SUBSTATION, BoardState, Link, follow, render

from testkit.api import bearer
from testkit.processes import ROOT, ServerProcess, free_port
from testkit.scenarios import paid_service
from testkit.waiting import WaitTimedOut, wait_until, wait_until_async

WIDTHS = (80, 120, 160)


@pytest.fixture(scope="module")
def wcswidth() -> Iterator:
    """glibc's wcswidth() under a UTF-8 locale: an oracle independent of the board's own count."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.wcswidth.argtypes = [ctypes.c_wchar_p, ctypes.c_size_t]
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C.UTF-8")

    def measure(text: str) -> int:
        width = libc.wcswidth(text, len(text))
        assert width >= 0, f"unprintable text on the board: {text!r}"
        return width

    yield measure
    locale.setlocale(locale.LC_CTYPE, before)


@dataclass
class Hall:
    """A running server on one scenario, and the substation tests look at."""

    server: ServerProcess
    scenario: Scenario
    substation: Substation

    @property
    def paid(self) -> str:
        return paid_service(self.scenario)

    async def post(self, path: str, **body: object) -> dict:
        async with aiohttp.ClientSession(headers=bearer(self.server.admin_key)) as session:
            async with session.post(f"{self.server.url}{path}", json=body or None) as resp:
                answer = await resp.json()
                assert resp.status in (200, 201), answer
                return answer

    async def issue(self, tokens: int, substation: Substation | None = None) -> None:
        substation = substation or self.substation
        service = self.paid if self.paid in substation.services else substation.services[0]
        for _ in range(tokens):
            await self.post(f"/api/v1/substations/{substation.id}/tokens", service=service)

    async def call(self, counter: str) -> dict:
        return (await self.post(f"/api/v1/counters/{counter}/next"))["token"]


@pytest.fixture
def hall(tmp_path: Path, scenario_file: Path) -> Iterator[Hall]:
    scenario = load_scenario(scenario_file)
    server = ServerProcess(data_dir=tmp_path / "data", config=scenario_file)
    server.start()
    paid = paid_service(scenario)
    substation = next(s for s in scenario.substations.values() if paid in s.services)
    yield Hall(server, scenario, substation)
    server.stop()


async def snapshot_state(server: ServerProcess, substation: str) -> BoardState:
    state = BoardState()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{server.url.replace('http', 'ws')}/api/v1/substations/"
                                      f"{substation}/live") as ws:
            assert state.apply(json.loads((await ws.receive()).data), now=0)
    return state


def plain(lines: list) -> list[str]:
    return [line.plain for line in lines]


# -- item 21: measured the way the terminal draws -----------------------------------------------

async def test_every_hall_fits_80_120_and_160_columns_with_its_names_in_the_title(hall: Hall, wcswidth):
    counter = next(c for c in hall.substation.counters if hall.paid in c.services)
    await hall.issue(2)
    await hall.call(counter.id)
    mismeasured = 0
    for substation in hall.scenario.substations.values():
        state = await snapshot_state(hall.server, substation.id)
        state.called = [("X-001", counter.id)]
        for width in WIDTHS:
            lines = plain(render(state, Link(hall.server.url, connected=True), width, now=0))
            assert substation.name in lines[0] and substation.name_hi in lines[0], lines[0]
            assert all(wcswidth(line) <= width for line in lines), \
                [(wcswidth(line), line) for line in lines if wcswidth(line) > width]
            screen = "\n".join(lines)
            for c in substation.counters:
                assert c.label in screen
                if width >= 120:
                    assert c.label_hi in screen
            for service in substation.services:
                assert hall.scenario.services[service].name in screen
            assert "OFFLINE" not in screen
            mismeasured += sum(1 for line in lines if cell_len(line) != wcswidth(line))
    assert mismeasured, "rich counts these halls' Hindi as the terminal does: the test proves nothing"


def tmux_capture(command: list[str], width: int, height: int = 40) -> tuple[list[str], list[str]]:
    """The pane of ``command`` run in a real terminal (tmux) of ``width`` columns, as shown and
    with wrapped lines joined (the two differ when a line was too long for the terminal)."""
    socket_name = f"board-{free_port()}"
    tmux = ["tmux", "-L", socket_name]
    shell = " ".join(f"'{part}'" for part in command)
    subprocess.run([*tmux, "new-session", "-d", "-x", str(width), "-y", str(height),
                    f"cd {ROOT} && {shell}; sleep 30"], check=True, timeout=10)
    try:
        def pane() -> list[str]:
            return subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True,
                                  check=True, timeout=10).stdout.splitlines()

        with suppress(WaitTimedOut):                      # the caller's checks say what is missing
            wait_until(pane, done=lambda shown: bool(shown) and "━━" in shown[0]
                       and any(line.strip() for line in shown[3:]), what="the board drawn", timeout=10,
                       interval=0.1)
        time.sleep(0.3)                                   # let the frame finish drawing
        shown = pane()
        joined = subprocess.run([*tmux, "capture-pane", "-p", "-J"], capture_output=True,
                                text=True, check=True, timeout=10).stdout.splitlines()
        return shown, joined
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)


async def test_title_shows_the_halls_names_in_a_real_terminal_of_120_and_160_columns(hall: Hall):
    assert shutil.which("tmux"), "tmux is needed to look at the board in a real terminal"
    await hall.issue(1)
    await hall.call(next(c.id for c in hall.substation.counters if hall.paid in c.services))
    # The hall whose Hindi name rich mis-measures the most, where the title broke.
    substation = max(hall.scenario.substations.values(),
                     key=lambda s: (len(s.name_hi) - cell_len(s.name_hi), s.id == hall.substation.id))
    for width in (120, 160):
        command = [sys.executable, "-m", "display_board.terminal", "--server", hall.server.url,
                   "--substation", substation.id]
        shown, joined = await asyncio.to_thread(tmux_capture, command, width)
        assert substation.name in shown[0] and substation.name_hi in shown[0], shown[:2]
        assert len(joined) == len(shown), "a line wrapped:\n" + "\n".join(shown)
        assert any(substation.counters[0].label in line for line in shown)


# -- item 22: say what is wrong ------------------------------------------------------------------

async def test_unknown_substation_says_so_and_exits_non_zero(hall: Hall):
    url = f"{hall.server.url.replace('http', 'ws')}/api/v1/substations/NO-SUCH/live"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url)
    assert refused.value.status == 404                  # answered before the upgrade
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "display_board.terminal", "--server",
                         hall.server.url, "--substation", "NO-SUCH"],
        capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == EXIT_UNKNOWN_SUBSTATION
    assert "No substation has the id 'NO-SUCH'" in done.stderr and hall.server.url in done.stderr
    assert all(s in done.stderr for s in hall.scenario.substations), done.stderr


async def test_unreachable_server_is_named_while_the_board_keeps_trying(tmp_path: Path, scenario_file: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    substation = next(iter(load_scenario(scenario_file).substations.values()))
    state, link, stop = BoardState(), Link(url), asyncio.Event()
    runner = asyncio.create_task(follow(url, substation.id, state, link, stop=stop))
    await wait_until_async(lambda: link.problem is not None, what="the board naming its problem")
    screen = "\n".join(plain(render(state, link, 80)))
    assert f"Cannot reach the server at {url}" in screen and "Trying again in" in screen
    assert "Connecting" not in screen
    server = ServerProcess(data_dir=tmp_path / "data", config=scenario_file, port=port)
    server.start()
    try:
        await wait_until_async(lambda: state.hall is not None, what="the hall, once the server is up",
                               timeout=20)   # it kept trying
        screen = "\n".join(plain(render(state, link, 80, now=state.last_heard)))
        assert substation.name in screen and "Cannot reach" not in screen and "OFFLINE" not in screen
        server.kill()
        await wait_until_async(lambda: not link.connected and link.problem is not None,
                               what="the board noticing the server is gone")
        screen = "\n".join(plain(render(state, link, 80, now=state.last_heard)))
        assert "OFFLINE" in screen and url in screen and substation.name in screen
    finally:
        stop.set()
        runner.cancel()
        server.stop()


# -- any scenario: the paid service as the server names it ---------------------------------------

async def test_pay_online_hint_follows_the_paid_service_the_server_names(hall: Hall):
    # One counter open for the paid service, and enough people waiting that its wait is long.
    keep = next(c for c in hall.substation.counters if hall.paid in c.services)
    for counter in hall.substation.counters:
        if counter.id != keep.id:
            await hall.post(f"/api/v1/counters/{counter.id}/close")
    mean = hall.scenario.services[hall.paid].mean_service_s
    await hall.issue(math.ceil(hall.scenario.online.hint_after_s / mean) + 4)
    state = await snapshot_state(hall.server, hall.substation.id)
    view = next(s for s in state.hall["services"] if s["id"] == hall.paid)
    assert view["estimate"]["p50_s"] > hall.scenario.online.hint_after_s
    named = state.paid_service()
    if named is None:                                    # a server that does not name it yet
        screen = "\n".join(plain(render(state, True, 120, now=0)))
        assert hall.scenario.online.text not in screen   # nothing singled out by a guessed name
        state.payment_service = hall.paid                # as the snapshot's payment_service says
    else:
        assert named == hall.paid
    screen = "\n".join(plain(render(state, True, 120, now=0)))
    assert hall.scenario.online.text in screen and hall.scenario.online.text_hi in screen
    assert all(hall.scenario.services[s].name in screen for s in hall.substation.services)
    # A hall without the paid service (lakeside's east_gate) shows its services and no hint.
    for other in hall.scenario.substations.values():
        if hall.paid not in other.services:
            state = await snapshot_state(hall.server, other.id)
            state.payment_service = hall.paid
            screen = "\n".join(plain(render(state, True, 120, now=0)))
            assert hall.scenario.online.text not in screen
            assert all(hall.scenario.services[s].name in screen for s in other.services)


# -- the feed ------------------------------------------------------------------------------------

async def test_board_state_follows_real_messages_and_notices_gaps(hall: Hall):
    state = BoardState()
    counter = next(c for c in hall.substation.counters if hall.paid in c.services)
    url = f"{hall.server.url.replace('http', 'ws')}/api/v1/substations/{hall.substation.id}/live"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            assert state.apply(json.loads((await ws.receive()).data), now=0)
            await hall.issue(2)
            called = await hall.call(counter.id)
            deltas = [json.loads((await ws.receive()).data) for _ in range(3)]
    assert all(state.apply(d, now=1) for d in deltas)
    assert state.seq == deltas[-1]["seq"] and state.called == [(called["number"], counter.id)]
    screen = "\n".join(plain(render(state, True, 120, now=1.0)))
    assert f"{called['number']} → {counter.label}" in screen and hall.substation.name in screen
    assert "OFFLINE" not in screen
    skipped = {**deltas[-1], "seq": state.seq + 5, "prev": state.seq + 4}
    assert not state.apply(skipped, now=2)                  # a gap: must resume
    assert state.stale(now=2 + 2.5 * state.interval_s + 1)
    assert "OFFLINE" in "\n".join(plain(render(state, False, 120)))


async def test_terminal_client_sees_a_token_called_and_resumes_after_a_restart(hall: Hall):
    state, stop = BoardState(), asyncio.Event()
    first, second = [c for c in hall.substation.counters if hall.paid in c.services][:2]
    runner = asyncio.create_task(follow(hall.server.url, hall.substation.id, state, stop=stop))

    def serving(counter_id: str) -> dict | None:
        return next(c for c in state.hall["counters"] if c["id"] == counter_id)["token"]

    await wait_until_async(lambda: state.hall is not None, what="the hall's snapshot")
    await hall.issue(1)
    await hall.call(first.id)
    await wait_until_async(lambda: serving(first.id) is not None, what=f"{first.id} serving")
    seen = state.seq
    hall.server.kill()
    hall.server.start()
    await hall.issue(1)
    called = await hall.call(second.id)
    await wait_until_async(lambda: state.seq is not None and state.seq > seen
                           and serving(second.id) is not None, what=f"{second.id} serving, after the restart",
                           timeout=20)
    assert serving(second.id)["number"] == called["number"]
    stop.set()
    await hall.issue(1)                                     # one more message lets it notice stop
    await asyncio.wait_for(runner, 10)
