-- Per request: identifies the request whose code is running. Foo (a singleton) holds a proxy
-- to it that resolves, on each use, to the running request's Tracer.
local weft = require "weft"

local created = 0

return {
  name = "Tracer",
  scope = "context",

  init = function(self)
    created = created + 1
    self.seq = created                               -- the how-many-th Tracer this process made
    local req = weft.request()
    self.request_id = req and req.id or ("scope-" .. created)
  end,

  id = function(self)
    return self.request_id
  end,
}
