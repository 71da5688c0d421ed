"""The slips a counter prints: the token slip a consumer takes to the waiting hall, the
provisional receipt for a payment, and the cash-up the cashier counts the drawer against at the end
of the day. Plain text, or ESC/POS bytes for the 58 mm, 76 mm and 80 mm thermal receipt printers
found at counters, laid out for the characters a line holds (32, 42 or 48).

The ESC/POS writer is a handful of commands (init, align, character size, bold, cut) that every
such printer understands, so no driver library is needed. The slip is printed in English only:
thermal printers carry no Devanagari glyphs in their character tables, and Hindi text would have
to be rendered to a raster image (GS v 0) first, which this writer does not do.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from .client import Json
from .text import PRIORITY_LABEL, CashUpRow, cash_up_check, cash_up_rows, money_table, rupees, wait_text

ESC, GS, LF = b"\x1b", b"\x1d", b"\n"
INIT = ESC + b"@"                     # ESC @: reset the printer
ALIGN = {"left": ESC + b"a\x00", "centre": ESC + b"a\x01", "right": ESC + b"a\x02"}   # ESC a n
BOLD_ON, BOLD_OFF = ESC + b"E\x01", ESC + b"E\x00"                                      # ESC E n
CUT = GS + b"V\x42\x03"               # GS V 66 n: feed n lines, then a partial cut
#: Characters a line holds in the printer's standard font (font A, 12x24 dots), by paper width:
#: 32 on 58 mm, 48 on most 80 mm printers (576 dots a line).
COLUMNS = {58: 32, 80: 48}
#: The line widths a slip is laid out for: also 42, for 76 mm paper and for 80 mm printers
#: whose head prints 512 dots (the printer's manual gives its "characters per line").
WIDTHS = (32, 42, 48)


def size(width: int, height: int) -> bytes:
    """GS ! n: character size, 1-8 times wide and high."""
    if not (1 <= width <= 8 and 1 <= height <= 8):
        raise ValueError("character size is 1 to 8 times")
    return GS + b"!" + bytes([(width - 1) << 4 | (height - 1)])


@dataclass(frozen=True)
class Slip:
    """What a token slip says."""

    number: str
    service: str
    substation: str
    issued_at: datetime | None
    ahead: int | None
    wait: str
    priority: str = "normal"
    offline: bool = False

    heading = "TOKEN"
    footer = ("Please wait for your number", "on the hall board.")

    @property
    def big(self) -> str:
        return self.number

    @classmethod
    def from_token(cls, token: Json, *, service_name: str | None = None,
                   substation_name: str | None = None) -> Slip:
        estimate = token.get("estimate") or None
        issued = token.get("issued_at")
        sub = token.get("substation", "")
        return cls(
            number=str(token["number"]),
            service=service_name or str(token.get("service", "")),
            substation=f"{substation_name} ({sub})" if substation_name else sub,
            issued_at=datetime.fromisoformat(issued) if issued else None,
            ahead=None if estimate is None else estimate.get("ahead"),
            wait=wait_text(estimate),
            priority=str(token.get("priority", "normal")),
            offline=bool(token.get("offline")),
        )

    def lines(self) -> list[str]:
        """The slip's lines under the big number."""
        out = [self.service]
        if self.priority != "normal":
            out.append(f"Priority: {PRIORITY_LABEL.get(self.priority, self.priority)}")
        when = self.issued_at.strftime("%d %b %Y %H:%M") if self.issued_at else "--"
        out.append(f"Issued {when}")
        if self.offline:
            out.append("Issued offline: wait not known yet")
            out.append("Your place follows your issue time")
        else:
            out.append(f"People ahead: {self.ahead if self.ahead is not None else '?'}")
            out.append(f"Wait: {self.wait}")
        return out


