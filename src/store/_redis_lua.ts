// Lua scripts of the Redis store. The room is the unit of atomicity: a room
// script touches only the room's own keys, all declared in KEYS and sharing
// the room's hash slot (a `{…}` hash tag), so the same scripts run on one
// Redis and on Redis Cluster. Each mutation checks, writes, bumps the room
// seq, logs and publishes in one atomic step, so seq order == publish order.
//
// Room keys (B = prefix + the room's hash tag, see `roomBase` in redis.ts):
//   B q        string   the room's seq
//   B o        hash     cid -> "<join seq>:<generation>:<owner instance>"
//   B m        hash     cid -> metadata JSON at join
//   B s        hash     cid -> "<expiresAt|empty>:<version>:<state JSON>"
//   B l        list     the last events for catch-up: "<ms> <JSON>"
//   B u        hash     cid -> user (members that have one)
//   B n        hash     user -> its connections here ("\0<cid>" -> 1 for a
//                       member without a user): HLEN = users
//   B x        zset     cid -> when its state expires
//   B w        hash     instance -> its write counter in this room: it goes
//                       back only when Redis lost writes (a rollback)
//   B c        channel  event batches (PUBLISH, or SPUBLISH on a cluster)
//   B h:<hook> hash     idempotency key -> "<attempt> <event JSON>"
//   B d:<hook> zset     idempotency key -> when it is due (claim lease)
//
// Everything that spans rooms is an index outside the room's slot, written
// by the caller around the room script and checked against the room when
// read (see redis.ts): which rooms an instance has members in, which rooms
// are listed, a user's rooms, rooms with due states or due hook events.
//
// Time: every instant in the scripts is on Redis's clock (the caller
// translates by an offset it measures against TIME at each lease renewal).

/**
 * Prelude of the room scripts. ARGV[1..5]: key TTL ms, log length, log TTL
 * ms, publish command, hook count H; ARGV[6..5+H]: each hook's event letters
 * (j, l, s); the script's own arguments follow (`arg(1)` is the room).
 * KEYS[1..10]: q o m s l u n x w c; then h:<hook>, d:<hook> per hook.
 */
