"""What happens at the door when a consumer arrives: the policies the simulator compares.

* ``none``: everyone joins the line; whoever still waits at closing is turned away.
* ``door`` (admission): refuse at arrival when the estimated wait would end after closing; the
  refused pay online with probability ``door_online_accept`` or come back the next working day.
* ``hint`` (online steering): when the estimated wait (p50) passes ``hint_after_s``, the board's
  "pay online" hint sends a share ``hint_uptake`` of payment arrivals online.
* ``door+hint``: both.

The door's estimate is the server's own rule (``counter_server.queueing.estimate``): people of the
same service waiting ahead x mean service time / open counters (p50), plus the normal-approximation
spread for p90. ``max`` is a bound instead of an estimate: with service times capped at the
services' maximum, nobody it admits can still be waiting at closing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from counter_server.queueing.estimate import estimate_wait

DOOR_ESTIMATES = ("p50", "p90", "max")
POLICY_NAMES = ("none", "door", "hint", "door+hint")


@dataclass(frozen=True)
class Policy:
    """One policy's switches and figures (the figures come from the scenario or flags)."""

    name: str
    door: bool = False
    door_estimate: str = "p90"
    door_online_accept: float = 0.0
    hint: bool = False
    hint_after_s: float = 1800.0
    hint_uptake: float = 0.0

    @property
    def label(self) -> str:
        """How plots and tables name the policy."""
        parts = []
        if self.door:
            parts.append(f"admission at the door ({self.door_estimate})")
        if self.hint:
            parts.append("online hint")
        return " + ".join(parts) or "no policy"


def make_policy(name: str, *, door_estimate: str, door_online_accept: float, hint_after_s: float,
                hint_uptake: float) -> Policy:
    """A named policy (see POLICY_NAMES) with the run's figures."""
    if name not in POLICY_NAMES:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}")
    if door_estimate not in DOOR_ESTIMATES:
        raise ValueError(f"unknown door estimate {door_estimate!r}; known: {', '.join(DOOR_ESTIMATES)}")
    return Policy(
        name=name,
        door="door" in name,
        door_estimate=door_estimate,
        door_online_accept=door_online_accept,
        hint="hint" in name,
        hint_after_s=hint_after_s,
        hint_uptake=hint_uptake,
    )


def door_wait_s(kind: str, ahead: int, ahead_shared: int, counters: int, mean_s: float,
                sd_s: float, max_s: float, mean_error_s: float = 0.0) -> float:
    """The wait the door compares with the time left until closing.

    ``ahead`` counts waiting consumers of the same service (the server's rule); ``ahead_shared``
    counts everyone waiting for any service the same counters serve, which the ``max`` bound
    needs: each of the ``counters`` starts a new consumer at least every ``max_s`` seconds, and
    none of them takes anyone who came later, so the newcomer starts within
    ceil((ahead_shared + 1) / counters) x max_s. Called only when no counter is free for it.
    p50 and p90 are the server's ``estimate_wait`` with the counters' state unknown (the model
    does not track when each counter started), so the average ``ahead x mean / counters``.
    """
    if kind in ("p50", "p90"):
        estimate = estimate_wait(ahead, counters, mean_s, sd_s, mean_error_s=mean_error_s)
        return estimate.p50_s if kind == "p50" else estimate.p90_s
    return math.ceil((ahead_shared + 1) / counters) * max_s


class DoorTable:
    """The door's wait (``door_wait_s``) by people ahead, for one service and number of
    counters: worked out as far as a day needs it, one entry per count."""

    __slots__ = ("values", "_figures")

    def __init__(self, figures: tuple[str, int, float, float, float, float]) -> None:
        self.values: list[float] = []
        self._figures = figures   # door_wait_s's: kind, counters, mean, sd, max, mean error

    def grow(self, ahead: int) -> None:
        """Fill ``values`` up to ``ahead`` included."""
        kind, counters, mean, sd, top, err = self._figures
        values = self.values
        while ahead >= len(values):
            a = len(values)
            values.append(door_wait_s(kind, a, a, counters, mean, sd, top, err))


class DoorWaits:
    """The door tables of a run, kept from one day to the next: the door's estimate depends on
    the service's figures, the counters and the estimate used, never on the day."""

    def __init__(self) -> None:
        self._tables: dict[tuple[str, int, float, float, float, float], DoorTable] = {}

    def table(self, kind: str, counters: int, mean_s: float, sd_s: float, max_s: float,
              mean_error_s: float) -> DoorTable:
        key = (kind, counters, mean_s, sd_s, max_s, mean_error_s)
        found = self._tables.get(key)
        if found is None:
            found = self._tables[key] = DoorTable(key)
        return found
