"""Crash rounds: cashiers issue, call, serve and take payments while a process is SIGKILLed.

Each cashier keeps a journal as a kiosk does: a request is written down with its
Idempotency-Key before it is sent, and one that got no answer is sent again, with the same key,
once the server is back. After each restart the store must hold every acknowledged change
exactly once: no acknowledged token or payment lost, none twice, each substation's numbers per
service and day without repeats or gaps, and no counter holding two tokens at once.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from testkit.figures import progress
from testkit.processes import BillingSimProcess, RedisProcess, ServerProcess
from testkit.waiting import WaitTimedOut, wait_until_async

from .common import PartTally, Places, call, make_keys, redis_view, sqlite_view, write_scenario

RANK = {"waiting": 0, "called": 1, "serving": 2, "done": 3}
HALLS, COUNTERS_A_HALL = 4, 3   # the cashiers: at most 3 counters in each of the first 4 paying halls


@dataclass
class Op:
    kind: str           # issue, next, start, pay, complete
    method: str
    path: str
    idem: str
    body: dict | None = None


@dataclass
class Cashier:
    """One counter's kiosk: its key, hall and paid service, the token it holds and its journal
    of one pending request."""

    counter: str
    key: str
    substation: str
    service: str
    holding: str | None = None
    stage: str = ""               # called, serving, paid
    pending: Op | None = None
    issued: bool = False          # issue one token, then call the next one, and so on
    serial: itertools.count = field(default_factory=itertools.count)

    def next_op(self, tag: str) -> Op:
        n = f"{tag}-{self.counter}-{next(self.serial)}"
        if self.holding is None:
            self.issued = not self.issued
            if self.issued:
                return Op("issue", "POST", f"/api/v1/substations/{self.substation}/tokens", n,
                          {"service": self.service, "priority": random.choice(["normal", "senior"])})
            return Op("next", "POST", f"/api/v1/counters/{self.counter}/next", n)
        if self.stage == "called":
            return Op("start", "POST", f"/api/v1/tokens/{self.holding}/start", n)
        if self.stage == "serving":
            return Op("pay", "POST", "/api/v1/payments", n, {
                "token_id": self.holding, "account": f"2140{random.randrange(10**6):06d}",
                "amount_paise": random.randrange(100, 10**7)})
        return Op("complete", "POST", f"/api/v1/tokens/{self.holding}/complete", n)


@dataclass
class Ledger:
    """What the clients were told: every acknowledged answer, by token and payment."""

    token_status: dict[str, str] = field(default_factory=dict)     # id -> furthest acked status
    token_counter: dict[str, str] = field(default_factory=dict)    # id -> counter that called it
    payments: dict[str, str] = field(default_factory=dict)         # payment id -> token id
    issues_sent: set[str] = field(default_factory=set)             # issue Idempotency-Keys sent
    acknowledged: int = 0
    retried: int = 0
    replays: int = 0               # acknowledged requests sent again on purpose, same key
    replay_mismatch: int = 0       # ... whose second answer named another token or payment
    five_xx: int = 0
    refusals: Counter = field(default_factory=Counter)

    def saw(self, token: dict | None) -> None:
        if token:
            old = self.token_status.get(token["id"], "waiting")
            self.token_status[token["id"]] = max(old, token["status"], key=lambda s: RANK.get(s, 0))


class Load:
    """The cashiers, sending through one or several servers (as behind a load balancer)."""

    def __init__(self, cashiers: list[Cashier], tag: str) -> None:
        self.cashiers = cashiers
        self.tag = tag
        self.ledger = Ledger()
        self.urls: list[str] = []
        self.pace_s = 0.0          # a pause after each answer (the soak's steady pace)

    def answer(self, cashier: Cashier, op: Op, status: int, body: Any, tally: PartTally) -> bool:
        """Apply one answer; False when the request must be sent again later."""
        ledger = self.ledger
        if status in (502, 503, 504) or status == 429:
            return False                        # not acknowledged: the journal keeps it
        if status >= 500:
            ledger.five_xx += 1
            tally.problem(f"{op.kind} {op.path} answered {status}: {str(body)[:200]}")
            return True
        if status >= 400:
            code = body.get("error", {}).get("code") if isinstance(body, dict) else str(body)[:40]
            ledger.refusals[f"{op.kind}:{code}"] += 1
            if op.kind != "issue" and code not in ("counter_busy",):
                tally.problem(f"{op.kind} {op.path} refused {status} {code}")
                cashier.holding = None
            return True
        ledger.acknowledged += 1
        if op.kind == "pay":
            ledger.payments[body["payment"]["id"]] = body["payment"]["token_id"]
            cashier.stage = "paid"
            return True
        token = body.get("token")
        ledger.saw(token)
        if op.kind == "next":
            if token is not None:
                cashier.holding, cashier.stage = token["id"], "called"
                ledger.token_counter[token["id"]] = cashier.counter
        elif op.kind == "start":
            cashier.stage = "serving"
        elif op.kind == "complete":
            cashier.holding, cashier.stage = None, ""
        return True

    async def send(self, session: aiohttp.ClientSession, cashier: Cashier, op: Op, url: str):
        if op.kind == "issue":
            self.ledger.issues_sent.add(op.idem)
        return await call(session, op.method, url + op.path, cashier.key,
                          headers={"Idempotency-Key": op.idem}, json=op.body)

    async def run_cashier(self, session: aiohttp.ClientSession, cashier: Cashier, stop: asyncio.Event,
                          tally: PartTally, index: int) -> None:
        while not stop.is_set():
            op = cashier.pending or cashier.next_op(self.tag)
            cashier.pending = op                     # written down before it is sent
            url = self.urls[index % len(self.urls)]
            answered = await self.send(session, cashier, op, url)
            if answered is None or not self.answer(cashier, op, *answered, tally):
                if answered is None and len(self.urls) == 1:
                    return                           # the server is gone: wait for the restart
                await asyncio.sleep(0.05)
                continue
            cashier.pending = None
            if op.kind in ("issue", "next", "pay") and random.random() < 0.1 and answered[0] < 300:
                await self.replay(session, cashier, op, url, answered[1], tally)
            if self.pace_s:
                await asyncio.sleep(self.pace_s)

    async def replay(self, session: aiohttp.ClientSession, cashier: Cashier, op: Op, url: str, first: Any,
                     tally: PartTally) -> None:
        """Send an acknowledged request again with its key, as a kiosk whose answer was lost on
        the way does: the answer must name the same token or payment, and change nothing."""
        again = await self.send(session, cashier, op, url)
        if again is None or again[0] >= 300:
            return                              # the server went away meanwhile: not a verdict
        self.ledger.replays += 1
        which = "payment" if op.kind == "pay" else "token"
        if (first.get(which) or {}).get("id") != (again[1].get(which) or {}).get("id"):
            self.ledger.replay_mismatch += 1
            tally.problem(f"{op.kind} sent again with Idempotency-Key {op.idem} answered another {which}")

    async def run(self, session: aiohttp.ClientSession, stop: asyncio.Event, tally: PartTally) -> None:
        await asyncio.gather(*[self.run_cashier(session, c, stop, tally, i)
                               for i, c in enumerate(self.cashiers)])

    async def retry_pending(self, session: aiohttp.ClientSession, tally: PartTally,
                            deadline_s: float = 30.0) -> int:
        """The journals' unanswered requests, sent again with the same keys until answered."""
        deadline = time.monotonic() + deadline_s
        left = 0
        for i, cashier in enumerate(self.cashiers):
            if cashier.pending is None:
                continue
            op, url = cashier.pending, self.urls[i % len(self.urls)]

            async def answered_again(cashier: Cashier = cashier, op: Op = op, url: str = url) -> bool:
                answered = await self.send(session, cashier, op, url)
                return answered is not None and self.answer(cashier, op, *answered, tally)

            try:
                await wait_until_async(answered_again, what=f"an answer to {op.kind} {op.idem}",
                                       timeout=max(0.0, deadline - time.monotonic()), interval=0.2)
            except WaitTimedOut:
                left += 1
                continue
            cashier.pending = None
            self.ledger.retried += 1
        return left


