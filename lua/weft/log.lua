--- Structured logging: one JSON line per call, carrying the request id of the running code,
-- taken from the async context (nothing is passed by hand).
local cjson = require "cjson.safe"
local context = require "weft.context"
local core = require "weft.core"
local flush_soon, json_flat = core.flush_soon, core.json_flat

local log = {}

local LEVELS = { debug = 10, info = 20, warn = 30, error = 40 }
local threshold = LEVELS.info
local out = io.stdout
local sinks = {}

--- Adds fn(record, line), called for every line written (weft.test uses it to capture the
-- lines a request wrote). Returns a function that removes it.
function log.add_sink(fn)
  sinks[#sinks + 1] = fn
  return function()
    for i = #sinks, 1, -1 do
      if sinks[i] == fn then table.remove(sinks, i) end
    end
  end
end

--- Sets the lowest level written: "debug", "info", "warn" or "error".
function log.set_level(level)
  local n = LEVELS[level]
  if not n then error("unknown log level: " .. tostring(level), 2) end
  threshold = n
end

--- Sets where lines go: a file handle, or a function receiving each line (without newline).
function log.set_output(dest)
  out = dest
end

-- the timestamp changes once a second: format it once a second
local last_t, last_ts
local function iso_time()
  local t = os.time()
  if t ~= last_t then
    last_t, last_ts = t, os.date("!%Y-%m-%dT%H:%M:%SZ", t)
  end
  return last_ts
end

-- Writes one line. own: `fields` is the caller's fresh table, used as the record itself.
local function write(level, msg, fields, own)
  if LEVELS[level] < threshold then return end
  local rec = fields
  if not own then
    rec = {}
    if fields then
      for k, v in pairs(fields) do rec[k] = v end
    end
  end
  rec.ts = iso_time()
  rec.level = level
  rec.msg = tostring(msg)
  local req = context.request()
  if req then
    rec.request_id = req.id
    rec.trace_id = req.trace.trace_id
  elseif own then -- an owned record may hold placeholders for these
    rec.request_id, rec.trace_id = nil, nil
  end
  -- a flat record (the usual case) is written by weft.core.json_flat, several times faster than
  -- cjson on numbers; anything else goes through cjson
  local line = json_flat(rec) or cjson.encode(rec)
  if not line then
    -- a field that JSON cannot hold (a function, a cycle): log its text instead
    for k, v in pairs(rec) do
      if type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean" then
        rec[k] = tostring(v)
      end
    end
    line = cjson.encode(rec)
  end
  for i = 1, #sinks do sinks[i](rec, line) end
  if type(out) == "function" then
    out(line)
  else
    -- flushed before the loop next waits (or at once outside it): one write(2) per loop turn,
    -- not per line
    out:write(line, "\n")
    if io.type(out) == "file" then flush_soon(out) else out:flush() end
  end
end

for level in pairs(LEVELS) do
  log[level] = function(msg, fields) write(level, msg, fields) end
end

--- Like log.info and the others, but `rec` (a table the caller made for this line and will not
-- touch again) becomes the record itself, with no copy: for lines written on every request.
function log.emit(level, msg, rec)
  if not LEVELS[level] then error("unknown log level: " .. tostring(level), 2) end
  write(level, msg, rec, true)
end

return log
