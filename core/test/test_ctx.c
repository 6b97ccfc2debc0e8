/*
 * test_ctx.c — the async-context core without Lua: frames, lookups, collapse, disable, value
 * lifetimes, and continuations (timers, deferred callbacks) capturing and installing frames.
 */
#include "weft_internal.h"

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);       \
      abort();                                                                       \
    }                                                                                \
  } while (0)

static int freed[1024];

static void free_value(void *v, void *ud) {
  (void)ud;
  freed[(intptr_t)v]++;
}

static intptr_t get(weft_frame_t *f, weft_ctx_key_t *k) {
  void *v;
  if (!weft_frame_get(f, k, &v)) return -1;
  return (intptr_t)v;
}

static void test_basic(void) {
  weft_ctx_key_t *a = weft_ctx_key_new(free_value, NULL);
  weft_ctx_key_t *b = weft_ctx_key_new(free_value, NULL);
  CHECK(get(NULL, a) == -1);
  weft_frame_t *f1 = weft_frame_with(NULL, a, (void *)1);
  weft_frame_t *f2 = weft_frame_with(f1, b, (void *)2);
  weft_frame_t *f3 = weft_frame_with(f2, a, (void *)3);
  CHECK(get(f1, a) == 1 && get(f1, b) == -1);
  CHECK(get(f2, a) == 1 && get(f2, b) == 2);
  CHECK(get(f3, a) == 3 && get(f3, b) == 2);
  CHECK(get(f1, a) == 1); /* the cache follows the frame asked about */
  weft_frame_t *nil = weft_frame_with(f3, a, NULL);
  CHECK(get(nil, a) == 0); /* present, explicitly no store */
  weft_frame_release(nil);
  weft_frame_release(f3);
  CHECK(freed[3] == 1 && freed[1] == 0);
  weft_frame_release(f2);
  weft_frame_release(f1);
  CHECK(freed[1] == 1 && freed[2] == 1);
  CHECK(weft_ctx_live_frames() == 0);
  weft_ctx_key_release(a);
  weft_ctx_key_release(b);
}

/* 10,000 nested derivations: lookups stay right across collapses, memory returns to zero. */
static void test_deep_and_wide(void) {
  enum { KEYS = 50, DEPTH = 10000 };
  weft_ctx_key_t *keys[KEYS];
  for (int i = 0; i < KEYS; i++) keys[i] = weft_ctx_key_new(NULL, NULL);
  weft_frame_t *f = NULL;
  for (int i = 1; i <= DEPTH; i++) {
    weft_frame_t *next = weft_frame_with(f, keys[i % KEYS], (void *)(intptr_t)i);
    weft_frame_release(f);
    f = next;
    /* every key holds the newest value given to it */
    if (i % 997 == 0)
      for (int k = 0; k < KEYS; k++) {
        intptr_t want = -1;
        for (int j = i; j >= 1 && j > i - KEYS; j--)
          if (j % KEYS == k) want = j;
        CHECK(get(f, keys[k]) == want);
      }
  }
  /* a chain never keeps more than a few frames alive however deep it went */
  CHECK(weft_ctx_live_frames() <= 16);
  weft_frame_release(f);
  CHECK(weft_ctx_live_frames() == 0);
  for (int i = 0; i < KEYS; i++) weft_ctx_key_release(keys[i]);
}

/* Nested runs keep every level alive (each holds its parent), and free all on unwind. */
static void test_nested_runs(void) {
  enum { DEPTH = 10000 };
  weft_ctx_key_t *k = weft_ctx_key_new(free_value, NULL);
  static weft_frame_t *stack[DEPTH + 1];
  stack[0] = NULL;
  for (int i = 1; i <= DEPTH; i++) stack[i] = weft_frame_with(stack[i - 1], k, (void *)(intptr_t)(i % 1000 + 1));
  for (int i = DEPTH; i >= 1; i--) {
    CHECK(get(stack[i], k) == i % 1000 + 1);
    weft_frame_release(stack[i]);
  }
  CHECK(weft_ctx_live_frames() == 0);
  weft_ctx_key_release(k);
}

