-- weft.static through the in-process client: types, validators, ranges, the ways out of the
-- directory, directories and index files, fallthrough, HEAD and a large streamed file.
local weft = require "weft"
local wtest = require "weft.test"
local static = require "weft.static"
local tree_mod = require "support.static_tree"

describe("weft.static", function()
  local tree, c

  local function client_for(opts, extra)
    local app = weft.app()
    app:use(weft.static(tree.root, opts))
    if extra then extra(app) end
    return wtest.client(app)
  end

  setup(function()
    weft.log.set_output(function() end)
    tree = tree_mod.make()
    c = client_for()
  end)
  teardown(function()
    weft.log.set_output(io.stdout)
    tree.remove()
  end)

  describe("serving files", function()
    it("answers 200 with the file, its type and its validators", function()
      local r = c:get("/readme.txt")
      assert.equal(200, r.status)
      assert.equal("0123456789abcdefghij", r.body)
      assert.equal("text/plain; charset=utf-8", r.headers["content-type"])
      assert.matches('^W/"14%-%x+"$', r.headers["etag"])
      assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", r.headers["last-modified"])
      assert.equal("bytes", r.headers["accept-ranges"])
      assert.equal("public, max-age=0", r.headers["cache-control"])
    end)

    it("chooses the Content-Type by extension, with a charset for text", function()
      local want = {
        ["/index.html"] = "text/html; charset=utf-8",
        ["/style.css"] = "text/css; charset=utf-8",
        ["/app.js"] = "text/javascript; charset=utf-8",
        ["/mod.mjs"] = "text/javascript; charset=utf-8",
        ["/data.json"] = "application/json; charset=utf-8",
        ["/logo.svg"] = "image/svg+xml; charset=utf-8",
        ["/feed.xml"] = "application/xml; charset=utf-8",
        ["/app.js.map"] = "application/json; charset=utf-8",
        ["/pixel.png"] = "image/png",
        ["/photo.JPG"] = "image/jpeg",
        ["/font.woff2"] = "font/woff2",
        ["/prog.wasm"] = "application/wasm",
        ["/doc.pdf"] = "application/pdf",
        ["/favicon.ico"] = "image/x-icon",
        ["/blob.xyz"] = "application/octet-stream",
        ["/noext"] = "application/octet-stream",
      }
      for path, ctype in pairs(want) do
        local r = c:get(path)
        assert.equal(200, r.status, path)
        assert.equal(ctype, r.headers["content-type"], path)
        assert.equal(tree.files[path:sub(2)], r.body, path)
      end
    end)

    it("serves binary content byte for byte, and empty files", function()
      assert.equal("\137PNG\r\n\26\n\0\0\0\rIHDR", c:get("/pixel.png").body)
      local r = c:get("/empty.txt")
      assert.equal(200, r.status)
      assert.equal("", r.body)
    end)

    it("answers HEAD with the headers of GET and no body", function()
      local g, h = c:get("/style.css"), c:head("/style.css")
      assert.equal(200, h.status)
      assert.equal("", h.body)
      for _, k in ipairs { "content-type", "etag", "last-modified", "accept-ranges", "cache-control" } do
        assert.equal(g.headers[k], h.headers[k], k)
      end
      local big = c:head("/big.bin")
      assert.equal(200, big.status)
      assert.equal("", big.body)
    end)

    it("streams a large file intact", function()
      local r = c:get("/big.bin")
      assert.equal(200, r.status)
      assert.equal(tree_mod.BIG_SIZE, #r.body)
      assert.is_true(r.body == tree.big, "the body differs from the file")
      assert.equal("application/octet-stream", r.headers["content-type"])
    end)

    it("follows links that stay inside the directory", function()
      local r = c:get("/inlink")
      assert.equal(200, r.status)
      assert.equal("0123456789abcdefghij", r.body)
    end)

    it("serves nested paths", function()
      assert.equal("deep", c:get("/a/b/deep.txt").body)
      assert.equal("deep", c:get("/a//b/./deep.txt").body)
    end)

    it("applies max_age and set_headers", function()
      local seen
      local c2 = client_for { max_age = 3600, set_headers = function(res, path, st)
        seen = { path = path, size = st.size }
        res:header("X-Static", "yes")
      end }
      local r = c2:get("/readme.txt")
      assert.equal("public, max-age=3600", r.headers["cache-control"])
      assert.equal("yes", r.headers["x-static"])
      assert.equal(20, seen.size)
      assert.matches("/public/readme.txt$", seen.path)
      assert.is_nil(client_for({ max_age = false }):get("/readme.txt").headers["cache-control"])
    end)
  end)

  describe("conditional requests", function()
    it("answers 304 to a matching If-None-Match (weak comparison, lists, *)", function()
      local etag = c:get("/readme.txt").headers["etag"]
      for _, inm in ipairs { etag, etag:gsub("^W/", ""), '"nope", ' .. etag, "*" } do
        local r = c:get("/readme.txt", { headers = { ["If-None-Match"] = inm } })
        assert.equal(304, r.status, inm)
        assert.equal("", r.body)
        assert.equal(etag, r.headers["etag"])
        assert.is_not_nil(r.headers["last-modified"])
      end
      local r = c:get("/readme.txt", { headers = { ["If-None-Match"] = '"other"' } })
      assert.equal(200, r.status)
    end)

    it("answers 304 to If-Modified-Since at or after the modification time", function()
      local lm = c:get("/readme.txt").headers["last-modified"]
      assert.equal(304, c:get("/readme.txt", { headers = { ["If-Modified-Since"] = lm } }).status)
      local later = static.http_date(static.parse_http_date(lm) + 60)
      assert.equal(304, c:get("/readme.txt", { headers = { ["If-Modified-Since"] = later } }).status)
      local earlier = static.http_date(static.parse_http_date(lm) - 60)
      assert.equal(200, c:get("/readme.txt", { headers = { ["If-Modified-Since"] = earlier } }).status)
      assert.equal(200, c:get("/readme.txt", { headers = { ["If-Modified-Since"] = "yesterday" } }).status)
    end)

    it("lets If-None-Match decide when both are sent", function()
      local r0 = c:get("/readme.txt")
      local r = c:get("/readme.txt", { headers = { ["If-None-Match"] = '"other"',
        ["If-Modified-Since"] = r0.headers["last-modified"] } })
      assert.equal(200, r.status)
    end)

    it("formats and parses the three HTTP date forms", function()
      assert.equal("Sun, 06 Nov 1994 08:49:37 GMT", static.http_date(784111777))
      assert.equal(784111777, static.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"))
      assert.equal(784111777, static.parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"))
      assert.equal(784111777, static.parse_http_date("Sun Nov  6 08:49:37 1994"))
      assert.equal(951782400, static.parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT"))
      assert.is_nil(static.parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"))
      assert.is_nil(static.parse_http_date("06 Nov 1994"))
    end)
  end)

  describe("ranges", function()
    local function range(path, spec, extra)
      local h = { Range = spec }
      for k, v in pairs(extra or {}) do h[k] = v end
      return c:get(path, { headers = h })
    end

    it("answers one range with 206 and Content-Range (a-b, a-, -n)", function()
      local r = range("/readme.txt", "bytes=0-4")
      assert.equal(206, r.status)
      assert.equal("01234", r.body)
      assert.equal("bytes 0-4/20", r.headers["content-range"])
      assert.equal("text/plain; charset=utf-8", r.headers["content-type"])
      r = range("/readme.txt", "bytes=15-")
      assert.equal(206, r.status)
      assert.equal("fghij", r.body)
      assert.equal("bytes 15-19/20", r.headers["content-range"])
      r = range("/readme.txt", "bytes=-3")
      assert.equal("hij", r.body)
      assert.equal("bytes 17-19/20", r.headers["content-range"])
      r = range("/readme.txt", "bytes=10-999999999999999999999")
      assert.equal(206, r.status)
      assert.equal("abcdefghij", r.body)
      assert.equal("bytes 10-19/20", r.headers["content-range"])
      r = range("/readme.txt", "bytes=-100")
      assert.equal("0123456789abcdefghij", r.body)
      assert.equal("bytes 0-19/20", r.headers["content-range"])
      r = range("/readme.txt", " BYTES = 3-3 ")
      assert.equal(206, r.status)
      assert.equal("3", r.body)
    end)

    it("answers 416 with Content-Range: bytes */size to unsatisfiable or malformed ranges", function()
      for _, spec in ipairs { "bytes=20-", "bytes=20-30", "bytes=99999999999999999999-",
                              "bytes=5-2", "bytes=-0", "bytes=abc", "bytes=", "bytes=-",
                              "bytes=1-2-3", "bytes=0x10-", "garbage", "bytes=1-2,x" } do
        local r = range("/readme.txt", spec)
        assert.equal(416, r.status, spec)
        assert.equal("bytes */20", r.headers["content-range"], spec)
      end
      local r = range("/empty.txt", "bytes=0-")
      assert.equal(416, r.status)
      assert.equal("bytes */0", r.headers["content-range"])
    end)

    it("serves the whole file to several ranges and to unknown units", function()
      local r = range("/readme.txt", "bytes=0-1,5-6")
      assert.equal(200, r.status)
      assert.equal("0123456789abcdefghij", r.body)
      assert.is_nil(r.headers["content-range"])
      assert.equal(200, range("/readme.txt", "items=0-1").status)
    end)

    it("honours If-Range: a date that still matches keeps the range, anything else drops it", function()
      local r0 = c:get("/readme.txt")
      assert.equal(206, range("/readme.txt", "bytes=0-1",
        { ["If-Range"] = r0.headers["last-modified"] }).status)
      assert.equal(200, range("/readme.txt", "bytes=0-1",
        { ["If-Range"] = "Sun, 06 Nov 1994 08:49:37 GMT" }).status)
      -- weak tags never pass If-Range's strong comparison
      assert.equal(200, range("/readme.txt", "bytes=0-1", { ["If-Range"] = r0.headers["etag"] }).status)
    end)

    it("prefers 304 to a range when the client has the file", function()
      local etag = c:get("/readme.txt").headers["etag"]
      assert.equal(304, range("/readme.txt", "bytes=0-1", { ["If-None-Match"] = etag }).status)
    end)

    it("serves ranges of a large file, streaming those over 64 KiB", function()
      local r = range("/big.bin", "bytes=100000-100099")
      assert.equal(206, r.status)
      assert.equal(tree.big:sub(100001, 100100), r.body)
      r = range("/big.bin", "bytes=1000-")
      assert.equal(206, r.status)
      assert.equal(("bytes 1000-%d/%d"):format(tree_mod.BIG_SIZE - 1, tree_mod.BIG_SIZE),
        r.headers["content-range"])
      assert.equal(tree_mod.BIG_SIZE - 1000, #r.body)
      assert.is_true(r.body == tree.big:sub(1001), "the streamed range differs")
      r = range("/big.bin", "bytes=-70000")
      assert.is_true(r.body == tree.big:sub(-70000), "the suffix range differs")
    end)

    it("parses ranges on their own", function()
      assert.same({ 0, 9 }, { static.parse_range("bytes=0-9", 100) })
      assert.same({ 90, 99 }, { static.parse_range("bytes=-10", 100) })
      assert.same({ 50, 99 }, { static.parse_range("bytes=50-", 100) })
      assert.same({ 1, 2 }, { static.parse_range("bytes=1-2, ", 100) })
      assert.is_nil(static.parse_range("bytes=0-1,2-3", 100))
      assert.is_false(static.parse_range("bytes=100-", 100))
    end)
  end)

  describe("the way out of the directory is closed", function()
    it("answers 400 to '..' segments, raw or percent-encoded", function()
      for _, path in ipairs { "/../outside/secret.txt", "/%2e%2e/outside/secret.txt",
                              "/%2E%2E/outside/secret.txt", "/a/..%2f..%2f..%2foutside/secret.txt",
                              "/a/b/../../../outside/secret.txt", "/.%2e/outside/secret.txt",
                              "/..", "/sub/.." } do
        local r = c:get(path)
        assert.equal(400, r.status, path)
        assert.is_not.matches("outside secret", r.body, nil, true)
      end
    end)

    it("answers 400 to NUL bytes, raw or %00", function()
      for _, path in ipairs { "/readme.txt%00", "/readme.txt%00.html", "/%00", "/readme.txt\0.png" } do
        assert.equal(400, c:get(path).status, path)
      end
    end)

    it("answers 400 to backslashes, raw or %5c, even for a file whose name has one", function()
      for _, path in ipairs { "/..\\outside\\secret.txt", "/a%5c..%5c..%5coutside%5csecret.txt",
                              "/back\\slash.txt", "/back%5Cslash.txt" } do
        assert.equal(400, c:get(path).status, path)
      end
    end)

    it("treats links pointing outside as missing (404)", function()
      for _, path in ipairs { "/escape", "/escape_dir/secret.txt", "/escape_dir/", "/passwd" } do
        local r = c:get(path)
        assert.equal(404, r.status, path)
        assert.is_not.matches("outside secret", r.body, nil, true)
      end
    end)

    it("never calls next() for a traversal attempt", function()
      local c2 = client_for(nil, function(app)
        app:get("/*", function() return "route" end)
      end)
      assert.equal(400, c2:get("/%2e%2e/outside/secret.txt").status)
      assert.equal("route", c2:get("/escape").body) -- missing falls through
    end)

    it("treats dotfiles and dot-directories as missing by default", function()
      for _, path in ipairs { "/.secret", "/.hidden/file.txt", "/.hidden/", "/%2esecret" } do
        assert.equal(404, c:get(path).status, path)
      end
      local fell = client_for(nil, function(app)
        app:get("/.secret", function() return "route" end)
      end)
      assert.equal("route", fell:get("/.secret").body)
      local deny = client_for({ dotfiles = "deny" }, function(app)
        app:get("/.secret", function() return "route" end)
      end)
      assert.equal(404, deny:get("/.secret").status)
      local allow = client_for { dotfiles = "allow" }
      assert.equal("password=1", allow:get("/.secret").body)
      assert.equal("hidden", allow:get("/.hidden/file.txt").body)
    end)

    it("does not serve FIFOs or other special files (and does not hang on them)", function()
      assert.equal(404, c:get("/pipe").status)
    end)
  end)

  describe("directories", function()
    it("serves index.html for a directory path ending in /", function()
      local r = c:get("/")
      assert.equal(200, r.status)
      assert.equal("<h1>home</h1>\n", r.body)
      assert.equal("text/html; charset=utf-8", r.headers["content-type"])
      assert.equal("<h1>sub</h1>\n", c:get("/sub/").body)
    end)

    it("redirects a directory path without its trailing slash (301)", function()
      local r = c:get("/sub?x=1")
      assert.equal(301, r.status)
      assert.equal("/sub/?x=1", r.headers["location"])
      r = c:get("//sub")
      assert.equal("/sub/", r.headers["location"]) -- never a protocol-relative URL
      assert.equal(404, client_for({ redirect = false }):get("/sub").status)
    end)

    it("declines a directory without index, and every directory with index = false", function()
      assert.equal(404, c:get("/empty/").status)
      assert.equal(404, c:get("/a/").status)
      local noindex = client_for { index = false }
      assert.equal(404, noindex:get("/").status)
      assert.equal(404, noindex:get("/sub/").status)
      local other = client_for { index = "readme.txt" }
      assert.equal("0123456789abcdefghij", other:get("/").body)
    end)
  end)

  describe("fallthrough and methods", function()
    it("calls next() for a missing file, or answers 404 with fallthrough = false", function()
      local c2 = client_for(nil, function(app)
        app:get("/api/ping", function() return "pong" end)
      end)
      assert.equal("pong", c2:get("/api/ping").body)
      assert.equal(404, c2:get("/missing.txt").status)
      local strict = client_for({ fallthrough = false }, function(app)
        app:get("/api/ping", function() return "pong" end)
      end)
      local r = strict:get("/api/ping")
      assert.equal(404, r.status)
      assert.equal("Not Found", r.body)
    end)

    it("calls next() for methods other than GET and HEAD", function()
      local c2 = client_for({ fallthrough = false }, function(app)
        app:post("/readme.txt", function() return "posted" end)
      end)
      assert.equal("posted", c2:post("/readme.txt", { body = "x" }).body)
    end)

    it("works as a route handler, serving the part matched by *", function()
      local app = weft.app()
      app:get("/assets/*", weft.static(tree.root))
      app:all("/files/*", weft.static(tree.root))
      local c2 = wtest.client(app)
      assert.equal("0123456789abcdefghij", c2:get("/assets/readme.txt").body)
      assert.equal("deep", c2:get("/assets/a/b/deep.txt").body)
      assert.equal("<h1>home</h1>\n", c2:get("/assets/").body)
      assert.equal("/assets/", c2:get("/assets").headers["location"])
      assert.equal(404, c2:get("/assets/missing.txt").status) -- no next: 404
      assert.equal(400, c2:get("/assets/..%2f..%2foutside/secret.txt").status)
      assert.equal(400, c2:get("/assets/%2e%2e/outside/secret.txt").status)
      local r = c2:post("/files/readme.txt")
      assert.equal(405, r.status)
      assert.equal("GET, HEAD", r.headers["allow"])
      assert.equal(206, c2:get("/files/readme.txt", { headers = { Range = "bytes=0-0" } }).status)
    end)

    it("answers 403 when the file may not be read, 500 for other file system errors", function()
      -- the suite may run as root, which reads everything: the error is injected
      local core = require "weft.core"
      local real_open = core.fs_open
      local code
      core.fs_open = function() return nil, code .. ": injected", code end
      local ok, err = pcall(function()
        code = "EACCES"
        assert.equal(403, c:get("/readme.txt").status)
        code = "EIO"
        local r = c:get("/readme.txt")
        assert.equal(500, r.status)
        assert.is_nil(r.body:find("injected", 1, true))
        code = "ENOENT"
        assert.equal(404, c:get("/readme.txt").status)
      end)
      core.fs_open = real_open
      assert(ok, err)
    end)

    it("treats a missing directory as missing files", function()
      local c2 = wtest.client(weft.app():use(weft.static(tree.base .. "/nope")))
      assert.equal(404, c2:get("/readme.txt").status)
    end)

    it("checks its options", function()
      assert.has_error(function() weft.static() end)
      assert.has_error(function() weft.static(tree.root, { dotfiles = "maybe" }) end)
      assert.has_error(function() weft.static(tree.root, { max_age = -1 }) end)
      assert.has_error(function() weft.static(tree.root, { index = "../x.html" }) end)
    end)
  end)

  it("serves under a mount prefix with app:use(prefix, static), stripping the prefix", function()
    local app = weft.app()
    app:use("/assets", weft.static(tree.root))
    app:get("/other", function(req) return "other:" .. tostring(req.base_path) end)
    local m = wtest.client(app)
    local r = m:get("/assets/readme.txt")
    assert.same({ 200, "0123456789abcdefghij" }, { r.status, r.body })
    assert.equal(301, m:get("/assets").status)
    assert.equal(200, m:get("/assets/").status) -- the index file
    assert.equal(404, m:get("/assetsreadme.txt").status)
    assert.equal("other:nil", m:get("/other").body) -- downstream does not see the prefix
  end)

  it("keeps each request's context across its file reads", function()
    local als = weft.AsyncLocalStorage.new()
    local app = weft.app()
    local seen = {}
    app:use(function(req, _, next)
      als:run(req.path, function()
        next()
        seen[#seen + 1] = { als:getStore(), req.path }
      end)
    end)
    app:use(weft.static(tree.root))
    local c2 = wtest.client(app)
    local tasks = {}
    for _, p in ipairs { "/big.bin", "/readme.txt", "/style.css", "/sub/", "/missing" } do
      tasks[#tasks + 1] = weft.spawn(function() return c2:get(p).status end)
    end
    weft.run()
    for _, t in ipairs(tasks) do assert.equal("done", t:status()) end
    assert.equal(5, #seen)
    for _, s in ipairs(seen) do assert.equal(s[2], s[1]) end
  end)
end)
