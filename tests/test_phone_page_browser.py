"""The consumers' phone page (/q) in real Chromium (Debian's, driven by Playwright) at a phone's
viewport, against the whole app served in-process on a loopback port with the test clock (the
month-end rush of 2025-11-25, so the slot screen has a quieter day to recommend).

The steps a consumer goes through run on both scenarios (the built-in one open all day, and
one unlike it): halls, services and counters are taken from the scenario, never by name."""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from counter_server.app import create_app
from counter_server.appkeys import KEYS
from counter_server.config import Scenario, Settings, Substation, load_scenario

from testkit.api import Clock, bearer
from testkit.scenarios import LAKESIDE, paid_service
from testkit.waiting import wait_until_async

PHONE = {"viewport": {"width": 360, "height": 740}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
ACCOUNT = "KAN-20431877"
MOBILE = "+91 98765 43210"
WAIT_MS = 5_000
SLOW_3G = {"offline": False, "latency": 400, "downloadThroughput": 50 * 1024, "uploadThroughput": 20 * 1024}


@dataclass
class Site:
    url: str
    app: web.Application
    admin: str
    clock: Clock
    scenario: Scenario
    cashiers: dict[str, str] = field(default_factory=dict)

    async def cashier(self, counter: str) -> str:
        if counter not in self.cashiers:
            self.cashiers[counter], _ = await self.app[KEYS].create("cashier", counter)
        return self.cashiers[counter]

    async def post(self, path: str, key: str, method: str = "POST", **kwargs) -> dict:
        async with aiohttp.ClientSession(headers=bearer(key)) as session:
            async with session.request(method, f"{self.url}{path}", **kwargs) as resp:
                assert resp.status in (200, 201), await resp.text()
                return await resp.json()

    async def public(self, path: str) -> dict:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.url}{path}") as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json()

    async def walk_ins(self, sid: str, service: str, n: int) -> None:
        for _ in range(n):
            await self.post(f"/api/v1/substations/{sid}/tokens", self.admin, json={"service": service})

    async def serve_next(self, counter: str) -> dict:
        """The counter calls the next token and serves it in its service's mean time."""
        key = await self.cashier(counter)
        token = (await self.post(f"/api/v1/counters/{counter}/next", key))["token"]
        await self.post(f"/api/v1/tokens/{token['id']}/start", key)
        self.clock.now += self.scenario.services[token["service"]].mean_service_s
        await self.post(f"/api/v1/tokens/{token['id']}/complete", key)
        return token

    async def listed(self, sid: str) -> dict:
        return next(s for s in (await self.public("/api/v1/public/substations"))["substations"] if s["id"] == sid)

    async def service_estimate(self, sid: str, service: str) -> dict:
        return next(s for s in (await self.listed(sid))["services"] if s["id"] == service)["estimate"]


def paid_hall(scenario: Scenario) -> Substation:
    """The hall with the most counters serving the paid service."""
    paid = paid_service(scenario)
    return max((s for s in scenario.substations.values() if paid in s.services),
               key=lambda s: (sum(paid in c.services for c in s.counters), s.id))


def paid_counter(hall: Substation, scenario: Scenario) -> str:
    return next(c.id for c in hall.counters if paid_service(scenario) in c.services)


def other_service(scenario: Scenario) -> tuple[Substation, str]:
    """A hall offering the paid service and another one some counter there serves."""
    paid = paid_service(scenario)
    for hall in scenario.substations.values():
        served = [s for s in hall.services if s != paid and any(s in c.services for c in hall.counters)]
        if paid in hall.services and served:
            return hall, served[0]
    raise AssertionError("the scenario has no hall with a second service")


def wait_words(estimate: dict) -> str:
    """What the page writes for a wait range (JavaScript's rounding: half up)."""
    low = math.floor(estimate["p50_s"] / 60 + 0.5)
    high = max(low, math.floor(estimate["p90_s"] / 60 + 0.5))
    if high < 1:
        return "no wait"
    return f"{low} min" if low == high else f"{low}–{high} min"


