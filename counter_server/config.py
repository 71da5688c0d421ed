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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .billing.gateway import GatewaySettings
from .billing.simulator import SimSettings
from .queueing import Priority, QueuePolicy, ServiceTimeSeed


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
class Counter:
    """A counter; ``name`` / ``name_hi`` are what boards, phones and slips call it (default: its
    id), so no screen has to make a label out of the id's shape."""

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


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


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
    counters: tuple[Counter, ...]
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


STORE_ENGINES = ("sqlite", "redis")


@dataclass(frozen=True)
class StoreConfig:
    """Which engine keeps the state: the embedded SQLite file (one server process) or a Redis
    server shared by several replicas behind a load balancer (``[store]`` in the TOML)."""

    engine: str = "sqlite"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "ccq:"


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

    @cached_property
    def counters(self) -> dict[str, Counter]:
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
        raise ScenarioError(f"{source}: extends: only \"builtin\" can be extended")
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
    """Build a Scenario from parsed TOML, naming the first field that is wrong."""
    tz_name = _get(data, "timezone", str, "timezone")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScenarioError(f"timezone: unknown time zone {tz_name!r}") from exc
    hours = data.get("hours", {})
    default_opens = _clock(hours.get("opens", "09:30"), "hours.opens")
    default_closes = _clock(hours.get("closes", "17:30"), "hours.closes")
    default_days = _opening_days(hours, "hours", OpeningDays())

    services: dict[str, Service] = {}
    letters: set[str] = set()
    for i, raw in enumerate(_get(data, "services", list, "services")):
        where = f"services[{i}]"
        sid = _get(raw, "id", str, f"{where}.id")
        letter = _get(raw, "letter", str, f"{where}.letter")
        if len(letter) != 1 or not letter.isalpha() or letter in letters:
            raise ScenarioError(f"{where}.letter: must be one letter, unique per scenario")
        letters.add(letter)
        services[sid] = Service(
            id=sid,
            name=_get(raw, "name", str, f"{where}.name"),
            name_hi=raw.get("name_hi", ""),
            letter=letter,
            mean_service_s=float(_get(raw, "mean_service_s", (int, float), f"{where}.mean_service_s")),
            min_service_s=raw.get("min_service_s"),
            max_service_s=raw.get("max_service_s"),
        )

    substations: dict[str, Substation] = {}
    seen_counters: set[str] = set()
    for i, raw in enumerate(_get(data, "substations", list, "substations")):
        where = f"substations[{i}]"
        sub_id = _get(raw, "id", str, f"{where}.id")
        if sub_id in substations:
            raise ScenarioError(f"{where}.id: {sub_id!r} appears twice")
        offered = tuple(raw.get("services", list(services)))
        for name in offered:
            if name not in services:
                raise ScenarioError(f"{where}.services: unknown service {name!r}")
        counters = []
        for j, craw in enumerate(_get(raw, "counters", list, f"{where}.counters")):
            cwhere = f"{where}.counters[{j}]"
            cid = _get(craw, "id", str, f"{cwhere}.id")
            if cid in seen_counters:
                raise ScenarioError(f"{cwhere}.id: {cid!r} appears twice")
            seen_counters.add(cid)
            cservices = tuple(_get(craw, "services", list, f"{cwhere}.services"))
            for name in cservices:
                if name not in offered:
                    raise ScenarioError(f"{cwhere}.services: {name!r} is not offered at {sub_id}")
            counters.append(Counter(id=cid, substation=sub_id, services=cservices,
                                    name=_optional_text(craw, "name", f"{cwhere}.name") or cid,
                                    name_hi=_optional_text(craw, "name_hi", f"{cwhere}.name_hi")))
        opens = _clock(raw["opens"], f"{where}.opens") if "opens" in raw else default_opens
        closes = _clock(raw["closes"], f"{where}.closes") if "closes" in raw else default_closes
        if closes <= opens:
            raise ScenarioError(f"{where}: closes must be after opens")
        substations[sub_id] = Substation(
            id=sub_id,
            name=_get(raw, "name", str, f"{where}.name"),
            name_hi=raw.get("name_hi", ""),
            services=offered,
            counters=tuple(counters),
            opens=opens,
            closes=closes,
            latitude=raw.get("latitude"),
            longitude=raw.get("longitude"),
            days=_opening_days(raw, where, default_days),
        )
    if not substations:
        raise ScenarioError("substations: at least one substation is needed")

    queue = data.get("queue", {})
    head_start = {Priority.NORMAL: 0.0, Priority.SENIOR: 600.0, Priority.DISABLED: 900.0}
    for name, minutes in queue.get("head_start_minutes", {}).items():
        try:
            head_start[Priority(name)] = float(minutes) * 60.0
        except ValueError as exc:
            raise ScenarioError(f"queue.head_start_minutes: unknown priority {name!r}") from exc
    policy = QueuePolicy(
        head_start_s=head_start,
        recalls_before_no_show=int(queue.get("recalls_before_no_show", 1)),
        max_requeues=int(queue.get("max_requeues", 1)),
        service_seeds={s.id: _seed(s) for s in services.values()},
        ewma_alpha=float(queue.get("ewma_alpha", 0.1)),
    )
    demand = dict(data.get("demand", {}))
    payment_service = demand.pop("payment_service", None)
    if payment_service is not None and payment_service not in services:
        raise ScenarioError(f"demand.payment_service: unknown service {payment_service!r}; "
                            f"services are {', '.join(services)}")
    return Scenario(
        name=data.get("name", "unnamed scenario"),
        timezone=tz,
        services=services,
        substations=substations,
        policy=policy,
        demand=demand,
        payment_service=payment_service,
        online=_online(data.get("online", {})),
        billing=_billing(data.get("billing", {})),
        store=_store(data.get("store", {})),
        phones=_phones(data.get("phones", {})),
    )


