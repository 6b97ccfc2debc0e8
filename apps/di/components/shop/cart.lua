-- Module "shop" (its folder): a per-request cart, private to the module — only shop's own
-- components may inject it; the rest of the app goes through CartService.
return {
  name = "Cart",
  scope = "context",
  access = "private",

  init = function(self)
    self.list = {}
  end,

  add = function(self, item)
    self.list[#self.list + 1] = item
  end,

  items = function(self)
    return table.move(self.list, 1, #self.list, 1, {})
  end,

  destroy = function(self)
    self.list = nil
  end,
}