def phone_settings(tmp_path: Path, scenario: Scenario, clock: Clock) -> Settings:
    roomy = replace(scenario, phones=replace(scenario.phones, takes_per_hour_per_address=1000))
    return Settings(data_dir=tmp_path / "data", scenario=roomy, clock=clock, rate_limit_per_s=0,
                    write_admin_key=False)


async def serve_site(aiohttp_server, settings: Settings, clock: Clock) -> Site:
    app = create_app(settings)
    server = await aiohttp_server(app, host="127.0.0.1")
    admin, _ = await app[KEYS].create("admin")
    return Site(url=str(server.make_url("")).rstrip("/"), app=app, admin=admin, clock=clock,
                scenario=settings.scenario)


@pytest.fixture
async def site(aiohttp_server, tmp_path: Path, scenario_file: Path, clock: Clock) -> Site:
    """Each scenario in turn, open all day."""
    return await serve_site(aiohttp_server, phone_settings(tmp_path, load_scenario(scenario_file), clock), clock)


@pytest.fixture
async def kanpur(aiohttp_server, tmp_path: Path, scenario: Scenario, clock: Clock) -> Site:
    """The built-in scenario as shipped (its hours, its closed Sundays)."""
    return await serve_site(aiohttp_server, phone_settings(tmp_path, scenario, clock), clock)


@pytest.fixture
async def phone(browser):
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


def scenario_tag(site: Site) -> str:
    return "lakeside" if site.scenario.name != load_scenario().name else "builtin"


async def fill_form(page, account: str = ACCOUNT, mobile: str = MOBILE, trip: str | None = "20") -> None:
    await page.wait_for_selector("#services input[type=radio]", timeout=WAIT_MS)
    await page.fill("#account", account)
    await page.fill("#phone", mobile)
    if trip is not None:
        await page.select_option("#trip", trip)


async def text(page, selector: str) -> str:
    return " ".join((await page.text_content(selector) or "").split())


async def no_overflow(page) -> None:
    """Nothing is wider than the phone's screen."""
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360


