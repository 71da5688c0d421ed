"""The outside probe's role cases for the access part, kept closed: billing credentials that
reached every cashier on the ops channel, a revoked key's sockets that kept receiving, a rate
limit that four spellings of 'Bearer' got past, WebSockets from any site's pages, a CSP that let
a page connect anywhere, and a built-in billing simulator anyone could crash.

Most run against the access part's server; the rate limit and the billing password need a
server of their own (the part's server runs without a rate limit and simulates billing).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
import aiohttp

from counter_server.config import Settings, load_scenario
from counter_server.store import open_store
from testkit.processes import ServerProcess, free_port

from .common import Matrix, call, make_keys

EVIL = "https://evil.example"
PASSWORD = "probe-Billing-pw-7"
SPELLINGS = ("Bearer {}", "bearer {}", "BEARER {}", "Bearer  {}")
SPELLING_BURST = 10
CLOSE_KEY_REVOKED = 4003


@dataclass
class RoleProbe:
    """What the probe's role cases found, for the part's figures."""

    cases: int = 0
    revoked_socket_closed_s: float | None = None
    spellings_let_through: int | None = None
    spellings_tried: int = 0


def _check(m: "Matrix", held: bool, problem: str) -> None:
    m.checks += 1
    if not held:
        m.failed += 1
        m.tally.problem(f"access: probe: {problem}")


async def _handshake(session: aiohttp.ClientSession, url: str, **kw) -> int | None:
    """101 when the WebSocket opened (then closed again), the refusal's status, or None."""
    try:
        ws = await session.ws_connect(url, **kw)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None
    await ws.close()
    return 101


async def probe_roles(m: "Matrix", server: ServerProcess, config: Path, cashier: str, admin: str,
                      hall: str) -> RoleProbe:
    """Against the part's server: the ops channel's roles, Origin on every WebSocket, a
    revoked key's socket, CSP connect-src and the built-in billing simulator."""
    found = RoleProbe()
    before = m.checks
    session, url = m.session, server.url
    ws_url = url.replace("http", "ws", 1)

    status = await _handshake(session, f"{ws_url}/api/v1/live", headers={"Authorization": f"Bearer {cashier}"})
    _check(m, status == 403, f"a cashier key opened the ops channel ({status}, want 403)")

    hall_live = f"{ws_url}/api/v1/substations/{hall}/live"
    for origin, want in ((EVIL, 403), ("null", 403), (f"http://evil.example:{server.port}", 403),
                         (url, 101), (None, 101)):
        status = await _handshake(session, hall_live, origin=origin)
        _check(m, status == want, f"a hall's live channel from Origin {origin}: {status}, want {want}")
    answered = await m.expect("probe: admin gets an ops live ticket", (201,), "POST", "/api/v1/ops/live-ticket", admin)
    ticket = (answered[1] if answered and isinstance(answered[1], dict) else {}).get("ticket", "")
    status = await _handshake(session, f"{url}/ops/live?ticket={ticket}", origin=EVIL)
    _check(m, status == 403, f"the ops ticket opened the ops channel from {EVIL} ({status}, want 403)")
    status = await _handshake(session, f"{url}/ops/live?ticket={ticket}", origin=url)
    _check(m, status == 101, f"the ops ticket, refused from another site, then failed on the ops page ({status})")

    found.revoked_socket_closed_s = await _revoked_socket_closes(m, server, config)

    for page in (f"/board/{hall}", "/ops", "/q"):
        async with session.get(url + page) as resp:
            csp = resp.headers.get("Content-Security-Policy", "")
        connect = next((d.split()[1:] for d in csp.split(";") if d.strip().startswith("connect-src")), None)
        _check(m, connect == ["'self'"], f"page {page}: CSP connect-src is {connect}, want only 'self'")

    answered = await m.expect("probe: admin reads the billing gateway", (200,), "GET", "/api/v1/ops/billing", admin)
    billing = (answered[1] if answered and isinstance(answered[1], dict) else {}).get("billing", {})
    if billing.get("simulated"):
        sim = billing["billing_url"]
        for path in ("/admin/crash", "/admin/latency"):
            crashed = await call(session, "POST", sim + path, json={"extra_latency_ms": 9000})
            _check(m, crashed is not None and crashed[0] == 404,
                   f"the built-in billing simulator's {path} answered {crashed and crashed[0]}, want 404")
        stats = await call(session, "GET", sim + "/stats")
        _check(m, stats is not None and stats[1].get("up") is True and stats[1].get("crashes") == 0,
               f"the built-in billing simulator was broken from outside: {stats}")
    found.cases = m.checks - before
    return found


