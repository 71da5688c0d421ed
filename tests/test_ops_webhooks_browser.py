"""The ops page's Webhooks section in real Chromium against a server process, with a receiver of
the test's own on loopback: add an endpoint and see its secret once, see deliveries and failures
appear without a reload, a refused URL in the server's words, enable and remove."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from counter_server.config import load_scenario
from testkit.api import bearer
from testkit.processes import ServerProcess
from testkit.scenarios import busy_hall
from .test_ops_page_browser import SIGN_IN_S, at_phone_width, confirm_dialog, sign_in
from .test_webhooks import FAST_RETRIES, Receiver, lakeside_with

# Retries at once, and disabled after 6 s of failing (the page lists every 3 s: it sees both).
KNOBS = FAST_RETRIES + "disable_after_minutes = 0.1\n"
LAPTOP = {"width": 1366, "height": 768}


def endpoint(hook_id: str) -> str:
    return f'#hooks-list li[data-hook="{hook_id}"]'


async def test_ops_add_watch_enable_and_remove_a_webhook_endpoint(browser, tmp_path: Path):
    config = lakeside_with(tmp_path, KNOBS)
    scenario = load_scenario(config)
    sid, service, (first, second, *_) = busy_hall(scenario)
    receiver = Receiver()
    await receiver.start()
    server = ServerProcess(data_dir=tmp_path / "data", config=config)
    server.start()
    context = await browser.new_context(viewport={"width": 1920, "height": 1080}, bypass_csp=True,
                                        permissions=["clipboard-read", "clipboard-write"])
    try:
        page = await context.new_page()
        page.set_default_timeout(5_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await sign_in(page, server)
        await page.wait_for_function("document.body.dataset.state === 'live'", timeout=SIGN_IN_S)
        # None yet: the section says what endpoints are for and how to add one.
        await page.wait_for_selector("#hooks[data-count='0'] #hooks-empty:text('No webhook endpoints yet')")
        assert "Add endpoint" in await page.inner_text("#hooks-empty")
        await page.locator("#hooks").screenshot(path=str(tmp_path / "ops-hooks-empty.png"))

        async with aiohttp.ClientSession(base_url=server.url, headers=bearer(server.admin_key)) as http:
            async def call(method: str, path: str, expect: int = 200, **body) -> dict:
                async with http.request(method, path, json=body or None) as resp:
                    assert resp.status == expect, (path, resp.status, await resp.text())
                    return await resp.json()

            # A secret not in the spec's form: the server's words (no regular expression), by the form.
            await page.fill("#hooks-url", receiver.url)
            await page.check('#hooks-events input[value="token.called"]')
            await page.fill("#hooks-secret", "whsec_short")
            await page.click("#hooks-add")
            await page.wait_for_selector("#hooks-error:not([hidden])")
            said = await page.text_content("#hooks-error")
            assert said.startswith("secret: Expected 'whsec_'") and "^" not in said, said
            assert await page.evaluate("document.activeElement.id") == "hooks-secret"
            await page.fill("#hooks-secret", "")
            # A link-local URL (cloud metadata) is refused in the server's own words.
            await page.fill("#hooks-url", "http://169.254.169.254/")
            await page.click("#hooks-add")
            await page.wait_for_selector("#hooks-error[data-code=url_refused]")
            said = (await call("POST", "/api/v1/ops/webhooks", 409, url="http://169.254.169.254/",
                               events=["token.called"]))["error"]["message"]
            assert await page.text_content("#hooks-error") == said and "link-local" in said
            assert (await call("GET", "/api/v1/ops/webhooks"))["webhooks"] == []

            # The receiver, for token.called: the secret is shown once, and copies.
            await page.fill("#hooks-url", receiver.url)
            await page.click("#hooks-add")
            await page.wait_for_selector("#hooks-secret-box:not([hidden])")
            assert await page.is_hidden("#hooks-error")
            secret = await page.input_value("#hooks-secret-value")
            assert secret.startswith("whsec_")
            assert "copy it now, it is not shown again" in await page.inner_text("#hooks-secret-box")
            assert await page.text_content("#hooks-secret-url") == receiver.url
            await page.click("#hooks-copy")
            assert await page.evaluate("navigator.clipboard.readText()") == secret
            (listed,) = (await call("GET", "/api/v1/ops/webhooks"))["webhooks"]
            row = endpoint(listed["id"])
            await page.wait_for_selector(f'{row}[data-state="active"]')
            assert listed["events"] == ["token.called"] and "secret" not in listed
            assert await page.text_content(f"{row} .hook-url") == receiver.url
            assert await page.text_content(f"{row} .hook-events") == "Token called"
            assert secret not in await page.text_content("#hooks-list")
            await page.screenshot(path=str(tmp_path / "ops-hooks-secret.png"))
            await page.click("#hooks-secret-done")
            assert await page.is_hidden("#hooks-secret-box") and secret not in await page.content()

            # A token called: its delivery shows in the endpoint's list as it happens, ok.
            await call("POST", f"/api/v1/substations/{sid}/tokens", 201, service=service)
            called = (await call("POST", f"/api/v1/counters/{first}/next"))["token"]
            await page.wait_for_selector(f'{row} tr[data-ok="true"]', timeout=8_000)
            (got,) = receiver.verified(secret)              # signed with the secret the page showed
            assert got["type"] == "token.called" and got["data"]["token"]["number"] == called["number"]
            delivery = (await call("GET", "/api/v1/ops/webhooks"))["webhooks"][0]["recent"][0]
            ok_row = f'{row} tr[data-delivery="{got["id"]}"]'
            assert await page.text_content(f"{ok_row} .type") == "token.called"
            assert await page.text_content(f"{ok_row} .result") == "200 OK"
            assert (await page.text_content(f"{ok_row} .when")).endswith(delivery["at"][11:19])   # the halls' clock
            assert (await page.text_content(f"{ok_row} .ms")).isdigit()
            await page.wait_for_function(
                f"document.querySelector('{row} .hook-delivered').textContent === '1 delivered'")

            # The receiver stops: the next call fails, the endpoint turns failing with the error,
            # and says so among the alerts.
            await receiver.stop()
            await call("POST", f"/api/v1/substations/{sid}/tokens", 201, service=service)
            await call("POST", f"/api/v1/counters/{second}/next")
            await page.wait_for_selector(f'{row}[data-state="failing"] tr[data-ok="false"]', timeout=8_000)
            assert await page.text_content(f"{row} .hook-badge") == "failing"
            failed = (await call("GET", "/api/v1/ops/webhooks"))["webhooks"][0]["recent"][0]
            error = await page.text_content(f'{row} tr[data-ok="false"] .result')
            assert failed["error"] and error.startswith("ClientConnectorError")
            assert "Failing since" in await page.text_content(f"{row} .hook-state")
            await page.wait_for_selector('#alert-list .alert.notice[data-kind="webhook_failing"]')
            await page.screenshot(path=str(tmp_path / "ops-hooks-failing-1920.png"), full_page=True)
            await page.set_viewport_size(LAPTOP)
            await page.locator("#hooks").screenshot(path=str(tmp_path / "ops-hooks-failing-1366.png"))

            # Failing on, it is disabled (the reason in words); mended and enabled, the notice
            # kept for it goes out.
            await page.wait_for_selector(f'{row}[data-state="disabled"]', timeout=15_000)
            assert "failing since" in await page.text_content(f"{row} .hook-state")
            await page.wait_for_selector('#alert-list .alert.warning[data-kind="webhook_disabled"]')
            await page.screenshot(path=str(tmp_path / "ops-hooks-disabled-1366.png"))
            await receiver.start()
            await page.click(f"{row} button[data-action=enable]")
            await page.wait_for_selector(f'{row}[data-state="active"]', timeout=8_000)
            await page.wait_for_function(
                f"document.querySelector('{row} .hook-delivered').textContent === '2 delivered'")
            assert [d["type"] for d in receiver.verified(secret)] == ["token.called"] * 2
            await page.wait_for_selector('#alert-list [data-kind^="webhook_"]', state="detached")
            await at_phone_width(page, "#hooks", tmp_path / "ops-hooks-phone.png")

            # Removing asks first; cancelled it stays, confirmed it goes (the empty state again).
            await page.click(f"{row} button[data-action=remove]")
            asked = await confirm_dialog(page, ok=False, shot=tmp_path / "ops-hooks-remove.png")
            assert f"Remove the endpoint {receiver.url}?" in asked
            assert await page.locator(row).count() == 1
            await page.click(f"{row} button[data-action=remove]")
            await confirm_dialog(page, ok=True)
            await page.wait_for_selector(row, state="detached")
            await page.wait_for_selector("#hooks[data-count='0'] #hooks-empty:not([hidden])")
            assert (await call("GET", "/api/v1/ops/webhooks"))["webhooks"] == []
        assert errors == []
    finally:
        await context.close()
        server.stop()
        await receiver.stop()
