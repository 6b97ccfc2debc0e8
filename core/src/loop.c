/*
 * loop.c — the weft loop and its continuations: deferred callbacks and timers. Each captures
 * the frame current at registration and installs it around its callback.
 */
#include "weft_internal.h"

#include <stdio.h>
#include <time.h>

static void weft__idle_cb(uv_idle_t *h);

int weft_loop_new(weft_loop_t **out, uv_loop_t *uv) {
  weft_loop_t *loop = weft__xmalloc(sizeof(*loop));
  memset(loop, 0, sizeof(*loop));
  loop->uv = uv ? uv : uv_default_loop();
  int rc = uv_idle_init(loop->uv, &loop->idle);
  if (rc != 0) {
    free(loop);
    return rc;
  }
  loop->idle.data = loop;
  *out = loop;
  return 0;
}

uv_loop_t *weft_loop_uv(weft_loop_t *loop) { return loop->uv; }

static void weft__loop_idle_closed(uv_handle_t *h) { WEFT__UNUSED(h); }

void weft_loop_free(weft_loop_t *loop) {
  /* Drop queued callbacks without running them: their frames are released. */
  for (weft__defer_node_t *n = loop->dq_head, *next; n != NULL; n = next) {
    next = n->next;
    weft_frame_release(n->frame);
    free(n);
  }
  for (weft__defer_node_t *n = loop->dq_free, *next; n != NULL; n = next) {
    next = n->next;
    free(n);
  }
  uv_close((uv_handle_t *)&loop->idle, weft__loop_idle_closed);
  uv_run(loop->uv, UV_RUN_NOWAIT);
  weft_frame_release(loop->current);
  free(loop);
}

uint64_t weft_loop_now(weft_loop_t *loop) {
  uv_update_time(loop->uv);
  return uv_now(loop->uv);
}

/* ---- deferred callbacks ---- */

int weft_defer(weft_loop_t *loop, weft_defer_cb cb, void *data) {
  weft__defer_node_t *n = loop->dq_free;
  if (n != NULL)
    loop->dq_free = n->next;
  else
    n = weft__xmalloc(sizeof(*n));
  n->next = NULL;
  n->cb = cb;
  n->data = data;
  n->frame = weft_frame_retain(loop->current);
  if (loop->dq_tail != NULL)
    loop->dq_tail->next = n;
  else
    loop->dq_head = n;
  loop->dq_tail = n;
  if (!uv_is_active((uv_handle_t *)&loop->idle)) uv_idle_start(&loop->idle, weft__idle_cb);
  return 0;
}

static void weft__idle_cb(uv_idle_t *h) {
  weft_loop_t *loop = h->data;
  /* Run what was queued before this turn; what those callbacks queue waits for the next one,
   * so that a task yielding with sleep(0) lets I/O be polled in between. */
  weft__defer_node_t *n = loop->dq_head, *last = loop->dq_tail;
  loop->dq_head = loop->dq_tail = NULL;
  while (n != NULL) {
    weft__defer_node_t *next = n == last ? NULL : n->next;
    weft_frame_t *frame = n->frame;
    weft_defer_cb cb = n->cb;
    void *data = n->data;
    n->next = loop->dq_free;
    loop->dq_free = n;
    weft_frame_t *prev = weft_ctx_swap(loop, frame); /* the node's reference moves in */
    cb(data);
    weft_frame_release(weft_ctx_swap(loop, prev));
    n = next;
  }
  if (loop->dq_head == NULL) uv_idle_stop(&loop->idle);
}

/* ---- timers ---- */

struct weft_timer {
  uv_timer_t h;
  weft_loop_t *loop;
  weft_frame_t *frame;
  weft_timer_cb cb;
  void *data;
  uint64_t repeat;
  unsigned in_cb : 1;
  unsigned stopped : 1;
};

static void weft__timer_closed(uv_handle_t *h) { free(WEFT__CONTAINER_OF(h, weft_timer_t, h)); }

static void weft__timer_free(weft_timer_t *t) {
  weft_frame_release(t->frame);
  t->frame = NULL;
  uv_close((uv_handle_t *)&t->h, weft__timer_closed);
}

static void weft__timer_fire(uv_timer_t *h) {
  weft_timer_t *t = WEFT__CONTAINER_OF(h, weft_timer_t, h);
  weft_loop_t *loop = t->loop;
  weft_frame_t *prev = weft_ctx_swap(loop, weft_frame_retain(t->frame));
  t->in_cb = 1;
  t->cb(t, t->data);
  t->in_cb = 0;
  weft_frame_release(weft_ctx_swap(loop, prev));
  if (t->stopped || t->repeat == 0) weft__timer_free(t);
}

int weft_timer_start(weft_loop_t *loop, weft_timer_t **out, uint64_t timeout, uint64_t repeat,
                     weft_timer_cb cb, void *data) {
  weft_timer_t *t = weft__xmalloc(sizeof(*t));
  memset(t, 0, sizeof(*t));
  int rc = uv_timer_init(loop->uv, &t->h);
  if (rc != 0) {
    free(t);
    return rc;
  }
  t->loop = loop;
  t->frame = weft_frame_retain(loop->current);
  t->cb = cb;
  t->data = data;
  t->repeat = repeat;
  /* libuv measures timeouts from its cached loop time, which is stale after a long stretch of
   * Lua code (a main chunk, a busy handler): refresh it so "after 5 ms" means from now. */
  uv_update_time(loop->uv);
  rc = uv_timer_start(&t->h, weft__timer_fire, timeout, repeat);
  if (rc != 0) {
    weft__timer_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

void weft_timer_stop(weft_timer_t *t) {
  if (t->stopped) return;
  t->stopped = 1;
  uv_timer_stop(&t->h);
  if (!t->in_cb) weft__timer_free(t);
}

void weft_timer_ref(weft_timer_t *t, int ref) {
  if (ref)
    uv_ref((uv_handle_t *)&t->h);
  else
    uv_unref((uv_handle_t *)&t->h);
}

/* ---- the Date header ---- */

const char *weft_http_date(weft_loop_t *loop, size_t *len) {
  time_t now = time(NULL);
  if (now != loop->date_sec || loop->date_len == 0) {
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&now, &tm);
    int n = snprintf(loop->date_buf, sizeof(loop->date_buf), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                     days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
    loop->date_len = (size_t)n;
    loop->date_sec = now;
  }
  *len = loop->date_len;
  return loop->date_buf;
}
