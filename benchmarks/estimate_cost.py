"""What one run of the wait estimator costs, against the estimator it replaced.

The estimate of every waiting token (and of a new token per service) is computed on every
change to a hall, so its cost is paid on every issue, call and completion. This builds one hall
of the scenario (its busiest layout: the most counters) with 50, 200 and 500 tokens waiting, its
services mixed as the peak tools mix them (the paid service 8 to 1), half its counters busy, and
times:

* the call-order run (``SubstationQueue.call_plan``): every waiting token's estimate made and
  a new token's per service, as a queue snapshot, boards, phones and the door read them;
* the same-service estimator it replaced (kept here as the baseline): each token counts the
  tokens of its own service ahead and the counters serving it, as if they served nothing else.

Then the same hall with a line of the paid service alone (50, 500 and 3,000 waiting, as at
month-end), timing the wait a new token is answered with: every issue asks it, so its cost at
3,000 waiting over its cost at 50 must stay near 1 (it was 29 when the run walked the line).

Pure Python in this process, no server; a run takes a few seconds.

    python -m benchmarks.estimate_cost [--config F] [--sizes 50 200 500] [--rounds 200]
"""

from __future__ import annotations

import argparse
import bisect
import random
import time
from collections.abc import Sequence
from pathlib import Path

from counter_server.config import Scenario, load_scenario
from counter_server.queueing import Estimate, Priority, SubstationQueue
from counter_server.queueing.estimate import estimate_wait, expected_residual_s
from testkit.figures import Figure, print_table, progress

NAME = "wait estimate cost"
TARGET_MS = 3.0            # for 500 waiting: "a few ms"
ONE_SERVICE_SIZES = (50, 500, 3000)
ONE_SERVICE_GROWTH = 2.0   # a one-service line's estimate costs about the same however long


def busy_hall(scenario: Scenario, waiting: int, seed: int = 1, paid_only: bool = False) -> SubstationQueue:
    """The scenario's hall with the most counters, ``waiting`` tokens in line (of the paid
    service only, with ``paid_only``: a month-end line) and every other counter busy."""
    hall = max(scenario.substations.values(), key=lambda s: (len(s.counters), s.id))
    counters = {c.id: c.services for c in hall.counters}
    paid = scenario.payment_service
    offered = [paid] if paid_only else list(dict.fromkeys(s for c in hall.counters for s in c.services))
    weights = [8 if s == paid else 1 for s in offered]
    rng = random.Random(seed)
    q = SubstationQueue(hall.id, "bench", scenario.policy, counters=counters)
    busy = list(counters)[::2]
    for n in range(waiting + len(busy)):
        service = rng.choices(offered, weights)[0]
        priority = Priority.SENIOR if rng.random() < 0.05 else Priority.NORMAL
        q.issue(f"t{n}", service, scenario.services[service].letter, priority, n * 5.0)
    for k, counter in enumerate(busy):
        q.call_next(counter, counters[counter], waiting * 5.0 + k)
    q.drain()
    return q


class _SameServiceFrees:
    """The replaced estimator's counter model: one service's counters free at their busy
    token's remainder, then every mean of that one service."""

    def __init__(self, free_in_s: Sequence[float], mean_s: float) -> None:
        cycle = sorted(max(0.0, f) for f in free_in_s)
        self.idle = sum(1 for f in cycle if f == 0.0)
        early: list[float] = []
        while mean_s > 0 and len(cycle) > 1 and cycle[-1] - cycle[0] >= mean_s:
            first = cycle.pop(0)
            early.append(first)
            bisect.insort(cycle, first + mean_s)
        self.early, self.cycle, self.mean = early, cycle, mean_s

    def at(self, k: int) -> float:
        if k < len(self.early):
            return self.early[k]
        rounds, index = divmod(k - len(self.early), len(self.cycle))
        return self.cycle[index] + rounds * self.mean


