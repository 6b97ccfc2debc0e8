--- weft: Lua 5.4 web handlers on a C engine (libuv + llhttp) with AsyncLocalStorage that
-- follows each request across every coroutine yield.
local core = require "weft.core"
local context = require "weft.context"

local weft = {
  version = core.version,
  AsyncLocalStorage = core.AsyncLocalStorage,
  -- the loop
  run = core.run,
  stop = core.stop,
  now = core.now,
  -- tasks and timers
  sleep = core.sleep,
  spawn = core.spawn,
  current = core.current,
  suspend = core.suspend,
  wake = core.wake,
  on_error = core.on_error,
  set_timeout = core.set_timeout,
  set_interval = core.set_interval,
  set_immediate = core.set_immediate,
  on_signal = core.on_signal,
}

--- The request being handled by the running code (from the async context), or nil.
function weft.request()
  return context.request()
end

--- A new application: routes, middleware, listen.
function weft.app(opts)
  return require("weft.app").new(opts)
end

--- A router: routes and middleware to mount with app:use("/prefix", router).
function weft.router()
  return require("weft.app").router()
end

--- Raises an HTTP error: the request is answered with `status` and `message` (and `details`,
-- sent as JSON), without being logged as a failure when status < 500.
function weft.error(status, message, details)
  return require("weft.errors").raise(status, message, details, 2)
end

--- Middleware serving the files under dir (see weft.static).
function weft.static(dir, opts)
  return require("weft.static").new(dir, opts)
end

--- The current trace: trace_id, span_id and the traceparent header value for outbound calls.
function weft.trace()
  return context.trace()
end

--- Sets Lua's collector for a server, given the heap it has now (call it once the app is
-- loaded; the `weft` command does): generational, with a minor collection every `young_kb`
-- KiB of allocation (default 128). Between requests weft runs that minor collection itself
-- when `young_kb` were allocated since the last one; Lua's own trigger, a share of the heap
-- between 1% and 50%, stays as the backstop for requests that allocate more.
-- Why: a request's garbage dies young. Lua's own default (a minor collection every 20% of the
-- heap) lets a 24 MiB app pile up ~5 MiB of garbage between collections, out of cache, and
-- each collection then stalls for milliseconds; the incremental collector re-marks the whole
-- heap every cycle; and even Lua's smallest share, 1%, is ~300 KiB of young objects in an app
-- of 10,000 components, swept and reused out of cache (measured: as slow as N = 1 with the
-- same young size). A fixed, cache-sized young generation keeps the cost per request flat in
-- the size of the app. Returns the minor multiplier chosen (percent).
function weft.tune_gc(young_kb)
  young_kb = young_kb or 128
  -- a full collection; under the pool allocator also the last fresh start: the holes the load
  -- left are not reused, so the requests' objects cycle through fresh memory (see alloc.c)
  if not core.alloc_fresh(true) then collectgarbage("collect") end
  local heap_kb = collectgarbage("count")
  local minor = math.max(1, math.min(50, math.floor(young_kb * 100 / heap_kb)))
  collectgarbage("generational", minor, 100)
  core.gc_young(young_kb)
  return minor
end

local process = require "weft.process"

--- Sets this process's guards and shutdown, as the weft command does from its flags:
-- { cpu_limit = ms (5000; 0: off), memory_limit = MB (0: off), shutdown_timeout = ms (10000),
--   signals = false to leave SIGTERM/SIGINT alone }. See weft.process.
weft.setup = process.setup
--- True once a graceful shutdown has begun: long-lived handlers should end.
weft.stopping = process.stopping
--- Begins a graceful shutdown of every server; weft.run() returns once it is over.
weft.shutdown = process.shutdown

weft.log = require "weft.log"
weft.di = require "weft.di"

return weft
