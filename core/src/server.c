/*
 * server.c — the listener, connections and their state machine, timers, graceful close, and
 * the request API.
 *
 * A connection serves one request at a time. Its read buffer holds the request head at offset 0
 * (pinned while the request is active, so the handler's pointers stay valid), then unparsed
 * input. The parser pauses after each complete request; once the request is released and its
 * response handed to the socket, the connection resets, moves the unparsed bytes down and
 * parses on — so pipelined responses leave strictly in order.
 *
 * Everything that can run user code (on_request, body and drain callbacks) does so from
 * weft__conn_process, whose loop re-checks state after each callback instead of recursing: a
 * handler that answers and releases synchronously does not re-enter the parser.
 *
 * Memory: a connection is freed only when its handles are closed, its request released, and no
 * entry point is on the stack (busy == 0) — never under the handler.
 */
#include "weft_internal.h"

#include <signal.h>
#include <strings.h>
#include <sys/ioctl.h>
#if defined(__linux__)
#include <linux/sockios.h>
#endif

#define WEFT__RBUF_SIZE 8192    /* standard read buffer, pooled */
#define WEFT__RPOOL_MAX 256     /* pooled read buffers kept per server */
#define WEFT__HEAD_SLACK 2048   /* request line and whitespace beyond the URL/header limits */
#define WEFT__BODY_WINDOW 16384 /* read space after the head when a body follows */
#define WEFT__BODY_KEEP 16384   /* body buffers up to this size are kept between requests */

enum { WEFT__T_NONE, WEFT__T_HEADER, WEFT__T_BODY, WEFT__T_IDLE, WEFT__T_LINGER };

static void weft__conn_end(weft__conn_t *c, int linger);
static void weft__conn_fail(weft__conn_t *c, int status);
static void weft__conn_deliver_body(weft__conn_t *c, int status);
static void weft__conn_timer_closed(uv_handle_t *h);
static void weft__server_maybe_free(weft_server_t *s);

void weft_limits_default(weft_limits_t *l) {
  l->max_url = 8 * 1024;
  l->max_header_bytes = 16 * 1024;
  l->max_headers = 100;
  l->max_body = 1024 * 1024;
  l->header_timeout = 30000;
  l->body_timeout = 30000;
  l->idle_timeout = 5000;
  l->linger_timeout = 2000;
  l->send_timeout = 60000;
  l->write_high_water = 64 * 1024;
  l->max_connections = 0;
}

/* ---- read buffers ---- */

/* Makes sure the connection has a read buffer (from the server's pool when possible). */
static void weft__rbuf_get(weft__conn_t *c) {
  if (c->rbuf != NULL) return;
  weft_server_t *s = c->server;
  if (s->rpool != NULL) {
    c->rbuf = s->rpool;
    memcpy(&s->rpool, c->rbuf, sizeof(void *));
    s->rpool_n--;
  } else {
    c->rbuf = weft__xmalloc(s->rbuf_size);
  }
  c->rcap = s->rbuf_size;
  c->rlen = c->rpos = c->hend = 0;
}

/* Gives an idle connection's empty read buffer back, so idle connections cost no buffer. */
static void weft__rbuf_put(weft__conn_t *c) {
  weft_server_t *s = c->server;
  if (c->rbuf == NULL) return;
  if (c->rcap == s->rbuf_size && s->rpool_n < WEFT__RPOOL_MAX) {
    memcpy(c->rbuf, &s->rpool, sizeof(void *));
    s->rpool = c->rbuf;
    s->rpool_n++;
  } else {
    free(c->rbuf);
  }
  c->rbuf = NULL;
  c->rcap = c->rlen = c->rpos = c->hend = 0;
}

static void weft__rbuf_grow(weft__conn_t *c, size_t cap) {
  if (cap <= c->rcap) return;
  c->rbuf = weft__xrealloc(c->rbuf, cap);
  c->rcap = cap;
}

/* ---- timer: one per connection, for the phase's deadline and the write deadline ----
 *
 * The phase deadline (tkind, deadline) is one of: the head must arrive (HEADER), the whole
 * body must (BODY), an idle connection may live (IDLE), a closing one may drain (LINGER).
 * Independently, while response bytes wait in the write queue (wq_active), the client must
 * read some of them every send_timeout: the queue is looked at every quarter of it, and a
 * look that finds it moved (or a write completing) counts as progress. A deadline moved later
 * costs nothing; the timer, when it fires early, sleeps on until the nearer of the two. */

static void weft__conn_timer_cb(uv_timer_t *t);

static void weft__conn_schedule(weft__conn_t *c) {
  if (c->phase == WEFT__PH_CLOSED) return; /* the timer is closing */
  uint64_t due = UINT64_MAX;
  if (c->tkind != WEFT__T_NONE) due = c->deadline;
  if (c->wq_active && c->wq_check < due) due = c->wq_check;
  if (due == UINT64_MAX) return; /* nothing due: a timer still running finds nothing to do */
  if (!uv_is_active((uv_handle_t *)&c->timer) || c->timer_due > due) {
    uint64_t now = uv_now(c->server->loop->uv);
    uv_timer_start(&c->timer, weft__conn_timer_cb, due > now ? due - now : 0, 0);
    c->timer_due = due;
  }
}

