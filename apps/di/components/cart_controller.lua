-- POST /cart {"items": [...]}: adds the items one by one (waiting a little between them, so
-- concurrent requests interleave) and answers with this request's cart.
local weft = require "weft"

return {
  name = "CartController",
  inject = { cart = "CartService", stats = "RequestStats" },

  add = function(self, req)
    local body = req:json()
    if type(body) ~= "table" or type(body.items) ~= "table" then
      weft.error(422, "validation failed", { items = "must be an array of strings" })
    end
    for _, item in ipairs(body.items) do
      weft.sleep(math.random(0, 2))
      self.cart:add(tostring(item))
    end
    return { request_id = req.id, items = self.cart:items(), calls = self.stats:count() }
  end,
}
