"""Which substations are near one another, from the scenario's coordinates."""

from __future__ import annotations

import math

from ..config import Scenario, Substation

EARTH_RADIUS_KM = 6371.0


def distance_km(a: Substation, b: Substation) -> float | None:
    """Great-circle distance, or None when either substation has no coordinates."""
    if None in (a.latitude, a.longitude, b.latitude, b.longitude):
        return None
    lat1, lon1, lat2, lon2 = map(math.radians, (a.latitude, a.longitude, b.latitude, b.longitude))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def nearest(scenario: Scenario, substation_id: str, count: int = 3,
            offering: str | None = None) -> list[tuple[Substation, float]]:
    """The ``count`` nearest other substations (offering that service, if one is named) with
    their distance in km, nearest first."""
    here = scenario.substations[substation_id]
    found = []
    for other in scenario.substations.values():
        if other.id == substation_id or (offering is not None and offering not in other.services):
            continue
        km = distance_km(here, other)
        if km is not None:
            found.append((other, km))
    found.sort(key=lambda pair: pair[1])
    return found[:count]
