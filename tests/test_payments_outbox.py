"""Payments: acknowledged at once into a durable outbox, claimed in order per account."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from counter_server.app import create_app
from counter_server.appkeys import KEYS, SETTINGS, STORE
from counter_server.outbox import Payment, PaymentMode, PaymentStatus
from counter_server.config import ScenarioCounter, Settings, load_scenario
from counter_server.queueing import Priority, Status
from counter_server.services.payments import PAYMENT_WINDOW_AFTER_DONE_S
from counter_server.store import IdempotencyConflict, IdempotencyKey

from testkit.api import Api, Clock
from testkit.scenarios import busy_hall
from testkit.waiting import wait_until_async
from .test_store_contract import add_payment, logged, make_store, store  # noqa: F401 - the engine-parametrised fixtures


def payment(pid: str, account: str, at: float = 0.0) -> Payment:
    return Payment(id=pid, token_id="t1", substation="S01", counter="S01-C1", account=account,
                   amount_paise=150_00, mode=PaymentMode.CASH, status=PaymentStatus.QUEUED,
                   day="2026-11-25", created_at=at, updated_at=at)


async def test_outbox_claims_the_oldest_payment_of_each_account_only(store):
    for pid, account in (("p1", "A"), ("p2", "A"), ("p3", "B"), ("p4", "C")):
        await add_payment(store, payment(pid, account))
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
    kinds = [e["kind"] for e in await logged(store, "2026-11-25")]
    assert kinds.count("payment_queued") == 4 and kinds.count("payment_posted") == 1


async def test_payment_idempotency(store):
    key = IdempotencyKey("k1", "pay-1", "fp")
    first, replayed = await add_payment(store, payment("p1", "A"), key)
    again, replayed_again = await add_payment(store, payment("p9", "A"), key)
    assert not replayed and replayed_again and again == first
    assert await store.get_payment("p9") is None
    with pytest.raises(IdempotencyConflict):
        await add_payment(store, payment("p8", "A"), IdempotencyKey("k1", "pay-1", "other"))


async def test_take_payment_reads_the_committed_token_and_writes_in_one_step(store):
    issued = await store.mutate_queue("S01", "2026-11-25", lambda q: q.issue(
        "t1", "bill_payment", "B", Priority.NORMAL, 1.0, "tester"))
    seen: list = []

    def build(token, earlier):
        assert earlier == []
        seen.append(token)
        if token is None or token.status is not Status.WAITING:
            raise LookupError("no such waiting token")
        return payment("p1", "A")

    taken, replayed = await store.take_payment("t1", build)
    assert seen == [issued.token] and taken.id == "p1" and not replayed
    with pytest.raises(LookupError):                              # refused: nothing written
        await store.take_payment("t404", build)
    assert seen[-1] is None
    kinds = [e["kind"] for e in await logged(store, "2026-11-25")]
    assert kinds == ["issued", "payment_queued"]


async def test_a_failed_payment_is_resubmitted_in_its_accounts_order_or_refunded(store):  # noqa: F811
    for pid, account in (("p1", "A"), ("p2", "A"), ("p3", "B")):
        await add_payment(store, payment(pid, account))
    assert [p.id for p in await store.claim_payments("w", now=1, lease_s=30, limit=10)] == ["p1", "p3"]
    await store.settle_payment("p1", PaymentStatus.FAILED, 2, reason="billing refused (422): no such account")
    await store.settle_payment("p3", PaymentStatus.FAILED, 2, reason="billing refused (422): no such account")
    assert [p.id for p in await store.failed_payments()] == ["p1", "p3"]
    assert [p.id for p in await store.claim_payments("w", now=3, lease_s=30, limit=10)] == ["p2"]

    def corrected(current: Payment) -> Payment:
        return replace(current, account="A2", status=PaymentStatus.QUEUED, reason=None, updated_at=4)

    again = await store.amend_payment("p1", corrected, "payment_resubmitted", "cashier@S01-C1:k1")
    assert (again.status, again.account, again.ordinal) == (PaymentStatus.QUEUED, "A2", 1)
    # p2 (account A) is still leased to w; p1 now belongs to A2 and is free to go at once.
    assert [p.id for p in await store.claim_payments("w2", now=5, lease_s=30, limit=10)] == ["p1"]
    await store.settle_payment("p1", PaymentStatus.POSTED, 6, billing_ref="BILL-1")

    def refunded(current: Payment) -> Payment:
        return replace(current, status=PaymentStatus.REFUNDED, updated_at=7)

    await store.amend_payment("p3", refunded, "payment_refunded", "admin:k0")
    assert await store.failed_payments() == []
    with pytest.raises(KeyError):
        await store.amend_payment("p404", refunded, "payment_refunded", "admin:k0")

    def refuse(current: Payment) -> Payment:
        raise LookupError("not failed")

    with pytest.raises(LookupError):                     # refused by the caller: nothing written
        await store.amend_payment("p3", refuse, "payment_refunded", "admin:k0")
    assert [(p.id, p.status) for p in [await store.get_payment(i) for i in ("p1", "p2", "p3")]] == [
        ("p1", PaymentStatus.POSTED), ("p2", PaymentStatus.QUEUED), ("p3", PaymentStatus.REFUNDED)]
    events = await logged(store, "2026-11-25")
    assert [(e["kind"], e["actor"]) for e in events if e["kind"] in ("payment_resubmitted", "payment_refunded")] == [
        ("payment_resubmitted", "cashier@S01-C1:k1"), ("payment_refunded", "admin:k0")]
    stats = await store.outbox_stats(now=8)
    assert (stats.queued, stats.posted, stats.failed) == (1, 1, 0)
    # Resubmitted to its own account, it goes before the account's later payment again.
    for pid in ("p4", "p5"):
        await add_payment(store, payment(pid, "C"))
    assert "p4" in [p.id for p in await store.claim_payments("w", now=40, lease_s=30, limit=10)]
    await store.settle_payment("p4", PaymentStatus.FAILED, 41, reason="billing refused (409)")

    def as_it_was(current: Payment) -> Payment:
        return replace(current, status=PaymentStatus.QUEUED, updated_at=42)

    await store.amend_payment("p4", as_it_was, "payment_resubmitted", "admin:k0")
    assert [p.id for p in await store.claim_payments("w", now=43, lease_s=30, limit=10)] == ["p4"]


async def test_payments_survive_a_restart(make_store):  # noqa: F811
    first = make_store()
    await first.open()
    await add_payment(first, payment("p1", "A"))
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


# -- one payment per token, on any scenario -------------------------------------------------------


@pytest.fixture
async def hall_api(aiohttp_client: Any, tmp_path: Path, clock: Clock, scenario_file: Path) -> Api:
    """A real server on each test scenario, with keys per role."""
    scenario = load_scenario(scenario_file)
    settings = Settings(data_dir=tmp_path / "data", scenario=scenario, clock=clock, rate_limit_per_s=0,
                        write_admin_key=False)
    client = await aiohttp_client(create_app(settings))
    admin, _ = await client.app[KEYS].create("admin")
    board, _ = await client.app[KEYS].create("board")
    return Api(client=client, admin=admin, board=board)


def paying_counters(api: Api) -> tuple[str, list[ScenarioCounter]]:
    """The scenario's paid service and the counters of one hall that serves it."""
    scenario = api.client.app[SETTINGS].scenario
    _, service, counters = busy_hall(scenario)
    return service, [scenario.counters[c] for c in counters]


