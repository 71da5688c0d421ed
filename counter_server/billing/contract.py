"""What the gateway asks of a billing server, whatever wire it speaks (docs/billing-contract.md).

A billing adapter turns the three calls of the contract (look up a bill, post a payment, ask a
payment's status) into its billing server's own requests, and every answer into a value or one
of the outcomes below; the gateway decides from the outcome alone whether to retry, back off or
give up, so an adapter never retries on its own. The HTTP JSON adapter (``http_json.py``) is the
default; a utility names its own class in the scenario (``[billing] adapter =
"package.module:Class"``), built as ``Class(url, timeout_s)``.

Standard library only: the scenario checks a named class against ``ADAPTER_METHODS`` while it is
read, without pulling in any HTTP client.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

ADAPTER_METHODS = ("start", "close", "lookup_bill", "post_payment", "payment_status")


class BillNotFound(Exception):
    """Billing knows no such account (a look-up's answer, not a failure)."""

    def __init__(self, account: str) -> None:
        super().__init__(f"The billing server knows no account {account!r}.")
        self.account = account


class PaymentRefused(Exception):
    """Billing refused the payment itself (bad account, amount, a reused id): never retried."""


class RetryLater(Exception):
    """The outcome is unknown (a timeout, a 5xx, a dropped connection): the payment may have
    landed, so its status is asked before it is posted again."""


class Overloaded(RetryLater):
    """Billing said it is overloaded (503 or 429); ``retry_after_s`` is its own Retry-After."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """One payment as billing is asked to book it; ``payment_id`` is its idempotency key."""

    payment_id: str
    account: str
    amount_paise: int
    mode: str


@runtime_checkable
class BillingAdapter(Protocol):
    """The one door between the gateway and a billing server."""

    async def start(self) -> None:
        """Open connections (called once, before any other call)."""

    async def close(self) -> None:
        """Close them (called once, after the last call)."""

    async def lookup_bill(self, account: str) -> dict[str, Any]:
        """The bill: at least ``account`` and ``amount_paise``; ``BillNotFound``, or
        ``RetryLater``/``Overloaded`` when billing cannot answer now."""

    async def post_payment(self, payment: PaymentRequest) -> str:
        """Book the payment once however often it is posted; the billing reference. Raises
        ``PaymentRefused``, ``RetryLater`` or ``Overloaded``."""

    async def payment_status(self, payment_id: str) -> str | None:
        """The billing reference of a payment billing has booked, None when it has never seen
        it (then posting it is safe); ``RetryLater``/``Overloaded`` when it cannot say."""


class AdapterNameError(ValueError):
    """A ``[billing] adapter`` that cannot be used; the message names it and says why."""


def load_adapter_class(name: str) -> type:
    """The class ``package.module:Class`` names, once it has every method of the contract."""
    module_name, colon, class_name = name.partition(":")
    if not colon or not module_name or not class_name:
        raise AdapterNameError(f"{name!r} is not of the form package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure to import is the name's fault here
        raise AdapterNameError(f"{name!r}: module {module_name!r} cannot be imported ({exc})") from None
    found = getattr(module, class_name, None)
    if not inspect.isclass(found):
        raise AdapterNameError(f"{name!r}: module {module_name!r} has no class {class_name!r}")
    missing = [m for m in ADAPTER_METHODS if not inspect.iscoroutinefunction(getattr(found, m, None))]
    if missing:
        raise AdapterNameError(f"{name!r} lacks the async method(s) {', '.join(missing)} of a billing "
                               "adapter (docs/billing-contract.md)")
    return found
