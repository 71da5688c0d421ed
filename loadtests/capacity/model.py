"""The discrete-event simulation of one substation for one day: pure, no I/O, no clock.

Events are arrivals (already sorted, so they are read in order rather than pushed) and counters
finishing (a heap as small as the number of counters). Each service has a FIFO line; a counter
that frees takes whoever came first among the services it serves, as the server's call order
does for normal-priority tokens. Whoever is in service at closing is finished; whoever still
waits is turned away. Booked consumers (slot bookings) are the one priority class modelled: they
go ahead of every walk-in once their slot has started, which is what the booking what-if asks
about. Senior/disabled head starts, no-shows and recalls are left out: they shift who waits, not
how many the counters can serve.

People may leave of their own accord (``ArrivalBatch.patience_s``): a walk-in who sees the shown
wait (people ahead x mean service time / counters, the boards' figure) balks, going home at once,
with probability shown wait / ``balk_wait_s`` (linear discouragement); one who joins gives up
when their wait passes their patience. With exponential service and patience and no balking, a
day is Erlang A (M/M/c+M; ``erlang.py`` has its formulas, and a test holds the simulation to
them). In a FIFO line before counters that are alike, whoever is ahead and gives up leaves before
their own start, so a newcomer's wait is when the first counter frees for them; if that passes
their patience they leave without taking it.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from counter_server.config import Scenario, Service, Substation

from .demand import ArrivalBatch
from .policies import DoorWaits, Policy


@dataclass(frozen=True)
class ServiceTime:
    """A service's time at the counter: ``mean_s`` exactly, within ``min_s``..``max_s``.

    ``bounded`` draws a triangular distribution with that mean when its mode falls within the
    bounds; otherwise a power-law beta with that mean (the same family: Beta(2, 1) and Beta(1, 2)
    are the triangular ones with the mode at an end), so any mean inside the bounds works.
    ``exponential`` uses the mean alone (the M/M/c case), as does a service without min and max.
    ``sd_s`` is the spread the door's p90 uses: the server's seed, that of a uniform min..max;
    ``mean_error_s`` the spread of the server's learned mean (``ServiceTimes.mean_error``).
    """

    id: str
    mean_s: float
    sd_s: float
    min_s: float | None = None
    max_s: float | None = None
    distribution: str = "bounded"
    mean_error_s: float = 0.0

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.distribution == "exponential" or self.min_s is None or self.max_s is None:
            return rng.exponential(self.mean_s, n)
        low, high, mean = self.min_s, self.max_s, self.mean_s
        if high <= low:
            return np.full(n, mean)
        f = (mean - low) / (high - low)
        if 1 / 3 <= f <= 2 / 3:
            return rng.triangular(low, min(high, max(low, 3 * mean - low - high)), high, n)
        shape = rng.beta(f / (1 - f), 1.0, n) if f > 2 / 3 else rng.beta(1.0, (1 - f) / f, n)
        return low + (high - low) * shape

    @property
    def bound_s(self) -> float:
        """The longest a service can take (infinite when its times are unbounded)."""
        if self.distribution == "exponential" or self.max_s is None:
            return math.inf
        return self.max_s


def service_times(scenario: Scenario, distribution: str) -> tuple[ServiceTime, ...]:
    """Each scenario service's time at the counter, in the scenario's order of services."""
    seeds = scenario.policy.service_seeds
    alpha = min(max(scenario.policy.ewma_alpha, 0.0), 1.0)
    error = math.sqrt(alpha / (2 - alpha)) if alpha < 1 else 1.0

    def one(s: Service) -> ServiceTime:
        if s.min_service_s is not None and s.max_service_s is not None and not (
                s.min_service_s <= s.mean_service_s <= s.max_service_s):
            raise ValueError(f"services.{s.id}: mean_service_s must lie within min..max")
        return ServiceTime(s.id, s.mean_service_s, seeds[s.id].sd_s, s.min_service_s,
                           s.max_service_s, distribution, seeds[s.id].sd_s * error)

    return tuple(one(s) for s in scenario.services.values())


@dataclass(frozen=True)
class Layout:
    """A substation as the simulation sees it: opening hours and, per counter, service indices."""

    substation: str
    opens_s: float
    closes_s: float
    counters: tuple[tuple[int, ...], ...]


def layouts(scenario: Scenario, counters_per_substation: int | None = None) -> tuple[Layout, ...]:
    """The scenario's substations; with ``counters_per_substation``, that many counters each.

    More counters repeat the substation's own counter list in order (a fifth counter serves what
    the first does), fewer keep the first ones, so the what-if keeps the scenario's service mix.
    """
    index = {sid: i for i, sid in enumerate(scenario.services)}

    def one(sub: Substation) -> Layout:
        own = [tuple(index[s] for s in c.services) for c in sub.counters]
        n = len(own) if counters_per_substation is None else counters_per_substation
        counters = tuple(own[k % len(own)] for k in range(n)) if own else ()
        return Layout(sub.id, _seconds(sub.opens), _seconds(sub.closes), counters)

    return tuple(one(sub) for sub in scenario.substations.values())


def _seconds(t) -> float:
    return t.hour * 3600.0 + t.minute * 60.0 + t.second


@dataclass
class DayOutcome:
    """What happened at one substation on one day."""

    arrivals: int = 0
    returning: int = 0
    served: int = 0
    turned_away_closing: int = 0
    refused_at_door: int = 0
    online_hint: int = 0
    online_door: int = 0
    max_queue: int = 0
    lost_s: float = 0.0           # time in line of those turned away at closing
    waits: list[float] = field(default_factory=list)           # of walk-ins
    booked_waits: list[float] = field(default_factory=list)    # of the booked, from slot start
    sent_home: dict[int, int] = field(default_factory=dict)   # service index -> people
    queue_samples: list[int] = field(default_factory=list)
    last_wait_end_s: float = 0.0  # when the last served consumer's wait ended
    balked: int = 0               # saw the shown wait and went home
    reneged: int = 0              # joined, then gave up waiting before being called
    gave_up_s: float = 0.0        # time in line of those who gave up


def run_day(layout: Layout, services: Sequence[ServiceTime], batch: ArrivalBatch, policy: Policy,
            payment: int, sample_times: Sequence[float] = (), events: bool = False,
            door_waits: DoorWaits | None = None, balk_wait_s: float = 0.0) -> DayOutcome:
    """Simulate one substation's day; ``sample_times`` are clock times to record the line at.

    ``payment`` is the index of the service that can be paid online instead (the hint and the
    door's online offer apply to it only). When the day's consumers all want one service (the
    usual case: bill payment only) the shortcut ``one_line`` gives the same outcome several times
    faster, and with booked consumers of that one service too, ``booked_line``; ``events=True``
    forces the general event loop (the tests compare them). ``door_waits`` keeps the door's
    estimates from one day to the next of a run (a fresh one when None). When the batch carries
    patience (people leave of their own accord), ``balk_wait_s`` is the shown wait at which
    every walk-in balks (0: nobody does) and ``impatient_line`` takes the one-line days.
    """
    door_waits = door_waits or DoorWaits()
    kinds = np.asarray(batch.services, dtype=int)
    if len(kinds) and not events and kinds.min() == kinds.max():   # one service (no sort)
        s = int(kinds[0])
        if not (batch.booked is not None and np.any(batch.booked)):
            if batch.patience_s is not None:
                return impatient_line(layout, services, batch, policy, payment, sample_times, s,
                                      balk_wait_s, door_waits)
            return one_line(layout, services, batch, policy, payment, sample_times, s, door_waits)
        if any(s in served for served in layout.counters):
            if batch.patience_s is not None:
                return impatient_booked_line(layout, services, batch, policy, payment,
                                             sample_times, s, balk_wait_s, door_waits)
            return booked_line(layout, services, batch, policy, payment, sample_times, s,
                               door_waits, balk_wait_s)
    return event_loop(layout, services, batch, policy, payment, sample_times, door_waits,
                      balk_wait_s)


def _per_service(layout: Layout, services: Sequence[ServiceTime],
                 present: set[int]) -> tuple[list, list, list]:
    """Per service: the counters serving it, every service those counters serve, and the longest
    service any of them can give today (what the door's ``max`` bound needs: only services
    someone came for today count)."""
    n_services = len(services)
    counters_for = [[k for k, served in enumerate(layout.counters) if s in served]
                    for s in range(n_services)]
    shared = [sorted({x for k in counters_for[s] for x in layout.counters[k]}) for s in range(n_services)]
    bound = [max((services[x].bound_s for x in shared[s] if x in present), default=math.inf)
             for s in range(n_services)]
    return counters_for, shared, bound


def _check_bound(policy: Policy, bound: Sequence[float], present: set[int]) -> None:
    if policy.door and policy.door_estimate == "max" and any(math.isinf(bound[s]) for s in present):
        raise ValueError("door estimate 'max' needs bounded service times (min/max in the scenario)")


def one_line(layout: Layout, services: Sequence[ServiceTime], batch: ArrivalBatch, policy: Policy,
             payment: int, sample_times: Sequence[float], s: int,
             door_waits: DoorWaits | None = None) -> DayOutcome:
    """The day when everyone wants service ``s``: one FIFO line before the counters serving it.

    Then a consumer starts at max(arrival, the earliest time a counter frees), and the line at
    any moment is those who joined and have not started: the same events as ``event_loop``,
    walked consumer by consumer instead of event by event.
    """
    closes = layout.closes_s
    counters_for, shared, bound = _per_service(layout, services, {s})
    _check_bound(policy, bound, {s})
    c = len(counters_for[s])
    out = DayOutcome(arrivals=len(batch.times), returning=batch.returning)
    times = _as_list(batch.times)
    n = len(times)
    if c == 0:
        out.turned_away_closing = n
        out.sent_home[s] = n
        out.queue_samples = [0] * len(sample_times)
        return out
    hint = policy.hint and s == payment
    lengths = _as_list(batch.service_s)
    u_hint = _as_list(batch.u_hint) if hint else []
    u_door = _as_list(batch.u_door) if policy.door else []
    door, kind = policy.door, policy.door_estimate
    offer_online = s == payment
    hint_after, uptake, accept = policy.hint_after_s, policy.hint_uptake, policy.door_online_accept
    mean = services[s].mean_s
    door_estimate = (door_waits or DoorWaits()).table(kind, c, mean, services[s].sd_s, bound[s],
                                                      services[s].mean_error_s)
    door_table = door_estimate.values      # the door's estimate by people ahead, as needed
    hint_from = _hint_from(hint_after, mean, c, n) if hint else n + 1
    frees = [0.0] * c                      # when each counter is next free (a heap)
    line: deque = deque()                  # start times of those waiting, in order
    joined: list[float] = []               # arrival times of those who joined the line
    waits = out.waits                      # of the first len(waits) of them: the rest are
    lost = 0.0                             # turned away (starts never decrease, so once one
    max_queue = 0                          # starts after closing, so does everyone after)
    sent_home = 0
    inf = math.inf
    heapreplace = heapq.heapreplace
    plain = not hint and not door
    tail_from = n
    if plain:
        tail_from, max_queue = _plain_line(times, lengths, frees, closes, joined, waits, line)
        n = 0  # done: the loop below is for the policies
    online_hint = refused = online_door = 0
    for j in range(n):
        t = times[j]
        while line and line[0] <= t:
            line.popleft()
        ahead = len(line)
        if ahead >= hint_from and u_hint[j] < uptake:
            online_hint += 1
            continue
        first_free = frees[0]
        if door and (ahead or first_free > t):
            if ahead >= len(door_table):
                door_estimate.grow(ahead)
            if t + door_table[ahead] > closes:
                refused += 1
                if offer_online and u_door[j] < accept:
                    online_door += 1
                else:
                    sent_home += 1
                continue
        if first_free > t:
            if first_free > closes:
                lost += closes - t
                line.append(inf)
            else:
                heapreplace(frees, first_free + lengths[j])
                waits.append(first_free - t)
                line.append(first_free)
            if ahead >= max_queue:
                max_queue = ahead + 1
        else:
            heapreplace(frees, t + lengths[j])
            waits.append(0.0)
        joined.append(t)
    if tail_from < len(times):
        rest = np.asarray(times[tail_from:])
        pending = np.asarray(line, dtype=float)  # all of them start before closing, in order
        ahead_then = len(pending) - np.searchsorted(pending, rest, side="right") + np.arange(len(rest))
        max_queue = max(max_queue, int(ahead_then.max()) + 1)
        lost += float((closes - rest).sum())
        joined.extend(rest.tolist())
    served = len(waits)
    turned_away = len(joined) - served
    out.online_hint, out.refused_at_door, out.online_door = online_hint, refused, online_door
    out.served = served
    out.turned_away_closing = turned_away
    out.lost_s = lost
    out.max_queue = max_queue
    if served:
        out.last_wait_end_s = joined[served - 1] + waits[-1]
    if turned_away + sent_home:
        out.sent_home[s] = turned_away + sent_home
    if len(sample_times):
        at = np.asarray(sample_times)
        came = np.asarray(joined)
        starts = came[:served] + np.asarray(waits)
        waiting = np.searchsorted(came, at, side="right") - np.searchsorted(starts, at, side="right")
        out.queue_samples = np.where(at <= closes, waiting, 0).tolist()
    return out


def impatient_line(layout: Layout, services: Sequence[ServiceTime], batch: ArrivalBatch,
                   policy: Policy, payment: int, sample_times: Sequence[float], s: int,
                   balk_wait_s: float = 0.0, door_waits: DoorWaits | None = None) -> DayOutcome:
    """``one_line`` when people leave of their own accord: the same FIFO line, walked consumer
    by consumer, where each also balks at the shown wait or gives up once their wait passes
    their patience.

    A newcomer's wait is ``max(0, first counter free - arrival)`` (those ahead who give up leave
    before their own start, which is no later than the newcomer's); one whose wait passes their
    patience leaves then, without taking the counter. The line is a heap of the times its people
    leave it (starting, giving up or, for those who would start after closing, closing).
    """
    closes = layout.closes_s
    counters_for, _, bound = _per_service(layout, services, {s})
    _check_bound(policy, bound, {s})
    c = len(counters_for[s])
    out = DayOutcome(arrivals=len(batch.times), returning=batch.returning)
    times = _as_list(batch.times)
    n = len(times)
    if c == 0:
        out.turned_away_closing = n
        out.sent_home[s] = n
        out.queue_samples = [0] * len(sample_times)
        return out
    lengths, patience, u_balk = _as_list(batch.service_s), _as_list(batch.patience_s), _as_list(batch.u_balk)
    hint = policy.hint and s == payment
    u_hint = _as_list(batch.u_hint) if hint else []
    u_door = _as_list(batch.u_door) if policy.door else []
    door, kind = policy.door, policy.door_estimate
    offer_online = s == payment
    hint_after, uptake, accept = policy.hint_after_s, policy.hint_uptake, policy.door_online_accept
    mean = services[s].mean_s
    door_estimate = (door_waits or DoorWaits()).table(kind, c, mean, services[s].sd_s, bound[s],
                                                      services[s].mean_error_s)
    door_table = door_estimate.values
    hint_from = _hint_from(hint_after, mean, c, n) if hint else n + 1
    # the shown wait is ahead x mean / c: a walk-in balks when u < that / balk_wait_s
    balk_per_ahead = mean / c / balk_wait_s if balk_wait_s > 0 else 0.0
    frees = [0.0] * c
    line: list[float] = []                 # heap: when each of those waiting leaves the line
    waits = out.waits
    samples = out.queue_samples
    heappush, heappop, heapreplace = heapq.heappush, heapq.heappop, heapq.heapreplace
    online_hint = refused = online_door = sent_home = balked = reneged = closing = 0
    lost = gave_up = last_start = 0.0
    max_queue = 0
    inf = math.inf
    n_samples = len(sample_times)
    si = 0
    next_sample = sample_times[0] if n_samples else inf
    for j, t in enumerate(times):
        # the line at each sample time before t: everyone before t has arrived, and those
        # who left by then are off the heap
        while next_sample <= t:
            while line and line[0] <= next_sample:
                heappop(line)
            samples.append(len(line))
            si += 1
            next_sample = sample_times[si] if si < n_samples else inf
        while line and line[0] <= t:
            heappop(line)
        ahead = len(line)
        if ahead >= hint_from and u_hint[j] < uptake:
            online_hint += 1
            continue
        if ahead and u_balk[j] < ahead * balk_per_ahead:
            balked += 1
            continue
        first_free = frees[0]
        if door and (ahead or first_free > t):
            if ahead >= len(door_table):
                door_estimate.grow(ahead)
            if t + door_table[ahead] > closes:
                refused += 1
                if offer_online and u_door[j] < accept:
                    online_door += 1
                else:
                    sent_home += 1
                continue
        if first_free <= t:
            heapreplace(frees, t + lengths[j])
            waits.append(0.0)
            last_start = t
            continue
        give_up = t + patience[j]
        if give_up < first_free and give_up <= closes:
            reneged += 1
            gave_up += patience[j]
            heappush(line, give_up)
        elif first_free > closes:
            closing += 1
            lost += closes - t
            heappush(line, inf)
        else:
            heapreplace(frees, first_free + lengths[j])
            waits.append(first_free - t)
            last_start = first_free
            heappush(line, first_free)
        if ahead >= max_queue:
            max_queue = ahead + 1
    for at in sample_times[si:]:
        if at > closes:
            samples.append(0)
            continue
        while line and line[0] <= at:
            heappop(line)
        samples.append(len(line))
    out.online_hint, out.refused_at_door, out.online_door = online_hint, refused, online_door
    out.balked, out.reneged, out.gave_up_s = balked, reneged, gave_up
    out.served = len(waits)
    out.turned_away_closing = closing
    out.lost_s = lost
    out.max_queue = max_queue
    out.last_wait_end_s = last_start
    home = closing + sent_home + balked + reneged
    if home:
        out.sent_home[s] = home
    return out


def impatient_booked_line(layout: Layout, services: Sequence[ServiceTime], batch: ArrivalBatch,
                          policy: Policy, payment: int, sample_times: Sequence[float], s: int,
                          balk_wait_s: float = 0.0, door_waits: DoorWaits | None = None) -> DayOutcome:
    """``booked_line`` when people leave of their own accord, walked consumer by consumer as
    ``impatient_line`` is, the booked fitted in: a counter that frees takes any booked
    consumer whose slot has started first, so before a walk-in is given the first free counter
    at time T, every booked consumer whose slot starts by T takes one (earliest slot first) and
    T is worked out again. The booked are counted in the line from their slot's start. The
    longest line is read at walk-ins' arrivals, so a line of the booked alone between two
    walk-ins may be missed; every other figure is ``booked_line``'s.
    """
    closes = layout.closes_s
    counters_for, _, bound = _per_service(layout, services, {s})
    _check_bound(policy, bound, {s})
    c = len(counters_for[s])
    mean = services[s].mean_s
    out = DayOutcome(arrivals=len(batch.times), returning=batch.returning)
    waits, booked_waits, samples = out.waits, out.booked_waits, out.queue_samples
    booked = np.asarray(batch.booked, dtype=bool)
    walk = ~booked
    times = np.asarray(batch.times)
    lengths_all = np.asarray(batch.service_s)
    w_times, w_lengths = times[walk].tolist(), lengths_all[walk].tolist()
    w_patience = np.asarray(batch.patience_s)[walk].tolist()
    w_balk = np.asarray(batch.u_balk)[walk].tolist()
    b_times, b_lengths = times[booked].tolist(), lengths_all[booked].tolist()
    nb = len(b_times)
    hint = policy.hint and s == payment
    door, kind = policy.door, policy.door_estimate
    w_hint = np.asarray(batch.u_hint)[walk].tolist() if hint else []
    w_door = np.asarray(batch.u_door)[walk].tolist() if door else []
    hint_after, uptake, accept = policy.hint_after_s, policy.hint_uptake, policy.door_online_accept
    offer_online = s == payment
    door_estimate = (door_waits or DoorWaits()).table(kind, c, mean, services[s].sd_s, bound[s],
                                                      services[s].mean_error_s)
    door_table = door_estimate.values
    balk_per_ahead = mean / c / balk_wait_s if balk_wait_s > 0 else 0.0
    everyone = len(w_times) + nb             # the most anyone can have ahead
    hint_from = _hint_from(hint_after, mean, c, everyone) if hint else everyone + 1
    frees = [0.0] * c
    line: list[float] = []      # heap: when each of those waiting (and arrived) leaves the line
    pending: deque = deque()    # booked given a counter already: (slot start, start), in order
    heappush, heappop, heapreplace = heapq.heappush, heapq.heappop, heapq.heapreplace
    inf = math.inf
    online_hint = refused = online_door = sent_home = balked = reneged = closing = 0
    lost = gave_up = last_start = 0.0
    max_queue = bi = si = 0
    n_samples = len(sample_times)
    next_sample = sample_times[0] if n_samples else inf

    def book_until(at: float, arrived: float) -> None:
        """Give counters to the booked whose slot starts by ``at``, and count in the line
        those who arrived by ``arrived`` (before it, for a sample: the event loop samples
        before what happens at the sample's time) and still wait."""
        nonlocal bi, last_start, closing, lost
        while bi < nb and b_times[bi] <= at:
            slot = b_times[bi]
            start = frees[0] if frees[0] > slot else slot
            if start > closes:
                closing += 1
                lost += closes - slot
                start = inf
            else:
                heapreplace(frees, start + b_lengths[bi])
                booked_waits.append(start - slot)
                if start > last_start:
                    last_start = start
            pending.append((slot, start))
            bi += 1
        while pending and pending[0][0] <= arrived:
            slot, start = pending.popleft()
            if start > slot:
                heappush(line, start)

    for j, t in enumerate(w_times):
        while next_sample <= t:
            book_until(next_sample, next_sample - 1e-9)
            while line and line[0] <= next_sample:
                heappop(line)
            samples.append(len(line))
            si += 1
            next_sample = sample_times[si] if si < n_samples else inf
        if bi < nb and b_times[bi] <= t or pending and pending[0][0] <= t:   # else nothing to do
            book_until(t, t)
        while line and line[0] <= t:
            heappop(line)
        ahead = len(line)
        if ahead >= hint_from and w_hint[j] < uptake:
            online_hint += 1
            continue
        if ahead and w_balk[j] < ahead * balk_per_ahead:
            balked += 1
            continue
        first_free = frees[0]
        if door and (ahead or first_free > t):
            if ahead >= len(door_table):
                door_estimate.grow(ahead)
            if t + door_table[ahead] > closes:
                refused += 1
                if offer_online and w_door[j] < accept:
                    online_door += 1
                else:
                    sent_home += 1
                continue
        starts = first_free if first_free > t else t
        while bi < nb and b_times[bi] <= starts:   # the booked go first at that counter
            book_until(starts, t)
            starts = frees[0] if frees[0] > t else t
        if starts == t:
            heapreplace(frees, t + w_lengths[j])
            waits.append(0.0)
            if t > last_start:
                last_start = t
            continue
        give_up = t + w_patience[j]
        if give_up < starts and give_up <= closes:
            reneged += 1
            gave_up += w_patience[j]
            heappush(line, give_up)
        elif starts > closes:
            closing += 1
            lost += closes - t
            heappush(line, inf)
        else:
            heapreplace(frees, starts + w_lengths[j])
            waits.append(starts - t)
            if starts > last_start:
                last_start = starts
            heappush(line, starts)
        if ahead >= max_queue:
            max_queue = ahead + 1
    for at in sample_times[si:]:
        if at > closes:
            samples.append(0)
            continue
        book_until(at, at - 1e-9)
        while line and line[0] <= at:
            heappop(line)
        samples.append(len(line))
    book_until(inf, inf)
    out.online_hint, out.refused_at_door, out.online_door = online_hint, refused, online_door
    out.balked, out.reneged, out.gave_up_s = balked, reneged, gave_up
    out.served = len(waits) + len(booked_waits)
    out.turned_away_closing = closing
    out.lost_s = lost
    out.max_queue = max_queue
    out.last_wait_end_s = last_start
    home = closing + sent_home + balked + reneged
    if home:
        out.sent_home[s] = home
    return out


def _hint_from(hint_after: float, mean: float, counters: int, most: int) -> int:
    """The fewest people ahead whose p50 wait (ahead x mean / counters) passes ``hint_after``.

    Found with the very expression the event loop tests, so both loops agree to the last bit.
    """
    low, high = 0, most + 1
    while low < high:
        mid = (low + high) // 2
        if mid * mean / counters > hint_after:
            high = mid
        else:
            low = mid + 1
    return low


def _plain_line(times: Sequence[float], lengths: Sequence[float], frees: list[float], closes: float,
                joined: list[float], waits: list[float], line: deque) -> tuple[int, int]:
    """``one_line`` with no policy, until every counter is busy past closing (the hot path).

    Returns where it stopped and the longest line; ``line`` is left holding the start times of
    those still waiting then. The longest line is counted afterwards: after consumer j joins,
    j + 1 have joined and those whose start is not after t_j have left the line.
    """
    heapreplace = heapq.heapreplace
    stop = len(times)
    for j, t in enumerate(times):
        first_free = frees[0]
        if first_free > t:
            if first_free > closes:
                stop = j
                break
            heapreplace(frees, first_free + lengths[j])
            waits.append(first_free - t)
        else:
            heapreplace(frees, t + lengths[j])
            waits.append(0.0)
    if not waits:
        return stop, 0
    came = np.asarray(times[:stop])
    starts = came + np.asarray(waits)
    in_line = np.arange(1, stop + 1) - np.searchsorted(starts, came, side="right")
    line.extend(starts[starts > came[-1]].tolist())
    joined.extend(came.tolist())
    return stop, int(in_line.max())


def booked_line(layout: Layout, services: Sequence[ServiceTime], batch: ArrivalBatch,
                policy: Policy, payment: int, sample_times: Sequence[float], s: int,
                door_waits: DoorWaits | None = None, balk_wait_s: float = 0.0) -> DayOutcome:
    """``event_loop`` for a day when walk-ins and the booked all want service ``s`` (a booking
    what-if's usual day): two lines, the booked one first, before counters that are all alike
    for the day, so a count of free counters and a heap of finishing times stand for the
    counters. The same events in the same order as ``event_loop``, without its per-service
    bookkeeping. At least one counter must serve ``s``. Walk-ins may balk and give up as in
    ``impatient_line``; the booked, who hold a slot, do neither.
    """
    closes = layout.closes_s
    counters_for, _, bound = _per_service(layout, services, {s})
    _check_bound(policy, bound, {s})
    c = len(counters_for[s])
    mean = services[s].mean_s
    out = DayOutcome(arrivals=len(batch.times), returning=batch.returning)
    waits, booked_waits, samples = out.waits, out.booked_waits, out.queue_samples
    times, lengths = _as_list(batch.times), _as_list(batch.service_s)
    u_hint, u_door = _as_list(batch.u_hint), _as_list(batch.u_door)
    booked = _as_list(batch.booked)
    n = len(times)
    giving = (GivingUp(_as_list(batch.patience_s), [s] * n, len(services))
              if batch.patience_s is not None else None)
    u_balk = _as_list(batch.u_balk) if giving is not None else []
    balk_per_ahead = mean / c / balk_wait_s if giving is not None and balk_wait_s > 0 else 0.0
    hint = policy.hint and s == payment
    door, kind = policy.door, policy.door_estimate
    hint_after, uptake, accept = policy.hint_after_s, policy.hint_uptake, policy.door_online_accept
    offer_online = s == payment
    door_estimate = (door_waits or DoorWaits()).table(kind, c, mean, services[s].sd_s, bound[s],
                                                      services[s].mean_error_s)
    door_table = door_estimate.values      # the door's estimate by people ahead, as needed
    line: deque = deque()                  # walk-ins waiting: (arrival, service length, index)
    booked_line_: deque = deque()          # the booked waiting: (slot start, service length, index)
    finishing: list[float] = []
    free = c
    n_samples = len(sample_times)
    next_sample = sample_times[0] if n_samples else math.inf
    si = i = waiting = max_queue = 0
    online_hint = refused = online_door = sent_home = balked = 0
    last_start = 0.0
    inf = math.inf
    heappush, heappop = heapq.heappush, heapq.heappop
    gone = giving.gone if giving is not None else [0] * len(services)   # gave up, still listed
    expiring = giving.expiring if giving is not None else []   # read here: a call costs more
    state = giving.state if giving is not None else bytearray(n)

    while True:
        ta = times[i] if i < n else inf
        td = finishing[0] if finishing else inf
        t = ta if ta <= td else td
        if t > closes:
            break
        while next_sample <= t:
            if expiring and expiring[0][0] <= next_sample:
                waiting -= giving.until(next_sample)
            samples.append(waiting)
            si += 1
            next_sample = sample_times[si] if si < n_samples else inf
        if expiring and expiring[0][0] <= t:
            waiting -= giving.until(t)
        if ta <= td:
            length = lengths[i]
            expected = booked[i]
            j = i
            i += 1
            ahead = len(line) - gone[s] + len(booked_line_)
            if hint and not expected and ahead * mean / c > hint_after and u_hint[j] < uptake:
                online_hint += 1
                continue
            if balk_per_ahead and not expected and ahead and u_balk[j] < ahead * balk_per_ahead:
                balked += 1
                continue
            if ahead == 0 and free:
                free -= 1
                heappush(finishing, t + length)
                (booked_waits if expected else waits).append(0.0)
                state[j] = STARTED
                last_start = t
                continue
            if expected:
                booked_line_.append((t, length, j))
            else:
                if door:
                    if ahead >= len(door_table):
                        door_estimate.grow(ahead)
                    if t + door_table[ahead] > closes:
                        refused += 1
                        if offer_online and u_door[j] < accept:
                            online_door += 1
                        else:
                            sent_home += 1
                        continue
                line.append((t, length, j))
                if giving is not None:
                    giving.join(j, t)
            waiting += 1
            if waiting > max_queue:
                max_queue = waiting
        else:
            heappop(finishing)
            if line and state[line[0][2]] == GAVE_UP:
                giving.drop_gone(line)
            if booked_line_:
                came, length, j = booked_line_.popleft()
                booked_waits.append(t - came)
            elif line:
                came, length, j = line.popleft()
                waits.append(t - came)
                state[j] = STARTED
            else:
                free += 1
                continue
            waiting -= 1
            last_start = t
            heappush(finishing, t + length)

    if giving is not None:
        waiting = _sample_until_closing_giving_up(samples, sample_times, si, waiting, closes, giving)
        line = giving.still_waiting(line)
        out.reneged, out.gave_up_s = giving.count, giving.time
    else:
        _sample_until_closing(samples, sample_times, si, waiting, closes)
    out.balked = balked
    if sent_home + balked + out.reneged:
        out.sent_home[s] = sent_home + balked + out.reneged
    for left in (line, booked_line_):
        _turn_away(out, s, left, closes)
    out.online_hint, out.refused_at_door, out.online_door = online_hint, refused, online_door
    out.served = len(waits) + len(booked_waits)
    out.max_queue = max_queue
    out.last_wait_end_s = last_start
    return out


def event_loop(layout: Layout, services: Sequence[ServiceTime], batch: ArrivalBatch, policy: Policy,
               payment: int, sample_times: Sequence[float],
               door_waits: DoorWaits | None = None, balk_wait_s: float = 0.0) -> DayOutcome:
    """The general day: several services, counters serving different sets of them, and booked
    consumers, called before walk-ins (earliest slot first) by every counter serving them.

    Waiting booked consumers count as people ahead for the hint and the door (the server counts
    every token ahead); bookings yet to come do not. Walk-ins may balk at their service's shown
    wait and give up as in ``impatient_line``; the booked do neither.
    """
    closes = layout.closes_s
    counters = layout.counters
    n_services = len(services)
    kinds = _as_list(batch.services)
    counters_for, shared, bound = _per_service(layout, services, set(kinds))
    _check_bound(policy, bound, set(kinds))
    n_for = [len(c) for c in counters_for]
    mean = [sv.mean_s for sv in services]
    door_waits = door_waits or DoorWaits()
    door_tables = [door_waits.table(policy.door_estimate, n_for[s], mean[s], services[s].sd_s,
                                    bound[s], services[s].mean_error_s) for s in range(n_services)]

    lines: list[deque] = [deque() for _ in range(n_services)]         # (arrival, length, index)
    booked_lines: list[deque] = [deque() for _ in range(n_services)]  # (slot start, length, index)
    free = [True] * len(counters)
    finishing: list[tuple[float, int]] = []
    out = DayOutcome(arrivals=len(batch.times), returning=batch.returning)
    waits = out.waits
    samples = out.queue_samples
    sent_home = out.sent_home
    times, lengths = _as_list(batch.times), _as_list(batch.service_s)
    u_hint, u_door = _as_list(batch.u_hint), _as_list(batch.u_door)
    booked = _as_list(batch.booked) if batch.booked is not None else [False] * len(times)
    booked_waits = out.booked_waits
    hint, door, kind = policy.hint, policy.door, policy.door_estimate
    hint_after, uptake, accept = policy.hint_after_s, policy.hint_uptake, policy.door_online_accept
    n = len(times)
    giving = (GivingUp(_as_list(batch.patience_s), kinds, n_services)
              if batch.patience_s is not None else None)
    u_balk = _as_list(batch.u_balk) if giving is not None else []
    balking = giving is not None and balk_wait_s > 0
    gone = giving.gone if giving is not None else [0] * n_services   # gave up, still listed
    expiring = giving.expiring if giving is not None else []   # read here: a call costs more
    state = giving.state if giving is not None else bytearray(n)
    n_samples = len(sample_times)
    next_sample = sample_times[0] if n_samples else math.inf
    si = 0
    i = 0
    waiting = 0
    max_queue = 0
    last_start = 0.0
    inf = math.inf
    heappush, heappop = heapq.heappush, heapq.heappop

    while True:
        ta = times[i] if i < n else inf
        td = finishing[0][0] if finishing else inf
        t = ta if ta <= td else td
        if t > closes:
            break
        while next_sample <= t:
            if expiring and expiring[0][0] <= next_sample:
                waiting -= giving.until(next_sample)
            samples.append(waiting)
            si += 1
            next_sample = sample_times[si] if si < n_samples else inf
        if expiring and expiring[0][0] <= t:
            waiting -= giving.until(t)
        if ta <= td:
            s = kinds[i]
            length = lengths[i]
            j = i
            i += 1
            c = n_for[s]
            line = lines[s]
            ahead = len(line) - gone[s] + len(booked_lines[s])
            if c == 0:  # nobody here serves it: sent home, as at closing
                out.turned_away_closing += 1
                sent_home[s] = sent_home.get(s, 0) + 1
                continue
            expected = booked[j]  # booked: neither hint nor door, and first in line
            if (hint and not expected and s == payment and ahead * mean[s] / c > hint_after
                    and u_hint[j] < uptake):
                out.online_hint += 1
                continue
            if balking and not expected and ahead and u_balk[j] < ahead * mean[s] / c / balk_wait_s:
                out.balked += 1
                sent_home[s] = sent_home.get(s, 0) + 1
                continue
            if ahead == 0:  # nobody of this service waits: maybe one of its counters is free
                k = next((k for k in counters_for[s] if free[k]), -1)
                if k >= 0:
                    free[k] = False
                    heappush(finishing, (t + length, k))
                    (booked_waits if expected else waits).append(0.0)
                    if giving is not None:
                        giving.state[j] = STARTED
                    last_start = t
                    continue
            if expected:
                line = booked_lines[s]
            elif door:
                # p50/p90 depend on ``ahead`` only, the max bound on the shared count only
                key = (sum(len(lines[x]) - gone[x] + len(booked_lines[x]) for x in shared[s])
                       if kind == "max" else ahead)
                table = door_tables[s]
                if key >= len(table.values):
                    table.grow(key)
                if t + table.values[key] > closes:
                    out.refused_at_door += 1
                    if s == payment and u_door[j] < accept:
                        out.online_door += 1
                    else:
                        sent_home[s] = sent_home.get(s, 0) + 1
                    continue
            line.append((t, length, j))
            if giving is not None and not expected:
                giving.join(j, t)
            waiting += 1
            if waiting > max_queue:
                max_queue = waiting
        else:
            _, k = heappop(finishing)
            served = counters[k]
            line = None
            first = inf
            for x in served:  # the booked first, earliest slot first
                candidate = booked_lines[x]
                if candidate and candidate[0][0] < first:
                    first = candidate[0][0]
                    line = candidate
            if line is not None:
                came, length, _ = line.popleft()
                waiting -= 1
                booked_waits.append(t - came)
                last_start = t
                heappush(finishing, (t + length, k))
                continue
            if giving is not None:
                for x in served:
                    if lines[x] and state[lines[x][0][2]] == GAVE_UP:
                        giving.drop_gone(lines[x])
            if len(served) == 1:
                line = lines[served[0]]
                if not line:
                    free[k] = True
                    continue
            else:
                line = None
                first = inf
                for x in served:
                    candidate = lines[x]
                    if candidate and candidate[0][0] < first:
                        first = candidate[0][0]
                        line = candidate
                if line is None:
                    free[k] = True
                    continue
            came, length, j = line.popleft()
            state[j] = STARTED
            waiting -= 1
            waits.append(t - came)
            last_start = t
            heappush(finishing, (t + length, k))

    if giving is not None:
        waiting = _sample_until_closing_giving_up(samples, sample_times, si, waiting, closes, giving)
        lines = [giving.still_waiting(line) for line in lines]
        out.reneged, out.gave_up_s = giving.count, giving.time
        for s, left in enumerate(giving.by_service):
            if left:
                sent_home[s] = sent_home.get(s, 0) + left
    else:
        _sample_until_closing(samples, sample_times, si, waiting, closes)
    for s, line in enumerate(lines + booked_lines):
        _turn_away(out, s % n_services, line, closes)
    out.served = len(waits) + len(booked_waits)
    out.max_queue = max_queue
    out.last_wait_end_s = last_start
    return out


STARTED, GAVE_UP = 1, 2   # GivingUp.state: 0 still waiting (or not in a line)


class GivingUp:
    """Who gives up in an event loop's FIFO lines, without an event of its own: each walk-in
    who joins a line has a time they give up at, kept in a heap and read up to each event's
    time, before anything else happens then. Whoever gave up stays listed in their line until
    they reach its head (``gone`` counts them per service, so the line's length is known)."""

    __slots__ = ("patience", "kinds", "expiring", "state", "gone", "by_service", "count", "time")

    def __init__(self, patience: Sequence[float], kinds: Sequence[int], n_services: int) -> None:
        self.patience, self.kinds = patience, kinds
        self.expiring: list[tuple[float, int]] = []
        self.state = bytearray(len(patience))
        self.gone = [0] * n_services         # gave up but still listed in their line
        self.by_service = [0] * n_services   # gave up today, per service
        self.count = 0
        self.time = 0.0                       # time in line of those who gave up

    def join(self, j: int, t: float) -> None:
        if self.patience[j] != math.inf:
            heapq.heappush(self.expiring, (t + self.patience[j], j))

    def until(self, t: float) -> int:
        """Those whose patience ran out by ``t`` and who had not started: how many left now."""
        expiring, state = self.expiring, self.state
        left = 0
        while expiring and expiring[0][0] <= t:
            _, j = heapq.heappop(expiring)
            if not state[j]:
                state[j] = GAVE_UP
                s = self.kinds[j]
                self.gone[s] += 1
                self.by_service[s] += 1
                self.time += self.patience[j]
                left += 1
        self.count += left
        return left

    def drop_gone(self, line: deque) -> None:
        """Take those who gave up off the head of ``line``, so its head is still waiting."""
        state = self.state
        while line and state[line[0][2]] == GAVE_UP:
            _, _, j = line.popleft()
            self.gone[self.kinds[j]] -= 1

    def still_waiting(self, line: deque) -> deque:
        """``line`` without those who gave up (at closing)."""
        state = self.state
        return deque(entry for entry in line if state[entry[2]] != GAVE_UP)


def _sample_until_closing(samples: list[int], sample_times: Sequence[float], si: int, waiting: int,
                          closes: float) -> None:
    """The line's samples from ``si`` on, once the day's last event is past: ``waiting`` until
    closing, nobody after."""
    for at in sample_times[si:]:
        samples.append(waiting if at <= closes else 0)


def _sample_until_closing_giving_up(samples: list[int], sample_times: Sequence[float], si: int,
                                    waiting: int, closes: float, giving: GivingUp) -> int:
    """``_sample_until_closing`` while people still give up until closing; how many wait then."""
    for at in sample_times[si:]:
        if at <= closes:
            waiting -= giving.until(at)
        samples.append(waiting if at <= closes else 0)
    return waiting - giving.until(closes)


def _turn_away(out: DayOutcome, s: int, line: deque, closes: float) -> None:
    """Those of service ``s`` still in ``line`` at closing: turned away and sent home, their
    time in line lost."""
    if line:
        out.turned_away_closing += len(line)
        out.sent_home[s] = out.sent_home.get(s, 0) + len(line)
        out.lost_s += sum(closes - entry[0] for entry in line)


def _as_list(values: Sequence) -> list:
    """Python lists: the loops read them element by element, much faster than numpy arrays."""
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def index_of(services: Sequence[ServiceTime]) -> Mapping[str, int]:
    """Service id -> index in the simulation's lists."""
    return {sv.id: i for i, sv in enumerate(services)}
