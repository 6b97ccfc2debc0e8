std = "lua54"
unused_args = false
max_line_length = 110
files["spec/**/*.lua"] = { std = "+busted" }
files["bench/**/*.lua"] = { globals = { "wrk", "request", "response", "done", "init", "setup" } }
exclude_files = { "build", "build-asan", "build.luarocks" }
