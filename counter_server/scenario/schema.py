"""The scenario file's schema: every table and key, its type and its limits, written once.

These pydantic models validate the parsed TOML: an unknown key is refused (so a typo such as
``[hours] opnes`` cannot pass unnoticed), types are strict (TOML has them), and values that
contradict each other (closing before opening, a counter serving a service its hall does not
offer, one id twice) are refused by the model that sees both. The same models print as JSON
Schema (``counter-server check-config --schema``). ``counter_server.config`` builds the runtime
dataclasses from a validated :class:`ScenarioModel`; :func:`explain` turns pydantic's errors into
lines that name the key's full path and, for an unknown key, the nearest valid one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,
                      WithJsonSchema, model_validator)

from .billing import GatewaySettings, SimSettings

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
STORE_ENGINES = ("sqlite", "redis")
# Ids travel in URLs: the API's ID_PATTERN (counter_server/api/schemas.py), so every hall,
# counter and service the scenario names can be addressed.
ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
ID_WORDS = "an id of 1-64 letters, digits, '.', '_' or '-'"


class Problem(ValueError):
    """A value wrong in relation to others, found by the model that sees both. ``at`` is the
    key's path below that model, so the message names the key's full path."""

    def __init__(self, at: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.at = tuple(at)


def _clock(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        try:
            return time.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"expected a time HH:MM, got {value!r}")


def _day(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}")


def _weekday(value: str) -> str:
    name = value.lower()
    if name not in WEEKDAYS:
        raise ValueError(f"expected a day name such as \"sunday\", got {value!r}{_did_you_mean(name, WEEKDAYS, '; ')}")
    return name


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (IANA names such as \"Asia/Kolkata\")") from None
    return value


def _web_address(value: str) -> str:
    if value and not value.startswith(("http://", "https://")):
        raise ValueError(f"must be an http:// or https:// address, got {value!r}")
    return value


def host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:26379`` for IPv6) as (host, port); ValueError naming what is wrong."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be HOST:PORT with a port from 1 to 65535, got {value!r}")
    return host, int(port)


def _host_port(value: str) -> str:
    host_port(value)
    return value


def _adapter_name(value: str) -> str:
    """A billing adapter class that can be imported and has the contract's methods, checked
    when the scenario is read (check-config and serve), not at the first payment."""
    from ..billing.contract import AdapterNameError, load_adapter_class

    try:
        load_adapter_class(value)
    except AdapterNameError as exc:
        raise ValueError(str(exc)) from None
    return value


def _redis_address(value: str) -> str:
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"must be a redis://, rediss:// or unix:// address, got {value!r}")
    return value


Clock = Annotated[time, BeforeValidator(_clock),
                  WithJsonSchema({"type": "string", "pattern": r"^\d\d:\d\d(:\d\d)?$",
                                  "description": "a time of day, HH:MM or HH:MM:SS"})]
Day = Annotated[date, BeforeValidator(_day), WithJsonSchema({"type": "string", "format": "date"})]
Weekday = Annotated[str, AfterValidator(_weekday), WithJsonSchema({"enum": list(WEEKDAYS)})]
Id = Annotated[str, Field(pattern=ID_PATTERN)]
Text = Annotated[str, Field(min_length=1)]
Number = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Share = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0)]


class Table(BaseModel):
    """A TOML table: unknown keys refused, TOML's own types only (a number is not text)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class OpeningDaysModel(Table):
    closed_weekdays: list[Weekday] | None = Field(None, description="Weekdays the counters stay shut, e.g. [\"sunday\"].")
    holidays: list[Day] | None = Field(None, description="Dates the counters stay shut (YYYY-MM-DD).")
    open_days: list[Day] | None = Field(None, description="Extra openings on otherwise closed days (a month-end Sunday).")


