"""Holes an outside probe found in who may do what (issue 21, items 2, 6, 8 and 12), each
against a real server: billing credentials kept from cashiers and masked for admins, a revoked
key's sockets closed, one rate-limit bucket per key however 'Bearer' is spelt, WebSockets only
from the server's own pages, CSP naming only the page's own origin (in real Chromium), and the
built-in billing simulator that nobody can crash from outside."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import async_playwright

from counter_server.app import create_app
from counter_server.appkeys import GATEWAY, KEYS
from counter_server.config import Scenario, Settings
from counter_server.pages import SECURITY_HEADERS
from counter_server.redact import redacted
from counter_server.services.keys import LIVE_IDS_MAX_AGE_S, KeyService
from counter_server.store import open_store

from testkit.api import bearer
from testkit.browser import CHROMIUM, CHROMIUM_ARGS
from testkit.live import receive_text_until
from testkit.processes import ServerProcess, run_cli
from testkit.scenarios import paid_service

PASSWORD = "s3cret-Billing-pw"


def first_hall(scenario: Scenario) -> tuple[str, str]:
    """A hall with the paid service, and one of its counters that serves it (from the scenario)."""
    service = paid_service(scenario)
    for sid, sub in scenario.substations.items():
        for counter in sub.counters:
            if service in counter.services:
                return sid, counter.id
    raise AssertionError("no counter serves the paid service")


async def handshake_status(client, path: str, **kw) -> int:
    """The status a WebSocket handshake is refused with, or 101 when it is accepted."""
    try:
        ws = await client.ws_connect(path, **kw)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    await ws.close()
    return 101


async def next_of_type(ws, kind: str, timeout: float = 5.0) -> str:
    """The next text frame of this type, as sent (to search the raw text for secrets)."""
    return await receive_text_until(ws, lambda message: message["type"] == kind, what=f"{kind!r} message",
                                    timeout=timeout)


# -- item 2: billing credentials -------------------------------------------------------------


def test_a_urls_password_is_masked_and_the_rest_kept():
    assert redacted("http://ops:pw@billing.example:8443/api") == "http://ops:***@billing.example:8443/api"
    assert redacted("redis://:pw@[::1]:6379/0") == "redis://:***@[::1]:6379/0"
    assert redacted("http://billing.example/api") == "http://billing.example/api"
    assert redacted("https://token@billing.example") == "https://token@billing.example"


async def test_the_ops_channel_refuses_cashier_keys_and_nobody_sees_the_billing_password(
        aiohttp_client, settings: Settings):
    # A billing server that does not answer: only the URL matters here.
    app = create_app(replace(settings, write_admin_key=False,
                             billing_url=f"http://counters:{PASSWORD}@127.0.0.1:9"))
    client = await aiohttp_client(app)
    admin, _ = await app[KEYS].create("admin")
    board, _ = await app[KEYS].create("board")
    _, counter = first_hall(settings.scenario)
    cashier, _ = await app[KEYS].create("cashier", counter)

    assert await handshake_status(client, "/api/v1/live", headers=bearer(cashier)) == 403
    async with client.get("/api/v1/live", headers={**bearer(cashier), "Upgrade": "websocket",
                                                   "Connection": "Upgrade"}) as resp:
        body = await resp.json()
    assert body["error"]["code"] == "forbidden"

    async with client.get("/api/v1/ops/billing", headers=bearer(admin)) as resp:
        text = await resp.text()
    assert resp.status == 200 and PASSWORD not in text
    assert json.loads(text)["billing"]["billing_url"] == "http://counters:***@127.0.0.1:9"

    for key in (admin, board):                       # ops staff and the read-only wall screen
        async with client.ws_connect("/api/v1/live", headers=bearer(key)) as ws:
            sent = await next_of_type(ws, "billing")  # pushed every second
            assert PASSWORD not in sent and "counters:***@127.0.0.1:9" in sent
    async with client.get("/metrics", headers=bearer(admin)) as resp:
        assert PASSWORD not in await resp.text()


# -- item 6: revoked keys' sockets ----------------------------------------------------------


async def test_a_revoked_key_s_requests_are_refused_within_half_a_second(aiohttp_client, settings: Settings):
    """A key read from the store is trusted for a moment (a peak's requests would otherwise
    read it each), never longer than LIVE_IDS_MAX_AGE_S: a key revoked by another process, as
    ``counter-server keys revoke`` does, is refused soon after, and a new key works at once."""
    app = create_app(replace(settings, write_admin_key=False))
    client = await aiohttp_client(app)
    cashier, record = await app[KEYS].create("cashier", first_hall(settings.scenario)[1])
    async with client.get("/api/v1/me", headers=bearer(cashier)) as resp:
        assert resp.status == 200
    store = await open_store(settings)
    try:
        assert await store.revoke_key(record.id, time.time())
        revoked_at = time.monotonic()
        fresh, _ = await KeyService(store, settings.scenario).create("board")
    finally:
        await store.close()
    async with client.get("/api/v1/me", headers=bearer(fresh)) as resp:
        assert resp.status == 200                    # made by the other process a moment ago
    while True:
        async with client.get("/api/v1/me", headers=bearer(cashier)) as resp:
            if resp.status == 401:
                assert (await resp.json())["error"]["code"] == "invalid_key"
                break
            assert resp.status == 200
        assert time.monotonic() - revoked_at < LIVE_IDS_MAX_AGE_S + 0.5, "the revoked key still works"
        await asyncio.sleep(0.02)
    async with client.get("/api/v1/me", headers=bearer(cashier)) as resp:
        assert resp.status == 401


async def test_revoking_a_key_closes_its_live_sockets_within_a_second(aiohttp_client, settings: Settings):
    app = create_app(replace(settings, write_admin_key=False))
    client = await aiohttp_client(app)
    admin, admin_record = await app[KEYS].create("admin")
    board, board_record = await app[KEYS].create("board")
    kept, _ = await app[KEYS].create("board")

    by_header = await client.ws_connect("/api/v1/live", headers=bearer(board))
    async with client.post("/api/v1/ops/live-ticket", headers=bearer(admin)) as resp:
        ticket = (await resp.json())["ticket"]
    by_ticket = await client.ws_connect(f"/ops/live?ticket={ticket}")   # the ops page's way in
    other = await client.ws_connect("/api/v1/live", headers=bearer(kept))
    for ws in (by_header, by_ticket, other):
        await next_of_type(ws, "snapshot")

    async def read_until_closed(ws) -> tuple[float, int | None]:
        """Keeps reading (so pings are answered); when the socket closed, and with what code."""
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return time.monotonic(), ws.close_code

    readers = {name: asyncio.create_task(read_until_closed(ws))
               for name, ws in (("header", by_header), ("ticket", by_ticket), ("other", other))}
    # As `counter-server keys revoke` does: a write to the store the running server reads
    # (a store of its own on the same file), timed from the write's commit.
    store = await open_store(settings)
    try:
        assert await store.revoke_key(board_record.id, time.time())
        revoked_at = time.monotonic()
        closed_at, code = await asyncio.wait_for(readers["header"], 3.0)
    finally:
        await store.close()
    assert code == 4003 and closed_at - revoked_at < 1.0, (closed_at - revoked_at, code)
    # And through the CLI itself: the ops page's socket (its ticket's admin key) closes too.
    result = await asyncio.to_thread(run_cli, "keys", "revoke", admin_record.id, "--data-dir",
                                     str(settings.data_dir))
    assert result.returncode == 0, result.stderr
    cli_done = time.monotonic()
    closed_at, code = await asyncio.wait_for(readers["ticket"], 3.0)
    assert code == 4003 and closed_at - cli_done < 1.0, (closed_at - cli_done, code)
    await asyncio.sleep(1.2)
    assert not readers["other"].done()               # another key's socket carries on
    await other.close()
    assert await handshake_status(client, "/api/v1/live", headers=bearer(board)) == 401


# -- item 8: one bucket per key ---------------------------------------------------------------


async def test_spelling_bearer_differently_does_not_get_past_the_rate_limit(aiohttp_client, settings: Settings):
    app = create_app(replace(settings, write_admin_key=False, rate_limit_per_s=1, rate_limit_burst=10))
    client = await aiohttp_client(app)
    sid, counter = first_hall(settings.scenario)
    key, _ = await app[KEYS].create("cashier", counter)
    spellings = [f"Bearer {key}", f"bearer {key}", f"BEARER {key}", f"Bearer  {key}"]
    statuses = []
    for i in range(40):                              # 10 of each spelling, alternating
        async with client.get(f"/api/v1/substations/{sid}/queue",
                              headers={"Authorization": spellings[i % 4]}) as resp:
            statuses.append(resp.status)
    assert set(statuses) == {200, 429}
    assert statuses.count(200) <= 12, statuses       # one burst of 10 (and a second's refill)
    # Another key from the same address has a bucket of its own.
    other, _ = await app[KEYS].create("board")
    async with client.get(f"/api/v1/substations/{sid}/queue", headers=bearer(other)) as resp:
        assert resp.status == 200


# -- item 12: Origin, CSP, the simulator's crash switch -----------------------------------------


async def test_websockets_open_only_from_the_servers_own_pages(aiohttp_client, settings: Settings):
    public_url = "https://queue.example.org"
    scenario = replace(settings.scenario, phones=replace(settings.scenario.phones, public_url=public_url))
    app = create_app(replace(settings, scenario=scenario, write_admin_key=False))
    client = await aiohttp_client(app)
    admin, _ = await app[KEYS].create("admin")
    sid, _ = first_hall(scenario)
    own = str(client.make_url("")).rstrip("/")       # http://127.0.0.1:PORT
    hall = f"/api/v1/substations/{sid}/live"

    for origin in ("https://evil.example", "null", f"http://evil.example:{client.port}",
                   "https://queue.example.org.evil.example", "http://queue.example.org"):
        assert await handshake_status(client, hall, origin=origin) == 403, origin
    for origin in (None, own, own.replace("http:", "https:"), public_url):
        assert await handshake_status(client, hall, origin=origin) == 101, origin
    async with client.get(hall, headers={"Origin": "https://evil.example", "Upgrade": "websocket",
                                         "Connection": "Upgrade"}) as resp:
        body = await resp.json()
    assert resp.status == 403 and body["error"]["code"] == "origin_not_allowed"

    # The ops page's ticket: refused from another site, and not used up by the refusal.
    async with client.post("/api/v1/ops/live-ticket", headers=bearer(admin)) as resp:
        ticket = (await resp.json())["ticket"]
    assert await handshake_status(client, f"/ops/live?ticket={ticket}", origin="https://evil.example") == 403
    assert await handshake_status(client, f"/ops/live?ticket={ticket}", origin=own) == 101
    assert await handshake_status(client, "/api/v1/live", headers=bearer(admin),
                                  origin="https://evil.example") == 403


async def test_the_built_in_billing_simulator_cannot_be_crashed_from_outside(aiohttp_client, settings: Settings):
    assert settings.scenario.billing.url is None     # the built-in scenario simulates billing
    app = create_app(replace(settings, write_admin_key=False))
    await aiohttp_client(app)
    sim = app[GATEWAY].billing_url                   # http://127.0.0.1:PORT, in-process
    async with aiohttp.ClientSession() as session:
        for path in ("/admin/crash", "/admin/recover", "/admin/latency"):
            async with session.post(sim + path, json={"extra_latency_ms": 9000}) as resp:
                assert resp.status == 404, path
        async with session.get(f"{sim}/stats") as resp:
            stats = await resp.json()
        assert stats["up"] is True and stats["crashes"] == 0


def test_pages_may_connect_to_their_own_origin_only():
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    connect = next(d for d in csp.split(";") if d.strip().startswith("connect-src")).split()
    assert connect == ["connect-src", "'self'"]


@pytest.fixture
def typed_host_browser_args() -> list[str]:
    # The pages are reached under a host name that is not the server's address (as a hall
    # screen types the name the utility gave it), so 'self' must follow what was typed.
    return [*CHROMIUM_ARGS, "--host-resolver-rules=MAP hall-screens.test 127.0.0.1"]


async def test_board_ops_and_phone_pages_connect_under_their_csp_and_nothing_else_does(
        tmp_path: Path, typed_host_browser_args: list[str], scenario: Scenario):
    server = ServerProcess(data_dir=tmp_path / "data")
    server.start()
    try:
        base = f"http://hall-screens.test:{server.port}"
        sid, _ = first_hall(scenario)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{server.url}/api/v1/public/substations/{sid}/tokens",
                                    json={"account": "KAN-20431877", "phone": "9876543210"}) as resp:
                assert resp.status == 201, await resp.text()
                link = (await resp.json())["token"]["link"]
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=typed_host_browser_args)
            try:
                page = await browser.new_page()          # CSP enforced: no bypass
                refused: list[str] = []
                page.on("console", lambda msg: refused.append(msg.text)
                        if "Content Security Policy" in msg.text else None)
                await page.goto(f"{base}/board/{sid}")
                await page.locator("body[data-state=live]").wait_for(timeout=15_000)

                await page.goto(f"{base}/q/t/{link}")
                await page.locator("body[data-link=live]").wait_for(timeout=15_000)

                await page.goto(f"{base}/ops")
                await page.fill("#key", server.admin_key)
                await page.click("#login button[type=submit]")
                await page.locator("body[data-state=live]").wait_for(timeout=15_000)
                assert refused == []

                # Any other host, by ws: or wss:, is refused by the page's own CSP.
                for target in (f"ws://127.0.0.1:{server.port}/api/v1/substations/{sid}/live",
                               "wss://evil.example/x"):
                    verdict = await page.evaluate("""url => new Promise(done => {
                        document.addEventListener('securitypolicyviolation',
                            e => done('refused ' + e.effectiveDirective), {once: true});
                        try { const ws = new WebSocket(url); ws.onopen = () => done('opened'); }
                        catch (e) { done('refused ' + e.name); }
                        setTimeout(() => done('not refused'), 3000); })""", target)
                    assert verdict.startswith("refused"), (target, verdict)
            finally:
                await browser.close()
    finally:
        server.stop()