def check_store(ledger: Ledger, tokens: dict, payments: dict, tally: PartTally, part: str) -> tuple[int, int]:
    """Lost and duplicated changes, comparing what clients were told with what is stored."""
    lost = dup = 0
    for token_id, status in ledger.token_status.items():
        stored = tokens.get(token_id)
        if stored is None or RANK.get(stored.status, 0) < RANK[status]:
            lost += 1
            tally.problem(f"{part}: acknowledged token {token_id} ({status}) is "
                            f"{'missing' if stored is None else stored.status} in the store")
    for token_id, counter in ledger.token_counter.items():
        stored = tokens.get(token_id)
        if stored is not None and stored.counter != counter:
            lost += 1
            tally.problem(f"{part}: token {stored.number} called to {counter} is at {stored.counter}")
    for payment_id, token_id in ledger.payments.items():
        if payment_id not in payments:
            lost += 1
            tally.problem(f"{part}: acknowledged payment {payment_id} for {token_id} is missing")
    dup += ledger.replay_mismatch
    numbers = Counter((t.substation, t.day, t.service, t.number) for t in tokens.values())
    for where, n in numbers.items():
        if n > 1:
            dup += n - 1
            tally.problem(f"{part}: number {where} issued {n} times")
    per_token = Counter(p.token_id for p in payments.values())
    for token_id, n in per_token.items():
        if n > 1:
            dup += n - 1
            tally.problem(f"{part}: token {token_id} has {n} payments (one was taken)")
    if len(tokens) > len(ledger.issues_sent):
        dup += len(tokens) - len(ledger.issues_sent)
        tally.problem(f"{part}: {len(tokens)} tokens stored for {len(ledger.issues_sent)} issue requests")
    active = Counter(t.counter for t in tokens.values() if t.status in ("called", "serving"))
    for counter, n in active.items():
        if n > 1:
            dup += n - 1
            tally.problem(f"{part}: counter {counter} holds {n} tokens at once")
    sequences: dict[tuple, list[int]] = {}
    for t in tokens.values():
        sequences.setdefault((t.substation, t.day, t.service), []).append(t.seq)
    for where, seqs in sequences.items():
        if sorted(seqs) != list(range(1, len(seqs) + 1)):
            tally.problem(f"{part}: numbering of {where} has gaps: {sorted(set(range(1, max(seqs) + 1)) - set(seqs))[:10]}")
            dup += 0
    return lost, dup