class HoursModel(OpeningDaysModel):
    """[hours]: every hall's hours and days, unless the hall sets its own."""

    opens: Clock = Field(time(9, 30), description="When the counters open.")
    closes: Clock = Field(time(17, 30), description="When the counters close; after opens.")

    @model_validator(mode="after")
    def _closes_after_opens(self) -> HoursModel:
        if self.closes <= self.opens:
            raise Problem(["closes"], f"{self.closes:%H:%M} is not after opens ({self.opens:%H:%M})")
        return self


class ServiceModel(Table):
    """[[services]]: what a consumer comes for; its letter starts its token numbers (B-042)."""

    id: Id
    name: Text
    name_hi: str = ""
    letter: str = Field(pattern=r"^[A-Z]$", description="One capital letter A-Z, unique per scenario.")
    mean_service_s: Positive = Field(description="Seconds at the counter, on average: seeds the wait estimate.")
    min_service_s: Number | None = Field(None, description="Shortest plausible service; shorter ones do not teach the estimate.")
    max_service_s: Positive | None = Field(None, description="Longest plausible service.")

    @model_validator(mode="after")
    def _range_holds_the_mean(self) -> ServiceModel:
        if self.min_service_s is not None and self.min_service_s > self.mean_service_s:
            raise Problem(["min_service_s"], f"{self.min_service_s:g} is above mean_service_s ({self.mean_service_s:g})")
        if self.max_service_s is not None and self.max_service_s < self.mean_service_s:
            raise Problem(["max_service_s"], f"{self.max_service_s:g} is below mean_service_s ({self.mean_service_s:g})")
        return self


class CounterModel(Table):
    """One counter of a hall (an entry of its ``counters`` list)."""

    id: Id = Field(description="Unique in the scenario; cashier keys name it.")
    name: str = Field("", description="What boards, phones and slips call it (default: its id).")
    name_hi: str = ""
    services: list[Id] = Field(min_length=1, description="Services it serves; each offered by its hall.")


class SubstationModel(OpeningDaysModel):
    """[[substations]]: a hall with its counters; unset hours and days are [hours]'."""

    id: Id
    name: Text
    name_hi: str = ""
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)
    services: list[Id] | None = Field(None, min_length=1, description="Services offered here (default: all).")
    counters: list[CounterModel] = Field(min_length=1)
    opens: Clock | None = None
    closes: Clock | None = None


class HeadStartModel(Table):
    """Minutes of head start per priority (a table of normal, senior, disabled)."""

    normal: Number = 0
    senior: Number = 10
    disabled: Number = 15


class QueueModel(Table):
    """[queue]: the order of the line."""

    head_start_minutes: HeadStartModel = Field(HeadStartModel(), description="Ageing rule: a priority token is ordered as if issued this many minutes earlier.")
    recalls_before_no_show: Count = 1
    max_requeues: Count = Field(1, description="Times a no-show may return to the queue.")
    ewma_alpha: float = Field(0.1, gt=0, le=1, description="Weight of each completion in the learned mean service time.")
    admission: bool = Field(True, description="The door rule a substation starts with: refuse a token whose wait (p90) would run past closing. Ops switch it per substation.")


class OnlineModel(Table):
    """[online]: the boards' "pay online" hint."""

    hint_after_minutes: Number = Field(30, description="Shown when the paid service's wait (p50) passes this.")
    text: Text = "Long wait? Pay online with net banking, UPI or an e-wallet: no queue, receipt at once."
    text_hi: Text = "लंबा इंतज़ार? नेट बैंकिंग, UPI या ई-वॉलेट से ऑनलाइन भुगतान करें: कोई लाइन नहीं, तुरंत रसीद।"


