"""Edges an outside probe found, kept closed (issue 21), each against a real server on loopback:
a trusted load balancer in front (or not), dates out of any range, control characters and
oversized headers reaching the logs, phone links and substation objects in the logs, and the
hall QR code's host.

Names come from the scenario (the lakeside one here), never from the built-in one.
"""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.http_exceptions import LineTooLong
from yarl import URL

from counter_server.api.forwarded import client_address, trusted_networks
from counter_server.app import create_app
from counter_server.appkeys import SETTINGS, TOKENS
from counter_server.config import Scenario, Settings, load_scenario
from counter_server.ops import logs
from counter_server.ops.logs import JsonFormatter, MalformedRequests
from counter_server.phone.pages import qr_svg
from testkit.api import Clock, bearer
from testkit.processes import ServerProcess
from testkit.scenarios import LAKESIDE, paid_service

LAKE = load_scenario(LAKESIDE)
# The nginx of docs/replicas.md sets `X-Forwarded-For $proxy_add_x_forwarded_for`: what came in, then the
# address nginx saw. Behind a carrier's proxy that is two entries: the carrier's client's (as
# the carrier wrote it) and the carrier's proxy.
CARRIER_PROXY = "198.51.100.20"


def person(n: int) -> dict[str, str]:
    return {"account": f"KAN-{n:08d}", "phone": f"98{n:08d}"}   # known to the simulated billing


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


# -- 7: every date a client sends is range-checked: a 422 naming the field, never a 500 ----------

@pytest.fixture
def settings(tmp_path: Path, clock: Clock) -> Settings:
    """The ``api`` fixture's server runs the lakeside scenario."""
    return Settings(data_dir=tmp_path / "data", scenario=LAKE, clock=clock, rate_limit_per_s=0)


# Year 10000 and year 0 in UTC (what made the 500), and the edges of the century allowed.
OUT_OF_RANGE = ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00",
                "1999-12-31T23:59:59+00:00", "2100-01-01T00:00:00+00:00"]


def counter_serving(scenario: Scenario, service: str) -> str:
    return next(c.id for s in scenario.substations.values() for c in s.counters if service in c.services)


async def test_an_offline_token_of_any_year_is_refused_naming_issued_at(api):
    service = paid_service(LAKE)
    counter = counter_serving(LAKE, service)
    key = await api.cashier(counter)
    status, lease = await api.post(f"/api/v1/counters/{counter}/leases", key, json={"service": service, "size": 2})
    assert status == 201, lease
    lease_id, numbers = lease["lease"]["id"], lease["lease"]["numbers"]
    for moment in OUT_OF_RANGE:
        status, body = await api.post(f"/api/v1/counters/{counter}/offline-tokens", key,
                                      json={"lease_id": lease_id, "number": numbers[0], "issued_at": moment})
        assert (status, body["error"]["field"]) == (422, "issued_at"), (moment, body)
        assert "2000-01-01" in body["error"]["message"]
    now = datetime.fromtimestamp(api.client.app[SETTINGS].clock(), LAKE.timezone).isoformat()
    status, body = await api.post(f"/api/v1/counters/{counter}/offline-tokens", key,
                                  json={"lease_id": lease_id, "number": numbers[0], "issued_at": now})
    assert status == 201, body


async def test_a_booking_of_any_year_is_refused_naming_slot_at(api):
    service = paid_service(LAKE)
    hall = hall_offering(LAKE, service)
    for n, moment in enumerate(OUT_OF_RANGE):
        status, body = await api.post(f"/api/v1/public/substations/{hall}/bookings", key=None,
                                      json={"service": service, "slot_at": moment, **person(n)})
        assert (status, body["error"]["field"]) == (422, "slot_at"), (moment, body)


async def test_report_days_and_months_out_of_range_are_refused_naming_the_field(api):
    for day in ("9999-12-31", "0001-01-01", "1999-12-31", "2100-01-01"):
        status, body = await api.get(f"/api/v1/reports/daily?date={day}")
        assert (status, body["error"]["field"]) == (422, "date"), (day, body)
    for month in ("9999-12", "0001-01", "1999-12", "2100-01"):
        status, body = await api.get(f"/api/v1/reports/monthly?month={month}")
        assert (status, body["error"]["field"]) == (422, "month"), (month, body)
    today = api.client.app[TOKENS].today()
    assert (await api.get(f"/api/v1/reports/daily?date={today}"))[0] == 200
    assert (await api.get(f"/api/v1/reports/monthly?month={today[:7]}"))[0] == 200