async def served(api: Api, counter: ScenarioCounter, service: str) -> dict:
    """A token of ``service`` issued at ``counter``'s hall, called there and being served."""
    await api.issue(counter.substation, service)
    token = await api.next(counter.id)
    status, body = await api.act(token, "start")
    assert status == 200, body
    return body["token"]


def pay_body(token: dict, account: str = "2140012345", paise: int = 123450, **more: Any) -> dict:
    return {"token_id": token["id"], "account": account, "amount_paise": paise, "mode": "cash", **more}


async def test_a_token_takes_one_payment_and_a_second_names_the_first_receipt(hall_api: Api):
    """The README's payment run twice (a new Idempotency-Key each time, or none) made two
    provisional receipts that billing posted twice; now the second is refused, naming the first."""
    service, (counter, *_) = paying_counters(hall_api)
    key = await hall_api.cashier(counter.id)
    token = await served(hall_api, counter, service)
    status, first = await hall_api.post("/api/v1/payments", key, idem="pay-1", json=pay_body(token))
    assert status == 202, first
    receipt = first["payment"]["receipt"]
    assert first["payment"]["part"] is False
    assert await hall_api.post("/api/v1/payments", key, idem="pay-1", json=pay_body(token)) == (202, first)
    for idem in ("pay-2", None):                                  # a new key, or none at all
        status, again = await hall_api.post("/api/v1/payments", key, idem=idem, json=pay_body(token))
        assert status == 409 and again["error"]["code"] == "already_paid", again
        error = again["error"]
        assert error["receipt"] == receipt and error["payment"] == first["payment"]["id"]
        assert receipt in error["message"] and token["number"] in error["message"]
    status, other = await hall_api.post("/api/v1/payments", key, json=pay_body(token, "2140099999", 500))
    assert status == 409 and other["error"]["code"] == "already_paid"
    stats = await hall_api.client.app[STORE].outbox_stats(now=0)
    assert stats.queued + stats.posted == 1