static void weft__conn_arm(weft__conn_t *c, int kind, uint64_t ms) {
  c->tkind = (uint8_t)kind;
  c->deadline = uv_now(c->server->loop->uv) + ms;
  weft__conn_schedule(c);
}

/* How often a queue waiting on the client is looked at. */
static uint64_t weft__wq_step(const weft_server_t *s) {
  uint64_t step = s->limits.send_timeout / 4;
  return step > 0 ? step : 1;
}

void weft__conn_wq_changed(weft__conn_t *c) {
  if (c->phase == WEFT__PH_CLOSED) return;
  weft_server_t *s = c->server;
  size_t queued = c->io->queued(c);
  uint64_t now = uv_now(s->loop->uv);
  if (queued == 0) {
    c->wq_active = 0;
    if (c->idle_wait) { /* the last response is out: the idle connection's time starts now */
      c->idle_wait = 0;
      if (c->phase == WEFT__PH_IDLE) weft__conn_arm(c, WEFT__T_IDLE, s->limits.idle_timeout);
    }
    return;
  }
  if (s->limits.send_timeout == 0) return; /* no write deadline */
  if (c->io->unsent != NULL) queued += c->io->unsent(c);
  if (!c->wq_active || queued != c->wq_last) c->wq_progress = now;
  if (!c->wq_active) c->wq_check = now + weft__wq_step(s);
  c->wq_active = 1;
  c->wq_last = queued;
  weft__conn_schedule(c);
}

/* The write deadline's look at the queue: 1 if the client read nothing for send_timeout.
 * The kernel's send queue counts too: once it is full, the kernel lets more be written only
 * when a good share of it has gone (a third), which for a slow reader can take seconds while
 * the reader does read. */
static int weft__conn_wq_look(weft__conn_t *c, uint64_t now) {
  weft_server_t *s = c->server;
  size_t queued = c->io->queued(c) + (c->io->unsent != NULL ? c->io->unsent(c) : 0);
  if (queued != c->wq_last) {
    c->wq_last = queued;
    c->wq_progress = now;
  }
  uint64_t limit = c->wq_progress + s->limits.send_timeout;
  if (now >= limit) return 1;
  c->wq_check = now + weft__wq_step(s);
  if (c->wq_check > limit) c->wq_check = limit;
  return 0;
}

static void weft__conn_timer_cb(uv_timer_t *t) {
  weft__conn_t *c = t->data;
  uint64_t now = uv_now(c->server->loop->uv);
  weft__conn_hold(c);
  if (c->wq_active && now >= c->wq_check && weft__conn_wq_look(c, now)) {
    c->close_status = UV_ETIMEDOUT; /* writers waiting learn why */
    weft__conn_abort(c);
  } else if (c->tkind != WEFT__T_NONE && now >= c->deadline) {
    int kind = c->tkind;
    c->tkind = WEFT__T_NONE;
    switch (kind) {
    case WEFT__T_HEADER:
    case WEFT__T_BODY:
      /* fail only answers what can still be answered */
      if (c->phase <= WEFT__PH_ACTIVE) weft__conn_fail(c, 408);
      break;
    case WEFT__T_IDLE: weft__conn_end(c, 0); break;
    default: weft__conn_abort(c); break; /* linger over */
    }
  }
  weft__conn_schedule(c);
  weft__conn_unhold(c);
}

/* ---- reading ---- */

static void weft__conn_reading(weft__conn_t *c, int on) {
  if (on == (int)c->reading) return;
  if (on) {
    if (c->peer_eof || c->phase == WEFT__PH_CLOSED) return;
    if (c->io->read_start(c) == 0) c->reading = 1;
  } else {
    c->io->read_stop(c);
    c->reading = 0;
  }
}

/* Makes room to read into: a buffer, and in LINGER the discarded input dropped. */
static void weft__conn_space(weft__conn_t *c) {
  weft__rbuf_get(c);
  if (c->phase >= WEFT__PH_LINGER) c->rlen = c->rpos = c->hend;
}

static void weft__conn_on_read(weft__conn_t *c, size_t n) {
  weft__conn_hold(c);
  c->rlen += n;
  if (c->phase >= WEFT__PH_LINGER) {
    c->rlen = c->rpos = c->hend; /* draining: the answer is out, the input is not wanted */
  } else {
    weft__conn_process(c);
  }
  weft__conn_unhold(c);
}

void weft__conn_eof(weft__conn_t *c) {
  weft__conn_hold(c);
  c->peer_eof = 1;
  weft__conn_reading(c, 0);
  switch (c->phase) {
  case WEFT__PH_IDLE:
  case WEFT__PH_HEAD: weft__conn_process(c); break; /* finish what is buffered, then close */
  case WEFT__PH_ACTIVE:
    /* A complete request may still be answered (a half-closed client waits for it); a
     * truncated one cannot. */
    if (!c->msg_done) weft__conn_abort(c);
    break;
  case WEFT__PH_LINGER:
    if (c->shut_done) weft__conn_abort(c); /* else the shutdown completion closes */
    break;
  default: break;
  }
  weft__conn_unhold(c);
}

