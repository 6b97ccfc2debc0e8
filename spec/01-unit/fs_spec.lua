-- The asynchronous file functions of weft.core: results, luv-style errors, the file userdata,
-- suspension of the calling task only, and the context kept across each wait.
local core = require "weft.core"
local weft = require "weft"
local helpers = require "helpers"
local tree_mod = require "support.static_tree"

describe("weft.core file functions", function()
  local tree
  setup(function() tree = tree_mod.make() end)
  teardown(function() tree.remove() end)

  it("raise a clear error outside a task", function()
    for _, name in ipairs { "fs_stat", "fs_lstat", "fs_realpath", "fs_open" } do
      local ok, err = pcall(core[name], tree.root)
      assert.is_false(ok)
      assert.matches("must be called inside a task", err)
    end
  end)

  it("stat files, directories and links", function()
    helpers.run(function()
      local st = assert(core.fs_stat(tree.root .. "/readme.txt"))
      assert.equal(20, st.size)
      assert.equal("file", st.type)
      assert.is_true(math.type(st.mtime) == "integer" and st.mtime > 1e9)
      assert.equal("directory", core.fs_stat(tree.root).type)
      assert.equal("file", core.fs_stat(tree.root .. "/inlink").type)
      assert.equal("link", core.fs_lstat(tree.root .. "/inlink").type)
      assert.equal("other", core.fs_stat(tree.root .. "/pipe").type)
    end)
  end)

  it("return nil, 'ENAME: message: path', 'ENAME' on failure", function()
    helpers.run(function()
      local v, err, code = core.fs_stat(tree.root .. "/missing")
      assert.is_nil(v)
      assert.equal("ENOENT", code)
      assert.equal("ENOENT: no such file or directory: " .. tree.root .. "/missing", err)
      v, err, code = core.fs_open(tree.root .. "/readme.txt/x")
      assert.is_nil(v)
      assert.equal("ENOTDIR", code)
      assert.matches("^ENOTDIR: ", err)
      v, err, code = core.fs_realpath(tree.root .. "/nope")
      assert.is_nil(v)
      assert.equal("ENOENT", code)
      assert.matches("^ENOENT: ", err)
      v, err, code = core.fs_stat(tree.root .. "/readme.txt\0.png")
      assert.is_nil(v)
      assert.equal("EINVAL", code)
      assert.matches("NUL", err)
    end)
  end)

  it("resolve real paths", function()
    helpers.run(function()
      local root = assert(core.fs_realpath(tree.root))
      assert.equal(root .. "/readme.txt", core.fs_realpath(tree.root .. "/inlink"))
      assert.equal(root .. "/readme.txt", core.fs_realpath(tree.root .. "/sub/../readme.txt"))
      local out = assert(core.fs_realpath(tree.outside))
      assert.equal(out .. "/secret.txt", core.fs_realpath(tree.root .. "/escape"))
    end)
  end)

  it("open, stat, read at offsets and close files", function()
    helpers.run(function()
      local f = assert(core.fs_open(tree.root .. "/readme.txt"))
      assert.matches("weft.file", tostring(f))
      assert.equal(20, f:stat().size)
      assert.equal("01234", f:read(5, 0))
      assert.equal("fghij", f:read(100, 15))
      assert.equal("", f:read(10, 20)) -- end of file
      assert.equal("", f:read(0, 0))
      assert.equal("0123", f:read(4)) -- at the position
      assert.equal("4567", f:read(4))
      assert.is_true(f:close())
      assert.is_true(f:close()) -- twice is fine
      local v, err, code = f:read(1, 0)
      assert.is_nil(v)
      assert.equal("EBADF", code)
      assert.matches("closed", err)
      assert.equal("EBADF", select(3, f:stat()))
      assert.has_error(function() f:read(-1) end)
    end)
  end)

  it("read a large file in pieces and whole", function()
    helpers.run(function()
      local f <close> = assert(core.fs_open(tree.root .. "/big.bin"))
      local parts, pos = {}, 0
      while true do
        local data = assert(f:read(65536, pos))
        if data == "" then break end
        parts[#parts + 1] = data
        pos = pos + #data
      end
      assert.is_true(table.concat(parts) == tree.big)
      assert.is_true(f:read(tree_mod.BIG_SIZE + 10, 0) == tree.big)
    end)
  end)

  it("close files on __close and __gc, and tolerate close() afterwards", function()
    helpers.run(function()
      local kept
      do
        local f <close> = assert(core.fs_open(tree.root .. "/readme.txt"))
        kept = f
      end
      assert.matches("closed", tostring(kept))
      assert.is_true(kept:close())
      for _ = 1, 50 do assert(core.fs_open(tree.root .. "/readme.txt")) end
      collectgarbage()
      collectgarbage()
    end)
  end)

  it("close a file from another task while it is read: the read finishes, then it closes", function()
    helpers.run(function()
      local f = assert(core.fs_open(tree.root .. "/big.bin"))
      local reader = weft.spawn(function() return f:read(tree_mod.BIG_SIZE, 0) end)
      weft.sleep(0) -- the reader is now waiting on the pool
      assert.is_true(f:close())
      local data = reader:join()
      assert.is_true(data == tree.big)
      assert.matches("closed", tostring(f))
      assert.equal("EBADF", select(3, f:read(1, 0)))
    end)
  end)

  it("suspend only the calling task, and keep its context across the wait", function()
    local als = weft.AsyncLocalStorage.new()
    local log = {}
    helpers.run(function()
      local tasks = {}
      for i = 1, 20 do
        tasks[i] = weft.spawn(function()
          return als:run("task " .. i, function()
            local f <close> = assert(core.fs_open(tree.root .. "/big.bin"))
            assert(f:read(65536, i * 1000))
            assert(core.fs_stat(tree.root))
            assert(core.fs_realpath(tree.root .. "/inlink"))
            log[#log + 1] = i
            return als:getStore()
          end)
        end)
      end
      for i = 1, 20 do assert.equal("task " .. i, tasks[i]:join()) end
    end)
    assert.equal(20, #log)
  end)

  it("work from inside plain coroutines within a task", function()
    helpers.run(function()
      local co = coroutine.wrap(function()
        local st = core.fs_stat(tree.root .. "/readme.txt")
        coroutine.yield(st.size)
        return core.fs_realpath(tree.root .. "/inlink")
      end)
      assert.equal(20, co())
      assert.matches("/readme.txt$", co())
    end)
  end)
end)
