"""The pure queue domain: tokens, their lifecycle, numbering and call order.

Nothing here does I/O or imports aiohttp, redis or sqlite: every function takes the time and
ids it needs as arguments, so the rules are tested without a server or a database.
"""

from .errors import (
    AlreadyHolding,
    CannotServeToday,
    CounterBusy,
    DomainError,
    IllegalMove,
    LeaseRefused,
    SlotUnavailable,
    TransferRejected,
    UnknownToken,
)
from .estimate import Estimate, ServiceTimes, ServiceTimeSeed, estimate_wait
from .lifecycle import Action, allowed_actions
from .events import EVENT_KINDS, DomainEvent, TokenEvent, event_from_log
from .model import Lease, Origin, Priority, QueuePolicy, Status, Token, format_number
from .queue import CounterView, HallView, Holder, ServiceView, SubstationQueue
from .slots import LeaveAdvice, SlotPlan, leave_advice, slot_capacity

__all__ = [
    "Action",
    "AlreadyHolding",
    "Holder",
    "LeaveAdvice",
    "Origin",
    "SlotPlan",
    "SlotUnavailable",
    "leave_advice",
    "slot_capacity",
    "CannotServeToday",
    "CounterBusy",
    "CounterView",
    "Estimate",
    "HallView",
    "ServiceTimeSeed",
    "ServiceTimes",
    "ServiceView",
    "estimate_wait",
    "DomainError",
    "DomainEvent",
    "EVENT_KINDS",
    "TokenEvent",
    "event_from_log",
    "IllegalMove",
    "Lease",
    "LeaseRefused",
    "Priority",
    "QueuePolicy",
    "Status",
    "SubstationQueue",
    "Token",
    "TransferRejected",
    "UnknownToken",
    "allowed_actions",
    "format_number",
]
