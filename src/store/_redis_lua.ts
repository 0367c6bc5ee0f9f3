// Lua scripts of the Redis store: each mutation checks, writes, bumps the room
// seq, logs and publishes in one atomic step, so seq order == publish order.
//
// Key layout (P = prefix). Rooms and ids are embedded verbatim after a type
// tag ending in ":", so distinct tags never collide:
//   P epoch            string   random id; gone after a data loss
//   P w:<inst>         string   the instance's renewal counter: it goes back
//                               only when Redis lost writes (a rollback)
//   P leases           zset     instance -> lease expiry (Redis's clock)
//   P lease:<inst>     string   liveness marker with a real PX TTL
//   P x                zset     state entry -> expiresAt
//   P i:<inst>         set      the instance's membership entries
//   P k:<inst>         set      connection ids whose metadata it owns
//   P d:<cid>          hash     metadata: i = owner, m = JSON
//   P q:<room>         string   the room's seq
//   P o:<room>         hash     cid -> "<join seq>:<owner instance>"
//   P m:<room>         hash     cid -> metadata JSON at join
//   P s:<room>         hash     cid -> "<expiresAt|empty>:<version>:<state JSON>"
//   P l:<room>         list     the last events for catch-up: "<ms> <JSON>"
//   P c:<room>         channel  event batches: a JSON array of events
//   P u:<room>         hash     cid -> user (members that have one)
//   P n:<room>         hash     user -> its connections here ("\0<cid>" -> 1
//                               for a member without a user): HLEN = users
//   P R                zset     non-empty rooms (score 0, listed by lex range)
//   P r:<user>         hash     room -> the user's connections there
//   P hooks            hash     presence hook name -> event letters (j, l, s)
//   P h:<hook>         hash     idempotency key -> "<attempt> <event JSON>"
//   P hd:<hook>        zset     idempotency key -> when it is due (claim lease)
// An entry is "<byte length of room>:<room><cid>".
//
// Time: every instant in the scripts (leases, expiries, "now") is on Redis's
// clock. Each store handle translates its caller's clock by an offset it
// measures against TIME at every lease renewal, so instances whose clocks
// are skewed still agree on when a lease or a state lapses.

