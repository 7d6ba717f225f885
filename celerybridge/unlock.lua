-- unlock.lua: release kombu's unacked_mutex only if this process still holds
-- it (redis-py's Lock.release does the same compare-and-delete).
--
-- KEYS[1]  unacked_mutex
-- ARGV[1]  the token written by SET NX PX
--
-- Returns 1 when released, 0 when the mutex expired or another holder has it.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
