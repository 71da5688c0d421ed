"""The route table: every HTTP and WebSocket route of the server, with its handler, in one place.

Handlers live beside what they serve (``api/`` for the JSON API and the live channels, ``ops/``
for the ops page, reports and metrics, ``pages.py`` and ``phone/`` for the pages); none of them
registers a route itself, so this table is the whole surface of the server.
"""

from __future__ import annotations

from aiohttp import web

from . import pages
from .api import handlers as api
from .api import live, phones
from .api.openapi import openapi_document
from .ops import handlers as ops
from .ops import webhooks
from .phone import pages as phone_pages


def route_table() -> list[web.AbstractRouteDef]:
    """Every route, grouped by who calls it."""
    return [
        # Anyone: health and the API's own description.
        web.get("/healthz", api.healthz),
        web.get("/readyz", api.readyz),
        web.get("/api/v1/openapi.json", openapi_document),
        # Cashiers' kiosks (and admins): keys, tokens, counters, payments, bills.
        web.get("/api/v1/me", api.me),
        web.get("/api/v1/substations", api.list_substations),
        web.post("/api/v1/substations/{sid}/tokens", api.issue_token),
        web.get("/api/v1/substations/{sid}/queue", api.substation_queue),
        web.post("/api/v1/counters/{cid}/next", api.call_next),
        web.post("/api/v1/counters/{cid}/{state:open|close}", api.counter_open_state),
        web.post("/api/v1/counters/{cid}/leases", api.post_lease),
        web.post("/api/v1/counters/{cid}/offline-tokens", api.post_offline_token),
        web.get("/api/v1/counters/{cid}/cash-up", api.counter_cash_up),
        web.post("/api/v1/payments", api.post_payment),
        web.get("/api/v1/payments", api.list_payments),
        web.get("/api/v1/payments/{pid}", api.get_payment),
        web.post("/api/v1/payments/{pid}/resubmit", api.resubmit_payment),
        web.post("/api/v1/payments/{pid}/refund", api.refund_payment),
        web.get("/api/v1/bills/{account}", api.get_bill),
        web.get("/api/v1/tokens/{tid}", api.get_token),
        web.post("/api/v1/tokens/{tid}/{action}", api.token_action),
        # Live channels (WebSockets): one hall's boards, and ops over every hall.
        web.get("/api/v1/substations/{sid}/live", live.substation_live),
        web.get("/api/v1/live", live.ops_live),
        web.get("/ops/live", ops.ops_live_by_ticket),
        # Ops: billing, admission, slots, today's overview and alerts, plans, reports, metrics.
        web.get("/api/v1/ops/billing", api.ops_billing),
        web.post("/api/v1/ops/billing/{state:pause|resume}", api.ops_billing_pause),
        web.get("/api/v1/ops/substations/{sid}/admission", api.get_admission),
        web.put("/api/v1/ops/substations/{sid}/admission", api.put_admission),
        web.put("/api/v1/ops/substations/{sid}/slots/{day}", phones.put_slots),
        web.get("/api/v1/ops/overview", ops.overview),
        web.get("/api/v1/ops/alerts", ops.alerts),
        web.post("/api/v1/ops/live-ticket", ops.live_ticket),
        web.post("/api/v1/ops/webhooks", webhooks.post_webhook),
        web.get("/api/v1/ops/webhooks", webhooks.list_webhooks),
        web.delete("/api/v1/ops/webhooks/{wid}", webhooks.delete_webhook),
        web.post("/api/v1/ops/webhooks/{wid}/enable", webhooks.enable_webhook),
        web.get("/api/v1/ops/plans", ops.list_plans),
        web.post("/api/v1/ops/plans", ops.post_plan),
        web.get("/api/v1/ops/plans/{pid}", ops.get_plan),
        web.get("/api/v1/ops/plans/{pid}/plots/{name}.png", ops.get_plan_plot),
        web.get("/api/v1/reports/daily", ops.report_daily),
        web.get("/api/v1/reports/cash-up", ops.report_cash_up),
        web.get("/api/v1/reports/monthly", ops.report_monthly),
        web.get("/metrics", ops.metrics),
        # Consumers' phones (public: a token's link is what lets a phone see its own token).
        web.get("/api/v1/public/substations", phones.list_substations),
        web.post("/api/v1/public/substations/{sid}/tokens", phones.take_token),
        web.get("/api/v1/public/substations/{sid}/slots", phones.list_slots),
        web.post("/api/v1/public/substations/{sid}/bookings", phones.book_slot),
        web.get("/api/v1/public/tokens/{link}", phones.get_token),
        web.post("/api/v1/public/tokens/{link}/cancel", phones.cancel_token),
        web.get("/api/v1/public/tokens/{link}/live", phones.token_live),
        web.get("/api/v1/public/tokens/{link}/sms", phones.get_sms),
        web.post("/api/v1/public/tokens/{link}/sms", phones.ask_sms),
        web.delete("/api/v1/public/tokens/{link}/sms", phones.stop_sms),
        # Pages: hall boards, the phone page and its QR codes, the ops page; their files.
        web.get("/board/{sid}", pages.board_page),
        web.static("/static/board/", pages.BOARD_WEB, name="board_static"),
        web.get("/q", phone_pages.phone_page),
        web.get("/q/t/{link}", phone_pages.phone_page),
        web.get("/q/{sid}", phone_pages.phone_page),
        web.get("/q/{sid}/qr.svg", phone_pages.qr_code),
        web.get("/static/q/{name}", phone_pages.phone_asset),
        web.get("/ops", ops.ops_page),
        web.static("/static/ops/", ops.OPS_WEB, name="ops_static"),
    ]


def add_routes(app: web.Application) -> None:
    app.router.add_routes(route_table())


def starting_route_table() -> list[web.AbstractRouteDef]:
    """The stand-in's routes while a replica waits for its store at start (starting.py): alive,
    not ready, and every other request refused with the reason."""
    return [
        web.get("/healthz", api.healthz_starting),
        web.route("*", "/{anything:.*}", api.not_ready_starting),
    ]
