"""peak-sim's figures pinned: the built-in scenario, seed 1, gives these numbers to the person.

The simulator is made faster from time to time; a faster run must tell ops the same thing. The
figures below were computed by the simulator before it was tuned for speed, with nobody leaving
the line of their own accord (``PATIENT``: the model before balking and giving up came in, whose
random draws are untouched by them); ``LEAVING_LAST_DAY`` pins the scenario's own month, where
people balk and give up. Counts must match exactly; waits and hours to a relative 1e-9 (the last
bits of a percentile may differ between numpy builds, nothing a report shows).
"""

from __future__ import annotations

from dataclasses import asdict

import pytest

from counter_server.config import Scenario, load_scenario
from loadtests.capacity import coverage
from loadtests.capacity.demand import DemandParams, demand_from_scenario
from loadtests.capacity.month import MonthResult, fresh_means, make_batch, make_plan, simulate_month
from loadtests.capacity.policies import Policy, make_policy
from loadtests.capacity.whatif import WhatIfPoint, run_tasks, whatif_tasks

SEED = 1
FLOAT_FIELDS = ("wait_p50_s", "wait_p90_s", "lost_hours", "gave_up_hours")
PATIENT = {"patience_mean_minutes": 0, "balk_wait_minutes": 0}

# The last working day of the month under each policy, the whole month simulated.
LAST_DAY = {
    "none": dict(day=26, last_week=True, arrivals=81105, returning=56888, served=12822,
                 turned_away_closing=68283, refused_at_door=0, online_hint=0, online_door=0,
                 longest_queue=7147, wait_p50_s=11796.665415040683, wait_p90_s=21635.33654912641,
                 lost_hours=247829.68090839763, booked=0),
    "door": dict(day=26, last_week=True, arrivals=35275, returning=11058, served=12778,
                 turned_away_closing=8, refused_at_door=22489, online_hint=0, online_door=11135,
                 longest_queue=866, wait_p50_s=8950.959179171961, wait_p90_s=17124.691829155345,
                 lost_hours=0.8856983281434744, booked=0),
    "hint": dict(day=26, last_week=True, arrivals=41603, returning=17386, served=12792,
                 turned_away_closing=18736, refused_at_door=0, online_hint=10075, online_door=0,
                 longest_queue=2026, wait_p50_s=8997.242732566276, wait_p90_s=16984.27245887197,
                 lost_hours=50222.42108964616, booked=0),
}
# (still unpaid after the last day, last-week p90 wait in seconds)
MONTH_END = {"none": (68283, 19512.115234375), "door": (11362, 16226.01171875),
             "hint": (18736, 15308.0751953125)}

# The built-in scenario as it is: people balk at the shown wait and give up in line.
LEAVING_LAST_DAY = {
    "none": dict(day=26, last_week=True, arrivals=81815, returning=57598, served=12818,
                 turned_away_closing=2708, refused_at_door=0, online_hint=0, online_door=0,
                 longest_queue=413, wait_p50_s=3967.5765105103637, wait_p90_s=4408.354883327438,
                 lost_hours=1281.646685435736, booked=0, balked=41205, reneged=25084,
                 gave_up_hours=10972.419354334299),
    "door": dict(day=26, last_week=True, arrivals=71498, returning=47281, served=12791,
                 turned_away_closing=8, refused_at_door=9026, online_hint=0, online_door=4496,
                 longest_queue=395, wait_p50_s=3541.168319609569, wait_p90_s=4235.904128233233,
                 lost_hours=0.6375083986935635, booked=0, balked=29714, reneged=19959,
                 gave_up_hours=8374.416551648364),
    "hint": dict(day=26, last_week=True, arrivals=43643, returning=19426, served=12800,
                 turned_away_closing=1088, refused_at_door=0, online_hint=10451, online_door=0,
                 longest_queue=233, wait_p50_s=2375.906697200371, wait_p90_s=2949.8894401794587,
                 lost_hours=285.50573007912186, booked=0, balked=7817, reneged=11487,
                 gave_up_hours=3449.6258590959437),
}
# (still unpaid after the last day, last-week p90 wait in seconds, the month's longest line)
LEAVING_MONTH_END = {"none": (68997, 4103.27294921875, 413), "door": (54211, 3904.286376953125, 395),
                     "hint": (20392, 2728.886962890625, 233)}

