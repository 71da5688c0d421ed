"""``python -m loadtests.reliability [--rounds N] [--bad-inputs N] [--soak-s S] [--quick] [--scenario FILE]``

Runs the whole suite against real processes on loopback (server, billing-sim, redis-server) on
a scenario (default: the built-in one), taking its halls, counters and paid service from it,
says what it does on stderr, and prints one table and, as its last line,
``rounds=N kills=N acknowledged=N lost=N duplicated=N bad_inputs=N 5xx=N`` on stdout.
Exits 1 when any figure misses its target or anything was lost, duplicated or answered 5xx.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from counter_server.config import ScenarioError
from testkit.figures import print_table, progress
from testkit.processes import ServerProcess

from . import access, badinput, crash, limits, soak
from .common import NotInScenario, PartTally, Places, make_keys, write_scenario


def bad_input_part(workdir: Path, total: int, tally: PartTally, scenario: Path | None = None) -> None:
    config = write_scenario(workdir / "badinput.toml", base=scenario)
    at = Places.load(config)
    server = ServerProcess(data_dir=workdir / "badinput-data", config=config)
    server.start()
    try:
        cashier, board = asyncio.run(make_keys(server.data_dir, [("cashier", at.counters[0]), ("board", None)],
                                               config))
        badinput.run(server.url, {"admin": server.admin_key, "cashier": cashier, "board": board}, total, tally, at)
        if server.proc.poll() is not None:
            tally.problem("bad input: the server died")
            tally.five_xx += 1
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.reliability", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="SIGKILL rounds of the server on SQLite")
    parser.add_argument("--bad-inputs", type=int, default=5000, help="bad inputs to send, at least")
    parser.add_argument("--soak-s", type=float, default=600.0, help="seconds of steady load for the soak")
    parser.add_argument("--websockets", type=int, default=1000, help="WebSockets that never read")
    parser.add_argument("--quick", action="store_true", help="3 rounds, 500 bad inputs, 30 s soak, 200 sockets")
    parser.add_argument("--only", nargs="+", choices=["crash", "billing", "scaled", "badinput", "access",
                                                      "limits", "soak"], help="run only these parts")
    parser.add_argument("--workdir", type=Path, help="keep data and logs here (default: a temporary dir)")
    parser.add_argument("--scenario", type=Path, metavar="FILE",
                        help="the scenario file to run on (default: the built-in one), open all day")
    args = parser.parse_args(argv)
    try:
        Places.load(args.scenario)
    except (ScenarioError, NotInScenario) as exc:
        print(f"{parser.prog}: --scenario {args.scenario}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    scenario = args.scenario
    if args.quick:
        args.rounds, args.bad_inputs, args.soak_s, args.websockets = 3, 500, 30.0, 200
    parts = set(args.only or ["crash", "billing", "scaled", "badinput", "access", "limits", "soak"])
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="reliability-"))
    workdir.mkdir(parents=True, exist_ok=True)
    tally = PartTally()
    started = time.monotonic()
    steps = [
        ("crash", f"crash: {args.rounds} SIGKILL rounds of the server (SQLite)",
         lambda: asyncio.run(crash.sqlite_rounds(workdir, args.rounds, tally, scenario=scenario))),
        ("billing", "crash: billing-sim and then the server SIGKILLed",
         lambda: asyncio.run(crash.billing_round(workdir, tally, scenario=scenario))),
        ("scaled", "crash: a replica and Redis SIGKILLed (scaled mode)",
         lambda: asyncio.run(crash.scaled_round(workdir, tally, scenario=scenario))),
        ("badinput", f"bad input: {args.bad_inputs} requests and frames",
         lambda: bad_input_part(workdir, args.bad_inputs, tally, scenario)),
        ("access", "access: roles, keys, CSRF, headers",
         lambda: asyncio.run(access.run(workdir, tally, scenario=scenario))),
        ("limits", "limits: flood, slow clients, never-reading WebSockets",
         lambda: asyncio.run(limits.run(workdir, tally, websockets=args.websockets, scenario=scenario))),
        ("soak", f"soak: {args.soak_s:g} s of steady load",
         lambda: asyncio.run(soak.run(workdir, args.soak_s, tally, scenario=scenario))),
    ]
    try:
        for name, title, step in steps:
            if name in parts:
                progress(f"{title} ...")
                try:
                    step()
                except Exception as exc:  # noqa: BLE001 - one part failing must not hide the others
                    tally.problem(f"{name}: the part failed to run: {exc!r}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    progress(f"done in {time.monotonic() - started:.0f} s")
    print_table(tally.figures)
    if tally.problems:
        print(f"\nproblems ({len(tally.problems)}):")
        for problem in tally.problems:
            print(f"- {problem}")
    print()
    print(tally.last_line())
    missed = [f for f in tally.figures if f.met is False]
    bad = tally.lost or tally.duplicated or tally.five_xx or missed or tally.problems
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
