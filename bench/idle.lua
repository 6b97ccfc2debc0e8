-- bench/idle.lua PORT PID [N] — server memory per idle keep-alive connection: opens N
-- connections (default 10,000), makes one request on each and keeps them open, and prints the
-- growth of the server's RSS divided by N. Used by bench/run; needs lua-socket.
local socket = require "socket"

local port, pid, n = tonumber(arg[1]), arg[2], tonumber(arg[3] or 10000)

local function rss_kb()
  local f = assert(io.open("/proc/" .. pid .. "/status"))
  local kb = tonumber(f:read("a"):match("VmRSS:%s+(%d+)"))
  f:close()
  return kb
end

local before = rss_kb()
local conns = {}
local req = "GET / HTTP/1.1\r\nHost: idle\r\n\r\n"
for i = 1, n do
  local c = socket.tcp()
  c:settimeout(5)
  local ok, err = c:connect("127.0.0.1", port)
  if not ok then
    io.stderr:write("connection ", i, ": ", tostring(err), "\n")
    break
  end
  c:send(req)
  conns[#conns + 1] = c
end
-- read every answer, so each connection is idle between requests
for _, c in ipairs(conns) do
  local line = c:receive("*l")
  while line and line ~= "" do line = c:receive("*l") end
  c:receive(13) -- "Hello, World!"
end
socket.sleep(0.2)
local after = rss_kb()
print(("%d idle keep-alive connections: RSS %d -> %d KiB, %.2f KiB per connection")
  :format(#conns, before, after, (after - before) / #conns))
for _, c in ipairs(conns) do c:close() end
