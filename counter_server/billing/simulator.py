"""``billing-sim``: a stand-in for the utility's fragile legacy billing server.

It has a fixed capacity of concurrent requests; latency grows with concurrency past a knee;
held above capacity for ``overload_s`` seconds it crashes: it answers 503 to everything for
``recovery_s`` seconds (requests in flight are lost), then comes back. It speaks the HTTP JSON contract of docs/billing-contract.md, every answer as written
there: payments are idempotent on their id (also sent as ``Idempotency-Key``); a repeated
post of the same payment is answered with the first result and counted in
``duplicate_payments``, so a test can tell whether anybody posted twice, and the same id for a
different payment is refused (409).

``/admin/crash``, ``/admin/recover`` and ``/admin/latency`` let a test break it on purpose.
They exist only when asked for: the ``billing-sim`` command (a test stand-in, run to be
broken) has them; the simulated billing server a counter server runs for itself when no
billing URL is configured has none, or any local process (or a page posting a cross-site
form to its loopback port) could crash every counter's payments.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from aiohttp import web

from ..scenario.billing import SimSettings

ACCOUNT = re.compile(r"^[0-9A-Za-z\-]{4,24}$")
PAYMENT_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MODES = ("cash", "cheque", "card", "upi", "dd")   # the contract's payment modes
AMOUNT_MAX_PAISE = 10**12
UNKNOWN_PREFIX = "NA-"   # never known (the tests' "no such account")
# The simulated utility's numbering plan: the accounts it has consumers for. Anything else, a
# made-up "AAAA-1" or "1234", is unknown, as it would be to a real billing server. Matched on
# the account upper-cased with separators dropped: "kan-2043-1877" is KAN20431877.
KNOWN_ACCOUNTS = re.compile(r"^(KAN[0-9]{8}|2140[0-9]{6})$")


def plain_account(account: str) -> str:
    """The account as the simulated utility files it: upper-cased, separators dropped."""
    return account.upper().replace("-", "")


def known_account(account: str) -> bool:
    """Whether the simulated utility has a consumer with this account number."""
    if not ACCOUNT.match(account) or account.upper().startswith(UNKNOWN_PREFIX):
        return False
    return KNOWN_ACCOUNTS.match(plain_account(account)) is not None


@dataclass
class SimState:
    settings: SimSettings
    clock: Callable[[], float] = time.monotonic
    in_flight: int = 0
    max_in_flight: int = 0
    requests: int = 0
    rejected: int = 0
    crashes: int = 0
    down_until: float = 0.0
    overloaded_since: float | None = None
    payments: dict[str, dict] = field(default_factory=dict)
    duplicate_payments: int = 0
    crash_epoch: int = 0
    extra_latency_ms: float = 0.0
    journal: Path | None = None

    def load(self) -> None:
        """A real billing server keeps what it posted: reload the journal after a restart."""
        if self.journal is not None and self.journal.exists():
            for line in self.journal.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    self.payments[record["payment_id"]] = record

    def record(self, payment: dict) -> None:
        self.payments[payment["payment_id"]] = payment
        if self.journal is not None:
            with self.journal.open("a") as handle:
                handle.write(json.dumps(payment) + "\n")

    @property
    def up(self) -> bool:
        return self.clock() >= self.down_until

    def latency_s(self) -> float:
        """Base latency, growing linearly with every request in flight past the knee."""
        s = self.settings
        extra = max(0, self.in_flight - s.knee) / max(1, s.knee)
        return (s.base_latency_ms + self.extra_latency_ms) / 1000 * (1 + extra)

    def check_overload(self) -> None:
        now = self.clock()
        if self.in_flight > self.settings.capacity and self.up:
            if self.overloaded_since is None:
                self.overloaded_since = now
            elif now - self.overloaded_since >= self.settings.overload_s:
                self.crash()
        else:
            self.overloaded_since = None

    def crash(self) -> None:
        self.crashes += 1
        self.crash_epoch += 1
        self.down_until = self.clock() + self.settings.recovery_s
        self.overloaded_since = None

    def stats(self) -> dict[str, object]:
        return {
            "up": self.up, "capacity": self.settings.capacity, "knee": self.settings.knee,
            "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
            "requests": self.requests, "rejected": self.rejected, "crashes": self.crashes,
            "payments_posted": len(self.payments), "duplicate_payments": self.duplicate_payments,
            "capacity_per_s": round(self.settings.capacity / (self.settings.base_latency_ms / 1000), 1),
            "extra_latency_ms": self.extra_latency_ms,
        }


SIM = web.AppKey("sim", SimState)


def _unavailable(state: SimState) -> web.Response:
    """503 with Retry-After: the seconds until it is back (at least 1), as the contract says."""
    state.rejected += 1
    wait = max(1, math.ceil(state.down_until - state.clock()))
    return web.json_response({"error": "billing server unavailable"}, status=503,
                             headers={"Retry-After": str(wait)})


@web.middleware
async def legacy_behaviour(request: web.Request, handler) -> web.StreamResponse:
    state = request.app[SIM]
    if request.path == "/stats" or request.path.startswith("/admin/"):
        return await handler(request)
    state.requests += 1
    if not state.up:
        return _unavailable(state)
    state.in_flight += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    epoch = state.crash_epoch
    try:
        state.check_overload()
        await asyncio.sleep(state.latency_s())
        if state.crash_epoch != epoch or not state.up:
            return _unavailable(state)          # crashed while this request waited: lost
        return await handler(request)
    finally:
        state.in_flight -= 1


async def get_bill(request: web.Request) -> web.Response:
    account = request.match_info["account"]
    if not known_account(account):
        return web.json_response({"error": "no such account"}, status=404)
    digest = int(hashlib.sha256(plain_account(account).encode()).hexdigest()[:8], 16)
    due = (date.today().replace(day=1) + timedelta(days=40)).replace(day=10)
    return web.json_response({
        "account": account, "consumer": f"Consumer {account[-4:]}",
        "amount_paise": 10_000 + digest % 500_000, "due_date": due.isoformat(),
    })


def _refused(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def post_payment(request: web.Request) -> web.Response:
    """POST /payments: book a payment once, however often it is posted (the contract's 2.)."""
    state = request.app[SIM]
    try:
        body = await request.json()
    except ValueError:
        return _refused(400, "the body is not JSON")
    if not isinstance(body, dict):
        return _refused(400, "the body is not a JSON object")
    payment_id, account, amount = body.get("payment_id"), body.get("account"), body.get("amount_paise")
    mode = body.get("mode", "cash")
    if not isinstance(payment_id, str) or not PAYMENT_ID.match(payment_id):
        return _refused(422, "payment_id is required: 1-64 letters, digits, '.', '_' or '-'")
    key = request.headers.get("Idempotency-Key")
    if key is not None and key != payment_id:
        return _refused(422, "Idempotency-Key differs from payment_id")
    if not isinstance(account, str) or not ACCOUNT.match(account):
        return _refused(422, "account is required: 4-24 letters, digits or '-'")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= AMOUNT_MAX_PAISE:
        return _refused(422, f"amount_paise is required: a whole number of paise, 1 to {AMOUNT_MAX_PAISE}")
    if mode not in MODES:
        return _refused(422, f"mode must be one of {', '.join(MODES)}")
    asked = {"payment_id": payment_id, "account": account, "amount_paise": amount, "mode": mode}
    first = state.payments.get(payment_id)
    if first is not None:
        if any(name in first and first[name] != value for name, value in asked.items()):  # older journals lack mode
            return _refused(409, f"payment_id {payment_id} was posted before for a different payment")
        state.duplicate_payments += 1
        return web.json_response({**first, "duplicate": True})
    record = {**asked, "billing_ref": f"BILL-{len(state.payments) + 1:07d}"}
    state.record(record)
    return web.json_response(record, status=201)


async def get_payment(request: web.Request) -> web.Response:
    record = request.app[SIM].payments.get(request.match_info["payment_id"])
    if record is None:
        return web.json_response({"error": "no such payment"}, status=404)
    return web.json_response(record)


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM].stats())


