-- results_store.lua: store one Celery task result as a worker does, except
-- that the check for an existing SUCCESS and the write are one atomic step.
--
-- Celery's KeyValueStoreBackend GETs the key first and drops the write when
-- the stored status is SUCCESS, then SETEX + PUBLISH in one MULTI; two
-- writers can both pass the GET. Here nothing runs between the check and the
-- write, so the first SUCCESS stored is the one that stays.
--
-- KEYS[1]  the result key, <prefix>celery-task-meta-<task id>; also the
--          pub/sub channel AsyncResult.get() listens on.
-- ARGV[1]  the meta JSON to store and publish.
-- ARGV[2]  expiry in whole seconds; "0" stores with plain SET (no expiry),
--          as Celery does when result_expires is 0 or None.
--
-- Returns 1: stored and published. 0: a SUCCESS is stored; nothing written
-- or published. Error "UNREADABLE ...": the stored value is not a meta
-- object with a status, which Celery's own check would fail on too; it is
-- left alone rather than guessed at.

local current = redis.call('GET', KEYS[1])
if current and current ~= '' then
  -- Every Celery version writes status first; the pattern avoids decoding
  -- a large result inside Redis. Anything else is decoded in full.
  local status = string.match(current, '^[ \t\n\r]*{[ \t\n\r]*"status"[ \t\n\r]*:[ \t\n\r]*"([^"\\]*)"')
  if status == nil then
    local ok, meta = pcall(cjson.decode, current)
    if not ok or type(meta) ~= 'table' or meta['status'] == nil then
      return redis.error_reply('UNREADABLE stored result is not a Celery meta object')
    end
    status = meta['status']
  end
  if status == 'SUCCESS' then
    return 0
  end
end

if tonumber(ARGV[2]) > 0 then
  redis.call('SETEX', KEYS[1], ARGV[2], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
