local weft = require "weft"
local wtest = require "weft.test"
local http = require "weft.http"

describe("errors and error-handling middleware", function()
  before_each(function() weft.log.set_output(function() end) end)
  after_each(function() weft.log.set_output(io.stdout) end)

  it("answers weft.error with its status and message; details go out as JSON", function()
    local app = weft.app()
    app:get("/teapot", function() weft.error(418, "short and stout") end)
    app:get("/invalid", function()
      weft.error(422, "validation failed", { name = "required" })
    end)
    local c = wtest.client(app)
    local r = c:get("/teapot")
    assert.same({ 418, "short and stout" }, { r.status, r.body })
    r = c:get("/invalid")
    assert.equal(422, r.status)
    assert.same({ error = "validation failed", details = { name = "required" } }, r.json())
    r = c:get("/teapot", { headers = { accept = "application/json" } })
    assert.same({ error = "short and stout" }, r.json())
  end)

  it("logs 5xx errors but not 4xx ones", function()
    local app = weft.app()
    app:get("/4", function() weft.error(404, "gone") end)
    app:get("/5", function() weft.error(503, "busy") end)
    local c = wtest.client(app)
    assert.equal(0, #c:get("/4").logs)
    local r = c:get("/5")
    assert.equal(503, r.status)
    assert.equal(1, #r.logs)
    assert.equal("error", r.logs[1].level)
  end)

  it("lets middleware catch downstream errors and answer", function()
    local app = weft.app()
    app:use(function(req, res, next)
      local ok, err = pcall(next)
      if not ok then
        res:status(599):json { caught = tostring(err):match("kaput") }
      end
    end)
    app:get("/", function() weft.sleep(1) error("kaput") end)
    local r = wtest.client(app):get("/")
    assert.same({ 599, { caught = "kaput" } }, { r.status, r.json() })
  end)

  it("rejects weft.error with a status outside 4xx/5xx", function()
    assert.has_error(function() weft.error(200) end)
  end)
end)

describe("request conveniences", function()
  it("req:json answers 400 with the parser's message on bad JSON", function()
    local app = weft.app()
    app:post("/", function(req) return { got = req:json() } end)
    local c = wtest.client(app)
    assert.same({ got = { a = 1 } }, c:post("/", { json = { a = 1 } }).json())
    local r = c:post("/", { body = "{\"a\":" })
    assert.equal(400, r.status)
    assert.matches("invalid JSON body", r.body)
  end)

  it("req:json answers 413 for a body over the limit", function()
    local app = weft.app { body_limit = 10 }
    app:post("/", function(req) return req:json() end)
    assert.equal(413, wtest.client(app):post("/", { body = string.rep("1", 20) }).status)
  end)

  it("parses url-encoded forms, and answers 415 to other content types", function()
    local app = weft.app()
    app:post("/", function(req) return req:form() end)
    local c = wtest.client(app)
    local r = c:post("/", { body = "name=J%C3%B6rg+K&tags=a&tags=b",
      headers = { ["content-type"] = "application/x-www-form-urlencoded; charset=utf-8" } })
    assert.same({ name = "Jörg K", tags = { "a", "b" } }, r.json())
    local wrong = c:post("/", { body = "x", headers = { ["content-type"] = "text/plain" } })
    assert.equal(415, wrong.status)
  end)

  it("reads cookies, and answers 400 to a malformed Cookie header", function()
    local app = weft.app()
    app:get("/", function(req) return req.cookies end)
    local c = wtest.client(app)
    local r = c:get("/", { headers = { cookie = 'sid=abc123; theme="dark"; n=a%20b' } })
    assert.same({ sid = "abc123", theme = "dark", n = "a b" }, r.json())
    for _, bad in ipairs { "novalue", "=v", "a b=c", "k=v v", 'k="unclosed', "k=\1" } do
      local br = c:get("/", { headers = { cookie = bad } })
      assert.equal(400, br.status, "cookie " .. bad)
      assert.matches("malformed Cookie", br.body)
    end
    assert.same({}, c:get("/").json())
  end)
end)

describe("response conveniences", function()
  it("sets cookies with safe defaults and encoded values", function()
    local app = weft.app()
    app:get("/", function(req, res)
      res:cookie("sid", "a b;c", { max_age = 60, secure = true, same_site = "Lax" })
      res:cookie("plain", "v", { http_only = false, path = "/x", expires = 0 })
      res:clear_cookie("old")
      return "ok"
    end)
    local r = wtest.client(app):get("/")
    local lines = {}
    for _, h in ipairs(r.header_list) do
      if h[1]:lower() == "set-cookie" then lines[#lines + 1] = h[2] end
    end
    assert.same({
      "sid=a%20b%3Bc; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Lax",
      "plain=v; Path=/x; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
      "old=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly",
    }, lines)
    local res = http.response({}, {})
    assert.has_error(function() res:cookie("bad name", "v") end)
    assert.has_error(function() res:cookie("ok", "v", { path = "/\r\nX-Injected: 1" }) end)
  end)

  it("redirects", function()
    local app = weft.app()
    app:get("/old", function(req, res) res:redirect("/new") end)
    app:get("/moved", function(req, res) res:redirect("https://example.test/", 301) end)
    local c = wtest.client(app)
    local r = c:get("/old")
    assert.same({ 302, "/new" }, { r.status, r.headers.location })
    local m = c:get("/moved")
    assert.same({ 301, "https://example.test/" }, { m.status, m.headers.location })
  end)

  it("tags buffered GET responses with an ETag and answers If-None-Match with 304", function()
    local app = weft.app()
    app:get("/", function() return "some content" end)
    app:post("/", function() return "posted" end)
    local c = wtest.client(app)
    local r = c:get("/")
    local etag = r.headers.etag
    assert.matches('^W/"c%-%x+"$', etag)
    local again = c:get("/", { headers = { ["if-none-match"] = etag } })
    assert.same({ 304, "" }, { again.status, again.body })
    assert.equal(200, c:get("/", { headers = { ["if-none-match"] = '"other"' } }).status)
    assert.is_nil(c:post("/").headers.etag)
  end)

  it("knows If-None-Match lists and wildcards", function()
    assert.is_true(http.etag_matches('"a", W/"b"', 'W/"b"'))
    assert.is_true(http.etag_matches("*", '"x"'))
    assert.is_false(http.etag_matches('"a"', '"b"'))
  end)
end)

describe("tracing and the access log", function()
  before_each(function() weft.log.set_output(function() end) end)
  after_each(function() weft.log.set_output(io.stdout) end)

  it("continues an incoming traceparent with a new span id, else starts a trace", function()
    local app = weft.app()
    app:get("/", function()
      local trace_id, span_id, traceparent = weft.trace()
      weft.log.info("work")
      return { trace_id = trace_id, span_id = span_id, traceparent = traceparent }
    end)
    local c = wtest.client(app)
    local incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    local r = c:get("/", { headers = { traceparent = incoming } })
    local t = r.json()
    assert.equal("4bf92f3577b34da6a3ce929d0e0e4736", t.trace_id)
    assert.not_equal("00f067aa0ba902b7", t.span_id)
    assert.matches("^%x+$", t.span_id)
    assert.equal(16, #t.span_id)
    assert.equal("00-4bf92f3577b34da6a3ce929d0e0e4736-" .. t.span_id .. "-01", t.traceparent)
    assert.equal(t.trace_id, r.logs[1].trace_id)
    -- invalid or absent: a fresh 32-hex trace id
    for _, bad in ipairs { "garbage", "00-" .. string.rep("0", 32) .. "-00f067aa0ba902b7-01", false } do
      local t2 = c:get("/", { headers = { traceparent = bad or nil } }).json()
      assert.equal(32, #t2.trace_id)
      assert.not_equal(string.rep("0", 32), t2.trace_id)
    end
    assert.is_nil(weft.trace())
  end)

  it("writes one access line per request when enabled", function()
    local app = weft.app { access_log = true }
    app:get("/x", function() return "12345" end)
    local r = wtest.client(app):get("/x", { headers = { ["x-request-id"] = "acc-1" } })
    local acc = r.logs[#r.logs]
    assert.equal("access", acc.msg)
    assert.same({ "GET", "/x", 200, 5, "acc-1" },
      { acc.method, acc.path, acc.status, acc.bytes, acc.request_id })
    assert.is_number(acc.duration_ms)
    assert.equal(32, #acc.trace_id)
    local quiet = weft.app()
    quiet:get("/x", function() return "1" end)
    assert.equal(0, #wtest.client(quiet):get("/x").logs)
  end)
end)
