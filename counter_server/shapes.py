"""How domain objects look in JSON answers."""

from __future__ import annotations

from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any

from .notices import Webhook
from .outbox import Payment, PaymentStatus
from .config import Scenario, Substation
from .queueing import CounterView, Estimate, HallView, SlotPlan, Status, Token, leave_advice


def iso(moment: float | None, tz: tzinfo, timespec: str = "seconds") -> str | None:
    if moment is None:
        return None
    return _iso(moment, tz, timespec)


@lru_cache(maxsize=1 << 16)
def _iso(moment: float, tz: tzinfo, timespec: str) -> str:
    # A token's times are formatted again in every view of it: a phone's place moves each time
    # the line does, and ten thousand phones may be watching.
    return datetime.fromtimestamp(moment, tz).isoformat(timespec=timespec)


def counter_names(scenario: Scenario, counter_id: str | None) -> dict[str, str | None]:
    """What every screen calls a counter: its display name in English and Hindi."""
    counter = scenario.counters.get(counter_id) if counter_id else None
    if counter is None:
        return {"name": counter_id, "name_hi": counter_id}
    return {"name": counter.label, "name_hi": counter.label_hi}


def estimate_json(estimate: Estimate | None) -> dict[str, Any] | None:
    if estimate is None:
        return None
    return {"p50_s": estimate.p50_s, "p90_s": estimate.p90_s, "ahead": estimate.ahead,
            "counters": estimate.counters}


def token_json(token: Token, scenario: Scenario, estimate: Estimate | None = None) -> dict[str, Any]:
    """A token as the API shows it; ``estimate`` is the wait range while it waits."""
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
        "origin": token.origin.value,
        "slot_at": iso(token.slot_at, tz),
        "account_hint": token.account_hint,
        "estimate": estimate_json(estimate),
    }


def phone_token_json(token: Token, link: str, scenario: Scenario, estimate: Estimate | None,
                     travel_s: float) -> dict[str, Any]:
    """A token as its holder's phone shows it: its ``link`` (the phone's key to it, not the
    bare id), never the full account or phone number (only the account's last digits), the
    counter by its display name, and when to leave home for a trip of ``travel_s``."""
    return {**phone_token_fixed(token, link, scenario), **phone_token_wait(token, estimate, travel_s)}


def phone_token_fixed(token: Token, link: str, scenario: Scenario) -> dict[str, Any]:
    """What a phone shows of the token itself, the same while only its wait moves: a phone
    following its token live keeps it while the line moves (names, times and counter are most
    of the work of an answer, and a thousand phones are answered at once)."""
    tz = scenario.timezone
    substation = scenario.substations[token.substation]
    service = scenario.services[token.service]
    names = counter_names(scenario, token.counter) if token.counter else None
    return {
        "link": link,
        "number": token.number or None,
        "status": token.status.value,
        "origin": token.origin.value,
        "day": token.day,
        "substation": {"id": substation.id, "name": substation.name, "name_hi": substation.name_hi,
                       "closes": substation.closes.isoformat("minutes")},
        "service": {"id": service.id, "name": service.name, "name_hi": service.name_hi},
        "counter": token.counter,
        # What the hall board calls that counter, so the phone says the same ("Counter 1").
        "counter_name": names["name"] if names else None,
        "counter_name_hi": names["name_hi"] if names else None,
        "account": f"••••{token.account_hint}" if token.account_hint else None,
        "issued_at": iso(token.issued_at, tz),
        "slot_at": iso(token.slot_at, tz),
        "called_at": iso(token.called_at, tz),
    }


def phone_token_wait(token: Token, estimate: Estimate | None, travel_s: float) -> dict[str, Any]:
    """The token's place, its wait and when to leave home: what moves as the line moves."""
    leave = None
    if token.status in (Status.WAITING, Status.CALLED):
        advice = leave_advice(estimate, travel_s, called=token.status is Status.CALLED)
        leave = {"leave_in_s": advice.leave_in_s, "leave_now": advice.leave_now,
                 "travel_s": travel_s}
    return {
        "ahead": estimate.ahead if estimate is not None else None,
        "estimate": {"p50_s": estimate.p50_s, "p90_s": estimate.p90_s} if estimate is not None else None,
        "leave": leave,
    }


def slot_plan_json(plan: SlotPlan, tz: tzinfo) -> dict[str, Any]:
    return {"first": iso(plan.first_at, tz), "slot_minutes": plan.slot_s // 60, "slots": plan.count,
            "capacity": plan.capacity, "share": plan.share}


def public_token_json(token: Token) -> dict[str, Any]:
    """What a hall board may show of a token: never its id, which is the consumer's to keep."""
    return {"number": token.number, "service": token.service, "priority": token.priority.value,
            "status": token.status.value, "counter": token.counter, "origin": token.origin.value}


