-- settle.lua: end the side-car's claims of a batch of messages and hand each
-- off, every one in one atomic step, if and only if its claim is still ours;
-- count the outcomes.
--
-- KEYS[1]  unacked        hash  kombu's unacked records: tag -> '[<envelope>, "<exchange>", "<routing_key>"]'
-- KEYS[2]  unacked_index  zset  tag -> claim time
-- KEYS[3]  counter hash "seen"        field: task name
-- KEYS[4]  counter hash "duplicate"
-- then three per message i = 0, 1, ...:
-- KEYS[5+3i]  destination: the list to LPUSH to (push), the parked zset
--             (park); unused for ack
-- KEYS[6+3i]  counter hash of the outcome (passed, shadowed, rerouted, ...)
-- KEYS[7+3i]  once marker (string) or unused
-- and seven ARGV per message, from ARGV[1+7i]:
--   tag      the unacked field
--   raw      the envelope exactly as claimed
--   action   "push" | "park" | "ack"
--   payload  what to push, or the parked member
--   score    the parked member's score (due time, unix seconds)
--   field    counter field (the task name); "" counts nothing
--   ttl      once marker TTL in seconds; "" for no marker
--
-- Returns one result per message: 1 when settled; 0 when the record is gone
-- or holds another envelope (a visibility-timeout scan restored the message
-- and someone may be processing it again: do nothing, they will settle it);
-- 2 when the once marker exists (this task id was handed off before: the
-- message is acked, nothing is pushed, it is counted a duplicate).
--
-- A claimed message is thus at every instant in exactly one place: waiting
-- in a queue, in unacked, parked, or handed off, whatever dies when. The
-- record check matters: kombu restores a message with the same tag, so
-- after a restore and a new claim the tag alone would let a slow, older
-- holder ack the new claim. A batch is one script only to spare Redis the
-- per-call cost; no message's fate depends on another's.

local n = #ARGV / 7
local tags = {}
for i = 0, n - 1 do tags[i + 1] = ARGV[1 + 7 * i] end
local recs = redis.call('HMGET', KEYS[1], unpack(tags))

local results, seen, settled = {}, {}, {}
local pushes, dests = {}, {} -- dest -> payloads in order; dests in first-use order
local counts, order = {}, {} -- key .. '\0' .. field -> increment
local function count(key, field)
  local k = key .. '\0' .. field
  if not counts[k] then
    counts[k] = 0
    order[#order + 1] = { key, field, k }
  end
  counts[k] = counts[k] + 1
end

for i = 0, n - 1 do
  local tag, raw, action, payload = ARGV[1 + 7 * i], ARGV[2 + 7 * i], ARGV[3 + 7 * i], ARGV[4 + 7 * i]
  local score, field, ttl = ARGV[5 + 7 * i], ARGV[6 + 7 * i], ARGV[7 + 7 * i]
  local dest, counter, once = KEYS[5 + 3 * i], KEYS[6 + 3 * i], KEYS[7 + 3 * i]
  local rec = recs[i + 1]
  if seen[tag] or not rec or string.sub(rec, 2, #raw + 1) ~= raw or string.sub(rec, #raw + 2, #raw + 3) ~= ', ' then
    results[i + 1] = 0
  else
    seen[tag] = true
    settled[#settled + 1] = tag
    if action == 'park' then
      redis.call('ZADD', dest, score, payload)
      results[i + 1] = 1
    elseif ttl ~= '' and redis.call('SET', once, '1', 'NX', 'EX', ttl) == false then
      if field ~= '' then
        count(KEYS[3], field)
        count(KEYS[4], field)
      end
      results[i + 1] = 2
    else
      if action == 'push' then
        if not pushes[dest] then
          pushes[dest] = {}
          dests[#dests + 1] = dest
        end
        local p = pushes[dest]
        p[#p + 1] = payload
      end
      if field ~= '' then
        count(KEYS[3], field)
        count(counter, field)
      end
      results[i + 1] = 1
    end
  end
end
if #settled > 0 then
  redis.call('HDEL', KEYS[1], unpack(settled))
  redis.call('ZREM', KEYS[2], unpack(settled))
end
-- One LPUSH per list with its payloads in order is the same as one each.
for _, dest in ipairs(dests) do
  redis.call('LPUSH', dest, unpack(pushes[dest]))
end
for _, c in ipairs(order) do
  redis.call('HINCRBY', c[1], c[2], counts[c[3]])
end
return results
