"""The command line as a user runs it, and scenario files."""

from __future__ import annotations

import stat
from datetime import date, time
from pathlib import Path

import aiohttp
import pytest

from counter_server.config import ScenarioError, load_scenario

from testkit.api import bearer
from testkit.processes import ServerProcess, run_cli
from testkit.scenarios import LAKESIDE, OPEN_ALL_DAY


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


def builtin_text() -> str:
    from importlib import resources
    return resources.files("counter_server.scenario").joinpath("default.toml").read_text("utf-8")


COUNTER_2 = '{ id = "S01-C2", name = "Counter 2", name_hi = "काउंटर 2", services = ["bill_payment"] }'

# (what was written, the key path the refusal names, what it says there): each of these
# started a server before, on the built-in figures, as if the file had not been changed.
TYPOS_AND_IMPOSSIBLE_VALUES = {
    "opnes": (lambda t: t.replace('opens = "09:30"', 'opnes = "08:00"'),
              "hours.opnes", "unknown key; did you mean hours.opens?"),
    "[hour]": (lambda t: t.replace("[hours]", "[hour]"), "hour", "unknown table; did you mean hours?"),
    "counter key": (lambda t: t.replace(COUNTER_2, COUNTER_2.replace("services =", "servics =")),
                    "substations[0].counters[1].servics",
                    "unknown key; did you mean substations[0].counters[1].services?"),
    "knob table": (lambda t: t.replace("knee = 4", "kne = 4"),
                   "billing.simulator.kne", "did you mean billing.simulator.knee?"),
    "peak-sim key": (lambda t: t.replace("come_back_share =", "comeback_share ="),
                     "demand.comeback_share", "did you mean demand.come_back_share?"),
    "wrong type": (lambda t: t.replace("slot_minutes = 15", 'slot_minutes = "15"'),
                   "phones.slot_minutes", "must be a whole number, not '15'"),
    "closes before opens": (lambda t: t.replace('closes = "17:30"', 'closes = "08:00"'),
                            "hours.closes", "08:00 is not after opens (09:30)"),
    "hall closes before opens": (lambda t: t.replace('name = "Govind Nagar"', 'name = "Govind Nagar"\ncloses = "09:00"'),
                                 "substations[1].closes", "not after it opens (09:30)"),
    "service the hall lacks": (lambda t: t.replace('services = ["bill_payment", "new_connection", "complaint"]\n'
                                                   'counters = [\n  { id = "S01-C1"',
                                                   'services = ["bill_payment", "complaint"]\ncounters = [\n  { id = "S01-C1"'),
                               "substations[0].counters[2].services[1]", "'new_connection' is not offered at S01"),
    "duplicate counter": (lambda t: t.replace('id = "S02-C3"', 'id = "S01-C3"'),
                          "substations[1].counters[2].id", "'S01-C3' is already substations[0].counters[2].id"),
    "negative head start": (lambda t: t.replace("senior = 10", "senior = -5"),
                            "queue.head_start_minutes.senior", "must be 0 or more, not -5"),
    "paid service typo": (lambda t: t.replace('payment_service = "bill_payment"', 'payment_service = "bill_paymnet"'),
                          "demand.payment_service", "unknown service 'bill_paymnet' (did you mean bill_payment?)"),
    "two letters": (lambda t: t.replace('letter = "N"', 'letter = "NC"'),
                    "services[1].letter", "must be one capital letter A-Z, not 'NC'"),
    "booking share": (lambda t: t.replace("booking_share = 0.25", "booking_share = 1.5"),
                      "phones.booking_share", "must be below 1, not 1.5"),
    "sentinel without port": (lambda t: t + '\n[store]\nredis_sentinels = ["10.0.0.11:26379", "10.0.0.12"]\n',
                              "store.redis_sentinels[1]", "must be HOST:PORT with a port from 1 to 65535"),
}


