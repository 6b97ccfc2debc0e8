local weft = require "weft"
local wtest = require "weft.test"
local ps = require "support.procserver"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

describe("apps/static", function()
  local c
  before_each(function()
    weft.log.set_output(function() end)
    c = wtest.client(dofile("apps/static/app.lua"))
  end)
  after_each(function() weft.log.set_output(io.stdout) end)

  it("serves the site's pages and stylesheet", function()
    local r = c:get("/")
    assert.equal(200, r.status)
    assert.equal(read("apps/static/public/index.html"), r.body)
    assert.equal("text/html; charset=utf-8", r.headers["content-type"])
    assert.equal("public, max-age=300", r.headers["cache-control"])
    r = c:get("/style.css")
    assert.equal("text/css; charset=utf-8", r.headers["content-type"])
    assert.equal(read("apps/static/public/style.css"), r.body)
    assert.equal(read("apps/static/public/about.html"), c:get("/about.html").body)
    assert.equal(read("apps/static/public/docs/index.html"), c:get("/docs/").body)
    assert.equal("/docs/", c:get("/docs").headers["location"])
  end)

  it("answers 304 when the browser has the file, 206 for a range", function()
    local etag = c:get("/style.css").headers["etag"]
    assert.equal(304, c:get("/style.css", { headers = { ["If-None-Match"] = etag } }).status)
    local r = c:get("/style.css", { headers = { Range = "bytes=0-3" } })
    assert.equal(206, r.status)
    assert.equal("body", r.body)
  end)

  it("lets other routes through and keeps traversal out", function()
    assert.is_number(c:get("/api/time").json().now)
    assert.equal(404, c:get("/nothing.html").status)
    assert.equal(400, c:get("/%2e%2e/app.lua").status)
    assert.equal(400, c:get("/../app.lua").status)
  end)

  it("serves the site over a real socket", function()
    local srv = ps.start("apps/static/app.lua")
    local page = ps.curl(srv:url("/about.html"))
    local css = ps.curl("-i " .. srv:url("/style.css"))
    local bad = ps.curl("-i --path-as-is " .. srv:url("/../app.lua"))
    srv:stop()
    assert.equal(read("apps/static/public/about.html"), page)
    assert.matches("^HTTP/1.1 200", css)
    assert.matches("\r\n[Cc]ontent%-[Tt]ype: text/css; charset=utf%-8\r\n", css)
    assert.matches("^HTTP/1.1 400", bad)
  end)
end)
