-- Guards no peer has, over real sockets to `weft spec/fixtures/edge_app.lua`: a task that runs
-- Lua too long without yielding gets an error raised in it (--cpu-limit), the Lua heap has a
-- ceiling (--memory-limit), and a memory error in weft's own code between tasks never stops
-- the server.
local ps = require "support.procserver"
local cjson = require "cjson"
local socket = require "socket"

local APP = "spec/fixtures/edge_app.lua"

local function get(path, extra)
  return ("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n"):format(path, extra or "")
end

local function ask(srv, path, timeout)
  local rs, data = ps.exchange(srv.port, get(path, "Connection: close\r\n"), { timeout = timeout })
  return rs[1], data
end

local function log_lines(stdout, msg)
  local out = {}
  for line in stdout:gmatch("[^\n]+") do
    local ok, rec = pcall(cjson.decode, line)
    if ok and type(rec) == "table" and rec.msg == msg then out[#out + 1] = rec end
  end
  return out
end

describe("the edge: guards", function()
  describe("--cpu-limit", function()
    local srv
    setup(function() srv = ps.start(APP .. " --cpu-limit 300") end)

    it("raises an error in a task that runs too long; every other connection is served again",
      function()
        local spinner = ps.connect(srv.port, 10)
        local t0 = socket.gettime()
        spinner:send(get("/spin", "X-Request-Id: runaway-1\r\nConnection: close\r\n"))
        socket.sleep(0.05)
        -- meanwhile another client waits: it is served as soon as the runaway task is stopped
        local other = ask(srv, "/", 10)
        local t_other = socket.gettime() - t0
        local data = ps.read_all(spinner, 10)
        local t_spin = socket.gettime() - t0
        spinner:close()
        assert.matches("^HTTP/1.1 500 ", data)
        assert.equal(200, other.status)
        assert.is_true(t_spin >= 0.28 and t_spin < 2, "500 after " .. t_spin .. " s")
        assert.is_true(t_other < t_spin + 0.5)
        -- a short burst is within the limit
        assert.equal(200, ask(srv, "/spin?ms=100").status)
      end)

    it("raises it again after another limit in a task that swallows it", function()
      local t0 = socket.gettime()
      local r = ask(srv, "/spin-pcall", 10)
      local dt = socket.gettime() - t0
      assert.equal(200, r.status)
      assert.equal("survived", r.body)
      assert.is_true(dt >= 0.55, "only " .. dt .. " s")
    end)

    it("logs the 500 with the request id and a traceback", function()
      local ok, stdout = srv:stop()
      assert.is_true(ok)
      local recs = log_lines(stdout, "request handler raised")
      local found
      for _, rec in ipairs(recs) do
        if rec.request_id == "runaway-1" then found = rec end
      end
      assert.is_truthy(found, stdout)
      assert.matches("cpu limit exceeded", found.error)
      assert.matches("edge_app.lua", found.traceback)
    end)
  end)

  describe("--cpu-limit 0", function()
    it("turns the guard off", function()
      local srv = ps.start(APP .. " --cpu-limit 0")
      finally(function() srv:stop() end)
      local r = ask(srv, "/spin?ms=700", 10)
      assert.equal(200, r.status)
    end)
  end)

  describe("--memory-limit", function()
    local srv
    setup(function() srv = ps.start(APP .. " --memory-limit 48") end)

    it("fails the request that allocates past it with a 500; memory comes back", function()
      local r = ask(srv, "/alloc?mb=100", 10)
      assert.equal(500, r.status)
      -- the server goes on, and the memory of the failed request is free again
      assert.equal(200, ask(srv, "/").status)
      for _ = 1, 3 do
        r = ask(srv, "/alloc?mb=16", 10)
        assert.equal(200, r.status)
        assert.equal("allocated 16", r.body)
      end
      local stats = cjson.decode(ask(srv, "/conns").body).memory
      assert.equal(48 * 1024 * 1024, stats.limit)
      assert.is_true(stats.refused > 0)
      assert.is_true(stats.bytes < stats.limit)
    end)

    it("logs the failure", function()
      local ok, stdout = srv:stop()
      assert.is_true(ok)
      local recs = log_lines(stdout, "request handler raised")
      assert.is_true(#recs >= 1, stdout)
      assert.matches("not enough memory", recs[1].error)
    end)
  end)

  describe("a memory error in weft's own code between tasks", function()
    local srv
    setup(function() srv = ps.start(APP .. " --memory-limit 1024") end)
    teardown(function() if srv then srv:stop() end end)

    it("never stops the loop nor leaves a connection busy", function()
      -- each round makes one allocation fail at a different point after the task that arms it
      -- (finishing the task, releasing the request, starting the next one, waking tasks...)
      for skip = 0, 24 do
        local c = ps.connect(srv.port, 5)
        c:send(get("/inject?skip=" .. skip) .. get("/sleep?ms=1") ..
               "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" ..
               get("/stream?n=3&size=100000") .. get("/", "Connection: close\r\n"))
        ps.read_all(c, 5) -- answered or cut: either way the server must go on
        c:close()
        local r
        for _ = 1, 5 do -- a refused start costs that request a 500: the next is served
          r = ask(srv, "/", 5)
          if r and r.status == 200 then break end
        end
        assert.equal(200, r.status, "after skip " .. skip)
      end
      -- disarmed: nothing is left open or running but the request asking
      assert.equal(200, ask(srv, "/inject?count=0").status)
      local conns
      for _ = 1, 50 do
        local r = ask(srv, "/conns")
        conns = r.status == 200 and cjson.decode(r.body) or {}
        if conns.connections == 1 then break end
        socket.sleep(0.05)
      end
      assert.equal(1, conns.connections)
      assert.equal(1, conns.tasks)
      assert.is_true(conns.memory.refused > 0)
    end)
  end)
end)
