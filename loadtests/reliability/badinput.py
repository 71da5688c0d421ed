"""Bad input: schemathesis against the OpenAPI document, hypothesis on token moves and on
WebSocket frames, and a hand-made list of the nastiest bodies, headers and paths.

Every answer must be below 500, and every error must have the documented shape
``{"error": {"code": "snake_case", "message": "..."}}``; the server must still answer after.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from testkit.figures import progress

from .common import PartTally, Places, call, is_error_shape


@dataclass
class Verdicts:
    """Every answer to a bad input, judged."""

    sent: int = 0
    five_xx: int = 0
    bad_shape: int = 0
    parser_plain: int = 0       # refused by aiohttp's HTTP parser before any handler: plain text
    statuses: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def judge(self, what: str, status: int | None, body: Any, content_type: str = "application/json") -> None:
        self.sent += 1
        if status is None:
            self.five_xx += 1
            self._note(f"{what}: no answer (connection dropped)")
            return
        self.statuses[status // 100 * 100] += 1
        if status >= 500:
            self.five_xx += 1
            self._note(f"{what}: {status} {str(body)[:160]}")
        elif status == 400 and content_type.startswith("text/plain") and _parser_refusal(body):
            self.parser_plain += 1
        elif status >= 400 and not (content_type.startswith("application/json") and is_error_shape(body)):
            self.bad_shape += 1
            self._note(f"{what}: {status} error not in the documented shape: {str(body)[:160]}")

    def _note(self, text: str) -> None:
        if len(self.examples) < 40:
            self.examples.append(text)
            progress(f"  BAD: {text}")


PARSER_MESSAGES = ("Invalid header", "Got more than", "Too many headers", "Bad status line",
                   "Invalid method", "Bad Request", "Duplicate", "Unexpected", "Invalid")


def _parser_refusal(body: Any) -> bool:
    """aiohttp's own plain-text 400 for bytes that are not HTTP (bad header chars, oversized or
    too many headers): answered before routing, so no middleware can shape it."""
    return isinstance(body, str) and body.lstrip().startswith(PARSER_MESSAGES)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _content_type(headers: Any) -> str:
    value = headers.get("Content-Type") or headers.get("content-type") or ""
    return value[0] if isinstance(value, list) else value    # schemathesis: lists of values


# -- schemathesis against the OpenAPI document ----------------------------------------------

def schemathesis_run(url: str, keys: dict[str, str], examples: int, verdicts: Verdicts,
                     seed: int = 10) -> int:
    """About ``examples`` generated requests spread over every operation, positive and negative
    (data that breaks the schema), each sent once with each key in ``keys``; returns how many."""
    import schemathesis
    from schemathesis.generation.modes import GenerationMode

    schema = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json", timeout=10)
    operations = [r.ok() for r in schema.get_all_operations()]
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    per_op = max(1, examples // (len(operations) * len(modes) * len(keys)))
    session = requests.Session()
    before = verdicts.sent

    for operation in operations:
        for mode in modes:
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(max_examples=per_op, database=None, deadline=None, derandomize=True,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def send(case) -> None:
                for role, key in keys.items():
                    headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}
                    try:
                        response = case.call(base_url=url, session=session, headers=headers, timeout=10)
                    except requests.RequestException as exc:
                        verdicts.judge(f"{operation.label} [{mode.value}, {role}]", None, str(exc))
                        continue
                    verdicts.judge(f"{operation.label} [{mode.value}, {role}] "
                                   f"{case.method} {case.formatted_path}",
                                   response.status_code, _json_or_text(response.text),
                                   _content_type(response.headers))

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    send()
                except Unsatisfiable:
                    pass        # nothing in this operation can be made invalid (no parameters)
    session.close()
    return verdicts.sent - before


# -- schemathesis' own run: every phase, every check, the document held to its word ----------

SCHEMATHESIS_CONFIG = Path(__file__).resolve().parents[2] / "schemathesis.toml"
PHASES = "examples,coverage,fuzzing,stateful"


@dataclass
class ExactRun:
    """What ``schemathesis run --checks all`` made of the document: a failure is a request the
    document allows and the server refuses, one it forbids and the server takes, an answer
    the document does not describe, or a 5xx."""

    generated: int
    failures: list[str]
    errors: list[str]
    seconds: float
    complete: bool


def schemathesis_exact(url: str, admin_key: str, max_examples: int, max_time_s: float | None = None,
                       seed: int = 10) -> ExactRun:
    """The command docs/reliability.md gives, with an admin key, as a process of its own (its phases
    and checks are the CLI's; the repository's schemathesis.toml lets WebSockets answer 101)."""
    executable = Path(sys.executable).with_name("schemathesis")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="schemathesis-") as workdir:
        report = Path(workdir) / "report.json"
        command = [str(executable), "--config-file", str(SCHEMATHESIS_CONFIG), "--no-color", "run",
                   f"{url}/api/v1/openapi.json", "-H", f"Authorization: Bearer {admin_key}",
                   "--checks", "all", "--phases", PHASES, "--max-examples", str(max_examples),
                   "--seed", str(seed), "--workers", "1", "--report", "json",
                   "--report-json-path", str(report)]
        if max_time_s is not None:
            command += ["--max-time", str(max(1, int(max_time_s)))]
        done = subprocess.run(command, cwd=workdir, capture_output=True, text=True,
                              timeout=(max_time_s or 1800) * 3 + 120)
        if not report.exists():
            return ExactRun(0, [], [f"schemathesis wrote no report (exit {done.returncode}): "
                                    f"{(done.stderr or done.stdout)[-400:]}"], time.monotonic() - started, False)
        found = json.loads(report.read_text())
    failures = [_failure_line(f) for f in found.get("failures", [])]
    errors = [str(e)[:300] for e in found.get("errors", [])]
    return ExactRun(found["test_cases"]["generated"], failures, errors, time.monotonic() - started,
                    bool(found.get("complete")))


def _failure_line(failure: Any) -> str:
    """One failure in a line: which operation, which check, what came back."""
    if not isinstance(failure, dict):
        return str(failure)[:300]
    parts = [str(failure.get(k)) for k in ("operation", "code", "title", "status_code") if failure.get(k)]
    return " ".join(parts)[:300] if parts else json.dumps(failure)[:300]


def exact_figures(run: ExactRun, tally: PartTally, part: str = "bad input") -> None:
    tally.figure(part, f"schemathesis run ({PHASES}; all checks) test cases", run.generated, "cases")
    tally.figure(part, "schemathesis failures", len(run.failures), target="0", met=not run.failures)
    tally.figure(part, "schemathesis errors", len(run.errors), target="0", met=not run.errors)
    for line in run.failures + run.errors:
        tally.problem(f"schemathesis: {line}")


# -- a hand-made list: sizes, depths, types, encodings, numbers, unknowns -------------------

NO_HALL = "no-such-hall"     # a hall id the scenario has not (were it there, answers stay below 500 all the same)
WEIRD_NUMBERS = [0, -1, -(10**30), 10**30, 2**63, -(2**63) - 1, 1.5, 1e308, "1", True, None, [], {}]


def weird_text(at: Places) -> list[str]:
    """Strings no field should choke on, a near miss of a real number and hall among them."""
    return ["", " ", "\x00", "नमस्ते", "😀" * 50, "\u202eRTL", "a" * 10_000, "\ud800", "%00", "../../etc/passwd",
            "<script>alert(1)</script>", "' OR 1=1 --", f"{at.letter}-001\n", "\t", "null", "[]", "{}",
            f"{at.hall}\x00"]


def issue_path(at: Places) -> str:
    return f"/api/v1/substations/{at.hall}/tokens"


def body_fields(at: Places) -> dict[str, dict[str, Any]]:
    """Each route taking a JSON body, with a body it would take at ``at``'s hall and counters."""
    counter = at.counters[0]
    return {
        issue_path(at): {"service": at.service, "priority": "normal"},
        "/api/v1/payments": {"token_id": "t_x", "account": "2140012345", "amount_paise": 100, "mode": "cash"},
        f"/api/v1/counters/{counter}/leases": {"service": at.service, "size": 10},
        f"/api/v1/counters/{counter}/offline-tokens": {"lease_id": "l_x", "number": f"{at.letter}-001",
                                                       "priority": "normal", "issued_at": "2025-11-25T10:00:00+05:30"},
        "/api/v1/tokens/t_x/transfer": {"service": at.service, "counter": at.counters[1]},
    }


