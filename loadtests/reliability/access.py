"""Access: no terminal acts beyond its role, keys are refused when bad and never echoed.

A matrix of requests, each with the status it must get, against a real server: a cashier key
at another counter or substation, a board key writing, revoked, malformed and query-string keys;
then the store file and the server's log are searched for any plain key, security headers are
read off the pages, and the ops controls are tried as a cross-site form would.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import aiohttp

from testkit.figures import progress
from testkit.processes import ServerProcess, run_cli

from .common import Matrix, PartTally, Places, make_keys, write_scenario
from .edges import probe_edges
from .role_probe import probe_own_server, probe_roles

PROBE_ACCOUNT, PROBE_PHONE = "KAN-20431877", "9876543210"
PAGE_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy")


async def run(workdir: Path, tally: PartTally, scenario: Path | None = None) -> None:
    """The matrix against a server running ``scenario`` (a file; None: the built-in one)."""
    part = "access"
    config = write_scenario(workdir / "access.toml", base=scenario)
    at = Places.load(config)
    hall, other_hall, service = at.hall, at.other_hall, at.service
    mine, neighbour, spare = at.counters[:3]      # the cashier key's counter, a neighbour's, one keyed later
    server = ServerProcess(data_dir=workdir / "access-data", config=config,
                           extra_args=["--rate-limit", "0", "--access-log"])
    server.start()
    try:
        admin = server.admin_key
        c1, c2, other_sub, board = await make_keys(
            server.data_dir, [("cashier", mine), ("cashier", neighbour), ("cashier", at.other_counter),
                              ("board", None)], config)
        secrets = [admin, c1, c2, other_sub, board]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            m = Matrix(session, server.url, secrets, tally)
            # Tokens to act on: one called to the neighbour's counter, one waiting in the hall,
            # one in the other hall.
            body = {"service": service}
            (_, issued) = await m.expect(f"admin issues at {hall}", (201,), "POST",
                                         f"/api/v1/substations/{hall}/tokens", admin, json=body)
            await m.expect(f"admin issues at {hall}", (201,), "POST", f"/api/v1/substations/{hall}/tokens", admin,
                           json=body)
            (_, elsewhere) = await m.expect(f"admin issues at {other_hall}", (201,), "POST",
                                            f"/api/v1/substations/{other_hall}/tokens", admin, json=body)
            (_, called) = await m.expect(f"{neighbour} calls its next", (200,), "POST",
                                         f"/api/v1/counters/{neighbour}/next", c2)
            theirs = called["token"]["id"]
            (_, paid) = await m.expect(f"{neighbour} takes a payment", (202,), "POST", "/api/v1/payments", c2,
                                       json={"token_id": theirs, "account": "2140012345", "amount_paise": 100})
            elsewhere_id = elsewhere["token"]["id"]

            # A cashier key acting for another counter or substation: 403.
            for label, method, path, kw in (
                ("next at another counter", "POST", f"/api/v1/counters/{neighbour}/next", {}),
                ("open another counter", "POST", f"/api/v1/counters/{neighbour}/open", {}),
                ("close a counter at another substation", "POST", f"/api/v1/counters/{at.other_counter}/close", {}),
                ("lease numbers for another counter", "POST", f"/api/v1/counters/{neighbour}/leases",
                 {"json": body}),
                ("offline token for another counter", "POST", f"/api/v1/counters/{neighbour}/offline-tokens",
                 {"json": {"lease_id": "l_x", "number": f"{at.letter}-900", "issued_at": "2025-11-25T10:00:00+05:30"}}),
                ("issue at another substation", "POST", f"/api/v1/substations/{other_hall}/tokens", {"json": body}),
                ("start another counter's token", "POST", f"/api/v1/tokens/{theirs}/start", {}),
                ("complete another counter's token", "POST", f"/api/v1/tokens/{theirs}/complete", {}),
                ("cancel another counter's token", "POST", f"/api/v1/tokens/{theirs}/cancel", {}),
                ("transfer another counter's token to itself", "POST", f"/api/v1/tokens/{theirs}/transfer",
                 {"json": {"counter": mine}}),
                ("cancel a token at another substation", "POST", f"/api/v1/tokens/{elsewhere_id}/cancel", {}),
                ("take a payment for another counter's token", "POST", "/api/v1/payments",
                 {"json": {"token_id": theirs, "account": "2140012345", "amount_paise": 100}}),
                ("read another counter's payment", "GET", f"/api/v1/payments/{paid['payment']['id']}", {}),
                ("pause billing", "POST", "/api/v1/ops/billing/pause", {}),
                ("read the billing gateway", "GET", "/api/v1/ops/billing", {}),
                ("switch admission", "PUT", f"/api/v1/ops/substations/{hall}/admission",
                 {"json": {"admission": False}}),
                ("read reports", "GET", "/api/v1/reports/daily", {}),
                ("open the ops live ticket", "POST", "/api/v1/ops/live-ticket", {}),
            ):
                await m.expect(f"cashier {mine}: {label}", (403,), method, path, c1, **kw)
            await m.expect(f"cashier {at.other_counter}: next at {mine}", (403,), "POST",
                           f"/api/v1/counters/{mine}/next", other_sub)

            # A board key writing: 403 everywhere.
            for label, method, path, kw in (
                ("issue", "POST", f"/api/v1/substations/{hall}/tokens", {"json": body}),
                ("call next", "POST", f"/api/v1/counters/{mine}/next", {}),
                ("start", "POST", f"/api/v1/tokens/{theirs}/start", {}),
                ("cancel", "POST", f"/api/v1/tokens/{issued['token']['id']}/cancel", {}),
                ("pay", "POST", "/api/v1/payments", {"json": {"token_id": theirs, "account": "2140012345", "amount_paise": 1}}),
                ("open a counter", "POST", f"/api/v1/counters/{mine}/open", {}),
                ("lease", "POST", f"/api/v1/counters/{mine}/leases", {"json": body}),
                ("pause billing", "POST", "/api/v1/ops/billing/pause", {}),
                ("switch admission", "PUT", f"/api/v1/ops/substations/{hall}/admission",
                 {"json": {"admission": False}}),
                ("look up a bill", "GET", "/api/v1/bills/2140012345", {}),
                ("read a payment", "GET", f"/api/v1/payments/{paid['payment']['id']}", {}),
            ):
                await m.expect(f"board key: {label}", (403,), method, path, board, **kw)
            (_, seen) = await m.expect("board key reads a queue", (200,), "GET", f"/api/v1/substations/{hall}/queue",
                                       board)

            # Holes an outside probe found, kept closed. Token ids a board key reads open
            # nothing on the public (phone) routes: they want the phone's link.
            probe_before = m.checks
            (_, remote) = await m.expect("probe: a phone takes a token", (201,), "POST",
                                         f"/api/v1/public/substations/{hall}/tokens",
                                         json={"service": service, "account": PROBE_ACCOUNT,
                                               "phone": PROBE_PHONE})
            seen_ids = [t["id"] for t in (seen or {}).get("tokens", [])]
            bare = (remote or {}).get("token", {}).get("link", "").rpartition(".")[0]
            for token_id in [*seen_ids, bare]:
                await m.expect(f"probe: public cancel by a token id read with a board key ({token_id[:6]}…)",
                               (404,), "POST", f"/api/v1/public/tokens/{token_id}/cancel")
                await m.expect(f"probe: public view by a bare token id ({token_id[:6]}…)", (404,), "GET",
                               f"/api/v1/public/tokens/{token_id}")
            probe_cases = m.checks - probe_before

            # Malformed and unknown keys, and keys in the query string: 401, never echoed.
            for label, header in (("no scheme", c1), ("Basic", f"Basic {c1}"), ("empty Bearer", "Bearer "),
                                  ("unknown key", "Bearer ccq_" + "A" * 43), ("key with a space", f"Bearer {c1} x"),
                                  ("truncated key", f"Bearer {c1[:-3]}"), ("key plus one", f"Bearer {c1}x"),
                                  ("huge key", "Bearer " + c1 * 20), ("lower-case bearer", f"bearer {c1[:-1]}")):
                await m.expect(f"malformed key: {label}", (401,), "GET", "/api/v1/substations",
                               headers={"Authorization": header})
            for name in ("key", "api_key", "access_token", "token", "authorization"):
                await m.expect(f"key in the query string ?{name}=", (401,), "GET",
                               f"/api/v1/substations?{name}={admin}")
                await m.expect(f"key in the query string of a write ?{name}=", (401,), "POST",
                               f"/api/v1/substations/{hall}/tokens?{name}={c1}", json=body)

            # `keys revoke` works at once, against the running server.
            fresh = run_cli("keys", "create", "--role", "cashier", "--counter", spare, "--data-dir",
                            str(server.data_dir), "--config", str(config), check=False).stdout.strip()
            secrets.append(fresh)
            (_, me) = await m.expect("new key works", (200,), "GET", "/api/v1/me", fresh)
            started = time.monotonic()
            revoked = run_cli("keys", "revoke", me["key"], "--data-dir", str(server.data_dir), "--config", str(config),
                              check=False)
            await m.expect("revoked key refused at once", (401,), "GET", "/api/v1/me", fresh)
            await m.expect("revoked key may not write", (401,), "POST", f"/api/v1/counters/{spare}/next", fresh)
            revoke_s = time.monotonic() - started
            if revoked.returncode != 0:
                tally.problem(f"access: keys revoke failed: {revoked.stderr}")

            # CSRF: ops controls take the key from the Authorization header only, never a cookie,
            # so a cross-site form (no header can be set) gets 401; no page sets a cookie; no
            # CORS grant lets another origin's script send the header.
            evil = {"Origin": "https://evil.example", "Content-Type": "application/x-www-form-urlencoded",
                    "Cookie": f"key={admin}; session={admin}"}
            for path in ("/api/v1/ops/billing/pause", "/api/v1/ops/live-ticket", f"/api/v1/counters/{mine}/close"):
                await m.expect(f"cross-site form POST {path}", (401,), "POST", path, headers=evil, data="a=1")
            async with session.options(server.url + "/api/v1/ops/billing/pause", headers={
                    "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization"}) as resp:
                m.checks += 1
                if "Access-Control-Allow-Origin" in resp.headers:
                    m.failed += 1
                    tally.problem("access: a CORS preflight from another origin is granted")

            # Security headers on every page.
            pages = (f"/board/{hall}", "/ops", "/static/board/board.js", "/static/ops/ops.js")
            missing = 0
            for page in pages:
                async with session.get(server.url + page) as resp:
                    m.checks += 1
                    absent = [h for h in PAGE_HEADERS if h not in resp.headers]
                    if resp.status != 200 or absent or "Set-Cookie" in resp.headers:
                        missing += 1
                        m.failed += 1
                        tally.problem(f"access: page {page}: status {resp.status}, missing {absent}, "
                                        f"cookie {resp.headers.get('Set-Cookie')}")

            # The probe's edge cases: dates out of range, log lines, oversized headers, links in the log.
            probe_cases += await probe_edges(m, server, at, c1, admin,
                                             (remote or {}).get("token", {}).get("link", ""))
            # And its role cases: the ops channel, Origin, revoked sockets, CSP, the simulator;
            # the rate limit's spellings and the billing password on a server of their own.
            roles = await probe_roles(m, server, config, c1, admin, hall)
            own = await probe_own_server(m, workdir, config)
            probe_cases += roles.cases + own.cases
        server.stop()

        # At rest: only SHA-256 digests; no plain key in the SQLite file, its WAL or the log.
        stored = b"".join(p.read_bytes() for p in server.data_dir.glob("counter.db*"))
        at_rest = sum(s.encode() in stored for s in secrets)
        hashed = sum(hashlib.sha256(s.encode()).hexdigest().encode() in stored for s in secrets)
        log = server.log_path.read_text(errors="replace") if server.log_path else ""
        in_log = sum(s in log for s in secrets)
        for text, n in (("plain keys in the store file", at_rest), ("plain keys in the server log", in_log)):
            if n:
                tally.problem(f"access: {n} {text}")
        if hashed != len(secrets):
            tally.problem(f"access: only {hashed} of {len(secrets)} keys found as SHA-256 digests at rest")

        # At rest, the probe's phone: neither its number nor its account in clear, nor under the
        # old unkeyed SHA-256 digest (a copied counter.db gave 10-digit phones back by brute
        # force); the data dir 0700 and its files 0600.
        privacy = holders_at_rest(server.data_dir, stored, PROBE_ACCOUNT, PROBE_PHONE)
        m.checks += len(privacy)
        probe_cases += len(privacy)
        for problem in filter(None, privacy):
            m.failed += 1
            tally.problem(f"access: at rest: {problem}")
        progress(f"  access: {m.checks} checks ({probe_cases} from the outside probe), {m.failed} failed, "
                 f"{m.echoed} echoed a key; revoke took "
                 f"{revoke_s:.2f} s, its socket closed {roles.revoked_socket_closed_s or -1:.2f} s after; "
                 f"keys at rest {at_rest}, in log {in_log}")
        tally.figure(part, "access checks (roles, keys, CSRF, headers)", m.checks)
        tally.figure(part, "of which the outside probe's cases", probe_cases)
        tally.figure(part, "checks failed", m.failed, target="0", met=m.failed == 0)
        tally.figure(part, "answers echoing a key", m.echoed, target="0", met=m.echoed == 0)
        tally.figure(part, "plain keys in store file or log", at_rest + in_log, target="0",
                       met=at_rest + in_log == 0)
        tally.figure(part, "keys revoke (CLI run) to first refusal", revoke_s, "s", target="at once (< 5 s)", met=revoke_s < 5)
        closed_s = roles.revoked_socket_closed_s
        tally.figure(part, "key revoked in the store to its live socket closed",
                       closed_s if closed_s is not None else -1, "s", target="< 1 s",
                       met=closed_s is not None and closed_s < 1)
        tally.figure(part, f"one key, 4 spellings of Bearer: let through of {own.spellings_tried}",
                       own.spellings_let_through if own.spellings_let_through is not None else -1,
                       target="<= 12 (burst 10)", met=own.spellings_let_through is not None
                       and own.spellings_let_through <= 12)
    finally:
        server.stop()


def holders_at_rest(data_dir: Path, stored: bytes, account: str, phone: str) -> list[str | None]:
    """One entry per check: None when it held, else what was found. ``stored`` is the bytes of
    counter.db and its -wal and -shm files."""
    canonical = "".join(ch for ch in account.upper() if ch.isalnum())
    found: list[str | None] = []
    for label, needle in (("the phone number in clear", phone), ("the account number in clear", account),
                          ("the account number in clear", canonical),
                          ("the phone's unkeyed SHA-256 digest", hashlib.sha256(f"phone:{phone}".encode()).hexdigest()[:24]),
                          ("the account's unkeyed SHA-256 digest",
                           hashlib.sha256(f"account:{account.upper()}".encode()).hexdigest()[:24])):
        found.append(f"{label} is in the store files" if needle.encode() in stored else None)
    want = {data_dir: 0o700, **{data_dir / name: 0o600 for name in (
        "counter.db", "counter.db-wal", "counter.db-shm", "server.secret", "admin.key")}}
    for path, mode in want.items():
        if path.exists():
            actual = path.stat().st_mode & 0o777
            found.append(f"{path.name} is mode {actual:o}, want {mode:o}" if actual != mode else None)
    return found
