"""The ops page in real Chromium (Debian's, driven by Playwright) against a server process:
sign in, watch every counter live, and drive the controls, with a hall board open beside it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

from .conftest import ServerProcess, bearer, run_cli
from .test_board_browser import browser  # noqa: F401 - the Chromium fixture

SIGN_IN_S = 15_000


def ops_counter(counter: str) -> str:
    return f'#halls [data-counter="{counter}"]'


async def sign_in(page, server: ServerProcess, key: str | None = None) -> None:
    await page.goto(f"{server.url}/ops")
    await page.fill("#key", key or server.admin_key)
    await page.click("#login button[type=submit]")


async def test_ops_page_drives_counters_admission_cap_and_outbox(server_process: ServerProcess, browser,  # noqa: F811
                                                                 tmp_path: Path):
    server_process.start()
    url = server_process.url
    # Playwright's wait_for_function evaluates strings, which the page's CSP forbids (as it
    # should); the test bypasses CSP for itself (the header is checked below).
    ops = await browser.new_page(viewport={"width": 1920, "height": 1080}, bypass_csp=True)
    errors: list[str] = []
    ops.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in(ops, server_process)
    await ops.wait_for_function("document.body.dataset.state === 'live'", timeout=SIGN_IN_S)
    assert "key" not in ops.url and server_process.admin_key not in ops.url
    assert await ops.evaluate("sessionStorage.getItem('ops-key')") == server_process.admin_key
    assert await ops.locator("#halls .hall").count() == 10
    assert await ops.locator("#halls .counter").count() == 40
    await ops.wait_for_function("document.getElementById('b-limit').textContent !== '–'", timeout=5_000)

    board = await browser.new_page(viewport={"width": 1920, "height": 1080}, bypass_csp=True)
    await board.goto(f"{url}/board/S01")
    await board.wait_for_function("document.body.dataset.state === 'live'", timeout=10_000)

    async with aiohttp.ClientSession(headers=bearer(server_process.admin_key)) as session:
        for _ in range(3):
            async with session.post(f"{url}/api/v1/substations/S01/tokens", json={"service": "bill_payment"}) as r:
                assert r.status == 201
        async with session.post(f"{url}/api/v1/counters/S01-C2/next") as r:
            token = (await r.json())["token"]
        async with session.post(f"{url}/api/v1/tokens/{token['id']}/start") as r:
            assert r.status == 200
        async with session.post(f"{url}/api/v1/tokens/{token['id']}/complete") as r:
            assert r.status == 200
        async with session.post(f"{url}/api/v1/counters/S01-C3/next") as r:
            called = (await r.json())["token"]["number"]

        # live: waiting, the token at a counter, served today, all from the ops channel
        s01 = '#halls [data-substation="S01"]'
        await ops.wait_for_function(
            f"document.querySelector('{s01} .waiting').textContent === '1'", timeout=3_000)
        assert await ops.text_content(f"{ops_counter('S01-C3')} .number") == called
        await ops.wait_for_function(
            f"document.querySelector('{ops_counter('S01-C2')} .served').textContent === '1 served'",
            timeout=3_000)

        # close a counter from the ops page: the ops view and the hall board both show it
        await ops.click(f"{ops_counter('S01-C1')} button[data-action=close]")
        await ops.wait_for_selector(f"{ops_counter('S01-C1')}[data-open=false]", timeout=3_000)
        await board.wait_for_selector('[data-counter="S01-C1"].closed', timeout=3_000)
        assert await ops.text_content("#kpi-open") == "39/40"
        await ops.screenshot(path=str(tmp_path / "ops-counter-closed.png"))
        await ops.click(f"{ops_counter('S01-C1')} button[data-action=open]")
        await ops.wait_for_selector(f"{ops_counter('S01-C1')}[data-open=true]", timeout=3_000)
        await board.wait_for_selector('[data-counter="S01-C1"]:not(.closed)', timeout=3_000)

        # a counter holding a token cannot be closed: the page says why
        await ops.click(f"{ops_counter('S01-C3')} button[data-action=close]")
        # (the "S01-C1 opened" toast may still be up: wait for the refusal's own words)
        await ops.wait_for_function(
            f"document.getElementById('toast').textContent.includes('{called}')", timeout=3_000)
        assert await ops.get_attribute(ops_counter("S01-C3"), "data-open") == "true"

        # switch admission off at S01: the card turns, and the server has it
        await ops.click(f"{s01} button[data-action=admission]")
        await ops.wait_for_selector(f"{s01}[data-admission=off]", timeout=3_000)
        async with session.get(f"{url}/api/v1/ops/substations/S01/admission") as r:
            assert (await r.json())["admission"] is False
        await ops.click(f"{s01} button[data-action=admission]")
        await ops.wait_for_selector(f"{s01}[data-admission=on]", timeout=3_000)

        # a daily cap of 4 at S01 (3 issued): one more token, then the door refuses
        await ops.fill(f'{s01} input[data-cap-for="S01"]', "4")
        await ops.click(f"{s01} button[data-action=cap]")
        await ops.wait_for_function(
            f"document.querySelector('{s01} .hall-meta b').textContent === '3/4'", timeout=3_000)
        statuses = []
        for _ in range(2):
            async with session.post(f"{url}/api/v1/substations/S01/tokens", json={"service": "bill_payment"}) as r:
                statuses.append(r.status)
        assert statuses == [201, 409]

        # pause and resume the payment outbox
        await ops.click("#outbox-toggle")
        await ops.wait_for_selector("#billing[data-paused=true]", timeout=3_000)
        async with session.get(f"{url}/api/v1/ops/billing") as r:
            assert (await r.json())["billing"]["paused"] is True
        await ops.click("#outbox-toggle")
        await ops.wait_for_selector("#billing[data-paused=false]", timeout=3_000)

    # the key survives a reload of the tab, and signing out forgets it
    await ops.reload()
    await ops.wait_for_function("document.body.dataset.state === 'live'", timeout=SIGN_IN_S)
    await ops.click("#sign-out")
    assert await ops.evaluate("sessionStorage.getItem('ops-key')") is None
    assert await ops.is_visible("#login")
    assert errors == []


async def test_ops_page_refuses_a_wrong_or_non_admin_key(server_process: ServerProcess, browser):  # noqa: F811
    server_process.start()
    page = await browser.new_page(bypass_csp=True)
    await sign_in(page, server_process, key="not-a-key")
    await page.wait_for_selector("#login-error:not([hidden])", timeout=5_000)
    assert "refused" in await page.text_content("#login-error")
    assert await page.evaluate("sessionStorage.getItem('ops-key')") is None
    board_key = run_cli("keys", "create", "--data-dir", str(server_process.data_dir), "--role", "board").stdout.strip()
    await sign_in(page, server_process, key=board_key)
    await page.wait_for_selector("#login-error:not([hidden])", timeout=5_000)
    assert "needs an admin key" in await page.text_content("#login-error")
    assert not await page.is_visible("#app")

    async with aiohttp.ClientSession(headers=bearer(server_process.admin_key)) as session:
        async with session.get(f"{server_process.url}/ops") as resp:
            assert resp.status == 200 and "default-src 'self'" in resp.headers["Content-Security-Policy"]
        async with session.post(f"{server_process.url}/api/v1/ops/live-ticket") as resp:
            ticket = (await resp.json())["ticket"]
        async with session.ws_connect(f"{server_process.url}/ops/live?ticket={ticket}") as ws:
            assert (await ws.receive_json())["type"] == "snapshot"
        async with session.get(f"{server_process.url}/ops/live?ticket={ticket}") as resp:
            assert resp.status == 401 and (await resp.json())["error"]["code"] == "invalid_ticket"


async def test_ops_publish_a_days_slots_and_see_the_bookings(server_process: ServerProcess, browser):  # noqa: F811
    server_process.start()
    page = await browser.new_page(viewport={"width": 1920, "height": 1080}, bypass_csp=True)
    await sign_in(page, server_process)
    await page.wait_for_function("document.body.dataset.state === 'live'", timeout=SIGN_IN_S)
    await page.wait_for_function("document.querySelectorAll('#slots-days li').length === 14", timeout=5_000)
    tomorrow = (datetime.now(ZoneInfo("Asia/Kolkata")).date() + timedelta(days=1)).isoformat()
    await page.select_option("#slots-sub", "S02")
    await page.fill("#slots-day", tomorrow)
    await page.fill("#slots-minutes", "30")
    await page.fill("#slots-share", "0.5")
    await page.click("#slots-publish")
    await page.wait_for_function("document.getElementById('toast').textContent.includes('30 min')", timeout=5_000)
    toast = await page.text_content("#toast")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server_process.url}/api/v1/public/substations/S02/slots") as r:
            day = next(d for d in (await r.json())["days"] if d["day"] == tomorrow)
    slots, capacity = len(day["slots"]), day["slots"][0]["capacity"]
    assert toast == f"S02 {tomorrow}: {slots} slots of 30 min, {capacity} bookings each"
    assert capacity > 0 and day["slots"][1]["at"][11:16] == "00:30"   # half-hour slots
    # A phone books one of them: the panel counts it.
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server_process.url}/api/v1/public/substations/S02/bookings",
                                json={"account": "KAN-00000042", "phone": "9811111111",
                                      "slot_at": day["slots"][0]["at"]}) as r:
            assert r.status == 201
    await page.select_option("#slots-sub", "S01")
    await page.select_option("#slots-sub", "S02")
    cell = f'#slots-days li[data-day="{tomorrow}"]'
    await page.wait_for_function(
        f"document.querySelector('{cell}').textContent.includes('1 of {slots * capacity} booked')", timeout=5_000)
    # A day that has passed is refused in words.
    await page.fill("#slots-day", "2020-01-01")
    await page.click("#slots-publish")
    await page.wait_for_function("document.getElementById('toast').textContent.includes('has passed')",
                                 timeout=5_000)
