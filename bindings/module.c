/*
 * module.c — luaopen_weft_core: the module's state, the loop functions, and installing the
 * context-carrying coroutine functions into the global `coroutine` table.
 */
#include "weft_lua.h"

#include <limits.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

weft_state_t *weft_b_state(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

void weft_b_setfuncs(lua_State *L, weft_state_t *st, const luaL_Reg *fns) {
  lua_pushlightuserdata(L, st);
  luaL_setfuncs(L, fns, 1);
}

static void flush_cb(void *data);

/* ---- protected entry from the loop ----
 *
 * libuv calls back from inside uv_run, which runs inside l_run, a C function: a Lua error
 * raised there (out of memory, mostly) would longjmp over uv_run's own frames and leave the
 * loop corrupt. So every callback that touches Lua enters through weft_b_protect, which runs
 * it under lua_pcall; pushing the trampoline and its argument allocates nothing. */

typedef struct protected_call {
  weft_b_protected_fn fn;
  weft_state_t *st;
  void *ud;
} protected_call_t;

static int protected_tramp(lua_State *L) {
  protected_call_t *p = lua_touserdata(L, 1);
  lua_settop(L, 0);
  p->fn(p->st, p->ud);
  return 0;
}

typedef struct bare_resume {
  weft_task_t *t;
  uint32_t token;
} bare_resume_t;

static void resume_bare(weft_state_t *st, void *ud) {
  bare_resume_t *b = ud;
  weft_b_resume_waiter(st, b->t, b->token, 0);
}

void weft_b_resume_failed(weft_state_t *st, weft_task_t *t, uint32_t token) {
  bare_resume_t b = {t, token};
  weft_b_protect(st, resume_bare, &b, "resuming a task without its answer");
}

int weft_b_protect(weft_state_t *st, weft_b_protected_fn fn, void *ud, const char *what) {
  lua_State *L = st->L;
  protected_call_t p = {fn, st, ud};
  int top = lua_gettop(L);
  lua_pushcfunction(L, protected_tramp);
  lua_pushlightuserdata(L, &p);
  int rc = lua_pcall(L, 1, 0, 0);
  if (rc != LUA_OK) {
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(an error object)";
    fprintf(stderr, "weft: %s failed: %s\n", what, msg);
    fflush(stderr);
    lua_settop(L, top);
  }
  return rc;
}

static int l_run(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  if (st->running) return luaL_error(L, "weft.run: the loop is already running");
  lua_State *prev = st->L;
  st->L = L;
  st->running = 1;
  uv_run(weft_loop_uv(st->loop), UV_RUN_DEFAULT);
  if (st->flush_ref != LUA_NOREF) flush_cb(st); /* stopped with lines still buffered */
  st->running = 0;
  st->L = prev;
  weft_b_drain(L, st);
  return 0;
}

static int l_stop(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  uv_stop(weft_loop_uv(st->loop));
  return 0;
}

static int l_now(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  lua_pushinteger(L, (lua_Integer)weft_loop_now(st->loop));
  return 1;
}

static int l_hrtime(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_hrtime());
  return 1;
}

static int l_stats(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)weft_ctx_live_frames());
  lua_setfield(L, -2, "frames");
  lua_pushinteger(L, (lua_Integer)st->tasks_live);
  lua_setfield(L, -2, "tasks");
  lua_pushinteger(L, (lua_Integer)st->npool);
  lua_setfield(L, -2, "pooled_workers");
  lua_pushinteger(L, (lua_Integer)st->ndead);
  lua_setfield(L, -2, "pending_unrefs");
  return 1;
}

/* etag(body) -> 'W/"<length in hex>-<FNV-1a in hex>"', the weak validator of a buffered body,
 * built here in one call: in Lua it took a hash call and a string.format (snprintf), about a
 * microsecond on every response */
static int l_etag(lua_State *L) {
  size_t len;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &len);
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  static const char hex[] = "0123456789abcdef";
  char buf[3 + 16 + 1 + 16 + 1], lenhex[16];
  int nl = 0;
  size_t n = len;
  do {
    lenhex[nl++] = hex[n & 0xf];
    n >>= 4;
  } while (n);
  char *w = buf;
  *w++ = 'W', *w++ = '/', *w++ = '"';
  while (nl) *w++ = lenhex[--nl];
  *w++ = '-';
  for (int i = 15; i >= 0; i--) w[i] = hex[(h >> (4 * (15 - i))) & 0xf];
  w += 16;
  *w++ = '"';
  lua_pushlstring(L, buf, (size_t)(w - buf));
  return 1;
}