async def _revoke_in_store(data_dir: Path, config: Path, key_id: str) -> float:
    """Revoke as ``counter-server keys revoke`` does (a write to the store the running server
    reads, nothing sent to the server); the monotonic time the write was committed. Timed
    here rather than around the CLI, whose start-up and exit would blur the measure."""
    settings = Settings(data_dir=data_dir, scenario=load_scenario(config), write_admin_key=False)
    store = await open_store(settings)
    try:
        revoked = await store.revoke_key(key_id, time.time())
        assert revoked, f"no live key {key_id} to revoke"
        return time.monotonic()
    finally:
        await store.close()


async def _revoked_socket_closes(m: "Matrix", server: ServerProcess, config: Path) -> float | None:
    """A board key's ops socket, then the key revoked in the store while it is open: the
    seconds from the write until the server closed the socket (None: it never did)."""
    [key] = await make_keys(server.data_dir, [("board", None)], config)
    m.secrets.append(key)
    answered = await m.expect("probe: a fresh board key works", (200,), "GET", "/api/v1/me", key)
    key_id = (answered[1] if answered and isinstance(answered[1], dict) else {}).get("key", "")
    ws = await m.session.ws_connect(server.url.replace("http", "ws", 1) + "/api/v1/live",
                                    headers={"Authorization": f"Bearer {key}"})

    async def closed_at() -> float:
        async for _ in ws:          # reading answers the server's pings
            pass
        return time.monotonic()

    reader = asyncio.create_task(closed_at())
    try:
        revoked_at = await _revoke_in_store(server.data_dir, config, key_id)
        try:
            took = await asyncio.wait_for(asyncio.shield(reader), 5.0) - revoked_at
        except asyncio.TimeoutError:
            took = None
        _check(m, took is not None and took < 1.0 and ws.close_code == CLOSE_KEY_REVOKED,
               f"a revoked key's ops socket: closed after {took} s with code {ws.close_code}, "
               f"want < 1 s and {CLOSE_KEY_REVOKED}")
        return took
    finally:
        reader.cancel()
        await ws.close()


async def probe_own_server(m: "Matrix", workdir: Path, config: Path) -> RoleProbe:
    """A server of its own, rate-limited and with a billing URL that holds a password: four
    spellings of one key share one bucket, and the password is shown nowhere."""
    found = RoleProbe()
    before = m.checks
    dead_billing = f"http://probe:{PASSWORD}@127.0.0.1:{free_port()}"
    server = ServerProcess(data_dir=workdir / "access-probe-data", config=config,
                           extra_args=["--rate-limit", "1", "--rate-burst", str(SPELLING_BURST),
                                       "--billing-url", dead_billing])
    await asyncio.to_thread(server.start)
    try:
        admin = server.admin_key
        session = m.session
        through = 0
        found.spellings_tried = 4 * SPELLING_BURST
        for i in range(found.spellings_tried):
            header = SPELLINGS[i % len(SPELLINGS)].format(admin)
            answered = await call(session, "GET", server.url + "/api/v1/substations", headers={"Authorization": header})
            through += answered is not None and answered[0] == 200
        found.spellings_let_through = through
        _check(m, through <= SPELLING_BURST + 2,
               f"four spellings of 'Bearer' got {through} of {found.spellings_tried} past a burst of {SPELLING_BURST}")

        await asyncio.sleep(2.5)    # the bucket refills a little for the admin's own reads
        answered = await call(session, "GET", server.url + "/api/v1/ops/billing", admin)
        shown = json.dumps(answered[1]) if answered else ""
        _check(m, answered is not None and answered[0] == 200 and PASSWORD not in shown
               and ":***@" in shown, f"/api/v1/ops/billing with a password in the URL: {shown[:160]}")
        sent: list[str] = []      # everything the ops channel sends until its billing message
        billing_seen = False
        async with session.ws_connect(server.url + "/api/v1/live", headers={"Authorization": f"Bearer {admin}"}) as ws:
            deadline = time.monotonic() + 5
            while not billing_seen and time.monotonic() < deadline:
                msg = await ws.receive(timeout=5)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                sent.append(msg.data)
                billing_seen = json.loads(msg.data).get("type") == "billing"
        leaked = [text[:120] for text in sent if PASSWORD in text]
        _check(m, billing_seen and not leaked,
               f"the ops channel carries the billing URL's password: {leaked}" if leaked
               else "the ops channel sent no billing message within 5 s")
    finally:
        server.stop()
    found.cases = m.checks - before
    return found
