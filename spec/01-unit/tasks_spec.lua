local weft = require "weft"
local helpers = require "helpers"
local ALS = weft.AsyncLocalStorage

describe("tasks and timers", function()
  it("spawn runs fn with its arguments; join returns its results", function()
    local a, b, n = helpers.run(function()
      local t = weft.spawn(function(x, y) weft.sleep(1) return x + y, "two", nil end, 1, 2)
      return t:join()
    end)
    assert.same({ 3, "two" }, { a, b, n })
  end)

  it("join re-raises the task's error (unchanged) and it is not reported as unhandled", function()
    local errors = helpers.capture_errors(function()
      local ok, e = helpers.run(function()
        local t = weft.spawn(function() weft.sleep(1) error({ code = 7 }) end)
        return pcall(t.join, t)
      end)
      assert.is_false(ok)
      assert.same({ code = 7 }, e)
    end)
    assert.equal(0, #errors)
  end)

  it("join on a finished task returns at once, again and again", function()
    helpers.run(function()
      local t = weft.spawn(function() return "r" end)
      weft.sleep(5)
      assert.equal("done", t:status())
      assert.equal("r", t:join())
      assert.equal("r", t:join())
    end)
  end)

  it("a finished task keeps its results (and its error) through collections until dropped", function()
    local weak = setmetatable({}, { __mode = "v" })
    helpers.run(function()
      local t = weft.spawn(function() return { big = true }, "x" end)
      local bad = weft.spawn(function() error({ code = 9 }) end)
      local joiner = weft.spawn(function() return pcall(bad.join, bad) end)
      weft.sleep(5)
      collectgarbage()
      collectgarbage()
      local r, x = t:join()
      assert.same({ { big = true }, "x" }, { r, x })
      local ok, e = joiner:join()
      assert.is_false(ok)
      assert.same({ code = 9 }, e)
      weak[1] = r
    end)
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1]) -- once the task is gone, so are its results
  end)

  it("a join that cannot suspend (across a C call) fails clearly, and nothing is woken later", function()
    local caught, after, resumed_late
    helpers.run(function()
      local t = weft.spawn(function() weft.sleep(30) return 1 end)
      local joiner = weft.spawn(function()
        -- table.sort's comparator is a C boundary: the coroutine's wait cannot reach the task
        local ok, e = pcall(table.sort, { 1, 2, 3 }, function(x, y)
          coroutine.wrap(function() t:join() resumed_late = true end)()
          return x < y
        end)
        caught = not ok and tostring(e)
        after = weft.current():status() -- the task runs on; it does not wait any more
      end)
      joiner:join()
      -- the joining task is finished and collectable before t finishes
      joiner = nil -- luacheck: ignore 311
      collectgarbage()
      collectgarbage()
      assert.equal(1, t:join())
      weft.sleep(5)
    end)
    assert.matches("cannot yield", caught)
    assert.equal("running", after)
    assert.is_nil(resumed_late)
  end)

  it("a task cannot join itself", function()
    helpers.run(function()
      local ok, e = pcall(function() return weft.current():join() end)
      assert.is_false(ok)
      assert.matches("cannot join itself", e)
    end)
  end)

  it("sleep suspends for about the time asked, sleep(0) yields one turn", function()
    local order = {}
    helpers.run(function()
      local t0 = weft.now()
      local a = weft.spawn(function() weft.sleep(0) order[#order + 1] = "a" end)
      order[#order + 1] = "main"
      weft.sleep(30)
      assert.is_true(weft.now() - t0 >= 29)
      a:join()
    end)
    assert.same({ "main", "a" }, order)
  end)

  it("interleaves many tasks, ordered by their sleeps", function()
    local order = {}
    helpers.run(function()
      local ts = {}
      for _, ms in ipairs { 30, 10, 20 } do
        ts[#ts + 1] = weft.spawn(function() weft.sleep(ms) order[#order + 1] = ms end)
      end
      for _, t in ipairs(ts) do t:join() end
    end)
    assert.same({ 10, 20, 30 }, order)
  end)

  it("sleep outside a task is a clear error", function()
    local ok, e = pcall(weft.sleep, 1)
    assert.is_false(ok)
    assert.matches("inside a task", e)
  end)

  it("set_timeout, set_interval and set_immediate run callbacks; close cancels", function()
    local log = {}
    local cancelled = weft.set_timeout(function() log[#log + 1] = "cancelled" end, 5)
    cancelled:close()
    local imm = weft.set_immediate(function() log[#log + 1] = "never" end)
    imm:close()
    weft.set_immediate(function() log[#log + 1] = "immediate" end)
    weft.set_timeout(function() log[#log + 1] = "timeout" end, 10)
    local n = 0
    local iv
    iv = weft.set_interval(function()
      n = n + 1
      if n == 3 then iv:close() end
    end, 2)
    weft.run()
    assert.equal(3, n)
    assert.same({ "immediate", "timeout" }, log)
    assert.is_false(iv:active())
  end)

  it("timer callbacks are tasks: they may sleep", function()
    local done = false
    weft.set_timeout(function() weft.sleep(2) done = true end, 1)
    weft.run()
    assert.is_true(done)
  end)

  it("suspend waits until wake, on a later turn, with wake's values", function()
    local got
    helpers.run(function()
      local t = weft.spawn(function() return weft.suspend() end)
      weft.sleep(1)
      assert.equal("waiting", t:status())
      assert.is_true(weft.wake(t, 1, nil, "three"))
      assert.is_false(weft.wake(t, "again")) -- a wake is already pending
      assert.equal("waiting", t:status()) -- not resumed synchronously
      got = table.pack(t:join())
    end)
    assert.same({ n = 3, 1, nil, "three" }, got)
  end)

  it("wake does nothing to a task that is not suspended (a late wake is dropped)", function()
    helpers.run(function()
      local t = weft.spawn(function() weft.sleep(20) return "slept" end)
      weft.sleep(1)
      assert.is_false(weft.wake(t, "x")) -- sleeping, not suspended
      assert.equal("slept", t:join())
      assert.is_false(weft.wake(t)) -- finished
    end)
  end)

  it("current returns the running task, nil in the main chunk", function()
    assert.is_nil(weft.current())
    helpers.run(function()
      local me = weft.current()
      local t = weft.spawn(function() return weft.current() end)
      assert.equal(t, t:join())
      assert.not_equal(me, t)
    end)
  end)

  it("work queued in the main chunk runs when weft.run starts; run can be called again", function()
    local ran = {}
    weft.spawn(function() ran[#ran + 1] = 1 end)
    weft.set_immediate(function() ran[#ran + 1] = 2 end)
    assert.same({}, ran)
    weft.run()
    assert.same({ 1, 2 }, ran)
    weft.spawn(function() ran[#ran + 1] = 3 end)
    weft.run()
    assert.same({ 1, 2, 3 }, ran)
  end)

  it("stop ends run early; the rest runs on the next run", function()
    local ran = {}
    weft.set_timeout(function() ran[#ran + 1] = "first"; weft.stop() end, 1)
    weft.set_timeout(function() ran[#ran + 1] = "second" end, 30)
    weft.run()
    assert.same({ "first" }, ran)
    weft.run()
    assert.same({ "first", "second" }, ran)
  end)

  it("now is monotonic milliseconds", function()
    local a = weft.now()
    assert.is_true(math.type(a) == "integer")
    assert.is_true(weft.now() >= a)
  end)

  it("on_error receives errors no one joins, in the failing code's context", function()
    local als = ALS.new()
    local errors = {}
    weft.on_error(function(err, tb)
      errors[#errors + 1] = { err = err, tb = tb, store = als:getStore() }
    end)
    als:run("spawner", function()
      weft.spawn(function()
        als:run("failing", function()
          weft.sleep(1)
          error("boom")
        end)
      end)
      weft.set_timeout(function() error("timer boom") end, 2)
    end)
    weft.run()
    weft.on_error(nil)
    assert.equal(2, #errors)
    -- the order is not the point: when both timers fall due in the same loop turn (a busy
    -- machine; seen in CI) the timer's error can come first. Find each by its message
    if errors[1].err:find("timer boom", 1, true) then errors[1], errors[2] = errors[2], errors[1] end
    assert.matches("boom", errors[1].err)
    assert.not_matches("timer boom", errors[1].err)
    assert.matches("stack traceback", errors[1].tb)
    assert.equal("failing", errors[1].store)
    assert.matches("timer boom", errors[2].err)
    assert.equal("spawner", errors[2].store)
  end)

  it("a late timer never resumes a task that has moved on (generation check)", function()
    helpers.run(function()
      -- a task suspended by suspend() is not resumed by an unrelated sleep timer firing
      local t = weft.spawn(function()
        local r = weft.suspend()
        return r
      end)
      weft.sleep(5)
      assert.equal("waiting", t:status())
      weft.wake(t, "woken")
      assert.equal("woken", t:join())
    end)
  end)

  it("a bare coroutine.yield at a task's top level yields one turn", function()
    local order = {}
    helpers.run(function()
      local t = weft.spawn(function()
        order[#order + 1] = "t1"
        coroutine.yield()
        order[#order + 1] = "t2"
      end)
      weft.sleep(0)
      order[#order + 1] = "main"
      t:join()
    end)
    assert.equal("t1", order[1])
    assert.equal("t2", order[#order])
  end)
end)
