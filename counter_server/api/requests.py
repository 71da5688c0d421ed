"""Reading a request: who sent it (its key; for a WebSocket, the page it came from), its JSON
body, its Idempotency-Key."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ..appkeys import KEYS, REQUEST_DIGEST_KEY, SETTINGS
from ..services import Actor
from ..store import IdempotencyKey
from .errors import ApiError, Handler
from .schemas import IDEMPOTENCY_KEY, PATTERN_WORDS

ACTOR = web.RequestKey("actor", Actor)
BODY = web.RequestKey("body", bytes)

M = TypeVar("M", bound=BaseModel)

MAX_IDEMPOTENCY_KEY = 200
MAX_KEY = 200
# A body trickled in slower than this (slowloris on the body) is refused rather than holding
# a handler for ever; 64 KB arrives in milliseconds from any real kiosk.
BODY_TIMEOUT_S = 10.0


def public(handler: Handler) -> Handler:
    """Mark a handler as open to anyone (hall boards, health checks, the API description)."""
    handler.public = True  # type: ignore[attr-defined]
    return handler


def bearer_key(header: str) -> str | None:
    """The key of an ``Authorization: Bearer KEY`` header (the scheme in any case, spaces
    around the key ignored), or None when the header is not that. The rate limit reads it
    too, so 'bearer KEY' and 'Bearer  KEY' count as the one key they are."""
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or len(key) > MAX_KEY:
        return None
    return key


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every /api/ route but the public ones needs ``Authorization: Bearer KEY``; a WebSocket
    opened by a browser must come from this server's own pages."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        _require_own_origin(request)
    route_handler = request.match_info.handler
    if request.path.startswith("/api/") and not getattr(route_handler, "public", False):
        header = request.headers.get("Authorization", "")
        if not header:
            raise ApiError(401, "missing_key", "Send an API key as 'Authorization: Bearer KEY'.",
                           {"WWW-Authenticate": "Bearer"})
        key = bearer_key(header)
        if key is None:
            raise ApiError(401, "malformed_key", "The Authorization header must be 'Bearer KEY'.",
                           {"WWW-Authenticate": "Bearer"})
        actor = await request.app[KEYS].authenticate(key)
        if actor is None:
            raise ApiError(401, "invalid_key", "The API key is unknown or revoked.",
                           {"WWW-Authenticate": "Bearer"})
        request[ACTOR] = actor
    return await handler(request)


def _require_own_origin(request: web.Request) -> None:
    """A browser names the page that opens a WebSocket in ``Origin``, and a WebSocket is not
    held back by CORS: without this, any site a signed-in ops person visits could open the
    ops channel with a ticket it got hold of, or a hall's channel from a look-alike page.
    Allowed: the host the request was sent to (the page was served from it) and the configured
    ``[phones] public_url``. No Origin at all is a non-browser client (the terminal board, the
    kiosk, scripts), which Origin cannot protect anyway: allowed."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    public_url = request.app[SETTINGS].scenario.phones.public_url
    if _same_host(origin, request.host) or (public_url and _same_origin(origin, public_url)):
        return
    raise ApiError(403, "origin_not_allowed",
                   f"A live connection from a page at {origin[:100]!r} is refused: only this "
                   "server's own pages may open one.", origin=origin[:100])


def _origin_parts(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) origin, or None when it is not one ("null", junk)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _same_origin(origin: str, url: str) -> bool:
    mine = _origin_parts(url)
    return mine is not None and _origin_parts(origin) == mine


def _same_host(origin: str, host_header: str) -> bool:
    """Whether ``origin`` is the host the request was sent to. Behind a TLS proxy the scheme
    differs (https outside, http here), so only host and port count; a Host without a port
    (nginx's ``$host`` drops it) is matched on the host name alone."""
    theirs = _origin_parts(origin)
    try:
        host = urlsplit("//" + host_header)
        port = host.port
    except ValueError:
        return False
    if theirs is None or not host.hostname or theirs[1] != host.hostname:
        return False
    return port is None or theirs[2] == port


def whole_number(raw: str) -> int | None:
    """``raw`` as a whole number, or None: ASCII digits only ("²" passes str.isdigit(), and
    then int() refuses it)."""
    return int(raw) if raw.isascii() and raw.isdigit() else None


def actor_of(request: web.Request) -> Actor:
    return request[ACTOR]


async def read_body(request: web.Request) -> bytes:
    """The raw body, read once (aiohttp answers 413 past the app's size limit)."""
    if BODY not in request:
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                request[BODY] = await request.read()
        except TimeoutError:
            raise ApiError(408, "request_timeout",
                           f"The request body did not arrive within {BODY_TIMEOUT_S:g} s.") from None
    return request[BODY]


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The JSON body validated against ``model``; errors name the field at fault."""
    raw = await read_body(request)
    if not raw.strip():
        data: object = {}
    else:
        if request.content_type not in ("application/json", "application/octet-stream") and \
                request.headers.get("Content-Type"):
            raise ApiError(415, "unsupported_media_type",
                           f"Send the body as application/json, not {request.content_type}.")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ApiError(400, "invalid_json", f"The body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_body", "The body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": _in_words(err)}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        first = problems[0]
        raise ApiError(422, "invalid_field", f"{first['field']}: {first['message']}.",
                       field=first["field"], problems=problems) from None


def _in_words(error: Mapping[str, Any]) -> str:
    """pydantic's message, but what a pattern asks for in words instead of the expression."""
    if error["type"] == "string_pattern_mismatch":
        wanted = PATTERN_WORDS.get(error.get("ctx", {}).get("pattern", ""))
        if wanted:
            return f"Expected {wanted}"
    return error["msg"]


async def idempotency_of(request: web.Request, principal: str | None = None) -> IdempotencyKey | None:
    """The request's Idempotency-Key scoped to its API key (or to ``principal``, for public
    routes that have none), with a digest of the request."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if len(key) > MAX_IDEMPOTENCY_KEY or not IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(400, "invalid_idempotency_key",
                       f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters.")
    # Keyed: a phone's body holds both its numbers, and an unkeyed digest kept 30 days would
    # let a copied database test guesses of them.
    digest = hmac.new(request.app[REQUEST_DIGEST_KEY], digestmod=hashlib.sha256)
    digest.update(f"{request.method} {request.path}\n".encode())
    digest.update(await read_body(request))
    return IdempotencyKey(principal=principal or actor_of(request).key_id, key=key,
                          fingerprint=digest.hexdigest())
