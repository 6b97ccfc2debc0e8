--- weft.static: serves the files under a directory, through the asynchronous file functions
-- of weft.core (the loop never waits on the disk).
--
--   app:use(weft.static("public"))               -- GET/HEAD of any path; else next()
--   app:get("/assets/*", weft.static("public"))  -- the part of the path matched by *
--
--   app:use("/assets", weft.static("public"))    -- the path after the mount prefix
--
-- As middleware it serves req.path, less req.base_path when mounted under a prefix.
--
-- opts:
--   index = "index.html"   the file served for a directory (false: none)
--   max_age = 0            seconds, sent as Cache-Control: public, max-age=N (false: no header)
--   fallthrough = true     a missing file calls next(); false (or no next: a route handler): 404
--   dotfiles = "ignore"    a path segment starting with "." is "ignore"d (as if missing),
--                          "deny"ed (404 even when falling through) or "allow"ed
--   redirect = true        a directory asked for without its trailing "/" gets 301 to "path/"
--   set_headers = fn(res, path, stat)   called before a file is sent (200 and 206)
--
-- The way out of dir is closed:
--   * a path that, percent-decoded, holds a NUL byte, a backslash or a ".." segment (so "%00",
--     "%5c", "%2e%2e", "..%2f") is a bad request: 400, and next() is not called (no route
--     should see it as a path either);
--   * a file or directory whose real path (symbolic links resolved) is not inside dir's real
--     path is treated as missing (next(), or 404);
--   * dotfiles and dot-directories are treated as missing by default (see dotfiles).
-- Other methods than GET and HEAD call next() (a route handler answers 405). A file that
-- cannot be read for permissions gets 403; any other file system error raises (500).
--
-- Responses carry Content-Type (by extension; see static.mime), Last-Modified, a weak ETag
-- (size and mtime), Accept-Ranges: bytes and Cache-Control. If-None-Match and
-- If-Modified-Since answer 304. One byte range (bytes=a-b, a-, -n) answers 206 with
-- Content-Range; an unsatisfiable or malformed one 416 with Content-Range: bytes */size; a
-- request for several ranges gets the whole file (200); a unit other than bytes is ignored.
-- Up to 64 KiB is sent in one response with Content-Length; a larger body is read and
-- streamed in 64 KiB pieces (chunked), each write waiting for a slow client.
local core = require "weft.core"

local static = {}

local CHUNK = 64 * 1024
static.CHUNK = CHUNK

local U = "; charset=utf-8"

--- Content types by lower-case extension; add to it to serve more types.
static.mime = {
  html = "text/html" .. U, htm = "text/html" .. U, css = "text/css" .. U,
  js = "text/javascript" .. U, mjs = "text/javascript" .. U, cjs = "text/javascript" .. U,
  json = "application/json" .. U, map = "application/json" .. U,
  webmanifest = "application/manifest+json" .. U,
  txt = "text/plain" .. U, md = "text/markdown" .. U, csv = "text/csv" .. U,
  xml = "application/xml" .. U, svg = "image/svg+xml" .. U,
  png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  webp = "image/webp", avif = "image/avif", ico = "image/x-icon", bmp = "image/bmp",
  woff = "font/woff", woff2 = "font/woff2", ttf = "font/ttf", otf = "font/otf",
  wasm = "application/wasm", pdf = "application/pdf", zip = "application/zip",
  gz = "application/gzip", mp3 = "audio/mpeg", ogg = "audio/ogg", wav = "audio/wav",
  mp4 = "video/mp4", webm = "video/webm",
}
local DEFAULT_TYPE = "application/octet-stream"

--- The Content-Type for a file name.
function static.content_type(name)
  local ext = name:match("%.([^./]+)$")
  return ext and static.mime[ext:lower()] or DEFAULT_TYPE
end

-- ---------------------------------------------------------------------------------------
-- HTTP dates (IMF-fixdate out; IMF-fixdate, RFC 850 and asctime in, as RFC 9110 asks)

local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }
local MONTH_NUM = {}
for i, m in ipairs(MONTHS) do MONTH_NUM[m] = i end

--- Formats seconds since the epoch as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT").
function static.http_date(t)
  local d = os.date("!*t", t)
  return ("%s, %02d %s %04d %02d:%02d:%02d GMT"):format(DAYS[d.wday], d.day, MONTHS[d.month],
    d.year, d.hour, d.min, d.sec)
