-- The same service written without async context: the request id has to be threaded through
-- every call by hand (and every caller on the way must pass it on).
local weft = require "weft"

local ManualEmailService = {}

function ManualEmailService.notify(emails, request_id)
  for _, to in ipairs(emails) do
    weft.sleep(1)
    weft.log.info("send email", { to = to, passed_request_id = request_id })
  end
  return #emails
end

return ManualEmailService
