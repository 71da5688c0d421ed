"""The payment outbox: what a cashier records, kept durably until the billing server has it.

A payment is acknowledged to the cashier as soon as it is written here (a provisional receipt);
the gateway's worker forwards it later. Payments of one account are forwarded in the order
they were taken, so the billing server never sees a later payment before an earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PaymentStatus(StrEnum):
    QUEUED = "queued"
    POSTED = "posted"
    FAILED = "failed"       # refused by billing for good: on the worklist until resubmitted or refunded
    REFUNDED = "refunded"   # a failed payment whose cash went back to the consumer


class PaymentMode(StrEnum):
    CASH = "cash"
    CHEQUE = "cheque"
    CARD = "card"
    UPI = "upi"
    DD = "dd"


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    token_id: str
    substation: str
    counter: str | None
    account: str
    amount_paise: int
    mode: PaymentMode
    status: PaymentStatus
    day: str
    created_at: float
    updated_at: float
    attempts: int = 0
    reason: str | None = None
    billing_ref: str | None = None
    ordinal: int = 0
    part: bool = False   # one of several payments for the token, marked so by the cashier


@dataclass(frozen=True, slots=True)
class OutboxStats:
    queued: int
    posted: int
    failed: int
    oldest_queued_s: float | None
