--- The async-context instances weft itself uses: the current request lives in one, so any code,
-- however deep, reaches it without it being passed down.
local core = require "weft.core"

local context = {}

local request_als = core.AsyncLocalStorage.new { name = "weft.request" }
context.request_als = request_als

--- The request of the running code, or nil outside any request.
function context.request()
  return request_als:getStore()
end

return context
