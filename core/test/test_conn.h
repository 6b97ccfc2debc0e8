/*
 * test_conn.h — the harness of the tests that drive HTTP/1.1 connections without a socket
 * (test_http_raw.c, test_http_strict.c, and the fuzz target fuzz/fuzz_http1.c): bytes are fed
 * in as if read, and a recording io collects what the core writes. One connection per
 * environment; every function is static, so each program has its own.
 */
#ifndef WEFT_TEST_CONN_H
#define WEFT_TEST_CONN_H

#include "weft_internal.h"

#include "test_util.h"

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

/* ---- a recording io ---- */

typedef struct pend {
  weft__wbuf_t *w;
  char *data;
  size_t len;
  struct pend *next;
} pend_t;

typedef struct tio {
  weft__conn_t *c;
  char *out; /* everything written, NUL-terminated */
  size_t len, cap;
  int reading, shut_req, shut, closed;
  int blocked; /* try_write says EAGAIN and writes wait for tio_unblock */
  pend_t *head, *tail;
  size_t queued;
} tio_t;

static void tio_append(tio_t *t, const char *p, size_t n) {
  if (t->len + n + 1 > t->cap) {
    t->cap = (t->len + n + 1) * 2;
    t->out = realloc(t->out, t->cap);
  }
  memcpy(t->out + t->len, p, n);
  t->len += n;
  t->out[t->len] = '\0';
}

static tio_t *tio(weft__conn_t *c) { return weft__conn_io_ud(c); }

static int tio_read_start(weft__conn_t *c) {
  tio(c)->reading = 1;
  return 0;
}

static void tio_read_stop(weft__conn_t *c) { tio(c)->reading = 0; }

static int tio_try_write(weft__conn_t *c, const uv_buf_t *b, unsigned n) {
  tio_t *t = tio(c);
  CHECK(!t->closed && !t->shut_req);
  if (t->blocked || t->head != NULL) return UV_EAGAIN;
  size_t total = 0;
  for (unsigned i = 0; i < n; i++) {
    tio_append(t, b[i].base, b[i].len);
    total += b[i].len;
  }
  return (int)total;
}

static void tio_flush(tio_t *t) {
  while (t->head != NULL && !t->blocked) {
    pend_t *p = t->head;
    t->head = p->next;
    if (t->head == NULL) t->tail = NULL;
    tio_append(t, p->data, p->len);
    t->queued -= p->len;
    weft__wbuf_t *w = p->w;
    free(p->data);
    free(p);
    weft__conn_write_done(t->c, w, 0);
  }
  if (t->head == NULL && t->shut_req && !t->shut && !t->closed) {
    t->shut = 1;
    weft__conn_shutdown_done(t->c, 0);
  }
}

static int tio_write(weft__conn_t *c, weft__wbuf_t *w, const uv_buf_t *b, unsigned n) {
  tio_t *t = tio(c);
  CHECK(!t->closed && !t->shut_req);
  pend_t *p = calloc(1, sizeof(*p));
  p->w = w;
  for (unsigned i = 0; i < n; i++)
    p->len += b[i].len;
  p->data = malloc(p->len);
  size_t off = 0;
  for (unsigned i = 0; i < n; i++) {
    memcpy(p->data + off, b[i].base, b[i].len);
    off += b[i].len;
  }
  if (t->tail)
    t->tail->next = p;
  else
    t->head = p;
  t->tail = p;
  t->queued += p->len;
  tio_flush(t); /* completes synchronously unless blocked: the core must cope */
  return 0;
}

static size_t tio_queued(weft__conn_t *c) { return tio(c)->queued; }

static int tio_shutdown(weft__conn_t *c) {
  tio_t *t = tio(c);
  CHECK(!t->shut_req);
  t->shut_req = 1;
  tio_flush(t);
  return 0;
}

static void tio_close(weft__conn_t *c) {
  tio_t *t = tio(c);
  CHECK(!t->closed);
  t->closed = 1;
  t->reading = 0;
  while (t->head != NULL) {
    pend_t *p = t->head;
    t->head = p->next;
    t->queued -= p->len;
    weft__conn_write_done(c, p->w, UV_ECANCELED);
    free(p->data);
    free(p);
  }
  t->tail = NULL;
  if (t->shut_req && !t->shut) weft__conn_shutdown_done(c, UV_ECANCELED);
  weft__conn_io_closed(c);
}

static const weft__conn_io_t tio_vt = {tio_read_start, tio_read_stop, tio_try_write, tio_write,
                                       tio_queued,     tio_shutdown,  tio_close,     NULL, NULL};

static void tio_unblock(tio_t *t) {
  t->blocked = 0;
  tio_flush(t);
}

/* ---- the environment of one test ---- */

typedef void (*handler_t)(weft_req_t *r);

static struct {
  uv_loop_t uv;
  weft_loop_t *loop;
  weft_server_t *srv;
  weft__conn_t *c;
  tio_t io;
  handler_t handler;
  int closed;
  int nreq;
  char order[256];
  weft_req_t *req; /* a request the test holds on to */
  int body_status;
  char body[256];
  size_t body_len;
  int body_calls;
  int drained;
  int drain_status;
  weft_ctx_key_t *key;
  size_t frames0;
} E;

