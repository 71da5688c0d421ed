"""The deployment files in deploy/ run as shipped: Debian's nginx with exactly deploy/nginx.conf
(only the replicas' ports changed) in front of two real replicas and their own redis-server,
and the systemd unit checked by systemd-analyze."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from counter_server.config import Scenario, load_scenario
from testkit.api import bearer
from testkit.live import receive_until
from testkit.processes import NGINX_CONF, ROOT, NginxProcess, RedisProcess, ServerProcess
from testkit.scenarios import REDIS_SCENARIO, paid_service

UNIT = ROOT / "deploy" / "counter-server@.service"
CONTAINERFILE = ROOT / "deploy" / "Containerfile"

needs_nginx = pytest.mark.skipif(NginxProcess.binary() is None,
                                 reason="nginx is not installed (apt-get install nginx-light; .ci/run does)")


class Proxied:
    """A redis-server, two replicas trusting the proxy, nginx in front, and a session."""

    def __init__(self, tmp_path: Path) -> None:
        self.redis = RedisProcess(dir=tmp_path / "redis")
        self.config = tmp_path / "replicas.toml"
        self.replicas = [ServerProcess(data_dir=tmp_path / name, config=self.config,
                                       extra_args=["--rate-limit", "0", "--trusted-proxy", "127.0.0.1"])
                         for name in ("a", "b")]
        self.nginx = NginxProcess(dir=tmp_path / "nginx", replica_ports=[r.port for r in self.replicas])
        self.session: aiohttp.ClientSession | None = None
        self.key = ""
        self.scenario: Scenario | None = None

    def start(self) -> None:
        self.redis.start()
        self.config.write_text(REDIS_SCENARIO.format(url=self.redis.url))
        self.scenario = load_scenario(self.config)
        for replica in self.replicas:
            replica.start()
        self.key = self.replicas[0].admin_key
        self.nginx.start()
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        self.nginx.stop()
        for replica in self.replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                replica.proc.send_signal(signal.SIGCONT)   # a frozen one must hear SIGTERM
            replica.stop()
        self.redis.stop()

    @property
    def substation(self) -> str:
        assert self.scenario is not None
        return next(iter(self.scenario.substations))

    async def issue(self) -> tuple[int, dict]:
        assert self.session is not None and self.scenario is not None
        async with self.session.post(f"{self.nginx.url}/api/v1/substations/{self.substation}/tokens",
                                     headers=bearer(self.key),
                                     json={"service": paid_service(self.scenario)}) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[Proxied]:
    cluster = Proxied(tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        await cluster.stop()


def test_every_proxied_location_passes_host_and_x_forwarded_for():
    """A location that sets any header inherits none: each must set Host and X-Forwarded-For
    itself, or replicas trusting the proxy see nginx as every client (or refuse the upgrade)."""
    text = NGINX_CONF.read_text()
    locations = re.findall(r"location [^{]+\{(.*?)\n    \}", text, flags=re.S)
    assert len(locations) >= 2
    for body in locations:
        assert "proxy_pass http://counter_server;" in body
        assert "proxy_set_header Host $host;" in body, body
        assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in body, body


@needs_nginx
async def test_hall_boards_and_token_issues_work_through_the_shipped_nginx_file(proxied: Proxied):
    assert proxied.session is not None
    origin = {"Origin": proxied.nginx.url}   # as the board page served through nginx sends it
    url = f"{proxied.nginx.url}/api/v1/substations/{proxied.substation}/live"
    # Two boards: nginx's round robin puts one on each replica.
    boards = [await proxied.session.ws_connect(url, headers=origin) for _ in range(2)]
    try:
        for board in boards:
            snapshot = await receive_until(board, lambda m: m["type"] != "heartbeat", what="a snapshot")
            assert snapshot["type"] == "snapshot"
        status, body = await proxied.issue()
        assert status == 201, body
        number = body["token"]["number"]
        for board in boards:
            delta = await receive_until(board, lambda m: m["type"] == "delta", what="the new token's delta")
            assert [e["token"]["number"] for e in delta["events"] if e["token"]] == [number]
    finally:
        for board in boards:
            await board.close()
    access = (proxied.nginx.dir / "access.log").read_text()
    assert " 101 " in access and " 201 " in access


@needs_nginx
async def test_a_frozen_replica_is_out_of_nginx_rotation_after_one_read_timeout(proxied: Proxied):
    """SIGSTOP keeps a replica's port accepting but answering nothing. With the shipped timeouts
    the requests that reach it wait one proxy_read_timeout and are answered by the other
    replica; from then on none waits (max_fails=1 keeps it out for fail_timeout)."""
    assert proxied.session is not None
    url = f"{proxied.nginx.url}/api/v1/substations"

    async def timed_get() -> tuple[int, float]:
        assert proxied.session is not None
        started = time.monotonic()
        async with proxied.session.get(url, headers=bearer(proxied.key)) as resp:
            await resp.read()
            return resp.status, time.monotonic() - started

    for _ in range(4):                       # both replicas warm, keep-alive connections open
        assert (await timed_get())[0] == 200
    frozen = proxied.replicas[1]
    assert frozen.proc is not None
    frozen.proc.send_signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    answers: list[tuple[int, float]] = []
    for _ in range(10):                      # ten rounds of four at once, as kiosks would
        answers += await asyncio.gather(*(timed_get() for _ in range(4)))
    slow = [took for status, took in answers if took > 1.0]
    out_after = max((took for took in slow), default=0.0)
    assert all(status == 200 for status, _ in answers), answers
    assert len(slow) <= 4, answers           # only those sent before nginx knew: one round
    assert out_after < 6.5, answers          # one proxy_read_timeout (5 s), then the other replica
    # Changes go to the live replica at once too.
    started = time.monotonic()
    for _ in range(5):
        status, body = await proxied.issue()
        assert status == 201, body
    assert time.monotonic() - started < 2.0
    assert time.monotonic() - frozen_at < 10.0   # all within fail_timeout: no second probe of it
    print(f"frozen replica: {len(slow)} of {len(answers)} requests waited, at most {out_after:.2f} s")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (apt-get install systemd; .ci/run does)")
def test_the_replica_unit_passes_systemd_analyze_verify(tmp_path: Path):
    """The unit as shipped, with only its ExecStart pointed at this checkout's counter-server
    (verify refuses a command that is not there), for one instance (a port)."""
    text = UNIT.read_text()
    installed = Path(sys.executable).with_name("counter-server")
    assert installed.exists(), "pip install -e . puts counter-server beside python"
    assert text.count("/usr/local/bin/counter-server") == 1
    (tmp_path / UNIT.name).write_text(text.replace("/usr/local/bin/counter-server", str(installed)))
    checked = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "counter-server@8081.service")],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path,
                             env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr
    settings = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["Restart"] == "always" and "redis-server.service" in settings["After"]
    assert settings["KillSignal"] == "SIGTERM" and settings["TimeoutStopSec"] == "20s"


def test_the_container_healthcheck_tells_a_live_replica_from_a_gone_one(server_process: ServerProcess):
    """The Containerfile's HEALTHCHECK command, run as the container would run it."""
    found = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", CONTAINERFILE.read_text().replace("\\\n", ""),
                      flags=re.M)
    assert found, "no HEALTHCHECK ... CMD [...] in the Containerfile"
    command = json.loads(found.group(1))
    assert command[0] == "python"
    command[0] = sys.executable
    env = {**os.environ, "COUNTER_SERVER_PORT": str(server_process.port)}
    server_process.start()
    assert subprocess.run(command, env=env, capture_output=True, timeout=10).returncode == 0
    server_process.stop()
    assert subprocess.run(command, env=env, capture_output=True, timeout=10).returncode != 0
