-- Rate-limit decisions, one or several per call (a batch), each deciding every check of one
-- request and charging them all together or not at all, in order.
--
-- ARGV[1]      "server" to use the Redis server's clock (TIME), "client" to use each decision's
-- ARGV[2]      the number of limits s, then s times: algorithm, limit, period (s), capacity
--              (each limit once, however many checks of the call use it)
-- then         the number of decisions; then per decision: its number of checks n (-n for a
--              peek: decided the same way, nothing written), its instant (µs), and per check:
--              its limit (1 to s), cost, max wait (µs, 0: refuse at once; -1: a probe, decided
--              like the others and never written)
-- KEYS         the states of every check, in order (in a Cluster, one decision per call and all
--              its keys share a hash tag)
--
-- Returns { server now, then per decision: outcome (1 all allowed, 0 denied, -1 error), then
-- per check: allowed, remaining, reset, retry }, times in microseconds since the Unix epoch. A
-- decision that fails (a key holding another type, a corrupt state) fails alone. The arithmetic
-- mirrors the Rust algorithms in src/algorithm/, in microseconds: Lua numbers are doubles, exact
-- below 2^53 (the caller refuses quotas whose scaled values would not be: src/store/exact.rs).
-- Redis runs this for every decision of a fleet, so it is written for few allocations: no
-- closures per check, states parsed with one match. It is loaded as a Redis function where
-- Redis has them (7.0 and later: `FCALL`), so that what is defined here is made once, not on
-- every call, and runs as a script (`EVALSHA`) elsewhere; `decide_call` is the body of both
-- (`wire.rs` puts either ending after it).
--
-- Algorithms: 1 fixed window, 2 sliding window, 3 sliding log, 4 token bucket, 5 leaky bucket,
-- 6 GCRA, 7 GCRA above 10,000 per second (nanosecond interval; its own state format).

local US = 1000000
local NS = 1000000000

-- The call's keys and arguments, set by `decide_call` (a Redis function is given them, a
-- script reads them as globals).
local KEYS, ARGV
-- Keys live until their state no longer matters, and at least a second. On the client's clock
-- (tests on a manual clock) that state's lifetime is in the client's time, not Redis's: keys then
-- live at least a minute of real time, so that a slow test never sees its state expire.
local MIN_TTL
-- Redis's clock at the call (µs; 0 on the client's clock), and the reply being built.
local server_now, reply
-- The instant a decision is made at, and the present: they differ when a refused request
-- reserves its turn (decided again at that turn). Expiries count from the present, as Redis
-- counts `PX`: from the turn, a key would die up to a max wait early and its bucket restart.
local now, present

-- floor_div, ceil_div, CORRUPT, load and the fixed window's SPENT, window_tag and load_window
-- come from common.lua, put before this script.

-- Arguments per check.
local PER_CHECK = 3

-- The call's limits: algorithm, limit, period and capacity of each.
local ALGORITHMS, LIMITS, PERIODS, CAPACITIES = {}, {}, {}, {}

local ONE, TWO, THREE = '^(%d+)$', '^(%d+) (%d+)$', '^(%d+) (%d+) (%d+)$'

-- Per check, for the writes once every check passed, and per fixed window charged in place:
-- reused by every decision of the call (each overwrites its first entries).
local values, expiries, probes, windows, tags, fresh, absent = {}, {}, {}, {}, {}, {}, {}
local limits, costs, periods = {}, {}, {}

