"""Edges an outside probe found, kept closed (issue 21), each against a real server on loopback:
a trusted load balancer in front (or not), dates out of any range, control characters and
oversized headers reaching the logs, phone links and substation objects in the logs, and the
hall QR code's host.

Names come from the scenario (the lakeside one here), never from the built-in one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from counter_server.api.forwarded import client_address, trusted_networks
from counter_server.app import create_app
from counter_server.config import Scenario, Settings, load_scenario
from tests.conftest import LAKESIDE, Clock, paid_service

LAKE = load_scenario(LAKESIDE)
# The README's nginx sets `X-Forwarded-For $proxy_add_x_forwarded_for`: what came in, then the
# address nginx saw. Behind a carrier's proxy that is two entries: the carrier's client's (as
# the carrier wrote it) and the carrier's proxy.
CARRIER_PROXY = "198.51.100.20"


def person(n: int) -> dict[str, str]:
    return {"account": f"ACC-{n:08d}", "phone": f"98{n:08d}"}


def hall_offering(scenario: Scenario, service: str) -> str:
    return next(sid for sid, s in scenario.substations.items() if service in s.services)


def one_take_an_hour(scenario: Scenario) -> Scenario:
    """The phone page's per-address limit at 1 an hour: each take shows whose address it was."""
    return replace(scenario, phones=replace(scenario.phones, takes_per_hour_per_address=1))


@pytest.fixture
def lake(tmp_path: Path, clock: Clock) -> Settings:
    return Settings(data_dir=tmp_path / "data", scenario=one_take_an_hour(LAKE), clock=clock,
                    rate_limit_per_s=0, write_admin_key=False)


class Phone:
    """Takes tokens from a phone page through a test client, saying which address sent them."""

    def __init__(self, client: Any, scenario: Scenario) -> None:
        self.client = client
        self.service = paid_service(scenario)
        self.hall = hall_offering(scenario, self.service)
        self.n = 0

    async def take(self, headers: Any = ()) -> int:
        self.n += 1
        async with self.client.post(f"/api/v1/public/substations/{self.hall}/tokens", headers=headers,
                                    json={"service": self.service, **person(self.n)}) as resp:
            return resp.status


# -- 4: --trusted-proxy never refuses a request, and finds the client right to left --------------

async def test_behind_the_readme_nginx_nothing_is_refused_and_each_client_is_its_own(aiohttp_client, lake):
    client = await aiohttp_client(create_app(replace(lake, trusted_proxies=("127.0.0.1",))))
    phone = Phone(client, lake.scenario)
    # A health check and the ops page come without the header: the peer is the client.
    for path in ("/healthz", "/api/v1/public/substations", "/ops"):
        async with client.get(path) as resp:
            assert resp.status == 200, (path, await resp.text())
    # Two entries (a carrier's proxy added one): the right-most untrusted one is the client.
    assert await phone.take({"X-Forwarded-For": f"203.0.113.7, {CARRIER_PROXY}"}) == 201
    # Whatever the client writes on the left does not make it someone else...
    assert await phone.take({"X-Forwarded-For": f"10.1.1.1, {CARRIER_PROXY}"}) == 429
    assert await phone.take({"X-Forwarded-For": f"garbage, 10.2.2.2, {CARRIER_PROXY}"}) == 429
    # ...while another client is.
    assert await phone.take({"X-Forwarded-For": "198.51.100.21"}) == 201
    # Two headers read as one list; an entry that is not an address stops the walk at the proxy.
    assert await phone.take([("X-Forwarded-For", "10.3.3.3"), ("X-Forwarded-For", "198.51.100.22")]) == 201
    assert await phone.take({"X-Forwarded-For": "unknown"}) == 201            # 127.0.0.1's one
    assert await phone.take({"X-Forwarded-For": "not an address, either"}) == 429
    async with client.get("/healthz", headers={"X-Forwarded-For": "[2001:db8::1]:443, 192.0.2.1"}) as resp:
        assert resp.status == 200


async def test_a_trusted_carrier_proxy_is_walked_past(aiohttp_client, lake):
    client = await aiohttp_client(create_app(replace(lake, trusted_proxies=("127.0.0.1", "198.51.100.0/24"))))
    phone = Phone(client, lake.scenario)
    assert await phone.take({"X-Forwarded-For": f"203.0.113.7, {CARRIER_PROXY}"}) == 201
    assert await phone.take({"X-Forwarded-For": f"203.0.113.8, {CARRIER_PROXY}"}) == 201
    assert await phone.take({"X-Forwarded-For": f"203.0.113.7, {CARRIER_PROXY}"}) == 429
    # Every hop trusted: the left-most entry is the client.
    assert await phone.take({"X-Forwarded-For": "198.51.100.77, 198.51.100.78"}) == 201


async def test_a_proxy_that_is_not_in_front_changes_nothing(aiohttp_client, lake):
    client = await aiohttp_client(create_app(replace(lake, trusted_proxies=("10.0.0.1",))))
    phone = Phone(client, lake.scenario)
    async with client.get("/healthz") as resp:
        assert resp.status == 200
    assert await phone.take() == 201
    # The header of a client talking to the server directly is not believed.
    assert await phone.take({"X-Forwarded-For": "198.51.100.30"}) == 429


@pytest.mark.parametrize(("peer", "header", "client"), [
    ("127.0.0.1", [], "127.0.0.1"),
    ("127.0.0.1", ["203.0.113.7, 198.51.100.20"], "198.51.100.20"),
    ("192.0.2.9", ["203.0.113.7"], "192.0.2.9"),                        # peer not trusted
    ("127.0.0.1", ["203.0.113.7:5555"], "203.0.113.7"),
    ("127.0.0.1", ["[2001:db8::7]:443"], "2001:db8::7"),
    ("::ffff:127.0.0.1", ["2001:db8::8"], "2001:db8::8"),
    ("127.0.0.1", ["2001:db8::9, ::1"], "2001:db8::9"),                 # ::1 trusted too
    ("127.0.0.1", ["", " ,"], "127.0.0.1"),
])
def test_client_address_reads_right_to_left(peer, header, client):
    assert client_address(peer, header, trusted_networks(["127.0.0.1", "::1"])) == client


def test_a_trusted_proxy_that_is_no_address_is_said_at_start():
    with pytest.raises(ValueError, match="not an address"):
        trusted_networks(["nginx.local"])
