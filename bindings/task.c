/*
 * task.c — the task scheduler: one coroutine per task (pooled workers), the suspend/resume
 * protocol between Lua and loop callbacks, timers, and error reporting.
 *
 * A worker coroutine runs jobs in a loop: it calls fn(...) under lua_pcallk with a message
 * handler, then yields (DONE, ok, results...) and waits for the next job, so finished tasks
 * give their coroutine back to the pool. A task that waits (sleep, suspend, join, body read,
 * write backpressure) yields the suspend sentinel; nested plain coroutines pass it upwards (see
 * context.c). Every wait takes a fresh token; a continuation resumes the task only if it is
 * still waiting on that token, so a late timer can never resume a task that moved on.
 */
#include "weft_lua.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char weft_b_suspend_sentinel;
static char done_sentinel;

enum { T_NEW, T_RUNNING, T_WAITING, T_DONE };
enum { W_NONE, W_SLEEP, W_SUSPEND, W_JOIN, W_OTHER };

typedef struct joiner {
  weft_task_t *t;
  uint32_t token;
} joiner_t;

struct weft_task {
  weft_state_t *st;
  lua_State *co;      /* the worker while bound */
  weft_slot_t *slot;  /* the worker's slot */
  int co_ref;         /* registry reference of the worker while bound */
  int self_ref;       /* anchors this userdata until done and unpinned */
  int pins;
  uint32_t token;
  int state;
  int wait_kind;
  int wake_pending;
  int ok;
  int has_results;    /* the userdata's user value holds {n=, ...} or the error record */
  joiner_t *joiners;
  size_t njoiners, capjoiners;
  weft_b_done_cb on_done;
  void *done_ud;
};

/* A continuation's claim on a task: resumes it only if it still waits on `token`. */
typedef struct waker {
  struct waker *next;
  weft_state_t *st;
  weft_task_t *t;
  uint32_t token;
  int vals_ref; /* packed values to resume with, or LUA_NOREF */
} waker_t;

static waker_t *waker_free_list;

static waker_t *waker_new(lua_State *L, weft_state_t *st, weft_task_t *t, uint32_t token) {
  waker_t *w = waker_free_list;
  if (w != NULL)
    waker_free_list = w->next;
  else if ((w = malloc(sizeof(*w))) == NULL)
    luaL_error(L, "weft: out of memory");
  w->st = st;
  w->t = t;
  w->token = token;
  w->vals_ref = LUA_NOREF;
  weft_b_task_pin(L, t);
  return w;
}

static void waker_free(lua_State *L, waker_t *w) {
  weft_b_task_unpin(L, w->t);
  w->next = waker_free_list;
  waker_free_list = w;
}

/* ---- tasks ---- */

void weft_b_task_pin(lua_State *L, weft_task_t *t) {
  (void)L;
  t->pins++;
}

static void task_maybe_unanchor(lua_State *L, weft_task_t *t) {
  if (t->state == T_DONE && t->pins == 0 && t->self_ref != LUA_NOREF) {
    int ref = t->self_ref;
    t->self_ref = LUA_NOREF;
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
  }
}

void weft_b_task_unpin(lua_State *L, weft_task_t *t) {
  t->pins--;
  task_maybe_unanchor(L, t);
}

/* A task has no finaliser: its results are its user value (the collector frees them with it)
 * and its joiner list is freed when it finishes; until then the task is anchored by self_ref,
 * so it cannot be collected first. (A finaliser on the userdata made each request task cost a
 * move to the finaliser list and a call at collection.) */
static weft_task_t *task_new(lua_State *L, weft_state_t *st) {
  weft_task_t *t = lua_newuserdatauv(L, sizeof(*t), 1);
  memset(t, 0, sizeof(*t));
  t->st = st;
  t->co_ref = LUA_NOREF;
  t->state = T_NEW;
  luaL_setmetatable(L, WEFT_TASK_MT);
  lua_pushvalue(L, -1);
  t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  st->tasks_live++;
  return t;
}

/* message handler: the error record {error, traceback, frame} is made where the error happened,
 * so on_error can run in the failing code's context */
static int msgh(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  lua_createtable(L, 0, 3);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "error");
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) msg = luaL_tolstring(L, 1, NULL), lua_pop(L, 1), msg = lua_tostring(L, 1);
  if (msg == NULL) {
    luaL_tolstring(L, 1, NULL);
    luaL_traceback(L, L, lua_tostring(L, -1), 1);
    lua_remove(L, -2);
  } else {
    luaL_traceback(L, L, msg, 1);
  }
  lua_setfield(L, -2, "traceback");
  weft_b_push_framebox(L, weft_frame_retain(weft_ctx_current(st->loop)));
  lua_setfield(L, -2, "frame");
  return 1;
}

