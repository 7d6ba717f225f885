-- settle.lua: end the side-car's claim of one message and hand it off, in one
-- atomic step, if and only if the claim is still ours; count the outcome.
--
-- KEYS[1]  unacked        hash  kombu's unacked records: tag -> '[<envelope>, "<exchange>", "<routing_key>"]'
-- KEYS[2]  unacked_index  zset  tag -> claim time
-- KEYS[3]  destination: the list to LPUSH to (push), the parked zset (park);
--          unused for ack
-- KEYS[4]  counter hash "seen"        field: task name
-- KEYS[5]  counter hash of the outcome (passed, shadowed, rerouted, ...)
-- KEYS[6]  counter hash "duplicate"
-- KEYS[7]  once marker (string) or unused
-- ARGV[1]  tag: the unacked field
-- ARGV[2]  the envelope exactly as claimed
-- ARGV[3]  "push" | "park" | "ack"
-- ARGV[4]  what to push, or the parked member
-- ARGV[5]  the parked member's score (due time, unix seconds)
-- ARGV[6]  counter field (the task name); "" counts nothing
-- ARGV[7]  once marker TTL in seconds; "" for no marker
--
-- Returns 1 when settled; 0 when the record is gone or holds another
-- envelope (a visibility-timeout scan restored the message and someone may
-- be processing it again: do nothing, they will settle it); 2 when the once
-- marker exists (this task id was handed off before: the message is acked,
-- nothing is pushed, it is counted a duplicate).
--
-- A claimed message is thus at every instant in exactly one place: waiting
-- in a queue, in unacked, parked, or handed off, whatever dies when. The
-- record check matters: kombu restores a message with the same tag, so
-- after a restore and a new claim the tag alone would let a slow, older
-- holder ack the new claim.

local rec = redis.call('HGET', KEYS[1], ARGV[1])
local raw = ARGV[2]
if not rec or string.sub(rec, 2, #raw + 1) ~= raw or string.sub(rec, #raw + 2, #raw + 3) ~= ', ' then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])

local action, field = ARGV[3], ARGV[6]
if action == 'park' then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
  return 1
end
if ARGV[7] ~= '' then
  if redis.call('SET', KEYS[7], '1', 'NX', 'EX', ARGV[7]) == false then
    if field ~= '' then
      redis.call('HINCRBY', KEYS[4], field, 1)
      redis.call('HINCRBY', KEYS[6], field, 1)
    end
    return 2
  end
end
if action == 'push' then
  redis.call('LPUSH', KEYS[3], ARGV[4])
end
if field ~= '' then
  redis.call('HINCRBY', KEYS[4], field, 1)
  redis.call('HINCRBY', KEYS[5], field, 1)
end
return 1
