"""/metrics in Prometheus text format, per-app registries, request ids and structured logs."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import replace
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from counter_server.app import create_app
from counter_server.appkeys import KEYS, METRICS
from counter_server.config import Settings
from counter_server.ops.logs import REQUEST_ID, configure_logging

from testkit.api import Api, bearer
from testkit.processes import ServerProcess


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a scrape."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scrape: dict, name: str, **labels: str) -> float | None:
    return scrape.get((name, tuple(sorted(labels.items()))))


async def scrape(api: Api, key: str | None = None) -> dict:
    async with api.client.get("/metrics", headers=bearer(key or api.admin)) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return samples(await resp.text())


async def test_metrics_show_tokens_waits_requests_refusals_billing_and_connections(api: Api):
    for _ in range(3):
        await api.issue("S01")
    called = await api.next("S01-C1")
    await api.act(called, "start")
    await api.act(called, "complete")
    status, _ = await api.request("PUT", "/api/v1/ops/substations/S01/admission", api.admin,
                                  json={"admission": True, "daily_cap": 3})
    assert status == 200
    for _ in range(2):
        status, _ = await api.post("/api/v1/substations/S01/tokens", json={"service": "bill_payment"})
        assert status == 409
    async with api.client.ws_connect("/api/v1/live", headers=bearer(api.board)) as ws:
        assert (await ws.receive_json())["type"] == "snapshot"
        got = await scrape(api, api.board)
        assert value(got, "counter_server_live_connections") == 1

    assert value(got, "counter_server_tokens", substation="S01", status="waiting") == 2
    assert value(got, "counter_server_tokens", substation="S01", status="done") == 1
    assert value(got, "counter_server_tokens", substation="S02", status="waiting") == 0
    assert value(got, "counter_server_waiting", substation="S01", service="bill_payment") == 2
    p50 = value(got, "counter_server_wait_estimate_seconds", substation="S01", service="bill_payment",
                quantile="0.5")
    p90 = value(got, "counter_server_wait_estimate_seconds", substation="S01", service="bill_payment",
                quantile="0.9")
    assert (p50, p90) == (0.0, 0.0)          # 2 waiting, 4 free counters: a new token is called at once
    assert value(got, "counter_server_issued_today", substation="S01") == 3
    assert value(got, "counter_server_daily_cap", substation="S01") == 3
    assert value(got, "counter_server_admission_refusals_total", substation="S01", reason="daily_cap") == 2
    route = "/api/v1/substations/{sid}/tokens"
    assert value(got, "counter_server_http_requests_total", route=route, method="POST", status="201") == 3
    assert value(got, "counter_server_http_requests_total", route=route, method="POST", status="409") == 2
    assert value(got, "counter_server_http_request_duration_seconds_count", route=route, method="POST") == 5
    assert value(got, "counter_server_http_request_duration_seconds_bucket", route=route, method="POST",
                 le="+Inf") == 5
    assert value(got, "counter_server_billing_limit") >= 1
    assert value(got, "counter_server_billing_breaker_state", state="closed") == 1
    assert value(got, "counter_server_outbox_payments", status="queued") == 0
    assert value(got, "counter_server_billing_shed_total", priority="payment") == 0
    assert value(got, "counter_server_rate_limited_total", bucket="key") == 0
    assert value(got, "counter_server_store_commits_total") >= 7      # 3 issued, called, started, ...
    assert value(got, "counter_server_store_conflicts_total") == 0     # one SQLite writer
    # a WebSocket's hour-long life is not a request latency
    assert value(got, "counter_server_http_request_duration_seconds_count", route="/api/v1/live",
                 method="GET") is None


async def test_metrics_need_an_admin_or_board_key(api: Api):
    async with api.client.get("/metrics") as resp:
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "missing_key"
    async with api.client.get("/metrics", headers=bearer("nonsense")) as resp:
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "invalid_key"
    async with api.client.get("/metrics", headers=bearer(await api.cashier("S01-C1"))) as resp:
        assert resp.status == 403


async def test_each_app_has_its_own_registry(aiohttp_client, settings: Settings, tmp_path: Path):
    one = await aiohttp_client(create_app(replace(settings, write_admin_key=False)))
    other = await aiohttp_client(create_app(replace(settings, data_dir=tmp_path / "other",
                                                    write_admin_key=False)))
    assert one.app[METRICS].registry is not other.app[METRICS].registry
    key, _ = await one.app[KEYS].create("admin")
    for _ in range(4):
        async with one.get("/api/v1/substations", headers=bearer(key)) as resp:
            assert resp.status == 200
    other_key, _ = await other.app[KEYS].create("admin")
    async with other.get("/metrics", headers=bearer(other_key)) as resp:
        got = samples(await resp.text())
    assert value(got, "counter_server_http_requests_total", route="/api/v1/substations", method="GET",
                 status="200") is None
    async with one.get("/metrics", headers=bearer(key)) as resp:
        got = samples(await resp.text())
    assert value(got, "counter_server_http_requests_total", route="/api/v1/substations", method="GET",
                 status="200") == 4


async def test_rate_limit_refusals_are_counted(aiohttp_client, settings: Settings):
    client = await aiohttp_client(create_app(replace(settings, write_admin_key=False,
                                                     rate_limit_per_s=1, rate_limit_burst=3)))
    key, _ = await client.app[KEYS].create("admin")
    statuses = []
    for _ in range(6):
        async with client.get("/api/v1/me", headers=bearer(key)) as resp:
            statuses.append(resp.status)
    assert statuses.count(429) >= 2
    settings.clock.now += 1.1   # the limit refills on the settings' clock: no wall-clock wait
    async with client.get("/metrics", headers=bearer(key)) as resp:
        got = samples(await resp.text())
    assert value(got, "counter_server_rate_limited_total", bucket="key") == statuses.count(429)
    assert value(got, "counter_server_http_requests_total", route="/api/v1/me", method="GET",
                 status="429") == statuses.count(429)


async def test_request_id_is_echoed_or_made(api: Api):
    async with api.client.get("/healthz", headers={"X-Request-Id": "kiosk-42-0007"}) as resp:
        assert resp.headers["X-Request-Id"] == "kiosk-42-0007"
    async with api.client.get("/healthz", headers={"X-Request-Id": "x" * 500}) as resp:
        made = resp.headers["X-Request-Id"]
        assert len(made) == 16 and made != "x" * 500
    async with api.client.get("/nowhere") as resp:              # errors carry one too
        assert resp.status == 404 and len(resp.headers["X-Request-Id"]) == 16
        assert resp.headers["X-Request-Id"] != made              # each request its own


def test_log_formats_carry_the_request_id_and_extras():
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    try:
        reset = REQUEST_ID.set("r-1")
        logging.getLogger("counter_server.requests").info("B-001 called", extra={"counter": "S01-C1",
                                                                                 "token": "B-001"})
        REQUEST_ID.reset(reset)
        line = json.loads(stream.getvalue().splitlines()[-1])
        assert (line["request_id"], line["counter"], line["token"], line["msg"], line["level"]) == \
            ("r-1", "S01-C1", "B-001", "B-001 called", "info")
        text = io.StringIO()
        configure_logging("text", stream=text)
        logging.getLogger("x").warning("hello", extra={"counter": "S02-C3"})
        assert text.getvalue().rstrip().endswith("x: hello  counter=S02-C3")
        assert " WARN" in text.getvalue()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_server_logs_one_json_line_per_change(server_process: ServerProcess):
    server_process.extra_args = [*server_process.extra_args, "--log-format", "json"]
    server_process.start()
    import urllib.request

    def post(path: str, body: bytes = b"", rid: str | None = None) -> dict:
        headers = {**bearer(server_process.admin_key), "Content-Type": "application/json"}
        if rid:
            headers["X-Request-Id"] = rid
        req = urllib.request.Request(server_process.url + path, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    issued = post("/api/v1/substations/S03/tokens", b'{"service": "bill_payment"}', rid="slip-1")
    called = post("/api/v1/counters/S03-C1/next", rid="call-1")["token"]
    post(f"/api/v1/tokens/{called['id']}/start")
    post("/api/v1/payments", json.dumps({"token_id": called["id"], "account": "2140012345",
                                         "amount_paise": 50_000, "mode": "cash"}).encode(), rid="pay-1")
    lines = [json.loads(line) for line in server_process.log_once("pay-1").splitlines() if line.startswith("{")]
    by_id = {line.get("request_id"): line for line in lines if line.get("request_id")}
    issue_line = by_id["slip-1"]
    assert (issue_line["token"], issue_line["token_id"], issue_line["token_status"], issue_line["status"]) == \
        (issued["token"]["number"], issued["token"]["id"], "waiting", 201)
    assert issue_line["substation"] == "S03" and issue_line["route"] == "/api/v1/substations/{sid}/tokens"
    call_line = by_id["call-1"]
    assert (call_line["counter"], call_line["token"], call_line["token_status"]) == \
        ("S03-C1", called["number"], "called")
    pay_line = by_id["pay-1"]
    assert (pay_line["counter"], pay_line["token_id"], pay_line["payment_status"], pay_line["amount_paise"]) == \
        ("S03-C1", called["id"], "queued", 50_000)
