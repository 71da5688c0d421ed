"""The server raises its own open-files limit (one socket per live board or phone) as far as the
hard limit lets it, and says so at start when that is short of what it is configured to want.

Limits are set in child processes only: a lowered hard limit cannot be raised again."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from counter_server.config import Settings
from testkit.processes import ROOT, free_port, wait_for_port

RAISE = ("import resource, sys; from counter_server.listen import raise_open_files; "
         "said = raise_open_files(int(sys.argv[1])); "
         "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0]); print(said)")


def _limited(soft: int, hard: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _raise_in_child(soft: int, hard: int, wanted: int) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-c", RAISE, str(wanted)], capture_output=True, text=True,
                          check=True, preexec_fn=_limited(soft, hard), timeout=30)
    now, said = done.stdout.splitlines()
    return int(now), said


def test_the_soft_limit_is_raised_to_what_is_wanted_when_the_hard_limit_allows():
    assert _raise_in_child(256, 4096, 2048) == (2048, "None")


def test_a_hard_limit_below_what_is_wanted_is_reached_and_named():
    now, said = _raise_in_child(256, 900, 2048)
    assert now == 900
    assert "open files limited to 900 (wanted 2048" in said


def test_a_limit_already_high_enough_is_left_as_it_is():
    assert _raise_in_child(4096, 4096, 2048) == (4096, "None")


def test_the_default_wants_room_for_ten_thousand_connections_and_the_database():
    assert Settings().open_files > 10_000


def test_serve_says_in_one_line_at_start_when_the_hard_limit_is_short(tmp_path: Path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "counter_server", "serve", "--data-dir", str(tmp_path / "data"),
                             "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_limited(700, 800))
    try:
        wait_for_port(port, proc, "counter-server")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    said = [line for line in out.splitlines() if "open files" in line]
    assert said == [f"counter-server: open files limited to 800 (wanted {Settings().open_files}; the hard "
                    "limit is 800): fewer live boards and phones can connect; raise it with ulimit -Hn "
                    "or the service's LimitNOFILE"]
