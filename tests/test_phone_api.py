"""The consumers' phone API through a real server and SQLite file: remote tokens, limits,
slots and the token's own live feed."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from websockets.frames import Frame, Opcode

from counter_server.api.phones import ping_interval_s, text_frame
from counter_server.app import create_app
from counter_server.appkeys import KEYS, PHONES, SETTINGS, STORE, TOKEN_WATCH
from counter_server.config import Scenario, Settings, load_scenario
from counter_server.live.token_watch import Watcher

from testkit.api import Api, Clock
from testkit.scenarios import paid_service
from testkit.waiting import wait_until_async

PHONE = "+91 98765 43210"
ACCOUNT = "KAN-20431877"


def person(n: int) -> dict[str, str]:
    return {"account": f"KAN-{n:08d}", "phone": f"98{n:08d}"}


@pytest.fixture
def settings(tmp_path: Path, scenario, clock: Clock) -> Settings:
    roomy = replace(scenario, phones=replace(scenario.phones, takes_per_hour_per_address=1000))
    return Settings(data_dir=tmp_path / "data", scenario=roomy, clock=clock, rate_limit_per_s=0)


async def take(api: Api, sid: str = "S01", **body: Any) -> tuple[int, Any]:
    """A phone takes a token; ``service=None`` leaves the service out of the body."""
    body = {"service": "bill_payment", **body}
    if body["service"] is None:
        del body["service"]
    return await api.post(f"/api/v1/public/substations/{sid}/tokens", key=None, json=body)


async def test_a_phone_takes_a_real_remote_token_and_never_sees_full_numbers(api: Api):
    walk_in = await api.issue()
    status, body = await take(api, account=ACCOUNT, phone=PHONE)
    assert status == 201, body
    token = body["token"]
    assert (token["number"], token["origin"], token["status"]) == ("B-002", "remote", "waiting")
    assert token["account"] == "••••1877" and body["account_check"] == "verified"
    assert body["url"] == f"/q/t/{token['link']}" and token["ahead"] == 1
    assert token["leave"]["leave_now"] is True        # one ahead: a 20-minute trip means now
    text = json.dumps(body)
    assert "98765" not in text and "20431877" not in text
    # The cashier sees it in the same queue, marked remote; the hall board never sees the id.
    status, queue = await api.get("/api/v1/substations/S01/queue")
    assert [(t["number"], t["origin"]) for t in queue["tokens"]] == [
        (walk_in["number"], "counter"), ("B-002", "remote")]
    status, mine = await api.get(f"/api/v1/public/tokens/{token['link']}", key=None)
    assert status == 200 and mine["token"]["number"] == "B-002"


async def test_one_active_token_per_account_and_per_phone(api: Api):
    status, first = await take(api, account=ACCOUNT, phone=PHONE)
    assert status == 201
    status, again = await take(api, account=ACCOUNT, phone=PHONE)
    assert status == 409 and again["error"]["code"] == "already_holding"
    assert again["error"]["token"] == first["token"]["link"]          # a lost link comes back
    status, other = await take(api, account="KAN-99999999", phone=PHONE)
    assert status == 409 and "token" not in other["error"]            # nothing given away
    # Another substation: the phone number may queue there for another account, but the
    # account holds its one token of the city (tokens_per_account_city = 1).
    status, elsewhere = await take(api, sid="S02", account="KAN-99999999", phone=PHONE)
    assert status == 201
    status, capped = await take(api, sid="S02", account=ACCOUNT, phone="9811100000")
    assert status == 409 and capped["error"]["code"] == "already_holding" and "token" not in capped["error"]
    status, cancelled = await api.post(f"/api/v1/public/tokens/{first['token']['link']}/cancel", key=None)
    assert status == 200 and cancelled["token"]["status"] == "cancelled"
    status, _ = await take(api, account=ACCOUNT, phone=PHONE)
    assert status == 201


async def test_a_retried_take_gets_its_first_answer_not_a_refusal(api: Api):
    """The limits are checked inside the change: a retry with the same Idempotency-Key (a
    phone on a flaky link) is answered as the first time, not told it already holds one."""
    body = {"service": "bill_payment", "account": ACCOUNT, "phone": PHONE}
    path = "/api/v1/public/substations/S01/tokens"
    status, first = await api.post(path, key=None, idem="take-1", json=body)
    assert status == 201
    status, again = await api.post(path, key=None, idem="take-1", json=body)
    assert status == 201 and again["token"]["link"] == first["token"]["link"]
    status, other = await api.post(path, key=None, idem="take-2", json=body)
    assert status == 409 and other["error"]["token"] == first["token"]["link"]


async def test_bad_phone_input_is_named(api: Api):
    status, body = await take(api, account=ACCOUNT, phone="12")
    assert status == 422 and body["error"]["field"] == "phone"
    # in words, not as the regular expression it was checked with
    assert body["error"]["message"] == "phone: Expected a mobile number of 10 digits (+91 or a leading 0 allowed)."
    status, body = await take(api, account="#1", phone=PHONE)
    assert "account number as printed on the bill" in body["error"]["message"]
    status, body = await take(api, account="NA-00000001", phone=PHONE)
    assert status == 422 and body["error"]["field"] == "account"
    assert "no such account" in body["error"]["message"]
    status, body = await take(api, sid="S99", account=ACCOUNT, phone=PHONE)
    assert status == 404 and body["error"]["code"] == "substation_not_found"
    status, body = await api.get("/api/v1/public/tokens/t_nothing", key=None)
    assert status == 404
    status, body = await api.get("/api/v1/public/tokens/t_x?travel_min=-3", key=None)
    assert status == 400 and body["error"]["field"] == "travel_min"


async def test_accepted_provisionally_while_billing_cannot_answer(aiohttp_client, settings: Settings):
    dead_billing = replace(settings, billing_url="http://127.0.0.1:9", write_admin_key=False)
    client = await aiohttp_client(create_app(dead_billing))
    resp = await client.post("/api/v1/public/substations/S01/tokens",
                             json={"service": "bill_payment", "account": ACCOUNT, "phone": PHONE})
    body = await resp.json()
    assert resp.status == 201 and body["account_check"] == "provisional"


async def test_takes_are_limited_per_client_address(aiohttp_client, settings: Settings):
    strict = replace(settings, write_admin_key=False, scenario=replace(
        settings.scenario, phones=replace(settings.scenario.phones, takes_per_hour_per_address=3)))
    client = await aiohttp_client(create_app(strict))
    answers = []
    for n in range(5):
        resp = await client.post("/api/v1/public/substations/S01/tokens",
                                 json={"service": "bill_payment", **person(n)})
        answers.append((resp.status, resp.headers.get("Retry-After")))
    assert [s for s, _ in answers] == [201, 201, 201, 429, 429]
    assert int(answers[-1][1]) > 60


async def test_a_refusal_at_the_door_offers_nearby_online_and_a_slot(api: Api, clock: Clock):
    await api.request("PUT", "/api/v1/ops/substations/S01/admission", api.admin,
                      json={"admission": True, "daily_cap": 1})
    await take(api, **person(1))
    status, body = await take(api, **person(2))
    assert status == 409 and body["error"]["code"] == "cannot_serve_today"
    assert body["error"]["alternatives"] and body["error"]["online"]["text"]
    offer = body["error"]["booking"]
    assert offer and offer[0]["free"] > 0
    assert {o["day"] for o in offer} == {"2025-12-01"}       # a quiet day, not today's rush


async def test_slots_nudge_away_from_month_end_and_a_booking_is_called_on_time(api: Api, clock: Clock):
    assert datetime.fromtimestamp(clock.now).day == 25             # the month-end rush
    status, slots = await api.get("/api/v1/public/substations/S01/slots", key=None)
    assert status == 200
    days = slots["days"]
    assert days[0]["month_end"] is True and slots["recommended"] == "2025-12-01"
    quiet = next(d for d in days if d["day"] == slots["recommended"])
    first = quiet["slots"][0]
    assert first["at"] == "2025-12-01T09:30:00+05:30" and first["capacity"] == first["free"] > 0
    booked = []
    for n in range(first["capacity"]):
        status, body = await api.post("/api/v1/public/substations/S01/bookings", key=None,
                                      json={"service": "bill_payment", "slot_at": first["at"], **person(n)})
        assert status == 201, body
        booked.append(body["token"])
    assert booked[0]["status"] == "booked" and booked[0]["number"] is None
    assert booked[0]["slot_at"] == first["at"]
    status, full = await api.post("/api/v1/public/substations/S01/bookings", key=None,
                                  json={"service": "bill_payment", "slot_at": first["at"], **person(99)})
    assert status == 409 and full["error"]["code"] == "slot_unavailable"
    assert full["error"]["reason"] == "full"
    status, after = await api.get("/api/v1/public/substations/S01/slots", key=None)
    assert next(d for d in after["days"] if d["day"] == "2025-12-01")["slots"][0]["free"] == 0

    # The day comes: walk-ins arrive before the slot; at the slot, bookings are called first.
    slot_at = datetime.fromisoformat(first["at"]).timestamp()
    clock.now = slot_at - 1800
    walk_ins = [await api.issue() for _ in range(3)]
    clock.now = slot_at + 10
    called = await api.next("S01-C1")
    links = {b["link"].rpartition(".")[0]: b["link"] for b in booked}
    assert called["id"] in links
    assert called["origin"] == "slot" and called["number"] == "B-004"
    status, mine = await api.get(f"/api/v1/public/tokens/{links[called['id']]}", key=None)
    assert mine["token"]["status"] == "called" and mine["token"]["leave"]["leave_now"]
    assert walk_ins[0]["number"] == "B-001"
    # A booking given up before its slot is no token of the day in the report; started ones are.
    later = quiet["slots"][4]["at"]
    status, given_up = await api.post("/api/v1/public/substations/S01/bookings", key=None,
                                      json={"service": "bill_payment", "slot_at": later, **person(500)})
    assert status == 201
    await api.post(f"/api/v1/public/tokens/{given_up['token']['link']}/cancel", key=None)
    status, report = await api.get("/api/v1/reports/daily?date=2025-12-01&substation=S01")
    assert status == 200
    assert (report["report"]["total"]["issued"], report["report"]["total"]["cancelled"]) == (3 + len(booked), 0)


async def test_ops_publish_slots_admin_only(api: Api, clock: Clock):
    path = "/api/v1/ops/substations/S01/slots/2025-12-02"
    status, body = await api.request("PUT", path, api.admin, json={"slot_minutes": 30, "share": 0.5})
    assert status == 200, body
    plan = body["plan"]
    assert plan["slot_minutes"] == 30 and plan["capacity"] > 0 and plan["first"].startswith("2025-12-02T09:30")
    status, slots = await api.get("/api/v1/public/substations/S01/slots", key=None)
    day = next(d for d in slots["days"] if d["day"] == "2025-12-02")
    assert len(day["slots"]) == plan["slots"] and day["slots"][0]["capacity"] == plan["capacity"]
    status, body = await api.request("PUT", path, api.board, json={"slot_minutes": 30})
    assert status == 403
    status, body = await api.request("PUT", "/api/v1/ops/substations/S01/slots/2020-01-01", api.admin, json={})
    assert status == 422 and body["error"]["field"] == "day"


async def test_the_token_feed_follows_the_place_in_line(api: Api):
    for _ in range(3):
        await api.issue()
    status, body = await take(api, account=ACCOUNT, phone=PHONE)
    link = body["token"]["link"]
    ws = await api.client.ws_connect(f"/api/v1/public/tokens/{link}/live?travel_min=5")
    first = await ws.receive_json(timeout=3)
    assert first["type"] == "token" and first["token"]["ahead"] == 3
    # The feed's message is put together from two encodings: it says what the API says.
    status, asked = await api.get(f"/api/v1/public/tokens/{link}?travel_min=5", key=None)
    assert status == 200 and first == {"type": "token", "v": 1, "token": asked["token"]}
    await api.next("S01-C1")
    seen = []
    while not seen or seen[-1] != 2:
        msg = await ws.receive_json(timeout=5)
        if msg["type"] == "token":
            seen.append(msg["token"]["ahead"])
    assert "98765" not in json.dumps(msg)
    await ws.close()
    await wait_until_async(lambda: api.client.app[TOKEN_WATCH].watching() == 0,
                           what="the closed feed no longer watched", timeout=2.5)


async def test_a_quiet_token_feed_gets_heartbeats_and_a_moving_one_gets_its_views(aiohttp_client, settings: Settings):
    """A heartbeat goes out only after heartbeat_s with nothing sent; a change's view is
    written to the phone at once, and heartbeats go on after it."""
    client = await aiohttp_client(create_app(replace(settings, write_admin_key=False, live_heartbeat_s=0.3)))
    admin, _ = await client.app[KEYS].create("admin")
    api = Api(client=client, admin=admin, board=admin)
    await api.issue()
    status, body = await take(api, account=ACCOUNT, phone=PHONE)
    ws = await client.ws_connect(f"/api/v1/public/tokens/{body['token']['link']}/live")
    assert (await ws.receive_json(timeout=3))["token"]["ahead"] == 1
    quiet = [(await ws.receive_json(timeout=1))["type"] for _ in range(2)]
    assert quiet == ["heartbeat", "heartbeat"]
    await api.next("S01-C1")
    while (msg := await ws.receive_json(timeout=3))["type"] != "token":
        assert msg["type"] == "heartbeat"
    assert msg["token"]["ahead"] == 0
    assert (await ws.receive_json(timeout=1))["type"] == "heartbeat"
    await ws.close()


def test_phones_that_connect_together_are_not_pinged_together():
    intervals = [ping_interval_s(30.0) for _ in range(500)]
    assert 22.5 <= min(intervals) and max(intervals) <= 30.0
    assert max(intervals) - min(intervals) > 5.0 and len(set(intervals)) > 400


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_a_phone_s_frame_is_the_websocket_library_s_frame(size: int):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)


def test_a_view_goes_out_at_once_unless_the_phones_link_is_backed_up():
    """The token watch writes a phone's new view there and then; while the link is backed up
    only the newest view is kept, for the phone's own writer to send once the link drains."""
    sent: list = []
    backed_up = False

    def deliver(view) -> bool:
        if backed_up:
            return False
        sent.append(view)
        return True

    watcher = Watcher("t1", deliver)
    watcher.offer(("place 3", None))
    watcher.offer(("place 3", None))            # the same view: nothing new to send
    assert sent == [("place 3", None)] and not watcher.changed.is_set()
    backed_up = True
    watcher.offer(("place 2", None))
    watcher.offer(("place 1", None))
    assert watcher.changed.is_set() and watcher.latest == ("place 1", None) and len(sent) == 1
    backed_up = False
    watcher.offer(("place 0", None))            # the writer has one due: it sends the newest
    assert watcher.changed.is_set() and watcher.latest == ("place 0", None) and len(sent) == 1


