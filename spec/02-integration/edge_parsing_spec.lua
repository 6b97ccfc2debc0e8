-- What a correct HTTP/1.1 server refuses (RFC 9112), sent over raw sockets (lua-socket) and
-- python3 to `weft spec/fixtures/edge_app.lua`: each gets its 400 (413, 505) and a close,
-- a request pipelined behind it is never answered, and no handler sees what it smuggled.
local ps = require "support.procserver"
local cjson = require "cjson"

local APP = "spec/fixtures/edge_app.lua"

local function get(path, extra)
  return ("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n"):format(path, extra or "")
end

describe("the edge: strict parsing", function()
  local srv
  setup(function() srv = ps.start(APP) end)
  teardown(function() if srv then srv:stop() end end)

  local function handled()
    local rs = ps.exchange(srv.port, get("/seen", "Connection: close\r\n"))
    return cjson.decode(rs[1].body).handled
  end

  -- sends bytes and a well-formed request behind them; expects one answer, then the close.
  -- body_only: the head was sound, so the handler ran (and its body read failed)
  local function refused(bytes, status, body_only)
    local before = handled()
    local rs, data, why = ps.exchange(srv.port, bytes .. get("/", "Connection: close\r\n"))
    assert.equal(1, #rs, "answers to: " .. bytes:sub(1, 80) .. "\n" .. data)
    assert.equal(status or 400, rs[1].status)
    assert.equal("close", rs[1].headers["connection"])
    assert.equal("closed", why)
    -- nothing reached the app: the one request counted is /seen's own
    assert.equal(before + (body_only and 2 or 1), handled())
  end

  it("refuses a bare CR as a line end, in the head and in chunked framing", function()
    refused("GET / HTTP/1.1\r\nHost: t\r\n\r\r\n")
    refused("GET / HTTP/1.1\r\nHost: t\r\nX-A: b\rc: d\r\n\r\n")
    refused("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\rXabc\rX0\rX\rX",
            400, true)
    refused("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\rX0\r\n\r\n",
            400, true)
  end)

  it("refuses obs-fold, so no CR or LF reaches a handler inside a header value", function()
    refused("GET /headers HTTP/1.1\r\nHost: t\r\nX-A: b\r\n c\r\n\r\n")
    refused("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    local rs = ps.exchange(srv.port, get("/headers", "X-A: b c\r\nConnection: close\r\n"))
    assert.equal("b c", cjson.decode(rs[1].body)["x-a"])
  end)

  it("refuses Transfer-Encoding on HTTP/1.0 and never keeps that connection", function()
    refused("POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" ..
            "3\r\nabc\r\n0\r\n\r\n")
  end)

  it("refuses HTTP/1.1 without Host, and two Hosts", function()
    refused("GET / HTTP/1.1\r\n\r\n")
    refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    refused("GET / HTTP/1.1\r\nHost: a b\r\n\r\n")
  end)

  it("refuses versions other than HTTP/1.0 and 1.1", function()
    refused("GET /\r\n\r\n")
    refused("GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505)
  end)

  it("refuses a path whose escapes are malformed or not UTF-8, before any handler", function()
    refused(get("/notes/%zz"))
    refused(get("/notes/%4"))
    refused(get("/notes/%ff%fe"))
    refused(get("/notes/caf\xc3\xa9")) -- raw bytes: strict llhttp refuses them (RFC 3986)
    refused(get("/notes/a\tb"))
    local rs = ps.exchange(srv.port, get("/notes/caf%C3%A9", "Connection: close\r\n"))
    assert.equal(200, rs[1].status)
    assert.equal("café", cjson.decode(rs[1].body).id)
  end)

  it("counts chunk extensions and leading zeros against limits (python3)", function()
    -- 2 MiB of framing under the default 1 MiB body limit: in one line (400: over 4 KiB),
    -- and spread over one-byte chunks (413)
    local script = [[
import socket, sys
port = int(sys.argv[1])
def attempt(body):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    sent = 0
    try:
        for i in range(0, len(body), 65536):
            s.sendall(body[i:i + 65536])
            sent += 65536
    except OSError:
        pass
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except OSError:
        pass
    print(data.split(b"\r\n")[0].decode(), min(sent, len(body)) < len(body))
attempt(b"1;a=" + b"b" * (2 << 20) + b"\r\nx\r\n0\r\n\r\n")
attempt(b"0" * (2 << 20) + b"1\r\nx\r\n0\r\n\r\n")
attempt((b"1;a=" + b"b" * 4000 + b"\r\nx\r\n") * 520 + b"0\r\n\r\n")
attempt((b"0" * 4000 + b"1\r\nx\r\n") * 520 + b"0\r\n\r\n")
]]
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local p = assert(io.popen("env -u LD_PRELOAD python3 " .. path .. " " .. srv.port))
    local out = p:read("a")
    p:close()
    os.remove(path)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(4, #lines, out)
    assert.matches("^HTTP/1.1 400 ", lines[1])
    assert.matches("^HTTP/1.1 400 ", lines[2])
    assert.matches("^HTTP/1.1 413 ", lines[3])
    assert.matches("^HTTP/1.1 413 ", lines[4])
  end)
end)
