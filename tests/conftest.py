"""Shared fixtures: a real server on a loopback port over a real SQLite file, and keys per role.

``api`` is the usual entry point: ``await api.post(path, key=api.cashier("S01-C1"), json=...)``.
"""

from __future__ import annotations

import os
import subprocess
import sys
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
from loadtests.processes import (
    LAKESIDE,
    OPEN_ALL_DAY,
    REDIS_SCENARIO,
    ROOT,
    BillingSimProcess,
    ChildProcess,
    RedisProcess,
    ServerProcess,
    free_port,
)


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    return load_scenario()


# Tests of screens and of peak-sim run on both: nothing may depend on the built-in one's names.
BOTH_SCENARIOS = {"builtin": OPEN_ALL_DAY, "lakeside": LAKESIDE}


@pytest.fixture(params=sorted(BOTH_SCENARIOS), scope="session")
def scenario_file(request: pytest.FixtureRequest) -> Path:
    """Each scenario file in turn (open all day): the built-in one, then one unlike it."""
    return BOTH_SCENARIOS[request.param]


def paid_service(scenario: Scenario) -> str:
    """The scenario's payment service; tests take it from there, never by name."""
    assert scenario.payment_service is not None, "the scenario names no [demand] payment_service"
    return scenario.payment_service


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


__all__ = ["Api", "BOTH_SCENARIOS", "BillingSimProcess", "ChildProcess", "Clock", "LAKESIDE", "OPEN_ALL_DAY", "REDIS_SCENARIO", "ROOT",
           "RedisProcess", "ServerProcess", "aiohttp", "bearer", "free_port", "paid_service", "run_cli"]
