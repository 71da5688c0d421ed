"""The scenarios tests run on, and the facts about a scenario that tests take from it.

Both files ship inside this package, so they are found from an installed copy as well as from
the checkout; nothing in a test may depend on the built-in scenario's names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the configuration is heavy to import; a benchmark needs only the paths
    from counter_server.config import Scenario

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
# The built-in scenario, open every hall all day, every day, so a run passes at any hour.
OPEN_ALL_DAY = SCENARIO_DIR / "open-all-day.toml"
# A second scenario that looks nothing like the built-in one (also open all day).
LAKESIDE = SCENARIO_DIR / "lakeside.toml"
# Tests of screens and of peak-sim run on both.
BOTH_SCENARIOS = {"builtin": OPEN_ALL_DAY, "lakeside": LAKESIDE}

# A scenario open all day whose store is the Redis at {url}: for replicas sharing state.
REDIS_SCENARIO = """
extends = "builtin"
[hours]
opens = "00:00"
closes = "23:59:59"
closed_weekdays = []
[queue]
admission = false
[store]
engine = "redis"
redis_url = "{url}"
"""


def paid_service(scenario: Scenario) -> str:
    """The scenario's payment service; tests take it from there, never by name."""
    assert scenario.payment_service is not None, "the scenario names no [demand] payment_service"
    return scenario.payment_service


def busy_hall(scenario: Scenario, counters: int = 2) -> tuple[str, str, list[str]]:
    """The first hall with at least ``counters`` counters serving the paid service: its id, the
    service, and every counter there that serves it (taken from the scenario, never by name)."""
    service = paid_service(scenario)
    for hall in scenario.substations.values():
        serving = [c.id for c in hall.counters if service in c.services]
        if len(serving) >= counters:
            return hall.id, service, serving
    raise AssertionError(f"the scenario has no hall with {counters} counters for its paid service")