static int worker_run(lua_State *L);

static int worker_next(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return worker_run(L); /* the stack holds the next job: fn, args... */
}

static int worker_done(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  /* stack: msgh, results... (or msgh, error record); LUA_YIELD: fn returned after yielding */
  lua_pushboolean(L, status == LUA_OK || status == LUA_YIELD);
  lua_replace(L, 1);
  lua_pushlightuserdata(L, &done_sentinel);
  lua_insert(L, 1);
  return lua_yieldk(L, lua_gettop(L), 0, worker_next);
}

static int worker_run(lua_State *L) {
  int nargs = lua_gettop(L) - 1;
  lua_pushvalue(L, lua_upvalueindex(2)); /* msgh */
  lua_insert(L, 1);
  int status = lua_pcallk(L, nargs, LUA_MULTRET, 1, 0, worker_done);
  return worker_done(L, status, 0);
}

/* Binds a worker coroutine to t (from the pool or new); its frame is the current one. */
static void task_bind_worker(lua_State *L, weft_state_t *st, weft_task_t *t) {
  if (st->npool > 0) {
    t->co_ref = st->pool[--st->npool];
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->co_ref);
    t->co = lua_tothread(L, -1);
    t->slot = NULL;
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->slots_ref);
    lua_pushvalue(L, -2);
    lua_rawget(L, -2);
    t->slot = lua_touserdata(L, -1);
    lua_pop(L, 3);
  } else {
    lua_State *co = lua_newthread(L);
    lua_pushlightuserdata(co, st);
    lua_pushlightuserdata(co, st);
    lua_pushcclosure(co, msgh, 1);
    lua_pushcclosure(co, worker_run, 2);
    t->slot = weft_b_slot_new(L, st, co);
    t->co = co;
    t->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  t->slot->task = t;
  t->slot->frame = weft_frame_retain(weft_ctx_current(st->loop));
}

static void task_release_worker(lua_State *L, weft_state_t *st, weft_task_t *t, int reusable) {
  weft_slot_t *s = t->slot;
  s->task = NULL;
  weft_frame_release(s->frame); /* nothing of a finished task stays pinned */
  s->frame = NULL;
  if (reusable && st->npool < 256) {
    if (st->npool == st->cappool) {
      size_t cap = st->cappool ? st->cappool * 2 : 32;
      int *p = realloc(st->pool, cap * sizeof(*p));
      if (p == NULL) goto drop;
      st->pool = p;
      st->cappool = cap;
    }
    st->pool[st->npool++] = t->co_ref;
  } else {
  drop:
    luaL_unref(L, LUA_REGISTRYINDEX, t->co_ref);
  }
  t->co = NULL;
  t->slot = NULL;
  t->co_ref = LUA_NOREF;
}

void weft_b_report_error(weft_state_t *st, int idx) {
  lua_State *L = st->L;
  idx = lua_absindex(L, idx);
  lua_getfield(L, idx, "frame");
  weft_frame_t *f = lua_isuserdata(L, -1) ? *(weft_frame_t **)lua_touserdata(L, -1) : NULL;
  lua_pop(L, 1);
  weft_frame_t *prev = weft_ctx_swap(st->loop, weft_frame_retain(f));
  int handled = 0;
  if (st->on_error_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->on_error_ref);
    lua_getfield(L, idx, "error");
    lua_getfield(L, idx, "traceback");
    if (lua_pcall(L, 2, 0, 0) == LUA_OK) {
      handled = 1;
    } else {
      fprintf(stderr, "weft: the on_error handler raised: %s\n", luaL_tolstring(L, -1, NULL));
      lua_pop(L, 2);
    }
  }
  if (!handled) {
    lua_getfield(L, idx, "traceback");
    fprintf(stderr, "weft: unhandled error in a task: %s\n", lua_tostring(L, -1));
    fflush(stderr);
    lua_pop(L, 1);
  }
  weft_frame_release(weft_ctx_swap(st->loop, prev));
}

static void wake_joiners(weft_state_t *st, weft_task_t *t);
void weft_b_wake_cb(void *data);

