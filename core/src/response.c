/*
 * response.c — serialising responses and writing them: the whole-response path (one buffer,
 * one syscall in the common case), streaming (chunked on HTTP/1.1, close-delimited on 1.0),
 * backpressure against write_high_water, and the pooled output buffers.
 *
 * Every write first tries uv_try_write; only what the socket did not take at once is queued,
 * and borrowed caller memory in it is copied then (libuv does not copy buffers).
 *
 * Framing headers are the core's: a caller's Content-Length or Transfer-Encoding header is
 * dropped (the core knows the true length; a lying one would desynchronise the client). A
 * caller's Date replaces the core's; a caller's Connection is sent unless the core has decided
 * to close and the caller's value does not say "close" (then the core's "close" is sent).
 */
#include "weft_internal.h"

#define WEFT__WBUF_SIZE 8192 /* pooled output buffer: a head and a small body */
#define WEFT__WPOOL_MAX 256  /* pooled buffers kept per server */
#define WEFT__HEAD_BOUND 256 /* bytes of head the core adds, at most */

enum { WEFT__FR_LENGTH, WEFT__FR_CHUNKED, WEFT__FR_CLOSE, WEFT__FR_NONE };
enum { WEFT__H_OTHER, WEFT__H_DATE, WEFT__H_CONNECTION, WEFT__H_FRAMING };

/* ---- pooled output buffers ---- */

/* An output buffer of at least `need` bytes for `c`, from the pool when standard-sized. */
static weft__wbuf_t *weft__wbuf_get(weft_server_t *s, weft__conn_t *c, size_t need) {
  weft__wbuf_t *w;
  if (need <= WEFT__WBUF_SIZE) {
    w = s->wpool;
    if (w != NULL) {
      s->wpool = w->next;
      s->wpool_n--;
    } else {
      w = weft__xmalloc(sizeof(*w) + WEFT__WBUF_SIZE);
      w->cap = WEFT__WBUF_SIZE;
    }
  } else {
    w = weft__xmalloc(sizeof(*w) + need);
    w->cap = need;
  }
  w->len = 0;
  w->conn = c;
  w->next = NULL;
  return w;
}

/* Returns a buffer to the pool (or frees an odd-sized one, or one over the pool's cap). */
static void weft__wbuf_put(weft_server_t *s, weft__wbuf_t *w) {
  if (w->cap == WEFT__WBUF_SIZE && s->wpool_n < WEFT__WPOOL_MAX) {
    w->next = s->wpool;
    s->wpool = w;
    s->wpool_n++;
  } else {
    free(w);
  }
}

void weft__wbuf_pool_free(weft_server_t *s) {
  for (weft__wbuf_t *w = s->wpool, *next; w != NULL; w = next) {
    next = w->next;
    free(w);
  }
  s->wpool = NULL;
  s->wpool_n = 0;
}

/* ---- writing ---- */

/* Writes w's bytes, then `mid` (borrowed: copied if the socket does not take it at once), then
 * `tail` (static memory). Takes ownership of w. On failure the connection is aborted. */
static int weft__res_output(weft__conn_t *c, weft__wbuf_t *w, const char *mid, size_t mlen,
                            const char *tail, size_t tlen) {
  weft_server_t *s = c->server;
  uv_buf_t b[3];
  unsigned n = 0;
  size_t wl = w->len, total = wl + mlen + tlen, done = 0;
  if (wl > 0) b[n++] = uv_buf_init(w->data, (unsigned)wl);
  if (mlen > 0) b[n++] = uv_buf_init((char *)mid, (unsigned)mlen);
  if (tlen > 0) b[n++] = uv_buf_init((char *)tail, (unsigned)tlen);
  if (total == 0) {
    weft__wbuf_put(s, w);
    return 0;
  }
  if (c->io->queued(c) == 0) {
    int r = c->io->try_write(c, b, n);
    if (r >= 0) {
      done = (size_t)r;
    } else if (r != UV_EAGAIN) {
      weft__wbuf_put(s, w);
      weft__conn_abort(c);
      return r;
    }
    if (done == total) {
      weft__wbuf_put(s, w);
      return 0;
    }
  }
  n = 0;
  if (mlen > 0 && done < wl + mlen) {
    /* Borrowed bytes remain: copy them (with what remains of w) into an owned buffer. */
    size_t wrest = done < wl ? wl - done : 0;
    size_t moff = done > wl ? done - wl : 0;
    weft__wbuf_t *w2 = weft__wbuf_get(s, c, wrest + mlen - moff);
    memcpy(w2->data, w->data + wl - wrest, wrest);
    memcpy(w2->data + wrest, mid + moff, mlen - moff);
    w2->len = wrest + mlen - moff;
    weft__wbuf_put(s, w);
    w = w2;
    b[n++] = uv_buf_init(w->data, (unsigned)w->len);
    if (tlen > 0) b[n++] = uv_buf_init((char *)tail, (unsigned)tlen);
  } else {
    if (done < wl) b[n++] = uv_buf_init(w->data + done, (unsigned)(wl - done));
    size_t toff = done > wl + mlen ? done - wl - mlen : 0;
    if (tlen > toff) b[n++] = uv_buf_init((char *)tail + toff, (unsigned)(tlen - toff));
  }
  int rc = c->io->write(c, w, b, n);
  if (rc != 0) {
    weft__wbuf_put(s, w);
    weft__conn_abort(c);
    return rc;
  }
  weft__conn_wq_changed(c);
  return 0;
}

