local weft = require "weft"
local wtest = require "weft.test"
local cjson = require "cjson"

describe("weft.log", function()
  local lines
  before_each(function()
    lines = {}
    weft.log.set_output(function(line) lines[#lines + 1] = line end)
  end)
  after_each(function()
    weft.log.set_output(io.stdout)
    weft.log.set_level("info")
  end)

  it("writes one JSON line per call with ts, level, msg and the fields", function()
    weft.log.info("sent", { to = "a@b.c", n = 2 })
    assert.equal(1, #lines)
    local rec = cjson.decode(lines[1])
    assert.equal("info", rec.level)
    assert.equal("sent", rec.msg)
    assert.equal("a@b.c", rec.to)
    assert.equal(2, rec.n)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", rec.ts)
    assert.is_nil(rec.request_id) -- outside any request
  end)

  it("takes the request id from the context, however deep the caller", function()
    local function service() weft.sleep(1) weft.log.warn("deep") end
    local app = weft.app()
    app:get("/", function() service() return "ok" end)
    wtest.client(app):get("/", { headers = { ["x-request-id"] = "ctx-id" } })
    assert.equal("ctx-id", cjson.decode(lines[1]).request_id)
  end)

  it("drops lines below the level, and refuses unknown levels", function()
    weft.log.set_level("warn")
    weft.log.info("hidden")
    weft.log.error("shown")
    assert.equal(1, #lines)
    assert.has_error(function() weft.log.set_level("loud") end)
  end)

  it("emit writes the caller's own table as the record, without placeholders outside a request", function()
    local rec = { path = "/x", request_id = false, trace_id = false }
    weft.log.emit("warn", "owned", rec)
    local got = cjson.decode(lines[1])
    assert.same({ "/x", "warn", "owned" }, { got.path, got.level, got.msg })
    assert.is_nil(got.request_id)
    assert.is_nil(got.trace_id)
    assert.equal("owned", rec.msg) -- the table itself became the record
    assert.has_error(function() weft.log.emit("loud", "x", {}) end)
  end)

  it("stamps the same second with the same time and a new second with a new one", function()
    weft.log.info("a")
    local t0 = os.time()
    while os.time() == t0 do end
    weft.log.info("b")
    local a, b = cjson.decode(lines[1]).ts, cjson.decode(lines[2]).ts
    assert.not_equal(a, b)
    assert.equal(os.date("!%Y-%m-%dT%H:%M:%SZ", t0), a)
  end)

  it("logs values JSON cannot hold as text", function()
    weft.log.info("odd", { f = print })
    assert.matches("^function", cjson.decode(lines[1]).f)
  end)
end)
