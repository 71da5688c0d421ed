"""The one app factory: ``create_app(settings)`` builds a whole server, with no globals."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web

from .api import setup_routes
from .api.errors import error_middleware
from .api.ratelimit import RATE_LIMITER, RateLimiter, rate_limit_middleware
from .api.requests import auth_middleware
from .appkeys import HUB, KEYS, PAYMENTS, SETTINGS, STORE, TOKENS
from .config import Settings
from .live import LiveHub
from .pages import page_headers, setup_pages
from .services import KeyService, Role, TokenService
from .services.payments import PaymentService
from .store import SQLiteStore

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[error_middleware, rate_limit_middleware(limiter), page_headers, auth_middleware],
    )
    app[SETTINGS] = settings
    app[RATE_LIMITER] = limiter
    app.cleanup_ctx.append(_storage)
    app.on_shutdown.append(_hang_up_boards)
    setup_routes(app)
    setup_pages(app)
    return app


async def _storage(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    scenario = settings.scenario
    store = SQLiteStore(settings.database_path, scenario.policy, scenario.layouts())
    await store.open()
    app[STORE] = store
    app[TOKENS] = tokens = TokenService(scenario, store, settings.clock)
    app[KEYS] = KeyService(store, scenario, settings.clock)
    app[PAYMENTS] = PaymentService(tokens, store, settings.clock)
    hub = LiveHub(scenario, backlog=settings.live_backlog, client_buffer=settings.live_client_buffer,
                  heartbeat_s=settings.live_heartbeat_s, clock=settings.clock)
    hub.prime(await tokens.halls(), await store.last_seq())
    store.add_listener(hub.publish)
    app[HUB] = hub
    if settings.write_admin_key:
        await _first_admin_key(app[KEYS], settings)
    try:
        yield
    finally:
        await store.close()


async def _first_admin_key(keys: KeyService, settings: Settings) -> None:
    """On a data dir's first start, write an admin key (mode 0600) and say where it is."""
    if await keys.has_admin():
        return
    plain, _ = await keys.create(Role.ADMIN, label="first start")
    path = settings.admin_key_path
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(plain + "\n")
    log.warning("First start: an admin key was written to %s (readable by you only).", path.resolve())


async def _hang_up_boards(app: web.Application) -> None:
    """On shutdown, tell every board to reconnect elsewhere rather than wait for a timeout."""
    app[HUB].close_all()