/** Shared prelude. ARGV[1..4]: prefix, key TTL ms, log length, log TTL ms. */
const PRELUDE = `
local P = ARGV[1]
local KEYTTL = ARGV[2]
local LOGLEN = tonumber(ARGV[3])
local LOGTTL = ARGV[4]
local out = {}
local pub = {}
local pubOrder = {}
local function enc(s) return cjson.encode(s) end
local function entry(room, cid) return #room .. ':' .. room .. cid end
local function unentry(e)
  local i = string.find(e, ':', 1, true)
  local n = tonumber(string.sub(e, 1, i - 1))
  return string.sub(e, i + 1, i + n), string.sub(e, i + n + 1)
end
local function ownerOf(o) return string.sub(o, string.find(o, ':', 1, true) + 1) end
local function stateParts(v)
  local a = string.find(v, ':', 1, true)
  local b = string.find(v, ':', a + 1, true)
  return string.sub(v, 1, a - 1), string.sub(v, a + 1, b - 1), string.sub(v, b + 1)
end
local function nextseq(room)
  local k = P .. 'q:' .. room
  local s = redis.call('INCR', k)
  redis.call('PEXPIRE', k, KEYTTL)
  return tostring(s)
end
local clock = false
-- Redis's time in ms, read once per script.
local function rtime()
  if not clock then
    local t = redis.call('TIME')
    clock = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  end
  return clock
end
local hooks = false
-- Queue the event for every presence hook that takes its kind (j, l, s).
local function enqueue(ev, kind, key)
  if not hooks then hooks = redis.call('HGETALL', P .. 'hooks') end
  for i = 1, #hooks, 2 do
    if string.find(hooks[i + 1], kind, 1, true) then
      redis.call('HSET', P .. 'h:' .. hooks[i], key, '0 ' .. ev)
      redis.call('ZADD', P .. 'hd:' .. hooks[i], 0, key)
    end
  end
end
local function emit(room, ev, kind, seq, now)
  enqueue(ev, kind, room .. ':' .. seq .. ':' .. now)
  rtime()
  local lk = P .. 'l:' .. room
  redis.call('RPUSH', lk, clock .. ' ' .. ev)
  redis.call('LTRIM', lk, -LOGLEN, -1)
  redis.call('PEXPIRE', lk, LOGTTL)
  out[#out + 1] = ev
  local b = pub[room]
  if not b then
    b = {}
    pub[room] = b
    pubOrder[#pubOrder + 1] = room
  end
  b[#b + 1] = ev
end
local function flush()
  for _, room in ipairs(pubOrder) do
    redis.call('PUBLISH', P .. 'c:' .. room, '[' .. table.concat(pub[room], ',') .. ']')
  end
end
-- The owning instance's write counter, bumped by every write to its entries
-- and answered with the result ("<count>:<instance>"): it goes back only when
-- Redis lost acknowledged writes (a rollback).
local stamp = ''
local function bump(inst)
  local k = P .. 'w:' .. inst
  local w = redis.call('INCR', k)
  redis.call('PEXPIRE', k, KEYTTL)
  stamp = w .. ':' .. inst
  return w
end
local function result(status)
  flush()
  local r = { status, stamp }
  for i, e in ipairs(out) do r[i + 2] = e end
  return r
end
local function missed(room, since)
  if since < 0 then return end
  local cur = tonumber(redis.call('GET', P .. 'q:' .. room) or '0')
  local n = cur - since
  if n <= 0 then return end
  if n > LOGLEN then n = LOGLEN end
  for _, e in ipairs(redis.call('LRANGE', P .. 'l:' .. room, -n, -1)) do
    out[#out + 1] = string.sub(e, string.find(e, ' ', 1, true) + 1)
  end
end
local function head(kind, room, cid, seq)
  return '{"type":"' .. kind .. '","room":' .. enc(room) .. ',"connectionId":' .. enc(cid) .. ',"seq":' .. seq
end
local function emitLeave(room, cid, reason, now, extra)
  local seq = nextseq(room)
  emit(room, head('leave', room, cid, seq) .. ',"reason":"' .. reason .. '","timestamp":' .. now .. extra .. '}', 'l', seq, now)
end
local function emitExpired(room, cid, now)
  local seq = nextseq(room)
  emit(room, head('state', room, cid, seq) .. ',"state":null,"expired":true,"timestamp":' .. now .. '}', 's', seq, now)
end
-- Remove a member and its counters; answers the leave event's user fields.
local function dropMember(room, cid, inst)
  local e = entry(room, cid)
  local ok = P .. 'o:' .. room
  redis.call('HDEL', ok, cid)
  redis.call('HDEL', P .. 'm:' .. room, cid)
  redis.call('HDEL', P .. 's:' .. room, cid)
  redis.call('ZREM', P .. 'x', e)
  redis.call('SREM', P .. 'i:' .. inst, e)
  local uk, nk = P .. 'u:' .. room, P .. 'n:' .. room
  local user = redis.call('HGET', uk, cid)
  local extra = ''
  if user then
    redis.call('HDEL', uk, cid)
    extra = ',"user":' .. enc(user)
    if redis.call('HINCRBY', nk, user, -1) <= 0 then
      redis.call('HDEL', nk, user)
      extra = extra .. ',"lastOfUser":true'
    end
    local rk = P .. 'r:' .. user
    if redis.call('HINCRBY', rk, room, -1) <= 0 then redis.call('HDEL', rk, room) end
  else
    redis.call('HDEL', nk, '\\0' .. cid)
  end
  if redis.call('HLEN', ok) == 0 then redis.call('ZREM', P .. 'R', room) end
  return extra
end
local function reap(inst, reason, now)
  local ik = P .. 'i:' .. inst
  for _, e in ipairs(redis.call('SMEMBERS', ik)) do
    local room, cid = unentry(e)
    local o = redis.call('HGET', P .. 'o:' .. room, cid)
    if o and ownerOf(o) == inst then
      emitLeave(room, cid, reason, now, dropMember(room, cid, inst))
    end
  end
  redis.call('DEL', ik)
  local kk = P .. 'k:' .. inst
  for _, cid in ipairs(redis.call('SMEMBERS', kk)) do
    local dk = P .. 'd:' .. cid
    if redis.call('HGET', dk, 'i') == inst then redis.call('DEL', dk) end
  end
  redis.call('DEL', kk)
  redis.call('ZREM', P .. 'leases', inst)
  redis.call('DEL', P .. 'lease:' .. inst)
end
`;

