-- 1,000 concurrent requests over real sockets, each with its own store, all suspended at once
-- (a barrier), sleeping random short times, spawning children, resuming plain coroutines and
-- woken by timers: every response must report its own store and nothing else.
local ps = require "support.procserver"
local cjson = require "cjson"

describe("1,000 concurrent requests", function()
  it("each sees only its own store", function()
    local srv = ps.start("spec/fixtures/server_app.lua")
    local N = 1000
    local cmd = "sh -c 'ulimit -n 4096 2>/dev/null; "
      .. "exec env -u LD_PRELOAD lua5.4 spec/support/swarm.lua %d %d %s'"
    local p = assert(io.popen(cmd:format(srv.port, N, "/ctx?barrier=" .. N .. "\\&id=")))
    local out = p:read("a")
    p:close()
    local ok_count, left = 0, nil
    local problems = {}
    for line in out:gmatch("[^\n]+") do
      local i, status, body = line:match("^(%d+) (%S+) ?(.*)$")
      if i then
        if status == "200" and body == i then
          ok_count = ok_count + 1
        elseif #problems < 5 then
          problems[#problems + 1] = line
        end
      end
      left = tonumber(line:match("^left (%d+)")) or left
    end
    local stats = cjson.decode((ps.curl(srv:url("/ctx-stats"))))
    srv:stop()
    assert.equal(0, left)
    assert.same({}, problems)
    assert.equal(N, ok_count)
    assert.equal(N, stats.max_inflight) -- all 1,000 were in flight at the same moment
  end)
end)
