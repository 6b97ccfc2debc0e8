--- Applications and routers: onion middleware, a routing tree (static segments, :params, a
-- trailing *), routers mounted under a prefix, and the dispatch of one request inside its own
-- async context.
--
-- Routing rules: a static segment beats a :param, which beats a trailing *; a trailing slash is
-- ignored ("/a/" matches "/a"); HEAD is served by GET routes; a path that matches with another
-- method gets 405 with Allow; nothing matching gets 404.
local core = require "weft.core"
local http = require "weft.http"
local context = require "weft.context"
local errors = require "weft.errors"
local log = require "weft.log"
local process = require "weft.process"

local app_mod = {}

-- Any change to any app's or router's routes bumps this, so apps rebuild their trees lazily
-- (routes may be added to a router after it was mounted).
local generation = 0

-- ---------------------------------------------------------------------------------------
-- Routers: route tables and middleware, mountable under a prefix

local Router = {}
Router.__index = Router
Router.__name = "weft.Router"

local function new_router()
  return setmetatable({ _routes = {}, _middleware = {} }, Router)
end

local function normalize_prefix(prefix)
  if type(prefix) ~= "string" or prefix:sub(1, 1) ~= "/" then
    error("a mount prefix must be a string starting with '/'", 3)
  end
  prefix = prefix:gsub("/+$", "")
  return prefix
end

