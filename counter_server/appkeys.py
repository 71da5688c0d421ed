"""Typed keys of everything the app factory puts on the aiohttp Application, all in one place.

The keys' types are imported for type checkers only: importing this module imports no service,
store or handler, so any module can read a key without making an import cycle through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .api.ratelimit import RateLimiter, TokenBuckets
    from .billing.gateway import BillingGateway
    from .config import Settings
    from .live.hub import LiveHub
    from .live.token_watch import TokenWatch
    from .ops.metrics import Metrics
    from .ops.plans import PlanRunner
    from .ops.service import OpsService
    from .services.keys import KeyService
    from .services.payments import PaymentService
    from .services.phones import PhoneService
    from .services.sms import SmsService
    from .services.tokens import TokenService
    from .store import Store
    from .webhooks import WebhookService
    from .starting import StoreWait

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
STORE: web.AppKey[Store] = web.AppKey("store")
TOKENS: web.AppKey[TokenService] = web.AppKey("tokens")
KEYS: web.AppKey[KeyService] = web.AppKey("keys")
HUB: web.AppKey[LiveHub] = web.AppKey("hub")
PAYMENTS: web.AppKey[PaymentService] = web.AppKey("payments")
GATEWAY: web.AppKey[BillingGateway] = web.AppKey("gateway")
PHONES: web.AppKey[PhoneService] = web.AppKey("phones")
TOKEN_WATCH: web.AppKey[TokenWatch] = web.AppKey("token_watch")
OPS: web.AppKey[OpsService] = web.AppKey("ops")
WEBHOOKS: web.AppKey[WebhookService] = web.AppKey("webhooks")
SMS: web.AppKey[SmsService] = web.AppKey("sms")
PLANS: web.AppKey[PlanRunner] = web.AppKey("plans")   # the month simulations run from the ops page
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")   # this app's own Prometheus registry
RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("rate_limiter")   # per API key and address
PHONE_LIMITER: web.AppKey[TokenBuckets] = web.AppKey("phone_limiter")   # phones' takes per address
# Keys the digests of requests kept for Idempotency-Key replays (derived from the server's secret).
REQUEST_DIGEST_KEY: web.AppKey[bytes] = web.AppKey("request_digest_key")
# Only on the stand-in app that answers "not ready" while a replica waits for its store at start.
STARTING: web.AppKey[StoreWait] = web.AppKey("starting")