async def test_a_payment_only_while_serving_or_just_after_finishing_there(hall_api: Api, clock: Clock):
    service, (counter, other, *_) = paying_counters(hall_api)
    key = await hall_api.cashier(counter.id)
    # finished, then paid within the window: taken
    token = await served(hall_api, counter, service)
    status, done = await hall_api.act(token, "complete")
    assert status == 200 and done["token"]["status"] == "done"
    clock.now += PAYMENT_WINDOW_AFTER_DONE_S - 10
    status, body = await hall_api.post("/api/v1/payments", key, json=pay_body(token))
    assert status == 202, body
    # finished longer ago than the window: refused, saying why
    late = await served(hall_api, counter, service)
    await hall_api.act(late, "complete")
    clock.now += PAYMENT_WINDOW_AFTER_DONE_S + 60
    status, body = await hall_api.post("/api/v1/payments", key, json=pay_body(late))
    assert status == 409, body
    error = body["error"]
    assert (error["code"], error["reason"], error["window_s"]) == (
        "token_not_at_counter", "finished_too_long_ago", PAYMENT_WINDOW_AFTER_DONE_S)
    assert late["number"] in error["message"] and "6 minutes ago" in error["message"]
    # waiting, or never served: refused
    waiting = await hall_api.issue(counter.substation, service)
    status, body = await hall_api.post("/api/v1/payments", key, json=pay_body(waiting))
    assert (status, body["error"]["reason"]) == (409, "not_at_counter")
    status, cancelled = await hall_api.post(f"/api/v1/tokens/{waiting['id']}/cancel")
    assert status == 200, cancelled
    status, body = await hall_api.post("/api/v1/payments", key, json=pay_body(waiting))
    assert (status, body["error"]["reason"]) == (409, "not_served")
    # another counter's token: not this cashier's to take
    theirs = await served(hall_api, other, service)
    status, body = await hall_api.post("/api/v1/payments", key, json=pay_body(theirs))
    assert status == 403, body


async def test_part_payments_are_explicit_and_never_mix_with_a_whole_one(hall_api: Api):
    service, (counter, *_) = paying_counters(hall_api)
    key = await hall_api.cashier(counter.id)
    token = await served(hall_api, counter, service)
    receipts = []
    for account in ("2140011111", "2140022222"):                  # two bills for one consumer
        status, body = await hall_api.post("/api/v1/payments", key, json=pay_body(token, account, part=True))
        assert status == 202 and body["payment"]["part"] is True, body
        receipts.append(body["payment"]["receipt"])
    status, body = await hall_api.post("/api/v1/payments", key, json=pay_body(token))
    assert status == 409 and body["error"]["receipts"] == receipts and "part" in body["error"]["message"]
    await hall_api.act(token, "complete")
    second = await served(hall_api, counter, service)
    assert (await hall_api.post("/api/v1/payments", key, json=pay_body(second)))[0] == 202
    status, body = await hall_api.post("/api/v1/payments", key, json=pay_body(second, part=True))
    assert status == 409 and body["error"]["code"] == "already_paid"
    status, body = await hall_api.post("/api/v1/payments", key, json=pay_body(second, part="yes"))
    assert status == 422 and body["error"]["field"] == "part"


