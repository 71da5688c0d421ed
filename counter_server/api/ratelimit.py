"""Per-client rate limits: one misbehaving kiosk cannot flood the server.

Token buckets: each client may make ``burst`` requests at once and ``rate`` a second after that.
A client is its API key (read from the header as the auth middleware reads it, so 'bearer',
'BEARER' and extra spaces are the same key; limited before any lookup, so unknown keys are
too), and separately its address with a larger bucket, since a substation's kiosks may share one.
The buckets read the time from the clock they are given (the server's settings' clock), so a
test moves them on without waiting.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from .errors import ApiError, Handler
from .requests import bearer_key


@dataclass
class Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 50_000) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: dict[str, Bucket] = {}
        self.refused = 0

    def take(self, client: str) -> float:
        """0 when the request may go ahead, else the seconds until it could."""
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._forget_full(now)
            bucket = self._buckets[client] = Bucket(self.burst, now)
        # A wall clock set back (the server's clock is the settings' one) refills nothing.
        bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        self.refused += 1
        return (1 - bucket.tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: they hold nothing a new bucket would not."""
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]


class RateLimiter:
    def __init__(self, per_key_rate: float, per_key_burst: float, address_factor: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = per_key_rate > 0
        self.keys = TokenBuckets(per_key_rate, per_key_burst, clock)
        self.addresses = TokenBuckets(per_key_rate * address_factor, per_key_burst * address_factor, clock)

    def check(self, request: web.Request) -> None:
        if not self.enabled:
            return
        header = request.headers.get("Authorization")
        # The key's own bucket first: a request it refuses is not charged to the address, or
        # one flooding kiosk would drain the bucket its substation's other kiosks share (seen:
        # 8 loops on one key got 60 of 76 polite requests from other keys refused).
        wait = self.keys.take(key_bucket(header)) if header else 0.0
        if wait == 0:
            wait = self.addresses.take(request.remote or "unknown")
        if wait > 0:
            raise ApiError(429, "rate_limited",
                           f"Too many requests from this client; retry in {wait:.1f} s.",
                           {"Retry-After": str(max(1, math.ceil(wait)))}, retry_after_s=round(wait, 2))

    @property
    def refused(self) -> int:
        return self.keys.refused + self.addresses.refused


def key_bucket(header: str) -> str:
    """The bucket of an Authorization header: its key's digest however the header
    spells 'Bearer'; a header that is no Bearer key at all (refused anyway) by its own digest."""
    key = bearer_key(header)
    if key is not None:
        return "key:" + _digest(key)
    return "raw:" + _digest(header)


def _digest(text: str) -> str:
    # surrogatepass: aiohttp hands undecodable header bytes over as lone surrogates.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def rate_limit_middleware(limiter: RateLimiter):
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in ("/healthz", "/readyz"):   # health checks are never limited
            limiter.check(request)
        return await handler(request)

    return middleware
