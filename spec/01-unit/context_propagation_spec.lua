local weft = require "weft"
local helpers = require "helpers"
local ALS = weft.AsyncLocalStorage

describe("context propagation", function()
  local als
  before_each(function() als = ALS.new() end)

  it("a suspended task keeps its store and no other task sees it", function()
    local seen = {}
    helpers.run(function()
      local ts = {}
      for i = 1, 50 do
        ts[i] = weft.spawn(function()
          return als:run(i, function()
            for _ = 1, 3 do
              weft.sleep(math.random(0, 3))
              if als:getStore() ~= i then return "leak" end
            end
            return als:getStore()
          end)
        end)
      end
      for i = 1, 50 do seen[i] = ts[i]:join() end
    end)
    for i = 1, 50 do assert.equal(i, seen[i]) end
  end)

  it("spawn, timers and immediates inherit the context current when they were started", function()
    local got = {}
    als:run("registered", function()
      weft.spawn(function() got.spawn = als:getStore() end)
      weft.set_timeout(function() got.timeout = als:getStore() end, 1)
      weft.set_immediate(function() got.immediate = als:getStore() end)
      local n = 0
      local iv
      iv = weft.set_interval(function()
        n = n + 1
        got["tick" .. n] = als:getStore()
        als:enterWith("changed by a tick") -- does not reach the next tick
        if n == 2 then iv:close() end
      end, 1)
    end)
    weft.run()
    assert.same({ spawn = "registered", timeout = "registered", immediate = "registered",
                  tick1 = "registered", tick2 = "registered" }, got)
  end)

  it("later changes in the parent do not reach a started child, and the reverse", function()
    helpers.run(function()
      als:enterWith("parent-1")
      local child = weft.spawn(function()
        local first = als:getStore()
        weft.sleep(2)
        local second = als:getStore()
        als:enterWith("child")
        return first, second
      end)
      als:enterWith("parent-2")
      local first, second = child:join()
      assert.equal("parent-1", first)
      assert.equal("parent-1", second)
      assert.equal("parent-2", als:getStore())
    end)
  end)

  it("a coroutine keeps the context it was created in (TC39 generator rule)", function()
    local co = als:run("creation", function()
      return coroutine.create(function()
        local a = als:getStore()
        coroutine.yield(a)
        return als:getStore()
      end)
    end)
    local _, a = als:run("resumer-1", coroutine.resume, co)
    local _, b = als:run("resumer-2", coroutine.resume, co)
    assert.equal("creation", a)
    assert.equal("creation", b)
  end)

  it("resuming never leaks the coroutine's context into the resumer, nor the reverse", function()
    local co = coroutine.wrap(function()
      als:enterWith("inside")
      coroutine.yield(als:getStore())
      return als:getStore()
    end)
    als:run("outside", function()
      assert.equal("inside", co())
      assert.equal("outside", als:getStore())
      als:enterWith("outside-2")
      assert.equal("inside", co())
      assert.equal("outside-2", als:getStore())
    end)
  end)

  it("a coroutine that raises restores the resumer's context", function()
    als:run("resumer", function()
      local co = coroutine.create(function()
        als:enterWith("doomed")
        error("inside")
      end)
      local ok = coroutine.resume(co)
      assert.is_false(ok)
      assert.equal("resumer", als:getStore())
      local ok2 = pcall(coroutine.wrap(function() als:enterWith("x") error("y") end))
      assert.is_false(ok2)
      assert.equal("resumer", als:getStore())
    end)
  end)

  it("a coroutine suspended inside run keeps its store while others run", function()
    als:run("outer", function()
      local co = coroutine.wrap(function()
        als:run("in-co", function()
          coroutine.yield(als:getStore())
          coroutine.yield(als:getStore())
        end)
        return als:getStore()
      end)
      assert.equal("in-co", co())
      assert.equal("outer", als:getStore())
      assert.equal("in-co", co())
      assert.equal("outer", co())
    end)
  end)

  it("weft.sleep inside a plain coroutine suspends the whole task and resumes it", function()
    local r = helpers.run(function()
      return als:run("task", function()
        local gen = coroutine.wrap(function()
          for i = 1, 3 do
            weft.sleep(1)
            coroutine.yield(i .. ":" .. tostring(als:getStore()))
          end
        end)
        local out = {}
        als:run("consumer", function()
          for _ = 1, 3 do out[#out + 1] = gen() end
        end)
        return table.concat(out, ",")
      end)
    end)
    assert.equal("1:task,2:task,3:task", r)
  end)

  it("coroutine.close runs pending closes in the coroutine's own context", function()
    als:run("closer", function()
      local co = coroutine.create(function()
        als:run("inside", function()
          coroutine.yield()
        end)
      end)
      coroutine.resume(co)
      assert.is_true(coroutine.close(co))
      assert.equal("closer", als:getStore())
    end)
  end)

  it("a callback queued in one context and invoked from another sees the invoker's; bind fixes it",
    function()
      local queue = {}
      als:run("request-1", function()
        queue[#queue + 1] = function() return als:getStore() end
        queue[#queue + 1] = ALS.bind(function() return als:getStore() end)
      end)
      als:run("request-2", function()
        assert.equal("request-2", queue[1]())
        assert.equal("request-1", queue[2]())
      end)
    end)

  it("a pool waiter woken by another task resumes in its own context", function()
    -- a tiny pool: waiters suspend; a releaser from another context wakes them
    local waiters = {}
    local results = {}
    helpers.run(function()
      local ts = {}
      for i = 1, 5 do
        ts[i] = weft.spawn(function()
          return als:run("waiter-" .. i, function()
            waiters[#waiters + 1] = weft.current()
            weft.suspend()
            return als:getStore()
          end)
        end)
      end
      weft.sleep(1)
      als:run("releaser", function()
        for _, w in ipairs(waiters) do weft.wake(w) end
      end)
      for i = 1, 5 do results[i] = ts[i]:join() end
    end)
    for i = 1, 5 do assert.equal("waiter-" .. i, results[i]) end
  end)

  it("long-lived handles do not keep old frames alive", function()
    local weak = setmetatable({}, { __mode = "k" })
    local iv = als:run({}, function()
      weak[als:getStore()] = true
      return weft.set_interval(function() end, 1000)
    end)
    -- the interval is alive and pins its registration frame; closing it lets the store go
    iv:close()
    weft.run()
    collectgarbage()
    collectgarbage()
    weft.run()
    collectgarbage()
    assert.is_nil(next(weak))
  end)
end)
