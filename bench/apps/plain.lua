-- bench subject: the plainest Lua handler
local weft = require "weft"
local app = weft.app()
app:get("/", function() return "Hello, World!" end)
return app