/* The worker yielded (DONE, ok, results...): record the outcome and recycle the worker. */
static void task_finish(weft_state_t *st, weft_task_t *t, int nres, int reusable) {
  lua_State *L = st->L, *co = t->co;
  int base = lua_gettop(co) - nres; /* base+1: DONE, base+2: ok, base+3...: results */
  int ok = lua_toboolean(co, base + 2);
  int n = nres - 2;
  if (ok && t->on_done != NULL) {
    /* a request task: nobody joins it for results; skip the table */
    lua_settop(co, base);
  } else {
    lua_createtable(L, n, 1);
    for (int i = 1; i <= n; i++) {
      lua_pushvalue(co, base + 2 + i);
      lua_xmove(co, L, 1);
      lua_rawseti(L, -2, i);
    }
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
    lua_settop(co, base);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref); /* anchored until it is done */
    lua_insert(L, -2);
    lua_setiuservalue(L, -2, 1);
    lua_pop(L, 1);
    t->has_results = 1;
  }
  t->ok = ok;
  t->state = T_DONE;
  task_release_worker(L, st, t, reusable);
  st->tasks_live--;
  t->pins++; /* keep t while reporting and waking */
  if (!ok && t->njoiners == 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
    lua_getiuservalue(L, -1, 1);
    lua_rawgeti(L, -1, 1);
    if (lua_istable(L, -1)) weft_b_report_error(st, -1);
    lua_pop(L, 3);
  }
  wake_joiners(st, t);
  if (t->on_done) t->on_done(st, t, t->done_ud);
  weft_b_task_unpin(L, t);
}

/* Resumes t's worker with nargs values already on its stack, then handles how it stopped. */
static void task_resume_co(weft_state_t *st, weft_task_t *t, int nargs) {
  lua_State *L = st->L, *co = t->co;
  t->state = T_RUNNING;
  t->wait_kind = W_NONE;
  int nres = 0;
  st->resume_seq++;
  st->tasks_running++;
  int status = weft_b_resume(st, co, t->slot, L, nargs, &nres);
  st->tasks_running--;
  if (status == LUA_YIELD) {
    void *first = nres >= 1 ? lua_touserdata(co, -nres) : NULL;
    if (first == &done_sentinel) {
      task_finish(st, t, nres, 1);
    } else if (nres == 1 && first == &weft_b_suspend_sentinel) {
      lua_pop(co, 1); /* the task waits; its continuation is registered */
    } else {
      /* a bare coroutine.yield() at the task's top level: resume on the next turn */
      lua_pop(co, nres);
      t->token++;
      t->state = T_WAITING;
      t->wait_kind = W_OTHER;
      waker_t *w = waker_new(L, st, t, t->token);
      weft_defer(st->loop, weft_b_wake_cb, w);
    }
  } else if (status != LUA_OK) {
    /* an error escaped the worker itself (out of memory in the handler): the worker is dead */
    lua_createtable(co, 0, 2);
    lua_pushvalue(co, -2);
    lua_setfield(co, -2, "error");
    luaL_traceback(co, co, lua_tostring(co, -2), 0);
    lua_setfield(co, -2, "traceback");
    lua_remove(co, -2);
    lua_pushlightuserdata(co, &done_sentinel);
    lua_pushboolean(co, 0);
    lua_rotate(co, -3, 2);
    task_finish(st, t, 3, 0);
  } else {
    /* the worker returned: cannot happen (it loops); treat as a finished task */
    lua_pop(co, nres);
    lua_pushlightuserdata(co, &done_sentinel);
    lua_pushboolean(co, 1);
    task_finish(st, t, 2, 0);
  }
  if (st->ndead) weft_b_drain(L, st);
}

/* Resumes t's worker with nargs values moved from the top of st->L. */
static void task_resume(weft_state_t *st, weft_task_t *t, int nargs) {
  lua_xmove(st->L, t->co, nargs);
  task_resume_co(st, t, nargs);
}

void weft_b_resume_waiter(weft_state_t *st, weft_task_t *t, uint32_t token, int nvals) {
  if (t->state == T_WAITING && t->token == token)
    task_resume(st, t, nvals);
  else
    lua_pop(st->L, nvals);
}

static void wake_now(weft_state_t *st, void *data) {
  waker_t *w = data;
  lua_State *L = st->L;
  int n = 0;
  if (w->vals_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->vals_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, w->vals_ref);
    lua_getfield(L, -1, "n");
    n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n, "too many values to wake with");
    for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
    lua_remove(L, -(n + 1));
  }
  if (w->t->wait_kind == W_SUSPEND) w->t->wake_pending = 0;
  weft_b_resume_waiter(st, w->t, w->token, n);
}

