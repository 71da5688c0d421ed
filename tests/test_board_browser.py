"""The hall board in real Chromium (Debian's, driven by Playwright) against a server process."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, async_playwright

from counter_server.config import Scenario, load_scenario

from testkit.api import bearer
from testkit.browser import CHROMIUM, CHROMIUM_ARGS, clock_texts_off_zone, page_far_from
from testkit.processes import ServerProcess
from testkit.scenarios import paid_service
from testkit.waiting import wait_until_async

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
    assert "2 प्रतीक्षा में · waiting" in await page.text_content("#waiting-count")
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


# -- any scenario: layout, sizes, languages, calls, voice -----------------------------------------

SIZES = [(1920, 1080), (1366, 768), (1080, 1920)]
# Hall screens run their browser with autoplay allowed, so the chime (Web Audio) really plays.
HALL_ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture
async def hall_browser():
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=HALL_ARGS)
        yield browser
        await browser.close()


@dataclass
class Hall:
    """One substation of a scenario on a real server process, driven through the HTTP API."""

    server: ServerProcess
    scenario: Scenario
    sid: str
    session: aiohttp.ClientSession

    @property
    def substation(self):
        return self.scenario.substations[self.sid]

    async def issue(self, service: str, priority: str = "normal", count: int = 1) -> list[dict]:
        issued = []
        for _ in range(count):
            async with self.session.post(f"{self.server.url}/api/v1/substations/{self.sid}/tokens",
                                         json={"service": service, "priority": priority}) as resp:
                assert resp.status == 201, await resp.text()
                issued.append((await resp.json())["token"])
        return issued

    async def call(self, counter: str) -> dict:
        async with self.session.post(f"{self.server.url}/api/v1/counters/{counter}/next") as resp:
            assert resp.status == 200, await resp.text()
            return (await resp.json())["token"]

    async def recall(self, token: dict) -> None:
        async with self.session.post(f"{self.server.url}/api/v1/tokens/{token['id']}/recall") as resp:
            assert resp.status == 200, await resp.text()

    async def open(self, browser, width: int = 1920, height: int = 1080, clock: bool = False,
                   init: str | None = None) -> Page:
        page = await browser.new_page(viewport={"width": width, "height": height}, bypass_csp=True)
        if init:
            await page.add_init_script(init)
        if clock:
            await page.clock.install()
        await page.goto(f"{self.server.url}/board/{self.sid}")
        await page.wait_for_function("document.body.dataset.state === 'live'", timeout=10_000)
        return page


async def raise_wait(hall: Hall, page: Page, substation, service: str) -> None:
    """Enough tokens for ``service`` that its wait passes the pay-online threshold, as the board
    shows it."""
    hint_after_s = hall.scenario.online.hint_after_s
    serving = sum(service in c.services for c in substation.counters)
    count = math.ceil(1.5 * hint_after_s * serving / hall.scenario.services[service].mean_service_s) + 2
    await hall.issue(service, count=count)
    await page.wait_for_function(
        f"(board.hall.services.find(s => s.id === '{service}').estimate || {{}}).p50_s > {hint_after_s}",
        timeout=15_000)


def hall_with_paid_service(scenario: Scenario) -> str:
    """The substation that offers the paid service at the most counters (any scenario)."""
    paid = paid_service(scenario)
    offering = [s for s in scenario.substations.values() if paid in s.services]
    return max(offering, key=lambda s: (len(s.counters), len(s.services))).id


def with_hint_after(scenario_file: Path, minutes: int, out: Path) -> Path:
    """The scenario with the pay-online hint after ``minutes``: a few tokens make a wait that
    long, and the door still admits them late in the evening."""
    text = scenario_file.read_text()
    line = f"hint_after_minutes = {minutes}"
    if re.search(r"^hint_after_minutes\s*=", text, re.M):
        text = re.sub(r"^hint_after_minutes\s*=.*$", line, text, flags=re.M)
    else:
        text += f"\n[online]\n{line}\n"
    out.write_text(text)
    return out


@pytest.fixture
async def hall(scenario_file: Path, tmp_path: Path):
    config = with_hint_after(scenario_file, 5, tmp_path / scenario_file.name)
    scenario = load_scenario(config)
    assert scenario.online.hint_after_s == 300
    server = ServerProcess(data_dir=tmp_path / "data", config=config)
    server.start()
    async with aiohttp.ClientSession(headers=bearer(server.admin_key)) as session:
        yield Hall(server, scenario, hall_with_paid_service(scenario), session)
    server.stop()


# What a board shows, measured in the page. Each returns a list of problems (empty: fine).
LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const name = (el) => (el.id || el.className || el.tagName) + ` "${el.textContent.trim().slice(0, 40)}"`;
  const inside = (r, box) => r.left >= box.left - 0.5 && r.right <= box.right + 0.5
    && r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5;
  const screen = { left: 0, top: 0, right: innerWidth, bottom: innerHeight };
  const shown = (el) => el.getClientRects().length > 0;
  for (const el of document.querySelectorAll("header, .online-hint, main section")) {
    if (!shown(el)) continue;
    if (!inside(el.getBoundingClientRect(), screen)) problems.push(`${name(el)} leaves the screen`);
    if (el.scrollWidth > el.clientWidth + 1) problems.push(`${name(el)} is cut at its side`);
  }
  for (const list of document.querySelectorAll("#counters, #services, #next, #nearby")) {
    if (!shown(list)) continue;
    const box = list.getBoundingClientRect(), section = list.closest("section").getBoundingClientRect();
    for (const row of list.children) {
      if (!shown(row)) continue;
      const r = row.getBoundingClientRect();
      if (!inside(r, box) || !inside(r, section) || !inside(r, screen)) problems.push(`row ${name(row)} is clipped`);
      if (row.scrollWidth > row.clientWidth + 1) problems.push(`row ${name(row)} is cut at its side`);
    }
    const hidden = [...list.children].filter((row) => !shown(row));
    if (hidden.length) {                  // as many whole rows as fit: the first hidden one did not
      hidden[0].classList.remove("unfit");
      const fits = hidden[0].getBoundingClientRect().bottom <= box.bottom + 0.5;
      hidden[0].classList.add("unfit");
      if (fits) problems.push(`row ${name(hidden[0])} would fit but is hidden`);
    }
  }
  return problems;
}"""

