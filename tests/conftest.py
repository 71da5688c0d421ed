"""Shared fixtures: a real server on a loopback port over a real SQLite file, and keys per role.

``api`` is the usual entry point: ``await api.post(path, key=api.cashier("S01-C1"), json=...)``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from counter_server.app import create_app
from counter_server.appkeys import KEYS
from counter_server.config import Scenario, Settings, load_scenario

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    return load_scenario()


OPEN_ALL_DAY = ROOT / "tests" / "scenarios" / "open-all-day.toml"


class Clock:
    """A clock tests move by hand. Starts on a weekday at 11:23 in Kanpur, in opening hours."""

    def __init__(self, start: float = 1_764_050_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(tmp_path: Path, scenario: Scenario, clock: Clock) -> Settings:
    # No rate limit by default: tests make bursts on purpose; test_rate_limits turns it on.
    return Settings(data_dir=tmp_path / "data", scenario=scenario, clock=clock, rate_limit_per_s=0)


@dataclass
class Api:
    """A test client with one key per role, made through the server's own KeyService."""

    client: TestClient
    admin: str = ""
    board: str = ""
    _cashiers: dict[str, str] = field(default_factory=dict)

    async def cashier(self, counter: str) -> str:
        if counter not in self._cashiers:
            plain, _ = await self.client.app[KEYS].create("cashier", counter)
            self._cashiers[counter] = plain
        return self._cashiers[counter]

    async def request(self, method: str, path: str, key: str | None = None,
                      idem: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if idem is not None:
            headers["Idempotency-Key"] = idem
        async with self.client.request(method, path, headers=headers, **kwargs) as resp:
            assert resp.content_type == "application/json", await resp.text()
            return resp.status, await resp.json()

    async def get(self, path: str, key: str | None = None, **kw: Any) -> tuple[int, Any]:
        return await self.request("GET", path, key if key is not None else self.admin, **kw)

    async def post(self, path: str, key: str | None = None, **kw: Any) -> tuple[int, Any]:
        return await self.request("POST", path, key if key is not None else self.admin, **kw)

    async def issue(self, substation: str = "S01", service: str = "bill_payment",
                    priority: str = "normal", key: str | None = None) -> dict:
        status, body = await self.post(f"/api/v1/substations/{substation}/tokens", key,
                                       json={"service": service, "priority": priority})
        assert status == 201, body
        return body["token"]

    async def next(self, counter: str, key: str | None = None) -> dict | None:
        status, body = await self.post(f"/api/v1/counters/{counter}/next",
                                       key or await self.cashier(counter))
        assert status == 200, body
        return body["token"]

    async def act(self, token: dict, action: str, key: str | None = None, **kw: Any) -> tuple[int, Any]:
        if key is None and token.get("counter"):
            key = await self.cashier(token["counter"])
        return await self.post(f"/api/v1/tokens/{token['id']}/{action}", key, **kw)


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings) -> AsyncIterator[Api]:
    client = await aiohttp_client(create_app(replace(settings, write_admin_key=False)))
    keys = client.app[KEYS]
    admin, _ = await keys.create("admin")
    board, _ = await keys.create("board")
    yield Api(client=client, admin=admin, board=board)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChildProcess:
    """A process the tests start and may kill. ``stop`` is a SIGKILL here, since nothing of
    billing-sim or redis-server must be saved on the way down; the server stops politely."""

    proc: subprocess.Popen | None

    def kill(self) -> None:
        """SIGKILL: no clean-up, no flush, as when power fails or the OOM killer strikes."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


@dataclass
class ServerProcess(ChildProcess):
    """``counter-server serve`` in its own process, on a loopback port."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    config: Path | None = OPEN_ALL_DAY
    extra_args: list[str] = field(default_factory=lambda: ["--rate-limit", "0"])
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def start(self, timeout: float = 15.0) -> None:
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        log = open(self.log_path, "ab")
        config = ["--config", str(self.config)] if self.config else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "counter_server", "serve", "--data-dir", str(self.data_dir),
             "--host", "127.0.0.1", "--port", str(self.port), *config, *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class BillingSimProcess(ChildProcess):
    """``billing-sim`` in its own process; its journal keeps posted payments across restarts."""

    journal: Path
    port: int = field(default_factory=free_port)
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "counter_server.billing.simulator", "--port", str(self.port),
             "--journal", str(self.journal), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("billing-sim did not start")



# A scenario open all day whose store is the Redis at {url}: for replicas sharing state.
REDIS_SCENARIO = """
extends = "builtin"
[hours]
opens = "00:00"
closes = "23:59:59"
[store]
engine = "redis"
redis_url = "{url}"
"""


@dataclass
class RedisProcess(ChildProcess):
    """A ``redis-server`` of the test's own on a free loopback port, to stop and restart.

    In memory by default; with ``appendonly`` it keeps an AOF (fsync on every write) in
    ``dir``, so a restart brings the data back. Missing redis-server makes the test fail."""

    dir: Path
    port: int = field(default_factory=free_port)
    appendonly: bool = False
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
             "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")



@pytest.fixture
def billing_sim(tmp_path: Path) -> Iterator[BillingSimProcess]:
    sim = BillingSimProcess(journal=tmp_path / "billing-journal.jsonl")
    yield sim
    sim.stop()


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(data_dir=tmp_path / "data")
    yield server
    server.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "counter_server", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=check,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


__all__ = ["Api", "BillingSimProcess", "Clock", "RedisProcess", "ServerProcess", "aiohttp", "bearer",
           "run_cli"]
