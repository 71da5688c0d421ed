"""Is the wait we promise true? One busy day run through the server's own queue, measured.

The month model (``model``) is a fast capacity model with a queue of its own. The estimate a
consumer is given is the product's, so coverage is measured by driving the server's pure queue
domain (``counter_server.queueing.SubstationQueue``) through a simulated day: each arrival is
issued a token the way the server issues it (with the door rule, against the hall's closing
time), gets the estimate the server answers with (``estimate_for`` the new token), and each
counter calls the next token the moment it frees, serves it for the consumer's drawn service time
and completes it, so the queue learns its service times as it does in a hall.

Coverage is the share of tokens called no later than the p50 (and the p90) they were given when
issued. A token still waiting at closing counts as a miss of every figure that had already passed
by closing: with the door rule on, nobody is admitted whose p90 ends after closing, so every
admitted token is decided. The promise: p90 coverage 85-95 %, p50 coverage 40-60 %.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from counter_server.config import Scenario
from counter_server.queueing import CannotServeToday, Priority, QueuePolicy, SubstationQueue

from .demand import ArrivalBatch
from .model import Layout, ServiceTime
from .month import MonthPlan, fresh_means, make_batch

P90_TARGET = (0.85, 0.95)
P50_TARGET = (0.40, 0.60)


@dataclass(frozen=True)
class Coverage:
    """How many tokens were given an estimate, and of them how many were called within it."""

    tokens: int = 0
    within_p50: int = 0
    within_p90: int = 0
    refused: int = 0

    def __add__(self, other: Coverage) -> Coverage:
        return Coverage(self.tokens + other.tokens, self.within_p50 + other.within_p50,
                        self.within_p90 + other.within_p90, self.refused + other.refused)

    @property
    def p50(self) -> float:
        return self.within_p50 / self.tokens if self.tokens else 0.0

    @property
    def p90(self) -> float:
        return self.within_p90 / self.tokens if self.tokens else 0.0

    @property
    def on_target(self) -> bool:
        return (P50_TARGET[0] <= self.p50 <= P50_TARGET[1]
                and P90_TARGET[0] <= self.p90 <= P90_TARGET[1])

    def line(self) -> str:
        """The line both peak tools print (and their summaries carry)."""
        return f"estimate coverage: p50 {self.p50 * 100:.0f} %, p90 {self.p90 * 100:.0f} %"


def total(parts: Iterable[Coverage]) -> Coverage:
    found = Coverage()
    for part in parts:
        found = found + part
    return found


def coverage_day(layout: Layout, services: Sequence[ServiceTime], letters: Sequence[str],
                 batch: ArrivalBatch, policy: QueuePolicy, admission: bool = True) -> Coverage:
    """Run one hall's day through the server's queue and measure its estimates.

    ``letters`` are the services' token letters, in the order of ``services``; ``batch`` the
    hall's arrivals (booked consumers in it walk in like anyone else here).
    """
    counters = {f"{layout.substation}#{k + 1}": tuple(services[s].id for s in served)
                for k, served in enumerate(layout.counters)}
    q = SubstationQueue(layout.substation, "coverage-day", policy, counters=counters)
    closes = layout.closes_s
    length: dict[str, float] = {}
    given: dict[str, tuple[float, float, float]] = {}   # token -> (issued at, p50, p90)
    waited: dict[str, float] = {}
    idle = dict.fromkeys(counters)                       # insertion order: the call order
    finishing: list[tuple[float, str]] = []
    refused = 0

    def call(counter: str, now: float) -> bool:
        token = q.call_next(counter, counters[counter], now)
        if token is None:
            return False
        q.act(token.id, "start", now)
        waited[token.id] = now - token.issued_at
        heapq.heappush(finishing, (now + length[token.id], counter))
        return True

    def finish_until(t: float) -> None:
        while finishing and finishing[0][0] <= t:
            at, counter = heapq.heappop(finishing)
            q.act(q.current_at(counter).id, "complete", at)
            if at > closes or not call(counter, at):
                idle[counter] = None
        q.drain()

    times, kinds, lengths = batch.times, batch.services, batch.service_s
    for j in range(len(times)):
        t, s = float(times[j]), int(kinds[j])
        if t > closes:
            break
        finish_until(t)
        token_id = f"t{j}"
        try:
            token = q.issue(token_id, services[s].id, letters[s], Priority.NORMAL, t,
                            closes_at=closes if admission else None)
        except CannotServeToday:
            refused += 1
            continue
        length[token_id] = float(lengths[j])
        estimate = q.estimate_for(token)
        if estimate is None or estimate.p50_s is None or estimate.p90_s is None:
            continue
        given[token_id] = (t, estimate.p50_s, estimate.p90_s)
        for counter in [c for c in idle if services[s].id in counters[c]]:
            del idle[counter]
            if call(counter, t):
                break
            idle[counter] = None
    finish_until(closes)
    within50 = within90 = 0
    for token_id, (issued, p50, p90) in given.items():
        wait = waited.get(token_id)
        if wait is None:                   # still waiting at closing
            if issued + p90 > closes:      # only without the door rule: not decided
                continue
            wait = closes - issued + 1.0
        within50 += wait <= p50 + 1e-6
        within90 += wait <= p90 + 1e-6
    decided = sum(1 for token_id, (issued, _, p90) in given.items()
                  if token_id in waited or issued + p90 <= closes)
    return Coverage(decided, within50, within90, refused)


def busiest_day(plan: MonthPlan) -> int:
    """The simulated working day with the most fresh arrivals expected (the last one on ties)."""
    return max(plan.days, key=lambda day: (float(fresh_means(plan, day).sum()), day))


def measure(plan: MonthPlan, scenario: Scenario, seed: int, day: int | None = None) -> Coverage:
    """Coverage over ``day`` (default: the plan's busiest) at every hall, with the day's fresh
    arrivals (the same consumers the month runs draw) and the server's door rule."""
    return total(hall.run() for hall in hall_days(plan, scenario, seed, day))


@dataclass(frozen=True)
class HallDay:
    """One hall's part of ``measure``: a job ``peak-sim`` runs in its pool beside the month runs."""

    plan: MonthPlan
    where: int
    day: int
    seed: int
    letters: tuple[str, ...]
    policy: QueuePolicy

    @property
    def cost(self) -> float:
        """Roughly the seconds it takes: every token issued runs the server's estimate of the
        hall's whole line (about 0.3 ms a token on a busy day)."""
        return 3e-4 * float(fresh_means(self.plan, self.day)[self.where].sum())

    def run(self) -> Coverage:
        means = fresh_means(self.plan, self.day)
        batch = make_batch(self.plan, self.where, self.day, self.seed, means[self.where], {})
        return coverage_day(self.plan.layouts[self.where], self.plan.services, self.letters,
                            batch, self.policy)


def hall_days(plan: MonthPlan, scenario: Scenario, seed: int,
              day: int | None = None) -> list[HallDay]:
    """``measure``'s work, one job per hall (``total`` of their results is the measure)."""
    day = busiest_day(plan) if day is None else day
    letters = tuple(scenario.services[sv.id].letter for sv in plan.services)
    return [HallDay(plan, where, day, seed, letters, scenario.policy)
            for where in range(len(plan.layouts))]


def summary_text(measured: Coverage, day: int) -> str:
    """The summary's section: the line both tools print, and what it measured."""
    verdict = "on target" if measured.on_target else "OFF TARGET"
    return (f"{measured.line()} ({verdict}: p50 {P50_TARGET[0]:.0%}-{P50_TARGET[1]:.0%}, "
            f"p90 {P90_TARGET[0]:.0%}-{P90_TARGET[1]:.0%})\n\n"
            f"Working day {day}'s fresh arrivals at every substation run through the server's own "
            f"queue, estimator and door rule: {measured.tokens:,} tokens issued with an estimate "
            f"({measured.refused:,} refused at the door); the share called within the p50 and the "
            "p90 they were given when issued.")
