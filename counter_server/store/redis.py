"""The Redis engine: state shared by several ``counter_server`` replicas behind a load balancer.

How a change stays atomic across replicas (optimistic concurrency, as with WATCH/MULTI/EXEC):

* Each replica keeps a queue it has read as a domain ``SubstationQueue`` together with the
  queue's *version*: the sequence number of the last event that changed it.
* A change runs in Python against that queue; its events, the tokens they carry, the day's
  numbering, the idempotency record and a version bump are then written by one Lua script,
  which first checks that the version in Redis is still the one the change was run against.
  If another replica changed the queue meanwhile, nothing is written: the replica reloads
  the queue and runs the change again. So two replicas never hand one token to two counters
  and never reuse a number.
* Each event takes the next global sequence number (``INCR`` inside the script), is appended
  to its day's list (the event log reports read) and to one Redis stream (``XADD`` with that
  number as its id, trimmed to ``stream_keep`` entries), the feed of every replica's live
  boards: each replica follows the stream, brings its copy of the queue up to date and hands
  each commit, with the hall as that copy shows it, to its listeners in sequence order,
  whichever replica made it. The entries carry what changed, never the whole hall.

Payments (the outbox), API keys and the turned-away count are small scripts of their own.
Nothing here is acknowledged before Redis has applied it; whether it also survives a restart of
Redis depends on Redis's persistence (AOF ``appendfsync always`` or ``everysec``; see docs/replicas.md).
Behind Redis Sentinel (``sentinels``), the replicas follow a failover by themselves, and a change
is acknowledged only once ``WAIT`` says ``replicas_ack`` Redis replicas have it too, so it survives
the loss of the primary.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..notices import Notice, SmsRequest, Webhook, notices_of, webhook_from_record, webhook_record
from ..outbox import OutboxStats, Payment
from ..queueing import DomainEvent, HallView, Lease, QueuePolicy, SlotPlan, SubstationQueue, Token
from ..redact import redacted
from . import redis_scripts as lua
from . import codec, core
from .base import EARLIER_PAYMENTS_READ, IDEMPOTENCY_TTL_S, NOTICE_KEEP_S, Committed, IdempotencyConflict
from .base import IdempotencyKey, KeyRecord, StoreUnavailable

log = logging.getLogger(__name__)

COMMIT_MEMO_TTL_S = 600              # a commit retried after a lost reply answers from this
UNAPPLIED_KEEP = 64                  # commits heard per busy queue, kept until its drainer is free
T = TypeVar("T")


def _logged(raw: str) -> dict[str, Any] | None:
    """One entry of a day's event list as the log's record with its ``seq`` (a payment's event
    keeps the payment beside it); None for an entry of an earlier version (a bare number)."""
    found = json.loads(raw)
    if not isinstance(found, list):
        return None
    seq, record, *payment = found
    if payment:
        record["data"] = payment[0]
    return {"seq": seq, **record}


def _notice_json(notice: Notice) -> str:
    """A webhook notice as the scripts add it to the stream (one of ``A.notices``)."""
    return codec.dumps({"id": notice.id, "type": notice.type, "at": notice.at, "data": notice.data})


def _notices_json(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The webhook notices logged ``records`` give, as the scripts add them (``A.notices``)."""
    return [_notice_json(n) for record in records for n in notices_of(record)]


def _sms_request(raw: str, near_sent_at: str | None) -> SmsRequest:
    """A request as PUT_SMS stored it, with the moment MARK_SMS_NEAR noted beside it (if any)."""
    request = codec.from_row(SmsRequest, json.loads(raw))
    return replace(request, near_sent_at=float(near_sent_at)) if near_sent_at is not None else request


def _hash_put(substation: str, day: str, change: core.RowChange) -> list[list[str]]:
    """The hash fields (COMMIT_QUEUE's puts) that hold one row the store core says changed."""
    match change:
        case core.PutToken(token=token):
            return [["tokens", token.id, codec.dumps(codec.to_row(token))], ["homes", token.id, f"{substation}\t{day}"]]
        case core.PutSequence(service=service, last=last):
            return [["seqs", service, str(last)]]
        case core.PutCounterOpen(counter=counter, open=is_open):
            return [["counters", counter, "1" if is_open else "0"]]
        case core.PutLease(lease=lease):
            return [["leases", lease.id, codec.dumps([lease.counter, lease.service, lease.letter,
                                                lease.first_seq, lease.last_seq])]]
        case core.PutSlotPlan(plan=plan):   # kept beside the substation's settings
            return [["settings", f"slots:{day}", codec.dumps(plan.as_dict()) if plan is not None else ""]]
        case core.PutAdmission(admission=admission, daily_cap=daily_cap):
            return [["settings", "admission", "1" if admission else "0"],
                    ["settings", "daily_cap", "" if daily_cap is None else str(daily_cap)]]
    raise TypeError(f"no hash holds a {type(change).__name__}")