# Everything a consumer reads: at least 4.2 % of the short side (45 px at 1080) and 7:1 contrast.
SIZE_PROBLEMS = """() => {
  const floor = 0.042 * Math.min(innerWidth, innerHeight) - 0.5;
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; })
    .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const problems = [];
  let smallest = Infinity, worst = Infinity;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const text = walker.currentNode.textContent.trim();
    const el = walker.currentNode.parentElement;
    if (!text || !el.getClientRects().length || el.closest(".link, .voice, script")) continue;
    const style = getComputedStyle(el);
    const size = parseFloat(style.fontSize);
    const a = lum(rgb(style.color)), b = lum(background(el));
    const contrast = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    smallest = Math.min(smallest, size);
    worst = Math.min(worst, contrast);
    if (size < floor) problems.push(`"${text.slice(0, 30)}" is ${size} px (floor ${floor.toFixed(1)})`);
    if (contrast < 7) problems.push(`"${text.slice(0, 30)}" has contrast ${contrast.toFixed(1)}:1`);
  }
  return { problems, smallest, worst };
}"""


async def check_layout(page: Page, label: str) -> int:
    assert await page.evaluate(LAYOUT_PROBLEMS) == [], label
    sizes = await page.evaluate(SIZE_PROBLEMS)
    assert sizes["problems"] == [], label
    return int(await page.get_attribute("#next", "data-shown"))


async def test_board_fits_whole_rows_at_every_size_with_and_without_the_pay_online_hint(
        hall: Hall, hall_browser, tmp_path: Path):
    """Items 3-5 and 7: whole rows only at three sizes, a portrait layout, type read from 10 m."""
    paid = paid_service(hall.scenario)
    for service in hall.substation.services:
        await hall.issue(service, count=3)
    await hall.call(hall.substation.counters[0].id)
    senior = (await hall.issue(paid, "senior"))[0]
    disabled = (await hall.issue(hall.substation.services[-1], "disabled"))[0]
    pages = {size: await hall.open(hall_browser, *size) for size in SIZES}
    waiting = 3 * len(hall.substation.services) + 2 - 1
    for page in pages.values():
        await page.wait_for_function(
            f"document.getElementById('waiting-count').textContent.startsWith('{waiting} ')")
        # The sign of a missing voice (none here) takes room in the header: measured after it.
        await page.wait_for_function("document.body.dataset.voice", timeout=6_000)

    shown = {}
    for (width, height), page in pages.items():
        assert await page.is_hidden("#online-hint")
        shown[(width, height, "no hint")] = await check_layout(page, f"{width}x{height}")
        await page.screenshot(path=str(tmp_path / f"board-{width}x{height}.png"))
    page = pages[(1920, 1080)]
    rows = await page.eval_on_selector_all("#next li", "rows => rows.map(r => r.textContent)")
    tag = {"senior": "वरिष्ठ · Senior", "disabled": "दिव्यांग · Disabled"}
    for token in (senior, disabled):          # priority tags and waits in both languages
        row = next(r for r in rows if r.startswith(token["number"]))
        assert tag[token["priority"]] in row
    for row in rows:
        assert ("मिनट · min" in row) or ("तुरंत · now" in row) or ("काउंटर बंद" in row and "no counter open" in row), row

    # Portrait is laid out for portrait: one column over the whole height, type as large as 1080p's.
    portrait = pages[(1080, 1920)]
    boxes = await portrait.eval_on_selector_all(
        "main section", "all => all.filter(s => s.getClientRects().length).map(s => s.getBoundingClientRect().toJSON())")
    assert all(box["width"] > 0.9 * 1080 for box in boxes)
    assert max(box["bottom"] for box in boxes) > 0.97 * 1920
    font = "el => parseFloat(getComputedStyle(el).fontSize)"
    assert await portrait.eval_on_selector("#next li .number", font) == \
        await page.eval_on_selector("#next li .number", font) >= 50

    await raise_wait(hall, page, hall.substation, paid)    # a long wait: the hint comes up
    for (width, height), page in pages.items():
        await page.wait_for_function("!document.getElementById('online-hint').hidden")
        shown[(width, height, "hint")] = await check_layout(page, f"{width}x{height} with the hint")
        await page.screenshot(path=str(tmp_path / f"board-{width}x{height}-hint.png"))
    print(f"\n{hall.sid}: next-in-line rows shown", shown)
    assert min(shown.values()) >= 4


