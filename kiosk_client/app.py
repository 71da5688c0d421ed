"""The cashier's terminal app (Textual): one key per action, the queue with its waits, and the
server's and billing's state in plain words.

    i issue   n next   r recall   s start   f finish   x no-show   t transfer   p pay   y sync
    w failed payments (resubmit, refund)   c the day's cash-up (print it)

Every action goes through a ``Desk``, so the screen keeps working when the server is away:
finishing, starting, recalls, no-shows and cash payments wait in the journal (the top line
counts them) and go out in order when it is back; tokens are issued from a leased number block.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import datetime
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from .client import Json, KioskClient, KioskError
from .desk import Desk, ActionResult, View, describe_error
from .journal import Journal
from .screens import (
    CashUpScreen,
    IssueScreen,
    PaymentForm,
    PayScreen,
    TransferScreen,
    TransferTarget,
    WorklistScreen,
)
from .slip import print_slip, render
from .text import PRIORITY_LABEL, clock_text, origin_text, wait_text

ACTIONS = ("issue", "next", "recall", "start", "finish", "no_show", "transfer", "pay", "sync", "worklist",
           "cash_up")
#: How long after finishing a token ``p`` still takes its payment: a little inside the server's
#: window (counter_server.services.payments.PAYMENT_WINDOW_AFTER_DONE_S, 5 minutes), so the
#: form is not filled in for a payment the server would refuse.
PAY_AFTER_FINISH_S = 4 * 60


class KioskApp(App[None]):
    """One counter's screen."""

    TITLE = "Cash counter"
    ENABLE_COMMAND_PALETTE = False   # every key is the cashier's
    CSS = """
    #status { height: 1; padding: 0 1; background: $success-darken-2; color: $text; text-style: bold; }
    #status.offline { background: $error; }
    #status.degraded { background: $warning-darken-2; }
    #current { height: 5; padding: 0 1; border: round $accent; }
    #queue { height: 1fr; }
    #message { height: 2; padding: 0 1; }
    #message.error { color: $error; text-style: bold; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("i", "issue", "Issue", priority=True),
        Binding("n", "next", "Next", priority=True),
        Binding("r", "recall", "Recall", priority=True),
        Binding("s", "start", "Start", priority=True),
        Binding("f", "finish", "Finish", priority=True),
        # x and y keep out of the footer so it fits 80 columns: the box above says x when a token
        # is called, and y when the journal holds something (it syncs by itself anyway).
        Binding("x", "no_show", "No-show", priority=True, show=False),
        Binding("t", "transfer", "Transfer", priority=True),
        Binding("p", "pay", "Pay", priority=True),
        Binding("y", "sync", "Sync", priority=True, show=False),
        Binding("w", "worklist", "Failed", priority=True),
        Binding("c", "cash_up", "Cash-up", priority=True),
        Binding("q", "quit", "Quit", priority=True, show=False),   # ctrl+q too; keeps 80 columns
    ]

    def __init__(self, server: str, key: str, *, counter: str | None = None,
                 journal_path: str | Path = "kiosk-journal.sqlite", slip_path: str | None = None,
                 slip_format: str = "escpos", columns: int = 32, lease_size: int = 10,
                 refresh_s: float = 2.0, timeout: float = 5.0, retries: int = 3,
                 failed_check_s: float = 30.0) -> None:
        super().__init__()
        self.server, self.key, self.counter = server, key, counter
        self.journal_path = Path(journal_path)
        self.slip_path, self.slip_format, self.columns = slip_path, slip_format, columns
        self.lease_size, self.refresh_s = lease_size, refresh_s
        self.failed_check_s = failed_check_s   # how often the top line recounts the failed payments
        self.failed_payments: int | None = None
        self._failed_checked_at: float | None = None
        self.timeout, self.retries = timeout, retries
        self.desk: Desk | None = None
        self.history: deque[ActionResult] = deque(maxlen=500)   # this session's results, newest last
        self.busy: str | None = None
        self._refreshing = self._connecting = False
        self._fatal = ""   # a key the server refuses: no use trying again

    def compose(self) -> ComposeResult:
        yield Static("connecting...", id="status")
        yield Static(id="current")
        yield DataTable(id="queue", cursor_type="row", zebra_stripes=True)
        yield Static(id="message")
        yield Footer(compact=True)

    async def on_mount(self) -> None:
        table = self.query_one("#queue", DataTable)
        table.add_columns("Token", "Service", "Priority", "Status", "Counter", "Ahead", "Wait")
        self._client = await KioskClient(self.server, self.key, timeout=self.timeout, retries=self.retries).open()
        self._journal = Journal(self.journal_path)
        self.set_interval(self.refresh_s, self._tick)
        self.run_worker(self._connect(), group="refresh")

    async def on_unmount(self) -> None:
        await self._client.close()
        self._journal.close()

    async def _connect(self) -> None:
        """Learn the counter from the key; keep trying while the server cannot be reached."""
        if self._connecting or self._fatal:
            return
        self._connecting = True
        desk = Desk(self._client, self._journal, counter=self.counter, lease_size=self.lease_size)
        try:
            await desk.connect()
        except KioskError as exc:
            if not exc.transient:
                self._fatal = describe_error(exc)
            self.query_one("#status", Static).update(Text("NOT CONNECTED"))
            self.say(describe_error(exc) + ("" if self._fatal else " Trying again..."), error=True)
            return
        finally:
            self._connecting = False
        self.desk = desk
        self.sub_title = f"{desk.cid} {desk.substation_name}"
        await self.refresh_view()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Counter keys act only on the main screen, and only once the desk is connected.

        They are priority bindings, run by the app as each key arrives: a dialog a key opens is
        up before the next key is read, so a quick "i Enter" issues instead of losing the Enter.
        """
        if isinstance(self.screen, ModalScreen) and (action in ACTIONS or action == "quit"):
            return False
        if action in ACTIONS:
            return self.desk is not None
        return True

    # --- showing ------------------------------------------------------------------------------

    def say(self, text: str, *, error: bool = False) -> None:
        message = self.query_one("#message", Static)
        message.update(Text(text))
        message.set_class(error, "error")

    def _tick(self) -> None:
        if self.desk is None:
            if not self._connecting and not self._fatal:
                self.run_worker(self._connect(), group="refresh")
        elif not self._refreshing:
            self.run_worker(self.refresh_view(), group="refresh")

    async def refresh_view(self, sync: bool = True) -> None:
        """Ask the server how things stand (replaying the journal when it is back) and show it."""
        if self.desk is None or self._refreshing:
            return
        self._refreshing = True
        try:
            before = self.desk.pending_count()
            view = await self.desk.refresh(sync=sync)
            if before and not view.pending and view.online:
                self.say(f"Back online: {before} journalled action(s) sent.")
            if view.online:
                try:
                    await self.desk.ensure_leases()
                except KioskError as exc:
                    self.say(f"Could not lease numbers for offline issue: {describe_error(exc)}", error=True)
                await self._count_failed()
            self.show(view)
        finally:
            self._refreshing = False

    async def _count_failed(self) -> None:
        """Recount the failed payments every ``failed_check_s``: billing refuses one minutes after
        it was taken, and the cashier must learn of it without asking."""
        assert self.desk is not None
        now = time.monotonic()
        if self._failed_checked_at is not None and now - self._failed_checked_at < self.failed_check_s:
            return
        try:
            self.failed_payments = len(await self.desk.failed_payments())
        except KioskError:
            return   # the next refresh says what is wrong with the server
        self._failed_checked_at = now

    def show(self, view: View) -> None:
        try:
            status = self.query_one("#status", Static)
        except NoMatches:     # the app is closing and its screen is already gone: nothing to show
            return
        line = view.status_line()
        if self.failed_payments:
            line += f" | {self.failed_payments} payment(s) FAILED: w"
        status.update(Text(line))
        billing = (view.billing or {}).get("state")
        status.set_class(view.online is False, "offline")
        status.set_class(bool(view.online) and (billing in ("slow", "down") or view.failed > 0
                                                or bool(self.failed_payments)), "degraded")
        self.query_one("#current", Static).update(self._current_text(view))
        table = self.query_one("#queue", DataTable)
        table.clear()
        names = self.desk.service_names if self.desk else {}
        for token in view.tokens:
            estimate = token.get("estimate")
            waiting = token.get("status") == "waiting"
            table.add_row(
                Text(token.get("number", "?"), style="bold"),
                names.get(token.get("service", ""), token.get("service", "")),
                token.get("priority", ""),
                token.get("status", ""),
                token.get("counter") or "",
                str(estimate.get("ahead", "")) if waiting and estimate else "",
                wait_text(estimate) if waiting else "",
            )

    def _current_text(self, view: View) -> Text:
        token = view.current
        if token is None:
            if view.online is False:
                line = ("Nobody at the counter. The server is away: the queue below is as last seen, and "
                        "calling the next needs the server (call by voice).")
            else:
                line = f"Nobody at the counter. {view.waiting} waiting in the hall: press n to call the next."
            return Text.assemble(("AT THE COUNTER\n", "dim"), line, self._sync_hint(view))
        names = self.desk.service_names if self.desk else {}
        service = names.get(token.get("service", ""), token.get("service", ""))
        priority = token.get("priority", "normal")
        who = f" ({PRIORITY_LABEL.get(priority, priority)})" if priority != "normal" else ""
        hint = "s start, r recall, x no-show, t transfer" if token.get("status") == "called" else "p pay, f finish"
        times = f"called {clock_text(token.get('called_at'))}, recalls {token.get('recalls', 0)}"
        return Text.assemble(("AT THE COUNTER\n", "dim"), (token.get("number", "?"), "bold reverse"),
                             f"  {str(token.get('status', '')).upper()}  {service}{who}{origin_text(token)}\n",
                             f"{times}    keys: {hint}", ", y sync" if view.pending or view.failed else "")

    @staticmethod
    def _sync_hint(view: View) -> str:
        """y is not in the footer: say it while the journal holds something to send or look at."""
        return "\ny: send the journal now" if view.pending or view.failed else ""

    # --- acting -------------------------------------------------------------------------------

    def _run(self, name: str, work: Callable[[], Awaitable[ActionResult | str]]) -> None:
        """Run one action in the background; a second key while it runs is refused, not queued."""
        if self.busy is not None:
            self.say(f"Still busy with {self.busy}: press the key again when it is done.", error=True)
            return
        self.busy = name
        self.say(f"{name}...")
        self.run_worker(self._perform(name, work), group="actions")

    async def _perform(self, name: str, work: Callable[[], Awaitable[ActionResult | str]]) -> None:
        assert self.desk is not None
        try:
            result = await work()
        except KioskError as exc:
            self.say(f"{name}: {describe_error(exc)}", error=True)
        except Exception as exc:  # noqa: BLE001 - the counter's screen must outlive a bug
            self.log.error(f"{name} failed", exc)
            self.say(f"{name} failed unexpectedly: {exc!r}", error=True)
        else:
            if isinstance(result, ActionResult):
                self.history.append(result)
                self.say(result.message(self.desk.service_names) + self._after(result))
            else:
                self.say(result)
        finally:
            self.busy = None
        self.show(self.desk.view())
        await self.refresh_view(sync=False)

    def _after(self, result: ActionResult) -> str:
        """Print the slip of an issued token, or the receipt of a payment, when a printer is set."""
        slip = self.desk.slip_for(result) if self.slip_path and self.desk is not None else None
        if slip is None or self.slip_path is None:
            return ""
        try:
            print_slip(render(slip, self.columns, self.slip_format), self.slip_path)
        except OSError as exc:
            return f" (slip NOT printed: {exc.strerror or exc})"
        return " (slip printed)"

    async def action_issue(self) -> None:
        assert self.desk is not None
        desk = self.desk
        services = [(s["id"], s.get("name", s["id"])) for s in desk.services]
        mine = set(desk.counter_services)  # this counter's services first: the common case
        services.sort(key=lambda s: s[0] not in mine)

        def chosen(choice: tuple[str, str] | None) -> None:
            if choice is not None:
                self._run("issue", lambda: desk.issue(*choice))

        await self.push_screen(IssueScreen(services), chosen)  # mounted before the next key is read

    def action_next(self) -> None:
        assert self.desk is not None
        self._run("call next", self.desk.call_next)

    def action_recall(self) -> None:
        assert self.desk is not None
        self._run("recall", self.desk.recall)

    def action_start(self) -> None:
        assert self.desk is not None
        self._run("start", self.desk.start)

    def action_finish(self) -> None:
        assert self.desk is not None
        self._run("finish", self.desk.complete)

    def action_no_show(self) -> None:
        assert self.desk is not None
        self._run("no-show", self.desk.no_show)

    async def action_transfer(self) -> None:
        assert self.desk is not None
        desk = self.desk
        current = desk.current()
        if current is None:
            self.say("Nobody at the counter to transfer.", error=True)
            return
        targets = [TransferTarget(f"service: {s.get('name', s['id'])}", service=s["id"])
                   for s in desk.services if s["id"] != current.get("service")]
        targets += [TransferTarget(f"counter {c}", counter=c) for c in desk.counters if c != desk.cid]

        def chosen(target: TransferTarget | None) -> None:
            if target is not None:
                self._run("transfer", lambda: desk.transfer(service=target.service, counter=target.counter))

        await self.push_screen(TransferScreen(current.get("number", "?"), targets), chosen)

    async def action_pay(self) -> None:
        assert self.desk is not None
        desk = self.desk
        current = desk.current() or self._just_finished()
        if current is None:
            self.say("Nobody at the counter: call a token before taking a payment "
                     f"(or take it within {PAY_AFTER_FINISH_S // 60} min of finishing).", error=True)
            return
        token_id = None if current is desk.current() else current.get("id")

        def chosen(form: PaymentForm | None) -> None:
            if form is not None:
                self._run("payment", lambda: desk.pay(form.account, form.amount_paise, form.mode, token_id))

        await self.push_screen(PayScreen(current.get("number", "?"), desk.bill), chosen)

    def _just_finished(self) -> Json | None:
        """The token this counter finished last, while the server still takes its payment
        (a cashier who pressed f before p); None after that."""
        assert self.desk is not None
        token = self.desk.last_finished()
        finished = (token or {}).get("finished_at")
        if token is None or not finished:
            return None
        try:
            age = self.desk.server_now().timestamp() - datetime.fromisoformat(finished).timestamp()
        except ValueError:
            return None
        return token if age < PAY_AFTER_FINISH_S else None

    def action_sync(self) -> None:
        assert self.desk is not None
        desk = self.desk

        async def sync() -> str:
            report = await desk.sync()
            text = f"Sync: {len(report.done)} sent, {len(report.failed)} refused, {report.pending} pending."
            if report.failed:
                text += " Refused: " + "; ".join(f"{e.label}: {e.error_message}" for e in report.failed)
            return text

        self._run("sync", sync)

    async def action_worklist(self) -> None:
        """The failed payments: pick one, then resubmit it (its account corrected) or refund it."""
        assert self.desk is not None
        desk = self.desk
        name = desk.counter_name()
        where = desk.cid + (f" ({name})" if name != desk.cid else "")

        def closed(outcome: str | None) -> None:
            if outcome:
                self.say(outcome)
            self._failed_checked_at = None    # recount at once: the top line must not lag behind
            self.run_worker(self.refresh_view(sync=False), group="refresh")

        await self.push_screen(WorklistScreen(where, desk.failed_payments, desk.resubmit, desk.refund), closed)

    async def action_cash_up(self) -> None:
        """Today's cash-up, to count the drawer against; printed on the slip printer with p."""
        assert self.desk is not None
        desk = self.desk

        def names(cash: Json) -> tuple[str, str]:
            return desk.counter_name(cash.get("counter")), desk.substation_name

        await self.push_screen(CashUpScreen(desk.cash_up, names, self._print_cash_up))

    def _print_cash_up(self, cash: Json) -> tuple[bool, str]:
        """Print the cash-up slip: whether it went to the printer, and what to tell the cashier."""
        if self.desk is None or self.slip_path is None:
            return False, "No printer is set: start the kiosk with --slip DEVICE (or KIOSK_SLIP)."
        try:
            print_slip(render(self.desk.cash_up_slip(cash), self.columns, self.slip_format), self.slip_path)
        except OSError as exc:
            return False, f"Cash-up slip NOT printed: {exc.strerror or exc}"
        return True, f"Cash-up slip printed ({cash['day']})."