--- Adds middleware fn(req, res, next), or mounts a router: use(fn), use(prefix, fn),
-- use(prefix, router). In a router, middleware runs only for that router's matched routes.
function Router:use(a, b)
  local prefix, target = nil, a
  if b ~= nil then prefix, target = normalize_prefix(a), b end
  if getmetatable(target) == Router or (type(target) == "table" and target._routes) then
    self._routes[#self._routes + 1] = { mount = target, prefix = prefix or "" }
  elseif type(target) == "function" then
    self._middleware[#self._middleware + 1] = { prefix = prefix, fn = target }
  else
    error("use expects a function or a router", 2)
  end
  generation = generation + 1
  return self
end

local function compile(pattern)
  if type(pattern) ~= "string" or pattern:sub(1, 1) ~= "/" then
    error("a route pattern must be a string starting with '/'", 3)
  end
  local segs = {}
  for seg in pattern:gmatch("[^/]+") do
    if seg:sub(1, 1) == ":" then
      if #seg == 1 then error("a :param needs a name in " .. pattern, 3) end
      segs[#segs + 1] = { param = seg:sub(2) }
    elseif seg == "*" then
      segs[#segs + 1] = { wildcard = true }
    else
      segs[#segs + 1] = seg
    end
  end
  for i, seg in ipairs(segs) do
    if type(seg) == "table" and seg.wildcard and i ~= #segs then
      error("* may only end a route pattern: " .. pattern, 3)
    end
  end
  return segs
end

--- Adds a route for method ("GET", ..., or "*" for every method). Functions after the pattern
-- run in order as route middleware; the last is the handler.
function Router:route(method, pattern, ...)
  local fns = table.pack(...)
  if fns.n == 0 then error("a route needs a handler", 2) end
  for i = 1, fns.n do
    if type(fns[i]) ~= "function" then error("route handlers must be functions", 2) end
  end
  compile(pattern) -- checked now, so that a bad pattern fails where it is written
  self._routes[#self._routes + 1] = { method = method, pattern = pattern, fns = fns }
  generation = generation + 1
  return self
end

for _, m in ipairs { "get", "post", "put", "patch", "delete", "head", "options" } do
  local M = m:upper()
  Router[m] = function(self, pattern, ...) return self:route(M, pattern, ...) end
end

function Router:all(pattern, ...) return self:route("*", pattern, ...) end

-- ---------------------------------------------------------------------------------------
-- The routing tree

local function new_node()
  return { static = {} }
end

-- Inserts a route (with its full pattern and the router middleware that wraps it).
local function insert(root, method, pattern, fns)
  local node = root
  local names = {}
  for _, seg in ipairs(compile(pattern)) do
    if type(seg) == "string" then
      local child = node.static[seg]
      if not child then
        child = new_node()
        node.static[seg] = child
      end
      node = child
    elseif seg.param then
      node.param = node.param or new_node()
      node = node.param
      names[#names + 1] = seg.param
    else
      node.wildcard = node.wildcard or new_node()
      node = node.wildcard
      names[#names + 1] = "*"
    end
  end
  node.methods = node.methods or {}
  if not node.methods[method] then -- the first route registered for a method and path wins
    node.methods[method] = { pattern = pattern, fns = fns, names = names }
  end
end

local function join_fns(before, fns)
  if #before == 0 then return fns end
  local out = { n = 0 }
  for _, f in ipairs(before) do
    out.n = out.n + 1
    out[out.n] = f
  end
  for i = 1, fns.n do
    out.n = out.n + 1
    out[out.n] = fns[i]
  end
  return out
end

local byte, find, sub = string.byte, string.find, string.sub

-- true when path is prefix or under it ("/p" matches "/p" and "/p/x", not "/px"); makes no
-- string (it runs for each prefix-mounted middleware on every request)
local function prefix_matches(path, prefix)
  if path == prefix then return true end
  return byte(path, #prefix + 1) == 47 and find(path, prefix, 1, true) == 1
end

-- Adds every route of router r under prefix, wrapped in the middleware inherited so far and,
-- unless own_mw is false (an app's own middleware wraps its whole chain instead), r's own.
local function flatten(root, r, prefix, inherited, own_mw)
  local before = {}
  for _, f in ipairs(inherited) do before[#before + 1] = f end
  if own_mw ~= false then
    for _, mw in ipairs(r._middleware) do
      if mw.prefix then
        local full, fn = prefix .. mw.prefix, mw.fn
        before[#before + 1] = function(req, res, next)
          if prefix_matches(req.path, full) then return fn(req, res, next) end
          return next()
        end
      else
        before[#before + 1] = mw.fn
      end
    end
  end
  for _, route in ipairs(r._routes) do
    if route.mount then
      flatten(root, route.mount, prefix .. route.prefix, before)
    else
      local full = prefix .. route.pattern
      if full ~= "/" then full = full:gsub("/+$", "") end
      if full == "" then full = "/" end
      insert(root, route.method, full, join_fns(before, route.fns))
    end
  end
end

-- Walks the tree for parts; returns the node that has `method` (or "*", or GET for HEAD) and
-- the param values, else nil plus the first node that matched the path with other methods.
local function walk(node, parts, i, n, vals, nv, method)
  if i > n then
    local ms = node.methods
    if ms then
      local r = ms[method] or ms["*"] or (method == "HEAD" and ms.GET)
      if r then return r, nv, nil end
    end
    local wild = node.wildcard
    if wild and wild.methods then
      local wm = wild.methods
      local r = wm[method] or wm["*"] or (method == "HEAD" and wm.GET)
      vals[nv + 1] = ""
      if r then return r, nv + 1, nil end
      return nil, nil, ms and node or wild
    end
    return nil, nil, ms and node or nil
  end
  local seg = parts[i]
  local fallback
  local child = node.static[seg]
  if child then
    local r, k, fb = walk(child, parts, i + 1, n, vals, nv, method)
    if r then return r, k end
    fallback = fb
  end
  child = node.param
  if child then
    vals[nv + 1] = seg
    local r, k, fb = walk(child, parts, i + 1, n, vals, nv + 1, method)
    if r then return r, k end
    fallback = fallback or fb
  end
  child = node.wildcard
  if child and child.methods then
    local ms = child.methods
    local r = ms[method] or ms["*"] or (method == "HEAD" and ms.GET)
    vals[nv + 1] = table.concat(parts, "/", i, n)
    if r then return r, nv + 1 end
    fallback = fallback or child
  end
  return nil, nil, fallback
end

local unescape = http.unescape

-- Splits the raw path into decoded segments (decoding after splitting, so that an encoded
-- slash stays inside its segment), into a scratch table reused by every lookup (a lookup
-- never yields, so nothing else can be using it).
local scratch_parts, scratch_vals = {}, {}
local function split_path(rawpath)
  -- plain finds of "/" rather than gmatch (which allocates its matcher state, over 500 bytes,
  -- on every call) or a pattern (a character class is matched byte by byte in Lua's matcher)
  local parts, n, i, len = scratch_parts, 0, 1, #rawpath
  while i <= len do
    local e = find(rawpath, "/", i, true) or len + 1
    if e > i then
      local seg = sub(rawpath, i, e - 1)
      n = n + 1
      parts[n] = find(seg, "%", 1, true) and unescape(seg) or seg
    end
    i = e + 1
  end
  return parts, n
end

-- ---------------------------------------------------------------------------------------
-- Applications

local App = setmetatable({}, { __index = Router })
App.__index = App
App.__name = "weft.App"

--- A new application. opts: { body_limit = bytes (default 1 MiB), access_log = boolean,
-- limits = { server limits used by app:listen: header_timeout, body_timeout, ... } }.
function app_mod.new(opts)
  opts = opts or {}
  local app = new_router()
  app._opts = opts
  app._tree_gen = -1
  app.access_log = opts.access_log
  return setmetatable(app, App)
end

--- A new router (see Router:use and the route methods).
function app_mod.router()
  return new_router()
end

function App:_tree()
  if self._tree_gen ~= generation then
    local root = new_node()
    flatten(root, self, "", {}, false)
    self._root = root
    self._tree_gen = generation
  end
  return self._root
end

-- The route for method and raw path, and the number of param values left in scratch_vals; else
-- nil, nil and the node that matched the path with other methods.
local function match(app, method, rawpath)
  local root = app._tree_gen == generation and app._root or app:_tree()
  -- the root path skips the split: ~1,100 instructions, 4% of a plain request (measured)
  if rawpath == "/" then return walk(root, scratch_parts, 1, 0, scratch_vals, 0, method) end
  local parts, n = split_path(rawpath)
  return walk(root, parts, 1, n, scratch_vals, 0, method)
end

-- Fills params from the values match left in scratch_vals.
local function fill_params(params, route, nv)
  local names, vals = route.names, scratch_vals
  for k = 1, nv do params[names[k]] = vals[k] end
  return params
end

-- The sorted methods that the node matched by the path answers (HEAD wherever GET is).
local function allowed_methods(fallback)
  if fallback and fallback.methods then
    local allowed, seen = {}, {}
    for m in pairs(fallback.methods) do
      if m ~= "*" and not seen[m] then
        allowed[#allowed + 1] = m
        seen[m] = true
      end
    end
    if seen.GET and not seen.HEAD then allowed[#allowed + 1] = "HEAD" end
    table.sort(allowed)
    return allowed
  end
end

--- Finds the route for method and path: the route, its params, and (when only the method
-- differs) the sorted list of methods that would match.
function App:find(method, rawpath)
  local route, nv, fallback = match(self, method, rawpath)
  if route then return route, fill_params({}, route, nv) end
  local allowed = allowed_methods(fallback)
  if allowed then return nil, nil, allowed end
end

-- Takes a handler's return value: body, or status, body[, headers]. The body is sent when the
-- whole middleware chain has returned, so middleware can still change the status and headers
-- after next() (Koa's onion); res:send() and res:json() send at once.
local function apply_return(res, a, b, c)
  if res.sent or a == nil then return end
  if math.type(a) == "integer" then
    res:status(a)
    if type(c) == "table" then
      for k, v in pairs(c) do res:header(k, v) end
    end
    a = b == nil and "" or b
  end
  res._pending = a
end

local function run_route(route, req, res)
  local fns = route.fns
  local n = fns.n
  if n == 1 then return apply_return(res, fns[1](req, res)) end
  local function step(i)
    local fn = fns[i]
    if i == n then return apply_return(res, fn(req, res)) end
    local called = false
    return fn(req, res, function()
      if called then error("next() called twice", 2) end
      called = true
      return step(i + 1)
    end)
  end
  return step(1)
end

local function not_found(res)
  res:status(404)
  return res:send("Not Found")
end

-- The end of the chain: the matching route, else 405 (path known, method not) or 404.
local function endpoint(app, req, res)
  local route, nv, fallback = match(app, req.method, req.rawpath)
  if route then
    if nv > 0 then fill_params(req.params, route, nv) end
    req.route = route.pattern
    return run_route(route, req, res)
  end
  local allowed = allowed_methods(fallback)
  if allowed then
    res:status(405):header("Allow", table.concat(allowed, ", "))
    return res:send("Method Not Allowed")
  end
  return not_found(res)
end

-- Runs the app's middleware chain, then the matching route.
function App:_handle(req, res)
  local mw = self._middleware
  local n = #mw
  if n == 0 then return endpoint(self, req, res) end
  local function step(i)
    while i <= n and mw[i].prefix and not prefix_matches(req.path, mw[i].prefix) do i = i + 1 end
    if i > n then return endpoint(self, req, res) end
    local called = false
    local prefix = mw[i].prefix
    -- middleware mounted under a prefix sees it as req.base_path (Express's baseUrl), so that
    -- it can work on the rest of the path; downstream sees the outer value again
    local outer = req.base_path
    if prefix then req.base_path = prefix end
    local function next_fn()
      if called then error("next() called twice", 2) end
      called = true
      req.base_path = outer
      return step(i + 1)
    end
    if not prefix then return mw[i].fn(req, res, next_fn) end
    local function restore(...)
      req.base_path = outer
      return ...
    end
    return restore(mw[i].fn(req, res, next_fn))
  end
  return step(1)
end

local traceback = debug.traceback

local function on_handler_error(err)
  if errors.is(err) and err.status < 500 then return { err = err } end
  return { err = err, traceback = traceback(tostring(err), 2) }
end
-- (Lua calls no message handler for a memory error: xpcall then returns the bare message.)

-- Answers an HTTP error raised by the app (weft.error, req:json on bad JSON, ...).
local function send_http_error(req, res, e)
  res._status = e.status
  res._hl, res._multi = {}, false
  local accept = req:header("accept") or ""
  if e.details ~= nil or accept:find("json", 1, true) then
    return res:json { error = e.message, details = e.details }
  end
  return res:send(e.message)
end

-- Runs the app for one request inside its context; answers the status of an HTTP error, 500
-- for any other error, 404 if nothing answered, and finishes a stream left open.
local function handle_in_context(app, req, res, port, start_ns)
  local ok, e = xpcall(app._handle, on_handler_error, app, req, res)
  if not ok then
    if type(e) ~= "table" then e = { err = e } end
    local err = e.err
    local status = errors.is(err) and err.status or 500
    if status >= 500 then
      log.error("request handler raised", {
        error = tostring(err), traceback = e.traceback, method = req.method, path = req.path,
      })
    end
    if not res.sent then
      if errors.is(err) then
        send_http_error(req, res, err)
      else
        res._status = 500
        res.sent = true
        port:send(500, { "Content-Type", "text/plain; charset=utf-8" }, "Internal Server Error")
      end
    elseif res.streaming then
      res.streaming = false -- the stream ends unfinished: the client sees a broken body
    end
  elseif res.streaming then
    res:finish()
  elseif not res.sent then
    local body = res._pending
    if not body then
      not_found(res)
    elseif type(body) == "table" then
      res:json(body)
    else
      res:send(body)
    end
  end
  if app.access_log then
    -- sized for the fields log adds (ts, level, msg, request_id, trace_id): no resize
    log.emit("info", "access", {
      method = req.method, path = req.path, status = res._status, bytes = res.bytes,
      duration_ms = math.floor((core.hrtime() - start_ns) / 1e4 + 0.5) / 100,
      ts = false, level = false, msg = false, request_id = false, trace_id = false,
    })
  end
end

local request_als = context.request_als

--- Handles one request on `port` in the current task: builds req/res and runs the app inside a
-- context holding the request (and its trace). own_task: the caller is the request's own task
-- (the server's), which ends with the request: the request is entered for the rest of the task
-- (enterWith) rather than in a scope that must be unwound (run), which saves a scope object
-- and its finaliser on every request.
function App:dispatch(port, own_task)
  local req = http.request(port)
  local res = http.response(port, req)
  req.res = res
  local start_ns = self.access_log and core.hrtime()
  if own_task then
    request_als:enterWith(req)
    return handle_in_context(self, req, res, port, start_ns)
  end
  return request_als:run(req, handle_in_context, self, req, res, port, start_ns)
end

-- Logs connections refused over max_connections: one line a second at most, with how many
-- were refused since the last.
local function refusal_logger(limit)
  local logged, last_at = 0, nil
  return function(total)
    local now = core.now()
    if last_at and now - last_at < 1000 then return end
    last_at = now
    log.warn("connection refused: max_connections reached",
      { max_connections = limit, refused = total - logged, refused_total = total })
    logged = total
  end
end

--- Starts serving: opts { host = "127.0.0.1", port = 8080 (0: any free port), and limits:
-- max_body, max_url, max_header_bytes, max_headers, header_timeout, body_timeout,
-- idle_timeout, linger_timeout, send_timeout (ms), max_connections }. Returns the server
-- (server:address(), server:close()) or nil, err.
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
  self:_tree() -- a bad route fails now, not on the first request
  if cfg.max_connections and cfg.max_connections > 0 and cfg.on_refused == nil then
    cfg.on_refused = refusal_logger(cfg.max_connections)
  end
  local server, err, code = core.listen(cfg, function(port) return self:dispatch(port, true) end)
  if server then process.add_server(server) end
  return server, err, code
end

return app_mod