async def test_behind_a_trusted_load_balancer_each_client_has_its_own_limit(aiohttp_client, settings: Settings):
    one_each = replace(settings.scenario, phones=replace(settings.scenario.phones, takes_per_hour_per_address=1))

    async def take_from(client, address: str, n: int) -> int:
        resp = await client.post("/api/v1/public/substations/S01/tokens", headers={"X-Forwarded-For": address},
                                 json={"service": "bill_payment", **person(n)})
        return resp.status

    proxied = await aiohttp_client(create_app(replace(
        settings, scenario=one_each, write_admin_key=False, trusted_proxies=("127.0.0.1",))))
    assert [await take_from(proxied, "10.1.1.1", 1), await take_from(proxied, "10.2.2.2", 2)] == [201, 201]
    assert await take_from(proxied, "10.1.1.1", 3) == 429
    # Without trust the header is ignored: a client cannot dodge its limit by sending one.
    direct = await aiohttp_client(create_app(replace(settings, scenario=one_each, write_admin_key=False,
                                                     data_dir=settings.data_dir / "direct")))
    assert [await take_from(direct, "10.1.1.1", 4), await take_from(direct, "10.2.2.2", 5)] == [201, 429]


async def test_phones_take_nothing_on_a_closed_day_and_slots_skip_it(api: Api, clock: Clock):
    clock.now = datetime.fromisoformat("2025-11-30T11:00:00+05:30").timestamp()     # a Sunday
    status, listing = await api.get("/api/v1/public/substations", key=None)
    s01 = next(s for s in listing["substations"] if s["id"] == "S01")
    assert (s01["open_today"], s01["opens_on"]) == (False, "2025-12-01")
    assert listing["online"]["suggest"] is True                 # every hall shut: pay online
    status, body = await take(api, **person(1))
    assert status == 409, body
    error = body["error"]
    assert (error["code"], error["reason"], error["opens_on"]) == ("cannot_serve_today", "closed_day", "2025-12-01")
    assert "closed today" in error["message"] and "Monday 01 December" in error["message"]
    assert error["alternatives"] == [] and error["online"]["text"]
    assert error["booking"] and all(b["day"] == "2025-12-01" for b in error["booking"])

    status, slots = await api.get("/api/v1/public/substations/S01/slots", key=None)
    days = [d["day"] for d in slots["days"]]
    assert "2025-11-30" not in days and "2025-12-07" not in days and "2025-12-01" in days
    sunday = {"service": "bill_payment", "slot_at": "2025-12-07T10:00:00+05:30", **person(2)}
    status, body = await api.post("/api/v1/public/substations/S01/bookings", key=None, json=sunday)
    assert status == 409 and body["error"]["reason"] == "closed_day", body

    # Ops open the next Sunday for the month-end by publishing its slots: now it is bookable.
    status, _ = await api.request("PUT", "/api/v1/ops/substations/S01/slots/2025-12-07", api.admin,
                                  json={"slot_minutes": 15, "share": 0.25})
    assert status == 200
    status, body = await api.post("/api/v1/public/substations/S01/bookings", key=None, json=sunday)
    assert status == 201, body
    # A cashier at work on a closed day issues as usual: the counter is open then.
    assert (await api.issue())["number"] == "B-001"