async def admin_crash(request: web.Request) -> web.Response:
    request.app[SIM].crash()
    return web.json_response(request.app[SIM].stats())


async def admin_recover(request: web.Request) -> web.Response:
    state = request.app[SIM]
    state.down_until = 0.0
    return web.json_response(state.stats())


async def admin_latency(request: web.Request) -> web.Response:
    """Make the billing server slower (or normal again): {"extra_latency_ms": N}."""
    state = request.app[SIM]
    state.extra_latency_ms = float((await request.json())["extra_latency_ms"])
    return web.json_response(state.stats())


async def _overload_watch(app: web.Application) -> AsyncIterator[None]:
    """Overload is judged continuously, not only when a request arrives."""
    state = app[SIM]

    async def watch() -> None:
        while True:
            state.check_overload()
            await asyncio.sleep(0.05)

    task = asyncio.create_task(watch())
    yield
    task.cancel()


def create_sim_app(settings: SimSettings, clock: Callable[[], float] = time.monotonic,
                   journal: Path | None = None, admin_routes: bool = False) -> web.Application:
    """The simulated billing server; ``admin_routes`` adds the routes that break it on purpose."""
    app = web.Application(middlewares=[legacy_behaviour])
    app[SIM] = SimState(settings, clock, journal=journal)
    app[SIM].load()
    app.cleanup_ctx.append(_overload_watch)
    app.router.add_get("/bills/{account}", get_bill)
    app.router.add_post("/payments", post_payment)
    app.router.add_get("/payments/{payment_id}", get_payment)
    app.router.add_get("/stats", stats)
    if admin_routes:
        app.router.add_post("/admin/crash", admin_crash)
        app.router.add_post("/admin/recover", admin_recover)
        app.router.add_post("/admin/latency", admin_latency)
    return app


def main(argv: list[str] | None = None) -> int:
    defaults = SimSettings()
    parser = argparse.ArgumentParser(prog="billing-sim", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--capacity", type=int, default=defaults.capacity,
                        help="concurrent requests it can hold before overload")
    parser.add_argument("--knee", type=int, default=defaults.knee,
                        help="concurrency past which latency grows")
    parser.add_argument("--base-latency-ms", type=float, default=defaults.base_latency_ms)
    parser.add_argument("--overload-seconds", type=float, default=defaults.overload_s,
                        help="how long above capacity before it crashes")
    parser.add_argument("--recovery-seconds", type=float, default=defaults.recovery_s,
                        help="how long a crash lasts")
    parser.add_argument("--journal", type=Path,
                        help="file that keeps posted payments across restarts (default: memory only)")
    args = parser.parse_args(argv)
    settings = SimSettings(args.capacity, args.knee, args.base_latency_ms, args.overload_seconds,
                           args.recovery_seconds)
    print(f"billing-sim: capacity {settings.capacity}, knee {settings.knee}, "
          f"{settings.base_latency_ms:.0f} ms base latency, crashes after "
          f"{settings.overload_s:g} s overloaded for {settings.recovery_s:g} s; "
          "POST /admin/crash, /admin/recover and /admin/latency break it on purpose", flush=True)
    web.run_app(create_sim_app(settings, journal=args.journal, admin_routes=True), host=args.host,
                port=args.port, access_log=None, print=lambda text: print(text, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
