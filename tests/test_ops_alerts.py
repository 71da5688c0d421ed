"""The ops page's alerts: one pure function of today's halls, the billing snapshot and the time,
run on real queues of both scenarios (names taken from the scenario, never assumed); then the
admin route that serves them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from counter_server.config import Scenario, load_scenario
from counter_server.ops.alerts import (
    CALLED_NOT_STARTED_S,
    OUTBOX_OLDEST_CRITICAL_S,
    OUTBOX_OLDEST_WARN_S,
    AlertThresholds,
    alert_json,
    ops_alerts,
)
from counter_server.queueing import Action, Priority, SubstationQueue

from testkit.api import Api
from testkit.scenarios import BOTH_SCENARIOS, paid_service

NOW = 1_764_050_000.0
DAY = "2025-11-25"


@pytest.fixture(params=sorted(BOTH_SCENARIOS))
def scene(request: pytest.FixtureRequest) -> Scenario:
    return load_scenario(Path(BOTH_SCENARIOS[request.param]))


def billing(state: str = "up", breaker: str = "closed", paused: bool = False, queued: int = 0,
            oldest: float | None = None) -> dict[str, Any]:
    """The fields of BillingGateway.snapshot() the alerts read."""
    return {"billing_url": "http://billing.example:8080", "simulated": False, "state": state,
            "paused": paused, "limit": 10, "in_flight": 0,
            "breaker": {"state": breaker, "consecutive_failures": 0, "open_s": 5.0, "times_opened": 0},
            "outbox": {"queued": queued, "posted": 0, "failed": 0, "oldest_queued_s": oldest}}


def queues(scenario: Scenario) -> dict[str, SubstationQueue]:
    return {sid: SubstationQueue(sid, DAY, scenario.policy, counters=layout)
            for sid, layout in scenario.layouts().items()}


def issue(scenario: Scenario, q: SubstationQueue, service: str, at: float = NOW - 600) -> Any:
    return q.issue(f"t{len(q.tokens) + 1}-{q.substation}", service, scenario.services[service].letter,
                   Priority.NORMAL, at)


def halls(qs: dict[str, SubstationQueue]) -> list:
    return [q.hall_view() for q in qs.values()]


def partly_served(scenario: Scenario) -> tuple[str, str, list[str]]:
    """A hall, a service of it and the counters serving it, where other counters there serve
    something else (so closing the first leaves the hall open)."""
    for sid, sub in scenario.substations.items():
        for service in sub.services:
            serving = [c.id for c in sub.counters if service in c.services]
            if serving and len(serving) < len(sub.counters):
                return sid, service, serving
    raise AssertionError("the scenario has no service that only some counters serve")


def test_a_quiet_day_has_no_alerts(scene: Scenario):
    qs = queues(scene)
    sid = next(iter(qs))
    issue(scene, qs[sid], scene.substations[sid].services[0])
    assert ops_alerts(halls(qs), billing(), NOW, scene) == []
    assert ops_alerts(halls(qs), None, NOW, scene) == []


def test_tokens_waiting_for_a_service_no_open_counter_serves(scene: Scenario):
    sid, service, serving = partly_served(scene)
    qs = queues(scene)
    for counter in serving:
        qs[sid].close_counter(counter, NOW - 900)
    assert ops_alerts(halls(qs), billing(), NOW, scene) == []          # nobody waits for it yet
    issue(scene, qs[sid], service)
    issue(scene, qs[sid], service)
    [alert] = ops_alerts(halls(qs), billing(), NOW, scene)
    names = [scene.counters[c].label for c in serving]
    assert (alert.level, alert.kind, alert.substation, alert.service) == ("critical", "service_unserved", sid, service)
    assert alert.title == (f"{scene.substations[sid].name}: 2 tokens waiting for "
                           f"{scene.services[service].name}, no open counter serves it")
    assert alert.action.startswith("Open ") and all(name in alert.action for name in names)
    qs[sid].open_counter(serving[0], NOW)
    assert ops_alerts(halls(qs), billing(), NOW, scene) == []


def test_people_waiting_in_a_hall_with_every_counter_closed(scene: Scenario):
    qs = queues(scene)
    sid = next(s for s, sub in scene.substations.items() if len(sub.services) >= 1)
    for counter in scene.substations[sid].counters:
        qs[sid].close_counter(counter.id, NOW - 900)
    service = scene.substations[sid].services[0]
    issue(scene, qs[sid], service)
    found = ops_alerts(halls(qs), billing(), NOW, scene)
    # One alert for the hall, not one more for each of its services.
    assert [(a.kind, a.level, a.substation) for a in found] == [("hall_unstaffed", "critical", sid)]
    assert found[0].title == f"{scene.substations[sid].name}: 1 person waiting and every counter closed"
    assert scene.substations[sid].name in found[0].action


def test_a_token_called_and_not_started_for_five_minutes(scene: Scenario):
    qs = queues(scene)
    sid = next(iter(qs))
    counter = scene.substations[sid].counters[0]
    token = issue(scene, qs[sid], counter.services[0])
    called = qs[sid].call_next(counter.id, counter.services, NOW - CALLED_NOT_STARTED_S + 1)
    assert called is not None and called.id == token.id
    assert ops_alerts(halls(qs), billing(), NOW, scene) == []          # 299 s: not yet
    [alert] = ops_alerts(halls(qs), billing(), NOW + 1, scene)
    assert (alert.kind, alert.level, alert.counter) == ("called_not_started", "warning", counter.id)
    assert alert.title == (f"{scene.substations[sid].name}, {counter.label}: token {called.number} "
                           "called 5 min ago, not started")
    assert counter.label in alert.action and "no-show" in alert.action
    # A threshold of one's own; and once started the alert is gone.
    assert ops_alerts(halls(qs), billing(), NOW, scene, AlertThresholds(called_not_started_s=60))
    qs[sid].act(token.id, Action.START, NOW + 2)
    assert ops_alerts(halls(qs), billing(), NOW + 3600, scene) == []


def test_billing_down_is_critical_and_first(scene: Scenario):
    qs = queues(scene)
    sid = next(iter(qs))
    counter = scene.substations[sid].counters[0]
    issue(scene, qs[sid], counter.services[0], NOW - 4000)
    qs[sid].call_next(counter.id, counter.services, NOW - 3600)
    found = ops_alerts(halls(qs), billing("down", "open", queued=7), NOW, scene)
    assert [(a.kind, a.level) for a in found] == [("billing_down", "critical"), ("called_not_started", "warning")]
    assert found[0].title == "Billing server down: circuit breaker open (7 payments queued)"
    assert "http://billing.example:8080" in found[0].action and "provisional" in found[0].action
    probing = ops_alerts([], billing("down", "half_open", queued=1), NOW, scene)
    assert probing[0].title == "Billing server down: circuit breaker half-open, probing (1 payment queued)"


def test_outbox_paused_and_its_oldest_payment_growing_old(scene: Scenario):
    paused = ops_alerts([], billing(paused=True, queued=3, oldest=12.0), NOW, scene)
    assert [(a.kind, a.level) for a in paused] == [("outbox_paused", "warning")]
    assert "Resume outbox" in paused[0].action
    assert ops_alerts([], billing(queued=3, oldest=OUTBOX_OLDEST_WARN_S - 1), NOW, scene) == []
    [old] = ops_alerts([], billing(queued=3, oldest=OUTBOX_OLDEST_WARN_S), NOW, scene)
    assert (old.kind, old.level, old.age_s) == ("outbox_old", "warning", OUTBOX_OLDEST_WARN_S)
    assert old.title == "Oldest queued payment waiting 2 min (3 payments queued)"
    [older] = ops_alerts([], billing(queued=3, oldest=OUTBOX_OLDEST_CRITICAL_S), NOW, scene)
    assert older.level == "critical" and "15 min" in older.title


def test_alerts_as_json(scene: Scenario):
    [alert] = ops_alerts([], billing("down", "open"), NOW, scene)
    assert alert_json(alert) == {
        "key": "billing_down", "level": "critical", "kind": "billing_down", "title": alert.title,
        "action": alert.action, "substation": None, "service": None, "counter": None, "age_s": None}


# -- the route -------------------------------------------------------------------------------

async def test_the_alerts_route_is_for_admin_keys(api: Api, scenario: Scenario):
    service = paid_service(scenario)
    sid = next(s for s, sub in scenario.substations.items() if service in sub.services)
    status, body = await api.get("/api/v1/ops/alerts")
    assert status == 200 and body == {"alerts": []}
    for counter in scenario.substations[sid].counters:
        status, _ = await api.post(f"/api/v1/counters/{counter.id}/close")
        assert status == 200
    await api.issue(sid, service)
    status, body = await api.get("/api/v1/ops/alerts")
    assert status == 200 and [a["kind"] for a in body["alerts"]] == ["hall_unstaffed"]
    assert body["alerts"][0]["substation"] == sid
    status, body = await api.get("/api/v1/ops/alerts", key=api.board)
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await api.get("/api/v1/ops/alerts", key="")
    assert status == 401
