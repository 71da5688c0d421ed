"""A month of working days: fresh arrivals each day, plus those sent home the day before.

Random numbers come from one stream per (seed, purpose, day, substation), so a run is repeatable
and every policy faces the same fresh consumers with the same service times and the same coin
flips; only the people coming back differ, because each policy sends different people home.
Who books a slot comes from a stream of its own (BOOK), so booking share 0 is today's run to the
last bit, and every policy faces the same bookings; so do each consumer's patience and balking
draw (LEAVE_FRESH, LEAVE_BACK), so a run where nobody leaves is the run from before people could.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from counter_server.config import Scenario

from .booking import Request, assign_slots, slot_capacity, slot_starts
from .demand import ArrivalBatch, DemandParams, arrival_times
from .model import DayOutcome, Layout, ServiceTime, index_of, layouts, run_day, service_times
from .policies import DoorWaits, Policy

FRESH, BACK, RETURNS, BOOK, LEAVE_FRESH, LEAVE_BACK = 0, 1, 2, 3, 4, 5   # random streams' purposes


@dataclass(frozen=True)
class MonthPlan:
    """Everything a run needs besides the policy and the seed: built once, shared by runs."""

    demand: DemandParams
    layouts: tuple[Layout, ...]
    services: tuple[ServiceTime, ...]
    days: tuple[int, ...]              # working days to simulate (1-based, in order)
    sample_step_s: float = 300.0

    @property
    def payment(self) -> int:
        return index_of(self.services)[self.demand.payment_service]

    @property
    def sample_times(self) -> list[float]:
        """Clock times the line is recorded at: from the earliest opening to the latest closing."""
        start = min(lay.opens_s for lay in self.layouts)
        end = max(lay.closes_s for lay in self.layouts)
        return np.arange(start, end + self.sample_step_s / 2, self.sample_step_s).tolist()

    def service_weights(self, service: int) -> np.ndarray:
        """Each substation's share of ``service``'s consumers: only halls with a counter serving
        it get any (nobody queues where nobody can serve them), in ``weights``' proportions."""
        serves = np.array([any(service in c for c in lay.counters) for lay in self.layouts])
        raw = self.weights() * serves
        if raw.sum() <= 0:
            halls = ", ".join(lay.substation for lay in self.layouts)
            raise ValueError(f"service {self.services[service].id!r}: no counter serves it at any "
                             f"substation with a weight above 0 ({halls})")
        return raw / raw.sum()

    def weights(self) -> np.ndarray:
        """Each substation's share of the consumers (weights not given count 1)."""
        raw = np.array([self.demand.substation_weights.get(lay.substation, 1.0) for lay in self.layouts])
        if raw.sum() <= 0:
            raise ValueError("substation_weights: at least one substation needs a weight above 0")
        return raw / raw.sum()


def make_plan(scenario: Scenario, demand: DemandParams, days: int | None = None,
              counters_per_substation: int | None = None, sample_step_s: float = 300.0) -> MonthPlan:
    """A plan for the last ``days`` working days of the month (all of them when None)."""
    n = demand.working_days if days is None else days
    if not 1 <= n <= demand.working_days:
        raise ValueError(f"days: must be between 1 and {demand.working_days}, got {n}")
    if sample_step_s <= 0:
        raise ValueError("sample step must be above 0")
    if counters_per_substation is not None and counters_per_substation < 1:
        raise ValueError("counters per substation: must be 1 or more")
    first = demand.working_days - n + 1
    plan = MonthPlan(
        demand=demand,
        layouts=layouts(scenario, counters_per_substation),
        services=service_times(scenario, demand.service_time_distribution),
        days=tuple(range(first, demand.working_days + 1)),
        sample_step_s=sample_step_s,
    )
    plan.weights()  # refuse weights that send nobody anywhere now, not in the middle of a run
    wanted = [plan.payment, *(index_of(plan.services)[sid] for sid, n in demand.visits_per_day.items() if n > 0)]
    for service in wanted:   # and a service nobody can serve anywhere
        plan.service_weights(service)
    return plan