/* ---- ending a connection ---- */

void weft__conn_abort(weft__conn_t *c) {
  if (c->phase == WEFT__PH_CLOSED) return;
  weft__conn_hold(c);
  c->phase = WEFT__PH_CLOSED;
  c->dead = 1;
  c->keep_alive = 0;
  c->tkind = WEFT__T_NONE;
  c->reading = 0;
  c->rlen = c->rpos = c->hend;
  c->wq_active = c->idle_wait = c->linger_wait = 0;
  uv_close((uv_handle_t *)&c->timer, weft__conn_timer_closed);
  c->io->close(c);
  if (c->req_active) { /* tell whoever waits */
    if (c->body_reading == 1) weft__conn_deliver_body(c, UV_ECONNRESET);
    weft__res_fire_drain(c, c->close_status != 0 ? c->close_status : UV_ECONNRESET);
  }
  weft__conn_unhold(c);
}

/* Graceful end: the write side is shut after queued writes; with `linger`, input is read and
 * discarded until the peer's EOF (or linger_timeout) so that a client still sending reads the
 * answer instead of a reset; without, the connection closes as soon as the shutdown is done. */
static void weft__conn_end(weft__conn_t *c, int linger) {
  if (c->phase >= WEFT__PH_LINGER) return;
  weft__conn_hold(c);
  c->phase = WEFT__PH_LINGER;
  c->keep_alive = 0;
  c->linger = linger ? 1 : 0;
  c->rlen = c->rpos = c->hend;
  c->idle_wait = 0;
  /* The answer may still be on its way to a slow reader: send_timeout watches it, and the
   * time to linger starts once it is out (the shutdown is done). */
  if (c->io->queued(c) == 0) {
    weft__conn_arm(c, WEFT__T_LINGER, c->server->limits.linger_timeout);
  } else {
    c->tkind = WEFT__T_NONE;
    c->linger_wait = 1;
  }
  if (c->io->shutdown(c) != 0)
    weft__conn_abort(c);
  else if (c->phase == WEFT__PH_LINGER)
    weft__conn_reading(c, 1);
  weft__conn_unhold(c);
}

void weft__conn_shutdown_done(weft__conn_t *c, int status) {
  weft__conn_hold(c);
  c->shut_done = 1;
  if (status < 0 || !c->linger || c->peer_eof) {
    weft__conn_abort(c);
  } else if (c->linger_wait) {
    c->linger_wait = 0;
    weft__conn_arm(c, WEFT__T_LINGER, c->server->limits.linger_timeout);
  }
  weft__conn_unhold(c);
}

/* The core answers `status` itself (if it still can), then ends the connection. A body read
 * in progress learns why. */
static void weft__conn_fail(weft__conn_t *c, int status) {
  if (c->phase >= WEFT__PH_LINGER) return;
  int err = status == 408 ? UV_ETIMEDOUT : status == 413 ? UV_E2BIG : UV_EINVAL;
  weft__conn_hold(c);
  c->keep_alive = 0;
  if (c->phase == WEFT__PH_ACTIVE && c->res_state == WEFT__RES_STREAM) {
    weft__conn_abort(c); /* a response is half out: only closing says it is cut short */
  } else {
    if (c->res_state == WEFT__RES_NONE) {
      if (c->phase == WEFT__PH_ACTIVE) c->core_answered = 1;
      weft__res_error(c, status);
    }
    weft__conn_end(c, 1);
  }
  if (c->req_active && c->body_reading != 2) {
    if (c->body_reading == 1) {
      weft__conn_deliver_body(c, err);
    } else {
      c->body_err = err;
    }
  }
  weft__conn_unhold(c);
}

void weft__conn_io_closed(weft__conn_t *c) {
  c->io_closed = 1;
  weft__conn_maybe_free(c);
}

static void weft__conn_timer_closed(uv_handle_t *h) {
  weft__conn_t *c = h->data;
  c->timer_closed = 1;
  weft__conn_maybe_free(c);
}

void weft__conn_maybe_free(weft__conn_t *c) {
  if (c->busy != 0 || c->req_active || !c->io_closed || !c->timer_closed) return;
  weft_server_t *s = c->server;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  s->nconns--;
  weft_frame_release(c->body_frame);
  c->rlen = 0;
  weft__rbuf_put(c);
  free(c->body);
  free(c->hdrs);
  free(c);
  weft__server_maybe_free(s);
}

/* ---- the request cycle ---- */

static void weft__conn_deliver_body(weft__conn_t *c, int status) {
  weft_body_cb cb = c->body_cb;
  void *ud = c->body_ud;
  weft_frame_t *f = c->body_frame;
  c->body_cb = NULL;
  c->body_ud = NULL;
  c->body_frame = NULL;
  c->body_reading = 2;
  weft_loop_t *loop = c->server->loop;
  weft_frame_t *prev = weft_ctx_swap(loop, f); /* our reference moves in */
  if (status == 0)
    cb(&c->req, 0, c->body != NULL ? c->body : "", c->body_len, ud);
  else
    cb(&c->req, status, NULL, 0, ud);
  weft_frame_release(weft_ctx_swap(loop, prev));
}