def _opening_days(raw: Mapping[str, Any], where: str, default: OpeningDays) -> OpeningDays:
    """``closed_weekdays``, ``holidays`` and ``open_days`` of ``[hours]`` or one substation
    (a substation's list replaces the scenario's)."""
    weekdays = default.closed_weekdays
    if "closed_weekdays" in raw:
        names = _get(raw, "closed_weekdays", list, f"{where}.closed_weekdays")
        try:
            weekdays = frozenset(WEEKDAYS.index(str(name).lower()) for name in names)
        except ValueError:
            raise ScenarioError(f"{where}.closed_weekdays: expected day names such as \"sunday\", "
                                f"got {names!r}") from None

    def dates(key: str, fallback: frozenset[date]) -> frozenset[date]:
        if key not in raw:
            return fallback
        values = _get(raw, key, list, f"{where}.{key}")
        try:
            return frozenset(v if isinstance(v, date) else date.fromisoformat(str(v)) for v in values)
        except ValueError:
            raise ScenarioError(f"{where}.{key}: expected dates YYYY-MM-DD, got {values!r}") from None

    return OpeningDays(weekdays, dates("holidays", default.holidays), dates("open_days", default.extra_open))


def _phones(raw: Mapping[str, Any]) -> PhonesConfig:
    url = raw.get("public_url", "")
    if not isinstance(url, str) or (url and not url.startswith(("http://", "https://"))):
        raise ScenarioError("phones.public_url: must be an http:// or https:// address")
    numbers = {k: v for k, v in raw.items() if k != "public_url"}
    phones = replace(_knobs(PhonesConfig, numbers, "phones"), public_url=url.rstrip("/"))
    if not 0 <= phones.booking_share < 1:
        raise ScenarioError("phones.booking_share: must be at least 0 and below 1")
    if not 5 <= phones.slot_minutes <= 120:
        raise ScenarioError("phones.slot_minutes: must be 5 to 120")
    return phones


