"""What the domain says changed: one frozen dataclass per kind of event.

A ``SubstationQueue`` records these in ``pending``; the store maps each to the rows it changes
(``counter_server.store.core``) and appends it to the event log; boards get them as deltas.
Every kind is named by its ``kind`` (the name kept in the log), so a new kind is one class here,
the place the queue records it, and its rows in the store core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .model import Lease, Token
from .slots import SlotPlan


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """When it happened, who did it and at which counter (None for the hall as a whole)."""

    kind: ClassVar[str]
    at: float
    actor: str | None
    counter: str | None

    @property
    def token(self) -> Token | None:
        """The token the event changed, as changed; None for events about counters or the hall."""
        return None

    def detail(self) -> dict[str, Any]:
        """What the log keeps of an event that carries no token, beside its counter."""
        return {}

    @classmethod
    def from_detail(cls, at: float, actor: str | None, counter: str | None,
                    detail: dict[str, Any]) -> DomainEvent:
        """The event back from its ``detail``."""
        return cls(at, actor, counter)


@dataclass(frozen=True, slots=True)
class TokenEvent(DomainEvent):
    """A token changed: it carries the token as it is after the change."""

    changed: Token

    @property
    def token(self) -> Token:
        return self.changed


@dataclass(frozen=True, slots=True)
class TokenIssued(TokenEvent):
    kind: ClassVar[str] = "issued"


@dataclass(frozen=True, slots=True)
class TokenBooked(TokenEvent):
    kind: ClassVar[str] = "booked"


@dataclass(frozen=True, slots=True)
class TokenCalled(TokenEvent):
    kind: ClassVar[str] = "called"


@dataclass(frozen=True, slots=True)
class TokenRecalled(TokenEvent):
    kind: ClassVar[str] = "recalled"


@dataclass(frozen=True, slots=True)
class TokenStarted(TokenEvent):
    kind: ClassVar[str] = "started"


@dataclass(frozen=True, slots=True)
class TokenCompleted(TokenEvent):
    kind: ClassVar[str] = "completed"


@dataclass(frozen=True, slots=True)
class TokenNoShow(TokenEvent):
    kind: ClassVar[str] = "no_show"


@dataclass(frozen=True, slots=True)
class TokenRequeued(TokenEvent):
    kind: ClassVar[str] = "requeued"


@dataclass(frozen=True, slots=True)
class TokenTransferred(TokenEvent):
    kind: ClassVar[str] = "transferred"


@dataclass(frozen=True, slots=True)
class TokenCancelled(TokenEvent):
    kind: ClassVar[str] = "cancelled"


@dataclass(frozen=True, slots=True)
class TokenClosedUnserved(TokenEvent):
    """Still open when the counters closed: not served that day."""

    kind: ClassVar[str] = "closed_unserved"


@dataclass(frozen=True, slots=True)
class TokenCompletedAtClose(TokenEvent):
    """Still being served when the day ended: finished with the day, not by the cashier."""

    kind: ClassVar[str] = "completed_at_close"


@dataclass(frozen=True, slots=True)
class CounterOpened(DomainEvent):
    kind: ClassVar[str] = "counter_opened"

    def detail(self) -> dict[str, Any]:
        return {"open": True}


@dataclass(frozen=True, slots=True)
class CounterClosed(DomainEvent):
    kind: ClassVar[str] = "counter_closed"

    def detail(self) -> dict[str, Any]:
        return {"open": False}


@dataclass(frozen=True, slots=True)
class NumbersLeased(DomainEvent):
    """A block of numbers set aside for a counter's offline use."""

    kind: ClassVar[str] = "numbers_leased"
    lease: Lease

    def detail(self) -> dict[str, Any]:
        lease = self.lease
        return {"lease": lease.id, "service": lease.service, "first_seq": lease.first_seq,
                "last_seq": lease.last_seq, "letter": lease.letter}

    @classmethod
    def from_detail(cls, at: float, actor: str | None, counter: str | None,
                    detail: dict[str, Any]) -> NumbersLeased:
        return cls(at, actor, counter, Lease(detail["lease"], counter or "", detail["service"],
                                             detail.get("letter", ""), detail["first_seq"],
                                             detail["last_seq"]))


@dataclass(frozen=True, slots=True)
class SlotsPublished(DomainEvent):
    """Ops published the day's bookable slots (``plan`` None: withdrew them)."""

    kind: ClassVar[str] = "slots_published"
    plan: SlotPlan | None

    def detail(self) -> dict[str, Any]:
        return {"plan": self.plan.as_dict() if self.plan is not None else None}

    @classmethod
    def from_detail(cls, at: float, actor: str | None, counter: str | None,
                    detail: dict[str, Any]) -> SlotsPublished:
        plan = detail.get("plan")
        return cls(at, actor, counter, SlotPlan.from_dict(plan) if plan else None)


@dataclass(frozen=True, slots=True)
class AdmissionChanged(DomainEvent):
    """Ops switched the door rule or the daily cap of the substation."""

    kind: ClassVar[str] = "admission_changed"
    admission: bool
    daily_cap: int | None

    def detail(self) -> dict[str, Any]:
        return {"admission": self.admission, "daily_cap": self.daily_cap}

    @classmethod
    def from_detail(cls, at: float, actor: str | None, counter: str | None,
                    detail: dict[str, Any]) -> AdmissionChanged:
        return cls(at, actor, counter, bool(detail["admission"]), detail["daily_cap"])


def _kinds(base: type[DomainEvent]) -> dict[str, type[DomainEvent]]:
    found: dict[str, type[DomainEvent]] = {}
    for kind in base.__subclasses__():
        if "kind" in vars(kind):
            found[kind.kind] = kind
        found.update(_kinds(kind))
    return found


# Every kind by the name the log keeps it under: how a logged event is read back.
EVENT_KINDS: dict[str, type[DomainEvent]] = _kinds(DomainEvent)


def event_from_log(kind: str, at: float, actor: str | None, counter: str | None,
                   token: Token | None, detail: dict[str, Any]) -> DomainEvent:
    """An event back from what the log keeps of it: its token, or its detail."""
    made = EVENT_KINDS[kind]
    if issubclass(made, TokenEvent):
        assert token is not None, f"a {kind} event carries its token"
        return made(at, actor, counter, token)
    return made.from_detail(at, actor, counter, detail)
