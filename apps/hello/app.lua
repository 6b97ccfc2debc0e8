-- The smallest weft app: `weft apps/hello/app.lua`, then `curl http://127.0.0.1:8080/`.
local weft = require "weft"

local app = weft.app()

app:get("/", function()
  return "Hello, World!\n"
end)

app:get("/hello/:name", function(req, res)
  res:json { hello = req.params.name, request_id = req.id }
end)

return app
