"""Today's halls, as boards and ops must see them: the hub's copy, or the store's where the hub
holds none for today (nothing has changed yet today, or its copy is of an earlier day). Reading
a newer day's hall into the hub sends it to that hall's boards and to ops (``update_hall``), so
whoever reads first after midnight moves every screen on."""

from __future__ import annotations

from ..queueing import HallView
from ..services import TokenService
from .hub import LiveHub


async def today_hall(tokens: TokenService, hub: LiveHub, substation_id: str) -> HallView:
    hall = hub.hall(substation_id)
    if hall is None or hall.day != tokens.today():
        hall = (await tokens.queue(substation_id)).hall
        hub.update_hall(hall)
    return hall


async def today_halls(tokens: TokenService, hub: LiveHub) -> list[HallView]:
    return [await today_hall(tokens, hub, sid) for sid in tokens.scenario.substations]
