-- Gives back units charged earlier (`deduct_when`, `settle`), where they still count: the
-- arithmetic of `Algorithm::refund` in src/algorithm/, in microseconds.
--
-- ARGV[1]  "server" to use the Redis server's clock (TIME), "client" to use ARGV[3]
-- ARGV[2]  the instant the units were charged at (µs, on the caller's clock)
-- ARGV[3]  the caller's now (µs)
-- then per key: algorithm, limit, period (s), capacity, units to give back
-- KEYS     the states, in order (in a Cluster, all share a hash tag)
--
-- On Redis's clock, the charge's instant is the caller's moved by the difference between the
-- two clocks now: exact for the windows (a refund within a millisecond of a window's end may
-- go uncounted, which is stricter), and for the log the entries closest to that instant within
-- 50 ms (units whose expiries differ by less than that are alike). Returns the number of keys
-- whose state changed. A key holding another type is left alone.

-- common.lua's library functions (see `bind`).
bind()
local US = 1000000
local charged, now = tonumber(ARGV[2]), tonumber(ARGV[3])
if ARGV[1] == 'server' then
  local t = redis.call('TIME')
  local server_now = tonumber(t[1]) * US + tonumber(t[2])
  charged = charged + (server_now - now)
  now = server_now
end
local LOG_SLACK = ARGV[1] == 'server' and 50000 or 0
local ONE, TWO, THREE = '^(%d+)$', '^(%d+) (%d+)$', '^(%d+) (%d+) (%d+)$'

local function window_end(at, period)
  return (floor_div(floor_div(at, US), period) + 1) * period
end

local changed = 0
local function keep(key, value)
  redis.call('SET', key, value, 'KEEPTTL')
  changed = changed + 1
end

local function refund(key, algorithm, limit, period, capacity, units)
  if algorithm == 1 then
    local tag = window_tag(window_end(charged, period), period)
    local spent, ahead = load_window(key, tag)
    if spent > 0 and ahead == 0 then keep(key, format('%.0f', tag * SPENT + max(spent - units, 0))) end

  elseif algorithm == 2 then
    local found, stored_end, current, previous = load(key, THREE)
    if not found then return end
    local end_now = window_end(now, period)
    local end_s = end_now
    if stored_end >= end_now then
      end_s = stored_end
    elseif stored_end + period == end_now then
      current, previous = 0, current
    else
      return
    end
    local charged_end = window_end(charged, period)
    if charged_end == end_s then
      current = max(current - units, 0)
    elseif charged_end + period == end_s then
      previous = max(previous - units, 0)
    else
      return
    end
    keep(key, format('%.0f %.0f %.0f', end_s, current, previous))

  elseif algorithm == 3 then
    if redis.call('TYPE', key).ok ~= 'list' then return end
    local target = charged + period * US
    if target <= now then return end
    -- The first entry at or after target - slack (the log is sorted), then those up to
    -- target + slack, nearest the target first.
    local length = redis.call('LLEN', key)
    local low, high = 0, length
    while low < high do
      local middle = floor((low + high) / 2)
      local instant = tonumber(redis.call('LINDEX', key, middle))
      if not instant then return end
      if instant < target - LOG_SLACK then low = middle + 1 else high = middle end
    end
    local near = {}
    local i = low
    while i < length do
      local instant = tonumber(redis.call('LINDEX', key, i))
      if not instant or instant > target + LOG_SLACK then break end
      near[#near + 1] = { i, math.abs(instant - target) }
      i = i + 1
    end
    if #near == 0 then return end
    table.sort(near, function(a, b) return a[2] < b[2] end)
    local marker = 'ratelimit:refunded'
    for j = 1, min(units, #near) do redis.call('LSET', key, near[j][1], marker) end
    redis.call('LREM', key, 0, marker)
    changed = changed + 1

  elseif algorithm == 4 or algorithm == 5 then
    -- The level as of now, less the units, never below empty.
    local found, stored_last, stored_level = load(key, TWO)
    if not found then return end
    local per = period * US
    local level = max(stored_level + (stored_last - now) * limit, 0)
    if level == 0 then return end
    keep(key, format('%.0f %.0f', now, max(level - units * per, 0)))

  elseif algorithm == 6 then
    local found, tat = load(key, ONE)
    if not found or tat <= now then return end
    local interval = ceil_div(period * US, limit)
    keep(key, format('%.0f', max(tat - units * interval, now)))

  elseif algorithm == 7 then
    -- GCRA above 10,000 per second: "<µs> <ns beyond>", the interval in whole ns.
    local found, stored_us, stored_ns = load(key, TWO)
    if not found then return end
    local ahead = max((stored_us - now) * 1000 + stored_ns, 0)
    if ahead == 0 then return end
    local interval = ceil_div(period * 1000000000, limit)
    local after = max(ahead - units * interval, 0)
    local whole = floor_div(after, 1000)
    keep(key, format('%.0f %.0f', now + whole, after - whole * 1000))
  end
end

for i = 1, #KEYS do
  local at = 4 + 5 * (i - 1)
  -- A key that is not a limiter state (another type, corrupt) is skipped, not raised.
  pcall(refund, KEYS[i], tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]),
    tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4]))
end
return changed
