-- swarm.lua PORT N [PATH_PREFIX]: opens N connections at once (non-blocking lua-socket), sends
-- GET PATH_PREFIX..i on each, and prints "i status body" per response as they complete.
local socket = require "socket"

local port, n = tonumber(arg[1]), tonumber(arg[2])
local prefix = arg[3] or "/ctx?id="
local conns, byconn = {}, {}
for i = 1, n do
  local c = assert(socket.tcp())
  c:settimeout(0)
  c:connect("127.0.0.1", port)
  conns[i] = { sock = c, i = i, out = ("GET %s%d HTTP/1.1\r\nHost: swarm\r\nConnection: close\r\n\r\n")
    :format(prefix, i), sent = 0, buf = {} }
  byconn[c] = conns[i]
end

local pending_write, pending_read = {}, {}
for _, c in ipairs(conns) do pending_write[#pending_write + 1] = c.sock end
local left = n
local deadline = socket.gettime() + 60
while left > 0 and socket.gettime() < deadline do
  local readable, writable = socket.select(pending_read, pending_write, 1)
  for _, s in ipairs(writable) do
    local c = byconn[s]
    local last, err, partial = s:send(c.out, c.sent + 1)
    local done = last or partial
    if done then c.sent = done end
    if c.sent >= #c.out then
      for k, v in ipairs(pending_write) do if v == s then table.remove(pending_write, k) break end end
      pending_read[#pending_read + 1] = s
    elseif err and err ~= "timeout" then
      error("send failed on " .. c.i .. ": " .. err)
    end
  end
  for _, s in ipairs(readable) do
    local c = byconn[s]
    local data, err, partial = s:receive(8192)
    local got = data or partial
    if got and #got > 0 then c.buf[#c.buf + 1] = got end
    if err == "closed" then
      local resp = table.concat(c.buf)
      local status = resp:match("^HTTP/1%.1 (%d+)")
      local body = resp:match("\r\n\r\n(.*)$") or ""
      io.write(c.i, " ", status or "none", " ", body, "\n")
      for k, v in ipairs(pending_read) do if v == s then table.remove(pending_read, k) break end end
      s:close()
      left = left - 1
    elseif err and err ~= "timeout" then
      io.write(c.i, " error ", err, "\n")
      left = left - 1
    end
  end
end
io.write("left ", left, "\n")
