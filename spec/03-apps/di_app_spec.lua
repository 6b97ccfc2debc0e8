-- apps/di: the tegg v3 article's HelloWorldController -> Foo -> Tracer, with only Tracer (and
-- the stateful RequestStats and Cart) created per request.
local weft = require "weft"
local wtest = require "weft.test"
local ps = require "support.procserver"
local cjson = require "cjson"

describe("apps/di", function()
  local app, container, client
  before_each(function()
    weft.log.set_output(function() end)
    app, container = dofile("apps/di/app.lua")
    client = wtest.client(app)
  end)
  after_each(function() weft.log.set_output(io.stdout) end)

  it("answers GET /hello through singletons, with the request's own tracer", function()
    local r = client:get("/hello", { headers = { ["x-request-id"] = "req-1" } })
    assert.equal(200, r.status)
    local body = r.json()
    assert.same({ "hello world, traced as req-1", "req-1", "req-1", 1 },
      { body.message, body.request_id, body.tracer_id, body.calls })
    local second = client:get("/hello").json()
    assert.equal(second.request_id, second.tracer_id)
    assert.equal(body.tracer_seq + 1, second.tracer_seq)   -- a new Tracer per request
    local s = container:stats()
    assert.equal(2, s.singletons_created)                  -- the controller and Foo, once
    assert.equal(4, s.context_created)                     -- Tracer + RequestStats per request
    assert.equal(4, s.destroyed)
  end)

  it("keeps each request's tracer and cart apart under 150 concurrent requests", function()
    local results = {}
    for i = 1, 150 do
      weft.spawn(function()
        weft.sleep(math.random(0, 3))
        if i % 2 == 0 then
          results[i] = client:get("/hello", { headers = { ["x-request-id"] = "h" .. i } }).json()
        else
          local items = {}
          for k = 1, 1 + i % 4 do items[k] = i .. "." .. k end
          results[i] = client:post("/cart", { json = { items = items },
            headers = { ["x-request-id"] = "c" .. i } }).json()
          results[i].sent = items
        end
      end)
    end
    weft.run()
    for i = 1, 150 do
      local r = results[i]
      if i % 2 == 0 then
        assert.same({ "h" .. i, "h" .. i }, { r.request_id, r.tracer_id })
        assert.equal(1, r.calls)
      else
        assert.equal("c" .. i, r.request_id)
        assert.same(r.sent, r.items)                       -- exactly this request's items
        assert.equal(#r.sent, r.calls)                     -- and only its own calls counted
      end
    end
    local s = container:stats()
    assert.equal(0, s.scopes_active)
    assert.equal(s.context_created, s.destroyed)
    assert.equal(4, s.singletons_created)
  end)

  it("answers 422 for a bad cart body", function()
    local r = client:post("/cart", { json = { items = "apple" } })
    assert.equal(422, r.status)
  end)

  it("leaves the Lua heap flat and creates no singleton twice over many requests", function()
    local function batch(n)
      for w = 1, 8 do
        weft.spawn(function()
          for i = 1, n // 8 do
            if (i + w) % 2 == 0 then
              client:get("/hello")
            else
              client:post("/cart", { json = { items = { "a", "b" } } })
            end
          end
        end)
      end
      weft.run()
      collectgarbage()
      collectgarbage()
      weft.run()
      collectgarbage()
      return collectgarbage("count")
    end
    batch(1000) -- warm up
    local kb1 = batch(2000)
    local kb2 = batch(10000)
    assert.is_true(kb2 - kb1 < 256, ("heap grew from %.0f KiB to %.0f KiB"):format(kb1, kb2))
    local s = container:stats()
    assert.equal(4, s.singletons_created)
    assert.equal(13000, s.scopes)
    assert.equal(0, s.scopes_active)
    assert.equal(s.context_created, s.destroyed)
    -- GET /hello touches Tracer + RequestStats, POST /cart touches Cart + RequestStats
    assert.equal(2 * 13000, s.context_created)
  end)

  it("serves /hello over a real socket", function()
    local srv = ps.start("apps/di/app.lua")
    local out = ps.curl("-H 'x-request-id: sock-1' " .. srv:url("/hello"))
    local out2 = ps.curl("-d '{\"items\":[\"x\",\"y\"]}' " .. srv:url("/cart"))
    local stats = ps.curl(srv:url("/di/stats"))
    srv:stop()
    local body = cjson.decode(out)
    assert.same({ "sock-1", "sock-1" }, { body.request_id, body.tracer_id })
    assert.same({ "x", "y" }, cjson.decode(out2).items)
    local s = cjson.decode(stats)
    assert.equal(4, s.singletons_created)
    assert.equal(4, s.context_created)
  end)
end)
