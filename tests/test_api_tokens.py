"""The REST API through a real server on a loopback port over a real SQLite file."""

from __future__ import annotations

import asyncio

import pytest

from testkit.api import Api


async def test_healthz_and_openapi_are_public(api: Api):
    status, health = await api.request("GET", "/healthz")
    assert status == 200 and health["status"] == "ok"
    assert health["billing"]["simulated"] is True and "SIMULATED" in health["billing"]["warning"]
    status, doc = await api.request("GET", "/api/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    assert {"/api/v1/substations/{sid}/tokens", "/api/v1/counters/{cid}/next",
            "/api/v1/tokens/{tid}/{action}"} <= set(doc["paths"])


async def test_substations_list_the_scenario_with_waiting_counts(api: Api):
    await api.issue("S02")
    status, body = await api.get("/api/v1/substations", api.board)
    assert status == 200
    subs = {s["id"]: s for s in body["substations"]}
    assert len(subs) == 10 and sum(len(s["counters"]) for s in subs.values()) == 40
    assert subs["S02"]["waiting"] == 1 and subs["S01"]["waiting"] == 0
    assert {"id": "bill_payment", "name": "Bill payment", "name_hi": "बिल भुगतान", "letter": "B"} \
        in subs["S01"]["services"]
    assert all("bill_payment" in c["services"] for s in subs.values() for c in s["counters"])


async def test_cashier_serves_a_token_through_its_whole_lifecycle(api: Api):
    key = await api.cashier("S01-C1")
    token = await api.issue("S01", key=key)
    assert token["number"] == "B-001" and token["status"] == "waiting" and token["counter"] is None
    assert set(token) >= {"id", "number", "substation", "service", "priority", "status", "counter",
                          "issued_at"}

    called = await api.next("S01-C1")
    assert (called["id"], called["status"], called["counter"]) == (token["id"], "called", "S01-C1")
    for action, status in (("recall", "called"), ("start", "serving"), ("complete", "done")):
        code, body = await api.act(called, action)
        assert code == 200 and body["token"]["status"] == status, body
    code, body = await api.get(f"/api/v1/tokens/{token['id']}", api.board)
    assert code == 200 and body["token"]["status"] == "done" and body["token"]["recalls"] == 1
    assert await api.next("S01-C1") is None


async def test_queue_shows_tokens_at_counters_then_waiting_in_call_order(api: Api):
    normal = await api.issue()
    senior = await api.issue(priority="senior")
    complaint = await api.issue(service="complaint")
    called = await api.next("S01-C2")
    assert called["id"] == senior["id"]             # a senior issued just after goes first
    status, body = await api.get("/api/v1/substations/S01/queue", api.board)
    assert status == 200
    assert [t["id"] for t in body["tokens"]] == [senior["id"], normal["id"], complaint["id"]]
    assert [t["status"] for t in body["tokens"]] == ["called", "waiting", "waiting"]
    assert body["waiting"] == 2


async def test_no_show_requeue_transfer_and_cancel(api: Api):
    first = await api.issue()
    await api.issue()
    called = await api.next("S01-C1")
    await api.act(called, "recall")
    code, body = await api.act(called, "no-show")
    assert code == 200 and body["token"]["status"] == "no_show"
    code, body = await api.act(called, "requeue")
    assert code == 200 and body["token"]["status"] == "waiting"
    again = await api.next("S01-C1")
    assert again["id"] == first["id"]           # a returning consumer keeps the old place
    code, body = await api.act(again, "transfer", json={"service": "new_connection"})
    assert code == 200 and body["token"]["service"] == "new_connection"
    moved = await api.next("S01-C3")
    assert moved["id"] == first["id"] and moved["number"] == "B-001"
    code, body = await api.act(moved, "cancel")
    assert code == 200 and body["token"]["status"] == "cancelled"