int weft__conn_body(weft__conn_t *c, const char *at, size_t len) {
  c->body_total += len;
  if (c->body_total > c->server->limits.max_body) return 413;
  /* Kept only for a handler that may still read it. */
  if (!c->req_active || c->body_reading == 2 || c->core_answered) return 0;
  if (c->body_len + len > c->body_cap) {
    size_t cap = c->body_cap ? c->body_cap * 2 : 4096;
    if (cap < c->content_length) cap = (size_t)c->content_length;
    if (cap < c->body_len + len) cap = c->body_len + len;
    c->body = weft__xrealloc(c->body, cap);
    c->body_cap = cap;
  }
  memcpy(c->body + c->body_len, at, len);
  c->body_len += len;
  return 0;
}

/* A head is complete and within limits: pin it and hand the request out. */
static void weft__conn_on_head(weft__conn_t *c) {
  weft_server_t *s = c->server;
  c->phase = WEFT__PH_ACTIVE;
  c->hend = c->rpos;
  c->nreq++;
  /* Room after the head for the body, pipelined bytes, or draining; the buffer cannot move
   * once the handler holds pointers into it, so grow it now. */
  size_t want = c->body_expected ? WEFT__BODY_WINDOW : 1024;
  if (c->rcap - c->hend < want / 4) weft__rbuf_grow(c, c->hend + want);
  if (c->body_expected) {
    if (c->http_minor >= 1) {
      size_t vlen;
      const char *v = weft_req_header(&c->req, "expect", 6, &vlen);
      c->expect_continue = v != NULL && vlen == 12 && strncasecmp(v, "100-continue", 12) == 0;
    }
    weft__conn_arm(c, WEFT__T_BODY, s->limits.body_timeout);
  } else {
    c->tkind = WEFT__T_NONE;
  }
  c->req_active = 1;
  c->req.data = NULL;
  weft_frame_t *prev = weft_ctx_swap(s->loop, weft_frame_retain(s->frame));
  s->on_request(&c->req, s->ud);
  weft_frame_release(weft_ctx_swap(s->loop, prev));
}

static void weft__conn_on_done(weft__conn_t *c) {
  c->msg_done = 1;
  if (c->tkind == WEFT__T_BODY) c->tkind = WEFT__T_NONE;
  if (c->req_active && c->body_reading == 1) weft__conn_deliver_body(c, 0);
}

/* The request is released, answered and (unless closing) fully read: reset for the next. */
static void weft__conn_finish(weft__conn_t *c) {
  weft_server_t *s = c->server;
  if (!c->keep_alive || s->closing) {
    weft__conn_end(c, 1);
    return;
  }
  weft__http1_next(c);
  if (c->body_cap > WEFT__BODY_KEEP) {
    free(c->body);
    c->body = NULL;
    c->body_cap = 0;
  }
  c->body_len = 0;
  c->body_total = 0;
  c->body_err = 0;
  c->body_reading = 0;
  c->content_length = 0;
  c->msg_done = 0;
  c->body_expected = 0;
  c->expect_continue = 0;
  c->continue_sent = 0;
  c->is_head = 0;
  c->res_state = WEFT__RES_NONE;
  c->res_chunked = 0;
  c->res_nobody = 0;
  c->core_answered = 0;
  c->req.data = NULL;
  /* The next head starts at offset 0. */
  size_t n = c->rlen - c->rpos;
  if (n > 0 && c->rpos > 0) memmove(c->rbuf, c->rbuf + c->rpos, n);
  c->rlen = n;
  c->rpos = c->hend = 0;
  c->phase = WEFT__PH_IDLE;
  /* An idle connection's time starts once its last response is written out: a big answer
   * read slowly is watched by send_timeout, not cut by idle_timeout. */
  if (c->io->queued(c) == 0) {
    weft__conn_arm(c, WEFT__T_IDLE, s->limits.idle_timeout);
  } else {
    c->tkind = WEFT__T_NONE;
    c->idle_wait = 1;
  }
}

/* After a pass: compact the buffer, and read only while there is room for input. */
static void weft__conn_tidy(weft__conn_t *c) {
  weft_server_t *s = c->server;
  switch (c->phase) {
  case WEFT__PH_IDLE:
    if (c->rpos == c->rlen) {
      if (c->peer_eof) {
        weft__conn_end(c, 0);
        return;
      }
      c->rlen = c->rpos = 0;
      weft__rbuf_put(c);
      weft__conn_reading(c, 1);
    } else {
      weft__conn_reading(c, c->rlen < c->rcap); /* waiting for the write queue to drain */
    }
    break;
  case WEFT__PH_HEAD:
    if (c->rlen == c->rcap) {
      if (c->rcap >= s->head_cap) {
        weft__conn_fail(c, 431); /* whitespace or other bytes no limit counted */
        c->process_again = 1;
        return;
      }
      weft__rbuf_grow(c, c->rcap * 2 < s->head_cap ? c->rcap * 2 : s->head_cap);
    }
    if (c->peer_eof && c->rpos == c->rlen) {
      weft__conn_abort(c); /* a partial head and no more to come */
      return;
    }
    weft__conn_reading(c, 1);
    break;
  case WEFT__PH_ACTIVE:
    if (c->rpos > c->hend) {
      size_t n = c->rlen - c->rpos;
      memmove(c->rbuf + c->hend, c->rbuf + c->rpos, n);
      c->rlen = c->hend + n;
      c->rpos = c->hend;
    }
    weft__conn_reading(c, c->rlen < c->rcap);
    break;
  case WEFT__PH_LINGER:
    c->rlen = c->rpos = c->hend;
    weft__conn_reading(c, 1);
    break;
  default: break;
  }
}

