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

  it("writes to a file, flushed before the loop next waits (and at once outside the loop)", function()
    local helpers = require "helpers"
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    weft.log.set_output(f)
    local function count()
      local r = assert(io.open(path))
      local n = select(2, r:read("a"):gsub("\n", ""))
      r:close()
      return n
    end
    weft.log.info("outside")
    assert.equal(1, count())
    local seen = helpers.run(function()
      for i = 1, 3 do weft.log.info("inside", { i = i }) end
      weft.sleep(0) -- one turn of the loop
      return count()
    end)
    assert.equal(4, seen)
    f:close()
    os.remove(path)
  end)

  it("writes to any object with write and flush (flushed per line)", function()
    local got, flushes = {}, 0
    weft.log.set_output({
      write = function(_, ...) for _, part in ipairs { ... } do got[#got + 1] = part end end,
      flush = function() flushes = flushes + 1 end,
    })
    weft.log.info("obj")
    assert.equal("obj", cjson.decode(got[1]).msg)
    assert.equal(1, flushes)
  end)

  it("logs values JSON cannot hold as text", function()
    weft.log.info("odd", { f = print })
    assert.matches("^function", cjson.decode(lines[1]).f)
  end)
end)

describe("weft.core.json_flat (log lines)", function()
  local core = require "weft.core"

  it("writes a flat record that any JSON parser reads back the same", function()
    local rec = { s = 'q"b\\s\n\r\t\1\31/é', i = 200, neg = math.mininteger, f = 12.25,
                  t = true, no = false, big = math.maxinteger }
    local back = cjson.decode(core.json_flat(rec))
    assert.same(rec.s, back.s)
    assert.equal(200, back.i)
    assert.equal(12.25, back.f)
    assert.is_true(back.t)
    assert.is_false(back.no)
    assert.matches('"neg":%-9223372036854775808', core.json_flat(rec))
    assert.matches('"big":9223372036854775807', core.json_flat(rec))
  end)

  it("writes floats that read back as the same number (short decimals by hand, the rest as %.14g)", function()
    for _, v in ipairs { 1.5, 0.01, 1.23, -2.75, 123456.789, 1e-7, math.pi, 1e20, 999999999.5 } do
      local text = core.json_flat({ x = v }):match('^{"x":(.*)}$')
      assert.equal(tonumber(("%.14g"):format(v)), tonumber(text))
    end
  end)

  it("grows past its first kilobyte", function()
    local rec = {}
    for i = 1, 500 do rec["key" .. i] = ("v"):rep(i % 50) end
    assert.same(rec, cjson.decode(core.json_flat(rec)))
  end)

  it("answers nil for what a flat record cannot hold, so the caller uses cjson", function()
    assert.is_nil(core.json_flat { nested = {} })
    assert.is_nil(core.json_flat { f = print })
    assert.is_nil(core.json_flat { 1, 2 })
    assert.is_nil(core.json_flat { x = 0 / 0 })
    assert.equal("{}", core.json_flat {})
  end)
end)
