-- Refresh with rotation: every request presents a refresh token that was
-- never presented before, so every request is a real rotation (a database
-- write), never an answer from the reuse grace window.
--
-- Each thread starts with its share of the tokens in $BENCH_TOKENS (one
-- per line, one per connection plus one per thread: wrk calls request()
-- once on the first thread before connecting, to check the script) and, as each answer comes back, puts
-- the rotated refresh token it carries back into its pool: the chains a
-- real client follows, refresh after refresh. A request is only made when
-- the previous answer on its connection is in, so the pool never runs dry
-- unless an answer carried no token (then "exhausted" is sent and counted
-- as a non-2xx answer, which the harness reports).

local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local tokens = {}

function init(args)
  local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
  local i = 0
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if i % threads == id then
      table.insert(tokens, line)
    end
    i = i + 1
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local token = table.remove(tokens) or "exhausted"
  return wrk.format(nil, nil, nil, '{"refresh":"' .. token .. '"}')
end

function response(status, headers, body)
  local token = body:match('"refresh":"([^"]+)"')
  if token then
    table.insert(tokens, token)
  end
end