const ROOM_PRELUDE = `
local KEYTTL = ARGV[1]
local LOGLEN = tonumber(ARGV[2])
local LOGTTL = ARGV[3]
local PUB = ARGV[4]
local NH = tonumber(ARGV[5])
local A = 5 + NH
local Q, O, M, S, L, U, N, X, W, C = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local function arg(i) return ARGV[A + i] end
local ROOM = arg(1)
local out = {}
local pub = {}
local function enc(s) return cjson.encode(s) end
-- "<seq>:<generation>:<instance>" -> seq, generation, instance
local function ownerParts(o)
  local a = string.find(o, ':', 1, true)
  local b = string.find(o, ':', a + 1, true)
  return string.sub(o, 1, a - 1), tonumber(string.sub(o, a + 1, b - 1)), string.sub(o, b + 1)
end
local function stateParts(v)
  local a = string.find(v, ':', 1, true)
  local b = string.find(v, ':', a + 1, true)
  return string.sub(v, 1, a - 1), string.sub(v, a + 1, b - 1), string.sub(v, b + 1)
end
local function nextseq()
  local s = redis.call('INCR', Q)
  redis.call('PEXPIRE', Q, KEYTTL)
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
-- Queue the event for every presence hook that takes its kind (j, l, s).
local function enqueue(ev, kind, key)
  for h = 1, NH do
    if string.find(ARGV[5 + h], kind, 1, true) then
      local hk, dk = KEYS[9 + 2 * h], KEYS[10 + 2 * h]
      redis.call('HSET', hk, key, '0 ' .. ev)
      redis.call('ZADD', dk, 0, key)
      redis.call('PEXPIRE', hk, KEYTTL)
      redis.call('PEXPIRE', dk, KEYTTL)
    end
  end
end
local function emit(ev, kind, seq, now)
  enqueue(ev, kind, ROOM .. ':' .. seq .. ':' .. now)
  rtime()
  redis.call('RPUSH', L, clock .. ' ' .. ev)
  redis.call('LTRIM', L, -LOGLEN, -1)
  redis.call('PEXPIRE', L, LOGTTL)
  out[#out + 1] = ev
  pub[#pub + 1] = ev
end
-- The writing instance's counter in this room, answered with the result
-- ("<count>:<instance>"): it goes back only when Redis lost acknowledged
-- writes (a rollback).
local stamp = ''
local function bump(inst)
  local w = redis.call('HINCRBY', W, inst, 1)
  redis.call('PEXPIRE', W, KEYTTL)
  stamp = w .. ':' .. inst
end
local function result(status)
  if #pub > 0 then redis.call(PUB, C, '[' .. table.concat(pub, ',') .. ']') end
  local r = { status, stamp }
  for i, e in ipairs(out) do r[i + 2] = e end
  return r
end
local function missed(since)
  if since < 0 then return end
  local cur = tonumber(redis.call('GET', Q) or '0')
  local n = cur - since
  if n <= 0 then return end
  if n > LOGLEN then n = LOGLEN end
  for _, e in ipairs(redis.call('LRANGE', L, -n, -1)) do
    out[#out + 1] = string.sub(e, string.find(e, ' ', 1, true) + 1)
  end
end
local function head(kind, cid, seq)
  return '{"type":"' .. kind .. '","room":' .. enc(ROOM) .. ',"connectionId":' .. enc(cid) .. ',"seq":' .. seq
end
local function emitLeave(cid, reason, now, extra)
  local seq = nextseq()
  emit(head('leave', cid, seq) .. ',"reason":"' .. reason .. '","timestamp":' .. now .. extra .. '}', 'l', seq, now)
end
local function emitExpired(cid, now)
  local seq = nextseq()
  emit(head('state', cid, seq) .. ',"state":null,"expired":true,"timestamp":' .. now .. '}', 's', seq, now)
end
-- Remove a member and its counters; answers the leave event's user fields.
local function dropMember(cid)
  redis.call('HDEL', O, cid)
  redis.call('HDEL', M, cid)
  redis.call('HDEL', S, cid)
  redis.call('ZREM', X, cid)
  local user = redis.call('HGET', U, cid)
  local extra = ''
  if user then
    redis.call('HDEL', U, cid)
    extra = ',"user":' .. enc(user)
    if redis.call('HINCRBY', N, user, -1) <= 0 then
      redis.call('HDEL', N, user)
      extra = extra .. ',"lastOfUser":true'
    end
  else
    redis.call('HDEL', N, '\\0' .. cid)
  end
  return extra
end
-- The earliest state expiry left in the room, '' when none.
local function nextDue()
  local first = redis.call('ZRANGE', X, 0, 0, 'WITHSCORES')
  if #first == 0 then return '' end
  return first[2]
end
`;

/** args: room, cid, instance, generation, meta JSON, now, since, user (empty: none). */
const JOIN = `
local cid, inst, gen, meta, now, user = arg(2), arg(3), arg(4), arg(5), arg(6), arg(8)
missed(tonumber(arg(7)))
local cur = redis.call('HGET', O, cid)
if cur then
  -- Registered again by a newer generation of its instance (after a reset):
  -- it now belongs to that generation, so reaping the old one spares it.
  local s, g, owner = ownerParts(cur)
  if owner == inst and g < tonumber(gen) then
    redis.call('HSET', O, cid, s .. ':' .. gen .. ':' .. inst)
  end
  return result('null')
end
local first = redis.call('HLEN', O) == 0
local seq = nextseq()
bump(inst)
redis.call('HSET', O, cid, seq .. ':' .. gen .. ':' .. inst)
redis.call('HSET', M, cid, meta)
redis.call('PEXPIRE', O, KEYTTL)
redis.call('PEXPIRE', M, KEYTTL)
local extra = ''
if user ~= '' then
  redis.call('HSET', U, cid, user)
  redis.call('PEXPIRE', U, KEYTTL)
  extra = ',"user":' .. enc(user)
  if redis.call('HINCRBY', N, user, 1) == 1 then extra = extra .. ',"firstOfUser":true' end
else
  redis.call('HSET', N, '\\0' .. cid, 1)
end
redis.call('PEXPIRE', N, KEYTTL)
emit(head('join', cid, seq) .. ',"meta":' .. meta .. ',"instance":' .. enc(inst) .. ',"timestamp":' .. now .. extra .. '}', 'j', seq, now)
if first then return result('first') end
return result('ok')
`;

