"""The OpenAPI document is exact: what it allows the server takes, what it forbids the server
refuses, and every status the server gives is in it. One case per kind of mismatch
schemathesis found (all phases, all checks, an admin key); the whole run is in the
reliability suite (tests/test_reliability.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import jsonschema_rs
import pytest

from counter_server.app import create_app
from counter_server.appkeys import KEYS, SETTINGS
from counter_server.config import Scenario

from testkit.api import Api
from testkit.scenarios import paid_service


@pytest.fixture
async def doc(api: Api) -> dict[str, Any]:
    async with api.client.get("/api/v1/openapi.json") as resp:
        assert resp.status == 200
        return await resp.json()


def _scenario(api: Api) -> Scenario:
    return api.client.app[SETTINGS].scenario


def _counter_and_service(api: Api) -> tuple[str, str]:
    scenario = _scenario(api)
    service = paid_service(scenario)
    counter = next(c for s in scenario.substations.values() for c in s.counters if service in c.services)
    return counter.id, service


def _parameter(doc: dict, path: str, method: str, name: str) -> dict:
    return next(p for p in doc["paths"][path][method]["parameters"] if p["name"] == name)


def _allows(doc: dict, schema: dict, value: Any) -> bool:
    """Whether the document's schema (its components within reach) admits ``value``."""
    whole = {**schema, "components": doc["components"]}
    return jsonschema_rs.validator_for(whole, validate_formats=True).is_valid(value)


def _body_schema(doc: dict, path: str, method: str = "post") -> dict:
    return doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


async def test_every_route_documents_the_rate_limit_it_stands_behind(doc: dict, aiohttp_client, settings):
    """Undocumented 429: the rate limit answers on every route but the health checks."""
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            if path not in ("/healthz", "/readyz"):
                assert "429" in operation["responses"], (method, path)
    client = await aiohttp_client(create_app(replace(settings, write_admin_key=False,
                                                     rate_limit_per_s=1, rate_limit_burst=2)))
    admin, _ = await client.app[KEYS].create("admin")
    statuses = set()
    for _ in range(4):
        async with client.get("/api/v1/me", headers={"Authorization": f"Bearer {admin}"}) as resp:
            statuses.add(resp.status)
    assert 429 in statuses and "429" in doc["paths"]["/api/v1/me"]["get"]["responses"]


async def test_an_enum_path_outside_its_values_answers_a_documented_404(api: Api, doc: dict):
    """Undocumented 404: POST /ops/billing/AAA."""
    status, body = await api.post("/api/v1/ops/billing/AAA")
    assert status == 404 and "404" in doc["paths"]["/api/v1/ops/billing/{state}"]["post"]["responses"]


async def test_path_ids_state_their_pattern_and_an_account_that_breaks_it_is_refused(api: Api, doc: dict):
    """GET /bills/0 was schema-valid (any string) and answered 422."""
    account = _parameter(doc, "/api/v1/bills/{account}", "get", "account")["schema"]
    assert not _allows(doc, account, "0")
    status, body = await api.get("/api/v1/bills/0")
    assert (status, body["error"]["field"]) == (422, "account")
    for path, methods in doc["paths"].items():
        for operation in methods.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    assert "pattern" in parameter["schema"] or "enum" in parameter["schema"], (path, parameter)


async def test_an_empty_report_date_is_refused_naming_the_field(api: Api, doc: dict):
    """GET /reports/daily?date= broke the document (format date) and answered 200."""
    for path, name in (("/api/v1/reports/daily", "date"), ("/api/v1/reports/monthly", "month"),
                       ("/api/v1/reports/daily", "substation")):
        assert not _allows(doc, _parameter(doc, path, "get", name)["schema"], "")
        status, body = await api.get(f"{path}?{name}=")
        assert (status, body["error"]["field"]) == (422, name), (path, name, body)


async def test_report_days_and_months_state_their_range_and_form(api: Api, doc: dict):
    """date=0184-12-05 was schema-valid and refused (out of range); a week date (2025-W48-2)
    was refused by the document and taken by the server."""
    day = _parameter(doc, "/api/v1/reports/daily", "get", "date")["schema"]
    month = _parameter(doc, "/api/v1/reports/monthly", "get", "month")["schema"]
    for value in ("0184-12-05", "1999-12-31", "2100-01-01", "2025-W48-2", "2025-02-30"):
        assert not _allows(doc, day, value), value
        status, body = await api.get(f"/api/v1/reports/daily?date={value}")
        assert (status, body["error"]["field"]) == (422, "date"), (value, body)
    for value in ("2000-01-01", "2099-12-31"):
        assert _allows(doc, day, value)
        assert (await api.get(f"/api/v1/reports/daily?date={value}"))[0] == 200
    for value, allowed in (("2025-1", False), ("1999-12", False), (")Nf#", False), ("2099-12", True)):
        assert _allows(doc, month, value) is allowed, value
        status, _ = await api.get(f"/api/v1/reports/monthly?month={value}")
        assert status == (200 if allowed else 422), value


async def test_whole_numbers_written_with_a_point_are_taken_as_json_schema_says(api: Api, doc: dict):
    """size 78.0 and amount_paise 105763.0 are JSON Schema integers, and were refused."""
    counter, service = _counter_and_service(api)
    lease = _body_schema(doc, "/api/v1/counters/{cid}/leases")
    assert _allows(doc, lease, {"service": service, "size": 8.0})
    assert not _allows(doc, lease, {"service": service, "size": "8"})
    status, body = await api.post(f"/api/v1/counters/{counter}/leases", json={"service": service, "size": 8.0})
    assert status == 201 and len(body["lease"]["numbers"]) == 8, body
    for size in ("8", True, 8.5):
        status, body = await api.post(f"/api/v1/counters/{counter}/leases", json={"service": service, "size": size})
        assert (status, body["error"]["field"]) == (422, "size"), (size, body)
    status, body = await api.post("/api/v1/payments", json={
        "token_id": "t_none", "account": "FpM7", "amount_paise": 105763.0})
    assert body["error"].get("field") != "amount_paise", body