async def test_a_remote_token_follows_the_queue_live_to_leave_now_and_the_counter(site: Site, phone, tmp_path):
    scenario, tag = site.scenario, scenario_tag(site)
    hall, paid = paid_hall(scenario), paid_service(scenario)
    counter = scenario.counters[paid_counter(hall, scenario)]
    await site.walk_ins(hall.id, paid, 40)
    await phone.goto(f"{site.url}/q")
    card = f".station[data-substation='{hall.id}']"
    await phone.wait_for_selector(card, timeout=WAIT_MS)
    assert await phone.locator(".station").count() == len(scenario.substations)
    assert hall.name_hi in await text(phone, card)
    assert scenario.name in await text(phone, ".brand")              # the utility's own name on top
    assert f"40 waiting for {scenario.services[paid].name}" in await text(phone, card)
    await shot(phone, tmp_path, f"{tag}-1-list")
    await no_overflow(phone)

    await phone.tap(card)
    await phone.wait_for_function(f"document.getElementById('st-en').textContent === {hall.name!r}", timeout=WAIT_MS)
    await fill_form(phone, trip=None)
    assert await phone.input_value("#trip") == ""                   # asked, not assumed
    await phone.tap("#take")                                         # the trip comes first
    await phone.wait_for_selector("#trip-err:not([hidden])", timeout=WAIT_MS)
    assert "bad" in (await phone.get_attribute("#trip", "class")).split()
    assert phone.url.endswith(f"/q/{hall.id}?service={paid}")
    await phone.select_option("#trip", "5")
    assert not await phone.is_visible("#trip-err")
    assert not await phone.is_visible("#trip-advice")               # 5 min away, a long wait
    await shot(phone, tmp_path, f"{tag}-2-form-with-trip")
    await no_overflow(phone)
    await phone.tap("#take")
    await phone.wait_for_url("**/q/t/*", timeout=WAIT_MS)
    number = f"{scenario.services[paid].letter}-041"
    await phone.wait_for_function(f"document.getElementById('t-number').textContent === {number!r}", timeout=WAIT_MS)
    assert await text(phone, "#t-ahead") == "40"
    assert await text(phone, "#t-account") == "••••1877"
    assert await phone.input_value("#travel") == "5"                 # the trip said on the form
    shown = await phone.inner_text("body")
    assert "20431877" not in shown and "98765" not in shown          # never the full numbers
    await phone.wait_for_function("document.body.dataset.link === 'live'", timeout=WAIT_MS)
    await phone.wait_for_selector("#t-leave:not([hidden])", timeout=WAIT_MS)
    assert "Leave in about" in await text(phone, "#t-leave")
    assert not await phone.is_visible("#leave-now")
    await phone.evaluate("window.notReloaded = true")
    await shot(phone, tmp_path, f"{tag}-3-token-waiting")
    await no_overflow(phone)

    link = phone.url.rsplit("/", 1)[1]
    while not (await site.public(f"/api/v1/public/tokens/{link}?travel_min=5"))["token"]["leave"]["leave_now"]:
        await site.serve_next(counter.id)                            # others are called and served
    await phone.wait_for_selector("#leave-now:not([hidden])", timeout=WAIT_MS)
    assert await text(phone, "#leave-now") == "अभी निकलें Leave now"
    assert "Leave now" in await phone.title()
    assert await phone.evaluate("window.notReloaded === true")       # live, not reloaded
    await shot(phone, tmp_path, f"{tag}-4-token-leave-now")

    while (await site.public(f"/api/v1/public/tokens/{link}"))["token"]["ahead"] > 0:
        await site.serve_next(counter.id)
    called = (await site.post(f"/api/v1/counters/{counter.id}/next", await site.cashier(counter.id)))["token"]
    assert called["number"] == number
    await phone.wait_for_selector("#called:not([hidden])", timeout=WAIT_MS)
    banner = await text(phone, "#called")
    # The hall board's name for the counter, in both languages; never its id.
    assert f"Go to {counter.label} now" in banner and f"{counter.label_hi} पर अभी जाएँ" in banner
    assert counter.id not in banner and counter.label in await phone.title()
    assert not await phone.is_visible("#leave-now")
    assert await phone.evaluate("window.notReloaded === true")
    await shot(phone, tmp_path, f"{tag}-5-token-called")
    await no_overflow(phone)


async def test_the_wait_shown_is_the_chosen_services_on_the_list_and_the_form(site: Site, phone, tmp_path):
    scenario = site.scenario
    hall, other = other_service(scenario)
    paid = paid_service(scenario)
    await site.walk_ins(hall.id, other, 4)
    other_wait = wait_words(await site.service_estimate(hall.id, other))
    paid_wait = wait_words(await site.service_estimate(hall.id, paid))
    assert other_wait != paid_wait
    card = f".station[data-substation='{hall.id}']"
    await phone.goto(f"{site.url}/q")
    await phone.wait_for_selector(card, timeout=WAIT_MS)
    assert await phone.is_checked(f"#list-services input[value='{paid}']")          # the paid service first
    assert paid_wait in await text(phone, f"{card} .wait")
    assert f"0 waiting for {scenario.services[paid].name}" in await text(phone, card)
    await phone.tap(f"#list-services label:has(input[value='{other}'])")
    await phone.wait_for_function(
        f"document.querySelector(\"{card} .wait\").textContent.includes({other_wait!r})", timeout=WAIT_MS)
    assert f"4 waiting for {scenario.services[other].name}" in await text(phone, card)
    assert scenario.services[other].name in await text(phone, "#list-for")
    await shot(phone, tmp_path, f"{scenario_tag(site)}-list-for-{other}")
    await no_overflow(phone)

    await phone.tap(card)                                             # the form keeps the choice
    await phone.wait_for_selector("#services input[type=radio]", timeout=WAIT_MS)
    assert await phone.is_checked(f"#services input[value='{other}']")
    assert await text(phone, "#st-wait") == other_wait.replace(" min", " मिनट · min") or other_wait in await text(phone, "#st-wait")
    assert scenario.services[other].name in await text(phone, "#wait-for")
    await phone.tap(f"#services label:has(input[value='{paid}'])")
    await phone.wait_for_function(
        f"document.getElementById('wait-for').textContent.includes({scenario.services[paid].name!r})", timeout=WAIT_MS)
    assert paid_wait.split(" ")[0] in await text(phone, "#st-wait")
    assert other_wait not in await text(phone, "#st-wait")


