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
* Each event takes the next global sequence number (``INCR`` inside the script) and is
  appended to one Redis stream (``XADD`` with that number as its id), which is both the event
  log and the feed of every replica's live boards: each replica follows the stream and hands
  the changes to its listeners in sequence order, whichever replica made them.

Payments (the outbox), API keys and the turned-away count are small scripts of their own.
Nothing here is acknowledged before Redis has applied it; whether it also survives a restart of
Redis depends on Redis's persistence (AOF ``appendfsync always`` or ``everysec``; see README).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import random
import secrets
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..outbox import OutboxStats, Payment, PaymentStatus
from ..queueing import (
    CounterView,
    Estimate,
    DomainEvent as Event,
    HallView,
    Lease,
    QueuePolicy,
    ServiceView,
    SlotPlan,
    SubstationQueue,
    Token,
    UnknownToken,
)
from ..redact import redacted
from .base import (
    EARLIER_PAYMENTS_READ,
    IDEMPOTENCY_TTL_S,
    Applied,
    CommitListener,
    Committed,
    IdempotencyConflict,
    IdempotencyKey,
    KeyRecord,
    QueueChange,
    QueueSnapshot,
    StoreUnavailable,
    TokenChange,
)
from .sqlite import from_row, to_row

log = logging.getLogger(__name__)

COMMIT_MEMO_TTL_S = 600              # a commit retried after a lost reply answers from this
MAX_ATTEMPTS = 200                   # conflicting replicas retry; past this, the store is "busy"
NO_RESULT = object()

# -- Lua scripts -------------------------------------------------------------------------------

# Shared head of every writing script: a commit retried after its reply was lost (the client
# library resends on a dropped connection) answers from its memo instead of applying twice, and
# the global sequence never falls below what this replica has already seen (a Redis that lost
# data on restart must not hand out sequence numbers boards already hold).
_MEMO_AND_FLOOR = """
local memo = redis.call('GET', KEYS[5])
if memo then return {'done', memo} end
local floor = tonumber(ARGV[4])
if tonumber(redis.call('GET', KEYS[2]) or '0') < floor then redis.call('SET', KEYS[2], floor) end
"""

# Reads a queue for READ_QUEUE and for a stale commit (which answers with what changed, so the
# replica runs its batch again at once, without another round trip). ``since`` '' reads it all.
_READ = """
local function read_queue(kversion, kchanged, ktokens, kseqs, kcounters, kleases, ksub, since, ids)
  local tokens = {}
  if since == '' then
    tokens = redis.call('HGETALL', ktokens)
  else
    local changed = redis.call('ZRANGEBYSCORE', kchanged, '(' .. since, '+inf')
    for _, id in ipairs(ids) do changed[#changed + 1] = id end
    for _, id in ipairs(changed) do
      tokens[#tokens + 1] = id
      tokens[#tokens + 1] = redis.call('HGET', ktokens, id) or ''
    end
  end
  return {redis.call('GET', kversion) or '0', tokens, redis.call('HGETALL', kseqs),
          redis.call('HGETALL', kcounters), redis.call('HGETALL', kleases), redis.call('HGETALL', ksub)}
end
"""

# A batch of changes to one queue, run in Python against the version ARGV[1]: refused whole
# ('stale', and the queue's changes since) if the queue has moved on, or ('idem', j) if the
# j-th idempotency key was used before.
# KEYS: 1 version, 2 seq, 3 events, 4 tokens changed (by version), 5 memo, 6 tokens, 7 homes,
#       8 seqs, 9 counters, 10 leases, 11 substation settings, 12 waiting, 13 the day's list of
#       event seqs, 14.. idempotency keys
# ARGV: 1 expected version, 2 idempotency ttl, 3 (unused), 4 seq floor, 5 events, 6 ops,
#       7 keys; then per event (event json, hall json or ''), per op (key index, field, value),
#       per key (which key, fingerprint, index of its answer's event or 0, '1' to write it),
#       then the ids of the tokens the batch touched (read again when stale)
COMMIT_QUEUE = _MEMO_AND_FLOOR + _READ + """
local n, nops, nkeys = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local keys_at = 8 + 2 * n + 3 * nops
local version = tonumber(redis.call('GET', KEYS[1]) or '0')
if version ~= tonumber(ARGV[1]) then
  local touched = {}
  for k = keys_at + 4 * nkeys, #ARGV do touched[#touched + 1] = ARGV[k] end
  return {'stale', read_queue(KEYS[1], KEYS[4], KEYS[6], KEYS[8], KEYS[9], KEYS[10], KEYS[11],
                              ARGV[1], touched)}
end
for j = 0, nkeys - 1 do
  local seen = redis.call('GET', KEYS[13 + tonumber(ARGV[keys_at + 4 * j])])
  if seen then return {'idem', tostring(j), seen} end
end
local i = 8
local seqs = {}
for _ = 1, n do
  local seq = redis.call('INCR', KEYS[2])
  if ARGV[i + 1] ~= '' then
    redis.call('XADD', KEYS[3], seq .. '-0', 'e', ARGV[i], 'h', ARGV[i + 1])
  else
    redis.call('XADD', KEYS[3], seq .. '-0', 'e', ARGV[i])
  end
  redis.call('RPUSH', KEYS[13], seq)
  seqs[#seqs + 1] = seq
  i = i + 2
end
local last = ''
if n > 0 then
  last = tostring(seqs[n])
  redis.call('SET', KEYS[1], last)
end
for _ = 1, nops do
  local k = tonumber(ARGV[i])
  redis.call('HSET', KEYS[k], ARGV[i + 1], ARGV[i + 2])
  if k == 6 then redis.call('ZADD', KEYS[4], last, ARGV[i + 1]) end
  i = i + 3
end
for j = 0, nkeys - 1 do
  local at = keys_at + 4 * j
  if ARGV[at + 3] == '1' then
    local e = tonumber(ARGV[at + 2])
    local answer = ''
    if e > 0 then answer = tostring(seqs[e]) end
    redis.call('SET', KEYS[13 + tonumber(ARGV[at])], answer .. '\\n' .. ARGV[at + 1], 'EX', ARGV[2])
  end
end
local answer = table.concat(seqs, ' ')
redis.call('SET', KEYS[5], answer, 'EX', 600)
return {'ok', answer}
"""

