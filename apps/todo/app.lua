-- A JSON REST API for todos, kept in memory.
--   weft apps/todo/app.lua
--   curl -X POST -d '{"title":"write docs"}' http://127.0.0.1:8080/todos
local weft = require "weft"

local app = weft.app { access_log = true }
local todos, order, next_id = {}, {}, 1

-- Checks a todo's fields; partial = true allows missing ones (PATCH). Raises 422 with
-- details naming each bad field.
local function validate(input, partial)
  if type(input) ~= "table" then weft.error(422, "validation failed", { body = "must be an object" }) end
  local problems = {}
  local title = input.title
  if title == nil then
    if not partial then problems.title = "is required" end
  elseif type(title) ~= "string" or not title:find("%S") then
    problems.title = "must be a non-empty string"
  elseif #title > 200 then
    problems.title = "must be at most 200 characters"
  end
  if input.done ~= nil and type(input.done) ~= "boolean" then
    problems.done = "must be true or false"
  end
  for k in pairs(input) do
    if k ~= "title" and k ~= "done" then problems[k] = "is not a field of a todo" end
  end
  if next(problems) then weft.error(422, "validation failed", problems) end
  return input
end

local function find(req)
  local id = math.tointeger(tonumber(req.params.id))
  local todo = id and todos[id]
  if not todo then weft.error(404, "no todo " .. req.params.id) end
  return todo
end

app:get("/todos", function(req, res)
  local list = {}
  for _, id in ipairs(order) do
    if todos[id] then list[#list + 1] = todos[id] end
  end
  if #list == 0 then -- lua-cjson encodes an empty table as {}
    res:header("Content-Type", "application/json")
    return "[]"
  end
  return list
end)

app:post("/todos", function(req, res)
  local input = validate(req:json(), false)
  local todo = { id = next_id, title = input.title, done = input.done or false }
  todos[next_id], order[#order + 1] = todo, next_id
  next_id = next_id + 1
  res:status(201):header("Location", "/todos/" .. todo.id)
  return todo
end)

app:get("/todos/:id", function(req) return find(req) end)

app:put("/todos/:id", function(req)
  local todo = find(req)
  local input = validate(req:json(), false)
  todo.title, todo.done = input.title, input.done or false
  return todo
end)

app:patch("/todos/:id", function(req)
  local todo = find(req)
  local input = validate(req:json(), true)
  if input.title ~= nil then todo.title = input.title end
  if input.done ~= nil then todo.done = input.done end
  return todo
end)

app:delete("/todos/:id", function(req, res)
  local todo = find(req)
  todos[todo.id] = nil
  res:status(204):send()
end)

return app
