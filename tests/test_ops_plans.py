"""Plans: the month simulation ops run from their page, on a real app and its real worker
process, on a scenario unlike the built-in one. Bad figures are refused naming the field, one
plan runs at a time, progress moves, and the result names the scenario's own halls."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from counter_server.app import create_app
from counter_server.appkeys import KEYS
from counter_server.config import Scenario, Settings, load_scenario
from testkit.api import Api, bearer
from testkit.processes import ServerProcess
from testkit.scenarios import LAKESIDE, paid_service
from testkit.waiting import wait_until, wait_until_async

PLANS = "/api/v1/ops/plans"


@pytest.fixture(scope="module")
def lakeside() -> Scenario:
    return load_scenario(LAKESIDE)


@pytest.fixture
async def plans_api(aiohttp_client: Any, tmp_path: Path, lakeside: Scenario) -> AsyncIterator[Api]:
    settings = Settings(data_dir=tmp_path / "data", scenario=lakeside, rate_limit_per_s=0, write_admin_key=False)
    client = await aiohttp_client(create_app(settings))
    admin, _ = await client.app[KEYS].create("admin")
    board, _ = await client.app[KEYS].create("board")
    yield Api(client=client, admin=admin, board=board)


def halls_with_counters(scenario: Scenario) -> dict[str, int]:
    return {sid: len(sub.counters) for sid, sub in scenario.substations.items() if sub.counters}


async def test_bad_figures_are_refused_naming_the_field(plans_api: Api, lakeside: Scenario):
    hall = next(iter(halls_with_counters(lakeside)))
    status, limits = await plans_api.get(PLANS)
    assert status == 200 and limits["running"] is None and limits["plans"] == []
    month = limits["limits"]["working_days"]
    assert [h["id"] for h in limits["limits"]["halls"]] == list(halls_with_counters(lakeside))
    assert limits["limits"]["defaults"]["counters"] == halls_with_counters(lakeside)
    for body, field in (({"counters": {"no-such-hall": 2}}, "counters.no-such-hall"),
                        ({"counters": {hall: 0}}, f"counters.{hall}"),
                        ({"counters": {hall: "3"}}, f"counters.{hall}"),
                        ({"online_share": 1.5}, "online_share"),
                        ({"booking_share": -0.1}, "booking_share"),
                        ({"days": month + 1}, "days"),
                        ({"due_date_cycles": month + 1}, "due_date_cycles"),
                        ({"days": 0}, "days"),
                        ({"seed": 4}, "seed")):
        status, answer = await plans_api.post(PLANS, json=body)
        assert (status, answer["error"]["field"]) == (422, field), (body, answer)
        assert field.split(".")[0] in answer["error"]["message"], answer
    status, answer = await plans_api.post(PLANS, json={"counters": {"no-such-hall": 2}})
    assert all(sid in answer["error"]["message"] for sid in lakeside.substations)   # it says which halls there are
    status, answer = await plans_api.post(PLANS, json={"days": month + 1})
    assert str(month) in answer["error"]["message"]
    # ops only, like every /api/v1/ops route; nothing ran
    assert (await plans_api.post(PLANS, key=plans_api.board, json={}))[0] == 403
    assert (await plans_api.get(f"{PLANS}/plan_none"))[0] == 404
    assert (await plans_api.get(PLANS))[1]["plans"] == []


async def test_one_plan_at_a_time_its_progress_moves_and_it_answers_per_hall(plans_api: Api, lakeside: Scenario):
    halls = halls_with_counters(lakeside)
    busy = next(sid for sid, sub in lakeside.substations.items() if paid_service(lakeside) in sub.services)
    asked = {busy: halls[busy] + 1}
    status, started = await plans_api.post(PLANS, json={"counters": asked, "days": 30, "online_share": 0.5})
    assert status == 202, started
    plan = started["plan"]
    assert (plan["state"], plan["progress"]) == ("running", 0)
    assert plan["inputs"]["counters"] == {**halls, **asked} and plan["inputs"]["online_share"] == 0.5

    status, refused = await plans_api.post(PLANS, json={"days": 2})
    assert status == 409 and refused["error"]["code"] == "plan_running", refused
    assert refused["error"]["plan_id"] == plan["id"] and "wait for it" in refused["error"]["message"]

    seen: list[float] = []

    async def state() -> dict:
        found = (await plans_api.get(f"{PLANS}/{plan['id']}"))[1]["plan"]
        seen.append(found["progress"])
        return found

    done = await wait_until_async(state, what="the plan done", done=lambda p: p["state"] != "running",
                                  timeout=60, interval=0.02)
    assert done["state"] == "done", done
    assert seen == sorted(seen) and any(0 < p < 1 for p in seen), seen     # it moved, forwards
    result = done["result"]
    rows = {row["substation"]: row for row in result["halls"]}
    assert list(rows) == list(lakeside.substations)
    assert rows[busy]["counters"] == halls[busy] + 1 and rows[busy]["scenario_counters"] == halls[busy]
    week = result["last_week_days"]
    assert week and week[-1] == 30
    for sid, row in rows.items():
        assert row["name"] == lakeside.substations[sid].name
        assert [d["day"] for d in row["needed"]] == week and all(d["counters"] >= 1 for d in row["needed"])
        assert row["turned_away"] >= 0 and row["served"] >= 0
    assert rows[busy]["served"] > 0 and rows[busy]["p90_wait_s"] is not None
    assert {c["policy"] for c in result["city"]} == {result["policy"], "none"}

    for name, link in done["plots"].items():
        async with plans_api.client.get(link, headers=bearer(plans_api.admin)) as resp:
            assert resp.status == 200 and resp.content_type == "image/png", name
            assert (await resp.read()).startswith(b"\x89PNG\r\n\x1a\n")
    assert set(done["plots"]) == {"queue", "waits", "halls"}
    status, missing = await plans_api.get(f"{PLANS}/{plan['id']}/plots/nothing.png")
    assert status == 404 and missing["error"]["plots"] == sorted(done["plots"], key=list(done["plots"]).index)
    async with plans_api.client.get(next(iter(done["plots"].values()))) as resp:
        assert resp.status == 401                              # the plots are ops' too

    # done: the next one runs
    status, second = await plans_api.post(PLANS, json={"days": 1})
    assert status == 202, second
    listed = (await plans_api.get(PLANS))[1]
    assert listed["running"] == second["plan"]["id"]
    assert [p["id"] for p in listed["plans"]] == [second["plan"]["id"], plan["id"]]


async def test_the_document_bounds_a_plan_by_the_scenario(plans_api: Api, lakeside: Scenario):
    async with plans_api.client.get("/api/v1/openapi.json") as resp:
        doc = await resp.json()
    schema = doc["components"]["schemas"]["PlanRequest"]["properties"]
    assert list(schema["counters"]["properties"]) == list(halls_with_counters(lakeside))
    assert schema["counters"]["additionalProperties"] is False
    month = (await plans_api.get(PLANS))[1]["limits"]["working_days"]
    assert schema["days"]["maximum"] == schema["due_date_cycles"]["maximum"] == month
    assert "409" in doc["paths"][PLANS]["post"]["responses"]


def _children(pid: int) -> dict[int, str]:
    """The process's children and their command lines, from /proc."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                found[int(child)] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except FileNotFoundError:
                pass
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


async def test_sigterm_mid_plan_stops_the_worker_and_the_server_promptly(tmp_path: Path):
    """The worker is a child of the server; SIGTERM while it simulates ends both, without
    waiting for the plan."""
    server = ServerProcess(data_dir=tmp_path / "data", config=LAKESIDE)
    server.start()
    try:
        async with aiohttp.ClientSession(headers=bearer(server.admin_key)) as session:
            async with session.post(f"{server.url}{PLANS}", json={"days": 30}) as resp:
                assert resp.status == 202, await resp.text()
        workers = wait_until(lambda: [pid for pid, cmd in _children(server.proc.pid).items()
                                      if "multiprocessing" in cmd and "resource_tracker" not in cmd],
                             what="the plan's worker process", timeout=10)
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
        assert server.proc.returncode == 0 and took < 6, (server.proc.returncode, took)
        wait_until(lambda: not any(_alive(pid) for pid in workers), what="the worker gone", timeout=3)
    finally:
        server.stop()
