--- Applications: onion middleware, routes with :params and a trailing *, and the dispatch of
-- one request inside its own async context.
local core = require "weft.core"
local http = require "weft.http"
local context = require "weft.context"
local log = require "weft.log"

local App = {}
App.__index = App
App.__name = "weft.App"

local app_mod = {}

--- A new application. opts: { body_limit = bytes (default 1 MiB), limits = { server limits
-- used by app:listen: header_timeout, body_timeout, idle_timeout, ... } }.
function app_mod.new(opts)
  opts = opts or {}
  return setmetatable({
    _middleware = {},
    _routes = {},
    _opts = opts,
  }, App)
end

--- Adds middleware fn(req, res, next); next() runs everything downstream (it may suspend) and
-- returns when it has finished, so code after it runs after the handler (Koa's onion).
function App:use(fn)
  if type(fn) ~= "function" then error("app:use expects a function", 2) end
  self._middleware[#self._middleware + 1] = fn
  return self
end

-- "/users/:id/*" -> { "users", {param="id"}, {wildcard=true} }
local function compile(pattern)
  if type(pattern) ~= "string" or pattern:sub(1, 1) ~= "/" then
    error("a route pattern must be a string starting with '/'", 3)
  end
  local segs = {}
  for seg in pattern:gmatch("[^/]+") do
    if seg:sub(1, 1) == ":" then
      segs[#segs + 1] = { param = seg:sub(2) }
    elseif seg == "*" then
      segs[#segs + 1] = { wildcard = true }
    else
      segs[#segs + 1] = seg
    end
  end
  return segs
end

local function split_path(path)
  local parts = {}
  for seg in path:gmatch("[^/]+") do parts[#parts + 1] = seg end
  return parts
end

local function match(segs, parts)
  local params = {}
  for i, seg in ipairs(segs) do
    if type(seg) == "string" then
      if parts[i] ~= seg then return nil end
    elseif seg.wildcard then
      params["*"] = table.concat(parts, "/", i)
      return params
    else
      if parts[i] == nil then return nil end
      params[seg.param] = parts[i]
    end
  end
  if #parts ~= #segs then return nil end
  return params
end

--- Adds a route for method ("GET", ..., or "*" for all). Handlers after the first two
-- arguments run in order as route middleware, the last one being the handler.
function App:route(method, pattern, ...)
  local fns = table.pack(...)
  if fns.n == 0 then error("a route needs a handler", 2) end
  for i = 1, fns.n do
    if type(fns[i]) ~= "function" then error("route handlers must be functions", 2) end
  end
  self._routes[#self._routes + 1] = {
    method = method, pattern = pattern, segs = compile(pattern), fns = fns,
  }
  return self
end

for _, m in ipairs { "get", "post", "put", "patch", "delete", "head", "options" } do
  local M = m:upper()
  App[m] = function(self, pattern, ...) return self:route(M, pattern, ...) end
end

function App:all(pattern, ...) return self:route("*", pattern, ...) end

-- Finds the route for method and path: the route, its params, and the methods that would
-- match the path (for 405).
function App:_find(method, path)
  local parts = split_path(path)
  local allowed
  for _, r in ipairs(self._routes) do
    local params = match(r.segs, parts)
    if params then
      if r.method == "*" or r.method == method or (method == "HEAD" and r.method == "GET") then
        return r, params
      end
      allowed = allowed or {}
      allowed[#allowed + 1] = r.method
    end
  end
  return nil, nil, allowed
end

-- Applies a handler's return value: body, or status, body[, headers].
local function apply_return(res, a, b, c)
  if res.sent or a == nil then return end
  if math.type(a) == "integer" then
    res:status(a)
    if type(c) == "table" then
      for k, v in pairs(c) do res:header(k, v) end
    end
    if type(b) == "table" then return res:json(b) end
    return res:send(b)
  end
  if type(a) == "table" then return res:json(a) end
  return res:send(a)
end

local function run_route(route, req, res)
  local fns = route.fns
  local function step(i)
    local fn = fns[i]
    if i == fns.n then return apply_return(res, fn(req, res)) end
    return fn(req, res, function() return step(i + 1) end)
  end
  return step(1)
end

local function not_found(res)
  res:status(404)
  return res:send("Not Found")
end

-- The end of the chain: the matching route, else 405 (path known, method not) or 404.
local function endpoint(app, req, res)
  local route, params, allowed = app:_find(req.method, req.path)
  if route then
    req.params = params
    if route.fns.n == 1 then return apply_return(res, route.fns[1](req, res)) end
    return run_route(route, req, res)
  end
  if allowed then
    table.sort(allowed)
    res:status(405):header("Allow", table.concat(allowed, ", "))
    return res:send("Method Not Allowed")
  end
  return not_found(res)
end

-- Runs the middleware chain, then the matching route.
function App:_handle(req, res)
  local mw = self._middleware
  local n = #mw
  if n == 0 then return endpoint(self, req, res) end
  local function step(i)
    if i > n then return endpoint(self, req, res) end
    local called = false
    return mw[i](req, res, function()
      if called then error("next() called twice", 2) end
      called = true
      return step(i + 1)
    end)
  end
  return step(1)
end

local traceback = debug.traceback

local function on_handler_error(err)
  return { err = err, traceback = traceback(tostring(err), 2) }
end

-- Runs the app for one request inside its context; answers 500 if it raises, 404 if nothing
-- answered, and finishes a stream left open.
local function handle_in_context(app, req, res, port)
  local ok, e = xpcall(app._handle, on_handler_error, app, req, res)
  if not ok then
    log.error("request handler raised", {
      error = tostring(e.err), traceback = e.traceback,
      method = req.method, path = req.path,
    })
    if not res.sent then
      res.sent = true
      port:send(500, { "Content-Type", "text/plain; charset=utf-8" }, "Internal Server Error")
    elseif res.streaming then
      res.streaming = false -- the stream ends unfinished: the client sees a broken body
    end
    return
  end
  if res.streaming then
    res:finish()
  elseif not res.sent then
    not_found(res)
  end
end

local request_als = context.request_als

--- Handles one request on `port` in the current task: builds req/res and runs the app inside a
-- context holding the request.
function App:dispatch(port)
  local req = http.request(port)
  local res = http.response(port, req)
  req.res = res
  return request_als:run(req, handle_in_context, self, req, res, port)
end

--- Starts serving: opts { host = "127.0.0.1", port = 8080 (0: any free port), and limits:
-- max_body, max_url, max_header_bytes, max_headers, header_timeout, body_timeout,
-- idle_timeout (ms) }. Returns the server (server:address(), server:close()) or nil, err.
function App:listen(opts)
  opts = opts or {}
  local cfg = {}
  for k, v in pairs(opts) do cfg[k] = v end
  cfg.host = opts.host or "127.0.0.1"
  if opts.port == nil then cfg.port = 8080 end
  cfg.max_body = opts.max_body or self._opts.body_limit
  for k, v in pairs(self._opts.limits or {}) do
    if cfg[k] == nil then cfg[k] = v end
  end
  return core.listen(cfg, function(port) return self:dispatch(port) end)
end

return app_mod
