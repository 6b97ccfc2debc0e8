/*
 * context.c — AsyncLocalStorage for Lua, and the coroutine functions that carry context.
 *
 * Store values live in the registry; a frame holds the reference as its value. When the last
 * frame holding a value dies (possibly inside a __gc, where calling back into Lua is unsafe) the
 * reference is queued on st->dead and dropped at the next safe point (weft_b_drain).
 *
 * run/exit/bind/snapshot install a frame and restore the previous one through a to-be-closed
 * scope object, so the restore happens on return, on error and after yields, without a pcall
 * per level. They are written in Lua (below, als_lua): a C function calling fn would count
 * against Lua's limit of about 200 nested C calls; Lua-to-Lua calls do not.
 */
#include "weft_lua.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct weft_als {
  weft_ctx_key_t *key;
  int default_ref; /* LUA_REFNIL when none */
  int disabled;
} weft_als_t;

typedef struct weft_scope {
  weft_state_t *st;
  weft_frame_t *prev; /* the frame to restore; owned while armed */
  int armed;
  int pooled; /* made for run/exit/bind, which never let it escape: reused once closed */
} weft_scope_t;

/* Scopes of the internal run/exit/bind wrappers never escape them, so once closed they go back
 * to a pool for the next call: a new userdata with a finaliser costs an allocation, a move to
 * the collector's finaliser list and, later, a finaliser call, about a third of a `run`.
 * A scope taken from the pool is removed from it, so one that is never closed (its coroutine
 * was abandoned inside a run) is still collected, and its finaliser releases its frame. */
#define SCOPE_POOL_MAX 64

/* ---- frame boxes ---- */

void weft_b_push_framebox(lua_State *L, weft_frame_t *f) {
  weft_frame_t **box = lua_newuserdatauv(L, sizeof(*box), 0);
  *box = f;
  luaL_setmetatable(L, WEFT_FRAMEBOX_MT);
}

weft_frame_t *weft_b_check_framebox(lua_State *L, int idx) {
  return *(weft_frame_t **)luaL_checkudata(L, idx, WEFT_FRAMEBOX_MT);
}

static int framebox_gc(lua_State *L) {
  weft_frame_t **box = lua_touserdata(L, 1);
  weft_frame_release(*box);
  *box = NULL;
  return 0;
}

/* ---- slots ---- */

static int slot_gc(lua_State *L) {
  weft_slot_t *s = lua_touserdata(L, 1);
  weft_frame_release(s->frame);
  s->frame = NULL;
  return 0;
}

weft_slot_t *weft_b_slot_new(lua_State *L, weft_state_t *st, lua_State *co) {
  /* expects the thread `co` at the top of L */
  lua_rawgeti(L, LUA_REGISTRYINDEX, st->slots_ref);
  lua_pushvalue(L, -2);
  weft_slot_t *s = lua_newuserdatauv(L, sizeof(*s), 0);
  s->frame = NULL;
  s->task = NULL;
  luaL_setmetatable(L, WEFT_SLOT_MT);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  (void)co;
  return s;
}

static weft_slot_t *slot_lookup(lua_State *L, weft_state_t *st, int idx) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, st->slots_ref);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  weft_slot_t *s = lua_touserdata(L, -1);
  lua_pop(L, 2);
  return s;
}

int weft_b_resume(weft_state_t *st, lua_State *co, weft_slot_t *s, lua_State *from, int nargs,
                  int *nres) {
  lua_State *saved_co = st->running_co;
  st->running_co = co;
  if (s == NULL) {
    int status = lua_resume(co, from, nargs, nres);
    st->running_co = saved_co;
    return status;
  }
  weft_frame_t *f = s->frame;
  s->frame = NULL;
  weft_frame_t *saved = weft_ctx_swap(st->loop, f);
  weft_task_t *saved_task = st->task;
  if (s->task != NULL) st->task = s->task;
  int status = lua_resume(co, from, nargs, nres);
  st->task = saved_task;
  st->running_co = saved_co;
  s->frame = weft_ctx_swap(st->loop, saved);
  return status;
}

/* ---- scoped calls: run fn with `frame` current, restoring on return, error or close ---- */

static int scope_close(lua_State *L) {
  weft_scope_t *s = lua_touserdata(L, 1);
  if (!s->armed) return 0;
  s->armed = 0;
  weft_frame_release(weft_ctx_swap(s->st->loop, s->prev));
  s->prev = NULL;
  weft_state_t *st = s->st;
  if (s->pooled && st->nscope_pool < SCOPE_POOL_MAX && st->scope_pool_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->scope_pool_ref);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, st->nscope_pool + 1); /* may raise (memory): count only once stored */
    st->nscope_pool++;
    lua_pop(L, 1);
  }
  return 0;
}

