-- The logger scenario: the email service logs with the request id it never receives.
local weft = require "weft"
local wtest = require "weft.test"
local ps = require "support.procserver"
local cjson = require "cjson"

describe("apps/logger", function()
  local client
  before_each(function()
    weft.log.set_output(function() end)
    client = wtest.client(dofile("apps/logger/app.lua"))
  end)
  after_each(function() weft.log.set_output(io.stdout) end)

  local function sends(r)
    local out = {}
    for _, rec in ipairs(r.logs) do
      if rec.msg == "send email" then out[#out + 1] = rec end
    end
    return out
  end

  it("tags every line the service writes with the request id, though it never gets it", function()
    local r = client:post("/notify", { json = { emails = { "a@x.test", "b@x.test" } },
                                        headers = { ["x-request-id"] = "req-42" } })
    assert.same({ sent = 2, request_id = "req-42" }, r.json())
    local lines = sends(r)
    assert.equal(2, #lines)
    for _, rec in ipairs(lines) do assert.equal("req-42", rec.request_id) end
    assert.same({ "a@x.test", "b@x.test" }, { lines[1].to, lines[2].to })
  end)

  it("keeps ids apart when requests interleave", function()
    local results = {}
    for i = 1, 20 do
      weft.spawn(function()
        results[i] = client:post("/notify", { json = { emails = { i .. "@x.test", "z@x.test" } },
                                               headers = { ["x-request-id"] = "r" .. i } })
      end)
    end
    weft.run()
    for i = 1, 20 do
      for _, rec in ipairs(sends(results[i])) do assert.equal("r" .. i, rec.request_id) end
      assert.equal(i .. "@x.test", sends(results[i])[1].to)
    end
  end)

  it("does the same with the id passed by hand, at the cost of an argument everywhere", function()
    local r = client:post("/notify-manual", { json = { emails = { "a@x.test" } },
                                               headers = { ["x-request-id"] = "by-hand" } })
    local rec = sends(r)[1]
    assert.equal("by-hand", rec.passed_request_id)
    assert.equal("by-hand", rec.request_id) -- the context has it anyway
  end)

  it("answers 422 with details for bad input, 400 for bad JSON", function()
    local r = client:post("/notify", { json = { emails = { "not-an-address" } } })
    assert.equal(422, r.status)
    assert.same({ ["emails[1]"] = "not an email address" }, r.json().details)
    assert.equal(400, client:post("/notify", { body = "{oops" }).status)
  end)

  it("prints the request id in the service's lines over a real socket", function()
    local srv = ps.start("apps/logger/app.lua")
    ps.curl("-X POST -H 'x-request-id: sock-1' -d '{\"emails\":[\"a@x.test\"]}' " .. srv:url("/notify"))
    local _, out = srv:stop()
    local found
    for line in out:gmatch("[^\n]+") do
      local rec = cjson.decode(line)
      if rec.msg == "send email" then found = rec end
    end
    assert.is_table(found)
    assert.equal("sock-1", found.request_id)
    assert.equal(32, #found.trace_id)
  end)
end)
