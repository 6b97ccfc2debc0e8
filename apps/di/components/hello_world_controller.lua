-- The entry point of GET /hello: a singleton, so a request creates nothing for it.
return {
  name = "HelloWorldController",
  inject = { "Foo", "Tracer", "RequestStats" },       -- scope defaults to "singleton"

  hello = function(self, req)
    local message = self.Foo:hello()
    return {
      message = message,
      request_id = req.id,
      tracer_id = self.Tracer:id(),                  -- the proxy: this request's Tracer
      tracer_seq = self.Tracer.seq,
      calls = self.RequestStats:count(),
    }
  end,
}
