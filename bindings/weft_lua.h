/*
 * weft_lua.h — private header of the bindings (the Lua module weft.core): the only C that
 * knows both Lua and the core.
 *
 * Every coroutine created through weft (tasks' workers, and plain coroutine.create/wrap, which
 * weft replaces) owns a *slot*, found through a weak-keyed table: the frame it runs in while
 * suspended, and the task it belongs to. Resuming moves the slot's frame into the loop's current frame and
 * back when the coroutine yields, returns or raises; no reference count changes hands.
 */
#ifndef WEFT_LUA_H
#define WEFT_LUA_H

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "weft.h"

#define WEFT_STATE_KEY "weft.core.state"
#define WEFT_TASK_MT "weft.task"
#define WEFT_ALS_MT "weft.AsyncLocalStorage"
#define WEFT_SCOPE_MT "weft.scope"
#define WEFT_FRAMEBOX_MT "weft.frame"
#define WEFT_SLOT_MT "weft.slot"
#define WEFT_TIMER_MT "weft.timer"
#define WEFT_SERVER_MT "weft.server"
#define WEFT_REQ_MT "weft.request"
#define WEFT_SIGNAL_MT "weft.signal"

typedef struct weft_task weft_task_t;

/* One per coroutine created through weft; lives in a full userdata anchored by a weak-keyed
 * table (thread -> slot), so it is collected with its coroutine and then releases its frame. */
typedef struct weft_slot {
  weft_frame_t *frame; /* the coroutine's frame while it is not running */
  weft_task_t *task;   /* the task a worker coroutine is running, else NULL */
} weft_slot_t;

/* The module's state: one per Lua state, shared by every require of weft.core. */
typedef struct weft_state {
  weft_loop_t *loop;
  lua_State *L;            /* the thread driving the loop (the caller of run) */
  int running;
  weft_task_t *task;       /* the task whose worker is running now, or NULL */
  int slots_ref;           /* weak-keyed table: thread -> slot userdata */
  int on_error_ref;        /* LUA_NOREF or the handler */
  int *dead;               /* store references to drop (frames free values outside Lua) */
  size_t ndead, capdead;
  int *pool;               /* idle worker coroutines (registry references) */
  size_t npool, cappool;
  size_t tasks_live;       /* tasks started and not finished */
  int tasks_running;       /* task resumes in progress (the memory limit and the CPU watchdog
                              act only inside them) */
  uint64_t resume_seq;     /* counts task resumes: the CPU watchdog sees one last too long */
  lua_State *running_co;   /* the coroutine running now (a task's worker or one nested in
                              it), where the CPU watchdog sets its hook; NULL outside */
  lua_CFunction orig_close; /* the stock coroutine.close */
  int scope_pool_ref;      /* closed scopes of run/exit/bind, ready for reuse (context.c) */
  int nscope_pool;
  char id_prefix[9];       /* request ids: 8 random hex digits and '-', made on first use */
  uint64_t id_counter;
  int flush_ref;            /* the file flush_soon will flush, or LUA_NOREF */
  uint64_t rng[4];          /* random_hex's generator state, seeded on first use */
  size_t young_bytes;       /* gc_young: a minor collection between requests once this much
                               was allocated since the last one (0: Lua's own trigger only) */
  size_t young_base;        /* the heap's size after that last collection */
  size_t young_next;        /* allocation that triggers the next one (young_bytes, or more
                               after steps that found live data rather than garbage) */
} weft_state_t;

/* module.c */
weft_state_t *weft_b_state(lua_State *L); /* from upvalue 1 */
/* Runs fn(st, ud) under lua_pcall on st->L: every loop callback that touches Lua enters this
 * way, so that no error (out of memory) unwinds through uv_run. On an error, reports it to
 * stderr with `what` and returns its status (the caller cleans up); else LUA_OK. */
typedef void (*weft_b_protected_fn)(weft_state_t *st, void *ud);
int weft_b_protect(weft_state_t *st, weft_b_protected_fn fn, void *ud, const char *what);
/* A wait's answer could not be made (out of memory): resumes t with no values, which the
 * wait's continuation turns into an error raised in the task, so that no task is left
 * waiting for an answer that will never come. */