def _store(raw: Mapping[str, Any]) -> StoreConfig:
    if not isinstance(raw, Mapping):
        raise ScenarioError("store: must be a table")
    default = StoreConfig()
    known = ("engine", "redis_url", "redis_prefix")
    for key in raw:
        if key not in known:
            raise ScenarioError(f"store.{key}: unknown setting; known: {', '.join(known)}")
    engine = raw.get("engine", default.engine)
    if engine not in STORE_ENGINES:
        raise ScenarioError(f"store.engine: must be one of {', '.join(STORE_ENGINES)}, not {engine!r}")
    url = raw.get("redis_url", default.redis_url)
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise ScenarioError("store.redis_url: must be a redis://, rediss:// or unix:// address")
    prefix = raw.get("redis_prefix", default.redis_prefix)
    if not isinstance(prefix, str) or not prefix:
        raise ScenarioError("store.redis_prefix: must be a non-empty string")
    return StoreConfig(engine=engine, redis_url=url, redis_prefix=prefix)


def _billing(raw: Mapping[str, Any]) -> BillingConfig:
    url = raw.get("url")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        raise ScenarioError("billing.url: must be an http:// or https:// address")
    return BillingConfig(
        url=url,
        gateway=_knobs(GatewaySettings, {k: v for k, v in raw.items() if k not in ("url", "simulator")},
                       "billing"),
        simulator=_knobs(SimSettings, raw.get("simulator", {}), "billing.simulator"),
    )


def _knobs(kind: type, raw: Mapping[str, Any], where: str) -> Any:
    """A settings dataclass from a TOML table, naming any unknown or non-numeric key."""
    known = {f.name: f for f in fields(kind)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise ScenarioError(f"{where}.{key}: unknown setting; known: {', '.join(known)}")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ScenarioError(f"{where}.{key}: must be a number, 0 or more")
        values[key] = value
    return kind(**values)


def _online(raw: Mapping[str, Any]) -> OnlinePayment:
    default = OnlinePayment()
    minutes = raw.get("hint_after_minutes", default.hint_after_s / 60)
    if not isinstance(minutes, (int, float)) or isinstance(minutes, bool) or minutes < 0:
        raise ScenarioError("online.hint_after_minutes: must be a number of minutes, 0 or more")
    return OnlinePayment(
        hint_after_s=float(minutes) * 60.0,
        text=raw.get("text", default.text),
        text_hi=raw.get("text_hi", default.text_hi),
    )


def _seed(service: Service) -> ServiceTimeSeed:
    """Seed of the wait estimator: the scenario's mean, and the spread of a uniform min..max."""
    low, high = service.min_service_s, service.max_service_s
    spread = (high - low) / 12 ** 0.5 if low is not None and high is not None else service.mean_service_s / 3
    return ServiceTimeSeed(mean_s=service.mean_service_s, sd_s=spread, min_s=low, max_s=high)


def _get(data: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(data, Mapping) or key not in data:
        raise ScenarioError(f"{where}: missing")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ScenarioError(f"{where}: wrong type {type(value).__name__}")
    return value


def _optional_text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ScenarioError(f"{where}: wrong type {type(value).__name__}")
    return value


def _clock(value: Any, where: str) -> clock_time:
    try:
        return clock_time.fromisoformat(str(value))
    except ValueError as exc:
        raise ScenarioError(f"{where}: expected HH:MM, got {value!r}") from exc


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
    live_client_buffer: int = 256
    live_backlog: int = 1000
    rate_limit_per_s: float = 20.0
    rate_limit_burst: float = 40.0
    billing_url: str | None = None   # overrides the scenario's [billing] url
    clock: Callable[[], float] = time.time
    store_engine: str | None = None  # overrides the scenario's [store] engine ("sqlite", "redis")
    redis_url: str | None = None     # overrides the scenario's [store] redis_url
    redis_prefix: str | None = None  # overrides the scenario's [store] redis_prefix
    # Load balancers whose X-Forwarded-For is believed (one hop): behind them every client
    # would otherwise share the balancer's address in the per-address limits.
    trusted_proxies: tuple[str, ...] = ()

    @property
    def store(self) -> StoreConfig:
        """The store to open: the scenario's ``[store]`` with this run's overrides laid over it."""
        base = self.scenario.store
        return StoreConfig(engine=self.store_engine or base.engine,
                           redis_url=self.redis_url or base.redis_url,
                           redis_prefix=self.redis_prefix or base.redis_prefix)

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
