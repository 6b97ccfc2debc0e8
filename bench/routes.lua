-- bench/routes.lua — route matching cost as the route table grows (a tree: it should stay flat).
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' lua5.4 bench/routes.lua
local weft = require "weft"
local core = require "weft.core"

local LOOKUPS = 200000

local function build(n)
  local app = weft.app()
  for i = 1, n do
    app:get("/svc" .. i .. "/users/:id", function() end)
    app:post("/svc" .. i .. "/users", function() end)
  end
  app:get("/static/*", function() end)
  return app
end

print(("%-8s %14s %14s %14s"):format("routes", "first ns", "last ns", "404 ns"))
for _, n in ipairs { 1, 100, 1000, 10000 } do
  local app = build(n)
  app:find("GET", "/svc1/users/1") -- builds the tree
  collectgarbage()
  local function time(path)
    local t0 = core.hrtime()
    for _ = 1, LOOKUPS do app:find("GET", path) end
    return (core.hrtime() - t0) / LOOKUPS
  end
  print(("%-8d %14.0f %14.0f %14.0f"):format(2 * n, time("/svc1/users/42"),
    time("/svc" .. n .. "/users/42"), time("/nothing/here/at/all")))
end
