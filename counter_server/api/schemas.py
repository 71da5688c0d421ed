"""Request bodies, validated with pydantic; their JSON Schemas feed the OpenAPI document."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..notices import EVENT_TYPES
from ..outbox import PaymentMode
from ..queueing import Priority
from ..services.dates import RANGE_WORDS, day_in_range

ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
# 10 to 15 digits, a + before them and single spaces or dashes between them allowed.
MOBILE_PATTERN = r"^\+?([0-9][ \-]?){9,14}[0-9]$"
# http or https, a host (a name, an IPv4 or a bracketed IPv6 address), a port of 0 to 65535, no
# user name or password; whether the host may be reached is the server's to say (409).
WEBHOOK_URL_PATTERN = (r"^https?://([A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}"
                       r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]{2,45}\])"
                       r"(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
                       r"([/?#][!-~]*)?$")   # the rest in printable ASCII (as a URL is sent)
# Standard Webhooks' form: whsec_ and the base64 of 24 to 65 bytes.
WEBHOOK_SECRET_PATTERN = r"^whsec_(?:[A-Za-z0-9+/]{4}){8,21}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
# A day and a month of this century (the range every date a request names must keep), and a
# moment as RFC 3339 writes it, with its UTC offset, on a day of this century where it is said.
DATE_PATTERN = r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
MONTH_PATTERN = r"^20[0-9]{2}-(0[1-9]|1[0-2])$"
# A day's shape alone, ASCII digits (date.fromisoformat also takes 20251125 and 2025-W48-2):
# a day of that shape out of the range is a 422 naming the field, further in.
DAY_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MOMENT_PATTERN = (r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]"
                  r":[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
MOMENT = re.compile(MOMENT_PATTERN)
# What the server takes as an Idempotency-Key: 1-200 printable ASCII characters, no space at
# either end (HTTP drops those in transit, so they could never be told apart).
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]([ -~]{0,198}[!-~])?$"
IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def _written_moment(value: object) -> object:
    """Only the RFC 3339 spelling the document gives: pydantic alone would also take a space
    for the 'T', a number of seconds since 1970, or a leap second it then refuses."""
    if not isinstance(value, str) or not MOMENT.fullmatch(value):
        raise PydanticCustomError("datetime_format",
                                  "Expected a moment such as 2025-11-25T10:00:00+05:30 {range}",
                                  {"range": RANGE_WORDS})
    return value


def _in_range(moment: datetime) -> datetime:
    """Refuse a moment outside the range any date may take (422 naming the field): past
    it, converting to the scenario's time zone fails (year 10000) and the answer was a 500.
    The day counts as written, before its offset: the rule the document's pattern states."""
    if not day_in_range(moment.date()):
        raise PydanticCustomError("datetime_out_of_range", "Expected a moment {range}",
                                  {"range": RANGE_WORDS})
    return moment


# An ISO 8601 moment with its UTC offset, within this century.
Moment = Annotated[AwareDatetime, BeforeValidator(_written_moment), AfterValidator(_in_range),
                   Field(json_schema_extra={"pattern": MOMENT_PATTERN})]


def _whole_float(value: object) -> object:
    """JSON Schema's integer takes 78.0 as well as 78 (the same number): so does the server."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def whole_number(ge: int, le: int) -> Any:
    """A whole number from ``ge`` to ``le`` as JSON Schema means it: 78 or 78.0, never "78"
    or true. (The bounds sit inside, so the document states them even where null is allowed.)"""
    return Annotated[StrictInt, Field(ge=ge, le=le), BeforeValidator(_whole_float)]


class IssueToken(BaseModel):
    """Body of POST /api/v1/substations/{sid}/tokens."""

    model_config = ConfigDict(extra="forbid")

    service: str = Field(pattern=ID_PATTERN, description="Service id, e.g. bill_payment.")
    priority: Priority = Field(default=Priority.NORMAL, description="normal, senior or disabled.")


class Transfer(BaseModel):
    """Body of POST /api/v1/tokens/{id}/transfer: another service, a counter, or both."""

    # The document says what names_a_target checks: at least one of the two is a string.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": ["service"], "properties": {"service": {"type": "string"}}},
        {"required": ["counter"], "properties": {"counter": {"type": "string"}}}]})

    service: str | None = Field(default=None, pattern=ID_PATTERN)
    counter: str | None = Field(default=None, pattern=ID_PATTERN)

    @model_validator(mode="after")
    def names_a_target(self) -> "Transfer":
        if self.service is None and self.counter is None:
            raise ValueError("name the service or the counter to transfer to")
        return self


class NoBody(BaseModel):
    """Actions without parameters accept an empty body or {}."""

    model_config = ConfigDict(extra="forbid")


class NewWebhook(BaseModel):
    """Body of POST /api/v1/ops/webhooks."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, pattern=WEBHOOK_URL_PATTERN, description=(
        "http or https. Refused with 409 url_refused when its host does not resolve or is link-local "
        "(169.254.0.0/16, fe80::/10: cloud metadata lives there); loopback and private networks are allowed."))
    events: list[Literal[EVENT_TYPES]] = Field(min_length=1, max_length=len(EVENT_TYPES),
                                               description="The event types to send.")
    secret: str | None = Field(
        default=None, pattern=WEBHOOK_SECRET_PATTERN,
        description="whsec_ and base64 of 24 to 65 bytes; left out: one is made and shown once.")


class AdmissionSettings(BaseModel):
    """Body of PUT /api/v1/ops/substations/{sid}/admission."""

    model_config = ConfigDict(extra="forbid")

    admission: StrictBool = Field(description="Refuse tokens that cannot be served before closing.")
    daily_cap: whole_number(1, 100_000) | None = Field(
        default=None, description="Most tokens a day at this substation; null for none.")


