-- Module "shop": the public face of the cart. A singleton holding proxies to Cart and
-- RequestStats, so each call works on the calling request's instances.
return {
  name = "CartService",
  inject = { "Cart", "RequestStats" },

  add = function(self, item)
    self.RequestStats:record("CartService.add")
    self.Cart:add(item)
  end,

  items = function(self)
    return self.Cart:items()
  end,
}
