--- Request and response objects over a connection "port": the C request of weft.core, or the
-- in-process request of weft.test. A port has method(), target(), header(name), headers(),
-- remote_addr(), body(), send(status, flat_headers, body), start(status, flat_headers),
-- write(chunk), finish() and started().
local cjson = require "cjson.safe"

local http = {}

local hex_to_char = function(h) return string.char(tonumber(h, 16)) end

--- Percent-decodes s ("+" stays "+": that rule belongs to forms and query strings).
function http.unescape(s)
  return (s:gsub("%%(%x%x)", hex_to_char))
end

local function form_unescape(s)
  return http.unescape((s:gsub("+", " ")))
end

--- Parses a query string into a table; a repeated key gives an array of its values.
function http.parse_query(qs)
  local t = {}
  if not qs or qs == "" then return t end
  for pair in qs:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    if not k then k, v = pair, "" end
    k, v = form_unescape(k), form_unescape(v)
    local prev = t[k]
    if prev == nil then
      t[k] = v
    elseif type(prev) == "table" then
      prev[#prev + 1] = v
    else
      t[k] = { prev, v }
    end
  end
  return t
end

local STATUS_TEXT = {
  [200] = "OK", [201] = "Created", [204] = "No Content", [301] = "Moved Permanently",
  [302] = "Found", [304] = "Not Modified", [400] = "Bad Request", [401] = "Unauthorized",
  [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed", [408] = "Request Timeout",
  [413] = "Payload Too Large", [415] = "Unsupported Media Type", [422] = "Unprocessable Entity",
  [500] = "Internal Server Error", [503] = "Service Unavailable",
}
http.STATUS_TEXT = STATUS_TEXT

-- request ids: a random per-process prefix and a counter (unique in the process, and across
-- processes with overwhelming probability); an incoming x-request-id is kept when it is sane
local id_prefix = string.format("%08x-", math.random(0, 0x7fffffff))
local id_counter = 0

local function new_request_id()
  id_counter = id_counter + 1
  return id_prefix .. id_counter
end

local function sane_request_id(v)
  return v and #v > 0 and #v <= 128 and not v:find("[^%w%-%._:/+=@]") and v or nil
end

-- ---------------------------------------------------------------------------------------
-- Request

local Request = {}
Request.__name = "weft.Request"

local lazy = {}

function lazy.headers(req)
  return req._port:headers()
end

function lazy.query(req)
  return http.parse_query(req.querystring)
end

function lazy.remote_addr(req)
  return (req._port:remote_addr())
end

Request.__index = function(req, k)
  local m = Request[k]
  if m ~= nil then return m end
  local f = lazy[k]
  if f then
    local v = f(req)
    rawset(req, k, v)
    return v
  end
end

--- Builds the request object for a port.
function http.request(port)
  local target = port:target()
  local qpos = target:find("?", 1, true)
  local rawpath = qpos and target:sub(1, qpos - 1) or target
  local req = setmetatable({
    _port = port,
    method = port:method(),
    target = target,
    rawpath = rawpath,
    path = rawpath:find("%", 1, true) and http.unescape(rawpath) or rawpath,
    querystring = qpos and target:sub(qpos + 1) or "",
    params = {},
  }, Request)
  req.id = sane_request_id(port:header("x-request-id")) or new_request_id()
  return req
end

--- The first value of header `name` (case-insensitive), or nil.
function Request:header(name)
  return self._port:header(name)
end

--- The whole body as a string; suspends the task until it has arrived. nil, err when it is
-- over the body limit (the client got 413), stalled (408) or the client went away.
function Request:body()
  return self._port:body()
end

--- The body decoded as JSON; nil, err when it is missing or not JSON.
function Request:json()
  local body, err = self:body()
  if not body then return nil, err end
  local v, jerr = cjson.decode(body)
  if v == nil and jerr then return nil, "invalid JSON body: " .. jerr end
  return v
end

-- ---------------------------------------------------------------------------------------
-- Response

local Response = {}
Response.__index = Response
Response.__name = "weft.Response"

function http.response(port, req)
  return setmetatable({ _port = port, _req = req, _status = 200, _h = {}, _order = {},
                        sent = false, streaming = false }, Response)
end

--- Sets the status code; returns the response for chaining.
function Response:status(code)
  code = math.tointeger(code)
  if not code or code < 100 or code > 999 then error("invalid status code", 2) end
  self._status = code
  return self
end

--- Sets header `name` to value (a string, a number, or an array of values for repeated lines);
-- nil removes it. Returns the response for chaining.
function Response:header(name, value)
  if type(name) ~= "string" then error("header name must be a string", 2) end
  local key = name:lower()
  if self._h[key] == nil then self._order[#self._order + 1] = key end
  self._h[key] = value ~= nil and { name, value } or false
  return self
end

--- The value set for header `name`, or nil.
function Response:get_header(name)
  local e = self._h[name:lower()]
  return e and e[2] or nil
end

function Response:_flat()
  local flat, n = {}, 0
  for _, key in ipairs(self._order) do
    local e = self._h[key]
    if e then
      local v = e[2]
      if type(v) == "table" then
        for _, one in ipairs(v) do
          flat[n + 1], flat[n + 2] = e[1], tostring(one)
          n = n + 2
        end
      else
        flat[n + 1], flat[n + 2] = e[1], tostring(v)
        n = n + 2
      end
    end
  end
  return flat
end

local function check_unsent(self)
  if self.sent then error("the response has already been sent", 3) end
end

--- Sends the whole response with body (a string; nil for none). A string body without a
-- Content-Type gets text/html when it starts with "<", else text/plain (Koa's rule).
function Response:send(body)
  check_unsent(self)
  if body ~= nil and type(body) ~= "string" then
    if type(body) == "table" then return self:json(body) end
    body = tostring(body)
  end
  if body and body ~= "" and not self._h["content-type"] then
    self:header("Content-Type", body:find("^%s*<") and "text/html; charset=utf-8"
      or "text/plain; charset=utf-8")
  end
  self.sent = true
  return self._port:send(self._status, self:_flat(), body or "")
end

--- Sends value as JSON (application/json).
function Response:json(value)
  check_unsent(self)
  local body, err = cjson.encode(value)
  if not body then error("res:json: cannot encode value: " .. tostring(err), 2) end
  if not self._h["content-type"] then self:header("Content-Type", "application/json") end
  return self:send(body)
end

--- Streams a chunk (chunked transfer encoding); the first call sends the status and headers.
-- Suspends the task while the client reads slower than the handler writes.
function Response:write(chunk)
  if not self.streaming then
    check_unsent(self)
    self.sent = true
    self.streaming = true
    local ok, err = self._port:start(self._status, self:_flat())
    if not ok then return nil, err end
  end
  return self._port:write(tostring(chunk))
end

--- Ends a streamed response.
function Response:finish()
  if not self.streaming then
    if not self.sent then return self:send("") end
    return true
  end
  self.streaming = false
  return self._port:finish()
end

return http
