"""What the hall boards report of themselves: which voice each can announce calls with.

A board sends ``{"type": "board_status", "v": 1, "voice": "hi" | "en" | "chime"}`` on its
live socket once it knows (voices may load late, so it may send again). The tally keeps the
latest report per connection and, per substation, how many boards are connected and how many
lack a Hindi voice, so ops can see a hall whose calls are not spoken in Hindi (or at all).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

VOICES = ("hi", "en", "chime")
MAX_FRAME_CHARS = 256          # a status frame is ~60 characters; anything longer is not one
MAX_REPORTS = 16               # per connection: a board changes its mind a few times at most


def parse_board_status(text: str) -> str | None:
    """The voice a board reports in one text frame, or None for anything else (junk included)."""
    if len(text) > MAX_FRAME_CHARS:
        return None
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or body.get("type") != "board_status" or body.get("v") != 1:
        return None
    voice = body.get("voice")
    return voice if isinstance(voice, str) and voice in VOICES else None


@dataclass
class _Board:
    substation: str
    voice: str | None = None
    reports: int = 0


@dataclass
class BoardTally:
    """Connected boards per substation and what they lack, kept up to date incrementally."""

    substations: Iterable[str]
    _boards: dict[Hashable, _Board] = field(default_factory=dict)
    _counts: dict[str, dict[str, int]] = field(default_factory=dict)
    flush_pending: bool = False                         # the hub's coalescing of its messages
    published: dict[str, dict[str, int]] | None = None  # the counts ops was last sent

    def __post_init__(self) -> None:
        self._counts = {sid: {"connected": 0, "no_hindi_voice": 0, "chime_only": 0}
                        for sid in self.substations}

    def joined(self, key: Hashable, substation: str) -> bool:
        """A board connected; True when the counts changed."""
        if key in self._boards or substation not in self._counts:
            return False
        self._boards[key] = _Board(substation)
        self._counts[substation]["connected"] += 1
        return True

    def reported(self, key: Hashable, voice: str) -> bool:
        """A board said which voice it has; True when the counts changed."""
        board = self._boards.get(key)
        if board is None or voice not in VOICES or board.voice == voice or board.reports >= MAX_REPORTS:
            return False
        board.reports += 1
        self._count(board, -1)
        board.voice = voice
        self._count(board, +1)
        return True

    def left(self, key: Hashable) -> bool:
        """A board went away; True when the counts changed."""
        board = self._boards.pop(key, None)
        if board is None:
            return False
        self._count(board, -1)
        self._counts[board.substation]["connected"] -= 1
        return True

    def counts(self) -> dict[str, dict[str, int]]:
        return {sid: dict(counts) for sid, counts in self._counts.items()}

    def _count(self, board: _Board, step: int) -> None:
        counts = self._counts[board.substation]
        if board.voice in ("en", "chime"):
            counts["no_hindi_voice"] += step
        if board.voice == "chime":
            counts["chime_only"] += step