static int scope_gc(lua_State *L) {
  /* never closed (its coroutine was abandoned): only drop the reference */
  weft_scope_t *s = lua_touserdata(L, 1);
  if (s->armed) {
    s->armed = 0;
    weft_frame_release(s->prev);
    s->prev = NULL;
  }
  return 0;
}

/* A new disarmed scope, pushed. `fast`: the caller is an ALS method, whose upvalue 3 is the
 * scope metatable (no lookup by name). */
static weft_scope_t *scope_new(lua_State *L, weft_state_t *st, int fast) {
  weft_scope_t *s = lua_newuserdatauv(L, sizeof(*s), 0);
  s->st = st;
  s->prev = NULL;
  s->armed = 0;
  s->pooled = 0;
  if (fast) {
    lua_pushvalue(L, lua_upvalueindex(3));
    lua_setmetatable(L, -2);
  } else {
    luaL_setmetatable(L, WEFT_SCOPE_MT);
  }
  return s;
}

/* A disarmed scope for run/exit/bind, from the pool or new; pushed. `fast`: the caller is an
 * ALS method (its upvalue 3 is the scope metatable). */
static weft_scope_t *scope_take(lua_State *L, weft_state_t *st, int fast) {
  if (st->nscope_pool > 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->scope_pool_ref);
    lua_rawgeti(L, -1, st->nscope_pool);
    lua_pushnil(L);
    lua_rawseti(L, -3, st->nscope_pool--);
    lua_remove(L, -2);
    weft_scope_t *s = lua_touserdata(L, -1);
    if (s != NULL) return s;
    lua_pop(L, 1); /* never expected: a hole in the pool; make a new scope instead */
  }
  weft_scope_t *s = scope_new(L, st, fast);
  s->pooled = 1;
  return s;
}

/* ---- store values ---- */

static void *store_ref(lua_State *L, int idx) {
  if (lua_isnil(L, idx)) return NULL;
  lua_pushvalue(L, idx);
  return (void *)(intptr_t)luaL_ref(L, LUA_REGISTRYINDEX);
}

static void store_free(void *value, void *ud) {
  weft_state_t *st = ud;
  if (st->ndead == st->capdead) {
    size_t cap = st->capdead ? st->capdead * 2 : 64;
    int *p = realloc(st->dead, cap * sizeof(*p));
    if (p == NULL) return; /* the reference stays: a leak, never a crash */
    st->dead = p;
    st->capdead = cap;
  }
  st->dead[st->ndead++] = (int)(intptr_t)value;
}

/* ---- AsyncLocalStorage ---- */

static weft_als_t *check_als(lua_State *L) { return luaL_checkudata(L, 1, WEFT_ALS_MT); }

/* check_als for the hot path: the metatable is compared with upvalue 2 instead of being looked
 * up by name in the registry; anything else gets check_als's error */
static weft_als_t *fast_als(lua_State *L) {
  weft_als_t *a = lua_touserdata(L, 1);
  if (a != NULL && lua_getmetatable(L, 1)) {
    int ok = lua_rawequal(L, -1, lua_upvalueindex(2));
    lua_pop(L, 1);
    if (ok) return a;
  }
  return check_als(L);
}

static int als_new(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  /* accepts AsyncLocalStorage.new(opts) and AsyncLocalStorage:new(opts) */
  int arg = lua_rawequal(L, 1, lua_upvalueindex(2)) ? 2 : 1;
  lua_settop(L, arg); /* the options (or nil) sit at `arg`, below what is pushed next */
  weft_als_t *a = lua_newuserdatauv(L, sizeof(*a), 1);
  a->key = NULL;
  a->default_ref = LUA_REFNIL;
  a->disabled = 0;
  luaL_setmetatable(L, WEFT_ALS_MT);
  if (lua_istable(L, arg)) {
    lua_getfield(L, arg, "defaultValue");
    a->default_ref = lua_isnil(L, -1) ? (lua_pop(L, 1), LUA_REFNIL) : luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, arg, "name");
    if (!lua_isnil(L, -1) && !lua_isstring(L, -1)) return luaL_error(L, "AsyncLocalStorage name must be a string");
    lua_setiuservalue(L, -2, 1);
  } else if (!lua_isnoneornil(L, arg)) {
    return luaL_argerror(L, arg, "options table expected");
  }
  a->key = weft_ctx_key_new(store_free, st);
  return 1;
}

