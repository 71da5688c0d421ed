"""Who is calling and what their role lets them do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..queueing import Token
from .errors import ServiceError


class Role(StrEnum):
    ADMIN = "admin"
    CASHIER = "cashier"
    BOARD = "board"


class Forbidden(ServiceError):
    code = "forbidden"


@dataclass(frozen=True)
class Actor:
    """The holder of an API key. A cashier is bound to one counter (and so one substation)."""

    key_id: str
    role: Role
    counter: str | None = None
    substation: str | None = None

    @property
    def label(self) -> str:
        """How events name who made a change."""
        where = f"@{self.counter}" if self.counter else ""
        return f"{self.role.value}{where}:{self.key_id}"

    def require_writer(self) -> None:
        if self.role is Role.BOARD:
            raise Forbidden("A board key is read only.", role=self.role.value)

    def require_admin(self) -> None:
        if self.role is not Role.ADMIN:
            raise Forbidden("Only an admin key may do this.", role=self.role.value)

    def require_substation(self, substation: str) -> None:
        self.require_writer()
        if self.role is Role.CASHIER and self.substation != substation:
            raise Forbidden(
                f"Cashier key of counter {self.counter} may not act at substation {substation}.",
                counter=self.counter,
            )

    def require_counter(self, counter: str) -> None:
        self.require_writer()
        if self.role is Role.CASHIER and self.counter != counter:
            raise Forbidden(
                f"Cashier key of counter {self.counter} may not act for counter {counter}.",
                counter=self.counter,
            )

    def require_token(self, token: Token) -> None:
        """A cashier acts on its own counter's tokens, or on unassigned ones of its substation."""
        self.require_substation(token.substation)
        if self.role is Role.CASHIER and token.counter not in (None, self.counter):
            raise Forbidden(
                f"Token {token.number} belongs to counter {token.counter}, "
                f"not to {self.counter}.",
                counter=self.counter,
                token=token.id,
            )
