-- One rate-limit decision: every check of one request, charged all together or not at all.
--
-- KEYS[i]      the state of check i (all keys of one call share a Cluster hash tag)
-- ARGV[1]      now in microseconds, or "" to use the Redis server's clock (TIME)
-- ARGV[2 + 5(i-1) ..]  check i: algorithm, limit, period (s), capacity, cost
--
-- Returns { now, all allowed (0/1), then per check: allowed, remaining, reset, retry }, times in
-- microseconds since the Unix epoch. The arithmetic mirrors the Rust algorithms in
-- src/algorithm/, in microseconds: Lua numbers are doubles, exact below 2^53 (the caller refuses
-- quotas whose scaled values would not be).

local US = 1000000
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * US + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end

local function floor_div(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end

local function ceil_div(a, b)
  local q = floor_div(a, b)
  if q * b < a then q = q + 1 end
  return q
end

-- Numbers as stored: whole, without the exponent notation Lua uses for large ones.
local function state(...)
  local words = {}
  for i, v in ipairs({...}) do words[i] = string.format('%.0f', v) end
  return table.concat(words, ' ')
end

local function ttl_ms(until_us)
  return math.max(1, ceil_div(math.max(until_us - now, 0), 1000) + 1)
end

-- The numbers of a stored state "a b c"; a state that does not parse is an error, never a reset.
local function numbers(key, count)
  local stored = redis.call('GET', key)
  if not stored then return nil end
  local values = {}
  for word in string.gmatch(stored, '%S+') do values[#values + 1] = tonumber(word) end
  if #values ~= count then
    return error('ratelimit: corrupt state at ' .. key)
  end
  return values
end

local function fixed_window(key, limit, period, _, cost)
  local end_s = (floor_div(floor_div(now, US), period) + 1) * period
  local spent = 0
  local s = numbers(key, 2)
  if s and s[1] >= end_s then end_s, spent = s[1], s[2] end
  local allowed = spent + cost <= limit
  local after = allowed and spent + cost or spent
  local reset = end_s * US
  return allowed, math.max(limit - after, 0), reset, allowed and now or reset, function()
    redis.call('SET', key, state(end_s, after), 'PX', ttl_ms(reset))
  end
end

local function sliding_window(key, limit, period, _, cost)
  local end_now = (floor_div(floor_div(now, US), period) + 1) * period
  local end_s, current, previous = end_now, 0, 0
  local s = numbers(key, 3)
  if s then
    if s[1] >= end_now then end_s, current, previous = s[1], s[2], s[3]
    elseif s[1] + period == end_now then previous = s[2] end
  end
  local per = period * US
  local start = (end_s - period) * US
  local elapsed = math.min(math.max(now - start, 0), per)
  local estimate = previous * (per - elapsed) + current * per
  local allowed = estimate + cost * per <= limit * per
  local after = allowed and estimate + cost * per or estimate
  local current_after = allowed and current + cost or current
  local reset = now
  if current_after > 0 then reset = (end_s + period) * US elseif previous > 0 then reset = end_s * US end
  local retry = now
  if not allowed then
    retry = nil
    local room = limit - current - cost
    if room >= 0 and previous > 0 then
      local e = per - math.min(floor_div(room * per, previous), per)
      if e < per then retry = start + math.max(e, elapsed) end
    end
    if not retry then
      if limit >= cost then
        local allowance = per
        if current > 0 then allowance = math.min(floor_div((limit - cost) * per, current), per) end
        retry = start + per + (per - allowance)
      else
        retry = reset
      end
    end
  end
  return allowed, math.max(floor_div(limit * per - after, per), 0), reset, retry, function()
    redis.call('SET', key, state(end_s, current_after, previous), 'PX', ttl_ms((end_s + period) * US))
  end
end

local function sliding_log(key, limit, period, _, cost)
  while true do
    local oldest = redis.call('LINDEX', key, 0)
    if oldest and tonumber(oldest) <= now then redis.call('LPOP', key) else break end
  end
  local held = redis.call('LLEN', key)
  local newest = now + period * US
  local allowed = held + cost <= limit
  local newest_held = redis.call('LINDEX', key, -1)
  local last = newest_held and tonumber(newest_held)
  local reset, retry = newest, now
  if not allowed then
    reset = last or now
    if cost <= limit then
      retry = tonumber(redis.call('LINDEX', key, held + cost - limit - 1))
    else
      retry = math.max(reset, newest)
    end
  end
  local remaining = allowed and limit - held - cost or math.max(limit - held, 0)
  return allowed, remaining, reset, retry, function()
    local expiry = math.max(newest, last or 0)
    local left = cost
    while left > 0 do
      local batch = {}
      for i = 1, math.min(left, 1000) do batch[i] = string.format('%.0f', expiry) end
      redis.call('RPUSH', key, unpack(batch))
      left = left - #batch
    end
    redis.call('PEXPIRE', key, ttl_ms(expiry))
  end
end

-- Token bucket and leaky bucket share one state: the level (tokens missing / water held), scaled
-- by the period in microseconds so that fractions are kept exactly.
local function bucket(key, limit, period, capacity, cost)
  local per = period * US
  local last, level = now, 0
  local s = numbers(key, 2)
  if s then
    last = s[1]
    level = math.max(s[2] - math.max(now - s[1], 0) * limit, 0)
  end
  local spend = cost * per
  local full = capacity * per
  local allowed = level + spend <= full
  local after = allowed and level + spend or level
  local reset = now + ceil_div(after, limit)
  local retry = allowed and now or now + ceil_div(level + spend - full, limit)
  return allowed, floor_div(full - math.min(after, full), per), reset, retry, function()
    redis.call('SET', key, state(math.max(now, last), after), 'PX', ttl_ms(reset))
  end
end

local function gcra(key, limit, period, capacity, cost)
  local interval = ceil_div(period * US, limit)
  local window = capacity * interval
  local s = numbers(key, 1)
  local tat = math.max(s and s[1] or 0, now)
  local new_tat = tat + cost * interval
  local allowed = new_tat - now <= window
  local held = (allowed and new_tat or tat) - now
  local retry = allowed and now or math.max(new_tat - window, now)
  return allowed, floor_div(window - math.min(held, window), interval), allowed and new_tat or tat, retry, function()
    redis.call('SET', key, state(new_tat), 'PX', ttl_ms(new_tat))
  end
end

local algorithms = { fixed_window, sliding_window, sliding_log, bucket, bucket, gcra }

local reply = { now, 1 }
local charges = {}
for i = 1, #KEYS do
  local at = 2 + 5 * (i - 1)
  local step = algorithms[tonumber(ARGV[at])]
  if not step then return error('ratelimit: unknown algorithm ' .. tostring(ARGV[at])) end
  local allowed, remaining, reset, retry, charge = step(KEYS[i], tonumber(ARGV[at + 1]),
    tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4]))
  if not allowed then reply[2] = 0 end
  charges[i] = charge
  local base = #reply
  reply[base + 1] = allowed and 1 or 0
  reply[base + 2] = remaining
  reply[base + 3] = reset
  reply[base + 4] = retry
end
if reply[2] == 1 then
  for i = 1, #charges do charges[i]() end
end
return reply
