"""The cashier's terminal app, driven key by key through Textual's pilot against a real server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static

from kiosk_client.app import KioskApp
from kiosk_client.client import Call, KioskClient

from testkit.processes import ServerProcess
from testkit.waiting import wait_until_async
from .test_kiosk_client import ACCOUNT, cashier_key


class Keyboard:
    """Presses keys as a cashier would, one at a time, and counts them."""

    def __init__(self, pilot: Pilot) -> None:
        self.pilot = pilot
        self.count = 0

    async def press(self, *keys: str) -> None:
        for key in keys:
            await self.pilot.press(key)
            self.count += 1
            await settle(self.pilot)


async def settle(pilot: Pilot) -> None:
    """Let the key's work (its requests to the server) finish and the screen catch up."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def until(pilot: Pilot, condition: Callable[[], bool], what: str) -> None:
    """Until the screen shows ``what``, drawn frame by frame as the app does."""

    async def shown() -> bool:
        if condition():
            return True
        await pilot.pause(0.1)
        return False

    await wait_until_async(shown, what=f"the screen to show {what}", timeout=10, interval=0)


def text_of(app: KioskApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


async def admin_get(server: ServerProcess, path: str) -> Any:
    async with KioskClient(server.url, server.admin_key) as admin:
        return await admin.send(Call("GET", path))


async def test_a_full_serve_from_the_keyboard_then_offline_and_back(server_process: ServerProcess,
                                                                   tmp_path: Path):
    server_process.start()
    key = await cashier_key(server_process, "S01-C1")
    slips = tmp_path / "slips.bin"
    app = KioskApp(server_process.url, key, journal_path=tmp_path / "journal.sqlite", slip_path=str(slips),
                   lease_size=3, refresh_s=0.3, timeout=2.0, retries=1)
    async with app.run_test(size=(110, 34)) as pilot:
        await until(pilot, lambda: "ONLINE" in text_of(app, "#status"), "ONLINE")
        await settle(pilot)
        assert "S01-C1 Kidwai Nagar | ONLINE | billing up" in text_of(app, "#status")
        keys = Keyboard(pilot)

        await keys.press("i", "enter")                              # issue: bill payment, normal
        issued = app.history[-1].token
        assert issued is not None and issued["number"] == "B-004"   # B-001..B-003 leased for offline use
        assert b"B-004" in slips.read_bytes() and "slip printed" in text_of(app, "#message")
        await keys.press("n")                                       # call next
        assert "B-004  CALLED" in text_of(app, "#current")
        await keys.press("s")                                       # start
        assert "B-004  SERVING" in text_of(app, "#current")
        await keys.press("p", *ACCOUNT, "enter", "enter")           # pay: account, Enter takes the bill
        payment = app.history[-1].payment
        await keys.press("f")                                       # finish
        assert keys.count == 18                                     # 8 keys + the 10-digit account
        assert "B-004 done" in text_of(app, "#message") and "Nobody at the counter" in text_of(app, "#current")

        bill = (await admin_get(server_process, f"/api/v1/bills/{ACCOUNT}"))["bill"]
        stored = (await admin_get(server_process, f"/api/v1/payments/{payment['id']}"))["payment"]
        assert (stored["token_id"], stored["amount_paise"], stored["mode"]) == (
            issued["id"], bill["amount_paise"], "cash")
        assert (await admin_get(server_process, f"/api/v1/tokens/{issued['id']}"))["token"]["status"] == "done"

        await keys.press("i", "enter", "n", "s")                    # the next consumer, being served
        serving = app.history[-1].token
        server_process.stop()
        await keys.press("f")                                       # finish while the server is away
        await keys.press("i", "enter")                              # issue from the leased block
        assert app.history[-1].journaled and app.history[-1].token["number"] == "B-001"
        await until(pilot, lambda: "OFFLINE, 2 pending" in text_of(app, "#status"), "OFFLINE, 2 pending")
        await keys.press("n")
        assert "needs the server" in text_of(app, "#message")

        server_process.start()
        await until(pilot, lambda: "ONLINE |" in text_of(app, "#status"), "ONLINE again")
        await settle(pilot)
        assert "pending" not in text_of(app, "#status")
        assert (await admin_get(server_process, f"/api/v1/tokens/{serving['id']}"))["token"]["status"] == "done"
        queue = await admin_get(server_process, "/api/v1/substations/S01/queue")
        assert [t["number"] for t in queue["tokens"]] == ["B-001"]
