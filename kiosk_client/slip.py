"""The token slip a consumer takes to the waiting hall: plain text, or ESC/POS bytes for the
58 mm and 80 mm thermal receipt printers found at counters.

The ESC/POS writer is a handful of commands (init, align, character size, bold, cut) that every
such printer understands, so no driver library is needed. The slip is printed in English only:
thermal printers carry no Devanagari glyphs in their character tables, and Hindi text would have
to be rendered to a raster image (GS v 0) first, which this writer does not do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .client import Json
from .text import PRIORITY_LABEL, wait_text

ESC, GS, LF = b"\x1b", b"\x1d", b"\n"
INIT = ESC + b"@"                     # ESC @: reset the printer
ALIGN = {"left": ESC + b"a\x00", "centre": ESC + b"a\x01", "right": ESC + b"a\x02"}   # ESC a n
BOLD_ON, BOLD_OFF = ESC + b"E\x01", ESC + b"E\x00"                                      # ESC E n
CUT = GS + b"V\x42\x03"               # GS V 66 n: feed n lines, then a partial cut
#: Characters a line holds in the printer's standard font (font A, 12x24 dots).
COLUMNS = {58: 32, 80: 48}


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


def slip_text(slip: Slip, paper_mm: int = 58) -> str:
    """The slip as plain text, centred for the paper's width."""
    cols = COLUMNS[paper_mm]
    rows = [slip.substation, "-" * cols, f"TOKEN {slip.number}", "", *slip.lines(), "-" * cols,
            "Please wait for your number", "on the hall board."]
    return "\n".join(r.center(cols).rstrip() for r in rows) + "\n"


def slip_escpos(slip: Slip, paper_mm: int = 58) -> bytes:
    """The slip as ESC/POS: centred, the number as large as fits the paper, then a cut."""
    cols = COLUMNS[paper_mm]
    scale = max(1, min(4, cols // max(1, len(slip.number))))
    out = bytearray(INIT + ALIGN["centre"])
    out += BOLD_ON + _ascii(slip.substation) + BOLD_OFF + LF
    out += _ascii("-" * cols) + LF
    out += _ascii("TOKEN") + LF
    out += size(scale, scale) + BOLD_ON + _ascii(slip.number) + BOLD_OFF + size(1, 1) + LF + LF
    for line in slip.lines():
        out += _ascii(line) + LF
    out += _ascii("-" * cols) + LF
    out += _ascii("Please wait for your number") + LF + _ascii("on the hall board.") + LF
    out += ALIGN["left"] + CUT
    return bytes(out)


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
