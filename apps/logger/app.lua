-- The logger scenario: request ids in every log line, without passing them down.
--   weft apps/logger/app.lua
--   curl -X POST -H 'x-request-id: abc' -d '{"emails":["a@x.test","b@x.test"]}' \
--        http://127.0.0.1:8080/notify
-- Each "send email" line printed by the service carries "request_id":"abc".
local weft = require "weft"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local EmailService = dofile(here .. "email_service.lua")
local ManualEmailService = dofile(here .. "manual_email_service.lua")

local app = weft.app { access_log = true }

local function emails_of(req)
  local body = req:json()
  if type(body) ~= "table" or type(body.emails) ~= "table" then
    weft.error(422, "validation failed", { emails = "must be an array of addresses" })
  end
  for i, e in ipairs(body.emails) do
    if type(e) ~= "string" or not e:find("^[^@%s]+@[^@%s]+$") then
      weft.error(422, "validation failed", { ["emails[" .. i .. "]"] = "not an email address" })
    end
  end
  return body.emails
end

-- with AsyncLocalStorage: the service never sees the id
app:post("/notify", function(req)
  weft.log.info("start processing")
  local sent = EmailService.notify(emails_of(req))
  return { sent = sent, request_id = req.id }
end)

-- by hand: the id is an argument of every call
app:post("/notify-manual", function(req)
  weft.log.info("start processing")
  local sent = ManualEmailService.notify(emails_of(req), req.id)
  return { sent = sent, request_id = req.id }
end)

return app