void weft__conn_write_done(weft__conn_t *c, weft__wbuf_t *w, int status) {
  weft__conn_hold(c);
  weft__wbuf_put(c->server, w);
  if (status < 0) {
    weft__conn_abort(c);
  } else if (c->phase != WEFT__PH_CLOSED) {
    weft__conn_wq_changed(c);
    if (c->drains != NULL && c->io->queued(c) <= c->server->limits.write_high_water)
      weft__res_fire_drain(c, 0);
    /* The next pipelined request may have been waiting for the queue to drain. */
    if (c->phase == WEFT__PH_IDLE && c->rpos < c->rlen) weft__conn_process(c);
  }
  weft__conn_unhold(c);
}

void weft__res_fire_drain(weft__conn_t *c, int status) {
  /* The list is taken whole: a writer that registers again from its callback waits for the
   * next drain, not this one. */
  weft__drain_t *d = c->drains;
  c->drains = c->drains_tail = NULL;
  weft_loop_t *loop = c->server->loop;
  while (d != NULL) {
    weft__drain_t *next = d->next;
    weft_frame_t *prev = weft_ctx_swap(loop, d->frame); /* the node's reference moves in */
    d->cb(&c->req, status, d->ud);
    weft_frame_release(weft_ctx_swap(loop, prev));
    free(d);
    d = next;
  }
}

/* ---- serialising ---- */

static const char *weft__reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 103: return "Early Hints";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 203: return "Non-Authoritative Information";
  case 204: return "No Content";
  case 205: return "Reset Content";
  case 206: return "Partial Content";
  case 300: return "Multiple Choices";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 402: return "Payment Required";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 407: return "Proxy Authentication Required";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
  case 417: return "Expectation Failed";
  case 418: return "I'm a teapot";
  case 421: return "Misdirected Request";
  case 422: return "Unprocessable Content";
  case 423: return "Locked";
  case 425: return "Too Early";
  case 426: return "Upgrade Required";
  case 428: return "Precondition Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 451: return "Unavailable For Legal Reasons";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  case 507: return "Insufficient Storage";
  case 511: return "Network Authentication Required";
  default: return "";
  }
}

/* 1 if the first n bytes of a equal `lower` ignoring ASCII case (`lower` is lower case). */
static int weft__ieq(const char *a, const char *lower, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char ch = a[i];
    if (ch >= 'A' && ch <= 'Z') ch = (char)(ch + 32);
    if (ch != lower[i]) return 0;
  }
  return 1;
}

static int weft__classify(const weft_header_t *h) {
  switch (h->nlen) {
  case 4: return weft__ieq(h->name, "date", 4) ? WEFT__H_DATE : WEFT__H_OTHER;
  case 10: return weft__ieq(h->name, "connection", 10) ? WEFT__H_CONNECTION : WEFT__H_OTHER;
  case 14: return weft__ieq(h->name, "content-length", 14) ? WEFT__H_FRAMING : WEFT__H_OTHER;
  case 17: return weft__ieq(h->name, "transfer-encoding", 17) ? WEFT__H_FRAMING : WEFT__H_OTHER;
  default: return WEFT__H_OTHER;
  }
}

/* 1 if a comma-separated header value holds the token "close". */
static int weft__has_close(const char *v, size_t n) {
  size_t i = 0;
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
      i++;
    size_t start = i;
    while (i < n && v[i] != ',')
      i++;
    size_t end = i;
    while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
      end--;
    if (end - start == 5 && weft__ieq(v + start, "close", 5)) return 1;
  }
  return 0;
}

