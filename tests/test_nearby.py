"""The nearby halls a board and the door offer: only halls that offer the service in question."""

from __future__ import annotations

from dataclasses import replace

from counter_server.config import load_scenario
from counter_server.live import LiveHub
from counter_server.services.nearby import nearest

from testkit.scenarios import LAKESIDE, paid_service


def test_a_boards_nearby_list_names_only_halls_that_take_the_payment():
    scenario = load_scenario(LAKESIDE)
    paid = paid_service(scenario)
    lacking = [s.id for s in scenario.substations.values() if paid not in s.services]
    assert lacking, "the scenario has a hall without the paid service"
    for sid in scenario.substations:
        listed = [n["substation"] for n in LiveHub(scenario).nearby(sid)]
        assert listed and not set(listed) & set(lacking), (sid, listed)
    # Without a service named, distance alone decides (the hall without it may be nearest).
    assert set(lacking) & {s.id for s, _ in nearest(scenario, "north-quay")}


def test_a_scenario_that_takes_no_payments_lists_no_nearby_waits():
    scenario = load_scenario(LAKESIDE)
    assert LiveHub(replace(scenario, payment_service=None)).nearby("north-quay") == []