/* A waker fired (a deferred callback or a timer): resume its task with the packed values, if
 * any. */
void weft_b_wake_cb(void *data) {
  waker_t *w = data;
  weft_state_t *st = w->st;
  if (weft_b_protect(st, wake_now, w, "resuming a task") != LUA_OK)
    weft_b_resume_failed(st, w->t, w->token); /* without the values it was to get */
  waker_free(st->L, w);
}

static void wake_joiners(weft_state_t *st, weft_task_t *t) {
  for (size_t i = 0; i < t->njoiners; i++) {
    waker_t *w = waker_new(st->L, st, t->joiners[i].t, t->joiners[i].token);
    weft_b_task_unpin(st->L, t->joiners[i].t); /* the waker holds it now */
    weft_defer(st->loop, weft_b_wake_cb, w);
  }
  t->njoiners = 0;
  free(t->joiners); /* joins of a finished task answer at once: the list is done with */
  t->joiners = NULL;
  t->capjoiners = 0;
}

uint32_t weft_b_prepare_wait(lua_State *L, weft_state_t *st, weft_task_t **out, const char *what) {
  weft_task_t *t = st->task;
  if (t == NULL)
    luaL_error(L, "%s must be called inside a task (a request handler, weft.spawn or a timer)",
               what);
  if (!lua_isyieldable(L))
    luaL_error(L, "%s cannot suspend here: it was called across a C boundary (a metamethod, "
                  "a C function or a non-weft coroutine)", what);
  t->token++;
  t->state = T_WAITING;
  t->wait_kind = W_OTHER;
  *out = t;
  return t->token;
}

void weft_b_cancel_wait(weft_task_t *t) {
  t->state = T_RUNNING;
  t->wait_kind = W_NONE;
}

void weft_b_task_bump_token(weft_task_t *t) { t->token++; }

int weft_b_yield_wait(lua_State *L) {
  lua_pushlightuserdata(L, &weft_b_suspend_sentinel);
  return lua_yield(L, 1);
}

/* ---- starting tasks ---- */

static void start_now(weft_state_t *st, void *data) {
  weft_task_t *t = ((waker_t *)data)->t;
  lua_State *co = t->co;
  /* fn and its arguments already wait on the worker's stack; a new worker also holds its
   * body below them */
  int nargs = lua_status(co) == LUA_OK ? lua_gettop(co) - 1 : lua_gettop(co);
  task_resume_co(st, t, nargs);
}

static void start_cb(void *data) {
  waker_t *w = data;
  weft_state_t *st = w->st;
  weft_b_protect(st, start_now, w, "starting a task");
  waker_free(st->L, w);
}

weft_task_t *weft_b_spawn(lua_State *L, weft_state_t *st, int nargs) {
  /* fn and args on top of L */
  luaL_checkstack(L, 4, NULL);
  weft_task_t *t = task_new(L, st); /* pushes the task */
  task_bind_worker(L, st, t);
  lua_insert(L, -(nargs + 2)); /* task below fn */
  lua_xmove(L, t->co, nargs + 1);
  waker_t *w = waker_new(L, st, t, 0);
  weft_defer(st->loop, start_cb, w);
  return t;
}

weft_task_t *weft_b_start_prepare(weft_state_t *st, weft_b_done_cb on_done, void *ud) {
  lua_State *L = st->L;
  weft_task_t *t = task_new(L, st);
  t->on_done = on_done;
  t->done_ud = ud;
  task_bind_worker(L, st, t);
  lua_pop(L, 1); /* the task userdata: anchored by self_ref */
  return t;
}

void weft_b_start_run(weft_state_t *st, weft_task_t *t, int nargs) { task_resume(st, t, nargs + 1); }

void weft_b_start_now(weft_state_t *st, int nargs, weft_b_done_cb on_done, void *ud) {
  weft_b_start_run(st, weft_b_start_prepare(st, on_done, ud), nargs);
}

/* ---- Lua API ---- */

static weft_task_t *check_task(lua_State *L, int idx) { return luaL_checkudata(L, idx, WEFT_TASK_MT); }

static int l_spawn(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  luaL_checkany(L, 1);
  weft_b_spawn(L, st, lua_gettop(L) - 1);
  return 1;
}

