"""``peak-load``: rehearse the last week of the month on this machine, then read the report.

Starts billing-sim and counter-server on loopback ports with a fresh data dir, runs locust
headless for ``--duration`` seconds with the chosen shape, waits for the payment outbox to
drain, and writes into ``--out``: locust's CSV and HTML report, billing-sim's stats, the
gateway's concurrency limit over time (CSV and PNG), and summary.md with pass/fail against
the targets. Everything runs on 127.0.0.1 and stops by itself.

    peak-load --shape end-of-month|stress --duration 60 --out peak-report [--config F]

The server runs the scenario (``--config``, default the built-in one) open all day, with every
service time scaled by ``--time-scale`` (0.01: a 90 s payment takes 0.9 s), so its estimator
learns what the simulated cashiers really do. Each token's estimate at issue is kept and, once
it is called, compared: summary.md and the output carry ``estimate coverage: p50 N %, p90 N %``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from counter_server.config import load_scenario
from testkit.processes import free_port, wait_for_port
from testkit.scenarios import open_all_day, scenario_data, to_toml
from testkit.waiting import WaitTimedOut, wait_until

if TYPE_CHECKING:   # imported where used: it needs numpy, one of the load tools checked first
    from loadtests.capacity.coverage import Coverage

IDLE_POLL_S = 0.2   # a rehearsal counter with nobody to call asks again after this


@dataclass(frozen=True)
class Targets:
    p99_ms: float = 500.0          # every HTTP route the counters and arrivals use
    failure_ratio: float = 0.01
    billing_crashes: int = 0
    lost_payments: int = 0


def rehearsal_scenario(config: Path | None, time_scale: float) -> str:
    """The scenario as TOML, open all day every day, its service times scaled by ``time_scale``."""
    data = open_all_day(scenario_data(config))
    for service in data.get("services", []):
        for key in ("mean_service_s", "min_service_s", "max_service_s"):
            if key in service:
                service[key] = service[key] * time_scale
    return to_toml(data)


def estimate_coverage(tokens: Sequence[Mapping[str, Any]], ended: float, grace_s: float) -> Coverage:
    """The share of tokens called within the p50 and p90 given at issue. A token told a free
    counter would call it at once (p50 0) gets ``grace_s`` more, the rehearsal cashiers' reaction
    time: an idle counter asks again after it. A token that waited for a busy counter gets none:
    the counter calls the next one the moment it completes, so a grace would only flatter the
    estimate. A token still waiting at the end counts as a miss of each figure already passed
    then; else it is left out."""
    from loadtests.capacity.coverage import Coverage

    counted = within50 = within90 = 0
    for token in tokens:
        issued, p50, p90, called = token["issued"], token["p50_s"], token["p90_s"], token["called"]
        grace = grace_s if p50 == 0 else 0.0
        if called is None:
            if ended - issued <= p90 + grace:
                continue
            waited = ended - issued
        else:
            waited = called - issued
        counted += 1
        within50 += waited <= p50 + grace
        within90 += waited <= p90 + grace
    return Coverage(counted, within50, within90)


# The load extra (setup.cfg [options.extras_require] load): module to look for, package to name.
LOAD_TOOLS = (("websocket", "websocket-client"), ("matplotlib", "matplotlib"), ("numpy", "numpy"))
LOAD_INSTALL = "pip install '.[load]'"


def missing_load_tools() -> list[str]:
    """The load extra's packages this Python lacks. locust is asked to run as peak-load will run
    it (``python -m locust``), in a child process: importing it here would let gevent patch
    this process's threads and sockets."""
    missing = []
    try:
        probe = subprocess.run([sys.executable, "-m", "locust", "--version"], capture_output=True,
                               timeout=120, check=False)
        if probe.returncode != 0:
            missing.append("locust")
    except (OSError, subprocess.TimeoutExpired):
        missing.append("locust")
    for module, package in LOAD_TOOLS:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(package)
    return missing