# A queue as committed, in one atomic read: everything, or (ARGV[1] a version) only the tokens
# changed since that version plus the ones named, '' for a token that does not exist.
# KEYS: 1 version, 2 tokens changed, 3 tokens, 4 seqs, 5 counters, 6 leases, 7 substation settings
READ_QUEUE = _READ + """
local ids = {}
for k = 2, #ARGV do ids[#ids + 1] = ARGV[k] end
return read_queue(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], ARGV[1], ids)
"""

# KEYS: 1 payments, 2 seq, 3 events, 4 idempotency, 5 memo, 6 ordinal, 7 account's queue,
#       8 heads, 9 due, 10 queued by age, 11 counts, 12 the token's queue (a guard),
#       13 the day's list of event seqs, 14 each token's payment count and first ids
# ARGV: 1 payment json without ordinal, 2 fingerprint, 3 ttl, 4 seq floor, 5 payment id,
#       6 created_at, 7 event json up to its data, 8 token id ('' for no guard), 9 the token's
#       json the payment was made from, 10 the payment's token id, 11 how many payments the
#       token had when the payment was made (checked with the guard), 12 how many ids to list
ADD_PAYMENT = _MEMO_AND_FLOOR + """
if ARGV[2] ~= '' then
  local seen = redis.call('GET', KEYS[4])
  if seen then return {'idem', seen} end
end
if ARGV[8] ~= '' and redis.call('HGET', KEYS[12], ARGV[8]) ~= ARGV[9] then return {'stale', ''} end
local paid = tonumber(redis.call('HGET', KEYS[14], ARGV[10] .. '#n') or '0')
if ARGV[8] ~= '' and paid ~= tonumber(ARGV[11]) then return {'stale', ''} end
local ordinal = redis.call('INCR', KEYS[6])
local stored = string.sub(ARGV[1], 1, -2) .. ', "ordinal": ' .. ordinal .. '}'
local id = ARGV[5]
redis.call('HSET', KEYS[1], id, stored)
redis.call('HSET', KEYS[14], ARGV[10] .. '#n', paid + 1)
if paid == 0 then redis.call('HSET', KEYS[14], ARGV[10], id)
elseif paid < tonumber(ARGV[12]) then
  redis.call('HSET', KEYS[14], ARGV[10], redis.call('HGET', KEYS[14], ARGV[10]) .. ' ' .. id)
end
redis.call('ZADD', KEYS[7], ordinal, id)
local head = redis.call('ZRANGE', KEYS[7], 0, 0)
if head[1] == id then
  redis.call('ZADD', KEYS[8], ordinal, id)
  redis.call('ZADD', KEYS[9], 0, id)
end
redis.call('ZADD', KEYS[10], ARGV[6], id)
redis.call('HINCRBY', KEYS[11], 'queued', 1)
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], seq .. '-0', 'e', ARGV[7] .. stored .. '}')
redis.call('RPUSH', KEYS[13], seq)
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[4], seq .. '\\n' .. ARGV[2], 'EX', ARGV[3])
end
local answer = seq .. '\\n' .. stored
redis.call('SET', KEYS[5], answer, 'EX', 600)
return {'ok', answer}
"""

