local weft = require "weft"
local wtest = require "weft.test"
local ps = require "support.procserver"
local cjson = require "cjson"

describe("apps/todo", function()
  local c
  before_each(function()
    weft.log.set_output(function() end)
    c = wtest.client(dofile("apps/todo/app.lua"))
  end)
  after_each(function() weft.log.set_output(io.stdout) end)

  it("creates, lists, reads, updates and deletes", function()
    assert.same({}, c:get("/todos").json())
    assert.equal("[]", c:get("/todos").body)
    local r = c:post("/todos", { json = { title = "write docs" } })
    assert.equal(201, r.status)
    assert.equal("/todos/1", r.headers.location)
    assert.same({ id = 1, title = "write docs", done = false }, r.json())
    c:post("/todos", { json = { title = "ship", done = true } })
    assert.equal(2, #c:get("/todos").json())
    assert.same({ id = 1, title = "write docs", done = true },
      c:patch("/todos/1", { json = { done = true } }).json())
    assert.same({ id = 1, title = "rewrite", done = false },
      c:put("/todos/1", { json = { title = "rewrite" } }).json())
    assert.equal("rewrite", c:get("/todos/1").json().title)
    assert.equal(204, c:delete("/todos/1").status)
    assert.equal(404, c:get("/todos/1").status)
    assert.equal(1, #c:get("/todos").json())
  end)

  it("answers 422 with details naming each bad field", function()
    local r = c:post("/todos", { json = { title = "", done = "yes", colour = "red" } })
    assert.equal(422, r.status)
    assert.same({ error = "validation failed", details = {
      title = "must be a non-empty string", done = "must be true or false",
      colour = "is not a field of a todo" } }, r.json())
    assert.equal(422, c:post("/todos", { json = {} }).status)
    assert.equal(422, c:post("/todos", { json = { title = string.rep("t", 201) } }).status)
    assert.equal(422, c:post("/todos", { json = { 1, 2 } }).status)
  end)

  it("answers 400 to bad JSON, 404 to unknown ids, 405 to wrong methods", function()
    assert.equal(400, c:post("/todos", { body = "{" }).status)
    assert.equal(404, c:get("/todos/999").status)
    assert.equal(404, c:get("/todos/abc").status)
    local r = c:delete("/todos")
    assert.equal(405, r.status)
    assert.equal("GET, HEAD, POST", r.headers.allow)
  end)

  it("works over a real socket", function()
    local srv = ps.start("apps/todo/app.lua")
    local created = cjson.decode((ps.curl("-X POST -d '{\"title\":\"sock\"}' " .. srv:url("/todos"))))
    local list = cjson.decode((ps.curl(srv:url("/todos"))))
    local bad = ps.curl("-o /dev/null -w '%{http_code}' -X POST -d '{\"title\":5}' " .. srv:url("/todos"))
    srv:stop()
    assert.equal("sock", created.title)
    assert.equal(1, #list)
    assert.equal("422", bad)
  end)
end)
