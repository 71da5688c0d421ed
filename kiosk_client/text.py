"""Short human lines for tokens, waits and payments, shared by the screen, the CLI and the slip."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from .client import Json

PRIORITY_LABEL = {"normal": "normal", "senior": "senior citizen", "disabled": "person with disability"}

# Where a token came from, when not from this hall's counters: the cashier asks for the number.
ORIGIN_LABEL = {"remote": "taken on a phone", "slot": "booked slot"}


def origin_text(token: dict) -> str:
    """E.g. " · taken on a phone, account ending 1877" (empty for a token issued at a counter)."""
    label = ORIGIN_LABEL.get(token.get("origin") or "counter")
    if label is None:
        return ""
    hint = token.get("account_hint")
    return f" · {label}" + (f", account ending {hint}" if hint else "")



def wait_text(estimate: Json | None) -> str:
    """A wait range in whole minutes ("about 5-9 min"): an honest range, not a false-precise number."""
    if not estimate or estimate.get("p90_s") is None:
        return "wait unknown"
    low = math.floor((estimate.get("p50_s") or 0) / 60)
    high = math.ceil(estimate["p90_s"] / 60)
    if high <= 1:
        return "under 1 min"
    if low >= high:
        return f"about {high} min"
    return f"about {low}-{high} min"


def rupees(paise: int) -> str:
    """Rs 1,234.50 for 123450 paise."""
    return f"Rs {paise // 100:,}.{paise % 100:02d}"


def parse_rupees(text: str) -> int:
    """Paise from what a cashier types ("1234", "1,234.5", "1234.50"); ValueError when it is not money."""
    cleaned = text.strip().replace(",", "").removeprefix("Rs").removeprefix("₹").strip()
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount in rupees") from None
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise ValueError(f"{text!r}: give rupees with at most two decimals, above zero")
    return int(amount * 100)


def clock_text(iso: str | None) -> str:
    """HH:MM from the server's ISO time (already in the substation's time zone)."""
    if not iso:
        return "--:--"
    try:
        return datetime.fromisoformat(iso).strftime("%H:%M")
    except ValueError:
        return iso


def token_line(token: Json, names: Mapping[str, str] | None = None) -> str:
    """B-042 waiting, Bill payment (senior citizen): 3 ahead, about 5-9 min; a token taken on a
    phone says so, with the account's last digits, so the cashier asks for the number."""
    service = (names or {}).get(token.get("service", ""), token.get("service", ""))
    priority = token.get("priority", "normal")
    who = f" ({PRIORITY_LABEL.get(priority, priority)})" if priority != "normal" else ""
    line = f"{token.get('number', '?')} {token.get('status', '?')}, {service}{who}"
    if token.get("counter"):
        line += f" at {token['counter']}"
    line += origin_text(token)
    estimate = token.get("estimate")
    if token.get("status") == "waiting" and estimate:
        line += f": {estimate.get('ahead', '?')} ahead, {wait_text(estimate)}"
    return line


def payment_line(payment: Json) -> str:
    """Rs 1,234.50 cash for 2140012345: receipt PROV-S01-000012 (queued)."""
    return (f"{rupees(int(payment['amount_paise']))} {payment.get('mode', 'cash')} for "
            f"{payment.get('account')}: receipt {payment.get('receipt')} ({payment.get('status')})")


MODE_LABEL = {"cash": "Cash", "cheque": "Cheque", "card": "Card", "upi": "UPI", "dd": "DD"}
#: What a day's payments at a counter became; together they are what it took.
CASH_UP_PARTS = (("posted", "Posted"), ("pending", "Pending"), ("failed", "Failed"), ("refunded", "Refunded"))


def when_text(iso: str | None) -> str:
    """01 Dec 14:05 from the server's ISO time: a failed payment may be from an earlier day."""
    if not iso:
        return "--"
    try:
        return datetime.fromisoformat(iso).strftime("%d %b %H:%M")
    except ValueError:
        return iso


def failed_line(payment: Json) -> str:
    """PROV-S01-000012  2140012345  Rs 1,234.50  cash  01 Dec 14:05: one row of the worklist."""
    return "  ".join((str(payment.get("receipt")), str(payment.get("account")),
                      rupees(int(payment["amount_paise"])), str(payment.get("mode", "cash")),
                      when_text(payment.get("created_at"))))


@dataclass(frozen=True)
class CashUpRow:
    """One line of a cash-up: a label, how many payments (None: not counted) and how much;
    ``depth`` 1 for a mode under its total. A heading (``paise`` None) is a label alone;
    ``bold`` on the slip."""

    label: str
    count: int | None
    paise: int | None
    depth: int = 0
    bold: bool = False