@dataclass(frozen=True)
class PaymentSlip:
    """What a payment's provisional receipt says: the consumer keeps it until billing posts the
    payment. Only the account's last digits are printed (the slip may be left on a counter)."""

    receipt: str
    amount_paise: int
    mode: str
    account_tail: str
    counter: str
    substation: str
    taken_at: datetime | None
    token: str | None = None
    part: bool = False
    offline: bool = False

    heading = "PROVISIONAL RECEIPT"

    @classmethod
    def from_payment(cls, payment: Json, *, counter_name: str | None = None, substation_name: str | None = None,
                     token_number: str | None = None, taken_at: datetime | None = None) -> PaymentSlip:
        created = payment.get("created_at")
        sub = str(payment.get("substation") or "")
        return cls(
            receipt=str(payment.get("receipt") or "-"),
            amount_paise=int(payment["amount_paise"]),
            mode=str(payment.get("mode", "cash")),
            account_tail=str(payment.get("account") or "")[-4:],
            counter=counter_name or str(payment.get("counter") or ""),
            substation=f"{substation_name} ({sub})" if substation_name and sub else (substation_name or sub),
            taken_at=datetime.fromisoformat(created) if created else taken_at,
            token=token_number,
            part=bool(payment.get("part")),
            offline=payment.get("status") == "journaled",
        )

    @property
    def big(self) -> str:
        return self.receipt

    def lines(self) -> list[str]:
        out = [f"{rupees(self.amount_paise)} {self.mode}" + (" (part payment)" if self.part else ""),
               f"Account ending {self.account_tail}"]
        if self.token:
            out.append(f"Token {self.token}")
        out.append(f"At {self.counter}")
        when = self.taken_at.strftime("%d %b %Y %H:%M") if self.taken_at else "--"
        out.append(f"Taken {when}")
        if self.offline:
            out += ["Taken offline: sent to the", "server when it is back"]
        return out

    @property
    def footer(self) -> tuple[str, ...]:
        return ("Keep this slip until the payment", "shows on your bill.")


@dataclass(frozen=True)
class CashUpSlip:
    """What the end-of-day cash-up slip says: the counter's day, what it took by mode, what became
    of it (posted, pending, failed, refunded by mode), whether that adds up, and what the drawer
    should hold, with room to sign.

    Unlike the consumer's slips it is a table, printed left-aligned in columns."""

    substation: str
    counter: str
    day: str
    blocks: tuple[tuple[CashUpRow, ...], ...]
    check: str
    printed_at: datetime | None = None

    heading = "CASH-UP"

    @classmethod
    def from_cash_up(cls, cash: Json, *, counter_name: str | None = None, substation_name: str | None = None,
                     printed_at: datetime | None = None) -> CashUpSlip:
        sub, cid = str(cash.get("substation") or ""), str(cash.get("counter") or "")
        return cls(
            substation=f"{substation_name} ({sub})" if substation_name and sub else (substation_name or sub),
            counter=f"{counter_name} ({cid})" if counter_name and counter_name != cid else cid,
            day=str(cash["day"]),
            blocks=tuple(tuple(block) for block in cash_up_rows(cash)),
            check=cash_up_check(cash),
            printed_at=printed_at,
        )

    @property
    def day_text(self) -> str:
        try:
            return date.fromisoformat(self.day).strftime("%a %d %b %Y")
        except ValueError:
            return self.day

    def head(self) -> list[str]:
        """Centred above the table."""
        return [self.counter, self.day_text]

    def table(self, cols: int) -> list[str]:
        return money_table([list(block) for block in self.blocks], cols)

    def bold_rows(self) -> set[int]:
        """Rows of ``table`` printed bold: what was taken, and what the drawer should hold."""
        at, bold = 1, set()                  # under the header row
        for number, block in enumerate(self.blocks):
            at += 1 if number else 0         # the rule between blocks, as money_table draws it
            bold |= {at + i for i, r in enumerate(block) if r.bold}
            at += len(block)
        return bold

    def tail(self, cols: int) -> list[str]:
        """Centred under the table: the sums checked, when it was printed."""
        out = textwrap.wrap(self.check, cols)
        if self.printed_at is not None:
            out.append(f"Printed {self.printed_at.strftime('%d %b %Y %H:%M')}")
        return out

    @staticmethod
    def signature(cols: int) -> list[str]:
        return ["Counted by", "", "_" * cols]