/** args: room, cid, reason, now, since. */
const LEAVE = `
local cid, reason, now = arg(2), arg(3), arg(4)
missed(tonumber(arg(5)))
local o = redis.call('HGET', O, cid)
if not o then return result('null') end
local _, _, owner = ownerParts(o)
bump(owner)
emitLeave(cid, reason, now, dropMember(cid))
return result('ok')
`;

/**
 * args: room, cid, mode (set | patch | clear), state JSON, patch JSON,
 * expiresAt (empty: none), now, expected version (patch), since.
 * A patch carries the merged state computed by the caller from the version
 * it read; a different current version answers "conflict" and changes nothing.
 */
const SET_STATE = `
local cid, mode, value, patch, expiresAt, now, expect = arg(2), arg(3), arg(4), arg(5), arg(6), arg(7), arg(8)
missed(tonumber(arg(9)))
local owner = redis.call('HGET', O, cid)
if not owner then return result('not_member') end
local cur = redis.call('HGET', S, cid)
local version = '0'
local expired = false
if cur then
  local at, v = stateParts(cur)
  if at ~= '' and tonumber(at) <= tonumber(now) then expired = true else version = v end
end
if mode == 'patch' and version ~= expect then return result('conflict') end
local _, _, inst = ownerParts(owner)
bump(inst)
if expired then
  redis.call('HDEL', S, cid)
  redis.call('ZREM', X, cid)
  emitExpired(cid, now)
  cur = false
end
if mode == 'clear' then
  if not cur then return result('null') end
  redis.call('HDEL', S, cid)
  redis.call('ZREM', X, cid)
  local cseq = nextseq()
  emit(head('state', cid, cseq) .. ',"state":null,"timestamp":' .. now .. '}', 's', cseq, now)
  return result('ok')
end
local seq = nextseq()
redis.call('HSET', S, cid, expiresAt .. ':' .. seq .. ':' .. value)
redis.call('PEXPIRE', S, KEYTTL)
if expiresAt ~= '' then
  redis.call('ZADD', X, expiresAt, cid)
  redis.call('PEXPIRE', X, KEYTTL)
else
  redis.call('ZREM', X, cid)
end
local ev = head('state', cid, seq) .. ',"state":' .. value
if mode == 'patch' then ev = ev .. ',"patch":' .. patch end
emit(ev .. ',"timestamp":' .. now .. '}', 's', seq, now)
return result('ok')
`;

/** args: room, cid, now. Answers {member?, version, state JSON}. */
const READ_STATE = `
local cid, now = arg(2), arg(3)
if redis.call('HEXISTS', O, cid) == 0 then return { '0' } end
local cur = redis.call('HGET', S, cid)
if not cur then return { '1', '0' } end
local at, v, json = stateParts(cur)
if at ~= '' and tonumber(at) <= tonumber(now) then return { '1', '0' } end
return { '1', v, json }
`;

/** args: room. Answers {seq, n, o..., n, m..., n, s..., n, u...}. */
const SNAPSHOT = `
local r = { redis.call('GET', Q) or '0' }
for _, k in ipairs({ O, M, S, U }) do
  local h = redis.call('HGETALL', k)
  r[#r + 1] = tostring(#h)
  for _, v in ipairs(h) do r[#r + 1] = v end
end
return r
`;

/**
 * args: room, now, max. Clears up to `max` due states (one expired event
 * each); the status is the room's next expiry ('' when none).
 */
const EXPIRE = `
local now, max = arg(2), tonumber(arg(3))
for _, cid in ipairs(redis.call('ZRANGEBYSCORE', X, '-inf', now, 'LIMIT', 0, max)) do
  redis.call('ZREM', X, cid)
  local cur = redis.call('HGET', S, cid)
  if cur then
    local at = stateParts(cur)
    if at ~= '' and tonumber(at) <= tonumber(now) then
      redis.call('HDEL', S, cid)
      emitExpired(cid, now)
    end
  end
end
return result(nextDue())
`;

/**
 * args: room, instance, generation, reason, now. Removes the instance's
 * members of that generation or older (a newer one registered them again).
 */
