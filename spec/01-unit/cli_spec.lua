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