def _mode_rows(by_mode: Json | None) -> list[CashUpRow]:
    return [CashUpRow(MODE_LABEL.get(mode, mode), int(f["count"]), int(f["paise"]), depth=1)
            for mode, f in (by_mode or {}).items()]


def _drawer_rows(in_drawer: Json) -> list[CashUpRow]:
    """Cash by its amount alone (the notes are counted, not the payments), cheques and drafts
    with how many there should be."""
    return [CashUpRow(MODE_LABEL.get(mode, mode), None if mode == "cash" else int(f["count"]), int(f["paise"]),
                      depth=1, bold=True) for mode, f in in_drawer.items()]


def cash_up_rows(cash: Json) -> list[list[CashUpRow]]:
    """The cash-up as blocks, each total above its modes: taken; what became of it (refunds
    by mode); and what the drawer should hold, when the server says (cash always, cheques and
    drafts when any were taken)."""
    taken = [CashUpRow("Taken", int(cash["taken"]["count"]), int(cash["taken"]["paise"]), bold=True),
             *_mode_rows(cash.get("by_mode"))]
    parts = [CashUpRow(label, int(cash[name]["count"]), int(cash[name]["paise"])) for name, label in CASH_UP_PARTS]
    parts += _mode_rows(cash.get("refunded_by_mode"))
    blocks = [taken, parts]
    if cash.get("in_drawer"):
        blocks.append([CashUpRow("In the drawer", None, None, bold=True), *_drawer_rows(cash["in_drawer"])])
    return blocks


def _parts_sum(cash: Json) -> tuple[int, int]:
    return (sum(int(cash[name]["count"]) for name, _ in CASH_UP_PARTS),
            sum(int(cash[name]["paise"]) for name, _ in CASH_UP_PARTS))


def cash_up_adds_up(cash: Json) -> bool:
    """Whether posted, pending, failed and refunded add up to taken; the kiosk checks the
    server's sums rather than trusting them, since the drawer is counted against them."""
    return _parts_sum(cash) == (int(cash["taken"]["count"]), int(cash["taken"]["paise"]))


def cash_up_check(cash: Json) -> str:
    """``cash_up_adds_up`` in words, with the difference when they do not."""
    taken = cash["taken"]
    count, paise = _parts_sum(cash)
    sums = "Posted + pending + failed + refunded"
    if cash_up_adds_up(cash):
        return f"{sums} = taken: they add up."
    return (f"{sums} = {count}, {rupees(paise)}: they do NOT add up to taken ({taken['count']}, "
            f"{rupees(int(taken['paise']))}). Tell the supervisor.")


def money_table(blocks: list[list[CashUpRow]], width: int, rule: str = "-") -> list[str]:
    """Rows of label, count and rupees, the figures right-aligned in columns, ``width`` wide;
    a rule between blocks. Labels are cut (never the figures) when the width is short; a
    heading takes the whole width."""
    rows = [r for block in blocks for r in block if r.paise is not None]
    money_w = max([len("Amount"), *(len(rupees(r.paise)) for r in rows)])
    count_w = max([len("Count"), *(len(str(r.count)) for r in rows if r.count is not None)])
    gap = "  " if width - money_w - count_w - 4 >= len("Refunded") + 2 else " "   # two spaces where they fit
    label_w = max(1, width - money_w - count_w - 2 * len(gap))

    def row(label: str, count: str, amount: str) -> str:
        return f"{label[:label_w]:<{label_w}}{gap}{count:>{count_w}}{gap}{amount:>{money_w}}"

    out = [row("", "Count", "Amount")]
    for number, block in enumerate(blocks):
        if number:
            out.append(rule * width)
        out += [("  " * r.depth + r.label)[:width] if r.paise is None else
                row("  " * r.depth + r.label, "" if r.count is None else str(r.count), rupees(r.paise))
                for r in block]
    return out


def cash_up_table(cash: Json, counter_name: str = "", substation_name: str = "", width: int = 44) -> list[str]:
    """The cash-up for a terminal: a title, the table, and whether it adds up."""
    counter = str(cash.get("counter") or "")
    title = f"Cash-up {cash['day']}: {counter}" + (f" ({counter_name})" if counter_name not in ("", counter) else "")
    if substation_name:
        title += f", {substation_name}"
    return [title, *money_table(cash_up_rows(cash), width), cash_up_check(cash)]
