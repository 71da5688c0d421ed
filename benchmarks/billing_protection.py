"""The headline: the same end-of-month peak, without and with the billing gateway.

Forty simulated counters take payments as fast as a frantic last week allows (each one every
``--think-ms`` on average, not in lockstep: each counter starts at a random moment of the first
think time, as counters do, instead of all forty opening a connection in the same millisecond),
against a billing-sim whose capacity is a tenth of that concurrency.

  * without the gateway, each counter posts straight to billing and, like a kiosk that must
    print a receipt, retries twice before giving up (a lost payment);
  * with it, each counter posts to counter-server, which acknowledges at once and forwards
    under its adaptive limit.

Prints billing crashes, billing goodput / its capacity, lost payments and the cashier's p50/p99
for the payment call side by side, and writes a PNG of billing in-flight and the gateway's
limit over time. ``--json`` prints one JSON object instead of the table.

    python -m benchmarks.billing_protection [--duration 5] [--json] [--plot billing.png]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from counter_server.config import Scenario, load_scenario
from testkit.figures import Figure, memory_mb
from testkit.processes import BillingSimProcess, ServerProcess
from testkit.scenarios import paid_service
from testkit.waiting import WaitTimedOut, wait_until_async

NAME = "billing protection"

CAPACITY, KNEE, BASE_S = 4, 2, 0.040
SIM_ARGS = ["--capacity", str(CAPACITY), "--knee", str(KNEE), "--base-latency-ms", str(BASE_S * 1000),
            "--overload-seconds", "2", "--recovery-seconds", "5"]
# The most billing-sim can post a second: n in flight, each taking base x (1 + (n - knee) / knee).
CAPACITY_PER_S = max(n / (BASE_S * (1 + max(0, n - KNEE) / KNEE)) for n in range(1, CAPACITY + 1))


@dataclass
class Run:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    lost: int = 0
    samples: list[dict] = field(default_factory=list)
    posted: int = 0
    crashes: int = 0
    busy_s: float = 0.0

    def figures(self) -> dict[str, float]:
        ordered = sorted(self.latencies_ms) or [0.0]
        return {
            "crashes": self.crashes,
            "goodput_ratio": round(self.posted / max(self.busy_s, 1e-9) / CAPACITY_PER_S, 3),
            "lost": self.lost,
            "cashier_p50_ms": round(ordered[len(ordered) // 2], 1),
            "cashier_p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
            "payments": len(self.latencies_ms),
        }


def log(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


async def sample(session: aiohttp.ClientSession, run: Run, sim: BillingSimProcess,
                 server: ServerProcess | None, started: float, stop: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {server.admin_key}"} if server else {}
    while not stop.is_set():
        point: dict = {"t": time.monotonic() - started}
        try:
            async with session.get(f"{sim.url}/stats", timeout=aiohttp.ClientTimeout(total=1)) as resp:
                stats = await resp.json()
            point.update(in_flight=stats["in_flight"], up=stats["up"], crashes=stats["crashes"])
        except (aiohttp.ClientError, asyncio.TimeoutError):
            point.update(in_flight=0, up=False)
        if server is not None:
            async with session.get(f"{server.url}/api/v1/ops/billing", headers=headers) as resp:
                billing = (await resp.json())["billing"]
            point.update(limit=billing["limit"], queued=billing["outbox"]["queued"])
        run.samples.append(point)
        await asyncio.sleep(0.1)


async def without_gateway(sim: BillingSimProcess, counters: int, duration: float, think: float,
                          quiet: bool) -> Run:
    run = Run("without gateway")
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        stop = asyncio.Event()
        started = time.monotonic()
        sampler = asyncio.create_task(sample(session, run, sim, None, started, stop))

        async def counter(n: int) -> None:
            await asyncio.sleep(think * random.random())   # counters open at their own moment
            while time.monotonic() - started < duration:
                body = {"payment_id": str(uuid.uuid4()), "account": f"21400{n:05d}", "amount_paise": 5000}
                t0 = time.perf_counter()
                for attempt in range(3):
                    try:
                        async with session.post(f"{sim.url}/payments", json=body) as resp:
                            if resp.status in (200, 201):
                                run.acknowledged.append(body["payment_id"])
                                break
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        pass
                    await asyncio.sleep(0.2)
                else:
                    run.lost += 1
                run.latencies_ms.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(think * random.uniform(0.5, 1.5))

        await asyncio.gather(*[counter(n) for n in range(counters)])
        run.busy_s = time.monotonic() - started
        stop.set()
        await sampler
        async with session.get(f"{sim.url}/stats") as resp:
            stats = await resp.json()
    run.posted, run.crashes = stats["payments_posted"], stats["crashes"]
    log(f"  without gateway: {run.posted} posted, {run.crashes} crashes, {run.lost} lost", quiet)
    return run


def paying_counters(scenario: Scenario, counters: int) -> tuple[str, list[tuple[str, str]]]:
    """The scenario's paid service and the first ``counters`` counters serving it, each with its
    hall (taken from the scenario, never by name); a scenario with fewer is refused."""
    service = paid_service(scenario)
    found = [(hall.id, counter.id) for hall in scenario.substations.values()
             for counter in hall.counters if service in counter.services]
    if len(found) < counters:
        raise SystemExit(f"--counters {counters}: the scenario has {len(found)} counters taking "
                         f"{service!r} payments")
    return service, found[:counters]


async def with_gateway(sim: BillingSimProcess, server: ServerProcess, counters: int, duration: float,
                       think: float, quiet: bool) -> Run:
    run = Run("with gateway")
    service, paying = paying_counters(load_scenario(server.config), counters)
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=0)) as session:
        tokens = []
        for hall, counter in paying:
            await session.post(f"{server.url}/api/v1/substations/{hall}/tokens", json={"service": service})
            async with session.post(f"{server.url}/api/v1/counters/{counter}/next") as resp:
                token = (await resp.json())["token"]
            await session.post(f"{server.url}/api/v1/tokens/{token['id']}/start")
            tokens.append(token["id"])
        stop = asyncio.Event()
        started = time.monotonic()
        sampler = asyncio.create_task(sample(session, run, sim, server, started, stop))

        async def counter(n: int) -> None:
            await asyncio.sleep(think * random.random())   # counters open at their own moment
            while time.monotonic() - started < duration:
                t0 = time.perf_counter()
                async with session.post(f"{server.url}/api/v1/payments", json={
                        "token_id": tokens[n], "account": f"21400{n:05d}", "amount_paise": 5000,
                        "part": True}) as resp:   # one token per counter, paying all the run
                    body = await resp.json()
                run.latencies_ms.append((time.perf_counter() - t0) * 1000)
                if resp.status == 202:
                    run.acknowledged.append(body["payment"]["id"])
                await asyncio.sleep(think * random.uniform(0.5, 1.5))

        await asyncio.gather(*[counter(n) for n in range(counters)])
        log(f"  with gateway: {len(run.acknowledged)} acknowledged; draining the outbox ...", quiet)

        async def queued() -> int:
            async with session.get(f"{server.url}/api/v1/ops/billing") as resp:
                return (await resp.json())["billing"]["outbox"]["queued"]

        with suppress(WaitTimedOut):       # what was never posted is counted as lost below
            await wait_until_async(queued, done=lambda n: n == 0, what="the outbox to drain",
                                   timeout=180, interval=0.2)
        run.busy_s = time.monotonic() - started
        stop.set()
        await sampler
        statuses = []
        for payment_id in run.acknowledged:
            async with session.get(f"{server.url}/api/v1/payments/{payment_id}") as resp:
                statuses.append((await resp.json())["payment"]["status"])
        run.lost = sum(1 for s in statuses if s != "posted")
        async with session.get(f"{sim.url}/stats") as resp:
            stats = await resp.json()
    run.posted, run.crashes = stats["payments_posted"], stats["crashes"]
    log(f"  with gateway: {run.posted} posted in {run.busy_s:.1f} s, {run.crashes} crashes, "
        f"{run.lost} lost, {stats['duplicate_payments']} duplicates", quiet)
    return run


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(11, 7), sharex=True)
    for ax, run in zip(axes, runs):
        t = [p["t"] for p in run.samples]
        ax.plot(t, [p["in_flight"] for p in run.samples], label="billing requests in flight", color="tab:blue")
        if any("limit" in p for p in run.samples):
            ax.plot(t, [p.get("limit", 0) for p in run.samples], label="gateway concurrency limit",
                    color="tab:green", linewidth=2)
        ax.axhline(4, color="tab:red", linestyle="--", label="billing capacity (4)")
        down = [p["t"] for p in run.samples if not p["up"]]
        for x in down:
            ax.axvspan(x - 0.05, x + 0.05, color="tab:red", alpha=0.15, linewidth=0)
        figures = run.figures()
        ax.set_title(f"{run.name}: {figures['crashes']} crashes, goodput {figures['goodput_ratio']:.0%} "
                     f"of capacity, {figures['lost']} lost, cashier p99 {figures['cashier_p99_ms']:.0f} ms"
                     + ("  (red: billing down)" if down else ""))
        ax.set_ylabel("requests")
        ax.legend(loc="upper right")
    axes[-1].set_xlabel("seconds since the peak began")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def compare(counters: int = 40, duration: float = 5.0, think: float = 0.1,
                  quiet: bool = False) -> tuple[list[Run], float]:
    """The same peak without and then with the gateway; the runs and the server's peak RSS."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        log(f"peak: {counters} counters, one payment each per {think * 1000:.0f} ms, "
            f"{duration:g} s; billing capacity {CAPACITY} concurrent, at most {CAPACITY_PER_S:.0f}/s",
            quiet)
        sim = BillingSimProcess(journal=Path(tmp) / "a.jsonl", args=SIM_ARGS)
        sim.start()
        try:
            runs.append(await without_gateway(sim, counters, duration, think, quiet))
        finally:
            sim.stop()
        sim = BillingSimProcess(journal=Path(tmp) / "b.jsonl", args=SIM_ARGS)
        sim.start()
        server = ServerProcess(data_dir=Path(tmp) / "data",
                               extra_args=["--rate-limit", "0", "--billing-url", sim.url])
        server.start()
        try:
            runs.append(await with_gateway(sim, server, counters, duration, think, quiet))
            _, peak_mb = memory_mb(server.proc.pid)
        finally:
            server.stop()
            sim.stop()
    return runs, peak_mb