async def test_a_slot_plan_for_a_day_out_of_range_is_refused_naming_the_day(api):
    hall = hall_offering(LAKE, paid_service(LAKE))
    for day in ("9999-12-31", "0001-01-01"):
        status, body = await api.request("PUT", f"/api/v1/ops/substations/{hall}/slots/{day}", api.admin, json={})
        assert (status, body["error"]["field"]) == (422, "day"), (day, body)


# -- 9 and 11: what reaches the logs ------------------------------------------------------------

FORGED = "12:00:00 WARNING counter_server.app: forged"


@pytest.fixture
def logged_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server process as run in a terminal: text logs, the access log on, behind a proxy."""
    server = ServerProcess(data_dir=tmp_path / "data", config=LAKESIDE, extra_args=[
        "--rate-limit", "0", "--access-log", "--log-format", "text", "--trusted-proxy", "127.0.0.1"])
    server.start()
    yield server
    server.stop()


def raw_request(port: int, head: bytes) -> bytes:
    """One request written by hand (what no client library sends), and the answer's first line."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        return sock.recv(200).split(b"\r\n", 1)[0]


async def test_a_client_cannot_write_log_lines_or_floods_of_tracebacks(logged_server: ServerProcess):
    server = logged_server
    forged_path = "%0A" + FORGED.replace(" ", "%20")
    hall = hall_offering(LAKE, paid_service(LAKE))
    async with aiohttp.ClientSession(server.url) as session:
        async with session.get("/healthz") as resp:          # no X-Forwarded-For behind the proxy
            assert resp.status == 200
        for method, path, headers, body in (
                ("GET", f"/nothing{forged_path}", {}, None),
                ("POST", f"/api/v1/tokens/zz{forged_path}/cancel", bearer(server.admin_key), None),
                ("POST", f"/api/v1/public/tokens/zz{forged_path}/cancel", {}, None),
                ("POST", f"/api/v1/substations/{hall}{forged_path}/tokens", bearer(server.admin_key),
                 {"service": paid_service(LAKE)})):
            async with session.request(method, URL(path, encoded=True), headers=headers, json=body) as resp:
                assert resp.status == 404, (path, await resp.text())
        # A phone takes a token and cancels it: its link is its secret.
        async with session.post(f"/api/v1/public/substations/{hall}/tokens",
                                json={"service": paid_service(LAKE), **person(1)}) as resp:
            assert resp.status == 201, await resp.text()
            link = (await resp.json())["token"]["link"]
        async with session.post(f"/api/v1/public/tokens/{link}/cancel") as resp:
            assert resp.status == 200
    # Line ends the HTTP parser lets through in a header the access log quotes: NEL (U+0085,
    # a line end to Python's splitlines) and U+2028.
    assert raw_request(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: probe\xc2\x85"
                       + FORGED.encode() + b"\xe2\x80\xa8" + FORGED.encode()
                       + b"\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")
    # Oversized headers, keyless, twenty times: aiohttp logged an 800-byte traceback for each.
    for _ in range(20):
        assert raw_request(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000
                           + b"\r\n\r\n").endswith(b" 400 Bad Request")
    async with aiohttp.ClientSession(server.url) as session:
        async with session.get("/healthz?last=one") as resp:
            assert resp.status == 200
    log = server.log_once("/healthz?last=one")
    lines = log.split("\n")
    assert not [line for line in lines if FORGED in line and not line[:8].count(":") == 2], lines
    assert not any(line.startswith(FORGED) for line in lines)
    assert "\\n" + FORGED in log                                   # written escaped, in its own line
    assert not {"\x85", "\u2028"} & set(log) and f"probe\\x85{FORGED}\\u2028{FORGED}" in log
    # Phones: neither the link nor the token id it holds, and the substation by its id alone.
    assert link not in log and link.rpartition(".")[0] not in log
    assert "{'id'" not in log and f"substation={hall} " in log
    # One short line for the malformed requests of this minute, no traceback.
    malformed = [line for line in lines if "malformed request" in line]
    assert len(malformed) == 1 and "LineTooLong" in malformed[0], malformed
    assert "Traceback" not in log and len(malformed[0]) < 300


def record_of_a_bad_request(client: str) -> logging.LogRecord:
    exc = LineTooLong("X-Big: aaaa", "8190")
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s",
                             (client,), (type(exc), exc, None))