def handmade_cases(at: Places) -> Iterator[tuple[str, str, str, dict[str, str], bytes | None]]:
    """(label, method, path, headers, body) for every field, every weird value, and the rest."""
    js = {"Content-Type": "application/json"}
    fields_by_path = body_fields(at)
    hall, live = at.hall, f"/api/v1/substations/{at.hall}/live"
    for path, fields in fields_by_path.items():
        for name in fields:
            for value in [*weird_text(at), *WEIRD_NUMBERS]:
                body = {**fields, name: value}
                yield f"{path} {name}={str(value)[:20]!r}", "POST", path, js, json.dumps(body).encode()
        yield f"{path} unknown field", "POST", path, js, json.dumps({**fields, "extra": 1}).encode()
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                      "application/xml", "application/json; charset=latin-1", "image/png", ""):
            yield f"{path} as {ctype!r}", "POST", path, {"Content-Type": ctype}, json.dumps(fields).encode()
        for raw in (b"{", b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000, b"\xff\xfe\x00",
                    b'{"service": "\xff"}', b"null", b"1e999999", b'"x"', b"[1,2,3]", b"{}" * 1000,
                    f'{{"service": {json.dumps(at.service)}, "service": "x"}}'.encode(), b"NaN",
                    b'{"amount_paise": Infinity}'):
            yield f"{path} body {raw[:16]!r}", "POST", path, js, raw
        for size in (64 * 1024 + 1, 1024 * 1024, 8 * 1024 * 1024):
            yield f"{path} {size} bytes", "POST", path, js, b'{"service": "' + b"x" * size + b'"}'
    for path in ("/api/v1/tokens/t_x/fly", "/api/v1/tokens/t_x/CALL", "/api/v1/tokens/t_x/call",
                 "/api/v1/tokens/t_x/", "/api/v1/tokens/" + "x" * 5000 + "/start",
                 f"/api/v1/counters/{at.counters[0]}/explode",
                 "/api/v1/nothing", f"/api/v1/substations/{NO_HALL}/tokens", "/api/v1/substations/%00/queue",
                 f"{live}?since=-1", f"{live}?since=99999999999999999999",
                 f"{live}?since=1e3", "/api/v1/live?since=abc", "/api/v1/bills/%00",
                 # digits that are not ASCII ("²", "٣"): str.isdigit() says yes, int() says no
                 f"{live}?since=%C2%B2", f"{live}?since=%D9%A3",
                 "/api/v1/public/tokens/t_x?travel_min=%C2%B2", "/api/v1/public/tokens/t_x/live?travel_min=%C2%B2",
                 f"/api/v1/public/substations/{hall}/slots", "/api/v1/public/tokens/" + "t" * 3000,
                 "/api/v1/bills/" + "9" * 300, "/api/v1/payments/" + "p" * 300, f"/board/{NO_HALL}", "/board/%2e%2e",
                 "/static/board/../../../etc/passwd", "/api/v1/ops/reports/daily?date=2025-13-45",
                 "/api/v1/ops/reports/monthly?month=abcd", "/api/v1/ops/reports/daily?format=xml",
                 "/api/v1/ops/reports/daily?substation=%F0%9F%98%80", f"/api/v1/ops/substations/{hall}/admission"):
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            yield f"{method} {path[:60]}", method, path, js, b"{}" if method != "GET" else None
    for idem in ("", " ", "x" * 201, "\x01\x02", "é" * 10, "a\tb"):
        yield f"Idempotency-Key {idem[:10]!r}", "POST", issue_path(at), \
            {**js, "Idempotency-Key": idem}, json.dumps(fields_by_path[issue_path(at)]).encode()
    for auth in ("", "Bearer", "Bearer ", "Basic abc", "Bearer " + "x" * 5000, "Bearer ccq_\x00",
                 "bearer ccq_nope", "Bearer ccq_" + "é" * 10, "Token abc", "Bearer a b c"):
        yield f"Authorization {auth[:20]!r}", "GET", "/api/v1/substations", {"Authorization": auth}, None
    yield "8 KB header", "GET", "/api/v1/substations", {"X-Big": "x" * 8_000}, None
    yield "100 KB header", "GET", "/api/v1/substations", {"X-Big": "x" * 100_000}, None
    yield "200 headers", "GET", "/api/v1/substations", {f"X-H{i}": "1" for i in range(200)}, None


