"""The kiosk's small dialogs: issue (service and priority), transfer, and take payment.

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
from textual.widgets import Input, Label, Static

from .client import Json, KioskError
from .text import parse_rupees, rupees

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
