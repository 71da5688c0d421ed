"""``peak-sim --from-store``: a short month recorded through the real API (the server in process,
its clock moved by hand) on a scenario unlike the built-in one, read back from the real store
(SQLite, then Redis) and projected to the month's end, each figure labelled measured or assumed."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from counter_server.app import create_app
from counter_server.appkeys import KEYS
from counter_server.config import Scenario, Settings, load_scenario
from loadtests.capacity.cli import main
from loadtests.capacity.recorded import read_month
from testkit.api import Api, Clock
from testkit.scenarios import LAKESIDE, paid_service

from .test_store_contract import TEST_REDIS_URL

FIRST_DAY = date(2026, 3, 2)
DAYS = 3
HOURS = (9, 14)            # local hours the tokens are issued in
START_S = 10               # from the call to start
CAP = 2                    # the capped hall's daily cap: the rest of its arrivals are refused


@dataclass
class Recorded:
    """What the test put into the store, to be read back."""

    arrivals: dict[tuple[str, int], int] = field(default_factory=dict)
    refused: int = 0
    service_s: dict[str, float] = field(default_factory=dict)     # call to done, per service
    done: dict[str, int] = field(default_factory=dict)
    no_shows: dict[str, int] = field(default_factory=dict)


def untimed(scenario: Scenario) -> str:
    """The service nobody asks for in the recorded month: the scenario's last unpaid one."""
    return [s for s in scenario.services if s != paid_service(scenario)][-1]


def plan_of(scenario: Scenario) -> tuple[dict[str, list[tuple[str, int]]], str]:
    """Per hall, (service, tokens an hour) to issue, taken from the scenario: every service a
    hall offers but ``untimed``, more of the paid one; and the one-counter hall that gets a
    daily cap."""
    paid = paid_service(scenario)
    plan = {sid: [(s, 3 if s == paid else 1 + i) for i, s in enumerate(sub.services)
                  if s != untimed(scenario)]
            for sid, sub in scenario.substations.items()}
    capped = min(scenario.substations, key=lambda sid: len(scenario.substations[sid].counters))
    return plan, capped


def at_local(scenario: Scenario, day: date, hour: int, minute: int = 0) -> float:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=scenario.timezone).timestamp()


async def record_month(api: Api, clock: Clock, scenario: Scenario) -> Recorded:
    """Three days: each hour of HOURS, each hall issues its plan's tokens; then its counters
    call them all, every fourth a no-show (recalled first, as the scenario asks), the rest
    started START_S after the call and completed the service's own span later."""
    plan, capped = plan_of(scenario)
    spans = {s: 60.0 + 40 * i for i, s in enumerate(scenario.services)}   # start to done
    got = Recorded()
    for offset in range(DAYS):
        day = FIRST_DAY + timedelta(days=offset)
        clock.now = at_local(scenario, day, 8)
        status, body = await api.request("PUT", f"/api/v1/ops/substations/{capped}/admission",
                                         api.admin, json={"admission": True, "daily_cap": CAP})
        assert status == 200, body
        for hour in HOURS:
            clock.now = at_local(scenario, day, hour)
            for sid, wants in plan.items():
                for service, n in wants:
                    for _ in range(n):
                        clock.now += 1
                        status, body = await api.post(f"/api/v1/substations/{sid}/tokens",
                                                      json={"service": service, "priority": "normal"})
                        assert status in (201, 409), body
                        got.refused += status == 409
                        got.arrivals[sid, hour] = got.arrivals.get((sid, hour), 0) + 1
            clock.now = at_local(scenario, day, hour, 20)
            for sub in scenario.substations.values():
                for counter in sub.counters:
                    while (token := await api.next(counter.id)) is not None:
                        await serve_or_miss(api, clock, scenario, token, spans, got)
    return got


async def serve_or_miss(api: Api, clock: Clock, scenario: Scenario, token: dict,
                        spans: dict[str, float], got: Recorded) -> None:
    service = token["service"]
    seen = got.done.get(service, 0) + got.no_shows.get(service, 0)
    if seen % 4 == 3:
        for _ in range(scenario.policy.recalls_before_no_show):
            clock.now += 20
            assert (await api.act(token, "recall"))[0] == 200
        clock.now += 20
        status, body = await api.act(token, "no-show")
        assert status == 200, body
        got.no_shows[service] = got.no_shows.get(service, 0) + 1
        return
    clock.now += START_S
    assert (await api.act(token, "start"))[0] == 200
    clock.now += spans[service]
    status, body = await api.act(token, "complete")
    assert status == 200, body
    got.done[service] = got.done.get(service, 0) + 1
    got.service_s[service] = START_S + spans[service]


