"""The ops page in real Chromium (Debian's, driven by Playwright) against a server process:
sign in, watch every counter live, and drive the controls, with a hall board open beside it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import aiohttp

from counter_server.config import Scenario, load_scenario

from testkit.api import bearer
from testkit.billing import refusing_billing
from testkit.browser import clock_texts_off_zone, page_far_from
from testkit.processes import ServerProcess, free_port, run_cli
from testkit.scenarios import LAKESIDE, busy_hall, paid_service
from testkit.waiting import wait_until_async

SIGN_IN_S = 15_000


def ops_counter(counter: str) -> str:
    return f'#halls [data-counter="{counter}"]'


async def sign_in(page, server: ServerProcess, key: str | None = None) -> None:
    await page.goto(f"{server.url}/ops")
    await page.fill("#key", key or server.admin_key)
    await page.click("#login button[type=submit]")


async def confirm_dialog(page, ok: bool, shot: Path | None = None) -> str:
    """Answer the page's confirm dialog; return what it asked."""
    await page.wait_for_selector("#confirm[open]", timeout=3_000)
    if shot is not None:
        await page.screenshot(path=str(shot))
    asked = f"{await page.text_content('#confirm-title')} {await page.text_content('#confirm-text')}"
    await page.click("#confirm-ok" if ok else "#confirm-cancel")
    await page.wait_for_selector("#confirm:not([open])", state="attached", timeout=3_000)
    return asked


async def test_ops_page_drives_counters_admission_cap_and_outbox(scenario_file: Path, browser,
                                                                 tmp_path: Path):
    scenario = load_scenario(scenario_file)
    sid, service, (c1, c2, c3, *_) = busy_hall(scenario, counters=3)
    labels = {c: scenario.counters[c].label for c in (c1, c2, c3)}
    hall_name = scenario.substations[sid].name
    server_process = ServerProcess(data_dir=tmp_path / "data", config=scenario_file)
    server_process.start()
    try:
        await drive_the_ops_page(server_process, browser, tmp_path, scenario, sid, service, (c1, c2, c3),
                                 labels, hall_name)
    finally:
        server_process.stop()


