"""The end of the day: what closing time and midnight do to the tokens nobody served.

First the rule in the pure domain (``SubstationQueue.close_hall`` and ``close_day``), then the
real server with the test clock crossing closing time and midnight, on both scenarios and both
storage engines: the store, the counters, the hall board's delta, a phone following its token,
the day's report, a server that was down over midnight, and the phone page in Chromium.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from counter_server.app import create_app
from counter_server.appkeys import KEYS, TOKENS
from counter_server.config import Scenario, Settings, load_scenario
from counter_server.queueing import (
    Action,
    Holder,
    IllegalMove,
    Priority,
    QueuePolicy,
    SlotPlan,
    Status,
    SubstationQueue,
)

from testkit.api import Api, Clock
from testkit.live import receive_type, receive_until
from testkit.scenarios import OPEN_ALL_DAY, busy_hall
from testkit.waiting import wait_until_async
from .test_store_contract import TEST_REDIS_URL

DAY = "2026-11-25"
BILL = ("bill_payment", "B")
CLOSES = 10_000.0


# -- the rule, without I/O ------------------------------------------------------------------------

def a_day_at_closing() -> tuple[SubstationQueue, dict[str, str]]:
    """A queue just before closing: a booking never started, two waiting, one called long
    ago, one called a minute before closing, one being served."""
    q = SubstationQueue("S01", DAY, QueuePolicy(), counters={"C1": ["bill_payment"],
                                                             "C2": ["bill_payment"],
                                                             "C3": ["bill_payment"]})
    q.publish_slots(SlotPlan(first_at=CLOSES - 3600, slot_s=900, count=4, capacity=2, share=0.25), 0)
    q.book("booked", *BILL[:1], Priority.NORMAL, CLOSES - 900, 1, Holder("a", "p", "1234"))
    for name in ("served", "called_early", "called_late", "waiting", "also_waiting"):
        q.issue(name, *BILL, Priority.NORMAL, 100 + len(q.tokens))
    q.call_next("C1", ["bill_payment"], CLOSES - 600)          # served
    q.act("served", Action.START, CLOSES - 590)
    q.call_next("C2", ["bill_payment"], CLOSES - 400)          # called_early
    q.call_next("C3", ["bill_payment"], CLOSES - 60)           # called_late
    q.drain()
    return q, {t.id: t.status.value for t in q.tokens.values()}


def test_closing_time_closes_the_unserved_and_lets_the_token_being_served_finish():
    q, before = a_day_at_closing()
    assert before == {"booked": "booked", "served": "serving", "called_early": "called",
                      "called_late": "called", "waiting": "waiting", "also_waiting": "waiting"}
    assert q.close_hall(CLOSES - 1, CLOSES) == []               # not yet
    closed = q.close_hall(CLOSES + 5, CLOSES, "day-close", called_grace_s=120)
    assert [t.id for t in closed] == ["booked", "waiting", "also_waiting", "called_early"]
    assert all(t.status is Status.CLOSED_UNSERVED and t.finished_at == CLOSES + 5 for t in closed)
    events = q.drain()
    assert [(e.kind, e.counter, e.actor) for e in events] == [
        ("closed_unserved", None, "day-close"), ("closed_unserved", None, "day-close"),
        ("closed_unserved", None, "day-close"), ("closed_unserved", "C2", "day-close")]
    assert q.current_at("C2") is None and q.tokens["called_early"].counter == "C2"
    # Called a minute before closing: two minutes to reach the counter; being served: finishes.
    assert q.tokens["called_late"].status is Status.CALLED
    assert q.tokens["served"].status is Status.SERVING
    hall = q.hall_view()
    assert (hall.waiting_total, hall.waiting_head) == (0, ())
    assert [c.token.id if c.token else None for c in hall.counters] == ["served", None, "called_late"]
    assert q.estimates() == {} and q.issued_count() == 5       # the booking was never issued

    assert [t.id for t in q.close_hall(CLOSES + 59, CLOSES, called_grace_s=120)] == []
    assert [t.id for t in q.close_hall(CLOSES + 60, CLOSES, called_grace_s=120)] == ["called_late"]
    q.act("served", Action.COMPLETE, CLOSES + 200)             # finished after closing: served
    assert q.tokens["served"].status is Status.DONE


def test_closing_time_leaves_what_came_after_it_to_the_days_end():
    q, _ = a_day_at_closing()
    q.close_hall(CLOSES, CLOSES, called_grace_s=0)
    late = q.issue("late", *BILL, Priority.NORMAL, CLOSES + 300)   # a cashier working late
    assert q.close_hall(CLOSES + 400, CLOSES) == []
    assert q.tokens[late.id].status is Status.WAITING
    assert [t.id for t in q.close_day(CLOSES + 50_000)] == ["late", "served"]


def test_the_days_end_closes_everything_and_finishes_the_token_at_the_counter():
    q, _ = a_day_at_closing()
    mean_before = q.service_times.mean("bill_payment")
    closed = q.close_day(CLOSES + 50_000, "day-close")
    assert {t.id: t.status.value for t in closed} == {
        "booked": "closed_unserved", "waiting": "closed_unserved", "also_waiting": "closed_unserved",
        "called_early": "closed_unserved", "called_late": "closed_unserved", "served": "done"}
    kinds = {e.token.id: e.kind for e in q.drain()}
    assert kinds["served"] == "completed_at_close" and kinds["waiting"] == "closed_unserved"
    # Nobody timed the end of that service: it teaches the estimator nothing.
    assert q.service_times.mean("bill_payment") == mean_before
    assert all(q.current_at(c) is None for c in q.counters) and q.waiting() == []
    assert q.close_day(CLOSES + 50_001) == [] and q.pending == []   # closed stays closed
    assert q.holding(Holder("a", "p")) is None                      # may book again
    token = q.tokens["called_late"]
    assert q.allowed(token) == []
    with pytest.raises(IllegalMove, match="closed_unserved.*Allowed: none"):
        q.act(token.id, Action.START, CLOSES + 50_002)


# -- through the real server -----------------------------------------------------------------------

def at_local(scenario: Scenario, day: date, hhmmss: str) -> float:
    return datetime.fromisoformat(f"{day.isoformat()}T{hhmmss}").replace(tzinfo=scenario.timezone).timestamp()


def engine_settings(engine: str, base: Settings) -> Settings:
    if engine == "redis":
        return replace(base, store_engine="redis", redis_url=TEST_REDIS_URL,
                       redis_prefix=f"test-{uuid.uuid4().hex[:12]}:")
    return base


async def forget_redis(settings: Settings) -> None:
    if settings.store_engine != "redis":
        return
    client = Redis.from_url(TEST_REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=settings.redis_prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[[Settings], Any]]:
    """Start a whole server on given settings (several, one after another, as restarts)."""
    clients: list[TestClient] = []
    used: list[Settings] = []

    async def start(settings: Settings) -> Api:
        client = TestClient(TestServer(create_app(replace(settings, write_admin_key=False))))
        await client.start_server()
        clients.append(client)
        used.append(settings)
        admin, _ = await client.app[KEYS].create("admin")
        board, _ = await client.app[KEYS].create("board")
        return Api(client=client, admin=admin, board=board)

    yield start
    for client in clients:
        await client.close()
    for settings in used[:1]:
        await forget_redis(settings)


async def status_of(api: Api, token: dict) -> str:
    status, body = await api.get(f"/api/v1/tokens/{token['id']}")
    assert status == 200, body
    return body["token"]["status"]


def link_of(answer: dict) -> str:
    return answer["url"].rsplit("/", 1)[1]


@pytest.mark.parametrize("engine", ["sqlite", "redis"])
async def test_across_closing_and_midnight_nothing_stays_open(serve, tmp_path: Path, scenario_file: Path,
                                                              engine: str):
    scenario = load_scenario(scenario_file)
    day = datetime.fromtimestamp(Clock().now, scenario.timezone).date()
    clock = Clock(at_local(scenario, day, "23:30:00"))
    settings = engine_settings(engine, Settings(data_dir=tmp_path / "data", scenario=scenario,
                                                clock=clock, rate_limit_per_s=0))
    api = await serve(settings)
    sid, service, (first, second, *_) = busy_hall(scenario)
    tokens = [await api.issue(sid, service) for _ in range(3)]
    status, phone = await api.post(f"/api/v1/public/substations/{sid}/tokens", key=None,
                                   json={"service": service, "account": "KAN-20431877",
                                         "phone": "+91 98765 43210"})
    assert status == 201, phone
    board = await api.client.ws_connect(f"/api/v1/substations/{sid}/live")
    await receive_type(board, "snapshot")
    follow = await api.client.ws_connect(f"/api/v1/public/tokens/{link_of(phone)}/live")
    assert (await receive_type(follow, "token"))["token"]["status"] == "waiting"

    clock.now = at_local(scenario, day, "23:59:25")
    called = await api.next(first)                              # called, not started by midnight
    serving = await api.next(second)
    assert (await api.act(serving, "start"))[0] == 200         # being served at closing
    waiting = tokens[2]
    assert [called["id"], serving["id"]] == [tokens[0]["id"], tokens[1]["id"]]

    clock.now = at_local(scenario, day, "23:59:59") + 0.5       # closing time
    await api.client.app[TOKENS].close_days()
    assert await status_of(api, waiting) == "closed_unserved"
    assert await status_of(api, called) == "called"             # a moment to reach the counter
    assert await status_of(api, serving) == "serving"           # may finish after closing
    delta = await receive_until(board, lambda m: m["type"] == "delta"
                                and any(e["kind"] == "closed_unserved" for e in m["events"]),
                                what="the delta closing the day's unserved tokens")
    hall = delta["hall"]
    assert hall["day"] == day.isoformat() and hall["waiting"] == 0 and hall["next"] == []
    assert all(s["waiting"] == 0 for s in hall["services"])
    assert sorted(e["token"]["number"] for e in delta["events"]) == sorted(
        [waiting["number"], phone["token"]["number"]])
    told = await receive_until(follow, lambda m: m["type"] == "token" and m["token"]["status"] != "waiting",
                               what="the phone told its token is no longer waiting")
    assert told["token"]["status"] == "closed_unserved" and told["token"]["leave"] is None
    status, mine = await api.get(f"/api/v1/public/tokens/{link_of(phone)}", key=None)
    assert mine["token"]["status"] == "closed_unserved"

    clock.now = at_local(scenario, day + timedelta(days=1), "00:00:05")   # the next day
    await api.client.app[TOKENS].close_days()
    assert await status_of(api, called) == "closed_unserved"
    status, body = await api.get(f"/api/v1/tokens/{called['id']}")
    assert body["token"]["counter"] == first                    # where it was: not at it any more
    assert await status_of(api, serving) == "done"
    status, refused = await api.act(called, "start")
    assert status == 409 and refused["error"]["allowed"] == []
    status, body = await api.get(f"/api/v1/substations/{sid}/queue")
    assert status == 200 and body["tokens"] == []
    assert await api.next(first) is None                        # free, and nobody is left over

    status, body = await api.get(f"/api/v1/reports/daily?date={day.isoformat()}&substation={sid}")
    assert status == 200, body
    row = body["report"]["rows"][0]
    assert (row["issued"], row["served"], row["closed_unserved"], row["open_at_end"]) == (4, 1, 3, 0)
    assert row["service_p50_s"] is None                         # never completed by a cashier
    counter_row = next(r for r in body["report"]["rows"] if r["counter"] == first)
    assert counter_row["closed_unserved"] == 1
    await board.close()
    await follow.close()


@pytest.mark.parametrize("engine", ["sqlite", "redis"])
async def test_a_server_down_over_midnight_closes_yesterday_when_it_is_back(serve, tmp_path: Path,
                                                                           engine: str):
    scenario = load_scenario(OPEN_ALL_DAY)
    day = datetime.fromtimestamp(Clock().now, scenario.timezone).date()
    clock = Clock(at_local(scenario, day, "22:00:00"))
    settings = engine_settings(engine, Settings(data_dir=tmp_path / "data", scenario=scenario,
                                                clock=clock, rate_limit_per_s=0))
    sid, service, (first, *_) = busy_hall(scenario)
    api = await serve(settings)
    called = await api.issue(sid, service)
    waiting = await api.issue(sid, service)
    assert (await api.next(first))["id"] == called["id"]
    await api.client.close()                                    # down before closing, over midnight

    clock.now = at_local(scenario, day + timedelta(days=1), "09:00:00")
    api = await serve(settings)
    await wait_until_async(lambda: status_of(api, called), done=lambda status: status == "closed_unserved",
                           what="yesterday closed by the start-up round", timeout=5)   # in the background
    assert await status_of(api, waiting) == "closed_unserved"
    status, body = await api.get(f"/api/v1/reports/daily?date={day.isoformat()}")
    assert body["report"]["total"]["closed_unserved"] == 2 and body["report"]["total"]["open_at_end"] == 0


async def test_a_cashier_working_late_after_closing_keeps_the_tokens_issued_then(api: Api, clock: Clock,
                                                                                 scenario: Scenario):
    """The built-in hours (closing 17:30): what closing closes, and what it leaves to midnight."""
    day = datetime.fromtimestamp(clock.now, scenario.timezone).date()
    sid, service, (first, *_) = busy_hall(scenario)
    before = [await api.issue(sid, service) for _ in range(2)]
    status, _ = await api.request("PUT", f"/api/v1/ops/substations/{sid}/admission", api.admin,
                                  json={"admission": False})
    assert status == 200
    clock.now = at_local(scenario, day, "17:30:10")
    await api.client.app[TOKENS].close_days()
    assert [await status_of(api, t) for t in before] == ["closed_unserved"] * 2
    late = await api.issue(sid, service)                         # the door rule is off: issued
    clock.now = at_local(scenario, day, "17:33:00")              # the called tokens' grace is over
    await api.client.app[TOKENS].close_days()
    assert await status_of(api, late) == "waiting"
    assert (await api.next(first))["id"] == late["id"]


# -- the phone page ----------------------------------------------------------------------------------

async def test_the_phone_page_says_the_counters_closed_and_offers_the_first_free_slot(
        aiohttp_server, browser, tmp_path: Path, scenario_file: Path):
    scenario = load_scenario(scenario_file)
    day = datetime.fromtimestamp(Clock().now, scenario.timezone).date()
    clock = Clock(at_local(scenario, day, "23:30:00"))
    app = create_app(Settings(data_dir=tmp_path / "data", scenario=scenario, clock=clock,
                              rate_limit_per_s=0, write_admin_key=False))
    server = await aiohttp_server(app, host="127.0.0.1")
    url = str(server.make_url("")).rstrip("/")
    sid, service, _ = busy_hall(scenario)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/api/v1/public/substations/{sid}/tokens",
                                json={"service": service, "account": "KAN-20431877",
                                      "phone": "+91 98765 43210"}) as resp:
            assert resp.status == 201, await resp.text()
            taken = await resp.json()
    context = await browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True,
                                        bypass_csp=True)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await page.goto(f"{url}{taken['url']}")
        await page.wait_for_function("document.body.dataset.status === 'waiting'", timeout=5_000)
        clock.now = at_local(scenario, day, "23:59:59") + 1        # closing time: the feed says so
        await app[TOKENS].close_days()
        await page.wait_for_selector("#first-slot", timeout=5_000)
        final = " ".join((await page.text_content("#t-final") or "").split())
        assert "the counters closed before your turn came" in final
        assert "आपकी बारी आने से पहले काउंटर बंद हो गए" in final
        assert "Not served" in (await page.text_content("#t-status") or "")
        offered = await page.get_attribute("#first-slot", "data-at")
        assert offered and offered[:10] > day.isoformat()        # a slot on a later day
        assert await page.get_attribute("#first-slot", "href") == f"/q/{sid}"
        await page.screenshot(path=str(tmp_path / "closed.png"), full_page=True)
    finally:
        await context.close()
    assert errors == []
