--- HTTP errors: raising one answers the request with its status and message. Statuses below
-- 500 are the client's doing and are not logged as failures.
local http_text -- lazily: weft.http requires this module

local errors = {}

local HttpError = {}
HttpError.__index = HttpError
HttpError.__name = "weft.HttpError"

function HttpError.__tostring(e)
  return ("HTTP %d: %s"):format(e.status, e.message)
end

--- A new error object: status (400..599), message (defaults to the status text), details (any
-- JSON-encodable value, sent to the client).
function errors.new(status, message, details)
  status = math.tointeger(status)
  if not status or status < 400 or status > 599 then
    error("weft.error: status must be an integer from 400 to 599", 3)
  end
  http_text = http_text or require("weft.http").STATUS_TEXT
  return setmetatable({ status = status, message = message or http_text[status] or "Error",
                        details = details }, HttpError)
end

--- Raises a new HTTP error (level as for error()).
function errors.raise(status, message, details, level)
  error(errors.new(status, message, details), (level or 1) + 1)
end

--- True when v is an HTTP error object.
function errors.is(v)
  return getmetatable(v) == HttpError
end

return errors