async def drive_the_ops_page(server_process: ServerProcess, browser, tmp_path: Path,
                             scenario: Scenario, sid: str, service: str, counters: tuple[str, str, str],
                             labels: dict[str, str], hall_name: str) -> None:
    c1, c2, c3 = counters
    url = server_process.url
    total = len(scenario.counters)
    # Playwright's wait_for_function evaluates strings, which the page's CSP forbids (as it
    # should); the test bypasses CSP for itself (the header is checked below).
    ops = await browser.new_page(viewport={"width": 1920, "height": 1080}, bypass_csp=True)
    errors: list[str] = []
    ops.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in(ops, server_process)
    await ops.wait_for_function("document.body.dataset.state === 'live'", timeout=SIGN_IN_S)
    assert "key" not in ops.url and server_process.admin_key not in ops.url
    assert await ops.evaluate("sessionStorage.getItem('ops-key')") == server_process.admin_key
    assert await ops.locator("#halls .hall").count() == len(scenario.substations)
    assert await ops.locator("#halls .counter").count() == total
    await ops.wait_for_function("document.getElementById('b-limit').textContent !== '–'", timeout=5_000)
    # The clock is the halls' (the scenario's time zone), not the browser's.
    await ops.wait_for_function("!document.getElementById('clock').textContent.startsWith('--')", timeout=3_000)
    shown = await ops.text_content("#clock")
    assert shown[:5] == datetime.now(scenario.timezone).strftime("%H:%M")[:5] or \
        shown[:5] == (datetime.now(scenario.timezone) - timedelta(seconds=2)).strftime("%H:%M"), shown
    # Counters are called by their display names; each hall leads with the paid service.
    for counter in scenario.counters.values():
        assert await ops.text_content(f"{ops_counter(counter.id)} .cid") == counter.label
    hall = f'#halls [data-substation="{sid}"]'
    await ops.wait_for_function(
        f"document.querySelector('{hall} .hall-wait .est').title.includes({scenario.services[service].name!r})",
        timeout=5_000)

    board = await browser.new_page(viewport={"width": 1920, "height": 1080}, bypass_csp=True)
    await board.goto(f"{url}/board/{sid}")
    await board.wait_for_function("document.body.dataset.state === 'live'", timeout=10_000)

    async with aiohttp.ClientSession(headers=bearer(server_process.admin_key)) as session:
        for _ in range(3):
            async with session.post(f"{url}/api/v1/substations/{sid}/tokens", json={"service": service}) as r:
                assert r.status == 201
        async with session.post(f"{url}/api/v1/counters/{c2}/next") as r:
            token = (await r.json())["token"]
        async with session.post(f"{url}/api/v1/tokens/{token['id']}/start") as r:
            assert r.status == 200
        async with session.post(f"{url}/api/v1/tokens/{token['id']}/complete") as r:
            assert r.status == 200
        async with session.post(f"{url}/api/v1/counters/{c3}/next") as r:
            called = (await r.json())["token"]["number"]

        # live: waiting, the token at a counter, served today, all from the ops channel
        await ops.wait_for_function(
            f"document.querySelector('{hall} .waiting').textContent === '1'", timeout=3_000)
        assert await ops.text_content(f"{ops_counter(c3)} .number") == called
        await ops.wait_for_function(
            f"document.querySelector('{ops_counter(c2)} .served').textContent === '1 served'",
            timeout=3_000)

        # closing a counter asks first; cancelled, nothing happens
        await ops.click(f"{ops_counter(c1)} button[data-action=close]")
        asked = await confirm_dialog(ops, ok=False, shot=tmp_path / "ops-confirm-close.png")
        assert f"Close {labels[c1]} at {hall_name}?" in asked
        assert await ops.get_attribute(ops_counter(c1), "data-open") == "true"
        # confirmed: the ops view and the hall board both show it closed
        await ops.click(f"{ops_counter(c1)} button[data-action=close]")
        await confirm_dialog(ops, ok=True)
        await ops.wait_for_selector(f"{ops_counter(c1)}[data-open=false]", timeout=3_000)
        await board.wait_for_selector(f'[data-counter="{c1}"].closed', timeout=3_000)
        assert await ops.text_content("#kpi-open") == f"{total - 1}/{total}"
        await ops.screenshot(path=str(tmp_path / "ops-counter-closed.png"))
        await ops.click(f"{ops_counter(c1)} button[data-action=open]")          # opening asks nothing
        await ops.wait_for_selector(f"{ops_counter(c1)}[data-open=true]", timeout=3_000)
        await board.wait_for_selector(f'[data-counter="{c1}"]:not(.closed)', timeout=3_000)

        # a counter holding a token cannot be closed: the page says why, naming what was refused
        await ops.click(f"{ops_counter(c3)} button[data-action=close]")
        await confirm_dialog(ops, ok=True)
        # (the "opened" toast may still be up: wait for the refusal's own words)
        await ops.wait_for_function(
            f"document.getElementById('toast').textContent.includes('{called}')", timeout=3_000)
        refusal = await ops.text_content("#toast")
        assert "before closing the counter" in refusal and "calling the next" not in refusal
        assert await ops.get_attribute(ops_counter(c3), "data-open") == "true"

        # the test scenario starts with the door rule off; switching it on asks nothing
        await ops.wait_for_selector(f"{hall}[data-admission=off]", timeout=3_000)
        await ops.click(f"{hall} button[data-action=admission]")
        await ops.wait_for_selector(f"{hall}[data-admission=on]", timeout=3_000)
        assert not await ops.is_visible("#confirm")
        # switching admission off asks first (cancel: still on), then the card turns
        await ops.click(f"{hall} button[data-action=admission]")
        assert f"Switch admission off at {hall_name}?" in await confirm_dialog(ops, ok=False)
        async with session.get(f"{url}/api/v1/ops/substations/{sid}/admission") as r:
            assert (await r.json())["admission"] is True
        await ops.click(f"{hall} button[data-action=admission]")
        await confirm_dialog(ops, ok=True)
        await ops.wait_for_selector(f"{hall}[data-admission=off]", timeout=3_000)
        async with session.get(f"{url}/api/v1/ops/substations/{sid}/admission") as r:
            assert (await r.json())["admission"] is False
        await ops.click(f"{hall} button[data-action=admission]")                # on again: no question
        await ops.wait_for_selector(f"{hall}[data-admission=on]", timeout=3_000)
        assert not await ops.is_visible("#confirm")

        # a daily cap of 4 (3 issued): one more token, then the door refuses
        await ops.fill(f'{hall} input[data-cap-for="{sid}"]', "4")
        await ops.click(f"{hall} button[data-action=cap]")
        await ops.wait_for_function(
            f"document.querySelector('{hall} .hall-meta b').textContent === '3/4'", timeout=3_000)
        statuses = []
        for _ in range(2):
            async with session.post(f"{url}/api/v1/substations/{sid}/tokens", json={"service": service}) as r:
                statuses.append(r.status)
        assert statuses == [201, 409]

        # pause and resume the payment outbox
        await ops.click("#outbox-toggle")
        await ops.wait_for_selector("#billing[data-paused=true]", timeout=3_000)
        async with session.get(f"{url}/api/v1/ops/billing") as r:
            assert (await r.json())["billing"]["paused"] is True
        # paused is an alert too (until resumed)
        await ops.wait_for_selector('#alert-list .alert.warning[data-kind="outbox_paused"]', timeout=3_000)
        await ops.click("#outbox-toggle")
        await ops.wait_for_selector("#billing[data-paused=false]", timeout=3_000)
        await ops.wait_for_selector('#alert-list [data-kind="outbox_paused"]', state="detached", timeout=3_000)

    # the key survives a reload of the tab, and signing out forgets it
    await ops.reload()
    await ops.wait_for_function("document.body.dataset.state === 'live'", timeout=SIGN_IN_S)
    await ops.click("#sign-out")
    assert await ops.evaluate("sessionStorage.getItem('ops-key')") is None
    assert await ops.is_visible("#login")
    assert errors == []