def test_malformed_requests_are_logged_once_per_client_a_minute():
    clock = Clock(0.0)
    keep = MalformedRequests(every_s=60.0, clock=clock)
    assert keep.filter(record_of_a_bad_request("192.0.2.1"))
    assert keep.filter(record_of_a_bad_request("192.0.2.2"))      # another client: its own line
    clock.now = 30.0
    assert not keep.filter(record_of_a_bad_request("192.0.2.1"))
    assert not keep.filter(record_of_a_bad_request("192.0.2.1"))
    clock.now = 61.0
    record = record_of_a_bad_request("192.0.2.1")
    assert keep.filter(record)
    assert record.exc_info is None and record.levelname == "WARNING"
    assert record.getMessage().startswith("refused a malformed request from 192.0.2.1 (LineTooLong")
    assert "2 more from it in the last 60 s not logged" in record.getMessage()
    other = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Unhandled exception", (), None)
    assert keep.filter(other)                                        # anything else passes as it is


@pytest.mark.parametrize("message", ["path /x\u2028%s\x85\x7f", "ascii only /x%s\x7f"])
def test_json_logs_escape_what_json_leaves_raw(message):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.http_edges")
    logger.addHandler(handler)
    try:
        logger.warning(message, FORGED, extra={"token_id": "a\nb"})
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert line.count("\n") == 1 and not set("\u2028\x85\x7f") & set(line)
    assert json.loads(line)["msg"] == message % FORGED


@pytest.mark.parametrize("created", [0.0, 1764765750.0, 1764765750.0004994, 1764765750.9995,
                                     1764765750.9999996, 1764765751.123456, 1793219781.1399994, 1796083199.999])
def test_json_log_time_is_isoformat_to_the_millisecond(created):
    record = logging.LogRecord("tests", logging.INFO, __file__, 1, "m", (), None)
    record.created = created
    formatter = JsonFormatter()
    formatter.format(logging.LogRecord("tests", logging.INFO, __file__, 1, "m", (), None))  # another second kept
    expected = datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds")
    assert json.loads(formatter.format(record))["ts"] == expected



@pytest.mark.parametrize("text", [
    "plain line, nothing secret", "Authorization: Bearer abc123", "AUTHORIZATION=xyz", "x authorization':'k",
    "key ccq_abcd1234 left", "CcQ_ABCD1234", "GET /q/t/t_1.mac HTTP/1.1", "GET /api/v1/public/tokens/t_1.mac/cancel",
    "GET /API/V1/PUBLIC/TOKENS/t_1.mac", "नाम authorization: Bearer abc", "authorızation: Bearer abc",
    "AUTHORİZATION: Bearer abc", "ccq_ab", '{"msg": "Authorization\\u003a Bearer z"}', "ccq_abcd\u2028ccq_efgh1234"])
def test_a_log_line_is_redacted_as_the_patterns_redact_it(text: str):
    """The quick look for the words never lets through what the patterns would replace."""
    by_patterns = logs._SECRETS.sub(lambda m: (m.group(1) or m.group(2)) + "[redacted]",
                                    logs._PHONE_LINKS.sub(r"\1[redacted]", text))
    assert logs.redact(text) == by_patterns
    assert (by_patterns != text) == ("[redacted]" in logs.redact(text))

# -- 10: the hall QR code sends consumers only to an address the server can vouch for ---------

async def test_the_hall_qr_code_ignores_a_made_up_host_and_is_not_shared(aiohttp_client, settings):
    client = await aiohttp_client(create_app(replace(settings, write_admin_key=False)))
    hall = hall_offering(LAKE, paid_service(LAKE))
    port = client.server.port
    own = f"http://127.0.0.1:{port}/q/{hall}"
    for host, opens in (("evil.example", own), (f"evil.example:{port}", own), (f"127.0.0.1:{port + 1}", own),
                        (f"[::1]:{port}", own), (f"127.0.0.1:{port}", own),
                        (f"localhost:{port}", f"http://localhost:{port}/q/{hall}")):
        async with client.get(f"/q/{hall}/qr.svg", headers={"Host": host}) as resp:
            assert resp.status == 200 and resp.content_type == "image/svg+xml"
            assert await resp.read() == qr_svg(opens), (host, opens)
            # It depends on the address the request came in on: no shared cache keeps it.
            assert resp.headers["Cache-Control"] == "private, max-age=3600" and resp.headers["Vary"] == "Host"


async def test_a_configured_public_address_is_what_the_qr_code_opens(aiohttp_client, settings):
    public = replace(LAKE, phones=replace(LAKE.phones, public_url="https://counters.example.org"))
    client = await aiohttp_client(create_app(replace(settings, scenario=public, write_admin_key=False)))
    hall = hall_offering(LAKE, paid_service(LAKE))
    async with client.get(f"/q/{hall}/qr.svg", headers={"Host": "evil.example"}) as resp:
        assert await resp.read() == qr_svg(f"https://counters.example.org/q/{hall}")
        assert resp.headers["Cache-Control"] == "max-age=3600" and "Vary" not in resp.headers
