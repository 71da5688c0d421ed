"""What a scenario resolves to, in words: ``counter-server check-config FILE`` prints it, so an
operator sees the halls, counters, hours and demand the server would run with, defaults filled
in, before starting anything."""

from __future__ import annotations

from datetime import time

from .config import OpeningDays, Scenario, Substation
from .scenario.schema import WEEKDAYS


def describe(scenario: Scenario, source: str) -> str:
    """The scenario as the server would run it, one fact a line."""
    paid = scenario.payment_service
    lines = [f"{source}: valid: {scenario.name!r}, time zone {scenario.timezone.key}",
             f"services ({len(scenario.services)}):"]
    for service in scenario.services.values():
        spread = (f", {service.min_service_s:g}-{service.max_service_s:g} s"
                  if service.min_service_s is not None and service.max_service_s is not None else "")
        lines.append(f"  {service.id} ({service.letter}-001): {_names(service.name, service.name_hi)}, "
                     f"mean {service.mean_service_s:g} s{spread}" + ("  [paid service]" if service.id == paid else ""))
    halls = scenario.substations.values()
    lines.append(f"halls ({len(scenario.substations)}), counters ({len(scenario.counters)}):")
    for hall in halls:
        lines.append(f"  {hall.id}: {_names(hall.name, hall.name_hi)}; {_hours(hall)}; {_days(hall.days)}; "
                     f"services {', '.join(hall.services)}")
        for counter in hall.counters:
            lines.append(f"    {counter.id}: {_names(counter.label, counter.name_hi)}; "
                         f"serves {', '.join(counter.services)}")
    lines.append("demand: " + (f"paid service {paid} ({scenario.services[paid].name})" if paid
                               else "no paid service (no [demand] payment_service)"))
    if scenario.demand:
        lines.append("  " + ", ".join(f"{key} {value}" for key, value in scenario.demand.items()))
    head = ", ".join(f"{p.value} {s / 60:g} min" for p, s in scenario.policy.head_start_s.items() if s)
    lines.append(f"queue: head start {head or 'none'}; {scenario.policy.recalls_before_no_show} recall(s) "
                 f"before a no-show; {scenario.policy.max_requeues} requeue(s); door rule "
                 f"{'on' if scenario.policy.admission else 'off'} at start")
    lines.append(f"online hint: after {scenario.online.hint_after_s / 60:g} min")
    phones = scenario.phones
    lines.append(f"phones: {phones.slot_minutes}-min slots, {phones.booking_share:.0%} of counter time "
                 f"bookable, {phones.booking_days} days ahead; an asked-for SMS at {phones.sms_near_ahead} "
                 f"ahead or {phones.sms_near_minutes} min")
    hooks = scenario.webhooks
    lines.append(f"webhooks: {hooks.timeout_s:g} s a delivery, retries {hooks.retry_first_s:g} s doubling to "
                 f"{hooks.retry_max_s:g} s, an endpoint disabled after {hooks.disable_after_minutes:g} min failing")
    billing = scenario.billing
    lines.append("billing: " + (billing.url if billing.url else "simulated in-process (no [billing] url)")
                 + f" through {billing.adapter or 'the HTTP JSON contract'}"
                 + f"; concurrency {billing.gateway.initial_limit}..{billing.gateway.max_concurrency}")
    store = scenario.store
    where = ""
    if store.engine == "redis":
        behind = (f", primary {store.redis_master!r} via {len(store.redis_sentinels)} Sentinels, changes "
                  f"confirmed by {store.replicas_ack} replica(s)" if store.redis_sentinels else "")
        where = f" ({store.redis_prefix}*{behind})"
    lines.append(f"store: {store.engine}{where}")
    return "\n".join(lines)


def _names(name: str, name_hi: str) -> str:
    return f"{name} / {name_hi}" if name_hi and name_hi != name else name


def _hours(hall: Substation) -> str:
    return f"open {_clock(hall.opens)}-{_clock(hall.closes)}"


def _clock(moment: time) -> str:
    return moment.isoformat("minutes" if not moment.second else "seconds")


def _days(days: OpeningDays) -> str:
    closed = ", ".join(WEEKDAYS[d] for d in sorted(days.closed_weekdays))
    text = f"closed {closed}" if closed else "open every day of the week"
    if days.holidays:
        text += f", holidays {', '.join(d.isoformat() for d in sorted(days.holidays))}"
    if days.extra_open:
        text += f"; also open {', '.join(d.isoformat() for d in sorted(days.extra_open))}"
    return text