async def test_ops_page_refuses_a_wrong_or_non_admin_key(server_process: ServerProcess, browser):
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


async def test_ops_clock_shows_the_halls_time_never_the_browsers(server_process: ServerProcess, browser):
    """Signed out, signing in and live: the clock is blank until the snapshot says the halls'
    zone, then their time, never the time of the browser's own zone."""
    server_process.start()
    zone = load_scenario(server_process.config).timezone
    page = await page_far_from(browser, zone)
    await page.goto(f"{server_process.url}/ops")
    await page.wait_for_timeout(1_500)             # a tick or more while signed out
    await page.fill("#key", server_process.admin_key)   # on this page: sign_in would load it again
    await page.click("#login button[type=submit]")
    await page.wait_for_function("document.body.dataset.state === 'live'", timeout=SIGN_IN_S)
    shown, wrong = await clock_texts_off_zone(page, zone, "en-GB", {})
    assert shown and wrong == [], shown


async def test_ops_publish_a_days_slots_and_see_the_bookings(scenario_file: Path, browser,
                                                             tmp_path: Path):
    scenario = load_scenario(scenario_file)
    service = paid_service(scenario)
    sid = next(s for s, sub in scenario.substations.items() if service in sub.services)
    other = next(s for s in scenario.substations if s != sid)
    server_process = ServerProcess(data_dir=tmp_path / "data", config=scenario_file)
    server_process.start()
    try:
        page = await browser.new_page(viewport={"width": 1920, "height": 1080}, bypass_csp=True)
        await sign_in(page, server_process)
        await page.wait_for_function("document.body.dataset.state === 'live'", timeout=SIGN_IN_S)
        await page.wait_for_function("document.querySelectorAll('#slots-days li').length === 14", timeout=5_000)
        tomorrow = (datetime.now(scenario.timezone).date() + timedelta(days=1)).isoformat()
        await page.select_option("#slots-sub", sid)
        await page.fill("#slots-day", tomorrow)
        await page.fill("#slots-minutes", "30")
        await page.fill("#slots-share", "0.5")
        await page.click("#slots-publish")
        await page.wait_for_function("document.getElementById('toast').textContent.includes('30 min')", timeout=5_000)
        toast = await page.text_content("#toast")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server_process.url}/api/v1/public/substations/{sid}/slots") as r:
                day = next(d for d in (await r.json())["days"] if d["day"] == tomorrow)
        slots, capacity = len(day["slots"]), day["slots"][0]["capacity"]
        assert toast == f"{sid} {tomorrow}: {slots} slots of 30 min, {capacity} bookings each"
        assert capacity > 0 and day["slots"][1]["at"][11:16] == "00:30"   # half-hour slots
        # A phone books one of them: the panel counts it.
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{server_process.url}/api/v1/public/substations/{sid}/bookings",
                                    json={"service": service, "account": "KAN-00000042", "phone": "9811111111",
                                          "slot_at": day["slots"][0]["at"]}) as r:
                assert r.status == 201
        await page.select_option("#slots-sub", other)
        await page.select_option("#slots-sub", sid)
        cell = f'#slots-days li[data-day="{tomorrow}"]'
        await page.wait_for_function(
            f"document.querySelector('{cell}').textContent.includes('1 of {slots * capacity} booked')", timeout=5_000)
        # A day that has passed is refused in words.
        await page.fill("#slots-day", "2020-01-01")
        await page.click("#slots-publish")
        await page.wait_for_function("document.getElementById('toast').textContent.includes('has passed')",
                                     timeout=5_000)
    finally:
        server_process.stop()