static void test_disable(void) {
  weft_ctx_key_t *k = weft_ctx_key_new(free_value, NULL);
  memset(freed, 0, sizeof(freed));
  weft_frame_t *f = weft_frame_with(NULL, k, (void *)5);
  weft_ctx_key_t *other = weft_ctx_key_new(NULL, NULL);
  weft_frame_t *child = weft_frame_with(f, other, (void *)6);
  CHECK(get(child, k) == 5);
  weft_frame_disable(f, k);
  CHECK(freed[5] == 1);
  CHECK(get(f, k) == 0 && get(child, k) == 0);
  weft_frame_release(child);
  weft_frame_release(f);
  CHECK(freed[5] == 1); /* freed once */
  CHECK(weft_ctx_live_frames() == 0);
  weft_ctx_key_release(k);
  weft_ctx_key_release(other);
}

/* The key outlives its last user reference while frames still hold values under it. */
static void test_key_lifetime(void) {
  weft_ctx_key_t *k = weft_ctx_key_new(free_value, NULL);
  memset(freed, 0, sizeof(freed));
  weft_frame_t *f = weft_frame_with(NULL, k, (void *)9);
  weft_ctx_key_release(k);
  weft_frame_release(f);
  CHECK(freed[9] == 1);
}

/* ---- continuations ---- */

static weft_ctx_key_t *ck;
static intptr_t seen_timer = -2, seen_defer = -2, seen_repeat[3];
static int repeats;

static void on_timer(weft_timer_t *t, void *data) {
  (void)t;
  (void)data;
  seen_timer = get(weft_ctx_current((weft_loop_t *)data), ck);
}

static void on_defer(void *data) { seen_defer = get(weft_ctx_current((weft_loop_t *)data), ck); }

static void on_repeat(weft_timer_t *t, void *data) {
  weft_loop_t *loop = data;
  seen_repeat[repeats] = get(weft_ctx_current(loop), ck);
  /* a change made inside a callback ends with it */
  weft_frame_release(weft_ctx_swap(loop, weft_frame_with(weft_ctx_current(loop), ck, (void *)99)));
  if (++repeats == 3) weft_timer_stop(t);
}

static void test_continuations(void) {
  weft_loop_t *loop;
  CHECK(weft_loop_new(&loop, uv_loop_new()) == 0);
  ck = weft_ctx_key_new(NULL, NULL);
  weft_frame_t *prev = weft_ctx_swap(loop, weft_frame_with(NULL, ck, (void *)7));
  weft_timer_t *t1, *t2;
  CHECK(weft_timer_start(loop, &t1, 5, 0, on_timer, loop) == 0);
  CHECK(weft_timer_start(loop, &t2, 1, 1, on_repeat, loop) == 0);
  CHECK(weft_defer(loop, on_defer, loop) == 0);
  /* registration is over: the loop runs in another context */
  weft_frame_release(weft_ctx_swap(loop, weft_frame_with(NULL, ck, (void *)8)));
  CHECK(weft_ctx_live_frames() >= 2);
  uv_run(weft_loop_uv(loop), UV_RUN_DEFAULT);
  CHECK(seen_timer == 7);
  CHECK(seen_defer == 7);
  CHECK(repeats == 3 && seen_repeat[0] == 7 && seen_repeat[1] == 7 && seen_repeat[2] == 7);
  CHECK(get(weft_ctx_current(loop), ck) == 8);
  weft_frame_release(weft_ctx_swap(loop, prev));
  /* fired one-shots and stopped timers hold no frame */
  CHECK(weft_ctx_live_frames() == 0);
  uv_loop_t *uv = weft_loop_uv(loop);
  weft_loop_free(loop);
  CHECK(uv_loop_close(uv) == 0); /* nothing left open */
  free(uv);
  weft_ctx_key_release(ck);
}

int main(void) {
  test_basic();
  test_deep_and_wide();
  test_nested_runs();
  test_disable();
  test_key_lifetime();
  test_continuations();
  printf("test_ctx: ok\n");
  return 0;
}
