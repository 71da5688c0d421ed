"""The kiosk's small dialogs: issue (service and priority), transfer, take payment, the worklist of
failed payments (resubmit with the account corrected, or refund) and the day's cash-up.

Each choice is one key (a digit picks, Enter takes the default, Escape cancels), so a cashier
with a queue in front of them never reaches for the mouse.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from .client import Json, KioskError
from .desk import ActionResult, describe_error
from .text import cash_up_adds_up, cash_up_table, parse_rupees, rupees, when_text

PRIORITY_KEYS = {"n": "normal", "s": "senior", "d": "disabled"}
MODES = ("cash", "cheque", "card", "upi", "dd")

DIALOG_CSS = """
.dialog { width: 70; height: auto; padding: 1 2; border: thick $accent; background: $surface; }
.dialog .title { text-style: bold; margin-bottom: 1; }
.dialog .hint { color: $text-muted; margin-top: 1; }
.dialog .error { color: $error; }
"""


class IssueScreen(ModalScreen[tuple[str, str] | None]):
    """Pick a service by its digit (Enter: the first) and a priority by n, s or d."""

    DEFAULT_CSS = "IssueScreen { align: center middle; }" + DIALOG_CSS
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, services: list[tuple[str, str]]) -> None:
        super().__init__()
        self.services = services[:9]
        self.priority = "normal"

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Issue a token", classes="title")
            for number, (_, name) in enumerate(self.services, 1):
                yield Label(f" {number}  {name}")
            yield Static(id="priority")
            yield Label("digit: issue it   Enter: the first   n/s/d: priority   Esc: cancel", classes="hint")

    def on_mount(self) -> None:
        self._show_priority()

    def _show_priority(self) -> None:
        choices = "   ".join(f"[{k}] {v}" if v != self.priority else f"<{k}> {v.upper()}"
                               for k, v in PRIORITY_KEYS.items())
        self.query_one("#priority", Static).update(Text(f"Priority: {choices}"))

    def on_key(self, event: events.Key) -> None:
        if event.key in PRIORITY_KEYS:
            self.priority = PRIORITY_KEYS[event.key]
            self._show_priority()
        elif event.key.isdigit() and 1 <= int(event.key) <= len(self.services):
            self.dismiss((self.services[int(event.key) - 1][0], self.priority))
        elif event.key == "enter" and self.services:
            self.dismiss((self.services[0][0], self.priority))
        else:
            return
        event.stop()
        event.prevent_default()

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class TransferTarget:
    label: str
    service: str | None = None
    counter: str | None = None


class TransferScreen(ModalScreen[TransferTarget | None]):
    """Send the consumer to another service or counter: one digit each."""

    DEFAULT_CSS = "TransferScreen { align: center middle; }" + DIALOG_CSS
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, number: str, targets: list[TransferTarget]) -> None:
        super().__init__()
        self.number = number
        self.targets = targets[:9]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Transfer {self.number} to", classes="title")
            for number, target in enumerate(self.targets, 1):
                yield Label(f" {number}  {target.label}")
            yield Label("digit: transfer   Esc: cancel", classes="hint")

    def on_key(self, event: events.Key) -> None:
        if event.key.isdigit() and 1 <= int(event.key) <= len(self.targets):
            event.stop()
            event.prevent_default()
            self.dismiss(self.targets[int(event.key) - 1])

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class PaymentForm:
    account: str
    amount_paise: int
    mode: str


class PayScreen(ModalScreen[PaymentForm | None]):
    """Account, then amount: Enter on the account looks the bill up and fills in its amount."""

    DEFAULT_CSS = "PayScreen { align: center middle; }" + DIALOG_CSS
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel"), Binding("f2", "mode", "Mode")]

    def __init__(self, number: str, lookup: Callable[[str], Awaitable[Json]]) -> None:
        super().__init__()
        self.number = number
        self.lookup = lookup
        self.mode = "cash"
        self._looked_up: str | None = None   # the account whose bill was (or is being) looked up
        self._looking = False
        self._submit_when_filled = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Payment for {self.number}", classes="title")
            yield Label("Account number")
            yield Input(placeholder="account number", id="account", restrict=r"[0-9A-Za-z\-]*", max_length=24,
                        compact=True)
            yield Static(id="bill")
            yield Label("Amount, rupees")
            yield Input(placeholder="amount in rupees", id="amount", restrict=r"[0-9.,]*", max_length=14,
                        compact=True)
            yield Static(id="mode")
            yield Static(id="error", classes="error")
            yield Label("Enter: bill amount / take payment   F2: mode   Esc: cancel", classes="hint")

    def on_mount(self) -> None:
        self._show_mode()
        self.query_one("#account", Input).focus()

    def _show_mode(self) -> None:
        self.query_one("#mode", Static).update(Text(f"Mode: {self.mode.upper()}"))

    def action_mode(self) -> None:
        self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]
        self._show_mode()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _error(self, text: str) -> None:
        self.query_one("#error", Static).update(Text(text))

    @on(Input.Submitted, "#account")
    def account_entered(self, event: Input.Submitted) -> None:
        """Look the bill up and move to the amount; Enter again takes the bill's amount as it is.

        A quick typist's second Enter can reach the account field before the focus has moved,
        so it counts the same as Enter on the amount.
        """
        account = event.value.strip()
        if not 4 <= len(account) <= 24:
            self._error("Account: 4-24 letters, digits or dashes.")
            return
        self._error("")
        if account == self._looked_up:
            if self._looking:
                self._submit_when_filled = True
            else:
                self._submit()
            return
        self._looked_up, self._looking = account, True
        self.query_one("#amount", Input).focus()
        self.run_worker(self._fill_amount(account), group="bill")

    async def _fill_amount(self, account: str) -> None:
        """Fill in the bill's amount; the cashier types it when billing cannot say."""
        shown = self.query_one("#bill", Static)
        shown.update(Text("looking the bill up..."))
        try:
            found = await self.lookup(account)
        except KioskError as exc:
            shown.update(Text(f"No bill to show ({exc.message}): type the amount."))
            found = {}
        finally:
            self._looking = False
        bill = found.get("bill") or {}
        amount = bill.get("amount_paise")
        if isinstance(amount, int):
            stale = " (billing is down: last known bill)" if found.get("stale") else ""
            due = f", due {bill['due_date']}" if bill.get("due_date") else ""
            shown.update(Text(f"{bill.get('consumer', '')}: {rupees(amount)}{due}{stale}"))
            field = self.query_one("#amount", Input)
            if not field.value:
                field.value = f"{amount // 100}.{amount % 100:02d}"
                field.cursor_position = len(field.value)
        if self._submit_when_filled:
            self._submit_when_filled = False
            self._submit()

    @on(Input.Submitted, "#amount")
    def amount_entered(self) -> None:
        self._submit()

    def _submit(self) -> None:
        account = self.query_one("#account", Input).value.strip()
        if not 4 <= len(account) <= 24:
            self.query_one("#account", Input).focus()
            self._error("Account: 4-24 letters, digits or dashes.")
            return
        amount = self.query_one("#amount", Input)
        try:
            paise = parse_rupees(amount.value)
        except ValueError as exc:
            amount.focus()
            self._error(str(exc) if amount.value else "Type the amount in rupees.")
            return
        self.dismiss(PaymentForm(account, paise, self.mode))