/** ARGV[5..]: room, cid, instance, meta JSON, now, since, user (empty: none). */
const JOIN = `
local room, cid, inst, meta, now, user = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[11]
missed(room, tonumber(ARGV[10]))
local ok = P .. 'o:' .. room
if redis.call('HEXISTS', ok, cid) == 1 then return result('null') end
local seq = nextseq(room)
bump(inst)
local mk = P .. 'm:' .. room
local ik = P .. 'i:' .. inst
redis.call('HSET', ok, cid, seq .. ':' .. inst)
redis.call('HSET', mk, cid, meta)
redis.call('SADD', ik, entry(room, cid))
redis.call('PEXPIRE', ok, KEYTTL)
redis.call('PEXPIRE', mk, KEYTTL)
redis.call('PEXPIRE', ik, KEYTTL)
local nk = P .. 'n:' .. room
local extra = ''
if user ~= '' then
  local uk, rk = P .. 'u:' .. room, P .. 'r:' .. user
  redis.call('HSET', uk, cid, user)
  redis.call('PEXPIRE', uk, KEYTTL)
  extra = ',"user":' .. enc(user)
  if redis.call('HINCRBY', nk, user, 1) == 1 then extra = extra .. ',"firstOfUser":true' end
  redis.call('HINCRBY', rk, room, 1)
  redis.call('PEXPIRE', rk, KEYTTL)
else
  redis.call('HSET', nk, '\\0' .. cid, 1)
end
redis.call('PEXPIRE', nk, KEYTTL)
redis.call('ZADD', P .. 'R', 0, room)
emit(room, head('join', room, cid, seq) .. ',"meta":' .. meta .. ',"instance":' .. enc(inst) .. ',"timestamp":' .. now .. extra .. '}', 'j', seq, now)
return result('ok')
`;

/** ARGV[5..]: room, cid, reason, now, since. */
const LEAVE = `
local room, cid, reason, now = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
missed(room, tonumber(ARGV[9]))
local o = redis.call('HGET', P .. 'o:' .. room, cid)
if not o then return result('null') end
bump(ownerOf(o))
emitLeave(room, cid, reason, now, dropMember(room, cid, ownerOf(o)))
return result('ok')
`;

/**
 * ARGV[5..]: room, cid, mode (set | patch | clear), state JSON, patch JSON,
 * expiresAt (empty: none), now, expected version (patch), since.
 * A patch carries the merged state computed by the caller from the version
 * it read; a different current version answers "conflict" and changes nothing.
 */
const SET_STATE = `
local room, cid, mode, value, patch, expiresAt, now, expect = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
missed(room, tonumber(ARGV[13]))
local owner = redis.call('HGET', P .. 'o:' .. room, cid)
if not owner then return result('not_member') end
local sk = P .. 's:' .. room
local e = entry(room, cid)
local cur = redis.call('HGET', sk, cid)
local version = '0'
local expired = false
if cur then
  local at, v = stateParts(cur)
  if at ~= '' and tonumber(at) <= tonumber(now) then expired = true else version = v end
end
if mode == 'patch' and version ~= expect then return result('conflict') end
bump(ownerOf(owner))
if expired then
  redis.call('HDEL', sk, cid)
  redis.call('ZREM', P .. 'x', e)
  emitExpired(room, cid, now)
  cur = false
end
if mode == 'clear' then
  if not cur then return result('null') end
  redis.call('HDEL', sk, cid)
  redis.call('ZREM', P .. 'x', e)
  local cseq = nextseq(room)
  emit(room, head('state', room, cid, cseq) .. ',"state":null,"timestamp":' .. now .. '}', 's', cseq, now)
  return result('ok')
end
local seq = nextseq(room)
redis.call('HSET', sk, cid, expiresAt .. ':' .. seq .. ':' .. value)
redis.call('PEXPIRE', sk, KEYTTL)
if expiresAt ~= '' then
  redis.call('ZADD', P .. 'x', expiresAt, e)
else
  redis.call('ZREM', P .. 'x', e)
end
local ev = head('state', room, cid, seq) .. ',"state":' .. value
if mode == 'patch' then ev = ev .. ',"patch":' .. patch end
emit(room, ev .. ',"timestamp":' .. now .. '}', 's', seq, now)
return result('ok')
`;

