"""Live boards over real WebSockets: snapshot, ordered deltas, resume, slow-client isolation."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import replace
from datetime import date, datetime, timedelta
from datetime import time as dt_time

import aiohttp
import pytest

from counter_server.app import create_app
from counter_server.appkeys import HUB, KEYS, SETTINGS, STORE, TOKENS
from counter_server.config import Settings
from counter_server.store import Committed

from testkit.api import Api, Clock
from testkit.live import receive_json, receive_type
from testkit.waiting import wait_until_async


@pytest.fixture
async def live(aiohttp_client, settings: Settings, clock: Clock) -> Api:
    app = create_app(replace(settings, write_admin_key=False, live_backlog=5,
                             live_heartbeat_s=30.0))
    client = await aiohttp_client(app)
    admin, _ = await client.app[KEYS].create("admin")
    board, _ = await client.app[KEYS].create("board")
    return Api(client=client, admin=admin, board=board)


async def test_snapshot_then_ordered_deltas(live: Api):
    ws = await live.client.ws_connect("/api/v1/substations/S01/live")
    snapshot = await receive_json(ws)
    assert snapshot["type"] == "snapshot" and snapshot["v"] == 1
    assert snapshot["hall"]["substation"] == "S01" and snapshot["hall"]["waiting"] == 0
    assert [n["substation"] for n in snapshot["nearby"]] and snapshot["online"]["hint_after_s"] == 1800
    seq = snapshot["seq"]

    token = await live.issue("S01")
    await live.issue("S02")                        # another hall: not on this channel
    await live.next("S01-C1")
    await live.act({**token, "counter": "S01-C1"}, "start")
    kinds = []
    for _ in range(3):
        delta = await receive_json(ws)
        assert delta["type"] == "delta" and delta["v"] == 1 and delta["substation"] == "S01"
        assert delta["prev"] == seq and delta["seq"] > seq
        seq = delta["seq"]
        kinds += [e["kind"] for e in delta["events"]]
    assert kinds == ["issued", "called", "started"]
    assert delta["hall"]["counters"][0]["token"] == {
        "number": "B-001", "service": "bill_payment", "priority": "normal", "status": "serving",
        "counter": "S01-C1", "origin": "counter"}
    assert "id" not in json.dumps(delta["events"])   # boards never see token ids
    await ws.close()


async def test_concurrent_changes_arrive_once_each_in_an_unbroken_chain(live: Api):
    """Changes committed together may share a delta; none is lost, repeated or out of order."""
    board = await live.client.ws_connect("/api/v1/substations/S01/live")
    ops = await live.client.ws_connect("/api/v1/live", headers={"Authorization": f"Bearer {live.admin}"})
    last = {"board": (await receive_json(board))["seq"], "ops": (await receive_type(ops, "snapshot"))["seq"]}
    issued = await asyncio.gather(*[live.issue("S01" if i % 3 else "S02") for i in range(30)])
    expected = {"board": sorted(t["number"] for i, t in enumerate(issued) if i % 3),
                "ops": sorted(t["number"] + t["substation"] for t in issued)}
    for name, ws in (("board", board), ("ops", ops)):
        seen: list[tuple[int, str]] = []
        while len(seen) < len(expected[name]):
            delta = await receive_type(ws, "delta")
            assert delta["prev"] == last[name] and delta["seq"] > last[name]
            assert delta["events"][-1]["seq"] == delta["seq"]
            last[name] = delta["seq"]
            seen += [(e["seq"], e["token"]["number"] + ("" if name == "board" else delta["substation"]))
                     for e in delta["events"]]
        if name == "board":                        # one hall's events come in commit order
            assert [s for s, _ in seen] == sorted(s for s, _ in seen)
        assert sorted(n for _, n in seen) == expected[name]
        await ws.close()


async def test_reconnect_with_since_gets_missed_deltas_or_a_fresh_snapshot(live: Api):
    ws = await live.client.ws_connect("/api/v1/substations/S01/live")
    seq = (await receive_json(ws))["seq"]
    await ws.close()
    for _ in range(3):
        await live.issue("S01")

    ws = await live.client.ws_connect(f"/api/v1/substations/S01/live?since={seq}")
    missed = [await receive_json(ws) for _ in range(3)]
    assert [m["type"] for m in missed] == ["delta"] * 3
    assert missed[0]["prev"] == seq and [m["hall"]["waiting"] for m in missed] == [1, 2, 3]
    last = missed[-1]["seq"]
    await ws.close()

    ws = await live.client.ws_connect(f"/api/v1/substations/S01/live?since={last}")
    await live.issue("S01")
    delta = await receive_json(ws)                         # up to date: straight to the next delta
    assert delta["type"] == "delta" and delta["prev"] == last
    await ws.close()

    for _ in range(8):                                # more than the backlog of 5 holds
        await live.issue("S01")
    ws = await live.client.ws_connect(f"/api/v1/substations/S01/live?since={last}")
    fresh = await receive_json(ws)
    assert fresh["type"] == "snapshot" and fresh["hall"]["waiting"] == 12
    await ws.close()


async def test_counter_close_and_estimates_reach_the_board(live: Api, clock: Clock):
    ws = await live.client.ws_connect("/api/v1/substations/S01/live")
    await receive_json(ws)
    for _ in range(8):
        await live.issue("S01")
    for _ in range(8):
        hall = (await receive_type(ws, "delta"))["hall"]
    bill = next(s for s in hall["services"] if s["id"] == "bill_payment")
    # 8 waiting, 4 open counters, seeded mean 90 s: p50 = 8*90/4 = 180 s
    assert (bill["waiting"], bill["open_counters"], bill["estimate"]["p50_s"]) == (8, 4, 180.0)
    assert [t["number"] for t in hall["next"][:3]] == ["B-001", "B-002", "B-003"]
    assert [t["estimate"]["p50_s"] for t in hall["next"][:5]] == [0.0, 0.0, 0.0, 0.0, 90.0]  # 4 free

    status, body = await live.post("/api/v1/counters/S01-C2/close", await live.cashier("S01-C2"))
    assert status == 200 and body == {"counter": {"id": "S01-C2", "open": False}}
    delta = await receive_json(ws)
    assert [e["kind"] for e in delta["events"]] == ["counter_closed"]
    bill = next(s for s in delta["hall"]["services"] if s["id"] == "bill_payment")
    assert (bill["open_counters"], bill["estimate"]["p50_s"]) == (3, 180.0)   # 3 free: 2 rounds of 90 s
    assert next(c for c in delta["hall"]["counters"] if c["id"] == "S01-C2")["open"] is False

    token = await live.next("S01-C1")
    assert (await live.act(token, "start"))[0] == 200
    clock.now += 190                                   # 190 s at the counter
    assert (await live.act(token, "complete"))[0] == 200
    for kind in ("called", "started", "completed"):
        delta = await receive_json(ws)
        assert delta["events"][-1]["kind"] == kind
    bill = next(s for s in delta["hall"]["services"] if s["id"] == "bill_payment")
    assert bill["mean_service_s"] == 93.0              # EWMA: 90 + 0.1 * (120 - 90), 190 s past the max
    await ws.close()


async def test_token_answers_carry_the_estimate(live: Api):
    for _ in range(4):
        await live.issue("S01")
    token = await live.issue("S01")
    assert token["estimate"]["ahead"] == 4 and token["estimate"]["p50_s"] == 90.0   # 4*90/4
    status, body = await live.get(f"/api/v1/tokens/{token['id']}")
    assert body["token"]["estimate"]["p50_s"] == 90.0
    status, queue = await live.get("/api/v1/substations/S01/queue")
    assert [t["estimate"]["p50_s"] for t in queue["tokens"]] == [0.0, 0.0, 0.0, 0.0, 90.0]  # 4 free
    called = await live.next("S01-C1")
    assert called["estimate"] is None


async def test_ops_channel_needs_a_key_and_sees_every_hall(live: Api):
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await live.client.ws_connect("/api/v1/live")
    assert err.value.status == 401
    ws = await live.client.ws_connect("/api/v1/live", headers={"Authorization": f"Bearer {live.board}"})
    snapshot = await receive_json(ws)
    assert snapshot["type"] == "snapshot" and len(snapshot["halls"]) == 10
    await live.issue("S07")
    delta = await receive_type(ws, "delta")   # the ops channel also carries billing and alerts
    assert delta["substation"] == "S07" and delta["prev"] == snapshot["seq"]
    await ws.close()


async def test_bad_live_requests_are_json_errors(live: Api):
    for path, status, code in (("/api/v1/substations/S99/live", 404, "substation_not_found"),
                               ("/api/v1/substations/S01/live?since=-3", 400, "invalid_since"),
                               ("/api/v1/substations/S01/live?since=", 400, "invalid_since")):
        async with live.client.get(path) as resp:
            assert resp.status == status and (await resp.json())["error"]["code"] == code


async def test_heartbeats_flow_when_nothing_changes(aiohttp_client, settings: Settings):
    client = await aiohttp_client(create_app(replace(settings, write_admin_key=False,
                                                     live_heartbeat_s=0.2)))
    ws = await client.ws_connect("/api/v1/substations/S03/live")
    snapshot = await receive_json(ws)
    beat = await receive_json(ws, timeout=1.0)
    assert beat["type"] == "heartbeat" and beat["seq"] == snapshot["seq"] and beat["interval_s"] == 0.2
    assert len(beat["nearby"]) == 3
    await ws.close()


async def test_a_board_that_stops_reading_is_dropped_without_holding_up_others(aiohttp_client, settings):
    client = await aiohttp_client(create_app(replace(settings, write_admin_key=False,
                                                     live_client_buffer=32, live_heartbeat_s=60)))
    hub = client.app[HUB]
    path = "/api/v1/substations/S01/live"
    # The stalled board: a raw socket with a tiny receive buffer that completes the handshake
    # and then never reads again.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", client.port))
    stalled.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                     ).encode())
    healthy = await client.ws_connect(path)
    base = (await receive_json(healthy))["seq"]            # the channel's last sequence number
    await wait_until_async(lambda: hub.connections() >= 2, what="both boards connected", interval=0.01)

    hall = (await client.app[STORE].queue_snapshot("S01", client.app[TOKENS].today())).hall
    received = 0

    async def read_all() -> None:
        nonlocal received
        while received < 3000:
            message = await receive_json(healthy, timeout=5)
            if message["type"] == "delta":
                assert message["seq"] == base + received + 1     # in order, none missing
                received += 1

    reader = asyncio.create_task(read_all())
    for i in range(3000):
        event_seq = base + i + 1
        hub.publish(Committed("S01", hall.day, [(event_seq, _counter_event(i))], hall))
        if i - received > 16:   # a busy hall's pace, which a board that reads keeps up with
            await wait_until_async(lambda: i - received <= 4, what="the reading board to catch up",
                                   timeout=5, interval=0)
    await asyncio.wait_for(reader, 20)
    assert received == 3000 and hub.dropped == 1 and hub.connections() == 1
    stalled.close()
    await healthy.close()


def _counter_event(i: int):
    from counter_server.queueing.events import CounterClosed, CounterOpened
    return (CounterOpened if i % 2 else CounterClosed)(0.0, "test", "S01-C4")


async def test_ops_channel_carries_the_billing_gateway_state(live: Api):
    ws = await live.client.ws_connect("/api/v1/live", headers={"Authorization": f"Bearer {live.admin}"})
    message = await receive_type(ws, "billing", timeout=3.0)
    billing = message["billing"]
    assert message["v"] == 1 and billing["simulated"] is True
    assert {"limit", "in_flight", "breaker", "shed", "outbox"} <= set(billing)
    await ws.close()


async def test_changes_to_another_day_never_reach_todays_boards(live: Api):
    """A booking for tomorrow and tomorrow's slots published must not blank today's board."""
    for _ in range(3):
        await live.issue("S01")
    await live.next("S01-C1")
    board = await live.client.ws_connect("/api/v1/substations/S01/live")
    ops = await live.client.ws_connect("/api/v1/live", headers={"Authorization": f"Bearer {live.admin}"})
    today = (await receive_json(board))["hall"]["day"]
    await receive_type(ops, "snapshot")
    status, slots = await live.get("/api/v1/public/substations/S01/slots", key=None)
    tomorrow = next(d for d in slots["days"] if d["day"] > today and d["slots"])
    status, booked = await live.post("/api/v1/public/substations/S01/bookings", key=None, json={
        "service": "bill_payment", "slot_at": tomorrow["slots"][0]["at"],
        "account": "KAN-20431877", "phone": "9876543210"})
    assert status == 201, booked
    status, _ = await live.request("PUT", f"/api/v1/ops/substations/S01/slots/{tomorrow['day']}",
                                   live.admin, json={"slot_minutes": 30, "share": 0.2})
    assert status == 200
    assert live.client.app[HUB].hall("S01").day == today            # the cache still holds today
    await live.issue("S01")                                           # then a change today
    delta = await receive_json(board)
    assert delta["type"] == "delta" and [e["kind"] for e in delta["events"]] == ["issued"]
    hall = delta["hall"]
    assert (hall["day"], hall["waiting"]) == (today, 3)
    assert [c["token"]["number"] for c in hall["counters"] if c["token"]] == ["B-001"]
    seen = await receive_type(ops, "delta")
    assert seen["hall"]["day"] == today and seen["events"][0]["kind"] == "issued"
    await board.close()
    await ops.close()


async def test_boards_move_on_to_the_new_day_at_midnight(live: Api, clock: Clock):
    await live.issue("S01")
    board = await live.client.ws_connect("/api/v1/substations/S01/live")
    ops = await live.client.ws_connect("/api/v1/live", headers={"Authorization": f"Bearer {live.admin}"})
    before = (await receive_json(board))["hall"]
    await receive_type(ops, "snapshot")
    assert before["waiting"] == 1
    midnight = datetime.combine(date.fromisoformat(before["day"]) + timedelta(days=1), dt_time(0, 0, 5),
                                live.client.app[SETTINGS].scenario.timezone).timestamp()
    clock.now = midnight
    fresh = await receive_type(board, "snapshot", timeout=5.0)        # within a round of the day's close
    assert fresh["hall"]["day"] > before["day"] and fresh["hall"]["waiting"] == 0
    assert fresh["hall"]["issued_today"] == 0
    # Ops too (whichever reads the new day first, the day's close or the alerts round).
    days: set[str] = set()
    while days != {fresh["hall"]["day"]}:   # one snapshot for each hall that moves on
        seen = await receive_type(ops, "snapshot", timeout=5.0)
        days = {h["day"] for h in seen["halls"] if h["substation"] == "S01"}
    await board.close()
    await ops.close()
