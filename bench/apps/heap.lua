-- bench subject for bench/heap: the context at work on every request (a run, a suspension, a
-- child task joined), and /__heap: the Lua heap after a full collection, with weft's counters
local weft = require "weft"
local core = require "weft.core"
local als = weft.AsyncLocalStorage.new { name = "heap" }
local app = weft.app()
app:get("/", function(req)
  return als:run({ id = req.id }, function()
    weft.sleep(0)
    local child = weft.spawn(function() return als:getStore().id end)
    return child:join() == req.id and "Hello, World!" or "leak"
  end)
end)
app:get("/__heap", function()
  collectgarbage()
  collectgarbage()
  local st = core.stats()
  return { heap_kb = collectgarbage("count"), frames = st.frames, tasks = st.tasks }
end)
return app
