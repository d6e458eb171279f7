-- wrk's side of bench/load.py --client wrk: sends the requests written to a file, each one
-- at most once (every signed request has a nonce of its own), for wrk's whole -d duration,
-- and prints the figures as one JSON line in load.py's format.
--
--   wrk -t T -c C -d S -s bench/load.lua URL -- REQUESTS_FILE T
--
-- REQUESTS_FILE holds whole HTTP/1.1 requests (GETs without a body), one after the other;
-- thread k of T sends those whose position is k modulo T. A thread that has sent all of
-- its requests before the time is up sends its last one again (a replay, refused) and
-- says so: "exhausted" is then 1 and the figures are void (write more requests).

local threads = {}
local mine = {}
local sent = 0
exhausted = 0

function setup(thread)
  thread:set("id", #threads)
  threads[#threads + 1] = thread
end

function init(args)
  local id = tonumber(wrk.thread:get("id"))
  local step = tonumber(args[2])
  local file = assert(io.open(args[1], "rb"))
  local data = file:read("*a")
  file:close()
  local index = 0
  for request in string.gmatch(data, "(.-\r\n\r\n)") do
    if index % step == id then
      mine[#mine + 1] = request
    end
    index = index + 1
  end
end

function request()
  if sent < #mine then
    sent = sent + 1
  else
    exhausted = 1
  end
  return mine[sent]
end

function done(summary, latency, requests)
  local errors = summary.errors
  local seconds = summary.duration / 1e6
  local out = 0
  for _, thread in ipairs(threads) do
    out = math.max(out, tonumber(thread:get("exhausted")) or 0)
  end
  io.write(string.format(
    '{"requests": %d, "seconds": %.6f, "rps": %.3f, "p50_ms": %.4f, "p99_ms": %.4f, ' ..
      '"not_200": %d, "exhausted": %d}\n',
    summary.requests,
    seconds,
    seconds > 0 and summary.requests / seconds or 0,
    latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    errors.status + errors.connect + errors.read + errors.write + errors.timeout,
    out
  ))
end
