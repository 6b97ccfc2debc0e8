-- The `weft` command, run as a user runs it.
local ps = require "support.procserver"

local ROOT = os.getenv("PWD")
local ENV = ("LUA_PATH='%s/lua/?.lua;%s/lua/?/init.lua;;' LUA_CPATH='%s/?.so;;'")
  :format(ROOT, ROOT, ps.BUILD)

local function weft(args)
  local p = assert(io.popen(("env %s lua5.4 bin/weft %s 2>&1"):format(ENV, args)))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

describe("the weft command", function()
  it("prints its usage with --help and its version with --version", function()
    local out, code = weft("--help")
    assert.equal(0, code)
    assert.matches("usage: weft APP.lua", out)
    assert.matches("%-%-port", out)
    out, code = weft("--version")
    assert.equal(0, code)
    assert.matches("^weft %d+%.%d+%.%d+", out)
  end)

  it("fails clearly on a missing app, a bad option or a file that is not an app", function()
    local out, code = weft("")
    assert.equal(2, code)
    assert.matches("no app file given", out)
    out, code = weft("spec/fixtures/server_app.lua --port nope")
    assert.equal(2, code)
    assert.matches("%-%-port: invalid value", out)
    out, code = weft("spec/fixtures/server_app.lua --frobnicate")
    assert.equal(2, code)
    assert.matches("unknown option", out)
    out, code = weft("no/such/app.lua")
    assert.equal(2, code)
    assert.matches("no/such/app.lua", out)
    out, code = weft("spec/support/procserver.lua --port 0")
    assert.equal(2, code)
    assert.matches("must return an app", out)
  end)

  it("says --workers above 1 is not built yet, and exits non-zero", function()
    local out, code = weft("spec/fixtures/server_app.lua --workers 2")
    assert.equal(2, code)
    assert.matches("%-%-workers above 1 is not built yet", out)
  end)

  it("prints the real address with --port 0 and serves apps/hello", function()
    local srv = ps.start("apps/hello/app.lua")
    assert.is_true(srv.port > 0)
    assert.equal("Hello, World!\n", (ps.curl(srv:url("/"))))
    local ok = srv:stop()
    assert.is_true(ok)
  end)

  it("serves with the pool allocator unless --system-allocator, the same answers either way", function()
    -- (a sanitized build keeps the system allocator: AddressSanitizer must see every block)
    local sanitized = (os.getenv("WEFT_BUILD_DIR") or ""):find("asan") ~= nil
    local answers = {}
    for _, flags in ipairs { "", " --system-allocator" } do
      local srv = ps.start("spec/fixtures/alloc_app.lua" .. flags)
      local which = ps.curl(srv:url("/allocator"))
      assert.equal((flags == "" and not sanitized) and "pool" or "system", which)
      assert.equal(which == "pool" and "true" or "nil", (ps.curl(srv:url("/sealed"))))
      local got = {}
      for _, n in ipairs { 10, 3000, 20000 } do
        got[#got + 1] = ps.curl(srv:url("/churn?n=" .. n))
      end
      answers[#answers + 1] = table.concat(got, ",")
      assert.is_true((srv:stop()))
    end
    assert.equal(answers[1], answers[2])
    -- sum over i of #tostring(i) + i % 700, computed here
    local want = 0
    for i = 1, 3000 do want = want + #tostring(i) + i % 700 end
    assert.equal(tostring(want), answers[1]:match("^[^,]*,([^,]*)"))
  end)

  it("writes an access line per request unless --no-access-log", function()
    local cjson = require "cjson"
    local function access_lines(extra)
      local srv = ps.start("apps/hello/app.lua" .. (extra or ""))
      ps.curl("-H 'X-Request-Id: acc-9' " .. srv:url("/hello/x"))
      local _, out = srv:stop()
      local found = {}
      for line in out:gmatch("[^\n]+") do
        local rec = cjson.decode(line)
        if rec.msg == "access" then found[#found + 1] = rec end
      end
      return found
    end
    local lines = access_lines()
    assert.equal(1, #lines)
    assert.same({ "GET", "/hello/x", 200, "acc-9" },
      { lines[1].method, lines[1].path, lines[1].status, lines[1].request_id })
    assert.is_true(lines[1].bytes > 0)
    assert.equal(0, #access_lines(" --no-access-log"))
  end)

  it("logs a raising handler's error with the request id and traceback, as one JSON line", function()
    local cjson = require "cjson"
    local srv = ps.start("spec/fixtures/server_app.lua")
    ps.curl("-H 'X-Request-Id: logged-1' " .. srv:url("/boom"))
    local ok, out = srv:stop()
    assert.is_true(ok)
    local found
    for line in out:gmatch("[^\n]+") do
      local rec = cjson.decode(line)
      if rec.request_id == "logged-1" and rec.level == "error" then found = rec end
    end
    assert.is_table(found, "no log line with the request id in: " .. out)
    assert.equal("error", found.level)
    assert.matches("secret failure detail", found.error)
    assert.matches("stack traceback", found.traceback)
  end)
end)
