"""Admission at the door: refuse tokens that cannot be served today, and say where to go."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from counter_server.queueing import CannotServeToday, Priority, QueuePolicy, ServiceTimeSeed, SubstationQueue
from counter_server.services.nearby import nearest

from testkit.api import Api, Clock

POLICY = QueuePolicy(service_seeds={"bill_payment": ServiceTimeSeed(90.0, 0.0)})
LAYOUT = {"C1": ("bill_payment",), "C2": ("bill_payment",)}


def issue(q: SubstationQueue, now: float, closes_at: float | None):
    return q.issue(f"t{len(q.tokens)}", "bill_payment", "B", Priority.NORMAL, now, None, closes_at)


def test_refuses_when_the_p90_wait_ends_after_closing():
    q = SubstationQueue("S01", "d", POLICY, counters=LAYOUT)
    # sd 0, both counters free: p90 = p50 = 90 s per round of two tokens ahead (0, 0, 90, 90,
    # 180, 180, 270); 200 s to closing admits 6 tokens
    for _ in range(6):
        issue(q, 0.0, closes_at=200.0)
    with pytest.raises(CannotServeToday) as err:
        issue(q, 0.0, closes_at=200.0)
    assert err.value.reason == "after_closing" and err.value.extra["estimate"]["p90_s"] == 270.0
    assert len(q.tokens) == 6 and q.last_seq["bill_payment"] == 6        # nothing used up
    q.set_admission(False, None, 1.0)
    assert issue(q, 1.0, closes_at=200.0).number == "B-007"              # ops switched it off


def test_refuses_after_closing_and_past_the_daily_cap():
    q = SubstationQueue("S01", "d", POLICY, counters=LAYOUT)
    with pytest.raises(CannotServeToday) as err:
        issue(q, 300.0, closes_at=200.0)
    assert err.value.reason == "closed"
    q.set_admission(True, 2, 0.0)
    issue(q, 0.0, None)
    issue(q, 0.0, None)
    with pytest.raises(CannotServeToday) as err:
        issue(q, 0.0, None)
    assert err.value.reason == "daily_cap" and err.value.extra == {"daily_cap": 2}


def closing_time(clock: Clock, hhmm: str = "17:30") -> float:
    local = datetime.fromtimestamp(clock.now, ZoneInfo("Asia/Kolkata"))
    hour, minute = map(int, hhmm.split(":"))
    return local.replace(hour=hour, minute=minute, second=0, microsecond=0).timestamp()


async def test_issue_near_closing_is_refused_with_nearby_substations_and_online_option(
        api: Api, clock: Clock, scenario):
    clock.now = closing_time(clock) - 300                       # five minutes before closing
    issued = 0
    while True:
        status, body = await api.post("/api/v1/substations/S01/tokens", json={"service": "bill_payment"})
        if status != 201:
            break
        issued += 1
        assert issued < 50
    assert status == 409
    error = body["error"]
    assert error["code"] == "cannot_serve_today" and error["reason"] == "after_closing"
    assert error["estimate"]["p90_s"] > 300
    assert [a["substation"] for a in error["alternatives"]] == [s.id for s, _ in nearest(scenario, "S01")]
    assert [a["distance_km"] for a in error["alternatives"]] == sorted(a["distance_km"] for a in error["alternatives"])
    assert all(a["estimate"]["p90_s"] < 300 for a in error["alternatives"])
    assert "online" in error["online"]["text"].lower() and error["online"]["text_hi"]
    # four free counters: p50 = 90 s per round of four ahead; p90 = p50 + 1.2816 x its spread
    # (see counter_server/queueing/estimate.py) stays under 300 s up to k = 14 tokens ahead
    assert issued == 15

    status, settings = await api.get("/api/v1/ops/substations/S01/admission")
    assert settings == {"substation": "S01", "admission": True, "daily_cap": None,
                        "issued_today": 15, "turned_away_today": 1}

    clock.now = closing_time(clock) + 60
    status, body = await api.post("/api/v1/substations/S02/tokens", json={"service": "bill_payment"})
    assert status == 409 and body["error"]["reason"] == "closed" and body["error"]["alternatives"] == []


async def test_ops_switch_admission_and_set_a_daily_cap(api: Api, clock: Clock):
    path = "/api/v1/ops/substations/S04/admission"
    status, body = await api.request("PUT", path, await api.cashier("S04-C1"), json={"admission": False})
    assert status == 403
    status, body = await api.request("PUT", path, api.admin, json={"admission": True, "daily_cap": 2})
    assert status == 200 and body["daily_cap"] == 2
    await api.issue("S04")
    await api.issue("S04")
    status, body = await api.post("/api/v1/substations/S04/tokens", json={"service": "bill_payment"})
    assert status == 409 and body["error"]["reason"] == "daily_cap"

    status, body = await api.request("PUT", path, api.admin, json={"admission": True, "daily_cap": 0})
    assert status == 422 and body["error"]["field"] == "daily_cap"
    status, body = await api.request("PUT", path, api.admin, json={"admission": False, "daily_cap": None})
    assert status == 200
    clock.now = closing_time(clock) + 3600                  # after hours, door rule off: issued
    assert (await api.issue("S04"))["number"] == "B-003"