static void dispatch(weft_req_t *r, void *ud) {
  WEFT__UNUSED(ud);
  const char *t = weft_req_target(r, NULL);
  if (strlen(E.order) + strlen(t) < sizeof(E.order)) strcat(E.order, t);
  E.handler(r);
}

static weft_limits_t test_limits(void) {
  weft_limits_t l;
  weft_limits_default(&l);
  l.linger_timeout = 50;
  return l;
}

static void env_open_with(handler_t h, const weft_limits_t *lim) {
  memset(&E, 0, sizeof(E));
  E.frames0 = weft_ctx_live_frames();
  CHECK_INT(uv_loop_init(&E.uv), 0);
  CHECK_INT(weft_loop_new(&E.loop, &E.uv), 0);
  weft_server_config_t cfg = {0};
  weft_limits_t l = lim != NULL ? *lim : test_limits();
  cfg.limits = &l;
  cfg.on_request = dispatch;
  E.handler = h;
  CHECK_INT(weft__server_new_detached(E.loop, &cfg, &E.srv), 0);
  E.c = weft__conn_new(E.srv, &tio_vt, &E.io);
  CHECK(E.c != NULL);
  E.io.c = E.c;
  CHECK(E.io.reading);
  tio_append(&E.io, "", 0);
}

static void env_open(handler_t h) { env_open_with(h, NULL); }

static void spin(void) {
  for (int i = 0; i < 20; i++)
    uv_run(&E.uv, UV_RUN_NOWAIT);
}

static void on_closed(weft_server_t *s, void *ud) {
  WEFT__UNUSED(s);
  WEFT__UNUSED(ud);
  E.closed = 1;
}

static void env_close(void) {
  weft_server_close(E.srv, on_closed, NULL);
  weft_server_close(E.srv, on_closed, NULL); /* a second call is ignored */
  while (!E.closed)
    uv_run(&E.uv, UV_RUN_ONCE);
  weft_loop_free(E.loop);
  CHECK_INT(uv_loop_close(&E.uv), 0); /* no handle left behind */
  CHECK_INT(weft_ctx_live_frames(), E.frames0);
  free(E.io.out);
}

static void feed(const char *s) { CHECK_INT(weft__conn_feed(E.c, s, strlen(s)), strlen(s)); }

static void reset_out(void) {
  E.io.len = 0;
  E.io.out[0] = '\0';
}

/* ---- handlers ---- */

static const weft_header_t text_plain[] = {{"Content-Type", 12, "text/plain", 10}};

/* Answers with the target as the body. */
static void h_echo_target(weft_req_t *r) {
  size_t n;
  const char *t = weft_req_target(r, &n);
  char body[300];
  int len = snprintf(body, sizeof(body), "body:%.*s;", (int)n, t);
  CHECK_INT(weft_res_send(r, 200, text_plain, 1, body, (size_t)len), 0);
  weft_req_release(r);
  E.nreq++;
}

static void h_hold(weft_req_t *r) {
  E.req = r;
  E.nreq++;
}

static void on_body(weft_req_t *r, int status, const char *data, size_t len, void *ud) {
  WEFT__UNUSED(ud);
  E.body_calls++;
  E.body_status = status;
  CHECK(len < sizeof(E.body));
  if (status == 0) {
    CHECK(data != NULL);
    memcpy(E.body, data, len);
  }
  E.body_len = len;
  E.body[len] = '\0';
  if (status == 0) {
    char out[300];
    int n = snprintf(out, sizeof(out), "got:%s;", E.body);
    int alive = weft_req_alive(r);
    CHECK_INT(weft_res_send(r, 200, NULL, 0, out, (size_t)n), alive ? 0 : UV_ECONNRESET);
  } else {
    /* the core answered (413/408/400), or nobody is left to answer */
    int rc = weft_res_send(r, 200, NULL, 0, "x", 1);
    CHECK_INT(rc, status == UV_ECONNRESET ? UV_ECONNRESET : UV_EALREADY);
  }
  weft_req_release(r);
}

static void h_read_body(weft_req_t *r) {
  E.nreq++;
  CHECK_INT(weft_req_read_body(r, on_body, NULL), 0);
}

static void h_never(weft_req_t *r) {
  WEFT__UNUSED(r);
  CHECK(0 && "the handler must not run");
}

static void expect_error(const char *req, const char *status, const weft_limits_t *l) {
  env_open_with(h_never, l);
  feed(req);
  CHECK(strncmp(E.io.out, status, strlen(status)) == 0);
  CHECK_HAS(E.io.out, "\r\nConnection: close\r\n");
  CHECK_HAS(E.io.out, "\r\nContent-Type: text/plain; charset=utf-8\r\n");
  CHECK(E.io.shut_req);
  CHECK(!E.io.closed);                                /* lingering */
  CHECK_INT(weft__conn_feed(E.c, "more junk", 9), 9); /* and discarding */
  CHECK_INT(weft_test_count(E.io.out, "HTTP/1.1"), 1);
  spin();
  env_close();
}

#endif /* WEFT_TEST_CONN_H */