def engine_settings(engine: str, tmp_path: Path, clock: Clock) -> tuple[Settings, Path]:
    """Settings for the engine and the scenario file peak-sim is given (for Redis, one naming
    a key prefix of this test's own)."""
    config = LAKESIDE
    if engine == "redis":
        config = tmp_path / "lakeside-redis.toml"
        config.write_text(LAKESIDE.read_text("utf-8") + f'\n[store]\nredis_prefix = '
                          f'"test-{uuid.uuid4().hex[:12]}:"\n', "utf-8")
    settings = Settings(data_dir=tmp_path / "data", scenario=load_scenario(config), clock=clock,
                        rate_limit_per_s=0, write_admin_key=False,
                        store_engine=engine, redis_url=TEST_REDIS_URL if engine == "redis" else None)
    return settings, config


async def forget(settings: Settings) -> None:
    if settings.store.engine != "redis":
        return
    client = Redis.from_url(TEST_REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=settings.store.redis_prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.mark.parametrize("engine", ["sqlite", "redis"])
async def test_the_month_so_far_is_read_back_and_projected(tmp_path: Path, capsys, engine: str):
    clock = Clock(at_local(load_scenario(LAKESIDE), FIRST_DAY, 8))
    settings, config = engine_settings(engine, tmp_path, clock)
    scenario = settings.scenario
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        admin, _ = await client.app[KEYS].create("admin")
        got = await record_month(Api(client=client, admin=admin), clock, scenario)
        await client.close()

        month = FIRST_DAY.isoformat()[:7]
        record = await read_month(settings, scenario, month)
        assert record.days == [(FIRST_DAY + timedelta(days=d)).isoformat() for d in range(DAYS)]
        assert dict(record.arrivals) == {(sid, hour): n for (sid, hour), n in got.arrivals.items()}
        plan, capped = plan_of(scenario)
        per_day = sum(n for _, n in plan[capped]) * len(HOURS)
        assert dict(record.refused) == {capped: DAYS * (per_day - CAP)} and got.refused == DAYS * (per_day - CAP)
        for service, span in got.service_s.items():
            assert record.mean_service_s(service) == pytest.approx(span, abs=1.0)
            assert len(record.service_s[service]) == got.done[service]
        assert record.mean_service_s("nobody-offers-this") is None
        total = sum(got.done.values()) + sum(got.no_shows.values())
        assert record.no_show_share() == pytest.approx(sum(got.no_shows.values()) / total)

        argv = ["--config", str(config), "--month", month, "--out", str(tmp_path / "out"),
                "--whatif-days", "0", "--whatif-booking", "", "--no-hall-advice", "--jobs", "1",
                "--no-progress", "--days", "2"]
        argv += (["--store", "redis", "--redis-url", TEST_REDIS_URL] if engine == "redis"
                 else ["--from-store", str(settings.data_dir)])
        assert await asyncio.to_thread(main, argv) == 0
        printed = capsys.readouterr().out
        quiet_month = [*argv[:2], "--month", "2026-04", *argv[4:]]
        assert await asyncio.to_thread(main, quiet_month) == 2
        refusal = capsys.readouterr().err.strip()
    finally:
        await client.close()
        await forget(settings)
    assert refusal.count("\n") == 0 and "no days recorded in 2026-04" in refusal
    assert (str(settings.data_dir.absolute()) if engine == "sqlite" else TEST_REDIS_URL) in refusal
    tokens = sum(got.arrivals.values()) - got.refused
    assert f"{DAYS} days recorded" in printed and f"{tokens} tokens issued" in printed
    paid = paid_service(scenario)
    assert re.search(rf"service time {re.escape(paid)} \(s\)\s+{got.service_s[paid]:.1f}\s+MEASURED", printed)
    assert re.search(rf"counter time {re.escape(untimed(scenario))} \(s\)\s+\S+\s+ASSUMED", printed)
    assert re.search(r"online_share\s+\S+\s+ASSUMED .*nothing in the store records payments made online",
                     printed)
    assert re.search(r"last_week_share_of_counter_payments\s+\S+\s+ASSUMED", printed)
    assert "Policy: no policy" in printed and re.search(r"^\s+29\s+\*", printed, re.M)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "## Measured from the store: the month so far" in summary
    assert re.search(r"\| connections \| [\d.]+ \| MEASURED \(3 days, \d+ tokens\)", summary)
    assert "| last_week_working_days | 7 | ASSUMED: scenario [demand] |" in summary


def test_a_missing_or_empty_store_is_refused_before_anything_is_written(tmp_path: Path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "no-such-dir"
    common = ["--config", str(LAKESIDE), "--out", str(out), "--no-progress", "--month", "2026-03"]
    assert main([*common, "--from-store", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(missing) in err and "no such directory" in err
    assert not missing.exists() and not out.exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*common, "--from-store", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(empty) in err
    assert list(empty.iterdir()) == [] and not out.exists()
