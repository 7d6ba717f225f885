-- unpark.lua: put parked messages (reroute messages with an eta, held by the
-- side-car until due) back at the head of the intercept queue's list they
-- came from, atomically per message.
--
-- KEYS[1]  parked zset: member "<list key>\0<tag>\0<envelope>", score = due time
-- KEYS[2]  list receiving members not in that form (never written by the
--          side-car; kept, not dropped)
-- ARGV[1]  "due": every member due by the server's clock, at most ARGV[2];
--          "member": ARGV[2] only, whatever its due time
--
-- Returns how many were moved. The lists are not in KEYS: they are named by
-- the members (kombu's Redis transport is not cluster-safe either).

local function release(m)
  if redis.call('ZREM', KEYS[1], m) == 0 then return 0 end
  local a = string.find(m, '\0', 1, true)
  local b = a and string.find(m, '\0', a + 1, true)
  if not b or a == 1 then
    redis.call('LPUSH', KEYS[2], m)
    return 0
  end
  redis.call('RPUSH', string.sub(m, 1, a - 1), string.sub(m, b + 1))
  return 1
end

if ARGV[1] == 'member' then
  return release(ARGV[2])
end
local now = redis.call('TIME')
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now[1] .. '.' .. string.format('%06d', now[2]),
  'LIMIT', 0, tonumber(ARGV[2]))
local n = 0
for _, m in ipairs(due) do
  n = n + release(m)
end
return n