async def test_a_trip_longer_than_the_wait_is_said_with_a_later_slot_and_other_halls(site: Site, phone, tmp_path):
    scenario, tag = site.scenario, scenario_tag(site)
    hall, paid = paid_hall(scenario), paid_service(scenario)
    while ((await site.service_estimate(hall.id, paid))["p50_s"] or 0) < 420:   # a few minutes' wait
        await site.walk_ins(hall.id, paid, 1)
    elsewhere = next(s for s in site.scenario.substations.values() if s.id != hall.id and paid in s.services)
    while ((await site.service_estimate(elsewhere.id, paid))["p50_s"] or 0) < 35 * 60:   # a line longer than the trip
        await site.walk_ins(elsewhere.id, paid, 5)
    await phone.goto(f"{site.url}/q/{hall.id}")
    await fill_form(phone, trip="30")
    advice = phone.locator("#trip-advice")
    await advice.wait_for(state="visible", timeout=WAIT_MS)
    words = " ".join((await advice.text_content()).split())
    assert "Your trip (30 min) is longer than the likely wait here" in words
    assert "called before you arrive" in words and "रास्ता (30 मिनट)" in words
    book = phone.locator("#advice-book")
    await book.wait_for(timeout=WAIT_MS)
    slot_at = await book.get_attribute("data-at")
    assert datetime.fromisoformat(slot_at).timestamp() >= site.clock.now + 30 * 60   # after arriving
    assert "(after you arrive)" in await text(phone, "#advice-book")
    others = await phone.locator("#advice-others a").evaluate_all("links => links.map(a => a.dataset.substation)")
    assert others == [elsewhere.id]                                   # the one whose line outlasts the trip
    await shot(phone, tmp_path, f"{tag}-6-trip-longer-than-wait")
    await no_overflow(phone)

    await phone.select_option("#trip", "5")                          # nearby: no advice
    await advice.wait_for(state="hidden", timeout=WAIT_MS)
    await phone.select_option("#trip", "30")
    await book.wait_for(timeout=WAIT_MS)
    await book.tap()                                                  # the slot, chosen already
    await phone.wait_for_selector(f".slot[aria-pressed=true][data-at='{slot_at}']", timeout=WAIT_MS)
    assert await phone.locator("#book").is_enabled()

    await phone.goto(f"{site.url}/q/{hall.id}")                       # the trip is remembered
    await phone.wait_for_selector("#services input[type=radio]", timeout=WAIT_MS)
    assert await phone.input_value("#trip") == "30"


async def test_a_hall_with_every_counter_closed_says_so_and_counts_name_their_service(site: Site, phone, tmp_path):
    scenario, tag = site.scenario, scenario_tag(site)
    hall, other = other_service(scenario)
    paid = paid_service(scenario)
    await site.walk_ins(hall.id, paid, 3)
    for counter in hall.counters:
        await site.post(f"/api/v1/counters/{counter.id}/close", site.admin)
    await phone.goto(f"{site.url}/q")
    card = f".station[data-substation='{hall.id}']"
    await phone.wait_for_selector(card, timeout=WAIT_MS)
    words = await text(phone, card)
    assert await phone.get_attribute(card, "data-state") == "counters_closed"
    assert "counters closed" in words and "काउंटर बंद" in words
    assert f"no counter open now (hours {hall.opens:%H:%M}–{hall.closes:%H:%M})" in words
    assert f"3 waiting for {scenario.services[paid].name}" in words
    assert "open 00:00" not in words and "· open" not in words       # no "open" beside "closed"
    last = await phone.locator(".station").evaluate_all("cards => cards.map(c => c.dataset.substation)")
    assert last.index(hall.id) > 0 or len(last) == 1                  # shut halls after open ones
    await shot(phone, tmp_path, f"{tag}-7-all-counters-closed")
    await no_overflow(phone)
    await phone.tap(f"#list-services label:has(input[value='{other}'])")
    await phone.wait_for_function(
        f"document.querySelector(\"{card}\").textContent.includes('0 waiting for {scenario.services[other].name}')",
        timeout=WAIT_MS)
    await phone.tap(card)
    await phone.wait_for_selector("#services input[type=radio]", timeout=WAIT_MS)
    assert "counters closed" in await text(phone, "#st-wait")
    assert "no counter open now" in await text(phone, "#st-meta")