# A fifth of the last week's payers book a slot: day 20 gets the last of the moved bookings.
BOOKING_DAY_20_DOOR = dict(day=20, last_week=False, arrivals=12270, returning=1205, served=12183,
                           turned_away_closing=3, refused_at_door=84, online_hint=0,
                           online_door=42, longest_queue=114, wait_p50_s=701.1023823161304,
                           wait_p90_s=2047.2423961324298, lost_hours=0.4071780265276013,
                           booked=194)
BOOKING_LAST_DAY = {
    "door": dict(day=26, last_week=True, arrivals=25846, returning=6412, served=12797,
                 turned_away_closing=11, refused_at_door=13038, online_hint=0, online_door=6515,
                 longest_queue=758, wait_p50_s=7685.042513813089, wait_p90_s=14545.339049978473,
                 lost_hours=1.4768671617918112, booked=0),
    "hint": dict(day=26, last_week=True, arrivals=26289, returning=6855, served=12805,
                 turned_away_closing=7313, refused_at_door=0, online_hint=6171, online_door=0,
                 longest_queue=893, wait_p50_s=6757.695349347974, wait_p90_s=11164.701340305397,
                 lost_hours=12274.149414462501, booked=0),
}
# (wanted a slot, found none, booked p90 from slot start, walk-ins' last-week p90), in seconds
BOOKING_MONTH = {"door": (28923, 0, 188.6197967529297, 13549.2421875),
                 "hint": (28923, 0, 189.4456024169922, 9782.630859375)}

# What-if points of the door policy: 5 counters and a 40 % online share over the last 6 working
# days, 30 % booking over the whole month.
WHATIF_DOOR = [
    WhatIfPoint(axis="counters", x=5.0, policy="door", p90_wait_s=13544.919921875,
                turned_away_closing=58, refused_at_door=82168, online_steered=40963, served=95957),
    WhatIfPoint(axis="online", x=0.4, policy="door", p90_wait_s=13047.708984375,
                turned_away_closing=32, refused_at_door=60188, online_steered=30037, served=76831),
    WhatIfPoint(axis="booking", x=0.3, policy="door", p90_wait_s=15060.0576171875,
                turned_away_closing=4265, refused_at_door=65027, online_steered=32406,
                served=76849, booked_p90_s=189.8137664794922, bookings=43334, unbooked=0),
]


@pytest.fixture(scope="module")
def kanpur() -> Scenario:
    return load_scenario()


@pytest.fixture(scope="module")
def demand(kanpur: Scenario) -> DemandParams:
    return demand_from_scenario(kanpur, PATIENT)


def _policy(kanpur: Scenario, demand: DemandParams, name: str) -> Policy:
    """A policy with peak-sim's default figures."""
    return make_policy(name, door_estimate="p90", door_online_accept=demand.door_online_accept,
                       hint_after_s=kanpur.online.hint_after_s, hint_uptake=demand.online_hint_uptake)


def _assert_day(found: dict, expected: dict) -> None:
    counts = {k: v for k, v in expected.items() if k not in FLOAT_FIELDS}
    assert {k: found[k] for k in counts} == counts
    for key in FLOAT_FIELDS:
        assert found[key] == pytest.approx(expected.get(key, 0.0), rel=1e-9), key
    assert (found["balked"], found["reneged"]) == (expected.get("balked", 0), expected.get("reneged", 0))


@pytest.fixture(scope="module")
def main_runs(kanpur: Scenario, demand: DemandParams) -> dict[str, MonthResult]:
    plan = make_plan(kanpur, demand)
    return {name: simulate_month(plan, _policy(kanpur, demand, name), SEED) for name in LAST_DAY}


