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
    """One line of a cash-up: a label, how many payments and how much; ``depth`` 1 for a mode."""

    label: str
    count: int
    paise: int
    depth: int = 0


def cash_up_rows(cash: Json) -> tuple[list[CashUpRow], list[CashUpRow]]:
    """The cash-up as two blocks: taken (by mode, then in all), and what became of it."""
    taken = [CashUpRow(MODE_LABEL.get(mode, mode), int(f["count"]), int(f["paise"]), depth=1)
             for mode, f in (cash.get("by_mode") or {}).items()]
    taken.append(CashUpRow("Taken", int(cash["taken"]["count"]), int(cash["taken"]["paise"])))
    parts = [CashUpRow(label, int(cash[name]["count"]), int(cash[name]["paise"])) for name, label in CASH_UP_PARTS]
    return taken, parts


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
    a rule between blocks. Labels are cut (never the figures) when the width is short."""
    amounts = [rupees(r.paise) for block in blocks for r in block]
    money_w = max([len("Amount"), *map(len, amounts)])
    count_w = max([len("Count"), *(len(str(r.count)) for block in blocks for r in block)])
    gap = "  " if width - money_w - count_w - 4 >= len("Refunded") + 2 else " "   # two spaces where they fit
    label_w = max(1, width - money_w - count_w - 2 * len(gap))

    def row(label: str, count: str, amount: str) -> str:
        return f"{label[:label_w]:<{label_w}}{gap}{count:>{count_w}}{gap}{amount:>{money_w}}"

    out = [row("", "Count", "Amount")]
    for number, block in enumerate(blocks):
        if number:
            out.append(rule * width)
        out += [row("  " * r.depth + r.label, str(r.count), rupees(r.paise)) for r in block]
    return out


def cash_up_table(cash: Json, counter_name: str = "", substation_name: str = "", width: int = 44) -> list[str]:
    """The cash-up for a terminal: a title, the table, and whether it adds up."""
    counter = str(cash.get("counter") or "")
    title = f"Cash-up {cash['day']}: {counter}" + (f" ({counter_name})" if counter_name not in ("", counter) else "")
    if substation_name:
        title += f", {substation_name}"
    taken, parts = cash_up_rows(cash)
    return [title, *money_table([taken, parts], width), cash_up_check(cash)]
