--- Starts `weft APP --port 0` as a separate process, and talks to it with independent clients:
-- raw TCP through lua-socket, and curl.
local socket = require "socket"

local M = {}

local ROOT = os.getenv("PWD")
-- the build whose weft.core the servers load (make asan points it at build-asan)
M.BUILD = ROOT .. "/" .. (os.getenv("WEFT_BUILD_DIR") or "build")

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

--- Starts a server for app_path (plus any extra command-line words in it); env is a table of
-- extra environment variables. Its stdout and stderr go to files, so a server that logs a lot
-- never blocks on a pipe nobody reads. Returns { pid, port, host, stop, url }.
function M.start(app_path, env)
  local envs = { "LUA_PATH=" .. shell_quote(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;"),
                 "LUA_CPATH=" .. shell_quote(M.BUILD .. "/?.so;;") }
  for k, v in pairs(env or {}) do envs[#envs + 1] = k .. "=" .. shell_quote(v) end
  local base = os.tmpname()
  local out, err, pidf, statusf = base .. ".out", base .. ".err", base .. ".pid", base .. ".status"
  local script = ("ulimit -n 4096 2>/dev/null; env %s lua5.4 %s %s --port 0 >%s 2>%s & "
    .. "echo $! >%s; wait $!; echo $? >%s"):format(table.concat(envs, " "), ROOT .. "/bin/weft",
    app_path, out, err, pidf, statusf)
  os.execute("sh -c " .. shell_quote(script) .. " >/dev/null 2>&1 &")
  local pid, line
  for _ = 1, 500 do
    pid = pid or tonumber(read_file(pidf):match("%d+"))
    line = read_file(out):match("^([^\n]*)\n")
    if line or read_file(statusf) ~= "" then break end
    socket.sleep(0.01)
  end
  if not line then
    error("server did not start: " .. read_file(err))
  end
  local host, port = line:match("^listening on http://([%d.]+):(%d+)$")
  assert(port, "unexpected first line: " .. line)
  local srv = { pid = pid, host = host, port = tonumber(port) }
  --- Sends a signal (default TERM) and waits for the process: returns whether it exited with
  -- status 0, its stdout after the listening line, and its stderr.
  function srv.stop(_, sig)
    os.execute("kill -" .. (sig or "TERM") .. " " .. pid .. " 2>/dev/null")
    local status
    for _ = 1, 1000 do
      status = read_file(statusf):match("%d+")
      if status then break end
      socket.sleep(0.01)
    end
    local stdout = read_file(out):gsub("^[^\n]*\n", "", 1)
    local stderr = read_file(err)
    for _, f in ipairs { base, out, err, pidf, statusf } do os.remove(f) end
    return status == "0", stdout, stderr, status
  end
  --- The URL of path, quoted for a shell command line.
  function srv.url(_, path) return ("'http://%s:%d%s'"):format(host, srv.port, path or "/") end
  return srv
end

--- Connects to port; returns a lua-socket TCP object with a timeout.
function M.connect(port, timeout)
  local c = assert(socket.tcp())
  c:settimeout(timeout or 5)
  assert(c:connect("127.0.0.1", port))
  return c
end

--- Reads everything until the peer closes or `timeout` seconds pass. Returns data and why it
-- stopped ("closed", "timeout" or an error such as "connection reset by peer").
function M.read_all(c, timeout)
  c:settimeout(timeout or 5)
  local parts = {}
  while true do
    local data, err, partial = c:receive(8192)
    local got = data or partial
    if got and #got > 0 then parts[#parts + 1] = got end
    if not data then return table.concat(parts), err end
  end
end

--- Parses one HTTP/1.1 response from buf at position pos (Content-Length, chunked, or no body
-- for HEAD/1xx/204/304). Returns response table and the next position, or nil if incomplete.
function M.parse_response(buf, pos, head_only)
  pos = pos or 1
  local hend = buf:find("\r\n\r\n", pos, true)
  if not hend then return nil end
  local head = buf:sub(pos, hend - 1)
  local status_line, rest = head:match("^([^\r\n]*)\r?\n?(.*)$")
  local version, status = status_line:match("^HTTP/(%d%.%d) (%d%d%d)")
  if not status then error("bad status line: " .. status_line) end
  local r = { version = version, status = tonumber(status), headers = {}, raw_head = head }
  for line in rest:gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then
      k = k:lower()
      r.headers[k] = r.headers[k] and (r.headers[k] .. ", " .. v) or v
    end
  end
  local p = hend + 4
  local code = r.status
  if head_only or (code >= 100 and code < 200) or code == 204 or code == 304 then
    r.body = ""
    return r, p
  end
  if r.headers["transfer-encoding"] == "chunked" then
    local parts = {}
    while true do
      local lend = buf:find("\r\n", p, true)
      if not lend then return nil end
      local size = tonumber(buf:sub(p, lend - 1):match("^%x+"), 16)
      if not size then error("bad chunk size line at " .. p) end
      if size == 0 then
        local tend = buf:find("\r\n", lend + 2, true)
        if not tend then return nil end
        p = tend + 2
        break
      end
      if #buf < lend + 2 + size + 1 then return nil end
      parts[#parts + 1] = buf:sub(lend + 2, lend + 1 + size)
      p = lend + 2 + size + 2
    end
    r.body = table.concat(parts)
    return r, p
  end
  local len = tonumber(r.headers["content-length"])
  if len then
    if #buf < p + len - 1 then return nil end
    r.body = buf:sub(p, p + len - 1)
    return r, p + len
  end
  r.body = buf:sub(p) -- close-delimited
  return r, #buf + 1
end

--- Sends raw bytes on a new connection, reads until close/timeout, returns the parsed
-- responses (and the raw data).
function M.exchange(port, bytes, opts)
  opts = opts or {}
  local c = M.connect(port, opts.timeout)
  assert(c:send(bytes))
  local data, why = M.read_all(c, opts.timeout or 5)
  c:close()
  local out, pos = {}, 1
  while pos <= #data do
    local r, nextpos = M.parse_response(data, pos, opts.head_only)
    if not r then break end
    out[#out + 1] = r
    pos = nextpos
  end
  return out, data, why
end

--- Runs curl with args; returns its stdout and exit status.
function M.curl(args)
  -- curl runs without the sanitizer runtime that `make asan` preloads for weft itself
  local p = assert(io.popen("env -u LD_PRELOAD curl -sS --max-time 10 " .. args .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

return M
