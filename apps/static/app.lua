-- A small static site: apps/static/public/ served by weft.static, next to one dynamic route.
--   weft apps/static/app.lua
--   curl http://127.0.0.1:8080/            (index.html)
--   curl -r 0-99 http://127.0.0.1:8080/style.css
-- Files are found relative to this script, wherever weft is started from.
local weft = require "weft"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

local app = weft.app { access_log = true }

-- every GET/HEAD that names a file under public/ is served from there; the rest falls through
app:use(weft.static(here .. "public", { max_age = 300 }))

app:get("/api/time", function()
  return { now = os.time() }
end)

return app