@pytest.mark.parametrize("name", sorted(LAST_DAY))
def test_the_month_last_day_is_pinned(main_runs: dict[str, MonthResult], name: str) -> None:
    result = main_runs[name]
    _assert_day(asdict(result.days[-1]), LAST_DAY[name])
    unpaid, p90 = MONTH_END[name]
    assert result.unpaid_at_month_end == unpaid
    assert result.last_week_p90_s() == pytest.approx(p90, rel=1e-9)


@pytest.mark.parametrize("name", sorted(LEAVING_LAST_DAY))
def test_the_month_where_people_leave_is_pinned(kanpur: Scenario, name: str) -> None:
    """The scenario's own figures: with people balking and giving up, no hall's line passes a
    few hundred, where with everyone patient it reached 7,147."""
    demand = demand_from_scenario(kanpur)
    result = simulate_month(make_plan(kanpur, demand), _policy(kanpur, demand, name), SEED)
    _assert_day(asdict(result.days[-1]), LEAVING_LAST_DAY[name])
    unpaid, p90, longest = LEAVING_MONTH_END[name]
    assert result.unpaid_at_month_end == unpaid
    assert result.last_week_p90_s() == pytest.approx(p90, rel=1e-9)
    assert max(d.longest_queue for d in result.days) == longest < 1_500


@pytest.fixture(scope="module")
def booking_runs(kanpur: Scenario, demand: DemandParams) -> dict[str, MonthResult]:
    plan = make_plan(kanpur, demand.with_changes(booking_share=0.2))
    return {name: simulate_month(plan, _policy(kanpur, demand, name), SEED)
            for name in BOOKING_LAST_DAY}


@pytest.mark.parametrize("name", sorted(BOOKING_LAST_DAY))
def test_the_booking_month_is_pinned(booking_runs: dict[str, MonthResult], name: str) -> None:
    result = booking_runs[name]
    _assert_day(asdict(result.days[-1]), BOOKING_LAST_DAY[name])
    wanted, unbooked, booked_p90, walk_in_p90 = BOOKING_MONTH[name]
    assert (result.bookings, result.unbooked) == (wanted, unbooked)
    assert result.booked_p90_s() == pytest.approx(booked_p90, rel=1e-9)
    assert result.last_week_p90_s() == pytest.approx(walk_in_p90, rel=1e-9)


def test_a_day_with_booked_consumers_is_pinned(booking_runs: dict[str, MonthResult]) -> None:
    day_20 = next(d for d in booking_runs["door"].days if d.day == 20)
    _assert_day(asdict(day_20), BOOKING_DAY_20_DOOR)


def test_whatif_points_are_pinned(kanpur: Scenario, demand: DemandParams) -> None:
    tasks = whatif_tasks(kanpur, demand, [_policy(kanpur, demand, "door")], SEED, 6, [5], [0.4],
                         booking_shares=[0.3])
    points = [p for out in run_tasks(tasks) for p in out.points]
    assert [(p.axis, p.x) for p in points] == [(p.axis, p.x) for p in WHATIF_DOOR]
    for found, expected in zip(points, WHATIF_DOOR, strict=True):
        assert found.p90_wait_s == pytest.approx(expected.p90_wait_s, rel=1e-9)
        assert found.booked_p90_s == pytest.approx(expected.booked_p90_s, rel=1e-9)
        exact = ("turned_away_closing", "refused_at_door", "online_steered", "served", "bookings",
                 "unbooked")
        assert [getattr(found, k) for k in exact] == [getattr(expected, k) for k in exact]


def test_estimate_coverage_of_one_hall_is_pinned(kanpur: Scenario, demand: DemandParams) -> None:
    """The busiest day at the fourth substation, through the server's own queue."""
    plan = make_plan(kanpur, demand)
    day = coverage.busiest_day(plan)
    letters = [kanpur.services[sv.id].letter for sv in plan.services]
    batch = make_batch(plan, 3, day, SEED, fresh_means(plan, day)[3], {})
    measured = coverage.coverage_day(plan.layouts[3], plan.services, letters, batch, kanpur.policy)
    assert day == 26
    assert measured == coverage.Coverage(tokens=1283, within_p50=675, within_p90=1182, refused=1182)
