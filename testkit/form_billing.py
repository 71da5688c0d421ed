"""A billing server of another kind, and the adapter that speaks to it: form posts in, one line
of plain text out. Tests name ``testkit.form_billing:FormBillingAdapter`` in a scenario's
``[billing] adapter`` to show the gateway needs nothing of the HTTP JSON wire.

The wire (the whole of it):

    POST /pay   txn=ID&acct=ACCOUNT&paise=N&mode=M  ->  "OK REF" | "DUP REF" | "NO reason" | 503 "BUSY"
    GET  /txn?id=ID                                 ->  "OK REF" | "NONE"
    GET  /bill?acct=ACCOUNT                         ->  "OK PAISE consumer name" | "NONE"
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from counter_server.billing.contract import BillNotFound, Overloaded, PaymentRefused, PaymentRequest, RetryLater

REFUSED_PREFIX = "NA-"   # accounts this billing server will not book to
BUSY_RETRY_AFTER_S = 1   # what it asks for when busy: longer than the gateway's first backoff


@dataclass
class FormBillingState:
    """What the form billing server has booked, and every request it was sent."""

    booked: dict[str, dict[str, str]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    request_times: list[float] = field(default_factory=list)   # time.monotonic() of each
    busy: bool = False

    def heard(self, kind: str, form: dict[str, str]) -> None:
        self.requests.append((kind, form))
        self.request_times.append(time.monotonic())


FORM_STATE = web.AppKey("form_billing", FormBillingState)


async def _pay(request: web.Request) -> web.Response:
    state = request.app[FORM_STATE]
    form = dict(await request.post())
    state.heard("pay", form)
    if state.busy:
        return web.Response(text="BUSY", status=503, headers={"Retry-After": str(BUSY_RETRY_AFTER_S)})
    if form["acct"].startswith(REFUSED_PREFIX):
        return web.Response(text="NO account closed")
    first = state.booked.get(form["txn"])
    if first is not None:
        return web.Response(text=f"DUP {first['ref']}")
    state.booked[form["txn"]] = {**form, "ref": f"FB{len(state.booked) + 1:05d}"}
    return web.Response(text=f"OK {state.booked[form['txn']]['ref']}")


async def _txn(request: web.Request) -> web.Response:
    state = request.app[FORM_STATE]
    state.heard("txn", dict(request.query))
    found = state.booked.get(request.query["id"])
    return web.Response(text=f"OK {found['ref']}" if found else "NONE")


async def _bill(request: web.Request) -> web.Response:
    account = request.query["acct"]
    request.app[FORM_STATE].heard("bill", dict(request.query))
    if account.startswith(REFUSED_PREFIX):
        return web.Response(text="NONE")
    return web.Response(text=f"OK 45600 Consumer {account[-4:]}")


def create_form_billing_app() -> web.Application:
    app = web.Application()
    app[FORM_STATE] = FormBillingState()
    app.router.add_post("/pay", _pay)
    app.router.add_get("/txn", _txn)
    app.router.add_get("/bill", _bill)
    return app


class FormBillingAdapter:
    """The billing adapter for the form billing server (``[billing] adapter``)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _line(self, method: str, path: str, **kwargs: Any) -> str:
        assert self._session is not None
        try:
            async with self._session.request(method, self.url + path, **kwargs) as resp:
                text = (await resp.text()).strip()
                if resp.status == 503:
                    raise Overloaded(f"form billing: {text}", float(resp.headers.get("Retry-After", 1)))
                if resp.status != 200:
                    raise RetryLater(f"form billing answered {resp.status}")
                return text
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise RetryLater(f"form billing did not answer: {exc.__class__.__name__}") from None

    async def lookup_bill(self, account: str) -> dict[str, Any]:
        line = await self._line("GET", "/bill", params={"acct": account})
        if line == "NONE":
            raise BillNotFound(account)
        _, paise, consumer = line.split(" ", 2)
        return {"account": account, "amount_paise": int(paise), "consumer": consumer}

    async def post_payment(self, payment: PaymentRequest) -> str:
        line = await self._line("POST", "/pay", data={
            "txn": payment.payment_id, "acct": payment.account, "paise": str(payment.amount_paise),
            "mode": payment.mode})
        word, _, rest = line.partition(" ")
        if word in ("OK", "DUP"):
            return rest
        if word == "NO":
            raise PaymentRefused(f"form billing refused the payment: {rest}")
        raise RetryLater(f"form billing said {line!r}")

    async def payment_status(self, payment_id: str) -> str | None:
        line = await self._line("GET", "/txn", params={"id": payment_id})
        return None if line == "NONE" else line.partition(" ")[2]


class NotAnAdapter:
    """A class without the contract's methods, for the refusal tests."""

    async def start(self) -> None:
        """Only one of the five."""
