"""The alerts as ops see them: for GET /api/v1/ops/alerts and the ops channel's ``alerts``
message (sent every second beside the billing gateway's state)."""

from __future__ import annotations

from typing import Any

from ..live import OPS_CHANNEL, LiveHub
from ..live.today import today_halls
from ..services import TokenService
from .alerts import alert_json, ops_alerts

ALERTS_MESSAGE = "alerts"


async def alerts_now(tokens: TokenService, hub: LiveHub, billing: dict[str, Any]) -> list[dict[str, Any]]:
    """The alerts for this moment, as JSON."""
    halls = await today_halls(tokens, hub)
    return [alert_json(a) for a in ops_alerts(halls, billing, tokens.clock(), tokens.scenario)]


async def push_alerts(tokens: TokenService, hub: LiveHub, billing: dict[str, Any]) -> list[dict[str, Any]]:
    """Send the ops channel this moment's alerts (the page replaces its list with them); the
    alerts sent."""
    alerts = await alerts_now(tokens, hub, billing)
    hub.notify(OPS_CHANNEL, {"type": ALERTS_MESSAGE, "alerts": alerts})
    return alerts
