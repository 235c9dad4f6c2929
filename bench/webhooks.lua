-- wrk script: post prepared, signed webhooks, each request distinct.
--
--   wrk -t T -c C -d D -s bench/webhooks.lua URL -- FILE T [drain]
--
-- FILE has one "signature<TAB>form body" line per request; thread i of T takes every
-- T-th line, starting at line i, and formats them all in init() so that request() only
-- hands out the next one. Past its last line a thread starts over, which done() reveals
-- (sent > prepared); with "drain" it prints "exhausted" instead and then asks for
-- /healthz only, so the caller can stop wrk once every webhook went out.

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  threads[#threads + 1] = thread
end

-- Globals, so that done() can read them with thread:get().
prepared = {}
prepared_count = 0
sent = 0

local drain = false
local exhausted = false
local health

function init(args)
  local path, thread_count = args[1], tonumber(args[2])
  drain = args[3] == "drain"
  local headers = {
    ["Host"] = wrk.host .. ":" .. wrk.port,
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }
  local line_number = 0
  for line in io.lines(path) do
    if line_number % thread_count == id then
      local signature, body = line:match("^([^\t]*)\t(.*)$")
      headers["X-Twilio-Signature"] = signature
      prepared[#prepared + 1] = wrk.format("POST", wrk.path, headers, body)
    end
    line_number = line_number + 1
  end
  prepared_count = #prepared
  health = wrk.format("GET", "/healthz", { ["Host"] = headers["Host"] })
end

function request()
  if sent < prepared_count then
    sent = sent + 1
    return prepared[sent]
  end
  if drain then
    if not exhausted then
      exhausted = true
      io.write("exhausted\n")
      io.stdout:flush()
    end
    return health
  end
  sent = sent + 1
  return prepared[(sent - 1) % prepared_count + 1]
end

function done(summary, latency, requests)
  local sent_total, prepared_total = 0, 0
  for _, thread in ipairs(threads) do
    sent_total = sent_total + thread:get("sent")
    prepared_total = prepared_total + thread:get("prepared_count")
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "sent": %d, "prepared": %d, "non2xx": %d, '
      .. '"socket_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, sent_total, prepared_total, errors.status,
    errors.connect + errors.read + errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(99)
  ))
end
