"""The hall board in real Chromium (Debian's, driven by Playwright) against a server process."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import async_playwright

from .conftest import ServerProcess, bearer

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture
async def browser():
    assert shutil.which("chromium") or Path(CHROMIUM).exists(), \
        "Debian's chromium is missing: bash .ci/run installs it (apt-get install chromium)"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        await browser.close()


def counter_text(counter: str) -> str:
    return f"document.querySelector('[data-counter=\"{counter}\"] .number').textContent"


async def test_board_shows_a_called_token_goes_offline_and_recovers(server_process: ServerProcess, browser,
                                                                     tmp_path: Path):
    server_process.start()
    # Playwright's wait_for_function evaluates strings, which the page's CSP forbids (as it
    # should); the test bypasses CSP for itself, and the header is checked on its own below.
    page = await browser.new_page(viewport={"width": 1920, "height": 1080}, bypass_csp=True)
    await page.goto(f"{server_process.url}/board/S01")
    await page.wait_for_function("document.body.dataset.state === 'live'", timeout=10_000)
    loaded = await page.evaluate(
        "document.fonts.load('32px \"Noto Sans Devanagari\"', 'बिल भुगतान').then(f => f.length)")
    assert loaded >= 1                                         # the shipped Devanagari webfont
    assert "किदवई नगर" in await page.text_content("#name-hi")
    # The QR code that opens this substation's phone page is there and drawn.
    assert await page.evaluate("document.getElementById('phone-qr').naturalWidth") > 100
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server_process.url}/q/S01/qr.svg") as resp:
            assert resp.status == 200 and resp.content_type == "image/svg+xml"

    headers = bearer(server_process.admin_key)
    async with aiohttp.ClientSession(headers=headers) as session:
        for _ in range(3):
            async with session.post(f"{server_process.url}/api/v1/substations/S01/tokens",
                                    json={"service": "bill_payment"}) as resp:
                assert resp.status == 201
        started = time.monotonic()
        async with session.post(f"{server_process.url}/api/v1/counters/S01-C2/next") as resp:
            assert (await resp.json())["token"]["number"] == "B-001"
    await page.wait_for_function(f"{counter_text('S01-C2')} === 'B-001'", timeout=1_000)
    shown_after = time.monotonic() - started
    assert shown_after < 1.0
    assert "B-001" in await page.text_content("#called-banner")
    assert "2 waiting" in await page.text_content("#waiting-count")
    await page.screenshot(path=str(tmp_path / "board-live.png"))

    server_process.kill()                                      # the link dies
    await page.wait_for_function("document.body.dataset.state === 'offline'", timeout=10_000)
    assert await page.is_visible("#offline-banner")
    await page.screenshot(path=str(tmp_path / "board-offline.png"))

    server_process.start()                                     # same port, same data
    await page.wait_for_function("document.body.dataset.state === 'live'", timeout=30_000)
    assert await page.evaluate(counter_text("S01-C2")) == "B-001"
    assert not await page.is_visible("#offline-banner")
    await page.screenshot(path=str(tmp_path / "board-recovered.png"))


async def test_board_of_an_unknown_substation_is_a_json_404(server_process: ServerProcess):
    server_process.start()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server_process.url}/board/S99") as resp:
            assert resp.status == 404 and (await resp.json())["error"]["code"] == "substation_not_found"
        async with session.get(f"{server_process.url}/board/S01") as resp:
            assert resp.status == 200 and "default-src 'self'" in resp.headers["Content-Security-Policy"]
