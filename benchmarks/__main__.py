"""Every benchmark in one run, one table: token issue, live fan-out, billing protection, the
Redis engine and its replicas, a simulated month, the wait estimate's cost, and the unit costs
the scaling sheet uses.

Each figure sits beside its target (where the issues set one) and the server's peak RSS in
the run that measured it. Progress goes to stderr; the table to stdout. Everything runs on
loopback and stops by itself (about four minutes; ``--quick`` takes about one). Token issue is
driven by wrk: ``apt-get install -y wrk`` first.

    python -m benchmarks [--quick] [--plot billing-protection.png]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks import (billing_protection, estimate_cost, live_fanout, peak_sim, replicas, token_latency,
                        unit_costs)
from counter_server.config import load_scenario
from testkit.figures import Figure, print_table, progress


async def run_all(quick: bool, plot: Path | None) -> list[Figure]:
    runs: list[tuple[str, Callable[[], Awaitable[list[Figure]] | list[Figure]]]] = [
        (token_latency.NAME, lambda: token_latency.measure(
            seconds=3 if quick else 10, rounds=1 if quick else 3, rate_seconds=3 if quick else 10,
            sequential_pairs=100 if quick else 500)),
        (live_fanout.NAME, lambda: live_fanout.measure(
            [100, 2000] if quick else [100, 500, 2000], deltas=5 if quick else 20,
            connections=None if quick else 10_000)),
        (billing_protection.NAME, lambda: billing_protection.measure(duration=2 if quick else 5,
                                                                     plot_path=plot)),
        (replicas.NAME, lambda: replicas.measure(seconds=2 if quick else 5)),
        (peak_sim.NAME, lambda: peak_sim.measure(runs=1 if quick else 3)),
        (estimate_cost.NAME, lambda: estimate_cost.measure(load_scenario(None), rounds=50 if quick else 200)),
        (unit_costs.NAME, lambda: unit_costs.measure(tokens=500 if quick else 2000,
                                                     connections=200 if quick else 1000)),
    ]
    figures: list[Figure] = []
    for name, run in runs:
        # One benchmark that fails costs its own figures only: the others' are printed.
        try:
            measured = run()
            figures += await measured if inspect.isawaitable(measured) else measured
        except Exception as exc:  # noqa: BLE001 - reported in the table and on stderr
            progress(f"{name}: FAILED: {exc!r}")
            figures.append(Figure(name, f"did not finish: {type(exc).__name__}", float("nan"),
                                  target="runs", met=False))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    parser.add_argument("--plot", type=Path, default=Path("billing-protection.png"),
                        help="where to write the billing protection plot")
    args = parser.parse_args()
    started = time.monotonic()
    figures = asyncio.run(run_all(args.quick, args.plot))
    progress(f"all benchmarks done in {time.monotonic() - started:.0f} s; plot: {args.plot.resolve()}")
    print_table(figures)
    missed = [f for f in figures if f.met is False]
    if missed:
        print(f"\n{len(missed)} target(s) missed: " + "; ".join(f"{f.benchmark}: {f.name}" for f in missed))


if __name__ == "__main__":
    main()