async def test_a_token_id_alone_opens_nothing_on_the_public_routes(api: Api):
    """A board key sees token ids in the queue; the public routes want the phone's link."""
    walk_in = await api.issue()
    status, body = await take(api, account=ACCOUNT, phone=PHONE)
    remote = body["token"]
    status, queue = await api.get("/api/v1/substations/S01/queue", key=api.board)
    ids = [t["id"] for t in queue["tokens"]]
    assert status == 200 and walk_in["id"] in ids
    for token_id in ids:   # a walk-in's id and a remote token's bare id alike
        status, refused = await api.post(f"/api/v1/public/tokens/{token_id}/cancel", key=None)
        assert status == 404 and refused["error"]["code"] == "token_not_found"
        status, _ = await api.get(f"/api/v1/public/tokens/{token_id}", key=None)
        assert status == 404
    forged = remote["link"][:-3] + ("AAA" if not remote["link"].endswith("AAA") else "BBB")
    status, _ = await api.post(f"/api/v1/public/tokens/{forged}/cancel", key=None)
    assert status == 404
    status, queue = await api.get("/api/v1/substations/S01/queue")
    assert [t["status"] for t in queue["tokens"]] == ["waiting", "waiting"]   # nothing cancelled
    # The walk-in's id with a MAC made for it still opens nothing: links are for phones' tokens.
    made = api.client.app[PHONES].links.link(walk_in["id"])
    status, _ = await api.post(f"/api/v1/public/tokens/{made}/cancel", key=None)
    assert status == 404
    # The phone's own link cancels, and the event names who did it.
    status, cancelled = await api.post(f"/api/v1/public/tokens/{remote['link']}/cancel", key=None)
    assert status == 200 and cancelled["token"]["status"] == "cancelled"
    events = await api.client.app[STORE].day_events(cancelled["token"]["day"])
    cancel = next(e for e in events if e["kind"] == "cancelled")
    assert cancel["actor"] == "phone:holder-1877", cancel


