"""Webhook endpoints: registered by ops with the events they want, a URL that is checked, and
a secret in the Standard Webhooks form (``whsec_`` and base64), made and shown once if not given.

The URL may be http or https, on loopback or a private network (a utility's SMS gateway
usually sits on its own), but never link-local: 169.254.0.0/16 and fe80::/10 hold cloud
metadata services, which a webhook must not be able to reach. A name is resolved when the
endpoint is registered and again before each delivery, so it cannot be pointed there later.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from urllib.parse import urlsplit

from ..notices import EVENT_TYPES, Webhook
from ..services.access import Actor
from ..services.errors import InvalidField, NotFound, ServiceError
from ..store import Store, StoreUnavailable

SECRET_PREFIX = "whsec_"


class UrlRefused(ServiceError):
    """A well-formed URL the server will not send to: link-local, or a host that does not resolve."""

    code = "url_refused"

    def __init__(self, message: str) -> None:
        super().__init__(message, field="url")


def check_url(url: object) -> str:
    """The URL if it may be registered (scheme, host, no literal link-local address)."""
    if not isinstance(url, str) or not url:
        raise InvalidField("url", "Give the endpoint's URL, e.g. http://10.0.0.5:8000/sms.")
    try:
        parts = urlsplit(url)
    except ValueError:   # a bracketed host that is no IPv6 address
        raise UrlRefused(f"{url!r} has a bracketed host that is not an IPv6 address.") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidField("url", f"{url!r} is not an http or https URL.")
    if not parts.hostname:
        raise InvalidField("url", f"{url!r} names no host.")
    if parts.username or parts.password:
        raise InvalidField("url", "Put no user name or password in the URL; the signature proves the sender.")
    try:
        parts.port
    except ValueError:
        raise InvalidField("url", f"{url!r} has a port that is not a number from 0 to 65535.") from None
    _refuse_link_local(parts.hostname, [parts.hostname])
    return url


def _refuse_link_local(host: str, addresses: Iterable[str]) -> None:
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            continue    # a name: resolved by reachable_url
        if address.is_link_local or (address.version == 6 and address.ipv4_mapped is not None
                                     and address.ipv4_mapped.is_link_local):
            shown = host if host == text else f"{host} ({text})"
            raise UrlRefused(f"{shown} is a link-local address (169.254.0.0/16, fe80::/10), where "
                                      "cloud metadata services live; webhooks may not go there.")


async def reachable_url(url: str) -> None:
    """Refuse a URL whose host resolves to a link-local address (checked at each delivery)."""
    host = urlsplit(url).hostname or ""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UrlRefused(f"{host} does not resolve: {exc}") from None
    _refuse_link_local(host, [info[4][0] for info in found])


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def check_secret(secret: object) -> str:
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise InvalidField("secret", "A secret is 'whsec_' and base64 (Standard Webhooks); leave it out "
                                     "and one is made for you.")
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidField("secret", "The part after 'whsec_' is not base64.") from None
    if not 24 <= len(raw) <= 65:
        raise InvalidField("secret", f"The secret holds {len(raw)} bytes; give 24 to 65.")
    return secret


def check_events(events: object) -> tuple[str, ...]:
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise InvalidField("events", f"Name the events to send, a list of: {', '.join(EVENT_TYPES)}.")
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise InvalidField("events", f"Unknown event {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}.")
    return tuple(dict.fromkeys(events))


class WebhookService:
    """What ops do with endpoints: register, list, remove, enable again after a failure."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def register(self, actor: Actor, url: object, events: object, secret: object | None) -> Webhook:
        """A new endpoint, starting at the newest notice (it gets what happens from now on)."""
        actor.require_admin()
        checked = check_url(url)
        await reachable_url(checked)
        hook = Webhook(id="wh_" + uuid.uuid4().hex[:12], url=checked, events=check_events(events),
                       secret=new_secret() if secret is None else check_secret(secret),
                       created_at=self.clock(), cursor=await self.store.notice_cursor())
        await self.store.save_webhook(hook)
        return hook

    async def list(self, actor: Actor) -> list[Webhook]:
        actor.require_admin()
        return await self.store.webhooks()

    async def remove(self, actor: Actor, hook_id: str) -> None:
        actor.require_admin()
        if not await self.store.remove_webhook(hook_id):
            raise NotFound("webhook", hook_id)

    async def enable(self, actor: Actor, hook_id: str) -> Webhook:
        """Deliveries resume from where the endpoint stopped (notices kept meanwhile go out)."""
        actor.require_admin()
        for _ in range(20):
            hook = next((h for h in await self.store.webhooks() if h.id == hook_id), None)
            if hook is None:
                raise NotFound("webhook", hook_id)
            enabled = replace(hook, disabled_at=None, disabled_reason=None, failing_since=None,
                              version=hook.version + 1)
            if await self.store.save_webhook(enabled):
                return enabled
        raise StoreUnavailable(f"webhook {hook_id} keeps changing; retry")
