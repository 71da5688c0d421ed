"""Value types of the queue domain."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from .estimate import ServiceTimeSeed


class Priority(StrEnum):
    NORMAL = "normal"
    SENIOR = "senior"
    DISABLED = "disabled"


class Status(StrEnum):
    BOOKED = "booked"   # a slot booked ahead; it becomes a waiting token when the slot starts
    WAITING = "waiting"
    CALLED = "called"
    SERVING = "serving"
    DONE = "done"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"
    CLOSED_UNSERVED = "closed_unserved"   # still open when the counters closed: not served that day


class Origin(StrEnum):
    """Where a token came from: issued at a counter, taken from a phone, or a booked slot."""

    COUNTER = "counter"
    REMOTE = "remote"
    SLOT = "slot"


ACTIVE = frozenset({Status.BOOKED, Status.WAITING, Status.CALLED, Status.SERVING})


@dataclass(frozen=True, slots=True)
class Token:
    """One consumer's place in a substation's queue for one day.

    ``issued_at`` never changes, so a token that is requeued or transferred keeps its place in
    the call order. ``target_counter`` is set when a token is transferred to one counter: then
    only that counter may call it. ``ordinal`` is the token's place in the day's issue order
    at its substation, which breaks ties in the call order.

    A token taken from a phone carries ``account_ref`` and ``phone_ref``, digests that let the
    queue keep one active token per account and per phone without keeping either number, and
    ``account_hint`` (its last digits) so the consumer can tell which account it is for. A
    booked slot is a token of status ``booked`` with ``slot_at`` set and no number yet.
    """

    id: str
    substation: str
    day: str
    service: str
    number: str
    seq: int
    priority: Priority
    status: Status
    issued_at: float
    counter: str | None = None
    target_counter: str | None = None
    called_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    recalls: int = 0
    requeues: int = 0
    transfers: int = 0
    ordinal: int = 0
    origin: Origin = Origin.COUNTER
    slot_at: float | None = None
    account_ref: str | None = None
    phone_ref: str | None = None
    account_hint: str | None = None

    @property
    def at_counter(self) -> bool:
        return self.status in (Status.CALLED, Status.SERVING)

    @property
    def active(self) -> bool:
        """Booked, waiting or at a counter: the holder may not take another one today."""
        return self.status in ACTIVE


def _default_head_start() -> dict[Priority, float]:
    return {Priority.NORMAL: 0.0, Priority.SENIOR: 600.0, Priority.DISABLED: 900.0}


@dataclass(frozen=True)
class QueuePolicy:
    """The rules a utility may tune per scenario.

    ``head_start_s`` is the ageing rule: a priority token is ordered as if it had been issued
    that many seconds earlier. Priority tokens go ahead of normal ones that arrived shortly
    before them, yet no normal token ever waits more than the largest head start extra, so
    nobody is starved.
    """

    head_start_s: Mapping[Priority, float] = field(default_factory=_default_head_start)
    recalls_before_no_show: int = 1
    max_requeues: int = 1
    service_seeds: Mapping[str, ServiceTimeSeed] = field(default_factory=dict)
    ewma_alpha: float = 0.1
    slot_head_start_s: float = 86_400.0
    admission: bool = True   # the door rule of a substation ops have not switched

    def call_key(self, token: Token) -> tuple[float, int, str]:
        """Sort key of the call order: earliest effective arrival first, then issue order.

        A booked slot, once it has started, is ordered as if it had arrived
        ``slot_head_start_s`` before its slot (by default a day: ahead of every walk-in), so a
        booked consumer is called on time. Walk-ins are protected by the slots' capacity, which
        gives bookings at most a set share of the counters' time (see ``slots.slot_capacity``).
        """
        if token.slot_at is not None:
            return (token.slot_at - self.slot_head_start_s, token.ordinal, token.id)
        return (token.issued_at - self.head_start_s.get(token.priority, 0.0), token.ordinal, token.id)


def format_number(letter: str, seq: int) -> str:
    """The number printed on a slip: the service letter and the day's sequence, e.g. ``B-042``."""
    return f"{letter}-{seq:03d}"


@dataclass(frozen=True, slots=True)
class Lease:
    """A block of numbers set aside for one counter, to issue while the server is unreachable.

    Nobody else gets these numbers today; tokens issued from them are reconciled later.
    """

    id: str
    counter: str
    service: str
    letter: str
    first_seq: int
    last_seq: int

    def numbers(self) -> list[str]:
        return [format_number(self.letter, seq) for seq in range(self.first_seq, self.last_seq + 1)]

    def seq_of(self, number: str) -> int | None:
        for seq in range(self.first_seq, self.last_seq + 1):
            if format_number(self.letter, seq) == number:
                return seq
        return None
