/*
 * test_http_strict.c — requests a correct server must refuse (RFC 9112), driven through the raw
 * connection seam: each gets its 400 (413, 505) and a close, never reaches a handler with
 * what it smuggled, and a request pipelined behind it is never served.
 */
#include "test_conn.h"

/* Feeds req, then a well-formed request behind it on the same connection: the core answers
 * `status` once, closes, and serves nothing else. `handler` may run for the first request
 * (a bad body is only seen after the head). */
static void refuse_with(handler_t handler, const char *req, const char *status,
                        const weft_limits_t *l) {
  env_open_with(handler, l);
  size_t len = strlen(req);
  CHECK_INT(weft__conn_feed(E.c, req, len), len);
  weft__conn_feed(E.c, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n", 33); /* discarded */
  if (strncmp(E.io.out, status, strlen(status)) != 0) {
    fprintf(stderr, "request: %s\nanswer: %s\n", req, E.io.out);
    CHECK(0 && "unexpected answer");
  }
  CHECK_HAS(E.io.out, "\r\nConnection: close\r\n");
  CHECK_INT(weft_test_count(E.io.out, "HTTP/1.1 "), 1);
  CHECK_HASNT(E.order, "/second");
  CHECK(E.io.shut_req);
  spin();
  env_close();
}

static void refuse(const char *req, const char *status) { refuse_with(h_never, req, status, NULL); }

/* The request is served (200 from h_echo_target or h_read_body). */
static void accept_req(handler_t handler, const char *req) {
  env_open(handler);
  feed(req);
  if (strncmp(E.io.out, "HTTP/1.1 200 ", 13) != 0) {
    fprintf(stderr, "request: %s\nanswer: %s\n", req, E.io.out);
    CHECK(0 && "refused");
  }
  env_close();
}

static void test_bare_cr(void) {
  /* in the head: a CR not followed by LF ends nothing */
  refuse("GET / HTTP/1.1\r\nHost: x\r\n\r\r\n", "HTTP/1.1 400 ");
  refuse("GET / HTTP/1.1\r\nHost: x\r\nX-A: b\rc: d\r\n\r\n", "HTTP/1.1 400 ");
  refuse("GET / HTTP/1.1\rHost: x\r\n\r\n", "HTTP/1.1 400 ");
  /* nor does a bare LF */
  refuse("\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 ");
  refuse("GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", "HTTP/1.1 400 ");
  /* in chunked framing: the size line, the CRLF after the data, the last line */
  refuse_with(h_read_body,
              "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\rXabc\rX0\rX\rX",
              "HTTP/1.1 400 ", NULL);
  CHECK_INT(E.body_calls, 1);
  CHECK_INT(E.body_status, UV_EINVAL);
  refuse_with(h_read_body,
              "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\rX0\r\n\r\n",
              "HTTP/1.1 400 ", NULL);
  refuse_with(h_read_body,
              "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\r\n",
              "HTTP/1.1 400 ", NULL);
  refuse_with(h_read_body,
              "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\rX\r\nabc\r\n"
              "0\r\n\r\n",
              "HTTP/1.1 400 ", NULL);
  accept_req(h_read_body, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "3;a=b\r\nabc\r\n0\r\n\r\n");
}

static void test_obs_fold(void) {
  refuse("GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n", "HTTP/1.1 400 ");
  refuse("GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\tc\r\n\r\n", "HTTP/1.1 400 ");
  refuse("GET / HTTP/1.1\r\nHost: x\r\nX-A:\r\n \r\n\r\n", "HTTP/1.1 400 ");
  refuse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
         "HTTP/1.1 400 ");
  /* the header the fold would have continued never reaches a handler with a CR or LF */
  refuse("GET / HTTP/1.1\r\nX-A: b\r\n c\r\nHost: x\r\n\r\n", "HTTP/1.1 400 ");
}

static void test_http10_transfer_encoding(void) {
  refuse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
         "HTTP/1.1 400 ");
  refuse("POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
         "0\r\n\r\n",
         "HTTP/1.1 400 ");
}

static void test_host(void) {
  refuse("GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400 ");
  refuse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "HTTP/1.1 400 ");
  refuse("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", "HTTP/1.1 400 ");
  refuse("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", "HTTP/1.1 400 ");
  refuse("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", "HTTP/1.1 400 ");
  refuse("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", "HTTP/1.1 400 ");
  accept_req(h_echo_target, "GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n");
  accept_req(h_echo_target, "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n");
  accept_req(h_echo_target, "GET / HTTP/1.1\r\nHost:\r\n\r\n"); /* a target with no authority */
  accept_req(h_echo_target, "GET / HTTP/1.0\r\n\r\n");         /* 1.0 needs none */
}

static void test_version(void) {
  refuse("GET /\r\n\r\n", "HTTP/1.1 400 "); /* HTTP/0.9 */
  refuse("GET / HTTP/0.9\r\nHost: x\r\n\r\n", "HTTP/1.1 400 ");
  refuse("GET / HTTP/2.0\r\nHost: x\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported\r\n");
  refuse("GET / HTTP/1.2\r\nHost: x\r\n\r\n", "HTTP/1.1 400 ");
}