async def _cashiers(data_dir: Path, config: Path) -> list[Cashier]:
    """A cashier at each of the first counters serving the paid service in the first halls
    that have one (twelve on the built-in scenario), taken from ``config``."""
    places = Places.load(config)
    counters = [(hall, c) for hall, serving in places.halls[:HALLS] for c in serving[:COUNTERS_A_HALL]]
    keys = await make_keys(data_dir, [("cashier", c) for _, c in counters], config)
    return [Cashier(c, k, hall, places.service) for (hall, c), k in zip(counters, keys)]


async def server_and_load(workdir: Path, name: str, *extra_args: str,
                          scenario: Path | None = None) -> tuple[ServerProcess, Load]:
    """A server on SQLite in ``workdir/NAME-data`` running ``scenario`` (a file; None: the
    built-in one; started, the caller stops it) and its cashiers, with their keys, to load it."""
    config = write_scenario(workdir / f"{name}.toml", base=scenario)
    server = ServerProcess(data_dir=workdir / f"{name}-data", config=config,
                           extra_args=["--rate-limit", "0", *extra_args])
    server.start()
    try:
        load = Load(await _cashiers(server.data_dir, config), name)
    except BaseException:
        server.stop()
        raise
    load.urls = [server.url]
    return server, load


async def sqlite_rounds(workdir: Path, rounds: int, tally: PartTally, seed: int = 1,
                        scenario: Path | None = None) -> None:
    """``rounds`` SIGKILLs of a server on SQLite under load, each followed by a restart."""
    rng = random.Random(seed)
    server, load = await server_and_load(workdir, "crash", scenario=scenario)
    try:
        lost = dup = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for r in range(1, rounds + 1):
                stop = asyncio.Event()
                running = asyncio.create_task(load.run(session, stop, tally))
                await asyncio.sleep(rng.uniform(0.3, 2.0))
                server.kill()
                tally.kills += 1
                stop.set()
                await running
                pending = sum(c.pending is not None for c in load.cashiers)
                server.start()
                left = await load.retry_pending(session, tally)
                tokens, payments = sqlite_view(server.data_dir / "counter.db")
                lost, dup = check_store(load.ledger, tokens, payments, tally, f"sqlite round {r}")
                tally.rounds += 1
                progress(f"  sqlite round {r}/{rounds}: SIGKILL, {pending} in flight, "
                         f"{load.ledger.acknowledged} acknowledged so far, {len(tokens)} tokens, "
                         f"{len(payments)} payments; lost {lost}, duplicated {dup}, unanswered {left}")
                if left:
                    tally.problem(f"sqlite round {r}: {left} requests still unanswered after restart")
        ledger = load.ledger
        _tally(tally, "crash: server SIGKILL (SQLite)", ledger, lost, dup, rounds)
    finally:
        server.stop()


