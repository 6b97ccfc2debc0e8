-- weft.static over real sockets, against `weft spec/fixtures/static_app.lua` in its own
-- process, with curl and raw TCP (which sends traversal paths exactly as written).
local ps = require "support.procserver"
local tree_mod = require "support.static_tree"

describe("weft.static over HTTP", function()
  local srv, tree
  setup(function()
    tree = tree_mod.make()
    srv = ps.start("spec/fixtures/static_app.lua", { WEFT_STATIC_ROOT = tree.root })
  end)
  teardown(function()
    if srv then srv:stop() end
    if tree then tree.remove() end
  end)

  local function raw_get(path, extra)
    local rs = ps.exchange(srv.port, ("GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n")
      :format(path, extra or ""))
    return rs[1]
  end

  it("serves a small file with Content-Length, type and validators", function()
    local out = ps.curl("-i " .. srv:url("/readme.txt"))
    assert.matches("^HTTP/1.1 200 OK\r\n", out)
    assert.matches("\r\n[Cc]ontent%-[Ll]ength: 20\r\n", out)
    assert.matches("\r\n[Cc]ontent%-[Tt]ype: text/plain; charset=utf%-8\r\n", out)
    assert.matches('\r\n[Ee][Tt]ag: W/"14%-%x+"\r\n', out)
    assert.matches("\r\n[Ll]ast%-[Mm]odified: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT\r\n", out)
    assert.matches("\r\n\r\n0123456789abcdefghij$", out)
  end)

  it("streams a 1 MiB file intact (curl)", function()
    local file = os.tmpname()
    local _, code = ps.curl("-o " .. file .. " " .. srv:url("/big.bin"))
    assert.equal(0, code)
    local f = assert(io.open(file, "rb"))
    local got = f:read("a")
    f:close()
    os.remove(file)
    assert.equal(tree_mod.BIG_SIZE, #got)
    assert.is_true(got == tree.big, "the downloaded file differs")
  end)

  it("answers HEAD with the length and no body", function()
    local r = ps.exchange(srv.port, "HEAD /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
      { head_only = true })[1]
    assert.equal(200, r.status)
    assert.equal(tostring(#tree.files["style.css"]), r.headers["content-length"])
    assert.equal("text/css; charset=utf-8", r.headers["content-type"])
    local out = ps.curl("-sI " .. srv:url("/big.bin"))
    assert.matches("^HTTP/1.1 200", out)
  end)

  it("answers 304 to If-None-Match and If-Modified-Since", function()
    local r = raw_get("/readme.txt")
    assert.equal(304, raw_get("/readme.txt", "If-None-Match: " .. r.headers["etag"] .. "\r\n").status)
    local nm = raw_get("/readme.txt", "If-Modified-Since: " .. r.headers["last-modified"] .. "\r\n")
    assert.equal(304, nm.status)
    assert.equal("", nm.body)
  end)

  it("answers ranges: 206 with Content-Range, 416 with bytes */size (curl)", function()
    local out = ps.curl("-i -r 2-5 " .. srv:url("/readme.txt"))
    assert.matches("^HTTP/1.1 206", out)
    assert.matches("\r\n[Cc]ontent%-[Rr]ange: bytes 2%-5/20\r\n", out)
    assert.matches("\r\n[Cc]ontent%-[Ll]ength: 4\r\n", out)
    assert.matches("\r\n\r\n2345$", out)
    out = ps.curl("-i -r 50-60 " .. srv:url("/readme.txt"))
    assert.matches("^HTTP/1.1 416", out)
    assert.matches("\r\n[Cc]ontent%-[Rr]ange: bytes %*/20\r\n", out)
    local r = raw_get("/big.bin", "Range: bytes=500000-600000\r\n")
    assert.equal(206, r.status)
    assert.is_true(r.body == tree.big:sub(500001, 600001), "the range differs")
  end)

  it("answers 400 to traversal sent as written (curl --path-as-is and raw TCP)", function()
    for _, path in ipairs { "/../outside/secret.txt", "/%2e%2e/outside/secret.txt",
                            "/a/..%2f..%2f..%2foutside/secret.txt", "/readme.txt%00.png",
                            "/a%5c..%5c..%5coutside%5csecret.txt", "/assets/%2e%2e/outside/secret.txt" } do
      local out = ps.curl("-i --path-as-is " .. srv:url(path))
      assert.is_truthy(out:find("^HTTP/1.1 400"), path)
      assert.is_nil(out:find("outside secret", 1, true), path)
      assert.equal(400, raw_get(path).status, path)
    end
  end)

  it("treats links out of the directory and dotfiles as missing (404)", function()
    assert.equal(404, raw_get("/escape").status)
    assert.equal(404, raw_get("/escape_dir/secret.txt").status)
    assert.equal(404, raw_get("/.secret").status)
  end)

  it("serves index.html, redirects a bare directory, falls through to routes", function()
    assert.equal("<h1>sub</h1>\n", ps.curl(srv:url("/sub/")))
    local r = raw_get("/sub")
    assert.equal(301, r.status)
    assert.equal("/sub/", r.headers["location"])
    assert.equal("<h1>sub</h1>\n", ps.curl("-L " .. srv:url("/sub")))
    assert.equal("pong", ps.curl(srv:url("/api/ping")))
    local a = ps.curl("-i " .. srv:url("/assets/readme.txt"))
    assert.matches("\r\n[Cc]ache%-[Cc]ontrol: public, max%-age=60\r\n", a)
    assert.equal(404, raw_get("/assets/missing").status)
  end)

  it("serves many clients at once, each its own file", function()
    local cmds = {}
    for i = 1, 20 do
      local name = i % 2 == 0 and "/big.bin" or "/readme.txt"
      cmds[#cmds + 1] = ("curl -s -o /dev/null -w '%%{http_code} %%{size_download}\\n' %s &")
        :format(srv:url(name))
    end
    local p = assert(io.popen("env -u LD_PRELOAD sh -c " ..
      ("'" .. table.concat(cmds, " "):gsub("'", "'\\''") .. " wait'")))
    local out = p:read("a")
    p:close()
    local n = 0
    for code, size in out:gmatch("(%d+) (%d+)") do
      n = n + 1
      assert.equal("200", code)
      assert.is_true(size == "20" or size == tostring(tree_mod.BIG_SIZE), size)
    end
    assert.equal(20, n)
  end)
end)