@pytest.mark.parametrize("case", TYPOS_AND_IMPOSSIBLE_VALUES)
def test_typos_and_impossible_values_are_refused_naming_file_key_and_fix(tmp_path: Path, case: str):
    edit, key, says = TYPOS_AND_IMPOSSIBLE_VALUES[case]
    path = tmp_path / "scenario.toml"
    path.write_text(edit(builtin_text()), "utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    first = str(err.value).splitlines()[0]
    assert first.startswith(f"{path}: {key}: ") and says in first


def test_an_extending_file_is_checked_too(tmp_path: Path):
    path = tmp_path / "open.toml"
    path.write_text(OPEN_ALL_DAY.read_text("utf-8").replace('opens = "00:00"', 'opnes = "00:00"'), "utf-8")
    with pytest.raises(ScenarioError, match=r"hours\.opnes: unknown key; did you mean hours\.opens\?"):
        load_scenario(path)


@pytest.mark.parametrize("case", ["opnes", "wrong type", "negative head start"])   # typo, type, value
def test_serve_and_check_config_refuse_a_bad_file_in_two_lines_before_writing_anything(tmp_path: Path, case: str):
    edit, key, says = TYPOS_AND_IMPOSSIBLE_VALUES[case]
    path = tmp_path / "scenario.toml"
    path.write_text(edit(builtin_text()), "utf-8")
    data_dir = tmp_path / "data"
    for args in (["serve", "--config", str(path), "--data-dir", str(data_dir), "--port", "0"],
                 ["check-config", str(path)]):
        result = run_cli(*args, check=False)
        assert result.returncode == 2, result
        assert result.stderr.splitlines()[0] == f"counter-server: {path}: {key}: {says}"
        assert len(result.stderr.splitlines()) <= 2 and result.stdout == ""
    assert not data_dir.exists()


def test_several_mistakes_are_named_on_a_second_line(tmp_path: Path):
    path = tmp_path / "scenario.toml"
    path.write_text(builtin_text().replace('opens = "09:30"', 'opnes = "08:00"')
                    .replace("knee = 4", "kne = 4").replace("senior = 10", "senior = -5"), "utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    first, second = str(err.value).splitlines()
    assert first == f"{path}: hours.opnes: unknown key; did you mean hours.opens?"
    assert "2 more" in second and "queue.head_start_minutes.senior" in second and "billing.simulator.kne" in second


def test_check_config_prints_what_the_scenario_resolves_to():
    scenario = load_scenario(LAKESIDE)
    result = run_cli("check-config", str(LAKESIDE))
    out = result.stdout
    assert result.returncode == 0 and result.stderr == ""
    assert out.startswith(f"{LAKESIDE}: valid: {scenario.name!r}, time zone {scenario.timezone.key}")
    for hall in scenario.substations.values():
        assert f"  {hall.id}: {hall.name}" in out
    for counter in scenario.counters.values():   # display names, not only ids
        assert f"    {counter.id}: {counter.label}" in out
    for service in scenario.services.values():
        assert f"  {service.id} ({service.letter}-001): {service.name}" in out
    assert "open 00:00-23:59:59; open every day of the week" in out
    paid = scenario.payment_service
    assert f"demand: paid service {paid} ({scenario.services[paid].name})" in out
    assert f"connections {scenario.demand['connections']}" in out


def test_check_config_prints_the_schema_every_key_is_checked_against():
    import json
    result = run_cli("check-config", "--schema")
    schema = json.loads(result.stdout)
    assert schema["additionalProperties"] is False
    assert {"hours", "queue", "online", "phones", "billing", "store", "demand", "services",
            "substations", "extends"} <= set(schema["properties"])
    models = schema["$defs"]
    assert all(m["additionalProperties"] is False for m in models.values())
    assert {"opens", "closes", "closed_weekdays"} <= set(models["HoursModel"]["properties"])


def test_every_knob_table_and_demand_key_is_in_the_schema():
    """The models cover every setting the server's dataclasses take (with the same defaults)
    and every [demand] key peak-sim reads, so none of them is refused as unknown."""
    from dataclasses import MISSING, fields

    from counter_server.billing.gateway import GatewaySettings
    from counter_server.billing.simulator import SimSettings
    from counter_server.config import PhonesConfig, StoreConfig
    from counter_server.scenario import schema
    from loadtests.capacity.demand import DEFAULTS, FROM_PHONES, REQUIRED

    for kind, model in [(GatewaySettings, schema.BillingModel), (SimSettings, schema.SimulatorModel),
                        (PhonesConfig, schema.PhonesModel), (StoreConfig, schema.StoreModel)]:
        defaults = model()
        for f in fields(kind):
            assert f.name in model.model_fields, (kind.__name__, f.name)
            assert f.default is MISSING or getattr(defaults, f.name) == f.default, (kind.__name__, f.name)
    read = {*REQUIRED, *DEFAULTS, *FROM_PHONES, "online_payments_per_month", "online_share",
            "substation_weights", "visits_per_day", "payment_service"}
    assert read <= set(schema.DemandModel.model_fields)


def test_ids_follow_the_apis_pattern():
    from counter_server.api.schemas import ID_PATTERN
    from counter_server.scenario import schema
    assert schema.ID_PATTERN == ID_PATTERN


def test_every_scenario_the_suites_write_loads(tmp_path: Path):
    from loadtests.peak_load import rehearsal_scenario
    from testkit.scenarios import REDIS_SCENARIO
    from loadtests.reliability.common import BILLING, write_scenario
    from counter_server.config import parse_scenario
    import tomllib

    redis_url = "redis://127.0.0.1:6399/7"     # none of the defaults; the scenarios are only loaded
    path = tmp_path / "s.toml"
    path.write_text(REDIS_SCENARIO.format(url=redis_url), "utf-8")
    load_scenario(path)
    # The reliability suite's, on either base, with and without Redis: the base's halls, open
    # all day every day, with the suite's billing settings.
    for base in (None, LAKESIDE):
        want = load_scenario(base)
        for url in (None, redis_url):
            written = load_scenario(write_scenario(tmp_path / "reliability.toml", url, base))
            assert written.layouts() == want.layouts() and written.payment_service == want.payment_service
            assert all(s.opens == time(0) and s.closes == time(23, 59, 59) and not s.days.closed_weekdays
                       and not s.days.holidays for s in written.substations.values())
            gateway = written.billing.gateway
            assert {k: getattr(gateway, k) for k in BILLING} == BILLING
            assert written.store.engine == ("redis" if url else "sqlite")
            assert url is None or written.store.redis_url == url
    for source in (None, OPEN_ALL_DAY, LAKESIDE):
        parse_scenario(tomllib.loads(rehearsal_scenario(source, 0.01)))


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
