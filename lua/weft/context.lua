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

--- The current trace: trace_id, span_id and the traceparent value for outbound requests;
-- nil outside any request.
function context.trace()
  local req = request_als:getStore()
  if not req then return nil end
  local t = req.trace
  return t.trace_id, t.span_id, t.traceparent
end

return context
