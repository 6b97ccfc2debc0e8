-- Shutdown with a deadline: SIGTERM or SIGINT stops accepting, lets in-flight requests finish
-- for up to --shutdown-timeout, closes what is left, and exits 0; a second signal exits at
-- once. Over real sockets to `weft spec/fixtures/edge_app.lua` in its own process.
local ps = require "support.procserver"
local socket = require "socket"

local APP = "spec/fixtures/edge_app.lua"

local function get(path, extra)
  return ("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n"):format(path, extra or "")
end

local function signal(srv, sig)
  os.execute("kill -" .. sig .. " " .. srv.pid)
end

describe("the edge: shutdown", function()
  it("lets an in-flight request finish, refuses new connections, exits 0", function()
    local srv = ps.start(APP)
    local c = ps.connect(srv.port, 5)
    c:send(get("/sleep?ms=400", "Connection: close\r\n"))
    socket.sleep(0.1)
    local t0 = socket.gettime()
    signal(srv, "TERM")
    socket.sleep(0.1)
    local late = socket.tcp()
    late:settimeout(1)
    assert.is_nil(late:connect("127.0.0.1", srv.port)) -- no longer listening
    late:close()
    local data = ps.read_all(c, 5)
    c:close()
    assert.matches("^HTTP/1.1 200 .*slept$", data)
    local ok, stdout, _, status = srv:stop("TERM") -- already stopping: waits for the exit
    assert.equal("0", status)
    assert.is_true(ok)
    assert.is_true(socket.gettime() - t0 < 3)
    assert.matches('"msg":"shutting down"', stdout)
  end)

  it("tells long-lived handlers through weft.stopping()", function()
    local srv = ps.start(APP)
    local c = ps.connect(srv.port, 5)
    c:send(get("/events"))
    assert.equal("HTTP/1.1 200 OK", c:receive("*l"))
    socket.sleep(0.2)
    signal(srv, "INT")
    local data = ps.read_all(c, 5)
    c:close()
    assert.matches("data: bye\n\n", data)
    assert.matches("0\r\n\r\n$", data) -- the stream was finished, not cut
    local ok = srv:stop("INT")
    assert.is_true(ok)
  end)

  it("closes what is left at the deadline: an open stream's write gets closed; exits 0", function()
    local srv = ps.start(APP .. " --shutdown-timeout 500")
    local c = ps.connect(srv.port, 5)
    c:send(get("/stubborn"))
    assert.equal("HTTP/1.1 200 OK", c:receive("*l"))
    local t0 = socket.gettime()
    signal(srv, "TERM")
    local _, why = ps.read_all(c, 5)
    local dt = socket.gettime() - t0
    c:close()
    assert.is_not.equal("timeout", why)
    assert.is_true(dt >= 0.45 and dt < 2, "closed after " .. dt .. " s")
    local ok, stdout, _, status = srv:stop("TERM")
    assert.equal("0", status)
    assert.is_true(ok)
    assert.matches("shutdown deadline passed", stdout)
  end)

  it("exits at once on a second signal", function()
    local srv = ps.start(APP)
    local c = ps.connect(srv.port, 5)
    c:send(get("/stubborn"))
    assert.equal("HTTP/1.1 200 OK", c:receive("*l"))
    signal(srv, "TERM")
    socket.sleep(0.2)
    local t0 = socket.gettime()
    local ok, _, _, status = srv:stop("INT")
    assert.is_false(ok)
    assert.equal("130", status) -- 128 + SIGINT
    assert.is_true(socket.gettime() - t0 < 1)
    c:close()
  end)
end)
