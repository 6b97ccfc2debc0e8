--- A temporary directory tree for weft.static's specs: a public root with files of many types,
-- directories with and without index.html, dotfiles, links that stay inside and links that
-- point outside, and a large file.
local M = {}

local function sh(cmd)
  assert(os.execute(cmd), "command failed: " .. cmd)
end

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

--- Deterministic, incompressible-looking bytes (no two 64 KiB pieces alike).
function M.bytes(n, seed)
  local parts, x = {}, seed or 12345
  local buf = {}
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    buf[#buf + 1] = (x >> 16) & 0xff
    if #buf == 4096 or i == n then
      parts[#parts + 1] = string.char(table.unpack(buf))
      buf = {}
    end
  end
  return table.concat(parts)
end

M.BIG_SIZE = 1024 * 1024 + 123

--- Makes the tree; returns { base, root, outside, big (its content), files = {name = content} },
-- and remove() deletes it.
function M.make()
  local base = os.tmpname()
  os.remove(base)
  local root, outside = base .. "/public", base .. "/outside"
  sh("mkdir -p " .. quote(root .. "/sub") .. " " .. quote(root .. "/empty") .. " " ..
     quote(root .. "/a/b") .. " " .. quote(root .. "/.hidden") .. " " .. quote(outside))
  local files = {
    ["index.html"] = "<h1>home</h1>\n",
    ["sub/index.html"] = "<h1>sub</h1>\n",
    ["style.css"] = "body { color: red }\n",
    ["app.js"] = "console.log(1)\n",
    ["mod.mjs"] = "export default 1\n",
    ["data.json"] = '{"a":1}\n',
    ["readme.txt"] = "0123456789abcdefghij",
    ["logo.svg"] = "<svg xmlns='http://www.w3.org/2000/svg'/>",
    ["pixel.png"] = "\137PNG\r\n\26\n\0\0\0\rIHDR",
    ["photo.JPG"] = "\255\216\255\224",
    ["font.woff2"] = "wOF2",
    ["prog.wasm"] = "\0asm\1\0\0\0",
    ["doc.pdf"] = "%PDF-1.4",
    ["feed.xml"] = "<feed/>",
    ["app.js.map"] = "{}",
    ["favicon.ico"] = "\0\0\1\0",
    ["blob.xyz"] = "???",
    ["noext"] = "plain",
    ["empty.txt"] = "",
    ["a/b/deep.txt"] = "deep",
    [".secret"] = "password=1",
    [".hidden/file.txt"] = "hidden",
    ["back\\slash.txt"] = "backslash",
  }
  for name, data in pairs(files) do write(root .. "/" .. name, data) end
  local big = M.bytes(M.BIG_SIZE)
  write(root .. "/big.bin", big)
  write(outside .. "/secret.txt", "outside secret")
  sh("ln -s ../outside/secret.txt " .. quote(root .. "/escape"))
  sh("ln -s ../outside " .. quote(root .. "/escape_dir"))
  sh("ln -s readme.txt " .. quote(root .. "/inlink"))
  sh("ln -s /etc/passwd " .. quote(root .. "/passwd"))
  sh("mkfifo " .. quote(root .. "/pipe"))
  local t = { base = base, root = root, outside = outside, big = big, files = files }
  function t.remove() sh("rm -rf " .. quote(base)) end
  return t
end

return M
