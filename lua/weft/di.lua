--- Dependency injection in the tegg v3 model: most components are singletons, the few that hold
-- per-request state are context-scoped, and a singleton reaches the instance of the request
-- running *now* through a proxy backed by an AsyncLocalStorage.
--
-- A component is declared with a plain Lua table, which is also its class (the instances'
-- __index): every other field is a method or a default value.
--
--   return {
--     name   = "Foo",               -- required, unique in the container
--     scope  = "singleton",         -- "singleton" (default) | "context" | "transient"
--     inject = { "Tracer",          -- self.Tracer = the component named "Tracer"
--                db = "Database" }, -- self.db     = the component named "Database"
--     access = "public",            -- "public" (default) | "private": injectable only from
--     module = "shop",              --   the same module (default: the subfolder under load())
--     init    = function(self) end, -- after injection, before anyone sees it; may suspend
--     destroy = function(self) end, -- context: when the request ends (also when it raised);
--                                   -- singleton: at container:close(); may suspend
--     hello = function(self) return "hello " .. self.Tracer:id() end,
--   }
--
-- Scopes:
--   singleton  one instance per container, created on first use (concurrent first uses wait
--              for the one being created; it is never created twice).
--   context    one instance per request scope, created on first use in that request and
--              destroyed when it ends. Inside another context component a context dependency
--              is that request's instance; everywhere else it is a proxy.
--   transient  a new instance for each injection (and each get); destroyed with its holder.
--
-- What an injected field holds:
--   singleton dep  the instance itself (method calls are plain Lua calls)
--   context dep    in a context component: the same request's instance;
--                  in a singleton or transient: the component's proxy, whose every use
--                  resolves to the current request's instance (one getStore + one index)
--   transient dep  a new instance
--
-- Requests get a scope from container:middleware() (app:use it before the routes), or
-- container:run_scope(fn, ...) anywhere else (jobs, scripts, specs). Use outside any scope, or
-- after the scope ended (a timer or task left behind by a request, an instance kept in a
-- global), raises: a request never sees another request's instance.
--
--   local di = require("weft").di
--   local container = di.container():load(here .. "components")
--   app:use(container:middleware())
--   app:get("/hello", container:handler("HelloWorldController", "hello"))
local core = require "weft.core"
local log = require "weft.log"

local ALS = core.AsyncLocalStorage
local current_task, suspend, wake = core.current, core.suspend, core.wake
local table_new = core.table_new
local fmt = string.format

local di = {}

local SCOPES = { singleton = true, context = true, transient = true }
local ACCESS = { public = true, private = true }
local RESERVED = { name = true, scope = true, inject = true, access = true, module = true,
  init = true, destroy = true }

-- A file or a declare() call may give a list of declarations instead of one
local function is_list(decl)
  return type(decl) == "table" and decl.name == nil and decl[1] ~= nil
end

-- A field of a declaration that a singleton instance gets as its own (see build)
local function is_method(k, v)
  return type(v) == "function" and not RESERVED[k] and not (type(k) == "string" and k:find("^__"))
end

-- How many fields a singleton instance starts with: its methods and its injected fields
local function instance_size(decl)
  local n = 0
  for k, v in pairs(decl) do
    if is_method(k, v) then n = n + 1 end
  end
  if type(decl.inject) == "table" then
    for _ in pairs(decl.inject) do n = n + 1 end
  end
  return n
end

local Container = {}
Container.__index = Container
Container.__name = "weft.di.Container"

-- ---------------------------------------------------------------------------------------
-- Helpers

local function where(comp)
  return comp.file and fmt("'%s' (%s)", comp.name, comp.file) or fmt("'%s'", comp.name)
end

local function module_label(m)
  return m and fmt("module '%s'", m) or "no module"
end

local function outside_error(comp, level)
  error(fmt("weft.di: context component '%s' used outside any request scope "
    .. "(enter one with app:use(container:middleware()) or container:run_scope(fn))",
    comp.name), level + 1)
end

local function ended_error(comp, level)
  error(fmt("weft.di: context component '%s' used after its request ended", comp.name), level + 1)