async def measure(duration: float = 5.0, plot_path: Path | None = None) -> list[Figure]:
    runs, peak = await compare(duration=duration)
    if plot_path is not None:
        plot(runs, plot_path)
    without, with_ = (r.figures() for r in runs)
    return [
        Figure(NAME, "billing crashes, with gateway", with_["crashes"],
               f"(without: {without['crashes']})", "0", with_["crashes"] == 0, peak),
        Figure(NAME, "billing goodput / capacity, with gateway", with_["goodput_ratio"],
               f"(without: {without['goodput_ratio']:.2f})", "", None, peak),
        Figure(NAME, "payments lost, with gateway", with_["lost"], f"(without: {without['lost']})",
               "0", with_["lost"] == 0, peak),
        Figure(NAME, "cashier p99, payment call", with_["cashier_p99_ms"],
               f"ms (without: {without['cashier_p99_ms']:,.0f} ms)", "< 50 ms",
               with_["cashier_p99_ms"] < 50, peak),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counters", type=int, default=40)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of peak load")
    parser.add_argument("--think-ms", type=float, default=100.0)
    parser.add_argument("--plot", type=Path, default=Path("billing-protection.png"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs, _ = await compare(args.counters, args.duration, args.think_ms / 1000, args.json)
    plot(runs, args.plot)
    without, with_ = (r.figures() for r in runs)
    if args.json:
        keys = ("crashes", "goodput_ratio", "lost", "cashier_p99_ms")
        print(json.dumps({"with_gateway": {k: with_[k] for k in keys},
                          "without_gateway": {k: without[k] for k in keys}}))
        return
    print(f"\n{'':<28}{'without gateway':>18}{'with gateway':>16}")
    for key, label in (("crashes", "billing crashes"), ("goodput_ratio", "goodput / capacity"),
                       ("lost", "payments lost"), ("cashier_p50_ms", "cashier p50 ms"),
                       ("cashier_p99_ms", "cashier p99 ms"), ("payments", "payments taken")):
        print(f"{label:<28}{without[key]:>18}{with_[key]:>16}")
    print(f"\nplot: {args.plot.resolve()}")


if __name__ == "__main__":
    asyncio.run(main())