def same_service_estimates(q: SubstationQueue, now: float) -> dict[str, Estimate]:
    """The replaced estimator, as it ran on every change: per service the counters serving
    it, then each token behind the tokens of its own service (plus a new token's per service)."""
    times = q.service_times
    frees: dict[str, tuple[int, _SameServiceFrees]] = {}
    for service in {s for served in q.counters.values() for s in served}:
        free_in = []
        for counter, served in q.counters.items():
            if service in served and q.is_open(counter):
                token = q.current_at(counter)
                free_in.append(0.0 if token is None else expected_residual_s(
                    now - (token.called_at or now), times.mean(token.service), times.sd(token.service)))
        frees[service] = (len(free_in), _SameServiceFrees(free_in, times.mean(service)))

    def estimate(service: str, ahead: int) -> Estimate:
        counters, free = frees.get(service, (0, None))
        if counters == 0 or free is None:
            return Estimate(None, None, ahead, 0)
        if ahead < free.idle:
            return Estimate(0.0, 0.0, ahead, counters)
        base = estimate_wait(ahead, counters, times.mean(service), times.sd(service),
                             times.mean_error(service))
        p50 = free.at(ahead)
        return Estimate(round(p50, 1), round(p50 + (base.p90_s - base.p50_s), 1), ahead, counters)

    seen: dict[str, int] = {}
    found = {}
    for token in q.waiting():
        ahead = seen.get(token.service, 0)
        found[token.id] = estimate(token.service, ahead)
        seen[token.service] = ahead + 1
    for service in frees:
        found[f"new:{service}"] = estimate(service, seen.get(service, 0))
    return found


def per_run_ms(run, rounds: int) -> float:
    """The best of three timings of ``rounds`` runs, per run (the machine is shared)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for i in range(rounds):
            run(i)
        best = min(best, (time.perf_counter() - started) / rounds)
    return best * 1000


def measure(scenario: Scenario, sizes: Sequence[int] = (50, 200, 500), rounds: int = 200) -> list[Figure]:
    figures = []
    for waiting in sizes:
        q = busy_hall(scenario, waiting)
        now = q.as_of
        # A new moment each run, so nothing is answered from the last run's cache; every
        # token's estimate is made, as a queue snapshot makes them.
        plan_ms = per_run_ms(lambda i: q.call_plan(now + i * 1e-3 + 1e-4).line, rounds)
        old_ms = per_run_ms(lambda i: same_service_estimates(q, now + i * 1e-3), rounds)
        progress(f"{waiting} waiting: call-order run {plan_ms:.3f} ms, same-service {old_ms:.3f} ms")
        figures += [
            Figure(NAME, f"{waiting} waiting, call-order run", plan_ms, "ms",
                   f"< {TARGET_MS:g} ms" if waiting >= 500 else "",
                   plan_ms < TARGET_MS if waiting >= 500 else None),
            Figure(NAME, f"{waiting} waiting, same-service (replaced)", old_ms, "ms"),
            Figure(NAME, f"{waiting} waiting, cost ratio", plan_ms / old_ms, "x"),
        ]
    # A line of the paid service alone, as at month-end: the wait a new token is answered with
    # (every issue asks it) must not grow with the line.
    paid = scenario.payment_service
    one_service_ms = {}
    for waiting in ONE_SERVICE_SIZES:
        q = busy_hall(scenario, waiting, paid_only=True)
        now = q.as_of
        one_service_ms[waiting] = per_run_ms(lambda i: q.call_plan(now + i * 1e-3 + 1e-4).new_token(paid),
                                             rounds)
        progress(f"{waiting} waiting, paid service only: a new token's wait {one_service_ms[waiting]:.3f} ms")
        figures.append(Figure(NAME, f"{waiting} waiting, paid service only, a new token's wait",
                              one_service_ms[waiting], "ms"))
    short, long = ONE_SERVICE_SIZES[0], ONE_SERVICE_SIZES[-1]
    growth = one_service_ms[long] / one_service_ms[short]
    figures.append(Figure(NAME, f"paid service only: cost at {long:,} / at {short} waiting", growth, "x",
                          f"< {ONE_SERVICE_GROWTH:g}", growth < ONE_SERVICE_GROWTH))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=None, help="scenario TOML (default: built-in)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    print_table(measure(load_scenario(args.config), args.sizes, args.rounds))


if __name__ == "__main__":
    main()
