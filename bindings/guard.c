/*
 * guard.c — the CPU limit: a task that runs Lua for longer than the limit without yielding
 * gets the error "cpu limit exceeded" raised inside it (for a request: a 500, logged with its
 * traceback), and the loop serves every other connection again.
 *
 * The normal path pays nothing but two stores per resume (context.c keeps st->running_co, and
 * task.c counts st->resume_seq): no hook is set until a resume has outlived the limit. A
 * POSIX timer on this thread's CPU clock (so an idle server gets no ticks at all) signals the
 * loop's thread every quarter of the limit. The handler looks at the resume count: if the same
 * task resume is still running after four further ticks, it has used at least the limit, and
 * the handler sets a count hook on the coroutine running now, as lua.c's Ctrl-C handler does
 * (lua_sethook is safe in a signal handler); the hook raises the error at the next Lua
 * instruction. A task that catches the error and runs on gets it again after each further
 * limit. Lua code stuck inside one long C call (a huge string.rep) is only stopped when it
 * returns to Lua.
 *
 * SIGURG carries the ticks (nothing else in a server uses it, and it is ignored by default, so
 * a stray one does no harm: Go's runtime preempts with it for the same reasons).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "weft_lua.h"

#define GUARD_SIGNAL SIGURG
#define GUARD_TICKS 4 /* ticks a resume must outlive: it ran at least the limit */

static weft_state_t *guard_st;
static timer_t guard_timer;
static int guard_armed;
static volatile sig_atomic_t guard_ticks;
static uint64_t guard_seq;

/* The hook it replaced on that coroutine (a debugger's, coverage's), put back when it fires. */
static lua_State *hooked_co;
static lua_Hook saved_hook;
static int saved_mask, saved_count;

static void guard_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (L == hooked_co) {
    lua_sethook(L, saved_hook, saved_mask, saved_count);
    hooked_co = NULL;
  } else {
    lua_sethook(L, NULL, 0, 0);
  }
  luaL_error(L, "cpu limit exceeded");
}

static void guard_tick(int sig, siginfo_t *info, void *uc) {
  (void)sig;
  (void)info;
  (void)uc;
  weft_state_t *st = guard_st;
  if (st == NULL || st->tasks_running == 0 || st->running_co == NULL) {
    guard_ticks = 0;
    return;
  }
  if (st->resume_seq != guard_seq) { /* another resume since the last tick */
    guard_seq = st->resume_seq;
    guard_ticks = 0;
    return;
  }
  if (++guard_ticks < GUARD_TICKS) return;
  guard_ticks = 0; /* and again after another limit, if it runs on */
  lua_State *co = st->running_co;
  if (lua_gethook(co) != guard_hook) {
    hooked_co = co;
    saved_hook = lua_gethook(co);
    saved_mask = lua_gethookmask(co);
    saved_count = lua_gethookcount(co);
  }
  lua_sethook(co, guard_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
}

/* cpu_limit(ms) -> true | nil, err: 0 turns the guard off. */
static int l_cpu_limit(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  lua_Integer ms = luaL_checkinteger(L, 1);
  luaL_argcheck(L, ms >= 0, 1, "must not be negative");
  if (guard_armed) {
    timer_delete(guard_timer);
    guard_armed = 0;
  }
  guard_st = st;
  guard_ticks = 0;
  if (ms == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = guard_tick;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  struct sigevent sev;
  memset(&sev, 0, sizeof(sev));
  sev.sigev_notify = SIGEV_THREAD_ID; /* this thread: never one of libuv's pool threads */
  sev.sigev_signo = GUARD_SIGNAL;
#ifdef sigev_notify_thread_id
  sev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
#else
  sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
#endif
  if (sigaction(GUARD_SIGNAL, &sa, NULL) != 0 ||
      timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &guard_timer) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cpu_limit: %s", strerror(errno));
    return 2;
  }
  guard_armed = 1;
  uint64_t tick_ns = (uint64_t)ms * 1000000 / GUARD_TICKS;
  struct itimerspec its;
  its.it_value.tv_sec = (time_t)(tick_ns / 1000000000);
  its.it_value.tv_nsec = (long)(tick_ns % 1000000000);
  its.it_interval = its.it_value;
  timer_settime(guard_timer, 0, &its, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

void weft_b_open_guard(lua_State *L, weft_state_t *st) {
  static const luaL_Reg fns[] = {{"cpu_limit", l_cpu_limit}, {NULL, NULL}};
  weft_b_setfuncs(L, st, fns);
}
