/*
 * fs.c — asynchronous files for Lua: fs_stat, fs_lstat, fs_realpath and fs_open on weft.core,
 * and the file userdata (file:stat(), file:read(len, offset), file:close()).
 *
 * Each call suspends the calling task until libuv's thread pool answers (the loop never
 * blocks), and so must run inside a task. Failures return nil, "ENAME: message[: path]",
 * "ENAME" (luv's convention). While an operation is in flight its continuation pins the task
 * and holds a registry reference to the file, so neither is collected under it; a file closed
 * while one of its operations is in flight is closed when the last of them has answered.
 */
#include "weft_lua.h"

#include <stdlib.h>
#include <string.h>

#define WEFT_FILE_MT "weft.file"

/* The largest single read: a Lua string of this size is already a lot of memory. */
#define MAX_READ (64 * 1024 * 1024)

typedef struct file_ud {
  weft_state_t *st;
  uv_file fd;       /* -1 once closed */
  int busy;         /* operations in flight on fd */
  int close_later;  /* close() was called while busy */
} file_ud_t;

enum { OP_OPEN, OP_STAT, OP_LSTAT, OP_REALPATH, OP_FSTAT, OP_READ, OP_CLOSE };

typedef struct fs_op {
  weft_state_t *st;
  weft_task_t *t;
  uint32_t token;
  int kind;
  file_ud_t *file;  /* file operations: the file, anchored by file_ref */
  int file_ref;
  char *buf;        /* OP_READ: the destination */
} fs_op_t;

/* Pushes nil, "ENAME: message", "ENAME". */
static int push_error(lua_State *L, int status) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(status), uv_strerror(status));
  lua_pushstring(L, uv_err_name(status));
  return 3;
}

static void push_stat(lua_State *L, const weft_fs_stat_t *s) {
  static const char *const types[] = {"other", "file", "directory", "link"};
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)s->size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)s->mtime_sec);
  lua_setfield(L, -2, "mtime");
  lua_pushinteger(L, (lua_Integer)s->mtime_nsec);
  lua_setfield(L, -2, "mtime_nsec");
  lua_pushstring(L, types[s->type]);
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)(s->mode & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, (lua_Integer)s->ino);
  lua_setfield(L, -2, "ino");
  lua_pushinteger(L, (lua_Integer)s->dev);
  lua_setfield(L, -2, "dev");
}

static void file_init(lua_State *L, weft_state_t *st, uv_file fd) {
  file_ud_t *f = lua_newuserdatauv(L, sizeof(*f), 0);
  f->st = st;
  f->fd = fd;
  f->busy = 0;
  f->close_later = 0;
  luaL_setmetatable(L, WEFT_FILE_MT);
}

/* Closes the descriptor now (synchronously: a read-only descriptor closes without waiting on
 * the disk). Safe on a closed file. */
static int file_close_now(file_ud_t *f) {
  if (f->fd < 0) return 0;
  uv_file fd = f->fd;
  f->fd = -1;
  f->close_later = 0;
  return weft_fs_close(f->st->loop, fd, NULL, NULL);
}

/* The continuation's answer: pushes the results on st->L and returns how many. */
static int push_result(lua_State *L, fs_op_t *op, const weft_fs_result_t *res) {
  if (res->status < 0) return push_error(L, res->status);
  switch (op->kind) {
  case OP_OPEN: file_init(L, op->st, res->fd); return 1;
  case OP_STAT:
  case OP_LSTAT:
  case OP_FSTAT: push_stat(L, &res->stat); return 1;
  case OP_REALPATH: lua_pushstring(L, res->path); return 1;
  case OP_READ: lua_pushlstring(L, op->buf, res->nread); return 1;
  default: lua_pushboolean(L, 1); return 1;
  }
}

typedef struct fs_answer {
  fs_op_t *op;
  const weft_fs_result_t *res;
} fs_answer_t;

static void fs_resume(weft_state_t *st, void *ud) {
  fs_answer_t *a = ud;
  lua_State *L = st->L;
  luaL_checkstack(L, 4, NULL);
  int n = push_result(L, a->op, a->res);
  weft_b_resume_waiter(st, a->op->t, a->op->token, n);
}

static void fs_done(const weft_fs_result_t *res, void *data) {
  fs_op_t *op = data;
  weft_state_t *st = op->st;
  lua_State *L = st->L;
  if (op->file != NULL) {
    op->file->busy--;
    if (op->file->busy == 0 && op->file->close_later) file_close_now(op->file);
  }
  weft_task_t *t = op->t;
  fs_answer_t a = {op, res};
  if (weft_b_protect(st, fs_resume, &a, "resuming a file operation") != LUA_OK)
    weft_b_resume_failed(st, t, op->token);
  if (op->file_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, op->file_ref);
  free(op->buf);
  free(op);
  weft_b_task_unpin(L, t);
}

