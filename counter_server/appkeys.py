"""Typed keys for what the app factory puts on the aiohttp Application."""

from aiohttp import web

from .billing.gateway import BillingGateway
from .config import Settings
from .live import LiveHub
from .live.token_watch import TokenWatch
from .services import KeyService, TokenService
from .services.payments import PaymentService
from .services.phones import PhoneService
from .store import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
TOKENS = web.AppKey("tokens", TokenService)
KEYS = web.AppKey("keys", KeyService)
HUB = web.AppKey("hub", LiveHub)
PAYMENTS = web.AppKey("payments", PaymentService)
GATEWAY = web.AppKey("gateway", BillingGateway)
PHONES = web.AppKey("phones", PhoneService)
TOKEN_WATCH = web.AppKey("token_watch", TokenWatch)
# Keys the digests of requests kept for Idempotency-Key replays (derived from the server's secret).
REQUEST_DIGEST_KEY = web.AppKey("request_digest_key", bytes)
