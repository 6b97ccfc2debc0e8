/*
 * http1.c — parsing one connection's bytes into requests with llhttp, the only file that knows
 * llhttp. The head is recorded as slices (offsets) of the connection's read buffer: llhttp may
 * hand a token over in pieces across reads, and as the head always starts at offset 0 and its
 * bytes are never moved while it is parsed, the pieces are contiguous and just extend a slice.
 *
 * The parser pauses at two points, so that the caller acts outside llhttp_execute (where the
 * buffer may be moved and user code may run): after the head, and after the whole request
 * (which also holds pipelined requests back until the current one is answered).
 */
#include "weft_internal.h"

#include <llhttp.h>

_Static_assert(sizeof(llhttp_t) <= WEFT__H1_PARSER_SIZE, "WEFT__H1_PARSER_SIZE too small");

enum { WEFT__HS_NONE, WEFT__HS_FIELD, WEFT__HS_AFTER_FIELD, WEFT__HS_VALUE };

#define WEFT__PARSER(c) ((llhttp_t *)(void *)(c)->parser.bytes)
#define WEFT__CONN(p) ((weft__conn_t *)(p)->data)

/* Records a limit violation: llhttp stops with HPE_USER and the caller answers `status`. */
static int weft__h1_fail(llhttp_t *p, int status, const char *reason) {
  WEFT__CONN(p)->h1_status = status;
  llhttp_set_error_reason(p, reason);
  return HPE_USER;
}

static int weft__h1_url(llhttp_t *p, const char *at, size_t len) {
  weft__conn_t *c = WEFT__CONN(p);
  size_t off = (size_t)(at - c->rbuf);
  if (!c->target_started) {
    c->target_started = 1;
    c->target_off = (uint32_t)off;
  }
  size_t n = off + len - c->target_off;
  if (n > c->server->limits.max_url) return weft__h1_fail(p, 414, "URI too long");
  c->target_len = (uint32_t)n;
  return 0;
}

/* Counts header (or trailer) bytes against max_header_bytes. */
static int weft__h1_count(llhttp_t *p, size_t n) {
  weft__conn_t *c = WEFT__CONN(p);
  c->header_bytes += n;
  if (c->header_bytes > c->server->limits.max_header_bytes)
    return weft__h1_fail(p, 431, "header block too large");
  return 0;
}

static int weft__h1_field(llhttp_t *p, const char *at, size_t len) {
  weft__conn_t *c = WEFT__CONN(p);
  if (weft__h1_count(p, len) != 0) return HPE_USER;
  if (c->head_done) return 0; /* a trailer: counted, not kept */
  uint32_t off = (uint32_t)(at - c->rbuf);
  if (c->hstate != WEFT__HS_FIELD) {
    if (c->nhdrs >= c->server->limits.max_headers) return weft__h1_fail(p, 431, "too many headers");
    if (c->nhdrs == c->hdrs_cap) {
      c->hdrs_cap = c->hdrs_cap ? c->hdrs_cap * 2 : 16;
      c->hdrs = weft__xrealloc(c->hdrs, c->hdrs_cap * sizeof(*c->hdrs));
    }
    weft__hdr_t *h = &c->hdrs[c->nhdrs++];
    h->name_off = off;
    h->name_len = 0;
    h->value_len = 0;
    c->hstate = WEFT__HS_FIELD;
  }
  weft__hdr_t *h = &c->hdrs[c->nhdrs - 1];
  h->name_len = off + (uint32_t)len - h->name_off;
  h->value_off = h->name_off + h->name_len; /* empty until a value arrives */
  return 0;
}

static int weft__h1_field_complete(llhttp_t *p) {
  WEFT__CONN(p)->hstate = WEFT__HS_AFTER_FIELD;
  return 0;
}

static int weft__h1_value(llhttp_t *p, const char *at, size_t len) {
  weft__conn_t *c = WEFT__CONN(p);
  if (weft__h1_count(p, len) != 0) return HPE_USER;
  if (c->head_done || c->nhdrs == 0) return 0;
  weft__hdr_t *h = &c->hdrs[c->nhdrs - 1];
  uint32_t off = (uint32_t)(at - c->rbuf);
  if (c->hstate != WEFT__HS_VALUE) {
    h->value_off = off;
    c->hstate = WEFT__HS_VALUE;
  }
  h->value_len = off + (uint32_t)len - h->value_off;
  return 0;
}