class PhonesModel(Table):
    """[phones]: tokens and bookable slots from consumers' phones."""

    slot_minutes: int = Field(15, ge=5, le=120)
    booking_share: float = Field(0.25, ge=0, lt=1, description="Share of counter time bookable in slots.")
    booking_days: Count = Field(14, description="How far ahead a slot may be booked.")
    last_slot_before_close_minutes: Count = 60
    takes_per_hour_per_address: Count = Field(6, description="Tokens and bookings one client address may take an hour.")
    tokens_per_account_city: int = Field(1, ge=1, description="Active tokens and bookings one account may hold on a day, city-wide.")
    travel_minutes: Count = Field(20, description="The phone page's first guess of the trip.")
    public_url: Annotated[str, AfterValidator(_web_address)] = Field("", description="What hall boards' QR codes open (default: their own host).")
    sms_near_ahead: Count = Field(3, description="An SMS asked for on the phone page goes out when this many people are ahead...")
    sms_near_minutes: Count = Field(10, description="... or the wait (p50) is this many minutes, whichever comes first.")


class WebhooksModel(Table):
    """[webhooks]: how signed notices go to the endpoints ops register (docs/webhooks.md)."""

    timeout_s: float = Field(5.0, gt=0, le=60, description="How long one delivery may take before it counts as failed.")
    retry_first_s: float = Field(1.0, gt=0, description="The first wait before a failed delivery is tried again; it doubles, with jitter.")
    retry_max_s: float = Field(300.0, gt=0, description="The longest wait between tries.")
    disable_after_minutes: float = Field(60.0, gt=0, description="An endpoint failing this long is disabled; ops see it and may enable it again.")


class SimulatorModel(Table):
    """[billing.simulator]: the simulated billing server run when [billing] has no url."""

    capacity: int = Field(SimSettings.capacity, ge=1, description="Concurrent requests it holds.")
    knee: Count = Field(SimSettings.knee, description="Latency grows past this many in flight.")
    base_latency_ms: Number = SimSettings.base_latency_ms
    overload_s: Number = Field(SimSettings.overload_s, description="Above capacity this long, it crashes ...")
    recovery_s: Number = Field(SimSettings.recovery_s, description="... for this long.")


class BillingModel(Table):
    """[billing]: where the billing server is and how gently the gateway treats it."""

    url: Annotated[str, AfterValidator(_web_address)] | None = Field(None, description="The billing server (default: a simulated one, in-process).")
    adapter: Annotated[str, AfterValidator(_adapter_name)] | None = Field(
        None, description="package.module:Class speaking to the billing server (default: the HTTP JSON "
        "contract of docs/billing-contract.md); it needs url.")
    max_concurrency: int = Field(GatewaySettings.max_concurrency, ge=1, description="Ceiling of the adaptive concurrency limit.")
    initial_limit: int = Field(GatewaySettings.initial_limit, ge=1)
    timeout_s: Positive = GatewaySettings.timeout_s
    lease_s: Positive = GatewaySettings.lease_s
    poll_s: Positive = GatewaySettings.poll_s
    bill_ttl_s: Number = Field(GatewaySettings.bill_ttl_s, description="How long a bill look-up is cached.")
    breaker_failures: int = Field(GatewaySettings.breaker_failures, ge=1, description="Failures in a row that open the circuit breaker.")
    breaker_open_s: Positive = Field(GatewaySettings.breaker_open_s, description="First pause before a probe (doubles while probes fail).")
    retry_base_s: Number = GatewaySettings.retry_base_s
    retry_cap_s: Number = GatewaySettings.retry_cap_s
    simulator: SimulatorModel = SimulatorModel()

    @model_validator(mode="after")
    def _limits_in_order(self) -> BillingModel:
        if self.adapter is not None and self.url is None:
            raise Problem(["adapter"], f"{self.adapter} needs [billing] url: the simulated billing "
                          "server run without one speaks only the HTTP JSON contract")
        if self.initial_limit > self.max_concurrency:
            raise Problem(["initial_limit"], f"{self.initial_limit} is above max_concurrency ({self.max_concurrency})")
        if self.retry_base_s > self.retry_cap_s:
            raise Problem(["retry_base_s"], f"{self.retry_base_s:g} is above retry_cap_s ({self.retry_cap_s:g})")
        return self


