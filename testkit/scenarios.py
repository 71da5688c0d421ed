"""The scenarios tests run on, and the facts about a scenario that tests take from it.

Both files ship inside this package, so they are found from an installed copy as well as from
the checkout; nothing in a test may depend on the built-in scenario's names.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from datetime import date, time as clock_time
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


# Keys that open or shut a hall on given days, in [hours] and in a hall of its own.
OPENING = ("opens", "closes", "closed_weekdays", "holidays", "open_days")


class NotInScenario(AssertionError):
    """The scenario lacks what a test or a suite needs; the message names what is missing."""


def paid_service(scenario: Scenario) -> str:
    """The scenario's payment service; tests take it from there, never by name."""
    if scenario.payment_service is None:
        raise NotInScenario("the scenario names no [demand] payment_service")
    return scenario.payment_service


def paying_halls(scenario: Scenario) -> dict[str, list[str]]:
    """Every hall with a counter serving the paid service, in the scenario's order, with those
    counters (taken from the scenario, never by name)."""
    service = paid_service(scenario)
    found = {hall.id: [c.id for c in hall.counters if service in c.services]
             for hall in scenario.substations.values()}
    return {hall: counters for hall, counters in found.items() if counters}


def busy_hall(scenario: Scenario, counters: int = 2) -> tuple[str, str, list[str]]:
    """The first hall with at least ``counters`` counters serving the paid service: its id, the
    service, and every counter there that serves it (taken from the scenario, never by name)."""
    service = paid_service(scenario)
    for hall, serving in paying_halls(scenario).items():
        if len(serving) >= counters:
            return hall, service, serving
    raise NotInScenario(f"the scenario has no hall with {counters} counters serving its paid service {service!r}")


def scenario_data(path: Path | None) -> dict[str, Any]:
    """A scenario file as parsed TOML, laid over the built-in scenario when it extends it (the
    built-in one itself for None), ready to change and write back with :func:`to_toml`."""
    from importlib import resources

    from counter_server.config import DEFAULT_SCENARIO, merge

    builtin = resources.files("counter_server.scenario").joinpath(DEFAULT_SCENARIO).read_text("utf-8")
    data = tomllib.loads(Path(path).read_text("utf-8") if path is not None else builtin)
    if data.get("extends") == "builtin":
        data = merge(tomllib.loads(builtin), data)
    data.pop("extends", None)
    return data


def open_all_day(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (parsed TOML) with every hall open all day, every day: [hours] says so and no
    hall keeps hours or days of its own."""
    data["hours"] = {**data.get("hours", {}), "opens": "00:00", "closes": "23:59:59",
                     "closed_weekdays": [], "holidays": [], "open_days": []}
    for hall in data.get("substations", []):
        for key in OPENING:
            hall.pop(key, None)
    return data


def write_layered(path: Path, base: Path | None = None, redis_url: str | None = None,
                  **tables: Mapping[str, Any]) -> Path:
    """``base`` (a scenario file; None: the built-in one) with every hall open all day, each of
    ``tables`` (``billing={...}``) laid over its table and, given ``redis_url``, that Redis as its
    [store], written at ``path``: a suite's settings over any scenario."""
    from counter_server.config import merge

    data = merge(open_all_day(scenario_data(base)), tables)
    if redis_url:
        data = merge(data, {"store": {"engine": "redis", "redis_url": redis_url}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_toml(data), "utf-8")
    return path


def to_toml(data: Mapping[str, Any]) -> str:
    """Parsed TOML written back: scalars first, then tables and arrays of tables, inline below."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, (date, clock_time)):
            return v.isoformat()
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, Sequence):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} as TOML")

    def body(table: Mapping[str, Any]) -> list[str]:
        return [f"{json.dumps(k)} = {value(v)}" for k, v in table.items()]

    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    arrays = {k: v for k, v in data.items()
              if isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v)}
    lines = body({k: v for k, v in data.items() if k not in tables and k not in arrays})
    for name, table in tables.items():
        lines += ["", f"[{json.dumps(name)}]", *body(table)]
    for name, rows in arrays.items():
        for row in rows:
            lines += ["", f"[[{json.dumps(name)}]]", *body(row)]
    return "\n".join(lines) + "\n"
