-- bench subject: one suspension, no context of its own (the control for als_sleep)
local weft = require "weft"
local app = weft.app()
app:get("/", function()
  weft.sleep(0)
  return "Hello, World!"
end)
return app
