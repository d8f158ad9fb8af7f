-- wrk script of the soak test (scripts/soak.sh): every request a key the server has never seen.
--
--   SOAK_ROUTES=tiered,data,rate-limited SOAK_WRK_THREADS=T SOAK_WRK_RESULT=FILE \
--     wrk -t T -s scripts/soak.lua http://127.0.0.1:PORT/
--
-- (Settings come from the environment: wrk's done() runs where init()'s arguments are not seen.)
-- The requests take turns among the routes of SOAK_ROUTES, each with a fresh key from
-- a counter (thread id beside it, so that no two threads repeat a key):
--   /tiered        X-API-Key "soak-N" from X-Forwarded-For 10.128.x.y and on: a key not issued
--                  is counted per address, in a fixed window of an hour (its keys live the
--                  whole run)
--   /data          X-API-Key "soak-N"      sliding log, 10 per 10 s: a heap-allocated log per key
--   /rate-limited  X-Forwarded-For 10.x.y.z, fixed window of 30 s (only if the server trusts
--                  127.0.0.1, RATELIMIT_TRUSTED_PROXIES=127.0.0.1/32; without it every such
--                  request would count as 127.0.0.1, the hot key's address)
-- The hot keys of the soak ("soak-hot", 192.0.2.1) are never generated here.
-- At the end, one line of totals goes to SOAK_WRK_RESULT for the report.

local threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

-- Globals of each thread (`counter` and `nroutes` are read back in done(); `id` is set by
-- setup()). wrk calls request() once before the run to inspect it: `counter` is then one more
-- than what was sent, and the server's own count of decisions is the figure the report uses.
routes = nil
counter = 0
nroutes = 0
nthreads = 1

function init(_)
   nthreads = tonumber(os.getenv("SOAK_WRK_THREADS") or "1")
   routes = {}
   for name in string.gmatch(os.getenv("SOAK_ROUTES") or "tiered,data", "[^,]+") do
      table.insert(routes, "/" .. name)
   end
   nroutes = #routes
   counter = 0
end

-- An IPv4 address from a number: 10.0.0.0/8 and on into 11.0.0.0/8 past 16.7 million.
local function address(n)
   local a = 10 + math.floor(n / 16777216)
   local b = math.floor(n / 65536) % 256
   local c = math.floor(n / 256) % 256
   local d = n % 256
   return a .. "." .. b .. "." .. c .. "." .. d
end

function request()
   local route = routes[counter % #routes + 1]
   -- Distinct per route: the route's own count, then the thread.
   local n = math.floor(counter / #routes) * nthreads + id
   counter = counter + 1
   if route == "/rate-limited" then
      return wrk.format("GET", route, { ["X-Forwarded-For"] = address(n) })
   end
   if route == "/tiered" then
      -- A key the server has not issued is counted per client address: a fresh address makes
      -- a fresh key (it needs the trusted proxy too).
      return wrk.format("GET", route,
         { ["X-API-Key"] = "soak-" .. n, ["X-Forwarded-For"] = address(n + 8388608) })
   end
   return wrk.format("GET", route, { ["X-API-Key"] = "soak-" .. n })
end

function done(summary, latency, requests)
   local generated, nr = 0, 0
   for _, thread in ipairs(threads) do
      generated = generated + thread:get("counter")
      nr = thread:get("nroutes")
   end
   local e = summary.errors
   local line = string.format(
      "requests=%d generated=%d duration_us=%d bytes=%d connect_errors=%d read_errors=%d"
         .. " write_errors=%d status_errors=%d timeouts=%d routes=%d latency_p50_us=%d"
         .. " latency_p99_us=%d latency_max_us=%d\n",
      summary.requests, generated, summary.duration, summary.bytes, e.connect, e.read,
      e.write, e.status, e.timeout, nr, latency:percentile(50), latency:percentile(99),
      latency.max)
   local path = os.getenv("SOAK_WRK_RESULT")
   if path then
      local out = assert(io.open(path, "w"))
      out:write(line)
      out:close()
   end
   io.write(line)
end
