"""The billing gateway: counters never call the billing server; this does, gently.

It speaks to billing only through a ``BillingAdapter`` (contract.py): the HTTP JSON one by
default, or the class a utility names in ``[billing] adapter``; what an answer means (retry,
refused, overloaded) is the adapter's to say and the gateway's to act on.

Payments wait in the durable outbox (the store) and a worker forwards them under an adaptive
concurrency limit, behind a circuit breaker, with jittered backoff and a retry budget. Before
re-posting a payment whose earlier attempt ended in doubt (timeout, crash), it asks the
billing server whether the payment landed, so each one is posted exactly once in effect.
Bill look-ups share one call per account (single flight) and fall back to a stale answer
while billing is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..redact import redacted
from ..scenario.billing import GatewaySettings
from ..store import Store
from ..outbox import Payment, PaymentStatus
from .contract import BillingAdapter, BillNotFound, Overloaded, PaymentRefused, PaymentRequest, RetryLater
from .http_json import HttpJsonAdapter
from .resilience import (
    AIMDLimit,
    BreakerOpen,
    BreakerState,
    Cached,
    CallKind,
    CircuitBreaker,
    ConcurrencyLimiter,
    LimitExceeded,
    LoadSignal,
    Permit,
    RetryBudget,
    SingleFlightCache,
    backoff_s,
)

log = logging.getLogger(__name__)

__all__ = ["BillingGateway", "BillNotFound", "BillingUnavailable"]


class BillingUnavailable(Exception):
    """Billing cannot answer now and no earlier answer is on hand."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _reason(exc: Exception) -> str:
    """Why a call failed, for the payment's record: the message, or the exception's name when it
    has none (a timeout's message is empty, and "billing: " alone would tell ops nothing)."""
    return str(exc) or exc.__class__.__name__


