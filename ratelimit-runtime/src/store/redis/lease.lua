-- Leases: units of a fleet budget taken in one call, to be spent by one process on its own.
--
-- One call decides one request's checks (all allowed and charged, or none charged) and, when
-- they pass, takes up to `want` more units per check for the process to spend later. Leased
-- units are charged to the state as if admitted now, so the fleet never admits more than the
-- algorithm allows for them; units a process did not spend come back with its next call.
--
-- ARGV[1]   "server" to use Redis's clock (TIME), "client" to use ARGV[2]
-- ARGV[2]   the instant (µs) on the client's clock
-- ARGV[3]   the share: a bucket's or GCRA's lease takes at most 1/share of what remains after
--           the request
-- ARGV[4]   a fixed window's share (a larger part: its units die with the window, so that they
--           can never admit more than the window's limit, and a lease is what this process
--           spends in a lifetime)
-- then per check (KEYS[i]): algorithm (1 fixed window, 4 token bucket, 5 leaky bucket, 6 GCRA),
--           limit, period (s), capacity, cost, want (units beyond the cost), units handed back,
--           the instant (µs) those were leased, the window (end, s) they were leased in
--
-- Returns { now, outcome (1 allowed, 0 denied), then per check: allowed, units charged
-- (cost + lease), remaining after them, reset, retry }, times in µs. States are the ones
-- decide.lua keeps, so both scripts decide the same keys.

-- common.lua's library functions (see `bind`).
bind()
local US = 1000000
local MIN_TTL = ARGV[1] == 'server' and 1000 or 60000
local now
if ARGV[1] == 'server' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * US + tonumber(t[2])
else
  now = tonumber(ARGV[2])
end
local share, window_share = tonumber(ARGV[3]), tonumber(ARGV[4])
-- floor_div, ceil_div, CORRUPT, load and the fixed window's state come from common.lua, put
-- before this script.

local ONE, TWO = '^(%d+)$', '^(%d+) (%d+)$'
local PER_CHECK = 9

-- Per check: the state after the hand-back, what it can still admit now, and how to charge it.
local n = #KEYS
local states = {}
local all = true
for i = 1, n do
  local at = 5 + PER_CHECK * (i - 1)
  local algorithm, limit = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  local period, capacity, cost = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4])
  local back, leased_at, leased_in = tonumber(ARGV[at + 6]), tonumber(ARGV[at + 7]), tonumber(ARGV[at + 8])
  -- Units handed back drained like any others since they were leased: only what would still
  -- be in the bucket comes out of it (the level never drops below what it would be had they
  -- never been taken).
  local drained = max(now - leased_at, 0)
  local s = { algorithm = algorithm, cost = cost, want = tonumber(ARGV[at + 5]), changed = back > 0 }
  if algorithm == 1 then
    local end_s = (floor_div(floor_div(now, US), period) + 1) * period
    local tag = window_tag(end_s, period)
    local spent, ahead = load_window(KEYS[i], tag)
    -- A later window's state (the clock stepped back) counts on in that window.
    if ahead > 0 then
      end_s = end_s + ahead * period
      tag = window_tag(end_s, period)
    end
    -- Units of another window died with it.
    if back > 0 and leased_in == end_s then spent = max(spent - back, 0) else s.changed = false end
    s.end_s, s.tag, s.spent, s.limit = end_s, tag, spent, limit
    s.available = max(limit - spent, 0)
    s.reset = end_s * US
  elseif algorithm == 4 or algorithm == 5 then
    local per = period * US
    local level = 0
    local found, stored_last, stored_level = load(KEYS[i], TWO)
    if found then level = max(stored_level + (stored_last - now) * limit, 0) end
    level = max(level - max(back * per - drained * limit, 0), 0)
    s.per, s.level, s.full, s.limit = per, level, capacity * per, limit
    s.available = floor_div(max(s.full - level, 0), per)
  elseif algorithm == 6 then
    local interval = ceil_div(period * US, limit)
    local found, stored = load(KEYS[i], ONE)
    local tat = (found and stored > now) and stored or now
    tat = max(tat - max(back * interval - drained, 0), now)
    s.interval, s.tat, s.window = interval, tat, capacity * interval
    s.available = floor_div(max(s.window - (tat - now), 0), interval)
  else
    return error('ratelimit: no lease for algorithm ' .. tostring(ARGV[at]))
  end
  if s.available < cost then all = false end
  states[i] = s
end

local reply = { now, all and 1 or 0 }
for i = 1, n do
  local s = states[i]
  local charged = 0
  if all then
    local room = floor((s.available - s.cost) / (s.algorithm == 1 and window_share or share))
    charged = s.cost + min(s.want, room)
  end
  local value, expiry, reset, retry
  if s.algorithm == 1 then
    s.spent = s.spent + charged
    value, expiry, reset = format('%.0f', s.tag * SPENT + s.spent), s.reset, s.reset
    retry = s.available >= s.cost and now or s.reset
  elseif s.algorithm == 6 then
    s.tat = s.tat + charged * s.interval
    value, expiry, reset = format('%.0f', s.tat), s.tat, s.tat
    retry = max(s.tat + s.cost * s.interval - s.window, now)
    if all then retry = now end
  else
    s.level = s.level + charged * s.per
    value, reset = format('%.0f %.0f', now, s.level), now + ceil_div(s.level, s.limit)
    expiry = reset
    retry = now + max(ceil_div(s.level + s.cost * s.per - s.full, s.limit), 0)
    if all then retry = now end
  end
  if charged > 0 or s.changed then
    local ttl = max(MIN_TTL, ceil_div(max(expiry - now, 0), 1000) + 1)
    redis.call('SET', KEYS[i], value, 'PX', ttl)
  end
  local base = #reply
  reply[base + 1] = (s.available >= s.cost) and 1 or 0
  reply[base + 2] = charged
  reply[base + 3] = s.available - charged
  reply[base + 4] = reset
  reply[base + 5] = retry
end
return reply
