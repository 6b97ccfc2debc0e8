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