const REAP = `
local inst, gen, reason, now = arg(2), tonumber(arg(3)), arg(4), arg(5)
local all = redis.call('HGETALL', O)
for i = 1, #all, 2 do
  local _, g, owner = ownerParts(all[i + 1])
  if owner == inst and g <= gen then
    emitLeave(all[i], reason, now, dropMember(all[i]))
  end
end
return result('ok')
`;

/** args: room, instance. Answers the members the instance owns here. */
const ROOM_OWNED = `
local inst = arg(2)
local r = {}
local all = redis.call('HGETALL', O)
for i = 1, #all, 2 do
  local _, _, owner = ownerParts(all[i + 1])
  if owner == inst then r[#r + 1] = all[i] end
end
return r
`;

/**
 * args: room, since, age ms. With since >= 0: the logged events after seq
 * `since`. Else (a new watch): those appended in the last `age` ms.
 * Answers {seq, events...}.
 */
const CATCH_UP = `
local since, age = tonumber(arg(2)), tonumber(arg(3))
local cur = redis.call('GET', Q) or '0'
local r = { cur }
if since >= 0 then
  local n = math.min(tonumber(cur) - since, LOGLEN)
  if n > 0 then
    for _, e in ipairs(redis.call('LRANGE', L, -n, -1)) do
      r[#r + 1] = string.sub(e, string.find(e, ' ', 1, true) + 1)
    end
  end
  return r
end
local from = tonumber(rtime()) - age
for _, e in ipairs(redis.call('LRANGE', L, 0, -1)) do
  local i = string.find(e, ' ', 1, true)
  if tonumber(string.sub(e, 1, i - 1)) >= from then r[#r + 1] = string.sub(e, i + 1) end
end
return r
`;

/** args: room. Answers {connections, users}. */
const COUNT = `
return { redis.call('HLEN', O), redis.call('HLEN', N) }
`;

/** args: room, user. Answers 1 when the user has a member here, else 0. */
const HAS_USER = `
return redis.call('HEXISTS', N, arg(2))
`;

/** args: room, instance. Answers the instance's write counter here ('0': none). */
const COUNTER = `
return redis.call('HGET', W, arg(2)) or '0'
`;

/** args: room. Refreshes the TTL backstop of the room's keys. */
const TOUCH = `
for i = 1, #KEYS do
  if i ~= 10 then redis.call('PEXPIRE', KEYS[i], KEYTTL) end
end
return 'ok'
`;

/**
 * args: room, now, lease ms, max; the hook's keys come first (letters '').
 * Answers {next due ('' when none), key, attempt, event, ...} for the due
 * events, each hidden until now + lease.
 */
const CLAIM_HOOK = `
local now, lease, max = tonumber(arg(2)), tonumber(arg(3)), tonumber(arg(4))
local hk, dk = KEYS[11], KEYS[12]
local r = { '' }
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
local first = redis.call('ZRANGE', dk, 0, 0, 'WITHSCORES')
if #first > 0 then r[1] = first[2] end
return r
`;

/** args: room, key, retry time (empty: delivered, remove it). */
const SETTLE_HOOK = `
local key, at = arg(2), arg(3)
local hk, dk = KEYS[11], KEYS[12]
if at == '' then
  redis.call('HDEL', hk, key)
  redis.call('ZREM', dk, key)
elseif redis.call('HEXISTS', hk, key) == 1 then
  redis.call('ZADD', dk, at, key)
end
return 'ok'
`;

/** args: room. Drops the hook's queue in the room (its keys come first). */
const DROP_HOOK_ROOM = `
redis.call('DEL', KEYS[11], KEYS[12])
return 'ok'
`;

// -- Scripts outside rooms: each touches one slot, its keys in KEYS ----------

/**
 * KEYS: leases, lease:<inst>, w:<inst>, gens, reaping, ir:<inst>, k:<inst>,
 * gen counter. ARGV: instance, lease expiry, ttl ms, key ttl ms. Answers
 * {'1' when it held a live lease else '0', Redis's TIME in ms, the renewal
 * counter, the instance's generation}. An instance without a lease, or being
 * reaped, starts a new generation: what an older one registered is reaped.
 */