class StoreModel(Table):
    """[store]: which engine keeps the state."""

    engine: Literal["sqlite", "redis"] = Field("sqlite", description="sqlite: one file, one server; redis: shared by replicas.")
    redis_url: Annotated[str, AfterValidator(_redis_address)] = "redis://127.0.0.1:6379/0"
    redis_prefix: Text = "ccq:"
    stream_keep: int = Field(20_000, ge=1_000, description="Redis: about how many events the live "
                             "stream keeps for replicas that reconnect (the event log itself is kept whole).")
    redis_sentinels: Annotated[tuple[Annotated[str, AfterValidator(_host_port)], ...],
                               BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)] = Field(
        default=(), description="Redis Sentinels (HOST:PORT) that name the primary and follow "
        "a failover; with them redis_url gives only the database and password.")
    redis_master: Text = Field("counter-redis", description="The Sentinels' name for the primary.")
    min_replicas_ack: int | None = Field(None, ge=0, le=16, description="Redis replicas that must "
                                         "confirm a change (WAIT) before it is acknowledged; default 1 "
                                         "with Sentinels, else 0.")


class DemandModel(Table):
    """[demand]: the paid service, the reported figures, and peak-sim's assumptions. Figures
    left out take peak-sim's defaults (or its flags); the server reads only payment_service."""

    payment_service: Id | None = Field(None, description="The service bills are paid at (boards' pay-online hint, phones, peak-sim).")
    connections: Number | None = None
    paying_share: Share | None = None
    online_payments_per_month: Number | None = None
    online_share: Share | None = Field(None, description="Instead of online_payments_per_month.")
    working_days_per_month: int | None = Field(None, ge=1, le=31)
    last_week_working_days: Count | None = None
    last_week_share_of_counter_payments: Share | None = None
    intraday_profile: list[Number] | None = Field(None, min_length=1, description="Relative arrivals over equal slices of the opening hours.")
    come_back_share: Share | None = None
    door_online_accept: Share | None = None
    online_hint_uptake: Share | None = None
    service_time_distribution: Literal["bounded", "exponential"] | None = None
    booking_share: Share | None = None
    booking_early_factor: Share | None = None
    booking_share_of_counter_time: Share | None = None
    booking_slot_minutes: Positive | None = None
    booking_last_slot_before_close_minutes: Number | None = None
    booking_horizon_days: Count | None = None
    booking_day_choice: Literal["earliest", "quietest"] | None = None
    patience_mean_minutes: Number | None = Field(None, description="Mean time a person waits in line before giving up (exponential; 0: nobody gives up).")
    balk_wait_minutes: Number | None = Field(None, description="Shown wait at which everyone arriving goes home at once; below it the share grows in proportion (0: nobody balks).")
    due_date_cycles: int | None = Field(None, ge=1, le=31, description="Billing cycles whose due dates are spread over the month (1: one due date, at month-end).")
    substation_weights: dict[str, Number] | None = Field(None, description="Relative draw of each hall (1 for any not named).")
    visits_per_day: dict[str, Number] | None = Field(None, description="Daily visits of each service but the paid one.")

    @model_validator(mode="after")
    def _figures_agree(self) -> DemandModel:
        days, last = self.working_days_per_month, self.last_week_working_days
        if days is not None and last is not None and last >= days:
            raise Problem(["last_week_working_days"], f"{last} is not below working_days_per_month ({days})")
        if self.intraday_profile is not None and not sum(self.intraday_profile) > 0:
            raise Problem(["intraday_profile"], "needs a weight above 0")
        return self


