--- Request and response objects over a connection "port": the C request of weft.core, or the
-- in-process request of weft.test. A port has method(), target(), header(name), headers(),
-- remote_addr(), body(), send(status, flat_headers, body), start(status, flat_headers),
-- write(chunk), finish() and started().
local cjson = require "cjson.safe"
local core = require "weft.core"
local errors = require "weft.errors"

local http = {}

local url_decode = core.url_decode

--- Percent-decodes s leniently: a "%" that starts no escape stays as it is ("+" stays "+":
-- that rule belongs to forms and query strings).
function http.unescape(s)
  return (url_decode(s, "component"))
end

local function form_unescape(s)
  return (url_decode(s, "form"))
end

--- Decodes a request path strictly: nil, err for a malformed escape or bytes that are not
-- UTF-8 (the core answers such a request 400 before any handler runs).
function http.decode_path(s)
  return url_decode(s, "path")
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
  [100] = "Continue", [101] = "Switching Protocols", [200] = "OK", [201] = "Created",
  [202] = "Accepted", [204] = "No Content", [206] = "Partial Content",
  [301] = "Moved Permanently", [302] = "Found", [303] = "See Other", [304] = "Not Modified",
  [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed", [406] = "Not Acceptable",
  [408] = "Request Timeout", [409] = "Conflict", [410] = "Gone", [411] = "Length Required",
  [412] = "Precondition Failed", [413] = "Payload Too Large", [414] = "URI Too Long",
  [415] = "Unsupported Media Type", [416] = "Range Not Satisfiable", [417] = "Expectation Failed",
  [418] = "I'm a teapot", [421] = "Misdirected Request", [422] = "Unprocessable Entity",
  [423] = "Locked", [424] = "Failed Dependency", [425] = "Too Early", [426] = "Upgrade Required",
  [428] = "Precondition Required", [429] = "Too Many Requests",
  [431] = "Request Header Fields Too Large", [451] = "Unavailable For Legal Reasons",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
  [507] = "Insufficient Storage", [511] = "Network Authentication Required",
}
http.STATUS_TEXT = STATUS_TEXT

-- request ids: a random per-process prefix and a counter, made in C (unique in the process, and
-- across processes with overwhelming probability); an incoming x-request-id is kept when sane
local new_request_id = core.request_id

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

function lazy.querystring(req)
  local target = req.target
  local qpos = target:find("?", 1, true)
  return qpos and target:sub(qpos + 1) or ""
end

function lazy.remote_addr(req)
  return (req._port:remote_addr())
end

local random_hex = core.random_hex

--- Parses a W3C traceparent header value: trace id, parent span id, flags; nil when invalid.
function http.parse_traceparent(v)
  if not v then return nil end
  local version, trace, parent, flags = v:match("^(%x%x)%-(%x+)%-(%x+)%-(%x%x)")
  if not version or version == "ff" or #trace ~= 32 or #parent ~= 16 then return nil end
  if version == "00" and #v ~= 55 then return nil end
  trace, parent = trace:lower(), parent:lower()
  if trace == string.rep("0", 32) or parent == string.rep("0", 16) then return nil end
  return trace, parent, flags:lower()
end

-- The request's trace: an incoming traceparent is continued (its trace id kept, a new span id
-- made for this server's work); otherwise a new trace starts.
function lazy.trace(req)
  local trace_id, parent_id, flags = http.parse_traceparent(req._port:header("traceparent"))
  local span_id = random_hex(8)
  if not trace_id then
    trace_id, flags = random_hex(16), "01"
  end
  return { trace_id = trace_id, span_id = span_id, parent_id = parent_id, flags = flags,
           traceparent = "00-" .. trace_id .. "-" .. span_id .. "-" .. flags }
end

-- RFC 6265: a cookie name is a token; a value is cookie-octets, optionally in double quotes.
local function parse_cookies(header)
  local t = {}
  if not header then return t end
  for pair in header:gmatch("[^;]+") do
    pair = pair:match("^%s*(.-)%s*$")
    if pair ~= "" then
      local name, value = pair:match("^([^=]*)=(.*)$")
      if not name or name == "" or name:find("[^%w!#$%%&'*+%-.^_`|~]") then
        errors.raise(400, "malformed Cookie header")
      end
      if value:find('^".*"$') then value = value:sub(2, -2) end
      if value:find('[%c%s",;\\]') then errors.raise(400, "malformed Cookie header") end
      if t[name] == nil then -- the first of duplicate names wins, as browsers send the most specific first
        t[name] = value:find("%", 1, true) and http.unescape(value) or value
      end
    end
  end
  return t
