"""Reading a live channel as a board does: the next message, or the first one that matters,
within a timeout that names what never came."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp


async def receive_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 2.0) -> dict[str, Any]:
    """The next frame, which must be text, as JSON."""
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def receive_text_until(ws: aiohttp.ClientWebSocketResponse, accept: Callable[[dict[str, Any]], object],
                             *, what: str, timeout: float = 5.0) -> str:
    """The first message ``accept`` takes, as sent (to search the raw text); the others are
    read past. ``timeout`` bounds the whole wait, however many messages come before it."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            msg = await asyncio.wait_for(ws.receive(), max(0.01, left))
        except asyncio.TimeoutError:
            raise AssertionError(f"no {what} within {timeout:g} s") from None
        assert msg.type == aiohttp.WSMsgType.TEXT, f"waiting for {what}: {msg}"
        if accept(json.loads(msg.data)):
            return msg.data


async def receive_until(ws: aiohttp.ClientWebSocketResponse, accept: Callable[[dict[str, Any]], object],
                        *, what: str, timeout: float = 5.0) -> dict[str, Any]:
    """The first message ``accept`` takes, as JSON."""
    return json.loads(await receive_text_until(ws, accept, what=what, timeout=timeout))


async def receive_type(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """The first message of type ``kind``."""
    return await receive_until(ws, lambda message: message["type"] == kind, what=f"{kind!r} message",
                               timeout=timeout)