def wait_for(port: int, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    """Until ``proc`` listens; peak-load stops, saying which process did not start, if not."""
    try:
        wait_for_port(port, proc, what, timeout)
    except (RuntimeError, WaitTimedOut) as exc:
        raise SystemExit(f"peak-load: {exc}") from exc


def get_json(url: str, key: str | None = None) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.load(resp)


class LimitRecorder(threading.Thread):
    """Samples the gateway's limit, in flight and outbox twice a second while the run lasts."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.rows: list[dict] = []
        self.stop = threading.Event()
        self.started = time.monotonic()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                billing = get_json(f"{self.url}/api/v1/ops/billing", self.key)["billing"]
                self.rows.append({"t": round(time.monotonic() - self.started, 2), "limit": billing["limit"],
                                  "in_flight": billing["in_flight"], "queued": billing["outbox"]["queued"],
                                  "breaker": billing["breaker"]["state"]})
            except OSError:
                pass
            self.stop.wait(0.5)


def plot_limit(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    t = [r["t"] for r in rows]
    top.plot(t, [r["limit"] for r in rows], label="concurrency limit", color="tab:green", linewidth=2)
    top.plot(t, [r["in_flight"] for r in rows], label="billing calls in flight", color="tab:blue")
    top.set_ylabel("calls")
    top.set_title("Billing gateway during the rehearsal")
    top.legend(loc="upper right")
    bottom.plot(t, [r["queued"] for r in rows], color="tab:orange")
    bottom.set_ylabel("payments queued")
    bottom.set_xlabel("seconds since the run began")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def read_locust_stats(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def summarise(stats: list[dict], billing: dict, outbox: dict, targets: Targets,
              shape: str, duration: float, coverage: Coverage | None = None) -> tuple[str, bool]:
    """summary.md and whether every target passed."""
    total = next(row for row in stats if row["Name"] == "Aggregated")
    http = [row for row in stats if row["Type"] in ("POST", "GET") and row["Name"] != "Aggregated"]
    worst_p99 = max((float(row["99%"]) for row in http), default=0.0)
    requests = int(total["Request Count"])
    failures = int(total["Failure Count"])
    ratio = failures / requests if requests else 1.0
    lost = outbox.get("queued", 0) + outbox.get("failed", 0)
    checks = [
        ("worst HTTP p99", f"{worst_p99:.0f} ms", f"< {targets.p99_ms:.0f} ms", worst_p99 < targets.p99_ms),
        ("failures", f"{failures} of {requests} ({ratio:.2%})", f"< {targets.failure_ratio:.0%}",
         ratio < targets.failure_ratio),
        ("billing crashes", str(billing.get("crashes")), f"= {targets.billing_crashes}",
         billing.get("crashes") == targets.billing_crashes),
        ("payments lost (not posted after draining)", str(lost), f"= {targets.lost_payments}",
         lost == targets.lost_payments),
    ]
    passed = all(ok for *_, ok in checks)
    lines = [f"# Peak-load rehearsal: {shape}, {duration:g} s", "",
             f"**{'PASS' if passed else 'FAIL'}**", "", "| check | measured | target | |", "|---|---|---|---|"]
    lines += [f"| {name} | {value} | {target} | {'pass' if ok else 'FAIL'} |" for name, value, target, ok in checks]
    lines += ["", "| route | requests | failures | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {row['Type']} {row['Name']} | {row['Request Count']} | {row['Failure Count']} | "
              f"{row['50%']} | {row['99%']} |" for row in stats if row["Name"] != "Aggregated"]
    lines += ["", f"Billing: {billing.get('payments_posted')} payments posted, "
              f"{billing.get('duplicate_payments')} duplicates, max {billing.get('max_in_flight')} in flight "
              f"(capacity {billing.get('capacity')}).",
              f"Outbox after draining: {outbox}.", ""]
    if coverage is not None:
        lines += [coverage.line(), "",
                  f"Of {coverage.tokens} tokens decided (called, or still waiting past their p90), "
                  "the share called within the p50 and the p90 they were given when issued "
                  "(target: p50 40-60 %, p90 85-95 %).", ""]
    lines += [
              "Files: locust.html (open in a browser), locust_stats.csv, billing-stats.json, "
              "gateway-limit.csv, gateway-limit.png."]
    return "\n".join(lines) + "\n", passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="peak-load", description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=["end-of-month", "stress"], default="end-of-month")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (at most 600)")
    parser.add_argument("--arrivals", type=int, default=20, help="arriving users at the peak")
    parser.add_argument("--boards", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("peak-report"))
    parser.add_argument("--config", type=Path, default=None, help="scenario TOML (default: built-in)")
    parser.add_argument("--time-scale", type=float, default=0.01,
                        help="service times are scaled by this (default: %(default)s)")
    args = parser.parse_args(argv)
    missing = missing_load_tools()   # before anything starts or is written
    if missing:
        print(f"peak-load: the load tools are not installed (missing: {', '.join(missing)}); "
              f"install them with {LOAD_INSTALL} from the project's folder", file=sys.stderr)
        return 2
    duration = min(args.duration, 600.0)
    args.out.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        config = Path(tmp) / "rehearsal.toml"
        config.write_text(rehearsal_scenario(args.config, args.time_scale), encoding="utf-8")
        scenario = load_scenario(config)
        if scenario.payment_service is None:
            raise SystemExit("peak-load: the scenario's [demand] names no payment_service "
                             "(the service that takes a payment); add it")
        given = Path(tmp) / "coverage.json"
        sim_port, port = free_port(), free_port()
        sim = subprocess.Popen([sys.executable, "-m", "counter_server.billing.simulator", "--port", str(sim_port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = subprocess.Popen(
            [sys.executable, "-m", "counter_server", "serve", "--data-dir", str(data), "--port", str(port),
             "--config", str(config), "--rate-limit", "0", "--billing-url", f"http://127.0.0.1:{sim_port}"],
            stdout=(args.out / "server.log").open("w"), stderr=subprocess.STDOUT)
        recorder = None
        try:
            wait_for(sim_port, sim, "billing-sim")
            wait_for(port, server, "counter-server")
            url = f"http://127.0.0.1:{port}"
            key = (data / "admin.key").read_text().strip()
            recorder = LimitRecorder(url, key)
            recorder.start()
            env = {**os.environ, "PEAK_ADMIN_KEY": key, "PEAK_SHAPE": args.shape, "PEAK_DURATION": str(duration),
                   "PEAK_ARRIVALS": str(args.arrivals), "PEAK_BOARDS": str(args.boards),
                   "PEAK_CONFIG": str(config), "PEAK_COVERAGE": str(given)}
            print(f"peak-load: {args.shape} for {duration:g} s against {url} (billing-sim on {sim_port}) ...",
                  flush=True)
            subprocess.run(
                [sys.executable, "-m", "locust", "-f", str(here / "locustfile.py"), "--headless", "--host", url,
                 "--run-time", f"{int(duration) + 5}s", "--csv", str(args.out / "locust"),
                 "--html", str(args.out / "locust.html"), "--only-summary", "--stop-timeout", "5"],
                env=env, timeout=duration + 120, check=False)
            print("peak-load: load over; draining the payment outbox ...", flush=True)
            try:
                outbox = wait_until(lambda: get_json(f"{url}/api/v1/ops/billing", key)["billing"]["outbox"],
                                    done=lambda found: found["queued"] == 0, what="the outbox to drain",
                                    timeout=120, interval=0.5)
            except WaitTimedOut as timed_out:     # the report says what is left unposted
                outbox = timed_out.last
            billing = get_json(f"http://127.0.0.1:{sim_port}/stats")
            recorded = json.loads(given.read_text()) if given.exists() else {"ended": 0, "tokens": []}
        finally:
            if recorder is not None:
                recorder.stop.set()
            for proc in (server, sim):
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    (args.out / "billing-stats.json").write_text(json.dumps(billing, indent=2))
    with (args.out / "gateway-limit.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["t", "limit", "in_flight", "queued", "breaker"])
        writer.writeheader()
        writer.writerows(recorder.rows)
    plot_limit(recorder.rows, args.out / "gateway-limit.png")
    coverage = estimate_coverage(recorded["tokens"], recorded["ended"], IDLE_POLL_S)
    summary, passed = summarise(read_locust_stats(args.out / "locust_stats.csv"), billing, outbox, Targets(),
                                args.shape, duration, coverage)
    (args.out / "summary.md").write_text(summary)
    print(summary)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
