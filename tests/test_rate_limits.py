"""One kiosk flooding the server is limited; the others carry on."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from counter_server.api.ratelimit import TokenBuckets
from counter_server.app import create_app
from counter_server.appkeys import KEYS, RATE_LIMITER

from testkit.api import Api, Clock


def test_token_bucket_refills_at_its_rate():
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=3.0, clock=lambda: now[0])
    assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k") == 0.5                     # one token takes half a second to refill
    now[0] += 0.5
    assert buckets.take("k") == 0.0 and buckets.take("other") == 0.0
    assert buckets.refused == 1


async def test_a_flooding_kiosk_gets_429_with_retry_after_and_others_are_unaffected(aiohttp_client, settings):
    client = await aiohttp_client(create_app(replace(settings, write_admin_key=False,
                                                     rate_limit_per_s=5, rate_limit_burst=10)))
    api = Api(client=client)
    api.admin, _ = await client.app[KEYS].create("admin")
    flooder = await api.cashier("S01-C1")
    neighbour = await api.cashier("S01-C2")

    flood = await asyncio.gather(*[api.get("/api/v1/substations/S01/queue", flooder) for _ in range(40)])
    codes = [status for status, _ in flood]
    assert codes.count(200) >= 10 and codes.count(429) >= 20
    limited = next(body for status, body in flood if status == 429)
    assert limited["error"]["code"] == "rate_limited" and limited["error"]["retry_after_s"] > 0
    async with client.get("/api/v1/substations/S01/queue",
                          headers={"Authorization": f"Bearer {flooder}"}) as resp:
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1

    for _ in range(10):                                  # the neighbour's own bucket is full
        status, _ = await api.get("/api/v1/substations/S01/queue", neighbour)
        assert status == 200
    assert client.app[RATE_LIMITER].refused >= 21


async def test_the_limit_refills_on_the_servers_own_clock(aiohttp_client, settings, clock: Clock):
    """The buckets read the settings' clock: moving it refills them, with no waiting."""
    client = await aiohttp_client(create_app(replace(settings, write_admin_key=False,
                                                     rate_limit_per_s=2, rate_limit_burst=2)))
    api = Api(client=client)
    api.admin, _ = await client.app[KEYS].create("admin")
    statuses = [(await api.get("/api/v1/me"))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    clock.now += 0.5                                     # one token's refill at 2 a second
    assert [(await api.get("/api/v1/me"))[0] for _ in range(2)] == [200, 429]
