-- An email service that logs each email it sends. It never receives the request id, yet
-- every line it writes carries it: weft.log takes it from the async context.
local weft = require "weft"

local EmailService = {}

function EmailService.notify(emails)
  for _, to in ipairs(emails) do
    weft.sleep(1) -- stands for the mail server round trip: other requests run meanwhile
    weft.log.info("send email", { to = to })
  end
  return #emails
end

return EmailService