/* After the resume: the results are what was pushed above the `base` values kept. */
static int fs_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int base = (int)ctx;
  int n = lua_gettop(L) - base;
  if (n == 0) return luaL_error(L, WEFT_B_NO_ANSWER); /* weft_b_resume_failed */
  /* name the path in an error message, as luv does */
  if (n == 3 && lua_isnil(L, base + 1) && lua_type(L, 1) == LUA_TSTRING) {
    lua_pushfstring(L, "%s: %s", lua_tostring(L, base + 2), lua_tostring(L, 1));
    lua_replace(L, base + 2);
  }
  return n;
}

/* Starts a wait: the caller queues the operation with fs_done and op, then returns
 * fs_wait(L, op, rc). Raises outside a task. */
static fs_op_t *fs_begin(lua_State *L, weft_state_t *st, int kind, const char *what) {
  weft_task_t *t;
  uint32_t token = weft_b_prepare_wait(L, st, &t, what);
  fs_op_t *op = calloc(1, sizeof(*op));
  if (op == NULL) {
    weft_b_cancel_wait(t);
    luaL_error(L, "out of memory");
  }
  op->st = st;
  op->t = t;
  op->token = token;
  op->kind = kind;
  op->file_ref = LUA_NOREF;
  return op;
}

/* Anchors the file at index 1 for op. */
static void fs_hold_file(lua_State *L, fs_op_t *op, file_ud_t *f) {
  op->file = f;
  lua_pushvalue(L, 1);
  op->file_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  f->busy++;
}

/* rc: what queuing returned. On success the task yields until fs_done resumes it. */
static int fs_wait(lua_State *L, fs_op_t *op, int rc, int base) {
  if (rc != 0) {
    weft_b_cancel_wait(op->t);
    if (op->file != NULL) op->file->busy--;
    if (op->file_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, op->file_ref);
    free(op->buf);
    free(op);
    lua_settop(L, base);
    push_error(L, rc);
    return fs_k(L, LUA_OK, base);
  }
  weft_b_task_pin(L, op->t);
  lua_settop(L, base);
  lua_pushlightuserdata(L, &weft_b_suspend_sentinel);
  return lua_yieldk(L, 1, (lua_KContext)base, fs_k);
}

/* A path argument without NUL bytes (which would silently cut it short). */
static const char *check_path(lua_State *L, int idx) {
  size_t len;
  const char *p = luaL_checklstring(L, idx, &len);
  if (strlen(p) != len) return NULL;
  return p;
}

static int path_op(lua_State *L, int kind, const char *what) {
  weft_state_t *st = weft_b_state(L);
  const char *path = check_path(L, 1);
  lua_settop(L, 1);
  if (path == NULL) {
    push_error(L, UV_EINVAL);
    lua_pushliteral(L, "EINVAL: the path contains a NUL byte");
    lua_replace(L, -3);
    return 3;
  }
  fs_op_t *op = fs_begin(L, st, kind, what);
  int rc;
  switch (kind) {
  case OP_OPEN: rc = weft_fs_open(st->loop, path, fs_done, op); break;
  case OP_REALPATH: rc = weft_fs_realpath(st->loop, path, fs_done, op); break;
  case OP_LSTAT: rc = weft_fs_lstat(st->loop, path, fs_done, op); break;
  default: rc = weft_fs_stat(st->loop, path, fs_done, op); break;
  }
  return fs_wait(L, op, rc, 1);
}

/* fs_stat(path) -> {size, mtime, mtime_nsec, type, mode, ino, dev} | nil, err, code */
static int l_fs_stat(lua_State *L) { return path_op(L, OP_STAT, "weft.core.fs_stat"); }
/* fs_lstat(path): as fs_stat, but a symbolic link is reported as type "link" */
static int l_fs_lstat(lua_State *L) { return path_op(L, OP_LSTAT, "weft.core.fs_lstat"); }
/* fs_realpath(path) -> absolute path with links resolved | nil, err, code */
static int l_fs_realpath(lua_State *L) { return path_op(L, OP_REALPATH, "weft.core.fs_realpath"); }
/* fs_open(path) -> file (read-only) | nil, err, code */
static int l_fs_open(lua_State *L) { return path_op(L, OP_OPEN, "weft.core.fs_open"); }

