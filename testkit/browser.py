"""The Chromium the page tests drive: Debian's own (``playwright install`` is never run), with the
flags that keep it quiet and offline; and what those tests ask of any page's clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


# Every text a page's ``#clock`` shows, with the moment it was shown, from the page's first
# script on: the tests hold each one (the very first, before any snapshot, included) to the
# halls' time zone.
CLOCK_RECORDER = """
window.__clocks = [];
new MutationObserver(() => {
  const clock = document.getElementById("clock");
  const text = clock ? clock.textContent : null;
  const last = window.__clocks[window.__clocks.length - 1];
  if (text !== null && (!last || last[0] !== text)) window.__clocks.push([text, Date.now()]);
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


def far_time_zone(zone: ZoneInfo) -> str:
    """A browser time zone whose clocks read hours apart from ``zone``'s, today."""
    now = datetime.now(timezone.utc)
    for far in ("Pacific/Honolulu", "Asia/Tokyo"):
        if abs(now.astimezone(ZoneInfo(far)).utcoffset() - now.astimezone(zone).utcoffset()) >= timedelta(hours=3):
            return far
    raise AssertionError(f"no zone far from {zone.key}")


async def page_far_from(browser, zone: ZoneInfo):
    """A new page in a browser zone hours from ``zone``'s, recording its clock (CLOCK_RECORDER)
    from its first script on."""
    page = await browser.new_page(timezone_id=far_time_zone(zone), bypass_csp=True)
    await page.add_init_script(CLOCK_RECORDER)
    return page


async def clock_texts_off_zone(page, zone: ZoneInfo, locale: str, options: dict) -> tuple[list, list]:
    """Once the page's clock has shown a time: (every text it showed, those of them that are
    not ``zone``'s time when shown). ``locale`` and ``options`` are how the page writes it."""
    await page.wait_for_function("window.__clocks.some(([text]) => !text.startsWith('--'))", timeout=3_000)
    shown = await page.evaluate("window.__clocks")
    wrong = await page.evaluate("""([shown, zone, locale, options]) => shown.filter(([text, at]) =>
        !text.startsWith("--") && ![at, at - 1000].some((ms) =>
          new Date(ms).toLocaleTimeString(locale, { ...options, timeZone: zone }) === text))""",
                                [shown, zone.key, locale, options])
    return shown, wrong
