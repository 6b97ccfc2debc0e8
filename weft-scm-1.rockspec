rockspec_format = "3.0"
package = "weft"
version = "scm-1"
source = {
   url = "git+file:///dev/null",
}
description = {
   summary = "Lua 5.4 web handlers on a C engine (libuv + llhttp) with AsyncLocalStorage",
   detailed = [[
weft serves HTTP/1.1 with request handlers written in Lua 5.4, on an event loop in C. Its
async-context core keeps each request's AsyncLocalStorage store attached to the right code
across every coroutine yield.
]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.4",
   "lua-cjson",
}
external_dependencies = {
   LIBUV = { header = "uv.h" },
}
build = {
   type = "cmake",
   variables = {
      CMAKE_BUILD_TYPE = "Release",
      LUA_INCDIR = "$(LUA_INCDIR)",
      LIBDIR = "$(LIBDIR)",
      LUADIR = "$(LUADIR)",
   },
   install = {
      bin = { weft = "bin/weft" },
      lua = {
         ["weft.app"] = "lua/weft/app.lua",
         ["weft.cli"] = "lua/weft/cli.lua",
         ["weft.context"] = "lua/weft/context.lua",
         ["weft.di"] = "lua/weft/di.lua",
         ["weft.errors"] = "lua/weft/errors.lua",
         ["weft.http"] = "lua/weft/http.lua",
         ["weft"] = "lua/weft/init.lua",
         ["weft.log"] = "lua/weft/log.lua",
         ["weft.process"] = "lua/weft/process.lua",
         ["weft.static"] = "lua/weft/static.lua",
         ["weft.test"] = "lua/weft/test.lua",
      },
   },
   copy_directories = {},
}