def _tally(tally: PartTally, part: str, ledger: Ledger, lost: int, dup: int, rounds: int) -> None:
    tally.acknowledged += ledger.acknowledged
    tally.lost += lost
    tally.duplicated += dup
    tally.five_xx += ledger.five_xx
    tally.figure(part, "kill rounds", rounds)
    tally.figure(part, "acknowledged answers", ledger.acknowledged)
    tally.figure(part, "retried after restart", ledger.retried)
    tally.figure(part, "acknowledged requests sent again (same key)", ledger.replays)
    tally.figure(part, "lost", lost, target="0", met=lost == 0)
    tally.figure(part, "duplicated", dup, target="0", met=dup == 0)


async def _drain(session: aiohttp.ClientSession, url: str, key: str, timeout_s: float = 90.0) -> dict:
    """The gateway's state once its outbox is empty, or the last state read in ``timeout_s``."""
    state: dict = {}

    async def billing_state() -> dict:
        nonlocal state
        answered = await call(session, "GET", f"{url}/api/v1/ops/billing", key)
        if answered is not None and answered[0] == 200:
            state = answered[1]["billing"]
        return state

    try:
        return await wait_until_async(billing_state, done=lambda s: bool(s) and s["outbox"]["queued"] == 0,
                                      what="the outbox to drain", timeout=timeout_s, interval=0.3)
    except WaitTimedOut as timed_out:
        return timed_out.last


async def _billing_stats(session: aiohttp.ClientSession, sim: BillingSimProcess) -> dict:
    answered = await call(session, "GET", f"{sim.url}/stats")
    assert answered is not None and answered[0] == 200, answered
    return answered[1]


