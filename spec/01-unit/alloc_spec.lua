-- weft.core.use_pool_allocator: the Lua allocator the `weft` command installs. Each case runs in
-- its own lua5.4 process, so that the allocator of the process running busted stays as it is.
local BUILD = os.getenv("WEFT_BUILD_DIR") or "build"
local ROOT = os.getenv("PWD")

local function run(body)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(("package.path = %q .. package.path\npackage.cpath = %q .. package.cpath\n")
    :format(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;", ROOT .. "/" .. BUILD .. "/?.so;"))
  f:write("local core = require 'weft.core'\n", body)
  f:close()
  local p = assert(io.popen("lua5.4 " .. path .. " 2>&1"))
  local out = p:read("a")
  local _, _, code = p:close()
  os.remove(path)
  return out, code
end

-- whether this build can use the pool (not under AddressSanitizer, which must see every block)
local available
do
  local out = run("print(core.use_pool_allocator())")
  available = out:match("^true") ~= nil
  if not available then assert(out:match("AddressSanitizer"), out) end
end

describe("weft.core.use_pool_allocator", function()
  it("is refused, with the reason, only in a sanitized build", function()
    local out, code = run([[
      local ok, why = core.use_pool_allocator()
      print(ok, why, core.alloc_stats() ~= nil)
    ]])
    assert.equal(0, code)
    if available then
      assert.equal("true\tnil\ttrue\n", out)
    else
      assert.matches("^false\tbuilt with AddressSanitizer\tfalse", out)
    end
  end)

  it("keeps every value intact across sizes, resizes and blocks made before it was installed", function()
    if not available then return end
    local out, code = run([[
      -- made by the previous allocator, freed and resized by the pool
      local before = {}
      for i = 1, 2000 do before[i] = { i, ("b"):rep(i % 900) } end
      assert(core.use_pool_allocator())
      assert(core.use_pool_allocator()) -- a second call changes nothing
      for i = 1, 2000 do before[i][3] = i * 2 end -- grows tables made before
      local t = {}
      for i = 1, 20000 do t[i] = { i, tostring(i), ("x"):rep(i % 1500) } end -- small and large
      local buf = {}
      for i = 1, 3000 do buf[#buf + 1] = string.char(65 + i % 26) end
      local s = table.concat(buf) -- a string built through a growing buffer
      local h = {}
      for i = 1, 5000 do h["k" .. i] = i end -- a hash part rehashed many times
      for i = 1, 5000, 2 do h["k" .. i] = nil end
      collectgarbage()
      for i = 1, 2000 do
        assert(before[i][1] == i and #before[i][2] == i % 900 and before[i][3] == i * 2)
      end
      for i = 1, 20000 do
        assert(t[i][1] == i and t[i][2] == tostring(i) and #t[i][3] == i % 1500)
      end
      assert(#s == 3000 and s:sub(1, 3) == "BCD")
      local n = 0
      for _, v in pairs(h) do n = n + 1 assert(v % 2 == 0) end
      assert(n == 2500)
      before, t, h = nil, nil, nil
      collectgarbage()
      collectgarbage()
      print("ok")
    ]])
    -- the script returns normally: lua5.4 then closes the state, freeing every block through the
    -- pool after the C modules were unloaded (the module pins itself)
    assert.equal(0, code)
    assert.equal("ok\n", out)
  end)

  it("reuses freed blocks: the same work five times more takes hardly any new memory", function()
    if not available then return end
    local out, code = run([[
      assert(core.use_pool_allocator())
      local function work()
        local t = {}
        for i = 1, 50000 do t[i] = { i, tostring(i), x = i } end
        return #t
      end
      work()
      collectgarbage() collectgarbage()
      local a = core.alloc_stats()
      for _ = 1, 5 do work() collectgarbage() collectgarbage() end
      local b = core.alloc_stats()
      -- (without reuse five more rounds would take five times the first one's memory; with
      -- it only the collector's timing can move the peak a little)
      print(a.arena_bytes > 1000000, b.arena_bytes < a.arena_bytes * 1.25,
            b.pooled_bytes + b.free_bytes == b.arena_bytes, b.free_bytes > 1000000,
            type(b.huge_pages))
    ]])
    assert.equal(0, code)
    assert.equal("true\ttrue\ttrue\ttrue\tboolean\n", out)
  end)

  it("reports nothing when the process uses another allocator", function()
    local out, code = run("print(core.alloc_stats())")
    assert.equal(0, code)
    assert.equal("nil\n", out)
  end)
end)

describe("weft.core.alloc_fresh", function()
  -- Makes 20,000 small tables, drops them and collects; then makes 20,000 more and prints how
  -- many of the new tables sit at an address one of the dropped ones had.
  local REUSE = [[
    local function addresses(n)
      local keep, seen = {}, {}
      for i = 1, n do keep[i] = { i } seen[string.format("%p", keep[i])] = true end
      return keep, seen
    end
    local function reused(seen)
      local keep, now = addresses(20000)
      local same = 0
      for a in pairs(now) do if seen[a] then same = same + 1 end end
      return same, keep
    end
  ]]

  it("says why it did nothing when the pool allocator is not in use", function()
    local out, code = run("print(core.alloc_fresh()) print(core.alloc_fresh(true))")
    assert.equal(0, code)
    assert.equal("false\tthe pool allocator is not in use\n"
      .. "false\tthe pool allocator is not in use\n", out)
  end)

  it("leaves every block freed so far unused, until it is sealed", function()
    if not available then return end
    local out, code = run(REUSE .. [[
      assert(core.use_pool_allocator())
      -- without it, freed blocks are handed out again
      local seen = select(2, addresses(20000))
      collectgarbage() collectgarbage()
      local plain = reused(seen)
      -- with it, none of them (it collects first: the dropped tables need no collection here)
      local seen2 = select(2, addresses(20000))
      local stats0 = core.alloc_stats()
      local bytes = core.alloc_fresh()
      local stats1 = core.alloc_stats()
      local fresh = reused(seen2)
      print(plain > 10000, fresh, bytes > 20000 * 16,
            stats1.abandoned_bytes - stats0.abandoned_bytes == bytes, stats1.sealed)
      -- sealed: the last fresh start; later calls do nothing, and freed blocks are reused
      assert(core.alloc_fresh(true))
      print(core.alloc_fresh())
      local seen3 = select(2, addresses(20000))
      collectgarbage() collectgarbage()
      print(reused(seen3) > 10000, core.alloc_stats().sealed)
    ]])
    assert.equal(0, code)
    assert.equal("true\t0\ttrue\ttrue\tfalse\nfalse\tsealed\ntrue\ttrue\n", out)
  end)

  it("is what a container's load and weft.tune_gc end with", function()
    if not available then return end
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    for i = 1, 300 do
      local f = assert(io.open(("%s/c%d.lua"):format(dir, i), "w"))
      f:write(("return { name = 'C%d', ping = function() return %d end }\n"):format(i, i))
      f:close()
    end
    local out, code = run(([[
      assert(core.use_pool_allocator())
      local weft = require "weft"
      local before = core.alloc_stats().abandoned_bytes
      local c = weft.di.container()
      c:load(%q)
      local loaded = core.alloc_stats()
      print(c:get("C7"):ping(), loaded.abandoned_bytes > before, loaded.sealed)
      weft.tune_gc()
      local tuned = core.alloc_stats()
      print(tuned.abandoned_bytes >= loaded.abandoned_bytes, tuned.sealed)
      -- a load once the process runs (sealed) leaves its holes to be reused
      local c2 = weft.di.container()
      c2:load(%q)
      print(c2:get("C9"):ping(), core.alloc_stats().abandoned_bytes == tuned.abandoned_bytes)
    ]]):format(dir, dir))
    os.execute("rm -rf " .. dir)
    assert.equal(0, code)
    assert.equal("7\ttrue\tfalse\ntrue\ttrue\n9\ttrue\n", out)
  end)
end)

describe("weft.core.table_new", function()
  it("makes an empty table with room for the entries asked for, and refuses bad sizes", function()
    local core = require "weft.core"
    local t = core.table_new(0, 4)
    assert.same({}, t)
    assert.is_nil(getmetatable(t))
    -- room for four fields: filling them allocates nothing more
    local out = run([[
      collectgarbage("stop")
      local t = core.table_new(2, 4)
      local before = collectgarbage("count")
      t[1], t[2], t.a, t.b, t.c, t.d = 1, 2, 3, 4, 5, 6
      local sized = collectgarbage("count") - before
      local u = {}
      before = collectgarbage("count")
      u[1], u[2], u.a, u.b, u.c, u.d = 1, 2, 3, 4, 5, 6
      print(sized, collectgarbage("count") - before > 0)
    ]])
    assert.equal("0.0\ttrue\n", out)
    assert.are_not.equal(core.table_new(), core.table_new())
    assert.has_error(function() core.table_new(-1) end)
    assert.has_error(function() core.table_new(0, -1) end)
    assert.has_error(function() core.table_new(0, 1 << 30) end)
  end)
end)
