"""Short human lines for tokens, waits and payments, shared by the screen, the CLI and the slip."""

from __future__ import annotations

import math
from collections.abc import Mapping
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
