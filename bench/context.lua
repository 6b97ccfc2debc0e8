-- bench/context.lua — what the async context costs, in ns per operation, next to Node 24's
-- published figures for AsyncLocalStorage (AsyncContextFrame).
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' lua5.4 bench/context.lua
-- Lua's own coroutine functions, kept before weft replaces them with context-carrying ones
local stock = { create = coroutine.create, resume = coroutine.resume, yield = coroutine.yield }
local weft = require "weft"
local core = require "weft.core"
local ALS = weft.AsyncLocalStorage

local function ns_per(n, fn)
  fn(math.min(n, 1000)) -- warm-up
  collectgarbage()
  local best = math.huge
  for _ = 1, 3 do
    local t0 = core.hrtime()
    fn(n)
    best = math.min(best, (core.hrtime() - t0) / n)
  end
  return best
end

local rows = {}
local function row(name, ns, node)
  rows[#rows + 1] = ("%-44s %10.0f %16s"):format(name, ns, node or "")
end

local als = ALS.new()
local function noop() end

row("als:run(store, fn)", ns_per(1000000, function(n)
  for _ = 1, n do als:run(1, noop) end
end), "~210")

row("als:getStore() inside a run", als:run({}, function()
  return ns_per(5000000, function(n)
    local get = als.getStore
    for _ = 1, n do get(als) end
  end)
end), "4-7")

row("als:enterWith(store)", ns_per(1000000, function(n)
  for i = 1, n do als:enterWith(i) end
end))
als:disable()

-- run with k other instances active: k nested runs, then the measured run of one more
local function run_with_active(k)
  local others = {}
  for i = 1, k do others[i] = ALS.new() end
  local function nest(i)
    if i > k then
      return ns_per(500000, function(n)
        for _ = 1, n do als:run(1, noop) end
      end)
    end
    return others[i]:run(i, nest, i + 1)
  end
  return nest(1)
end
row("als:run with 1 instance active", run_with_active(1))
row("als:run with 10 instances active", run_with_active(10))
row("als:run with 50 instances active", run_with_active(50), "~4,400")

-- resuming a coroutine made in another context: the switch in and out on every resume
row("coroutine resume+yield with a context switch", als:run("creator", function()
  local co = coroutine.wrap(function() while true do coroutine.yield() end end)
  return als:run("resumer", function()
    return ns_per(1000000, function(n)
      for _ = 1, n do co() end
    end)
  end)
end))

row("coroutine resume+yield, Lua's own functions", (function()
  local create, resume, yield = stock.create, stock.resume, stock.yield
  local co = create(function() while true do yield() end end)
  return ns_per(1000000, function(n)
    for _ = 1, n do resume(co) end
  end)
end)())

-- spawn with inheritance: spawned, started on the next turn in the spawner's context, finished
row("weft.spawn + start + finish (inherits context)", als:run("parent", function()
  return ns_per(100000, function(n)
    for _ = 1, n do weft.spawn(noop) end
    weft.run()
  end)
end))

row("weft.sleep(0) round trip in a task", (function()
  local result
  weft.spawn(function()
    result = ns_per(200000, function(n)
      for _ = 1, n do weft.sleep(0) end
    end)
  end)
  weft.run()
  return result
end)())

print(("%-44s %10s %16s"):format("operation", "weft ns", "Node 24 ns"))
for _, r in ipairs(rows) do print(r) end