# The oldest queued payment of each account (a "head") that is due: no retry pending and no
# live lease. Claims lease them until ARGV[2]; a claim found still held by a worker whose lease
# lapsed (it died mid-post) is reported, so the new worker asks billing before posting again.
# KEYS: 1 due, 2 heads, 3 claims, 4 payments; ARGV: 1 now, 2 lease end, 3 limit, 4 worker
CLAIM_PAYMENTS = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local items = {}
for _, id in ipairs(due) do
  items[#items + 1] = {id, tonumber(redis.call('ZSCORE', KEYS[2], id) or '0')}
end
table.sort(items, function(a, b) return a[2] < b[2] end)
local out = {}
for k = 1, math.min(#items, tonumber(ARGV[3])) do
  local id = items[k][1]
  local before = redis.call('HGET', KEYS[3], id)
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  redis.call('HSET', KEYS[3], id, ARGV[4])
  out[#out + 1] = redis.call('HGET', KEYS[4], id)
  out[#out + 1] = before or ''
end
return out
"""

# KEYS: 1 payments, 2 seq, 3 events, 4 (unused), 5 memo, 6 account's queue, 7 heads, 8 due,
#       9 queued by age, 10 counts, 11 claims, 12 the day's list of event seqs
# ARGV: 1 expected json, 2 new json, 3 (unused), 4 seq floor, 5 id, 6 old status,
#       7 new status, 8 due score when queued, 9 event json ('' for none)
SETTLE_PAYMENT = _MEMO_AND_FLOOR + """
local id = ARGV[5]
if redis.call('HGET', KEYS[1], id) ~= ARGV[1] then return {'stale', ''} end
redis.call('HSET', KEYS[1], id, ARGV[2])
redis.call('HDEL', KEYS[11], id)
if ARGV[7] == 'queued' then
  if redis.call('ZSCORE', KEYS[7], id) then redis.call('ZADD', KEYS[8], ARGV[8], id) end
elseif ARGV[6] == 'queued' then
  redis.call('ZREM', KEYS[6], id)
  redis.call('ZREM', KEYS[7], id)
  redis.call('ZREM', KEYS[8], id)
  redis.call('ZREM', KEYS[9], id)
  local next = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
  if next[1] then
    redis.call('ZADD', KEYS[7], next[2], next[1])
    redis.call('ZADD', KEYS[8], 0, next[1])
  end
end
if ARGV[6] ~= ARGV[7] then
  redis.call('HINCRBY', KEYS[10], ARGV[6], -1)
  redis.call('HINCRBY', KEYS[10], ARGV[7], 1)
end
local answer = ''
if ARGV[9] ~= '' then
  answer = tostring(redis.call('INCR', KEYS[2]))
  redis.call('XADD', KEYS[3], answer .. '-0', 'e', ARGV[9])
  redis.call('RPUSH', KEYS[12], answer)
end
redis.call('SET', KEYS[5], answer, 'EX', 600)
return {'ok', answer}
"""

# KEYS: 1 by hash, 2 by id; ARGV: 1 hash, 2 id, 3 record json
ADD_KEY = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# KEYS: 1 by hash, 2 by id; ARGV: 1 id, 2 revoked_at
REVOKE_KEY = """
local hash = redis.call('HGET', KEYS[2], ARGV[1])
if not hash then return 0 end
local record = redis.call('HGET', KEYS[1], hash)
if not record then return 0 end
local revoked, n = string.gsub(record, '"revoked_at": null', '"revoked_at": ' .. ARGV[2])
if n == 0 then return 0 end
redis.call('HSET', KEYS[1], hash, revoked)
return 1
"""

# KEYS: 1 the day's list, 2 idempotency marker, 3 the day's counts by substation
# ARGV: 1 record json, 2 '1' when keyed, 3 ttl, 4 substation
TURNED_AWAY = """
if ARGV[2] == '1' and not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
return 1
"""

# KEYS: 1 seq; ARGV: 1 floor
RAISE_SEQ = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return redis.call('GET', KEYS[1])
"""


# -- JSON forms --------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    """Default separators on purpose: REVOKE_KEY matches ``"revoked_at": null`` textually."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _estimate_json(e: Estimate) -> list:
    return [e.p50_s, e.p90_s, e.ahead, e.counters]


def _estimate(raw: list) -> Estimate:
    return Estimate(raw[0], raw[1], raw[2], raw[3])


def hall_to_json(hall: HallView) -> str:
    """A hall view as JSON, so every replica's boards get the hall the committing replica saw."""
    return _dumps({
        "substation": hall.substation,
        "day": hall.day,
        "counters": [[c.id, c.open, list(c.services), to_row(c.token) if c.token else None]
                     for c in hall.counters],
        "services": [[s.id, s.waiting, s.open_counters, s.mean_service_s, _estimate_json(s.estimate)]
                     for s in hall.services],
        "waiting_total": hall.waiting_total,
        "waiting_head": [[to_row(t), _estimate_json(e)] for t, e in hall.waiting_head],
        "issued_today": hall.issued_today,
        "admission": hall.admission,
        "daily_cap": hall.daily_cap,
    })


def hall_from_json(text: str) -> HallView:
    raw = json.loads(text)
    return HallView(
        substation=raw["substation"],
        day=raw["day"],
        counters=tuple(CounterView(c[0], c[1], tuple(c[2]), from_row(Token, c[3]) if c[3] else None)
                       for c in raw["counters"]),
        services=tuple(ServiceView(s[0], s[1], s[2], s[3], _estimate(s[4])) for s in raw["services"]),
        waiting_total=raw["waiting_total"],
        waiting_head=tuple((from_row(Token, t), _estimate(e)) for t, e in raw["waiting_head"]),
        issued_today=raw["issued_today"],
        admission=raw["admission"],
        daily_cap=raw["daily_cap"],
    )


def _event_record(substation: str, day: str, event: Event) -> dict[str, Any]:
    token = event.token
    data = to_row(token) if token is not None else {"counter": event.counter, **(event.detail or {})}
    return {"at": event.at, "substation": substation, "day": day,
            "token_id": token.id if token else None, "kind": event.kind, "actor": event.actor,
            "counter": event.counter, "data": data}


def _event_from_record(record: Mapping[str, Any]) -> Event:
    data = record["data"]
    if record["token_id"] is not None and "number" in data:
        return Event(record["kind"], from_row(Token, data), record["at"], record["actor"],
                     record["counter"])
    detail = {k: v for k, v in data.items() if k != "counter"} or None
    return Event(record["kind"], None, record["at"], record["actor"], record["counter"], detail)


@dataclass
class _Cached:
    queue: SubstationQueue
    version: int


@dataclass(eq=False)
class _Job:
    """One change (or read) of a queue, waiting for its queue's drainer."""

    run: Callable[[SubstationQueue], Any]
    idem: IdempotencyKey | None
    future: asyncio.Future


def _settle(job: _Job, result: Any = None, exc: BaseException | None = None) -> None:
    if job.future.done():            # its caller gave up waiting
        return
    if exc is not None:
        job.future.set_exception(exc)
    else:
        job.future.set_result(result)


def _touched(q: SubstationQueue) -> set[str]:
    """Tokens a batch changed on this copy without committing: to be read again."""
    return {event.token.id for event in q.pending if event.token is not None}


# -- the store -----------------------------------------------------------------------------------


class RedisStore:
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
    ) -> None:
        self.url = url
        self.policy = policy
        self.layouts = layouts or {}
        self.prefix = prefix
        self.hall_head = hall_head
        self._cache_size = cache_size
        self._block_ms = block_ms
        self._redis: Redis | None = None
        self._follower_redis: Redis | None = None
        self._follower: asyncio.Task[None] | None = None
        self._listeners: list[CommitListener] = []
        self._queues: OrderedDict[tuple[str, str], _Cached] = OrderedDict()
        self._jobs: dict[tuple[str, str], list[_Job]] = {}
        self._drainers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._token_home: dict[str, tuple[str, str]] = {}
        self._delivered = 0            # every event up to this seq has reached the listeners
        self._progress = asyncio.Condition()
        self.following = False         # the stream follower is connected
        self._closing = False
        self.conflicts = 0             # changes run again because another replica came first
        self.commits = 0
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
            self._delivered = int(await self._redis.get(self._seq_key) or 0)
        except RedisError as exc:
            await self._redis.aclose()
            self._redis = None
            raise StoreUnavailable(f"Redis at {redacted(self.url)} does not answer: {exc}") from exc
        r = self._redis
        self._commit_queue = r.register_script(COMMIT_QUEUE)
        self._read_script = r.register_script(READ_QUEUE)
        self._add_payment = r.register_script(ADD_PAYMENT)
        self._claim_payments = r.register_script(CLAIM_PAYMENTS)
        self._settle_payment = r.register_script(SETTLE_PAYMENT)
        self._add_key = r.register_script(ADD_KEY)
        self._revoke_key = r.register_script(REVOKE_KEY)
        self._turned_away = r.register_script(TURNED_AWAY)
        self._raise_seq = r.register_script(RAISE_SEQ)
        # The follower blocks on XREAD, so it has its own connection with a longer read timeout.
        self._follower_redis = self._client(socket_timeout=self._block_ms / 1000 + 5.0)
        self._follower = asyncio.create_task(self._follow(), name="redis-event-follower")

    def _client(self, socket_timeout: float) -> Redis:
        return Redis.from_url(
            self.url, decode_responses=True, socket_timeout=socket_timeout,
            socket_connect_timeout=2.0, health_check_interval=10,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionResetError, OSError],
        )

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
        drainers = list(self._drainers.values())
        for task in drainers:          # their waiting callers get StoreUnavailable
            task.cancel()
        if drainers:
            await asyncio.wait(drainers, timeout=5.0)
        for client in (self._follower_redis, self._redis):
            if client is not None:
                await client.aclose()
        self._redis = self._follower_redis = None

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("the store is not open")
        return self._redis

    # -- queue changes ---------------------------------------------------------------------

    async def mutate_queue(
        self, substation: str, day: str, change: QueueChange, idem: IdempotencyKey | None = None
    ) -> Applied:
        return await self._mutate((substation, day), change, idem)

    async def mutate_token(
        self, token_id: str, change: TokenChange, idem: IdempotencyKey | None = None
    ) -> Applied:
        home = await self._home(token_id)
        if home is None:
            replay = await self._replay(idem)
            if replay is not None:
                return replay
            raise UnknownToken(token_id)
        return await self._mutate(home, lambda q: change(q, q.get(token_id)), idem)

    async def _mutate(self, key: tuple[str, str], change: QueueChange,
                      idem: IdempotencyKey | None) -> Applied:
        def run(q: SubstationQueue) -> Applied:
            result = change(q)
            return Applied(result, estimate=q.estimate_for(result) if result is not None else None)

        return await self._queued(key, run, idem)

    async def _queued(self, key: tuple[str, str], run: Callable[[SubstationQueue], Any],
                      idem: IdempotencyKey | None = None) -> Any:
        """Run ``run`` on the queue's committed state, with whatever else waits for that queue.

        One drainer task per queue takes all waiting jobs, runs them one after the other on this
        replica's copy and commits them in one script call (group commit: one round trip and one
        hall for many changes). A caller that gives up does not stop its job half-way."""
        job = _Job(run, idem, asyncio.get_running_loop().create_future())
        self._jobs.setdefault(key, []).append(job)
        if key not in self._drainers:
            self._drainers[key] = asyncio.create_task(self._drain(key), name=f"redis-queue-{key[0]}")
        return await job.future

    async def _drain(self, key: tuple[str, str]) -> None:
        try:
            while self._jobs.get(key):
                batch = self._jobs.pop(key)
                try:
                    later = await self._run_batch(key, batch)
                except BaseException as exc:
                    self._queues.pop(key, None)
                    failure = exc if isinstance(exc, Exception) else StoreUnavailable("the store is closing")
                    for job in batch:
                        _settle(job, exc=failure)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                if later:
                    self._jobs.setdefault(key, [])[:0] = later
        finally:
            self._drainers.pop(key, None)

    async def _run_batch(self, key: tuple[str, str], batch: list[_Job]) -> list[_Job]:
        """Run and commit ``batch``; returns the jobs left for the next batch (a second use of
        an idempotency key waits until the first is committed)."""
        recheck: set[str] | None = None      # after a refusal: re-read these and what changed
        for attempt in range(MAX_ATTEMPTS):
            cached = self._queues.get(key)
            if cached is None or recheck is not None:
                cached = await self._read_queue(key, cached, recheck or ())
                recheck = None
            q = cached.queue
            done: list[tuple[_Job, bool, Any, int, int]] = []
            later: list[_Job] = []
            keys_seen: set[tuple[str, str]] = set()
            broken = False
            for job in batch:
                ident = (job.idem.principal, job.idem.key) if job.idem is not None else None
                if ident is not None and ident in keys_seen:
                    later.append(job)
                    continue
                if ident is not None:
                    keys_seen.add(ident)
                start, before = len(q.pending), q.version
                try:
                    value = job.run(q)
                except Exception as exc:
                    if q.version != before:
                        # It changed this copy before failing: answer it, and run the others
                        # again on a copy read afresh.
                        _settle(job, exc=exc)
                        batch = [j for j in batch if j is not job]
                        broken = True
                        break
                    done.append((job, False, exc, start, start))
                else:
                    done.append((job, True, value, start, len(q.pending)))
            if broken:
                recheck = _touched(q)
                if not batch:
                    self._queues.pop(key, None)
                    return []
                continue
            outcome = await self._commit(key, cached, done)
            if isinstance(outcome, _Cached):          # another replica changed the queue first
                await self._backoff(attempt)
                continue
            if isinstance(outcome, tuple):            # its key answered an earlier request
                replayed, seen = outcome
                self._queues.pop(key, None)
                try:
                    _settle(replayed, result=await self._replay_from(replayed.idem, seen, key))
                except Exception as exc:  # noqa: BLE001 - e.g. the key was used for another request
                    _settle(replayed, exc=exc)
                batch = [j for j in batch if j is not replayed]
                if not batch:
                    return later
                continue
            q.drain()
            cached.version = outcome
            self._queues.move_to_end(key)
            for job, ok, value, _, _ in done:
                _settle(job, result=value) if ok else _settle(job, exc=value)
            return later
        raise StoreUnavailable("The queue is changing too fast on other replicas; retry.")

    async def _backoff(self, attempt: int) -> None:
        self.conflicts += 1
        if attempt >= 3:   # a storm of conflicts: spread the contenders out a little
            await asyncio.sleep(random.uniform(0, min(0.02, 0.001 * attempt)))

    async def _commit(self, key: tuple[str, str], cached: _Cached,
                      done: list[tuple[_Job, bool, Any, int, int]]) -> int | tuple[_Job, str] | _Cached:
        """Write the queue's pending events: the new version, (the job whose idempotency key
        was used before, that key's record), or, when another replica changed the queue first,
        the queue as it is now (the script answers with what changed)."""
        substation, day = key
        q = cached.queue
        events = q.pending
        hall = q.hall_view(self.hall_head) if events else None
        argv_events: list[str] = []
        ops: list[tuple[int, str, str]] = []
        sequences = False
        for i, event in enumerate(events):
            record = _event_record(substation, day, event)
            last = i == len(events) - 1
            argv_events += [_dumps(record), hall_to_json(hall) if last else ""]
            token = event.token
            if token is not None:
                ops.append((6, token.id, _dumps(record["data"])))
                ops.append((7, token.id, f"{substation}\t{day}"))
                sequences |= event.kind == "issued"
            elif event.kind in ("counter_opened", "counter_closed"):
                ops.append((9, event.counter, "1" if event.kind == "counter_opened" else "0"))
            elif event.kind == "numbers_leased":
                lease = q.leases[record["data"]["lease"]]
                ops.append((10, lease.id, _dumps([lease.counter, lease.service, lease.letter,
                                                  lease.first_seq, lease.last_seq])))
                sequences = True
            elif event.kind == "slots_published":   # kept beside the substation's settings
                plan = q.slot_plan
                ops.append((11, f"slots:{day}", _dumps(plan.as_dict()) if plan is not None else ""))
            elif event.kind == "admission_changed":
                ops.append((11, "admission", "1" if q.admission else "0"))
                ops.append((11, "daily_cap", "" if q.daily_cap is None else str(q.daily_cap)))
        if sequences:
            ops += [(8, service, str(last)) for service, last in q.last_seq.items()]
        if hall is not None:
            ops.append((12, substation, str(hall.waiting_total)))
        keyed = [(job, ok, start, end) for job, ok, _, start, end in done if job.idem is not None]
        keys = [
            self._k("q", substation, day, "version"), self._seq_key, self._events_key,
            self._k("q", substation, day, "changed"), self._k("commit", uuid.uuid4().hex),
            self._k("q", substation, day, "tokens"), self._k("homes"),
            self._k("q", substation, day, "seqs"), self._k("q", substation, day, "counters"),
            self._k("q", substation, day, "leases"), self._k("sub", substation),
            self._k("waiting", day), self._k("day", day),
            *[self._idem_key(job.idem) for job, _, _, _ in keyed],
        ]
        args: list[Any] = [cached.version, IDEMPOTENCY_TTL_S, "", self._delivered, len(events),
                           len(ops), len(keyed), *argv_events]
        for index, name, value in ops:
            args += [index, name, value]
        for j, (job, ok, start, end) in enumerate(keyed):
            # Its answer is its last event (1-based in this batch); a change that made none
            # (nobody waits) is remembered as such; a refused one is not remembered at all.
            args += [j + 1, job.idem.fingerprint, end if ok and end > start else 0, "1" if ok else "0"]
        args += sorted(_touched(q))
        try:
            reply = await self._commit_queue(keys=keys, args=args)
        except RedisError as exc:
            raise StoreUnavailable(f"Redis did not confirm the change: {exc}") from exc
        kind = reply[0]
        if kind == "stale":
            return self._cache_read(key, cached, reply[1])
        if kind == "idem":
            return keyed[int(reply[1])][0], reply[2]
        self.commits += 1
        seqs = [int(x) for x in reply[1].split()]
        for event in events:
            if event.token is not None:
                self._token_home[event.token.id] = key
        return seqs[-1] if seqs else cached.version

    def _idem_key(self, idem: IdempotencyKey | None) -> str:
        if idem is None:
            return self._k("idem", "-")
        return self._k("idem", idem.principal, idem.key)

    async def _replay(self, idem: IdempotencyKey | None) -> Applied | None:
        if idem is None:
            return None
        seen = await self.redis.get(self._idem_key(idem))
        return await self._replay_from(idem, seen, None) if seen is not None else None

    async def _replay_from(self, idem: IdempotencyKey | None, seen: str,
                           draining: tuple[str, str] | None) -> Applied:
        """The first answer to a retried request. ``draining``: the queue whose drainer asks,
        read directly (asking through the drainer would wait for itself)."""
        data = await self._replay_data(idem, seen)
        if data is NO_RESULT:
            return Applied(None, replayed=True)
        if "number" not in data:   # a change that made no token (a lease, a counter opened)
            return Applied(None, replayed=True, detail=data)
        token = from_row(Token, data)
        if draining is not None:
            cached = self._queues.get(draining) or await self._read_queue(draining, None, ())
            current = cached.queue.tokens.get(token.id)
            return Applied(token, replayed=True,
                           estimate=cached.queue.estimate_for(current) if current else None)
        view = await self.token_view(token.id)
        return Applied(token, replayed=True, estimate=view[1] if view else None)

    async def _replay_data(self, idem: IdempotencyKey | None, seen: str) -> Any:
        assert idem is not None
        seq, _, fingerprint = seen.partition("\n")
        if fingerprint != idem.fingerprint:
            raise IdempotencyConflict(idem.key)
        if not seq:
            return NO_RESULT
        entries = await self.redis.xrange(self._events_key, f"{seq}-0", f"{seq}-0")
        if not entries:
            raise StoreUnavailable(f"event {seq} of an earlier answer is missing from Redis")
        return json.loads(entries[0][1]["e"])["data"]

    # -- reading queues ----------------------------------------------------------------------

    async def _read_queue(self, key: tuple[str, str], base: _Cached | None,
                          recheck: Iterable[str]) -> _Cached:
        """Read a queue in one atomic script: whole, or (given the copy this replica has) only
        the tokens changed since its version plus ``recheck``, the ones a refused batch touched."""
        substation, day = key
        partial = base is not None
        try:
            version, raw_tokens, seqs, counters, leases, settings = await self._read_script(
                keys=[self._k("q", substation, day, "version"), self._k("q", substation, day, "changed"),
                      self._k("q", substation, day, "tokens"), self._k("q", substation, day, "seqs"),
                      self._k("q", substation, day, "counters"), self._k("q", substation, day, "leases"),
                      self._k("sub", substation)],
                args=[str(base.version) if partial else "", *recheck])
        except RedisError as exc:
            raise StoreUnavailable(f"Redis did not answer: {exc}") from exc
        return self._cache_read(key, base if partial else None,
                                [version, raw_tokens, seqs, counters, leases, settings])

    def _cache_read(self, key: tuple[str, str], base: _Cached | None, found: list) -> _Cached:
        """Build and cache the queue READ_QUEUE found (over ``base`` when it read changes only)."""
        substation, day = key
        version, raw_tokens, seqs, counters, leases, settings = found
        tokens: dict[str, Token] = dict(base.queue.tokens) if base is not None else {}
        for token_id, raw in zip(raw_tokens[::2], raw_tokens[1::2]):
            if raw:
                tokens[token_id] = from_row(Token, json.loads(raw))
            else:
                tokens.pop(token_id, None)
        seqs, counters, leases, settings = (dict(zip(x[::2], x[1::2])) for x in (seqs, counters, leases, settings))
        q = SubstationQueue(
            substation, day, self.policy, tokens.values(),
            {service: int(last) for service, last in seqs.items()},
            self.layouts.get(substation, {}),
            [counter for counter, is_open in counters.items() if is_open == "0"],
            admission=settings.get("admission", "1") == "1",
            daily_cap=int(settings["daily_cap"]) if settings.get("daily_cap") else None,
            leases=[Lease(lid, *json.loads(raw)) for lid, raw in leases.items()],
            slot_plan=SlotPlan.from_dict(json.loads(plan)) if (plan := settings.get(f"slots:{day}")) else None,
        )
        cached = _Cached(q, int(version or 0))
        self._queues[key] = cached
        self._queues.move_to_end(key)
        self._token_home.update((t, key) for t in tokens)
        while len(self._queues) > self._cache_size:
            old_key, old = self._queues.popitem(last=False)
            for token_id in old.queue.tokens:
                self._token_home.pop(token_id, None)
        return cached

    async def _home(self, token_id: str) -> tuple[str, str] | None:
        home = self._token_home.get(token_id)
        if home is not None:
            return home
        raw = await self.redis.hget(self._k("homes"), token_id)
        if raw is None:
            return None
        substation, day = raw.split("\t")
        return substation, day

    async def queue_snapshot(self, substation: str, day: str) -> QueueSnapshot:
        return await self._queued((substation, day), lambda q: QueueSnapshot(
            q.at_counters(), q.waiting(), q.estimates(), q.hall_view(self.hall_head)))

    async def read_queue(self, substation: str, day: str, read: Callable[[SubstationQueue], Any]) -> Any:
        return await self._queued((substation, day), read)

    async def token_view(self, token_id: str) -> tuple[Token, Estimate | None] | None:
        home = await self._home(token_id)
        if home is None:
            return None

        def view(q: SubstationQueue) -> tuple[Token, Estimate | None] | None:
            token = q.tokens.get(token_id)
            return (token, q.estimate_for(token)) if token is not None else None

        return await self._queued(home, view)

    async def get_token(self, token_id: str) -> Token | None:
        home = await self._home(token_id)
        if home is None:
            return None
        raw = await self.redis.hget(self._k("q", *home, "tokens"), token_id)
        return from_row(Token, json.loads(raw)) if raw is not None else None

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
        await self._turned_away(
            keys=[self._k("turned", day), marker, self._k("turned_count", day)],
            args=[_dumps(record), "1" if idem else "0", IDEMPOTENCY_TTL_S, substation])

    async def turned_away_count(self, substation: str, day: str) -> int:
        return int(await self.redis.hget(self._k("turned_count", day), substation) or 0)

    # -- what ops read ------------------------------------------------------------------------

    async def day_events(self, day: str, substation: str | None = None) -> list[dict]:
        """One day's events (payments included) and its refusals at the door (kind
        ``turned_away``, ``seq`` None), in time order: what daily reports are made of."""
        seqs = [int(s) for s in await self.redis.lrange(self._k("day", day), 0, -1)]
        events: list[dict] = []
        for start in range(0, len(seqs), 500):
            async with self.redis.pipeline(transaction=False) as pipe:
                for seq in seqs[start:start + 500]:
                    pipe.xrange(self._events_key, f"{seq}-0", f"{seq}-0")
                for entries in await pipe.execute():
                    for entry_id, fields in entries:
                        record = json.loads(fields["e"])
                        if substation is None or record["substation"] == substation:
                            events.append({"seq": int(entry_id.split("-")[0]), **record})
        refused = []
        for raw in await self.redis.lrange(self._k("turned", day), 0, -1):
            row = json.loads(raw)
            if substation is None or row["substation"] == substation:
                refused.append({"seq": None, "at": row["at"], "substation": row["substation"],
                                "day": day, "token_id": None, "kind": "turned_away", "actor": None,
                                "counter": None,
                                "data": {"service": row["service"], "reason": row["reason"]}})
        return list(heapq.merge(events, refused, key=lambda e: e["at"]))

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
                "by_token": self._k("pay", "by-token")}

    async def add_payment(self, payment: Payment, idem: IdempotencyKey | None = None) -> tuple[Payment, bool]:
        """Write a queued payment and its event; (payment, replayed)."""
        added = await self._write_payment(payment, idem, None)
        assert added is not None
        return added

    async def _write_payment(self, payment: Payment, idem: IdempotencyKey | None,
                             guard: tuple[str, str, str, str] | None) -> tuple[Payment, bool] | None:
        """``guard``: the token's queue key, its id, its json and its count of payments as
        ``build`` saw them; the payment is written only if neither changed meanwhile."""
        row = to_row(payment)
        row.pop("ordinal")
        k = self._pay_keys(payment.account)
        event = _dumps({"at": payment.updated_at, "substation": payment.substation, "day": payment.day,
                        "token_id": payment.token_id, "kind": "payment_queued", "actor": None,
                        "counter": payment.counter, "data": None})
        event_head = event[: event.rindex("null")]
        kind, answer = await self._add_payment(
            keys=[k["payments"], self._seq_key, self._events_key, self._idem_key(idem),
                  self._k("commit", uuid.uuid4().hex), k["ordinal"], k["account"], k["heads"],
                  k["due"], k["queued"], k["counts"], guard[0] if guard else self._k("pay", "-"),
                  self._k("day", payment.day), k["by_token"]],
            args=[_dumps(row), idem.fingerprint if idem else "", IDEMPOTENCY_TTL_S, self._delivered,
                  payment.id, repr(payment.created_at), event_head,
                  guard[1] if guard else "", guard[2] if guard else "",
                  payment.token_id, guard[3] if guard else "", EARLIER_PAYMENTS_READ],
        )
        if kind == "stale":
            return None
        if kind == "idem":
            data = await self._replay_data(idem, answer)
            return from_row(Payment, data), True
        _, _, stored = answer.partition("\n")
        return from_row(Payment, json.loads(stored)), False

    async def take_payment(self, token_id: str, build: Callable[[Token | None, list[Payment]], Payment],
                           idem: IdempotencyKey | None = None) -> tuple[Payment, bool]:
        """Write the payment ``build`` makes of the token and its earlier payments as committed,
        with its event; a retried request answers with its first payment before ``build`` is
        asked again."""
        for _ in range(MAX_ATTEMPTS):
            if idem is not None:
                seen = await self.redis.get(self._idem_key(idem))
                if seen is not None:
                    return from_row(Payment, await self._replay_data(idem, seen)), True
            home = await self._home(token_id)
            tokens_key = self._k("q", *home, "tokens") if home is not None else None
            raw = await self.redis.hget(tokens_key, token_id) if tokens_key is not None else None
            count, paid = await self.redis.hmget(self._k("pay", "by-token"), [f"{token_id}#n", token_id])
            found = await self.redis.hmget(self._k("pay"), paid.split()) if paid else []
            earlier = [from_row(Payment, json.loads(p)) for p in found if p is not None]
            payment = build(from_row(Token, json.loads(raw)) if raw is not None else None, earlier)
            # Written only if the token and its payments are still as ``build`` saw them (another
            # replica may have changed them meanwhile): the read and the write are one step, as
            # on SQLite.
            added = await self._write_payment(payment, idem, (tokens_key, token_id, raw, count or "0"))
            if added is not None:
                return added
        raise StoreUnavailable(f"token {token_id} keeps changing; retry")

    async def get_payment(self, payment_id: str) -> Payment | None:
        raw = await self.redis.hget(self._k("pay"), payment_id)
        return from_row(Payment, json.loads(raw)) if raw is not None else None

    async def claim_payments(self, worker: str, now: float, lease_s: float, limit: int) -> list[Payment]:
        """Queued payments free to forward: the oldest of each account, not leased by another
        worker and not waiting for a retry. Claims them for ``lease_s`` seconds.

        A payment whose earlier claim lapsed unsettled (its replica died mid-post) comes back
        marked as attempted, so the gateway asks billing whether it landed before posting."""
        k = self._pay_keys("-")
        found = await self._claim_payments(
            keys=[k["due"], k["heads"], k["claims"], k["payments"]],
            args=[repr(float(now)), repr(float(now + lease_s)), limit, worker])
        claimed = []
        for raw, before in zip(found[::2], found[1::2]):
            payment = from_row(Payment, json.loads(raw))
            if before:
                payment = replace(payment, attempts=max(payment.attempts, 1))
            claimed.append(payment)
        return claimed

    async def settle_payment(self, payment_id: str, status: PaymentStatus, now: float, *,
                             reason: str | None = None, billing_ref: str | None = None,
                             retry_at: float | None = None, attempted: bool = True) -> Payment:
        """Record the outcome of one forwarding attempt (see SQLiteStore.settle_payment)."""
        for _ in range(MAX_ATTEMPTS):
            raw = await self.redis.hget(self._k("pay"), payment_id)
            if raw is None:
                raise KeyError(payment_id)
            current = from_row(Payment, json.loads(raw))
            settled = replace(current, status=status, reason=reason,
                              billing_ref=billing_ref if billing_ref is not None else current.billing_ref,
                              attempts=current.attempts + int(attempted), updated_at=now)
            new = _dumps(to_row(settled))
            event = ""
            if status is not PaymentStatus.QUEUED:
                event = _dumps({"at": now, "substation": settled.substation, "day": settled.day,
                                "token_id": settled.token_id, "kind": f"payment_{status.value}",
                                "actor": None, "counter": settled.counter, "data": to_row(settled)})
            k = self._pay_keys(current.account)
            kind, _ = await self._settle_payment(
                keys=[k["payments"], self._seq_key, self._events_key, self._k("idem", "-"),
                      self._k("commit", uuid.uuid4().hex), k["account"], k["heads"], k["due"],
                      k["queued"], k["counts"], k["claims"], self._k("day", current.day)],
                args=[raw, new, "", self._delivered, payment_id, current.status.value, status.value,
                      repr(float(retry_at)) if retry_at is not None else "0", event])
            if kind != "stale":
                return settled
        raise StoreUnavailable(f"payment {payment_id} keeps changing; retry")

    async def outbox_stats(self, now: float) -> OutboxStats:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._k("pay", "counts"))
            pipe.zrange(self._k("pay", "queued"), 0, 0, withscores=True)
            counts, oldest = await pipe.execute()
        return OutboxStats(int(counts.get("queued", 0)), int(counts.get("posted", 0)),
                           int(counts.get("failed", 0)), now - oldest[0][1] if oldest else None)

    # -- keys ------------------------------------------------------------------------------

    async def add_key(self, key_hash: str, role: str, counter: str | None, label: str, now: float) -> KeyRecord:
        record = KeyRecord(id="k" + secrets.token_hex(4), role=role, counter=counter, label=label,
                           created_at=now)
        text = _dumps({"id": record.id, "role": role, "counter": counter, "label": label,
                       "created_at": now, "revoked_at": None})
        added = await self._add_key(keys=[self._k("keys", "by_hash"), self._k("keys", "by_id")],
                                    args=[key_hash, record.id, text])
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
        revoked = await self._revoke_key(keys=[self._k("keys", "by_hash"), self._k("keys", "by_id")],
                                         args=[key_id, repr(float(now))])
        return bool(revoked)

    async def list_keys(self) -> list[KeyRecord]:
        records = [KeyRecord(**json.loads(raw)) for raw in await self.redis.hvals(self._k("keys", "by_hash"))]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    # -- the event log and live fan-out ------------------------------------------------------

    async def server_secret(self) -> bytes:
        """One key every replica reads; the first replica to ask makes it."""
        key = self._k("secret")
        await self.redis.set(key, secrets.token_hex(32), nx=True)
        return bytes.fromhex(await self.redis.get(key))

    def add_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

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

    async def events(self, after: int = 0, limit: int = 1000) -> list[dict]:
        entries = await self.redis.xrange(self._events_key, f"{after + 1}-0", "+", count=limit)
        found = []
        for entry_id, fields in entries:
            record = json.loads(fields["e"])
            found.append({"seq": int(entry_id.split("-")[0]), **record})
        return found

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
                    {self._events_key: f"{self._delivered}-0"}, count=1000, block=self._block_ms)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self._closing or (me is not None and me.cancelling()):
                    return   # the client may turn a cancelled read into an error of its own
                if not lost:
                    log.warning("lost Redis at %s (%s); reconnecting", redacted(self.url), exc)
                lost, self.following = True, False
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)
                continue
            if lost:
                log.warning("Redis at %s is back; following events from %d", redacted(self.url),
                            self._delivered)
            lost, pause, self.following = False, 0.05, True
            for _stream, entries in _stream_entries(found):
                self._dispatch(entries)
            async with self._progress:
                self._progress.notify_all()

    async def _recover(self) -> None:
        """After a reconnect: if Redis came back with less than we had seen (it restarted
        without persistence, or lost its last second), keep the sequence moving forward and
        forget what this replica cached, so nothing stale is used again."""
        assert self._follower_redis is not None
        current = int(await self._follower_redis.get(self._seq_key) or 0)
        if current < self._delivered:
            log.error("Redis has events only up to %d, but %d were seen: it lost data on restart "
                      "(see README, Redis persistence). Continuing from %d.",
                      current, self._delivered, self._delivered)
            await self._follower_redis.eval(RAISE_SEQ, 1, self._seq_key, self._delivered)
            self._queues.clear()
            self._token_home.clear()

    def _dispatch(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        """Consecutive changes of one queue go out as one Committed, as a batch does in SQLite."""
        group: list[tuple[int, Event]] = []
        batch: list[Committed] = []
        for entry_id, fields in entries:
            seq = int(entry_id.split("-")[0])
            self._delivered = max(self._delivered, seq)
            if not self._listeners:
                continue
            record = json.loads(fields["e"])
            if record["kind"].startswith("payment_"):
                continue
            group.append((seq, _event_from_record(record)))
            if "h" in fields:
                hall = hall_from_json(fields["h"])
                previous = batch[-1] if batch else None
                if previous is not None and (previous.substation, previous.day) == (hall.substation, hall.day):
                    batch[-1] = Committed(hall.substation, hall.day, previous.events + group, hall)
                else:
                    batch.append(Committed(hall.substation, hall.day, group, hall))
                group = []
        for change in batch:
            for listener in self._listeners:
                try:
                    listener(change)
                except Exception:  # noqa: BLE001 - one listener must not stop the others
                    log.exception("commit listener failed")


def _stream_entries(found: Any) -> list[tuple[str, list]]:
    """XREAD's answer as (stream, entries) pairs, whichever reply shape the client gives."""
    if not found:
        return []
    if isinstance(found, dict):
        return [(name, entries[0] if entries and isinstance(entries[0], list) and len(entries) == 1
                 and entries[0] and isinstance(entries[0][0], (list, tuple)) else entries)
                for name, entries in found.items()]
    return [(name, entries) for name, entries in found]