/* request_id() -> "<8 hex digits>-<n>": a per-process random prefix and a counter, unique in the
 * process and across processes with overwhelming probability; written by hand (Lua's
 * number-to-string conversion goes through snprintf) */
static int l_request_id(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  if (st->id_prefix[0] == 0) {
    uint64_t seed = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)st;
    seed ^= seed >> 33; /* a 64-bit mix (murmur3's finaliser) spreads the seed's few live bits */
    seed *= 0xff51afd7ed558ccdULL;
    seed ^= seed >> 33;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) st->id_prefix[i] = hex[(seed >> (4 * i)) & 0xf];
    st->id_prefix[8] = '-';
  }
  char buf[9 + 20], digits[20];
  memcpy(buf, st->id_prefix, 9);
  uint64_t n = ++st->id_counter;
  int nd = 0;
  do {
    digits[nd++] = (char)('0' + n % 10);
    n /= 10;
  } while (n);
  char *w = buf + 9;
  while (nd) *w++ = digits[--nd];
  lua_pushlstring(L, buf, (size_t)(w - buf));
  return 1;
}

/* random_hex(bytes) -> 2*bytes lower-case hex digits from a per-process xoshiro256** stream
 * seeded from the clock, the pid and an address: fast and unique enough for trace and span ids
 * (W3C Trace Context asks for randomness, not secrecy), in one call instead of a
 * string.format per 32 bits */
static uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static uint64_t next_random(weft_state_t *st) {
  uint64_t *s = st->rng;
  if ((s[0] | s[1] | s[2] | s[3]) == 0) {
    uint64_t seed = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)st;
    for (int i = 0; i < 4; i++) s[i] = splitmix64(&seed);
  }
  uint64_t result = rotl64(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl64(s[3], 45);
  return result;
}

static int l_random_hex(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  lua_Integer bytes = luaL_checkinteger(L, 1);
  luaL_argcheck(L, bytes > 0 && bytes <= 64, 1, "1 to 64 bytes");
  static const char hex[] = "0123456789abcdef";
  char buf[128];
  for (lua_Integer i = 0; i < bytes; i += 8) {
    uint64_t r = next_random(st);
    for (lua_Integer j = i; j < i + 8 && j < bytes; j++, r >>= 8) {
      buf[2 * j] = hex[(r >> 4) & 0xf];
      buf[2 * j + 1] = hex[r & 0xf];
    }
  }
  lua_pushlstring(L, buf, (size_t)(2 * bytes));
  return 1;
}

/* flush_soon(file): flushes the Lua file handle before the loop next waits for I/O, once
 * however many lines were written meanwhile; at once when the loop is not running. Log lines
 * go through it: a write(2) per line cost a request several microseconds. */
static void flush_now(weft_state_t *st, void *ud) {
  (void)ud;
  lua_State *L = st->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, st->flush_ref);
  luaL_Stream *p = luaL_testudata(L, -1, LUA_FILEHANDLE);
  if (p != NULL && p->closef != NULL) fflush(p->f);
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, st->flush_ref);
  st->flush_ref = LUA_NOREF;
}

static void flush_cb(void *data) { weft_b_protect(data, flush_now, NULL, "flushing the log"); }

static int l_flush_soon(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  luaL_Stream *p = luaL_checkudata(L, 1, LUA_FILEHANDLE);
  if (p->closef == NULL) return luaL_error(L, "attempt to use a closed file");
  if (st->flush_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->flush_ref);
    int same = lua_rawequal(L, -1, 1);
    lua_pop(L, 1);
    if (same) return 0; /* already due */
    fflush(p->f);       /* another file is due: this one goes now */
    return 0;
  }
  if (!st->running || weft_defer(st->loop, flush_cb, st) != 0) {
    fflush(p->f);
    return 0;
  }
  lua_pushvalue(L, 1);
  st->flush_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* raise_fd_limit() -> the new soft limit: lifts the soft limit on open files to the hard one,
 * as servers do (each connection is a descriptor) */
static int l_raise_fd_limit(lua_State *L) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  lua_pushinteger(L, (lua_Integer)rl.rlim_cur);
  return 1;
}

/* The state is created once per Lua state and kept in the registry, so that requiring the
 * module again (busted insulates package.loaded per file) shares one loop. */