WIDE_CSS = """
.wide { width: 96%; max-width: 110; height: auto; max-height: 96%; }
.wide DataTable { height: auto; max-height: 12; margin-bottom: 1; }
.dialog .ok { color: $success; text-style: bold; }
.dialog .why { color: $warning; margin-bottom: 1; }
"""


class WorklistScreen(ModalScreen[str | None]):
    """The counter's failed payments, oldest first, the highlighted one's reason in words under the
    list: r resubmits it (its account shown to correct), f records it refunded (after a yes).

    Dismissed with the last outcome, for the main screen to say."""

    DEFAULT_CSS = "WorklistScreen { align: center middle; }" + DIALOG_CSS + WIDE_CSS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("r", "resubmit", "Resubmit"),
        Binding("f", "refund", "Refund"),
    ]

    def __init__(self, where: str, load: Callable[[], Awaitable[list[Json]]],
                 resubmit: Callable[[str, str | None], Awaitable[ActionResult]],
                 refund: Callable[[str], Awaitable[ActionResult]]) -> None:
        super().__init__()
        self.where = where
        self.load, self.resubmit, self.refund = load, resubmit, refund
        self.payments: list[Json] = []
        self.outcome: str | None = None
        self.busy = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(f"Failed payments at {self.where}: billing refused them", classes="title")
            yield DataTable(id="failed", cursor_type="row", zebra_stripes=True)
            yield Static(id="why", classes="why")
            yield Static(id="outcome")
            yield Label("Up/Down: pick   Enter or r: resubmit   f: refund   Esc: close",
                        classes="hint")

    async def on_mount(self) -> None:
        table = self.query_one("#failed", DataTable)
        table.add_columns("Receipt", "Account", "Amount", "Mode", "When")
        table.focus()
        self._say("Loading the worklist...")
        self.run_worker(self._reload(), group="worklist")

    def _say(self, text: str, *, error: bool = False, ok: bool = False) -> None:
        shown = self.query_one("#outcome", Static)
        shown.update(Text(text))
        shown.set_class(error, "error")
        shown.set_class(ok, "ok")

    async def _reload(self, keep: str = "") -> None:
        """Fetch the worklist again; ``keep`` says what was just done, the error if it fails."""
        try:
            self.payments = await self.load()
        except KioskError as exc:
            self._say(f"{keep} The worklist could not be loaded: {describe_error(exc)}".strip(), error=True)
            return
        table = self.query_one("#failed", DataTable)
        row = table.cursor_row
        table.clear()
        for payment in self.payments:
            table.add_row(Text(str(payment.get("receipt")), style="bold"), str(payment.get("account")),
                          Text(rupees(int(payment["amount_paise"])), justify="right"),
                          str(payment.get("mode", "")), when_text(payment.get("created_at")),
                          key=str(payment["id"]))
        if self.payments:
            table.move_cursor(row=min(row, len(self.payments) - 1))
        left = f"{len(self.payments)} to settle." if self.payments else "Nothing left to settle."
        self._say(f"{keep} {left}".strip(), ok=bool(keep))
        self._show_why()

    def chosen(self) -> Json | None:
        table = self.query_one("#failed", DataTable)
        if not self.payments or not 0 <= table.cursor_row < len(self.payments):
            return None
        return self.payments[table.cursor_row]

    def _show_why(self) -> None:
        payment = self.chosen()
        why = self.query_one("#why", Static)
        if payment is None:
            why.update(Text("No failed payments: billing has taken every payment of this counter."
                            if not self.payments else ""))
            return
        reason = payment.get("reason_text") or payment.get("reason") or "no reason given"
        why.update(Text.assemble((f"{payment.get('receipt')}: ", "bold"), reason))

    @on(DataTable.RowHighlighted, "#failed")
    def highlighted(self) -> None:
        self._show_why()

    @on(DataTable.RowSelected, "#failed")
    async def selected(self) -> None:
        """Enter on a row: resubmit it, the commonest way out (a mistyped account)."""
        await self.action_resubmit()

    def _act(self, work: Callable[[], Awaitable[ActionResult]], doing: str) -> None:
        if self.busy:
            self._say("Still busy: press the key again when it is done.", error=True)
            return
        self.busy = True
        self._say(f"{doing}...")
        self.run_worker(self._perform(work), group="worklist")

    async def _perform(self, work: Callable[[], Awaitable[ActionResult]]) -> None:
        try:
            result = await work()
        except KioskError as exc:
            self.outcome = describe_error(exc)
            if not exc.transient:
                await self._reload()           # someone else may have settled it meanwhile
            self._say(self.outcome, error=True)   # the refusal stays in view, not the count
        else:
            self.outcome = result.message() + "."
            await self._reload(self.outcome)
        finally:
            self.busy = False

    async def action_resubmit(self) -> None:
        payment = self.chosen()
        if payment is None or self.busy:
            return
        pid = str(payment["id"])

        def corrected(account: str | None) -> None:
            if account is not None:
                changed = account if account != payment.get("account") else None
                self._act(lambda: self.resubmit(pid, changed), f"Resubmitting {payment.get('receipt')}")

        await self.app.push_screen(ResubmitScreen(payment), corrected)

    async def action_refund(self) -> None:
        payment = self.chosen()
        if payment is None or self.busy:
            return
        pid = str(payment["id"])

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._act(lambda: self.refund(pid), f"Recording the refund of {payment.get('receipt')}")

        await self.app.push_screen(ConfirmRefundScreen(payment), confirmed)

    def action_close(self) -> None:
        self.dismiss(self.outcome)


