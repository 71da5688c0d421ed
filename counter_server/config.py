"""Configuration: the scenario (substations, counters, services, hours, demand) and run settings.

The scenario is one TOML file read with tomllib; the package ships a default one so the server
runs with no file at all. Run settings come from the command line with ``COUNTER_SERVER_*``
environment variables as overrides of the defaults.
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from datetime import time as clock_time
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from .redact import redacted
from .scenario.billing import GatewaySettings, SimSettings
from .queueing import Priority, QueuePolicy, ServiceTimeSeed
from .scenario import schema
from .scenario.schema import STORE_ENGINES, WEEKDAYS


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    letter: str
    mean_service_s: float
    name_hi: str = ""
    min_service_s: float | None = None
    max_service_s: float | None = None


@dataclass(frozen=True)
class ScenarioCounter:
    """A cash counter as the scenario describes it (not a live counter's state, nor a tally);
    ``name`` / ``name_hi`` are what boards, phones and slips call it (default: its id), so no
    screen has to make a label out of the id's shape."""

    id: str
    substation: str
    services: tuple[str, ...]
    name: str = ""
    name_hi: str = ""

    @property
    def label(self) -> str:
        return self.name or self.id

    @property
    def label_hi(self) -> str:
        return self.name_hi or self.label


@dataclass(frozen=True)
class OpeningDays:
    """Which days the counters open: every day but the closed weekdays and holidays, plus
    extra openings (a month-end Sunday). Phones offer no tokens or slots on a closed day."""

    closed_weekdays: frozenset[int] = frozenset()      # date.weekday(): Monday is 0
    holidays: frozenset[date] = frozenset()
    extra_open: frozenset[date] = frozenset()

    def is_open(self, day: date) -> bool:
        if day in self.extra_open:
            return True
        return day.weekday() not in self.closed_weekdays and day not in self.holidays

    def next_open(self, day: date, within_days: int = 366) -> date | None:
        """The first open day from ``day`` on (``day`` itself when it is open)."""
        for offset in range(within_days):
            candidate = date.fromordinal(day.toordinal() + offset)
            if self.is_open(candidate):
                return candidate
        return None


@dataclass(frozen=True)
class Substation:
    id: str
    name: str
    services: tuple[str, ...]
    counters: tuple[ScenarioCounter, ...]
    opens: clock_time
    closes: clock_time
    name_hi: str = ""
    latitude: float | None = None
    longitude: float | None = None
    days: OpeningDays = field(default_factory=OpeningDays)


@dataclass(frozen=True)
class OnlinePayment:
    """The hint boards show when the wait is long: pay online instead of queueing."""

    hint_after_s: float = 1800.0
    text: str = "Long wait? Pay online with net banking, UPI or an e-wallet: no queue, receipt at once."
    text_hi: str = "लंबा इंतज़ार? नेट बैंकिंग, UPI या ई-वॉलेट से ऑनलाइन भुगतान करें: कोई लाइन नहीं, तुरंत रसीद।"


@dataclass(frozen=True)
class BillingConfig:
    """Where the billing server is and how gently to treat it. With no url, the server runs a
    simulated billing server in-process (and says so), so the defaults work on their own."""

    url: str | None = None
    adapter: str | None = None   # package.module:Class; None: the HTTP JSON contract
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    simulator: SimSettings = field(default_factory=SimSettings)


@dataclass(frozen=True)
class PhonesConfig:
    """Consumers' phones (the /q page): remote tokens, bookable slots and their limits.

    ``booking_share`` is the share of counter time bookable in slots: it sets each slot's
    capacity from the counters open, and it is what keeps walk-ins from being starved."""

    slot_minutes: int = 15
    booking_share: float = 0.25
    booking_days: int = 14
    last_slot_before_close_minutes: int = 60
    takes_per_hour_per_address: int = 6
    # Active tokens and bookings one account may hold on a day across every substation (each
    # substation still allows one per account and per phone number). 1 or more.
    tokens_per_account_city: int = 1
    travel_minutes: int = 20
    public_url: str = ""
    # A consumer who asks for an SMS gets one when this many people are ahead, or the wait
    # (p50) is this short, whichever comes first, and another when called.
    sms_near_ahead: int = 3
    sms_near_minutes: int = 10


@dataclass(frozen=True)
class WebhooksConfig:
    """How notices go to webhook endpoints: each delivery's timeout, the retry backoff, and how
    long an endpoint may fail before it is disabled."""

    timeout_s: float = 5.0
    retry_first_s: float = 1.0
    retry_max_s: float = 300.0
    disable_after_minutes: float = 60.0


@dataclass(frozen=True)
class StoreConfig:
    """Which engine keeps the state: the embedded SQLite file (one server process) or a Redis
    server shared by several replicas behind a load balancer (``[store]`` in the TOML)."""

    engine: str = "sqlite"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "ccq:"
    stream_keep: int = 20_000   # Redis: entries the live stream keeps (it is trimmed past this)
    redis_sentinels: tuple[str, ...] = ()   # HOST:PORT of Sentinels that name the primary
    redis_master: str = "counter-redis"     # the Sentinels' name for it
    min_replicas_ack: int | None = None     # replicas that must confirm a change (WAIT)

    @property
    def replicas_ack(self) -> int:
        """Redis replicas each acknowledged change waits for: 1 by default behind Sentinels,
        since Redis replicates asynchronously and a failover would lose what only the primary had."""
        if self.min_replicas_ack is not None:
            return self.min_replicas_ack
        return 1 if self.redis_sentinels else 0


@dataclass(frozen=True)
class Scenario:
    name: str
    timezone: ZoneInfo
    services: Mapping[str, Service]
    substations: Mapping[str, Substation]
    policy: QueuePolicy
    demand: Mapping[str, float] = field(default_factory=dict)
    # The service consumers pay bills at ([demand] payment_service): what the boards' "pay
    # online" hint, the phone list and peak-sim measure. None: the scenario takes no payments.
    payment_service: str | None = None
    online: OnlinePayment = field(default_factory=lambda: OnlinePayment())
    billing: BillingConfig = field(default_factory=lambda: BillingConfig())
    store: StoreConfig = field(default_factory=lambda: StoreConfig())
    phones: PhonesConfig = field(default_factory=lambda: PhonesConfig())
    webhooks: WebhooksConfig = field(default_factory=lambda: WebhooksConfig())

    @cached_property
    def counters(self) -> dict[str, ScenarioCounter]:
        return {c.id: c for s in self.substations.values() for c in s.counters}

    def day_of(self, moment: float) -> str:
        """The business day of ``moment`` in the scenario's time zone (YYYY-MM-DD)."""
        return datetime.fromtimestamp(moment, self.timezone).date().isoformat()

    def layouts(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """Per substation, each counter's services: what a queue needs to estimate waits."""
        return {s.id: {c.id: c.services for c in s.counters} for s in self.substations.values()}


DEFAULT_SCENARIO = "default.toml"


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Read a scenario TOML file, or the built-in one when ``path`` is None."""
    if path is None:
        text = resources.files("counter_server.scenario").joinpath(DEFAULT_SCENARIO).read_text("utf-8")
        source = "built-in scenario"
    else:
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ScenarioError(f"cannot read scenario file {path}: {exc.strerror}") from exc
        source = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from exc
    if data.get("extends") == "builtin" and path is not None:
        data = merge(tomllib.loads(
            resources.files("counter_server.scenario").joinpath(DEFAULT_SCENARIO).read_text("utf-8")
        ), data)
    elif "extends" in data:
        raise ScenarioError(f"{source}: extends: only \"builtin\" can be extended, not {data['extends']!r}")
    try:
        return parse_scenario(data)
    except ScenarioError as exc:
        raise ScenarioError(f"{source}: {exc}") from exc


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base``: tables merge key by key, anything else is replaced.

    Lets a small file (``extends = "builtin"``) change a few figures of the built-in scenario.
    """
    merged = dict(base)
    for key, value in override.items():
        if key == "extends":
            continue
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_scenario(data: Mapping[str, Any]) -> Scenario:
    """Build a Scenario from parsed TOML. The schema's models (scenario/schema.py) check every
    key, type and cross-reference first; a refusal names the key's full path and, for an
    unknown key, the nearest valid one."""
    try:
        model = schema.validate(dict(data))
    except ValidationError as exc:
        raise ScenarioError(schema.explain(exc)) from None
    services = {s.id: Service(id=s.id, name=s.name, name_hi=s.name_hi, letter=s.letter,
                              mean_service_s=s.mean_service_s, min_service_s=s.min_service_s,
                              max_service_s=s.max_service_s)
                for s in model.services}
    default_days = _opening_days(model.hours, OpeningDays())
    substations = {hall.id: _substation(hall, model.hours, default_days, tuple(services))
                   for hall in model.substations}
    head = model.queue.head_start_minutes
    policy = QueuePolicy(
        head_start_s={Priority.NORMAL: head.normal * 60.0, Priority.SENIOR: head.senior * 60.0,
                      Priority.DISABLED: head.disabled * 60.0},
        recalls_before_no_show=model.queue.recalls_before_no_show,
        max_requeues=model.queue.max_requeues,
        service_seeds={s.id: _seed(s) for s in services.values()},
        ewma_alpha=model.queue.ewma_alpha,
        admission=model.queue.admission,
    )
    # The figures as written (peak-sim tells a scenario's figure from its own default by the
    # key's presence, and prints them as given).
    demand = {k: v for k, v in dict(data.get("demand", {})).items() if k != "payment_service"}
    return Scenario(
        name=model.name,
        timezone=ZoneInfo(model.timezone),
        services=services,
        substations=substations,
        policy=policy,
        demand=demand,
        payment_service=model.demand.payment_service,
        online=OnlinePayment(hint_after_s=model.online.hint_after_minutes * 60.0,
                             text=model.online.text, text_hi=model.online.text_hi),
        billing=BillingConfig(url=model.billing.url, adapter=model.billing.adapter,
                              gateway=_knobs(GatewaySettings, model.billing),
                              simulator=_knobs(SimSettings, model.billing.simulator)),
        store=StoreConfig(engine=model.store.engine, redis_url=model.store.redis_url,
                          redis_prefix=model.store.redis_prefix, stream_keep=model.store.stream_keep,
                          redis_sentinels=tuple(model.store.redis_sentinels),
                          redis_master=model.store.redis_master,
                          min_replicas_ack=model.store.min_replicas_ack),
        phones=replace(_knobs(PhonesConfig, model.phones), public_url=model.phones.public_url.rstrip("/")),
        webhooks=_knobs(WebhooksConfig, model.webhooks),
    )


def _substation(hall: schema.SubstationModel, hours: schema.HoursModel, default_days: OpeningDays,
                all_services: tuple[str, ...]) -> Substation:
    return Substation(
        id=hall.id,
        name=hall.name,
        name_hi=hall.name_hi,
        services=tuple(hall.services) if hall.services is not None else all_services,
        counters=tuple(ScenarioCounter(id=c.id, substation=hall.id, services=tuple(c.services),
                               name=c.name or c.id, name_hi=c.name_hi) for c in hall.counters),
        opens=hall.opens or hours.opens,
        closes=hall.closes or hours.closes,
        latitude=hall.latitude,
        longitude=hall.longitude,
        days=_opening_days(hall, default_days),
    )


def _opening_days(raw: schema.OpeningDaysModel, default: OpeningDays) -> OpeningDays:
    """``closed_weekdays``, ``holidays`` and ``open_days`` of ``[hours]`` or one substation
    (a substation's list replaces the scenario's)."""
    return OpeningDays(
        closed_weekdays=(default.closed_weekdays if raw.closed_weekdays is None
                         else frozenset(WEEKDAYS.index(day) for day in raw.closed_weekdays)),
        holidays=default.holidays if raw.holidays is None else frozenset(raw.holidays),
        extra_open=default.extra_open if raw.open_days is None else frozenset(raw.open_days),
    )


def _knobs(kind: type, table: schema.Table) -> Any:
    """A settings dataclass from the validated table of the same keys."""
    return kind(**{f.name: getattr(table, f.name) for f in fields(kind)})


def _seed(service: Service) -> ServiceTimeSeed:
    """Seed of the wait estimator: the scenario's mean, and the spread of a uniform min..max."""
    low, high = service.min_service_s, service.max_service_s
    spread = (high - low) / 12 ** 0.5 if low is not None and high is not None else service.mean_service_s / 3
    return ServiceTimeSeed(mean_s=service.mean_service_s, sd_s=spread, min_s=low, max_s=high)


@dataclass(frozen=True)
class Settings:
    """Everything one server process needs; ``create_app(settings)`` builds from it alone."""

    data_dir: Path = Path("counter-data")
    host: str = "127.0.0.1"
    port: int = 8080
    scenario: Scenario = field(default_factory=load_scenario)
    max_body_bytes: int = 64 * 1024
    write_admin_key: bool = True
    live_heartbeat_s: float = 5.0
    # WebSocket pings find a peer gone without a word (within the interval and half of it
    # again). Boards are pinged with every heartbeat; a phone's feed every live_phone_ping_s:
    # each ping is a task, a timer and a pong to wake the handler for, and at 10,000 phones a
    # ping every 5 s was 2,000 of each a second. Each phone takes an interval of its own from
    # the last quarter below this, so phones that connected together are not pinged together.
    live_phone_ping_s: float = 30.0
    live_client_buffer: int = 256
    live_backlog: int = 1000
    # A keyed live connection asks whether its key still stands this often (answered from a list
    # of live key ids at most 0.4 s old): a revoked key's sockets close within a second.
    live_key_recheck_s: float = 0.5
    # Open files the server asks for at start (its soft RLIMIT_NOFILE, up to the hard limit):
    # one per live connection (10,000 boards and phones) plus the database, logs and listeners.
    open_files: int = 10_000 + 1024
    ops_push_every_s: float = 1.0       # the gateway's state and the alerts go out to ops
    booked_slots_every_s: float = 15.0  # bookings whose slot has begun become waiting tokens
    day_close_every_s: float = 1.0      # closing time and the day boundary are looked for
    rate_limit_per_s: float = 20.0
    rate_limit_burst: float = 40.0
    billing_url: str | None = None   # overrides the scenario's [billing] url
    clock: Callable[[], float] = time.time
    store_engine: str | None = None  # overrides the scenario's [store] engine ("sqlite", "redis")
    redis_url: str | None = None     # overrides the scenario's [store] redis_url
    redis_prefix: str | None = None  # overrides the scenario's [store] redis_prefix
    redis_sentinels: tuple[str, ...] = ()   # override the scenario's [store] redis_sentinels
    redis_master: str | None = None  # overrides the scenario's [store] redis_master
    # Load balancers whose X-Forwarded-For is believed (one hop): behind them every client
    # would otherwise share the balancer's address in the per-address limits.
    trusted_proxies: tuple[str, ...] = ()
    # GET /readyz gives the store this long to answer a ping before saying "not ready".
    ready_timeout_s: float = 1.0
    # A replica whose store does not answer at start serves "not ready" and tries again after
    # store_retry_first_s, doubling up to store_retry_max_s, until it answers.
    store_retry_first_s: float = 0.2
    store_retry_max_s: float = 5.0
    # On SIGTERM, requests in flight get this long to finish before their connections close;
    # then the background rounds, and the billing posts in flight, get as long each.
    shutdown_grace_s: float = 3.0
    # Each webhook endpoint looks for new notices this often (and endpoints added on another
    # replica are found within it).
    webhook_poll_s: float = 0.25

    @property
    def store(self) -> StoreConfig:
        """The store to open: the scenario's ``[store]`` with this run's overrides laid over it."""
        base = self.scenario.store
        return replace(base, engine=self.store_engine or base.engine,
                       redis_url=self.redis_url or base.redis_url,
                       redis_prefix=self.redis_prefix or base.redis_prefix,
                       redis_sentinels=self.redis_sentinels or base.redis_sentinels,
                       redis_master=self.redis_master or base.redis_master)

    @property
    def store_address(self) -> str:
        """Where the Redis state is, as logs and ops may show it (no password)."""
        store = self.store
        if store.redis_sentinels:
            return (f"the primary {store.redis_master!r} named by Sentinels {', '.join(store.redis_sentinels)}"
                    f" (changes wait for {store.replicas_ack} replica(s))")
        return redacted(store.redis_url)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "counter.db"

    @property
    def admin_key_path(self) -> Path:
        return self.data_dir / "admin.key"


ENV_PREFIX = "COUNTER_SERVER_"


def env_default(name: str, default: str | None) -> str | None:
    """A run setting's default, overridden by ``COUNTER_SERVER_<NAME>`` when set."""
    return os.environ.get(ENV_PREFIX + name.upper(), default)