end
http.parse_cookies = parse_cookies

function lazy.cookies(req)
  return parse_cookies(req._port:header("cookie"))
end

local find, sub = string.find, string.sub

-- nine fields (the hash part gets sixteen slots, room for the lazy ones and the app's own); the
-- query string, headers, cookies, trace and remote address are made when first asked for
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
  local qpos = find(target, "?", 1, true)
  local rawpath = qpos and sub(target, 1, qpos - 1) or target
  -- id, res and route are set later: naming them here sizes the table once, for all of them
  local req = setmetatable({
    _port = port,
    method = port:method(),
    target = target,
    rawpath = rawpath,
    path = find(rawpath, "%", 1, true) and url_decode(rawpath, "component") or rawpath,
    params = {},
    id = false,
    res = false,
    route = false,
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

local function body_or_raise(req)
  local body, err = req:body()
  if body then return body end
  if err and err:find("^E2BIG") then errors.raise(413, "request body too large", nil, 3) end
  if err and err:find("^ETIMEDOUT") then errors.raise(408, "request body timed out", nil, 3) end
  errors.raise(400, "the request body could not be read: " .. tostring(err), nil, 3)
end

--- The body decoded as JSON. Raises an HTTP error: 400 when it is not JSON (with the parser's
-- message), 413 when it is over the body limit.
function Request:json()
  local body = body_or_raise(self)
  local v, jerr = cjson.decode(body)
  if v == nil and jerr then errors.raise(400, "invalid JSON body: " .. jerr, nil, 2) end
  return v
end

--- The body of an application/x-www-form-urlencoded request as a table (as req.query);
-- raises 415 for another content type.
function Request:form()
  local ctype = (self:header("content-type") or ""):lower()
  if not ctype:find("^application/x%-www%-form%-urlencoded") then
    errors.raise(415, "expected an application/x-www-form-urlencoded body", nil, 2)
  end
  return http.parse_query(body_or_raise(self))
end

-- ---------------------------------------------------------------------------------------
-- Response

local Response = {}
Response.__index = Response
Response.__name = "weft.Response"
-- defaults read through the metatable until set: six fields on the instance give its hash part
-- eight slots, room for _pending (a returned body) and streaming without a resize
Response._multi = false -- true once a header has several values
Response._pending = false
Response.streaming = false

function http.response(port, req)
  -- six fields (see above); _hl starts with room for
  -- two headers (Content-Type and ETag, the usual ones)
  return setmetatable({ _port = port, _req = req, _status = 200, _hl = { nil, nil, nil, nil },
                        sent = false, bytes = 0 }, Response)
end

--- Sets the status code; returns the response for chaining.
function Response:status(code)
  code = math.tointeger(code)
  if not code or code < 100 or code > 999 then error("invalid status code", 2) end
  self._status = code
  return self
end

-- Headers live in one flat list {name1, value1, name2, value2, ...} that goes to the core
-- as it is (no table is built per response unless a header has several values).

-- Lower-case forms of header names, memoised: string.lower makes a new string on every call,
-- and a response compares names several times. Names come from code, a small set; the cache
-- starts over if it ever gets large, so names built from input cannot grow it without bound.
local lower_cache, lower_count = {}, 0
local function lower(name)
  if lower_count >= 512 then lower_cache, lower_count = {}, 0 end
  local l = name:lower()
  lower_cache[name] = l
  lower_count = lower_count + 1
  return l
end

-- The index of header `name` in list hl (case-insensitive), or nil.
local function find_header(hl, name)
  local key
  for i = 1, #hl, 2 do
    local n = hl[i]
    if n == name then return i end
    key = key or lower_cache[name] or lower(name)
    if (lower_cache[n] or lower(n)) == key then return i end
  end
end

-- Header names are RFC 9110 tokens and values carry no control character but HTAB: anything
-- else could end a header early or pass for another one ("Transfer-Encoding ", "a:b",
-- "x\r\nSet-Cookie: ..."). A name once checked is remembered (names come from code: a small
-- set; the memo starts over if it grows, so names built from input cannot grow it forever).
local good_names, good_count = {}, 0
local BAD_NAME = "[^%w!#$%%&'*+%-.^_`|~]"
local BAD_VALUE = "[\0-\8\10-\31\127]"

local function check_name(name, level)
  if good_names[name] then return end
  if type(name) ~= "string" then error("header name must be a string", level + 1) end
  if name == "" or find(name, BAD_NAME) then
    error(("invalid header name %q: it must be a token (RFC 9110)"):format(name), level + 1)
  end
  if good_count >= 512 then good_names, good_count = {}, 0 end
  good_names[name] = true
  good_count = good_count + 1
end

local function check_value(name, value, level)
  if find(value, BAD_VALUE) then
    error(("invalid value for header %s: control characters other than HTAB are not allowed")
      :format(name), level + 1)
  end
end

--- Sets header `name` to value (a string, a number, or an array of values for repeated lines);
-- nil removes it. Returns the response for chaining. Raises for a name that is not a token or
-- a value with control characters (the request then gets a 500, never a malformed response).
function Response:header(name, value)
  check_name(name, 2)
  local hl = self._hl
  local i = find_header(hl, name)
  if value == nil then
    if i then
      table.remove(hl, i)
      table.remove(hl, i)
    end
    return self
  end
  if type(value) == "table" then
    for k = 1, #value do
      local one = value[k]
      if type(one) ~= "string" then one = tostring(one) end
      check_value(name, one, 2)
    end
    self._multi = true
  else
    if type(value) ~= "string" then value = tostring(value) end
    check_value(name, value, 2)
  end
  i = i or #hl + 1
  hl[i], hl[i + 1] = name, value
  return self
end

--- The value set for header `name`, or nil.
function Response:get_header(name)
  local hl = self._hl
  local i = find_header(hl, name)
  return i and hl[i + 1] or nil
end

function Response:_flat()
  local hl = self._hl
  if not self._multi then return hl end
  local flat, n = {}, 0
  for i = 1, #hl, 2 do
    local v = hl[i + 1]
    if type(v) == "table" then
      for _, one in ipairs(v) do
        flat[n + 1], flat[n + 2] = hl[i], tostring(one)
        n = n + 2
      end
    else
      flat[n + 1], flat[n + 2] = hl[i], v
      n = n + 2
    end
  end
  return flat
end

local function check_unsent(self)
  if self.sent then error("the response has already been sent", 3) end
end

local byte = string.byte
local core_etag = core.etag

-- true when body starts with "<" after optional white space
local function looks_like_html(body)
  local b = byte(body, 1)
  if b == 60 then return true end
  if b == 32 or b == 9 or b == 10 or b == 13 then return find(body, "^%s*<") ~= nil end
  return false
end

--- Sends the whole response with body (a string; nil for none). A string body without a
-- Content-Type gets text/html when it starts with "<", else text/plain (Koa's rule).
-- A buffered 200 answer to GET or HEAD gets a weak ETag, and 304 when If-None-Match has it.
function Response:send(body)
  if self.sent then error("the response has already been sent", 2) end
  if type(body) ~= "string" then
    if body == nil then
      body = ""
    elseif type(body) == "table" then
      return self:json(body)
    else
      body = tostring(body)
    end
  end
  -- the common case (no headers set yet) appends to the list without searching it
  local hl = self._hl
  local len = #body
  if len > 0 and not find_header(hl, "Content-Type") then
    local n = #hl
    hl[n + 1] = "Content-Type"
    hl[n + 2] = looks_like_html(body) and "text/html; charset=utf-8" or "text/plain; charset=utf-8"
  end
  self.sent = true
  self.bytes = len
  local status = self._status
  if status == 200 and len > 0 then
    local req = self._req
    local method = req.method
    if (method == "GET" or method == "HEAD") and not find_header(hl, "ETag") then
      local etag = core_etag(body)
      local n = #hl
      hl[n + 1], hl[n + 2] = "ETag", etag
      local inm = req._port:header("if-none-match")
      if inm and http.etag_matches(inm, etag) then
        self._status, self.bytes = 304, 0
        return self._port:send(304, self._multi and self:_flat() or hl, "")
      end
    end
  end
  return self._port:send(status, self._multi and self:_flat() or hl, body)
end

--- True when an If-None-Match value lists etag (weak comparison) or is "*".
function http.etag_matches(inm, etag)
  if not inm then return false end
  local bare = etag:gsub("^W/", "")
  for tag in inm:gmatch("[^,]+") do
    tag = tag:match("^%s*(.-)%s*$"):gsub("^W/", "")
    if tag == "*" or tag == bare then return true end
  end
  return false
end

--- Sends value as JSON (application/json).
function Response:json(value)
  check_unsent(self)
  local body, err = cjson.encode(value)
  if not body then error("res:json: cannot encode value: " .. tostring(err), 2) end
  if not find_header(self._hl, "Content-Type") then
    self:header("Content-Type", "application/json")
  end
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
  chunk = tostring(chunk)
  self.bytes = self.bytes + #chunk
  return self._port:write(chunk)
end

local function imf_date(t)
  return os.date("!%a, %d %b %Y %H:%M:%S GMT", t)
end

local SAME_SITE = { strict = "Strict", lax = "Lax", none = "None" }

-- A cookie attribute's value: no ";" (it would start another attribute, "/; Domain=evil.com")
-- and no control characters.
local function cookie_attr(what, v, level)
  v = tostring(v)
  if find(v, "[;%c]") then
    error(("invalid cookie %s %q: no ';' or control characters"):format(what, v), level + 1)
  end
  return v
end

--- Adds a Set-Cookie header. attrs: path (default "/"), domain, max_age (seconds), expires
-- (a time number or a date string), secure, http_only (default true), same_site ("Strict",
-- "Lax" or "None"). The value is percent-encoded where cookie syntax requires. Raises for an
-- attribute that would break the header (a ";" or a control character in path, domain or
-- expires; same_site not one of the three; max_age not a number).
function Response:cookie(name, value, attrs)
  if type(name) ~= "string" or name == "" or name:find("[^%w!#$%%&'*+%-.^_`|~]") then
    error("invalid cookie name", 2)
  end
  attrs = attrs or {}
  value = tostring(value or ""):gsub('[%c%s",;\\%%]', function(c)
    return ("%%%02X"):format(c:byte())
  end)
  local parts = { name .. "=" .. value }
  local path = attrs.path == nil and "/" or attrs.path
  if path then parts[#parts + 1] = "Path=" .. cookie_attr("path", path, 2) end
  if attrs.domain then parts[#parts + 1] = "Domain=" .. cookie_attr("domain", attrs.domain, 2) end
  if attrs.max_age then
    local age = tonumber(attrs.max_age)
    if not age then error("invalid cookie max_age: a number of seconds", 2) end
    parts[#parts + 1] = ("Max-Age=%d"):format(math.floor(age))
  end
  if attrs.expires then
    parts[#parts + 1] = "Expires=" .. (type(attrs.expires) == "number" and imf_date(attrs.expires)
      or cookie_attr("expires", attrs.expires, 2))
  end
  if attrs.secure then parts[#parts + 1] = "Secure" end
  if attrs.http_only ~= false then parts[#parts + 1] = "HttpOnly" end
  if attrs.same_site then
    local ss = SAME_SITE[tostring(attrs.same_site):lower()]
    if not ss then error("invalid cookie same_site: \"Strict\", \"Lax\" or \"None\"", 2) end
    parts[#parts + 1] = "SameSite=" .. ss
  end
  local line = table.concat(parts, "; ")
  local prev = self:get_header("Set-Cookie")
  if prev == nil then
    self:header("Set-Cookie", { line })
  else
    if type(prev) ~= "table" then prev = { prev } end
    prev[#prev + 1] = line
    self:header("Set-Cookie", prev)
  end
  return self
end

--- Expires cookie `name` (with the same path/domain it was set with).
function Response:clear_cookie(name, attrs)
  local a = {}
  for k, v in pairs(attrs or {}) do a[k] = v end
  a.expires, a.max_age = 0, nil
  return self:cookie(name, "", a)
end

--- Redirects to url with status (default 302).
function Response:redirect(url, status)
  status = status or 302
  if math.type(status) ~= "integer" or status < 300 or status > 399 then
    error("redirect status must be 3xx", 2)
  end
  url = tostring(url)
  if url:find("[\r\n%z]") then error("invalid redirect URL", 2) end
  self:status(status):header("Location", url)
  return self:send("Redirecting to " .. url)
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