/* ---- the file ---- */

static file_ud_t *check_file(lua_State *L) { return luaL_checkudata(L, 1, WEFT_FILE_MT); }

static int closed_error(lua_State *L) {
  lua_pushnil(L);
  lua_pushliteral(L, "EBADF: the file is closed");
  lua_pushliteral(L, "EBADF");
  return 3;
}

/* file:stat() -> as fs_stat */
static int file_stat(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  file_ud_t *f = check_file(L);
  lua_settop(L, 1);
  if (f->fd < 0 || f->close_later) return closed_error(L);
  fs_op_t *op = fs_begin(L, st, OP_FSTAT, "file:stat()");
  fs_hold_file(L, op, f);
  return fs_wait(L, op, weft_fs_fstat(st->loop, f->fd, fs_done, op), 1);
}

/* file:read(len[, offset]) -> string ("" at end of file) | nil, err, code. Without an offset
 * (or with -1) it reads at the file's position, which advances. */
static int file_read(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  file_ud_t *f = check_file(L);
  lua_Integer len = luaL_checkinteger(L, 2);
  lua_Integer offset = luaL_optinteger(L, 3, -1);
  luaL_argcheck(L, len >= 0 && len <= MAX_READ, 2, "length must be from 0 to 64 MiB");
  luaL_argcheck(L, offset >= -1, 3, "offset must be -1 or more");
  lua_settop(L, 1);
  if (f->fd < 0 || f->close_later) return closed_error(L);
  if (len == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  fs_op_t *op = fs_begin(L, st, OP_READ, "file:read()");
  op->buf = malloc((size_t)len);
  if (op->buf == NULL) {
    weft_b_cancel_wait(op->t);
    free(op);
    return luaL_error(L, "out of memory");
  }
  fs_hold_file(L, op, f);
  return fs_wait(L, op, weft_fs_read(st->loop, f->fd, op->buf, (size_t)len, offset, fs_done, op), 1);
}

/* file:close() -> true | nil, err, code. Closing twice is fine (the second does nothing).
 * Inside a task it suspends until the descriptor is closed; elsewhere it closes at once. */
static int file_close(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  file_ud_t *f = check_file(L);
  lua_settop(L, 1);
  if (f->fd < 0 || f->close_later) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (f->busy > 0) { /* an operation still uses fd: the last one closes it */
    f->close_later = 1;
    lua_pushboolean(L, 1);
    return 1;
  }
  if (st->task == NULL || !lua_isyieldable(L)) {
    int rc = file_close_now(f);
    if (rc < 0) return push_error(L, rc);
    lua_pushboolean(L, 1);
    return 1;
  }
  uv_file fd = f->fd;
  f->fd = -1;
  fs_op_t *op = fs_begin(L, st, OP_CLOSE, "file:close()");
  return fs_wait(L, op, weft_fs_close(st->loop, fd, fs_done, op), 1);
}

/* __gc and __close: close without waiting (never twice). */
static int file_gc(lua_State *L) {
  file_ud_t *f = check_file(L);
  if (f->busy > 0)
    f->close_later = 1;
  else
    file_close_now(f);
  return 0;
}

static int file_fd(lua_State *L) {
  file_ud_t *f = check_file(L);
  if (f->fd < 0 || f->close_later) return 0;
  lua_pushinteger(L, f->fd);
  return 1;
}

static int file_tostring(lua_State *L) {
  file_ud_t *f = check_file(L);
  if (f->fd < 0 || f->close_later)
    lua_pushfstring(L, "weft.file: %p (closed)", (void *)f);
  else
    lua_pushfstring(L, "weft.file: %p (fd %d)", (void *)f, (int)f->fd);
  return 1;
}

void weft_b_open_fs(lua_State *L, weft_state_t *st) {
  luaL_newmetatable(L, WEFT_FILE_MT);
  static const luaL_Reg file_methods[] = {{"stat", file_stat},
                                          {"read", file_read},
                                          {"close", file_close},
                                          {"fd", file_fd},
                                          {NULL, NULL}};
  lua_newtable(L);
  weft_b_setfuncs(L, st, file_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, file_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, file_gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, file_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  static const luaL_Reg fns[] = {{"fs_stat", l_fs_stat},
                                 {"fs_lstat", l_fs_lstat},
                                 {"fs_realpath", l_fs_realpath},
                                 {"fs_open", l_fs_open},
                                 {NULL, NULL}};
  weft_b_setfuncs(L, st, fns);
}
