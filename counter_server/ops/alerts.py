"""What needs an ops person now, with what to do about it: one pure function of today's halls,
the billing gateway's snapshot and the time. No I/O, so every rule is tested without a server.

Levels: ``critical`` (people are stuck or payments are not reaching billing: act now),
``warning`` (something is drifting and will become critical if left). The page shows both at
the top; the board voices it reports itself, quieter, from the live hub's ``boards`` message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..config import Scenario
from ..queueing import HallView, Status

# A token called this long ago and not yet started: the consumer is not coming, or the cashier
# forgot to press start. Five minutes is several recalls' worth at any counter.
CALLED_NOT_STARTED_S = 300.0
# The outbox's oldest payment waiting this long: forwarding has stalled (in normal running a
# payment is posted within seconds; retries with backoff stay well under a minute).
OUTBOX_OLDEST_WARN_S = 120.0
# ... and this long: payments are a shift behind; the billing side must be told.
OUTBOX_OLDEST_CRITICAL_S = 900.0

CRITICAL, WARNING = "critical", "warning"
_LEVEL_ORDER = {CRITICAL: 0, WARNING: 1}


@dataclass(frozen=True)
class AlertThresholds:
    """The ages at which a called token or a queued payment becomes an alert."""

    called_not_started_s: float = CALLED_NOT_STARTED_S
    outbox_oldest_warn_s: float = OUTBOX_OLDEST_WARN_S
    outbox_oldest_critical_s: float = OUTBOX_OLDEST_CRITICAL_S


@dataclass(frozen=True)
class Alert:
    """One thing to act on. ``key`` is stable while the condition lasts (the page keeps its
    place by it); ``action`` says what to do, in words an ops person can follow."""

    key: str
    level: str
    kind: str
    title: str
    action: str
    substation: str | None = None
    service: str | None = None
    counter: str | None = None
    age_s: float | None = None


def ops_alerts(halls: Iterable[HallView], billing: Mapping[str, Any] | None, now: float,
               scenario: Scenario, thresholds: AlertThresholds = AlertThresholds()) -> list[Alert]:
    """Every alert for today's ``halls`` and the gateway's ``billing`` snapshot at ``now``:
    critical first, billing before halls, halls in the scenario's order."""
    found = _billing_alerts(billing, thresholds) if billing else []
    order = {sid: i for i, sid in enumerate(scenario.substations)}
    for hall in sorted(halls, key=lambda h: order.get(h.substation, len(order))):
        if hall.substation in scenario.substations:
            found += _hall_alerts(hall, now, scenario, thresholds)
    return sorted(found, key=lambda a: _LEVEL_ORDER[a.level])   # stable: keeps the order above


def alert_json(alert: Alert) -> dict[str, Any]:
    return {"key": alert.key, "level": alert.level, "kind": alert.kind, "title": alert.title,
            "action": alert.action, "substation": alert.substation, "service": alert.service,
            "counter": alert.counter,
            "age_s": round(alert.age_s, 1) if alert.age_s is not None else None}


# -- billing -----------------------------------------------------------------------------------

def _billing_alerts(billing: Mapping[str, Any], thresholds: AlertThresholds) -> list[Alert]:
    found = []
    outbox = billing.get("outbox") or {}
    queued = outbox.get("queued") or 0
    breaker = (billing.get("breaker") or {}).get("state", "closed")
    if billing.get("state") == "down" or breaker != "closed":
        probing = breaker == "half_open"
        found.append(Alert(
            "billing_down", CRITICAL, "billing_down",
            f"Billing server down: circuit breaker {'half-open, probing' if probing else 'open'}"
            f" ({_count(queued, 'payment')} queued)",
            "Counters keep taking payments (provisional receipts, queued durably); do not send "
            "consumers away. Call the billing team: the server at "
            f"{billing.get('billing_url') or 'the configured URL'} is not answering. The gateway "
            "probes it and forwards the queue by itself once it answers."))
    if billing.get("paused"):
        found.append(Alert(
            "outbox_paused", WARNING, "outbox_paused",
            f"Payment outbox paused: nothing is posted to billing ({_count(queued, 'payment')} queued)",
            "Press 'Resume outbox' in Billing gateway as soon as billing may take payments again."))
    oldest = outbox.get("oldest_queued_s")
    if oldest is not None and oldest >= thresholds.outbox_oldest_warn_s:
        critical = oldest >= thresholds.outbox_oldest_critical_s
        found.append(Alert(
            "outbox_old", CRITICAL if critical else WARNING, "outbox_old",
            f"Oldest queued payment waiting {_age(oldest)} ({_count(queued, 'payment')} queued)",
            ("Resume the outbox; " if billing.get("paused") else "")
            + "check the billing server and the gateway's limit and breaker; "
            + ("tell billing that posting is behind: consumers' balances lag." if critical
               else "if it keeps growing, tell billing that posting is behind."),
            age_s=oldest))
    return found


# -- halls -------------------------------------------------------------------------------------

def _hall_alerts(hall: HallView, now: float, scenario: Scenario,
                 thresholds: AlertThresholds) -> list[Alert]:
    substation = scenario.substations[hall.substation]
    counters = scenario.counters
    services = scenario.services
    label = {c.id: (counters[c.id].label if c.id in counters else c.id) for c in hall.counters}
    found = []
    if hall.waiting_total > 0 and not any(c.open for c in hall.counters):
        found.append(Alert(
            f"hall_unstaffed:{hall.substation}", CRITICAL, "hall_unstaffed",
            f"{substation.name}: {_count(hall.waiting_total, 'person', 'people')} waiting and "
            "every counter closed",
            f"Open a counter at {substation.name}, or ask a cashier there to call the next "
            "token (calling opens the counter). Until then nobody here is served.",
            substation=hall.substation))
    else:
        for view in hall.services:
            if view.waiting <= 0 or view.open_counters > 0:
                continue
            name = services[view.id].name if view.id in services else view.id
            closed = [label[c.id] for c in hall.counters if view.id in c.services and not c.open]
            action = (f"Open {_either(closed)} (serves {name}), or transfer these tokens."
                      if closed else
                      f"No counter at {substation.name} serves {name}: transfer these tokens to a "
                      "service a counter here serves, or send them to another substation.")
            found.append(Alert(
                f"service_unserved:{hall.substation}:{view.id}", CRITICAL, "service_unserved",
                f"{substation.name}: {_count(view.waiting, 'token')} waiting for {name}, "
                "no open counter serves it",
                action, substation=hall.substation, service=view.id))
    for counter in hall.counters:
        token = counter.token
        if token is None or token.status is not Status.CALLED or token.called_at is None:
            continue
        age = now - token.called_at
        if age >= thresholds.called_not_started_s:
            found.append(Alert(
                f"called_not_started:{counter.id}:{token.id}", WARNING, "called_not_started",
                f"{substation.name}, {label[counter.id]}: token {token.number} called "
                f"{_age(age)} ago, not started",
                f"Ask the cashier at {label[counter.id]} to recall {token.number} or mark it "
                "no-show, so the next one is called.",
                substation=hall.substation, counter=counter.id, age_s=age))
    return found


# -- words -------------------------------------------------------------------------------------

def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
