"""What every part of the reliability suite shares: its tally, keys, store views and HTTP calls."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from counter_server.config import Scenario, Settings, load_scenario
from counter_server.services import KeyService
from counter_server.store import open_store
from testkit.figures import Figure, progress
from testkit.scenarios import NotInScenario, busy_hall, paying_halls, write_layered

# What the suite lays over the scenario it runs on: every hall open all day (so a run passes
# at any hour), the gateway retrying quickly after billing comes back, as in
# tests/test_replicas.py, and, for replicas, the Redis they share.
BILLING = {"lease_s": 2.0, "timeout_s": 5.0, "retry_base_s": 0.05, "retry_cap_s": 0.5}

ERROR_SHAPE_KEYS = {"code", "message"}


def write_scenario(path: Path, redis_url: str | None = None, base: Path | None = None) -> Path:
    """The suite's scenario at ``path``: ``base`` (a scenario file; None: the built-in one)
    with every hall open all day, the [billing] settings above and, given ``redis_url``, that
    Redis as its [store]."""
    return write_layered(path, base, redis_url, billing=BILLING)


@dataclass(frozen=True)
class Places:
    """Where the suite works, taken from the scenario it runs on, never by name: the paid service
    and its letter; the first hall with at least three counters serving it, and those counters;
    another hall serving it, and its first counter that does; every hall serving it, with its
    counters that do."""

    service: str
    letter: str
    hall: str
    counters: tuple[str, ...]
    other_hall: str
    other_counter: str
    halls: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def of(cls, scenario: Scenario) -> "Places":
        """Refused (:class:`NotInScenario`, one line naming what is missing) when the scenario
        lacks any of them."""
        hall, service, counters = busy_hall(scenario, 3)
        paying = paying_halls(scenario)
        other = next((h for h in paying if h != hall), None)
        if other is None:
            raise NotInScenario(f"the scenario has no second hall serving its paid service {service!r}")
        return cls(service, scenario.services[service].letter, hall, tuple(counters), other, paying[other][0],
                   tuple((h, tuple(cs)) for h, cs in paying.items()))

    @classmethod
    def load(cls, config: Path | None) -> "Places":
        return cls.of(load_scenario(config))


@dataclass
class PartTally:
    """One part's figures for the table, its counts for the last line, and what went wrong."""

    rounds: int = 0
    kills: int = 0
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    bad_inputs: int = 0
    five_xx: int = 0
    figures: list[Figure] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    COUNTS = ("rounds", "kills", "acknowledged", "lost", "duplicated", "bad_inputs", "five_xx")

    def add(self, other: "PartTally") -> "PartTally":
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.figures += other.figures
        self.problems += other.problems
        return self

    def figure(self, part: str, name: str, value: float, unit: str = "", target: str = "",
               met: bool | None = None, peak_rss_mb: float | None = None) -> None:
        self.figures.append(Figure(part, name, value, unit, target, met, peak_rss_mb))

    def problem(self, text: str) -> None:
        if len(self.problems) < 200:
            self.problems.append(text)
        progress(f"  PROBLEM: {text}")

    def last_line(self) -> str:
        return (f"rounds={self.rounds} kills={self.kills} acknowledged={self.acknowledged} "
                f"lost={self.lost} duplicated={self.duplicated} bad_inputs={self.bad_inputs} "
                f"5xx={self.five_xx}")


async def make_keys(data_dir: Path, specs: Iterable[tuple[str, str | None]],
                    config: Path | None = None) -> list[str]:
    """Keys made as ``counter-server keys create`` makes them, straight in the store (SQLite file
    or the config's Redis), while the server may be running: [(role, counter)] -> plain keys."""
    settings = Settings(data_dir=data_dir, scenario=load_scenario(config), write_admin_key=False)
    store = await open_store(settings)
    try:
        keys = KeyService(store, settings.scenario)
        return [(await keys.create(role, counter, label="reliability"))[0] for role, counter in specs]
    finally:
        await store.close()


