"""The outside probe's edge cases for the access part, kept closed: dates out of any range (a
500 once), a path that writes a log line of its own, oversized headers that logged a traceback
each, a phone's link (its secret) in the access log, and a hall QR code that followed a
made-up Host header into a shared cache.

The access part's server logs JSON (its stderr is a file), so the forged-line check here guards
that format; tests/test_http_edges.py checks the text format a terminal gets.
"""

from __future__ import annotations

import asyncio

from counter_server.phone.pages import qr_svg
from testkit.processes import ServerProcess

from .common import Matrix, Places

FORGED = "12:00:00 WARNING counter_server.app: forged"
OVERSIZED = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"


async def _first_line(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 5)).strip()
    finally:
        writer.close()


def _check(m: "Matrix", held: bool, problem: str) -> None:
    m.checks += 1
    if not held:
        m.failed += 1
        m.tally.problem(f"access: probe: {problem}")


async def probe_edges(m: "Matrix", server: ServerProcess, at: Places, cashier: str, admin: str,
                      phone_link: str) -> int:
    """The edge cases against ``server``, ``cashier`` keyed for the first counter of ``at``'s
    hall; returns how many checks they made."""
    before = m.checks
    counter, hall = at.counters[0], at.hall
    await m.expect("probe: offline token issued in year 10000 (UTC)", (422,), "POST",
                   f"/api/v1/counters/{counter}/offline-tokens", cashier,
                   json={"lease_id": "l_x", "number": f"{at.letter}-901", "issued_at": "9999-12-31T23:59:59-12:00"})
    await m.expect("probe: a booking in year 0 (UTC)", (422,), "POST", f"/api/v1/public/substations/{hall}/bookings",
                   json={"service": at.service, "account": "KAN-20431878", "phone": "9876543211",
                         "slot_at": "0001-01-01T00:00:00+14:00"})
    await m.expect("probe: a daily report for 9999-12-31", (422,), "GET", "/api/v1/reports/daily?date=9999-12-31",
                   admin)
    await m.expect("probe: a path with %0A and a forged log line", (404,), "POST",
                   f"/api/v1/tokens/zz%0A{FORGED.replace(' ', '%20')}/cancel", admin)
    async with m.session.get(f"{server.url}/q/{hall}/qr.svg", headers={"Host": "evil.example"}) as resp:
        qr, cache, vary = await resp.read(), resp.headers.get("Cache-Control", ""), resp.headers.get("Vary", "")
    own_address = qr == qr_svg(f"{server.url}/q/{hall}")
    _check(m, own_address and cache.startswith("private") and vary == "Host",
           f"the hall QR code with 'Host: evil.example': its own address {own_address}, "
           f"Cache-Control {cache!r}, Vary {vary!r}")
    answers = [await _first_line(server.port, OVERSIZED) for _ in range(5)]
    _check(m, all(a.endswith(b" 400 Bad Request") for a in answers), f"oversized headers answered {answers}")

    log = server.log_once("forged")      # the last request's line shows the log is written
    lines = log.split("\n")
    _check(m, not any(line.startswith(FORGED) for line in lines), "a path wrote a log line of its own")
    parse_errors = [line for line in lines if '"logger": "aiohttp.server"' in line]
    _check(m, len(parse_errors) <= 1 and not any('"exc"' in line for line in parse_errors),
           f"5 oversized headers logged {len(parse_errors)} lines, tracebacks: "
           f"{sum(1 for line in parse_errors if chr(34) + 'exc' + chr(34) in line)}")
    bare = phone_link.rpartition(".")[0]
    _check(m, bool(phone_link) and phone_link not in log and bare not in log,
           "a phone's link or its token id is in the server log")
    return m.checks - before
