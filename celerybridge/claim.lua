-- claim.lua: take the next message in kombu's consume order and, in the same
-- atomic step, record it as unacked exactly as kombu's QoS.append does, or
-- move it to the dead-letter list when kombu's restore could not handle it.
--
-- KEYS[1]   unacked        hash   tag -> '[<envelope>, "<exchange>", "<routing_key>"]'
-- KEYS[2]   unacked_index  zset   tag -> claim time, float seconds (Redis TIME)
-- KEYS[3]   dead-letter    list   LPUSH {"reason", "queue", "raw", "at"[, "encoding"]}
-- KEYS[4..] candidate lists in consume order: every priority step (lowest
--           first), and within a step every queue in the caller's rotated order
-- ARGV[1]   separator for a second in-flight copy of one tag: "<tag><sep><n>"
-- ARGV[2..] ARGV[1+i] is the queue name of KEYS[3+i], for dead-letter records
--
-- Returns nil when every list is empty, else
--   {"claimed", i, field, raw, score}   KEYS[3+i] gave raw, recorded under field
--   {"dead", i, reason, raw, score}     KEYS[3+i] gave raw, now dead-lettered
--
-- kombu BRPOPs and then records the message in a second round trip, so a
-- consumer dying between the two loses the message. Here the pop and the
-- record are one script: at every instant the message is in a list, in
-- unacked, or in the dead-letter list. Blocking commands are not allowed in
-- scripts; the caller polls.
--
-- The claim rule (kept in step with claimCheck in transport_record.go): a
-- message is recorded only when kombu's consumer and its restore can both
-- process the record, that is when it is
--   * UTF-8 text that Python's json.loads accepts (NaN and Infinity too),
--     nested at most 512 deep (Python's own limit is near 1000 frames);
--   * an object whose headers, if present, are an object (kombu's restore
--     sets headers['redelivered'] and loses the message on a TypeError);
--   * with properties.delivery_tag a non-empty string without a lone
--     surrogate escape (redis-py cannot encode one);
--   * with properties.delivery_info an object holding string exchange and
--     routing_key, not both empty (restore would push to a queue named None).
-- Duplicate keys count as Python counts them: the last one wins. The body is
-- not looked at: pickle, yaml or msgpack envelopes are valid JSON and claimable.

if redis.replicate_commands then pcall(redis.replicate_commands) end

local sbyte, sfind, ssub, schar, floor = string.byte, string.find, string.sub, string.char, math.floor
local MAX_DEPTH = 512

local function valid_utf8(s)
  local i = 1
  while true do
    i = sfind(s, '[\128-\255]', i)
    if not i then return true end
    local c, c2, c3, c4 = sbyte(s, i, i + 3)
    if c >= 0xC2 and c <= 0xDF then
      if not c2 or c2 < 0x80 or c2 > 0xBF then return false end
      i = i + 2
    elseif c >= 0xE0 and c <= 0xEF then
      local lo, hi = 0x80, 0xBF
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
      if not c2 or c2 < lo or c2 > hi or not c3 or c3 < 0x80 or c3 > 0xBF then return false end
      i = i + 3
    elseif c >= 0xF0 and c <= 0xF4 then
      local lo, hi = 0x80, 0xBF
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
      if not c2 or c2 < lo or c2 > hi or not c3 or c3 < 0x80 or c3 > 0xBF
        or not c4 or c4 < 0x80 or c4 > 0xBF then return false end
      i = i + 4
    else
      return false
    end
  end
end

-- The string token opening at s[p] == '"': index of its closing quote and
-- whether it holds escapes, or nil when Python's strict scanner rejects it.
local function str_end(s, p)
  local i, esc = p + 1, false
  while true do
    local j = sfind(s, '[%z\1-\31"\\]', i)
    if not j then return nil end
    local c = sbyte(s, j)
    if c == 34 then return j, esc end
    if c ~= 92 then return nil end -- raw control character
    esc = true
    local e = sbyte(s, j + 1)
    if e == 117 then
      if not sfind(s, '^%x%x%x%x', j + 2) then return nil end
      i = j + 6
    elseif e == 34 or e == 92 or e == 47 or e == 98 or e == 102 or e == 110 or e == 114 or e == 116 then
      i = j + 2
    else
      return nil
    end
  end
end

local function utf8char(cp)
  if cp < 0x80 then return schar(cp) end
  if cp < 0x800 then return schar(0xC0 + floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then
    return schar(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return schar(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64,
    0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
end

local SIMPLE = { [34] = '"', [92] = '\\', [47] = '/', [98] = '\b', [102] = '\f',
  [110] = '\n', [114] = '\r', [116] = '\t' }

-- The value of the validated token s[a..b] (between the quotes), or nil when
-- it holds a lone surrogate.
local function unescape(s, a, b)
  local out, i = {}, a
  while i <= b do
    local j = sfind(s, '\\', i, true)
    if not j or j > b then
      out[#out + 1] = ssub(s, i, b)
      break
    end
    out[#out + 1] = ssub(s, i, j - 1)
    local e = sbyte(s, j + 1)
    if e == 117 then
      local cp = tonumber(ssub(s, j + 2, j + 5), 16)
      i = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF and ssub(s, i, i + 1) == '\\u' then
        local lo = tonumber(ssub(s, i + 2, i + 5), 16)
        if lo and lo >= 0xDC00 and lo <= 0xDFFF then
          cp = 0x10000 + (cp - 0xD800) * 1024 + (lo - 0xDC00)
          i = i + 6
        end
      end
      if cp >= 0xD800 and cp <= 0xDFFF then return nil end
      out[#out + 1] = utf8char(cp)
    else
      out[#out + 1] = SIMPLE[e]
      i = j + 2
    end
  end
  return table.concat(out)
end

-- End index of the number or literal at s[p], as Python's scanner reads it.
local function scalar_end(s, p)
  local c = sbyte(s, p)
  if c == 110 then return sfind(s, '^null', p) and p + 3 end
  if c == 116 then return sfind(s, '^true', p) and p + 3 end
  if c == 102 then return sfind(s, '^false', p) and p + 4 end
  if c == 78 then return sfind(s, '^NaN', p) and p + 2 end
  if c == 73 then return sfind(s, '^Infinity', p) and p + 7 end
  if c == 45 and sbyte(s, p + 1) == 73 then return sfind(s, '^%-Infinity', p) and p + 8 end
  local _, e = sfind(s, '^%-?0', p)
  if not e then _, e = sfind(s, '^%-?[1-9]%d*', p) end
  if not e then return nil end
  local _, f = sfind(s, '^%.%d+', e + 1)
  if f then e = f end
  local _, x = sfind(s, '^[eE][%-+]?%d+', e + 1)
  if x then e = x end
  return e
end

-- What the member named key holds, given the role of its object.
local ROLES = {
  top = { properties = 'props', headers = 'headers' },
  props = { delivery_tag = 'tag', delivery_info = 'dinfo' },
  dinfo = { exchange = 'ex', routing_key = 'rk' },
}

-- inspect(s) -> tag, exchange token, routing_key token | nil, reason
local function inspect(s)
  if not valid_utf8(s) then return nil, 'malformed_json' end
  local n, pos = #s, 1
  local root = {}
  local root_object = false
  local stack, depth = {}, 0
  local state, role, facts = 'value', 'top', nil

  while true do
    pos = sfind(s, '[^ \t\n\r]', pos) or (n + 1)
    if state == 'value' then
      local c = sbyte(s, pos)
      if c == 123 or c == 91 then
        depth = depth + 1
        if depth > MAX_DEPTH then return nil, 'too_deep' end
        local frame = { close = (c == 123) and 125 or 93 }
        if role == 'top' then
          root_object = (c == 123)
          frame.role, frame.facts = 'top', root
        elseif c == 123 and (role == 'props' or role == 'dinfo') then
          local t = {}
          facts[role] = t
          frame.role, frame.facts = role, t
        elseif role == 'headers' then
          facts.headers = (c == 123)
        elseif role then
          facts[role] = false
        end
        if c == 91 then frame.role = nil end
        stack[#stack + 1] = frame
        pos = sfind(s, '[^ \t\n\r]', pos + 1) or (n + 1)
        if sbyte(s, pos) == frame.close then
          stack[#stack] = nil
          depth = depth - 1
          pos = pos + 1
          state = 'after'
        elseif c == 123 then
          state = 'key'
        else
          state, role = 'value', nil
        end
      elseif c == 34 then
        local e, esc = str_end(s, pos)
        if not e then return nil, 'malformed_json' end
        if role == 'tag' or role == 'ex' or role == 'rk' then
          facts[role] = { pos, e, esc }
        elseif role == 'top' then
          root_object = false
        elseif role then
          facts[role] = false
        end
        pos = e + 1
        state = 'after'
      else
        if not c then return nil, 'malformed_json' end
        local e = scalar_end(s, pos)
        if not e then return nil, 'malformed_json' end
        if role and role ~= 'top' then facts[role] = false end
        pos = e + 1
        state = 'after'
      end
    elseif state == 'key' then
      if sbyte(s, pos) ~= 34 then return nil, 'malformed_json' end
      local e, esc = str_end(s, pos)
      if not e then return nil, 'malformed_json' end
      local key
      if esc then key = unescape(s, pos + 1, e - 1) else key = ssub(s, pos + 1, e - 1) end
      pos = sfind(s, '[^ \t\n\r]', e + 1) or (n + 1)
      if sbyte(s, pos) ~= 58 then return nil, 'malformed_json' end
      pos = pos + 1
      local frame = stack[#stack]
      local names = frame.role and ROLES[frame.role]
      role = names and key and names[key] or nil
      facts = frame.facts
      state = 'value'
    else -- after a value: a separator, the container's end, or the end of input
      local frame = stack[#stack]
      if not frame then break end
      local c = sbyte(s, pos)
      if c == 44 then
        pos = pos + 1
        if frame.close == 125 then state = 'key' else state, role = 'value', nil end
      elseif c == frame.close then
        stack[#stack] = nil
        depth = depth - 1
        pos = pos + 1
      else
        return nil, 'malformed_json'
      end
    end
  end
  if pos <= n then return nil, 'malformed_json' end

  if not root_object then return nil, 'not_an_object' end
  if root.headers == false then return nil, 'headers_not_object' end
  local props = root.props
  if not props then return nil, 'missing_properties' end
  local t = props.tag
  if not t then return nil, 'missing_delivery_tag' end
  local tag
  if t[3] then tag = unescape(s, t[1] + 1, t[2] - 1) else tag = ssub(s, t[1] + 1, t[2] - 1) end
  if not tag or tag == '' then return nil, 'missing_delivery_tag' end
  local d = props.dinfo
  if not d or not d.ex or not d.rk then return nil, 'missing_delivery_info' end
  local ex, rk = ssub(s, d.ex[1], d.ex[2]), ssub(s, d.rk[1], d.rk[2])
  if ex == '""' and rk == '""' then return nil, 'missing_delivery_info' end
  return tag, ex, rk
end

local ESCAPES = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r',
  ['\t'] = '\\t', ['\b'] = '\\b', ['\f'] = '\\f' }

local function json_string(v)
  return '"' .. (string.gsub(v, '[%z\1-\31"\\]', function(c)
    return ESCAPES[c] or string.format('\\u%04x', sbyte(c))
  end)) .. '"'
end

local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = sbyte(s, i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local q1, q2 = floor(v / 262144) % 64, floor(v / 4096) % 64
    local q3, q4 = floor(v / 64) % 64, v % 64
    out[#out + 1] = ssub(B64, q1 + 1, q1 + 1) .. ssub(B64, q2 + 1, q2 + 1)
      .. (b and ssub(B64, q3 + 1, q3 + 1) or '=') .. (c and ssub(B64, q4 + 1, q4 + 1) or '=')
  end
  return table.concat(out)
end

local now = redis.call('TIME')
local score = string.format('%d.%06d', now[1], now[2])

for i = 4, #KEYS do
  local raw = redis.call('RPOP', KEYS[i])
  if raw then
    local queue = ARGV[i - 2]
    local tag, ex, rk = inspect(raw)
    if not tag then
      local reason = ex
      local record
      if valid_utf8(raw) then
        record = '{"reason": ' .. json_string(reason) .. ', "queue": ' .. json_string(queue)
          .. ', "raw": ' .. json_string(raw) .. ', "at": ' .. score .. '}'
      else
        record = '{"reason": ' .. json_string(reason) .. ', "queue": ' .. json_string(queue)
          .. ', "raw": "' .. base64(raw) .. '", "encoding": "base64", "at": ' .. score .. '}'
      end
      redis.call('LPUSH', KEYS[3], record)
      return { 'dead', i - 3, reason, raw, score }
    end
    -- kombu gives every copy of a message routed to several queues the same
    -- tag; a second copy in flight gets its own field so that acking one
    -- copy cannot drop the other's record.
    local field = tag
    if redis.call('HEXISTS', KEYS[1], field) == 1 then
      local k = 1
      while redis.call('HEXISTS', KEYS[1], tag .. ARGV[1] .. k) == 1 do k = k + 1 end
      field = tag .. ARGV[1] .. k
    end
    redis.call('HSET', KEYS[1], field, '[' .. raw .. ', ' .. ex .. ', ' .. rk .. ']')
    redis.call('ZADD', KEYS[2], score, field)
    return { 'claimed', i - 3, field, raw, score }
  end
end
return nil
