"""Payments at the counter: recorded durably at once, forwarded to billing by the gateway."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import replace

from ..outbox import Payment, PaymentMode, PaymentStatus
from ..queueing import Status, Token
from ..shapes import provisional_receipt
from ..store import IdempotencyKey, Store
from .access import Actor, Forbidden, Role
from .errors import AlreadyPaid, NotFound, ServiceError
from .tokens import TokenService

#: How long after finishing a token its counter may still take its payment (a cashier who
#: pressed finish first). Later, or for a token never served, the payment is refused.
PAYMENT_WINDOW_AFTER_DONE_S = 5 * 60


class TokenNotAtCounter(ServiceError):
    code = "token_not_at_counter"


class PaymentNotFailed(ServiceError):
    code = "payment_not_failed"


def new_payment_id() -> str:
    return "p_" + secrets.token_urlsafe(12)


def rupees(paise: int) -> str:
    return f"Rs {paise // 100:,}.{paise % 100:02d}"


def check_payable(token: Token, now: float) -> None:
    """Refuse, saying why, a payment for a token not at its counter (called or being served)
    and not finished there within the window: a token finished long ago, or never served, is
    another consumer's or nobody's, and its payment would go to the wrong account."""
    window_min = PAYMENT_WINDOW_AFTER_DONE_S // 60
    where = f"counter {token.counter}" if token.counter else "no counter"
    if token.at_counter:
        return
    if token.status is Status.DONE:
        finished = token.finished_at if token.finished_at is not None else now
        if now - finished <= PAYMENT_WINDOW_AFTER_DONE_S:
            return
        ago = int((now - finished) // 60)
        reason, why = "finished_too_long_ago", (
            f"Token {token.number} was finished at {where} {ago} minutes ago; a payment is taken while "
            f"serving the token or within {window_min} minutes after finishing it.")
    elif token.status in (Status.WAITING, Status.BOOKED):
        reason, why = "not_at_counter", (
            f"Token {token.number} is {token.status.value}, at no counter: take a payment for the token "
            f"being served at your counter (or finished there within {window_min} minutes).")
    else:
        reason, why = "not_served", (
            f"Token {token.number} is {token.status.value}: it was not served, so it takes no payment.")
    raise TokenNotAtCounter(why, token=token.id, status=token.status.value, reason=reason,
                            window_s=PAYMENT_WINDOW_AFTER_DONE_S)


def check_not_paid(token: Token, earlier: list[Payment], part: bool = False) -> None:
    """One payment per token: a second one (a command run twice, a retry with a new
    Idempotency-Key) is refused naming the first receipt. The one exception is explicit: a
    token takes any number of payments marked ``part`` (two bills, one bill in two modes), but
    never parts beside an unmarked payment. A payment billing refused for good (failed) does
    not count: the cashier may take it again, e.g. with the account corrected."""
    standing = [p for p in earlier if p.status not in (PaymentStatus.FAILED, PaymentStatus.REFUNDED)]
    whole = [p for p in standing if not p.part]
    if not whole and (part or not standing):
        return
    first = (whole or standing)[0]
    receipt = provisional_receipt(first)
    already = (f"receipt {receipt}, {rupees(first.amount_paise)} {first.mode.value} for {first.account} "
               f"({first.status.value})")
    if whole:
        message = (f"Token {token.number} already has a payment: {already}. A token takes one payment "
                   "(several only when each is marked part).")
    else:
        message = (f"Token {token.number} already has {len(standing)} part payment(s), the first {already}: "
                   "mark this one part too.")
    raise AlreadyPaid(message, token=token.id, payment=first.id, receipt=receipt,
                      amount_paise=first.amount_paise, payment_status=first.status.value,
                      receipts=[provisional_receipt(p) for p in standing])


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
                     mode: PaymentMode, idem: IdempotencyKey | None = None,
                     part: bool = False) -> tuple[Payment, bool]:
        """Queue a payment for the token being served (or just finished); (payment, replayed).

        Only the cashier of the counter holding the token (or an admin) may take its payment,
        and a token takes one: both checked on the token and its payments as committed, in the
        same step as the write, so two requests at once cannot both pass.
        """
        actor.require_writer()

        def payment_for(token: Token | None, earlier: list[Payment]) -> Payment:
            if token is None:
                raise NotFound("token", token_id)
            actor.require_token(token)
            now = self.clock()
            check_not_paid(token, earlier, part)   # first: the receipt is what a cashier asks for
            check_payable(token, now)
            return Payment(
                id=self.new_id(), token_id=token.id, substation=token.substation, counter=token.counter,
                account=account, amount_paise=amount_paise, mode=PaymentMode(mode),
                status=PaymentStatus.QUEUED, day=token.day, created_at=now, updated_at=now, part=part,
            )

        stored, replayed = await self.store.take_payment(token_id, payment_for, idem)
        self.on_queued()
        return stored, replayed

    async def failed(self, actor: Actor) -> list[Payment]:
        """The worklist: payments billing refused for good, oldest first, with the cash still
        in a drawer; a cashier sees its own counter's, an admin every counter's."""
        actor.require_writer()
        found = await self.store.failed_payments()
        return [p for p in found if actor.role is Role.ADMIN or p.counter == actor.counter]

    async def resubmit(self, actor: Actor, payment_id: str, account: str | None = None) -> Payment:
        """Send a failed payment to billing again, the same payment (billing's idempotency key
        is its id), with the account corrected when given; it goes in its account's order."""
        def again(current: Payment) -> Payment:
            self._require_failed(actor, current, "resubmitted")
            return replace(current, status=PaymentStatus.QUEUED, account=account or current.account,
                           reason=None, updated_at=self.clock())

        payment = await self._amend(payment_id, again, "payment_resubmitted", actor)
        self.on_queued()
        return payment

    async def refund(self, actor: Actor, payment_id: str) -> Payment:
        """Record that a failed payment's cash went back to the consumer (its reason is kept)."""
        def refunded(current: Payment) -> Payment:
            self._require_failed(actor, current, "refunded")
            return replace(current, status=PaymentStatus.REFUNDED, updated_at=self.clock())

        return await self._amend(payment_id, refunded, "payment_refunded", actor)

    async def _amend(self, payment_id: str, change: Callable[[Payment], Payment], kind: str,
                     actor: Actor) -> Payment:
        actor.require_writer()
        try:
            return await self.store.amend_payment(payment_id, change, kind, actor.label)
        except KeyError:
            raise NotFound("payment", payment_id) from None

    @staticmethod
    def _require_failed(actor: Actor, payment: Payment, done: str) -> None:
        if actor.role is not Role.ADMIN and payment.counter != actor.counter:
            raise Forbidden(f"Only the counter that took payment {provisional_receipt(payment)} "
                            f"({payment.counter}), or an admin, may have it {done}.", counter=actor.counter)
        if payment.status is not PaymentStatus.FAILED:
            raise PaymentNotFailed(
                f"Payment {provisional_receipt(payment)} is {payment.status.value}: only a payment billing "
                f"refused (failed) can be {done}.", payment=payment.id, payment_status=payment.status.value)

    async def get(self, actor: Actor, payment_id: str) -> Payment:
        payment = await self.store.get_payment(payment_id)
        if payment is None:
            raise NotFound("payment", payment_id)
        if actor.role is Role.BOARD or (actor.role is Role.CASHIER and actor.counter != payment.counter):
            raise Forbidden("Only the counter that took a payment, or an admin, may read it.")
        return payment