def _queue_rows(day: str, found: list) -> tuple[int, dict[str, Token | None], core.QueueRows]:
    """What READ_QUEUE found: the version, the tokens it read (None: no such token), and the
    queue's rows with those tokens."""
    version, raw_tokens, seqs, counters, leases, settings = found
    tokens = {token_id: codec.from_row(Token, json.loads(raw)) if raw else None
              for token_id, raw in zip(raw_tokens[::2], raw_tokens[1::2])}
    seqs, counters, leases, settings = (dict(zip(x[::2], x[1::2])) for x in (seqs, counters, leases, settings))
    plan = settings.get(f"slots:{day}")
    return int(version or 0), tokens, core.QueueRows(
        tokens=[token for token in tokens.values() if token is not None],
        last_seq={service: int(last) for service, last in seqs.items()},
        closed=[counter for counter, is_open in counters.items() if is_open == "0"],
        admission=settings["admission"] == "1" if "admission" in settings else None,
        daily_cap=int(settings["daily_cap"]) if settings.get("daily_cap") else None,
        leases=[Lease(lid, *json.loads(raw)) for lid, raw in leases.items()],
        slot_plan=SlotPlan.from_dict(json.loads(plan)) if plan else None,
    )


# -- the store -----------------------------------------------------------------------------------