class BillingGateway:
    def __init__(self, store: Store, billing_url: str, settings: GatewaySettings = GatewaySettings(),
                 *, adapter: BillingAdapter | None = None, simulated: bool = False,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.billing_url = billing_url.rstrip("/")
        self.adapter: BillingAdapter = adapter or HttpJsonAdapter(
            self.billing_url, settings.timeout_s, connections=settings.max_concurrency + 8)
        self.settings = settings
        self.simulated = simulated
        self.clock = clock
        self.limiter = ConcurrencyLimiter(
            AIMDLimit(settings.initial_limit, 1, settings.max_concurrency), monotonic)
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_open_s, clock=monotonic)
        self.budget = RetryBudget(clock=monotonic)
        self.bills: SingleFlightCache[dict] = SingleFlightCache(ttl_s=settings.bill_ttl_s, clock=monotonic)
        self.worker_id = "w_" + secrets.token_hex(4)
        self.paused = False
        self.counts = {"posted": 0, "failed": 0, "retries": 0, "deferred": 0, "checked_before_retry": 0}
        self._worker: asyncio.Task[None] | None = None
        self._forwarding: set[asyncio.Task[None]] = set()
        self._ready: deque[Payment] = deque()   # claimed, waiting for a free slot
        self._room = asyncio.Event()

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.adapter.start()
        self._worker = asyncio.create_task(self._forward_outbox(), name="billing-outbox")

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop in bounded time, leaving no payment held for a lease to lapse where it can be
        helped: claim no more; give the posts in flight ``grace_s`` to land and be settled;
        cancel the rest (another replica asks billing whether they landed before posting them
        again); hand the claimed but unsent ones back to the outbox at once."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._forwarding and grace_s > 0:
            await asyncio.wait(set(self._forwarding), timeout=grace_s)
        in_flight = list(self._forwarding)
        for task in in_flight:
            task.cancel()
        for task in in_flight:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        unsent, self._ready = list(self._ready), deque()
        for payment in unsent:
            try:
                await asyncio.wait_for(self._retry_later(payment, "the replica holding it stopped", 0.0,
                                                         attempted=False), timeout=1.0)
            except Exception:  # noqa: BLE001 - the store may be away too: the lease lapses instead
                log.warning("could not hand payment %s back to the outbox; its lease lapses", payment.id)
                break
        await self.adapter.close()

    def wake(self) -> None:
        """A payment was queued: look at the outbox now rather than at the next poll."""
        self._room.set()

    # -- bill look-ups -----------------------------------------------------------------------

    async def bill(self, account: str) -> Cached[dict]:
        """The account's bill: one billing call however many counters ask at once."""

        async def load() -> dict:
            try:
                self.breaker.before_call()
            except BreakerOpen as exc:
                raise BillingUnavailable(str(exc), exc.retry_after_s) from None
            try:
                permit = self.limiter.try_acquire(CallKind.LOOKUP)
            except LimitExceeded as exc:
                raise BillingUnavailable(str(exc), 1.0) from None
            signal = LoadSignal.DROPPED
            try:
                bill = await self.adapter.lookup_bill(account)
                signal = LoadSignal.SUCCESS
                self.breaker.on_success()
                return bill
            except BillNotFound:
                signal = LoadSignal.IGNORE
                self.breaker.on_success()
                raise
            except Overloaded as exc:
                raise BillingUnavailable(str(exc), exc.retry_after_s or 1.0) from None
            except Exception as exc:  # noqa: BLE001 - RetryLater, or an adapter's own failure
                raise BillingUnavailable(_reason(exc), 1.0) from None
            finally:
                if signal is LoadSignal.DROPPED:
                    self.breaker.on_failure()
                permit.release(signal)

        return await self.bills.get(account, load)

    async def account_status(self, account: str) -> str:
        """"known" or "unknown" to billing, through the bill cache; "unchecked" when billing
        cannot answer (a consumer is then accepted provisionally, not turned away)."""
        try:
            await self.bill(account)
        except BillNotFound:
            return "unknown"
        except BillingUnavailable:
            return "unchecked"
        return "known"

    # -- the outbox worker -------------------------------------------------------------------

    def _capacity(self) -> int:
        if self.paused:
            return 0
        if self.breaker.state is BreakerState.OPEN:
            waited = self.limiter.clock() - self.breaker.opened_at
            return 1 if waited >= self.breaker.open_s else 0
        if self.breaker.state is BreakerState.HALF_OPEN:
            return 0 if self.breaker.probing else 1
        return self.limiter.available(CallKind.PAYMENT)

    async def _forward_outbox(self) -> None:
        """Keep up to twice the limit of payments claimed and ready, so a slot that frees is
        filled at once instead of after another trip to the store; send one per free slot."""
        ready = self._ready   # stop() hands back what is claimed but not sent
        held: set[str] = set()
        while True:
            wanted = 2 * max(1, self.limiter.limit) - len(ready)
            if self.breaker.state is not BreakerState.CLOSED:
                wanted = min(wanted, self._capacity())   # just the probe, when it is due
            if wanted > 0 and not self.paused:
                try:
                    claimed = await self.store.claim_payments(
                        self.worker_id, self.clock(), self.settings.lease_s, wanted)
                except Exception:  # noqa: BLE001 - the store may be closing; try again shortly
                    log.exception("claiming payments failed")
                    claimed = []
                for payment in claimed:
                    if payment.id not in held:
                        held.add(payment.id)
                        ready.append(payment)
            sent = 0
            while ready and self._capacity() > 0:
                payment = ready.popleft()
                task = asyncio.create_task(self._forward(payment, self._admit()))
                self._forwarding.add(task)
                task.add_done_callback(self._forwarding.discard)
                task.add_done_callback(lambda _, pid=payment.id: held.discard(pid))
                sent += 1
            if not sent:
                self._room.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._room.wait(), self.settings.poll_s)

    def _admit(self) -> Permit | Exception:
        """Take the breaker's and the limiter's permission at once, before anything awaits, so
        the claim loop never hands out more payments than may be in flight."""
        try:
            self.breaker.before_call()
        except BreakerOpen as exc:
            return exc
        try:
            return self.limiter.try_acquire(CallKind.PAYMENT)
        except LimitExceeded as exc:
            self.breaker.cancel_probe()
            return exc

    async def _forward(self, payment: Payment, permit: Permit | Exception) -> None:
        if isinstance(permit, Exception):  # not tried: back to the queue, no attempt counted
            wait = permit.retry_after_s if isinstance(permit, BreakerOpen) else 0.0
            await self._retry_later(payment, str(permit), wait, attempted=False)
            return
        self.budget.record_call()
        signal = LoadSignal.DROPPED
        try:
            ref = await self._post(payment)
            signal = LoadSignal.SUCCESS
        except PaymentRefused as exc:
            signal = LoadSignal.IGNORE
            refusal: Exception = exc
        except Exception as exc:  # noqa: BLE001 - RetryLater, Overloaded, or an adapter's own failure
            if not isinstance(exc, RetryLater):
                log.warning("billing adapter %s failed: %r (retried as if unanswered)",
                            type(self.adapter).__name__, exc)
            refusal = exc
        finally:
            permit.release(signal)   # the round trip to billing only, not our own bookkeeping
            self._room.set()
        if signal is LoadSignal.SUCCESS:
            self.breaker.on_success()
            self.counts["posted"] += 1
            await self.store.settle_payment(payment.id, PaymentStatus.POSTED, self.clock(), billing_ref=ref)
        elif signal is LoadSignal.IGNORE:
            self.breaker.on_success()
            self.counts["failed"] += 1
            await self.store.settle_payment(payment.id, PaymentStatus.FAILED, self.clock(),
                                            reason=str(refusal))
        else:
            self.breaker.on_failure()
            wait = backoff_s(payment.attempts, self.settings.retry_base_s, self.settings.retry_cap_s)
            if isinstance(refusal, Overloaded) and refusal.retry_after_s is not None:
                wait = max(wait, min(refusal.retry_after_s, self.settings.retry_cap_s))   # billing's own word
            if not self.budget.try_retry():
                wait = max(wait, self.settings.retry_cap_s)
            await self._retry_later(payment, f"billing: {_reason(refusal)}", wait)

    async def _post(self, payment: Payment) -> str:
        """Post one payment; returns the billing reference."""
        if payment.attempts > 0:  # an earlier attempt may have landed: ask before posting again
            self.counts["checked_before_retry"] += 1
            ref = await self.adapter.payment_status(payment.id)
            if ref is not None:
                return ref
        return await self.adapter.post_payment(PaymentRequest(
            payment_id=payment.id, account=payment.account, amount_paise=payment.amount_paise,
            mode=payment.mode.value))

    async def _retry_later(self, payment: Payment, reason: str, wait_s: float,
                           attempted: bool = True) -> None:
        self.counts["retries" if attempted else "deferred"] += 1
        await self.store.settle_payment(payment.id, PaymentStatus.QUEUED, self.clock(), reason=reason,
                                        retry_at=self.clock() + wait_s, attempted=attempted)

    # -- what ops see ------------------------------------------------------------------------

    def health(self) -> str:
        """up, slow (the limit has fallen below where it started) or down (breaker not closed)."""
        if self.breaker.state is not BreakerState.CLOSED:
            return "down"
        if self.limiter.limit < self.settings.initial_limit:
            return "slow"
        return "up"

    async def snapshot(self) -> dict[str, Any]:
        stats = await self.store.outbox_stats(self.clock())
        return {
            "billing_url": redacted(self.billing_url),   # ops see which server, never its password
            "simulated": self.simulated,
            "state": self.health(),
            "paused": self.paused,
            **self.limiter.snapshot(),
            "breaker": self.breaker.snapshot(),
            "outbox": {"queued": stats.queued, "posted": stats.posted, "failed": stats.failed,
                       "oldest_queued_s": round(stats.oldest_queued_s, 1)
                       if stats.oldest_queued_s is not None else None},
            "forwarded": dict(self.counts),
            "retry_budget_refused": self.budget.refused,
            "bill_cache": {"calls": self.bills.calls, "coalesced": self.bills.coalesced},
        }
