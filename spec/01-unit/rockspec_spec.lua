-- The rockspec must list every Lua module (a module it forgets is missing after
-- `luarocks install`), and nothing that does not exist.
describe("weft-scm-1.rockspec", function()
  it("lists every module under lua/weft and only those", function()
    local spec = {}
    assert(loadfile("weft-scm-1.rockspec", "t", spec))()
    local listed = {}
    for mod, path in pairs(spec.build.install.lua) do listed[path] = mod end
    local p = assert(io.popen("ls lua/weft/*.lua"))
    local files = {}
    for path in p:lines() do
      files[path] = true
      local name = path:match("lua/weft/(.-)%.lua$")
      assert.equal(name == "init" and "weft" or "weft." .. name, listed[path], path .. " is not listed")
    end
    p:close()
    for path in pairs(listed) do assert.is_true(files[path], path .. " is listed but missing") end
    assert.equal("bin/weft", spec.build.install.bin.weft)
  end)
end)