class ScenarioModel(Table):
    """A scenario file: halls, counters, services, hours, demand and the service's knobs."""

    extends: Literal["builtin"] | None = Field(None, description="\"builtin\": lay this file over the built-in scenario.")
    name: Text = "unnamed scenario"
    timezone: Annotated[str, AfterValidator(_zone)] = Field(description="IANA time zone of the halls, e.g. \"Asia/Kolkata\".")
    hours: HoursModel = HoursModel()
    queue: QueueModel = QueueModel()
    online: OnlineModel = OnlineModel()
    phones: PhonesModel = PhonesModel()
    billing: BillingModel = BillingModel()
    store: StoreModel = StoreModel()
    webhooks: WebhooksModel = WebhooksModel()
    demand: DemandModel = DemandModel()
    services: list[ServiceModel] = Field(min_length=1)
    substations: list[SubstationModel] = Field(min_length=1)

    @model_validator(mode="after")
    def _references_hold(self) -> ScenarioModel:
        service_ids = [s.id for s in self.services]
        _once(service_ids, "services", "id")
        _once([s.letter for s in self.services], "services", "letter", "each service needs its own letter")
        _once([s.id for s in self.substations], "substations", "id")
        _once([c.id for s in self.substations for c in s.counters], "counters", "id",
              where=[("substations", i, "counters", j) for i, s in enumerate(self.substations)
                     for j, _ in enumerate(s.counters)])
        for i, hall in enumerate(self.substations):
            for k, sid in enumerate(hall.services or ()):
                _known(sid, service_ids, ("substations", i, "services", k), "service")
            offered = hall.services or service_ids
            for j, counter in enumerate(hall.counters):
                for k, sid in enumerate(counter.services):
                    if sid not in offered:
                        raise Problem(("substations", i, "counters", j, "services", k),
                                      f"{sid!r} is not offered at {hall.id} (it offers {', '.join(offered)})")
            self._hall_hours(i, hall)
        demand = self.demand
        if demand.payment_service is not None:
            _known(demand.payment_service, service_ids, ("demand", "payment_service"), "service")
        for key in demand.substation_weights or {}:
            _known(key, [s.id for s in self.substations], ("demand", "substation_weights", key), "substation")
        for key in demand.visits_per_day or {}:
            _known(key, service_ids, ("demand", "visits_per_day", key), "service")
            if key == demand.payment_service:
                raise Problem(("demand", "visits_per_day", key), "is the payment service; its visits come "
                              "from connections, paying_share and online_share")
        return self

    def _hall_hours(self, i: int, hall: SubstationModel) -> None:
        opens, closes = hall.opens or self.hours.opens, hall.closes or self.hours.closes
        if closes <= opens:
            key = "closes" if hall.closes is not None else "opens"
            raise Problem(("substations", i, key), f"{hall.id} would close at {closes:%H:%M}, "
                          f"not after it opens ({opens:%H:%M})")


def _once(values: list[str], table: str, key: str, why: str = "ids must be unique",
          where: list[tuple[str | int, ...]] | None = None) -> None:
    """Refuse the second of two equal values, naming where the first one is."""
    places = where or [(table, i) for i in range(len(values))]
    seen: dict[str, tuple[str | int, ...]] = {}
    for value, place in zip(values, places):
        if value in seen:
            raise Problem((*place, key), f"{value!r} is already {format_path((*seen[value], key))}; {why}")
        seen[value] = place


def _known(name: str, known: Sequence[str], at: tuple[str | int, ...], what: str) -> None:
    if name not in known:
        hint = _did_you_mean(name, known, " (", ")")
        raise Problem(at, f"unknown {what} {name!r}{hint}; {what}s are {', '.join(known)}")


def _did_you_mean(word: str, choices: Iterable[str], before: str = "", after: str = "", path: str = "") -> str:
    """"did you mean X?" for the nearest of ``choices`` (difflib's), or "" when none is near."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"{before}did you mean {path}{close[0]}?{after}" if close else ""


# -- errors in words ---------------------------------------------------------------------------

def format_path(loc: Sequence[str | int]) -> str:
    """``('substations', 0, 'counters', 1, 'name')`` as ``substations[0].counters[1].name``;
    a key that is not a bare word is quoted, as TOML quotes it (``visits_per_day."leak.report"``)."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            bare = part.replace("_", "").replace("-", "").isalnum()
            text += ("." if text else "") + (part if bare else f'"{part}"')
    return text


