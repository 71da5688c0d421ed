"""Token issue driven by wrk, a load generator in C that is not itself the bottleneck.

wrk runs pinned to core 1 and the server (or the bare aiohttp handler it is compared with) to
core 0, so the figure is what one server core does. A Lua script gives every request its own
Idempotency-Key and spreads them over the scenario's halls. Debian ships wrk
(``apt-get install -y wrk``); wrk2, the fixed-rate fork, it does not, so the fixed-rate p99 stays
with the Python open-loop client in ``token_latency``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from testkit.processes import free_port, wait_for_port

SERVER_CORE = 0
LOAD_CORE = 1
WRK_MISSING = ("wrk is not installed; the token issue benchmark drives the server with it. "
               "Install it with: apt-get install -y wrk")

BARE_APP = """
import sys
from aiohttp import web
async def handler(request):
    await request.read()
    return web.json_response({"token": {"id": "t_x", "number": "B-001", "status": "waiting"}}, status=201)
app = web.Application()
app.router.add_route("*", "/{tail:.*}", handler)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

# Each request: the next hall in turn, the paid service, and a key no other request has (the
# run's prefix and wrk's thread number keep threads and runs apart).
LUA_TEMPLATE = """
local paths = {paths}
local body = {body}
local prefix = {prefix}
local counter = 0
thread_id = 0   -- a global: setup() sets it in each thread's own Lua state
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_id", next_thread)
end

function request()
  counter = counter + 1
  local headers = {{}}
  headers["Authorization"] = {authorization}
  headers["Content-Type"] = "application/json"
  headers["Idempotency-Key"] = prefix .. thread_id .. "-" .. counter
  return wrk.format("POST", paths[counter % #paths + 1], headers, body)
end
"""


# The same client, asking for nothing: GET /api/v1/me passes every middleware a token does
# (request id, metrics, rate limit, page headers, the key) and does no work of its own.
LUA_GET = """
local authorization = {authorization}
function request()
  return wrk.format("GET", {path}, {{["Authorization"] = authorization}}, nil)
end
"""


def require_wrk() -> str:
    """wrk's path, or a failure that says how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(WRK_MISSING)
    return path


def lua_string(text: str) -> str:
    """A Lua string literal (JSON's escapes are a subset Lua reads the same way)."""
    return json.dumps(text)


def issue_script(halls: list[str], service: str, key: str) -> str:
    """The Lua script that issues one token per request, over ``halls``."""
    paths = "{" + ", ".join(lua_string(f"/api/v1/substations/{hall}/tokens") for hall in halls) + "}"
    return LUA_TEMPLATE.format(paths=paths, body=lua_string(json.dumps({"service": service})),
                               prefix=lua_string(f"wrk-{uuid.uuid4().hex[:12]}-"),
                               authorization=lua_string(f"Bearer {key}"))


def get_script(path: str, key: str) -> str:
    """The Lua script that GETs ``path`` with ``key``, one request after another."""
    return LUA_GET.format(path=lua_string(path), authorization=lua_string(f"Bearer {key}"))


def pin(pid: int, core: int) -> None:
    """Every thread of ``pid`` (and all it starts later) to one core."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {core})


@dataclass(frozen=True)
class WrkRun:
    """One wrk run: requests answered 2xx per second, and how many were not."""

    requests: int
    failed: int
    seconds: float
    latency_p99_ms: float

    @property
    def ok_per_s(self) -> float:
        return (self.requests - self.failed) / self.seconds


def parse_wrk(output: str, seconds: float) -> WrkRun:
    """wrk's text report, read: total requests, non-2xx and socket errors, p99 latency."""
    total = int(re.search(r"(\d+) requests in", output).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    failed = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, errors.groups())) if errors else 0)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", output)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    return WrkRun(total, failed, seconds, p99_ms)


def run_wrk(url: str, script: str, script_dir: Path, seconds: float = 10.0,
            connections: int = 50) -> WrkRun:
    """wrk on core 1 against ``url`` for ``seconds`` with ``connections`` open at once."""
    wrk = require_wrk()
    script_path = script_dir / f"issue-{uuid.uuid4().hex[:8]}.lua"
    script_path.write_text(script)
    command = ["taskset", "-c", str(LOAD_CORE), wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s",
               "--latency", "-s", str(script_path), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=True)
    return parse_wrk(done.stdout, seconds)


def start_bare(port: int | None = None) -> tuple[subprocess.Popen, str]:
    """The bare aiohttp POST handler in its own process on core 0, and its URL."""
    port = port or free_port()
    proc = subprocess.Popen(["taskset", "-c", str(SERVER_CORE), sys.executable, "-c", BARE_APP, str(port)])
    wait_for_port(port, proc, "the bare aiohttp server")
    return proc, f"http://127.0.0.1:{port}"