void weft__conn_process(weft__conn_t *c) {
  if (c->in_process) { /* re-entered from a callback: the running loop will look again */
    c->process_again = 1;
    return;
  }
  weft_server_t *s = c->server;
  c->in_process = 1;
  weft__conn_hold(c);
  do {
    c->process_again = 0;
    /* After a head, llhttp must run once more even without input: a request without a body
     * completes on that run. */
    int kick = 0;
    for (;;) {
      if (c->phase >= WEFT__PH_LINGER) break;
      if (c->phase == WEFT__PH_ACTIVE) {
        if (!c->req_active && c->res_state == WEFT__RES_DONE && (c->msg_done || !c->keep_alive)) {
          weft__conn_finish(c);
          continue;
        }
        if (c->msg_done) break; /* pipelined input waits for this request to finish */
      }
      if (c->rpos == c->rlen && !kick) break;
      kick = 0;
      if (c->phase == WEFT__PH_IDLE) {
        /* A client that pipelines without reading the answers waits here. */
        if (c->io->queued(c) > s->limits.write_high_water) break;
        c->phase = WEFT__PH_HEAD;
        c->idle_wait = 0;
        if (c->nreq > 0) weft__conn_arm(c, WEFT__T_HEADER, s->limits.header_timeout);
      }
      int ev = weft__http1_execute(c);
      if (ev == WEFT__H1_MORE) break;
      if (ev == WEFT__H1_HEAD) {
        weft__conn_on_head(c);
        kick = 1;
      } else if (ev == WEFT__H1_DONE)
        weft__conn_on_done(c);
      else
        weft__conn_fail(c, ev);
    }
    weft__conn_tidy(c);
  } while (c->process_again);
  c->in_process = 0;
  weft__conn_unhold(c);
}

/* ---- connections ---- */

static weft__conn_t *weft__conn_alloc(weft_server_t *s, const weft__conn_io_t *io, void *io_ud) {
  weft__conn_t *c = weft__xmalloc(sizeof(*c));
  memset(c, 0, sizeof(*c));
  c->server = s;
  c->io = io;
  c->io_ud = io_ud;
  c->req.conn = c;
  c->phase = WEFT__PH_IDLE;
  weft__http1_init(c);
  uv_timer_init(s->loop->uv, &c->timer);
  c->timer.data = c;
  c->next = s->conns;
  if (s->conns != NULL) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  return c;
}

/* The first request's head must arrive within header_timeout of the accept. */
static void weft__conn_start(weft__conn_t *c) {
  weft__conn_arm(c, WEFT__T_HEADER, c->server->limits.header_timeout);
  weft__conn_reading(c, 1);
}

weft__conn_t *weft__conn_new(weft_server_t *s, const weft__conn_io_t *io, void *io_ud) {
  if (s->closing) return NULL;
  weft__conn_t *c = weft__conn_alloc(s, io, io_ud);
  weft__conn_start(c);
  return c;
}

void *weft__conn_io_ud(weft__conn_t *c) { return c->io_ud; }

size_t weft__conn_feed(weft__conn_t *c, const char *data, size_t len) {
  size_t done = 0;
  weft__conn_hold(c);
  while (done < len && c->reading && c->phase != WEFT__PH_CLOSED) {
    weft__conn_space(c);
    size_t n = c->rcap - c->rlen;
    if (n == 0) break;
    if (n > len - done) n = len - done;
    memcpy(c->rbuf + c->rlen, data + done, n);
    done += n;
    weft__conn_on_read(c, n);
  }
  weft__conn_unhold(c);
  return done;
}

/* ---- the socket io ---- */

static void weft__tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  weft__conn_t *c = h->data;
  WEFT__UNUSED(suggested);
  weft__conn_space(c);
  *buf = uv_buf_init(c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void weft__tcp_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  weft__conn_t *c = st->data;
  WEFT__UNUSED(buf);
  if (n > 0) {
    weft__conn_on_read(c, (size_t)n);
  } else if (n == UV_EOF) {
    weft__conn_eof(c);
  } else if (n == UV_ENOBUFS) {
    weft__conn_reading(c, 0); /* no room: resumes when the buffer drains */
  } else if (n < 0) {
    weft__conn_hold(c);
    weft__conn_abort(c);
    weft__conn_unhold(c);
  } else if (c->phase == WEFT__PH_IDLE && c->rlen == 0) {
    weft__rbuf_put(c); /* nothing came (EAGAIN): an idle connection holds no buffer */
  }
}

