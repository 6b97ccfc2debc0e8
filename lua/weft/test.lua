--- In-process requests for specs: the app handles them exactly as it handles requests from
-- the network (same dispatch, same context rules, same 404/500 answers), without a socket.
--
--   local client = require("weft.test").client(app)
--   local r = client:get("/users/7", { headers = { ["x-request-id"] = "abc" } })
--   assert.equal(200, r.status)
local core = require "weft.core"
local cjson = require "cjson.safe"
local log = require "weft.log"

local test = {}

local Port = {}
Port.__index = Port

function Port:method() return self._method end
function Port:target() return self._target end
function Port:header(name) return self._headers[name:lower()] end

function Port:headers()
  local t = {}
  for k, v in pairs(self._headers) do t[k] = v end
  return t
end

function Port:remote_addr() return "127.0.0.1", 0 end
function Port:alive() return true end
function Port:started() return self._res.status ~= nil end

function Port:body()
  if self._body_read then return nil, "EALREADY: the request body could not be read" end
  self._body_read = true
  if #self._body > self._limit then
    if not self._res.status then
      self:send(413, { "Content-Type", "text/plain" }, "Payload Too Large")
    end
    return nil, "E2BIG: request body too large"
  end
  return self._body
end

local function record_headers(res, flat)
  for i = 1, #flat, 2 do
    local k = flat[i]:lower()
    res.header_list[#res.header_list + 1] = { flat[i], flat[i + 1] }
    res.headers[k] = res.headers[k] and (res.headers[k] .. ", " .. flat[i + 1]) or flat[i + 1]
  end
end

function Port:send(status, flat, body)
  local res = self._res
  if res.status then return nil, "EALREADY: a response was already sent", "EALREADY" end
  res.status = status
  record_headers(res, flat or {})
  res.body = self._method == "HEAD" and "" or (body or "")
  return true
end

function Port:start(status, flat)
  local res = self._res
  if res.status then return nil, "EALREADY: a response was already sent", "EALREADY" end
  res.status = status
  record_headers(res, flat or {})
  res.chunks = {}
  return true
end

function Port:write(chunk)
  local res = self._res
  if self._method ~= "HEAD" then res.chunks[#res.chunks + 1] = chunk end
  return true
end

function Port:finish()
  local res = self._res
  res.body = table.concat(res.chunks or {})
  return true
end

local Client = {}
Client.__index = Client

--- A client for app. opts: { body_limit = bytes (default: the app's, else 1 MiB) }.
function test.client(app, opts)
  opts = opts or {}
  return setmetatable({ app = app,
    limit = opts.body_limit or (app._opts and app._opts.body_limit) or 1024 * 1024 }, Client)
end

--- Performs a request. opts: { headers = {name = value}, body = string, json = value }.
-- Returns { status, headers (lower-case names), header_list, body, json(), logs (the log
-- records the request wrote) }.
-- Inside a task it suspends like a real request; outside one (a busted `it`) it drives the
-- loop until the request has finished.
function Client:request(method, target, opts)
  opts = opts or {}
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k:lower()] = tostring(v) end
  local body = opts.body or ""
  if opts.json ~= nil then
    body = assert(cjson.encode(opts.json))
    headers["content-type"] = headers["content-type"] or "application/json"
  end
  if body ~= "" then headers["content-length"] = tostring(#body) end
  local res = { headers = {}, header_list = {} }
  local port = setmetatable({ _method = method:upper(), _target = target, _headers = headers,
    _body = body, _limit = self.limit, _res = res }, Port)
  local app = self.app
  -- what the core refuses before any handler runs: a path that does not percent-decode to
  -- UTF-8 (see "What weft refuses" in docs/api.md)
  if not core.url_decode(target:match("^[^?]*"), "path") then
    res.status, res.body, res.logs = 400, "Bad Request\n", {}
    record_headers(res, { "Content-Type", "text/plain; charset=utf-8", "Connection", "close" })
    function res.json() return cjson.decode(res.body) end
    return res
  end
  -- the log lines this request writes (and what it starts, while it runs), by request id
  local logs = {}
  res.logs = logs
  local function handle()
    local remove = log.add_sink(function(rec)
      local req = require("weft.context").request()
      if req and req._port == port then logs[#logs + 1] = rec end
    end)
    local ok, err = pcall(app.dispatch, app, port)
    remove()
    if not ok then error(err, 0) end
  end
  if core.current() then
    core.spawn(handle):join()
  else
    local t = core.spawn(function()
      handle()
      core.stop()
    end)
    core.run()
    if t:status() ~= "done" then error("the request did not finish", 2) end
    t:join()
  end
  if res.chunks and not res.body then res.body = table.concat(res.chunks) end
  function res.json()
    return cjson.decode(res.body)
  end
  return res
end

for _, m in ipairs { "get", "post", "put", "patch", "delete", "head", "options" } do
  Client[m] = function(self, target, opts) return self:request(m, target, opts) end
end

-- Runs fn(...) and returns its results: directly inside a task; outside one (a busted `it`), in
-- a task of its own, driving the loop until it has finished (like Client:request).
local function in_task(fn, ...)
  if core.current() then return fn(...) end
  local args = table.pack(...)
  local out
  core.spawn(function()
    out = table.pack(pcall(fn, table.unpack(args, 1, args.n)))
    core.stop()
  end)
  core.run()
  if not out then error("the function did not finish", 3) end
  if not out[1] then error(out[2], 0) end
  return table.unpack(out, 2, out.n)
end

--- The component `name` of a weft.di container, like tegg's app.getEggObject: a singleton
-- (created if needed, its init allowed to suspend), a new transient, or for a context
-- component the current scope's instance — or, outside any scope, its proxy (usable inside
-- test.with_scope). Works from a busted `it` and from inside tasks.
function test.component(container, name)
  local info = container:info(name)
  if info and info.scope == "context" and not container:in_scope() then
    return container:proxy(name)
  end
  return in_task(container.get, container, name)
end

--- Runs fn(...) inside a fresh request scope of a weft.di container (like tegg's
-- mockModuleContextScope) and returns its results; the scope's context instances are destroyed
-- when fn returns or raises. Works from a busted `it` and from inside tasks.
function test.with_scope(container, fn, ...)
  return in_task(container.run_scope, container, fn, ...)
end

return test
