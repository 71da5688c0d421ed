"""A month simulated with ``peak-sim``'s defaults (every policy and what-if), timed as a whole
process: the target is under 10 s on a 2-core machine.

    python -m benchmarks.peak_sim [--runs 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testkit.figures import Figure, percentile, print_table, progress

NAME = "peak-sim"
TARGET_S = 10.0


def measure(runs: int = 3) -> list[Figure]:
    """The median wall time of ``runs`` runs of ``peak-sim`` with its defaults."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            progress(f"{NAME}: run {run + 1}/{runs} of a month with every policy and what-if ...")
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "loadtests.capacity", "--out", str(Path(tmp) / str(run))],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - started)
    median = percentile(times, 0.5)
    return [Figure(NAME, "a month, defaults, wall time (median)", median, "s", f"< {TARGET_S:g}",
                   median < TARGET_S)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    print_table(measure(parser.parse_args().runs))


if __name__ == "__main__":
    main()
