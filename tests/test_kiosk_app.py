"""The cashier's terminal app, driven key by key through Textual's pilot against a real server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from textual.dom import DOMNode
from textual.pilot import Pilot
from textual.widgets import DataTable, Footer, Input, Static

from counter_server.config import load_scenario
from kiosk_client.app import KioskApp
from kiosk_client.client import Call, KioskClient
from kiosk_client.screens import CashUpScreen, ConfirmRefundScreen, ResubmitScreen, WorklistScreen

from testkit.billing import refusing_billing
from testkit.processes import ServerProcess
from testkit.scenarios import paid_service
from testkit.waiting import wait_until_async
from .test_kiosk_client import (
    ACCOUNT,
    CORRECTED,
    REFUSED,
    cashier_key,
    in_process,
    paying_counter,
    refusing_server,
    serve_and_pay,
    slip_figures,
    until_failed,
)


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


def text_of(app: KioskApp | DOMNode, selector: str) -> str:
    """What a Static shows, on the app's screen (or the dialog given)."""
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


async def test_failed_payments_resubmitted_and_refunded_and_the_cash_up_printed_from_the_keyboard(
        tmp_path: Path, scenario_file: Path):
    scenario = load_scenario(scenario_file)
    counter, service = paying_counter(scenario), paid_service(scenario)
    async with refusing_billing(*REFUSED) as billing:
        server = refusing_server(tmp_path, scenario_file, billing.url)
        server.start()
        try:
            key = await cashier_key(server, counter.id)
            kiosk_here = in_process(server, key, tmp_path / "cli-journal.sqlite")
            first = await serve_and_pay(kiosk_here, service, REFUSED[0], "250.50", "cash")
            second = await serve_and_pay(kiosk_here, service, REFUSED[1], "75", "upi")
            await until_failed(kiosk_here, 2)
            slips = tmp_path / "slips.txt"
            app = KioskApp(server.url, key, journal_path=tmp_path / "journal.sqlite", slip_path=str(slips),
                           slip_format="text", lease_size=0, refresh_s=0.3, timeout=2.0, retries=1)
            async with app.run_test(size=(80, 30)) as pilot:
                await until(pilot, lambda: "2 payment(s) FAILED: w" in text_of(app, "#status"), "the failures")

                def footer_keys() -> list:
                    return [k for k in app.query_one(Footer).query("FooterKey") if k.display]

                await until(pilot, lambda: {"Failed", "Cash-up", "Issue", "Pay"} <= {
                    k.description for k in footer_keys()}, "the footer's keys")   # it recomposes now and then
                assert max(k.region.right for k in footer_keys()) <= 80   # the footer fits 80 columns
                keys = Keyboard(pilot)

                await keys.press("w")
                worklist = app.screen
                assert isinstance(worklist, WorklistScreen)
                await until(pilot, lambda: len(worklist.payments) == 2, "the worklist")
                table = worklist.query_one("#failed", DataTable)
                rows = [[str(cell) for cell in table.get_row_at(n)] for n in range(table.row_count)]
                assert rows == [[p["receipt"], p["account"], amount, p["mode"],
                                 datetime.fromisoformat(p["created_at"]).strftime("%d %b %H:%M")]
                                for p, amount in ((first, "Rs 250.50"), (second, "Rs 75.00"))]
                why = text_of(worklist, "#why")
                assert why.startswith(first["receipt"]) and "check the account on the bill" in why

                await keys.press("enter")                                # resubmit the first...
                assert isinstance(app.screen, ResubmitScreen)
                field = app.screen.query_one("#account", Input)
                assert field.value == REFUSED[0]                         # ...its account, to correct
                await keys.press(*["backspace"] * len(REFUSED[0]), *CORRECTED, "enter")
                await until(pilot, lambda: len(worklist.payments) == 1, "one left on the worklist")
                assert app.screen is worklist and "Resubmitted" in text_of(worklist, "#outcome")
                assert first["receipt"] in text_of(worklist, "#outcome") and CORRECTED in text_of(worklist, "#outcome")
                assert text_of(worklist, "#why").startswith(second["receipt"])
                posted = await wait_until_async(lambda: admin_get(server, f"/api/v1/payments/{first['id']}"),
                                                done=lambda a: a["payment"]["status"] == "posted",
                                                what="the resubmitted payment posted", timeout=20, interval=0.3)
                assert posted["payment"]["account"] == billing.posted[first["id"]]["account"] == CORRECTED

                await keys.press("f")                                    # refund the second: asked first
                assert isinstance(app.screen, ConfirmRefundScreen)
                await keys.press("n")
                assert app.screen is worklist and len(worklist.payments) == 1
                await keys.press("f", "y")
                await until(pilot, lambda: not worklist.payments, "an empty worklist")
                assert "Refunded Rs 75.00 upi" in text_of(worklist, "#outcome")
                assert (await admin_get(server, f"/api/v1/payments/{second['id']}"))["payment"]["status"] == "refunded"
                await keys.press("r")                                    # nothing left to pick
                assert app.screen is worklist
                await keys.press("escape")
                assert "Refunded Rs 75.00 upi" in text_of(app, "#message")
                await until(pilot, lambda: "FAILED" not in text_of(app, "#status"), "no failures on top")

                await keys.press("c")
                cash_up = app.screen
                assert isinstance(cash_up, CashUpScreen)
                await until(pilot, lambda: cash_up.cash is not None, "the cash-up")
                cash = (await admin_get(server, f"/api/v1/counters/{counter.id}/cash-up"))["cash_up"]
                assert cash_up.cash == cash
                on_screen = slip_figures(text_of(cash_up, "#table"))
                assert on_screen["Taken"] == (2, 25050 + 7500) and on_screen["Refunded"] == (1, 7500)
                assert on_screen["Refunded UPI"] == (1, 7500)                 # the UPI refund...
                assert on_screen["In the drawer Cash"] == (None, 25050)      # ...took no cash out
                assert "they add up" in text_of(cash_up, "#check")
                await keys.press("p")
                assert "Cash-up slip printed" in text_of(cash_up, "#outcome")
                printed = slips.read_text()
                figures = slip_figures(printed)
                assert figures == on_screen
                parts = [figures[n] for n in ("Posted", "Pending", "Failed", "Refunded")]
                assert tuple(map(sum, zip(*parts))) == figures["Taken"] == (cash["taken"]["count"],
                                                                            cash["taken"]["paise"])
                assert figures["Posted"] == (1, 25050) and "CASH-UP" in printed
                assert max(len(line) for line in printed.splitlines()) <= 32
                await keys.press("escape")
                assert not isinstance(app.screen, CashUpScreen)

                server.stop()                                             # the worklist needs the server
                await keys.press("w")
                await until(pilot, lambda: "needs the server" in text_of(app.screen, "#outcome"),
                            "the server's absence in words")
                await keys.press("escape")
        finally:
            server.stop()
