"""Numbers leased to a counter for offline issuing, and their reconciliation."""

from __future__ import annotations

from datetime import datetime, timezone

from testkit.api import Api, Clock


def at(clock: Clock, seconds_ago: float) -> str:
    return datetime.fromtimestamp(clock.now - seconds_ago, timezone.utc).isoformat()


async def test_leased_numbers_are_skipped_by_others_and_reconciled_in_place(api: Api, clock: Clock):
    key = await api.cashier("S01-C1")
    first = await api.issue("S01")                                   # B-001
    status, body = await api.post("/api/v1/counters/S01-C1/leases", key, idem="lease-1",
                                  json={"service": "bill_payment", "size": 3})
    assert status == 201
    lease = body["lease"]
    assert lease["numbers"] == ["B-002", "B-003", "B-004"] and lease["counter"] == "S01-C1"
    assert await api.post("/api/v1/counters/S01-C1/leases", key, idem="lease-1",
                          json={"service": "bill_payment", "size": 3}) == (201, body)   # a retry
    clock.now += 300
    assert (await api.issue("S01"))["number"] == "B-005"             # others skip the lease

    clock.now += 300
    offline = {"lease_id": lease["id"], "number": "B-003", "priority": "normal",
               "issued_at": at(clock, 590)}                           # issued 10 s after B-001
    status, body = await api.post("/api/v1/counters/S01-C1/offline-tokens", key, idem="off-1",
                                  json=offline)
    assert status == 201 and body["token"]["number"] == "B-003" and body["token"]["status"] == "waiting"
    again = await api.post("/api/v1/counters/S01-C1/offline-tokens", key, idem="off-1", json=offline)
    assert again == (201, body)
    _, queue = await api.get("/api/v1/substations/S01/queue")
    assert [t["number"] for t in queue["tokens"]] == ["B-001", "B-003", "B-005"]   # by issue time
    assert first["number"] == "B-001"


async def test_offline_tokens_that_do_not_fit_the_lease_are_refused(api: Api, clock: Clock):
    key = await api.cashier("S01-C1")
    _, body = await api.post("/api/v1/counters/S01-C1/leases", key, json={"service": "bill_payment", "size": 2})
    lease = body["lease"]
    base = {"lease_id": lease["id"], "priority": "normal", "issued_at": at(clock, 5)}
    cases = [
        ("S01-C1", key, {**base, "number": "B-009"}, 409, "lease_refused"),
        ("S01-C2", await api.cashier("S01-C2"), {**base, "number": "B-001"}, 409, "lease_refused"),
        ("S01-C1", key, {**base, "number": "B-001", "issued_at": at(clock, -600)}, 409, "lease_refused"),
        ("S01-C1", key, {**base, "number": "B-001", "issued_at": "yesterday"}, 422, "invalid_field"),
        ("S01-C1", key, {**base, "number": "B-001", "issued_at": at(clock, 86_400)}, 422, "invalid_field"),
        ("S01-C2", key, {**base, "number": "B-001"}, 403, "forbidden"),
    ]
    for counter, who, body, status, code in cases:
        got, answer = await api.post(f"/api/v1/counters/{counter}/offline-tokens", who, json=body)
        assert (got, answer["error"]["code"]) == (status, code), (body, answer)
    status, _ = await api.post("/api/v1/counters/S01-C1/offline-tokens", key, json={**base, "number": "B-001"})
    assert status == 201
    status, answer = await api.post("/api/v1/counters/S01-C1/offline-tokens", key, json={**base, "number": "B-001"})
    assert status == 409 and "already in use" in answer["error"]["message"]
    status, answer = await api.post("/api/v1/counters/S01-C1/leases", key, json={"service": "complaint"})
    assert status == 422 and answer["error"]["field"] == "service"


async def test_me_tells_a_kiosk_its_counter(api: Api):
    status, body = await api.get("/api/v1/me", await api.cashier("S03-C2"))
    assert status == 200 and body["role"] == "cashier" and body["counter"] == "S03-C2"
    assert body["substation"] == "S03"


async def test_a_kiosk_clock_running_a_little_fast_is_clamped_to_now(api: Api, clock: Clock):
    key = await api.cashier("S01-C1")
    _, body = await api.post("/api/v1/counters/S01-C1/leases", key, json={"service": "bill_payment", "size": 1})
    status, answer = await api.post("/api/v1/counters/S01-C1/offline-tokens", key, json={
        "lease_id": body["lease"]["id"], "number": "B-001", "issued_at": at(clock, -30)})
    assert status == 201
    issued = datetime.fromisoformat(answer["token"]["issued_at"]).timestamp()
    assert issued == int(clock.now)