void weft_b_resume_failed(weft_state_t *st, weft_task_t *t, uint32_t token);
#define WEFT_B_NO_ANSWER "weft: not enough memory to answer this wait"
void weft_b_drain(lua_State *L, weft_state_t *st);
void weft_b_setfuncs(lua_State *L, weft_state_t *st, const luaL_Reg *fns);
void weft_b_young_step(weft_state_t *st);

/* context.c */
void weft_b_open_context(lua_State *L, weft_state_t *st);
weft_slot_t *weft_b_slot_new(lua_State *L, weft_state_t *st, lua_State *co);
/* Resumes co (whose slot is s, or NULL for a coroutine weft did not create) with nargs values
 * from its stack: co's frame is current while it runs and saved back when it yields, returns or
 * raises. Returns lua_resume's status and sets *nres. */
int weft_b_resume(weft_state_t *st, lua_State *co, weft_slot_t *s, lua_State *from, int nargs,
                  int *nres);
void weft_b_push_framebox(lua_State *L, weft_frame_t *f); /* takes the reference */
weft_frame_t *weft_b_check_framebox(lua_State *L, int idx);

/* json.c */
void weft_b_open_json(lua_State *L, weft_state_t *st);
void weft_b_open_alloc(lua_State *L, weft_state_t *st);

/* task.c */
void weft_b_open_tasks(lua_State *L, weft_state_t *st);
/* Starts fn (at the top of L's stack, under nargs arguments) as a task on a later turn, in the
 * current frame; pushes the task userdata. */
weft_task_t *weft_b_spawn(lua_State *L, weft_state_t *st, int nargs);
/* Starts the function and nargs values on top of st->L as a task NOW (from a loop callback, in
 * the current frame). on_done, if set, runs when it finishes. Pops them. */
typedef void (*weft_b_done_cb)(weft_state_t *st, weft_task_t *t, void *ud);
void weft_b_start_now(weft_state_t *st, int nargs, weft_b_done_cb on_done, void *ud);
/* weft_b_start_now in two steps: prepare makes the task and binds a worker (what may fail for
 * memory) and leaves the function and arguments where they are; run starts it. A caller that
 * hands something to the task (a request) commits between the two. */
weft_task_t *weft_b_start_prepare(weft_state_t *st, weft_b_done_cb on_done, void *ud);
void weft_b_start_run(weft_state_t *st, weft_task_t *t, int nargs);
/* The suspension protocol: mark the running task waiting and return a token; later, from a loop
 * callback, weft_b_wake pushes nothing itself: the caller pushes nvals values on st->L. */
extern char weft_b_suspend_sentinel;
uint32_t weft_b_prepare_wait(lua_State *L, weft_state_t *st, weft_task_t **out, const char *what);
int weft_b_yield_wait(lua_State *L);
/* The wait was answered before the task yielded: it goes on running. */
void weft_b_cancel_wait(weft_task_t *t);
/* Continuations registered by t's current wait will not resume it. */
void weft_b_task_bump_token(weft_task_t *t);  /* return weft_b_yield_wait(L) from a lua_CFunction */
/* Resumes t if it is still waiting on `token`, with nvals values taken from the top of st->L. */
void weft_b_resume_waiter(weft_state_t *st, weft_task_t *t, uint32_t token, int nvals);
/* Keeps t's memory (and its userdata) alive while a C continuation refers to it. */
void weft_b_task_pin(lua_State *L, weft_task_t *t);
void weft_b_task_unpin(lua_State *L, weft_task_t *t);
void weft_b_report_error(weft_state_t *st, int idx); /* an error record at idx of st->L */

/* http.c */
void weft_b_open_http(lua_State *L, weft_state_t *st);

/* guard.c: cpu_limit */
void weft_b_open_guard(lua_State *L, weft_state_t *st);

/* url.c: url_decode */
void weft_b_open_url(lua_State *L, weft_state_t *st);

/* fs.c: fs_stat, fs_lstat, fs_realpath, fs_open and the file userdata */
void weft_b_open_fs(lua_State *L, weft_state_t *st);

#endif /* WEFT_LUA_H */
