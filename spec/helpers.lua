--- Shared helpers for weft's specs.
local weft = require "weft"

local helpers = {}

--- Runs fn(...) as a task, drives the loop until everything has finished, and returns fn's
-- results (re-raising its error).
function helpers.run(fn, ...)
  local t = weft.spawn(fn, ...)
  weft.run()
  assert(t:status() == "done", "the task did not finish (status " .. t:status() .. ")")
  return t:join()
end

--- Collects errors reported to weft.on_error while fn runs (restoring the handler after).
function helpers.capture_errors(fn)
  local errors = {}
  weft.on_error(function(err, tb) errors[#errors + 1] = { err = err, traceback = tb } end)
  local ok, e = pcall(fn)
  weft.on_error(nil)
  if not ok then error(e, 0) end
  return errors
end

return helpers