async def handmade_run(url: str, key: str, verdicts: Verdicts, at: Places, limit: int | None = None) -> int:
    before = verdicts.sent
    connector = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20), connector=connector,
                                     skip_auto_headers=["Content-Type"]) as session:
        async def one(case) -> None:
            label, method, path, headers, body = case
            headers = {"Authorization": f"Bearer {key}", **headers}
            try:
                async with session.request(method, url + path, headers=headers, data=body) as resp:
                    text = await resp.text(errors="replace")
                    verdicts.judge(label, resp.status, _json_or_text(text), resp.content_type)
            except ValueError:
                verdicts.sent += 1                    # the client itself refused to send it
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                verdicts.judge(label, None, repr(exc))

        cases = list(handmade_cases(at))[:limit]
        for start in range(0, len(cases), 16):
            await asyncio.gather(*[one(c) for c in cases[start:start + 16]])
    return verdicts.sent - before


def raw_requests(hall: str) -> list[bytes]:
    """Bytes that are not quite HTTP, one request each; a WebSocket upgrade to ``hall``'s feed
    among them."""
    return [
        b"GET / HTTP/1.1\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET /api/v1/substations HTTP/9.9\r\nHost: x\r\n\r\n",
        b"POST /api/v1/payments HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /api/v1/payments HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n",
        b"POST /api/v1/payments HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
        b"POST /api/v1/payments HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/substations HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        f"GET /api/v1/substations/{hall}/live HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode(),
        b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]