end

-- Days from 1970-01-01 to the given civil date (proleptic Gregorian calendar).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

--- Parses an HTTP date into seconds since the epoch; nil when it is not one.
function static.parse_http_date(s)
  if not s then return nil end
  local d, mon, y, hh, mm, ss = s:match("^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d then -- RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
    d, mon, y, hh, mm, ss = s:match("^%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT$")
    if y then
      y = tonumber(y)
      y = y + (y < 70 and 2000 or 1900)
    end
  end
  if not d then -- asctime: Sun Nov  6 08:49:37 1994
    mon, d, hh, mm, ss, y = s:match("^%a%a%a (%a%a%a) ([ %d]%d) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
  end
  local month = mon and MONTH_NUM[mon]
  if not month then return nil end
  d, y, hh, mm, ss = tonumber(d), tonumber(y), tonumber(hh), tonumber(mm), tonumber(ss)
  if d < 1 or d > 31 or hh > 23 or mm > 59 or ss > 60 then return nil end
  return ((days_from_civil(y, month, d) * 24 + hh) * 60 + mm) * 60 + ss
end

-- ---------------------------------------------------------------------------------------
-- Validators and ranges

local function trim(s) return s:match("^%s*(.-)%s*$") end

local function etag_of(st)
  return ('W/"%x-%x"'):format(st.size, st.mtime * 1000 + st.mtime_nsec // 1000000)
end

-- An If-None-Match value lists etag (weak comparison), or is "*".
local function none_match(inm, etag)
  local bare = etag:gsub("^W/", "")
  for tag in inm:gmatch("[^,]+") do
    tag = trim(tag):gsub("^W/", "")
    if tag == "*" or tag == bare then return true end
  end
  return false
end

-- The response would be 304: If-None-Match when present, else If-Modified-Since.
local function not_modified(req, etag, mtime)
  local inm = req:header("if-none-match")
  if inm then return none_match(inm, etag) end
  local since = static.parse_http_date(req:header("if-modified-since"))
  return since ~= nil and mtime <= since
end

-- Digits as an integer; a number too long for one is "huge" (larger than any file).
local function int(digits)
  if #digits > 18 then return math.maxinteger end
  return math.tointeger(tonumber(digits))
end

--- Parses a Range header for a representation of `size` bytes: nil to serve the whole of it
-- (no range, several ranges, an unknown unit), start and stop (inclusive) for one range, or
-- false when the range is malformed or unsatisfiable (416).
function static.parse_range(h, size)
  local unit, set = h:match("^%s*([%w!#$%%&'*+%-.^_`|~]+)%s*=(.*)$")
  if not unit then return false end
  if unit:lower() ~= "bytes" then return nil end
  local ranges = {}
  for spec in (set .. ","):gmatch("([^,]*),") do
    spec = trim(spec)
    if spec ~= "" then -- empty list elements are allowed
      local a, b = spec:match("^(%d*)%s*%-%s*(%d*)$")
      if not a or (a == "" and b == "") then return false end
      if a ~= "" and b ~= "" and int(b) < int(a) then return false end
      ranges[#ranges + 1] = { a, b }
    end
  end
  if #ranges == 0 then return false end
  if #ranges > 1 then return nil end
  local a, b = ranges[1][1], ranges[1][2]
  local start, stop
  if a == "" then -- the last n bytes
    local n = int(b)
    if n == 0 then return false end
    start, stop = math.max(size - n, 0), size - 1
  else
    start = int(a)
    stop = b == "" and size - 1 or math.min(int(b), size - 1)
  end
  if start >= size then return false end
  return start, stop
end

-- If-Range: the range applies only while the validator still matches (an entity tag by
-- strong comparison, which our weak tags never pass; a date exactly).
local function if_range_ok(req, etag, last_modified)
  local v = req:header("if-range")
  if not v then return true end
  v = trim(v)
  if v:find('^W/"') or v:find('^"') then return v == etag and not etag:find("^W/") end
  return v == last_modified
end

-- ---------------------------------------------------------------------------------------
-- Paths

local function is_dot(seg) return seg:sub(1, 1) == "." end

-- Splits a decoded path into segments; nil when it tries to leave the directory.
local function split_safe(path)
  if path:find("\0", 1, true) or path:find("\\", 1, true) then return nil end
  local segs, n = {}, 0
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then return nil end
    if seg ~= "." then
      n = n + 1
      segs[n] = seg
    end
  end
  return segs
end

local function inside(real, root)
  if root == "/" then return real:sub(1, 1) == "/" end
  return real == root or real:sub(1, #root + 1) == root .. "/"
end

local MISSING = { ENOENT = true, ENOTDIR = true, ENAMETOOLONG = true, ELOOP = true, EISDIR = true }
local FORBIDDEN = { EACCES = true, EPERM = true }

-- ---------------------------------------------------------------------------------------
-- The middleware

local Static = {}
Static.__index = Static

local function answer(res, status, text, headers)
  res:status(status)
  for k, v in pairs(headers or {}) do res:header(k, v) end
  res:header("Content-Type", "text/plain; charset=utf-8")
  return res:send(text)
end

-- Declines the request: next() when falling through, else 404.
function Static:_decline(res, next, deny)
  if next and self.fallthrough and not deny then return next() end
  return answer(res, 404, "Not Found")
end

function Static:_root()
  local root = self.root_real
  if root then return root end
  local real, err, code = core.fs_realpath(self.dir)
  if not real then return nil, err, code end
  self.root_real = real
  return real
end

-- Handles a file system error: missing (decline), forbidden (403), else raises.
function Static:_fs_error(res, next, err, code)
  if MISSING[code] then return self:_decline(res, next) end
  if FORBIDDEN[code] then return answer(res, 403, "Forbidden") end
  error("weft.static: " .. tostring(err), 0)
end

-- Opens the file for segs under the root. Returns the open file, its stat and its real path;
-- or nil and a function answering the request instead.
function Static:_open(req, res, next, segs)
  local root, err, code = self:_root()
  if not root then
    return nil, function() return self:_fs_error(res, next, err, code) end
  end
  local rel = table.concat(segs, "/")
  local real
  real, err, code = core.fs_realpath(rel == "" and root or root .. "/" .. rel)
  if not real then return nil, function() return self:_fs_error(res, next, err, code) end end
  -- symbolic links may point anywhere: what counts is where the file really is
  if not inside(real, root) then return nil, function() return self:_decline(res, next) end end
  if self.dotfiles ~= "allow" and real ~= root then
    for seg in real:sub(root == "/" and 2 or #root + 2):gmatch("[^/]+") do
      if is_dot(seg) then
        return nil, function() return self:_decline(res, next, self.dotfiles == "deny") end
      end
    end
  end
  local f
  f, err, code = core.fs_open(real)
  if not f then return nil, function() return self:_fs_error(res, next, err, code) end end
  local st
  st, err, code = f:stat()
  if not st then
    f:close()
    return nil, function() return self:_fs_error(res, next, err, code) end
  end
  return f, st, real
end

-- Reads len bytes at offset (fewer if the file has shrunk since).
local function read_all(f, offset, len)
  local parts, got = {}, 0
  while got < len do
    local data, err = f:read(len - got, offset + got)
    if not data then error("weft.static: " .. err, 0) end
    if data == "" then break end
    parts[#parts + 1] = data
    got = got + #data
  end
  return table.concat(parts)
end

-- Sends len bytes of f from offset: in one response up to CHUNK bytes, else streamed.
local function send_body(res, f, offset, len, head)
  if len <= CHUNK then
    -- HEAD: the core reports the length of the body given and sends none of it
    return res:send(head and string.rep(" ", len) or read_all(f, offset, len))
  end
  if head then
    res:write("")
    return res:finish()
  end
  local pos, stop = offset, offset + len
  while pos < stop do
    local data, err = f:read(math.min(CHUNK, stop - pos), pos)
    if not data then error("weft.static: " .. err, 0) end
    if data == "" then break end -- the file shrank: the stream ends early
    pos = pos + #data
    if not res:write(data) then return end -- the client has gone
  end
  return res:finish()
end

function Static:_serve_file(req, res, f, st, real)
  local mtime = st.mtime
  local etag = etag_of(st)
  local last_modified = static.http_date(mtime)
  res:header("ETag", etag)
  res:header("Last-Modified", last_modified)
  if self.cache_control then res:header("Cache-Control", self.cache_control) end
  if not_modified(req, etag, mtime) then
    res:status(304)
    return res:send()
  end
  local size = st.size
  res:header("Accept-Ranges", "bytes")
  local start, stop
  local range = req:header("range")
  if range and if_range_ok(req, etag, last_modified) then
    start, stop = static.parse_range(range, size)
    if start == false then
      return answer(res, 416, "Range Not Satisfiable", { ["Content-Range"] = "bytes */" .. size })
    end
  end
  res:header("Content-Type", static.content_type(real))
  if self.set_headers then self.set_headers(res, real, st) end
  local head = req.method == "HEAD"
  if start then
    res:status(206)
    res:header("Content-Range", ("bytes %d-%d/%d"):format(start, stop, size))
    return send_body(res, f, start, stop - start + 1, head)
  end
  res:status(200)
  return send_body(res, f, 0, size, head)
end

local function redirect_to_dir(req, res)
  local location = "/" .. req.rawpath:gsub("^/+", "") .. "/" -- never "//host"
  if req.querystring ~= "" then location = location .. "?" .. req.querystring end
  res:status(301)
  res:header("Location", location)
  res:header("Content-Type", "text/plain; charset=utf-8")
  return res:send("Moved Permanently")
end

-- Finds the file to serve for segs (a directory's index file): the open file, its stat and
-- real path; or nil and a function answering the request instead.
function Static:_resolve(req, res, next, segs)
  local f, st, real = self:_open(req, res, next, segs)
  if not f then return nil, st end
  if st.type == "file" then return f, st, real end
  f:close()
  local decline = function() return self:_decline(res, next) end
  if st.type ~= "directory" or not self.index then return nil, decline end
  if req.path:sub(-1) ~= "/" then
    if self.redirect then return nil, function() return redirect_to_dir(req, res) end end
    return nil, decline
  end
  segs[#segs + 1] = self.index
  f, st, real = self:_open(req, res, next, segs)
  if not f then return nil, st end
  if st.type == "file" then return f, st, real end
  f:close()
  return nil, decline
end

function Static:handle(req, res, next)
  local method = req.method
  if method ~= "GET" and method ~= "HEAD" then
    if next then return next() end
    return answer(res, 405, "Method Not Allowed", { Allow = "GET, HEAD" })
  end
  local path = req.params and req.params["*"]
  if not path then
    path = req.path
    local base = req.base_path
    if base and path:sub(1, #base) == base then path = path:sub(#base + 1) end
  end
  local segs = split_safe(path)
  if not segs then return answer(res, 400, "Bad Request") end
  if self.dotfiles ~= "allow" then
    for _, seg in ipairs(segs) do
      if is_dot(seg) then return self:_decline(res, next, self.dotfiles == "deny") end
    end
  end
  local f, st, real = self:_resolve(req, res, next, segs)
  if not f then return st() end
  local file <close> = f -- closed however this ends (a raise, a client gone)
  return self:_serve_file(req, res, file, st, real)
end

--- A middleware function(req, res, next) serving the files under dir (see the module header
-- for opts and rules). A relative dir is relative to the working directory of the process.
function static.new(dir, opts)
  if type(dir) ~= "string" or dir == "" then error("weft.static: dir must be a path", 2) end
  opts = opts or {}
  local dotfiles = opts.dotfiles or "ignore"
  if dotfiles ~= "ignore" and dotfiles ~= "deny" and dotfiles ~= "allow" then
    error('weft.static: dotfiles must be "ignore", "deny" or "allow"', 2)
  end
  local max_age = opts.max_age
  if max_age == nil then max_age = 0 end
  if max_age ~= false and (type(max_age) ~= "number" or max_age < 0) then
    error("weft.static: max_age must be a number of seconds or false", 2)
  end
  local index = opts.index
  if index == nil then index = "index.html" end
  if index and (type(index) ~= "string" or not split_safe(index) or index:find("/", 1, true)) then
    error("weft.static: index must be a file name or false", 2)
  end
  local self = setmetatable({
    dir = dir,
    index = index,
    fallthrough = opts.fallthrough ~= false,
    dotfiles = dotfiles,
    redirect = opts.redirect ~= false,
    set_headers = opts.set_headers,
    cache_control = max_age and ("public, max-age=%d"):format(math.floor(max_age)) or nil,
  }, Static)
  return function(req, res, next) return self:handle(req, res, next) end
end

return static