@dataclass
class DayStats:
    """One day, all substations together: a row of the per-day table."""

    day: int
    last_week: bool
    arrivals: int
    returning: int
    served: int
    turned_away_closing: int
    refused_at_door: int
    online_hint: int
    online_door: int
    longest_queue: int
    wait_p50_s: float
    wait_p90_s: float
    lost_hours: float       # time in line of those turned away at closing
    booked: int = 0         # booked consumers served (they came at their slot's start)
    balked: int = 0         # saw the shown wait and went home
    reneged: int = 0        # joined the line, then gave up before being called
    gave_up_hours: float = 0.0   # time in line of those who gave up

    @property
    def turned_away(self) -> int:
        """Everyone who came and left unserved, by any cause: at closing, refused at the door
        (some of whom pay online), balking and giving up."""
        return self.turned_away_closing + self.refused_at_door + self.balked + self.reneged

    @property
    def sent_home(self) -> int:
        """Those who left unserved and did not pay online instead: they may come back."""
        return self.turned_away - self.online_door


@dataclass
class MonthResult:
    """A policy's month: the table rows, and what the plots need."""

    policy: Policy
    days: list[DayStats] = field(default_factory=list)
    waits: dict[int, np.ndarray] = field(default_factory=dict)        # day -> waits (s)
    queues: dict[int, np.ndarray] = field(default_factory=dict)       # day -> (substation, sample)
    unpaid_at_month_end: int = 0
    booked_waits: dict[int, np.ndarray] = field(default_factory=dict)  # day -> from slot start (s)
    bookings: int = 0       # consumers who wanted to book a slot ...
    unbooked: int = 0       # ... and found none free, so walked in on their own day

    def last_week(self) -> list[DayStats]:
        return [d for d in self.days if d.last_week]

    def last_week_waits(self) -> np.ndarray:
        chosen = [self.waits[d.day] for d in self.last_week()]
        return np.concatenate(chosen) if chosen else np.zeros(0)

    def last_week_p90_s(self) -> float:
        waits = self.last_week_waits()
        return float(np.percentile(waits, 90)) if len(waits) else 0.0

    def booked_p90_s(self) -> float:
        """p90 of the booked consumers' waits from their slot's start, over the whole run."""
        chosen = [w for w in self.booked_waits.values() if len(w)]
        return float(np.percentile(np.concatenate(chosen), 90)) if chosen else 0.0

    def total(self, name: str, last_week_only: bool = False) -> int | float:
        rows = self.last_week() if last_week_only else self.days
        return sum(getattr(d, name) for d in rows)


def _rng(seed: int, purpose: int, day: int, where: int) -> np.random.Generator:
    return np.random.default_rng([seed, purpose, day, where])


@dataclass(frozen=True)
class DayBookings:
    """One substation's day under bookings: which fresh payers still walk in (False: they booked,
    maybe for another day), and the booked who come today (slot starts, service times)."""

    walk_in: np.ndarray
    times: np.ndarray
    service_s: np.ndarray


# service, times, lengths, u_hint, u_door, patience (s), u_balk (the last two None: nobody leaves)
Group = tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]


class FreshArrivals:
    """The fresh consumers of one plan and seed, drawn once for every policy a task runs (and
    its bookings): they come from a random stream of their own, the same whoever came back."""

    def __init__(self, plan: MonthPlan, seed: int) -> None:
        self.plan, self.seed = plan, seed
        self._drawn: dict[tuple[int, int], list[Group]] = {}

    def groups(self, where: int, day: int, means: Sequence[float]) -> list[Group]:
        """``make_batch``'s fresh groups at ``where`` on ``day`` (``means``: fresh_means')."""
        found = self._drawn.get((day, where))
        if found is None:
            found = self._drawn[day, where] = _fresh_groups(self.plan, where, day, self.seed, means)
        return found


def _fresh_groups(plan: MonthPlan, where: int, day: int, seed: int,
                  fresh: Sequence[float]) -> list[Group]:
    rng = _rng(seed, FRESH, day, where)
    return _groups(plan, where, rng, [int(rng.poisson(m)) for m in fresh],
                   _rng(seed, LEAVE_FRESH, day, where))