async def test_ops_alerts_billing_down_and_offline_dimmed(scenario_file: Path, browser,
                                                          tmp_path: Path):
    """Alerts come first, loud, each with what to do; billing down is one. With the server gone
    every figure is dimmed under a banner saying since when it is stale."""
    scenario = load_scenario(scenario_file)
    service = paid_service(scenario)
    payer = next(s for s, sub in scenario.substations.items() if service in sub.services)
    payer_counter = next(c for c in scenario.substations[payer].counters if service in c.services)
    empty = next(s for s in scenario.substations if s != payer)      # a hall to leave unstaffed
    empty_service = scenario.substations[empty].services[0]
    # A billing server nobody answers at: the gateway's breaker opens on the first payments.
    server = ServerProcess(data_dir=tmp_path / "data", config=scenario_file,
                           extra_args=["--rate-limit", "0", "--billing-url", f"http://127.0.0.1:{free_port()}"])
    server.start()
    try:
        page = await browser.new_page(viewport={"width": 1366, "height": 768}, bypass_csp=True)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await sign_in(page, server)
        await page.wait_for_function("document.body.dataset.state === 'live'", timeout=SIGN_IN_S)
        await page.wait_for_selector("#alerts[data-count='0'] #alerts-clear:not([hidden])", timeout=5_000)

        async with aiohttp.ClientSession(headers=bearer(server.admin_key)) as session:
            async def call(method: str, path: str, **kw) -> dict:
                async with session.request(method, server.url + path, **kw) as resp:
                    assert resp.status < 300, await resp.text()
                    return await resp.json()

            # people waiting where every counter is closed
            for counter in scenario.substations[empty].counters:
                await call("POST", f"/api/v1/counters/{counter.id}/close")
            await call("POST", f"/api/v1/substations/{empty}/tokens", json={"service": empty_service})
            unstaffed = f'#alert-list .alert.critical[data-kind="hall_unstaffed"][data-substation="{empty}"]'
            await page.wait_for_selector(unstaffed, timeout=5_000)
            assert scenario.substations[empty].name in await page.text_content(unstaffed)
            await page.wait_for_selector(f'#halls [data-substation="{empty}"][data-alert="critical"]', timeout=3_000)

            # a payment the billing server cannot take: billing down, the loudest alert, first
            await call("POST", f"/api/v1/substations/{payer}/tokens", json={"service": service})
            token = (await call("POST", f"/api/v1/counters/{payer_counter.id}/next"))["token"]
            await call("POST", f"/api/v1/tokens/{token['id']}/start")
            for i in range(3):
                await call("POST", "/api/v1/payments", json={"token_id": token["id"], "account": f"ACC-{i:05d}",
                                                             "amount_paise": 1000 + i, "part": True})
            first = "#alert-list .alert:first-child"
            await page.wait_for_selector(f'{first}.critical[data-kind="billing_down"]', timeout=15_000)
            assert "Billing server down" in await page.text_content(first)
            assert await page.get_attribute("#billing", "data-down") == "true"
            served = await call("GET", "/api/v1/ops/alerts")
            assert {"billing_down", "hall_unstaffed"} <= {a["kind"] for a in served["alerts"]}
            # impossible to miss: on screen at 1366x768 without scrolling, above everything else
            box = await page.locator(first).bounding_box()
            billing_box = await page.locator("#billing").bounding_box()
            assert box is not None and box["y"] + box["height"] <= 768 and box["y"] < billing_box["y"]
            assert (await page.title()).startswith("(2) ACT NOW")

        # A board's report of its voices (when the hub sends one) adds a quieter notice.
        notice = await page.evaluate(
            f"""() => {{ receive({{type: "boards", v: 1, boards: {{"{payer}": {{connected: 2, no_hindi_voice: 1,
                                                                                chime_only: 0}}}}}});
                       const n = document.querySelector('#alert-list .alert.notice');
                       return n && n.textContent; }}""")
        assert notice is not None and "no Hindi voice" in notice and scenario.substations[payer].name in notice
        await page.screenshot(path=str(tmp_path / "ops-alerts.png"))

        # The server goes away: everything stays on screen, dimmed, under a banner saying so.
        server.stop()
        await page.wait_for_function("document.body.dataset.state === 'offline'", timeout=15_000)
        await page.wait_for_selector("#stale:not([hidden])", timeout=3_000)
        assert "stale" in await page.text_content("#stale")
        for part in ("#halls", "#billing", ".kpis", "#alerts"):
            style = await page.eval_on_selector(part, "e => [getComputedStyle(e).opacity, getComputedStyle(e).filter]")
            assert float(style[0]) < 0.5 and "grayscale" in style[1], (part, style)
        await page.screenshot(path=str(tmp_path / "ops-offline.png"))
        assert errors == []
    finally:
        server.stop()


