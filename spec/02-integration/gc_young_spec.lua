-- weft.tune_gc's young generation of a fixed size: between requests, a minor collection once
-- gc_young KiB were allocated, whatever the share of the heap Lua's own trigger is set to.
-- Against `weft spec/fixtures/young_app.lua` in its own process, with curl.
local ps = require "support.procserver"

describe("minor collections between requests (weft.core.gc_young)", function()
  local srv
  setup(function() srv = ps.start("spec/fixtures/young_app.lua") end)
  teardown(function() if srv then srv:stop() end end)

  local function get(path) return (ps.curl("-s " .. srv:url(path))) end

  local function leave_garbage(requests, kb)
    for _ = 1, requests do assert.equal("left " .. kb * 16, get("/garbage?kb=" .. kb)) end
    return tonumber(get("/finalized"))
  end

  it("collects the garbage of earlier requests every gc_young KiB", function()
    assert.equal("ready", get("/setup?young=32"))
    -- 12 requests of ~24 KiB each: a minor collection before every other one, collecting the
    -- requests before it (their markers' finalisers run)
    local n = leave_garbage(12, 24)
    assert.is_true(n >= 8, "finalised " .. n .. " of 12")
  end)

  it("still lets Lua make its major collections, which free old objects that died", function()
    assert.equal("ready", get("/setup?young=32"))
    assert.equal("held", get("/hold?kb=256"))
    leave_garbage(6, 24) -- the held objects live through several minor collections: old now
    assert.equal("dropped " .. (256 * 16 + 1), get("/drop"))
    -- a minor collection never frees old objects; a major one comes once the heap has doubled
    -- since the last (every step is Lua's, run as if its own trigger had fired)
    local freed
    for _ = 1, 60 do
      get("/grow?kb=256")
      freed = get("/held_finalized")
      if freed == "1" then break end
    end
    assert.equal("1", freed)
  end)

  it("leaves them to Lua's own trigger when set to 0", function()
    assert.equal("ready", get("/setup?young=0"))
    -- the same ~290 KiB stays below Lua's trigger (200% of the heap, collected just before)
    local n = leave_garbage(12, 24)
    assert.equal(0, n)
  end)
end)
