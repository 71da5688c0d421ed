"""Payments: acknowledged at once into a durable outbox, claimed in order per account."""

from __future__ import annotations

from dataclasses import replace

import pytest

from counter_server.billing.outbox import Payment, PaymentMode, PaymentStatus
from counter_server.queueing import Priority, Status
from counter_server.store import IdempotencyConflict, IdempotencyKey

from .conftest import Api
from .test_store_contract import make_store, store  # noqa: F401 - the engine-parametrised fixtures


def payment(pid: str, account: str, at: float = 0.0) -> Payment:
    return Payment(id=pid, token_id="t1", substation="S01", counter="S01-C1", account=account,
                   amount_paise=150_00, mode=PaymentMode.CASH, status=PaymentStatus.QUEUED,
                   day="2026-11-25", created_at=at, updated_at=at)


async def test_outbox_claims_the_oldest_payment_of_each_account_only(store):
    for pid, account in (("p1", "A"), ("p2", "A"), ("p3", "B"), ("p4", "C")):
        await store.add_payment(payment(pid, account))
    first = await store.claim_payments("w1", now=10, lease_s=30, limit=10)
    assert [p.id for p in first] == ["p1", "p3", "p4"]           # p2 waits behind p1
    assert await store.claim_payments("w2", now=11, lease_s=30, limit=10) == []   # leased
    await store.settle_payment("p1", PaymentStatus.POSTED, 12, billing_ref="BILL-1")
    await store.settle_payment("p3", PaymentStatus.QUEUED, 12, reason="billing busy", retry_at=20)
    second = await store.claim_payments("w2", now=13, lease_s=30, limit=10)
    assert [p.id for p in second] == ["p2"]                      # p3 waits for its retry, p4 leased
    third = await store.claim_payments("w2", now=42, lease_s=30, limit=10)
    assert [p.id for p in third] == ["p3", "p4"]     # w1's lease on p4 lapsed: taken over; p2 still leased
    assert {p.id: p.attempts for p in third} == {"p3": 1, "p4": 1}   # p4 may have reached billing
    posted = await store.get_payment("p1")
    assert (posted.status, posted.billing_ref, posted.attempts) == (PaymentStatus.POSTED, "BILL-1", 1)
    stats = await store.outbox_stats(now=50)
    assert (stats.queued, stats.posted, stats.failed, stats.oldest_queued_s) == (3, 1, 0, 50)
    kinds = [e["kind"] for e in await store.events()]
    assert kinds.count("payment_queued") == 4 and kinds.count("payment_posted") == 1


async def test_payment_idempotency(store):
    key = IdempotencyKey("k1", "pay-1", "fp")
    first, replayed = await store.add_payment(payment("p1", "A"), key)
    again, replayed_again = await store.add_payment(payment("p9", "A"), key)
    assert not replayed and replayed_again and again == first
    assert await store.get_payment("p9") is None
    with pytest.raises(IdempotencyConflict):
        await store.add_payment(payment("p8", "A"), IdempotencyKey("k1", "pay-1", "other"))


async def test_take_payment_reads_the_committed_token_and_writes_in_one_step(store):
    issued = await store.mutate_queue("S01", "2026-11-25", lambda q: q.issue(
        "t1", "bill_payment", "B", Priority.NORMAL, 1.0, "tester"))
    seen: list = []

    def build(token):
        seen.append(token)
        if token is None or token.status is not Status.WAITING:
            raise LookupError("no such waiting token")
        return payment("p1", "A")

    taken, replayed = await store.take_payment("t1", build)
    assert seen == [issued.token] and taken.id == "p1" and not replayed
    with pytest.raises(LookupError):                              # refused: nothing written
        await store.take_payment("t404", build)
    assert seen[-1] is None
    kinds = [e["kind"] for e in await store.events()]
    assert kinds == ["issued", "payment_queued"]


async def test_payments_survive_a_restart(make_store):  # noqa: F811
    first = make_store()
    await first.open()
    await first.add_payment(payment("p1", "A"))
    await first.close()
    second = make_store()
    await second.open()
    try:
        assert (await second.get_payment("p1")).status is PaymentStatus.QUEUED
        assert [p.id for p in await second.claim_payments("w", 1, 30, 5)] == ["p1"]
    finally:
        await second.close()


async def serving_token(api: Api, counter: str = "S01-C1") -> dict:
    await api.issue(counter[:3])
    token = await api.next(counter)
    status, body = await api.act(token, "start")
    assert status == 200
    return body["token"]


async def test_cashier_records_a_payment_and_gets_a_provisional_receipt(api: Api):
    token = await serving_token(api)
    key = await api.cashier("S01-C1")
    body = {"token_id": token["id"], "account": "2140012345", "amount_paise": 123450, "mode": "upi"}
    status, answer = await api.post("/api/v1/payments", key, idem="pay-7", json=body)
    assert status == 202
    paid = answer["payment"]
    assert (paid["status"], paid["amount_paise"], paid["mode"], paid["counter"]) == (
        "queued", 123450, "upi", "S01-C1")
    assert paid["receipt"].startswith("PROV-S01-")
    assert await api.post("/api/v1/payments", key, idem="pay-7", json=body) == (202, answer)
    status, again = await api.get(f"/api/v1/payments/{paid['id']}", key)
    assert status == 200 and again["payment"]["id"] == paid["id"]
    status, _ = await api.get(f"/api/v1/payments/{paid['id']}", await api.cashier("S01-C2"))
    assert status == 403


@pytest.mark.parametrize("change, status, code, field", [
    ({"amount_paise": 0}, 422, "invalid_field", "amount_paise"),
    ({"amount_paise": -5}, 422, "invalid_field", "amount_paise"),
    ({"amount_paise": 10**15}, 422, "invalid_field", "amount_paise"),
    ({"amount_paise": "100"}, 422, "invalid_field", "amount_paise"),
    ({"amount_paise": True}, 422, "invalid_field", "amount_paise"),
    ({"account": "12"}, 422, "invalid_field", "account"),
    ({"account": "2140' OR 1=1"}, 422, "invalid_field", "account"),
    ({"mode": "barter"}, 422, "invalid_field", "mode"),
    ({"token_id": "t_unknown"}, 404, "token_not_found", None),
])
async def test_bad_payments_are_refused_naming_the_field(api: Api, change, status, code, field):
    token = await serving_token(api)
    body = {"token_id": token["id"], "account": "2140012345", "amount_paise": 5000, **change}
    got, answer = await api.post("/api/v1/payments", await api.cashier("S01-C1"), json=body)
    assert got == status and answer["error"]["code"] == code, answer
    if field:
        assert answer["error"]["field"] == field


async def test_only_the_tokens_counter_takes_its_payment(api: Api):
    token = await serving_token(api)
    body = {"token_id": token["id"], "account": "2140012345", "amount_paise": 5000}
    status, answer = await api.post("/api/v1/payments", await api.cashier("S01-C2"), json=body)
    assert status == 403
    status, answer = await api.post("/api/v1/payments", api.board, json=body)
    assert status == 403
    waiting = await api.issue("S01")
    status, answer = await api.post("/api/v1/payments", json={**body, "token_id": waiting["id"]})
    assert status == 409 and answer["error"]["code"] == "token_not_at_counter"