/* 1 for the bytes of a token (RFC 9110 section 5.6.2): a header name is one. */
static int weft__tchar(unsigned char ch) {
  /* bit ch of the set: ALPHA, DIGIT and !#$%&'*+-.^_`|~ */
  static const uint32_t set[8] = {0, 0x03ff6cfa, 0xc7fffffe, 0x57ffffff, 0, 0, 0, 0};
  return (set[ch >> 5] >> (ch & 31)) & 1;
}

/* Checks the caller's headers, so that none can bend the framing: a name is a token (so no
 * "Transfer-Encoding " or "a:b"), a value holds no control character but HTAB (field-content,
 * RFC 9110 section 5.5; obs-text is allowed). *bytes gets their serialised size. */
static int weft__hdr_check(const weft_header_t *h, size_t n, size_t *bytes) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    if (h[i].nlen == 0 || h[i].name == NULL || (h[i].vlen > 0 && h[i].value == NULL))
      return UV_EINVAL;
    for (size_t j = 0; j < h[i].nlen; j++)
      if (!weft__tchar((unsigned char)h[i].name[j])) return UV_EINVAL;
    for (size_t j = 0; j < h[i].vlen; j++) {
      unsigned char ch = (unsigned char)h[i].value[j];
      if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return UV_EINVAL;
    }
    total += h[i].nlen + h[i].vlen + 4;
  }
  *bytes = total;
  return 0;
}

static char *weft__put(char *p, const char *s, size_t n) {
  memcpy(p, s, n);
  return p + n;
}
#define WEFT__PUTS(p, lit) weft__put((p), (lit), sizeof(lit) - 1)

static char *weft__put_u64(char *p, uint64_t v) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0)
    *p++ = tmp[--n];
  return p;
}

static char *weft__put_hex(char *p, uint64_t v) {
  static const char digits[] = "0123456789abcdef";
  char tmp[16];
  size_t n = 0;
  do {
    tmp[n++] = digits[v & 15];
    v >>= 4;
  } while (v != 0);
  while (n > 0)
    *p++ = tmp[--n];
  return p;
}

static char *weft__put_status(char *p, int status) {
  p = WEFT__PUTS(p, "HTTP/1.1 ");
  *p++ = (char)('0' + status / 100);
  *p++ = (char)('0' + status / 10 % 10);
  *p++ = (char)('0' + status % 10);
  *p++ = ' ';
  const char *reason = weft__reason(status);
  p = weft__put(p, reason, strlen(reason));
  return WEFT__PUTS(p, "\r\n");
}

/* Serialises a final response head into a new output buffer with `extra` spare bytes, and
 * decides whether the connection closes after this response (c->keep_alive). */
static weft__wbuf_t *weft__res_head(weft__conn_t *c, int status, const weft_header_t *h, size_t n,
                                    size_t hbytes, int framing, uint64_t clen, size_t extra) {
  weft_server_t *s = c->server;
  int user_date = 0, user_conn = 0, user_close = 0;
  for (size_t i = 0; i < n; i++) {
    int kind = weft__classify(&h[i]);
    if (kind == WEFT__H_DATE) {
      user_date = 1;
    } else if (kind == WEFT__H_CONNECTION) {
      user_conn = 1;
      if (weft__has_close(h[i].value, h[i].vlen)) user_close = 1;
    }
  }
  /* A client that asked for 100-continue and was not told to go on may still send a body of
   * unknown fate: the only safe way on is a fresh connection. */
  int closing = framing == WEFT__FR_CLOSE || user_close || !c->keep_alive || s->closing ||
                (c->expect_continue && !c->continue_sent && !c->msg_done);
  if (closing) c->keep_alive = 0;
  int send_user_conn = user_conn && (!closing || user_close);

  weft__wbuf_t *w = weft__wbuf_get(s, c, WEFT__HEAD_BOUND + hbytes + extra);
  char *p = weft__put_status(w->data, status);
  if (!user_date) {
    size_t dlen;
    const char *date = weft_http_date(s->loop, &dlen);
    p = WEFT__PUTS(p, "Date: ");
    p = weft__put(p, date, dlen);
    p = WEFT__PUTS(p, "\r\n");
  }
  if (framing == WEFT__FR_LENGTH) {
    p = WEFT__PUTS(p, "Content-Length: ");
    p = weft__put_u64(p, clen);
    p = WEFT__PUTS(p, "\r\n");
  } else if (framing == WEFT__FR_CHUNKED) {
    p = WEFT__PUTS(p, "Transfer-Encoding: chunked\r\n");
  }
  if (!send_user_conn) {
    if (closing)
      p = WEFT__PUTS(p, "Connection: close\r\n");
    else if (c->http_minor == 0)
      p = WEFT__PUTS(p, "Connection: keep-alive\r\n");
  }
  for (size_t i = 0; i < n; i++) {
    int kind = weft__classify(&h[i]);
    if (kind == WEFT__H_FRAMING || (kind == WEFT__H_CONNECTION && !send_user_conn)) continue;
    p = weft__put(p, h[i].name, h[i].nlen);
    p = WEFT__PUTS(p, ": ");
    p = weft__put(p, h[i].value, h[i].vlen);
    p = WEFT__PUTS(p, "\r\n");
  }
  p = WEFT__PUTS(p, "\r\n");
  w->len = (size_t)(p - w->data);
  return w;
}

