-- wrk script: sends requests pipelined 16 deep on each connection (wrk -s bench/pipeline.lua)
local depth = 16
local req

function init(args)
  local r = {}
  for i = 1, depth do r[i] = wrk.format(nil, wrk.path) end
  req = table.concat(r)
end

function request()
  return req
end