async def test_phone_links_survive_a_restart_and_the_secret_stays_out_of_the_database(
        aiohttp_client, settings: Settings):
    first = await aiohttp_client(create_app(replace(settings, write_admin_key=False)))
    resp = await first.post("/api/v1/public/substations/S01/tokens",
                            json={"service": "bill_payment", "account": ACCOUNT, "phone": PHONE})
    link = (await resp.json())["token"]["link"]
    await first.close()
    secret_file = settings.data_dir / "server.secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert secret_file.read_text().strip() not in settings.database_path.read_bytes().hex()
    again = await aiohttp_client(create_app(replace(settings, write_admin_key=False)))
    resp = await again.get(f"/api/v1/public/tokens/{link}")
    assert resp.status == 200 and (await resp.json())["token"]["status"] == "waiting"


# ---- any scenario: nothing here is named after the built-in one ----------------------------

@pytest.fixture
async def any_api(aiohttp_client, tmp_path: Path, scenario_file: Path, clock: Clock) -> Api:
    """The phone API on each scenario in turn (both open all day)."""
    scenario = load_scenario(scenario_file)
    roomy = replace(scenario, phones=replace(scenario.phones, takes_per_hour_per_address=1000))
    client = await aiohttp_client(create_app(Settings(data_dir=tmp_path / "data", scenario=roomy, clock=clock,
                                                      rate_limit_per_s=0, write_admin_key=False)))
    admin, _ = await client.app[KEYS].create("admin")
    return Api(client=client, admin=admin)