async def billing_round(workdir: Path, tally: PartTally, seed: int = 2, scenario: Path | None = None) -> None:
    """billing-sim SIGKILLed mid-load, then the server too while payments wait in the outbox;
    both restarted: every payment reaches billing exactly once."""
    rng = random.Random(seed)
    part = "crash: billing-sim SIGKILL"
    sim = BillingSimProcess(journal=workdir / "billing-journal.jsonl")
    sim.start()
    try:
        server, load = await server_and_load(workdir, "billing", "--billing-url", sim.url, scenario=scenario)
    except BaseException:
        sim.stop()
        raise
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            stop = asyncio.Event()
            running = asyncio.create_task(load.run(session, stop, tally))
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            sim.kill()                                   # billing dies with posts in flight
            await asyncio.sleep(rng.uniform(0.5, 1.5))   # payments keep coming: queued
            server.kill()                                # and the server dies with a backlog
            stop.set()
            await running
            tally.kills += 2
            server.start()
            left = await load.retry_pending(session, tally)
            stop = asyncio.Event()
            running = asyncio.create_task(load.run(session, stop, tally))
            await asyncio.sleep(1.0)
            sim.start()                                  # billing back, with its journal
            await asyncio.sleep(1.0)
            stop.set()
            await running
            left += await load.retry_pending(session, tally)
            state = await _drain(session, server.url, server.admin_key)
            stats = await _billing_stats(session, sim)
        tokens, payments = sqlite_view(server.data_dir / "counter.db")
        lost, dup = check_store(load.ledger, tokens, payments, tally, "billing round")
        posted = sum(p.status == "posted" for p in payments.values())
        journal = Counter(line.split('"payment_id": "')[1].split('"')[0]
                          for line in sim.journal.read_text().splitlines() if line.strip())
        in_billing_twice = sum(n - 1 for n in journal.values() if n > 1)
        not_in_billing = sum(pid not in journal for pid in payments)
        unknown_to_us = sum(pid not in payments for pid in journal)
        dup += in_billing_twice + unknown_to_us
        lost += not_in_billing
        for text, n in (("payments stored but never posted to billing", not_in_billing),
                        ("payments in billing's journal twice", in_billing_twice),
                        ("payments in billing's journal that the store does not know", unknown_to_us)):
            if n:
                tally.problem(f"billing round: {n} {text}")
        if left or state.get("outbox", {}).get("queued", 1):
            tally.problem(f"billing round: outbox not drained ({state.get('outbox')}), {left} unanswered")
        tally.rounds += 1
        progress(f"  billing round: {len(payments)} payments stored, {posted} posted, billing holds "
                 f"{len(journal)}, re-posts answered as duplicates by billing {stats['duplicate_payments']}")
        _tally(tally, part, load.ledger, lost, dup, 1)
        tally.figure(part, "payments posted to billing", len(journal), target=f"= {len(payments)} stored",
                       met=len(journal) == len(payments) == posted)
        tally.figure(part, "re-posts billing saw as duplicate", stats["duplicate_payments"], target="0",
                       met=stats["duplicate_payments"] == 0)
    finally:
        server.stop()
        sim.stop()


async def scaled_round(workdir: Path, tally: PartTally, seed: int = 3, scenario: Path | None = None) -> None:
    """Two replicas on one Redis (AOF, fsync always): replica A SIGKILLed under load, then Redis
    SIGKILLed and restarted, then A restarted. Clients on a dead replica go to the other."""
    rng = random.Random(seed)
    part = "crash: replica + Redis (scaled)"
    redis = RedisProcess(dir=workdir / "redis", appendonly=True)
    redis.start()
    config = write_scenario(workdir / "scaled.toml", redis.url, base=scenario)
    a = ServerProcess(data_dir=workdir / "replica-a", config=config)
    b = ServerProcess(data_dir=workdir / "replica-b", config=config)
    a.start()
    b.start()
    try:
        load = Load(await _cashiers(a.data_dir, config), "scaled")
        load.urls = [a.url, b.url]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            stop = asyncio.Event()
            running = asyncio.create_task(load.run(session, stop, tally))
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            a.kill()
            load.urls = [b.url]                          # the balancer sends everyone to B
            await asyncio.sleep(rng.uniform(0.5, 1.0))
            redis.kill()
            await asyncio.sleep(0.5)
            redis.start()                                # AOF: the data comes back
            await asyncio.sleep(rng.uniform(0.5, 1.0))
            a.start()
            load.urls = [a.url, b.url]
            await asyncio.sleep(1.0)
            stop.set()
            await running
            tally.kills += 2
            left = await load.retry_pending(session, tally)
        tokens, payments = await redis_view(redis.url.rsplit("/", 1)[0] + "/0")
        lost, dup = check_store(load.ledger, tokens, payments, tally, "scaled round")
        if left:
            tally.problem(f"scaled round: {left} requests unanswered")
        tally.rounds += 1
        progress(f"  scaled round: {load.ledger.acknowledged} acknowledged, {len(tokens)} tokens, "
                 f"{len(payments)} payments; lost {lost}, duplicated {dup}")
        _tally(tally, part, load.ledger, lost, dup, 1)
    finally:
        a.stop()
        b.stop()
        redis.stop()
