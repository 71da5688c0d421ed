"""Honest wait estimates: a range, learned from the counters' recent service times.

A token is called when a counter that may serve it frees and finds no one it may serve ahead of
it. Counters serve several services, so a bill payment waits behind the new connection a shared
counter is busy with, and behind the complaints it will take next. The p50 therefore comes from
a small deterministic run of the call order (``plan_calls``), as ``call_next`` will call it:
every open counter frees at the expected remainder of the token at it (``expected_residual_s``:
from how long it has been there and its service's learned mean and spread; at once when idle),
takes the first token in line it may serve (its services, or a token transferred to it; a
booking once its slot has started, ahead of every walk-in), and frees again one learned mean of
that token's service later. A token is given the moment its counter takes it; a token issued
now, the moment a counter serving its service first finds nobody else to take.

The p90 adds Z90 times the spread of that moment, from what the counters were seen to do. With
``c`` the open counters that may call the token and ``n`` the tokens those counters take before
it in the run:

    sd^2 = v / min(n + 1, c)              when the busy counters free: the first in line waits
                                          for its counter's token to end (v: the spread^2 of
                                          that token's service, or of its own when the counter
                                          was free), a long line for all c of them (an average)
         + sum(s_j^2) / c^2               the service times of those n, each of its service
         + sum_service((n_svc * e_svc)^2) / c^2
                                          each service's learned mean's own error, once for
                                          every one of its tokens among those n

with ``e = s * sqrt(alpha / (2 - alpha))`` the spread of an EWMA of weight ``alpha``: a long line
multiplies the mean's error by its length, so its range widens in proportion. For counters that
each serve one service this is ``s^2 / min(n + 1, c) + n s^2 / c^2 + (n e / c)^2``, the
single-service range. A booking whose slot starts after a walk-in's p50 but before its p90
would pass it if the line runs late, so the p90 counts it too. The mean and spread are
exponentially weighted moving averages over completed tokens, seeded by the scenario's figures;
``ServiceTimes`` says which observations they take.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Protocol

Z90 = 1.2816
HUBER_K = 3.0          # without a plausible range, one observation moves the mean at most this many sd


@dataclass(frozen=True, slots=True)
class ServiceTimeSeed:
    """A service's figures from the scenario: mean and spread, and its plausible range."""

    mean_s: float
    sd_s: float
    min_s: float | None = None
    max_s: float | None = None


@dataclass(frozen=True, slots=True)
class Estimate:
    """Seconds until service starts, as a range; None when no open counter serves it."""

    p50_s: float | None
    p90_s: float | None
    ahead: int
    counters: int


class ServiceTimes:
    """EWMA of how long a counter is occupied per token (called to finished), per service.

    Observations outside the service's plausible range (the scenario's ``min_service_s`` ..
    ``max_service_s``) do not drag it:

    * shorter than the minimum: ignored. A bill paid in 1 s was not a service (a token completed
      by mistake, or for someone who left at the counter); it says nothing about how long serving
      takes, and three of them moved bill payment's mean from 90 s to 65 s. Clipping it to the
      minimum would still pull the mean down by a third of the range each time.
    * longer than the maximum: counted as the maximum. A token left open over lunch must not
      double the mean, yet counters slower than planned are news the estimate should follow.

    A service without a range takes every observation, but one observation moves the mean by at
    most ``HUBER_K`` learned spreads (a Huber-type step), so no single outlier drags it far.
    """

    def __init__(self, seeds: Mapping[str, ServiceTimeSeed], alpha: float = 0.1) -> None:
        self.alpha = alpha
        self._mean = {name: seed.mean_s for name, seed in seeds.items()}
        self._var = {name: seed.sd_s ** 2 for name, seed in seeds.items()}
        self._range = {name: (seed.min_s, seed.max_s) for name, seed in seeds.items()}
        self.samples: dict[str, int] = {name: 0 for name in seeds}

    def observe(self, service: str, seconds: float) -> bool:
        """Learn from one completed token; False when the observation was left out."""
        if seconds <= 0 or service not in self._mean:
            return False
        low, high = self._range[service]
        if low is not None and seconds < low:
            return False
        if high is not None:
            seconds = min(seconds, high)
        mean, var = self._mean[service], self._var[service]
        diff = seconds - mean
        if low is None and high is None and var > 0:
            limit = HUBER_K * math.sqrt(var)
            diff = max(-limit, min(limit, diff))
        self._mean[service] = mean + self.alpha * diff
        self._var[service] = (1 - self.alpha) * (var + self.alpha * diff * diff)
        self.samples[service] += 1
        return True

    def mean(self, service: str) -> float:
        return self._mean.get(service, 0.0)

    def sd(self, service: str) -> float:
        return math.sqrt(self._var.get(service, 0.0))

    def mean_error(self, service: str) -> float:
        """The spread of the learned mean itself: an EWMA of weight alpha over times of spread s
        varies by s * sqrt(alpha / (2 - alpha))."""
        alpha = min(max(self.alpha, 0.0), 1.0)
        return self.sd(service) * math.sqrt(alpha / (2 - alpha)) if alpha < 1 else self.sd(service)