static int weft__h1_value_complete(llhttp_t *p) {
  weft__conn_t *c = WEFT__CONN(p);
  c->hstate = WEFT__HS_NONE;
  if (weft__h1_count(p, 4) != 0) return HPE_USER; /* ": " and CRLF */
  if (c->head_done || c->nhdrs == 0) return 0;
  weft__hdr_t *h = &c->hdrs[c->nhdrs - 1];
  while (h->value_len > 0) { /* trailing whitespace is not part of the value */
    char ch = c->rbuf[h->value_off + h->value_len - 1];
    if (ch != ' ' && ch != '\t') break;
    h->value_len--;
  }
  return 0;
}

static int weft__h1_headers_complete(llhttp_t *p) {
  weft__conn_t *c = WEFT__CONN(p);
  c->head_done = 1;
  c->header_bytes = 0; /* from now on: trailer bytes */
  /* Request smuggling guards (llhttp rejects most of this itself; be explicit). */
  if ((p->flags & F_CONTENT_LENGTH) && (p->flags & F_TRANSFER_ENCODING))
    return weft__h1_fail(p, 400, "Content-Length with Transfer-Encoding");
  if ((p->flags & F_TRANSFER_ENCODING) && !(p->flags & F_CHUNKED))
    return weft__h1_fail(p, 400, "Transfer-Encoding not ending in chunked");
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->server->limits.max_body)
    return weft__h1_fail(p, 413, "body too large");
  c->method = llhttp_method_name((llhttp_method_t)p->method);
  c->method_len = strlen(c->method);
  c->http_minor = p->http_minor;
  c->is_head = p->method == HTTP_HEAD;
  /* After an upgrade or CONNECT the bytes are another protocol, which we do not speak. */
  c->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
  c->content_length = (p->flags & F_CONTENT_LENGTH) ? p->content_length : 0;
  c->body_expected = (p->flags & F_CHUNKED) || c->content_length > 0;
  c->h1_event = WEFT__H1_HEAD;
  return HPE_PAUSED;
}

static int weft__h1_body(llhttp_t *p, const char *at, size_t len) {
  int status = weft__conn_body(WEFT__CONN(p), at, len);
  if (status != 0) return weft__h1_fail(p, status, "body refused");
  return 0;
}

static int weft__h1_message_complete(llhttp_t *p) {
  WEFT__CONN(p)->h1_event = WEFT__H1_DONE;
  return HPE_PAUSED;
}

static const llhttp_settings_t weft__h1_settings = {
    .on_url = weft__h1_url,
    .on_header_field = weft__h1_field,
    .on_header_value = weft__h1_value,
    .on_headers_complete = weft__h1_headers_complete,
    .on_body = weft__h1_body,
    .on_message_complete = weft__h1_message_complete,
    .on_header_field_complete = weft__h1_field_complete,
    .on_header_value_complete = weft__h1_value_complete,
};

void weft__http1_init(weft__conn_t *c) {
  llhttp_t *p = WEFT__PARSER(c);
  llhttp_init(p, HTTP_REQUEST, &weft__h1_settings);
  p->data = c;
}

void weft__http1_next(weft__conn_t *c) {
  c->nhdrs = 0;
  c->header_bytes = 0;
  c->hstate = WEFT__HS_NONE;
  c->target_started = 0;
  c->target_off = c->target_len = 0;
  c->head_done = 0;
  c->method = NULL;
  c->method_len = 0;
}

/* NUL-terminates the target, names and values in place: each is followed by a delimiter that
 * has been parsed already (' ', ':', OWS or CR), so the bindings get C strings for free. */
static void weft__http1_seal(weft__conn_t *c) {
  c->rbuf[c->target_off + c->target_len] = '\0';
  for (uint32_t i = 0; i < c->nhdrs; i++) {
    weft__hdr_t *h = &c->hdrs[i];
    c->rbuf[h->name_off + h->name_len] = '\0';
    c->rbuf[h->value_off + h->value_len] = '\0';
  }
}

int weft__http1_execute(weft__conn_t *c) {
  llhttp_t *p = WEFT__PARSER(c);
  const char *data = c->rbuf + c->rpos;
  c->h1_event = WEFT__H1_MORE;
  c->h1_status = 0;
  llhttp_errno_t err = llhttp_execute(p, data, c->rlen - c->rpos);
  if (err == HPE_OK) {
    c->rpos = c->rlen;
    return WEFT__H1_MORE;
  }
  if (err == HPE_PAUSED && c->h1_event != WEFT__H1_MORE) {
    c->rpos = (size_t)(llhttp_get_error_pos(p) - c->rbuf);
    llhttp_resume(p);
    if (c->h1_event == WEFT__H1_HEAD) weft__http1_seal(c);
    return c->h1_event;
  }
  /* An upgrade pause only follows a completed request, after which we never parse again
   * (keep_alive is 0); anything else is bad input. */
  return c->h1_status != 0 ? c->h1_status : 400;
}