def is_error_shape(body: Any) -> bool:
    """The documented error shape: {"error": {"code": snake_case, "message": text, ...}}."""
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        return False
    error = body["error"]
    return (ERROR_SHAPE_KEYS <= set(error) and isinstance(error["code"], str)
            and error["code"].replace("_", "").isalnum() and error["code"] == error["code"].lower()
            and isinstance(error["message"], str) and bool(error["message"]))


async def call(session: aiohttp.ClientSession, method: str, url: str, key: str | None = None,
               **kw: Any) -> tuple[int, Any] | None:
    """(status, JSON body or text), or None when the server did not answer."""
    headers = dict(kw.pop("headers", {}))
    if key is not None:
        headers.setdefault("Authorization", f"Bearer {key}")
    try:
        async with session.request(method, url, headers=headers, **kw) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text
    except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError):
        return None


@dataclass(frozen=True)
class StoredToken:
    id: str
    substation: str
    day: str
    service: str
    number: str
    seq: int
    status: str
    counter: str | None


@dataclass(frozen=True)
class StoredPayment:
    id: str
    token_id: str
    status: str


def sqlite_view(db_path: Path) -> tuple[dict[str, StoredToken], dict[str, StoredPayment]]:
    """Every token and payment in a server's SQLite file, read beside the running server."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        tokens = {r[0]: StoredToken(*r) for r in conn.execute(
            "SELECT id, substation, day, service, number, seq, status, counter FROM tokens")}
        payments = {r[0]: StoredPayment(*r) for r in conn.execute(
            "SELECT id, token_id, status FROM payments")}
    finally:
        conn.close()
    return tokens, payments


async def redis_view(url: str, prefix: str = "ccq:") -> tuple[dict[str, StoredToken], dict[str, StoredPayment]]:
    """The same from the Redis the replicas share."""
    from redis.asyncio import Redis

    client = Redis.from_url(url, decode_responses=True)
    try:
        tokens: dict[str, StoredToken] = {}
        async for name in client.scan_iter(match=f"{prefix}q:*:tokens", count=500):
            for raw in (await client.hgetall(name)).values():
                t = json.loads(raw)
                tokens[t["id"]] = StoredToken(t["id"], t["substation"], t["day"], t["service"],
                                              t["number"], t["seq"], t["status"], t.get("counter"))
        payments = {pid: StoredPayment(pid, p["token_id"], p["status"])
                    for pid, p in ((pid, json.loads(raw))
                                   for pid, raw in (await client.hgetall(f"{prefix}pay")).items())}
    finally:
        await client.aclose()
    return tokens, payments


__all__ = ["BILLING", "NotInScenario", "PartTally", "Places", "call", "is_error_shape", "make_keys",
           "redis_view", "sqlite_view", "write_scenario"]


class Matrix:
    """Each check: what was asked, the statuses allowed, and whether the answer held any key."""

    def __init__(self, session: aiohttp.ClientSession, url: str, secrets: list[str], tally: PartTally) -> None:
        self.session = session
        self.url = url
        self.secrets = secrets
        self.tally = tally
        self.checks = 0
        self.failed = 0
        self.echoed = 0

    async def expect(self, label: str, statuses: tuple[int, ...], method: str, path: str,
                     key: str | None = None, **kw) -> tuple[int, object] | None:
        answered = await call(self.session, method, self.url + path, key, **kw)
        self.checks += 1
        status, body = answered if answered is not None else (None, None)
        if status not in statuses:
            self.failed += 1
            self.tally.problem(f"access: {label}: got {status}, want {statuses}: {str(body)[:160]}")
        elif status >= 400 and not is_error_shape(body):
            self.failed += 1
            self.tally.problem(f"access: {label}: error not in the documented shape: {str(body)[:160]}")
        text = str(body)
        if any(secret in text for secret in self.secrets):
            self.echoed += 1
            self.tally.problem(f"access: {label}: the answer echoes a key")
        return answered
