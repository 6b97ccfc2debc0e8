local weft = require "weft"
local helpers = require "helpers"
local ALS = weft.AsyncLocalStorage

describe("AsyncLocalStorage", function()
  it("has no store outside any run, and the default value when one is given", function()
    assert.is_nil(ALS.new():getStore())
    assert.equal("dflt", ALS.new { defaultValue = "dflt" }:getStore())
    assert.equal("dflt", ALS:new { defaultValue = "dflt" }:getStore())
  end)

  it("run makes the store visible to fn, returns fn's results and restores after", function()
    local als = ALS.new()
    local a, b, c = als:run({ id = 1 }, function(x, y) return als:getStore().id, x, y end, "x", "y")
    assert.same({ 1, "x", "y" }, { a, b, c })
    assert.is_nil(als:getStore())
  end)

  it("restores the previous store when fn raises, and the error propagates unchanged", function()
    local als = ALS.new()
    local errobj = { code = 42 }
    als:run("outer", function()
      local ok, e = pcall(als.run, als, "inner", function()
        assert.equal("inner", als:getStore())
        error(errobj)
      end)
      assert.is_false(ok)
      assert.equal(errobj, e)
      assert.equal("outer", als:getStore())
    end)
    assert.is_nil(als:getStore())
  end)

  it("keeps instances independent", function()
    local a, b = ALS.new(), ALS.new()
    a:run("A", function()
      b:run("B", function()
        assert.equal("A", a:getStore())
        assert.equal("B", b:getStore())
        a:run("A2", function()
          assert.equal("B", b:getStore())
        end)
        assert.equal("A", a:getStore())
      end)
      assert.is_nil(b:getStore())
    end)
  end)

  it("accepts any Lua value as a store, nil included (which hides an outer store)", function()
    local als = ALS.new { defaultValue = "d" }
    for _, v in ipairs { 1, "s", true, false, {}, print, coroutine.create(print) } do
      assert.equal(v, als:run(v, function() return als:getStore() end))
    end
    als:run("outer", function()
      assert.is_nil(als:run(nil, function() return als:getStore() end))
    end)
  end)

  it("nests 10,000 runs deep, each seeing its own store", function()
    local als = ALS.new()
    local function nest(n)
      assert.equal(n + 1, als:getStore())
      if n == 0 then return "bottom" end
      return als:run(n, nest, n - 1)
    end
    assert.equal("bottom", als:run(10001, nest, 10000))
    assert.is_nil(als:getStore())
  end)

  it("exit hides this instance's store inside fn only", function()
    local a, b = ALS.new { defaultValue = "d" }, ALS.new()
    a:run("A", function()
      b:run("B", function()
        local sa, sb = a:exit(function() return a:getStore(), b:getStore() end)
        assert.is_nil(sa) -- exit means no store, not the default
        assert.equal("B", sb)
        assert.equal("A", a:getStore())
      end)
    end)
  end)

  it("enterWith changes the store for the rest of the current run", function()
    local als = ALS.new()
    als:run("outer", function()
      als:enterWith("entered")
      assert.equal("entered", als:getStore())
    end)
    assert.is_nil(als:getStore())
  end)

  it("disable hides the store until the next run or enterWith", function()
    local als = ALS.new()
    als:run("x", function()
      als:disable()
      assert.is_nil(als:getStore())
      assert.equal("y", als:run("y", function() return als:getStore() end))
    end)
    als:enterWith("z")
    assert.equal("z", als:getStore())
    als:disable()
    assert.is_nil(als:getStore())
  end)

  it("withScope restores when the to-be-closed variable goes out of scope", function()
    local als = ALS.new()
    do
      local _ <close> = als:withScope("scoped")
      assert.equal("scoped", als:getStore())
    end
    assert.is_nil(als:getStore())
    local ok = pcall(function()
      local _ <close> = als:withScope("scoped")
      error("x")
    end)
    assert.is_false(ok)
    assert.is_nil(als:getStore())
  end)

  it("bind runs fn in the context current at bind time, wherever it is called", function()
    local als = ALS.new()
    local bound = als:run("at-bind", function()
      return ALS.bind(function(x) return als:getStore(), x end)
    end)
    local s, x = als:run("at-call", bound, 7)
    assert.equal("at-bind", s)
    assert.equal(7, x)
    assert.is_nil(als:getStore())
  end)

  it("snapshot runs any function in the captured context", function()
    local als = ALS.new()
    local snap = als:run("snap", ALS.snapshot)
    assert.equal("snap", als:run("other", function()
      return snap(function() return als:getStore() end)
    end))
  end)

  it("supports a run that suspends inside, and restores afterwards", function()
    local als = ALS.new()
    local seen = helpers.run(function()
      local s = als:run("task", function()
        weft.sleep(1)
        return als:getStore()
      end)
      return { s, als:getStore() }
    end)
    assert.same({ "task" }, { seen[1], seen[2] })
  end)

  it("lets its stores be collected once nothing can observe them", function()
    local als = ALS.new()
    local weak = setmetatable({}, { __mode = "v" })
    helpers.run(function()
      for i = 1, 100 do
        als:run({ i = i }, function()
          weak[i] = als:getStore()
          weft.sleep(0)
        end)
      end
    end)
    collectgarbage()
    collectgarbage()
    weft.run() -- a loop turn drops references freed outside Lua
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak))
  end)

  it("releases the frames of coroutines abandoned inside run, and run reuses its scopes safely", function()
    local core = require "weft.core"
    local als = ALS.new()
    local function frames()
      collectgarbage()
      collectgarbage()
      return core.stats().frames
    end
    local base = frames()
    -- suspended inside two nested runs, then dropped: never closed
    for i = 1, 50 do
      local co = coroutine.create(function()
        als:run(i, function() als:run(-i, coroutine.yield) end)
      end)
      assert.is_true(coroutine.resume(co))
    end
    -- closed while suspended inside a run: the scope closes, the outer context is back
    local co = coroutine.create(function() als:run("c", coroutine.yield) end)
    coroutine.resume(co)
    assert.is_true(coroutine.close(co))
    assert.is_nil(als:getStore())
    assert.equal(base, frames())
    -- runs after all that still nest and restore correctly (scopes came back to the pool)
    local seen = als:run("a", function()
      local inner = als:run("b", function() return als:exit(function() return als:getStore() end) end)
      return { inner, als:getStore() }
    end)
    assert.same({ nil, "a" }, { seen[1], seen[2] })
    assert.is_nil(als:getStore())
    -- the pooled scopes stay private to run/exit/bind
    assert.is_nil(als.runScope)
    assert.is_nil(als.exitScope)
    assert.is_nil(ALS.enterFrame)
  end)
end)
