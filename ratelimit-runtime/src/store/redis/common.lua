-- What decide.lua and lease.lua share, put before each of them when the scripts are built
-- (`store/redis.rs`, `store/lease.rs`): integer division on doubles, and reading a stored state.

local floor, max, min, match, format = math.floor, math.max, math.min, string.match, string.format

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
