"""The one app factory: ``create_app(settings)`` builds a whole server, with no globals."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web

from .api.errors import error_middleware
from .api.forwarded import forwarded_for_middleware
from .api.ratelimit import RateLimiter, TokenBuckets, rate_limit_middleware
from .api.requests import auth_middleware
from .appkeys import (GATEWAY, HUB, KEYS, METRICS, OPS, PAYMENTS, PHONE_LIMITER, PHONES, PLANS, RATE_LIMITER,
                      REQUEST_DIGEST_KEY, SETTINGS, SMS, STORE, TOKEN_WATCH, TOKENS, WEBHOOKS)
from .billing.contract import load_adapter_class
from .billing.gateway import BillingGateway
from .billing.simulator import create_sim_app
from .config import Settings
from .live import OPS_CHANNEL, LiveHub
from .live.today import today_halls
from .live.token_watch import TokenWatch
from .ops.metrics import Metrics, echo_request_id
from .ops.plans import PlanRunner
from .ops.service import OpsService
from .ops.status import push_alerts
from .pages import page_headers
from .redact import redacted
from .routes import add_routes
from .services import KeyService, Role, TokenService
from .services.payments import PaymentService
from .services.phones import PhoneLinks, PhoneService
from .services.sms import SmsService
from .store import Store, open_store
from .webhooks import WebhookDeliverer, WebhookService
from .webhooks.sms import SmsWatch

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst, clock=settings.clock)
    metrics = Metrics()  # this app's own Prometheus registry
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[error_middleware, metrics.middleware, rate_limit_middleware(limiter), page_headers,
                     auth_middleware],
    )
    if settings.trusted_proxies:   # before the limits: they must see the client's address
        app.middlewares.insert(1, forwarded_for_middleware(settings.trusted_proxies))
    app[SETTINGS] = settings
    app[RATE_LIMITER] = limiter
    takes = settings.scenario.phones.takes_per_hour_per_address
    app[PHONE_LIMITER] = TokenBuckets(takes / 3600.0, takes, clock=settings.clock)
    app[METRICS] = metrics
    app.on_response_prepare.append(echo_request_id)
    app.cleanup_ctx.append(_services)
    app.cleanup_ctx.append(_plans)
    app.on_shutdown.append(_hang_up_boards)
    add_routes(app)
    return app


async def _services(app: web.Application) -> AsyncIterator[None]:
    """Open the store, build the services, the live hub and the billing gateway, each whole;
    on the way out, stop the background rounds and wait for them before anything closes."""
    settings = app[SETTINGS]
    scenario = settings.scenario
    store = await open_store(settings)   # SQLite file, or the Redis several replicas share
    try:
        app[STORE] = store
        hub = LiveHub(scenario, backlog=settings.live_backlog, client_buffer=settings.live_client_buffer,
                      heartbeat_s=settings.live_heartbeat_s, clock=settings.clock)
        app[TOKENS] = tokens = TokenService(scenario, store, settings.clock, cached_hall=hub.hall)
        app[KEYS] = KeyService(store, scenario, settings.clock)
        if settings.write_admin_key:
            await _first_admin_key(app[KEYS], settings)
        hub.prime(await tokens.halls(), await store.last_seq())
        store.add_listener(hub.publish)
        app[HUB] = hub
        app[TOKEN_WATCH] = watch = TokenWatch(store)
        store.add_listener(watch.on_commit)
        watch.start()
        async with _billing_gateway(app, store) as gateway:
            app[GATEWAY] = gateway
            app[OPS] = OpsService(scenario, store, settings.clock, gateway=gateway)
            app[PAYMENTS] = PaymentService(tokens, store, settings.clock, on_queued=gateway.wake)
            secret = await store.server_secret()
            app[REQUEST_DIGEST_KEY] = hmac.new(secret, b"request-fingerprint", hashlib.sha256).digest()
            links = PhoneLinks(secret)
            app[PHONES] = phones = PhoneService(tokens, store, gateway.account_status, links, settings.clock)
            app[WEBHOOKS] = WebhookService(store, settings.clock)
            sms_watch = SmsWatch(store, scenario.phones, clock=settings.clock)
            app[SMS] = SmsService(phones, store, scenario.phones, settings.clock, on_asked=sms_watch.look_soon)
            store.add_listener(sms_watch.on_commit)
            sms_watch.start()
            deliverer = WebhookDeliverer(store, scenario, scenario.webhooks, poll_s=settings.webhook_poll_s,
                                         shared=settings.store.engine == "redis", clock=settings.clock)
            await deliverer.start()
            background = [
                asyncio.create_task(_push_billing_to_ops(gateway, hub, tokens, deliverer,
                                                         settings.ops_push_every_s)),
                asyncio.create_task(_start_booked_slots(phones, settings.booked_slots_every_s)),
                asyncio.create_task(_close_days(tokens, hub, settings.day_close_every_s)),
            ]
            try:
                yield
            finally:
                for task in background:
                    task.cancel()
                # A round half-way through a write finishes it (or is cancelled at an await)
                # before the gateway and the store close under it; one that will not stop is
                # said, not waited for forever.
                _, stuck = await asyncio.wait(background, timeout=settings.shutdown_grace_s)
                if stuck:
                    log.warning("%d background round(s) did not stop within %g s", len(stuck),
                                settings.shutdown_grace_s)
                await deliverer.stop()
                await sms_watch.stop()
                await watch.stop()
    finally:
        await store.close()


async def _plans(app: web.Application) -> AsyncIterator[None]:
    """The plans ops run from their page; their worker process (started by the first plan)
    ends with the app, terminated if a plan is half-way through: shutdown never waits for one."""
    app[PLANS] = plans = PlanRunner(app[SETTINGS].scenario, app[SETTINGS].clock)
    try:
        yield
    finally:
        await asyncio.to_thread(plans.close)


@contextlib.asynccontextmanager
async def _billing_gateway(app: web.Application, store: Store) -> AsyncIterator[BillingGateway]:
    """The gateway to the configured billing server, or to a simulated one run in-process."""
    settings = app[SETTINGS]
    billing = settings.scenario.billing
    url = settings.billing_url or billing.url
    runner = None
    if url is None:
        runner = web.AppRunner(create_sim_app(billing.simulator), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        log.warning("No billing server configured: payments go to a SIMULATED billing server at %s. "
                    "Give --billing-url (or [billing] url) to reach the real one.", url)
    adapter = None
    if billing.adapter is not None:   # checked when the scenario was read; built as Class(url, timeout_s)
        adapter = load_adapter_class(billing.adapter)(url, billing.gateway.timeout_s)
        log.info("Billing through %s at %s", billing.adapter, redacted(url))
    gateway = BillingGateway(store, url, billing.gateway, adapter=adapter, simulated=runner is not None,
                             clock=settings.clock)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop(grace_s=settings.shutdown_grace_s)
        if runner is not None:
            await runner.cleanup()


async def _push_billing_to_ops(gateway: BillingGateway, hub: LiveHub, tokens: TokenService,
                               deliverer: WebhookDeliverer, every_s: float) -> None:
    """Ops watch the gateway live: its state and the alerts go out on the ops channel every
    ``every_s`` (a second by default); an alert that begins goes to webhooks as hall.alert."""
    while True:
        await asyncio.sleep(every_s)
        try:
            billing = await gateway.snapshot()
            hub.notify(OPS_CHANNEL, {"type": "billing", "billing": billing})
            await deliverer.alerts_seen(await push_alerts(tokens, hub, billing))
        except Exception:  # noqa: BLE001 - a failed snapshot must not stop the next one
            log.exception("billing snapshot for ops failed")


async def _start_booked_slots(phones: PhoneService, every_s: float) -> None:
    """Bookings become waiting tokens as their slots start (a counter calling next does it too,
    so a booked consumer is never passed over between two of these rounds)."""
    while True:
        try:
            await phones.start_due_bookings()
        except Exception:  # noqa: BLE001 - the next round tries again
            log.exception("starting booked slots failed")
        await asyncio.sleep(every_s)


async def _close_days(tokens: TokenService, hub: LiveHub, every_s: float) -> None:
    """At closing time and at the day boundary, close what the day left open; the first round,
    at start-up, also closes the days a server down over midnight left open. A round with
    nothing due reads nothing. When a new day begins, boards are moved on to it."""
    while True:
        try:
            await tokens.close_days()
            await today_halls(tokens, hub)   # a new day: boards and ops move on to it
        except Exception:  # noqa: BLE001 - the next round tries again
            log.exception("closing the day failed")
        await asyncio.sleep(every_s)


async def _first_admin_key(keys: KeyService, settings: Settings) -> None:
    """On a data dir's first start, write an admin key (mode 0600) and say where it is."""
    if await keys.has_admin():
        return
    plain, _ = await keys.create(Role.ADMIN, label="first start")
    path = settings.admin_key_path
    path.parent.mkdir(parents=True, exist_ok=True)   # with Redis, nothing else makes the data dir
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(plain + "\n")
    log.warning("First start: an admin key was written to %s (readable by you only).", path.resolve())


async def _hang_up_boards(app: web.Application) -> None:
    """On shutdown, tell every board to reconnect elsewhere rather than wait for a timeout."""
    app[HUB].close_all()
