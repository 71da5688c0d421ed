"""The consumers' phone page (/q) in real Chromium (Debian's, driven by Playwright) at a phone's
viewport, against the whole app served in-process on a loopback port with the test clock (the
month-end rush of 2025-11-25, so the slot screen has a quieter day to recommend)."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest

from counter_server.app import create_app
from counter_server.appkeys import KEYS
from counter_server.config import Settings

from .conftest import Clock, bearer
from .test_board_browser import browser  # noqa: F401 - the Chromium fixture

PHONE = {"viewport": {"width": 360, "height": 740}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
ACCOUNT = "KAN-20431877"
MOBILE = "+91 98765 43210"
WAIT_MS = 5_000


@dataclass
class Site:
    url: str
    admin: str
    cashier: str      # the cashier at counter S01-C1
    clock: Clock

    async def post(self, path: str, key: str, method: str = "POST", **kwargs) -> dict:
        async with aiohttp.ClientSession(headers=bearer(key)) as session:
            async with session.request(method, f"{self.url}{path}", **kwargs) as resp:
                assert resp.status in (200, 201), await resp.text()
                return await resp.json()

    async def walk_ins(self, n: int) -> None:
        for _ in range(n):
            await self.post("/api/v1/substations/S01/tokens", self.admin, json={"service": "bill_payment"})

    async def serve_next(self) -> dict:
        """Counter S01-C1 calls the next token and serves it (90 s, the scenario's mean)."""
        token = (await self.post("/api/v1/counters/S01-C1/next", self.cashier))["token"]
        await self.post(f"/api/v1/tokens/{token['id']}/start", self.cashier)
        self.clock.now += 90
        await self.post(f"/api/v1/tokens/{token['id']}/complete", self.cashier)
        return token


@pytest.fixture
def settings(tmp_path: Path, scenario, clock: Clock) -> Settings:
    roomy = replace(scenario, phones=replace(scenario.phones, takes_per_hour_per_address=1000))
    return Settings(data_dir=tmp_path / "data", scenario=roomy, clock=clock, rate_limit_per_s=0,
                    write_admin_key=False)


@pytest.fixture
async def site(aiohttp_server, settings: Settings, clock: Clock) -> Site:
    app = create_app(settings)
    server = await aiohttp_server(app, host="127.0.0.1")
    admin, _ = await app[KEYS].create("admin")
    cashier, _ = await app[KEYS].create("cashier", "S01-C1")
    return Site(url=str(server.make_url("")).rstrip("/"), admin=admin, cashier=cashier, clock=clock)


@pytest.fixture
async def phone(browser):  # noqa: F811
    # Playwright's wait_for_function evaluates strings, which the page's CSP forbids (as it
    # should); these pages bypass CSP for the test, and test_the_page_obeys_its_csp runs without.
    context = await browser.new_context(**PHONE, bypass_csp=True)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    await context.close()
    assert errors == []


async def shot(page, tmp_path: Path, name: str) -> None:
    """A screenshot of the whole page; copied to $PHONE_SHOTS (a folder) to look at."""
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    if os.environ.get("PHONE_SHOTS"):
        Path(os.environ["PHONE_SHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(os.environ["PHONE_SHOTS"]) / path.name)


async def fill_form(page, account: str = ACCOUNT, mobile: str = MOBILE) -> None:
    await page.wait_for_selector("#services input[type=radio]", timeout=WAIT_MS)
    await page.fill("#account", account)
    await page.fill("#phone", mobile)


async def text(page, selector: str) -> str:
    return " ".join((await page.text_content(selector) or "").split())


async def no_overflow(page) -> None:
    """Nothing is wider than the phone's screen."""
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360


async def test_a_remote_token_follows_the_queue_live_to_leave_now_and_the_counter(site: Site, phone, tmp_path):
    await site.walk_ins(40)                       # 40 ahead at 90 s over 4 counters: ~15 min
    await phone.goto(f"{site.url}/q")
    await phone.wait_for_selector(".station[data-substation=S01]", timeout=WAIT_MS)
    assert await phone.locator(".station").count() == 10
    assert "किदवई नगर" in await text(phone, ".station[data-substation=S01]")
    await shot(phone, tmp_path, "1-list")
    await no_overflow(phone)

    await phone.tap(".station[data-substation=S01]")
    await phone.wait_for_function("document.getElementById('st-en').textContent === 'Kidwai Nagar'",
                                  timeout=WAIT_MS)
    assert "40 waiting" in await text(phone, "#st-meta")
    await fill_form(phone)
    await shot(phone, tmp_path, "2-take")
    await no_overflow(phone)
    await phone.tap("#take")
    await phone.wait_for_url("**/q/t/*", timeout=WAIT_MS)
    await phone.wait_for_function("document.getElementById('t-number').textContent === 'B-041'", timeout=WAIT_MS)
    assert await text(phone, "#t-ahead") == "40"
    assert await text(phone, "#t-account") == "••••1877"
    shown = await phone.inner_text("body")
    assert "20431877" not in shown and "98765" not in shown                # never the full numbers
    await phone.wait_for_function("document.body.dataset.link === 'live'", timeout=WAIT_MS)

    # a 5-minute trip: the page redials with it and the advice says when to set off
    await phone.select_option("#travel", "5")
    await phone.wait_for_selector("#t-leave:not([hidden])", timeout=WAIT_MS)
    assert "Leave in about" in await text(phone, "#t-leave")
    assert not await phone.is_visible("#leave-now")
    await phone.evaluate("window.notReloaded = true")
    await shot(phone, tmp_path, "3-token-waiting")
    await no_overflow(phone)

    for _ in range(5):                             # the cashier calls and serves others
        await site.serve_next()
    await phone.wait_for_function("document.getElementById('t-ahead').textContent === '35'", timeout=WAIT_MS)
    assert await phone.evaluate("window.notReloaded === true")           # live, not reloaded

    for _ in range(16):                            # 19 ahead: ~7 min, less than trip + margin
        await site.serve_next()
    await phone.wait_for_selector("#leave-now:not([hidden])", timeout=WAIT_MS)
    assert await text(phone, "#leave-now") == "अभी निकलें Leave now"
    assert "Leave now" in await phone.title()
    await shot(phone, tmp_path, "4-token-leave-now")

    for _ in range(19):
        await site.serve_next()
    await phone.wait_for_function("document.getElementById('t-ahead').textContent === '0'", timeout=WAIT_MS)
    called = (await site.post("/api/v1/counters/S01-C1/next", site.cashier))["token"]
    assert called["number"] == "B-041"
    await phone.wait_for_selector("#called:not([hidden])", timeout=WAIT_MS)
    assert "Go to counter S01-C1 now" in await text(phone, "#called")
    assert "काउंटर S01-C1 पर अभी जाएँ" in await text(phone, "#called")
    assert not await phone.is_visible("#leave-now")
    assert "S01-C1" in await phone.title()
    assert await phone.evaluate("window.notReloaded === true")
    await shot(phone, tmp_path, "5-token-called")
    await no_overflow(phone)


async def test_booking_a_slot_nudges_to_the_recommended_quiet_day(site: Site, phone, tmp_path):
    await phone.goto(f"{site.url}/q/S01")
    await fill_form(phone)
    await phone.tap("#to-slots")
    chosen = phone.locator(".day[aria-pressed=true]")
    await chosen.wait_for(timeout=WAIT_MS)
    assert await chosen.get_attribute("data-day") == "2025-12-01"        # the first quiet day
    assert "rec" in (await chosen.get_attribute("class")).split()
    assert "rush" not in (await chosen.get_attribute("class")).split()
    today = phone.locator(".day[data-day='2025-11-25']")
    assert "rush" in (await today.get_attribute("class")).split()
    assert "Rush" in await today.text_content()
    assert "Recommended: short lines" in await text(phone, "#day-note")
    assert await phone.locator("#book").is_disabled()
    await shot(phone, tmp_path, "6-slots")
    await no_overflow(phone)

    await phone.tap("#slots .slot[data-at='2025-12-01T09:30:00+05:30']")
    assert "09:30" in await text(phone, "#book")
    await phone.tap(".day[data-day='2025-11-25']")                      # look at the rush day
    assert "Month-end rush" in await text(phone, "#day-note")
    assert await phone.locator("#book").is_disabled()                    # the choice went with the day
    await phone.tap(".day[data-day='2025-12-01']")
    await phone.tap("#slots .slot[data-at='2025-12-01T09:30:00+05:30']")
    await shot(phone, tmp_path, "7-slot-chosen")
    await phone.tap("#book")
    await phone.wait_for_url("**/q/t/*", timeout=WAIT_MS)
    await phone.wait_for_function("document.body.dataset.status === 'booked'", timeout=WAIT_MS)
    assert await text(phone, "#t-number") == "09:30"
    booking = await text(phone, "#t-booking")
    assert "Come on Mon 1 Dec at 09:30" in booking and "given when your slot starts" in booking
    assert "Slot booked" in await text(phone, "#t-status")
    assert not await phone.is_visible("#f-ahead")
    await shot(phone, tmp_path, "8-booked")
    await no_overflow(phone)

    token_url = phone.url
    await phone.goto(f"{site.url}/q")                                    # the way back to it
    await phone.wait_for_selector("#mine:not([hidden])", timeout=WAIT_MS)
    assert token_url.endswith(await phone.get_attribute("#mine", "href"))


async def test_on_a_closed_day_the_page_says_so_and_offers_slots_on_open_days(site: Site, phone, tmp_path):
    site.clock.now = datetime.fromisoformat("2025-11-30T11:00:00+05:30").timestamp()    # a Sunday
    await phone.goto(f"{site.url}/q")
    first = phone.locator("#stations a").first
    await first.wait_for(timeout=WAIT_MS)
    card = " ".join((await first.text_content()).split())
    assert "आज बंद" in card and "closed today" in card and "opens Mon 1 Dec 09:30" in card
    assert await phone.is_visible("#online")                         # every hall shut: pay online
    await shot(phone, tmp_path, "13-closed-day-list")
    await phone.goto(f"{site.url}/q/S01")
    await fill_form(phone)
    assert "closed today" in await text(phone, "#st-wait")
    assert not await phone.is_visible("#take")                       # no token today ...
    await phone.tap("#to-slots")                                     # ... but a slot on an open day
    await phone.wait_for_selector(".day[aria-pressed=true]", timeout=WAIT_MS)
    days = await phone.locator(".day").evaluate_all("days => days.map(d => d.dataset.day)")
    assert days[0] == "2025-12-01" and "2025-12-07" not in days
    await shot(phone, tmp_path, "14-closed-day-slots")
    await no_overflow(phone)


async def test_errors_are_shown_in_words_and_name_the_field(site: Site, phone, tmp_path):
    await phone.goto(f"{site.url}/q/S01")
    await fill_form(phone, mobile="12")                                  # caught on the phone
    await phone.tap("#take")
    await phone.wait_for_selector("#alert:not([hidden])", timeout=WAIT_MS)
    assert "bad" in (await phone.get_attribute("#phone", "class")).split()
    assert await phone.is_visible("#phone-err") and not await phone.is_visible("#account-err")
    assert "10 digits" in await text(phone, "#phone-err")
    await shot(phone, tmp_path, "9-bad-phone")

    await fill_form(phone, account="NA-00000001")                        # refused by the server
    assert not await phone.is_visible("#phone-err")
    await phone.tap("#take")
    await phone.wait_for_selector("#account.bad", timeout=WAIT_MS)
    assert "no such account" in await text(phone, "#alert")
    assert "खाता संख्या" in await text(phone, "#alert")
    assert "bad" not in (await phone.get_attribute("#phone", "class") or "").split()

    await fill_form(phone)
    await phone.tap("#take")
    await phone.wait_for_url("**/q/t/*", timeout=WAIT_MS)
    first = phone.url
    await phone.goto(f"{site.url}/q/S01")
    await fill_form(phone)
    await phone.tap("#take")
    await phone.wait_for_selector("#alert:not([hidden]) #existing", timeout=WAIT_MS)
    assert "already" in await text(phone, "#alert")
    assert "पहले से" in await text(phone, "#alert")
    await shot(phone, tmp_path, "10-already-holding")
    await no_overflow(phone)
    await phone.tap("#existing")
    await phone.wait_for_url(first, timeout=WAIT_MS)

    phone.once("dialog", lambda dialog: dialog.accept())
    await phone.wait_for_selector("#cancel:not([hidden])", timeout=WAIT_MS)
    await phone.tap("#cancel")
    await phone.wait_for_function("document.body.dataset.status === 'cancelled'", timeout=WAIT_MS)
    assert "Cancelled" in await text(phone, "#t-status")
    assert await phone.get_attribute("#new-token", "href") == "/q/S01"
    assert not await phone.is_visible("#cancel")
    await shot(phone, tmp_path, "11-cancelled")

    # the door is shut for today (a daily cap ops set): nearby substations, online, a slot
    await site.post("/api/v1/ops/substations/S01/admission", site.admin, method="PUT",
                    json={"admission": True, "daily_cap": 1})
    await phone.tap("#new-token")
    await fill_form(phone, account="KAN-55500001", mobile="9812345678")
    await phone.tap("#take")
    await phone.wait_for_selector("#refusal:not([hidden])", timeout=WAIT_MS)
    assert "सारे टोकन दिए जा चुके" in await text(phone, "#alert")   # the cap, in Hindi too
    nearby = await phone.locator("#refusal .alts a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert nearby and all(href.startswith("/q/S") and href != "/q/S01" for href in nearby)
    assert "online" in (await text(phone, "#refusal")).lower()
    await shot(phone, tmp_path, "12-cannot-serve-today")
    await no_overflow(phone)
    await phone.tap("#refusal-book")
    await phone.wait_for_selector(".day[aria-pressed=true]", timeout=WAIT_MS)
    assert await phone.evaluate("document.body.dataset.screen") == "slots"


async def test_hindi_renders_in_the_webfont_and_the_page_obeys_its_csp(site: Site, browser):  # noqa: F811
    context = await browser.new_context(**PHONE)                         # CSP enforced
    page = await context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    page.on("pageerror", lambda exc: console.append(str(exc)))
    await page.goto(f"{site.url}/q/S01")
    await page.wait_for_selector("#services input[type=radio]", timeout=WAIT_MS)
    loaded = await page.evaluate(
        "document.fonts.load('17px \"Noto Sans Devanagari\"', 'केंद्र चुनें').then(f => f.length)")
    assert loaded >= 1
    faces = await page.evaluate("""() => { const seen = [];
        document.fonts.forEach(f => { if (f.status === 'loaded') seen.push(f.family); }); return seen; }""")
    assert any("Noto Sans Devanagari" in family for family in faces)
    width = await page.evaluate("document.querySelector('#st-hi').getBoundingClientRect().width")
    assert width > 40 and await page.text_content("#st-hi") == "किदवई नगर"
    assert not [line for line in console if "Content Security Policy" in line or "Refused" in line], console
    await context.close()


async def test_the_form_is_ready_quickly_over_a_slow_mobile_link(site: Site, phone):
    """A cheap phone on a poor 3G link (400 ms round trips, 50 KB/s down): the substation's
    form is ready to fill within a few seconds, on little data (the Hindi webfont follows
    later and is not waited for: the phone's own Devanagari font shows until it comes)."""
    cdp = await phone.context.new_cdp_session(phone)
    await cdp.send("Network.enable")
    await cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 400, "downloadThroughput": 50 * 1024, "uploadThroughput": 20 * 1024})
    received: dict[str, int] = {}
    cdp.on("Network.loadingFinished", lambda e: received.__setitem__(e["requestId"], e["encodedDataLength"]))
    started = time.monotonic()
    await phone.goto(f"{site.url}/q/S01", wait_until="commit")
    await phone.wait_for_function(
        "document.getElementById('account') && document.getElementById('account').offsetParent !== null"
        " && document.body.textContent.includes('Kidwai Nagar')", timeout=15_000)
    ready_s = time.monotonic() - started
    page_bytes = sum(received.values())
    print(f"form ready after {ready_s:.1f} s over the slow link, {page_bytes / 1024:.0f} KB so far")
    assert ready_s < 6.0
    assert page_bytes < 40 * 1024          # the page goes out compressed (49 KB as files)