/* An interim (1xx) response: the final one is still to come. */
static int weft__res_info(weft__conn_t *c, int status, const weft_header_t *h, size_t n,
                          size_t hbytes, size_t len) {
  if (status == 101 || len > 0) return UV_EINVAL; /* no upgrades; interim responses are bare */
  if (c->http_minor == 0) return 0;               /* HTTP/1.0 knows no interim responses */
  weft__wbuf_t *w = weft__wbuf_get(c->server, c, WEFT__HEAD_BOUND + hbytes);
  char *p = weft__put_status(w->data, status);
  for (size_t i = 0; i < n; i++) {
    if (weft__classify(&h[i]) != WEFT__H_OTHER) continue;
    p = weft__put(p, h[i].name, h[i].nlen);
    p = WEFT__PUTS(p, ": ");
    p = weft__put(p, h[i].value, h[i].vlen);
    p = WEFT__PUTS(p, "\r\n");
  }
  p = WEFT__PUTS(p, "\r\n");
  w->len = (size_t)(p - w->data);
  if (status == 100) c->continue_sent = 1;
  return weft__res_output(c, w, NULL, 0, NULL, 0);
}

int weft__res_send(weft__conn_t *c, int status, const weft_header_t *h, size_t n, const char *body,
                   size_t len) {
  if (c->res_state != WEFT__RES_NONE) return UV_EALREADY;
  if (c->dead) return UV_ECONNRESET;
  if (status < 100 || status > 999 || (len > 0 && body == NULL)) return UV_EINVAL;
  size_t hbytes;
  if (weft__hdr_check(h, n, &hbytes) != 0) return UV_EINVAL;
  weft__conn_hold(c);
  int rc;
  if (status < 200) {
    rc = weft__res_info(c, status, h, n, hbytes, len);
  } else {
    int nolen = status == 204 || status == 304;
    if (nolen || c->is_head) len = nolen ? 0 : len, body = NULL; /* Content-Length stays */
    size_t copy = body != NULL && WEFT__HEAD_BOUND + hbytes + len <= WEFT__WBUF_SIZE ? len : 0;
    weft__wbuf_t *w = weft__res_head(c, status, h, n, hbytes,
                                     nolen ? WEFT__FR_NONE : WEFT__FR_LENGTH, len, copy);
    c->res_state = WEFT__RES_DONE;
    if (copy > 0) {
      memcpy(w->data + w->len, body, copy);
      w->len += copy;
      body = NULL;
    }
    rc = weft__res_output(c, w, body, body != NULL ? len : 0, NULL, 0);
  }
  weft__conn_unhold(c);
  return rc;
}

void weft__res_error(weft__conn_t *c, int status) {
  static const weft_header_t type = {"Content-Type", 12, "text/plain; charset=utf-8", 25};
  char body[64];
  const char *reason = weft__reason(status);
  size_t n = strlen(reason);
  memcpy(body, reason, n);
  body[n++] = '\n';
  c->keep_alive = 0;
  weft__res_send(c, status, &type, 1, body, n);
}

int weft__res_continue(weft__conn_t *c) {
  static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
  c->continue_sent = 1;
  return weft__res_output(c, weft__wbuf_get(c->server, c, 0), NULL, 0, line, sizeof(line) - 1);
}

/* ---- the public response API ---- */

