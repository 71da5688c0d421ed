"""The figures benchmarks and the reliability suite print: percentiles, a server's memory and
CPU, and the one-table report."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    """One measured figure, its target when the issue sets one, and the server's peak RSS
    (VmHWM) in the run that measured it."""

    benchmark: str
    name: str
    value: float
    unit: str = ""
    target: str = ""
    met: bool | None = None
    peak_rss_mb: float | None = None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def memory_mb(pid: int) -> tuple[float, float]:
    """A process's resident memory now (VmRSS) and at its peak (VmHWM), in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def thread_cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds (user and system) a process has used so far: its main thread, which runs the
    event loop, and its other threads together (the store's writer and readers). Read from
    ``/proc``, so the split is the kernel's count, not a profiler's sampling."""
    main = others = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:     # the thread ended between the listing and the read
            continue
        after_name = stat.rsplit(")", 1)[1].split()   # fields 3 onwards; utime is field 14
        used = (int(after_name[11]) + int(after_name[12])) / os.sysconf("SC_CLK_TCK")
        if int(task.name) == pid:
            main += used
        else:
            others += used
    return main, others


def progress(text: str) -> None:
    """Long runs say what they are doing, on stderr, so the table on stdout stays clean."""
    print(text, file=sys.stderr, flush=True)


def format_value(figure: Figure) -> str:
    value = figure.value
    text = f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.2f}"
    return f"{text} {figure.unit}".strip()


def print_table(figures: list[Figure]) -> None:
    """One table: benchmark, figure, value, target and whether it is met, server peak RSS."""
    header = ("benchmark", "figure", "value", "target", "met", "server peak RSS")
    rows = [(f.benchmark, f.name, format_value(f), f.target,
             "" if f.met is None else ("yes" if f.met else "NO"),
             "" if f.peak_rss_mb is None else f"{f.peak_rss_mb:.0f} MB") for f in figures]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("{:<%d}" % w if i < 2 else "{:>%d}" % w for i, w in enumerate(widths))
    print(line.format(*header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))