class ResubmitScreen(ModalScreen[str | None]):
    """The account to resubmit a failed payment under: its own, ready to correct."""

    DEFAULT_CSS = "ResubmitScreen { align: center middle; }" + DIALOG_CSS + WIDE_CSS
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, payment: Json) -> None:
        super().__init__()
        self.payment = payment

    def compose(self) -> ComposeResult:
        p = self.payment
        with Vertical(classes="dialog"):
            yield Label(f"Resubmit {p.get('receipt')}: {rupees(int(p['amount_paise']))} {p.get('mode')}",
                        classes="title")
            yield Static(Text(str(p.get("reason_text") or p.get("reason") or "")), classes="why")
            yield Static(Text("Account number as on the bill: correct it if it was wrong"))
            yield Input(value=str(p.get("account") or ""), id="account", restrict=r"[0-9A-Za-z\-]*",
                        max_length=24, compact=True)
            yield Static(id="error", classes="error")
            yield Label("Enter: resubmit   Esc: back", classes="hint")

    def on_mount(self) -> None:
        field = self.query_one("#account", Input)
        field.focus()
        field.cursor_position = len(field.value)

    @on(Input.Submitted, "#account")
    def submitted(self, event: Input.Submitted) -> None:
        account = event.value.strip()
        if not 4 <= len(account) <= 24:
            self.query_one("#error", Static).update(Text("Account: 4-24 letters, digits or dashes."))
            return
        self.dismiss(account)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmRefundScreen(ModalScreen[bool]):
    """A refund cannot be undone: y records it, n or Escape does not."""

    DEFAULT_CSS = "ConfirmRefundScreen { align: center middle; }" + DIALOG_CSS + WIDE_CSS

    def __init__(self, payment: Json) -> None:
        super().__init__()
        self.payment = payment

    def compose(self) -> ComposeResult:
        p = self.payment
        amount = rupees(int(p["amount_paise"]))
        with Vertical(classes="dialog"):
            yield Label(f"Refund {p.get('receipt')}?", classes="title")
            yield Static(Text(f"{amount} {p.get('mode')} for account {p.get('account')}, "
                              f"taken {when_text(p.get('created_at'))}."))
            yield Static(Text(f"Hand the consumer {amount} back and take the provisional receipt; the "
                              "payment then leaves the worklist for good."))
            yield Label("y: yes, refunded   n or Esc: no", classes="hint")

    def on_key(self, event: events.Key) -> None:
        if event.key in ("y", "n", "escape"):
            event.stop()
            event.prevent_default()
            self.dismiss(event.key == "y")