/* the results of t, the task at index 1 */
static int push_results(lua_State *L, weft_task_t *t) {
  if (!t->has_results) return 0;
  lua_getiuservalue(L, 1, 1);
  if (!t->ok) {
    lua_rawgeti(L, -1, 1);
    if (lua_istable(L, -1)) lua_getfield(L, -1, "error");
    return lua_error(L);
  }
  lua_getfield(L, -1, "n");
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n, "too many results to join");
  int tbl = lua_gettop(L);
  for (int i = 1; i <= n; i++) lua_rawgeti(L, tbl, i);
  return n;
}

static int join_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return push_results(L, check_task(L, 1));
}

static int task_join(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  weft_task_t *t = check_task(L, 1);
  lua_settop(L, 1);
  if (t->state == T_DONE) return push_results(L, t);
  if (st->task == t) return luaL_error(L, "a task cannot join itself");
  weft_task_t *me;
  uint32_t token = weft_b_prepare_wait(L, st, &me, "task:join()");
  me->wait_kind = W_JOIN;
  if (t->njoiners == t->capjoiners) {
    size_t cap = t->capjoiners ? t->capjoiners * 2 : 4;
    joiner_t *p = realloc(t->joiners, cap * sizeof(*p));
    if (p == NULL) return luaL_error(L, "out of memory");
    t->joiners = p;
    t->capjoiners = cap;
  }
  t->joiners[t->njoiners++] = (joiner_t){me, token};
  weft_b_task_pin(L, me); /* the joiner must outlive its entry, even if it stops waiting */
  lua_pushlightuserdata(L, &weft_b_suspend_sentinel);
  return lua_yieldk(L, 1, 0, join_k);
}

static int task_status(lua_State *L) {
  weft_task_t *t = check_task(L, 1);
  static const char *const names[] = {"new", "running", "waiting", "done"};
  lua_pushstring(L, names[t->state]);
  return 1;
}

static int task_tostring(lua_State *L) {
  weft_task_t *t = check_task(L, 1);
  lua_pushfstring(L, "weft.task: %p", (void *)t);
  return 1;
}

static int l_current(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  if (st->task == NULL || st->task->self_ref == LUA_NOREF)
    lua_pushnil(L);
  else
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->task->self_ref);
  return 1;
}

static void sleep_timer_cb(weft_timer_t *tm, void *data) {
  (void)tm;
  weft_b_wake_cb(data);
}

static int l_sleep(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  lua_Number ms = luaL_optnumber(L, 1, 0);
  weft_task_t *t;
  uint32_t token = weft_b_prepare_wait(L, st, &t, "weft.sleep");
  t->wait_kind = W_SLEEP;
  waker_t *w = waker_new(L, st, t, token);
  if (ms <= 0) {
    weft_defer(st->loop, weft_b_wake_cb, w);
  } else {
    weft_timer_t *tm;
    int rc = weft_timer_start(st->loop, &tm, (uint64_t)(ms + 0.5), 0, sleep_timer_cb, w);
    if (rc != 0) {
      waker_free(L, w);
      t->state = T_RUNNING;
      return luaL_error(L, "weft.sleep: %s", uv_strerror(rc));
    }
  }
  return weft_b_yield_wait(L);
}

static int l_suspend(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  weft_task_t *t;
  weft_b_prepare_wait(L, st, &t, "weft.suspend");
  t->wait_kind = W_SUSPEND;
  t->wake_pending = 0;
  return weft_b_yield_wait(L);
}

