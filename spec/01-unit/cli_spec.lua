local cli = require "weft.cli"

describe("weft.cli.parse", function()
  it("reads the app, host, port and workers, in both --opt v and --opt=v forms", function()
    assert.same({ app = "a.lua", host = "0.0.0.0", port = 0, workers = 1 },
      cli.parse { "a.lua", "--host", "0.0.0.0", "--port=0" })
    assert.same({ host = "127.0.0.1", port = 8080, workers = 3, help = true },
      cli.parse { "--workers", "3", "--help" })
  end)

  it("rejects bad values and unknown options", function()
    for _, argv in ipairs { { "--port", "70000" }, { "--port" }, { "--workers", "0" },
                           { "--what" }, { "a.lua", "b.lua" } } do
      local o, err = cli.parse(argv)
      assert.is_nil(o)
      assert.is_string(err)
    end
  end)
end)

describe("weft.cli.parse --no-gc-tuning", function()
  it("turns the collector tuning off; it is on unless said", function()
    assert.is_false(cli.parse({ "a.lua", "--no-gc-tuning" }).gc_tuning)
    assert.is_nil(cli.parse({ "a.lua" }).gc_tuning)
  end)
end)

describe("weft.cli.parse --system-allocator", function()
  it("keeps Lua's allocator; the pool allocator is used unless said", function()
    assert.is_false(cli.parse({ "a.lua", "--system-allocator" }).pool_allocator)
    assert.is_nil(cli.parse({ "a.lua" }).pool_allocator)
  end)
end)

describe("weft.tune_gc", function()
  local weft = require "weft"
  after_each(function() collectgarbage("incremental") end)

  it("switches to the generational collector, with the minor step sized to the heap", function()
    collectgarbage("incremental")
    local minor = weft.tune_gc()
    -- collectgarbage(mode) answers the mode it replaces
    assert.equal("generational", collectgarbage("generational"))
    local heap_kb = collectgarbage("count")
    assert.is_true(minor >= 1 and minor <= 50)
    -- 128 KiB of young garbage, as a share of the heap, within the bounds
    local want = math.max(1, math.min(50, math.floor(128 * 100 / heap_kb)))
    assert.is_true(math.abs(minor - want) <= 1, ("minor %d, expected ~%d"):format(minor, want))
  end)

  it("keeps the step between 1% and 50% of the heap", function()
    assert.equal(50, weft.tune_gc(1e9))
    assert.equal(1, weft.tune_gc(1))
    local big = {}
    for i = 1, 200000 do big[i] = { i } end -- some 20 MiB live
    assert.equal(1, weft.tune_gc())
    assert.equal(200000, #big)
  end)
end)