async def test_a_hall_without_the_paid_service_lists_and_serves_its_own(aiohttp_server, tmp_path, clock, phone):
    scenario = load_scenario(LAKESIDE)
    site = await serve_site(aiohttp_server, phone_settings(tmp_path, scenario, clock), clock)
    paid = paid_service(scenario)
    hall = next(s for s in scenario.substations.values() if paid not in s.services)
    own = hall.services[0]
    await phone.goto(f"{site.url}/q")
    card = f".station[data-substation='{hall.id}']"
    await phone.wait_for_selector(card, timeout=WAIT_MS)
    assert await phone.get_attribute(card, "data-state") == "not_offered"
    assert f"offers {scenario.services[own].name}" in await text(phone, card)
    order = await phone.locator(".station").evaluate_all("cards => cards.map(c => c.dataset.substation)")
    assert order[-1] == hall.id                                       # after those that offer it
    await phone.tap(f"#list-services label:has(input[value='{own}'])")
    await phone.wait_for_function(
        f"document.querySelector(\"{card}\").dataset.state === 'open'", timeout=WAIT_MS)
    await phone.tap(card)
    await fill_form(phone, trip="5")
    assert await phone.is_checked(f"#services input[value='{own}']")
    await phone.tap("#take")
    await phone.wait_for_url("**/q/t/*", timeout=WAIT_MS)
    await phone.wait_for_function("document.getElementById('t-number').textContent.includes('-')", timeout=WAIT_MS)
    assert (await text(phone, "#t-number")).startswith(scenario.services[own].letter + "-")
    assert scenario.services[own].name in await text(phone, "#t-service")


async def shots_at(page, tmp_path: Path, name: str) -> None:
    """The page as a small phone (390x844) and a laptop (1366x768) show it, then back to the phone."""
    for width, height in ((390, 844), (1366, 768)):
        await page.set_viewport_size({"width": width, "height": height})
        await shot(page, tmp_path, f"{name}-{width}x{height}")
        assert await page.evaluate("document.documentElement.scrollWidth") <= width
    await page.set_viewport_size(PHONE["viewport"])


