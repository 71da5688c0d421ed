"""The dates and moments a request may name: this century's, and nothing a time zone can push
past what Python's calendar holds (``9999-12-31T23:59:59-12:00`` is year 10000 in UTC).

Every date a client sends (a body's moments, a report's day or month, a slot plan's day) is
checked here first, so an absurd one is a 422 naming the field rather than a 500 further in."""

from __future__ import annotations

from datetime import date, datetime, timezone

from .errors import InvalidField

EARLIEST = date(2000, 1, 1)
LATEST = date(2099, 12, 31)
RANGE_WORDS = f"between {EARLIEST.isoformat()} and {LATEST.isoformat()}"

_FIRST_MOMENT = datetime(EARLIEST.year, EARLIEST.month, EARLIEST.day, tzinfo=timezone.utc)
_PAST_LAST_MOMENT = datetime(LATEST.year + 1, 1, 1, tzinfo=timezone.utc)


def day_in_range(day: date) -> bool:
    return EARLIEST <= day <= LATEST


def moment_in_range(moment: datetime) -> bool:
    """An aware moment within the range, compared in UTC (comparing never overflows)."""
    return _FIRST_MOMENT <= moment < _PAST_LAST_MOMENT


def check_day(field: str, day: date) -> date:
    """``day`` if it is in range, else InvalidField naming ``field`` (a 422)."""
    if not day_in_range(day):
        raise InvalidField(field, f"{field} must be a date {RANGE_WORDS}, not {day.isoformat()}.")
    return day
