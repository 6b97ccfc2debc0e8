--- Runs a python3 script (the independent client of the edge specs) with arguments; returns
-- its stdout. Python runs without the sanitizer runtime `make asan` preloads for weft.
local M = {}

function M.run(script, ...)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(script)
  f:close()
  local args = {}
  for i, a in ipairs { ... } do args[i] = ("'%s'"):format(tostring(a)) end
  local p = assert(io.popen("env -u LD_PRELOAD python3 " .. path .. " " .. table.concat(args, " ")
    .. " 2>&1"))
  local out = p:read("a")
  p:close()
  os.remove(path)
  return out
end

return M
