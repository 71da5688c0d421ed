"""How the store writes records down: rows of flat dataclasses, JSON, and the event log's records.

Both engines keep the same forms, so a record reads back the same whichever engine wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, fields
from enum import Enum
from functools import cache
from typing import Any, TypeVar, get_type_hints

import orjson

from ..outbox import Payment
from ..queueing import DomainEvent, Token, event_from_log

R = TypeVar("R")


def dumps(value: Any) -> str:
    """The one JSON form the store writes (non-ASCII names kept as they are), by orjson: a
    sixth of the standard library's time for a token's event or a Redis commit's arguments."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def to_row(record: Any) -> dict[str, Any]:
    """A flat dataclass as a table row: enums stored by their value.

    Reads the fields directly: ``dataclasses.asdict`` deep-copies and was a visible share of
    the writer's time per token."""
    row = {}
    for name in _field_names(type(record)):
        value = getattr(record, name)
        row[name] = value.value if isinstance(value, Enum) else value
    return row


@cache
def _field_names(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(kind))


@cache
def _enum_fields(kind: type) -> dict[str, type[Enum]]:
    hints = get_type_hints(kind)
    return {f.name: hints[f.name] for f in fields(kind)
            if isinstance(hints[f.name], type) and issubclass(hints[f.name], Enum)}


def from_row(kind: type[R], row: Mapping[str, Any]) -> R:
    """A dataclass back from a row (extra columns ignored), enums rebuilt from their value.

    A field the row lacks, or holds as NULL while the field's default is not None, takes its
    default: rows written before the field existed still load."""
    enums = _enum_fields(kind)
    values = {}
    for f in fields(kind):
        value = row.get(f.name)
        if value is None and f.default is not MISSING and f.default is not None:
            continue
        values[f.name] = value
    for name, enum in enums.items():
        if name in values:
            values[name] = enum(values[name])
    return kind(**values)


# -- the event log ---------------------------------------------------------------------------


def event_data(event: DomainEvent) -> dict[str, Any]:
    """What the log keeps of an event: the token as changed, or the counter and the detail."""
    token = event.token
    if token is not None:
        return to_row(token)
    return {"counter": event.counter, **event.detail()}


def event_record(substation: str, day: str, event: DomainEvent) -> dict[str, Any]:
    """An event as the log keeps it (``seq`` is the engine's to add)."""
    token = event.token
    return {"at": event.at, "substation": substation, "day": day,
            "token_id": token.id if token is not None else None, "kind": event.kind,
            "actor": event.actor, "counter": event.counter, "data": event_data(event)}


def event_from_record(record: Mapping[str, Any]) -> DomainEvent:
    """A logged event back as the domain's event (how replicas hand on each other's changes)."""
    data = record["data"]
    token = from_row(Token, data) if record["token_id"] is not None and "number" in data else None
    detail = {k: v for k, v in data.items() if k != "counter"}
    return event_from_log(record["kind"], record["at"], record["actor"], record["counter"], token, detail)


def payment_record(payment: Payment, kind: str, actor: str | None = None) -> dict[str, Any]:
    """A payment's event (queued, posted, failed, resubmitted, refunded) as the log keeps it."""
    return {"at": payment.updated_at, "substation": payment.substation, "day": payment.day,
            "token_id": payment.token_id, "kind": kind, "actor": actor, "counter": payment.counter,
            "data": to_row(payment)}


def refusal_record(substation: str, day: str, at: float, service: str, reason: str) -> dict[str, Any]:
    """A consumer refused at the door, as ``day_events`` lists it beside the logged events."""
    return {"seq": None, "at": at, "substation": substation, "day": day, "token_id": None,
            "kind": "turned_away", "actor": None, "counter": None,
            "data": {"service": service, "reason": reason}}