KINDS = {"string_type": "text (a quoted string)", "int_type": "a whole number", "float_type": "a number",
         "bool_type": "true or false", "list_type": "a list [...]", "dict_type": "a table",
         "model_type": "a table", "model_attributes_type": "a table", "time_type": "a time HH:MM",
         "date_type": "a date YYYY-MM-DD"}


def _message(error: Any) -> tuple[tuple[str | int, ...], str]:
    """The full path of one pydantic error and what is wrong there, in words."""
    loc, kind, ctx, given = tuple(error["loc"]), error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "value_error" and isinstance(ctx.get("error"), Problem):
        return (*loc, *ctx["error"].at), str(ctx["error"])
    if kind == "value_error":
        return loc, str(ctx.get("error", error["msg"]))
    if kind == "extra_forbidden":
        valid = _keys_at(loc[:-1])
        what = "table" if isinstance(given, dict) else "key"
        hint = _did_you_mean(str(loc[-1]), valid, "; ", path=format_path(loc[:-1]) + "." if loc[:-1] else "")
        return loc, f"unknown {what}{hint or '; known here: ' + ', '.join(valid)}"
    if kind == "missing":
        return loc, "missing (required)"
    if kind in KINDS:
        return loc, f"must be {KINDS[kind]}, not {given!r}"
    if kind == "string_pattern_mismatch":
        wanted = ID_WORDS if ctx.get("pattern") == ID_PATTERN else f"text matching {ctx.get('pattern')}"
        if loc[-1] == "letter":
            wanted = "one capital letter A-Z"
        return loc, f"must be {wanted}, not {given!r}"
    if kind == "literal_error":
        hint = _did_you_mean(str(given), [a.strip("'") for a in ctx["expected"].replace(" or ", ", ").split(", ")], "; ")
        return loc, f"must be {ctx['expected']}, not {given!r}{hint}"
    bounds = {"greater_than_equal": ("ge", "{} or more"), "greater_than": ("gt", "more than {}"),
              "less_than_equal": ("le", "at most {}"), "less_than": ("lt", "below {}")}
    if kind in bounds:
        name, words = bounds[kind]
        return loc, f"must be {words.format(f'{ctx[name]:g}')}, not {given!r}"
    if kind in ("too_short", "string_too_short"):
        return loc, "must not be empty"
    return loc, f"{error['msg']}, not {given!r}"


def _keys_at(loc: Sequence[str | int]) -> list[str]:
    """The valid keys of the table at ``loc``: what an unknown key there may have meant."""
    model: type[BaseModel] | None = ScenarioModel
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_in, get_args(annotation)) if m is not None), None)


def explain(error: ValidationError) -> str:
    """One line for the first problem, and a second naming the others' keys if there are more."""
    # An unknown key first: a typo is the likely cause of a "missing" beside it.
    errors = sorted(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
    problems = [_message(e) for e in errors]
    (loc, text), rest = problems[0], problems[1:]
    first = f"{format_path(loc)}: {text}"
    if not rest:
        return first
    also = ", ".join(format_path(where) for where, _ in rest[:5]) + (", ..." if len(rest) > 5 else "")
    return f"{first}\n  and {len(rest)} more: {also}"


def validate(data: dict[str, Any]) -> ScenarioModel:
    """The scenario's parsed TOML, validated; raises pydantic's ValidationError."""
    return ScenarioModel.model_validate(data)


def json_schema() -> dict[str, Any]:
    """The scenario file's JSON Schema: every table and key, with its type, limits and default."""
    return ScenarioModel.model_json_schema()


__all__ = ["ID_PATTERN", "STORE_ENGINES", "WEEKDAYS", "Problem", "ScenarioModel", "explain", "format_path",
           "json_schema", "validate"]