static int l_wake(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  weft_task_t *t = check_task(L, 1);
  if (t->state != T_WAITING || t->wait_kind != W_SUSPEND || t->wake_pending) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int n = lua_gettop(L) - 1;
  waker_t *w = waker_new(L, st, t, t->token);
  if (n > 0) {
    lua_createtable(L, n, 1);
    for (int i = 1; i <= n; i++) {
      lua_pushvalue(L, i + 1);
      lua_rawseti(L, -2, i);
    }
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
    w->vals_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  t->wake_pending = 1;
  weft_defer(st->loop, weft_b_wake_cb, w);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_on_error(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  if (st->on_error_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, st->on_error_ref);
  st->on_error_ref = LUA_NOREF;
  if (!lua_isnoneornil(L, 1)) {
    lua_pushvalue(L, 1);
    st->on_error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 0;
}

/* ---- timers: each firing runs the callback as a new task in the registration context ---- */

typedef struct timer_ud {
  weft_state_t *st;
  weft_timer_t *t;   /* NULL once fired (one-shot) or closed */
  int fn_ref;
  int self_ref;
  int repeat;
  int immediate;     /* set_immediate: no core timer, a deferred callback */
  int cancelled;
} timer_ud_t;

static void timer_unanchor(lua_State *L, timer_ud_t *h) {
  if (h->self_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, h->self_ref);
  if (h->fn_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, h->fn_ref);
  h->self_ref = h->fn_ref = LUA_NOREF;
}

static void timer_start_task(weft_state_t *st, void *data) {
  timer_ud_t *h = data;
  lua_State *L = st->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->fn_ref);
  if (!h->repeat) {
    h->t = NULL; /* the core frees a one-shot after this callback */
    timer_unanchor(L, h);
  }
  weft_b_start_now(st, 0, NULL, NULL);
}

static void timer_fire(weft_timer_t *tm, void *data) {
  (void)tm;
  timer_ud_t *h = data;
  weft_b_protect(h->st, timer_start_task, h, "a timer callback");
}

static void immediate_fire(void *data) {
  timer_ud_t *h = data;
  if (h->cancelled) { /* closed before it ran: it was kept anchored until now */
    timer_unanchor(h->st->L, h);
    return;
  }
  timer_fire(NULL, h);
}

static int timer_new(lua_State *L, uint64_t timeout, uint64_t repeat, int immediate) {
  weft_state_t *st = weft_b_state(L);
  luaL_checkany(L, 1);
  timer_ud_t *h = lua_newuserdatauv(L, sizeof(*h), 0);
  memset(h, 0, sizeof(*h));
  h->st = st;
  h->immediate = immediate;
  h->repeat = repeat > 0;
  luaL_setmetatable(L, WEFT_TIMER_MT);
  lua_pushvalue(L, 1);
  h->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  h->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (immediate) {
    weft_defer(st->loop, immediate_fire, h);
  } else {
    int rc = weft_timer_start(st->loop, &h->t, timeout, repeat, timer_fire, h);
    if (rc != 0) {
      timer_unanchor(L, h);
      return luaL_error(L, "weft timer: %s", uv_strerror(rc));
    }
  }
  return 1;
}

static uint64_t check_ms(lua_State *L, int idx) {
  lua_Number ms = luaL_optnumber(L, idx, 0);
  return ms <= 0 ? 0 : (uint64_t)(ms + 0.5);
}

static int l_set_timeout(lua_State *L) { return timer_new(L, check_ms(L, 2), 0, 0); }

static int l_set_interval(lua_State *L) {
  uint64_t ms = check_ms(L, 2);
  if (ms == 0) ms = 1;
  return timer_new(L, ms, ms, 0);
}

static int l_set_immediate(lua_State *L) { return timer_new(L, 0, 0, 1); }

static int timer_close(lua_State *L) {
  timer_ud_t *h = luaL_checkudata(L, 1, WEFT_TIMER_MT);
  if (h->t != NULL) {
    weft_timer_stop(h->t);
    h->t = NULL;
  }
  if (h->immediate && h->self_ref != LUA_NOREF) {
    h->cancelled = 1; /* the queued callback still refers to h: it unanchors it */
    return 0;
  }
  timer_unanchor(L, h);
  return 0;
}

static int timer_active(lua_State *L) {
  timer_ud_t *h = luaL_checkudata(L, 1, WEFT_TIMER_MT);
  lua_pushboolean(L, h->self_ref != LUA_NOREF && !h->cancelled);
  return 1;
}

void weft_b_open_tasks(lua_State *L, weft_state_t *st) {
  luaL_newmetatable(L, WEFT_TASK_MT);
  static const luaL_Reg task_methods[] = {{"join", task_join}, {"status", task_status}, {NULL, NULL}};
  lua_newtable(L);
  weft_b_setfuncs(L, st, task_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, task_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  luaL_newmetatable(L, WEFT_TIMER_MT);
  static const luaL_Reg timer_methods[] = {{"close", timer_close}, {"active", timer_active}, {NULL, NULL}};
  lua_newtable(L);
  weft_b_setfuncs(L, st, timer_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  static const luaL_Reg fns[] = {{"spawn", l_spawn},
                                 {"sleep", l_sleep},
                                 {"current", l_current},
                                 {"suspend", l_suspend},
                                 {"wake", l_wake},
                                 {"on_error", l_on_error},
                                 {"set_timeout", l_set_timeout},
                                 {"set_interval", l_set_interval},
                                 {"set_immediate", l_set_immediate},
                                 {NULL, NULL}};
  weft_b_setfuncs(L, st, fns);
}