async def test_illegal_move_is_409_naming_the_allowed_moves(api: Api):
    token = await api.issue()
    code, body = await api.act(token, "complete")
    assert code == 409
    err = body["error"]
    assert err["code"] == "illegal_transition" and err["allowed"] == ["call", "transfer", "cancel"]
    assert err["status"] == "waiting" and "complete" in err["message"]
    await api.next("S01-C1")
    code, body = await api.post("/api/v1/counters/S01-C1/next", await api.cashier("S01-C1"))
    assert code == 409 and body["error"]["code"] == "counter_busy"


async def test_idempotent_retry_returns_the_first_answer_and_changes_nothing(api: Api):
    key = await api.cashier("S01-C1")
    path = "/api/v1/substations/S01/tokens"
    first = await api.post(path, key, idem="slip-1", json={"service": "bill_payment"})
    again = await api.post(path, key, idem="slip-1", json={"service": "bill_payment"})
    assert first[0] == again[0] == 201 and first[1] == again[1]
    _, queue = await api.get("/api/v1/substations/S01/queue")
    assert queue["waiting"] == 1

    code, body = await api.post(path, key, idem="slip-1", json={"service": "complaint"})
    assert code == 422 and body["error"]["code"] == "idempotency_key_reused"

    calls = await asyncio.gather(*[
        api.post("/api/v1/counters/S01-C1/next", key, idem="call-1") for _ in range(5)])
    assert {c[0] for c in calls} == {200} and len({c[1]["token"]["id"] for c in calls}) == 1
    token = calls[0][1]["token"]
    start = [await api.post(f"/api/v1/tokens/{token['id']}/start", key, idem="s-1") for _ in range(2)]
    assert start[0] == start[1] and start[0][1]["token"]["status"] == "serving"


async def test_idempotency_keys_are_scoped_per_api_key(api: Api):
    path = "/api/v1/substations/S01/tokens"
    one = await api.post(path, await api.cashier("S01-C1"), idem="k", json={"service": "bill_payment"})
    two = await api.post(path, await api.cashier("S01-C2"), idem="k", json={"service": "bill_payment"})
    assert one[1]["token"]["number"] == "B-001" and two[1]["token"]["number"] == "B-002"


async def test_cashier_may_not_act_on_another_counters_token(api: Api):
    await api.issue()
    token = await api.next("S01-C1")
    other = await api.cashier("S01-C2")
    code, body = await api.act(token, "start", key=other)
    assert code == 403 and body["error"]["code"] == "forbidden" and "S01-C1" in body["error"]["message"]
    code, body = await api.post("/api/v1/counters/S01-C1/next", other)
    assert code == 403
    code, body = await api.post("/api/v1/substations/S02/tokens", other, json={"service": "bill_payment"})
    assert code == 403
    _, body = await api.get(f"/api/v1/tokens/{token['id']}")
    assert body["token"]["status"] == "called"           # nothing changed


async def test_board_key_is_read_only(api: Api):
    code, body = await api.post("/api/v1/substations/S01/tokens", api.board, json={"service": "bill_payment"})
    assert code == 403 and body["error"]["code"] == "forbidden"


@pytest.mark.parametrize("headers, code", [
    ({}, "missing_key"),
    ({"Authorization": "Basic abc"}, "malformed_key"),
    ({"Authorization": "Bearer "}, "malformed_key"),
    ({"Authorization": "Bearer ccq_not_a_real_key"}, "invalid_key"),
])
async def test_missing_or_bad_keys_are_401(api: Api, headers, code):
    status, body = await api.request("GET", "/api/v1/substations", headers=headers)
    assert status == 401 and body["error"]["code"] == code


@pytest.mark.parametrize("path, code", [
    ("/api/v1/substations/S99/tokens", "substation_not_found"),
    ("/api/v1/counters/S99-C1/next", "counter_not_found"),
    ("/api/v1/tokens/t_nope/start", "token_not_found"),
])
async def test_unknown_ids_are_404(api: Api, path, code):
    body = {"service": "bill_payment"} if path.endswith("/tokens") else None
    status, body = await api.post(path, json=body)
    assert status == 404 and body["error"]["code"] == code
    status, body = await api.get("/api/v1/tokens/t_nope")
    assert status == 404 and body["error"]["code"] == "token_not_found"
    status, body = await api.get("/api/v1/substations/S99/queue")
    assert status == 404 and body["error"]["code"] == "substation_not_found"