def slip_text(slip: Slip | PaymentSlip | CashUpSlip, cols: int = COLUMNS[58]) -> str:
    """The slip as plain text, centred in ``cols`` characters (one of WIDTHS)."""
    if isinstance(slip, CashUpSlip):
        return cash_up_text(slip, cols)
    title = f"{slip.heading} {slip.big}"
    head = [title] if len(title) <= cols else [slip.heading, slip.big]   # one line where it fits
    rows = [slip.substation, "-" * cols, *head, "", *slip.lines(), "-" * cols, *slip.footer]
    return "\n".join(r.center(cols).rstrip() for r in rows) + "\n"


def slip_escpos(slip: Slip | PaymentSlip | CashUpSlip, cols: int = COLUMNS[58]) -> bytes:
    """The slip as ESC/POS: centred, the number as large as fits ``cols``, then a cut."""
    if isinstance(slip, CashUpSlip):
        return cash_up_escpos(slip, cols)
    scale = max(1, min(4, cols // max(1, len(slip.big))))
    out = bytearray(INIT + ALIGN["centre"])
    out += BOLD_ON + _ascii(slip.substation) + BOLD_OFF + LF
    out += _ascii("-" * cols) + LF
    out += _ascii(slip.heading) + LF
    out += size(scale, scale) + BOLD_ON + _ascii(slip.big) + BOLD_OFF + size(1, 1) + LF + LF
    for line in slip.lines():
        out += _ascii(line) + LF
    out += _ascii("-" * cols) + LF
    for line in slip.footer:
        out += _ascii(line) + LF
    out += ALIGN["left"] + CUT
    return bytes(out)


def cash_up_text(slip: CashUpSlip, cols: int = COLUMNS[58]) -> str:
    """The cash-up as plain text ``cols`` wide (32, 42 or 48 on the usual printers): the heading
    centred, the figures in columns."""
    rule = "-" * cols
    rows = [*(r.center(cols) for r in (slip.substation, rule, slip.heading, *slip.head())), rule,
            *slip.table(cols), rule, *(r.center(cols) for r in slip.tail(cols)), rule, *slip.signature(cols)]
    return "\n".join(r.rstrip() for r in rows) + "\n"


def cash_up_escpos(slip: CashUpSlip, cols: int = COLUMNS[58]) -> bytes:
    """The cash-up as ESC/POS: heading centred and large, the table left-aligned (what was taken
    in bold), then a cut."""
    out = bytearray(INIT + ALIGN["centre"])
    out += BOLD_ON + _ascii(slip.substation) + BOLD_OFF + LF
    out += _ascii("-" * cols) + LF
    out += size(2, 2) + BOLD_ON + _ascii(slip.heading) + BOLD_OFF + size(1, 1) + LF
    for line in slip.head():
        out += _ascii(line) + LF
    out += _ascii("-" * cols) + LF + ALIGN["left"]
    bold = slip.bold_rows()
    for number, line in enumerate(slip.table(cols)):
        text = _ascii(line.rstrip())
        out += (BOLD_ON + text + BOLD_OFF if number in bold else text) + LF
    out += _ascii("-" * cols) + LF + ALIGN["centre"]
    for line in slip.tail(cols):
        out += _ascii(line) + LF
    out += _ascii("-" * cols) + LF + ALIGN["left"]
    for line in slip.signature(cols):
        out += _ascii(line) + LF
    out += CUT
    return bytes(out)


def render(slip: Slip | PaymentSlip | CashUpSlip, cols: int, slip_format: str) -> bytes | str:
    """The slip in the printer's format, ``cols`` characters wide: ESC/POS bytes, or plain text."""
    return slip_escpos(slip, cols) if slip_format == "escpos" else slip_text(slip, cols)


def _ascii(text: str) -> bytes:
    """Code page 437 holds no Devanagari (or rupee sign): anything outside ASCII prints as '?'."""
    return text.encode("ascii", "replace")


def print_slip(data: bytes | str, path: str | Path) -> None:
    """Append the slip to a printer device (/dev/usb/lp0) or a file (a file collects slips like a roll)."""
    payload = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
