"""Payments at the counter: recorded durably at once, forwarded to billing by the gateway."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from ..billing.outbox import Payment, PaymentMode, PaymentStatus
from ..queueing import Status, Token
from ..store import IdempotencyKey, Store
from .access import Actor, Forbidden, Role
from .errors import NotFound, ServiceError
from .tokens import TokenService


class TokenNotAtCounter(ServiceError):
    code = "token_not_at_counter"


def new_payment_id() -> str:
    return "p_" + secrets.token_urlsafe(12)


class PaymentService:
    def __init__(self, tokens: TokenService, store: Store, clock: Callable[[], float] = time.time,
                 new_id: Callable[[], str] = new_payment_id,
                 on_queued: Callable[[], None] = lambda: None) -> None:
        self.tokens = tokens
        self.store = store
        self.clock = clock
        self.new_id = new_id
        self.on_queued = on_queued

    async def record(self, actor: Actor, token_id: str, account: str, amount_paise: int,
                     mode: PaymentMode, idem: IdempotencyKey | None = None) -> tuple[Payment, bool]:
        """Queue a payment for the token being served; (payment, replayed).

        Only the cashier of the counter holding the token (or an admin) may take its payment.
        """
        actor.require_writer()

        def payment_for(token: Token | None) -> Payment:
            if token is None:
                raise NotFound("token", token_id)
            actor.require_token(token)
            if token.status not in (Status.CALLED, Status.SERVING, Status.DONE):
                raise TokenNotAtCounter(
                    f"Token {token.number} is {token.status.value}; take a payment for a token "
                    "that is called, being served or done.", token=token.id, status=token.status.value)
            now = self.clock()
            return Payment(
                id=self.new_id(), token_id=token.id, substation=token.substation, counter=token.counter,
                account=account, amount_paise=amount_paise, mode=PaymentMode(mode),
                status=PaymentStatus.QUEUED, day=token.day, created_at=now, updated_at=now,
            )

        stored, replayed = await self.store.take_payment(token_id, payment_for, idem)
        self.on_queued()
        return stored, replayed

    async def get(self, actor: Actor, payment_id: str) -> Payment:
        payment = await self.store.get_payment(payment_id)
        if payment is None:
            raise NotFound("payment", payment_id)
        if actor.role is Role.BOARD or (actor.role is Role.CASHIER and actor.counter != payment.counter):
            raise Forbidden("Only the counter that took a payment, or an admin, may read it.")
        return payment