static int als_gc(lua_State *L) {
  weft_als_t *a = lua_touserdata(L, 1);
  if (a->key) weft_ctx_key_release(a->key);
  a->key = NULL;
  if (a->default_ref != LUA_REFNIL) luaL_unref(L, LUA_REGISTRYINDEX, a->default_ref);
  a->default_ref = LUA_REFNIL;
  return 0;
}

static int als_tostring(lua_State *L) {
  check_als(L);
  lua_getiuservalue(L, 1, 1);
  if (lua_isnil(L, -1))
    lua_pushfstring(L, "AsyncLocalStorage: %p", lua_touserdata(L, 1));
  else
    lua_pushfstring(L, "AsyncLocalStorage(%s)", lua_tostring(L, -1));
  return 1;
}

static int als_name(lua_State *L) {
  check_als(L);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int als_getStore(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  weft_als_t *a = fast_als(L);
  void *v;
  if (a->disabled) {
    lua_pushnil(L);
  } else if (weft_frame_get(weft_ctx_current(st->loop), a->key, &v)) {
    if (v == NULL)
      lua_pushnil(L);
    else
      lua_rawgeti(L, LUA_REGISTRYINDEX, (lua_Integer)(intptr_t)v);
  } else if (a->default_ref != LUA_REFNIL) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->default_ref);
  } else {
    lua_pushnil(L);
  }
  return 1;
}

static int als_enterWith(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  weft_als_t *a = fast_als(L);
  luaL_checkany(L, 2);
  if (st->ndead) weft_b_drain(L, st);
  void *v = store_ref(L, 2);
  a->disabled = 0;
  weft_frame_t *f = weft_frame_with(weft_ctx_current(st->loop), a->key, v);
  weft_frame_release(weft_ctx_swap(st->loop, f));
  return 0;
}

static int with_scope(lua_State *L, int pooled) {
  weft_state_t *st = weft_b_state(L);
  weft_als_t *a = fast_als(L);
  luaL_checkany(L, 2);
  if (st->ndead) weft_b_drain(L, st);
  weft_scope_t *s = pooled ? scope_take(L, st, 1) : scope_new(L, st, 1);
  void *v = store_ref(L, 2);
  a->disabled = 0;
  s->prev = weft_ctx_swap(st->loop, weft_frame_with(weft_ctx_current(st->loop), a->key, v));
  s->armed = 1;
  return 1;
}

/* withScope(store) -> a scope (the user's: it may be kept, so it is never reused) */
static int als_withScope(lua_State *L) { return with_scope(L, 0); }

/* runScope(store) -> a pooled scope: the core of run, which never lets it escape */
static int als_runScope(lua_State *L) { return with_scope(L, 1); }

/* exitScope() -> a pooled scope in which this instance has no store (the core of exit) */
static int als_exitScope(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  weft_als_t *a = fast_als(L);
  weft_scope_t *s = scope_take(L, st, 1);
  s->prev = weft_ctx_swap(st->loop, weft_frame_with(weft_ctx_current(st->loop), a->key, NULL));
  s->armed = 1;
  return 1;
}

/* capture() -> the current frame, boxed */
static int l_capture(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  weft_b_push_framebox(L, weft_frame_retain(weft_ctx_current(st->loop)));
  return 1;
}

/* enterFrame(box) -> a scope in which the boxed frame is current */
static int l_enter_frame(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  weft_frame_t *f = weft_b_check_framebox(L, 1);
  weft_scope_t *s = scope_take(L, st, 0);
  s->prev = weft_ctx_swap(st->loop, weft_frame_retain(f));
  s->armed = 1;
  return 1;
}

static int als_disable(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  weft_als_t *a = check_als(L);
  a->disabled = 1;
  weft_frame_disable(weft_ctx_current(st->loop), a->key);
  return 0;
}

/* ---- coroutines: create/wrap/resume/close that carry context ---- */

static int co_create(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  weft_slot_t *s = weft_b_slot_new(L, st, co);
  s->frame = weft_frame_retain(weft_ctx_current(st->loop));
  return 1;
}

/* Resumes co with narg values from L; returns the number of results moved to L, -1 with an
 * error value on L, or -2 when co is waiting on weft's scheduler (sleep, body read, ...), in
 * which case the suspend sentinel is on L, ready to be yielded further up. */
