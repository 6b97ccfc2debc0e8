/*
 * http1.c — parsing one connection's bytes into requests with llhttp, the only file that knows
 * llhttp. The head is recorded as slices (offsets) of the connection's read buffer: llhttp may
 * hand a token over in pieces across reads, and as the head always starts at offset 0 and its
 * bytes are never moved while it is parsed, the pieces are contiguous and just extend a slice.
 *
 * The parser pauses at two points, so that the caller acts outside llhttp_execute (where the
 * buffer may be moved and user code may run): after the head, and after the whole request
 * (which also holds pipelined requests back until the current one is answered).
 *
 * llhttp is built in strict mode (CMakeLists.txt), which refuses bare CRs in the framing and
 * raw non-ASCII bytes in the target. What strict llhttp 8.1 still accepts is refused here,
 * each with 400 (or 505) and a close, so that weft never reads a request differently from a
 * proxy in front of it:
 *   - in the head, a CR not followed by LF, an LF not preceded by CR, and obs-fold (a line
 *     starting with SP or HTAB: RFC 9112 section 5.2), found by one pass over the raw head;
 *   - a version other than HTTP/1.0 and HTTP/1.1 (HTTP/0.9's bare "GET /" included);
 *   - Transfer-Encoding on HTTP/1.0 (RFC 9112 section 6.1);
 *   - no Host on HTTP/1.1, more than one Host, or a Host that is not a host[:port] (section 3.2);
 *   - control characters or spaces in the target, and a path whose percent-escapes are
 *     malformed or decode to bytes that are not UTF-8;
 *   - chunk framing past its own limits: one chunk-size line (size, extensions) longer than
 *     WEFT__CHUNK_LINE_MAX, or the framing bytes of a body together past max_body (413), as
 *     the data is. Positions in the stream are counted in h1_abs so that the length of a line
 *     is known across reads.
 */
#include "weft_internal.h"

#include <llhttp.h>
#include <strings.h>

_Static_assert(sizeof(llhttp_t) <= WEFT__H1_PARSER_SIZE, "WEFT__H1_PARSER_SIZE too small");

enum { WEFT__HS_NONE, WEFT__HS_FIELD, WEFT__HS_AFTER_FIELD, WEFT__HS_VALUE };

#define WEFT__CHUNK_LINE_MAX 4096 /* bytes of one chunk-size line, its CRLF not counted */

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

/* The stream position of a byte of the input being parsed. */
static uint64_t weft__h1_pos(weft__conn_t *c, const char *at) {
  return c->h1_abs + (uint64_t)(at - c->h1_data);
}

/* A chunk-size line ended before stream position `end` (its CRLF included): check its
 * length. */
static int weft__h1_line_end(llhttp_t *p, uint64_t end) {
  weft__conn_t *c = WEFT__CONN(p);
  if (!c->chunk_line_open) return 0;
  c->chunk_line_open = 0;
  if (end - c->chunk_line_start > WEFT__CHUNK_LINE_MAX + 2)
    return weft__h1_fail(p, 400, "chunk-size line too long");
  return 0;
}

/* The framing bytes of a chunked body so far (everything parsed since the head that is not
 * data) against max_body: they cost the same to receive. */
static int weft__h1_framing(llhttp_t *p, uint64_t now) {
  weft__conn_t *c = WEFT__CONN(p);
  if (!c->chunked) return 0;
  uint64_t framing = now - c->body_start - c->body_total;
  if (framing > c->server->limits.max_body) return weft__h1_fail(p, 413, "chunk framing too large");
  return 0;
}

static int weft__h1_field(llhttp_t *p, const char *at, size_t len) {
  weft__conn_t *c = WEFT__CONN(p);
  if (weft__h1_count(p, len) != 0) return HPE_USER;
  if (c->head_done) /* a trailer: counted, not kept; the last chunk's line ended before it */
    return weft__h1_line_end(p, weft__h1_pos(c, at));
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
  if (p->http_major != 1) /* 0.9 (a bare "GET /"), 2.0, ...: not HTTP/1.x */
    return weft__h1_fail(p, p->http_major == 0 ? 400 : 505, "HTTP version not supported");
  /* Request smuggling guards (llhttp rejects most of this itself; be explicit). */
  if ((p->flags & F_CONTENT_LENGTH) && (p->flags & F_TRANSFER_ENCODING))
    return weft__h1_fail(p, 400, "Content-Length with Transfer-Encoding");
  if ((p->flags & F_TRANSFER_ENCODING) && !(p->flags & F_CHUNKED))
    return weft__h1_fail(p, 400, "Transfer-Encoding not ending in chunked");
  if ((p->flags & F_TRANSFER_ENCODING) && p->http_minor == 0)
    return weft__h1_fail(p, 400, "Transfer-Encoding in an HTTP/1.0 request");
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->server->limits.max_body)
    return weft__h1_fail(p, 413, "body too large");
  c->method = llhttp_method_name((llhttp_method_t)p->method);
  c->method_len = strlen(c->method);
  c->http_minor = p->http_minor;
  c->is_head = p->method == HTTP_HEAD;
  /* After an upgrade or CONNECT the bytes are another protocol, which we do not speak. */
  c->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
  c->content_length = (p->flags & F_CONTENT_LENGTH) ? p->content_length : 0;
  c->chunked = (p->flags & F_CHUNKED) ? 1 : 0;
  c->body_expected = c->chunked || c->content_length > 0;
  c->h1_event = WEFT__H1_HEAD;
  return HPE_PAUSED;
}

