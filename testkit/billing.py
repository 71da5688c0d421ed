"""A billing server of a test's own that refuses the accounts it is told to, for good.

The built-in simulator accepts every well-formed account, so a payment billing refuses (the
worklist, a resubmission, a refund) needs this: a real HTTP server on loopback speaking the
gateway's side of the billing contract (``POST /payments``, ``GET /payments/{id}``, bills), that
answers 422 for the refused accounts and posts the rest. Start ``counter-server`` with
``--billing-url`` pointing at it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from .processes import free_port


@dataclass
class RefusingBilling:
    """What the test's billing server refuses and what it has posted (by payment id)."""

    refused_accounts: set[str]
    url: str = ""
    posted: dict[str, dict] = field(default_factory=dict)
    refusals: int = 0

    async def post_payment(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("account") in self.refused_accounts:
            self.refusals += 1
            return web.json_response({"error": f"no such account: {body.get('account')}"}, status=422)
        record = self.posted.setdefault(body["payment_id"], {
            **body, "billing_ref": f"BILL-{len(self.posted) + 1:07d}"})
        return web.json_response(record, status=201)

    async def get_payment(self, request: web.Request) -> web.Response:
        record = self.posted.get(request.match_info["payment_id"])
        return web.json_response(record) if record else web.json_response({"error": "unknown"}, status=404)

    async def get_bill(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        if account in self.refused_accounts:
            return web.json_response({"error": "unknown account"}, status=404)
        return web.json_response({"account": account, "consumer": f"Consumer {account[-4:]}",
                                  "amount_paise": 100_00, "due_date": "2026-12-10"})


@asynccontextmanager
async def refusing_billing(*refused_accounts: str) -> AsyncIterator[RefusingBilling]:
    """The billing server, listening on a free loopback port until the block ends."""
    billing = RefusingBilling(set(refused_accounts))
    app = web.Application()
    app.router.add_post("/payments", billing.post_payment)
    app.router.add_get("/payments/{payment_id}", billing.get_payment)
    app.router.add_get("/bills/{account}", billing.get_bill)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    billing.url = f"http://127.0.0.1:{port}"
    try:
        yield billing
    finally:
        await runner.cleanup()
