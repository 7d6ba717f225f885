-- claimbatch.lua: take a run of messages from the tail of one list and, in
-- the same atomic step, do with each what the caller decided: record it as
-- unacked exactly as claim.lua does, dead-letter it, or forward it, for
-- messages the caller has already read and judged.
--
-- claim.lua judges every message in Lua, which costs Redis about 100 µs of
-- its single thread per message. Here the caller peeks at the tail (LRANGE),
-- applies the same claim rule in Go (claimCheck, held to claim.lua by
-- FuzzClaimRule and to this script by FuzzClaimBatchRule), and sends the
-- messages back with their verdicts. The script pops them and goes on only
-- while each popped message is byte for byte the one judged, so a verdict is
-- never applied to anything else: a message another consumer took in between
-- stops the run, and whatever was popped past that point is pushed back
-- where it was.
--
-- A forwarded message moves from this list onto another in this one step:
-- it is never unacked, and at every instant it is on exactly one of the two
-- lists, whoever dies when.
--
-- KEYS[1]   unacked        hash   tag -> '[<envelope>, "<exchange>", "<routing_key>"]'
-- KEYS[2]   unacked_index  zset   tag -> claim time, float seconds (Redis TIME)
-- KEYS[3]   dead-letter    list
-- KEYS[4]   the list the messages were peeked from
-- KEYS[5 .. 4+h]
--           the h lists that come before it in consume order: if one is no
--           longer empty, nothing is taken (the caller peeks again, so a
--           higher priority message is not overtaken)
-- KEYS[5+h .. 4+h+c]
--           c counter hashes: each forwarded message's count field is
--           incremented in every one of them
-- KEYS[5+h+c ..]
--           the lists messages are forwarded to
-- ARGV[1]   separator for a second in-flight copy of one tag (see claim.lua)
-- ARGV[2]   h
-- ARGV[3]   c
-- ARGV[4..] four per message, in pop order (the tail first):
--             raw   the envelope as peeked
--             what  'c' claim, 'd' dead letter, 'f' forward
--             a     claim: its delivery tag; dead letter: the record up to
--                   its time, '{"reason": ..., "at": '; forward: the index
--                   in KEYS of the list it goes to
--             b     claim: the end of the record after the envelope,
--                   ', "<exchange>", "<routing_key>"]'; forward: the count
--                   field ('' counts nothing); dead letter: unused
--
-- Returns {score, r_1, ..., r_n}: the claim time (as the unacked_index
-- score), then one entry per message taken, in pop order: a claim's unacked
-- field, "" for a dead letter or a forward. Messages after the n-th were not
-- taken.

if redis.replicate_commands then pcall(redis.replicate_commands) end

local now = redis.call('TIME')
local score = string.format('%d.%06d', now[1], now[2])

local ahead, ncounters = tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 5, 4 + ahead do
  if redis.call('LLEN', KEYS[i]) > 0 then return { score } end
end

local want = (#ARGV - 3) / 4
local popped = redis.call('RPOP', KEYS[4], want)
if not popped then return { score } end

-- The run of popped messages that are the ones judged.
local n = 0
while n < #popped and popped[n + 1] == ARGV[4 + 4 * n] do n = n + 1 end
if n < #popped then
  local back = {}
  for i = #popped, n + 1, -1 do back[#back + 1] = popped[i] end
  redis.call('RPUSH', KEYS[4], unpack(back))
end

local out = { score }
local hset, zadd, dead = {}, {}, {}
local pushes, dests = {}, {} -- KEYS index -> payloads in pop order; indexes in first-use order
local counts, fields = {}, {} -- count field -> increment; fields in first-use order
local taken = {} -- fields recorded by this call
local tags = {}
for i = 0, n - 1 do
  if ARGV[5 + 4 * i] == 'c' then tags[#tags + 1] = ARGV[6 + 4 * i] end
end
local existing = {}
if #tags > 0 then
  local got = redis.call('HMGET', KEYS[1], unpack(tags))
  for i, tag in ipairs(tags) do
    if got[i] then existing[tag] = true end
  end
end
for i = 0, n - 1 do
  local raw, what, a, b = ARGV[4 + 4 * i], ARGV[5 + 4 * i], ARGV[6 + 4 * i], ARGV[7 + 4 * i]
  if what == 'd' then
    dead[#dead + 1] = a .. score .. '}'
    out[#out + 1] = ''
  elseif what == 'f' then
    local k = tonumber(a)
    if not pushes[k] then
      pushes[k] = {}
      dests[#dests + 1] = k
    end
    local p = pushes[k]
    p[#p + 1] = raw
    if b ~= '' then
      if not counts[b] then
        counts[b] = 0
        fields[#fields + 1] = b
      end
      counts[b] = counts[b] + 1
    end
    out[#out + 1] = ''
  else
    -- As claim.lua: a second copy of a tag in flight gets its own field.
    local field = a
    if existing[field] or taken[field] then
      local k = 1
      while taken[a .. ARGV[1] .. k] or redis.call('HEXISTS', KEYS[1], a .. ARGV[1] .. k) == 1 do k = k + 1 end
      field = a .. ARGV[1] .. k
    end
    taken[field] = true
    hset[#hset + 1] = field
    hset[#hset + 1] = '[' .. raw .. b
    zadd[#zadd + 1] = score
    zadd[#zadd + 1] = field
    out[#out + 1] = field
  end
end
if #hset > 0 then
  redis.call('HSET', KEYS[1], unpack(hset))
  redis.call('ZADD', KEYS[2], unpack(zadd))
end
if #dead > 0 then
  redis.call('LPUSH', KEYS[3], unpack(dead))
end
-- LPUSH in pop order keeps each destination FIFO for its BRPOP consumers.
-- unpack is bounded by Lua's stack: a batch is at most 512 messages.
for _, k in ipairs(dests) do
  redis.call('LPUSH', KEYS[k], unpack(pushes[k]))
end
for _, f in ipairs(fields) do
  for j = 5 + ahead, 4 + ahead + ncounters do
    redis.call('HINCRBY', KEYS[j], f, counts[f])
  end
end
return out