-- Gives back the first `n` fixed windows charged in place: a key the charge made goes, the
-- others lose what was added (a key that held another window's count gets it back, as it was).
local function give_back(first, n)
  for j = 1, n do
    local i = windows[j]
    local key = KEYS[first + i - 1]
    if absent[j] then
      redis.call('DEL', key)
    else
      redis.call('DECRBY', key, costs[j])
    end
  end
end

-- What a charge's INCRBY failed with: a key that is not a count is this decision's fault
-- (CORRUPT, the decision fails alone); anything else (a replica, out of memory) is Redis's,
-- raised as Redis said it, after what was charged was given back.
local function charge_failed(first, charged, failure)
  give_back(first, charged)
  local message = type(failure) == 'table' and failure.err or tostring(failure)
  if string.find(message, 'WRONGTYPE', 1, true) or string.find(message, 'not an integer', 1, true)
      or string.find(message, 'overflow', 1, true) then
    error(CORRUPT)
  end
  error(failure)
end

-- Decides one request's `count` checks, whose keys start at KEYS[first] and arguments at
-- ARGV[arg]; appends the per-check answers to `out` and returns whether all were allowed.
-- Raises CORRUPT (before writing anything) for a key that is not a limiter state.
local function decide(first, arg, count, charge, out)
  local all = true
  local start = #out
  -- The present second, for the windows.
  local now_s = floor_div(now, US)
  -- The fixed windows to charge in place, after the other checks.
  local pending = 0
  for i = 1, count do
    local at = arg + PER_CHECK * (i - 1)
    -- Arguments are numbers the caller wrote: `+ 0` converts them (cheaper than tonumber).
    local spec = ARGV[at] + 0
    local algorithm, limit, period, capacity = ALGORITHMS[spec], LIMITS[spec], PERIODS[spec], CAPACITIES[spec]
    local cost = ARGV[at + 1] + 0
    local key = KEYS[first + i - 1]
    local allowed, remaining, reset, retry, value, expiry
    probes[i] = ARGV[at + 2] + 0 < 0

    if algorithm == 6 then
      -- GCRA: one theoretical arrival time.
      local interval = ceil_div(period * US, limit)
      local window = capacity * interval
      local found, stored = load(key, ONE)
      local tat = (found and stored > now) and stored or now
      local new_tat = tat + cost * interval
      allowed = new_tat - now <= window
      local held = (allowed and new_tat or tat) - now
      remaining = floor_div(window - min(held, window), interval)
      reset = allowed and new_tat or tat
      retry = allowed and now or max(new_tat - window, now)
      value, expiry = format('%.0f', new_tat), new_tat

    elseif algorithm == 7 then
      -- GCRA above 10,000 per second, where a whole-µs interval would round the rate by more
      -- than 1%: the interval in whole ns, rounded up as the memory store does. The arrival
      -- time is stored as its µs and the ns beyond them; the arithmetic runs in ns relative to
      -- now, values within (capacity + cost) intervals of under 100 µs: exact.
      local interval = ceil_div(period * NS, limit)
      local window = capacity * interval
      local found, stored_us, stored_ns = load(key, TWO)
      local ahead = 0
      if found then ahead = max((stored_us - now) * 1000 + stored_ns, 0) end
      local after = ahead + cost * interval
      allowed = after <= window
      local held = allowed and after or ahead
      remaining = floor_div(window - min(held, window), interval)
      -- Reported instants are whole µs, rounded up: never before the state allows them.
      reset = now + ceil_div(held, 1000)
      retry = allowed and now or now + ceil_div(after - window, 1000)
      local whole = floor_div(after, 1000)
      value, expiry = format('%.0f %.0f', now + whole, after - whole * 1000), now + ceil_div(after, 1000)

    elseif algorithm == 1 then
      -- Fixed window: what was spent in this window (common.lua). A charge is made below,
      -- with one INCRBY, once every other check is read; a peek or a probe reads it here.
      local end_s = (floor_div(now_s, period) + 1) * period
      local tag = window_tag(end_s, period)
      reset = end_s * US
      if charge and not probes[i] then
        pending = pending + 1
        windows[pending], tags[pending], limits[pending], costs[pending] = i, tag, limit, cost
        periods[pending] = period
        allowed, remaining, retry = true, 0, now
      else
        local spent, ahead = load_window(key, tag)
        reset = (end_s + ahead * period) * US
        allowed = spent + cost <= limit
        remaining = max(limit - (allowed and spent + cost or spent), 0)
        retry = allowed and now or reset
      end
      value, expiry = true, reset

    elseif algorithm == 4 or algorithm == 5 then
      -- Token and leaky bucket: the level scaled by the period in µs, exact fractions.
      -- The level as of `now`, also before the stored instant (a turn reserved ahead: the
      -- bucket is fuller earlier), as the memory store keeps it (the instant it empties).
      local per = period * US
      local level = 0
      local found, stored_last, stored_level = load(key, TWO)
      if found then
        level = max(stored_level + (stored_last - now) * limit, 0)
      end
      local spend, full = cost * per, capacity * per
      allowed = level + spend <= full
      local after = allowed and level + spend or level
      remaining = floor_div(full - min(after, full), per)
      reset = now + ceil_div(after, limit)
      retry = allowed and now or now + ceil_div(level + spend - full, limit)
      value, expiry = format('%.0f %.0f', now, after), reset

    elseif algorithm == 2 then
      -- Sliding window counter: the current window's end (s), its count and the previous one's.
      local end_now = (floor_div(now_s, period) + 1) * period
      local end_s, current, previous = end_now, 0, 0
      local found, stored_end, stored_current, stored_previous = load(key, THREE)
      if found then
        if stored_end >= end_now then
          end_s, current, previous = stored_end, stored_current, stored_previous
        elseif stored_end + period == end_now then
          previous = stored_current
        end
      end
      local per = period * US
      local start = (end_s - period) * US
      local elapsed = min(max(now - start, 0), per)
      local estimate = previous * (per - elapsed) + current * per
      allowed = estimate + cost * per <= limit * per
      local after = allowed and estimate + cost * per or estimate
      local current_after = allowed and current + cost or current
      remaining = max(floor_div(limit * per - after, per), 0)
      reset = now
      if current_after > 0 then reset = (end_s + period) * US elseif previous > 0 then reset = end_s * US end
      retry = now
      if not allowed then
        retry = nil
        local room = limit - current - cost
        if room >= 0 and previous > 0 then
          local e = per - min(floor_div(room * per, previous), per)
          if e < per then retry = start + max(e, elapsed) end
        end
        if not retry then
          if limit >= cost then
            local allowance = per
            if current > 0 then allowance = min(floor_div((limit - cost) * per, current), per) end
            retry = start + per + (per - allowance)
          else
            retry = reset
          end
        end
      end
      value, expiry = format('%.0f %.0f %.0f', end_s, current_after, previous), (end_s + period) * US

    elseif algorithm == 3 then
      -- Sliding log: a list of the instants at which admitted units stop counting, oldest first.
      local kind = redis.call('TYPE', key).ok
      if kind ~= 'list' and kind ~= 'none' then error(CORRUPT) end
      -- Expired entries (instants up to now) are a prefix of the list: found by binary search,
      -- a few LINDEX whatever the log's length, then dropped with one LTRIM, or only skipped by
      -- a peek, which writes nothing. (One command per entry would hold Redis, and every
      -- decision of the fleet behind it, for about a millisecond per thousand entries.)
      local skip, length = 0, redis.call('LLEN', key)
      local past = length
      while skip < past do
        local middle = floor((skip + past) / 2)
        local instant = tonumber(redis.call('LINDEX', key, middle))
        if not instant then error(CORRUPT) end
        if instant <= now then skip = middle + 1 else past = middle end
      end
      if charge and skip > 0 then
        redis.call('LTRIM', key, skip, -1)
        length, skip = length - skip, 0
      end
      local held = length - skip
      local newest = now + period * US
      local last_raw = held > 0 and redis.call('LINDEX', key, -1) or nil
      local last = last_raw and tonumber(last_raw) or 0
      allowed = held + cost <= limit
      reset, retry = newest, now
      if not allowed then
        reset = last_raw and last or now
        if cost <= limit then
          retry = tonumber(redis.call('LINDEX', key, skip + held + cost - limit - 1))
        else
          retry = max(reset, newest)
        end
      end
      remaining = allowed and limit - held - cost or max(limit - held, 0)
      value, expiry = false, max(newest, last)

    else
      return error('ratelimit: unknown algorithm ' .. tostring(algorithm))
    end

    if not allowed then all = false end
    values[i], expiries[i] = value, expiry
    local base = #out
    out[base + 1] = allowed and 1 or 0
    out[base + 2] = remaining
    out[base + 3] = reset
    out[base + 4] = retry
  end

  -- The fixed windows, charged in place once the other checks passed: one INCRBY each (and a
  -- SET with its expiry, below, for a key new to its window), given back when a check refuses.
  -- Every other key was read first, so a decision that fails on a corrupt state writes nothing.
  local charged = 0
  for j = 1, pending do
    local i, limit, cost = windows[j], limits[j], costs[j]
    local key, tag = KEYS[first + i - 1], tags[j]
    local spent, ahead
    if all then
      local after = redis.pcall('INCRBY', key, cost)
      if type(after) ~= 'number' then charge_failed(first, charged, after) end
      charged = j
      absent[j] = after == cost
      -- Below the cost: the key held a negative count, not a state of ours.
      if after < cost then
        give_back(first, charged)
        error(CORRUPT)
      end
      ahead = windows_ahead(after, tag)
      fresh[j] = not ahead
      spent = ahead and spent_of(after) - cost or 0
      ahead = ahead or 0
    else
      spent, ahead = load_window(key, tag)
    end
    local allowed = spent + cost <= limit
    if not allowed then all = false end
    local o = start + 4 * (i - 1)
    -- A later window's (the clock stepped back): its end is the reset.
    if ahead > 0 then out[o + 3] = out[o + 3] + ahead * periods[j] * US end
    out[o + 1] = allowed and 1 or 0
    out[o + 2] = max(limit - (allowed and spent + cost or spent), 0)
    out[o + 4] = allowed and now or out[o + 3]
  end
  if not all then give_back(first, charged) end

  if not all or not charge then return all end
  for j = 1, pending do
    if fresh[j] then
      local i = windows[j]
      local value = tags[j] * SPENT + costs[j]
      local ttl = max(MIN_TTL, ceil_div(max(expiries[i] - present, 0), 1000) + 1)
      -- Redis writes a number argument as its shortest exact digits: an integer below 2^53
      -- needs no format here.
      redis.call('SET', KEYS[first + i - 1], value, 'PX', ttl)
    end
  end
  for i = 1, count do
    -- A probe is never written, nor a fixed window (above) (Lua 5.1 has no `continue`).
    if not probes[i] and values[i] ~= true then
      local key, expiry = KEYS[first + i - 1], expiries[i]
      local ttl = max(MIN_TTL, ceil_div(max(expiry - present, 0), 1000) + 1)
      if values[i] then
        redis.call('SET', key, values[i], 'PX', ttl)
      else
        -- The log: `cost` copies of the expiry, in batches Lua's unpack can take.
        local instant = format('%.0f', expiry)
        local left = ARGV[arg + PER_CHECK * (i - 1) + 1] + 0
        while left > 0 do
          local batch = {}
          for j = 1, min(left, 1000) do batch[j] = instant end
          redis.call('RPUSH', key, unpack(batch))
          left = left - #batch
        end
        redis.call('PEXPIRE', key, ttl)
      end
    end
  end
  return true
end

-- A decision its checks refused may wait: when every refusing check would pass within its own
-- max wait, the latest of their retry instants, at which the decision is made again (and
-- charged, reserving the slot); otherwise nil. The refused answers start after reply[at].
local function reservation(arg, count, at)
  local until_ = nil
  for i = 1, count do
    local o = at + 4 * (i - 1)
    -- A turn in the future is only sound when every check drains at the rate (the buckets,
    -- GCRA): a window or a log would count it in the wrong window.
    local algorithm = ALGORITHMS[ARGV[arg + PER_CHECK * (i - 1)] + 0]
    if algorithm < 4 then return nil end
    if reply[o + 1] == 0 then
      local wait, retry = ARGV[arg + PER_CHECK * (i - 1) + 2] + 0, reply[o + 4]
      if wait <= 0 or retry - now > wait then return nil end
      if not until_ or retry > until_ then until_ = retry end
    end
  end
  return until_
end

-- Decides one request, isolated in a pcall when it shares the call with others.
local function run(decisions, first, arg, count, charge)
  if decisions == 1 then
    -- Alone in the call: an error can only be this decision's, no need to isolate it.
    return true, decide(first, arg, count, charge, reply)
  end
  return pcall(decide, first, arg, count, charge, reply)
end

-- Decides the call: the whole script, or the Redis function.
local function decide_call(keys, argv)
  KEYS, ARGV = keys, argv
  bind()
  MIN_TTL = ARGV[1] == 'server' and 1000 or 60000
  server_now = 0
  if ARGV[1] == 'server' then
    local t = redis.call('TIME')
    server_now = tonumber(t[1]) * US + tonumber(t[2])
  end
  reply = { server_now }
  local specs = ARGV[2] + 0
  for s = 1, specs do
    local at = 3 + 4 * (s - 1)
    ALGORITHMS[s], LIMITS[s], PERIODS[s], CAPACITIES[s] = ARGV[at] + 0, ARGV[at + 1] + 0, ARGV[at + 2] + 0, ARGV[at + 3] + 0
  end
  local arg, first = 4 + 4 * specs, 1
  local decisions = ARGV[3 + 4 * specs] + 0
  for _ = 1, decisions do
    local count = tonumber(ARGV[arg])
    local charge = count > 0
    if not charge then count = -count end
    now = ARGV[1] == 'server' and server_now or tonumber(ARGV[arg + 1])
    present = now
    local outcome_at = #reply + 1
    reply[outcome_at] = 0
    local ok, all = run(decisions, first, arg + 2, count, charge)
    if ok and not all and charge then
      local at = reservation(arg + 2, count, outcome_at)
      if at then
        for j = #reply, outcome_at + 1, -1 do reply[j] = nil end
        now = at
        ok, all = run(decisions, first, arg + 2, count, charge)
      end
    end
    if ok then
      reply[outcome_at] = all and 1 or 0
    else
      if not string.find(tostring(all), CORRUPT, 1, true) then error(all) end
      reply[outcome_at] = -1
      for j = 1, 4 * count do reply[outcome_at + j] = 0 end
    end
    arg, first = arg + 2 + PER_CHECK * count, first + count
  end
  return reply
end