static int weft__tcp_read_start(weft__conn_t *c) {
  return uv_read_start((uv_stream_t *)&c->tcp, weft__tcp_alloc, weft__tcp_read);
}

static void weft__tcp_read_stop(weft__conn_t *c) { uv_read_stop((uv_stream_t *)&c->tcp); }

static int weft__tcp_try_write(weft__conn_t *c, const uv_buf_t *bufs, unsigned n) {
  return uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
}

static void weft__tcp_write_cb(uv_write_t *req, int status) {
  weft__wbuf_t *w = WEFT__CONTAINER_OF(req, weft__wbuf_t, req);
  weft__conn_write_done(w->conn, w, status);
}

static int weft__tcp_write(weft__conn_t *c, weft__wbuf_t *w, const uv_buf_t *bufs, unsigned n) {
  return uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, n, weft__tcp_write_cb);
}

static size_t weft__tcp_queued(weft__conn_t *c) {
  return uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
}

static void weft__tcp_shutdown_cb(uv_shutdown_t *req, int status) {
  weft__conn_shutdown_done(WEFT__CONTAINER_OF(req, weft__conn_t, shutdown_req), status);
}

static int weft__tcp_shutdown(weft__conn_t *c) {
  return uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, weft__tcp_shutdown_cb);
}

static void weft__tcp_closed(uv_handle_t *h) { weft__conn_io_closed(h->data); }

static void weft__tcp_close(weft__conn_t *c) {
  if (c->close_reset && uv_tcp_close_reset(&c->tcp, weft__tcp_closed) == 0) return;
  uv_close((uv_handle_t *)&c->tcp, weft__tcp_closed);
}

static int weft__tcp_peer(weft__conn_t *c, struct sockaddr_storage *ss) {
  int len = (int)sizeof(*ss);
  return uv_tcp_getpeername(&c->tcp, (struct sockaddr *)ss, &len);
}

static size_t weft__tcp_unsent(weft__conn_t *c) {
#ifdef SIOCOUTQ
  uv_os_fd_t fd;
  int n = 0;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 && ioctl(fd, SIOCOUTQ, &n) == 0 && n > 0)
    return (size_t)n;
#endif
  WEFT__UNUSED(c);
  return 0;
}

static const weft__conn_io_t weft__tcp_io = {
    weft__tcp_read_start, weft__tcp_read_stop, weft__tcp_try_write, weft__tcp_write,
    weft__tcp_queued,     weft__tcp_shutdown,  weft__tcp_close,     weft__tcp_peer,
    weft__tcp_unsent,
};

/* ---- the server ---- */

static void weft__refused_closed(uv_handle_t *h) { free(h); }

/* Over max_connections: accept the connection (so that it leaves the backlog rather than
 * wait there) and close it at once; the server's on_refused hears of it. */
static void weft__refuse(weft_server_t *s, uv_stream_t *listener) {
  uv_tcp_t *t = weft__xmalloc(sizeof(*t));
  uv_tcp_init(s->loop->uv, t);
  if (uv_accept(listener, (uv_stream_t *)t) == 0) s->refused++;
  uv_close((uv_handle_t *)t, weft__refused_closed);
  if (s->on_refused != NULL) {
    weft_frame_t *prev = weft_ctx_swap(s->loop, weft_frame_retain(s->frame));
    s->on_refused(s, s->refused, s->ud);
    weft_frame_release(weft_ctx_swap(s->loop, prev));
  }
}

static void weft__on_connection(uv_stream_t *listener, int status) {
  weft_server_t *s = listener->data;
  if (status < 0 || s->closing) return;
  if (s->limits.max_connections > 0 && s->nconns >= s->limits.max_connections) {
    weft__refuse(s, listener);
    return;
  }
  weft__conn_t *c = weft__conn_alloc(s, &weft__tcp_io, NULL);
  uv_tcp_init(s->loop->uv, &c->tcp);
  c->tcp.data = c;
  weft__conn_hold(c);
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    weft__conn_abort(c);
  } else {
    uv_tcp_nodelay(&c->tcp, 1);
    weft__conn_start(c);
  }
  weft__conn_unhold(c);
}

static weft_server_t *weft__server_alloc(weft_loop_t *loop, const weft_server_config_t *cfg) {
  weft_server_t *s = weft__xmalloc(sizeof(*s));
  memset(s, 0, sizeof(*s));
  s->loop = loop;
  if (cfg->limits != NULL)
    s->limits = *cfg->limits;
  else
    weft_limits_default(&s->limits);
  s->on_request = cfg->on_request;
  s->on_refused = cfg->on_refused;
  s->ud = cfg->ud;
  s->frame = weft_frame_retain(weft_ctx_current(loop));
  s->rbuf_size = WEFT__RBUF_SIZE;
  s->head_cap = s->limits.max_url + s->limits.max_header_bytes + WEFT__HEAD_SLACK;
  if (s->head_cap < s->rbuf_size) s->head_cap = s->rbuf_size;
  return s;
}

