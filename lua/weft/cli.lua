--- The `weft` command: weft app.lua [--host H] [--port N] [--workers N] [--help] [--version]
local weft = require "weft"

local cli = {}

local USAGE = [[
usage: weft APP.lua [options]

Serves the app that APP.lua returns (an app made with weft.app()).

options:
  --host H       address to listen on (default 127.0.0.1)
  --port N       port to listen on (default 8080; 0 picks a free port)
  --workers N    processes sharing the port (only 1 is built so far)
  --cpu-limit MS  a task that runs Lua for MS without yielding gets the error
                 "cpu limit exceeded" raised in it (default 5000; 0: off)
  --memory-limit MB  past MB of Lua heap, allocations fail: the request that
                 allocates gets a 500 and the server goes on (default 0: off)
  --shutdown-timeout MS  on SIGTERM/SIGINT, in-flight requests get MS to finish
                 before what is left is closed (default 10000)
  --no-access-log  do not log a line per request (on by default)
  --no-gc-tuning   keep Lua's collector settings (by default the command calls
                 weft.tune_gc() once the app is loaded)
  --system-allocator  keep Lua's allocator (by default the command switches the
                 process to weft's pool allocator before loading the app)
  --help         show this help
  --version      show the version

Once listening, prints "listening on http://HOST:PORT". SIGTERM or SIGINT stops accepting,
lets in-flight requests finish (weft.stopping() is true meanwhile) for up to
--shutdown-timeout, closes what is left and exits 0; a second signal exits at once.
]]

local function fail(msg, code)
  io.stderr:write("weft: ", msg, "\n")
  return code or 2
end

--- Parses argv; returns options or nil, message.
function cli.parse(argv)
  local o = { host = "127.0.0.1", port = 8080, workers = 1 }
  local i = 1
  while i <= #argv do
    local a = argv[i]
    local name, inline = a:match("^%-%-([%w-]+)=(.*)$")
    name = name or a:match("^%-%-([%w-]+)$")
    if name == "help" or a == "-h" then
      o.help = true
    elseif name == "version" or a == "-v" then
      o.version = true
    elseif name == "no-access-log" then
      o.access_log = false
    elseif name == "no-gc-tuning" then
      o.gc_tuning = false
    elseif name == "system-allocator" then
      o.pool_allocator = false
    elseif name == "host" or name == "port" or name == "workers" or name == "cpu-limit"
        or name == "memory-limit" or name == "shutdown-timeout" then
      local v = inline
      if v == nil then
        i = i + 1
        v = argv[i]
      end
      if v == nil then return nil, "--" .. name .. " needs a value" end
      if name == "host" then
        o.host = v
      else
        local n = math.tointeger(tonumber(v))
        if not n or n < 0 or (name == "port" and n > 65535) or (name == "workers" and n < 1) then
          return nil, "--" .. name .. ": invalid value '" .. v .. "'"
        end
        o[(name:gsub("%-", "_"))] = n
      end
    elseif a:sub(1, 1) == "-" then
      return nil, "unknown option " .. a
    elseif o.app then
      return nil, "only one app file may be given"
    else
      o.app = a
    end
    i = i + 1
  end
  return o
end

--- Loads the app file; returns the app or nil, message.
function cli.load_app(path)
  local dir = path:match("^(.*)/[^/]*$")
  if dir then
    package.path = dir .. "/?.lua;" .. dir .. "/?/init.lua;" .. package.path
  end
  local chunk, err = loadfile(path)
  if not chunk then return nil, err end
  local ok, app = pcall(chunk)
  if not ok then return nil, "error loading " .. path .. ": " .. tostring(app) end
  if type(app) ~= "table" or type(app.listen) ~= "function" then
    return nil, path .. " must return an app (made with weft.app())"
  end
  return app
end

function cli.main(argv)
  local o, err = cli.parse(argv)
  if not o then return fail(err .. "\n" .. USAGE) end
  if o.help then
    io.stdout:write(USAGE)
    return 0
  end
  if o.version then
    io.stdout:write("weft ", weft.version, "\n")
    return 0
  end
  if not o.app then return fail("no app file given\n" .. USAGE) end
  if o.workers > 1 then
    return fail("--workers above 1 is not built yet: run one process per core behind a load " ..
      "balancer for now, or use --workers 1")
  end
  local core = require "weft.core"
  core.raise_fd_limit()
  if o.pool_allocator ~= false then core.use_pool_allocator() end
  -- the guards are set before the app loads, so that any task it starts is guarded
  weft.setup { cpu_limit = o.cpu_limit, memory_limit = o.memory_limit,
               shutdown_timeout = o.shutdown_timeout }
  local app, lerr = cli.load_app(o.app)
  if not app then return fail(lerr) end
  -- the access log is on in the CLI unless the app or the command line says otherwise
  if app.access_log == nil then app.access_log = o.access_log ~= false end
  if o.access_log == false then app.access_log = false end
  if o.gc_tuning ~= false then weft.tune_gc() end
  local server, serr = app:listen { host = o.host, port = o.port }
  if not server then return fail("cannot listen: " .. tostring(serr)) end
  local host, port = server:address()
  if host:find(":", 1, true) then host = "[" .. host .. "]" end -- an IPv6 address
  io.stdout:write(("listening on http://%s:%d\n"):format(host, port))
  io.stdout:flush()
  weft.run()
  return 0
end

return cli
