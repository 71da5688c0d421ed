"""Errors of the queue domain. Each carries a stable snake_case ``code`` for API answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import Token


class DomainError(Exception):
    code = "domain_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, object]:
        return {}


class UnknownToken(DomainError):
    code = "token_not_found"

    def __init__(self, token_id: str) -> None:
        super().__init__(f"No token has the id {token_id!r}.")
        self.token_id = token_id


class IllegalMove(DomainError):
    """A move the token's state does not allow; names the moves that are allowed."""

    code = "illegal_transition"

    def __init__(self, token: Token, action: str, allowed: list[str], reason: str = "") -> None:
        allowed_text = ", ".join(allowed) if allowed else "none (the token is finished)"
        why = f" {reason}" if reason else ""
        super().__init__(
            f"Token {token.number} is {token.status.value}; {action!r} is not allowed.{why} "
            f"Allowed: {allowed_text}."
        )
        self.token = token
        self.action = action
        self.allowed = allowed

    def details(self) -> dict[str, object]:
        return {"token": self.token.id, "status": self.token.status.value, "allowed": self.allowed}


class CounterBusy(DomainError):
    """A counter asked to call the next token, or to close, while it still has one called or
    being served; ``refused`` names what was asked."""

    code = "counter_busy"

    def __init__(self, counter: str, token: Token, refused: str = "calling the next one") -> None:
        super().__init__(
            f"Counter {counter} still has token {token.number} ({token.status.value}); "
            f"finish, mark no-show, transfer or cancel it before {refused}."
        )
        self.counter = counter
        self.token = token

    def details(self) -> dict[str, object]:
        return {"counter": self.counter, "token": self.token.id, "status": self.token.status.value}


class TransferRejected(DomainError):
    code = "transfer_rejected"


class CannotServeToday(DomainError):
    """Admission at the door: a token issued now would not be served before closing."""

    code = "cannot_serve_today"

    def __init__(self, reason: str, message: str, **details: object) -> None:
        super().__init__(message)
        self.reason = reason
        self.extra = details

    def details(self) -> dict[str, object]:
        return {"reason": self.reason, **self.extra}


class LeaseRefused(DomainError):
    """An offline token that does not fit its lease (wrong counter, number, or already used)."""

    code = "lease_refused"


class AlreadyHolding(DomainError):
    """One active token per account and per phone number, per substation and day (and a cap
    per account across the city, checked by the phone service).

    The words are the same whether the account, the phone number or both matched, so the
    answer does not tell a stranger which of the two numbers is queued."""

    code = "already_holding"
    MESSAGE = ("This account or phone number already holds a token for that day; "
               "cancel it before taking another.")

    def __init__(self, token: Token, same_holder: bool) -> None:
        super().__init__(self.MESSAGE)
        self.token = token
        self.same_holder = same_holder
        self.link: str | None = None   # the phone's link to it, set by whoever can make one

    def details(self) -> dict[str, object]:
        # The link to the existing token goes only to whoever gave both numbers.
        return {"token": self.link} if self.same_holder and self.link else {}


class SlotUnavailable(DomainError):
    """A booking for a slot that is not offered, has passed, or is full."""

    code = "slot_unavailable"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def details(self) -> dict[str, object]:
        return {"reason": self.reason}