const RENEW = `
local inst, at, ttl, keyttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local t = redis.call('TIME')
local nowMs = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local w = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], keyttl)
local held = redis.call('ZSCORE', KEYS[1], inst) and redis.call('HEXISTS', KEYS[5], inst) == 0
local gen = redis.call('HGET', KEYS[4], inst)
if not held or not gen then
  gen = tostring(redis.call('INCR', KEYS[8]))
  redis.call('HSET', KEYS[4], inst, gen)
end
redis.call('PEXPIRE', KEYS[4], keyttl)
redis.call('ZADD', KEYS[1], at, inst)
redis.call('PEXPIRE', KEYS[1], keyttl)
redis.call('SET', KEYS[2], at, 'PX', ttl)
redis.call('PEXPIRE', KEYS[6], keyttl)
redis.call('PEXPIRE', KEYS[7], keyttl)
if held then return { '1', nowMs, tostring(w), gen } end
return { '0', nowMs, tostring(w), gen }
`;

/**
 * KEYS: leases, reaping, gens, ir:<inst>, k:<inst>. ARGV: instance, now,
 * claim until. Claims a lapsed instance for reaping (hidden from other
 * sweepers until `until`; another one takes over if this one dies).
 * Answers nil when it is not lapsed, else {generation, n, rooms..., cids...}.
 */
const CLAIM_REAP = `
local inst, now, untilMs = ARGV[1], ARGV[2], ARGV[3]
local s = redis.call('ZSCORE', KEYS[1], inst)
if not s or tonumber(s) > tonumber(now) then return false end
redis.call('ZADD', KEYS[1], untilMs, inst)
redis.call('HSET', KEYS[2], inst, '1')
local r = { redis.call('HGET', KEYS[3], inst) or '0' }
local rooms = redis.call('SMEMBERS', KEYS[4])
r[2] = tostring(#rooms)
for _, room in ipairs(rooms) do r[#r + 1] = room end
for _, cid in ipairs(redis.call('SMEMBERS', KEYS[5])) do r[#r + 1] = cid end
return r
`;

/**
 * KEYS: leases, lease:<inst>, reaping, gens, ir:<inst>, k:<inst>, w:<inst>.
 * ARGV: instance, generation reaped ('' after a release: unconditional).
 * Forgets the instance, unless a newer generation renewed it meanwhile.
 */
const FINISH_REAP = `
local inst, gen = ARGV[1], ARGV[2]
redis.call('HDEL', KEYS[3], inst)
if gen == '' or (redis.call('HGET', KEYS[4], inst) or '0') == gen then
  redis.call('ZREM', KEYS[1], inst)
  redis.call('DEL', KEYS[2], KEYS[5], KEYS[6], KEYS[7])
  redis.call('HDEL', KEYS[4], inst)
end
return 'ok'
`;

/** KEYS: d:<cid>. ARGV: instance, generation. Deletes the metadata it owns. */
const DROP_META = `
if redis.call('HGET', KEYS[1], 'i') == ARGV[1] and tonumber(redis.call('HGET', KEYS[1], 'g') or '0') <= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
end
return 'ok'
`;

/**
 * KEYS: index zset, its version hash. ARGV: member, version read before the
 * member's room was looked at, the new score ('' to remove). Settles an index
 * entry after its room was processed: when no writer touched it meanwhile
 * (same version), it takes the room's answer; else it only ever moves
 * earlier, so a write that raced the processing keeps its entry.
 */
const SETTLE_INDEX = `
local member, seen, score = ARGV[1], ARGV[2], ARGV[3]
local cur = redis.call('HGET', KEYS[2], member) or ''
if cur == seen then
  if score == '' then
    redis.call('ZREM', KEYS[1], member)
    redis.call('HDEL', KEYS[2], member)
  else
    redis.call('ZADD', KEYS[1], score, member)
  end
elseif score ~= '' then
  local s = redis.call('ZSCORE', KEYS[1], member)
  if not s or tonumber(score) < tonumber(s) then redis.call('ZADD', KEYS[1], score, member) end
end
return 'ok'
`;

/** KEYS: index set, its version hash. ARGV: member, version seen. Drops a stale entry. */
const SETTLE_SET = `
if (redis.call('HGET', KEYS[2], ARGV[1]) or '') == ARGV[2] then
  redis.call('SREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return 'ok'
`;

