"""The Redis engine's Lua scripts, each with its KEYS named in one place.

Every script takes its KEYS in the order its ``keys`` tuple names them (some take more keys
after those, as ``extra``) and one ARGV: a JSON object, decoded by ``cjson`` into ``A``. The
Lua sees the keys by name, as ``K.<name>``. JSON the Python side wrote (events, tokens)
travels inside that object as strings and is stored as it came, so nothing in Lua depends on
how Python formats JSON. Python numbers that must stay exact (times used as scores) are sent
as strings.

Where an event goes: each takes the next number of ``K.seq``; its record is appended to the
day's list ``K.day`` as ``[seq, record]`` (a payment's as ``[seq, record, payment]``), which is
the event log reports read; and an entry with that number as its id is added to the stream
``K.events``, the live feed every replica follows, trimmed to about ``A.keep`` entries. A
queue's entries carry the event (``e``), the commit's last one also the version the commit ran
on (``v``); a payment's entry carries only ``pay``. The answer kept for an idempotency key is
``seq \n fingerprint \n JSON whose data is the answer`` (seq empty when there was no event).
The webhook notices a change gives (``A.notices``, JSON each) are added to the stream
``K.notices`` in the same script, with Redis's own ids (an endpoint's cursor), trimmed to the
last ``A.notices_keep_s`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Script:
    name: str
    keys: tuple[str, ...]
    body: str
    acknowledged: bool = True   # it writes what callers are told is kept (behind Sentinels: WAIT)

    def source(self) -> str:
        named = ", ".join(f"{key} = KEYS[{i + 1}]" for i, key in enumerate(self.keys))
        return (f"-- {self.name}\nlocal K = {{{named}}}\nlocal FIXED = {len(self.keys)}\n"
                "local A = cjson.decode(ARGV[1])\n" + self.body)


# A commit retried after its reply was lost (the client library resends on a dropped
# connection) answers from its memo instead of applying twice; and the global sequence never
# falls below what this replica has already seen (a Redis that lost data on restart must not
# hand out sequence numbers boards already hold). A: floor. K: memo, seq.
_MEMO_AND_FLOOR = """
local memo = redis.call('GET', K.memo)
if memo then return {'done', memo} end
if tonumber(redis.call('GET', K.seq) or '0') < A.floor then redis.call('SET', K.seq, A.floor) end
"""

# A queue as committed: everything (since ''), or only the tokens changed since a version plus
# the ones named; '' for a token that does not exist.
_READ = """
local function read_queue(since, ids)
  local tokens = {}
  if since == '' then
    tokens = redis.call('HGETALL', K.tokens)
  else
    local changed = redis.call('ZRANGEBYSCORE', K.changed, '(' .. since, '+inf')
    for _, id in ipairs(ids) do changed[#changed + 1] = id end
    for _, id in ipairs(changed) do
      tokens[#tokens + 1] = id
      tokens[#tokens + 1] = redis.call('HGET', K.tokens, id) or ''
    end
  end
  return {redis.call('GET', K.version) or '0', tokens, redis.call('HGETALL', K.seqs),
          redis.call('HGETALL', K.counters), redis.call('HGETALL', K.leases),
          redis.call('HGETALL', K.settings)}
end
"""

# A: notices, notices_keep_s. K: notices.
_NOTICES = """
if #A.notices > 0 then
  local now = redis.call('TIME')
  local oldest = (tonumber(now[1]) - A.notices_keep_s) * 1000
  for _, notice in ipairs(A.notices) do
    redis.call('XADD', K.notices, 'MINID', '~', oldest, '*', 'n', notice)
  end
end
"""

QUEUE_KEYS = ("version", "changed", "tokens", "seqs", "counters", "leases", "settings")

# A: since ('' for all), ids (tokens to read again).
READ_QUEUE = Script("read_queue", QUEUE_KEYS, _READ + "return read_queue(A.since, A.ids)\n",
                    acknowledged=False)

# A batch of changes to one queue, run in Python against version A.version: refused whole
# ('stale', and the queue's changes since) if the queue has moved on, or ('idem', j) if the
# j-th idempotency key (extra key j) was used before.
# A: version, floor, memo_ttl, idem_ttl, keep; events: the event records' json
#    (the last entry also keeps A.version, as 'v', so other replicas can tell whether their
#    copy of the queue was the one the batch ran on);
#    puts: [hash name (a key of K), field, value] each (a put to 'tokens' also marks the token
#    changed at this version); answers: per extra key [fingerprint, 1-based index of its
#    answer's event or 0, write it or not]; touched: tokens to read again when stale.
COMMIT_QUEUE = Script(
    "commit_queue",
    (*QUEUE_KEYS, "seq", "events", "memo", "homes", "waiting", "day", "notices"),
    _MEMO_AND_FLOOR + _READ + """
if tonumber(redis.call('GET', K.version) or '0') ~= A.version then
  return {'stale', read_queue(tostring(A.version), A.touched)}
end
for j, answer in ipairs(A.answers) do
  local seen = redis.call('GET', KEYS[FIXED + j])
  if seen then return {'idem', tostring(j - 1), seen} end
end
local seqs = {}
for i, event in ipairs(A.events) do
  local seq = redis.call('INCR', K.seq)
  if i == #A.events then
    redis.call('XADD', K.events, 'MAXLEN', '~', A.keep, seq .. '-0', 'e', event, 'v', A.version)
  else
    redis.call('XADD', K.events, 'MAXLEN', '~', A.keep, seq .. '-0', 'e', event)
  end
  redis.call('RPUSH', K.day, '[' .. seq .. ',' .. event .. ']')
  seqs[#seqs + 1] = seq
end
local last = ''
if #seqs > 0 then
  last = tostring(seqs[#seqs])
  redis.call('SET', K.version, last)
end
for _, put in ipairs(A.puts) do
  redis.call('HSET', K[put[1]], put[2], put[3])
  if put[1] == 'tokens' then redis.call('ZADD', K.changed, last, put[2]) end
end
for j, answer in ipairs(A.answers) do
  if answer[3] then
    local kept, record = '', ''
    if answer[2] > 0 then kept, record = tostring(seqs[answer[2]]), A.events[answer[2]] end
    redis.call('SET', KEYS[FIXED + j], kept .. '\\n' .. answer[1] .. '\\n' .. record, 'EX', A.idem_ttl)
  end
end
local reply = table.concat(seqs, ' ')
redis.call('SET', K.memo, reply, 'EX', A.memo_ttl)
""" + _NOTICES + """
return {'ok', reply}
""")

PAYMENT_KEYS = ("payments", "ordinal", "account", "heads", "due", "queued", "counts", "claims",
                "by_token", "failed")

# A payment and its event. It is written only if the token (in K.token_queue) and its count of
# payments are still as the payment was made from (A.token: its json, '' for none), so that
# reading them and writing the payment is one step.
# A: payment (json object without its ordinal), id, token_id, created_at, token, paid,
#    list_limit (how many payment ids to keep per token), event (the event's json, data null),
#    fingerprint ('' without a key), idem_ttl, floor, memo_ttl, keep.
# The stored payment is A.payment with ',"ordinal":N' added before its closing brace: valid
# JSON whatever separators wrote it. Its event is logged with that payment beside it.
ADD_PAYMENT = Script(
    "add_payment",
    (*PAYMENT_KEYS, "seq", "events", "idem", "memo", "token_queue", "day", "notices"),
    _MEMO_AND_FLOOR + """
if A.fingerprint ~= '' then
  local seen = redis.call('GET', K.idem)
  if seen then return {'idem', seen} end
end
if (redis.call('HGET', K.token_queue, A.token_id) or '') ~= A.token then return {'stale', ''} end
local paid = tonumber(redis.call('HGET', K.by_token, A.token_id .. '#n') or '0')
if paid ~= A.paid then return {'stale', ''} end
local ordinal = redis.call('INCR', K.ordinal)
local stored = string.sub(A.payment, 1, -2) .. ',"ordinal":' .. ordinal .. '}'
local id = A.id
redis.call('HSET', K.payments, id, stored)
redis.call('HSET', K.by_token, A.token_id .. '#n', paid + 1)
if paid == 0 then redis.call('HSET', K.by_token, A.token_id, id)
elseif paid < A.list_limit then
  redis.call('HSET', K.by_token, A.token_id, redis.call('HGET', K.by_token, A.token_id) .. ' ' .. id)
end
redis.call('ZADD', K.account, ordinal, id)
local head = redis.call('ZRANGE', K.account, 0, 0)
if head[1] == id then
  redis.call('ZADD', K.heads, ordinal, id)
  redis.call('ZADD', K.due, 0, id)
end
redis.call('ZADD', K.queued, A.created_at, id)
redis.call('HINCRBY', K.counts, 'queued', 1)
local seq = redis.call('INCR', K.seq)
redis.call('XADD', K.events, 'MAXLEN', '~', A.keep, seq .. '-0', 'pay', '1')
redis.call('RPUSH', K.day, '[' .. seq .. ',' .. A.event .. ',' .. stored .. ']')
if A.fingerprint ~= '' then
  redis.call('SET', K.idem, seq .. '\\n' .. A.fingerprint .. '\\n{"data":' .. stored .. '}', 'EX', A.idem_ttl)
end
local reply = seq .. '\\n' .. stored
redis.call('SET', K.memo, reply, 'EX', A.memo_ttl)
""" + _NOTICES + """
return {'ok', reply}
""")

# The oldest queued payment of each account (a "head") that is due: no retry pending and no
# live lease. Claims lease them until A.lease_end; a claim found still held by a worker whose
# lease lapsed (it died mid-post) is reported, so the new worker asks billing before posting.
# A: now, lease_end (strings), limit, worker.
CLAIM_PAYMENTS = Script("claim_payments", PAYMENT_KEYS, """
local due = redis.call('ZRANGEBYSCORE', K.due, '-inf', A.now)
local items = {}
for _, id in ipairs(due) do
  items[#items + 1] = {id, tonumber(redis.call('ZSCORE', K.heads, id) or '0')}
end
table.sort(items, function(a, b) return a[2] < b[2] end)
local out = {}
for k = 1, math.min(#items, A.limit) do
  local id = items[k][1]
  local before = redis.call('HGET', K.claims, id)
  redis.call('ZADD', K.due, A.lease_end, id)
  redis.call('HSET', K.claims, id, A.worker)
  out[#out + 1] = redis.call('HGET', K.payments, id)
  out[#out + 1] = before or ''
end
return out
""", acknowledged=False)   # a lost lease only lets another worker ask billing first

# A payment rewritten, if it is still as read (A.expected): one forwarding attempt's outcome, or
# a failed payment resubmitted (queued again in its account's order, K.account being the
# account it now has) or refunded. K.failed lists the failed ones, by ordinal.
# A: id, expected, new (json), old_status, new_status, ordinal, created_at and due (scores,
#    strings; due when queued again), event (json, '' for none), floor, memo_ttl, keep.
SETTLE_PAYMENT = Script(
    "settle_payment",
    (*PAYMENT_KEYS, "seq", "events", "memo", "day", "notices"),
    _MEMO_AND_FLOOR + """
local id = A.id
if redis.call('HGET', K.payments, id) ~= A.expected then return {'stale', ''} end
redis.call('HSET', K.payments, id, A.new)
redis.call('HDEL', K.claims, id)
if A.new_status == 'queued' and A.old_status ~= 'queued' then
  local before = redis.call('ZRANGE', K.account, 0, 0)[1]
  redis.call('ZADD', K.account, A.ordinal, id)
  redis.call('ZADD', K.queued, A.created_at, id)
  if redis.call('ZRANGE', K.account, 0, 0)[1] == id then
    if before then
      redis.call('ZREM', K.heads, before)
      redis.call('ZREM', K.due, before)
    end
    redis.call('ZADD', K.heads, A.ordinal, id)
    redis.call('ZADD', K.due, 0, id)
  end
elseif A.new_status == 'queued' then
  if redis.call('ZSCORE', K.heads, id) then redis.call('ZADD', K.due, A.due, id) end
elseif A.old_status == 'queued' then
  redis.call('ZREM', K.account, id)
  redis.call('ZREM', K.heads, id)
  redis.call('ZREM', K.due, id)
  redis.call('ZREM', K.queued, id)
  local next = redis.call('ZRANGE', K.account, 0, 0, 'WITHSCORES')
  if next[1] then
    redis.call('ZADD', K.heads, next[2], next[1])
    redis.call('ZADD', K.due, 0, next[1])
  end
end
if A.old_status ~= A.new_status then
  redis.call('HINCRBY', K.counts, A.old_status, -1)
  redis.call('HINCRBY', K.counts, A.new_status, 1)
  if A.new_status == 'failed' then redis.call('ZADD', K.failed, A.ordinal, id) end
  if A.old_status == 'failed' then redis.call('ZREM', K.failed, id) end
end
local reply = ''
if A.event ~= '' then
  reply = tostring(redis.call('INCR', K.seq))
  redis.call('XADD', K.events, 'MAXLEN', '~', A.keep, reply .. '-0', 'pay', '1')
  redis.call('RPUSH', K.day, '[' .. reply .. ',' .. A.event .. ']')
end
redis.call('SET', K.memo, reply, 'EX', A.memo_ttl)
""" + _NOTICES + """
return {'ok', reply}
""")

KEY_KEYS = ("by_hash", "by_id")

# A: hash, id, record (json). 0 when a key with this hash exists.
ADD_KEY = Script("add_key", KEY_KEYS, """
if redis.call('HSETNX', K.by_hash, A.hash, A.record) == 0 then return 0 end
redis.call('HSET', K.by_id, A.id, A.hash)
return 1
""")

# A: hash, expected (the record as read), record (revoked). 0 when it changed meanwhile.
REPLACE_KEY = Script("replace_key", KEY_KEYS, """
if redis.call('HGET', K.by_hash, A.hash) ~= A.expected then return 0 end
redis.call('HSET', K.by_hash, A.hash, A.record)
return 1
""")

# A: record (json), keyed (whether marker is an idempotency marker), idem_ttl, substation.
TURNED_AWAY = Script("turned_away", ("list", "marker", "counts"), """
if A.keyed and not redis.call('SET', K.marker, '1', 'NX', 'EX', A.idem_ttl) then return 0 end
redis.call('RPUSH', K.list, A.record)
redis.call('HINCRBY', K.counts, A.substation, 1)
return 1
""", acknowledged=False)   # a count for reports: not worth a wait at the door

# A notice no change causes (an ops alert). A: notices, notices_keep_s.
ADD_NOTICE = Script("add_notice", ("notices",), _NOTICES)

# A: id, version, record (json). A webhook written if the stored one is version - 1 (none for
# version 1): 1, else 0.
SAVE_WEBHOOK = Script("save_webhook", ("webhooks",), """
local current = redis.call('HGET', K.webhooks, A.id)
if A.version == 1 then
  if current then return 0 end
elseif not current or cjson.decode(current).version ~= A.version - 1 then
  return 0
end
redis.call('HSET', K.webhooks, A.id, A.record)
return 1
""")

# A: id, record (json). A consumer's SMS request (waits for a replica: it was acknowledged).
PUT_SMS = Script("put_sms", ("sms",), """
redis.call('HSET', K.sms, A.id, A.record)
return 1
""")

# A: id, at (a string), notices, notices_keep_s. The "near" message marked as due (in K.sms_near,
# beside the request as written), with its notice, if it was not before: 1, else 0.
MARK_SMS_NEAR = Script("mark_sms_near", ("sms", "sms_near", "notices"), """
if redis.call('HEXISTS', K.sms, A.id) == 0 then return 0 end
if redis.call('HSETNX', K.sms_near, A.id, A.at) == 0 then return 0 end
""" + _NOTICES + """
return 1
""")

# A: floor. The sequence, raised to at least the floor.
RAISE_SEQ = Script("raise_seq", ("seq",), """
if tonumber(redis.call('GET', K.seq) or '0') < A.floor then redis.call('SET', K.seq, A.floor) end
return redis.call('GET', K.seq)
""", acknowledged=False)

SCRIPTS = (READ_QUEUE, COMMIT_QUEUE, ADD_PAYMENT, CLAIM_PAYMENTS, SETTLE_PAYMENT, ADD_KEY,
           REPLACE_KEY, TURNED_AWAY, RAISE_SEQ, ADD_NOTICE, SAVE_WEBHOOK, PUT_SMS, MARK_SMS_NEAR)
