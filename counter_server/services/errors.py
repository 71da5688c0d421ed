"""Errors the services raise for the API to turn into JSON answers."""

from __future__ import annotations


class ServiceError(Exception):
    code = "service_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(ServiceError):
    """An id in the URL names nothing (substation, counter, token)."""

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"No {kind} has the id {ident!r}.", **{kind: ident})
        self.code = f"{kind}_not_found"


class InvalidField(ServiceError):
    """A well-formed request naming something that does not fit, e.g. a service not offered."""

    code = "invalid_field"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)
        self.field = field


class AlreadyPaid(ServiceError):
    """A second payment for a token that already has one: a token takes one payment, so a
    cashier's repeated command cannot post the same bill twice. Names the first receipt."""

    code = "already_paid"
