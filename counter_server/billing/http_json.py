"""The default billing adapter: the HTTP JSON contract of docs/billing-contract.md, which
billing-sim serves. Each answer becomes a value or one of the contract's outcomes; retrying,
backing off and giving up are the gateway's."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import aiohttp

from .contract import BillNotFound, Overloaded, PaymentRefused, PaymentRequest, RetryLater

REFUSED = frozenset({400, 404, 409, 422})   # refused for good: the payment itself is wrong
OVERLOADED = frozenset({429, 503})          # billing says it cannot take more now


def retry_after_s(headers: Any) -> float | None:
    """A Retry-After given in seconds (the contract's form), else None."""
    try:
        value = float(headers.get("Retry-After", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


async def _error_text(resp: aiohttp.ClientResponse) -> str:
    """The answer's ``{"error": ...}``, or the start of its text when it is not the contract's."""
    text = await resp.text()
    try:
        body = await resp.json(content_type=None)
    except ValueError:
        return text[:200]
    return str(body.get("error", text[:200])) if isinstance(body, dict) else text[:200]


def _what_failed(exc: Exception) -> str:
    """The message, or the exception's name when it has none (a timeout's message is empty)."""
    return str(exc) or exc.__class__.__name__


def _unexpected(what: str, resp: aiohttp.ClientResponse) -> RetryLater:
    if resp.status in OVERLOADED:
        return Overloaded(f"billing is overloaded ({resp.status}) at {what}", retry_after_s(resp.headers))
    return RetryLater(f"{what} answered {resp.status}")


class HttpJsonAdapter:
    """JSON over HTTP(S) to ``url``: GET /bills/{account}, POST /payments, GET /payments/{id}."""

    def __init__(self, url: str, timeout_s: float, connections: int = 24) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                                              connector=aiohttp.TCPConnector(limit=self.connections))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the billing adapter is not started")
        return self._session

    async def lookup_bill(self, account: str) -> dict[str, Any]:
        try:
            async with self._http().get(f"{self.url}/bills/{quote(account, safe='')}") as resp:
                if resp.status == 404:
                    raise BillNotFound(account)
                if resp.status != 200:
                    raise _unexpected("the bill look-up", resp)
                return await resp.json()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise RetryLater(f"billing did not answer: {exc.__class__.__name__}") from None

    async def post_payment(self, payment: PaymentRequest) -> str:
        body = {"payment_id": payment.payment_id, "account": payment.account,
                "amount_paise": payment.amount_paise, "mode": payment.mode}
        try:
            async with self._http().post(f"{self.url}/payments", json=body,
                                         headers={"Idempotency-Key": payment.payment_id}) as resp:
                if resp.status in (200, 201):
                    return (await resp.json())["billing_ref"]
                if resp.status in REFUSED:
                    raise PaymentRefused(f"billing refused the payment ({resp.status}): {await _error_text(resp)}")
                raise _unexpected("the payment post", resp)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise RetryLater(_what_failed(exc)) from None

    async def payment_status(self, payment_id: str) -> str | None:
        try:
            async with self._http().get(f"{self.url}/payments/{quote(payment_id, safe='')}") as resp:
                if resp.status == 200:
                    return (await resp.json())["billing_ref"]
                if resp.status == 404:
                    return None
                raise _unexpected("the status check", resp)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise RetryLater(_what_failed(exc)) from None