async def take_from_phone(site: Site, sid: str, service: str, account: str, mobile: str) -> str:
    """A token taken as the page takes it; its link."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{site.url}/api/v1/public/substations/{sid}/tokens",
                                json={"service": service, "account": account, "phone": mobile}) as resp:
            assert resp.status == 201, await resp.text()
            return (await resp.json())["url"].rsplit("/", 1)[1]


async def test_an_sms_is_offered_only_with_a_gateway_and_stopping_it_erases_the_number(
        aiohttp_server, tmp_path, clock, phone):
    base = load_scenario(LAKESIDE)
    scenario = replace(base, phones=replace(base.phones, sms_near_ahead=2, sms_near_minutes=15))   # not the defaults
    site = await serve_site(aiohttp_server, phone_settings(tmp_path, scenario, clock), clock)
    hall, paid = paid_hall(scenario), paid_service(scenario)
    await site.walk_ins(hall.id, paid, 4)
    link = await take_from_phone(site, hall.id, paid, ACCOUNT, MOBILE)
    sms_path = f"/api/v1/public/tokens/{link}/sms"

    await phone.goto(f"{site.url}/q/t/{link}")                       # no gateway: nothing is promised
    await phone.wait_for_function("document.body.dataset.sms === 'none'", timeout=WAIT_MS)
    assert not await phone.is_visible("#t-sms")
    assert "SMS" not in await phone.inner_text("body")

    async def taken(request: web.Request) -> web.Response:
        return web.Response()

    gateway = web.Application()                                      # the utility's SMS gateway
    gateway.router.add_post("/in", taken)
    receiver = await aiohttp_server(gateway, host="127.0.0.1")
    hook = (await site.post("/api/v1/ops/webhooks", site.admin, json={
        "url": str(receiver.make_url("/in")), "events": ["token.near", "token.called"]}))["webhook"]
    await phone.reload()
    await phone.wait_for_function("document.body.dataset.sms === 'offered'", timeout=WAIT_MS)
    offer = await text(phone, "#t-sms")
    assert "Get an SMS when your turn is near" in offer and "बारी पास आने पर SMS पाएँ" in offer
    assert "When 2 people are ahead or about 15 minutes remain, and when you are called." in offer
    assert "आगे 2 लोग हों या लगभग 15 मिनट" in offer
    assert "kept only until this token ends" in offer
    mobile = phone.locator("#sms-mobile")
    assert [await mobile.get_attribute(a) for a in ("type", "inputmode", "autocomplete")] == ["tel", "tel", "tel"]
    await shots_at(phone, tmp_path, "sms-offer")

    await mobile.fill("98765")                                       # the server's refusal, in words
    await phone.tap("#sms-send")
    await phone.wait_for_selector("#sms-err:not([hidden])", timeout=WAIT_MS)
    refusal = await text(phone, "#sms-err")
    assert "mobile: Expected a mobile number of 10 to 15 digits" in refusal and "10 से 15 अंक" in refusal
    assert await mobile.get_attribute("aria-invalid") == "true"
    assert (await site.public(sms_path))["sms"] is None
    await shot(phone, tmp_path, "sms-bad-number")

    await mobile.fill("+91 98765 43210")
    await phone.tap("#sms-send")
    await phone.wait_for_function("document.body.dataset.sms === 'asked'", timeout=WAIT_MS)
    assert "We'll text •••• 3210" in await text(phone, "#sms-to")
    assert "When 2 people are ahead" in await text(phone, "#sms-on-when")
    assert not await phone.is_visible("#sms-err") and not await phone.is_visible("#sms-mobile")
    assert "98765" not in await phone.inner_text("body")
    assert (await site.public(sms_path))["sms"]["mobile_hint"] == "•••• 3210"
    await shots_at(phone, tmp_path, "sms-asked")
    await phone.reload()                                             # the request is the server's
    await phone.wait_for_function("document.body.dataset.sms === 'asked'", timeout=WAIT_MS)

    await phone.tap("#sms-stop")
    await phone.wait_for_function("document.body.dataset.sms === 'offered'", timeout=WAIT_MS)
    assert (await site.public(sms_path))["sms"] is None              # the number is gone
    assert await phone.is_visible("#sms-mobile")

    await mobile.fill("+91 98765 43210")                             # asked again, then the token ends
    await phone.tap("#sms-send")
    await phone.wait_for_function("document.body.dataset.sms === 'asked'", timeout=WAIT_MS)
    phone.once("dialog", lambda dialog: dialog.accept())
    await phone.tap("#cancel")
    await phone.wait_for_function("document.body.dataset.status === 'cancelled'", timeout=WAIT_MS)
    assert not await phone.is_visible("#t-sms")
    await wait_until_async(lambda: site.public(sms_path), done=lambda answer: answer["sms"] is None,
                           what="the number erased once the token ended", timeout=5)

    # The gateway is removed while a page still offers SMS: the tap is told why, the offer goes.
    other = await take_from_phone(site, hall.id, paid, "KAN-55500001", "9812345678")
    await phone.goto(f"{site.url}/q/t/{other}")
    await phone.wait_for_function("document.body.dataset.sms === 'offered'", timeout=WAIT_MS)
    await site.post(f"/api/v1/ops/webhooks/{hook['id']}", site.admin, method="DELETE")
    await mobile.fill("9812345678")
    await phone.tap("#sms-send")
    await phone.wait_for_function("document.body.dataset.sms === 'none'", timeout=WAIT_MS)
    assert "not sent here" in await text(phone, "#alert") and "SMS नहीं भेजे" in await text(phone, "#alert")
    assert not await phone.is_visible("#t-sms")


async def measure(page, url: str) -> tuple[int, list[str]]:
    """Bytes received over the emulated slow link for one visit, and the URLs fetched."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Network.enable")
    await cdp.send("Network.emulateNetworkConditions", SLOW_3G)
    received: dict[str, int] = {}
    urls: dict[str, str] = {}
    cdp.on("Network.requestWillBeSent", lambda e: urls.__setitem__(e["requestId"], e["request"]["url"]))
    cdp.on("Network.loadingFinished", lambda e: received.__setitem__(e["requestId"], e["encodedDataLength"]))
    await page.goto(url, wait_until="commit")
    await page.wait_for_function("document.body && document.body.dataset.screen !== 'loading'"
                                 " && document.querySelectorAll('#services input, #stations li').length > 0",
                                 timeout=15_000)
    await page.evaluate("document.fonts.ready.then(() => true)")
    await page.wait_for_load_state("networkidle", timeout=15_000)
    await cdp.detach()
    return sum(received.values()), [urls[r] for r, n in received.items() if n > 0 and r in urls]