def scenario_of(api: Api) -> Scenario:
    return api.client.app[SETTINGS].scenario


async def test_no_service_named_means_the_paid_one_where_offered_else_a_422_naming_the_field(any_api: Api):
    scenario = scenario_of(any_api)
    paid = paid_service(scenario)
    offering = next(s for s in scenario.substations.values() if paid in s.services)
    status, body = await take(any_api, sid=offering.id, service=None, **person(1))
    assert status == 201, body
    assert body["token"]["service"]["id"] == paid
    assert body["token"]["number"].startswith(scenario.services[paid].letter + "-")
    without = [s for s in scenario.substations.values() if paid not in s.services]
    for hall in without:   # lakeside's east_gate: its own services, named
        status, body = await take(any_api, sid=hall.id, service=None, **person(2))
        assert status == 422 and body["error"]["field"] == "service", body
        assert all(s in body["error"]["message"] for s in hall.services)
        status, body = await any_api.post(f"/api/v1/public/substations/{hall.id}/bookings", key=None, json={
            "slot_at": "2025-12-01T10:00:00+03:00", **person(3)})
        assert status == 422 and body["error"]["field"] == "service", body
        status, body = await take(any_api, sid=hall.id, service=hall.services[0], **person(2))
        assert status == 201 and body["token"]["service"]["id"] == hall.services[0], body
    assert without or scenario.name == load_scenario().name          # lakeside has such a hall


