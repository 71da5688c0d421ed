"""Webhook notices: what the service tells other systems (an SMS gateway, a help line), kept
durably until each endpoint has it.

A notice is written in the same transaction as the change that caused it (a token called, a
payment posted), into one ordered log; each endpoint reads that log from its own cursor, so a
slow or dead receiver only holds back itself. Types only (standard library): the store writes
them, the webhook service delivers them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The event types an endpoint may ask for (Standard Webhooks' ``type``).
TOKEN_CALLED = "token.called"
TOKEN_NEAR = "token.near"
TOKEN_NO_SHOW = "token.no_show"
PAYMENT_POSTED = "payment.posted"
PAYMENT_FAILED = "payment.failed"
HALL_ALERT = "hall.alert"
EVENT_TYPES = (TOKEN_CALLED, TOKEN_NEAR, TOKEN_NO_SHOW, PAYMENT_POSTED, PAYMENT_FAILED, HALL_ALERT)

# Which logged event kinds become which notice (the log's kinds: queueing/events.py, payments).
_FROM_LOG = {"called": TOKEN_CALLED, "recalled": TOKEN_CALLED, "near": TOKEN_NEAR,
             "no_show": TOKEN_NO_SHOW, "payment_posted": PAYMENT_POSTED,
             "payment_failed": PAYMENT_FAILED}
# What a notice keeps of the token or payment it is about (never a holder's digest).
_TOKEN_FIELDS = ("id", "number", "service", "status", "priority", "origin", "counter", "called_at",
                 "recalls")
_PAYMENT_FIELDS = ("id", "token_id", "account", "amount_paise", "mode", "status", "reason",
                   "billing_ref", "attempts")


@dataclass(frozen=True, slots=True)
class Notice:
    """One event for webhooks: ``id`` is the receivers' key to drop a second delivery."""

    id: str
    type: str
    at: float
    data: Mapping[str, Any]
    cursor: str = ""    # where the log holds it (the engine's form); set when read back


@dataclass(frozen=True, slots=True)
class Webhook:
    """An endpoint ops registered, with where it has read the log to and how delivery goes.

    ``version`` rises with every write: a write of version n replaces only version n - 1, so
    two replicas never both advance one endpoint."""

    id: str
    url: str
    events: tuple[str, ...]
    secret: str
    created_at: float
    cursor: str = ""
    version: int = 1
    disabled_at: float | None = None
    disabled_reason: str | None = None
    failing_since: float | None = None
    delivered: int = 0
    failed_attempts: int = 0
    recent: tuple[Mapping[str, Any], ...] = field(default=())   # the last deliveries, newest first
    claimed_by: str | None = None
    claim_until: float = 0.0


def new_notice_id() -> str:
    return "evt_" + uuid.uuid4().hex


def notices_of(record: Mapping[str, Any]) -> list[Notice]:
    """The notices a logged event record gives (none for most kinds)."""
    kind = _FROM_LOG.get(record["kind"])
    if kind is None:
        return []
    data = record["data"]
    base = {"substation": record["substation"], "day": record["day"], "counter": record["counter"],
            "kind": record["kind"]}
    if kind.startswith("payment."):
        about = {"payment": {k: data.get(k) for k in _PAYMENT_FIELDS}}
    else:
        about = {"token": {k: data.get(k) for k in _TOKEN_FIELDS}}
    return [Notice(new_notice_id(), kind, record["at"], {**base, **about})]


def near_notice(token: Mapping[str, Any], substation: str, day: str, at: float, ahead: int,
                wait_p50_s: float | None) -> Notice:
    """``token.near``: a waiting token whose holder asked for an SMS is near its turn."""
    return Notice(new_notice_id(), TOKEN_NEAR, at, {
        "substation": substation, "day": day, "counter": None, "kind": "near",
        "token": {k: token.get(k) for k in _TOKEN_FIELDS}, "ahead": ahead, "wait_p50_s": wait_p50_s})


def webhook_from_record(data: Mapping[str, Any]) -> Webhook:
    """A webhook back from the JSON object the store keeps (lists become tuples)."""
    known = {name: data[name] for name in Webhook.__slots__ if name in data}
    return Webhook(**{**known, "events": tuple(known.get("events", ())),
                      "recent": tuple(known.get("recent", ()))})


def webhook_record(hook: Webhook) -> dict[str, Any]:
    """The JSON object the store keeps of a webhook (the API shows another: shapes.webhook_json)."""
    return {name: getattr(hook, name) for name in Webhook.__slots__}


@dataclass(frozen=True, slots=True)
class SmsRequest:
    """A consumer's ask for an SMS when their token is near and when it is called.

    The only place a mobile number is kept whole: written when the consumer asks, erased when
    the token ends; notices carry the token, and the number is added as each one goes out."""

    token_id: str
    substation: str
    day: str
    mobile: str
    near_ahead: int
    near_minutes: float
    created_at: float
    near_sent_at: float | None = None