def expected_residual_s(elapsed_s: float, mean_s: float, sd_s: float) -> float:
    """How much longer a token already ``elapsed_s`` at a counter is expected to stay.

    ``mean - elapsed`` while it is early, but never below zero: at the mean, a service of spread
    s has about s * sqrt(2 / pi) left (that of a normal), and past it the remainder shrinks
    smoothly. ``(d + sqrt(d^2 + (8 / pi) s^2)) / 2`` with ``d = mean - elapsed`` does both.
    """
    d = mean_s - max(elapsed_s, 0.0)
    return (d + math.sqrt(d * d + (8 / math.pi) * sd_s * sd_s)) / 2


def estimate_wait(ahead: int, counters: int, mean_s: float, sd_s: float,
                  mean_error_s: float = 0.0) -> Estimate:
    """The wait range behind ``ahead`` people with ``counters`` open counters serving them, the
    counters' state unknown (as in the capacity model): the average ``ahead * mean / counters``
    and the single-service range around it."""
    if counters <= 0:
        return Estimate(None, None, ahead, 0)
    p50 = ahead * mean_s / counters
    variance = (sd_s * sd_s / min(ahead + 1, counters)
                + ahead * sd_s * sd_s / counters ** 2
                + (ahead * mean_error_s / counters) ** 2)
    return Estimate(round(p50, 1), round(p50 + Z90 * math.sqrt(variance), 1), ahead, counters)


