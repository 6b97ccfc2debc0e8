local weft = require "weft"
local wtest = require "weft.test"
local cjson = require "cjson"

local function quiet_logs()
  local lines = {}
  weft.log.set_output(function(line) lines[#lines + 1] = cjson.decode(line) end)
  return lines
end

describe("weft.app", function()
  after_each(function() weft.log.set_output(io.stdout) end)

  it("routes by method and path, with :params", function()
    local app = weft.app()
    app:get("/users/:id", function(req, res) res:json { id = req.params.id, m = req.method } end)
    app:post("/users/:id/posts/:post", function(req) return { req.params.id, req.params.post } end)
    local c = wtest.client(app)
    local r = c:get("/users/7")
    assert.equal(200, r.status)
    assert.equal("application/json", r.headers["content-type"])
    assert.same({ id = "7", m = "GET" }, r.json())
    assert.same({ "1", "2" }, c:post("/users/1/posts/2").json())
  end)

  it("answers 404 when no route matches and 405 with Allow when only the method differs", function()
    local app = weft.app()
    app:get("/thing", function() return "ok" end)
    app:delete("/thing", function() return "gone" end)
    local c = wtest.client(app)
    assert.equal(404, c:get("/nothing").status)
    local r = c:put("/thing")
    assert.equal(405, r.status)
    assert.equal("DELETE, GET, HEAD", r.headers["allow"]) -- GET routes serve HEAD too
  end)

  it("serves HEAD from GET routes, without a body", function()
    local app = weft.app()
    app:get("/", function() return "hello" end)
    local r = wtest.client(app):head("/")
    assert.equal(200, r.status)
    assert.equal("", r.body)
  end)

  it("matches a trailing * wildcard and `all`", function()
    local app = weft.app()
    app:all("/files/*", function(req) return req.method .. ":" .. req.params["*"] end)
    local c = wtest.client(app)
    assert.equal("GET:a/b/c.txt", c:get("/files/a/b/c.txt").body)
    assert.equal("PATCH:x", c:patch("/files/x").body)
  end)

  it("accepts the handler return forms: body, status+body, status+body+headers, a table", function()
    local app = weft.app()
    app:get("/a", function() return "text" end)
    app:get("/b", function() return 201, "made" end)
    app:get("/c", function() return 202, "h", { ["X-One"] = "1" } end)
    app:get("/d", function() return { ok = true } end)
    app:get("/e", function() return "<p>hi</p>" end)
    local c = wtest.client(app)
    local a = c:get("/a")
    assert.same({ 200, "text", "text/plain; charset=utf-8" }, { a.status, a.body, a.headers["content-type"] })
    local b = c:get("/b")
    assert.same({ 201, "made" }, { b.status, b.body })
    local cc = c:get("/c")
    assert.same({ 202, "h", "1" }, { cc.status, cc.body, cc.headers["x-one"] })
    assert.same({ ok = true }, c:get("/d").json())
    assert.equal("text/html; charset=utf-8", c:get("/e").headers["content-type"])
  end)

  it("runs middleware as an onion; next() may suspend", function()
    local app = weft.app()
    local trail = {}
    app:use(function(req, res, next)
      trail[#trail + 1] = "a-in"
      next()
      trail[#trail + 1] = "a-out"
      res:header("X-Took", "yes")
    end)
    app:use(function(req, res, next)
      trail[#trail + 1] = "b-in"
      weft.sleep(1)
      next()
      trail[#trail + 1] = "b-out"
    end)
    app:get("/", function(req, res)
      trail[#trail + 1] = "handler"
      res:status(200) -- answered by the return value
      return "done"
    end)
    local r = wtest.client(app):get("/")
    assert.equal("done", r.body)
    assert.same({ "a-in", "b-in", "handler", "b-out", "a-out" }, trail)
    -- a returned body is sent once the chain has returned: headers set on the way out count
    assert.equal("yes", r.headers["x-took"])
  end)

  it("lets middleware answer without calling next", function()
    local app = weft.app()
    app:use(function(req, res, next)
      if req:header("authorization") ~= "yes" then return res:status(401):send("no") end
      return next()
    end)
    app:get("/", function() return "in" end)
    local c = wtest.client(app)
    assert.equal(401, c:get("/").status)
    assert.equal("in", c:get("/", { headers = { Authorization = "yes" } }).body)
  end)

  it("answers 500 when a handler raises, without leaking the error; logs it with the request id",
    function()
    local lines = quiet_logs()
    local app = weft.app()
    app:get("/boom", function() error("secret detail") end)
    app:get("/fine", function() return "fine" end)
    local c = wtest.client(app)
    local r = c:get("/boom", { headers = { ["x-request-id"] = "req-500" } })
    assert.equal(500, r.status)
    assert.is_nil(r.body:find("secret"))
    assert.equal("fine", c:get("/fine").body)
    assert.equal(1, #lines)
    assert.equal("error", lines[1].level)
    assert.equal("req-500", lines[1].request_id)
    assert.matches("secret detail", lines[1].error)
    assert.matches("stack traceback", lines[1].traceback)
  end)

  it("gives weft.request() to any code, however deep, without passing it", function()
    local function deep(n)
      if n == 0 then
        weft.sleep(1)
        return weft.request().id
      end
      return deep(n - 1)
    end
    local app = weft.app()
    app:get("/", function() return deep(50) end)
    local c = wtest.client(app)
    assert.equal("given-id", c:get("/", { headers = { ["X-Request-Id"] = "given-id" } }).body)
    assert.is_nil(weft.request())
  end)

  it("generates unique request ids when none (or a hostile one) is sent", function()
    local app = weft.app()
    app:get("/", function(req) return req.id end)
    local c = wtest.client(app)
    local seen = {}
    for _ = 1, 200 do
      local id = c:get("/").body
      assert.is_nil(seen[id])
      seen[id] = true
    end
    local hostile = c:get("/", { headers = { ["x-request-id"] = "a\"b{}" } }).body
    assert.not_equal("a\"b{}", hostile)
  end)

  it("decodes the path and parses the query string", function()
    local app = weft.app()
    app:get("/caf%C3%A9 x", function(req) return { path = req.path, q = req.query } end)
    app:get("/p/:name", function(req) return { name = req.params.name, q = req.query } end)
    local c = wtest.client(app)
    local r = c:get("/p/a%20b?x=1&y=two+words&x=3&flag&e=%26")
    assert.same({ name = "a b", q = { x = { "1", "3" }, y = "two words", flag = "", e = "&" } }, r.json())
  end)

  it("reads the body and JSON bodies", function()
    local app = weft.app()
    app:post("/echo", function(req) return req:body() end)
    app:post("/json", function(req)
      local v, err = req:json()
      if not v then return 400, err end
      return { got = v.n * 2 }
    end)
    local c = wtest.client(app)
    assert.equal("raw bytes", c:post("/echo", { body = "raw bytes" }).body)
    assert.same({ got = 42 }, c:post("/json", { json = { n = 21 } }).json())
    local bad = c:post("/json", { body = "{nope" })
    assert.equal(400, bad.status)
    assert.matches("invalid JSON", bad.body)
  end)

  it("streams with res:write and finishes automatically", function()
    local app = weft.app()
    app:get("/stream", function(req, res)
      for i = 1, 3 do
        res:write("part" .. i .. ";")
        weft.sleep(1)
      end
    end)
    local r = wtest.client(app):get("/stream")
    assert.equal(200, r.status)
    assert.equal("part1;part2;part3;", r.body)
  end)

  it("keeps each concurrent request's context its own", function()
    local als = weft.AsyncLocalStorage.new()
    local app = weft.app()
    app:use(function(req, res, next) return als:run(req.query.n, next) end)
    app:get("/", function()
      weft.sleep(math.random(0, 5))
      local child = weft.spawn(function() weft.sleep(1) return als:getStore() end)
      return als:getStore() .. "/" .. child:join() .. "/" .. weft.request().query.n
    end)
    local c = wtest.client(app)
    local results = {}
    for i = 1, 100 do
      weft.spawn(function() results[i] = c:get("/?n=" .. i).body end)
    end
    weft.run()
    for i = 1, 100 do assert.equal(i .. "/" .. i .. "/" .. i, results[i]) end
  end)
end)

describe("memory across many requests", function()
  it("does not grow the Lua heap or keep frames once requests end", function()
    local als = weft.AsyncLocalStorage.new()
    local app = weft.app()
    app:use(function(req, res, next) return als:run({ big = string.rep("x", 100), id = req.id }, next) end)
    app:get("/", function()
      weft.sleep(0)
      local child = weft.spawn(function() return als:getStore().id end)
      return child:join()
    end)
    local c = wtest.client(app)
    local function batch(n)
      weft.spawn(function()
        for _ = 1, n do c:get("/") end
      end)
      weft.run()
      collectgarbage()
      collectgarbage()
      weft.run() -- drop references released by the collector
      collectgarbage()
      return collectgarbage("count"), require("weft.core").stats()
    end
    batch(2000) -- warm up pools and caches
    local kb1, s1 = batch(2000)
    local kb2, s2 = batch(20000)
    assert.is_true(kb2 - kb1 < 256, ("heap grew from %.0f KiB to %.0f KiB"):format(kb1, kb2))
    assert.equal(s1.frames, s2.frames)
    assert.equal(0, s2.tasks)
  end)
end)
