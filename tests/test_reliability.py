"""The reliability suite, bounded: real server processes on loopback, a real SQLite file, a
redis-server of the test's own, a real billing-sim, on the Lakeside scenario (so nothing in the
suite leans on the built-in one's names or shape). The full run is
``python -m loadtests.reliability`` (README, "Reliability and security suite")."""

from __future__ import annotations

import asyncio
from pathlib import Path

from loadtests.reliability import access, badinput, crash, limits
from loadtests.reliability.common import PartTally, Places, make_keys, write_scenario
from testkit.figures import print_table
from testkit.processes import ServerProcess
from testkit.scenarios import LAKESIDE


def _report(tally: PartTally) -> None:
    print_table(tally.figures)           # shown with pytest -s, and on failure
    print(tally.last_line())
    assert tally.problems == [], tally.problems
    missed = [(f.benchmark, f.name, f.value) for f in tally.figures if f.met is False]
    assert missed == []


async def test_sigkill_rounds_lose_and_duplicate_nothing(tmp_path: Path):
    tally = PartTally()
    await crash.sqlite_rounds(tmp_path, 3, tally, scenario=LAKESIDE)
    _report(tally)
    assert tally.kills == 3 and tally.rounds == 3
    assert tally.acknowledged > 100
    assert tally.lost == tally.duplicated == tally.five_xx == 0


async def test_billing_sim_killed_every_payment_posted_exactly_once(tmp_path: Path):
    tally = PartTally()
    await crash.billing_round(tmp_path, tally, scenario=LAKESIDE)
    _report(tally)
    posted = next(f.value for f in tally.figures if f.name == "payments posted to billing")
    assert posted > 0 and tally.lost == tally.duplicated == 0


async def test_replica_and_redis_killed_lose_and_duplicate_nothing(tmp_path: Path):
    tally = PartTally()
    await crash.scaled_round(tmp_path, tally, scenario=LAKESIDE)
    _report(tally)
    assert tally.acknowledged > 50 and tally.lost == tally.duplicated == 0


def test_bad_inputs_never_answer_5xx_and_errors_keep_their_shape(tmp_path: Path):
    config = write_scenario(tmp_path / "bad.toml", base=LAKESIDE)
    at = Places.load(config)
    server = ServerProcess(data_dir=tmp_path / "data", config=config)
    server.start()
    try:
        cashier, board = asyncio.run(make_keys(server.data_dir, [("cashier", at.counters[0]), ("board", None)],
                                               config))
        tally = PartTally()
        badinput.run(server.url, {"admin": server.admin_key, "cashier": cashier, "board": board}, 1000, tally, at,
                     exact_examples=None)   # schemathesis' own run: its test below
        assert server.proc.poll() is None, "the server died"
    finally:
        server.stop()
    _report(tally)
    assert tally.bad_inputs >= 1000 and tally.five_xx == 0
    generated = next(f.value for f in tally.figures if f.name.startswith("schemathesis"))
    assert generated >= 100


def test_schemathesis_all_phases_all_checks_finds_nothing(tmp_path: Path):
    """The OpenAPI document is exact: schemathesis with an admin key, every phase and every
    check, finds no failure of any kind (bounded here: 5 examples an operation, 30 s in all
    at most; the full suite runs 100 an operation)."""
    config = write_scenario(tmp_path / "exact.toml", base=LAKESIDE)
    server = ServerProcess(data_dir=tmp_path / "data", config=config)
    server.start()
    try:
        run = badinput.schemathesis_exact(server.url, server.admin_key, max_examples=5, max_time_s=30)
        assert server.proc.poll() is None, "the server died"
    finally:
        server.stop()
    tally = PartTally()
    badinput.exact_figures(run, tally)
    _report(tally)
    assert run.failures == [] and run.errors == []
    assert run.generated >= 300, run


async def test_access_matrix_roles_keys_csrf_and_headers(tmp_path: Path):
    tally = PartTally()
    await access.run(tmp_path, tally, scenario=LAKESIDE)
    _report(tally)
    checks = next(f.value for f in tally.figures if f.name.startswith("access checks"))
    assert checks >= 60


async def test_flood_slow_clients_and_silent_websockets_are_held_back(tmp_path: Path):
    tally = PartTally()
    await limits.run(tmp_path, tally, websockets=200, flood_s=2.0, scenario=LAKESIDE)
    _report(tally)