@pytest.mark.parametrize("kwargs, status, code, field", [
    ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "invalid_json", None),
    ({"data": b"service=bill", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type", None),
    ({"json": ["bill_payment"]}, 422, "invalid_body", None),
    ({"json": {}}, 422, "invalid_field", "service"),
    ({"json": {"service": 7}}, 422, "invalid_field", "service"),
    ({"json": {"service": "bill_payment", "priority": "vip"}}, 422, "invalid_field", "priority"),
    ({"json": {"service": "bill_payment", "extra": 1}}, 422, "invalid_field", "extra"),
    ({"json": {"service": "water"}}, 422, "invalid_field", "service"),
    ({"json": {"service": "ब" * 10}}, 422, "invalid_field", "service"),
])
async def test_bad_input_is_a_json_error_naming_the_problem(api: Api, kwargs, status, code, field):
    got, body = await api.post("/api/v1/substations/S01/tokens", **kwargs)
    assert got == status and body["error"]["code"] == code, body
    assert body["error"]["message"]
    if field:
        assert body["error"]["field"] == field
    _, queue = await api.get("/api/v1/substations/S01/queue")
    assert queue["tokens"] == []                                  # nothing half-written


async def test_oversized_body_is_413_and_deep_json_is_refused(api: Api):
    huge = {"service": "bill_payment", "pad": "x" * 100_000}
    status, body = await api.post("/api/v1/substations/S01/tokens", json=huge)
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    deep = b"[" * 5000 + b"]" * 5000
    status, body = await api.post("/api/v1/substations/S01/tokens", data=deep,
                                  headers={"Content-Type": "application/json"})
    assert status in (400, 422) and body["error"]["code"] in ("invalid_json", "invalid_body")


async def test_transfer_validation_and_unknown_actions(api: Api):
    await api.issue()
    token = await api.next("S01-C1")
    for body, field in (({}, "body"), ({"service": "water"}, "service"), ({"counter": "S02-C1"}, "counter"),
                        ({"service": "complaint", "counter": "S01-C3"}, "counter")):
        code, answer = await api.act(token, "transfer", json=body)
        assert code == 422 and answer["error"]["field"] == field, answer
    code, answer = await api.act(token, "teleport")
    assert code == 404 and answer["error"]["code"] == "unknown_action"
    assert "no-show" in answer["error"]["actions"]
    code, answer = await api.act(token, "start", json={"surprise": True})
    assert code == 422 and answer["error"]["field"] == "surprise"


async def test_unknown_route_and_method_are_json(api: Api):
    status, body = await api.get("/api/v1/nothing-here")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await api.request("DELETE", "/api/v1/substations", api.admin)
    assert status == 405 and body["error"]["code"] == "method_not_allowed"


async def test_concurrent_issues_get_distinct_consecutive_numbers(api: Api):
    results = await asyncio.gather(*[api.issue() for _ in range(60)])
    numbers = sorted(int(t["number"].split("-")[1]) for t in results)
    assert numbers == list(range(1, 61))


async def test_openapi_documents_every_api_route_and_its_references_resolve(api: Api):
    import re
    _, doc = await api.request("GET", "/api/v1/openapi.json")
    documented = {re.sub(r"\{(\w+)\}", "{}", path) for path in doc["paths"]}
    for resource in api.client.app.router.resources():
        path = resource.canonical
        if path.startswith("/api/"):
            assert re.sub(r"\{(\w+)(:[^}]*)?\}", "{}", path) in documented, path
    text = str(doc)
    missing = set(re.findall(r"#/components/schemas/(\w+)", text)) - set(doc["components"]["schemas"])
    assert not missing
