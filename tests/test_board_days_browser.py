"""What a hall board shows, in Chromium, when a change is made to another day's queue: a phone
booking tomorrow's slot and ops publishing tomorrow's slots must leave today's board as it was."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from counter_server.config import load_scenario

from testkit.api import bearer
from testkit.processes import ServerProcess
from testkit.scenarios import paid_service


async def test_a_booking_for_another_day_leaves_todays_board_as_it_was(browser, scenario_file: Path,
                                                                        tmp_path: Path):
    scenario = load_scenario(scenario_file)
    service = paid_service(scenario)
    hall = next(s for s in scenario.substations.values() if service in s.services)
    counter = next(c for c in hall.counters if service in c.services)
    server = ServerProcess(data_dir=tmp_path / "data", config=scenario_file)
    server.start()
    try:
        async with aiohttp.ClientSession(server.url, headers=bearer(server.admin_key)) as api:
            for _ in range(4):
                async with api.post(f"/api/v1/substations/{hall.id}/tokens", json={"service": service}) as resp:
                    assert resp.status == 201, await resp.text()
            async with api.post(f"/api/v1/counters/{counter.id}/next") as resp:
                called = (await resp.json())["token"]["number"]

            page = await browser.new_page(viewport={"width": 1920, "height": 1080}, bypass_csp=True)
            await page.goto(f"{server.url}/board/{hall.id}")
            await page.wait_for_function("document.body.dataset.state === 'live'", timeout=10_000)
            shown = f"document.querySelector('[data-counter=\"{counter.id}\"] .number').textContent"
            waiting = "document.getElementById('waiting-count').textContent"
            await page.wait_for_function(f"{shown} === '{called}'", timeout=5_000)
            before = await page.evaluate(waiting)
            assert "3" in before
            seq = await page.evaluate("document.body.dataset.seq")   # the last change the board took

            async with api.get(f"/api/v1/public/substations/{hall.id}/slots") as resp:
                days = (await resp.json())["days"]
            today = days[0]["day"]
            later = next(d for d in days if d["day"] > today and d["slots"])
            async with api.post(f"/api/v1/public/substations/{hall.id}/bookings", headers={"Authorization": ""},
                                json={"service": service, "slot_at": later["slots"][0]["at"],
                                      "account": "KAN-20431877", "phone": "9876543210"}) as resp:
                assert resp.status == 201, await resp.text()
            async with api.put(f"/api/v1/ops/substations/{hall.id}/slots/{later['day']}",
                               json={"slot_minutes": 30, "share": 0.2}) as resp:
                assert resp.status == 200, await resp.text()
            await asyncio.sleep(1.0)   # what a wrong delta would have shown by now
            assert await page.evaluate("document.body.dataset.seq") == seq   # no other day's hall taken
            assert await page.evaluate(shown) == called
            assert await page.evaluate(waiting) == before
            await page.screenshot(path=str(tmp_path / "board-after-booking-tomorrow.png"))

            async with api.post(f"/api/v1/substations/{hall.id}/tokens", json={"service": service}) as resp:
                assert resp.status == 201
            await page.wait_for_function(f"{waiting} !== {before!r}", timeout=5_000)
            assert "4" in await page.evaluate(waiting) and await page.evaluate(shown) == called
    finally:
        server.stop()