static int weft__h1_body(llhttp_t *p, const char *at, size_t len) {
  weft__conn_t *c = WEFT__CONN(p);
  uint64_t pos = weft__h1_pos(c, at);
  if (weft__h1_line_end(p, pos) != 0) return HPE_USER;
  int status = weft__conn_body(c, at, len);
  if (status != 0) return weft__h1_fail(p, status, "body refused");
  c->chunk_data_end = pos + len;
  return 0;
}

static int weft__h1_chunk_header(llhttp_t *p) {
  if (p->content_length == 0) WEFT__CONN(p)->chunk_last = 1;
  return 0;
}

static int weft__h1_chunk_complete(llhttp_t *p) {
  weft__conn_t *c = WEFT__CONN(p);
  /* The last chunk's line was closed by its trailers, or is closed at the message's end. */
  if (c->chunk_last) return 0;
  /* The next chunk-size line starts after this chunk's data and its CRLF. */
  c->chunk_line_open = 1;
  c->chunk_line_start = c->chunk_data_end + 2;
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
    .on_chunk_header = weft__h1_chunk_header,
    .on_chunk_complete = weft__h1_chunk_complete,
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
  c->chunked = 0;
  c->chunk_line_open = 0;
  c->chunk_last = 0;
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

/* One pass over the raw head [0, end): every line ends in CRLF, and no line but the first
 * starts with SP or HTAB (obs-fold). llhttp has checked everything else about its bytes. */
static int weft__h1_head_lines(const char *head, size_t end) {
  for (const char *p = head, *stop = head + end; p < stop; p++) {
    p = memchr(p, '\n', (size_t)(stop - p));
    if (p == NULL) {
      p = stop;
      break;
    }
    if (p == head || p[-1] != '\r') return -1; /* a bare LF */
    if (p + 1 < stop && (p[1] == ' ' || p[1] == '\t')) return -1;
  }
  /* CRs: each must be followed by LF (llhttp refuses most of the others itself) */
  for (const char *p = head, *stop = head + end; (p = memchr(p, '\r', (size_t)(stop - p)));) {
    if (p + 1 >= stop || p[1] != '\n') return -1;
    p++;
  }
  return 0;
}

/* 1 if a Host value is host[:port]: reg-name, IPv4 or [IPv6] characters (RFC 3986), or
 * empty (a target without an authority). */
static int weft__h1_host_ok(const char *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)v[i];
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) continue;
    if (strchr("-._~!$&'()*+,;=%:[]", ch) == NULL || ch == 0) return 0;
  }
  return 1;
}

/* The checks on a complete head that need all of it: 0 or the status to answer. */
static int weft__h1_check_head(weft__conn_t *c) {
  if (weft__h1_head_lines(c->rbuf, c->rpos) != 0) return 400;
  int hosts = 0;
  for (uint32_t i = 0; i < c->nhdrs; i++) {
    const weft__hdr_t *h = &c->hdrs[i];
    if (h->name_len != 4 || strncasecmp(c->rbuf + h->name_off, "host", 4) != 0) continue;
    if (++hosts > 1 || !weft__h1_host_ok(c->rbuf + h->value_off, h->value_len)) return 400;
  }
  if (hosts == 0 && c->http_minor == 1) return 400;
  /* The target: no controls, spaces or DEL (llhttp lets a HTAB through), and a path that
   * percent-decodes to UTF-8. */
  const char *t = c->rbuf + c->target_off;
  size_t plen = c->target_len;
  for (size_t i = 0; i < c->target_len; i++) {
    unsigned char ch = (unsigned char)t[i];
    if (ch <= 0x20 || ch == 0x7f) return 400;
    if (ch == '?' && plen == c->target_len) plen = i;
  }
  if (weft_url_decode(t, plen, NULL, 0) < 0) return 400;
  return 0;
}

int weft__http1_execute(weft__conn_t *c) {
  llhttp_t *p = WEFT__PARSER(c);
  const char *data = c->rbuf + c->rpos;
  size_t len = c->rlen - c->rpos;
  c->h1_event = WEFT__H1_MORE;
  c->h1_status = 0;
  c->h1_data = data;
  llhttp_errno_t err = llhttp_execute(p, data, len);
  if (err == HPE_OK) {
    c->rpos = c->rlen;
    c->h1_abs += len;
    if (c->head_done && c->chunked) {
      /* a chunk-size line still open at the end of the input: at most its CR is not counted */
      if (c->chunk_line_open && c->h1_abs - c->chunk_line_start > WEFT__CHUNK_LINE_MAX + 1)
        return 400;
      if (weft__h1_framing(p, c->h1_abs) != 0) return c->h1_status;
    }
    return WEFT__H1_MORE;
  }
  if (err == HPE_PAUSED && c->h1_event != WEFT__H1_MORE) {
    size_t rpos = (size_t)(llhttp_get_error_pos(p) - c->rbuf);
    c->h1_abs += rpos - c->rpos;
    c->rpos = rpos;
    llhttp_resume(p);
    if (c->h1_event == WEFT__H1_HEAD) {
      int status = weft__h1_check_head(c);
      if (status != 0) return status;
      weft__http1_seal(c);
      /* a chunked body starts here, with its first chunk-size line */
      c->body_start = c->chunk_line_start = c->h1_abs;
      c->chunk_line_open = c->chunked;
    } else if (c->chunked) {
      /* the last chunk's line (if no trailer ended it) ended before its CRLF and the final one */
      if (weft__h1_line_end(p, c->h1_abs - 2) != 0) return c->h1_status;
      if (weft__h1_framing(p, c->h1_abs) != 0) return c->h1_status;
    }
    return c->h1_event;
  }
  /* An upgrade pause only follows a completed request, after which we never parse again
   * (keep_alive is 0); anything else is bad input. */
  return c->h1_status != 0 ? c->h1_status : 400;
}