static weft_state_t *state_get(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, WEFT_STATE_KEY) == LUA_TLIGHTUSERDATA) {
    weft_state_t *st = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return st;
  }
  lua_pop(L, 1);
  weft_state_t *st = calloc(1, sizeof(*st));
  if (st == NULL) luaL_error(L, "weft: out of memory");
  if (weft_loop_new(&st->loop, NULL) != 0) luaL_error(L, "weft: cannot create the loop");
  st->slots_ref = LUA_NOREF;
  st->scope_pool_ref = LUA_NOREF;
  st->flush_ref = LUA_NOREF;
  st->on_error_ref = LUA_NOREF;
  lua_getglobal(L, "coroutine");
  lua_getfield(L, -1, "close");
  st->orig_close = lua_tocfunction(L, -1);
  lua_pop(L, 2);
  /* the state outlives every Lua object of weft: it is freed only with the process */
  lua_pushlightuserdata(L, st);
  lua_setfield(L, LUA_REGISTRYINDEX, WEFT_STATE_KEY);
  return st;
}

static size_t heap_bytes(lua_State *L) {
  return (size_t)lua_gc(L, LUA_GCCOUNT) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB);
}

/* Called between requests (before one starts): a collection step once young_next bytes were
 * allocated since the last collection. Lua's own trigger is a share of the heap (at least 1%):
 * with 10,000 components that is ~300 KiB of young objects, and a young generation that size
 * is swept and reused out of cache; this keeps it the same size whatever the app's.
 *
 * The step is Lua's own: the whole heap is added as debt, so Lua runs it as if its trigger had
 * fired, and makes the major collection when one is due (old objects that died are only freed
 * by those), a minor one otherwise. A step that freed less than half of what was allocated
 * since the last one found live data rather than a request's garbage (an app filling a cache;
 * or the collector, after a major collection that freed too little, doing full ones until one
 * frees enough): the next waits twice as long, up to 64 times young_bytes. */
void weft_b_young_step(weft_state_t *st) {
  if (st->young_bytes == 0) return;
  lua_State *L = st->L;
  size_t now = heap_bytes(L);
  if (now < st->young_base) { /* Lua collected since */
    st->young_base = now;
    return;
  }
  size_t grown = now - st->young_base;
  if (grown < st->young_next || !lua_gc(L, LUA_GCISRUNNING)) return;
  size_t kb = now / 1024 + 1;
  lua_gc(L, LUA_GCSTEP, kb > INT_MAX ? INT_MAX : (int)kb);
  size_t after = heap_bytes(L);
  if (after + grown / 2 > now) { /* freed less than half of it */
    if (st->young_next < st->young_bytes * 64) st->young_next *= 2;
  } else {
    st->young_next = st->young_bytes;
  }
  st->young_base = after;
}

/* gc_young(kb): between requests, a minor collection every kb KiB of allocation; 0 turns it
 * off. Only for the generational collector (weft.tune_gc switches to it and calls this). */
static int l_gc_young(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  lua_Integer kb = luaL_checkinteger(L, 1);
  luaL_argcheck(L, kb >= 0, 1, "must not be negative");
  st->young_bytes = st->young_next = (size_t)kb * 1024;
  st->young_base = heap_bytes(L);
  return 0;
}

/* table_new(narray, nhash): an empty table with room for that many entries, allocated now (the
 * same as lua_createtable). weft.di builds a singleton's instance with it right after its
 * declaration ran, so the instance sits in memory beside its methods and is never rehashed. */
static int l_table_new(lua_State *L) {
  lua_Integer na = luaL_optinteger(L, 1, 0), nh = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, na >= 0 && na <= (1 << 24), 1, "out of range");
  luaL_argcheck(L, nh >= 0 && nh <= (1 << 24), 2, "out of range");
  lua_createtable(L, (int)na, (int)nh);
  return 1;
}

int luaopen_weft_core(lua_State *L) {
  luaL_checkversion(L);
  weft_state_t *st = state_get(L);
  static const luaL_Reg fns[] = {{"run", l_run},       {"stop", l_stop},   {"now", l_now},
                                 {"hrtime", l_hrtime}, {"stats", l_stats},
                                 {"raise_fd_limit", l_raise_fd_limit}, {"etag", l_etag},
                                 {"request_id", l_request_id}, {"random_hex", l_random_hex},
                                 {"flush_soon", l_flush_soon}, {"gc_young", l_gc_young},
                                 {"table_new", l_table_new},
                                 {NULL, NULL}};
  lua_newtable(L);
  weft_b_setfuncs(L, st, fns);
  lua_pushliteral(L, WEFT_VERSION);
  lua_setfield(L, -2, "version");
  weft_b_open_context(L, st);
  weft_b_open_tasks(L, st);
  weft_b_open_http(L, st);
  weft_b_open_fs(L, st);
  weft_b_open_json(L, st);
  weft_b_open_alloc(L, st);
  weft_b_open_url(L, st);
  weft_b_open_guard(L, st);

  /* Plain coroutines keep the context they were created in: replace the global functions. */
  lua_getglobal(L, "coroutine");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -2, "coroutine");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, -5);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 1;
}