async def until(page: Page, expression: str, timeout: float = 10.0) -> None:
    """Polls from here: the page's own timers (and so Playwright's polling) stand still while
    its clock is paused."""
    await wait_until_async(lambda: page.evaluate(expression), what=f"the page to hold {expression}",
                           timeout=timeout)


async def test_calls_close_together_each_get_their_full_time(hall: Hall, hall_browser):
    """Item 2: a second call waits for the first banner's full 6 s; a recall is announced again."""
    counters = [c.id for c in hall.substation.counters if paid_service(hall.scenario) in c.services]
    assert len(counters) >= 2
    await hall.issue(paid_service(hall.scenario), count=3)
    page = await hall.open(hall_browser, clock=True)
    await page.clock.pause_at(await page.evaluate("Date.now() / 1000 + 0.5"))   # then moves when told
    await page.evaluate("""() => {
      window.shown = [];
      const banner = document.getElementById("called-banner");
      new MutationObserver(() => window.shown.push(banner.hidden ? [Date.now(), null]
                                                   : [Number(banner.dataset.shownAt), banner.dataset.number]))
        .observe(banner, { attributes: true, attributeFilter: ["hidden", "data-number"] });
    }""")
    first = await hall.call(counters[0])
    second = await hall.call(counters[1])
    banner = "document.getElementById('called-banner')"
    await until(page, f"!{banner}.hidden && {banner}.dataset.number === '{first['number']}'")
    await until(page, "document.body.dataset.callsQueued === '1'")   # the second waits its turn
    await page.clock.run_for(5_500)
    assert await page.evaluate(f"{banner}.dataset.number") == first["number"]
    await page.clock.run_for(700)
    assert await page.evaluate(f"{banner}.dataset.number") == second["number"]
    names = await page.text_content("#called-banner")
    label = hall.scenario.counters[counters[1]]
    assert label.label in names and label.label_hi in names

    await hall.recall(first)                 # a recall is announced again, after the second's time
    await until(page, "document.body.dataset.callsQueued === '1'")
    await page.clock.run_for(5_000)
    assert await page.evaluate(f"{banner}.dataset.number") == second["number"]
    await page.clock.run_for(1_500)
    assert await page.evaluate(f"{banner}.dataset.number") == first["number"]
    await page.clock.run_for(6_500)
    assert await page.is_hidden("#called-banner")
    log = await page.evaluate("window.shown")           # one entry per change of the banner
    shown = [entry for i, entry in enumerate(log) if i == 0 or entry != log[i - 1]]
    assert [number for _, number in shown] == [first["number"], second["number"], first["number"], None]
    spans = [later - at for (at, _), (later, _) in zip(shown, shown[1:])]
    assert all(span >= 6_000 for span in spans), spans


async def test_counter_labels_and_order_come_from_the_scenario(hall: Hall, hall_browser):
    """Item 10: labels are the hall JSON's name / name_hi (a counter `M-C` has one), in scenario order."""
    page = await hall.open(hall_browser)
    await page.wait_for_selector("#counters li")
    shown = await page.eval_on_selector_all(
        "#counters li", "items => items.map(i => [i.dataset.counter, i.querySelector('.where').textContent])")
    expected = [(c.id, c.label if c.label_hi == c.label else f"{c.label_hi} · {c.label}")
                for c in hall.substation.counters]
    assert [tuple(row) for row in shown] == expected


