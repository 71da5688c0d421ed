"""An async client for the counter server's cashier routes.

Every mutating call carries an ``Idempotency-Key``: one fresh key per logical action, reused on
each of its retries (and by the offline journal when it replays the action later), so a request
whose answer was lost can be sent again without changing anything twice. Network errors, 429 and
5xx answers are retried with exponential backoff and full jitter, never sooner than the server's
``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Self
from urllib.parse import quote

import aiohttp

Json = dict[str, Any]

#: Statuses worth another try: the server refused for now (rate limit, overload), not for good.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
NETWORK_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError,
                  TimeoutError, ConnectionError)


class KioskError(Exception):
    """Anything the kiosk cannot do; ``message`` is fit to show a cashier."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def transient(self) -> bool:
        """True when trying the same request later may succeed."""
        return False


class Unreachable(KioskError):
    """The server did not answer (refused, timed out, connection dropped) after every retry."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"The server cannot be reached ({reason}).")
        self.url = url
        self.reason = reason

    @property
    def transient(self) -> bool:
        return True


class ServerError(KioskError):
    """An error answer: the server's ``code`` and ``message``, and its other fields as details."""

    def __init__(self, status: int, code: str, message: str, details: Json | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    @property
    def transient(self) -> bool:
        return self.status in RETRY_STATUSES

    def as_json(self) -> Json:
        """The server's error object, plus the HTTP status (its details may hold a "status" too)."""
        return {"code": self.code, "message": self.message, **self.details, "http_status": self.status}


@dataclass(frozen=True)
class Call:
    """One HTTP request, as the client sends it and the journal keeps it for a later replay."""

    method: str
    path: str
    body: Json | None = None

    @property
    def mutating(self) -> bool:
        return self.method != "GET"

    def payload(self) -> bytes:
        """The body's bytes; canonical, so a replay matches the server's idempotency fingerprint."""
        if self.body is None:
            return b""
        return json.dumps(self.body, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Retry:
    """Told to ``on_retry`` before each wait: which attempt failed, why, and how long we wait."""

    call: Call
    attempt: int
    delay_s: float
    reason: str


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def seg(value: str) -> str:
    """A path segment, quoted: ids come from cashiers and servers, never trusted raw."""
    return quote(value, safe="")


# --- the calls, built apart from sending so the journal can keep and replay them --------------

def issue_call(substation: str, service: str, priority: str = "normal") -> Call:
    return Call("POST", f"/api/v1/substations/{seg(substation)}/tokens",
                {"service": service, "priority": priority})


def call_next_call(counter: str) -> Call:
    return Call("POST", f"/api/v1/counters/{seg(counter)}/next")


def token_action_call(token_id: str, action: str, body: Json | None = None) -> Call:
    return Call("POST", f"/api/v1/tokens/{seg(token_id)}/{seg(action)}", body)


def transfer_call(token_id: str, service: str | None = None, counter: str | None = None) -> Call:
    body = {k: v for k, v in (("service", service), ("counter", counter)) if v is not None}
    return token_action_call(token_id, "transfer", body)


def payment_call(token_id: str, account: str, amount_paise: int, mode: str = "cash", part: bool = False) -> Call:
    """A payment; ``part`` marks one of several for the token (else the server takes one a token)."""
    body = {"token_id": token_id, "account": account, "amount_paise": amount_paise, "mode": mode}
    return Call("POST", "/api/v1/payments", {**body, "part": True} if part else body)


def resubmit_call(payment_id: str, account: str | None = None) -> Call:
    """Send a payment billing refused to it again, its account corrected when given."""
    return Call("POST", f"/api/v1/payments/{seg(payment_id)}/resubmit",
                {"account": account} if account else {})


def refund_call(payment_id: str) -> Call:
    """Record that a refused payment's cash went back to the consumer."""
    return Call("POST", f"/api/v1/payments/{seg(payment_id)}/refund")


def cash_up_call(counter: str, day: str | None = None) -> Call:
    query = f"?date={quote(day, safe='')}" if day else ""
    return Call("GET", f"/api/v1/counters/{seg(counter)}/cash-up{query}")


def lease_call(counter: str, service: str, size: int = 10) -> Call:
    return Call("POST", f"/api/v1/counters/{seg(counter)}/leases", {"service": service, "size": size})


def offline_token_call(counter: str, lease_id: str, number: str, issued_at: str,
                       priority: str = "normal") -> Call:
    return Call("POST", f"/api/v1/counters/{seg(counter)}/offline-tokens",
                {"lease_id": lease_id, "number": number, "priority": priority,
                 "issued_at": issued_at})


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class KioskClient:
    """One kiosk's connection to the server (``async with KioskClient(url, key) as client``).

    ``timeout`` bounds each attempt; ``retries`` is how many more attempts a call may make.
    Waits grow as ``backoff * 2**attempt`` (capped at ``max_backoff``) with full jitter; a
    Retry-After longer than ``max_retry_after`` is not waited for but raised, so a cashier is
    never stuck behind a long wait.
    """

    def __init__(self, base_url: str, key: str, *, timeout: float = 5.0, retries: int = 3,
                 backoff: float = 0.2, max_backoff: float = 5.0, max_retry_after: float = 30.0,
                 on_retry: Callable[[Retry], None] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.on_retry = on_retry
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.clock_skew_s: float | None = None  # server clock minus ours, from the Date header
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> Self:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.key}", "Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(self.timeout, 3.0)),
            )
        return self

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- sending ------------------------------------------------------------------------------

    async def send(self, call: Call, *, idem: str | None = None, retries: int | None = None) -> Json:
        """Send ``call`` (with ``idem``, or a fresh key when it mutates) and return the JSON answer.

        Raises ``ServerError`` for an error answer and ``Unreachable`` when no answer came.
        """
        if call.mutating and idem is None:
            idem = new_idempotency_key()
        budget = self.retries if retries is None else retries
        attempt = 0
        while True:
            try:
                return await self._attempt(call, idem)
            except ServerError as exc:
                if not exc.transient or attempt >= budget:
                    raise
                if exc.retry_after is not None and exc.retry_after > self.max_retry_after:
                    raise
                delay = max(exc.retry_after or 0.0, self._jitter(attempt))
                reason = f"{exc.status} {exc.code}"
            except NETWORK_ERRORS as exc:
                if attempt >= budget:
                    raise Unreachable(self.base_url, describe(exc)) from exc
                delay = self._jitter(attempt)
                reason = describe(exc)
            attempt += 1
            if self.on_retry is not None:
                self.on_retry(Retry(call, attempt, delay, reason))
            await self.sleep(delay)

    def _jitter(self, attempt: int) -> float:
        """Full jitter: anywhere from 0 to the exponential ceiling, so kiosks do not retry in step."""
        return self.rng.uniform(0, min(self.max_backoff, self.backoff * 2 ** attempt))

    async def _attempt(self, call: Call, idem: str | None) -> Json:
        if self._session is None:
            await self.open()
        assert self._session is not None
        headers = {}
        if idem is not None:
            headers["Idempotency-Key"] = idem
        data = call.payload()
        if data:
            headers["Content-Type"] = "application/json"
        async with self._session.request(call.method, self.base_url + call.path, data=data or None,
                                         headers=headers) as resp:
            raw = await resp.read()
            self._note_date(resp.headers.get("Date"))
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = None
            if resp.status < 400 and isinstance(body, dict):
                return body
            raise error_from(resp.status, body, raw, parse_retry_after(resp.headers.get("Retry-After")))

    def _note_date(self, header: str | None) -> None:
        """Track the server's clock: offline tokens must not look issued in its future."""
        if not header:
            return
        try:
            server = parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError):
            return
        self.clock_skew_s = server - time.time()

    # --- the routes a cashier uses ------------------------------------------------------------

    async def health(self) -> Json:
        return await self.send(Call("GET", "/healthz"))

    async def me(self) -> Json:
        return await self.send(Call("GET", "/api/v1/me"))

    async def substations(self) -> list[Json]:
        return (await self.send(Call("GET", "/api/v1/substations")))["substations"]

    async def queue(self, substation: str) -> Json:
        return await self.send(Call("GET", f"/api/v1/substations/{seg(substation)}/queue"))

    async def token(self, token_id: str) -> Json:
        return (await self.send(Call("GET", f"/api/v1/tokens/{seg(token_id)}")))["token"]

    async def issue(self, substation: str, service: str, priority: str = "normal", *,
                    idem: str | None = None) -> Json:
        return (await self.send(issue_call(substation, service, priority), idem=idem))["token"]

    async def call_next(self, counter: str, *, idem: str | None = None) -> Json | None:
        return (await self.send(call_next_call(counter), idem=idem))["token"]

    async def open_counter(self, counter: str, *, idem: str | None = None) -> Json:
        return (await self.send(Call("POST", f"/api/v1/counters/{seg(counter)}/open"), idem=idem))["counter"]

    async def close_counter(self, counter: str, *, idem: str | None = None) -> Json:
        return (await self.send(Call("POST", f"/api/v1/counters/{seg(counter)}/close"), idem=idem))["counter"]

    async def act(self, token_id: str, action: str, *, idem: str | None = None) -> Json:
        """start, complete, recall, no-show, requeue or cancel: the token after the move."""
        return (await self.send(token_action_call(token_id, action), idem=idem))["token"]

    async def start(self, token_id: str, *, idem: str | None = None) -> Json:
        return await self.act(token_id, "start", idem=idem)

    async def complete(self, token_id: str, *, idem: str | None = None) -> Json:
        return await self.act(token_id, "complete", idem=idem)

    async def recall(self, token_id: str, *, idem: str | None = None) -> Json:
        return await self.act(token_id, "recall", idem=idem)

    async def no_show(self, token_id: str, *, idem: str | None = None) -> Json:
        return await self.act(token_id, "no-show", idem=idem)

    async def requeue(self, token_id: str, *, idem: str | None = None) -> Json:
        return await self.act(token_id, "requeue", idem=idem)

    async def cancel(self, token_id: str, *, idem: str | None = None) -> Json:
        return await self.act(token_id, "cancel", idem=idem)

    async def transfer(self, token_id: str, *, service: str | None = None, counter: str | None = None,
                       idem: str | None = None) -> Json:
        return (await self.send(transfer_call(token_id, service, counter), idem=idem))["token"]

    async def pay(self, token_id: str, account: str, amount_paise: int, mode: str = "cash", *,
                  part: bool = False, idem: str | None = None) -> Json:
        """Record a payment; the answer is queued with a provisional receipt."""
        return (await self.send(payment_call(token_id, account, amount_paise, mode, part), idem=idem))["payment"]

    async def payment(self, payment_id: str) -> Json:
        return (await self.send(Call("GET", f"/api/v1/payments/{seg(payment_id)}")))["payment"]

    async def failed_payments(self) -> list[Json]:
        """The worklist: payments billing refused for good, oldest first (a cashier's own counter's)."""
        return (await self.send(Call("GET", "/api/v1/payments?status=failed")))["payments"]

    async def resubmit(self, payment_id: str, account: str | None = None, *, idem: str | None = None) -> Json:
        """A failed payment queued for billing again (the same payment; the account corrected when given)."""
        return (await self.send(resubmit_call(payment_id, account), idem=idem))["payment"]

    async def refund(self, payment_id: str, *, idem: str | None = None) -> Json:
        return (await self.send(refund_call(payment_id), idem=idem))["payment"]

    async def cash_up(self, counter: str, day: str | None = None) -> Json:
        """The counter's payments of ``day`` (today by default): taken by mode, posted, pending,
        failed and refunded, each {"count", "paise"}."""
        return (await self.send(cash_up_call(counter, day)))["cash_up"]

    async def bill(self, account: str) -> Json:
        """{"bill": {...}, "stale": bool, "age_s": float} through the server's billing gateway."""
        return await self.send(Call("GET", f"/api/v1/bills/{seg(account)}"))

    async def lease(self, counter: str, service: str, size: int = 10, *, idem: str | None = None) -> Json:
        return (await self.send(lease_call(counter, service, size), idem=idem))["lease"]

    async def offline_token(self, counter: str, lease_id: str, number: str, issued_at: str,
                            priority: str = "normal", *, idem: str | None = None) -> Json:
        call = offline_token_call(counter, lease_id, number, issued_at, priority)
        return (await self.send(call, idem=idem))["token"]


def error_from(status: int, body: object, raw: bytes, retry_after: float | None) -> ServerError:
    """A ServerError from an error answer, JSON or not (a proxy's HTML page, say)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        details = {k: v for k, v in error.items() if k not in ("code", "message")}
        return ServerError(status, str(error.get("code", "http_error")),
                           str(error.get("message", "")), details, retry_after)
    text = raw[:200].decode("utf-8", "replace").strip() or "no body"
    return ServerError(status, "http_error", f"HTTP {status}: {text}", {}, retry_after)


def describe(exc: BaseException) -> str:
    """A few words for a cashier; the exception itself stays chained for the log."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "no answer in time"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "no connection"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection dropped"
    return str(exc) or type(exc).__name__
