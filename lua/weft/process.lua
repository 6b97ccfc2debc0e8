--- The process: its guards (a CPU limit per task, a memory limit on the Lua heap) and its
-- graceful shutdown. The `weft` command calls setup() from its flags; a program that drives
-- weft.run() itself calls weft.setup{...} once.
--
-- Shutdown (SIGTERM or SIGINT, or weft.shutdown()): every server stops accepting and closes its
-- idle connections; requests in flight may finish for up to shutdown_timeout ms, and
-- weft.stopping() is true meanwhile, so that long-lived handlers (event streams) can end.
-- Then whatever is left is closed (an open stream's res:write returns nil, "closed") and
-- weft.run() returns. A second signal exits at once, with 128 + the signal's number, as a
-- shell reports a process a signal ended.
local core = require "weft.core"
local log = require "weft.log"

local process = {}

local DEFAULTS = { cpu_limit = 5000, memory_limit = 0, shutdown_timeout = 10000 }

local state = {
  stopping = false,
  shutdown_timeout = DEFAULTS.shutdown_timeout,
  servers = {}, -- open servers, in the order they began listening
  signals = nil,
}

--- Sets the guards and the shutdown. opts (each optional, defaults as the weft command's):
-- cpu_limit = ms a task may run Lua without yielding (5000; 0: off), memory_limit = MB the Lua
-- heap may reach (0: off), shutdown_timeout = ms in-flight requests get to finish (10000),
-- signals = false to leave SIGTERM and SIGINT alone. Returns true, or raises for a bad value.
function process.setup(opts)
  opts = opts or {}
  for k in pairs(opts) do
    if DEFAULTS[k] == nil and k ~= "signals" then error("weft.setup: unknown option " .. k, 2) end
  end
  local function ms(name)
    local v = opts[name]
    if v == nil then return DEFAULTS[name] end
    v = math.tointeger(v)
    if not v or v < 0 then error("weft.setup: " .. name .. " must be a whole number >= 0", 3) end
    return v
  end
  local cpu, mem = ms("cpu_limit"), ms("memory_limit")
  state.shutdown_timeout = ms("shutdown_timeout")
  local ok, err = core.cpu_limit(cpu)
  if not ok then error("weft.setup: " .. tostring(err), 2) end
  if mem > 0 or core.memory_stats() then core.memory_limit(mem * 1024 * 1024) end
  if opts.signals ~= false and not state.signals then
    local function on_signal(signum)
      if state.stopping then
        log.warn("second signal: exiting at once", { signal = signum })
        io.stdout:flush()
        os.exit(128 + signum, true)
      end
      process.shutdown()
    end
    state.signals = { core.on_signal("SIGTERM", on_signal), core.on_signal("SIGINT", on_signal) }
  end
  return true
end

--- True once a shutdown has begun: long-lived handlers should end.
function process.stopping()
  return state.stopping
end

--- The servers listening in this process (app:listen registers each).
function process.servers()
  local out = {}
  for i, s in ipairs(state.servers) do out[i] = s end
  return out
end

-- app:listen registers each server here; servers closed and empty are dropped from the list.
function process.add_server(server)
  local kept = {}
  for _, s in ipairs(state.servers) do
    if not (s:closing() and s:connections() == 0) then kept[#kept + 1] = s end
  end
  kept[#kept + 1] = server
  state.servers = kept
end

--- Begins a graceful shutdown of every server in the process (see the top of this file);
-- timeout_ms defaults to shutdown_timeout. weft.run() returns once it is over.
function process.shutdown(timeout_ms)
  if state.stopping then return end
  state.stopping = true
  local servers, open, deadline = {}, 0, nil
  for i, s in ipairs(state.servers) do
    servers[i] = s
    if not s:closing() then open = open + 1 end -- one its own code closes is not waited for
  end
  local function over()
    if deadline then deadline:close() end
    core.stop()
  end
  log.info("shutting down", { servers = open, timeout_ms = timeout_ms or state.shutdown_timeout })
  if open == 0 then return over() end
  for _, s in ipairs(servers) do
    if not s:closing() then
      s:close(function()
        open = open - 1
        if open == 0 then over() end
      end)
    end
  end
  deadline = core.set_timeout(function()
    local left = 0
    for _, s in ipairs(servers) do left = left + s:connections() end
    log.warn("shutdown deadline passed: closing what is left", { connections = left })
    for _, s in ipairs(servers) do s:abort() end
    -- the tasks told "closed" have run until their next wait; let the loop take a turn, then
    -- return from weft.run() whatever still waits
    core.set_immediate(core.stop)
  end, timeout_ms or state.shutdown_timeout)
end

return process