/** KEYS: epoch. ARGV: a fresh epoch id. Answers {epoch, created?}. */
const EPOCH = `
local e = redis.call('GET', KEYS[1])
if e then return { e, '0' } end
redis.call('SET', KEYS[1], ARGV[1])
return { ARGV[1], '1' }
`;

/** KEYS: hooks. ARGV: hook name, letters. Widens the registration; answers all. */
const REGISTER_HOOK = `
local name, letters = ARGV[1], ARGV[2]
local cur = redis.call('HGET', KEYS[1], name) or ''
local out = ''
for _, c in ipairs({ 'j', 'l', 's' }) do
  if string.find(cur, c, 1, true) or string.find(letters, c, 1, true) then out = out .. c end
end
redis.call('HSET', KEYS[1], name, out)
return redis.call('HGETALL', KEYS[1])
`;

/**
 * KEYS: an index (zset), its version hash. ARGV: max score, limit. Answers
 * {member, version, ...} of the entries due by then: the versions are read
 * before the rooms are looked at, for `SETTLE_INDEX`.
 */
const INDEX_DUE = `
local r = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))) do
  r[#r + 1] = m
  r[#r + 1] = redis.call('HGET', KEYS[2], m) or ''
end
return r
`;

/**
 * KEYS: the room list (zset, score 0), its version hash. ARGV: name prefix,
 * cursor (empty: none), limit. Answers {name, version, ...} in name order.
 */
const INDEX_LEX = `
local prefix, cursor, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local lo = '-'
if cursor ~= '' then lo = '(' .. cursor elseif prefix ~= '' then lo = '[' .. prefix end
local hi = '+'
if prefix ~= '' then hi = '(' .. prefix .. '\\255' end
local r = {}
for _, m in ipairs(redis.call('ZRANGEBYLEX', KEYS[1], lo, hi, 'LIMIT', 0, limit)) do
  r[#r + 1] = m
  r[#r + 1] = redis.call('HGET', KEYS[2], m) or ''
end
return r
`;

/** KEYS: an index (set), its version hash. Answers {member, version, ...}. */
const INDEX_SET = `
local r = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  r[#r + 1] = m
  r[#r + 1] = redis.call('HGET', KEYS[2], m) or ''
end
return r
`;

/** KEYS: one key. ARGV: a command and its arguments after the key. Plain replies. */
const CALL = `
return redis.call(ARGV[1], KEYS[1], unpack(ARGV, 2))
`;

/** Room scripts (the room's keys, hooks, arguments). */
export const ROOM_SCRIPTS = {
  join: ROOM_PRELUDE + JOIN,
  leave: ROOM_PRELUDE + LEAVE,
  setState: ROOM_PRELUDE + SET_STATE,
  readState: ROOM_PRELUDE + READ_STATE,
  snapshot: ROOM_PRELUDE + SNAPSHOT,
  expire: ROOM_PRELUDE + EXPIRE,
  reap: ROOM_PRELUDE + REAP,
  roomOwned: ROOM_PRELUDE + ROOM_OWNED,
  catchUp: ROOM_PRELUDE + CATCH_UP,
  count: ROOM_PRELUDE + COUNT,
  counter: ROOM_PRELUDE + COUNTER,
  hasUser: ROOM_PRELUDE + HAS_USER,
  touch: ROOM_PRELUDE + TOUCH,
  claimHook: ROOM_PRELUDE + CLAIM_HOOK,
  settleHook: ROOM_PRELUDE + SETTLE_HOOK,
  dropHookRoom: ROOM_PRELUDE + DROP_HOOK_ROOM,
} as const;

/** Scripts on one slot outside the rooms (their keys, their arguments). */
export const SLOT_SCRIPTS = {
  renew: RENEW,
  claimReap: CLAIM_REAP,
  finishReap: FINISH_REAP,
  dropMeta: DROP_META,
  settleIndex: SETTLE_INDEX,
  settleSet: SETTLE_SET,
  epoch: EPOCH,
  registerHook: REGISTER_HOOK,
  indexDue: INDEX_DUE,
  indexLex: INDEX_LEX,
  indexSet: INDEX_SET,
  call: CALL,
} as const;

/** The name of a room script. */
export type RoomScript = keyof typeof ROOM_SCRIPTS;
/** The name of a script outside the rooms. */
export type SlotScript = keyof typeof SLOT_SCRIPTS;
