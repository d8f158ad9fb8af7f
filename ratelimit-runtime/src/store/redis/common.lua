-- What decide.lua, lease.lua and refund.lua share, put before each of them when the scripts are
-- built (`wire.rs`, `lease.rs`, `refund.rs`): integer division on doubles, reading a stored
-- state, and the fixed window's one-integer state.

local floor, max, min, match, format

-- Binds the library functions above, at the start of every call: a Redis 7.0 function library
-- cannot read `math` or `string` while it is loaded.
local function bind()
  floor, max, min, match, format = math.floor, math.max, math.min, string.match, string.format
end

local function floor_div(a, b)
  local q = floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end

local function ceil_div(a, b)
  local q = floor_div(a, b)
  if q * b < a then q = q + 1 end
  return q
end

-- Raised (and caught per decision) for a state that is not ours: never a silent reset.
local CORRUPT = 'ratelimit: a key holds another type or a corrupt state'

-- A stored state "a b c" (as many numbers as `pattern` captures).
local function load(key, pattern)
  local stored = redis.pcall('GET', key)
  if not stored then return false end
  local a, b, c
  if type(stored) == 'string' then a, b, c = match(stored, pattern) end
  if not a then error(CORRUPT) end
  return true, tonumber(a), tonumber(b), tonumber(c)
end

-- A fixed window's state is one integer, its window's tag times 2^33 plus the units spent in
-- it, so that a charge is one INCRBY: the tag tells a count of this window from an older
-- window's (or an absent key, tag 0), which then counts nothing, and from a later window's
-- (the clock stepped back), which goes on counting. Limits and costs are below 2^32, so what
-- is spent (at most a limit plus a cost, while a refused charge is given back) stays below
-- 2^33; tags run from 1 to 2^20 - 1, so the integer stays below 2^53, exact in a Lua number.
-- Tags go round every 2^20 - 1 windows: a stored tag up to half of that ahead is a later
-- window, any other an older one. On Redis's clock a key dies with its window, so that only
-- a clock stepping back by more than 2^19 windows (six days of one-second windows) would
-- count a window again; on the clients' clock (where keys live at least a minute) a jump
-- ahead by more than 2^19 windows within that minute would also be taken for a step back.
local SPENT = 8589934592
local TAGS = 1048575
local HALF = 524287

-- The tag of the window ending at `end_s` (s), a multiple of `period`.
local function window_tag(end_s, period)
  return (end_s / period) % TAGS + 1
end

-- The units spent that the state `stored` counts.
local function spent_of(stored)
  return stored - floor(stored / SPENT) * SPENT
end

-- How many windows the state `stored` of a key is ahead of the window tagged `tag`: 0 for
-- that window, nil for an older window or an absent key (nothing spent in this window).
local function windows_ahead(stored, tag)
  local t = floor(stored / SPENT)
  if t == 0 then return nil end
  local ahead = (t - tag) % TAGS
  if ahead > HALF then return nil end
  return ahead
end

-- The units spent in the window tagged `tag` (or a later one) that `key` holds, and how many
-- windows ahead of `tag` they were spent (0 for this window).
local function load_window(key, tag)
  local found, stored = load(key, '^(%d+)$')
  if not found then return 0, 0 end
  local ahead = windows_ahead(stored, tag)
  if not ahead then return 0, 0 end
  return spent_of(stored), ahead
end