async def test_optional_numbers_state_their_bounds(api: Api, doc: dict):
    """daily_cap 0 and capacity 584 were schema-valid (the bounds came out as 'ge'/'le',
    which JSON Schema does not know) and refused."""
    sid = next(iter(_scenario(api).substations))
    admission = _body_schema(doc, "/api/v1/ops/substations/{sid}/admission", "put")
    slots = _body_schema(doc, "/api/v1/ops/substations/{sid}/slots/{day}", "put")
    assert not _allows(doc, admission, {"admission": False, "daily_cap": 0})
    assert not _allows(doc, slots, {"capacity": 584})
    assert not _allows(doc, admission, {"admission": "true"})
    status, body = await api.request("PUT", f"/api/v1/ops/substations/{sid}/admission", api.admin,
                                     json={"admission": "true"})
    assert (status, body["error"]["field"]) == (422, "admission"), body


async def test_body_moments_state_their_form_and_range(api: Api, doc: dict):
    """issued_at 0506-01-29T13:33:12Z and slot_at 0287-06-26T14:41:56Z were schema-valid and
    refused; a space for the 'T' was forbidden by the document and taken."""
    counter, service = _counter_and_service(api)
    offline = _body_schema(doc, "/api/v1/counters/{cid}/offline-tokens")
    base = {"lease_id": "l_none", "number": "B-001"}
    for moment in ("0506-01-29T13:33:12.9274+01:37", "2025-11-25 10:00:00+05:30", "2100-01-01T00:00:00Z"):
        assert not _allows(doc, offline, {**base, "issued_at": moment}), moment
        status, body = await api.post(f"/api/v1/counters/{counter}/offline-tokens",
                                      json={**base, "issued_at": moment})
        assert (status, body["error"]["field"]) == (422, "issued_at"), (moment, body)
    # On the first day as written, though 1999 in UTC: the document allows it, so the server does.
    moment = "2000-01-01T00:30:00+05:30"
    assert _allows(doc, offline, {**base, "issued_at": moment})
    status, body = await api.post(f"/api/v1/counters/{counter}/offline-tokens", json={**base, "issued_at": moment})
    assert "2099-12-31" not in body["error"]["message"], body


async def test_idempotency_keys_state_what_the_server_takes(api: Api, doc: dict):
    """An Idempotency-Key with a character that is not printable (a no-break space) was
    schema-valid and refused."""
    sid = next(iter(_scenario(api).substations))
    schema = _parameter(doc, "/api/v1/substations/{sid}/tokens", "post", "Idempotency-Key")["schema"]
    for key in ("a\u00a0b", "a\tb", "é"):
        assert not _allows(doc, schema, key)
        status, body = await api.post(f"/api/v1/substations/{sid}/tokens", idem=key,
                                      json={"service": paid_service(_scenario(api))})
        assert (status, body["error"]["code"]) == (400, "invalid_idempotency_key"), (key, body)
    assert _allows(doc, schema, "kiosk 7/2025-11-25#1")


async def test_moves_without_a_body_and_transfer_each_state_their_own_body(api: Api, doc: dict):
    """recall with {"counter": null, "service": null} was schema-valid (every move had the
    transfer body) and refused; transfer with {} too."""
    move = _body_schema(doc, "/api/v1/tokens/{tid}/{action}")
    transfer = _body_schema(doc, "/api/v1/tokens/{tid}/transfer")
    assert not _allows(doc, move, {"counter": None, "service": None}) and _allows(doc, move, {})
    assert "transfer" not in _parameter(doc, "/api/v1/tokens/{tid}/{action}", "post", "action")["schema"]["enum"]
    for body in ({}, {"counter": None, "service": None}):
        assert not _allows(doc, transfer, body)
        status, answer = await api.post("/api/v1/tokens/t_none/transfer", json=body)
        assert status == 422, answer
    assert _allows(doc, transfer, {"service": None, "counter": "c1"})


async def test_a_slot_day_states_its_form(api: Api, doc: dict):
    """PUT /slots/0 was schema-valid (any string) and refused; 20251125 was taken."""
    sid = next(iter(_scenario(api).substations))
    day = _parameter(doc, "/api/v1/ops/substations/{sid}/slots/{day}", "put", "day")["schema"]
    for value in ("0", "20251125", "2025-W48-2"):
        assert not _allows(doc, day, value)
        status, body = await api.request("PUT", f"/api/v1/ops/substations/{sid}/slots/{value}", api.admin, json={})
        assert (status, body["error"]["field"]) == (400, "day"), (value, body)


async def test_websocket_routes_state_the_handshake_they_need(api: Api, doc: dict):
    """GET /live?since=1 without a handshake was schema-valid and answered 400."""
    sid = next(iter(_scenario(api).substations))
    for path in ("/api/v1/live", "/api/v1/substations/{sid}/live", "/api/v1/public/tokens/{link}/live"):
        required = {p["name"] for p in doc["paths"][path]["get"]["parameters"] if p["in"] == "header" and p["required"]}
        assert required == {"Upgrade", "Connection", "Sec-WebSocket-Version", "Sec-WebSocket-Key"}, path
    async with api.client.get(f"/api/v1/substations/{sid}/live?since=1") as resp:
        assert resp.status == 400
    async with api.client.ws_connect(f"/api/v1/substations/{sid}/live?since=1") as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "snapshot"
