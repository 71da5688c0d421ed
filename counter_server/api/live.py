"""WebSocket endpoints: one hall's channel (public) and the ops channel of all substations.

They are HTTP handlers like the rest of ``api/``; the hub they serve from lives in ``live/``,
which imports nothing of the API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiohttp import WSMsgType, web

from ..appkeys import HUB, KEYS, SETTINGS, TOKENS
from ..live.boards import parse_board_status
from ..live.hub import OPS_CHANNEL, LiveHub, Subscriber
from ..live.today import today_hall
from ..services import Actor, Forbidden, KeyService, Role
from .errors import ApiError
from .requests import actor_of, public, whole_number

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4001
CLOSE_KEY_REVOKED = 4003
CLOSE_GOING_AWAY = 1001


def _since(request: web.Request) -> int | None:
    raw = request.query.get("since")
    if raw is None:
        return None
    since = whole_number(raw)
    if since is None or len(raw) > 18:
        raise ApiError(400, "invalid_since", "since must be a sequence number (0 or more).",
                       field="since")
    return since


@public
async def substation_live(request: web.Request) -> web.WebSocketResponse:
    """A hall board's feed: snapshot, then every change at that substation."""
    sid = request.match_info["sid"]
    tokens = request.app[TOKENS]
    tokens.substation(sid)  # 404 before the upgrade
    since = _since(request)
    hub = request.app[HUB]
    await today_hall(tokens, hub, sid)
    return await _serve(request, hub, sid, since)


async def ops_live(request: web.Request) -> web.WebSocketResponse:
    """All substations at once, for ops staff: an admin key, or a board key (read-only ops,
    like reports and metrics: a wall screen of every hall). Never a cashier key: the channel
    carries the billing gateway's state and every hall's alerts."""
    actor = actor_of(request)  # the auth middleware (or the ops page's ticket) has checked the key
    if actor.role not in (Role.ADMIN, Role.BOARD):
        raise Forbidden("The ops channel is for admin and board keys.", role=actor.role.value)
    return await _serve(request, request.app[HUB], OPS_CHANNEL, _since(request), actor)


async def _serve(request: web.Request, hub: LiveHub, channel: str, since: int | None,
                 actor: Actor | None = None) -> web.WebSocketResponse:
    # No per-message deflate: one delta goes to thousands of boards, and compressing it once
    # per board would cost more CPU than the hall's network saves.
    ws = web.WebSocketResponse(heartbeat=request.app[SETTINGS].live_heartbeat_s, max_msg_size=4096,
                               compress=False)
    await ws.prepare(request)
    initial, subscriber = hub.subscribe(channel, since)
    reader = asyncio.create_task(_read_frames(ws, hub, subscriber))
    reader.add_done_callback(lambda _: subscriber.end())   # the board hung up: stop writing
    recheck_s = request.app[SETTINGS].live_key_recheck_s
    key_guard = asyncio.create_task(_end_when_revoked(request.app[KEYS], actor.key_id, subscriber, recheck_s)) \
        if actor is not None else None
    try:
        for text in initial:
            await ws.send_str(text)
        while not ws.closed:
            try:
                async with asyncio.timeout(hub.heartbeat_s):
                    text = await subscriber.queue.get()
            except TimeoutError:
                text = hub.heartbeat(channel)
            if text is None:
                if key_guard is not None and key_guard.done():
                    await ws.close(code=CLOSE_KEY_REVOKED, message=b"key revoked")
                elif subscriber.dropped:
                    await ws.close(code=CLOSE_TOO_SLOW, message=b"too slow: reconnect with since")
                else:
                    await ws.close(code=CLOSE_GOING_AWAY, message=b"server going away")
                break
            await ws.send_str(text)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.unsubscribe(subscriber)
        for task in (reader, key_guard):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return ws


async def _end_when_revoked(keys: KeyService, key_id: str, subscriber: Subscriber, every_s: float) -> None:
    """Returns (having ended the subscription) once the key is revoked: the socket outlives
    the handshake that checked its key. A store that cannot answer ends nothing."""
    while True:
        await asyncio.sleep(every_s)
        try:
            live = await keys.is_live(key_id)
        except Exception as exc:  # noqa: BLE001 - the next round asks again
            log.warning("could not check live key %s: %s", key_id, exc.__class__.__name__)
            continue
        if not live:
            subscriber.end()
            return


async def read_until_closed(ws: web.WebSocketResponse,
                            on_text: Callable[[str], None] | None = None) -> None:
    """Keeps pings, pongs and close frames flowing, hands text frames to ``on_text`` (if any;
    frames are size-limited by the socket's ``max_msg_size``), ignores the rest, and returns
    when the other end has gone."""
    async for msg in ws:
        if msg.type == WSMsgType.ERROR:
            break
        if on_text is not None and msg.type == WSMsgType.TEXT:
            on_text(msg.data)


async def _read_frames(ws: web.WebSocketResponse, hub: LiveHub, subscriber: Subscriber) -> None:
    """A hall board counts as connected while this runs and may report its voice (junk and
    anything else it sends is ignored); an ops client first gets the boards' counts."""
    if subscriber.channel == OPS_CHANNEL:
        subscriber.offer(hub.boards_json())
        await read_until_closed(ws)
        return
    hub.board_joined(subscriber)
    try:
        await read_until_closed(ws, lambda text: _board_frame(hub, subscriber, text))
    finally:
        hub.board_left(subscriber)


def _board_frame(hub: LiveHub, subscriber: Subscriber, text: str) -> None:
    voice = parse_board_status(text)
    if voice is not None:
        hub.board_reported(subscriber, voice)