async def test_first_load_and_repeat_visit_are_small_over_a_slow_link(site: Site, browser):
    """A cheap phone on a poor 3G link (400 ms round trips, 50 KB/s down): the first visit of a
    substation's page (its QR code) costs under 60 KB with the Hindi webfont, a repeat visit
    under 10 KB (the page's files are cached as immutable; only the HTML and the figures come)."""
    hall = paid_hall(site.scenario)
    context = await browser.new_context(**PHONE, bypass_csp=True)   # for wait_for_function only
    page = await context.new_page()
    started = time.monotonic()
    first, fetched = await measure(page, f"{site.url}/q/{hall.id}")
    ready_s = time.monotonic() - started
    assert await page.evaluate("document.fonts.check('17px \"Noto Sans Devanagari Phone\"', 'केंद्र')")
    repeat, refetched = await measure(page, f"{site.url}/q/{hall.id}")
    list_page = await context.new_page()
    listing, _ = await measure(list_page, f"{site.url}/q")
    await context.close()
    fresh = await browser.new_context(**PHONE, bypass_csp=True)
    list_first, _ = await measure(await fresh.new_page(), f"{site.url}/q")
    await fresh.close()
    print(f"phone page over the slow link: first load {first / 1024:.1f} KB in {ready_s:.1f} s, "
          f"repeat visit {repeat / 1024:.1f} KB; list first {list_first / 1024:.1f} KB, "
          f"then {listing / 1024:.1f} KB")
    assert ready_s < 6.0
    assert not [u for u in fetched if "/static/board/" in u], fetched     # the full font is not needed
    assert first < 60 * 1024, fetched
    assert repeat < 10 * 1024, refetched
    assert not [u for u in refetched if "/static/" in u], refetched       # all from the cache
    assert list_first < 60 * 1024 and listing < 10 * 1024
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{site.url}/q/{hall.id}") as resp:
            assert resp.headers["Cache-Control"] == "no-store"
            html = await resp.text()
        for asset in ("q.js", "q.css", "q-fonts.css", "q-devanagari-400.woff2"):
            assert f"/static/q/{asset}?v=" in html
        versioned = html.split('src="', 1)[1].split('"', 1)[0]
        async with session.get(f"{site.url}{versioned}") as resp:
            assert "immutable" in resp.headers["Cache-Control"]
        async with session.get(f"{site.url}/static/q/q.js?v=old") as resp:     # not for ever
            assert "immutable" not in resp.headers["Cache-Control"]


async def test_booking_a_slot_nudges_to_the_recommended_quiet_day(kanpur: Site, phone, tmp_path):
    await phone.goto(f"{kanpur.url}/q/S01")
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
    await phone.goto(f"{kanpur.url}/q")                                    # the way back to it
    await phone.wait_for_selector("#mine:not([hidden])", timeout=WAIT_MS)
    assert token_url.endswith(await phone.get_attribute("#mine", "href"))


