"""Request bodies, validated with pydantic; their JSON Schemas feed the OpenAPI document."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..billing.outbox import PaymentMode
from ..queueing import Priority
from ..services.dates import RANGE_WORDS, moment_in_range

ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"


def _in_range(moment: datetime) -> datetime:
    """Refuse a moment outside the range any date may take (422 naming the field): past
    it, converting to the scenario's time zone fails (year 10000) and the answer was a 500."""
    if not moment_in_range(moment):
        raise PydanticCustomError("datetime_out_of_range", "Expected a moment {range}",
                                  {"range": RANGE_WORDS})
    return moment


# An ISO 8601 moment with its UTC offset, within this century.
Moment = Annotated[AwareDatetime, AfterValidator(_in_range)]


class IssueToken(BaseModel):
    """Body of POST /api/v1/substations/{sid}/tokens."""

    model_config = ConfigDict(extra="forbid")

    service: str = Field(pattern=ID_PATTERN, description="Service id, e.g. bill_payment.")
    priority: Priority = Field(default=Priority.NORMAL, description="normal, senior or disabled.")


class Transfer(BaseModel):
    """Body of POST /api/v1/tokens/{id}/transfer: another service, a counter, or both."""

    model_config = ConfigDict(extra="forbid")

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


class AdmissionSettings(BaseModel):
    """Body of PUT /api/v1/ops/substations/{sid}/admission."""

    model_config = ConfigDict(extra="forbid")

    admission: bool = Field(description="Refuse tokens that cannot be served before closing.")
    daily_cap: int | None = Field(default=None, ge=1, le=100_000,
                                  description="Most tokens a day at this substation; null for none.")


ACCOUNT_PATTERN = r"^[0-9A-Za-z\-]{4,24}$"
TOKEN_NUMBER_PATTERN = r"^[A-Z]-[0-9]{3,6}$"
ACCOUNT = re.compile(ACCOUNT_PATTERN)


class RecordPayment(BaseModel):
    """Body of POST /api/v1/payments: a payment taken at the counter for a token."""

    model_config = ConfigDict(extra="forbid")

    token_id: str = Field(pattern=ID_PATTERN)
    account: str = Field(pattern=ACCOUNT_PATTERN, description="The consumer's account number.")
    amount_paise: StrictInt = Field(ge=1, le=10_000_000_00, description="Amount in paise (1 rupee = 100).")
    mode: PaymentMode = Field(default=PaymentMode.CASH)
    part: StrictBool = Field(default=False, description=(
        "One of several payments for the token (two bills, or one bill in two modes). A token "
        "takes one payment, or any number marked part; a second unmarked one is refused (409 "
        "already_paid)."))


class LeaseRequest(BaseModel):
    """Body of POST /api/v1/counters/{cid}/leases."""

    model_config = ConfigDict(extra="forbid")

    service: str = Field(pattern=ID_PATTERN)
    size: StrictInt = Field(default=10, ge=1, le=100)


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


class BookSlot(TakeToken):
    """Body of POST /api/v1/public/substations/{sid}/bookings: a slot on a quieter day."""

    slot_at: Moment = Field(description="The slot's start, as the slots list gives it.")


# What each pattern asks for, in words: a refusal says this rather than the regular expression.
PATTERN_WORDS = {
    ID_PATTERN: "an id of 1-64 letters, digits, '.', '_' or '-'",
    ACCOUNT_PATTERN: "the account number as printed on the bill (4-24 letters, digits or '-')",
    PHONE_PATTERN: "a mobile number of 10 digits (+91 or a leading 0 allowed)",
    TOKEN_NUMBER_PATTERN: "a token number such as B-042",
}


class PublishSlots(BaseModel):
    """Body of PUT /api/v1/ops/substations/{sid}/slots/{day}."""

    model_config = ConfigDict(extra="forbid")

    slot_minutes: StrictInt = Field(default=15, ge=5, le=120)
    share: float = Field(default=0.25, ge=0, lt=1,
                         description="Share of the open counters' time bookable in slots.")
    capacity: int | None = Field(default=None, ge=0, le=500,
                                 description="Bookings per slot; null: from share and counters open.")
