-- Dependency injection, the tegg v3 way: HelloWorldController -> Foo -> Tracer, where only
-- Tracer (and the stateful RequestStats and Cart) are per request; the controller and Foo are
-- singletons, created once, reaching the current request's Tracer through a proxy.
--   weft apps/di/app.lua
--   curl -H 'x-request-id: abc' http://127.0.0.1:8080/hello
--   curl -d '{"items":["apple","pear"]}' http://127.0.0.1:8080/cart
--   curl http://127.0.0.1:8080/di/stats
-- The components live in components/ (one per file; shop/ is a module whose Cart is private).
-- Returns the app, then the container (the weft command uses the first).
local weft = require "weft"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

local container = weft.di.container():load(here .. "components")

local app = weft.app()

app:use(container:middleware())                      -- one scope per request
app:get("/hello", container:handler("HelloWorldController", "hello"))
app:post("/cart", container:handler("CartController", "add"))
app:get("/di/stats", function() return container:stats() end)

return app, container
