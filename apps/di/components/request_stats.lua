-- Stateful and per request: counts the service calls one request makes. Being context-scoped,
-- its state is never shared between requests, however they interleave.
return {
  name = "RequestStats",
  scope = "context",

  init = function(self)
    self.calls = {}
  end,

  record = function(self, what)
    self.calls[#self.calls + 1] = what
  end,

  count = function(self)
    return #self.calls
  end,
}