def _groups(plan: MonthPlan, where: int, rng: np.random.Generator,
            counts: Sequence[int], leave_rng: np.random.Generator) -> list[Group]:
    """Per service with anyone: their arrival times, service times and policy draws, and when
    people leave of their own accord, each one's patience and balking draw (from ``leave_rng``,
    so the rest is the same whether they do or not)."""
    layout = plan.layouts[where]
    groups = []
    for s, count in enumerate(counts):
        if not count:
            continue
        drawn = (arrival_times(rng, count, layout.opens_s, layout.closes_s,
                               plan.demand.intraday_profile),
                 plan.services[s].draw(rng, count), rng.random(count), rng.random(count))
        groups.append((s, *drawn, *_leaving(plan.demand, leave_rng, count)))
    return groups


def _leaving(demand: DemandParams, rng: np.random.Generator,
             count: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Patience (exponential, ``patience_mean_s``; inf when nobody gives up) and balking draws
    of ``count`` consumers, or (None, None) when nobody leaves of their own accord."""
    if not demand.impatient:
        return None, None
    patience = (rng.exponential(demand.patience_mean_s, count) if demand.patience_mean_s > 0
                else np.full(count, np.inf))
    return patience, rng.random(count)


def make_batch(plan: MonthPlan, where: int, day: int, seed: int, fresh: Sequence[float],
               back: dict[int, int], booking: DayBookings | None = None,
               arrivals: FreshArrivals | None = None) -> ArrivalBatch:
    """One substation's arrivals: Poisson counts of fresh consumers per service, plus ``back``,
    less the fresh payers who booked, plus those booked for today (``booking``).

    Fresh consumers come from their own random stream, so they are the same whoever came back;
    ``arrivals`` (for this plan and seed) has them drawn already.
    """
    groups = list(arrivals.groups(where, day, fresh) if arrivals is not None
                  else _fresh_groups(plan, where, day, seed, fresh))
    groups += _groups(plan, where, _rng(seed, BACK, day, where),
                      [back.get(s, 0) for s in range(len(plan.services))],
                      _rng(seed, LEAVE_BACK, day, where))
    returning = sum(back.values())
    if booking is not None:
        return _with_bookings(groups, booking, plan.payment, returning, plan.demand.impatient)
    if not groups:
        empty = np.zeros(0)
        leave = (empty, empty) if plan.demand.impatient else (None, None)
        return ArrivalBatch(empty, np.zeros(0, dtype=int), empty, empty, empty, 0, None, *leave)
    if len(groups) == 1:
        s, times, lengths, u_hint, u_door, patience, u_balk = groups[0]
        return ArrivalBatch(times, np.full(len(times), s), lengths, u_hint, u_door, returning,
                            None, patience, u_balk)
    times = np.concatenate([g[1] for g in groups])
    order = np.argsort(times, kind="stable")  # a merge of already sorted runs
    kinds = np.concatenate([np.full(len(g[1]), g[0]) for g in groups])
    lengths, u_hint, u_door = (np.concatenate([g[k] for g in groups])[order] for k in (2, 3, 4))
    patience, u_balk = ((np.concatenate([g[k] for g in groups])[order] for k in (5, 6))
                        if plan.demand.impatient else (None, None))
    return ArrivalBatch(times[order], kinds[order], lengths, u_hint, u_door, returning, None,
                        patience, u_balk)


def _with_bookings(groups: list, booking: DayBookings, payment: int, returning: int,
                   impatient: bool) -> ArrivalBatch:
    """``make_batch``'s groups less the fresh payers who booked, plus today's booked (flagged:
    they neither balk nor give up, having a slot)."""
    fresh_payment = next((k for k, g in enumerate(groups) if g[0] == payment), None)
    if fresh_payment is not None:  # the first group of a service is its fresh consumers
        s, times, lengths, u_hint, u_door, patience, u_balk = groups[fresh_payment]
        keep = booking.walk_in
        groups[fresh_payment] = (s, times[keep], lengths[keep], u_hint[keep], u_door[keep],
                                 *((patience[keep], u_balk[keep]) if impatient else (None, None)))
    n = len(booking.times)
    parts = [(g, False) for g in groups] + [((payment, booking.times, booking.service_s,
                                              np.ones(n), np.ones(n), np.full(n, np.inf),
                                              np.ones(n)), True)]
    times = np.concatenate([g[1] for g, _ in parts])
    order = np.argsort(times, kind="stable")
    kinds = np.concatenate([np.full(len(g[1]), g[0]) for g, _ in parts])
    flags = np.concatenate([np.full(len(g[1]), b) for g, b in parts])
    lengths, u_hint, u_door = (np.concatenate([g[k] for g, _ in parts])[order] for k in (2, 3, 4))
    patience, u_balk = ((np.concatenate([g[k] for g, _ in parts])[order] for k in (5, 6))
                        if impatient else (None, None))
    return ArrivalBatch(times[order], kinds[order], lengths, u_hint, u_door, returning,
                        flags[order], patience, u_balk)


def book_month(plan: MonthPlan, seed: int, arrivals: FreshArrivals | None = None,
               ) -> tuple[dict[tuple[int, int], DayBookings], int, int]:
    """Who books, and which slot each gets: (day, substation) -> DayBookings, then how many
    wanted to book and how many found no free slot (they walk in on their own day).

    A share ``booking_share`` of each last-week day's fresh payers books, earlier days' payers
    that share x ``booking_early_factor`` (the BOOK stream decides who);
    requests go to ``booking.assign_slots``, one substation at a time (slots are published per
    substation, and consumers keep their substation). Fresh consumers do not depend on the
    policy, so neither do the bookings: they are made once, before the month runs.
    """
    d = plan.demand
    fresh = {day: fresh_means(plan, day) for day in plan.days}
    mean_s = plan.services[plan.payment].mean_s
    out: dict[tuple[int, int], DayBookings] = {}
    wanted = unbooked = 0
    for where, layout in enumerate(plan.layouts):
        counters = sum(1 for c in layout.counters if plan.payment in c)
        capacity = slot_capacity(d.booking_share_of_counter_time, counters, d.booking_slot_s, mean_s)
        starts = slot_starts(layout.opens_s, layout.closes_s - d.booking_last_slot_before_close_s,
                             d.booking_slot_s)
        walk_in: dict[int, np.ndarray] = {}
        lengths: dict[int, np.ndarray] = {}
        who: dict[int, np.ndarray] = {}
        requests: list[Request] = []
        for day in plan.days:
            # The day's fresh batch with nobody back: its payers, in the order make_batch keeps.
            batch = make_batch(plan, where, day, seed, fresh[day][where], {}, arrivals=arrivals)
            payers = np.asarray(batch.services) == plan.payment
            times = np.asarray(batch.times)[payers]
            lengths[day] = np.asarray(batch.service_s)[payers]
            walk_in[day] = np.ones(len(times), dtype=bool)
            share = d.booking_share * (1.0 if d.is_last_week(day) else d.booking_early_factor)
            who[day] = np.flatnonzero(_rng(seed, BOOK, day, where).random(len(times)) < share)
            requests += [Request(day, float(t)) for t in times[who[day]]]
        chosen = iter(assign_slots(requests, plan.days, starts, capacity, d.booking_horizon_days,
                                   d.booking_day_choice))
        wanted += len(requests)
        coming: dict[int, list[tuple[float, float]]] = {day: [] for day in plan.days}
        for day in plan.days:
            for i in who[day]:
                got = next(chosen)
                if got is None:
                    unbooked += 1
                    continue
                walk_in[day][i] = False
                coming[got[0]].append((float(starts[got[1]]), float(lengths[day][i])))
        for day in plan.days:
            booked = np.array(sorted(coming[day]), dtype=float).reshape(-1, 2)
            out[day, where] = DayBookings(walk_in[day], booked[:, 0], booked[:, 1])
    return out, wanted, unbooked


def fresh_means(plan: MonthPlan, day: int) -> np.ndarray:
    """Expected fresh arrivals per (substation, service) on ``day``; each service's go only to
    the halls that serve it (``MonthPlan.service_weights``)."""
    per_service = np.zeros(len(plan.services))
    per_service[plan.payment] = plan.demand.counter_payments_on(day)
    for sid, visits in plan.demand.visits_per_day.items():
        per_service[index_of(plan.services)[sid]] = visits
    means = np.zeros((len(plan.layouts), len(plan.services)))
    for s, count in enumerate(per_service):
        if count > 0:
            means[:, s] = plan.service_weights(s) * count
    return means


MonthBookings = tuple[dict[tuple[int, int], DayBookings], int, int]   # what book_month returns


def simulate_month(plan: MonthPlan, policy: Policy, seed: int,
                   booked: MonthBookings | None = None,
                   arrivals: FreshArrivals | None = None,
                   on_day: Callable[[int, Sequence[DayOutcome]], None] | None = None) -> MonthResult:
    """Run the plan's days under ``policy``, day by day, those sent home coming back next day.

    ``booked`` (``book_month(plan, seed)``) and ``arrivals`` (for this plan and seed) are what
    does not depend on the policy: runs of one plan under several policies make them once.
    ``on_day(day, outcomes)`` sees each day's outcomes per substation (in ``plan.layouts``'
    order) as the day ends: what a caller wanting each hall's own figures, or progress, needs.
    """
    result = MonthResult(policy=policy)
    arrivals = arrivals or FreshArrivals(plan, seed)
    bookings: dict[tuple[int, int], DayBookings] = {}
    if plan.demand.booking_share > 0:
        bookings, result.bookings, result.unbooked = booked or book_month(plan, seed, arrivals)
    back: list[dict[int, int]] = [{} for _ in plan.layouts]
    sample_times = plan.sample_times
    payment = plan.payment
    door_waits = DoorWaits()
    for day in plan.days:
        means = fresh_means(plan, day)
        outcomes: list[DayOutcome] = []
        for where, layout in enumerate(plan.layouts):
            batch = make_batch(plan, where, day, seed, means[where], back[where],
                               bookings.get((day, where)), arrivals)
            outcomes.append(run_day(layout, plan.services, batch, policy, payment, sample_times,
                                    door_waits=door_waits, balk_wait_s=plan.demand.balk_wait_s))
        back = [coming_back(plan, seed, day, where, o.sent_home) for where, o in enumerate(outcomes)]
        if on_day is not None:
            on_day(day, outcomes)
        waits = np.concatenate([np.asarray(o.waits) for o in outcomes])
        result.days.append(_day_stats(plan, day, outcomes, waits))
        result.waits[day] = waits.astype(np.float32)
        if bookings:
            result.booked_waits[day] = np.concatenate(
                [np.asarray(o.booked_waits, dtype=np.float32) for o in outcomes])
        result.queues[day] = np.array([o.queue_samples for o in outcomes], dtype=np.int32)
    result.unpaid_at_month_end = sum(sum(b.values()) for b in back)
    return result


def coming_back(plan: MonthPlan, seed: int, day: int, where: int,
                 sent_home: dict[int, int]) -> dict[int, int]:
    share = plan.demand.come_back_share
    if share >= 1.0:
        return dict(sent_home)
    rng = _rng(seed, RETURNS, day, where)
    return {s: int(rng.binomial(n, share)) for s, n in sorted(sent_home.items())}


def _day_stats(plan: MonthPlan, day: int, outcomes: Sequence[DayOutcome],
               waits: np.ndarray) -> DayStats:
    """The day's row; ``waits`` are the outcomes' waits, in order."""
    p50, p90 = np.percentile(waits, [50, 90]).tolist() if len(waits) else (0.0, 0.0)
    return DayStats(
        day=day,
        last_week=plan.demand.is_last_week(day),
        arrivals=sum(o.arrivals for o in outcomes),
        returning=sum(o.returning for o in outcomes),
        served=sum(o.served for o in outcomes),
        turned_away_closing=sum(o.turned_away_closing for o in outcomes),
        refused_at_door=sum(o.refused_at_door for o in outcomes),
        online_hint=sum(o.online_hint for o in outcomes),
        online_door=sum(o.online_door for o in outcomes),
        longest_queue=max((o.max_queue for o in outcomes), default=0),
        wait_p50_s=p50,
        wait_p90_s=p90,
        lost_hours=sum(o.lost_s for o in outcomes) / 3600.0,
        booked=sum(len(o.booked_waits) for o in outcomes),
        balked=sum(o.balked for o in outcomes),
        reneged=sum(o.reneged for o in outcomes),
        gave_up_hours=sum(o.gave_up_s for o in outcomes) / 3600.0,
    )