class RedisStore(core.StoreCore):
    """The scaled engine: any number of replicas share one Redis server."""

    def __init__(
        self,
        url: str,
        policy: QueuePolicy,
        layouts: Mapping[str, Mapping[str, Iterable[str]]] | None = None,
        *,
        prefix: str = "ccq:",
        hall_head: int = 12,
        cache_size: int = 64,
        block_ms: int = 1000,
        stream_keep: int = 20_000,
        sentinels: Sequence[tuple[str, int]] = (),
        master: str = "counter-redis",
        replicas_ack: int = 0,
        ack_timeout_ms: int = 2000,
    ) -> None:
        super().__init__(policy, layouts, hall_head=hall_head, cache_size=cache_size)
        self.url = url
        self.sentinels = list(sentinels)
        self.master = master
        self.replicas_ack = replicas_ack
        self._ack_timeout_ms = ack_timeout_ms
        self._sentinel_clients: list[Sentinel] = []
        self.prefix = prefix
        self._block_ms = block_ms
        self.stream_keep = stream_keep
        self._redis: Redis | None = None
        self._follower_redis: Redis | None = None
        self._follower: asyncio.Task[None] | None = None
        self._delivered = 0            # every event up to this seq has reached the listeners
        self._read_to = 0              # the stream has been read up to this seq
        self._heard: list[tuple[int, DomainEvent]] = []   # a commit read in part
        # Commits of other replicas heard while a queue's drainer held its copy: (the version
        # each ran on, its events), applied by the drainer before its next batch.
        self._unapplied: dict[core.QueueKey, list[tuple[int, list[tuple[int, DomainEvent]]]]] = {}
        self._progress = asyncio.Condition()
        self.following = False         # the stream follower is connected
        self._closing = False
        self._seq_key = self._k("seq")
        self._events_key = self._k("events")

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # -- life cycle ------------------------------------------------------------------------

    async def open(self) -> None:
        self._closing = False
        self._redis = self._client(socket_timeout=5.0)
        try:
            await self._redis.ping()
            self._delivered = self._read_to = int(await self._redis.get(self._seq_key) or 0)
        except RedisError as exc:
            await self._redis.aclose()
            self._redis = None
            raise StoreUnavailable(f"Redis at {self.address} does not answer: {exc}") from exc
        # The follower blocks on XREAD, so it has its own connection with a longer read timeout.
        self._follower_redis = self._client(socket_timeout=self._block_ms / 1000 + 5.0)
        self._scripts = {script.name: self._redis.register_script(script.source()) for script in lua.SCRIPTS}
        self._follower_scripts = {lua.RAISE_SEQ.name: self._follower_redis.register_script(lua.RAISE_SEQ.source())}
        self._follower = asyncio.create_task(self._follow(), name="redis-event-follower")

    @property
    def address(self) -> str:
        """Where the state is, as a log line may say it (no password)."""
        if self.sentinels:
            return f"{self.master!r} (Sentinels {', '.join(f'{h}:{p}' for h, p in self.sentinels)})"
        return redacted(self.url)

    def _client(self, socket_timeout: float) -> Redis:
        options: dict[str, Any] = dict(
            decode_responses=True, socket_timeout=socket_timeout,
            socket_connect_timeout=2.0, health_check_interval=10,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError, OSError],
        )
        if not self.sentinels:
            return Redis.from_url(self.url, **options)
        # The URL gives the database and password; the Sentinels say which server is primary,
        # and the pool asks them again whenever a connection to it fails (a failover).
        found = parse_url(self.url)
        sentinel = Sentinel(self.sentinels, sentinel_kwargs={"socket_timeout": 2.0, "socket_connect_timeout": 2.0})
        self._sentinel_clients.append(sentinel)
        return sentinel.master_for(self.master, db=found.get("db", 0), username=found.get("username"),
                                   password=found.get("password"), **options)

    async def close(self) -> None:
        self._closing = True
        if self._follower is not None:
            # A cancel that lands as a blocking read starts can be swallowed inside the client
            # (seen with redis-py 8 on Python 3.11), so also drop its connection and bound
            # the wait: the follower checks _closing before each read.
            self._follower.cancel()
            if self._follower_redis is not None:
                await self._follower_redis.connection_pool.disconnect()
            done, _ = await asyncio.wait({self._follower}, timeout=self._block_ms / 1000 + 2.0)
            if not done:
                log.warning("the Redis event follower did not stop in time")
            self._follower = None
        await self._stop_drainers()
        for client in (self._follower_redis, self._redis):
            if client is not None:
                await client.aclose()
        for sentinel in self._sentinel_clients:
            for client in sentinel.sentinels:
                await client.aclose()
        self._sentinel_clients = []
        self._redis = self._follower_redis = None

    async def ping(self) -> None:
        """PING on the requests' connection pool (not the follower's)."""
        await self.redis.ping()

    async def _run(self, script: lua.Script, keys: Mapping[str, str], args: Mapping[str, Any],
                   extra: Iterable[str] = (), *, follower: bool = False, writes: bool = True) -> Any:
        """Run ``script`` by name: its keys given by name, its arguments as one JSON object. A
        script that changes what is acknowledged waits, on the same connection, until
        ``replicas_ack`` Redis replicas have the change (else StoreUnavailable: not acknowledged;
        a retry with the same Idempotency-Key learns whether it was made). ``writes`` False: this
        call changes nothing acknowledged (a batch of reads only checks the queue's version)."""
        registered: AsyncScript = (self._follower_scripts if follower else self._scripts)[script.name]
        call = {"keys": [keys[name] for name in script.keys] + list(extra), "args": [codec.dumps(args)]}
        if not (self.replicas_ack and script.acknowledged and writes and not follower):
            return await registered(**call)
        async with self.redis.pipeline(transaction=False) as pipe:
            await registered(**call, client=pipe)
            pipe.wait(self.replicas_ack, self._ack_timeout_ms)
            answer, confirmed = await pipe.execute()
        if confirmed < self.replicas_ack:
            raise StoreUnavailable(f"{confirmed} of the {self.replicas_ack} Redis replica(s) asked for confirmed "
                                   f"the change within {self._ack_timeout_ms} ms; retry with the same Idempotency-Key")
        return answer

    def _queue_keys(self, key: core.QueueKey) -> dict[str, str]:
        substation, day = key
        return {"version": self._k("q", substation, day, "version"),
                "changed": self._k("q", substation, day, "changed"),
                "tokens": self._k("q", substation, day, "tokens"),
                "seqs": self._k("q", substation, day, "seqs"),
                "counters": self._k("q", substation, day, "counters"),
                "leases": self._k("q", substation, day, "leases"),
                "settings": self._k("sub", substation)}

    def _log_keys(self, day: str) -> dict[str, str]:
        """The keys every write of an event uses: the sequence, the stream, the day's list, and a
        fresh memo for this commit."""
        return {"seq": self._seq_key, "events": self._events_key, "day": self._k("day", day),
                "memo": self._k("commit", uuid.uuid4().hex), "notices": self._k("notices")}

    def _log_args(self, records: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """With the webhook notices the logged ``records`` give, written in the same script."""
        return {"floor": self._read_to, "memo_ttl": COMMIT_MEMO_TTL_S, "keep": self.stream_keep,
                "notices": _notices_json(records), "notices_keep_s": NOTICE_KEEP_S}

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("the store is not open")
        return self._redis

    # -- queue changes ---------------------------------------------------------------------

    async def _commit_batch(self, batch: core.Batch) -> list[int] | core.Seen | core.CachedQueue:
        """One COMMIT_QUEUE; when another replica changed the queue first, the script answers
        with what changed, read over this copy."""
        substation, day = key = batch.key
        puts: list[list[str]] = [put for change in batch.rows for put in _hash_put(substation, day, change)]
        if batch.records:
            puts.append(["waiting", substation, str(batch.queue.waiting_count())])
        keys = {**self._queue_keys(key), **self._log_keys(day), "homes": self._k("homes"),
                "waiting": self._k("waiting", day)}
        try:
            reply = await self._run(
                lua.COMMIT_QUEUE, keys,
                {"version": batch.version, "idem_ttl": IDEMPOTENCY_TTL_S, **self._log_args(batch.records),
                 "events": [codec.dumps(record) for record in batch.records], "puts": puts,
                 "answers": [[a.idem.fingerprint, a.event, a.keep] for a in batch.answers],
                 "touched": sorted(batch.touched)},
                extra=[self._idem_key(a.idem) for a in batch.answers], writes=bool(batch.records or batch.answers))
        except RedisError as exc:
            raise StoreUnavailable(f"Redis did not confirm the change: {exc}") from exc
        kind = reply[0]
        if kind == "stale":
            return self._cache_read(key, batch.queue, reply[1])
        if kind == "idem":
            return core.Seen(int(reply[1]), reply[2])
        self.commits += 1
        return [int(x) for x in reply[1].split()]

    def _idem_key(self, idem: IdempotencyKey | None) -> str:
        if idem is None:
            return self._k("idem", "-")
        return self._k("idem", idem.principal, idem.key)

    async def _kept(self, idem: IdempotencyKey) -> str | None:
        return await self.redis.get(self._idem_key(idem))

    def _answer_of(self, idem: IdempotencyKey, kept: str) -> Any:
        seq, fingerprint, answer = (kept.split("\n", 2) + [""])[:3]
        if fingerprint != idem.fingerprint:
            raise IdempotencyConflict(idem.key)
        if not seq:
            return core.NO_RESULT
        if not answer:
            raise StoreUnavailable(f"the answer to {idem.key!r} was kept by an earlier version; "
                                   "send the request with a new Idempotency-Key")
        return json.loads(answer)["data"]

    # -- reading queues ----------------------------------------------------------------------

    async def _load(self, key: core.QueueKey, base: core.CachedQueue | None,
                    recheck: Iterable[str]) -> core.CachedQueue:
        """Read a queue in one atomic script: whole, or (given the copy this replica has) only
        the tokens changed since its version plus ``recheck``, the ones a refused batch touched."""
        since = str(base.version) if base is not None else ""
        try:
            found = await self._run(lua.READ_QUEUE, self._queue_keys(key),
                                    {"since": since, "ids": list(recheck)})
        except RedisError as exc:
            raise StoreUnavailable(f"Redis did not answer: {exc}") from exc
        return self._cache_read(key, base.queue if base is not None else None, found)

    def _cache_read(self, key: core.QueueKey, base: SubstationQueue | None, found: list) -> core.CachedQueue:
        """Cache the queue READ_QUEUE found. Over ``base`` (it read only the changes, and what
        ``base``'s refused changes touched), ``base`` is mended in place where it can be: a
        rebuild walks every token of the line, on every refusal."""
        version, tokens, rows = _queue_rows(key[1], found)
        if base is None:
            return self._cached(key, rows, version)
        cached = self._cache.get(key)
        if cached is not None and cached.queue is base and core.rebased(base, tokens, rows, self.policy):
            cached.version = version
            for token_id, token in tokens.items():
                if token is not None:
                    self._cache.note_home(token_id, key)
            return cached
        merged = {**base.tokens, **tokens}
        return self._cached(key, replace(rows, tokens=[t for t in merged.values() if t is not None]), version)

    async def _home_of(self, token_id: str) -> core.QueueKey | None:
        raw = await self.redis.hget(self._k("homes"), token_id)
        if raw is None:
            return None
        substation, day = raw.split("\t")
        return substation, day

    async def waiting_counts(self, day: str) -> dict[str, int]:
        counts = await self.redis.hgetall(self._k("waiting", day))
        return {sub: int(n) for sub, n in counts.items() if int(n) > 0}

    # -- turned away -------------------------------------------------------------------------

    async def record_turned_away(self, substation: str, day: str, service: str, reason: str,
                                 at: float, idem: IdempotencyKey | None = None) -> None:
        record = {"substation": substation, "day": day, "service": service, "reason": reason,
                  "at": at, "principal": idem.principal if idem else None,
                  "idempotency_key": idem.key if idem else None}
        marker = self._k("turned_idem", idem.principal, idem.key) if idem else self._k("turned_idem", "-")
        await self._run(lua.TURNED_AWAY,
                        {"list": self._k("turned", day), "marker": marker,
                         "counts": self._k("turned_count", day)},
                        {"record": codec.dumps(record), "keyed": idem is not None,
                         "idem_ttl": IDEMPOTENCY_TTL_S, "substation": substation})

    async def turned_away_count(self, substation: str, day: str) -> int:
        return int(await self.redis.hget(self._k("turned_count", day), substation) or 0)

    # -- what ops read ------------------------------------------------------------------------

    async def day_events(self, day: str, substation: str | None = None) -> list[dict]:
        """One day's events (payments included) and its refusals at the door (kind
        ``turned_away``, ``seq`` None), in time order: what daily reports are made of."""
        logged = [_logged(raw) for raw in await self.redis.lrange(self._k("day", day), 0, -1)]
        events = [r for r in logged if r is not None and substation in (None, r["substation"])]
        if len(events) < len(logged) and substation is None:
            log.warning("%d events of %s were written by an earlier version and are not read",
                        logged.count(None), day)
        refused = []
        for raw in await self.redis.lrange(self._k("turned", day), 0, -1):
            row = json.loads(raw)
            if substation is None or row["substation"] == substation:
                refused.append(codec.refusal_record(row["substation"], day, row["at"], row["service"], row["reason"]))
        return core.merge_day(events, refused)

    async def token_counts(self, day: str, substations: Iterable[str]) -> list[tuple[str, str | None, str, int]]:
        """How many of the day's tokens are in each status, per substation and counter."""
        rows: list[tuple[str, str | None, str, int]] = []
        for sid in substations:
            counts: dict[tuple[str | None, str], int] = {}
            for raw in await self.redis.hvals(self._k("q", sid, day, "tokens")):
                token = json.loads(raw)
                key = (token["counter"], token["status"])
                counts[key] = counts.get(key, 0) + 1
            rows += [(sid, counter, status, n) for (counter, status), n in counts.items()]
        return rows

    # -- payments outbox ---------------------------------------------------------------------

    def _pay_keys(self, account: str) -> dict[str, str]:
        return {"payments": self._k("pay"), "ordinal": self._k("pay", "ordinal"),
                "account": self._k("pay", "account", account), "heads": self._k("pay", "heads"),
                "due": self._k("pay", "due"), "queued": self._k("pay", "queued"),
                "counts": self._k("pay", "counts"), "claims": self._k("pay", "claims"),
                "by_token": self._k("pay", "by-token"), "failed": self._k("pay", "failed")}

    async def take_payment(self, token_id: str, build: Callable[[Token | None, list[Payment]], Payment],
                           idem: IdempotencyKey | None = None) -> tuple[Payment, bool]:
        """Write the payment ``build`` makes of the token and its earlier payments as committed,
        with its event; a retried request answers with its first payment before ``build`` is
        asked again. The payment is written only if the token and its payments are still as
        ``build`` saw them (another replica may have changed them meanwhile): the read and the
        write are one step, as on SQLite."""
        for _ in range(core.MAX_ATTEMPTS):
            if idem is not None:
                seen = await self.redis.get(self._idem_key(idem))
                if seen is not None:
                    return codec.from_row(Payment, self._answer_of(idem, seen)), True
            home = await self._home(token_id)
            tokens_key = self._k("q", *home, "tokens") if home is not None else self._k("q", "-", "tokens")
            raw = await self.redis.hget(tokens_key, token_id)
            count, paid = await self.redis.hmget(self._k("pay", "by-token"), [f"{token_id}#n", token_id])
            found = await self.redis.hmget(self._k("pay"), paid.split()) if paid else []
            earlier = [codec.from_row(Payment, json.loads(p)) for p in found if p is not None]
            payment = build(codec.from_row(Token, json.loads(raw)) if raw is not None else None, earlier)
            row = codec.to_row(payment)
            row.pop("ordinal")
            record = codec.payment_record(payment, "payment_queued")
            event = {**record, "data": None}
            kind, answer = await self._run(
                lua.ADD_PAYMENT,
                {**self._pay_keys(payment.account), **self._log_keys(payment.day),
                 "idem": self._idem_key(idem), "token_queue": tokens_key},
                {"payment": codec.dumps(row), "id": payment.id, "token_id": payment.token_id,
                 "created_at": repr(float(payment.created_at)), "token": raw or "",
                 "paid": int(count or 0), "list_limit": EARLIER_PAYMENTS_READ,
                 "event": codec.dumps(event), "fingerprint": idem.fingerprint if idem else "",
                 "idem_ttl": IDEMPOTENCY_TTL_S, **self._log_args([record])})
            if kind == "idem":
                return codec.from_row(Payment, self._answer_of(idem, answer)), True
            if kind != "stale":
                _, _, stored = answer.partition("\n")
                return codec.from_row(Payment, json.loads(stored)), False
        raise StoreUnavailable(f"token {token_id} keeps changing; retry")

    async def get_payment(self, payment_id: str) -> Payment | None:
        raw = await self.redis.hget(self._k("pay"), payment_id)
        return codec.from_row(Payment, json.loads(raw)) if raw is not None else None

    async def claim_payments(self, worker: str, now: float, lease_s: float, limit: int) -> list[Payment]:
        """Queued payments free to forward: the oldest of each account, not leased by another
        worker and not waiting for a retry. Claims them for ``lease_s`` seconds.

        A payment whose earlier claim lapsed unsettled (its replica died mid-post) comes back
        marked as attempted, so the gateway asks billing whether it landed before posting."""
        found = await self._run(lua.CLAIM_PAYMENTS, self._pay_keys("-"),
                                {"now": repr(float(now)), "lease_end": repr(float(now + lease_s)),
                                 "limit": limit, "worker": worker})
        claimed = []
        for raw, before in zip(found[::2], found[1::2]):
            payment = codec.from_row(Payment, json.loads(raw))
            if before:
                payment = replace(payment, attempts=max(payment.attempts, 1))
            claimed.append(payment)
        return claimed

    async def _rewrite_payment(self, payment_id: str, change: Callable[[Payment], Payment],
                               kind: str | None, actor: str | None, retry_at: float | None) -> Payment:
        """The payment as ``change`` makes it of the stored one, written (with its event, if
        ``kind``) only if it is still as read; unclaimed, not to be tried before ``retry_at``."""
        for _ in range(core.MAX_ATTEMPTS):
            raw = await self.redis.hget(self._k("pay"), payment_id)
            if raw is None:
                raise KeyError(payment_id)
            current = codec.from_row(Payment, json.loads(raw))
            payment = change(current)
            records = [codec.payment_record(payment, kind, actor)] if kind is not None else []
            event = codec.dumps(records[0]) if records else ""
            answer, _ = await self._run(
                lua.SETTLE_PAYMENT, {**self._pay_keys(payment.account), **self._log_keys(payment.day)},
                {"id": payment_id, "expected": raw, "new": codec.dumps(codec.to_row(payment)),
                 "old_status": current.status.value, "new_status": payment.status.value,
                 "ordinal": payment.ordinal, "created_at": repr(float(payment.created_at)),
                 "due": repr(float(retry_at)) if retry_at is not None else "0", "event": event,
                 **self._log_args(records)})
            if answer != "stale":
                return payment
        raise StoreUnavailable(f"payment {payment_id} keeps changing; retry")

    async def failed_payments(self, limit: int = 500) -> list[Payment]:
        ids = await self.redis.zrange(self._k("pay", "failed"), 0, limit - 1)
        found = await self.redis.hmget(self._k("pay"), ids) if ids else []
        return [codec.from_row(Payment, json.loads(raw)) for raw in found if raw is not None]

    async def outbox_stats(self, now: float) -> OutboxStats:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._k("pay", "counts"))
            pipe.zrange(self._k("pay", "queued"), 0, 0, withscores=True)
            counts, oldest = await pipe.execute()
        return OutboxStats(int(counts.get("queued", 0)), int(counts.get("posted", 0)),
                           int(counts.get("failed", 0)), now - oldest[0][1] if oldest else None)

    # -- webhooks ----------------------------------------------------------------------------

    async def add_notice(self, notice: Notice) -> None:
        await self._run(lua.ADD_NOTICE, {"notices": self._k("notices")},
                        {"notices": [_notice_json(notice)], "notices_keep_s": NOTICE_KEEP_S})

    async def notices_after(self, cursor: str, limit: int) -> list[Notice]:
        found = await self.redis.xrange(self._k("notices"), f"({cursor}" if cursor else "-", "+", count=limit)
        notices = []
        for entry_id, fields in found:
            raw = json.loads(fields["n"])
            notices.append(Notice(raw["id"], raw["type"], raw["at"], raw["data"], entry_id))
        return notices

    async def notice_cursor(self) -> str:
        newest = await self.redis.xrevrange(self._k("notices"), "+", "-", count=1)
        return newest[0][0] if newest else "0-0"

    async def webhooks(self) -> list[Webhook]:
        hooks = [webhook_from_record(json.loads(raw)) for raw in await self.redis.hvals(self._k("webhooks"))]
        return sorted(hooks, key=lambda h: (h.created_at, h.id))

    async def save_webhook(self, hook: Webhook) -> bool:
        return bool(await self._run(lua.SAVE_WEBHOOK, {"webhooks": self._k("webhooks")},
                                    {"id": hook.id, "version": hook.version,
                                     "record": codec.dumps(webhook_record(hook))}))

    async def remove_webhook(self, hook_id: str) -> bool:
        return bool(await self.redis.hdel(self._k("webhooks"), hook_id))

    async def put_sms_request(self, request: SmsRequest) -> None:
        await self._run(lua.PUT_SMS, {"sms": self._k("sms")},
                        {"id": request.token_id, "record": codec.dumps(codec.to_row(request))})

    async def sms_request(self, token_id: str) -> SmsRequest | None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(self._k("sms"), token_id)
            pipe.hget(self._k("sms", "near"), token_id)
            raw, near = await pipe.execute()
        return _sms_request(raw, near) if raw is not None else None

    async def sms_requests(self) -> list[SmsRequest]:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._k("sms"))
            pipe.hgetall(self._k("sms", "near"))
            raws, near = await pipe.execute()
        found = [_sms_request(raw, near.get(token_id)) for token_id, raw in raws.items()]
        return sorted(found, key=lambda r: r.created_at)

    async def mark_sms_near(self, token_id: str, at: float, notice: Notice) -> bool:
        return bool(await self._run(
            lua.MARK_SMS_NEAR, {"sms": self._k("sms"), "sms_near": self._k("sms", "near"),
                                "notices": self._k("notices")},
            {"id": token_id, "at": repr(float(at)), "notices_keep_s": NOTICE_KEEP_S,
             "notices": [_notice_json(notice)]}))

    async def forget_sms_requests(self, token_ids: Iterable[str]) -> int:
        ids = list(token_ids)
        if not ids:
            return 0
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._k("sms"), *ids)
            pipe.hdel(self._k("sms", "near"), *ids)
            gone, _ = await pipe.execute()
        return int(gone)

    # -- keys ------------------------------------------------------------------------------

    async def add_key(self, key_hash: str, role: str, counter: str | None, label: str, now: float) -> KeyRecord:
        record = KeyRecord(id="k" + secrets.token_hex(4), role=role, counter=counter, label=label,
                           created_at=now)
        added = await self._run(lua.ADD_KEY, self._key_keys(),
                                {"hash": key_hash, "id": record.id, "record": codec.dumps(codec.to_row(record))})
        if not added:
            raise ValueError("an API key with this hash already exists")
        return record

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        """The live (not revoked) key with this hash: one lookup, as every request asks it."""
        raw = await self.redis.hget(self._k("keys", "by_hash"), key_hash)
        if raw is None:
            return None
        record = KeyRecord(**json.loads(raw))
        return record if record.revoked_at is None else None

    async def revoke_key(self, key_id: str, now: float) -> bool:
        for _ in range(core.MAX_ATTEMPTS):
            key_hash = await self.redis.hget(self._k("keys", "by_id"), key_id)
            raw = await self.redis.hget(self._k("keys", "by_hash"), key_hash) if key_hash else None
            if raw is None:
                return False
            record = KeyRecord(**json.loads(raw))
            if record.revoked_at is not None:
                return False
            revoked = codec.dumps(codec.to_row(replace(record, revoked_at=now)))
            if await self._run(lua.REPLACE_KEY, self._key_keys(),
                               {"hash": key_hash, "expected": raw, "record": revoked}):
                return True
        raise StoreUnavailable(f"key {key_id} keeps changing; retry")

    def _key_keys(self) -> dict[str, str]:
        return {"by_hash": self._k("keys", "by_hash"), "by_id": self._k("keys", "by_id")}

    async def list_keys(self) -> list[KeyRecord]:
        records = [KeyRecord(**json.loads(raw)) for raw in await self.redis.hvals(self._k("keys", "by_hash"))]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    # -- the event log and live fan-out ------------------------------------------------------

    async def server_secret(self) -> bytes:
        """One key every replica reads; the first replica to ask makes it (and, behind
        Sentinels, waits until a replica has it: phones' links must outlive a failover)."""
        key = self._k("secret")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(key, secrets.token_hex(32), nx=True)
            if self.replicas_ack:
                pipe.wait(self.replicas_ack, self._ack_timeout_ms)
            pipe.get(key)
            found = await pipe.execute()
        return bytes.fromhex(found[-1])

    async def last_seq(self) -> int:
        """The newest event this replica's listeners have been given, once they have caught up
        with Redis: a hub primed with it gets every later change exactly once, in order."""
        target = int(await self.redis.get(self._seq_key) or 0)
        async with self._progress:
            try:
                await asyncio.wait_for(self._progress.wait_for(lambda: self._delivered >= target), 5.0)
            except TimeoutError:
                log.warning("event follower is behind (at %d of %d)", self._delivered, target)
        return self._delivered

    async def _follow(self) -> None:
        """Follow the shared event stream and hand each committed change to the listeners, in
        sequence order, whichever replica made it. Reconnects by itself after Redis goes away."""
        assert self._follower_redis is not None
        pause = 0.05
        lost = False
        me = asyncio.current_task()
        while not self._closing and not (me is not None and me.cancelling()):
            try:
                if lost:
                    await self._recover()
                found = await self._follower_redis.xread(
                    {self._events_key: f"{self._read_to}-0"}, count=1000, block=self._block_ms)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self._closing or (me is not None and me.cancelling()):
                    return   # the client may turn a cancelled read into an error of its own
                if not lost:
                    log.warning("lost Redis at %s (%s); reconnecting", self.address, exc)
                lost, self.following = True, False
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)
                continue
            if lost:
                log.warning("Redis at %s is back; following events from %d", self.address,
                            self._read_to)
            lost, pause, self.following = False, 0.05, True
            for _stream, entries in _stream_entries(found):
                await self._dispatch(entries)
            async with self._progress:
                self._progress.notify_all()

    async def _recover(self) -> None:
        """After a reconnect: if Redis came back with less than we had seen (it restarted
        without persistence, or lost its last second), keep the sequence moving forward and
        forget what this replica cached, so nothing stale is used again."""
        assert self._follower_redis is not None
        current = int(await self._follower_redis.get(self._seq_key) or 0)
        if current < self._read_to:
            log.error("Redis has events only up to %d, but %d were seen: it lost data on restart "
                      "(see docs/replicas.md, Redis persistence). Continuing from %d.",
                      current, self._read_to, self._read_to)
            await self._run(lua.RAISE_SEQ, {"seq": self._seq_key}, {"floor": self._read_to},
                            follower=True)
            self._cache.clear()
            self._unapplied.clear()

    async def _dispatch(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        """Each commit goes out as one Committed, whichever replica made it (the entry with
        ``v`` ends a commit), with the hall after it as this replica's copy shows it."""
        for entry_id, fields in entries:
            seq = int(entry_id.split("-")[0])
            if seq > self._read_to + 1:
                log.warning("events %d to %d were not heard (the stream keeps %d); cached queues "
                            "are read again", self._read_to + 1, seq - 1, self.stream_keep)
                self._cache.clear()
                self._unapplied.clear()
                self._heard = []
            self._read_to = seq
            if "e" not in fields:         # a payment's event: nothing for the boards
                self._delivered = seq
                continue
            record = json.loads(fields["e"])
            self._heard.append((seq, codec.event_from_record(record)))
            if "v" not in fields:
                continue
            events, self._heard = self._heard, []
            key = (record["substation"], record["day"])
            hall = await self._hall_after(key, int(fields["v"]), events)
            if hall is not None:
                self._notify(Committed(*key, events, hall))
            self._delivered = seq

    def _refresh(self, key: core.QueueKey, cached: core.CachedQueue) -> None:
        """Apply the commits heard while the drainer held the copy: a batch run on a copy that
        lags the other replicas is refused as stale and runs again."""
        for base, events in self._unapplied.pop(key, ()):
            self._apply(key, cached, base, events)

    def _apply(self, key: core.QueueKey, cached: core.CachedQueue, base: int,
               events: list[tuple[int, DomainEvent]]) -> None:
        """A commit another replica made, applied to this copy when it is the copy the commit
        ran on (a copy behind or ahead of it is left as it is)."""
        if cached.version != base:
            return
        for _, event in events:
            cached.queue.catch_up(event)
            if event.token is not None:
                self._cache.note_home(event.token.id, key)
        cached.version = events[-1][0]

    async def _hall_after(self, key: core.QueueKey, base: int,
                          events: list[tuple[int, DomainEvent]]) -> HallView | None:
        """The hall after a commit. When this replica's copy of the queue is the one the commit
        ran on, the commit is applied to it (so the next change here commits at once instead of
        being refused as stale), or, while the queue's drainer holds the copy, before its next
        batch; a copy that holds the commit gives the hall; else the hall is read through the
        drainer, which never shows a change not yet committed."""
        cached = self._cache.get(key)
        last = events[-1][0]
        if cached is not None and key in self._drainers:
            heard = self._unapplied.setdefault(key, [])
            heard.append((base, events))
            del heard[:-UNAPPLIED_KEEP]
        elif cached is not None:
            self._apply(key, cached, base, events)
            if cached.version >= last:
                return cached.queue.hall_view(self.hall_head)
        try:   # the copy as of this commit will do: the drainer applies it before the read
            return await self._queued(key, lambda q: q.hall_view(self.hall_head), at_least=last)
        except (StoreUnavailable, RedisError) as exc:
            log.warning("the hall of %s on %s after event %d could not be read: %s", *key, last, exc)
            return None


def _stream_entries(found: Any) -> list[tuple[str, list]]:
    """XREAD's answer as (stream, entries) pairs, whichever reply shape the client gives."""
    if not found:
        return []
    if isinstance(found, dict):
        return [(name, entries[0] if entries and isinstance(entries[0], list) and len(entries) == 1
                 and entries[0] and isinstance(entries[0][0], (list, tuple)) else entries)
                for name, entries in found.items()]
    return [(name, entries) for name, entries in found]
