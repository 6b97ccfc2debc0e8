-- weft.di: scopes, lazy creation, proxies that follow the running request, lifecycle hooks,
-- the errors of a bad graph or a misuse, folder loading with private/public access, and the
-- weft.test helpers.
local weft = require "weft"
local wtest = require "weft.test"
local helpers = require "helpers"

local di = weft.di

local function quiet()
  local lines = {}
  weft.log.set_output(function(line) lines[#lines + 1] = line end)
  return lines
end

-- Tracer (context) <- Foo (singleton) <- HelloWorldController (singleton), counting creations.
local function article_container(opts)
  opts = opts or {}
  local c = di.container()
  local counts = { Tracer = 0, Foo = 0, Controller = 0, destroyed = {} }
  c:declare {
    name = "Tracer", scope = "context",
    init = function(self)
      counts.Tracer = counts.Tracer + 1
      self.seq = counts.Tracer
      local req = weft.request()
      self.rid = req and req.id
      if opts.slow_init then weft.sleep(math.random(0, 2)) end
    end,
    destroy = function(self) counts.destroyed[#counts.destroyed + 1] = self.seq end,
    id = function(self) return self.rid end,
  }
  c:declare {
    name = "Foo", inject = { "Tracer" },
    init = function() counts.Foo = counts.Foo + 1 end,
    hello = function(self) return "hello " .. tostring(self.Tracer:id()) end,
  }
  c:declare {
    name = "HelloWorldController", inject = { foo = "Foo" },
    init = function() counts.Controller = counts.Controller + 1 end,
    hello = function(self) return self.foo:hello() end,
  }
  return c, counts
end

local tmpdirs = {} -- the folders tmpdir() made, removed after each spec

local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  tmpdirs[#tmpdirs + 1] = dir
  return dir
end

local function write(path, text)
  assert(os.execute("mkdir -p '" .. path:match("^(.*)/") .. "'"))
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

describe("weft.di", function()
  after_each(function()
    weft.log.set_output(io.stdout)
    for i = #tmpdirs, 1, -1 do
      os.execute("rm -rf '" .. tmpdirs[i] .. "'")
      tmpdirs[i] = nil
    end
  end)

  it("is exported as weft.di", function()
    assert.equal(require "weft.di", weft.di)
    assert.is_function(di.container)
  end)

  describe("singletons", function()
    it("are created once, on first use, with their dependencies injected by name", function()
      local c, counts = article_container()
      c:validate()
      assert.equal(0, counts.Controller)
      local ctl = wtest.component(c, "HelloWorldController")
      assert.equal(1, counts.Controller)
      assert.equal(1, counts.Foo)
      assert.equal(ctl, wtest.component(c, "HelloWorldController"))
      assert.equal(ctl.foo, wtest.component(c, "Foo"))      -- keyed inject: field `foo`
      assert.equal(1, counts.Foo)
      assert.equal(2, c:stats().singletons_created)
    end)

    it("hold their singleton dependencies directly (no proxy, no lookup per call)", function()
      local c = article_container()
      local ctl = wtest.component(c, "HelloWorldController")
      assert.equal(getmetatable(ctl.foo).__index, getmetatable(wtest.component(c, "Foo")).__index)
      -- a singleton's methods are its own fields: a call is one table read, as on a module
      assert.equal("function", type(rawget(ctl.foo, "hello")))
      assert.equal("function", type(ctl.foo.hello))
      assert.equal(ctl.foo, rawget(ctl, "foo"))
    end)

    it("are created once even when many tasks need them while their init suspends", function()
      local c = di.container()
      local made = 0
      c:declare { name = "Slow", init = function(self)
        weft.sleep(5)
        made = made + 1
        self.n = made
      end }
      c:declare { name = "User", inject = { "Slow" } }
      local got = {}
      for i = 1, 30 do
        weft.spawn(function() got[i] = c:get(i % 2 == 0 and "Slow" or "User") end)
      end
      weft.run()
      assert.equal(1, made)
      for i = 1, 30 do
        local slow = i % 2 == 0 and got[i] or got[i].Slow
        assert.equal(1, slow.n)
      end
      assert.equal(2, c:stats().singletons_created)
    end)

    it("are built outside the request that first used them", function()
      local c = di.container()
      local seen = "unset"
      c:declare { name = "Ctx", scope = "context" }
      c:declare { name = "S", init = function() seen = weft.request() end }
      local app = weft.app()
      app:use(c:middleware())
      app:get("/", function() c:get("S") return "ok" end)
      assert.equal("ok", wtest.client(app):get("/").body)
      assert.is_nil(seen)
    end)

    it("are destroyed by close(), newest first; later gets raise", function()
      local c = di.container()
      local trail = {}
      c:declare { name = "A", destroy = function() trail[#trail + 1] = "A" end }
      c:declare { name = "B", inject = { "A" }, destroy = function() trail[#trail + 1] = "B" end }
      wtest.component(c, "B")
      c:close()
      assert.same({ "B", "A" }, trail)
      assert.equal(2, c:stats().destroyed)
      assert.has_error(function() c:get("A") end, "weft.di: the container is closed (getting 'A')")
    end)
  end)

  describe("context components", function()
    it("are created lazily, once per request, and a request touching none creates none", function()
      local c = di.container()
      for i = 1, 5 do c:declare { name = "C" .. i, scope = "context" } end
      local app = weft.app()
      app:use(c:middleware())
      app:get("/none", function() return "none" end)
      app:get("/two", function()
        local a, b = c:get("C2"), c:get("C4")
        assert(c:get("C2") == a and c:get("C4") == b) -- the same instance all along the request
        return "two"
      end)
      local client = wtest.client(app)
      client:get("/none")
      assert.equal(0, c:stats().context_created)
      for _ = 1, 10 do client:get("/two") end
      local s = c:stats()
      assert.equal(20, s.context_created)                -- objects per request = touched ones
      assert.equal(20, s.destroyed)
      assert.equal(11, s.scopes)
      assert.equal(0, s.scopes_active)
    end)

    it("count objects per request as the context components touched, through proxies too", function()
      local c, counts = article_container()
      local app = weft.app()
      app:use(c:middleware())
      app:get("/hello", c:handler("HelloWorldController", "hello"))
      app:get("/idle", c:handler("HelloWorldController", "hello"))
      local client = wtest.client(app)
      for i = 1, 50 do
        assert.equal("hello r" .. i, client:get("/hello", { headers = { ["x-request-id"] = "r" .. i } }).body)
      end
      local s = c:stats()
      assert.same({ 2, 50, 50 }, { s.singletons_created, s.context_created, s.destroyed })
      assert.same({ 1, 1, 50 }, { counts.Controller, counts.Foo, counts.Tracer })
    end)

    it("are destroyed when the request ends, also when the handler raised", function()
      quiet()
      local c, counts = article_container()
      local app = weft.app()
      app:use(c:middleware())
      app:get("/ok", function() return c:get("Tracer"):id() end)
      app:get("/boom", function()
        c:get("Tracer")
        error("handler failed")
      end)
      app:get("/http", function()
        c:get("Tracer")
        weft.error(418, "teapot")
      end)
      local client = wtest.client(app)
      assert.equal(200, client:get("/ok").status)
      assert.same({ 1 }, counts.destroyed)
      assert.equal(500, client:get("/boom").status)
      assert.same({ 1, 2 }, counts.destroyed)
      assert.equal(418, client:get("/http").status)
      assert.same({ 1, 2, 3 }, counts.destroyed)
      assert.has_error(function()
        wtest.with_scope(c, function()
          c:get("Tracer")
          error("scope failed", 0)
        end)
      end, "scope failed")
      assert.same({ 1, 2, 3, 4 }, counts.destroyed)
    end)

    it("keep the handler's error and traceback, and a failing destroy only logs", function()
      local lines = quiet()
      local c = di.container()
      c:declare { name = "Bad", scope = "context", destroy = function() error("destroy failed") end }
      local app = weft.app()
      app:use(c:middleware())
      app:get("/", function() c:get("Bad") return "fine" end)
      local r = wtest.client(app):get("/")
      assert.same({ 200, "fine" }, { r.status, r.body })
      assert.matches("destroy hook raised", table.concat(lines, "\n"))
      assert.matches("destroy failed", table.concat(lines, "\n"))
    end)

    it("destroy newest first, with everything still usable in the hooks", function()
      local c = di.container()
      local trail = {}
      c:declare { name = "Log", scope = "context", init = function(self) self.lines = {} end,
        destroy = function(self) trail[#trail + 1] = "Log:" .. #self.lines end }
      c:declare { name = "Audit", inject = { "Log" },
        note = function(self, s) local l = self.Log.lines; l[#l + 1] = s end }
      c:declare { name = "Job", scope = "context", inject = { "Audit" },
        destroy = function(self)
          self.Audit:note("job done")                    -- reaches Log through the proxy
          trail[#trail + 1] = "Job"
        end }
      wtest.with_scope(c, function()
        c:get("Log")
        c:get("Job")
      end)
      assert.same({ "Job", "Log:1" }, trail)
    end)

    it("may suspend in init and destroy; tasks of one request share its instance", function()
      local c = di.container()
      local made, destroyed = 0, 0
      c:declare { name = "Conn", scope = "context",
        init = function(self)
          weft.sleep(3)
          made = made + 1
          self.n = made
        end,
        destroy = function() weft.sleep(1) destroyed = destroyed + 1 end }
      local app = weft.app()
      app:use(c:middleware())
      app:get("/", function()
        local kids = {}
        for i = 1, 5 do kids[i] = weft.spawn(function() return c:get("Conn").n end) end
        local mine = c:get("Conn").n
        for i = 1, 5 do assert.equal(mine, kids[i]:join()) end
        return tostring(mine)
      end)
      local client = wtest.client(app)
      local bodies = {}
      for i = 1, 10 do weft.spawn(function() bodies[i] = client:get("/").body end) end
      weft.run()
      assert.equal(10, made)
      assert.equal(10, destroyed)
      local seen = {}
      for i = 1, 10 do
        assert.is_nil(seen[bodies[i]])
        seen[bodies[i]] = true
      end
    end)

    it("inside another context component are that request's instance, not a proxy", function()
      local c = di.container()
      c:declare { name = "Tracer", scope = "context" }
      c:declare { name = "Cart", scope = "context", inject = { "Tracer" } }
      wtest.with_scope(c, function()
        local cart = c:get("Cart")
        assert.equal(c:get("Tracer"), rawget(cart, "Tracer"))
        assert.are_not.equal(c:proxy("Tracer"), cart.Tracer)
      end)
    end)

    it("reach each request's own instance through a singleton's proxy, 200 requests interleaved", function()
      local c = di.container()
      c:declare { name = "Tracer", scope = "context",
        init = function(self)
          weft.sleep(math.random(0, 2))
          self.rid = weft.request().id
        end,
        id = function(self) return self.rid end }
      c:declare { name = "Cart", scope = "context",
        init = function(self) self.items = {} end,
        add = function(self, x) self.items[#self.items + 1] = x end }
      c:declare { name = "Shop", inject = { "Tracer", "Cart" },
        buy = function(self, x)
          weft.sleep(math.random(0, 3))
          self.Cart:add(self.Tracer:id() .. ":" .. x)
        end,
        basket = function(self) return table.concat(self.Cart.items, ",") end }
      local app = weft.app()
      app:use(c:middleware())
      app:get("/buy/:n", function(req)
        local shop = c:get("Shop")
        for k = 1, 3 do
          shop:buy(req.params.n .. "-" .. k)
          assert.equal(req.id, shop.Tracer:id())
          local child = weft.spawn(function()
            weft.sleep(math.random(0, 2))
            return shop.Tracer:id()
          end)
          assert.equal(req.id, child:join())
        end
        return shop:basket()
      end)
      local client = wtest.client(app)
      local bodies = {}
      for i = 1, 200 do
        weft.spawn(function()
          weft.sleep(math.random(0, 3))
          bodies[i] = client:get("/buy/" .. i, { headers = { ["x-request-id"] = "req" .. i } }).body
        end)
      end
      weft.run()
      for i = 1, 200 do
        local r = "req" .. i
        assert.equal(("%s:%d-1,%s:%d-2,%s:%d-3"):format(r, i, r, i, r, i), bodies[i])
      end
      local s = c:stats()
      assert.same({ 1, 400, 400, 0 },
        { s.singletons_created, s.context_created, s.destroyed, s.scopes_active })
    end)

    it("proxies read and write fields on the current instance", function()
      local c = di.container()
      c:declare { name = "State", scope = "context", init = function(self) self.v = 0 end }
      local state = c:proxy("State")
      assert.equal("weft.di proxy of 'State'", tostring(state))
      for n = 1, 2 do
        wtest.with_scope(c, function()
          assert.equal(0, state.v)
          state.v = state.v + n
          assert.equal(n, c:get("State").v)
        end)
      end
    end)
  end)

  describe("transient components", function()
    it("are new for each injection and each get, and die with their holder", function()
      local c = di.container()
      local made, destroyed = 0, 0
      c:declare { name = "Buf", scope = "transient",
        init = function(self) made = made + 1 self.n = made end,
        destroy = function() destroyed = destroyed + 1 end }
      c:declare { name = "A", inject = { "Buf" } }
      c:declare { name = "B", inject = { "Buf" } }
      c:declare { name = "Req", scope = "context", inject = { "Buf" } }
      local a, b = wtest.component(c, "A"), wtest.component(c, "B")
      assert.are_not.equal(a.Buf, b.Buf)
      assert.are_not.equal(wtest.component(c, "Buf"), wtest.component(c, "Buf"))
      local before = destroyed
      wtest.with_scope(c, function()
        c:get("Req")
        c:get("Buf")
      end)
      assert.equal(before + 2, destroyed)                -- the ones the scope created
      c:close()
      assert.equal(before + 4, destroyed)                -- A's and B's
      assert.equal(made, c:stats().transient_created)
    end)

    it("hold proxies to context components", function()
      local c = di.container()
      c:declare { name = "Tracer", scope = "context", init = function(self) self.t = {} end }
      c:declare { name = "Helper", scope = "transient", inject = { "Tracer" } }
      local h = wtest.component(c, "Helper")
      assert.equal(c:proxy("Tracer"), h.Tracer)
      local t1 = wtest.with_scope(c, function() return h.Tracer.t end)
      local t2 = wtest.with_scope(c, function() return h.Tracer.t end)
      assert.are_not.equal(t1, t2)
    end)
  end)

  describe("errors at validation", function()
    it("names who asks for a missing dependency", function()
      local c = di.container()
      c:declare { name = "Foo", inject = { "Tracer" } }
      assert.has_error(function() c:validate() end,
        "weft.di: 'Foo' injects 'Tracer', which is not declared")
      local c2 = di.container()
      c2:declare({ name = "Foo", inject = { t = "tracer" } }, { file = "components/foo.lua" })
      c2:declare { name = "Tracer" }
      assert.has_error(function() c2:validate() end,
        "weft.di: 'Foo' (components/foo.lua) injects 'tracer', which is not declared "
        .. "(did you mean 'Tracer'?)")
    end)

    it("reports a cycle with its path", function()
      local c = di.container()
      c:declare { name = "a", inject = { "b" } }
      c:declare { name = "b", inject = { "c" } }
      c:declare { name = "c", inject = { "a" } }
      assert.has_error(function() c:validate() end, "weft.di: dependency cycle: a -> b -> c -> a")
      local self_loop = di.container():declare { name = "x", scope = "context", inject = { "x" } }
      assert.has_error(function() self_loop:validate() end, "weft.di: dependency cycle: x -> x")
    end)

    it("lists every problem at once", function()
      local c = di.container()
      c:declare { name = "a", inject = { "a", "nope" } }
      local ok, err = pcall(c.validate, c)
      assert.is_false(ok)
      assert.matches("weft.di: 2 problems:", err, 1, true)
      assert.matches("'a' injects 'nope', which is not declared", err, 1, true)
      assert.matches("dependency cycle: a -> a", err, 1, true)
    end)

    it("rejects a duplicate name, naming both places", function()
      local c = di.container()
      c:declare({ name = "Foo" }, { file = "one.lua" })
      assert.has_error(function() c:declare({ name = "Foo" }, { file = "two.lua" }) end,
        "weft.di: duplicate component name 'Foo': declared in one.lua and in two.lua")
    end)

    it("rejects a private component injected from another module", function()
      local c = di.container()
      c:declare { name = "Cart", scope = "context", access = "private", module = "shop" }
      c:declare { name = "CartService", module = "shop", inject = { "Cart" } }
      c:declare { name = "Checkout", module = "web", inject = { "Cart" } }
      assert.has_error(function() c:validate() end,
        "weft.di: 'Checkout' (module 'web') injects 'Cart', which is private to module 'shop'")
      local c2 = di.container()
      c2:declare { name = "Cart", access = "private", module = "shop" }
      c2:declare { name = "Top", inject = { "Cart" } }
      assert.has_error(function() c2:validate() end,
        "weft.di: 'Top' (no module) injects 'Cart', which is private to module 'shop'")
    end)

    it("rejects malformed declarations where they are declared", function()
      local c = di.container()
      assert.has_error(function() c:declare { scope = "context" } end,
        "weft.di: a component declaration needs a name (a non-empty string)")
      assert.has_error(function() c:declare { name = "X", scope = "request" } end,
        'weft.di: component \'X\': scope must be "singleton", "context" or "transient", got request')
      assert.has_error(function() c:declare { name = "X", access = "internal" } end,
        'weft.di: component \'X\': access must be "public" or "private", got internal')
      assert.has_error(function() c:declare { name = "X", init = "nope" } end,
        "weft.di: component 'X': init must be a function")
      assert.has_error(function() c:declare { name = "X", inject = "Foo" } end,
        "weft.di: component 'X': inject must be a table")
      assert.has_error(function() c:declare { name = "X", inject = { "Foo" }, Foo = 1 } end,
        "weft.di: component 'X': injects 'Foo' into field 'Foo', which its declaration already has")
      assert.has_error(function() c:declare { name = "X", inject = { name = "Foo" } } end,
        "weft.di: component 'X': cannot inject into the reserved field 'name'")
      assert.has_error(function() c:get("Nobody") end, "weft.di: no component named 'Nobody'")
    end)

    it("are raised by the middleware's first request when nobody validated", function()
      quiet()
      local c = di.container()
      c:declare { name = "Foo", inject = { "Missing" } }
      local app = weft.app()
      app:use(c:middleware())
      app:get("/", function() return "never" end)
      assert.equal(500, wtest.client(app):get("/").status)
    end)
  end)

  describe("errors at run time", function()
    it("a context component used outside any request scope", function()
      local c = article_container()
      local foo = wtest.component(c, "Foo")
      assert.has_error(function() foo:hello() end,
        "weft.di: context component 'Tracer' used outside any request scope "
        .. "(enter one with app:use(container:middleware()) or container:run_scope(fn))")
      assert.has_error(function() c:get("Tracer") end)
      helpers.run(function()
        assert.has_error(function() return foo.Tracer.rid end)  -- a field, in a task
      end)
    end)

    it("an instance kept past the end of its request raises instead of answering", function()
      local c = article_container()
      local kept = wtest.with_scope(c, function() return c:get("Tracer") end)
      assert.has_error(function() kept:id() end,
        "weft.di: context component 'Tracer' used after its request ended (field 'id')")
      assert.has_error(function() kept.x = 1 end)
      assert.equal("weft.di: ended context component 'Tracer'", tostring(kept))
    end)

    it("a proxy used by work a request left behind raises, never resolving to another request", function()
      local c = article_container()
      local foo = wtest.component(c, "Foo")
      local app = weft.app()
      app:use(c:middleware())
      local late = {}
      app:get("/", function(req)
        local own = foo:hello()
        if req.id == "first" then
          weft.set_timeout(function()                  -- fires after this request ended...
            late[#late + 1] = { pcall(foo.hello, foo) }
          end, 5)
        else
          weft.sleep(10)                               -- ...while this one is running
          late.second_done = true
        end
        return own .. "|" .. req.id
      end)
      local client = wtest.client(app)
      weft.spawn(function() client:get("/", { headers = { ["x-request-id"] = "first" } }) end)
      weft.spawn(function()
        weft.sleep(4)
        -- a second request runs while the first one's timer fires
        weft.spawn(function()
          client:get("/", { headers = { ["x-request-id"] = "second" } })
        end)
      end)
      weft.run()
      assert.is_true(late.second_done)
      assert.equal(1, #late)
      assert.is_false(late[1][1])
      assert.matches("context component 'Tracer' used after its request ended", late[1][2], 1, true)
    end)
  end)

  describe("loading a folder", function()
    it("loads one declaration or a list per file, modules from subfolders, and validates", function()
      local dir = tmpdir()
      write(dir .. "/tracer.lua", [[return { name = "Tracer", scope = "context" }]])
      write(dir .. "/web/controller.lua", [[return { name = "Controller", inject = { "CartService" },
        show = function(self) return self.CartService:count() end }]])
      write(dir .. "/shop/cart.lua", [[return {
        { name = "Cart", scope = "context", access = "private",
          init = function(self) self.n = 0 end },
        { name = "CartService", inject = { "Cart", "Tracer" },
          add = function(self) self.Cart.n = self.Cart.n + 1 end,
          count = function(self) return self.Cart.n end },
      }]])
      write(dir .. "/shop/deep/helper.lua", [[local rel, module = ...
        return { name = "Helper", scope = "transient", where = rel, mod = module }]])
      local c = di.container():load(dir .. "/")
      assert.same({ "Cart", "CartService", "Helper", "Tracer", "Controller" }, c:names()) -- path order
      assert.same({ name = "Cart", scope = "context", access = "private", module = "shop",
        file = dir .. "/shop/cart.lua", inject = {} }, c:info("Cart"))
      assert.equal("web", c:info("Controller").module)
      assert.is_nil(c:info("Tracer").module)
      local helper = wtest.component(c, "Helper")
      assert.same({ "shop/deep/helper.lua", "shop" }, { helper.where, helper.mod })
      local n = wtest.with_scope(c, function()
        local svc = c:get("CartService")
        svc:add()
        svc:add()
        return c:get("Controller"):show()
      end)
      assert.equal(2, n)
    end)

    it("gives each loaded singleton its methods and injections as its own fields, per container", function()
      local dir = tmpdir()
      write(dir .. "/dep.lua", [[return { name = "Dep", id = function() return "dep" end }]])
      write(dir .. "/svc.lua", [[return {
        { name = "Svc", inject = { "Dep", other = "Other" },
          init = function(self) self.ready = true end,
          hello = function(self) return "hi " .. self.Dep.id() .. " " .. self.other:n() end },
        { name = "Other", scope = "transient", n = function() return 7 end },
      }]])
      local a, b = di.container():load(dir), di.container():load(dir)
      local sa, sb = wtest.component(a, "Svc"), wtest.component(b, "Svc")
      assert.are_not.equal(sa, sb)
      assert.equal("hi dep 7", sa:hello())
      assert.equal("function", type(rawget(sa, "hello")))   -- a call is one read of the instance
      assert.equal(wtest.component(a, "Dep"), rawget(sa, "Dep"))
      assert.equal(wtest.component(b, "Dep"), rawget(sb, "Dep"))
      assert.are_not.equal(rawget(sa, "Dep"), rawget(sb, "Dep"))
      assert.is_true(sa.ready)
      assert.equal("Svc", sa.name)                          -- the declaration is its class
      assert.equal(2, a:stats().singletons_created)         -- Svc and Dep; Other is transient
    end)

    it("fails on a private component used from another module's folder", function()
      local dir = tmpdir()
      write(dir .. "/shop/cart.lua", [[return { name = "Cart", access = "private" }]])
      write(dir .. "/web/checkout.lua", [[return { name = "Checkout", inject = { "Cart" } }]])
      assert.has_error(function() di.container():load(dir) end,
        ("weft.di: 'Checkout' (%s/web/checkout.lua) (module 'web') injects 'Cart', which is "
          .. "private to module 'shop'"):format(dir))
    end)

    it("lets a declaration name its module, and reports files that return nothing", function()
      local dir = tmpdir()
      write(dir .. "/cart.lua", [[return { name = "Cart", access = "private", module = "shop" }]])
      write(dir .. "/svc.lua", [[return { name = "Svc", module = "shop", inject = { "Cart" } }]])
      local c = di.container():load(dir)
      assert.equal("shop", c:info("Svc").module)
      write(dir .. "/zzz.lua", [[return 42]])
      local c2 = di.container()
      assert.has_error(function() c2:load(dir) end,
        ("weft.di: %s/zzz.lua must return a component declaration or a list of them (got number)")
          :format(dir))
      assert.same({}, c2:names())   -- every file runs before any is declared
      assert.has_error(function() di.container():load(dir .. "/missing") end,
        ("weft.di: cannot read the folder '%s/missing'"):format(dir))
    end)
  end)

  describe("weft.test helpers", function()
    it("test.component gets singletons with suspending inits from an `it` and from a task", function()
      local c = di.container()
      c:declare { name = "Slow", init = function(self) weft.sleep(2) self.ready = true end }
      c:declare { name = "Tracer", scope = "context" }
      local s = wtest.component(c, "Slow")
      assert.is_true(s.ready)
      helpers.run(function() assert.equal(s, wtest.component(c, "Slow")) end)
      assert.equal(c:proxy("Tracer"), wtest.component(c, "Tracer"))   -- outside a scope
      wtest.with_scope(c, function()
        assert.equal(c:get("Tracer"), wtest.component(c, "Tracer"))
      end)
    end)

    it("test.with_scope runs a function in a fresh scope, from an `it` and from a task", function()
      local c, counts = article_container { slow_init = true }
      local foo = wtest.component(c, "Foo")
      local a, b = wtest.with_scope(c, function()
        return c:get("Tracer"), foo.Tracer.seq
      end)
      assert.equal(1, b)
      assert.has_error(function() return a.seq end)        -- ended with its scope
      local seqs = {}
      for i = 1, 10 do
        weft.spawn(function()
          local via_proxy, direct = wtest.with_scope(c, function()
            weft.sleep(math.random(0, 3))
            return foo.Tracer.seq, c:get("Tracer").seq
          end)
          seqs[i] = via_proxy == direct and via_proxy
        end)
      end
      weft.run()
      assert.equal(11, counts.Tracer)
      for i = 1, 10 do assert.is_true(seqs[i] >= 2) end
      assert.equal(11, #counts.destroyed)
      assert.has_error(function() wtest.with_scope(c, function() error({ code = 7 }) end) end)
    end)
  end)

  it("stats count by scope", function()
    local c = article_container()
    local s = c:stats()
    assert.same({ singleton = 2, context = 1, transient = 0 }, s.components)
    assert.same({ 0, 0, 0, 0, 0 },
      { s.singletons_created, s.context_created, s.transient_created, s.destroyed, s.scopes })
  end)
end)