/** ARGV[5..]: room, cid, now. Answers {member?, version, state JSON}. */
const READ_STATE = `
local room, cid, now = ARGV[5], ARGV[6], ARGV[7]
if redis.call('HEXISTS', P .. 'o:' .. room, cid) == 0 then return { '0' } end
local cur = redis.call('HGET', P .. 's:' .. room, cid)
if not cur then return { '1', '0' } end
local at, v, json = stateParts(cur)
if at ~= '' and tonumber(at) <= tonumber(now) then return { '1', '0' } end
return { '1', v, json }
`;

/** ARGV[5..]: room. Answers {seq, n, o..., n, m..., n, s..., n, u...}. */
const SNAPSHOT = `
local room = ARGV[5]
local r = { redis.call('GET', P .. 'q:' .. room) or '0' }
for _, t in ipairs({ 'o:', 'm:', 's:', 'u:' }) do
  local h = redis.call('HGETALL', P .. t .. room)
  r[#r + 1] = tostring(#h)
  for _, v in ipairs(h) do r[#r + 1] = v end
end
return r
`;

/**
 * ARGV[5..]: instance, lease expiry, ttl ms. Answers {'1' when it already
 * held a lease else '0', Redis's TIME in ms, the renewal counter}.
 */
const RENEW = `
local inst, at, ttl = ARGV[5], ARGV[6], ARGV[7]
local nowMs = rtime()
local w = bump(inst)
local prev = redis.call('ZSCORE', P .. 'leases', inst)
redis.call('ZADD', P .. 'leases', at, inst)
redis.call('SET', P .. 'lease:' .. inst, at, 'PX', ttl)
redis.call('PEXPIRE', P .. 'i:' .. inst, KEYTTL)
redis.call('PEXPIRE', P .. 'k:' .. inst, KEYTTL)
if prev then return { '1', nowMs, tostring(w) } end
return { '0', nowMs, tostring(w) }
`;

/** ARGV[5..]: instance, now. */
const RELEASE = `
reap(ARGV[5], 'close', ARGV[6])
return result('ok')
`;

/**
 * ARGV[5..]: now, max instances, max states, then the instances whose lease
 * the caller renews itself (never reaped by their own process: they only
 * stalled). Reaps lapsed instances (each atomically, so exactly one sweeper
 * emits its leaves), then pops due states. Answers "more" when a limit was hit.
 */
const SWEEP = `
local now, maxI, maxS = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local own = {}
for i = 8, #ARGV do own[ARGV[i]] = true end
maxI = maxI + #ARGV - 7
local lapsed = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, maxI)
for _, inst in ipairs(lapsed) do
  if not own[inst] then reap(inst, 'instance', now) end
end
local due = redis.call('ZRANGEBYSCORE', P .. 'x', '-inf', now, 'LIMIT', 0, maxS)
for _, e in ipairs(due) do
  redis.call('ZREM', P .. 'x', e)
  local room, cid = unentry(e)
  local sk = P .. 's:' .. room
  local cur = redis.call('HGET', sk, cid)
  if cur then
    local at = stateParts(cur)
    if at ~= '' and tonumber(at) <= tonumber(now) then
      redis.call('HDEL', sk, cid)
      emitExpired(room, cid, now)
    end
  end
end
if #lapsed == maxI or #due == maxS then return result('more') end
return result('ok')
`;

/** ARGV[5..]: cid, instance, meta JSON. */
const SET_META = `
local cid, inst, meta = ARGV[5], ARGV[6], ARGV[7]
local dk = P .. 'd:' .. cid
local old = redis.call('HGET', dk, 'i')
if old and old ~= inst then redis.call('SREM', P .. 'k:' .. old, cid) end
redis.call('HSET', dk, 'i', inst, 'm', meta)
redis.call('PEXPIRE', dk, KEYTTL)
local kk = P .. 'k:' .. inst
redis.call('SADD', kk, cid)
redis.call('PEXPIRE', kk, KEYTTL)
return 'ok'
`;

