-- A singleton service (in tegg v1 it would have been per request only because it uses Tracer).
return {
  name = "Foo",
  scope = "singleton",
  inject = { "Tracer", "RequestStats" },

  hello = function(self)
    self.RequestStats:record("Foo.hello")
    return "hello world, traced as " .. self.Tracer:id()
  end,
}
