-- A deadline on every wait, over real sockets to `weft spec/fixtures/edge_app.lua`, with
-- python3 and lua-socket as the clients: slow readers are served whole, clients that stop
-- reading are closed, a body must be in within body_timeout, nothing waits forever on a
-- request that ended, and connections past max_connections are refused.
local ps = require "support.procserver"
local py = require "support.py"
local cjson = require "cjson"
local socket = require "socket"

local APP = "spec/fixtures/edge_app.lua"

local function get(path, extra)
  return ("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n"):format(path, extra or "")
end

local function seen(srv)
  local rs = ps.exchange(srv.port, get("/seen", "Connection: close\r\n"))
  return cjson.decode(rs[1].body)
end

local function tasks(srv)
  local rs = ps.exchange(srv.port, get("/stats", "Connection: close\r\n"))
  return cjson.decode(rs[1].body).tasks
end

-- waits up to `seconds` for pred() to hold
local function eventually(pred, seconds)
  local deadline = socket.gettime() + (seconds or 5)
  repeat
    if pred() then return true end
    socket.sleep(0.05)
  until socket.gettime() > deadline
  return pred()
end

-- python3: GET path, then read `step` bytes every `pause` s (never if pause < 0: stop reading
-- after the first read, for `hold` s); prints body bytes, then how the read ended
local READER = [[
import socket, sys, time
port, path, step = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
pause, hold = float(sys.argv[4]), float(sys.argv[5])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(sys.argv[6]))
s.connect(("127.0.0.1", port))
s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())
data, why = b"", "eof"
if pause < 0:
    data = s.recv(step)
    time.sleep(hold)
    s.settimeout(5)
    try:
        while True:
            d = s.recv(1 << 20)
            if not d: break
            data += d
    except OSError as e:
        why = type(e).__name__
else:
    while True:
        time.sleep(pause)
        d = s.recv(step)
        if not d: break
        data += d
head, _, body = data.partition(b"\r\n\r\n")
chunked = b"chunked" in head.lower()
print(len(body), why, chunked and body.endswith(b"0\r\n\r\n"))
]]

describe("the edge: deadlines", function()
  describe("with short idle, linger and send timeouts", function()
    local srv
    setup(function()
      srv = ps.start(APP, { WEFT_TEST_IDLE_TIMEOUT = "300", WEFT_TEST_LINGER_TIMEOUT = "200",
                            WEFT_TEST_SEND_TIMEOUT = "400" })
    end)
    teardown(function() if srv then srv:stop() end end)

    it("delivers a 4 MB buffered answer whole to a slow but steady reader", function()
      -- reading takes seconds, far past idle + linger: the idle time only starts once the
      -- answer is out
      local out = py.run(READER, srv.port, "/big?kb=4096", 65536, 0.004, 0, 8192)
      local n = tonumber(out:match("^(%d+)"))
      assert.equal(4 * 1024 * 1024, n, out)
    end)

    it("closes a client that stops reading once send_timeout passes; the writer gets timeout",
      function()
        local before = tasks(srv)
        local t0 = socket.gettime()
        local out = py.run(READER, srv.port, "/stream?n=1000&size=65536", 65536, -1, 2.5, 8192)
        assert.matches("^%d+ %w+ False", out) -- cut short: no last chunk
        assert.is_true(eventually(function() return seen(srv).stream == "timeout" end), out)
        assert.is_true(socket.gettime() - t0 < 5)
        assert.is_true(eventually(function() return tasks(srv) == before end))
      end)

    it("never cuts a reader that makes progress within every send_timeout", function()
      -- 6 MB streamed; the client reads 256 KiB every 0.2 s (under the 0.4 s timeout). Once
      -- the kernel's send queue is full, it lets weft write again only when a third of it has
      -- gone, which takes longer than that: the client's reading shows in the kernel's queue
      local out = py.run(READER, srv.port, "/stream?n=96&size=65536", 1 << 20, 0.2, 0, 1 << 17)
      assert.matches("^%d+ eof True", out) -- the last chunk arrived
      assert.is_true(tonumber(out:match("^%d+")) > 6291456, out)
      assert.equal("done", seen(srv).stream)
    end)

    it("wakes every task waiting to write, each once, when the client is closed", function()
      local before = tasks(srv)
      py.run(READER, srv.port, "/two-writers", 65536, -1, 2, 8192)
      assert.is_true(eventually(function()
        local w = seen(srv).writers
        return w and #w == 2
      end))
      local w = seen(srv).writers
      table.sort(w)
      assert.same({ "handler: timeout", "spawned: timeout" }, w)
      assert.is_true(eventually(function() return tasks(srv) == before end))
    end)
  end)

  describe("body_timeout", function()
    local srv
    setup(function() srv = ps.start(APP, { WEFT_TEST_BODY_TIMEOUT = "1000" }) end)
    teardown(function() if srv then srv:stop() end end)

    it("bounds the whole body, not each read: a byte every 0.3 s gets 408", function()
      local c = ps.connect(srv.port, 5)
      local t0 = socket.gettime()
      c:send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n")
      c:settimeout(0.3)
      local got = ""
      for _ = 1, 15 do
        c:send("x")
        local d, _, partial = c:receive("*a")
        got = got .. (d or partial or "")
        if got:find("\r\n\r\n") then break end
      end
      c:close()
      local dt = socket.gettime() - t0
      assert.matches("^HTTP/1.1 408 ", got)
      assert.is_true(dt >= 0.9 and dt < 2.5, "408 after " .. dt .. " s")
    end)

    it("wakes a task still reading the body of a request that ended: nil, \"closed\"", function()
      local before = tasks(srv)
      local c = ps.connect(srv.port, 5)
      c:send("POST /late-body HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
      local line = c:receive("*l")
      assert.equal("HTTP/1.1 200 OK", line)
      assert.is_true(eventually(function() return seen(srv).late == "error closed" end))
      c:close()
      assert.is_true(eventually(function() return tasks(srv) == before end))
    end)
  end)

  describe("max_connections", function()
    local srv
    setup(function() srv = ps.start(APP, { WEFT_TEST_MAX_CONNECTIONS = "3" }) end)

    it("accepts and closes connections past the cap at once, and logs it", function()
      local held = {}
      for i = 1, 3 do
        held[i] = ps.connect(srv.port)
        held[i]:send(get("/"))
        assert.equal("HTTP/1.1 200 OK", held[i]:receive("*l"))
      end
      local extra = ps.connect(srv.port)
      extra:send(get("/"))
      local data, why = ps.read_all(extra, 2)
      assert.equal("", data)
      assert.is_not.equal("timeout", why)
      extra:close()
      held[1]:close()
      assert.is_true(eventually(function()
        local c = ps.connect(srv.port)
        c:send(get("/", "Connection: close\r\n"))
        local d = ps.read_all(c, 2)
        c:close()
        return d:find("^HTTP/1.1 200") ~= nil
      end))
      for i = 2, 3 do held[i]:close() end
      local ok, stdout = srv:stop()
      assert.is_true(ok)
      local line = stdout:match("[^\n]*connection refused: max_connections reached[^\n]*")
      assert.is_truthy(line, stdout)
      local rec = cjson.decode(line)
      assert.equal("warn", rec.level)
      assert.equal(3, rec.max_connections)
    end)
  end)
end)