ACCOUNT_PATTERN = r"^[0-9A-Za-z\-]{4,24}$"
TOKEN_NUMBER_PATTERN = r"^[A-Z]-[0-9]{3,6}$"
ACCOUNT = re.compile(ACCOUNT_PATTERN)


class RecordPayment(BaseModel):
    """Body of POST /api/v1/payments: a payment taken at the counter for a token."""

    model_config = ConfigDict(extra="forbid")

    token_id: str = Field(pattern=ID_PATTERN)
    account: str = Field(pattern=ACCOUNT_PATTERN, description="The consumer's account number.")
    amount_paise: whole_number(1, 10_000_000_00) = Field(description="Amount in paise (1 rupee = 100).")
    mode: PaymentMode = Field(default=PaymentMode.CASH)
    part: StrictBool = Field(default=False, description=(
        "One of several payments for the token (two bills, or one bill in two modes). A token "
        "takes one payment, or any number marked part; a second unmarked one is refused (409 "
        "already_paid)."))


class ResubmitPayment(BaseModel):
    """Body of POST /api/v1/payments/{pid}/resubmit: a failed payment sent to billing again."""

    model_config = ConfigDict(extra="forbid")

    account: str | None = Field(default=None, pattern=ACCOUNT_PATTERN, description=(
        "The corrected account number, when billing refused the one the payment had."))


class LeaseRequest(BaseModel):
    """Body of POST /api/v1/counters/{cid}/leases."""

    model_config = ConfigDict(extra="forbid")

    service: str = Field(pattern=ID_PATTERN)
    size: whole_number(1, 100) = Field(default=10)


class OfflineToken(BaseModel):
    """Body of POST /api/v1/counters/{cid}/offline-tokens: a token issued from a lease."""

    model_config = ConfigDict(extra="forbid")

    lease_id: str = Field(pattern=ID_PATTERN)
    number: str = Field(pattern=TOKEN_NUMBER_PATTERN)
    priority: Priority = Priority.NORMAL
    issued_at: Moment


PHONE_PATTERN = r"^\+?[0-9][0-9 \-]{8,18}[0-9]$"


class TakeToken(BaseModel):
    """Body of POST /api/v1/public/substations/{sid}/tokens: a token taken from a phone."""

    model_config = ConfigDict(extra="forbid")

    service: str | None = Field(default=None, pattern=ID_PATTERN, description=(
        "One of the substation's services; left out: the scenario's paid service where the "
        "substation offers it, else refused (422, field service)."))
    account: str = Field(pattern=ACCOUNT_PATTERN, description="The consumer account number on the bill.")
    phone: str = Field(pattern=PHONE_PATTERN, description="A mobile number (10 digits, +91 allowed).")


class AskSms(BaseModel):
    """Body of POST /api/v1/public/tokens/{link}/sms: where to send "your turn is near"."""

    model_config = ConfigDict(extra="forbid")

    mobile: str = Field(pattern=MOBILE_PATTERN, description="The mobile number to text, 10 to 15 digits (kept until the token ends).")


class BookSlot(TakeToken):
    """Body of POST /api/v1/public/substations/{sid}/bookings: a slot on a quieter day."""

    slot_at: Moment = Field(description="The slot's start, as the slots list gives it.")


# What each pattern asks for, in words: a refusal says this rather than the regular expression.
PATTERN_WORDS = {
    ID_PATTERN: "an id of 1-64 letters, digits, '.', '_' or '-'",
    ACCOUNT_PATTERN: "the account number as printed on the bill (4-24 letters, digits or '-')",
    PHONE_PATTERN: "a mobile number of 10 digits (+91 or a leading 0 allowed)",
    MOBILE_PATTERN: "a mobile number of 10 to 15 digits, e.g. +91 98765 43210",
    TOKEN_NUMBER_PATTERN: "a token number such as B-042",
    WEBHOOK_URL_PATTERN: ("an http or https URL: a host name or address, a port of 0 to 65535 if any, no user "
                          "name or password, such as http://10.0.0.5:8000/sms"),
    WEBHOOK_SECRET_PATTERN: "'whsec_' and the base64 of 24 to 65 bytes (Standard Webhooks); leave it out and one is made",
}


class PublishSlots(BaseModel):
    """Body of PUT /api/v1/ops/substations/{sid}/slots/{day}."""

    model_config = ConfigDict(extra="forbid")

    slot_minutes: whole_number(5, 120) = Field(default=15)
    share: StrictFloat = Field(default=0.25, ge=0, lt=1,
                         description="Share of the open counters' time bookable in slots.")
    capacity: whole_number(0, 500) | None = Field(
        default=None, description="Bookings per slot; null: from share and counters open.")


PLAN_SHARE = Annotated[StrictFloat, Field(ge=0, le=1)]


class PlanRequest(BaseModel):
    """Body of POST /api/v1/ops/plans: a month simulation with these figures (each left out:
    the scenario's). The halls, and the days' and cycles' upper bound, come from the scenario;
    the document names them."""

    model_config = ConfigDict(extra="forbid")

    counters: dict[str, whole_number(1, 60)] = Field(
        default=None, description="Counters per hall, by hall id; halls left out keep the scenario's.")
    online_share: PLAN_SHARE = Field(default=None, description="Share of payments made online.")
    booking_share: PLAN_SHARE = Field(
        default=None, description="Share of the last week's counter payers who book a slot from their phone.")
    due_date_cycles: whole_number(1, 366) = Field(
        default=None, description="Billing cycles with due dates spread over the month (1: one, at month-end).")
    days: whole_number(1, 366) = Field(
        default=None, description="The month's last working days to simulate (left out: the last week).")
