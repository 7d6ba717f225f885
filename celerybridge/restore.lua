-- restore.lua: move one unacked message out of kombu's unacked records and
-- onto lists, atomically, if and only if its record is still the one the
-- caller read. Used to requeue (Reject), restore (Restore, RestoreVisible),
-- dead-letter, and undo a claim whose caller went away.
--
-- KEYS[1]   unacked        hash   tag -> record
-- KEYS[2]   unacked_index  zset
-- KEYS[3]   unacked_mutex  string (checked only when ARGV[3] is not empty)
-- KEYS[4..] lists that receive ARGV[5]
-- ARGV[1]   tag: the unacked field
-- ARGV[2]   the record as the caller read it; "" means the caller found none
--           and only wants a stale index entry dropped
-- ARGV[3]   mutex token the caller must still hold, or "" for no check
-- ARGV[4]   "front": RPUSH, served next (kombu's restore); "back": LPUSH,
--           served last (kombu's reject with requeue)
-- ARGV[5]   what to push
--
-- Returns 1 when moved (or the stale index entry dropped), 0 when the record
-- changed or vanished since it was read (someone acked or restored it: do
-- nothing), -1 when the mutex is no longer ours.
--
-- kombu does the same under WATCH unacked + MULTI; a compare-and-move script
-- is that transaction without the retry loop.

if ARGV[3] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[3] then
  return -1
end
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  if current then return 0 end
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
if current ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local push = (ARGV[4] == 'back') and 'LPUSH' or 'RPUSH'
for i = 4, #KEYS do
  redis.call(push, KEYS[i], ARGV[5])
end
return 1
