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
