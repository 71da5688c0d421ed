"""An operator's ordinary mistakes are refused early, in one or two lines, before anything is
written: a second server on a served data dir, a port in use, a data dir with a missing parent,
a mistyped option or command, peak-load without its tools, a peak-sim --days the month lacks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from counter_server import cli
from counter_server.config import load_scenario
from loadtests.capacity import cli as peak_sim
from loadtests.capacity.demand import demand_from_scenario

from testkit.processes import ROOT, RedisProcess, ServerProcess, free_port, run_cli
from testkit.scenarios import OPEN_ALL_DAY, REDIS_SCENARIO, paid_service


def _issue(server: ServerProcess) -> str:
    """Issue a token for the scenario's paid service at its first hall offering it; its number."""
    scenario = load_scenario(server.config)
    service = paid_service(scenario)
    hall = next(s.id for s in scenario.substations.values() if service in s.services)
    request = urllib.request.Request(
        f"{server.url}/api/v1/substations/{hall}/tokens", method="POST",
        data=json.dumps({"service": service, "priority": "normal"}).encode(),
        headers={"Authorization": f"Bearer {server.admin_key}", "Content-Type": "application/json",
                 "Idempotency-Key": os.urandom(8).hex()})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 201
        return json.load(resp)["token"]["number"]


def _serve(data_dir: Path, *extra: str, port: int | None = None) -> subprocess.CompletedProcess:
    return run_cli("serve", "--data-dir", str(data_dir), "--port", str(port or free_port()),
                   "--config", str(OPEN_ALL_DAY), *extra, check=False)


def _written(data_dir: Path) -> dict[str, bytes]:
    """What a refusal must leave as it was: every file's name and its bytes (not the WAL's)."""
    return {p.name: p.read_bytes() for p in data_dir.iterdir() if not p.name.startswith("counter.db")}