int weft__server_new_detached(weft_loop_t *loop, const weft_server_config_t *cfg,
                              weft_server_t **out) {
  if (cfg == NULL || cfg->on_request == NULL) return UV_EINVAL;
  *out = weft__server_alloc(loop, cfg);
  return 0;
}

static void weft__listener_closed(uv_handle_t *h) {
  weft_server_t *s = h->data;
  s->listener_open = 0;
  weft__server_maybe_free(s);
}

/* Fills *ss from a numeric address, or resolves a name (synchronously: it happens once). */
static int weft__resolve(weft_loop_t *loop, const char *host, int port,
                         struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
  uv_getaddrinfo_t req;
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(loop->uv, &req, NULL, host, NULL, &hints);
  if (rc != 0) return rc;
  if (req.addrinfo == NULL) return UV_EAI_NONAME;
  memcpy(ss, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
  uv_freeaddrinfo(req.addrinfo);
  if (ss->ss_family == AF_INET)
    ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
  return 0;
}

int weft_server_listen(weft_loop_t *loop, const weft_server_config_t *cfg, weft_server_t **out) {
  if (cfg == NULL || cfg->on_request == NULL || cfg->port < 0 || cfg->port > 65535)
    return UV_EINVAL;
  struct sockaddr_storage ss;
  int rc = weft__resolve(loop, cfg->host != NULL ? cfg->host : "127.0.0.1", cfg->port, &ss);
  if (rc != 0) return rc;
  weft_server_t *s = weft__server_alloc(loop, cfg);
  rc = uv_tcp_init(loop->uv, &s->listener);
  if (rc != 0) {
    weft_frame_release(s->frame);
    free(s);
    return rc;
  }
  s->listener.data = s;
  s->listener_open = 1;
  rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&s->listener, cfg->backlog > 0 ? cfg->backlog : 511,
                   weft__on_connection);
  if (rc != 0) { /* the server goes away with its handle, quietly */
    s->closing = 1;
    uv_close((uv_handle_t *)&s->listener, weft__listener_closed);
    return rc;
  }
  s->listening = 1;
  /* A peer that vanishes must cost an EPIPE, not the process (as Node does). Only when the
   * program has not chosen a disposition itself. */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
  *out = s;
  return 0;
}

int weft_server_address(weft_server_t *s, char *buf, size_t len, int *port) {
  if (!s->listening) return UV_ENOTCONN;
  struct sockaddr_storage ss;
  int n = (int)sizeof(ss);
  int rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &n);
  if (rc != 0) return rc;
  if (ss.ss_family == AF_INET6) {
    rc = uv_ip6_name((struct sockaddr_in6 *)&ss, buf, len);
    if (port != NULL) *port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  } else {
    rc = uv_ip4_name((struct sockaddr_in *)&ss, buf, len);
    if (port != NULL) *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  }
  return rc;
}

static void weft__server_deferred_check(void *data) {
  weft_server_t *s = data;
  s->defer_pending = 0;
  weft__server_maybe_free(s);
}

static void weft__server_maybe_free(weft_server_t *s) {
  if (!s->closing || s->nconns > 0 || s->listener_open || s->defer_pending || s->freeing) return;
  s->freeing = 1;
  if (s->closed_cb != NULL) {
    weft_frame_t *prev = weft_ctx_swap(s->loop, s->closed_frame); /* the reference moves in */
    s->closed_frame = NULL;
    s->closed_cb(s, s->closed_ud);
    weft_frame_release(weft_ctx_swap(s->loop, prev));
  }
  weft_frame_release(s->closed_frame);
  weft_frame_release(s->frame);
  weft__wbuf_pool_free(s);
  while (s->rpool != NULL) {
    void *b = s->rpool;
    memcpy(&s->rpool, b, sizeof(void *));
    free(b);
  }
  free(s);
}

void weft_server_close(weft_server_t *s, weft_server_closed_cb closed, void *ud) {
  if (s->closing) return;
  s->closing = 1;
  s->closed_cb = closed;
  s->closed_ud = ud;
  s->closed_frame = weft_frame_retain(weft_ctx_current(s->loop));
  if (s->listener_open) uv_close((uv_handle_t *)&s->listener, weft__listener_closed);
  /* Connections without a request close now (their last response still flushes); the
   * others close after their response. */
  for (weft__conn_t *c = s->conns, *next; c != NULL; c = next) {
    weft__conn_hold(c);
    if (c->phase == WEFT__PH_IDLE || c->phase == WEFT__PH_HEAD) weft__conn_end(c, 0);
    next = c->next;
    weft__conn_unhold(c);
  }
  if (!s->listener_open && s->nconns == 0) { /* report asynchronously, like the others */
    s->defer_pending = 1;
    weft_defer(s->loop, weft__server_deferred_check, s);
  }
}

size_t weft_server_connections(weft_server_t *s) { return s->nconns; }

void weft_server_abort_connections(weft_server_t *s) {
  for (weft__conn_t *c = s->conns, *next; c != NULL; c = next) {
    weft__conn_hold(c);
    weft__conn_abort(c);
    next = c->next;
    weft__conn_unhold(c);
  }
}

