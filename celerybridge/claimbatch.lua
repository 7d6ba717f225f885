-- claimbatch.lua: take a run of messages from the tail of one list and, in
-- the same atomic step, record each as unacked exactly as claim.lua does, or
-- dead-letter it, for messages the caller has already read and judged.
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
-- KEYS[1]   unacked        hash   tag -> '[<envelope>, "<exchange>", "<routing_key>"]'
-- KEYS[2]   unacked_index  zset   tag -> claim time, float seconds (Redis TIME)
-- KEYS[3]   dead-letter    list
-- KEYS[4]   the list the messages were peeked from
-- KEYS[5..] the lists that come before it in consume order: if one is no
--           longer empty, nothing is claimed (the caller peeks again, so a
--           higher priority message is not overtaken)
-- ARGV[1]   separator for a second in-flight copy of one tag (see claim.lua)
-- ARGV[2..] three per message, in pop order (the tail first):
--             raw   the envelope as peeked
--             tag   its delivery tag; "" when it is to be dead-lettered
--             rest  for a claim, the end of the record after the envelope:
--                   ', "<exchange>", "<routing_key>"]'; for a dead letter,
--                   the record up to its time: '{"reason": ..., "at": '
--
-- Returns {score, field_1, ..., field_n}: the claim time (as the
-- unacked_index score), then one entry per message claimed or dead-lettered,
-- in pop order: its unacked field, or "" for a dead letter. Messages after
-- the n-th were not taken.

if redis.replicate_commands then pcall(redis.replicate_commands) end

local now = redis.call('TIME')
local score = string.format('%d.%06d', now[1], now[2])

for i = 5, #KEYS do
  if redis.call('LLEN', KEYS[i]) > 0 then return { score } end
end

local want = (#ARGV - 1) / 3
local popped = redis.call('RPOP', KEYS[4], want)
if not popped then return { score } end

-- The run of popped messages that are the ones judged.
local n = 0
while n < #popped and popped[n + 1] == ARGV[2 + 3 * n] do n = n + 1 end
if n < #popped then
  local back = {}
  for i = #popped, n + 1, -1 do back[#back + 1] = popped[i] end
  redis.call('RPUSH', KEYS[4], unpack(back))
end

local out = { score }
local hset, zadd, dead = {}, {}, {}
local taken = {} -- fields recorded by this call
local tags = {}
for i = 0, n - 1 do
  local tag = ARGV[3 + 3 * i]
  if tag ~= '' then tags[#tags + 1] = tag end
end
local existing = {}
if #tags > 0 then
  local got = redis.call('HMGET', KEYS[1], unpack(tags))
  for i, tag in ipairs(tags) do
    if got[i] then existing[tag] = true end
  end
end
for i = 0, n - 1 do
  local raw, tag, rest = ARGV[2 + 3 * i], ARGV[3 + 3 * i], ARGV[4 + 3 * i]
  if tag == '' then
    dead[#dead + 1] = rest .. score .. '}'
    out[#out + 1] = ''
  else
    -- As claim.lua: a second copy of a tag in flight gets its own field.
    local field = tag
    if existing[field] or taken[field] then
      local k = 1
      while taken[tag .. ARGV[1] .. k] or redis.call('HEXISTS', KEYS[1], tag .. ARGV[1] .. k) == 1 do k = k + 1 end
      field = tag .. ARGV[1] .. k
    end
    taken[field] = true
    hset[#hset + 1] = field
    hset[#hset + 1] = '[' .. raw .. rest
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
return out
