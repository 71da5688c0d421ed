"""The token lifecycle: which action moves a token from which status to which.

(booked ->) waiting -> called -> serving -> done, with recall and no-show from called, one requeue from
no-show, transfer to another service or counter, and cancel. Anything else is an IllegalMove
that names what is allowed.

The day closes what its counters left: at closing time nobody more is served, so bookings,
waiting tokens and tokens called but not started are closed unserved (``AT_CLOSING``); a token
being served may finish. At the day's end whatever is still open goes the same way, and a token
still being served is finished with the day (``AT_DAY_END``).
"""

from __future__ import annotations

from enum import StrEnum

from .events import (
    TokenCalled,
    TokenCancelled,
    TokenClosedUnserved,
    TokenCompleted,
    TokenCompletedAtClose,
    TokenEvent,
    TokenNoShow,
    TokenRecalled,
    TokenRequeued,
    TokenStarted,
    TokenTransferred,
)
from .model import QueuePolicy, Status, Token


class Action(StrEnum):
    """Moves a cashier makes on a token; values are the words used in the API's URLs."""

    CALL = "call"
    RECALL = "recall"
    START = "start"
    COMPLETE = "complete"
    NO_SHOW = "no-show"
    REQUEUE = "requeue"
    TRANSFER = "transfer"
    CANCEL = "cancel"


TRANSITIONS: dict[Status, dict[Action, Status]] = {
    Status.BOOKED: {Action.CANCEL: Status.CANCELLED},
    Status.WAITING: {
        Action.CALL: Status.CALLED,
        Action.TRANSFER: Status.WAITING,
        Action.CANCEL: Status.CANCELLED,
    },
    Status.CALLED: {
        Action.RECALL: Status.CALLED,
        Action.START: Status.SERVING,
        Action.NO_SHOW: Status.NO_SHOW,
        Action.TRANSFER: Status.WAITING,
        Action.CANCEL: Status.CANCELLED,
    },
    Status.SERVING: {
        Action.COMPLETE: Status.DONE,
        Action.TRANSFER: Status.WAITING,
    },
    Status.NO_SHOW: {Action.REQUEUE: Status.WAITING},
    Status.DONE: {},
    Status.CANCELLED: {},
    Status.CLOSED_UNSERVED: {},
}

AT_CLOSING: dict[Status, Status] = {
    Status.BOOKED: Status.CLOSED_UNSERVED,
    Status.WAITING: Status.CLOSED_UNSERVED,
    Status.CALLED: Status.CLOSED_UNSERVED,
}
AT_DAY_END: dict[Status, Status] = {**AT_CLOSING, Status.SERVING: Status.DONE}

# The events the day's close records: its own kinds, so nobody mistakes them for a cashier's
# move (a token finished with the day was never completed at the counter: its time there is
# not a service time to learn from).
CLOSING_EVENT_KIND: dict[Status, type[TokenEvent]] = {
    Status.CLOSED_UNSERVED: TokenClosedUnserved,
    Status.DONE: TokenCompletedAtClose,
}

EVENT_KIND: dict[Action, type[TokenEvent]] = {
    Action.CALL: TokenCalled,
    Action.RECALL: TokenRecalled,
    Action.START: TokenStarted,
    Action.COMPLETE: TokenCompleted,
    Action.NO_SHOW: TokenNoShow,
    Action.REQUEUE: TokenRequeued,
    Action.TRANSFER: TokenTransferred,
    Action.CANCEL: TokenCancelled,
}


def guard(token: Token, action: Action, policy: QueuePolicy) -> str | None:
    """Why ``action`` is refused on ``token``, or None when the lifecycle allows it."""
    if action not in TRANSITIONS[token.status]:
        return f"A {token.status.value} token cannot take {action.value!r}."
    if action is Action.NO_SHOW and token.recalls < policy.recalls_before_no_show:
        return (
            f"Recall the token {policy.recalls_before_no_show} time(s) before marking a no-show "
            f"(recalled {token.recalls} so far)."
        )
    if action is Action.REQUEUE and token.requeues >= policy.max_requeues:
        return f"A token returns to the queue at most {policy.max_requeues} time(s)."
    return None


def allowed_actions(token: Token, policy: QueuePolicy) -> list[str]:
    """The actions the token's current state allows, in lifecycle order."""
    return [a.value for a in TRANSITIONS[token.status] if guard(token, a, policy) is None]
