"""The route table."""

from aiohttp import web

from ..live.handlers import ops_live, substation_live
from . import handlers
from .openapi import openapi_document


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/api/v1/openapi.json", openapi_document)
    app.router.add_get("/api/v1/me", handlers.me)
    app.router.add_get("/api/v1/substations", handlers.list_substations)
    app.router.add_post("/api/v1/substations/{sid}/tokens", handlers.issue_token)
    app.router.add_get("/api/v1/substations/{sid}/queue", handlers.substation_queue)
    app.router.add_post("/api/v1/counters/{cid}/next", handlers.call_next)
    app.router.add_post("/api/v1/counters/{cid}/{state:open|close}", handlers.counter_open_state)
    app.router.add_post("/api/v1/counters/{cid}/leases", handlers.post_lease)
    app.router.add_post("/api/v1/counters/{cid}/offline-tokens", handlers.post_offline_token)
    app.router.add_get("/api/v1/substations/{sid}/live", substation_live)
    app.router.add_get("/api/v1/live", ops_live)
    app.router.add_post("/api/v1/payments", handlers.post_payment)
    app.router.add_get("/api/v1/payments/{pid}", handlers.get_payment)
    app.router.add_get("/api/v1/bills/{account}", handlers.get_bill)
    app.router.add_get("/api/v1/ops/billing", handlers.ops_billing)
    app.router.add_post("/api/v1/ops/billing/{state:pause|resume}", handlers.ops_billing_pause)
    app.router.add_get("/api/v1/ops/substations/{sid}/admission", handlers.get_admission)
    app.router.add_put("/api/v1/ops/substations/{sid}/admission", handlers.put_admission)
    app.router.add_get("/api/v1/tokens/{tid}", handlers.get_token)
    app.router.add_post("/api/v1/tokens/{tid}/{action}", handlers.token_action)