async def test_pay_online_hint_follows_the_paid_service_and_a_hall_without_it_shows_its_own(
        hall: Hall, hall_browser):
    """Nothing assumes `bill_payment`: another service's long wait raises no pay-online hint, and
    a hall without the paid service shows its own services and never the hint."""
    paid = paid_service(hall.scenario)
    other = min((s for s in hall.substation.services if s != paid),
                key=lambda s: sum(s in c.services for c in hall.substation.counters))
    page = await hall.open(hall_browser)
    await raise_wait(hall, page, hall.substation, other)
    await page.wait_for_timeout(300)
    assert await page.is_hidden("#online-hint")
    assert await page.evaluate("board.online.payment_service") == paid

    without = [s for s in hall.scenario.substations.values() if paid not in s.services]
    for substation in without:                # the lakeside scenario has one: east_gate
        service = substation.services[0]
        hall.sid = substation.id
        page = await hall.open(hall_browser)
        await raise_wait(hall, page, substation, service)
        await page.wait_for_timeout(300)
        assert await page.is_hidden("#online-hint")
        rows = await page.eval_on_selector_all("#services li", "rows => rows.map(r => r.dataset.service)")
        assert rows == list(substation.services)
        assert hall.scenario.services[paid].name in await page.text_content("#nearby-service")


# A browser's voices, as a hall screen with text-to-speech installed would list them (this
# machine's Chromium has none), arriving late as they do; and what the board asks to be spoken.
VOICES = """(() => {
  const voices = %s;
  let ready = [];
  speechSynthesis.getVoices = () => ready;
  setTimeout(() => { ready = voices; speechSynthesis.dispatchEvent(new Event("voiceschanged")); }, 500);
  window.spoken = [];
  const speak = speechSynthesis.speak.bind(speechSynthesis);
  speechSynthesis.speak = (words) => { window.spoken.push([words.lang, words.text]); speak(words); };
})();"""


async def test_voice_falls_back_to_english_then_a_chime_and_ops_sees_it(hall: Hall, hall_browser):
    """Item 9: Hindi voice, else English, else a chime; the board shows what is missing and
    reports it on its socket; ops counts the hall's boards without a Hindi voice."""
    english = [{"lang": "en-IN", "name": "English (India)"}]
    hindi = [{"lang": "hi-IN", "name": "Hindi"}, *english]
    ops_url = f"{hall.server.url.replace('http', 'ws')}/api/v1/live"
    async with hall.session.ws_connect(ops_url) as ops:
        reports: list[dict] = []

        async def read_ops() -> None:            # reading all along also answers the server's pings
            async for msg in ops:
                message = json.loads(msg.data)
                if message["type"] == "boards":
                    reports.append(message["boards"][hall.sid])

        reader = asyncio.create_task(read_ops())
        boards = {
            "chime": await hall.open(hall_browser),                       # no voice at all (real)
            "en": await hall.open(hall_browser, init=VOICES % json.dumps(english)),
            "hi": await hall.open(hall_browser, init=VOICES % json.dumps(hindi)),
        }
        for mode, page in boards.items():
            await page.wait_for_function(f"document.body.dataset.voice === '{mode}'", timeout=6_000)
        assert await boards["hi"].is_hidden("#voice")
        assert "No Hindi voice" in await boards["en"].text_content("#voice")
        assert "No voice" in await boards["chime"].text_content("#voice")
        await wait_until_async(lambda: reports, done=lambda seen: bool(seen) and seen[-1] == {
            "connected": 3, "no_hindi_voice": 2, "chime_only": 1}, what="ops told of the three boards' voices")
        reader.cancel()

    paid = paid_service(hall.scenario)
    await hall.issue(paid)
    counter = next(c for c in hall.substation.counters if paid in c.services)
    token = await hall.call(counter.id)
    spoken_number = token["number"].replace("-", " ")
    for page in boards.values():
        await page.wait_for_function(f"document.getElementById('called-banner').dataset.number === '{token['number']}'")
    said = {mode: await page.evaluate("window.spoken || []") for mode, page in boards.items()}
    assert [lang for lang, _ in said["hi"]] == ["hi-IN", "en-IN"]
    assert spoken_number in said["hi"][0][1] and counter.label_hi in said["hi"][0][1]
    assert [lang for lang, _ in said["en"]] == ["en-IN"] and counter.label in said["en"][0][1]
    await boards["chime"].wait_for_function("Number(document.body.dataset.chimes || 0) >= 1")


async def test_board_clock_shows_the_halls_time_never_the_browsers(hall: Hall, hall_browser):
    """A board whose browser runs in another zone shows "--:--" until the snapshot says the
    hall's zone, then the hall's time: never the browser's, not even for the first second."""
    zone = hall.scenario.timezone
    page = await page_far_from(hall_browser, zone)
    await page.goto(f"{hall.server.url}/board/{hall.sid}")
    await page.wait_for_function("document.body.dataset.state === 'live'", timeout=10_000)
    shown, wrong = await clock_texts_off_zone(page, zone, "en-IN", {"hour": "2-digit", "minute": "2-digit"})
    assert shown and wrong == [], shown
