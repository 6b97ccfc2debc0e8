/*
 * test_http_raw.c — HTTP/1.1 connections driven without a socket: bytes are fed in as if read,
 * and a recording io collects what the core writes.
 */
#include "test_conn.h"

/* ---- tests ---- */

static void h_simple(weft_req_t *r) {
  size_t n;
  const char *m = weft_req_method(r, &n);
  CHECK(n == 3 && strcmp(m, "GET") == 0);
  const char *t = weft_req_target(r, &n);
  CHECK_INT(n, 10);
  CHECK(strcmp(t, "/hello?x=1") == 0); /* NUL-terminated in place */
  CHECK_INT(weft_req_http_minor(r), 1);
  CHECK_INT(weft_req_header_count(r), 3);
  const char *v = weft_req_header(r, "x-foo", 5, &n);
  CHECK(v != NULL && n == 3 && strcmp(v, "bar") == 0);
  v = weft_req_header(r, "X-EMPTY", 7, &n);
  CHECK(v != NULL && n == 0 && v[0] == '\0');
  CHECK(weft_req_header(r, "missing", 7, &n) == NULL);
  const char *name, *value;
  size_t nlen, vlen;
  CHECK_INT(weft_req_header_at(r, 0, &name, &nlen, &value, &vlen), 0);
  CHECK(nlen == 4 && strcmp(name, "Host") == 0 && vlen == 9 && strcmp(value, "localhost") == 0);
  CHECK_INT(weft_req_header_at(r, 3, &name, &nlen, &value, &vlen), UV_EINVAL);
  CHECK(weft_req_alive(r));
  char addr[64];
  int port;
  CHECK_INT(weft_req_remote_addr(r, addr, sizeof(addr), &port), UV_ENOTSUP);
  weft_req_set_data(r, &E);
  CHECK(weft_req_data(r) == &E);
  CHECK(!weft_res_started(r));
  CHECK_INT(weft_res_send(r, 200, text_plain, 1, "hi", 2), 0);
  CHECK(weft_res_started(r));
  CHECK_INT(weft_res_send(r, 200, NULL, 0, "x", 1), UV_EALREADY);
  weft_req_release(r);
  weft_req_release(r); /* ignored */
  E.nreq++;
}

static const char simple_req[] =
    "GET /hello?x=1 HTTP/1.1\r\nHost: localhost\r\nX-Foo:  bar  \r\nX-Empty:\r\n\r\n";

static void check_simple_out(void) {
  CHECK(strncmp(E.io.out, "HTTP/1.1 200 OK\r\n", 17) == 0);
  CHECK_HAS(E.io.out, "\r\nDate: ");
  CHECK_HAS(E.io.out, " GMT\r\n");
  CHECK_HAS(E.io.out, "\r\nContent-Length: 2\r\n");
  CHECK_HAS(E.io.out, "\r\nContent-Type: text/plain\r\n");
  CHECK_HASNT(E.io.out, "Connection");
  CHECK(E.io.len > 4 && strcmp(E.io.out + E.io.len - 6, "\r\n\r\nhi") == 0);
}

static void test_simple_get(void) {
  env_open(h_simple);
  feed(simple_req);
  CHECK_INT(E.nreq, 1);
  check_simple_out();
  CHECK(!E.io.shut_req && !E.io.closed); /* keep-alive */
  CHECK_INT(weft_server_connections(E.srv), 1);
  env_close();
}

static void test_byte_by_byte(void) {
  env_open(h_simple);
  for (const char *p = simple_req; *p; p++)
    CHECK_INT(weft__conn_feed(E.c, p, 1), 1);
  CHECK_INT(E.nreq, 1);
  check_simple_out();
  /* and a chunked body, byte by byte, after it on the same connection */
  reset_out();
  E.handler = h_read_body;
  const char *req = "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: yes\r\n\r\n";
  for (const char *p = req; *p; p++)
    CHECK_INT(weft__conn_feed(E.c, p, 1), 1);
  CHECK_INT(E.body_calls, 1);
  CHECK_INT(E.body_status, 0);
  CHECK(strcmp(E.body, "hello world") == 0);
  CHECK_HAS(E.io.out, "got:hello world;");
  env_close();
}