/* ---- the request ---- */

const char *weft_req_method(weft_req_t *r, size_t *len) {
  if (len != NULL) *len = r->conn->method_len;
  return r->conn->method;
}

const char *weft_req_target(weft_req_t *r, size_t *len) {
  weft__conn_t *c = r->conn;
  if (len != NULL) *len = c->target_len;
  return c->rbuf + c->target_off;
}

int weft_req_http_minor(weft_req_t *r) { return r->conn->http_minor; }

size_t weft_req_header_count(weft_req_t *r) { return r->conn->nhdrs; }

int weft_req_header_at(weft_req_t *r, size_t i, const char **name, size_t *nlen, const char **value,
                       size_t *vlen) {
  weft__conn_t *c = r->conn;
  if (i >= c->nhdrs) return UV_EINVAL;
  const weft__hdr_t *h = &c->hdrs[i];
  if (name != NULL) *name = c->rbuf + h->name_off;
  if (nlen != NULL) *nlen = h->name_len;
  if (value != NULL) *value = c->rbuf + h->value_off;
  if (vlen != NULL) *vlen = h->value_len;
  return 0;
}

const char *weft_req_header(weft_req_t *r, const char *name, size_t nlen, size_t *vlen) {
  weft__conn_t *c = r->conn;
  for (uint32_t i = 0; i < c->nhdrs; i++) {
    const weft__hdr_t *h = &c->hdrs[i];
    if (h->name_len == nlen && strncasecmp(c->rbuf + h->name_off, name, nlen) == 0) {
      if (vlen != NULL) *vlen = h->value_len;
      return c->rbuf + h->value_off;
    }
  }
  return NULL;
}

int weft_req_remote_addr(weft_req_t *r, char *buf, size_t len, int *port) {
  weft__conn_t *c = r->conn;
  if (c->io->peer == NULL) return UV_ENOTSUP;
  if (c->dead) return UV_ENOTCONN;
  struct sockaddr_storage ss;
  int rc = c->io->peer(c, &ss);
  if (rc != 0) return rc;
  if (ss.ss_family == AF_INET6) {
    if (port != NULL) *port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return uv_ip6_name((struct sockaddr_in6 *)&ss, buf, len);
  }
  if (port != NULL) *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return uv_ip4_name((struct sockaddr_in *)&ss, buf, len);
}

int weft_req_alive(weft_req_t *r) {
  weft__conn_t *c = r->conn;
  return !c->dead && !c->core_answered && c->phase <= WEFT__PH_ACTIVE;
}

int weft_req_read_body(weft_req_t *r, weft_body_cb cb, void *ud) {
  weft__conn_t *c = r->conn;
  if (!c->req_active || cb == NULL) return UV_EINVAL;
  if (c->body_reading != 0) return UV_EALREADY;
  weft__conn_hold(c);
  c->body_reading = 1;
  c->body_cb = cb;
  c->body_ud = ud;
  c->body_frame = weft_frame_retain(weft_ctx_current(c->server->loop));
  if (c->body_err != 0) {
    weft__conn_deliver_body(c, c->body_err);
  } else if (c->msg_done || !c->body_expected) {
    weft__conn_deliver_body(c, 0);
  } else if (c->dead) {
    weft__conn_deliver_body(c, UV_ECONNRESET);
  } else if (c->expect_continue && !c->continue_sent && c->res_state == WEFT__RES_NONE) {
    weft__res_continue(c); /* the client waits for this before sending the body */
  }
  weft__conn_unhold(c);
  return 0;
}

void weft_req_release(weft_req_t *r) {
  weft__conn_t *c = r->conn;
  if (!c->req_active) return;
  weft__conn_hold(c);
  if (c->res_state == WEFT__RES_NONE) {
    static const weft_header_t type = {"Content-Type", 12, "text/plain; charset=utf-8", 25};
    static const char body[] = "Internal Server Error\n";
    if (weft__res_send(c, 500, &type, 1, body, sizeof(body) - 1) != 0)
      c->res_state = WEFT__RES_DONE;
  } else if (c->res_state == WEFT__RES_STREAM) {
    /* An unfinished stream: closing tells the client it is cut short (a chunked body lacks
     * its last chunk; a close-delimited one would look complete after a FIN, so reset). */
    c->res_state = WEFT__RES_DONE;
    if (!c->res_chunked && !c->res_nobody) c->close_reset = 1;
    weft__conn_abort(c);
  }
  c->req_active = 0;
  /* Whoever still waits on this request is told it is over (the callbacks find the request
   * inactive: they cannot answer it any more). */
  if (c->body_reading == 1) weft__conn_deliver_body(c, UV_ECANCELED);
  if (c->drains != NULL) weft__res_fire_drain(c, UV_ECANCELED);
  if (c->phase == WEFT__PH_ACTIVE) weft__conn_process(c);
  weft__conn_unhold(c);
}

void weft_req_set_data(weft_req_t *r, void *data) { r->conn->req.data = data; }
void *weft_req_data(weft_req_t *r) { return r->conn->req.data; }
