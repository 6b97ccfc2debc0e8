-- bench subject: a JSON answer built from the request
local weft = require "weft"
local app = weft.app()
app:get("/", function(req)
  return { message = "Hello, World!", id = req.id, path = req.path }
end)
return app