static void test_keep_alive(void) {
  /* HTTP/1.1: kept open by default */
  env_open(h_echo_target);
  feed("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  feed("GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_INT(E.nreq, 2);
  CHECK_HAS(E.io.out, "body:/a;");
  CHECK_HAS(E.io.out, "body:/b;");
  CHECK_HASNT(E.io.out, "Connection");
  CHECK(!E.io.shut_req);
  env_close();

  /* HTTP/1.0 without keep-alive: closed after the response */
  env_open(h_echo_target);
  feed("GET /a HTTP/1.0\r\n\r\n");
  CHECK_HAS(E.io.out, "\r\nConnection: close\r\n");
  CHECK(E.io.shut_req);
  CHECK_INT(weft__conn_feed(E.c, "GET /b HTTP/1.0\r\n\r\n", 19), 19); /* discarded */
  CHECK_INT(E.nreq, 1);
  weft__conn_eof(E.c);
  CHECK(E.io.closed);
  env_close();

  /* HTTP/1.0 asking for keep-alive */
  env_open(h_echo_target);
  feed("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  CHECK_HAS(E.io.out, "\r\nConnection: keep-alive\r\n");
  CHECK(!E.io.shut_req);
  feed("GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  CHECK_INT(E.nreq, 2);
  CHECK_INT(weft_test_count(E.io.out, "Connection: keep-alive"), 2);
  env_close();

  /* Connection: close from a 1.1 client; a request pipelined after it is not served */
  env_open(h_echo_target);
  feed("GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_INT(E.nreq, 1);
  CHECK_HAS(E.io.out, "\r\nConnection: close\r\n");
  CHECK_HASNT(E.io.out, "body:/b;");
  CHECK(E.io.shut_req);
  env_close();
}

static void late_answer(void *data) {
  weft_req_t *r = data;
  CHECK_INT(weft_res_send(r, 200, NULL, 0, "body:/1;", 8), 0);
  weft_req_release(r);
  E.nreq++;
}

static void h_pipeline(weft_req_t *r) {
  if (strcmp(weft_req_target(r, NULL), "/1") == 0)
    weft_defer(E.loop, late_answer, r);
  else
    h_echo_target(r);
}

static void test_pipelined(void) {
  env_open(h_pipeline);
  feed("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
       "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(strcmp(E.order, "/1") == 0); /* the others wait for the first */
  CHECK_INT(E.io.len, 0);
  spin();
  CHECK_INT(E.nreq, 3);
  CHECK(strcmp(E.order, "/1/2/3") == 0);
  const char *a = strstr(E.io.out, "body:/1;"), *b = strstr(E.io.out, "body:/2;"),
             *c = strstr(E.io.out, "body:/3;");
  CHECK(a != NULL && b != NULL && c != NULL && a < b && b < c);
  CHECK_INT(weft_test_count(E.io.out, "HTTP/1.1 200 OK"), 3);
  env_close();
}

static void test_pipeline_backpressure(void) {
  env_open(h_hold);
  static char big[40000];
  size_t len = 0;
  int n = 0;
  while (len + 40 < sizeof(big)) {
    len += (size_t)snprintf(big + len, sizeof(big) - len, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", n);
    n++;
  }
  size_t took = weft__conn_feed(E.c, big, len);
  CHECK(took < len); /* the buffer filled with pipelined input: reading stopped */
  CHECK(!E.io.reading);
  CHECK_INT(E.nreq, 1);
  E.handler = h_echo_target;
  CHECK_INT(weft_res_send(E.req, 200, NULL, 0, "first", 5), 0);
  weft_req_release(E.req);
  CHECK(E.io.reading);
  while (took < len) {
    size_t k = weft__conn_feed(E.c, big + took, len - took);
    CHECK(k > 0);
    took += k;
  }
  CHECK_INT(E.nreq, n);
  CHECK_INT(weft_test_count(E.io.out, "HTTP/1.1 200 OK"), n);
  env_close();
}

static void h_head(weft_req_t *r) {
  if (strcmp(weft_req_target(r, NULL), "/stream") == 0) {
    CHECK_INT(weft_res_start(r, 200, NULL, 0), 0);
    CHECK_INT(weft_res_write(r, "abc", 3, NULL, NULL), 0);
    CHECK_INT(weft_res_finish(r), 0);
  } else {
    CHECK_INT(weft_res_send(r, 200, NULL, 0, "hello", 5), 0);
  }
  weft_req_release(r);
  E.nreq++;
}

static void test_head(void) {
  env_open(h_head);
  feed("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_HAS(E.io.out, "\r\nContent-Length: 5\r\n");
  CHECK(strcmp(E.io.out + E.io.len - 4, "\r\n\r\n") == 0);
  CHECK_HASNT(E.io.out, "hello");
  reset_out();
  feed("HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_HAS(E.io.out, "\r\nTransfer-Encoding: chunked\r\n");
  CHECK(strcmp(E.io.out + E.io.len - 4, "\r\n\r\n") == 0);
  CHECK_HASNT(E.io.out, "abc");
  CHECK_HASNT(E.io.out, "0\r\n\r\n");
  CHECK_INT(E.nreq, 2);
  CHECK(!E.io.shut_req);
  env_close();
}

static void test_bodies(void) {
  /* Content-Length, the body arriving after the read was asked for */
  env_open(h_read_body);
  feed("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhel");
  CHECK_INT(E.body_calls, 0);
  feed("lo wo");
  feed("rld");
  CHECK_INT(E.body_calls, 1);
  CHECK(strcmp(E.body, "hello world") == 0);
  CHECK_HAS(E.io.out, "got:hello world;");
  /* chunked, in one piece with the next request behind it */
  reset_out();
  E.body_calls = 0;
  feed("POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
       "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nxy");
  CHECK_INT(E.body_calls, 2);
  CHECK_HAS(E.io.out, "got:abc;");
  CHECK_HAS(E.io.out, "got:xy;");
  /* a body-less request reads an empty body */
  reset_out();
  feed("GET /d HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_INT(E.body_calls, 3);
  CHECK_INT(E.body_len, 0);
  CHECK_HAS(E.io.out, "got:;");
  env_close();

  /* the read asked for after the body is complete answers at once */
  env_open(h_hold);
  feed("PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz");
  CHECK_INT(weft_req_read_body(E.req, on_body, NULL), 0);
  CHECK_INT(E.body_calls, 1);
  CHECK(strcmp(E.body, "xyz") == 0);
  env_close();

  /* a handler that answers without reading: the body is discarded, the connection goes on */
  env_open(h_echo_target);
  feed("POST /f HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234");
  CHECK_HAS(E.io.out, "body:/f;");
  feed("56789GET /g HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_HAS(E.io.out, "body:/g;");
  CHECK(!E.io.shut_req);
  env_close();
}

static void test_expect_continue(void) {
  env_open(h_hold);
  feed("POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
  CHECK_INT(E.nreq, 1);
  CHECK_INT(E.io.len, 0); /* not before the body is read */
  CHECK_INT(weft_req_read_body(E.req, on_body, NULL), 0);
  CHECK(strcmp(E.io.out, "HTTP/1.1 100 Continue\r\n\r\n") == 0);
  CHECK_INT(weft_req_read_body(E.req, on_body, NULL), UV_EALREADY);
  feed("hello");
  CHECK_INT(E.body_calls, 1);
  CHECK_HAS(E.io.out, "got:hello;");
  CHECK_HASNT(E.io.out, "Connection: close");
  CHECK_INT(weft_test_count(E.io.out, "100 Continue"), 1);
  CHECK(!E.io.shut_req);
  env_close();

  /* answered without reading: no 100, and the connection closes after the answer */
  env_open(h_echo_target);
  feed("POST /b HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
  CHECK_HASNT(E.io.out, "100 Continue");
  CHECK_HAS(E.io.out, "\r\nConnection: close\r\n");
  CHECK(E.io.shut_req);
  env_close();
}

static void test_bad_input(void) {
  expect_error("GARBAGE / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n", NULL);
  expect_error("GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", "HTTP/1.1 400 ", NULL);
  expect_error("GET / HTTP/9.1\r\n\r\n", "HTTP/1.1 400 ", NULL);
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
               "0\r\n\r\n",
               "HTTP/1.1 400 ", NULL);
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
               "0\r\n\r\n",
               "HTTP/1.1 400 ", NULL);
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "HTTP/1.1 400 ", NULL);
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "HTTP/1.1 400 ",
               NULL);

  weft_limits_t l = test_limits();
  l.max_url = 64;
  char req[512];
  snprintf(req, sizeof(req), "GET /%0100d HTTP/1.1\r\nHost: x\r\n\r\n", 0);
  expect_error(req, "HTTP/1.1 414 URI Too Long\r\n", &l);

  l = test_limits();
  l.max_header_bytes = 256;
  snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %0300d\r\n\r\n", 0);
  expect_error(req, "HTTP/1.1 431 Request Header Fields Too Large\r\n", &l);

  l = test_limits();
  l.max_headers = 5;
  expect_error("GET / HTTP/1.1\r\nHost: x\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\nf: 6\r\n\r\n",
               "HTTP/1.1 431 ", &l);

  l = test_limits();
  l.max_body = 16;
  expect_error("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
               "HTTP/1.1 413 Content Too Large\r\n", &l);
}

static void test_limits_within(void) {
  /* exactly at the limits is fine */
  weft_limits_t l = test_limits();
  l.max_headers = 5;
  l.max_body = 10;
  env_open_with(h_read_body, &l);
  feed("POST / HTTP/1.1\r\nHost: x\r\na: 1\r\nb: 2\r\nc: 3\r\nContent-Length: 10\r\n\r\n0123456789");
  CHECK_HAS(E.io.out, "got:0123456789;");
  env_close();
}

static void test_chunked_too_large(void) {
  weft_limits_t l = test_limits();
  l.max_body = 16;
  /* the handler waits for the body: it learns UV_E2BIG, the core answered 413 */
  env_open_with(h_read_body, &l);
  feed("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n");
  CHECK_INT(E.body_calls, 0);
  feed("a\r\n0123456789\r\n");
  CHECK_INT(E.body_calls, 1);
  CHECK_INT(E.body_status, UV_E2BIG);
  CHECK(strncmp(E.io.out, "HTTP/1.1 413 ", 13) == 0);
  CHECK(E.io.shut_req);
  env_close();

  /* the handler reads later: same answer */
  env_open_with(h_hold, &l);
  feed("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n01234567890123456789\r\n");
  CHECK(strncmp(E.io.out, "HTTP/1.1 413 ", 13) == 0);
  CHECK(!weft_req_alive(E.req));
  CHECK_INT(weft_req_read_body(E.req, on_body, NULL), 0);
  CHECK_INT(E.body_status, UV_E2BIG);
  env_close();

  /* the handler already streams: the connection is just closed */
  env_open_with(h_hold, &l);
  feed("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  CHECK_INT(weft_res_start(E.req, 200, NULL, 0), 0);
  reset_out();
  feed("14\r\n01234567890123456789\r\n");
  CHECK_INT(E.io.len, 0);
  CHECK(E.io.closed);
  CHECK(!weft_req_alive(E.req));
  CHECK_INT(weft_res_write(E.req, "x", 1, NULL, NULL), UV_ECONNRESET);
  weft_req_release(E.req);
  env_close();
}

static void h_stream(weft_req_t *r) {
  const weft_header_t h[] = {{"X-A", 3, "1", 1}};
  CHECK_INT(weft_res_write(r, "x", 1, NULL, NULL), UV_EINVAL); /* not started */
  CHECK_INT(weft_res_start(r, 200, h, 1), 0);
  CHECK_INT(weft_res_start(r, 200, h, 1), UV_EALREADY);
  CHECK_INT(weft_res_send(r, 200, NULL, 0, NULL, 0), UV_EALREADY);
  CHECK_INT(weft_res_write(r, "abc", 3, NULL, NULL), 0);
  CHECK_INT(weft_res_write(r, "", 0, NULL, NULL), 0);
  static char big[10000];
  memset(big, 'z', sizeof(big));
  CHECK_INT(weft_res_write(r, big, sizeof(big), NULL, NULL), 0);
  CHECK_INT(weft_res_write(r, "defg", 4, NULL, NULL), 0);
  CHECK_INT(weft_res_finish(r), 0);
  CHECK_INT(weft_res_finish(r), UV_EALREADY);
  weft_req_release(r);
  E.nreq++;
}

static void test_streaming(void) {
  env_open(h_stream);
  feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_HAS(E.io.out, "\r\nTransfer-Encoding: chunked\r\n");
  CHECK_HAS(E.io.out, "\r\nX-A: 1\r\n");
  CHECK_HASNT(E.io.out, "Content-Length");
  CHECK_HAS(E.io.out, "\r\n\r\n3\r\nabc\r\n2710\r\nzzz");
  CHECK_HAS(E.io.out, "zzz\r\n4\r\ndefg\r\n0\r\n\r\n");
  CHECK(strcmp(E.io.out + E.io.len - 5, "0\r\n\r\n") == 0);
  CHECK(!E.io.shut_req);
  env_close();

  /* HTTP/1.0: close-delimited */
  env_open(h_stream);
  feed("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  CHECK_HAS(E.io.out, "\r\nConnection: close\r\n");
  CHECK_HASNT(E.io.out, "Transfer-Encoding");
  CHECK(strcmp(E.io.out + E.io.len - 4, "defg") == 0);
  CHECK_HAS(E.io.out, "\r\n\r\nabczzz");
  CHECK(E.io.shut_req);
  env_close();
}

static void test_release_unanswered(void) {
  env_open(h_hold);
  feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_INT(E.io.len, 0);
  weft_req_release(E.req);
  CHECK(strncmp(E.io.out, "HTTP/1.1 500 Internal Server Error\r\n", 36) == 0);
  CHECK(!E.io.shut_req); /* the connection itself is fine */
  reset_out();
  E.handler = h_echo_target;
  feed("GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_HAS(E.io.out, "body:/next;");
  env_close();

  /* releasing an unfinished stream cuts the connection: the client must see it is cut short */
  env_open(h_hold);
  feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_INT(weft_res_start(E.req, 200, NULL, 0), 0);
  weft_req_release(E.req);
  CHECK(E.io.closed);
  env_close();
}

static void h_headers(weft_req_t *r) {
  const char *t = weft_req_target(r, NULL);
  if (strcmp(t, "/bad") == 0) {
    weft_header_t bad[] = {{"X-A", 3, "1\r\nX-Injected: 1", 17}};
    CHECK_INT(weft_res_send(r, 200, bad, 1, NULL, 0), UV_EINVAL);
    weft_header_t bad2[] = {{"X-A\n", 4, "1", 1}};
    CHECK_INT(weft_res_start(r, 200, bad2, 1), UV_EINVAL);
    weft_header_t bad3[] = {{"X-A", 3, "a\0b", 3}};
    CHECK_INT(weft_res_send(r, 200, bad3, 1, NULL, 0), UV_EINVAL);
    weft_header_t bad4[] = {{"", 0, "a", 1}};
    CHECK_INT(weft_res_send(r, 200, bad4, 1, NULL, 0), UV_EINVAL);
    /* names are tokens: a space, a tab or a colon would let one header pass for another */
    weft_header_t bad5[] = {{"Transfer-Encoding ", 18, "chunked", 7}};
    CHECK_INT(weft_res_send(r, 200, bad5, 1, NULL, 0), UV_EINVAL);
    weft_header_t bad6[] = {{"Content-Length\t", 15, "1", 1}};
    CHECK_INT(weft_res_start(r, 200, bad6, 1), UV_EINVAL);
    weft_header_t bad7[] = {{"a:b", 3, "c", 1}};
    CHECK_INT(weft_res_send(r, 200, bad7, 1, NULL, 0), UV_EINVAL);
    /* values carry no control character but HTAB */
    weft_header_t bad8[] = {{"X-A", 3, "a\x0b", 2}};
    CHECK_INT(weft_res_send(r, 200, bad8, 1, NULL, 0), UV_EINVAL);
    weft_header_t bad9[] = {{"X-A", 3, "a\x7f", 2}};
    CHECK_INT(weft_res_send(r, 200, bad9, 1, NULL, 0), UV_EINVAL);
    CHECK_INT(weft_res_send(r, 42, NULL, 0, NULL, 0), UV_EINVAL);
    CHECK(!weft_res_started(r));
    CHECK_INT(weft_res_send(r, 204, NULL, 0, "ignored", 7), 0);
  } else if (strcmp(t, "/framing") == 0) {
    weft_header_t h[] = {{"content-length", 14, "999", 3},
                         {"Transfer-Encoding", 17, "gzip", 4},
                         {"Date", 4, "yesterday", 9},
                         {"X-B", 3, "", 0},
                         {"X-Tab-And-Text", 14, "a\tb \xc3\xa9", 6}};
    CHECK_INT(weft_res_send(r, 201, h, 5, "abc", 3), 0);
  } else if (strcmp(t, "/early") == 0) {
    weft_header_t h[] = {{"Link", 4, "</a>", 4}};
    CHECK_INT(weft_res_send(r, 103, h, 1, NULL, 0), 0);
    CHECK(!weft_res_started(r));
    CHECK_INT(weft_res_send(r, 299, NULL, 0, "ok", 2), 0);
  } else {
    weft_header_t h[] = {{"Connection", 10, "Close", 5}};
    CHECK_INT(weft_res_send(r, 200, h, 1, "bye", 3), 0);
  }
  weft_req_release(r);
  E.nreq++;
}

static void test_response_headers(void) {
  env_open(h_headers);
  feed("GET /bad HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(strncmp(E.io.out, "HTTP/1.1 204 No Content\r\n", 25) == 0);
  CHECK_HASNT(E.io.out, "Content-Length");
  CHECK_HASNT(E.io.out, "ignored");
  CHECK_HASNT(E.io.out, "Injected");
  reset_out();
  feed("GET /framing HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(strncmp(E.io.out, "HTTP/1.1 201 Created\r\n", 22) == 0);
  CHECK_HAS(E.io.out, "\r\nContent-Length: 3\r\n");
  CHECK_HASNT(E.io.out, "999");
  CHECK_HASNT(E.io.out, "gzip");
  CHECK_HAS(E.io.out, "\r\nDate: yesterday\r\n");
  CHECK_INT(weft_test_count(E.io.out, "Date:"), 1);
  CHECK_HAS(E.io.out, "\r\nX-B: \r\n");
  CHECK_HAS(E.io.out, "\r\nX-Tab-And-Text: a\tb \xc3\xa9\r\n");
  reset_out();
  feed("GET /early HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(strncmp(E.io.out, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 299 \r\n", 53) ==
        0);
  reset_out();
  feed("GET /close HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_HAS(E.io.out, "\r\nConnection: Close\r\n");
  CHECK_INT(weft_test_count(E.io.out, "onnection"), 1);
  CHECK(E.io.shut_req);
  CHECK_INT(E.nreq, 4);
  env_close();
}

static void test_disconnect(void) {
  env_open(h_hold);
  feed("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n012");
  E.body_calls = 0;
  CHECK_INT(weft_req_read_body(E.req, on_body, NULL), 0);
  weft__conn_eof(E.c); /* gone mid-body */
  CHECK(E.io.closed);
  CHECK_INT(E.body_calls, 1);
  CHECK_INT(E.body_status, UV_ECONNRESET);
  env_close();

  env_open(h_hold);
  feed("GET /x?y HTTP/1.1\r\nHost: h\r\n");
  weft__conn_eof(E.c); /* a partial head: closed, nothing to answer */
  CHECK(E.io.closed);
  CHECK_INT(E.nreq, 0);
  env_close();

  /* The request object outlives the connection until released. */
  env_open(h_hold);
  feed("GET /x?y HTTP/1.1\r\nHost: h\r\n\r\n");
  weft__conn_eof(E.c); /* half-closed after a complete request: may still be answered */
  CHECK(!E.io.closed);
  CHECK(weft_req_alive(E.req));
  weft__conn_abort(E.c); /* now really gone (as on a read error) */
  spin();
  CHECK(!weft_req_alive(E.req));
  CHECK_INT(weft_server_connections(E.srv), 1);
  CHECK(strcmp(weft_req_target(E.req, NULL), "/x?y") == 0);
  CHECK(strcmp(weft_req_header(E.req, "host", 4, NULL), "h") == 0);
  CHECK_INT(weft_res_send(E.req, 200, NULL, 0, "x", 1), UV_ECONNRESET);
  CHECK_INT(weft_req_read_body(E.req, on_body, NULL), 0);
  CHECK_INT(E.body_status, 0); /* the (empty) body had arrived */
  env_close();
}

static void test_half_close_pipeline(void) {
  /* a client that sends its requests and then shuts its side gets every answer, then EOF */
  env_open(h_echo_target);
  feed("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  weft__conn_eof(E.c);
  CHECK_INT(E.nreq, 2);
  CHECK(E.io.shut_req);
  spin();
  CHECK(E.io.closed);
  env_close();
}

static void on_drained(weft_req_t *r, int status, void *ud) {
  WEFT__UNUSED(r);
  WEFT__UNUSED(ud);
  E.drained++;
  E.drain_status = status;
}

static void test_high_water(void) {
  weft_limits_t l = test_limits();
  l.write_high_water = 1024;
  env_open_with(h_hold, &l);
  feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  E.io.blocked = 1;
  CHECK_INT(weft_res_start(E.req, 200, NULL, 0), 0);
  CHECK_INT(weft_res_write(E.req, "small", 5, on_drained, NULL), 0);
  static char chunk[4000];
  memset(chunk, 'q', sizeof(chunk));
  CHECK_INT(weft_res_write(E.req, chunk, sizeof(chunk), on_drained, NULL), 1);
  CHECK(E.io.queued <= l.write_high_water + sizeof(chunk) + 64);
  spin();
  CHECK_INT(E.drained, 0);
  tio_unblock(&E.io);
  CHECK_INT(E.drained, 1);
  CHECK_INT(weft_res_finish(E.req), 0);
  weft_req_release(E.req);
  CHECK_INT(E.drained, 1);
  CHECK_HAS(E.io.out, "fa0\r\nqqqq");
  env_close();

  /* the connection dies while a writer waits: drained still runs (once) */
  env_open_with(h_hold, &l);
  feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  E.io.blocked = 1;
  CHECK_INT(weft_res_start(E.req, 200, NULL, 0), 0);
  CHECK_INT(weft_res_write(E.req, chunk, sizeof(chunk), on_drained, NULL), 1);
  weft__conn_abort(E.c);
  CHECK_INT(E.drained, 1);
  CHECK(!weft_req_alive(E.req));
  weft_req_release(E.req);
  env_close();
}

/* ---- deadlines ---- */

/* Runs the loop for about ms milliseconds. */
static void run_for(uint64_t ms) {
  uint64_t end = uv_now(&E.uv) + ms;
  while (uv_now(&E.uv) < end) {
    uv_run(&E.uv, UV_RUN_NOWAIT);
    uv_sleep(2);
    uv_update_time(&E.uv);
  }
}

static void h_big(weft_req_t *r) {
  static char body[200000];
  memset(body, 'x', sizeof(body));
  CHECK_INT(weft_res_send(r, 200, NULL, 0, body, sizeof(body)), 0);
  weft_req_release(r);
  E.nreq++;
}

static void test_idle_waits_for_the_queue(void) {
  /* a buffered answer the client takes its time to read is not cut by idle + linger */
  weft_limits_t l = test_limits();
  l.idle_timeout = 30;
  l.linger_timeout = 30;
  l.send_timeout = 10000;
  env_open_with(h_big, &l);
  E.io.blocked = 1;
  feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(E.io.queued > 0);
  run_for(200);
  CHECK(!E.io.closed && !E.io.shut_req);
  tio_unblock(&E.io);
  CHECK_INT(E.io.queued, 0);
  CHECK_HAS(E.io.out, "Content-Length: 200000\r\n");
  /* now idle: closed after idle_timeout */
  run_for(150);
  CHECK(E.io.shut_req);
  env_close();

  /* and a closing connection lingers only once its answer is out */
  env_open_with(h_big, &l);
  E.io.blocked = 1;
  feed("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  run_for(200);
  CHECK(!E.io.closed);
  tio_unblock(&E.io);
  CHECK(E.io.shut);
  CHECK(E.io.len > 200000);
  run_for(150);
  CHECK(E.io.closed); /* linger over */
  env_close();
}

static void test_send_timeout(void) {
  /* a client that reads nothing: closed once send_timeout passes, and the waiting writer told */
  weft_limits_t l = test_limits();
  l.write_high_water = 1024;
  l.send_timeout = 80;
  env_open_with(h_hold, &l);
  feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  E.io.blocked = 1;
  static char chunk[4000];
  CHECK_INT(weft_res_start(E.req, 200, NULL, 0), 0);
  CHECK_INT(weft_res_write(E.req, chunk, sizeof(chunk), on_drained, NULL), 1);
  run_for(40);
  CHECK(!E.io.closed);
  run_for(200);
  CHECK(E.io.closed);
  CHECK_INT(E.drained, 1);
  CHECK_INT(E.drain_status, UV_ETIMEDOUT);
  CHECK(!weft_req_alive(E.req));
  CHECK_INT(weft_res_write(E.req, "x", 1, NULL, NULL), UV_ECONNRESET);
  weft_req_release(E.req);
  env_close();

  /* a slow reader that makes progress within every send_timeout is never cut */
  env_open_with(h_hold, &l);
  feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  E.io.blocked = 1;
  CHECK_INT(weft_res_start(E.req, 200, NULL, 0), 0);
  for (int i = 0; i < 8; i++) { /* a write lets out every 50 ms: 400 ms in all */
    CHECK(weft_res_write(E.req, chunk, sizeof(chunk), NULL, NULL) >= 0);
    run_for(50);
    CHECK(!E.io.closed);
    pend_t *p = E.io.head; /* the client reads one write */
    E.io.head = p->next;
    if (E.io.head == NULL) E.io.tail = NULL;
    E.io.queued -= p->len;
    tio_append(&E.io, p->data, p->len);
    weft__conn_write_done(E.c, p->w, 0);
    free(p->data);
    free(p);
  }
  tio_unblock(&E.io);
  CHECK_INT(weft_res_finish(E.req), 0);
  weft_req_release(E.req);
  CHECK(!E.io.closed);
  env_close();
}

static void on_body_count(weft_req_t *r, int status, const char *data, size_t len, void *ud) {
  WEFT__UNUSED(r);
  WEFT__UNUSED(data);
  WEFT__UNUSED(len);
  WEFT__UNUSED(ud);
  E.body_calls++;
  E.body_status = status;
}

static void test_release_wakes_waiters(void) {
  /* a body read still waiting when the request is released learns UV_ECANCELED */
  env_open(h_hold);
  feed("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
  CHECK_INT(weft_req_read_body(E.req, on_body_count, NULL), 0);
  CHECK_INT(E.body_calls, 0);
  CHECK_INT(weft_res_send(E.req, 200, NULL, 0, "early", 5), 0);
  weft_req_release(E.req);
  CHECK_INT(E.body_calls, 1);
  CHECK_INT(E.body_status, UV_ECANCELED);
  feed("defghij"); /* the rest of the body, read and dropped: the connection goes on */
  CHECK(!E.io.shut_req);
  env_close();

  /* two writers waiting on one request: both are told, once each, in order */
  weft_limits_t l = test_limits();
  l.write_high_water = 1024;
  env_open_with(h_hold, &l);
  feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  E.io.blocked = 1;
  static char chunk[4000];
  CHECK_INT(weft_res_start(E.req, 200, NULL, 0), 0);
  CHECK_INT(weft_res_write(E.req, chunk, sizeof(chunk), on_drained, NULL), 1);
  CHECK_INT(weft_res_write(E.req, chunk, sizeof(chunk), on_drained, NULL), 1);
  tio_unblock(&E.io);
  CHECK_INT(E.drained, 2);
  CHECK_INT(E.drain_status, 0);
  E.io.blocked = 1;
  CHECK_INT(weft_res_write(E.req, chunk, sizeof(chunk), on_drained, NULL), 1);
  CHECK_INT(weft_res_write(E.req, chunk, sizeof(chunk), on_drained, NULL), 1);
  weft_req_release(E.req); /* an unfinished stream: the connection is cut */
  CHECK_INT(E.drained, 4);
  CHECK_INT(E.drain_status, UV_ECONNRESET);
  env_close();
}

static void test_abort_connections(void) {
  env_open(h_hold);
  feed("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
  CHECK_INT(weft_req_read_body(E.req, on_body_count, NULL), 0);
  weft_server_abort_connections(E.srv);
  CHECK(E.io.closed);
  CHECK_INT(E.body_status, UV_ECONNRESET);
  weft_req_release(E.req);
  env_close();
}

/* ---- frames: on_request in the listen-time frame; callbacks in their registration frame ---- */

static const char *current_value(void) {
  void *v = NULL;
  if (!weft_frame_get(weft_ctx_current(E.loop), E.key, &v)) return NULL;
  return v;
}

static void on_drained_req(weft_req_t *r, int status, void *ud) {
  WEFT__UNUSED(status);
  WEFT__UNUSED(r);
  WEFT__UNUSED(ud);
  CHECK(current_value() != NULL && strcmp(current_value(), "request") == 0);
  E.drained++;
}

static void on_body_frame(weft_req_t *r, int status, const char *data, size_t len, void *ud) {
  WEFT__UNUSED(data);
  WEFT__UNUSED(len);
  WEFT__UNUSED(ud);
  CHECK_INT(status, 0);
  CHECK(current_value() != NULL && strcmp(current_value(), "request") == 0);
  CHECK_INT(weft_res_start(r, 200, NULL, 0), 0);
  static char big[5000];
  CHECK_INT(weft_res_write(r, big, sizeof(big), on_drained_req, NULL), 1);
  E.body_calls++;
}

static void h_frames(weft_req_t *r) {
  CHECK(current_value() != NULL && strcmp(current_value(), "server") == 0);
  E.req = r;
  weft_frame_t *f = weft_frame_with(weft_ctx_current(E.loop), E.key, "request");
  weft_frame_t *prev = weft_ctx_swap(E.loop, f);
  CHECK_INT(weft_req_read_body(r, on_body_frame, NULL), 0);
  weft_frame_release(weft_ctx_swap(E.loop, prev));
  E.nreq++;
}

static void test_frames(void) {
  weft_limits_t l = test_limits();
  l.write_high_water = 1024;
  size_t frames0 = weft_ctx_live_frames();
  /* the server captures the frame current at creation */
  memset(&E, 0, sizeof(E));
  E.frames0 = frames0;
  CHECK_INT(uv_loop_init(&E.uv), 0);
  CHECK_INT(weft_loop_new(&E.loop, &E.uv), 0);
  E.key = weft_ctx_key_new(NULL, NULL);
  weft_frame_t *prev = weft_ctx_swap(E.loop, weft_frame_with(NULL, E.key, "server"));
  weft_server_config_t cfg = {0};
  cfg.limits = &l;
  cfg.on_request = dispatch;
  E.handler = h_frames;
  CHECK_INT(weft__server_new_detached(E.loop, &cfg, &E.srv), 0);
  weft_frame_release(weft_ctx_swap(E.loop, prev));
  CHECK(current_value() == NULL);
  E.c = weft__conn_new(E.srv, &tio_vt, &E.io);
  E.io.c = E.c;
  tio_append(&E.io, "", 0);
  feed("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n");
  CHECK_INT(E.nreq, 1);
  CHECK(current_value() == NULL); /* restored after on_request */
  E.io.blocked = 1;
  feed("abc");
  CHECK_INT(E.body_calls, 1);
  CHECK(current_value() == NULL);
  tio_unblock(&E.io);
  CHECK_INT(E.drained, 1);
  CHECK_INT(weft_res_finish(E.req), 0);
  weft_req_release(E.req);
  weft_ctx_key_release(E.key);
  env_close();
}

static void h_method(weft_req_t *r) {
  char body[128];
  size_t n;
  const char *m = weft_req_method(r, &n);
  int len = snprintf(body, sizeof(body), "%s %s", m, weft_req_target(r, NULL));
  CHECK_INT(weft_res_send(r, 200, NULL, 0, body, (size_t)len), 0);
  weft_req_release(r);
  E.nreq++;
}

static void test_upgrade_connect(void) {
  /* no upgrades: the request is served as plain HTTP and the connection closes after it,
   * since whatever follows is another protocol */
  env_open(h_method);
  feed("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
  CHECK_INT(E.nreq, 1);
  CHECK_HAS(E.io.out, "\r\n\r\nGET /ws");
  CHECK_HAS(E.io.out, "\r\nConnection: close\r\n");
  CHECK(E.io.shut_req);
  env_close();

  env_open(h_method);
  feed("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01");
  CHECK_INT(E.nreq, 1);
  CHECK_HAS(E.io.out, "\r\n\r\nCONNECT example.com:443");
  CHECK_HAS(E.io.out, "\r\nConnection: close\r\n");
  CHECK(E.io.shut_req);
  env_close();

  /* other methods pass through by name */
  env_open(h_method);
  feed("DELETE /x HTTP/1.1\r\nHost: x\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_HAS(E.io.out, "DELETE /x");
  CHECK_HAS(E.io.out, "OPTIONS *");
  env_close();
}

static void test_head_buffer_cap(void) {
  /* bytes no limit counts (whitespace) still cannot grow the head buffer without bound */
  weft_limits_t l = test_limits();
  l.max_url = 64;
  l.max_header_bytes = 256;
  env_open_with(h_never, &l);
  feed("GET / HTTP/1.1\r\nHost: x\r\nX-A:");
  static char ws[20000];
  memset(ws, ' ', sizeof(ws));
  size_t took = weft__conn_feed(E.c, ws, sizeof(ws));
  CHECK(took == sizeof(ws));                          /* the rest is discarded after the answer */
  CHECK(strncmp(E.io.out, "HTTP/1.1 431 ", 13) == 0); /* llhttp itself accepts any OWS */
  CHECK(E.io.shut_req);
  CHECK(E.c->rcap <= 8192);
  env_close();
}

int main(void) {
  RUN(test_simple_get);
  RUN(test_byte_by_byte);
  RUN(test_keep_alive);
  RUN(test_pipelined);
  RUN(test_pipeline_backpressure);
  RUN(test_head);
  RUN(test_bodies);
  RUN(test_expect_continue);
  RUN(test_bad_input);
  RUN(test_limits_within);
  RUN(test_chunked_too_large);
  RUN(test_streaming);
  RUN(test_release_unanswered);
  RUN(test_response_headers);
  RUN(test_disconnect);
  RUN(test_half_close_pipeline);
  RUN(test_high_water);
  RUN(test_idle_waits_for_the_queue);
  RUN(test_send_timeout);
  RUN(test_release_wakes_waiters);
  RUN(test_abort_connections);
  RUN(test_frames);
  RUN(test_upgrade_connect);
  RUN(test_head_buffer_cap);
  fprintf(stderr, "test_http_raw: %d checks passed\n", weft_test_checks);
  return 0;
}
