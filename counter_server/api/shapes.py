"""How domain objects look in JSON answers."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from ..config import Scenario, Substation
from ..queueing import Token


def iso(moment: float | None, tz: tzinfo) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, tz).isoformat(timespec="seconds")


def token_json(token: Token, scenario: Scenario) -> dict[str, Any]:
    tz = scenario.timezone
    return {
        "id": token.id,
        "number": token.number,
        "substation": token.substation,
        "service": token.service,
        "priority": token.priority.value,
        "status": token.status.value,
        "counter": token.counter,
        "target_counter": token.target_counter,
        "issued_at": iso(token.issued_at, tz),
        "called_at": iso(token.called_at, tz),
        "started_at": iso(token.started_at, tz),
        "finished_at": iso(token.finished_at, tz),
        "recalls": token.recalls,
        "requeues": token.requeues,
        "transfers": token.transfers,
        "day": token.day,
    }


def substation_json(substation: Substation, scenario: Scenario, waiting: int) -> dict[str, Any]:
    return {
        "id": substation.id,
        "name": substation.name,
        "name_hi": substation.name_hi,
        "opens": substation.opens.isoformat("minutes"),
        "closes": substation.closes.isoformat("minutes"),
        "services": [
            {
                "id": sid,
                "name": scenario.services[sid].name,
                "name_hi": scenario.services[sid].name_hi,
                "letter": scenario.services[sid].letter,
            }
            for sid in substation.services
        ],
        "counters": [{"id": c.id, "services": list(c.services)} for c in substation.counters],
        "waiting": waiting,
    }
