"""Fixtures only: a real server on a loopback port over a real SQLite file, keys per role, and
the processes a test starts. What tests share that is not a fixture lives in ``testkit``.

``api`` is the usual entry point: ``await api.post(path, key=await api.cashier("S01-C1"), json=...)``.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

from counter_server.app import create_app
from counter_server.appkeys import KEYS
from counter_server.config import Scenario, Settings, load_scenario
from testkit.api import Api, Clock
from testkit.browser import CHROMIUM, CHROMIUM_ARGS
from testkit.processes import BillingSimProcess, ServerProcess
from testkit.scenarios import BOTH_SCENARIOS


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    return load_scenario()


@pytest.fixture(params=sorted(BOTH_SCENARIOS), scope="session")
def scenario_file(request: pytest.FixtureRequest) -> Path:
    """Each scenario file in turn (open all day): the built-in one, then one unlike it."""
    return BOTH_SCENARIOS[request.param]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(tmp_path: Path, scenario: Scenario, clock: Clock) -> Settings:
    # No rate limit by default: tests make bursts on purpose; test_rate_limits turns it on.
    return Settings(data_dir=tmp_path / "data", scenario=scenario, clock=clock, rate_limit_per_s=0)


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


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert shutil.which("chromium") or Path(CHROMIUM).exists(), \
        "Debian's chromium is missing: bash .ci/run installs it (apt-get install chromium)"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()