/** ARGV[5..]: cid. */
const DELETE_META = `
local cid = ARGV[5]
local dk = P .. 'd:' .. cid
local old = redis.call('HGET', dk, 'i')
if old then redis.call('SREM', P .. 'k:' .. old, cid) end
redis.call('DEL', dk)
return 'ok'
`;

/**
 * ARGV[5..]: room, since, age ms. With since >= 0: the logged events after
 * seq `since`. Else (a new watch): those appended in the last `age` ms.
 * Answers {seq, events...}.
 */
const CATCH_UP = `
local room, since, age = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local cur = redis.call('GET', P .. 'q:' .. room) or '0'
local r = { cur }
local lk = P .. 'l:' .. room
if since >= 0 then
  local n = math.min(tonumber(cur) - since, LOGLEN)
  if n > 0 then
    for _, e in ipairs(redis.call('LRANGE', lk, -n, -1)) do
      r[#r + 1] = string.sub(e, string.find(e, ' ', 1, true) + 1)
    end
  end
  return r
end
local from = tonumber(rtime()) - age
for _, e in ipairs(redis.call('LRANGE', lk, 0, -1)) do
  local i = string.find(e, ' ', 1, true)
  if tonumber(string.sub(e, 1, i - 1)) >= from then r[#r + 1] = string.sub(e, i + 1) end
end
return r
`;

/** ARGV[5..]: instance. Answers {n, entries..., cids...}: what it owns. */
const OWNED = `
local inst = ARGV[5]
local r = {}
local es = redis.call('SMEMBERS', P .. 'i:' .. inst)
r[1] = tostring(#es)
for _, e in ipairs(es) do r[#r + 1] = e end
for _, cid in ipairs(redis.call('SMEMBERS', P .. 'k:' .. inst)) do r[#r + 1] = cid end
return r
`;

/** ARGV[5..]: a fresh epoch id. Answers {epoch, created?}. */
const EPOCH = `
local k = P .. 'epoch'
local e = redis.call('GET', k)
if e then return { e, '0' } end
redis.call('SET', k, ARGV[5])
return { ARGV[5], '1' }
`;

/**
 * ARGV[5..]: instance, then watched rooms. Refreshes the TTL backstop of
 * every key the instance or a watched room still needs.
 */
const TOUCH = `
local inst = ARGV[5]
local rooms = {}
if inst ~= '' then
  local ik = P .. 'i:' .. inst
  for _, e in ipairs(redis.call('SMEMBERS', ik)) do
    local room, cid = unentry(e)
    rooms[room] = true
    local user = redis.call('HGET', P .. 'u:' .. room, cid)
    if user then redis.call('PEXPIRE', P .. 'r:' .. user, KEYTTL) end
  end
  redis.call('PEXPIRE', ik, KEYTTL)
  local kk = P .. 'k:' .. inst
  for _, cid in ipairs(redis.call('SMEMBERS', kk)) do
    redis.call('PEXPIRE', P .. 'd:' .. cid, KEYTTL)
  end
  redis.call('PEXPIRE', kk, KEYTTL)
end
for i = 6, #ARGV do rooms[ARGV[i]] = true end
for room in pairs(rooms) do
  for _, t in ipairs({ 'q:', 'o:', 'm:', 's:', 'u:', 'n:' }) do
    redis.call('PEXPIRE', P .. t .. room, KEYTTL)
  end
end
return 'ok'
`;

/** ARGV[5..]: room. Answers {connections, users}. */
const COUNT = `
local room = ARGV[5]
return { redis.call('HLEN', P .. 'o:' .. room), redis.call('HLEN', P .. 'n:' .. room) }
`;

/**
 * ARGV[5..]: prefix, cursor (empty: none), limit. Answers the room names,
 * then '' and the next cursor when there are more. Names left behind by
 * rooms whose keys expired (nobody renewed them) are dropped on the way.
 */
const LIST_ROOMS = `
local prefix, cursor, limit = ARGV[5], ARGV[6], tonumber(ARGV[7])
local lo = '-'
if cursor ~= '' then lo = '(' .. cursor elseif prefix ~= '' then lo = '[' .. prefix end
local hi = '+'
if prefix ~= '' then hi = '(' .. prefix .. '\\255' end
local r = {}
while #r <= limit do
  local names = redis.call('ZRANGEBYLEX', P .. 'R', lo, hi, 'LIMIT', 0, limit + 1 - #r)
  if #names == 0 then break end
  for _, name in ipairs(names) do
    if redis.call('EXISTS', P .. 'o:' .. name) == 1 then r[#r + 1] = name
    else redis.call('ZREM', P .. 'R', name) end
    lo = '(' .. name
  end
end
if #r > limit then
  r[limit + 1] = ''
  r[limit + 2] = r[limit]
end
return r
`;

