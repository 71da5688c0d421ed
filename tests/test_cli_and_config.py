"""The command line as a user runs it, and scenario files."""

from __future__ import annotations

import stat
from datetime import date
from pathlib import Path

import aiohttp
import pytest

from counter_server.config import ScenarioError, load_scenario

from .conftest import ServerProcess, bearer, run_cli


def test_builtin_scenario_is_the_reference_case():
    scenario = load_scenario()
    assert len(scenario.substations) == 10 and len(scenario.counters) == 40
    assert {"bill_payment", "new_connection", "complaint"} <= set(scenario.services)
    assert all("bill_payment" in c.services for c in scenario.counters.values())
    assert scenario.counters["S01-C1"].substation == "S01"
    assert scenario.demand["connections"] == 625000


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.replace('timezone = "Asia/Kolkata"', 'timezone = "Mars/Olympus"'), "timezone"),
    (lambda t: t.replace('letter = "N"', 'letter = "B"'), "services[1].letter"),
    (lambda t: t.replace('{ id = "S01-C2", name = "Counter 2", name_hi = "काउंटर 2", services = ["bill_payment"] }',
                         '{ id = "S01-C2", services = ["water"] }'), "substations[0].counters[1].services"),
    (lambda t: t.replace('name = "Counter 2", name_hi = "काउंटर 2"', 'name = 2', 1), "substations[0].counters[1].name"),
    (lambda t: t.replace('payment_service = "bill_payment"', 'payment_service = "bill_paymnet"'),
     "demand.payment_service"),
    (lambda t: t.replace('opens = "09:30"', 'opens = "half past nine"'), "hours.opens"),
    (lambda t: t.replace('closed_weekdays = ["sunday"]', 'closed_weekdays = ["funday"]'), "hours.closed_weekdays"),
    (lambda t: t.replace('holidays = []', 'holidays = ["Diwali"]'), "hours.holidays"),
    (lambda t: t + "\n[[[broken", "not valid TOML"),
])
def test_bad_scenario_files_name_the_field(tmp_path: Path, edit, field):
    from importlib import resources
    text = resources.files("counter_server.scenario").joinpath("default.toml").read_text("utf-8")
    path = tmp_path / "scenario.toml"
    path.write_text(edit(text), "utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert field in str(err.value)
    result = run_cli("serve", "--config", str(path), "--data-dir", str(tmp_path / "d"), check=False)
    assert result.returncode == 2 and field in result.stderr


def test_counters_shut_on_sundays_and_holidays_unless_opened_for_the_month_end(tmp_path: Path):
    days = load_scenario().substations["S01"].days
    assert days.is_open(date(2026, 11, 30)) and not days.is_open(date(2026, 11, 29))   # Mon, Sun
    assert days.next_open(date(2026, 11, 29)) == date(2026, 11, 30)
    path = tmp_path / "days.toml"
    path.write_text("""
extends = "builtin"
[hours]
holidays = [2026-11-27, "2026-12-25"]
open_days = [2026-11-29]
""", "utf-8")
    days = load_scenario(path).substations["S01"].days
    assert days.is_open(date(2026, 11, 29))                 # the month-end Sunday opening
    assert not days.is_open(date(2026, 11, 27)) and not days.is_open(date(2026, 12, 25))
    assert not days.is_open(date(2026, 12, 6))              # other Sundays stay shut
    assert days.next_open(date(2026, 12, 25)) == date(2026, 12, 26)


def test_a_small_scenario_file_replaces_the_builtin_one(tmp_path: Path):
    path = tmp_path / "one.toml"
    path.write_text("""
timezone = "Asia/Kolkata"
[[services]]
id = "bill_payment"
name = "Bill payment"
letter = "B"
mean_service_s = 90
[[substations]]
id = "X1"
name = "Test hall"
counters = [{ id = "X1-C1", services = ["bill_payment"] }]
""", "utf-8")
    scenario = load_scenario(path)
    assert list(scenario.counters) == ["X1-C1"] and scenario.substations["X1"].services == ("bill_payment",)


async def test_first_start_writes_a_private_admin_key_and_cli_keys_work(server_process: ServerProcess):
    server_process.start()
    key_file = server_process.data_dir / "admin.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "admin.key" in server_process.log_path.read_text()

    made = run_cli("keys", "create", "--data-dir", str(server_process.data_dir),
                   "--role", "cashier", "--counter", "S03-C2")
    lines = made.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ccq_")
    cashier = lines[0]
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server_process.url}/api/v1/counters/S03-C2/next",
                                headers=bearer(cashier)) as resp:
            assert resp.status == 200 and (await resp.json()) == {"token": None}
        async with session.post(f"{server_process.url}/api/v1/counters/S03-C1/next",
                                headers=bearer(cashier)) as resp:
            assert resp.status == 403

        listing = run_cli("keys", "list", "--data-dir", str(server_process.data_dir)).stdout
        assert cashier not in listing and "S03-C2" in listing
        key_id = next(line.split("\t")[0] for line in listing.splitlines() if "S03-C2" in line)
        run_cli("keys", "revoke", "--data-dir", str(server_process.data_dir), key_id)
        async with session.post(f"{server_process.url}/api/v1/counters/S03-C2/next",
                                headers=bearer(cashier)) as resp:
            assert resp.status == 401 and (await resp.json())["error"]["code"] == "invalid_key"

    db = b"".join(p.read_bytes() for p in server_process.data_dir.glob("counter.db*"))
    assert cashier.encode() not in db and server_process.admin_key.encode() not in db


@pytest.mark.parametrize("args, complaint", [
    (["--role", "cashier"], "needs the counter"),
    (["--role", "cashier", "--counter", "S99-C9"], "S99-C9"),
    (["--role", "board", "--counter", "S01-C1"], "Only cashier keys"),
])
def test_keys_create_refuses_bad_arguments(tmp_path: Path, args, complaint):
    result = run_cli("keys", "create", "--data-dir", str(tmp_path), *args, check=False)
    assert result.returncode == 2 and complaint in result.stderr and result.stdout == ""