def _in_scenario_order(counters: tuple[CounterView, ...], substation: Substation) -> list[CounterView]:
    """Counters as the scenario lists them (the hall's own order), not sorted by id."""
    place = {c.id: i for i, c in enumerate(substation.counters)}
    return sorted(counters, key=lambda c: place.get(c.id, len(place)))


def hall_json(hall: HallView, scenario: Scenario) -> dict[str, Any]:
    """A substation as its hall board shows it."""
    substation = scenario.substations[hall.substation]
    services = scenario.services
    return {
        "substation": hall.substation,
        "name": substation.name,
        "name_hi": substation.name_hi,
        "day": hall.day,
        "opens": substation.opens.isoformat("minutes"),
        "closes": substation.closes.isoformat("minutes"),
        "counters": [
            {"id": c.id, **counter_names(scenario, c.id), "open": c.open, "services": list(c.services),
             "token": public_token_json(c.token) if c.token else None}
            for c in _in_scenario_order(hall.counters, substation)
        ],
        "services": [
            {"id": s.id, "name": services[s.id].name, "name_hi": services[s.id].name_hi,
             "letter": services[s.id].letter, "waiting": s.waiting, "open_counters": s.open_counters,
             "mean_service_s": s.mean_service_s, "estimate": estimate_json(s.estimate)}
            for s in hall.services
        ],
        "waiting": hall.waiting_total,
        "issued_today": hall.issued_today,
        "admission": {"enabled": hall.admission, "daily_cap": hall.daily_cap},
        "next": [{**public_token_json(t), "estimate": estimate_json(e)} for t, e in hall.waiting_head],
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
        "counters": [{"id": c.id, **counter_names(scenario, c.id), "services": list(c.services)}
                     for c in substation.counters],
        "waiting": waiting,
    }


def provisional_receipt(payment: Payment) -> str:
    """The receipt number a cashier hands over before billing has the payment (PROV-S01-000012)."""
    return f"PROV-{payment.substation}-{payment.ordinal:06d}"


_REFUSALS = {   # what billing's answer means for the cashier holding the cash
    "(422)": "Billing does not accept this account number or amount: check the account on the bill, "
             "then resubmit with it corrected, or refund the consumer.",
    "(404)": "Billing does not know this account: check the account on the bill, then resubmit with it "
             "corrected, or refund the consumer.",
    "(409)": "Billing holds a different payment under this payment's id: ask billing before resubmitting.",
    "(400)": "Billing could not read the payment: resubmit it; if it fails again, call billing support.",
}


def refusal_in_words(payment: Payment) -> str:
    """Why billing refused a payment, in words a cashier acts on."""
    reason = payment.reason or ""
    return next((words for code, words in _REFUSALS.items() if code in reason),
                f"Billing refused the payment ({reason or 'no reason given'}): resubmit it or refund the consumer.")


def payment_json(payment: Payment, scenario: Scenario) -> dict[str, Any]:
    """A payment as the API shows it; ``status`` is queued until billing has it."""
    tz = scenario.timezone
    return {
        "id": payment.id,
        "token_id": payment.token_id,
        "substation": payment.substation,
        "counter": payment.counter,
        "account": payment.account,
        "amount_paise": payment.amount_paise,
        "mode": payment.mode.value,
        "status": payment.status.value,
        "reason": payment.reason,
        "reason_text": refusal_in_words(payment) if payment.status is PaymentStatus.FAILED else None,
        "attempts": payment.attempts,
        "billing_ref": payment.billing_ref,
        "created_at": iso(payment.created_at, tz),
        "updated_at": iso(payment.updated_at, tz),
        "receipt": provisional_receipt(payment),
        "part": bool(payment.part),
    }


def webhook_json(hook: Webhook, scenario: Scenario, *, with_secret: bool = False) -> dict[str, Any]:
    """An endpoint as ops see it; its secret only in the answer that made it."""
    tz = scenario.timezone
    state = "disabled" if hook.disabled_at is not None else "failing" if hook.failing_since is not None else "active"
    shown: dict[str, Any] = {
        "id": hook.id, "url": hook.url, "events": list(hook.events), "state": state,
        "created_at": iso(hook.created_at, tz), "delivered": hook.delivered,
        "failing_since": iso(hook.failing_since, tz), "failed_attempts": hook.failed_attempts,
        "disabled_at": iso(hook.disabled_at, tz), "disabled_reason": hook.disabled_reason,
        "recent": [{**entry, "at": iso(entry.get("at"), tz)} for entry in hook.recent],
    }
    if with_secret:
        shown["secret"] = hook.secret
    return shown