end

-- A creation in progress: other tasks needing the same instance wait for it. Closing it (to-be-
-- closed, so also when init raises) removes it and wakes the waiters.
local Pending = {}
Pending.__index = Pending
function Pending.__close(rec, err)
  rec.table[rec.idx] = nil
  if rec.inst == nil then rec.failed = err == nil and "unknown error" or err end
  local waiters = rec.waiters
  if waiters then
    for i = 1, #waiters do wake(waiters[i]) end
  end
end

-- (waiters and failed are made only when someone waits or the creation fails: one table per
-- creation, not two)
local function new_pending(tbl, idx)
  -- (inst = nil still sizes the table for inst, set when the creation succeeds)
  local rec = setmetatable({ table = tbl, idx = idx, task = current_task(), waiters = false,
                             inst = nil }, Pending)
  tbl[idx] = rec
  return rec
end

local function wait_for(rec, comp)
  local me = current_task()
  if me == nil then
    error(fmt("weft.di: '%s' is being created by a task; use it from inside a task", comp.name), 3)
  end
  if rec.task == me then
    error(fmt("weft.di: '%s' was needed while it was being created (its init, or the init "
      .. "of something it creates, uses it)", comp.name), 3)
  end
  local waiters = rec.waiters
  if not waiters then
    waiters = {}
    rec.waiters = waiters
  end
  waiters[#waiters + 1] = me
  repeat suspend() until rec.inst ~= nil or rec.failed ~= nil
  if rec.inst == nil then
    error(fmt("weft.di: creating '%s' failed in another task: %s", comp.name, tostring(rec.failed)), 3)
  end
  return rec.inst
end

local function run_destroy(comp, inst)
  local ok, err = xpcall(comp.destroy, debug.traceback, inst)
  if not ok then
    log.error("weft.di: destroy hook raised", { component = comp.name, error = tostring(err) })
  end
end

-- ---------------------------------------------------------------------------------------
-- Creating instances

local singleton_slow, context_slow, new_transient

-- Builds an instance of comp: its dependencies, then init. `scope` is the request scope of a
-- context component; `owner` is what destroys the transients it creates (a scope, the
-- container, or nil for nobody).
local function build(c, comp, scope, owner)
  local inst
  if comp.scope == "singleton" then
    -- a singleton is built once: give it its methods as its own fields, so that a call is one
    -- table read, as on a plain Lua module (not a read through the metatable to the class).
    -- Its table was made, sized, when its file was loaded (see Container:load), or is made
    -- sized now: filling it never rehashes.
    inst = comp.shell or table_new(0, instance_size(comp.decl))
    comp.shell = nil
    setmetatable(inst, comp.mt)
    for k, v in pairs(comp.decl) do
      if is_method(k, v) then inst[k] = v end
    end
  else
    inst = setmetatable({}, comp.mt)
  end
  local deps = comp.deps
  for i = 1, #deps do
    local d = deps[i]
    local t = d.comp
    local v
    if t.scope == "singleton" then
      v = c._singletons[t.idx] or singleton_slow(c, t)
    elseif t.scope == "context" then
      if comp.scope == "context" then
        v = scope[t.idx] or context_slow(c, t, scope, 2)
      else
        v = t.proxy
      end
    else
      v = new_transient(c, t, owner)
    end
    inst[d.field] = v
  end
  if comp.init then comp.init(inst) end
  return inst
end

local function own(owner, comp, inst)
  local order = owner._order
  if not order then
    order = {}
    owner._order = order
  end
  order[#order + 1] = comp
  order[#order + 1] = inst
end

function new_transient(c, comp, owner)
  if c._dirty then c:validate() end
  local inst = build(c, comp, nil, owner)
  c._stats.transient_created = c._stats.transient_created + 1
  if owner and comp.destroy then own(owner, comp, inst) end
  return inst
end

-- Singletons are built in the context current when the container was made, never in the
-- request that happened to use them first.
function singleton_slow(c, comp)
  if c._closed then error(fmt("weft.di: the container is closed (getting '%s')", comp.name), 3) end
  if c._dirty then c:validate() end
  local idx = comp.idx
  local inst = c._singletons[idx]
  if inst then return inst end
  local creating = c._creating
  if creating[idx] then return wait_for(creating[idx], comp) end
  local rec <close> = new_pending(creating, idx)
  inst = c._snapshot(build, c, comp, nil, c)
  c._singletons[idx] = inst
  c._singleton_by_name[comp.name] = inst
  own(c, comp, inst)
  c._stats.singletons_created = c._stats.singletons_created + 1
  rec.inst = inst
  return inst
end

local function poison(comp, inst)
  for k in next, inst do inst[k] = nil end
  setmetatable(inst, comp.dead_mt)
end

-- The context instance of comp in scope, which has none yet: raises outside a scope or after it
-- ended, waits for a creation in progress, else creates it.
-- `level` is where the error points, counted from context_slow (2: its caller).
function context_slow(c, comp, scope, level)
  level = level or 2
  if scope == nil then outside_error(comp, level) end
  if scope._ended then ended_error(comp, level) end
  if c._dirty then c:validate() end
  local idx = comp.idx
  local inst = scope[idx]
  if inst then return inst end
  -- a creation in progress is kept in the scope itself, at -idx
  local pending = scope[-idx]
  if pending then return wait_for(pending, comp) end
  local rec <close> = new_pending(scope, -idx)
  inst = build(c, comp, scope, scope)
  c._stats.context_created = c._stats.context_created + 1
  if scope._ended then -- the request ended while init was suspended
    if comp.destroy then run_destroy(comp, inst) end
    poison(comp, inst)
    c._stats.destroyed = c._stats.destroyed + 1
    ended_error(comp, level)
  end
  scope[idx] = inst
  own(scope, comp, inst)
  rec.inst = inst
  return inst
end

-- ---------------------------------------------------------------------------------------
-- Request scopes

local Scope = {}

-- Ends a scope: destroy hooks newest first (everything still usable meanwhile; what they
-- create is destroyed too), then every context instance is emptied and made to raise on use,
-- and the scope refuses to create more.
function Scope.__close(scope)
  local c = scope._c
  local stats = c._stats
  stats.scopes_active = stats.scopes_active - 1
  local order = scope._order
  if order then
    local n, stop = #order, 0
    while n > stop do
      for k = n, stop + 2, -2 do
        local comp = order[k - 1]
        if comp.destroy then run_destroy(comp, order[k]) end
      end
      stop = n
      n = #order
    end
    scope._ended = true
    for k = 1, n, 2 do
      local comp = order[k]
      if comp.scope == "context" then
        scope[comp.idx] = nil
        poison(comp, order[k + 1])
      end
    end
    stats.destroyed = stats.destroyed + n // 2
    scope._order = nil
  end
  scope._ended = true
end

local function new_scope(c)
  local stats = c._stats
  stats.scopes = stats.scopes + 1
  stats.scopes_active = stats.scopes_active + 1
  return setmetatable({ _c = c }, Scope)
end

local function run_in_scope(scope, fn, ...)
  local _ <close> = scope
  return fn(...)
end

-- ---------------------------------------------------------------------------------------
-- Proxies

-- The proxy of a context component: an empty table whose methods come from a table of stubs.
-- A stub looks up the current scope (one getStore) and the instance in it (one index), then
-- calls the declaration's function with the instance as self. Other fields are read and
-- written on the current instance.
local function make_proxy(c, comp)
  local als, get_store, idx, decl = c._als, c._get_store, comp.idx, comp.decl
  local function resolve()
    local scope = get_store(als)
    return scope and scope[idx] or context_slow(c, comp, scope, 4)
  end
  local stubs = {}
  -- A method taking a fixed number of parameters gets a stub taking as many (no vararg call).
  local function method_stub(fn)
    local info = debug.getinfo(fn, "u")
    local n = not info.isvararg and info.nparams -- self included
    if n and n <= 1 then
      return function()
        local scope = get_store(als)
        return fn(scope and scope[idx] or context_slow(c, comp, scope, 3))
      end
    elseif n == 2 then
      return function(_, a)
        local scope = get_store(als)
        return fn(scope and scope[idx] or context_slow(c, comp, scope, 3), a)
      end
    elseif n == 3 then
      return function(_, a, b)
        local scope = get_store(als)
        return fn(scope and scope[idx] or context_slow(c, comp, scope, 3), a, b)
      end
    end
    return function(_, ...)
      local scope = get_store(als)
      return fn(scope and scope[idx] or context_slow(c, comp, scope, 3), ...)
    end
  end
  local function field_stub(key) -- a function found on the instance's class chain later
    return function(_, ...)
      local inst = resolve()
      return inst[key](inst, ...)
    end
  end
  for k, v in pairs(decl) do
    if type(v) == "function" and not RESERVED[k] and type(k) == "string" and k:sub(1, 2) ~= "__" then
      stubs[k] = method_stub(v)
    end
  end
  local name = "weft.di proxy of '" .. comp.name .. "'"
  setmetatable(stubs, { __index = function(_, k)
    local inst = resolve()
    local v = inst[k]
    if type(v) == "function" and rawget(inst, k) == nil then
      local s = field_stub(k)
      rawset(stubs, k, s)
      return s
    end
    return v
  end })
  return setmetatable({}, {
    __index = stubs,
    __newindex = function(_, k, v) resolve()[k] = v end,
    __tostring = function() return name end,
    __name = name,
  })
end

-- ---------------------------------------------------------------------------------------
-- Declaring

local function check_decl(decl, file)
  local at = file and (" in " .. file) or ""
  if type(decl) ~= "table" then
    error(fmt("weft.di: a component declaration must be a table, got %s%s", type(decl), at), 0)
  end
  local name = decl.name
  if type(name) ~= "string" or name == "" then
    error("weft.di: a component declaration needs a name (a non-empty string)" .. at, 0)
  end
  local function bad(msg, ...)
    error(fmt("weft.di: component '%s'%s: " .. msg, name, at, ...), 0)
  end
  local scope = decl.scope or "singleton"
  if not SCOPES[scope] then
    bad("scope must be \"singleton\", \"context\" or \"transient\", got %s", tostring(scope))
  end
  local access = decl.access or "public"
  if not ACCESS[access] then bad("access must be \"public\" or \"private\", got %s", tostring(access)) end
  if decl.module ~= nil and (type(decl.module) ~= "string" or decl.module == "") then
    bad("module must be a non-empty string")
  end
  for _, hook in ipairs { "init", "destroy" } do
    if decl[hook] ~= nil and type(decl[hook]) ~= "function" then bad("%s must be a function", hook) end
  end
  local deps, seen = {}, {}
  local inject = decl.inject
  if inject ~= nil and type(inject) ~= "table" then bad("inject must be a table") end
  local function add(field, target)
    if type(target) ~= "string" or target == "" then
      bad("inject entries must be component names (strings), got %s", tostring(target))
    end
    if seen[field] then bad("injects two components into field '%s'", field) end
    if RESERVED[field] then bad("cannot inject into the reserved field '%s'", field) end
    if decl[field] ~= nil then
      bad("injects '%s' into field '%s', which its declaration already has", target, field)
    end
    seen[field] = true
    deps[#deps + 1] = { field = field, name = target }
  end
  if inject then
    local n = #inject
    for i = 1, n do add(inject[i], inject[i]) end
    local keyed = {}
    for k in pairs(inject) do
      if math.type(k) ~= "integer" or k < 1 or k > n then
        if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") then
          bad("inject field names must be identifiers, got %s", tostring(k))
        end
        keyed[#keyed + 1] = k
      end
    end
    table.sort(keyed)
    for _, k in ipairs(keyed) do add(k, inject[k]) end
  end
  return scope, access, deps
end

--- A new container. opts: { name = string } (names its AsyncLocalStorage).
function di.container(opts)
  opts = opts or {}
  local als = ALS.new { name = opts.name or "weft.di" }
  return setmetatable({
    _als = als,
    _get_store = als.getStore,
    _snapshot = ALS.snapshot(),
    _comps = {},
    _by_name = {},
    _singletons = {},
    _singleton_by_name = {},
    _creating = {},
    _dirty = false,
    _stats = { singletons_created = 0, context_created = 0, transient_created = 0, destroyed = 0,
      scopes = 0, scopes_active = 0 },
  }, Container)
end

di.new = di.container

--- Declares one component, or a list of them. opts: { file = path (for messages), module =
-- default module }. Raises on a malformed declaration or a duplicate name; dependencies are
-- checked by validate(). Returns the container.
function Container:declare(decl, opts)
  opts = opts or {}
  if self._closed then error("weft.di: the container is closed", 2) end
  if is_list(decl) then
    for _, d in ipairs(decl) do self:declare(d, opts) end
    return self
  end
  local scope, access, deps = check_decl(decl, opts.file)
  local name = decl.name
  local prev = self._by_name[name]
  if prev then
    error(fmt("weft.di: duplicate component name '%s': declared in %s and in %s", name,
      prev.file or "(declare)", opts.file or "(declare)"), 0)
  end
  local idx = #self._comps + 1
  local comp = {
    name = name, decl = decl, scope = scope, access = access, idx = idx, deps = deps,
    module = decl.module or opts.module, file = opts.file, init = decl.init, destroy = decl.destroy,
  }
  if scope == "singleton" then comp.shell = opts.shells and opts.shells[decl] end
  local mt = { __index = decl, __name = "weft.di component '" .. name .. "'" }
  for k, v in pairs(decl) do
    if type(k) == "string" and k:sub(1, 2) == "__" and k ~= "__index" then mt[k] = v end
  end
  comp.mt = mt
  if scope == "context" then
    local function dead(_, k)
      error(fmt("weft.di: context component '%s' used after its request ended (field '%s')",
        name, tostring(k)), 2)
    end
    comp.dead_mt = { __index = dead, __newindex = dead, __name = mt.__name,
      __tostring = function() return "weft.di: ended context component '" .. name .. "'" end }
    comp.proxy = make_proxy(self, comp)
  end
  self._comps[idx] = comp
  self._by_name[name] = comp
  self._dirty = true
  return self
end

-- Every *.lua file under dir, sorted.
local function lua_files(dir)
  local files = {}
  local ok, lfs = pcall(require, "lfs")
  if ok then
    if lfs.attributes(dir, "mode") ~= "directory" then return nil end
    local function walk(d)
      for entry in lfs.dir(d) do
        if entry ~= "." and entry ~= ".." then
          local path = d .. "/" .. entry
          local mode = lfs.attributes(path, "mode")
          if mode == "directory" then
            walk(path)
          elseif mode == "file" and entry:match("%.lua$") then
            files[#files + 1] = path
          end
        end
      end
    end
    walk(dir)
  else
    local quoted = "'" .. dir:gsub("'", "'\\''") .. "'"
    local p = io.popen("test -d " .. quoted .. " && find " .. quoted .. " -type f -name '*.lua'")
    for line in p:lines() do files[#files + 1] = line end
    p:close()
    if #files == 0 and not os.rename(dir, dir) then return nil end
  end
  table.sort(files)
  return files
end

--- Loads every *.lua file under dir (recursively, in path order). Each returns a declaration
-- or a list of them; a file in a subfolder belongs to the module named after the first
-- subfolder (unless its declaration says `module`). Then validates. Returns the container.
function Container:load(dir)
  if type(dir) ~= "string" then error("weft.di: load expects a folder path", 2) end
  dir = dir:gsub("/+$", "")
  if dir == "" then dir = "/" end
  local files = lua_files(dir)
  if not files then error(fmt("weft.di: cannot read the folder '%s'", dir), 2) end
  -- Two passes. First every file is compiled and run, and each singleton's instance table is
  -- made (empty, sized) at once: a component's functions, its declaration and its instance
  -- then sit together in memory, one component after another, as plain modules loaded with
  -- require do; nothing else is allocated between them. A call to a singleton's method reads
  -- the instance, the function and its code, and at 10,000 components those reads miss the
  -- cache: spread out by the container's records between components, the same calls took 1.4x
  -- as long (bench/scale touch). Then everything is declared.
  local decls, modules, shells = {}, {}, {}
  local function shell(decl)
    if is_list(decl) then
      for _, d in ipairs(decl) do shell(d) end
    elseif type(decl) == "table" and (decl.scope == nil or decl.scope == "singleton")
        and shells[decl] == nil then
      shells[decl] = table_new(0, instance_size(decl))
    end
  end
  for i, path in ipairs(files) do
    local rel = path:sub(#dir + 2)
    local module = rel:match("^([^/]+)/")
    local chunk, err = loadfile(path)
    if not chunk then error("weft.di: " .. err, 2) end
    local decl = chunk(rel, module)
    if type(decl) ~= "table" then
      error(fmt("weft.di: %s must return a component declaration or a list of them (got %s)",
        path, type(decl)), 2)
    end
    shell(decl)
    decls[i], modules[i] = decl, module or false
  end
  for i, path in ipairs(files) do
    self:declare(decls[i], { file = path, module = modules[i] or nil, shells = shells })
  end
  self:validate()
  -- Under the pool allocator, while the process starts: collect the load's garbage and leave
  -- its holes unused, so that what the app makes next (routes, handlers) and its requests'
  -- objects sit together in fresh memory instead of one per page through the whole heap
  -- (bench/scale /fixed at 10,000 components, side by side: 0.80x of N = 1 without this,
  -- 0.92-0.98x with it).
  core.alloc_fresh()
  return self
end

--- Checks the whole graph: every injected name is declared, no private component is injected
-- from another module, no dependency cycle. Raises with every problem found; returns the
-- container. Runs by itself (when something was declared since) on load, on the middleware's
-- first request, on run_scope, and on the first creation of an instance.
function Container:validate()
  local problems = {}
  local by_name, comps = self._by_name, self._comps
  for _, comp in ipairs(comps) do
    for _, d in ipairs(comp.deps) do
      local t = by_name[d.name]
      d.comp = t
      if not t then
        local hint = ""
        for other in pairs(by_name) do
          if other:lower() == d.name:lower() then hint = fmt(" (did you mean '%s'?)", other) end
        end
        problems[#problems + 1] = fmt("%s injects '%s', which is not declared%s", where(comp), d.name, hint)
      elseif t.access == "private" and t.module ~= comp.module then
        problems[#problems + 1] = fmt("%s (%s) injects '%s', which is private to %s", where(comp),
          module_label(comp.module), d.name, module_label(t.module))
      end
    end
  end
  -- cycles: depth-first, reporting each cycle once with its path
  local state, stack = {}, {}
  local function visit(comp)
    state[comp] = "open"
    stack[#stack + 1] = comp
    for _, d in ipairs(comp.deps) do
      local t = d.comp
      if t then
        if state[t] == "open" then
          local path, start = {}, nil
          for i = 1, #stack do
            if stack[i] == t then start = i end
            if start then path[#path + 1] = stack[i].name end
          end
          path[#path + 1] = t.name
          problems[#problems + 1] = "dependency cycle: " .. table.concat(path, " -> ")
        elseif state[t] == nil then
          visit(t)
        end
      end
    end
    stack[#stack] = nil
    state[comp] = "done"
  end
  for _, comp in ipairs(comps) do
    if state[comp] == nil then visit(comp) end
  end
  if #problems == 1 then
    error("weft.di: " .. problems[1], 2)
  elseif #problems > 1 then
    error("weft.di: " .. #problems .. " problems:\n  " .. table.concat(problems, "\n  "), 2)
  end
  self._dirty = false
  return self
end

-- ---------------------------------------------------------------------------------------
-- Using components

local function lookup(self, name, level)
  local comp = self._by_name[name]
  if not comp then
    error(fmt("weft.di: no component named '%s'", tostring(name)), level + 1)
  end
  return comp
end

--- The component `name`: a singleton (created on first use; may suspend while its init runs),
-- the current request's instance of a context component (raises outside a request scope), or
-- a new transient (destroyed with the current scope, if any).
function Container:get(name)
  local inst = self._singleton_by_name[name]
  if inst then return inst end
  local comp = lookup(self, name, 2)
  local scope = comp.scope
  if scope == "singleton" then return singleton_slow(self, comp) end
  local s = self._get_store(self._als)
  if scope == "context" then return s and s[comp.idx] or context_slow(self, comp, s, 3) end
  return new_transient(self, comp, s and not s._ended and s or nil)
end

--- The proxy of a context component: resolves, on each use, to the current request's instance.
function Container:proxy(name)
  local comp = lookup(self, name, 2)
  if comp.scope ~= "context" then
    error(fmt("weft.di: '%s' is a %s component; only context components have a proxy", name,
      comp.scope), 2)
  end
  return comp.proxy
end

--- Whether a component named `name` is declared.
function Container:has(name)
  return self._by_name[name] ~= nil
end

--- { name, scope, access, module, file, inject = { field = name } } for `name`, or nil.
function Container:info(name)
  local comp = self._by_name[name]
  if not comp then return nil end
  local inject = {}
  for _, d in ipairs(comp.deps) do inject[d.field] = d.name end
  return { name = comp.name, scope = comp.scope, access = comp.access, module = comp.module,
    file = comp.file, inject = inject }
end

--- The names of every declared component, in declaration order.
function Container:names()
  local out = {}
  for i, comp in ipairs(self._comps) do out[i] = comp.name end
  return out
end

--- Whether the running code is inside a live request scope of this container.
function Container:in_scope()
  local s = self._get_store(self._als)
  return s ~= nil and not s._ended
end

--- Middleware giving each request its scope: context components are created in it on first
-- use and destroyed when the rest of the chain has returned or raised. Validates first.
function Container:middleware()
  local c, als = self, self._als
  return function(_, _, nxt)
    if c._dirty then c:validate() end
    local scope = new_scope(c)
    return als:run(scope, run_in_scope, scope, nxt)
  end
end

--- Runs fn(...) in a new scope (as the middleware does for a request) and returns its results;
-- the scope's context instances are destroyed when fn returns or raises. Destroy hooks or inits
-- that suspend need a task.
function Container:run_scope(fn, ...)
  if type(fn) ~= "function" then error("weft.di: run_scope expects a function", 2) end
  if self._dirty then self:validate() end
  local scope = new_scope(self)
  return self._als:run(scope, run_in_scope, scope, fn, ...)
end

--- A route handler calling method `method` of component `name` with (req, res): a singleton is
-- resolved once and then called directly.
function Container:handler(name, method)
  local comp = lookup(self, name, 2)
  if type(comp.decl[method]) ~= "function" then
    error(fmt("weft.di: component '%s' has no method '%s'", name, tostring(method)), 2)
  end
  local c = self
  if comp.scope == "singleton" then
    local inst, fn
    return function(req, res)
      if not inst then
        inst = c:get(name)
        fn = inst[method]
      end
      return fn(inst, req, res)
    end
  end
  return function(req, res)
    local inst = c:get(name)
    return inst[method](inst, req, res)
  end
end

--- Counters: singletons_created, context_created, transient_created, destroyed (instances whose
-- life ended: context ones at the end of their scope, others by their destroy hook), scopes
-- (entered so far), scopes_active, and components (declared, by scope).
function Container:stats()
  local out = {}
  for k, v in pairs(self._stats) do out[k] = v end
  local by = { singleton = 0, context = 0, transient = 0 }
  for _, comp in ipairs(self._comps) do by[comp.scope] = by[comp.scope] + 1 end
  out.components = by
  return out
end

--- Destroys the singletons (and the transients they hold), newest first; later gets raise.
-- Destroy hooks that suspend need a task.
function Container:close()
  if self._closed then return end
  self._closed = true
  local order = self._order
  self._order = nil
  if order then
    for k = #order, 2, -2 do
      local comp = order[k - 1]
      if comp.destroy then
        run_destroy(comp, order[k])
        self._stats.destroyed = self._stats.destroyed + 1
      end
    end
  end
  self._singletons, self._singleton_by_name = {}, {}
end

return di