class Waiting(Protocol):
    """What the run needs of a token in line (``Token`` is one): its service, the one counter a
    transfer pinned it to, and its slot's start when it is a booking (called before every
    walk-in once the slot has started, so no booking passes it)."""

    @property
    def service(self) -> str: ...
    @property
    def target_counter(self) -> str | None: ...
    @property
    def slot_at(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Waiter:
    """A token in line for callers that hold no ``Token`` (tests, benchmarks)."""

    service: str
    target_counter: str | None = None
    slot_at: float | None = None


@dataclass(frozen=True, slots=True)
class OpenCounter:
    """An open counter as the run starts: what it serves, when it frees (0: free now) and the
    service of the token at it (None: free)."""

    id: str
    services: tuple[str, ...]
    free_in_s: float = 0.0
    busy_with: str | None = None


_Range = tuple[float, float, int, int]      # p50 and p90 unrounded, ahead, counters


def _estimate(found: _Range | None, ahead: int) -> Estimate:
    if found is None:
        return Estimate(None, None, ahead, 0)
    return Estimate(round(found[0], 1), round(found[1], 1), found[2], found[3])


class CallPlan:
    """What the run of the call order found: each waiting token's estimate (by its place in
    line) and, per service, that of a token of it issued now (normal priority, last in line).
    Estimates are made when asked for: a hall view reads a dozen of a long line."""

    __slots__ = ("_line", "_places", "_new", "_waiting", "_all")

    def __init__(self, line: Sequence[_Range | None], places: Sequence[int], new: dict[str, _Range],
                 waiting: dict[str, int]) -> None:
        self._line, self._places, self._new, self._waiting = line, places, new, waiting
        self._all: tuple[Estimate, ...] | None = None

    def estimate(self, place: int) -> Estimate:
        """The estimate of the token ``place``-th in line (0: the first)."""
        if self._all is not None:
            return self._all[place]
        return _estimate(self._line[place], self._places[place])

    @property
    def line(self) -> tuple[Estimate, ...]:
        """Every waiting token's estimate, in call order."""
        if self._all is None:
            self._all = tuple(map(_estimate, self._line, self._places))
        return self._all

    def new_token(self, service: str) -> Estimate:
        return _estimate(self._new.get(service), self._waiting.get(service, 0))


def plan_calls(line: Sequence[Waiting], booked: Sequence[tuple[int, Waiting]],
               counters: Sequence[OpenCounter], times: ServiceTimes, now: float = 0.0,
               services: Iterable[str] = ()) -> CallPlan:
    """Run the call order with the learned means, as of ``now``: see the module's docstring.

    ``line`` is the waiting line in call order; ``booked`` the bookings whose slots have not
    started, in call order, each with the place in ``line`` it takes when its slot starts (the
    number of tokens in line ahead of it); ``counters`` the open ones in the order they are
    listed (who calls first when two free together). ``services`` are the ones to answer a new
    token's wait for, besides those in line and at the counters. Costs O((line + booked) log
    counters) with small constants, and a line of one service O(counters log counters) once
    its counters take turns: it runs on every change to a hall.
    """
    line_kinds = set(map(attrgetter("service"), line))
    numbering = _Numbering(counters, services, line_kinds, (token.service for _, token in booked), times)
    if (not booked and len(line_kinds) <= 1
            and set(map(attrgetter("target_counter"), line)) <= {None}):
        return _one_service_run(numbering, line[0].service if line else None, len(line), counters)
    index, number, names = numbering.index, numbering.number, numbering.names
    serves, busy_with = numbering.serves, numbering.busy_with
    mean, spread2, error2 = numbering.mean, numbering.spread2, numbering.error2
    count = len(names)
    line_service = list(map(index.__getitem__, map(attrgetter("service"), line)))

    # Who may take whom: each service's tokens in line, and tokens pinned to one counter.
    open_at = {c.id: k for k, c in enumerate(counters)}
    pinned: dict[int, deque[int]] = {}
    by_service: list[deque[int]] = [deque() for _ in range(count)]
    places: list[int] = []                            # same-service tokens ahead in line
    waiting = [0] * count
    for i, token in enumerate(line):
        s = line_service[i]
        places.append(waiting[s])
        waiting[s] += 1
        target = token.target_counter
        if target is None:
            by_service[s].append(i)
        elif target in open_at:
            pinned.setdefault(open_at[target], deque()).append(i)

    # Pools: the counters that may call a token (0 .. count-1: a service's; count + k: counter
    # k alone, for the tokens pinned to it) and the sums of what they took so far in the run.
    pools = count + len(counters)
    size = [0] * count + [1] * len(counters)
    for served in serves:
        for s in served:
            size[s] += 1
    pools_of = [served + ((count + k,) if k in pinned else ()) for k, served in enumerate(serves)]
    taken = [0] * pools
    taken_spread2 = [0.0] * pools
    taken_error2 = [0.0] * pools
    taken_of = [[0] * count for _ in range(pools)]

    # Bookings join the line at their slot's start, ahead of every walk-in; each is ranked
    # between the line's places (a booking at place p goes before the line's p-th token).
    rank: list[float] = []
    joins_at: list[float] = []
    booked_service: list[int] = []
    by_service_booked: list[deque[int]] = [deque() for _ in range(count)]
    joins: list[list[float]] = [[] for _ in range(count)]
    for j, (place, token) in enumerate(booked):
        s = number(token.service)
        rank.append(place - 1 + (j + 1) / (len(booked) + 1))
        joins_at.append(0.0 if token.slot_at is None else max(0.0, token.slot_at - now))
        booked_service.append(s)
        by_service_booked[s].append(j)
        joins[s].append(joins_at[-1])
    for starts in joins:
        starts.sort()
    booked_taken = [0] * count

    def late_bookings(s: int, at: float, p90: float, c: int) -> float:
        """A walk-in's p90 with the bookings that join after its p50 and before its p90: if
        the line runs late they pass it, each a mean service more."""
        starts = joins[s]
        next_one = bisect.bisect_right(starts, at)
        while next_one < len(starts) and starts[next_one] <= p90:
            p90 += mean[s] / c
            next_one += 1
        return p90

    found: list[_Range | None] = [None] * len(line)
    new: dict[str, _Range] = {}
    first2 = [None if b is None else spread2[b] for b in busy_with]
    any_booked = bool(booked)
    sqrt = math.sqrt
    heap = [(max(0.0, c.free_in_s), k) for k, c in enumerate(counters)]
    heapq.heapify(heap)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        at, k = pop(heap)
        best = -1.0
        source: deque[int] | None = None
        from_booked = from_pinned = False
        if pinned:
            queue = pinned.get(k)
            if queue:
                best, source, from_pinned = queue[0], queue, True
        for s in serves[k]:
            queue = by_service[s]
            if queue and (source is None or queue[0] < best):
                best, source, from_booked, from_pinned = queue[0], queue, False, False
            if any_booked:
                queue = by_service_booked[s]
                if queue and joins_at[queue[0]] <= at and (source is None or rank[queue[0]] < best):
                    best, source, from_booked, from_pinned = rank[queue[0]], queue, True, False
        if source is None:
            # Nobody here for it: a token issued now of any service it serves is called now.
            for s in serves[k]:
                name = names[s]
                if name not in new:
                    v = first2[k] if first2[k] is not None else spread2[s]
                    c = size[s]
                    if at <= 0.0:
                        new[name] = (0.0, 0.0, waiting[s] + booked_taken[s], c)
                        continue
                    first = taken[s] + 1
                    p90 = at + Z90 * sqrt(v / (first if first < c else c)
                                          + (taken_spread2[s] + taken_error2[s]) / (c * c))
                    if any_booked:
                        p90 = late_bookings(s, at, p90, c)
                    new[name] = (at, p90, waiting[s] + booked_taken[s], c)
            later = [joins_at[q[0]] for s in serves[k] if (q := by_service_booked[s])]
            if later:
                push(heap, (min(later), k))
            continue
        chosen = source.popleft()
        if from_booked:
            s = booked_service[chosen]
            booked_taken[s] += 1
        else:
            s = line_service[chosen]
            pool = count + k if from_pinned else s
            c = size[pool]
            ahead = places[chosen] + booked_taken[s]
            if at <= 0.0:                             # a free counter calls it at once
                found[chosen] = (0.0, 0.0, ahead, c)
            else:
                v = first2[k] if first2[k] is not None else spread2[s]
                first = taken[pool] + 1
                p90 = at + Z90 * sqrt(v / (first if first < c else c)
                                      + (taken_spread2[pool] + taken_error2[pool]) / (c * c))
                if any_booked and line[chosen].slot_at is None:
                    p90 = late_bookings(s, at, p90, c)
                found[chosen] = (at, p90, ahead, c)
        add2, adde = spread2[s], error2[s]
        for pool in pools_of[k]:
            done = taken_of[pool][s]
            taken_of[pool][s] = done + 1
            taken[pool] += 1
            taken_spread2[pool] += add2
            taken_error2[pool] += adde * (2 * done + 1)      # (n + 1)^2 e^2 - n^2 e^2
        push(heap, (at + mean[s], k))

    waiting_by_name = {name: waiting[s] for s, name in enumerate(names)}
    return CallPlan(found, places, new, waiting_by_name)


def plan_one_service(service: str | None, n: int, counters: Sequence[OpenCounter],
                     times: ServiceTimes, services: Iterable[str] = ()) -> CallPlan:
    """``plan_calls`` for a line of ``n`` walk-ins of one ``service``, none pinned to a counter
    and no booking due (a busy hall's usual line), given by its length alone: a queue need not
    list its line to learn its estimates."""
    kinds = {service} if service is not None and n else set()
    return _one_service_run(_Numbering(counters, services, kinds, (), times),
                            service if n else None, n if service is not None else 0, counters)


class _Numbering:
    """A run's services by number, in the order it meets them (the counters' services, then
    ``services``, the line's and the bookings'), with their learned figures."""

    __slots__ = ("index", "serves", "busy_with", "names", "mean", "spread2", "error2")

    def __init__(self, counters: Sequence[OpenCounter], services: Iterable[str], line_kinds: set[str],
                 booked: Iterable[str], times: ServiceTimes) -> None:
        self.index: dict[str, int] = {}
        self.serves = [tuple(self.number(s) for s in dict.fromkeys(c.services)) for c in counters]
        self.busy_with = [None if c.busy_with is None else self.number(c.busy_with) for c in counters]
        for service in services:
            self.number(service)
        for service in line_kinds.difference(self.index):
            self.number(service)
        for service in booked:
            self.number(service)
        self.names = list(self.index)
        self.mean = [times.mean(name) for name in self.names]
        self.spread2 = [times.sd(name) ** 2 for name in self.names]
        self.error2 = [times.mean_error(name) ** 2 for name in self.names]

    def number(self, service: str) -> int:
        found = self.index.get(service)
        if found is None:
            found = self.index[service] = len(self.index)
        return found


class _Calls:
    """When each token of a one-service line is called and by which counter, with the running
    sum of the spreads of the tokens called before it: a prefix run token by token, then, once
    the counters take turns, each turn ``step`` after the last (worked out when read)."""

    __slots__ = ("taken", "sums", "turns", "step", "add2", "adde", "n")

    def __init__(self, n: int, add2: float, adde: float, step: float) -> None:
        self.taken: list[tuple[float, int]] = []   # the prefix: when each is called, by whom
        self.sums = [0.0]                           # sums[m]: spread^2 and error^2 over m tokens
        self.turns: list[tuple[float, int]] = []    # after the prefix: the counters' turn order
        self.step, self.add2, self.adde, self.n = step, add2, adde, n

    def __len__(self) -> int:
        return self.n

    def call(self, place: int) -> tuple[float, int]:
        prefix = len(self.taken)
        if place < prefix:
            return self.taken[place]
        rounds, turn = divmod(place - prefix, len(self.turns))
        at, k = self.turns[turn]
        return at + rounds * self.step, k

    def sum(self, m: int) -> float:
        prefix = len(self.taken)
        if m <= prefix:
            return self.sums[m]
        return self.sums[prefix] + (m - prefix) * self.add2 + self.adde * (m * m - prefix * prefix)


def _one_service_run(numbering: _Numbering, service: str | None, n: int,
                     counters: Sequence[OpenCounter]) -> CallPlan:
    """``plan_calls``' run when the line holds ``n`` walk-ins of one ``service``, none pinned
    to a counter, and no booking is due (a busy hall's usual line): each counter serving that
    service takes the next token as it frees, so there is nobody to choose between. Every
    pool's sums then depend only on how many tokens it took, so one running sum stands for all
    of them, and a token's range is worked out only when it is read (``_OneServiceLine``).

    Once the counters not serving the service have had their look and those serving it free
    within one service of each other, they take turns in a fixed order for the rest of the
    line, each turn one learned mean after its last: the run jumps to the line's end in one
    step, so its cost no longer grows with the line (a month-end hall holds thousands). The
    arithmetic is ``plan_calls``' own, except that the jump multiplies where the run adds: a
    range may differ from the general run's in its last bits, so in its tenth of a second only
    when it falls exactly on a rounding edge (the same seed's month in peak-sim is unchanged).
    """
    names, serves, spread2, error2 = numbering.names, numbering.serves, numbering.spread2, numbering.error2
    s0 = numbering.index[service] if service is not None else -1
    count = len(names)
    size = [0] * count
    for served in serves:
        for s in served:
            size[s] += 1
    takes = [s0 in served for served in serves]
    counters_of = [[k for k, served in enumerate(serves) if s in served] for s in range(count)]
    took = [0] * len(serves)                # tokens each counter took so far in the run
    waiting = [0] * count
    new: dict[str, _Range] = {}
    first2 = [None if b is None else spread2[b] for b in numbering.busy_with]
    step, add2, adde = (numbering.mean[s0], spread2[s0], error2[s0]) if n else (0.0, 0.0, 0.0)
    calls = _Calls(n, add2, adde, step)
    if n:
        waiting[s0] = n
    others = sum(1 for k in range(len(serves)) if not takes[k])   # counters yet to have their look
    spread_sum = error_sum = 0.0
    heap = [(max(0.0, counter.free_in_s), k) for k, counter in enumerate(counters)]
    heapq.heapify(heap)
    pop, replace, record, sums = heapq.heappop, heapq.heapreplace, calls.taken.append, calls.sums
    i = 0
    while heap:
        at, k = nearest = heap[0]
        if i < n and takes[k]:
            if not others and step > 0 and i % len(heap) == 0:
                turns = sorted(heap)
                if turns[-1] < (turns[0][0] + step, turns[0][1]):     # they take turns from here
                    calls.turns = turns
                    left = n - i
                    rounds, extra = divmod(left, len(turns))
                    heap = []
                    for turn, (free_at, counter) in enumerate(turns):
                        tokens = rounds + (turn < extra)
                        took[counter] += tokens
                        heap.append((free_at + tokens * step, counter))
                    heapq.heapify(heap)
                    i = n
                    continue
            record(nearest)
            spread_sum += add2
            error_sum += adde * (2 * i + 1)              # (n + 1)^2 e^2 - n^2 e^2
            sums.append(spread_sum + error_sum)
            took[k] += 1
            i += 1
            replace(heap, (at + step, k))   # it frees again: still after every key popped
            continue
        pop(heap)
        if not takes[k]:
            others -= 1
        for s in serves[k]:               # nobody here for it: a new token is called now
            name = names[s]
            if name not in new:
                v = first2[k] if first2[k] is not None else spread2[s]
                c_s = size[s]
                if at <= 0.0:
                    new[name] = (0.0, 0.0, waiting[s], c_s)
                    continue
                first = sum(took[x] for x in counters_of[s]) + 1
                p90 = at + Z90 * math.sqrt(v / (first if first < c_s else c_s)
                                           + calls.sum(first - 1) / (c_s * c_s))
                new[name] = (at, p90, waiting[s], c_s)
    line: Sequence[_Range | None] = (
        _OneServiceLine(calls, [add2 if v is None else v for v in first2], size[s0])
        if n and (calls.taken or calls.turns) else [None] * n)
    # Place p has p of its service ahead: a range says so without a list of the whole line.
    return CallPlan(line, range(n), new, {name: waiting[s] for s, name in enumerate(names)})


class _OneServiceLine(Sequence):
    """``_one_service_run``'s line: each token's range from when it is called, by which counter,
    worked out as ``plan_calls`` does when read."""

    __slots__ = ("_calls", "_first", "_counters")

    def __init__(self, calls: _Calls, first: list[float], counters: int) -> None:
        self._calls, self._first, self._counters = calls, first, counters

    def __len__(self) -> int:
        return len(self._calls)

    def __getitem__(self, place: int) -> _Range:
        n = len(self._calls)
        if not -n <= place < n:
            raise IndexError(place)
        place %= n
        at, k = self._calls.call(place)
        c = self._counters
        if at <= 0.0:                             # a free counter calls it at once
            return (0.0, 0.0, place, c)
        first = place + 1
        v = self._first[k]
        return (at, at + Z90 * math.sqrt(v / (first if first < c else c)
                                         + self._calls.sum(place) / (c * c)), place, c)
