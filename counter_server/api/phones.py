"""Thin handlers of the consumers' phone API (public: no key; the token's link, its id with a
MAC only the server can make, is what lets a phone see and cancel its own token)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import struct
from datetime import date

import orjson
from aiohttp import web

from ..appkeys import HUB, PHONE_LIMITER, PHONES, SETTINGS, SMS, TOKEN_WATCH
from ..config import Scenario
from ..live.hub import SCHEMA_VERSION
from ..live.token_watch import View
from ..queueing import ServiceView
from ..notices import SmsRequest
from ..services.phones import ListedHall
from ..services.sms import hint as sms_hint
from ..shapes import iso, phone_token_fixed, phone_token_json, phone_token_wait, slot_plan_json
from ..store import IdempotencyKey
from .errors import ApiError
from .live import read_until_closed
from .requests import actor_of, idempotency_of, parse_body, public, whole_number
from .schemas import DAY_SHAPE, AskSms, BookSlot, PublishSlots, TakeToken

MAX_TRAVEL_MIN = 300
# A phone's socket with more than this waiting to go out gets its next view from its writer,
# which waits for the link to drain (aiohttp's own high-water mark is 64 KiB).
DIRECT_WRITE_LIMIT = 16 * 1024


def ping_interval_s(most_s: float) -> float:
    """A phone's own ping interval, between three quarters of ``most_s`` and all of it. Phones
    that connected together (ten thousand coming back after a restart) would otherwise be
    pinged together for ever: a burst of pings, pongs and their tasks that held back a round
    of answers to every phone by half as long again."""
    return most_s * random.uniform(0.75, 1.0)


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final WebSocket text frame (RFC 6455, 5.2), as a server sends it: the
    header is two bytes and the length, a fifth of the time a general frame class takes."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


def _travel_s(request: web.Request) -> float:
    raw = request.query.get("travel_min")
    if raw is None or raw == "":
        return request.app[SETTINGS].scenario.phones.travel_minutes * 60.0
    minutes = whole_number(raw)
    if minutes is None or minutes > MAX_TRAVEL_MIN:
        raise ApiError(400, "invalid_travel_min", f"travel_min must be 0 to {MAX_TRAVEL_MIN} minutes.",
                       field="travel_min")
    return minutes * 60.0


def _limit_takes(request: web.Request) -> None:
    """Tokens and bookings one client address may take an hour (a household, a shop's wifi)."""
    wait = request.app[PHONE_LIMITER].take(request.remote or "unknown")
    if wait > 0:
        retry = max(1, math.ceil(wait))
        raise ApiError(429, "rate_limited",
                       f"Too many tokens taken from this address; retry in {retry // 60 + 1} min.",
                       {"Retry-After": str(retry)}, retry_after_s=retry)


async def _idempotency(request: web.Request) -> IdempotencyKey | None:
    """Phones have no API key: their keys share one scope (random UUIDs from the page)."""
    return await idempotency_of(request, principal="public")


def _token_answer(request: web.Request, token, estimate, status: int = 200, **extra) -> web.Response:
    link = request.app[PHONES].links.link(token.id)
    body = {"token": phone_token_json(token, link, request.app[SETTINGS].scenario, estimate, _travel_s(request)),
            "url": f"/q/t/{link}", **extra}
    return web.json_response(body, status=status)


def _service_wait(view: ServiceView | None) -> dict:
    """One service's line in a hall: how many wait, counters open for it, the wait range."""
    if view is None:
        return {"waiting": 0, "open_counters": 0, "estimate": None}
    return {"waiting": view.waiting, "open_counters": view.open_counters,
            "estimate": {"p50_s": view.estimate.p50_s, "p90_s": view.estimate.p90_s}}


def _listed_json(listed: ListedHall, scenario: Scenario) -> dict:
    """A substation's card: each service's own wait, whether its hours are on now and how many
    counters are open, so a card never says "closed" and "open" at once."""
    substation, hall = listed.substation, listed.hall
    services = [{"id": s, "name": scenario.services[s].name, "name_hi": scenario.services[s].name_hi,
                 **_service_wait(listed.service_view(s))} for s in substation.services]
    shown = next(s for s in services if s["id"] == listed.shown_service)
    return {
        "id": substation.id, "name": substation.name, "name_hi": substation.name_hi,
        "opens": substation.opens.isoformat("minutes"), "closes": substation.closes.isoformat("minutes"),
        "open_today": listed.open_today,
        "opens_on": listed.reopens.isoformat() if listed.reopens else None,
        "in_hours": listed.in_hours,
        "counters": len(substation.counters),
        "counters_open": sum(1 for c in hall.counters if c.open) if hall else 0,
        "default_service": listed.default_service,
        "services": services,
        "waiting": hall.waiting_total if hall else 0,
        # The wait of ``estimate_service`` (the paid service here, else the first one offered).
        "estimate_service": shown["id"],
        "estimate": shown["estimate"],
    }


@public
async def list_substations(request: web.Request) -> web.Response:
    """Substations with each service's wait, in the order the phone service gives them (by the
    wait for the paid service). The page re-sorts by the service a consumer picks."""
    scenario = request.app[SETTINGS].scenario
    found = request.app[PHONES].hall_list()
    online = scenario.online
    response = web.json_response({
        "substations": [_listed_json(listed, scenario) for listed in found.halls],
        "payment_service": scenario.payment_service,
        "travel_minutes": scenario.phones.travel_minutes,
        "online": {"text": online.text, "text_hi": online.text_hi, "suggest": found.suggest_online},
    })
    response.enable_compression()   # every visit fetches it: ~10 KB of JSON, ~1.5 KB on the wire
    return response


@public
async def take_token(request: web.Request) -> web.Response:
    body = await parse_body(request, TakeToken)
    idem = await _idempotency(request)
    _limit_takes(request)
    applied, checked = await request.app[PHONES].take(request.match_info["sid"], body.service,
                                                      body.account, body.phone, idem)
    return _token_answer(request, applied.token, applied.estimate, 201, account_check=checked)


@public
async def list_slots(request: web.Request) -> web.Response:
    """Free slots over the booking horizon, each day marked when it falls in the month-end rush."""
    tz = request.app[SETTINGS].scenario.timezone
    days = await request.app[PHONES].slot_days(request.match_info["sid"])
    quiet = [d for d in days if not d.month_end and d.free > 0]
    return web.json_response({
        "substation": request.match_info["sid"],
        # The server's time: a phone's own clock is often wrong, and slots are the server's.
        "now": iso(request.app[PHONES].clock(), tz),
        "today": request.app[PHONES].tokens.today(),
        "recommended": quiet[0].day if quiet else None,
        "days": [{"day": d.day, "month_end": d.month_end, "free": d.free,
                  "slots": [{"at": iso(start, tz), "capacity": capacity, "free": max(0, capacity - booked)}
                            for start, capacity, booked in d.slots]}
                 for d in days],
    })


@public
async def book_slot(request: web.Request) -> web.Response:
    body = await parse_body(request, BookSlot)
    idem = await _idempotency(request)
    _limit_takes(request)
    applied, checked = await request.app[PHONES].book(request.match_info["sid"], body.service, body.account,
                                                      body.phone, body.slot_at.timestamp(), idem)
    return _token_answer(request, applied.token, applied.estimate, 201, account_check=checked)


@public
async def get_token(request: web.Request) -> web.Response:
    _travel_s(request)   # a bad query is named before the token is looked up
    token, estimate = await request.app[PHONES].view(request.match_info["link"])
    return _token_answer(request, token, estimate)


@public
async def cancel_token(request: web.Request) -> web.Response:
    idem = await _idempotency(request)
    applied = await request.app[PHONES].cancel(request.match_info["link"], idem)
    return _token_answer(request, applied.token, applied.estimate)


@public
async def token_live(request: web.Request) -> web.WebSocketResponse:
    """WebSocket: the token's own view now, then again whenever it changes.

    Ten thousand phones may follow their tokens at once, so a change is written to each socket
    by the token watch itself, there and then; the handler reads the socket (pings, close)
    while one task per phone writes heartbeats, and the newest view when the link was too
    backed up to take it at once."""
    travel_s = _travel_s(request)
    link = request.match_info["link"]
    token, _ = await request.app[PHONES].view(link)   # 404 before the upgrade
    scenario = request.app[SETTINGS].scenario
    watch = request.app[TOKEN_WATCH]
    heartbeat_s = request.app[HUB].heartbeat_s
    ws = web.WebSocketResponse(heartbeat=ping_interval_s(request.app[SETTINGS].live_phone_ping_s),
                               max_msg_size=1024)
    await ws.prepare(request)
    transport = request.transport

    shown_token, shown_head = None, b""   # the token last written, its message up to the wait

    def message(view: View) -> bytes:
        """The message with the token's place and wait, encoded alone: the rest of it is encoded
        once per Token (the queue keeps one while it is unchanged), up to its token's last
        fixed field and a comma; the wait's own object, its brace left out, ends it."""
        nonlocal shown_token, shown_head
        token, estimate = view
        if token is not shown_token:
            shown_token = token
            shown_head = orjson.dumps({"type": "token", "v": SCHEMA_VERSION,
                                       "token": phone_token_fixed(token, link, scenario)})[:-2] + b","
        return shown_head + orjson.dumps(phone_token_wait(token, estimate, travel_s))[1:] + b"}"

    loop = asyncio.get_running_loop()
    sent_at = loop.time()

    def deliver(view: View) -> bool:
        """The new view written now, unless the link is backed up (the writer sends the newest
        once it drains): one frame on the socket, nothing else between them."""
        nonlocal sent_at
        if ws.closed or transport is None or transport.is_closing() \
                or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT:
            return False
        transport.write(text_frame(message(view)))
        sent_at = loop.time()
        return True

    watcher = await watch.add(token, deliver)
    heartbeat = json.dumps({"type": "heartbeat", "v": SCHEMA_VERSION, "interval_s": heartbeat_s})

    async def write() -> None:
        # A heartbeat only after heartbeat_s with nothing sent: a phone whose place moves every
        # second already knows its link lives.
        nonlocal sent_at
        if watcher.latest is None:
            await ws.send_str(heartbeat)
        while not ws.closed:
            if not watcher.changed.is_set():
                quiet_s = heartbeat_s - (loop.time() - sent_at)
                if quiet_s <= 0:
                    await ws.send_str(heartbeat)
                    sent_at = loop.time()
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(quiet_s):
                        await watcher.changed.wait()
                continue
            watcher.changed.clear()
            await ws.send_frame(message(watcher.latest), web.WSMsgType.TEXT)
            sent_at = loop.time()

    writer = asyncio.create_task(write())
    try:
        await read_until_closed(ws)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        watch.remove(token, watcher)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
            await writer
    return ws


async def put_slots(request: web.Request) -> web.Response:
    """Ops publish one day's bookable slots at a substation."""
    body = await parse_body(request, PublishSlots)
    day = request.match_info["day"]
    plan = await request.app[PHONES].publish(actor_of(request), request.match_info["sid"], _day(day),
                                             body.slot_minutes, body.share, body.capacity)
    return web.json_response({"substation": request.match_info["sid"], "day": day,
                              "plan": slot_plan_json(plan, request.app[SETTINGS].scenario.timezone)})


def _day(raw: str) -> str:
    """The slot plan's day, YYYY-MM-DD (one out of the range is refused further in, 422)."""
    try:
        if not DAY_SHAPE.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw).isoformat()
    except ValueError:
        raise ApiError(400, "invalid_day", "day must be a date, YYYY-MM-DD.", field="day") from None


