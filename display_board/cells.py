"""How many terminal cells a text takes, counted the way terminals advance the cursor.

rich counts a spacing vowel sign such as Devanagari ि (U+093F, category Mc) as 0 cells, but
terminals that place text by ``wcwidth()`` (tmux, xterm, VTE, the Linux console; glibc gives
it 1) give it a cell of its own. Each such sign rich misses made a line one cell longer than
rich planned, so the board's title line wrapped. The widths here come from the ``wcwidth``
package (wide East Asian text, zero-width marks and format characters, per Unicode version),
with one rule of the Unicode character database on top: a spacing combining mark advances the
cursor by one cell (two when East Asian wide), as glibc's ``wcwidth()`` says.

Where terminals disagree (some shaping terminals draw a conjunct followed by a vowel sign in
fewer cells), this count is the larger one, so a line may end a cell short but never wraps.
Texts are cut only between grapheme clusters, so a vowel sign never loses its consonant.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Literal

import wcwidth

Align = Literal["left", "right", "center"]
ELLIPSIS = "…"


@lru_cache(maxsize=8192)
def char_cells(char: str) -> int:
    """Cells one code point advances the cursor by (0 for marks and control characters)."""
    if unicodedata.category(char) == "Mc":
        return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return max(wcwidth.wcwidth(char), 0)


@lru_cache(maxsize=4096)
def cells(text: str) -> int:
    """Cells ``text`` takes on one terminal line."""
    if text.isascii() and text.isprintable():
        return len(text)
    return sum(char_cells(char) for char in text)


def clip(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` cells, ending in an ellipsis when something was cut."""
    if cells(text) <= width:
        return text
    if width <= 0:
        return ""
    kept, used = [], 0
    for grapheme in wcwidth.iter_graphemes(text):
        size = cells(grapheme)
        if used + size > width - 1:
            break
        kept.append(grapheme)
        used += size
    return "".join(kept).rstrip() + ELLIPSIS


def fit(text: str, width: int, align: Align = "left") -> str:
    """``text`` clipped and padded with spaces to exactly ``width`` cells."""
    text = clip(text, width)
    spare = max(width - cells(text), 0)
    if align == "right":
        return " " * spare + text
    if align == "center":
        return " " * (spare // 2) + text + " " * (spare - spare // 2)
    return text + " " * spare


def wrap(items: list[str], width: int, separator: str = " | ", lead: str = "") -> list[str]:
    """``items`` joined by ``separator`` into lines of at most ``width`` cells, breaking only
    between items (an item too long for a line is clipped); ``lead`` starts the first line."""
    lines: list[str] = []
    line, fresh = lead, True                # fresh: nothing but the lead on this line yet
    for item in items:
        candidate = line + item if fresh else line + separator + item
        if cells(candidate) <= width:
            line = candidate
        elif fresh:
            line = clip(candidate, width)
        else:
            lines.append(line)
            line = clip(item, width)
        fresh = False
    if not fresh:
        lines.append(line)
    return lines


def first_fitting(width: int, *variants: str) -> str:
    """The first of ``variants`` (longest first) that fits ``width`` cells, else the last clipped."""
    for text in variants:
        if cells(text) <= width:
            return text
    return clip(variants[-1], width)
