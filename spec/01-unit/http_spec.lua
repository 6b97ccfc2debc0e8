local http = require "weft.http"

describe("weft.http", function()
  it("percent-decodes paths, leaving + alone", function()
    assert.equal("/a b/c+d/é", http.unescape("/a%20b/c+d/%C3%A9"))
    assert.equal("%zz", http.unescape("%zz"))
  end)

  it("parses query strings: + is a space, repeats make arrays, bare keys are empty", function()
    assert.same({}, http.parse_query(""))
    assert.same({ a = "1 2", b = { "x", "y", "z" }, c = "", ["k y"] = "v&" },
      http.parse_query("a=1+2&b=x&b=y&b=z&c&k+y=v%26"))
  end)
end)

describe("weft.core.etag and weft.core.request_id", function()
  local core = require "weft.core"

  it("makes a weak ETag of the body's length in hex and its 64-bit FNV-1a", function()
    -- FNV-1a 64 of "" is the offset basis; of "a" a published test vector
    assert.equal('W/"0-cbf29ce484222325"', core.etag(""))
    assert.equal('W/"1-af63dc4c8601ec8c"', core.etag("a"))
    local big = string.rep("x", 70000)
    assert.matches('^W/"11170%-%x+"$', core.etag(big))
    assert.not_equal(core.etag("hello"), core.etag("hellp"))
  end)

  it("makes request ids: one random prefix per process and a counter", function()
    local a, b = core.request_id(), core.request_id()
    local pa, na = a:match("^(%x%x%x%x%x%x%x%x)%-(%d+)$")
    local pb, nb = b:match("^(%x%x%x%x%x%x%x%x)%-(%d+)$")
    assert.is_truthy(pa, a)
    assert.equal(pa, pb)
    assert.equal(tonumber(na) + 1, tonumber(nb))
  end)
end)

describe("weft.core.url_decode", function()
  local core = require "weft.core"

  it("decodes paths strictly: malformed escapes and bytes that are not UTF-8 are refused", function()
    assert.equal("/café/€", core.url_decode("/caf%C3%A9/%e2%82%ac"))
    assert.equal("/plain", core.url_decode("/plain"))
    for _, bad in ipairs { "/%zz", "/a%4", "/%", "/%ff%fe", "/%c0%af", "/%ed%a0%80", "/%e2%82",
                           "/%f4%90%80%80", "/\xff" } do
      local v, err = core.url_decode(bad)
      assert.is_nil(v, bad)
      assert.matches("^E", err)
    end
  end)

  it("decodes components and forms leniently", function()
    assert.equal("%zz a+b", core.url_decode("%zz%20a+b", "component"))
    assert.equal("%zz a b\xff", core.url_decode("%zz%20a+b%ff", "form"))
  end)
end)

describe("response headers", function()
  local weft = require "weft"
  local test = require "weft.test"
  before_each(function() weft.log.set_output(function() end) end)
  after_each(function() weft.log.set_output(io.stdout) end)

  it("are refused with an error in the handler when they could bend the framing", function()
    local app = weft.app()
    app:get("/h", function(req, res)
      res:header(req.query.n, req.query.v)
      return "ok"
    end)
    local client = test.client(app)
    assert.equal(200, client:get("/h?n=X-A&v=1%092").status)
    assert.equal(500, client:get("/h?n=Transfer-Encoding%20&v=chunked").status)
    assert.equal(500, client:get("/h?n=a:b&v=1").status)
    assert.equal(500, client:get("/h?n=X-A&v=1%0b").status)
    assert.equal(500, client:get("/h?n=X-A&v=1%0d%0aX-B:%202").status)
  end)

  it("answers 400 in process too for a path that is not UTF-8", function()
    local app = weft.app()
    local ran = false
    app:get("/notes/:id", function() ran = true end)
    local r = test.client(app):get("/notes/%ff%fe")
    assert.equal(400, r.status)
    assert.is_false(ran)
  end)
end)