async def test_on_a_closed_day_the_page_says_so_and_offers_slots_on_open_days(kanpur: Site, phone, tmp_path):
    kanpur.clock.now = datetime.fromisoformat("2025-11-30T11:00:00+05:30").timestamp()    # a Sunday
    await phone.goto(f"{kanpur.url}/q")
    first = phone.locator("#stations a").first
    await first.wait_for(timeout=WAIT_MS)
    card = " ".join((await first.text_content()).split())
    assert "आज बंद" in card and "closed today" in card and "opens Mon 1 Dec 09:30" in card
    assert await phone.is_visible("#online")                         # every hall shut: pay online
    await shot(phone, tmp_path, "13-closed-day-list")
    await phone.goto(f"{kanpur.url}/q/S01")
    await fill_form(phone)
    assert "closed today" in await text(phone, "#st-wait")
    assert not await phone.is_visible("#take")                       # no token today ...
    await phone.tap("#to-slots")                                     # ... but a slot on an open day
    await phone.wait_for_selector(".day[aria-pressed=true]", timeout=WAIT_MS)
    days = await phone.locator(".day").evaluate_all("days => days.map(d => d.dataset.day)")
    assert days[0] == "2025-12-01" and "2025-12-07" not in days
    await shot(phone, tmp_path, "14-closed-day-slots")
    await no_overflow(phone)


async def test_errors_are_shown_in_words_and_name_the_field(kanpur: Site, phone, tmp_path):
    await phone.goto(f"{kanpur.url}/q/S01")
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
    await phone.goto(f"{kanpur.url}/q/S01")
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
    await kanpur.post("/api/v1/ops/substations/S01/admission", kanpur.admin, method="PUT",
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


async def test_hindi_renders_in_the_webfont_and_the_page_obeys_its_csp(kanpur: Site, browser):
    context = await browser.new_context(**PHONE)                         # CSP enforced
    page = await context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    page.on("pageerror", lambda exc: console.append(str(exc)))
    await page.goto(f"{kanpur.url}/q/S01")
    await page.wait_for_selector("#services input[type=radio]", timeout=WAIT_MS)
    loaded = await page.evaluate(
        "document.fonts.load('17px \"Noto Sans Devanagari Phone\"', 'केंद्र चुनें').then(f => f.length)")
    assert loaded >= 1
    faces = await page.evaluate("""() => { const seen = [];
        document.fonts.forEach(f => { if (f.status === 'loaded') seen.push(f.family); }); return seen; }""")
    assert any("Noto Sans Devanagari Phone" in family for family in faces)
    width = await page.evaluate("document.querySelector('#st-hi').getBoundingClientRect().width")
    assert width > 40 and await page.text_content("#st-hi") == "किदवई नगर"
    assert not [line for line in console if "Content Security Policy" in line or "Refused" in line], console
    await context.close()


def test_the_phone_font_covers_every_hindi_letter_the_page_and_the_scenarios_show():
    """The page loads a cut of the Devanagari font (27 KB, not 125 KB); every letter of its own
    words and of both scenarios' names is inside the cut's unicode-range, so none falls to the
    full face (or to a phone without a Hindi font)."""
    from counter_server.phone.font_subset import CSS_NAME, PHONE_WEB, page_letters

    face = (PHONE_WEB / CSS_NAME).read_text(encoding="utf-8").split("@font-face", 2)[1]
    assert '"Noto Sans Devanagari Phone"' in face
    covered: set[int] = set()
    for part in face.split("unicode-range:", 1)[1].split(";", 1)[0].split(","):
        first, _, last = part.strip().removeprefix("U+").partition("-")
        covered.update(range(int(first, 16), int(last or first, 16) + 1))
    missing = sorted(ch for ch in page_letters([LAKESIDE]) if ord(ch) not in covered)
    assert missing == [], f"run python -m counter_server.phone.font_subset {LAKESIDE.name}: {missing}"
    assert (PHONE_WEB / "q-devanagari-400.woff2").stat().st_size < 32 * 1024
