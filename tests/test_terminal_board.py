"""The terminal board against a real server process."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from rich.console import Console

from display_board.terminal import BoardState, follow, render

from .conftest import ServerProcess, bearer


async def issue_and_call(server: ServerProcess, tokens: int, counter: str | None = None) -> None:
    async with aiohttp.ClientSession(headers=bearer(server.admin_key)) as session:
        for _ in range(tokens):
            await session.post(f"{server.url}/api/v1/substations/S01/tokens", json={"service": "bill_payment"})
        if counter:
            await session.post(f"{server.url}/api/v1/counters/{counter}/next")


def text_of(state: BoardState, connected: bool = True, now: float = 1.0) -> str:
    console = Console(record=True, width=120)
    console.print(render(state, connected, now))
    return console.export_text()


async def test_board_state_follows_real_messages_and_notices_gaps(server_process: ServerProcess):
    server_process.start()
    state = BoardState()
    url = server_process.url.replace("http", "ws") + "/api/v1/substations/S01/live"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            assert state.apply(json.loads((await ws.receive()).data), now=0)
            await issue_and_call(server_process, 2, "S01-C3")
            deltas = [json.loads((await ws.receive()).data) for _ in range(3)]
    assert all(state.apply(d, now=1) for d in deltas)
    assert state.seq == deltas[-1]["seq"] and state.called == ["B-001 → S01-C3"]
    screen = text_of(state)
    assert "B-001" in screen and "Kidwai Nagar" in screen and "OFFLINE" not in screen
    skipped = {**deltas[-1], "seq": state.seq + 5, "prev": state.seq + 4}
    assert not state.apply(skipped, now=2)                  # a gap: must resume
    assert state.stale(now=2 + 2.5 * state.interval_s + 1)
    assert "OFFLINE" in text_of(state, connected=False)


async def test_terminal_client_sees_a_token_called_and_resumes_after_a_restart(server_process: ServerProcess):
    server_process.start()
    state, stop = BoardState(), asyncio.Event()
    runner = asyncio.create_task(follow(server_process.url, "S01", state, stop=stop))

    async def wait_until(condition, timeout: float = 10.0) -> None:
        for _ in range(int(timeout / 0.05)):
            if condition():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("board did not catch up")

    await wait_until(lambda: state.hall is not None)
    await issue_and_call(server_process, 1, "S01-C1")
    await wait_until(lambda: state.hall["counters"][0]["token"] is not None)
    seen = state.seq
    server_process.kill()
    server_process.start()
    await issue_and_call(server_process, 1, "S01-C2")
    await wait_until(lambda: state.seq is not None and state.seq > seen
                     and state.hall["counters"][1]["token"] is not None, timeout=20)
    assert state.hall["counters"][1]["token"]["number"] == "B-002"
    stop.set()
    await issue_and_call(server_process, 1)                 # one more message lets it notice stop
    await asyncio.wait_for(runner, 10)