static void test_path(void) {
  refuse("GET /notes/%zz HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 ");
  refuse("GET /a%4 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 ");
  refuse("GET /a%4?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 ");
  refuse("GET /notes/%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 ");
  refuse("GET /%c0%af HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 ");    /* overlong '/' */
  refuse("GET /%ed%a0%80 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 "); /* a surrogate */
  refuse("GET /%e2%82 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 ");    /* cut short */
  refuse("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 "); /* raw, not escaped */
  refuse("GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 ");
  refuse("GET /a\x7f HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 ");
  accept_req(h_echo_target, "GET /caf%C3%A9/%e2%82%ac HTTP/1.1\r\nHost: x\r\n\r\n");
  accept_req(h_echo_target, "GET /a?q=%zz&r=%ff HTTP/1.1\r\nHost: x\r\n\r\n"); /* query: lenient */
  accept_req(h_echo_target, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
}

/* Feeds `prefix`, then `unit` n times, in pieces as the connection takes them, and stops once
 * the connection no longer reads. */
static void feed_repeated(const char *prefix, const char *unit, size_t n) {
  feed(prefix);
  size_t ulen = strlen(unit);
  for (size_t i = 0; i < n && E.io.reading && !E.io.shut_req; i++)
    weft__conn_feed(E.c, unit, ulen);
}

static char *repeat(char ch, size_t n, const char *before, const char *after) {
  size_t b = strlen(before), a = strlen(after);
  char *s = malloc(b + n + a + 1);
  memcpy(s, before, b);
  memset(s + b, ch, n);
  memcpy(s + b + n, after, a + 1);
  return s;
}

static const char chunked_head[] =
    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

static void test_chunk_line_limit(void) {
  /* 4096 bytes of size line (here "1;a=" and 4092 more) are fine; one more is not */
  char *ok = repeat('b', 4092, "1;a=", "\r\nx\r\n0\r\n\r\n");
  char *req = malloc(strlen(chunked_head) + strlen(ok) + 1);
  strcpy(req, chunked_head);
  strcat(req, ok);
  accept_req(h_read_body, req);
  free(req);
  free(ok);

  char *bad = repeat('b', 4093, "1;a=", "\r\nx\r\n0\r\n\r\n");
  req = malloc(strlen(chunked_head) + strlen(bad) + 1);
  strcpy(req, chunked_head);
  strcat(req, bad);
  refuse_with(h_read_body, req, "HTTP/1.1 400 ", NULL);
  free(req);
  free(bad);

  /* leading zeros count too, and so does the last chunk's line */
  char *zeros = repeat('0', 5000, "", "1\r\nx\r\n0\r\n\r\n");
  req = malloc(strlen(chunked_head) + strlen(zeros) + 1);
  strcpy(req, chunked_head);
  strcat(req, zeros);
  refuse_with(h_read_body, req, "HTTP/1.1 400 ", NULL);
  free(req);
  free(zeros);
  char *last = repeat('0', 5000, "1\r\nx\r\n", "\r\n\r\n");
  req = malloc(strlen(chunked_head) + strlen(last) + 1);
  strcpy(req, chunked_head);
  strcat(req, last);
  refuse_with(h_read_body, req, "HTTP/1.1 400 ", NULL);
  free(req);
  free(last);

  /* 2 MiB of one line, arriving in pieces: refused long before the end */
  weft_limits_t l = test_limits();
  env_open_with(h_read_body, &l);
  feed_repeated("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;a=",
                "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                2 * 1024 * 1024 / 78);
  CHECK(strncmp(E.io.out, "HTTP/1.1 400 ", 13) == 0);
  CHECK_INT(E.body_status, UV_EINVAL);
  env_close();
}

static void test_chunk_framing_limit(void) {
  /* 2 MiB of extensions spread over chunks of one byte each, under a 1 MiB body limit */
  weft_limits_t l = test_limits();
  l.max_body = 1024 * 1024;
  char *unit = repeat('b', 4000, "1;a=", "\r\nx\r\n");
  env_open_with(h_read_body, &l);
  feed_repeated(chunked_head, unit, 2 * 1024 * 1024 / strlen(unit));
  CHECK(strncmp(E.io.out, "HTTP/1.1 413 ", 13) == 0);
  CHECK_INT(E.body_status, UV_E2BIG);
  env_close();
  free(unit);

  /* and of leading zeros */
  unit = repeat('0', 4000, "", "1\r\nx\r\n");
  env_open_with(h_read_body, &l);
  feed_repeated(chunked_head, unit, 2 * 1024 * 1024 / strlen(unit));
  CHECK(strncmp(E.io.out, "HTTP/1.1 413 ", 13) == 0);
  env_close();
  free(unit);

  /* framing within the limit is fine: 8 chunks of 4 KiB lines under a 64 KiB limit */
  l.max_body = 64 * 1024;
  unit = repeat('b', 4000, "1;a=", "\r\nx\r\n");
  env_open_with(h_read_body, &l);
  feed_repeated(chunked_head, unit, 8);
  feed("0\r\n\r\n");
  CHECK_HAS(E.io.out, "got:xxxxxxxx;");
  env_close();
  free(unit);
}

int main(void) {
  RUN(test_bare_cr);
  RUN(test_obs_fold);
  RUN(test_http10_transfer_encoding);
  RUN(test_host);
  RUN(test_version);
  RUN(test_path);
  RUN(test_chunk_line_limit);
  RUN(test_chunk_framing_limit);
  fprintf(stderr, "test_http_strict: %d checks passed\n", weft_test_checks);
  return 0;
}