int weft_res_send(weft_req_t *r, int status, const weft_header_t *headers, size_t n,
                  const char *body, size_t len) {
  weft__conn_t *c = r->conn;
  if (!c->req_active) return UV_EINVAL;
  return weft__res_send(c, status, headers, n, body, len);
}

int weft_res_start(weft_req_t *r, int status, const weft_header_t *headers, size_t n) {
  weft__conn_t *c = r->conn;
  if (!c->req_active || status < 200 || status > 999) return UV_EINVAL;
  if (c->res_state != WEFT__RES_NONE) return UV_EALREADY;
  if (c->dead) return UV_ECONNRESET;
  size_t hbytes;
  if (weft__hdr_check(headers, n, &hbytes) != 0) return UV_EINVAL;
  int nolen = status == 204 || status == 304;
  int framing = nolen ? WEFT__FR_NONE : c->http_minor >= 1 ? WEFT__FR_CHUNKED : WEFT__FR_CLOSE;
  weft__conn_hold(c);
  weft__wbuf_t *w = weft__res_head(c, status, headers, n, hbytes, framing, 0, 0);
  c->res_state = WEFT__RES_STREAM;
  c->res_chunked = framing == WEFT__FR_CHUNKED;
  c->res_nobody = nolen || c->is_head;
  int rc = weft__res_output(c, w, NULL, 0, NULL, 0);
  weft__conn_unhold(c);
  return rc;
}

int weft_res_write(weft_req_t *r, const char *data, size_t len, weft_drain_cb drained, void *ud) {
  weft__conn_t *c = r->conn;
  if (!c->req_active || (len > 0 && data == NULL)) return UV_EINVAL;
  if (c->res_state != WEFT__RES_STREAM)
    return c->res_state == WEFT__RES_NONE ? UV_EINVAL : UV_EALREADY;
  if (c->dead) return UV_ECONNRESET;
  weft_server_t *s = c->server;
  int rc = 0;
  weft__conn_hold(c);
  if (len > 0 && !c->res_nobody) {
    /* chunk-size line + data + CRLF; small chunks are copied into one buffer */
    size_t frame = c->res_chunked ? 20 : 0;
    int copy = frame + len + 2 <= WEFT__WBUF_SIZE;
    weft__wbuf_t *w = weft__wbuf_get(s, c, copy ? frame + len + 2 : frame);
    char *p = w->data;
    if (c->res_chunked) {
      p = weft__put_hex(p, len);
      p = WEFT__PUTS(p, "\r\n");
    }
    if (copy) {
      p = weft__put(p, data, len);
      if (c->res_chunked) p = WEFT__PUTS(p, "\r\n");
      w->len = (size_t)(p - w->data);
      rc = weft__res_output(c, w, NULL, 0, NULL, 0);
    } else {
      w->len = (size_t)(p - w->data);
      rc = weft__res_output(c, w, data, len, c->res_chunked ? "\r\n" : NULL,
                            c->res_chunked ? 2 : 0);
    }
  }
  if (rc == 0) {
    if (c->dead) {
      rc = UV_ECONNRESET;
    } else if (c->io->queued(c) > s->limits.write_high_water) {
      rc = 1;
      if (drained != NULL) { /* joins the writers already waiting */
        weft__drain_t *d = weft__xmalloc(sizeof(*d));
        d->next = NULL;
        d->cb = drained;
        d->ud = ud;
        d->frame = weft_frame_retain(weft_ctx_current(s->loop));
        if (c->drains_tail != NULL)
          c->drains_tail->next = d;
        else
          c->drains = d;
        c->drains_tail = d;
      }
    }
  }
  weft__conn_unhold(c);
  return rc;
}

int weft_res_finish(weft_req_t *r) {
  weft__conn_t *c = r->conn;
  if (!c->req_active) return UV_EINVAL;
  if (c->res_state != WEFT__RES_STREAM)
    return c->res_state == WEFT__RES_NONE ? UV_EINVAL : UV_EALREADY;
  c->res_state = WEFT__RES_DONE;
  if (c->dead) return UV_ECONNRESET;
  if (!c->res_chunked || c->res_nobody) return 0;
  static const char last[] = "0\r\n\r\n";
  weft__conn_hold(c);
  int rc = weft__res_output(c, weft__wbuf_get(c->server, c, 0), NULL, 0, last, sizeof(last) - 1);
  weft__conn_unhold(c);
  return rc;
}

int weft_res_started(weft_req_t *r) { return r->conn->res_state != WEFT__RES_NONE; }