async def test_a_payment_billing_refused_for_good_may_be_taken_again(hall_api: Api, clock: Clock):
    service, (counter, *_) = paying_counters(hall_api)
    key = await hall_api.cashier(counter.id)
    token = await served(hall_api, counter, service)
    status, first = await hall_api.post("/api/v1/payments", key, json=pay_body(token, "2140000000"))
    assert status == 202
    await hall_api.client.app[STORE].settle_payment(first["payment"]["id"], PaymentStatus.FAILED, clock.now,
                                                    reason="no such account")
    status, again = await hall_api.post("/api/v1/payments", key, json=pay_body(token, "2140012345"))
    assert status == 202 and again["payment"]["receipt"] != first["payment"]["receipt"], again


async def test_failed_payments_are_a_worklist_resubmitted_corrected_or_refunded(hall_api: Api, clock: Clock):
    """Billing refused two payments for good: the cashier sees them with the reason in words,
    resubmits one with the account corrected (billing then posts it) and refunds the other."""
    service, (counter, other, *_) = paying_counters(hall_api)
    key, other_key = await hall_api.cashier(counter.id), await hall_api.cashier(other.id)
    assert (await hall_api.post("/api/v1/ops/billing/pause"))[0] == 200   # nothing posted meanwhile
    store = hall_api.client.app[STORE]
    taken = []
    for account in ("2140000001", "2140000002"):
        token = await served(hall_api, counter, service)
        status, body = await hall_api.post("/api/v1/payments", key, json=pay_body(token, account))
        assert status == 202, body
        taken.append(body["payment"])
        assert (await hall_api.act(token, "complete"))[0] == 200
        await store.settle_payment(body["payment"]["id"], PaymentStatus.FAILED, clock.now,
                                   reason='billing refused the payment (422): {"error": "invalid account or amount"}')
    status, listed = await hall_api.get("/api/v1/payments?status=failed", key)
    assert status == 200 and [p["id"] for p in listed["payments"]] == [p["id"] for p in taken]
    assert "check the account on the bill" in listed["payments"][0]["reason_text"]
    assert (await hall_api.get("/api/v1/payments?status=failed", other_key))[1]["payments"] == []
    assert (await hall_api.get("/api/v1/payments?status=queued", key))[0] == 400
    first, second = (p["id"] for p in taken)
    status, body = await hall_api.post(f"/api/v1/payments/{first}/resubmit", other_key, json={})
    assert status == 403, body                                   # another counter's cash
    status, body = await hall_api.post(f"/api/v1/payments/{first}/resubmit", key, json={"account": "12"})
    assert status == 422 and body["error"]["field"] == "account"
    status, body = await hall_api.post(f"/api/v1/payments/{first}/resubmit", key, json={"account": "2140012345"})
    assert status == 200 and (body["payment"]["status"], body["payment"]["account"]) == ("queued", "2140012345")
    status, body = await hall_api.post(f"/api/v1/payments/{first}/resubmit", key, json={})
    assert status == 409 and body["error"]["code"] == "payment_not_failed", body
    status, body = await hall_api.post(f"/api/v1/payments/{second}/refund", key)
    assert status == 200 and body["payment"]["status"] == "refunded"
    assert (await hall_api.post("/api/v1/payments/p_nothing/refund", key))[0] == 404
    assert (await hall_api.get("/api/v1/payments?status=failed", key))[1]["payments"] == []
    assert (await hall_api.post("/api/v1/ops/billing/resume"))[0] == 200

    async def posted() -> bool:
        return (await hall_api.get(f"/api/v1/payments/{first}", key))[1]["payment"]["status"] == "posted"

    await wait_until_async(posted, what="the resubmitted payment posted by billing")
    day = taken[0]["created_at"][:10]
    kinds = [(e["kind"], e["actor"]) for e in await store.day_events(day) if e["kind"].startswith("payment_")]
    assert [k for k, a in kinds if k in ("payment_resubmitted", "payment_refunded")
            and a.startswith(f"cashier@{counter.id}:")] == ["payment_resubmitted", "payment_refunded"]