def _one_or_two_lines(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert 1 <= len(result.stderr.strip().splitlines()) <= 2, result.stderr
    return result.stderr


def _serial(number: str) -> int:
    return int(number.rsplit("-", 1)[1])


def test_a_second_server_on_a_served_data_dir_is_refused_even_after_kill_9(tmp_path: Path):
    data = tmp_path / "data"
    first = ServerProcess(data_dir=data)
    second = ServerProcess(data_dir=data)
    try:
        first.start()
        assert f"new data dir {data}, no tokens yet" in first.log_path.read_text()
        before = _issue(first)
        written = _written(data)

        said = _one_or_two_lines(_serve(data))
        assert str(data) in said and f"pid {first.proc.pid}" in said and first.url in said
        assert _written(data) == written                      # the refusal wrote nothing
        assert first.proc.poll() is None                      # and the first serves on, untouched
        assert _serial(_issue(first)) == _serial(before) + 1

        # keys and report still work beside the running server
        board = run_cli("keys", "create", "--data-dir", str(data), "--config", str(OPEN_ALL_DAY),
                        "--role", "board")
        assert board.stdout.startswith("ccq_")
        assert "board" in run_cli("keys", "list", "--data-dir", str(data)).stdout
        report = run_cli("report", "--data-dir", str(data), "--config", str(OPEN_ALL_DAY), "--format", "json")
        assert json.loads(report.stdout)

        first.kill()                     # SIGKILL: no clean-up; the kernel drops the lock
        second.start()
        log = second.log_path.read_text()
        assert "new data dir" not in log and "no tokens yet" not in log
        assert _serial(_issue(second)) == _serial(before) + 2  # resumes: no number used twice

        said = _one_or_two_lines(_serve(data, port=second.port))   # its port too: the data dir is named
        assert f"pid {second.proc.pid}" in said and "being served" in said and second.proc.poll() is None
    finally:
        first.stop()
        second.stop()


def test_redis_replicas_share_redis_not_a_data_dir_and_take_no_lock(tmp_path: Path):
    """With Redis, numbering is atomic in Redis and the data dir holds only admin.key: two
    replicas given one data dir both serve, and neither number is used twice."""
    redis = RedisProcess(dir=tmp_path / "redis")
    config = tmp_path / "redis.toml"
    replicas = [ServerProcess(data_dir=tmp_path / "shared", config=config) for _ in range(2)]
    try:
        redis.start()
        config.write_text(REDIS_SCENARIO.format(url=redis.url))
        for replica in replicas:
            replica.start()
        numbers = [_issue(replica) for replica in replicas]
        assert len(set(numbers)) == 2 and all(r.proc.poll() is None for r in replicas)
        assert not (tmp_path / "shared" / "server.lock").exists()
    finally:
        for replica in replicas:
            replica.stop()
        redis.stop()


def test_a_port_in_use_is_refused_in_one_line_before_anything_is_written(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = _one_or_two_lines(_serve(tmp_path / "data", port=port))
    assert f"port {port}" in said and "--port" in said
    assert not (tmp_path / "data").exists()                  # no data dir, no admin key
    assert "SIMULATED" not in said                           # no billing server started


def test_a_data_dir_whose_parent_is_missing_is_refused(tmp_path: Path):
    data = tmp_path / "typo" / "data"
    said = _one_or_two_lines(_serve(data))
    assert f"{tmp_path / 'typo'} does not exist" in said
    said = _one_or_two_lines(run_cli("keys", "create", "--data-dir", str(data), "--role", "admin",
                                     check=False))
    assert str(tmp_path / "typo") in said
    assert list(tmp_path.iterdir()) == []


def test_keys_list_on_a_data_dir_with_no_data_writes_nothing(tmp_path: Path):
    said = _one_or_two_lines(run_cli("keys", "list", "--data-dir", str(tmp_path / "data"), check=False))
    assert f"no data in {tmp_path / 'data'}" in said and not (tmp_path / "data").exists()


def _refused(capsys: pytest.CaptureFixture, *argv: str) -> str:
    with pytest.raises(SystemExit) as stop:
        cli.main(list(argv))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert 1 <= len(err.strip().splitlines()) <= 2, err
    return err


def test_each_subcommand_answers_a_mistyped_option_with_its_own_usage(capsys):
    err = _refused(capsys, "serve", "--prot", "1")
    assert err.startswith("usage: counter-server serve") and "did you mean --port?" in err
    err = _refused(capsys, "--prot", "1")                     # plain options serve
    assert err.startswith("usage: counter-server serve") and "--prot" in err
    err = _refused(capsys, "keys", "create", "--role", "board", "--lable", "hall 1")
    assert err.startswith("usage: counter-server keys create") and "did you mean --label?" in err
    err = _refused(capsys, "report", "--format", "pdf")
    assert err.startswith("usage: counter-server report") and "pdf" in err
    err = _refused(capsys, "keys")
    assert "counter-server keys" in err and "create" in err
    err = _refused(capsys, "serve", "--port", "70000")
    assert err.startswith("usage: counter-server serve") and "port 70000 is out of range" in err


def test_an_unknown_command_names_the_commands_there_are(capsys):
    err = _refused(capsys, "frobnicate")
    assert "unknown command 'frobnicate'" in err and "unrecognized" not in err
    commands = next(a for a in cli.build_parser()._actions if a.choices and "serve" in a.choices).choices
    assert all(name in err for name in commands)
    assert "did you mean serve?" in _refused(capsys, "sevre")


def test_peak_load_without_locust_says_how_to_install_it_before_starting_anything(tmp_path: Path):
    hidden = tmp_path / "no-locust"
    hidden.mkdir()
    (hidden / "locust.py").write_text("raise ImportError('No module named locust (hidden by the test)')\n")
    out = tmp_path / "report"
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(hidden), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "loadtests.peak_load", "--duration", "1", "--out", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    said = _one_or_two_lines(result)
    assert "locust" in said and "pip install '.[load]'" in said
    assert not out.exists()                                   # nothing started, nothing written


@pytest.mark.parametrize("beyond", [True, False], ids=["past-the-month", "zero"])
def test_peak_sim_days_the_month_lacks_says_what_it_counts_and_how_to_change_it(
        tmp_path: Path, scenario_file: Path, capsys, beyond: bool):
    month = demand_from_scenario(load_scenario(scenario_file)).working_days
    days = month + 4 if beyond else 0
    out = tmp_path / "out"
    assert peak_sim.main(["--config", str(scenario_file), "--days", str(days), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"--days {days}" in err and "working days back from the month's end" in err
    assert f"the month has {month}" in err and f"--days 1 to {month}" in err
    if days > month:
        assert f"--working-days {days}" in err
    assert not out.exists()
