"""docs/billing-contract.md, line by line: billing-sim answers as written, the HTTP JSON adapter
reads each answer as written, and a second adapter (another wire, served by a small real aiohttp
app on loopback) named in a scenario carries payments through the gateway unchanged."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from counter_server.app import create_app
from counter_server.appkeys import KEYS, SETTINGS
from counter_server.billing.contract import (BillingAdapter, BillNotFound, Overloaded, PaymentRefused,
                                             PaymentRequest)
from counter_server.billing.http_json import HttpJsonAdapter
from counter_server.billing.simulator import SIM, create_sim_app
from counter_server.config import Scenario, Settings, load_scenario
from counter_server.scenario.billing import SimSettings
from testkit.api import Api
from testkit.form_billing import BUSY_RETRY_AFTER_S, FORM_STATE, FormBillingAdapter, create_form_billing_app
from testkit.processes import run_cli
from testkit.scenarios import OPEN_ALL_DAY, paid_service
from testkit.waiting import wait_until_async

FAST = SimSettings(capacity=50, knee=50, base_latency_ms=1, overload_s=60, recovery_s=30)
ACCOUNT = "2140012345"   # one the simulated utility knows


@pytest.fixture
async def sim(aiohttp_client: Any):
    return await aiohttp_client(create_sim_app(FAST, admin_routes=True))


def _payment(**change: Any) -> dict[str, Any]:
    return {"payment_id": "p_contract1", "account": ACCOUNT, "amount_paise": 123450, "mode": "upi", **change}


async def _post(sim, body: Any, key: str | None = "same", **kw: Any) -> tuple[int, Any]:
    headers = {"Idempotency-Key": body["payment_id"] if key == "same" else key} if key else {}
    async with sim.post("/payments", json=body, headers=headers, **kw) as resp:
        return resp.status, await resp.json()


# -- billing-sim answers as the contract says ------------------------------------------------

async def test_a_payment_is_booked_once_on_its_idempotency_key(sim):
    status, first = await _post(sim, _payment())
    assert status == 201
    assert first == {**_payment(), "billing_ref": first["billing_ref"]}
    status, again = await _post(sim, _payment())
    assert (status, again) == (200, {**first, "duplicate": True})
    status, other = await _post(sim, _payment(amount_paise=5))
    assert status == 409 and "different payment" in other["error"]
    assert sim.app[SIM].duplicate_payments == 1 and len(sim.app[SIM].payments) == 1
    status, _ = await _post(sim, _payment(payment_id="p_nokey"), key=None)   # the header is optional
    assert status == 201


@pytest.mark.parametrize("body, key, words", [
    (_payment(), "p_other", "Idempotency-Key differs"),
    (_payment(payment_id=""), None, "payment_id is required"),
    (_payment(payment_id="p 1"), None, "payment_id is required"),
    (_payment(account="12"), "same", "account is required"),
    (_payment(amount_paise=0), "same", "amount_paise"),
    (_payment(amount_paise=12.5), "same", "amount_paise"),
    (_payment(amount_paise="100"), "same", "amount_paise"),
    (_payment(amount_paise=True), "same", "amount_paise"),
    (_payment(mode="barter"), "same", "mode must be one of"),
])
async def test_a_malformed_payment_is_refused_422_in_words(sim, body, key, words):
    status, answer = await _post(sim, body, key=key)
    assert status == 422 and words in answer["error"], answer
    assert not sim.app[SIM].payments


async def test_a_body_that_is_not_json_is_refused_400(sim):
    async with sim.post("/payments", data=b"txn=1") as resp:
        assert resp.status == 400 and "not JSON" in (await resp.json())["error"]


async def test_status_after_a_crash_and_bills(sim):
    async with sim.get("/payments/p_contract1") as resp:
        assert resp.status == 404 and (await resp.json())["error"] == "no such payment"
    _, first = await _post(sim, _payment())
    async with sim.get("/payments/p_contract1") as resp:
        assert resp.status == 200 and await resp.json() == first
    async with sim.get(f"/bills/{ACCOUNT}") as resp:
        bill = await resp.json()
        assert resp.status == 200 and bill["account"] == ACCOUNT and isinstance(bill["amount_paise"], int)
    async with sim.get("/bills/NA-0000") as resp:
        assert resp.status == 404


async def test_overloaded_is_503_with_retry_after_on_every_call(sim):
    await sim.post("/admin/crash")
    for method, path in (("POST", "/payments"), ("GET", "/payments/p_contract1"), ("GET", f"/bills/{ACCOUNT}")):
        async with sim.request(method, path, json=_payment()) as resp:
            assert resp.status == 503, path
            assert 1 <= int(resp.headers["Retry-After"]) <= FAST.recovery_s
    assert not sim.app[SIM].payments


# -- the default adapter reads each answer as the contract says --------------------------------

async def test_http_json_adapter_maps_every_answer(sim):
    adapter = HttpJsonAdapter(str(sim.make_url("")), timeout_s=2)
    assert isinstance(adapter, BillingAdapter)
    await adapter.start()
    try:
        request = PaymentRequest("p_adapter", ACCOUNT, 5000, "cash")
        assert await adapter.payment_status("p_adapter") is None
        ref = await adapter.post_payment(request)
        assert await adapter.post_payment(request) == ref == await adapter.payment_status("p_adapter")
        with pytest.raises(PaymentRefused, match=r"\(409\): payment_id p_adapter was posted before"):
            await adapter.post_payment(replace(request, amount_paise=1))
        assert (await adapter.lookup_bill(ACCOUNT))["account"] == ACCOUNT
        with pytest.raises(BillNotFound):
            await adapter.lookup_bill("NA-0000")
        await sim.post("/admin/crash")
        for call in (adapter.post_payment(replace(request, payment_id="p_later")),
                     adapter.payment_status("p_adapter"), adapter.lookup_bill(ACCOUNT)):
            with pytest.raises(Overloaded) as overloaded:
                await call
            assert overloaded.value.retry_after_s is not None and overloaded.value.retry_after_s >= 1
    finally:
        await adapter.close()


# -- a second adapter, named in the scenario ---------------------------------------------------

ADAPTER = "testkit.form_billing:FormBillingAdapter"


def _scenario_file(tmp_path: Path, billing: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(OPEN_ALL_DAY.read_text() + f"\n[billing]\n{billing}\n")
    return path


@pytest.fixture
async def form_billing(aiohttp_server: Any):
    return await aiohttp_server(create_form_billing_app())


@pytest.fixture
async def form_api(aiohttp_client: Any, tmp_path: Path, form_billing) -> Api:
    scenario = load_scenario(_scenario_file(
        tmp_path, f'url = "{form_billing.make_url("")}"\nadapter = "{ADAPTER}"'))
    settings = Settings(data_dir=tmp_path / "data", scenario=scenario, rate_limit_per_s=0,
                        write_admin_key=False)
    client = await aiohttp_client(create_app(settings))
    admin, _ = await client.app[KEYS].create("admin")
    return Api(client=client, admin=admin)


def _paying_counter(scenario: Scenario) -> tuple[str, str, str]:
    service = paid_service(scenario)
    hall = next(s for s in scenario.substations.values() if service in s.services)
    counter = next(c for c in hall.counters if service in c.services)
    return hall.id, service, counter.id


async def _pay(api: Api, account: str) -> dict:
    scenario = api.client.app[SETTINGS].scenario
    hall, service, counter = _paying_counter(scenario)
    await api.issue(hall, service)
    token = await api.next(counter)
    status, _ = await api.act(token, "start")
    assert status == 200
    status, body = await api.post("/api/v1/payments", await api.cashier(counter), json={
        "token_id": token["id"], "account": account, "amount_paise": 123450, "mode": "upi"})
    assert status == 202, body
    status, _ = await api.act(token, "complete")   # the counter is free for the next payment
    assert status == 200
    return body["payment"]


async def _settled(api: Api, payment: dict) -> dict:
    async def status() -> dict:
        _, body = await api.get(f"/api/v1/payments/{payment['id']}")
        return body["payment"]

    return await wait_until_async(status, done=lambda p: p["status"] != "queued",
                                  what=f"payment {payment['id']} settled", timeout=10)


async def test_payments_post_through_a_second_adapter(form_api: Api, form_billing):
    state = form_billing.app[FORM_STATE]
    paid = await _settled(form_api, await _pay(form_api, ACCOUNT))
    assert (paid["status"], paid["billing_ref"]) == ("posted", "FB00001")
    assert state.requests[-1] == ("pay", {"txn": paid["id"], "acct": ACCOUNT, "paise": "123450", "mode": "upi"})
    assert list(state.booked) == [paid["id"]]

    refused = await _settled(form_api, await _pay(form_api, "NA-12345"))
    assert refused["status"] == "failed"
    assert refused["reason"] == "form billing refused the payment: account closed"

    status, bill = await form_api.get(f"/api/v1/bills/{ACCOUNT}")
    assert status == 200, bill
    assert ("bill", {"acct": ACCOUNT}) in state.requests


async def test_second_adapter_retries_when_busy_and_asks_before_posting_again(form_api: Api, form_billing):
    state = form_billing.app[FORM_STATE]
    state.busy = True
    payment = await _pay(form_api, ACCOUNT)
    await wait_until_async(lambda: any(kind == "pay" for kind, _ in state.requests),
                           what="a post to the busy billing server", timeout=10)
    state.busy = False
    paid = await _settled(form_api, payment)
    assert paid["status"] == "posted" and paid["attempts"] >= 2, paid
    mine = [(kind, at) for (kind, form), at in zip(state.requests, state.request_times)
            if form.get("txn", form.get("id")) == paid["id"]]
    kinds = [kind for kind, _ in mine]
    assert kinds[0] == "pay" and kinds[1] == "txn", kinds      # asked its status before posting again
    assert len(state.booked) == 1
    # billing's Retry-After, not the gateway's shorter first backoff, set when it tried again
    assert mine[1][1] - mine[0][1] >= BUSY_RETRY_AFTER_S * 0.95 > form_api.client.app[SETTINGS].scenario.billing.gateway.retry_base_s * 2


# -- naming an adapter: refused early, naming it -----------------------------------------------

@pytest.mark.parametrize("adapter, words", [
    ("testkit.form_billing:Nope", "module 'testkit.form_billing' has no class 'Nope'"),
    ("testkit.nowhere:Adapter", "module 'testkit.nowhere' cannot be imported"),
    ("testkit.form_billing:NotAnAdapter", "lacks the async method(s) close, lookup_bill, post_payment, "
                                          "payment_status"),
    ("FormBillingAdapter", "is not of the form package.module:Class"),
])
def test_check_config_and_serve_refuse_a_bad_adapter_naming_it(tmp_path: Path, adapter: str, words: str):
    path = _scenario_file(tmp_path, f'url = "http://127.0.0.1:9"\nadapter = "{adapter}"')
    checked = run_cli("check-config", str(path), check=False)
    assert checked.returncode == 2 and "billing.adapter: " in checked.stderr and words in checked.stderr, \
        checked.stderr
    data = tmp_path / "data"
    served = run_cli("serve", "--config", str(path), "--data-dir", str(data), "--port", "0", check=False)
    assert served.returncode == 2 and words in served.stderr, served.stderr
    assert not data.exists()


def test_an_adapter_needs_a_url_and_check_config_names_the_one_used(tmp_path: Path):
    refused = run_cli("check-config", str(_scenario_file(tmp_path, f'adapter = "{ADAPTER}"')), check=False)
    assert refused.returncode == 2 and f"{ADAPTER} needs [billing] url" in refused.stderr, refused.stderr
    fine = run_cli("check-config", str(_scenario_file(tmp_path, f'url = "http://127.0.0.1:9"\nadapter = "{ADAPTER}"')))
    assert f"billing: http://127.0.0.1:9 through {ADAPTER}" in fine.stdout
    default = run_cli("check-config", str(OPEN_ALL_DAY))
    assert "through the HTTP JSON contract" in default.stdout


def test_the_form_adapter_is_a_billing_adapter():
    assert isinstance(FormBillingAdapter("http://127.0.0.1:9", 1.0), BillingAdapter)