static int auxresume(lua_State *L, weft_state_t *st, weft_slot_t *s, lua_State *co, int narg) {
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  if (lua_status(co) == LUA_OK && lua_gettop(co) == 0) {
    lua_pushliteral(L, "cannot resume dead coroutine");
    return -1;
  }
  lua_xmove(L, co, narg);
  int nres;
  int status = weft_b_resume(st, co, s, L, narg, &nres);
  if (status == LUA_OK || status == LUA_YIELD) {
    if (status == LUA_YIELD && nres == 1 && lua_touserdata(co, -1) == &weft_b_suspend_sentinel) {
      lua_xmove(co, L, 1);
      return -2;
    }
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      return -1;
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1);
  return -1;
}

static int co_resume_k(lua_State *L, int status, lua_KContext ctx);

/* Yields the scheduler's sentinel further up, so that a task waiting inside a nested coroutine
 * suspends as a whole; when the task resumes, the values go down to the waiting coroutine. */
static int propagate_wait(lua_State *L, lua_KContext ctx, lua_KFunction k) {
  if (!lua_isyieldable(L)) {
    /* the task goes on running with an error: it no longer waits, and the continuation it
     * registered must not resume it later (the token moves on) */
    weft_state_t *st = weft_b_state(L);
    if (st->task != NULL) {
      weft_b_cancel_wait(st->task);
      weft_b_task_bump_token(st->task);
    }
    return luaL_error(L, "weft: a coroutine waiting on weft (sleep, body read, join, ...) was "
                         "resumed from code that cannot yield");
  }
  return lua_yieldk(L, 1, ctx, k);
}

static int co_resume_body(lua_State *L, weft_state_t *st) {
  lua_State *co = lua_tothread(L, 1);
  weft_slot_t *s = slot_lookup(L, st, 1);
  int r = auxresume(L, st, s, co, lua_gettop(L) - 1);
  if (r == -2) return propagate_wait(L, 0, co_resume_k);
  if (r < 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}

static int co_resume_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return co_resume_body(L, weft_b_state(L));
}

static int co_resume(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  luaL_argexpected(L, lua_tothread(L, 1) != NULL, 1, "coroutine");
  return co_resume_body(L, st);
}

/* Closes co's pending to-be-closed variables in co's own context. */
static int close_in_context(lua_State *L, weft_state_t *st, int idx, weft_slot_t *s) {
  lua_pushcfunction(L, st->orig_close);
  lua_pushvalue(L, idx);
  weft_frame_t *saved = NULL;
  if (s != NULL) {
    saved = weft_ctx_swap(st->loop, s->frame);
    s->frame = NULL;
  }
  int rc = lua_pcall(L, 1, LUA_MULTRET, 0);
  if (s != NULL) s->frame = weft_ctx_swap(st->loop, saved);
  return rc;
}

static int co_close(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  luaL_argexpected(L, lua_tothread(L, 1) != NULL, 1, "coroutine");
  int top = lua_gettop(L);
  if (close_in_context(L, st, 1, slot_lookup(L, st, 1)) != LUA_OK) return lua_error(L);
  return lua_gettop(L) - top;
}

static int co_wrap_k(lua_State *L, int status, lua_KContext ctx);

static int co_wrap_body(lua_State *L, weft_state_t *st) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(2));
  weft_slot_t *s = lua_touserdata(L, lua_upvalueindex(3));
  int r = auxresume(L, st, s, co, lua_gettop(L));
  if (r == -2) return propagate_wait(L, 0, co_wrap_k);
  if (r < 0) {
    int stat = lua_status(co);
    if (stat != LUA_OK && stat != LUA_YIELD) { /* an error in the coroutine: close it */
      int top = lua_gettop(L);
      close_in_context(L, st, lua_upvalueindex(2), s);
      lua_settop(L, top);
    }
    if (lua_type(L, -1) == LUA_TSTRING) {
      luaL_where(L, 1);
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
  return r;
}

static int co_wrap_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return co_wrap_body(L, weft_b_state(L));
}

static int co_wrap_call(lua_State *L) { return co_wrap_body(L, weft_b_state(L)); }

static int co_wrap(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  weft_slot_t *s = weft_b_slot_new(L, st, co);
  s->frame = weft_frame_retain(weft_ctx_current(st->loop));
  lua_pushlightuserdata(L, s); /* the slot lives as long as the thread, an upvalue here */
  lua_pushcclosure(L, co_wrap_call, 3);
  return 1;
}

void weft_b_drain(lua_State *L, weft_state_t *st) {
  while (st->ndead > 0) luaL_unref(L, LUA_REGISTRYINDEX, st->dead[--st->ndead]);
}