class CashUpScreen(ModalScreen[None]):
    """The counter's cash-up for today, to count the drawer against; p prints it as a slip."""

    DEFAULT_CSS = "CashUpScreen { align: center middle; }" + DIALOG_CSS + """
    CashUpScreen .dialog { width: 58; }
    CashUpScreen #table { margin: 1 0; text-wrap: nowrap; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("p", "print", "Print"),
        Binding("u", "reload", "Update"),
    ]

    def __init__(self, load: Callable[[], Awaitable[Json]], names: Callable[[Json], tuple[str, str]],
                 print_slip: Callable[[Json], tuple[bool, str]]) -> None:
        super().__init__()
        self.load, self.names, self.print_slip = load, names, print_slip
        self.cash: Json | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Cash-up", classes="title", id="title")
            yield Static("Loading the cash-up...", id="table")
            yield Static(id="check")
            yield Static(id="outcome")
            yield Label("p: print the slip   u: update   Esc: close", classes="hint")

    def on_mount(self) -> None:
        self.run_worker(self.action_reload(), group="cash-up")

    async def action_reload(self) -> None:
        outcome = self.query_one("#outcome", Static)
        try:
            self.cash = await self.load()
        except KioskError as exc:
            outcome.update(Text(f"The cash-up could not be loaded: {describe_error(exc)}"))
            outcome.set_class(True, "error")
            return
        title, *table, check = cash_up_table(self.cash, *self.names(self.cash), width=50)
        self.query_one("#title", Static).update(Text(title))
        self.query_one("#table", Static).update(Text("\n".join(table)))
        shown = self.query_one("#check", Static)
        shown.update(Text(check))
        shown.set_class(not cash_up_adds_up(self.cash), "error")
        outcome.update("")

    def action_print(self) -> None:
        if self.cash is None:
            return
        printed, said = self.print_slip(self.cash)
        outcome = self.query_one("#outcome", Static)
        outcome.update(Text(said))
        outcome.set_class(not printed, "error")
        outcome.set_class(printed, "ok")

    def action_close(self) -> None:
        self.dismiss(None)