def cashup_cell(counter: str, figure: str) -> str:
    return f'#cashup-rows tr[data-counter="{counter}"] td.{figure}'


def idle_line(scenario: Scenario, hall: str, taking: tuple[str, ...] = ()) -> str:
    """The cash-up's one line for a hall's counters that took nothing, as the page words it."""
    counters = scenario.substations[hall].counters
    idle = len([c for c in counters if c.id not in taking])
    other = " other" if idle < len(counters) else ""
    return f"{scenario.substations[hall].name}: {idle}{other} counter{'' if idle == 1 else 's'} took nothing"


async def idle_lines(page) -> dict[str, str]:
    """{hall id: its line} for the halls whose counters (some or all) took nothing."""
    rows = page.locator("#cashup-rows tr.nothing")
    return {await rows.nth(n).get_attribute("data-hall"): await rows.nth(n).text_content()
            for n in range(await rows.count())}


async def cash_up_shot(page, path: Path) -> None:
    """The cash-up as a laptop shows it (the viewport, not the whole page), for a person to look at."""
    await page.locator("#cashup").scroll_into_view_if_needed()
    await page.screenshot(path=str(path))


async def test_ops_settle_failed_payments_and_cash_up(scenario_file: Path, browser, tmp_path: Path):
    """Billing (a server of the test's own) refuses two accounts for good: the payments appear
    on the ops page without a reload, with the reason in words. A bad correction is refused in
    place with the server's words; a good one resubmits the payment (it leaves the list and the
    counter's cash-up shows it pending, then posted); the other is refunded after a question,
    and the cash-up counts it refunded."""
    scenario = load_scenario(scenario_file)
    service = paid_service(scenario)
    sid, c1, c2 = next((s, *serving[:2]) for s, sub in scenario.substations.items()
                       if len(serving := [c.id for c in sub.counters if service in c.services]) >= 2)
    idle = next(c for c in scenario.counters if c not in (c1, c2))
    bad, worse, good, corrected = "BAD-0001", "BAD-0002", "2140000007", "2140012345"
    async with refusing_billing(bad, worse) as billing:
        server = ServerProcess(data_dir=tmp_path / "data", config=scenario_file,
                               extra_args=["--rate-limit", "0", "--billing-url", billing.url])
        server.start()
        try:
            await settle_and_cash_up(server, billing, browser, tmp_path, scenario, sid, service,
                                     (c1, c2, idle), (bad, worse, good, corrected))
        finally:
            server.stop()