async def test_the_list_gives_each_services_own_wait_and_the_halls_state(any_api: Api):
    scenario = scenario_of(any_api)
    paid = paid_service(scenario)
    hall = next(s for s in scenario.substations.values()
                if paid in s.services and any(x != paid and any(x in c.services for c in s.counters)
                                              for x in s.services))
    other = next(x for x in hall.services if x != paid and any(x in c.services for c in hall.counters))
    for _ in range(5):
        await any_api.issue(hall.id, other)
    status, listing = await any_api.get("/api/v1/public/substations", key=None)
    assert status == 200 and listing["payment_service"] == paid
    entry = next(s for s in listing["substations"] if s["id"] == hall.id)
    services = {s["id"]: s for s in entry["services"]}
    assert set(services) == set(hall.services)
    assert services[other]["waiting"] == 5 and services[paid]["waiting"] == 0
    assert services[other]["estimate"]["p50_s"] > services[paid]["estimate"]["p50_s"]   # its own wait
    assert services[other]["open_counters"] == sum(other in c.services for c in hall.counters)
    assert (entry["estimate_service"], entry["estimate"]) == (paid, services[paid]["estimate"])
    assert (entry["waiting"], entry["in_hours"], entry["counters"], entry["counters_open"]) == (
        5, True, len(hall.counters), len(hall.counters))
    for counter in hall.counters:
        await any_api.post(f"/api/v1/counters/{counter.id}/close")
    status, listing = await any_api.get("/api/v1/public/substations", key=None)
    entry = next(s for s in listing["substations"] if s["id"] == hall.id)
    assert entry["counters_open"] == 0 and entry["in_hours"] is True
    assert all(s["open_counters"] == 0 and s["estimate"]["p50_s"] is None for s in entry["services"])
    for s in listing["substations"]:
        if paid not in {x["id"] for x in s["services"]}:               # no paid service: no default
            assert s["default_service"] is None and s["estimate_service"] == s["services"][0]["id"]


async def test_the_phone_token_names_its_counter_as_the_board_does(any_api: Api):
    scenario = scenario_of(any_api)
    paid = paid_service(scenario)
    hall = next(s for s in scenario.substations.values() if paid in s.services)
    counter = next(c for c in hall.counters if paid in c.services)
    status, body = await take(any_api, sid=hall.id, service=paid, **person(7))
    link = body["token"]["link"]
    assert body["token"]["counter_name"] is None
    await any_api.next(counter.id)
    status, mine = await any_api.get(f"/api/v1/public/tokens/{link}", key=None)
    token = mine["token"]
    assert (token["status"], token["counter"]) == ("called", counter.id)
    assert (token["counter_name"], token["counter_name_hi"]) == (counter.label, counter.label_hi)
    status, slots = await any_api.get(f"/api/v1/public/substations/{hall.id}/slots", key=None)
    assert slots["today"] == scenario.day_of(any_api.client.app[SETTINGS].clock())
    assert datetime.fromisoformat(slots["now"]).timestamp() == pytest.approx(any_api.client.app[SETTINGS].clock())
