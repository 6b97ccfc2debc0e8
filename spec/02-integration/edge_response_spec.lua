-- Responses that cannot be bent: a handler that tries to set a header that would break the
-- framing gets an error (a 500 for its request), never a malformed response. Over raw sockets
-- to `weft spec/fixtures/edge_app.lua`.
local ps = require "support.procserver"

local APP = "spec/fixtures/edge_app.lua"

describe("the edge: responses", function()
  local srv
  setup(function() srv = ps.start(APP) end)
  teardown(function() if srv then srv:stop() end end)

  local function ask(path)
    local rs, data = ps.exchange(srv.port, ("GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
      :format(path))
    assert.equal(1, #rs, data)
    return rs[1], data
  end

  it("refuses header names that are not tokens", function()
    for _, name in ipairs { "Transfer-Encoding%20", "Content-Length%09", "a:b", "X%0d%0aY", "" } do
      local r, data = ask("/set-header?name=" .. name .. "&value=1")
      assert.equal(500, r.status, name)
      assert.not_matches("\r\n[Tt]ransfer%-[Ee]ncoding ", data)
      assert.not_matches("\r\na:b", data)
    end
    assert.equal(200, ask("/set-header?name=X-Fine&value=1").status)
  end)

  it("refuses values with control characters other than HTAB", function()
    for _, value in ipairs { "a%0bb", "a%0d%0aX-Injected:%201", "a%00b", "a%7f" } do
      local r, data = ask("/set-header?name=X-V&value=" .. value)
      assert.equal(500, r.status, value)
      assert.not_matches("X%-Injected", data)
    end
    local r = ask("/set-header?name=X-V&value=a%09b%20%C3%A9")
    assert.equal(200, r.status)
    assert.equal("a\tb é", r.headers["x-v"])
  end)

  it("validates cookie attributes", function()
    local r, data = ask("/set-cookie?path=/%3B%20Domain=evil.com")
    assert.equal(500, r.status)
    assert.not_matches("Domain=evil", data)
    assert.equal(500, ask("/set-cookie?domain=a.com%3Bx").status)
    assert.equal(500, ask("/set-cookie?expires=Wed%3B%20Secure").status)
    assert.equal(500, ask("/set-cookie?same_site=Everywhere").status)
    r = ask("/set-cookie?path=/app&domain=example.com&same_site=lax")
    assert.equal(200, r.status)
    assert.equal("c=v; Path=/app; Domain=example.com; HttpOnly; SameSite=Lax", r.headers["set-cookie"])
  end)

  it("keeps header values given as numbers alive while the core reads them", function()
    -- under `make asan` this was a heap-use-after-free in collect_headers
    local r = ask("/number-headers")
    assert.equal(200, r.status)
    assert.equal("numbers", r.body)
    for _, i in ipairs { 1, 2, 777, 15000, 30000 } do
      assert.equal(tostring(i + 0.25), r.headers["x-n" .. i])
    end
  end)
end)