async def settle_and_cash_up(server: ServerProcess, billing, browser, tmp_path: Path, scenario: Scenario,
                             sid: str, service: str, counters: tuple[str, str, str],
                             accounts: tuple[str, str, str, str]) -> None:
    c1, c2, idle = counters
    bad, worse, good, corrected = accounts
    page = await browser.new_page(viewport={"width": 1366, "height": 768}, bypass_csp=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in(page, server)
    await page.wait_for_function("document.body.dataset.state === 'live'", timeout=SIGN_IN_S)
    # Nothing refused yet: the list says so in words; every counter took nothing today.
    await page.wait_for_selector("#settle[data-count='0'] #settle-empty:not([hidden])", timeout=5_000)
    assert (await page.text_content("#settle-empty")).startswith("No payments to settle")
    # A quiet day is one line per hall, not one per counter.
    await page.wait_for_selector(f'#cashup-rows tr.nothing[data-hall="{sid}"]', timeout=5_000)
    assert await page.locator("#cashup-rows tr").count() == len(scenario.substations)
    assert await idle_lines(page) == {hall: idle_line(scenario, hall) for hall in scenario.substations}
    assert await page.locator("#cashup-rows tr[data-counter]").count() == 0
    assert scenario.counters[c1].label in await page.get_attribute(f'#cashup-rows tr[data-hall="{sid}"] td', "title")
    today = datetime.now(scenario.timezone).date().isoformat()
    assert await page.input_value("#cashup-day") == today
    assert "no counter took any payment" in await page.text_content("#cashup-note")
    assert await page.text_content("#cashup-total td.drawer") == "Rs 0.00"
    await cash_up_shot(page, tmp_path / "ops-cashup-quiet.png")

    async with aiohttp.ClientSession(headers=bearer(server.admin_key)) as session:
        async def call(method: str, path: str, expect: int = 200, **kw) -> dict:
            async with session.request(method, server.url + path, **kw) as resp:
                assert resp.status == expect, await resp.text()
                return await resp.json()

        async def pay(counter: str, account: str, paise: int, mode: str) -> dict:
            await call("POST", f"/api/v1/substations/{sid}/tokens", 201, json={"service": service})
            token = (await call("POST", f"/api/v1/counters/{counter}/next"))["token"]
            await call("POST", f"/api/v1/tokens/{token['id']}/start")
            payment = (await call("POST", "/api/v1/payments", 202, json={
                "token_id": token["id"], "account": account, "amount_paise": paise, "mode": mode}))["payment"]
            await call("POST", f"/api/v1/tokens/{token['id']}/complete")
            return payment

        refused = await pay(c1, bad, 1_234_50, "cash")
        posted = await pay(c1, good, 500_00, "cheque")
        other = await pay(c2, worse, 750_00, "cash")

        # Both refusals appear on the open page (no reload), oldest first, in words.
        row, other_row = (f'#settle-rows tr[data-receipt="{p["receipt"]}"]' for p in (refused, other))
        await page.wait_for_selector(other_row, timeout=15_000)
        listed = (await call("GET", "/api/v1/payments?status=failed"))["payments"]
        assert [p["id"] for p in listed] == [refused["id"], other["id"]]
        assert await page.locator("#settle-rows tr").count() == 2
        assert await page.text_content("#settle-count") == "2"
        assert await page.get_attribute("#settle-rows tr:first-child", "data-payment") == refused["id"]
        reason = await page.text_content(f"{row} .reason")
        assert reason == listed[0]["reason_text"] and "check the account on the bill" in reason
        assert "422" not in reason                                     # words, not billing's raw answer
        assert await page.text_content(f"{row} .receipt") == refused["receipt"]
        assert await page.text_content(f"{row} .where b") == scenario.counters[c1].label
        assert await page.text_content(f"{row} .account") == bad
        assert await page.text_content(f"{row} .amount") == "Rs 1,234.50"
        assert await page.text_content(f"{row} .mode") == "cash"
        assert await page.input_value(f"{row} input.settle-account") == bad
        assert await page.text_content(f"{other_row} .amount") == "Rs 750.00"
        # The cash-up follows the failures at once: each counter's failed figure.
        for counter, paise in ((c1, "Rs 1,234.50"), (c2, "Rs 750.00")):
            await page.wait_for_function(
                f"document.querySelector('{cashup_cell(counter, 'failed')} b')?.textContent === '1'", timeout=5_000)
            assert await page.text_content(f"{cashup_cell(counter, 'failed')} .rs") == paise
        await page.screenshot(path=str(tmp_path / "ops-settle.png"), full_page=True)

        # A correction the server refuses: its own words, in place; the payment stays listed.
        await page.fill(f"{row} input.settle-account", "12")
        await page.click(f"{row} button[data-action=resubmit]")
        await page.wait_for_selector(f"{row} .settle-error:not([hidden])", timeout=5_000)
        said = (await call("POST", f"/api/v1/payments/{refused['id']}/resubmit", 422,
                           json={"account": "12"}))["error"]["message"]
        assert await page.text_content(f"{row} .settle-error") == said and said.startswith("account")
        assert (await call("GET", f"/api/v1/payments/{refused['id']}"))["payment"]["status"] == "failed"
        await page.screenshot(path=str(tmp_path / "ops-settle-refused.png"))
        await at_phone_width(page, "#settle", tmp_path / "ops-settle-phone.png")

        # Corrected: the same payment, a new attempt; it leaves the list and billing posts it.
        await page.fill(f"{row} input.settle-account", corrected)
        await page.click(f"{row} button[data-action=resubmit]")
        await page.wait_for_selector(row, state="detached", timeout=5_000)
        assert await page.locator("#settle-rows tr").count() == 1
        await page.wait_for_function(
            f"""(() => {{ const c = document.querySelector('{cashup_cell(c1, "taken")} b');
                        return c && c.textContent === '2'; }})()""", timeout=5_000)
        async def status() -> str:
            return (await call("GET", f"/api/v1/payments/{refused['id']}"))["payment"]["status"]
        await wait_until_async(status, done=lambda s: s == "posted", what="the resubmitted payment posted")
        assert billing.posted[refused["id"]]["account"] == corrected
        # The cash-up follows by itself: both of c1's payments posted, none pending or failed.
        await page.wait_for_function(
            f"document.querySelector('{cashup_cell(c1, 'posted')} b')?.textContent === '2'", timeout=15_000)
        assert await page.text_content(f"{cashup_cell(c1, 'posted')} .rs") == "Rs 1,734.50"
        for figure in ("pending", "failed", "refunded"):
            assert await page.text_content(cashup_cell(c1, figure)) == "0", figure
        assert billing.posted[posted["id"]]["account"] == good

        assert await page.text_content(cashup_cell(c1, "drawer")) == "Rs 1,234.50cheque 1 Rs 500.00"
        # Refund the other: asked first (cancel: still listed), then gone; the list says so.
        await page.click(f"{other_row} button[data-action=refund]")
        asked = await confirm_dialog(page, ok=False)
        assert other["receipt"] in asked and "Rs 750.00" in asked
        assert await page.locator(other_row).count() == 1
        await page.click(f"{other_row} button[data-action=refund]")
        await confirm_dialog(page, ok=True)
        await page.wait_for_selector("#settle[data-count='0'] #settle-empty:not([hidden])", timeout=5_000)
        assert (await page.text_content("#settle-empty")).startswith("No payments to settle")
        assert (await call("GET", f"/api/v1/payments/{other['id']}"))["payment"]["status"] == "refunded"
        await page.wait_for_function(
            f"document.querySelector('{cashup_cell(c2, 'refunded')} b')?.textContent === '1'", timeout=5_000)
        assert await page.text_content(f"{cashup_cell(c2, 'refunded')} .rs") == "Rs 750.00"
        # The refund shows its mode, and the cash it took out of the drawer.
        assert await page.text_content(f'{cashup_cell(c2, "refunded")} .mode-line[data-mode="cash"]') \
            == "cash 1 Rs 750.00"
        assert await page.text_content(cashup_cell(c2, "cash")) == "1Rs 750.00"
        await page.wait_for_function(
            f"document.querySelector('{cashup_cell(c2, 'drawer')}')?.textContent === 'Rs 0.00'", timeout=5_000)
        # The total row adds up the counters; the idle ones are one line a hall.
        total = "#cashup-total tr"
        assert await page.text_content(f"{total} td.taken") == "3Rs 2,484.50"
        assert await page.text_content(f"{total} td.cash") == "2Rs 1,984.50"
        assert await page.text_content(f"{total} td.modes") == "cheque 1 Rs 500.00"
        assert await page.text_content(f"{total} td.refunded") == "1Rs 750.00cash 1 Rs 750.00"
        assert await page.text_content(f"{total} td.drawer") == "Rs 1,234.50cheque 1 Rs 500.00"
        assert await idle_lines(page) == {hall: idle_line(scenario, hall, (c1, c2)) for hall, sub in
                                          scenario.substations.items() if {c.id for c in sub.counters} - {c1, c2}}
        assert await page.locator(f'#cashup-rows tr[data-counter="{idle}"]').count() == 0
        assert await page.locator("#cashup-rows tr[data-counter]").count() == 2
        served = (await call("GET", f"/api/v1/counters/{c2}/cash-up"))["cash_up"]
        assert (served["refunded"], served["taken"]) == ({"count": 1, "paise": 750_00}, {"count": 1, "paise": 750_00})
        assert served["in_drawer"] == {"cash": {"count": 0, "paise": 0}}
        await cash_up_shot(page, tmp_path / "ops-cashup.png")

    # Another day: the date input reloads it (nothing taken yesterday); Today goes back.
    yesterday = (datetime.now(scenario.timezone).date() - timedelta(days=1)).isoformat()
    await page.fill("#cashup-day", yesterday)
    await page.wait_for_function(f"document.getElementById('cashup-table').dataset.day === '{yesterday}'",
                                 timeout=5_000)
    assert await page.locator("#cashup-rows tr").count() == len(scenario.substations)
    assert "no counter took any payment" in await page.text_content("#cashup-note")
    await page.click("#cashup-today")
    await page.wait_for_function(f"document.getElementById('cashup-table').dataset.day === '{today}'",
                                 timeout=5_000)

    await at_phone_width(page, "#cashup", tmp_path / "ops-cashup-phone.png")
    assert errors == []


async def at_phone_width(page, section: str, shot: Path) -> None:
    """The page at a phone's width: nothing wider than the screen; ``section`` photographed.
    Then back to the laptop's 1366x768."""
    await page.set_viewport_size({"width": 390, "height": 844})
    try:
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide on a 390 px phone"
        await page.locator(section).screenshot(path=str(shot))
    finally:
        await page.set_viewport_size({"width": 1366, "height": 768})


async def test_ops_plan_view_runs_the_month_simulation_on_the_server(browser, tmp_path: Path):
    """The Plan view on a scenario unlike the built-in one: its halls prefilled from the
    scenario; a Run while another ops person's plan runs is refused in the server's words and
    that plan is followed instead; then a small plan of the page's own: the bar shows it
    running, then the per-hall table and the plots."""
    scenario = load_scenario(LAKESIDE)
    halls = {sid: len(sub.counters) for sid, sub in scenario.substations.items() if sub.counters}
    busy = next(sid for sid in halls if paid_service(scenario) in scenario.substations[sid].services)
    server = ServerProcess(data_dir=tmp_path / "data", config=LAKESIDE)
    server.start()
    try:
        page = await browser.new_page(viewport={"width": 1920, "height": 1080}, bypass_csp=True)
        page.set_default_timeout(5_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await sign_in(page, server)
        await page.wait_for_selector("#plan-form:not([hidden])", timeout=SIGN_IN_S)
        for sid, counters in halls.items():
            box = f'input[data-hall="{sid}"]'
            assert await page.input_value(f"#plan-halls {box}") == str(counters)
            assert scenario.substations[sid].name in await page.text_content(f"#plan-halls label:has({box})")
        # What the page goes through, as it happens (a plan takes about a second).
        await page.evaluate("""() => { window.planSeen = [];
            new MutationObserver(() => window.planSeen.push([document.getElementById('plan').dataset.state,
                document.getElementById('plan-run').textContent, document.getElementById('plan-run').disabled,
                !document.getElementById('plan-status').hidden]))
              .observe(document.getElementById('plan'), {attributes: true, subtree: true, childList: true}); }""")

        # Someone else's plan runs (the worker's first: it starts now): the page's Run is refused.
        async with aiohttp.ClientSession(headers=bearer(server.admin_key)) as session:
            async with session.post(f"{server.url}/api/v1/ops/plans", json={"days": 30}) as resp:
                assert resp.status == 202
                theirs = (await resp.json())["plan"]["id"]
        await page.click("#plan-run")
        await page.wait_for_selector("#plan-error:not([hidden])", timeout=5_000)
        assert "running already" in await page.text_content("#plan-error")
        await page.wait_for_selector(f'#plan[data-state="done"] #plan-table[data-plan="{theirs}"]',
                                     state="attached", timeout=30_000)
        seen = await page.evaluate("window.planSeen")
        assert ["running", "Running…", True, True] in seen, seen

        # The page's own small plan: one more counter at a busy hall, three days.
        await page.fill(f'#plan-halls input[data-hall="{busy}"]', str(halls[busy] + 1))
        await page.fill("#plan-days", "3")
        await page.fill("#plan-online", "0.5")
        await page.evaluate("window.planSeen = []")
        await page.click("#plan-run")
        await page.wait_for_selector('#plan[data-state="done"]:not([data-plan="%s"])' % theirs,
                                     state="attached", timeout=30_000)
        seen = await page.evaluate("window.planSeen")
        assert ["running", "Running…", True, True] in seen, seen
        assert await page.is_hidden("#plan-error")
        assert await page.text_content("#plan-run") == "Run plan" and await page.is_enabled("#plan-run")
        assert float(await page.get_attribute("#plan-progress", "data-value")) == 1
        rows = page.locator("#plan-rows tr")
        assert await rows.count() == len(scenario.substations)
        row = f'#plan-rows tr[data-substation="{busy}"]'
        assert (await page.text_content(f"{row} .counters")).startswith(str(halls[busy] + 1))
        assert await page.locator(f"{row} .plan-needed li").count() == 3      # each day simulated is of the last week
        assert scenario.substations[busy].name in await page.text_content(f"{row} .where")
        await page.wait_for_function(
            "() => { const imgs = [...document.querySelectorAll('#plan-plots img')];"
            " return imgs.length === 3 && imgs.every((i) => i.complete && i.naturalWidth > 0); }", timeout=10_000)
        await page.locator("#plan").screenshot(path=str(tmp_path / "ops-plan.png"))
        assert errors == []
    finally:
        server.stop()