/** ARGV[5..]: user. Answers the rooms where it has a member. */
const USER_ROOMS = `
local user = ARGV[5]
local rk = P .. 'r:' .. user
local r = {}
for _, room in ipairs(redis.call('HKEYS', rk)) do
  if redis.call('HEXISTS', P .. 'n:' .. room, user) == 1 then r[#r + 1] = room
  else redis.call('HDEL', rk, room) end
end
return r
`;

/** ARGV[5..]: hook name, letters. Widens the registration. */
const REGISTER_HOOK = `
local name, letters = ARGV[5], ARGV[6]
local cur = redis.call('HGET', P .. 'hooks', name) or ''
local out = ''
for _, c in ipairs({ 'j', 'l', 's' }) do
  if string.find(cur, c, 1, true) or string.find(letters, c, 1, true) then out = out .. c end
end
redis.call('HSET', P .. 'hooks', name, out)
return out
`;

/** ARGV[5..]: hook name. */
const DROP_HOOK = `
local name = ARGV[5]
redis.call('HDEL', P .. 'hooks', name)
redis.call('DEL', P .. 'h:' .. name, P .. 'hd:' .. name)
return 'ok'
`;

/**
 * ARGV[5..]: hook name, now, lease ms, max. Answers {key, attempt, event}...
 * for the due events, each hidden until now + lease.
 */
const CLAIM_HOOKS = `
local name, now, lease, max = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local hk, dk = P .. 'h:' .. name, P .. 'hd:' .. name
local r = {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', dk, '-inf', now, 'LIMIT', 0, max)) do
  local v = redis.call('HGET', hk, key)
  if v then
    local i = string.find(v, ' ', 1, true)
    local attempt = tostring(tonumber(string.sub(v, 1, i - 1)) + 1)
    local ev = string.sub(v, i + 1)
    redis.call('HSET', hk, key, attempt .. ' ' .. ev)
    redis.call('ZADD', dk, now + lease, key)
    r[#r + 1] = key
    r[#r + 1] = attempt
    r[#r + 1] = ev
  else
    redis.call('ZREM', dk, key)
  end
end
return r
`;

/** ARGV[5..]: hook name, key, retry time (empty: delivered, remove it). */
const SETTLE_HOOK = `
local name, key, at = ARGV[5], ARGV[6], ARGV[7]
local hk, dk = P .. 'h:' .. name, P .. 'hd:' .. name
if at == '' then
  redis.call('HDEL', hk, key)
  redis.call('ZREM', dk, key)
elseif redis.call('HEXISTS', hk, key) == 1 then
  redis.call('ZADD', dk, at, key)
end
return 'ok'
`;

/** Script name -> full source (prelude included). */
export const SCRIPTS = {
  join: PRELUDE + JOIN,
  leave: PRELUDE + LEAVE,
  setState: PRELUDE + SET_STATE,
  readState: PRELUDE + READ_STATE,
  snapshot: PRELUDE + SNAPSHOT,
  renew: PRELUDE + RENEW,
  release: PRELUDE + RELEASE,
  sweep: PRELUDE + SWEEP,
  setMeta: PRELUDE + SET_META,
  deleteMeta: PRELUDE + DELETE_META,
  catchUp: PRELUDE + CATCH_UP,
  epoch: PRELUDE + EPOCH,
  touch: PRELUDE + TOUCH,
  count: PRELUDE + COUNT,
  owned: PRELUDE + OWNED,
  listRooms: PRELUDE + LIST_ROOMS,
  userRooms: PRELUDE + USER_ROOMS,
  registerHook: PRELUDE + REGISTER_HOOK,
  dropHook: PRELUDE + DROP_HOOK,
  claimHooks: PRELUDE + CLAIM_HOOKS,
  settleHook: PRELUDE + SETTLE_HOOK,
} as const;

/** The name of one script. */
export type ScriptName = keyof typeof SCRIPTS;