async def test_cash_up_adds_up_over_a_day_with_failures_a_resubmission_and_a_refund(hall_api: Api, clock: Clock):
    service, (counter, other, *_) = paying_counters(hall_api)
    key = await hall_api.cashier(counter.id)
    assert (await hall_api.post("/api/v1/ops/billing/pause"))[0] == 200   # the test settles them itself
    store = hall_api.client.app[STORE]
    ids = []
    for paise, mode in ((10_000, "cash"), (25_050, "cash"), (7_500, "upi"), (120_000, "cheque"), (5_000, "cash")):
        token = await served(hall_api, counter, service)
        status, body = await hall_api.post("/api/v1/payments", key, json={**pay_body(token, paise=paise), "mode": mode})
        assert status == 202, body
        ids.append(body["payment"]["id"])
        assert (await hall_api.act(token, "complete"))[0] == 200
    await store.settle_payment(ids[0], PaymentStatus.POSTED, clock.now, billing_ref="BILL-1")
    for pid in (ids[1], ids[2], ids[4]):
        await store.settle_payment(pid, PaymentStatus.FAILED, clock.now, reason="billing refused the payment (404)")
    assert (await hall_api.post(f"/api/v1/payments/{ids[1]}/resubmit", key, json={"account": "2140099999"}))[0] == 200
    for pid in (ids[2], ids[4]):                                   # one UPI, one cash: handed back
        assert (await hall_api.post(f"/api/v1/payments/{pid}/refund", key))[0] == 200
    status, body = await hall_api.get(f"/api/v1/counters/{counter.id}/cash-up", key)
    assert status == 200, body
    cash = body["cash_up"]
    recorded = [(await hall_api.get(f"/api/v1/payments/{pid}", key))[1]["payment"] for pid in ids]
    assert cash["taken"] == {"count": 5, "paise": sum(p["amount_paise"] for p in recorded)}
    for name, statuses in (("posted", {"posted"}), ("pending", {"queued"}), ("failed", {"failed"}),
                           ("refunded", {"refunded"})):
        mine = [p for p in recorded if p["status"] in statuses]
        assert cash[name] == {"count": len(mine), "paise": sum(p["amount_paise"] for p in mine)}, name
    assert (cash["posted"]["count"], cash["pending"]["count"], cash["refunded"]["count"]) == (1, 2, 2)
    assert sum(cash[n]["paise"] for n in ("posted", "pending", "failed", "refunded")) == cash["taken"]["paise"]
    assert cash["by_mode"] == {"cash": {"count": 3, "paise": 40_050}, "cheque": {"count": 1, "paise": 120_000},
                               "upi": {"count": 1, "paise": 7_500}}
    # Refunds by mode add up to refunded; the drawer holds what was taken in cash and cheques
    # less what went back (a refunded UPI payment never was in it).
    assert cash["refunded_by_mode"] == {"cash": {"count": 1, "paise": 5_000}, "upi": {"count": 1, "paise": 7_500}}
    for figure in ("count", "paise"):
        for name in ("by_mode", "refunded_by_mode"):
            total = "taken" if name == "by_mode" else "refunded"
            assert sum(f[figure] for f in cash[name].values()) == cash[total][figure], (name, figure)
    assert cash["in_drawer"] == {"cash": {"count": 2, "paise": 35_050}, "cheque": {"count": 1, "paise": 120_000}}
    status, report = await hall_api.get(f"/api/v1/reports/daily?date={cash['day']}&format=json")
    row = next(r for r in report["report"]["rows"] if r["counter"] == counter.id)
    assert (row["payments_taken"], row["payments_pending"], row["payments_refunded"]) == (5, 2, 2)
    assert (await hall_api.get(f"/api/v1/counters/{counter.id}/cash-up", await hall_api.cashier(other.id)))[0] == 403
    assert (await hall_api.get("/api/v1/counters/NOPE-9/cash-up"))[0] == 404
    assert (await hall_api.get(f"/api/v1/counters/{counter.id}/cash-up?date=yesterday", key))[0] in (400, 422)
    other_cash = (await hall_api.get(f"/api/v1/counters/{other.id}/cash-up"))[1]["cash_up"]
    assert other_cash["taken"] == {"count": 0, "paise": 0} and other_cash["by_mode"] == {}
    assert other_cash["refunded_by_mode"] == {} and other_cash["in_drawer"] == {"cash": {"count": 0, "paise": 0}}
    status, every = await hall_api.get(f"/api/v1/reports/cash-up?date={cash['day']}")   # the ops page's one call
    assert status == 200 and every["day"] == cash["day"]
    assert [c["counter"] for c in every["counters"]] == list(hall_api.client.app[SETTINGS].scenario.counters)
    assert next(c for c in every["counters"] if c["counter"] == counter.id) == cash
    assert (await hall_api.get("/api/v1/reports/cash-up", key))[0] == 403            # a cashier sees its own only
