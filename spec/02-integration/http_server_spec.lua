-- HTTP/1.1 over real sockets, against `weft spec/fixtures/server_app.lua` in its own process,
-- with independent clients: raw TCP (lua-socket) and curl.
local ps = require "support.procserver"
local socket = require "socket"
local cjson = require "cjson"

local APP = "spec/fixtures/server_app.lua"

local function get(path, extra)
  return ("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n"):format(path, extra or "")
end

describe("HTTP/1.1 server", function()
  local srv
  setup(function()
    srv = ps.start(APP, { WEFT_TEST_MAX_BODY = "65536" })
  end)
  teardown(function()
    if srv then srv:stop() end
  end)

  it("answers a GET with Date and Content-Length (curl)", function()
    local out = ps.curl("-i " .. srv:url("/"))
    assert.matches("^HTTP/1.1 200 OK", out)
    assert.matches("\r\n[Dd]ate: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT\r\n", out)
    assert.matches("\r\n[Cc]ontent%-[Ll]ength: 13\r\n", out)
    assert.matches("\r\n\r\nHello, World!$", out)
  end)

  it("keeps HTTP/1.1 connections alive by default", function()
    local rs = ps.exchange(srv.port, get("/fast?tag=1") .. get("/fast?tag=2", "Connection: close\r\n"))
    assert.equal(2, #rs)
    assert.equal("fast 1", rs[1].body)
    assert.equal("fast 2", rs[2].body)
    assert.equal("close", rs[2].headers["connection"])
  end)

  it("closes HTTP/1.0 connections unless keep-alive is asked for", function()
    local c = ps.connect(srv.port)
    c:send("GET /fast HTTP/1.0\r\n\r\n")
    local data, why = ps.read_all(c, 3)
    assert.equal("closed", why)
    assert.matches("^HTTP/1.1 200", data)
    c:close()
    local rs = ps.exchange(srv.port,
      "GET /fast?tag=a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /fast?tag=b HTTP/1.0\r\n\r\n")
    assert.equal(2, #rs)
    assert.equal("keep-alive", rs[1].headers["connection"]:lower())
    assert.equal("fast b", rs[2].body)
  end)

  it("answers pipelined requests strictly in order, even when the first is slowest", function()
    local reqs = get("/delay?ms=80&tag=first") .. get("/fast?tag=second") ..
                 get("/delay?ms=10&tag=third", "Connection: close\r\n")
    local rs = ps.exchange(srv.port, reqs)
    assert.equal(3, #rs)
    assert.equal("delayed first", rs[1].body)
    assert.equal("fast second", rs[2].body)
    assert.equal("delayed third", rs[3].body)
  end)

  it("reads Content-Length and chunked request bodies", function()
    local rs = ps.exchange(srv.port,
      "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world" ..
      "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" ..
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert.equal(2, #rs)
    assert.equal("hello world", rs[1].body)
    assert.equal("hello world", rs[2].body)
    local out = ps.curl("-s --data-binary 'curl body' " .. srv:url("/echo"))
    assert.equal("curl body", out)
  end)

  it("sends 100 Continue when the handler reads the body of an Expect: 100-continue request", function()
    local c = ps.connect(srv.port)
    c:send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    local line = c:receive("*l")
    assert.equal("HTTP/1.1 100 Continue", line)
    assert.equal("", c:receive("*l"))
    c:send("ping")
    local data = ps.read_all(c, 1)
    local r = ps.parse_response(data)
    assert.equal(200, r.status)
    assert.equal("ping", r.body)
    c:close()
  end)

  it("answers HEAD without a body", function()
    local rs, raw = ps.exchange(srv.port,
      "HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", { head_only = true })
    assert.equal(1, #rs)
    assert.equal(200, rs[1].status)
    assert.equal("13", rs[1].headers["content-length"])
    assert.is_nil(raw:find("Hello"))
  end)

  it("streams chunked responses", function()
    local rs, raw = ps.exchange(srv.port, get("/stream?n=4&size=3", "Connection: close\r\n"))
    assert.equal("chunked", rs[1].headers["transfer-encoding"])
    assert.equal(string.rep("x", 12), rs[1].body)
    assert.matches("\r\n0\r\n\r\n$", raw)
    assert.equal(string.rep("x", 12), ps.curl(srv:url("/stream?n=4&size=3")))
  end)

  it("suspends a writer while the client is slow (backpressure) and delivers everything", function()
    local c = ps.connect(srv.port)
    c:setoption("tcp-nodelay", true)
    -- 16 MiB in 64 KiB writes; the client reads nothing for 600 ms
    c:send(get("/stream?n=256&size=65536", "Connection: close\r\n"))
    socket.sleep(0.6)
    local data = ps.read_all(c, 10)
    c:close()
    local r = ps.parse_response(data)
    assert.equal(16 * 1024 * 1024, #r.body)
    local stats = cjson.decode((ps.curl(srv:url("/last-stream"))))
    assert.is_nil(stats.error)
    assert.is_true(stats.ms >= 500, "the writer was not held back: " .. stats.ms .. " ms")
  end)

  it("honours Connection: close", function()
    local c = ps.connect(srv.port)
    c:send(get("/", "Connection: close\r\n") .. get("/"))
    local data, why = ps.read_all(c, 3)
    c:close()
    assert.equal("closed", why)
    local r, nextpos = ps.parse_response(data)
    assert.equal("close", r.headers["connection"])
    assert.equal(#data + 1, nextpos) -- the second request was not answered
  end)

  it("answers 400 to malformed requests and to Content-Length with Transfer-Encoding", function()
    local rs, _, why = ps.exchange(srv.port, "NOT HTTP AT ALL\r\n\r\n")
    assert.equal(400, rs[1].status)
    assert.equal("closed", why)
    rs = ps.exchange(srv.port, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n" ..
      "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert.equal(400, rs[1].status)
    rs = ps.exchange(srv.port, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      "zz\r\nhello\r\n0\r\n\r\n")
    assert.equal(400, rs[1].status)
  end)

  it("answers 414 to a request target over 8 KiB", function()
    local rs = ps.exchange(srv.port, get("/" .. string.rep("a", 9000)))
    assert.equal(414, rs[1].status)
  end)

  it("answers 431 to headers over 16 KiB or over 100 of them", function()
    local rs = ps.exchange(srv.port, get("/", "X-Big: " .. string.rep("b", 17000) .. "\r\n"))
    assert.equal(431, rs[1].status)
    local many = {}
    for i = 1, 101 do many[#many + 1] = ("X-H%d: v\r\n"):format(i) end
    rs = ps.exchange(srv.port, get("/", table.concat(many)))
    assert.equal(431, rs[1].status)
  end)

  it("answers 413 before reading the rest of an oversized body, and the client reads it", function()
    local c = ps.connect(srv.port)
    c:send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n")
    -- keep sending: a lingering close lets the client read the answer rather than a reset
    local chunk = string.rep("z", 65536)
    c:settimeout(0.05)
    for _ = 1, 16 do c:send(chunk) end
    local data = ps.read_all(c, 3)
    c:close()
    local r = ps.parse_response(data)
    assert.is_not_nil(r, "no response; got " .. #data .. " bytes")
    assert.equal(413, r.status)
    -- a chunked body that grows over the limit
    local rs = ps.exchange(srv.port, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      ("10000\r\n" .. chunk .. "\r\n"):rep(2) .. "0\r\n\r\n")
    assert.equal(413, rs[1].status)
  end)

  it("answers 500 to a raising handler without the error text, logs it, and goes on", function()
    local rs = ps.exchange(srv.port,
      get("/boom", "X-Request-Id: boom-1\r\n") .. get("/", "Connection: close\r\n"))
    assert.equal(500, rs[1].status)
    assert.is_nil(rs[1].body:find("secret"))
    assert.equal(200, rs[2].status) -- the same connection goes on
  end)

  it("answers 404 when nothing matches", function()
    local rs = ps.exchange(srv.port, get("/no/such/thing", "Connection: close\r\n"))
    assert.equal(404, rs[1].status)
  end)

  it("takes req.id from x-request-id, else generates a unique one", function()
    assert.equal("given-7", ps.curl("-H 'X-Request-Id: given-7' " .. srv:url("/id")))
    local a, b = ps.curl(srv:url("/id")), ps.curl(srv:url("/id"))
    assert.is_true(#a > 0 and a ~= b)
  end)

  it("keeps serving while hundreds of idle connections are open", function()
    local idle = {}
    for i = 1, 300 do idle[i] = ps.connect(srv.port) end
    local t0 = socket.gettime()
    local rs = ps.exchange(srv.port, get("/", "Connection: close\r\n"))
    local dt = socket.gettime() - t0
    for _, c in ipairs(idle) do c:close() end
    assert.equal(200, rs[1].status)
    assert.is_true(dt < 1, "took " .. dt .. " s")
  end)

  it("keeps each request's store its own across sleeps, children, coroutines and timers", function()
    for i = 1, 20 do
      assert.equal("r" .. i, ps.curl(srv:url("/ctx?id=r" .. i)))
    end
  end)
end)

describe("HTTP/1.1 server timeouts", function()
  local srv
  setup(function()
    srv = ps.start(APP, { WEFT_TEST_HEADER_TIMEOUT = "300", WEFT_TEST_BODY_TIMEOUT = "300",
                          WEFT_TEST_IDLE_TIMEOUT = "300", WEFT_TEST_LINGER_TIMEOUT = "300" })
  end)
  teardown(function()
    if srv then srv:stop() end
  end)

  it("answers 408 when headers do not complete in time, then closes", function()
    local c = ps.connect(srv.port)
    c:send("GET / HTTP/1.1\r\nHost: t\r\n")
    local data, why = ps.read_all(c, 3)
    c:close()
    assert.equal("closed", why)
    assert.equal(408, ps.parse_response(data).status)
  end)

  it("answers 408 when a body stalls", function()
    local c = ps.connect(srv.port)
    c:send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly part")
    local data, why = ps.read_all(c, 3)
    c:close()
    assert.equal("closed", why)
    assert.equal(408, ps.parse_response(data).status)
  end)

  it("closes an idle keep-alive connection", function()
    local c = ps.connect(srv.port)
    c:send(get("/"))
    local t0 = socket.gettime()
    local data, why = ps.read_all(c, 3)
    c:close()
    assert.equal("closed", why)
    assert.equal(200, ps.parse_response(data).status)
    assert.is_true(socket.gettime() - t0 < 2)
  end)
end)

describe("graceful shutdown", function()
  it("finishes in-flight requests on SIGTERM, then exits cleanly", function()
    local srv = ps.start(APP)
    local c = ps.connect(srv.port)
    c:send(get("/delay?ms=400&tag=inflight"))
    socket.sleep(0.1)
    os.execute("kill -TERM " .. srv.pid)
    local data = ps.read_all(c, 3)
    c:close()
    local r = ps.parse_response(data)
    assert.equal(200, r.status)
    assert.equal("delayed inflight", r.body)
    local ok = srv:stop()
    assert.is_true(ok)
  end)
end)
