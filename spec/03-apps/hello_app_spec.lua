local wtest = require "weft.test"
local ps = require "support.procserver"

describe("apps/hello", function()
  it("says hello in process", function()
    local c = wtest.client(dofile("apps/hello/app.lua"))
    assert.equal("Hello, World!\n", c:get("/").body)
    local r = c:get("/hello/ada", { headers = { ["x-request-id"] = "h-1" } })
    assert.same({ hello = "ada", request_id = "h-1" }, r.json())
  end)

  it("says hello over a real socket", function()
    local srv = ps.start("apps/hello/app.lua")
    local out = ps.curl(srv:url("/hello/bob"))
    srv:stop()
    assert.matches('"hello":"bob"', out)
  end)
end)