def _sms_answer(request: web.Request, sms: SmsRequest | None, offered: bool, status: int = 200) -> web.Response:
    """The request (if any), whether SMS are offered, and when one asked now would go: the page
    says those figures before the consumer gives a number."""
    shown = None if sms is None else {"mobile_hint": sms_hint(sms.mobile), "near_ahead": sms.near_ahead,
                                      "near_minutes": sms.near_minutes, "near_sent": sms.near_sent_at is not None}
    config = request.app[SMS].config
    return web.json_response({"sms": shown, "offered": offered, "near_ahead": config.sms_near_ahead,
                              "near_minutes": config.sms_near_minutes}, status=status)


@public
async def get_sms(request: web.Request) -> web.Response:
    """Whether this token's holder asked for an SMS, and whether SMS are sent here at all."""
    service = request.app[SMS]
    return _sms_answer(request, await service.of(request.match_info["link"]), await service.offered())


@public
async def ask_sms(request: web.Request) -> web.Response:
    body = await parse_body(request, AskSms)
    sms = await request.app[SMS].ask(request.match_info["link"], body.mobile)
    return _sms_answer(request, sms, True, status=201)


@public
async def stop_sms(request: web.Request) -> web.Response:
    """No more messages; the number is erased at once."""
    service = request.app[SMS]
    await service.stop(request.match_info["link"])
    return _sms_answer(request, None, await service.offered())
