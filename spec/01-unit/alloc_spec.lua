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
