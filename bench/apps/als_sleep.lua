-- bench subject: the context at work — a run around the handler, one suspension, a lookup
local weft = require "weft"
local als = weft.AsyncLocalStorage.new { name = "bench" }
local app = weft.app()
app:get("/", function(req)
  return als:run(req.id, function()
    weft.sleep(0)
    return als:getStore() and "Hello, World!"
  end)
end)
return app