static int ctx_live_frames(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)weft_ctx_live_frames());
  return 1;
}

static const char als_lua[] =
    "local class, methods = ...\n"
    "local runScope, exitScope = methods.runScope, methods.exitScope\n"
    "local capture, enterFrame = class.capture, class.enterFrame\n"
    "-- the pooled scopes must never escape: these stay private to this chunk\n"
    "methods.runScope, methods.exitScope, class.capture, class.enterFrame = nil, nil, nil, nil\n"
    "function methods.run(self, store, fn, ...)\n"
    "  local _ <close> = runScope(self, store)\n"
    "  return fn(...)\n"
    "end\n"
    "function methods.exit(self, fn, ...)\n"
    "  local _ <close> = exitScope(self)\n"
    "  return fn(...)\n"
    "end\n"
    "function class.bind(fn)\n"
    "  local frame = capture()\n"
    "  return function(...)\n"
    "    local _ <close> = enterFrame(frame)\n"
    "    return fn(...)\n"
    "  end\n"
    "end\n"
    "function class.snapshot()\n"
    "  local frame = capture()\n"
    "  return function(fn, ...)\n"
    "    local _ <close> = enterFrame(frame)\n"
    "    return fn(...)\n"
    "  end\n"
    "end\n";

void weft_b_open_context(lua_State *L, weft_state_t *st) {
  /* module table at -1 */
  luaL_newmetatable(L, WEFT_FRAMEBOX_MT);
  lua_pushcfunction(L, framebox_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, WEFT_SLOT_MT);
  lua_pushcfunction(L, slot_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, WEFT_SCOPE_MT);
  lua_pushcfunction(L, scope_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, scope_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);

  if (st->scope_pool_ref == LUA_NOREF) {
    lua_newtable(L);
    st->scope_pool_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (st->slots_ref == LUA_NOREF) {
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    st->slots_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }

  /* the AsyncLocalStorage class: a table with new/bind/snapshot; instances are userdata */
  lua_newtable(L); /* class */
  int is_new = luaL_newmetatable(L, WEFT_ALS_MT);
  (void)is_new;
  static const luaL_Reg methods[] = {{"exitScope", als_exitScope},
                                     {"getStore", als_getStore},
                                     {"enterWith", als_enterWith},
                                     {"withScope", als_withScope},
                                     {"runScope", als_runScope},
                                     {"disable", als_disable},
                                     {"name", als_name},
                                     {NULL, NULL}};
  /* methods' upvalues: the state, this metatable (fast_als) and the scope metatable */
  lua_newtable(L);
  lua_pushlightuserdata(L, st);
  lua_pushvalue(L, -3);
  luaL_getmetatable(L, WEFT_SCOPE_MT);
  luaL_setfuncs(L, methods, 3);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, als_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, als_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "AsyncLocalStorage");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
  static const luaL_Reg statics[] = {{"capture", l_capture}, {"enterFrame", l_enter_frame}, {NULL, NULL}};
  weft_b_setfuncs(L, st, statics);
  /* new: upvalues state and the class table itself (to accept both . and : calls) */
  lua_pushlightuserdata(L, st);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, als_new, 2);
  lua_setfield(L, -2, "new");
  /* run/exit/bind/snapshot are Lua functions around a to-be-closed scope: calls between Lua
   * functions use no C stack, so runs nest 10,000 deep, and fn may yield anywhere inside. */
  luaL_getmetatable(L, WEFT_ALS_MT);
  lua_getfield(L, -1, "__index");
  lua_remove(L, -2);
  if (luaL_loadbuffer(L, als_lua, sizeof(als_lua) - 1, "=weft.core.AsyncLocalStorage") != LUA_OK)
    lua_error(L);
  lua_pushvalue(L, -3); /* class */
  lua_pushvalue(L, -3); /* methods */
  lua_call(L, 2, 0);
  lua_pop(L, 1);
  lua_setfield(L, -2, "AsyncLocalStorage");

  /* coroutine functions that carry context; weft.core installs them into `coroutine` */
  lua_newtable(L);
  static const luaL_Reg cofns[] = {{"create", co_create},
                                   {"resume", co_resume},
                                   {"wrap", co_wrap},
                                   {"close", co_close},
                                   {NULL, NULL}};
  weft_b_setfuncs(L, st, cofns);
  lua_setfield(L, -2, "coroutine");

  lua_pushcfunction(L, ctx_live_frames);
  lua_setfield(L, -2, "live_frames");
}