async def raw_run(host: str, port: int, verdicts: Verdicts, hall: str) -> tuple[int, int]:
    """Malformed HTTP straight onto a socket: the server answers 4xx (aiohttp's parser writes
    those answers itself, in plain text) or hangs up, and never falls over. (sent, plain text)."""
    plain = 0
    raws = raw_requests(hall)
    for raw in raws:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(raw)
            await writer.drain()
            head = await asyncio.wait_for(reader.read(4096), 5)
        except (ConnectionError, asyncio.TimeoutError):
            head = b""
        finally:
            writer.close()
        verdicts.sent += 1
        if head.startswith(b"HTTP/1."):
            status = int(head.split()[1])
            if status >= 500:
                verdicts.judge(f"raw {raw[:30]!r}", status, head[:200].decode(errors="replace"))
                verdicts.sent -= 1
            elif b"application/json" not in head.split(b"\r\n\r\n")[0].lower():
                plain += 1
    return len(raws), plain


# -- hypothesis: token moves and WebSocket frames ---------------------------------------------

ACTIONS = ["recall", "start", "complete", "no-show", "requeue", "transfer", "cancel", "call", "fly", "", "ß"]
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)


def hypothesis_moves(url: str, keys: list[str], token_ids: list[str], examples: int, verdicts: Verdicts,
                     derandomize: bool = True) -> int:
    """Any key, any token (real or made up), any action (real or not), any JSON body."""
    session = requests.Session()
    before = verdicts.sent

    @settings(max_examples=examples, database=None, deadline=None, derandomize=derandomize,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(key=st.sampled_from(keys), token=st.sampled_from(token_ids) | st.text(max_size=30),
           action=st.sampled_from(ACTIONS) | st.text(max_size=12), body=json_values,
           idem=st.none() | st.text(max_size=30))
    def move(key, token, action, body, idem) -> None:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        if idem is not None:
            headers["Idempotency-Key"] = idem.encode("utf-8", "replace").decode("latin-1")
        quoted = requests.utils.quote(token, safe="") or "_"
        try:
            resp = session.post(f"{url}/api/v1/tokens/{quoted}/{requests.utils.quote(action, safe='')}",
                                headers=headers, data=json.dumps(body).encode(), timeout=10)
        except ValueError:               # not even sendable (e.g. NaN in JSON): counts as sent
            verdicts.sent += 1
            return
        verdicts.judge(f"move {action!r} on {token[:20]!r}", resp.status_code, _json_or_text(resp.text),
                       resp.headers.get("Content-Type", ""))

    move()
    session.close()
    return verdicts.sent - before


def hypothesis_ws_frames(url: str, examples: int, verdicts: Verdicts, hall: str) -> int:
    """Boards send nothing the server needs: any frame, text or binary, oversize or not, must
    leave the server up (the socket may be closed); counted as bad inputs."""
    before = verdicts.sent

    async def send_all(frames: list[tuple[str, bytes | str]]) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.ws_connect(f"{url}/api/v1/substations/{hall}/live") as ws:
                await ws.receive(timeout=5)                        # the snapshot
                for kind, data in frames:
                    try:
                        if kind == "text":
                            await ws.send_str(data)
                        elif kind == "bytes":
                            await ws.send_bytes(data)
                        else:
                            await ws.ping(data[:125])
                    except (ConnectionError, RuntimeError):
                        break
                    verdicts.sent += 1
            answered = await call(session, "GET", f"{url}/healthz")
            if answered is None or answered[0] != 200:
                verdicts.judge("healthz after WebSocket frames", None if answered is None else answered[0], answered)

    frame = st.one_of(st.tuples(st.just("text"), st.text(max_size=200) | json_values.map(json.dumps)
                                | st.integers(5000, 20000).map(lambda n: "x" * n)),
                      st.tuples(st.just("bytes"), st.binary(max_size=300)),
                      st.tuples(st.just("ping"), st.binary(max_size=125)))

    @settings(max_examples=max(1, examples // 5), database=None, deadline=None, derandomize=True,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(frames=st.lists(frame, min_size=1, max_size=10))
    def board(frames) -> None:
        asyncio.run(send_all(frames))

    board()
    return verdicts.sent - before


async def issue_some(url: str, key: str, at: Places, n: int = 20) -> list[str]:
    """Real tokens for the moves to act on, some called to a counter."""
    ids = []
    async with aiohttp.ClientSession() as session:
        for i in range(n):
            answered = await call(session, "POST", url + issue_path(at), key, json={"service": at.service})
            if answered and answered[0] == 201:
                ids.append(answered[1]["token"]["id"])
        for counter in at.counters[:2]:
            await call(session, "POST", f"{url}/api/v1/counters/{counter}/next", key)
    return ids


def run(url: str, keys: dict[str, str], total: int, tally: PartTally, at: Places,
        exact_examples: int | None = 100, exact_max_s: float | None = None) -> None:
    """About ``total`` bad inputs: schemathesis the most, then the hand-made list, raw HTTP,
    hypothesis moves and WebSocket frames, at the server's hall, counters and paid service in
    ``at``; tallied into ``tally`` with a line per kind. Then schemathesis' own run, all phases
    and all checks, ``exact_examples`` per operation (None: left out): the document must be
    exact, so it must find nothing."""
    part = "bad input"
    host, port = url.split("//")[1].split(":")
    verdicts = Verdicts()
    started = time.monotonic()
    handmade = asyncio.run(handmade_run(url, keys["admin"], verdicts, at))
    raw, plain = asyncio.run(raw_run(host, int(port), verdicts, at.hall))
    token_ids = asyncio.run(issue_some(url, keys["admin"], at))
    left = max(0, total - verdicts.sent)
    moves = hypothesis_moves(url, list(keys.values()), token_ids, max(10, left // 5), verdicts)
    frames = hypothesis_ws_frames(url, max(10, left // 10), verdicts, at.hall)
    left = max(0, total - verdicts.sent)
    generated = schemathesis_run(url, {"admin": keys["admin"], "cashier": keys["cashier"]}, left, verdicts)
    while verdicts.sent < total:             # operations that ran out of distinct examples: top up
        moves += hypothesis_moves(url, list(keys.values()), token_ids, total - verdicts.sent, verdicts,
                                  derandomize=False)
    progress(f"  bad input: {verdicts.sent} sent in {time.monotonic() - started:.0f} s, answers by class "
             f"{dict(sorted(verdicts.statuses.items()))}")
    for name, n in (("schemathesis (OpenAPI, positive + negative)", generated),
                    ("hand-made (sizes, depth, types, unicode, numbers)", handmade),
                    ("raw malformed HTTP", raw), ("hypothesis token moves", moves),
                    ("hypothesis WebSocket frames", frames)):
        tally.figure(part, name, n, "inputs")
    tally.figure(part, "refused by the HTTP parser (plain text)", plain + verdicts.parser_plain)
    tally.figure(part, "5xx or dropped", verdicts.five_xx, target="0", met=verdicts.five_xx == 0)
    tally.figure(part, "errors not in the documented shape", verdicts.bad_shape, target="0",
                   met=verdicts.bad_shape == 0)
    tally.bad_inputs += verdicts.sent
    tally.five_xx += verdicts.five_xx
    for example in verdicts.examples:
        tally.problem(example)
    if exact_examples is not None:
        exact = schemathesis_exact(url, keys["admin"], exact_examples, exact_max_s)
        progress(f"  schemathesis, all phases and checks: {exact.generated} cases in {exact.seconds:.0f} s, "
                 f"{len(exact.failures)} failures, {len(exact.errors)} errors")
        exact_figures(exact, tally, part)
