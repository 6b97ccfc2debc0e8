/*
 * test_http_socket.c — a real listening server on 127.0.0.1 (port 0) on the test's loop, and a
 * client made of plain POSIX sockets in a thread. The client tells the loop it is done through
 * a uv_async_t; the server then closes and the loop must run out of handles.
 */
#define _GNU_SOURCE /* strcasestr */
#include "weft_internal.h"

#include "test_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef void (*handler_t)(weft_req_t *r);
typedef void (*client_t)(void);

static struct {
  uv_loop_t uv;
  weft_loop_t *loop;
  weft_server_t *srv;
  int port;
  weft_limits_t limits;
  uv_async_t done;
  int closing, closed;
  handler_t handler;
  client_t client;
  int nreq;
  /* slow reader */
  weft_req_t *req;
  size_t sent;
  int waits, drains, blocked_before_read;
  size_t max_queued;
  atomic_int client_reading;
  /* close with a request in flight */
  atomic_int responded;
  int body_status;
} S;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- the client side (runs in its own thread) ---- */

static int cli_connect(int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  if (rcvbuf > 0) CHECK_INT(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)S.port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void cli_send(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
    if (r <= 0) fprintf(stderr, "send: %s\n", strerror(errno));
    CHECK(r > 0);
    p += r;
    n -= (size_t)r;
  }
}

static void cli_sends(int fd, const char *s) { cli_send(fd, s, strlen(s)); }

/* Reads one Content-Length-framed response (or up to EOF) into buf; returns its length. */
static size_t cli_read_response(int fd, char *buf, size_t cap) {
  size_t len = 0;
  for (;;) {
    buf[len] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (end != NULL) {
      size_t head = (size_t)(end + 4 - buf), cl = 0;
      char *h = strcasestr(buf, "\r\nContent-Length:");
      if (h != NULL && h < end) cl = strtoul(h + 17, NULL, 10);
      if (len >= head + cl) return len;
    }
    CHECK(len + 1 < cap);
    ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
    if (r <= 0) return len;
    len += (size_t)r;
  }
}

/* Waits for EOF: 1 on a clean EOF, 0 on data or timeout, -1 on a reset. */
static int cli_eof(int fd, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, ms) <= 0) return 0;
  char c;
  ssize_t r = recv(fd, &c, 1, 0);
  return r == 0 ? 1 : r < 0 ? -1 : 0;
}

/* ---- the server side ---- */

static void dispatch(weft_req_t *r, void *ud) {
  WEFT__UNUSED(ud);
  S.nreq++;
  S.handler(r);
}

static void on_closed(weft_server_t *s, void *ud) {
  WEFT__UNUSED(s);
  WEFT__UNUSED(ud);
  S.closed = 1;
}

static void close_server(void) {
  if (S.closing) return;
  S.closing = 1;
  weft_server_close(S.srv, on_closed, NULL);
}

static void on_done(uv_async_t *a) {
  uv_close((uv_handle_t *)a, NULL);
  close_server();
}

static void *client_main(void *arg) {
  WEFT__UNUSED(arg);
  S.client();
  uv_async_send(&S.done);
  return NULL;
}

static void run(const weft_limits_t *l, handler_t h, client_t c) {
  memset(&S, 0, sizeof(S));
  size_t frames0 = weft_ctx_live_frames();
  if (l != NULL)
    S.limits = *l;
  else
    weft_limits_default(&S.limits);
  S.handler = h;
  S.client = c;
  CHECK_INT(uv_loop_init(&S.uv), 0);
  CHECK_INT(weft_loop_new(&S.loop, &S.uv), 0);
  weft_server_config_t cfg = {0};
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  cfg.limits = &S.limits;
  cfg.on_request = dispatch;
  CHECK_INT(weft_server_listen(S.loop, &cfg, &S.srv), 0);
  char host[64];
  CHECK_INT(weft_server_address(S.srv, host, sizeof(host), &S.port), 0);
  CHECK(strcmp(host, "127.0.0.1") == 0 && S.port > 0);
  CHECK_INT(uv_async_init(&S.uv, &S.done, on_done), 0);
  pthread_t th;
  CHECK_INT(pthread_create(&th, NULL, client_main, NULL), 0);
  uv_run(&S.uv, UV_RUN_DEFAULT);
  pthread_join(th, NULL);
  CHECK(S.closed);
  weft_loop_free(S.loop);
  CHECK_INT(uv_loop_close(&S.uv), 0);
  CHECK_INT(weft_ctx_live_frames(), frames0);
}

/* ---- GET round trip ---- */

static void h_echo(weft_req_t *r) {
  char addr[64], body[256];
  int port = 0;
  CHECK_INT(weft_req_remote_addr(r, addr, sizeof(addr), &port), 0);
  CHECK(strcmp(addr, "127.0.0.1") == 0 && port > 0);
  size_t n;
  const char *t = weft_req_target(r, &n);
  int len = snprintf(body, sizeof(body), "hello %s", t);
  const weft_header_t h[] = {{"Content-Type", 12, "text/plain", 10}};
  CHECK_INT(weft_res_send(r, 200, h, 1, body, (size_t)len), 0);
  weft_req_release(r);
}

static void c_get(void) {
  int fd = cli_connect(0);
  CHECK(fd >= 0);
  char buf[4096];
  for (int i = 0; i < 3; i++) { /* keep-alive: three on one connection */
    cli_sends(fd, "GET /round/trip HTTP/1.1\r\nHost: localhost\r\n\r\n");
    size_t n = cli_read_response(fd, buf, sizeof(buf));
    CHECK(n > 0);
    CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK_HAS(buf, "\r\nContent-Length: 17\r\n");
    CHECK_HAS(buf, "\r\n\r\nhello /round/trip");
  }
  close(fd);
}

static void test_get(void) {
  run(NULL, h_echo, c_get);
  CHECK_INT(S.nreq, 3);
}

/* ---- a slow reader of a big streamed response ---- */

#define BIG_TOTAL (8u << 20)
#define BIG_CHUNK (64u << 10)

static void pump(weft_req_t *r);

static void on_drained(weft_req_t *r, int status, void *ud) {
  WEFT__UNUSED(ud);
  CHECK_INT(status, 0);
  S.drains++;
  CHECK(atomic_load(&S.client_reading)); /* nothing drains while the client reads nothing */
  pump(r);
}

static void pump(weft_req_t *r) {
  static char chunk[BIG_CHUNK];
  memset(chunk, 'b', sizeof(chunk));
  weft__conn_t *c = r->conn;
  while (S.sent < BIG_TOTAL) {
    int rc = weft_res_write(r, chunk, sizeof(chunk), on_drained, NULL);
    CHECK(rc == 0 || rc == 1);
    S.sent += sizeof(chunk);
    size_t q = c->io->queued(c);
    if (q > S.max_queued) S.max_queued = q;
    /* memory stays bounded: never more than high water plus one chunk (and its framing) */
    CHECK(q <= S.limits.write_high_water + BIG_CHUNK + 32);
    if (rc == 1) {
      S.waits++;
      if (!atomic_load(&S.client_reading)) S.blocked_before_read = 1;
      return;
    }
  }
  CHECK_INT(weft_res_finish(r), 0);
  weft_req_release(r);
}

static void h_big(weft_req_t *r) {
  CHECK_INT(weft_res_start(r, 200, NULL, 0), 0);
  pump(r);
}

static void c_slow_reader(void) {
  int fd = cli_connect(64 << 10);
  CHECK(fd >= 0);
  cli_sends(fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  usleep(500 * 1000); /* read nothing for a while */
  atomic_store(&S.client_reading, 1);
  size_t cap = BIG_TOTAL + (1 << 20), len = 0;
  char *buf = malloc(cap);
  for (;;) {
    CHECK(len < cap);
    ssize_t r = recv(fd, buf + len, cap - len, 0);
    CHECK(r > 0);
    len += (size_t)r;
    if (len >= 5 && memcmp(buf + len - 5, "0\r\n\r\n", 5) == 0) break;
  }
  /* decode the chunked body */
  buf[len - 1] = '\0';
  char *p = strstr(buf, "\r\n\r\n");
  CHECK(p != NULL);
  CHECK_HAS(buf, "Transfer-Encoding: chunked");
  p += 4;
  size_t total = 0;
  for (;;) {
    char *end;
    size_t n = strtoul(p, &end, 16);
    CHECK(end[0] == '\r' && end[1] == '\n');
    if (n == 0) break;
    p = end + 2;
    for (size_t i = 0; i < n; i += 4096)
      CHECK(p[i] == 'b');
    p += n;
    CHECK(p[0] == '\r' && p[1] == '\n');
    p += 2;
    total += n;
  }
  CHECK_INT(total, BIG_TOTAL);
  free(buf);
  close(fd);
}

static void test_slow_reader(void) {
  run(NULL, h_big, c_slow_reader);
  CHECK_INT(S.sent, BIG_TOTAL);
  CHECK(S.waits >= 1);
  CHECK_INT(S.drains, S.waits);
  CHECK(S.blocked_before_read);
  fprintf(stderr, "   slow reader: %d waits, max queued %zu bytes\n", S.waits, S.max_queued);
}

/* ---- timeouts ---- */

static void h_never(weft_req_t *r) {
  WEFT__UNUSED(r);
  CHECK(0 && "no request expected");
}

static void c_header_timeout(void) {
  char buf[4096];
  /* a head that stalls */
  int fd = cli_connect(0);
  double t0 = now_ms();
  cli_sends(fd, "GET / HTTP/1.1\r\nHost: x\r\n");
  size_t n = cli_read_response(fd, buf, sizeof(buf));
  double dt = now_ms() - t0;
  CHECK(n > 0);
  CHECK(strncmp(buf, "HTTP/1.1 408 Request Timeout\r\n", 30) == 0);
  CHECK_HAS(buf, "\r\nConnection: close\r\n");
  CHECK(dt >= 150 && dt < 3000);
  CHECK_INT(cli_eof(fd, 3000), 1);
  close(fd);
  /* a connection that never sends a byte */
  fd = cli_connect(0);
  n = cli_read_response(fd, buf, sizeof(buf));
  CHECK(strncmp(buf, "HTTP/1.1 408 ", 13) == 0);
  CHECK_INT(cli_eof(fd, 3000), 1);
  close(fd);
}

static void test_header_timeout(void) {
  weft_limits_t l;
  weft_limits_default(&l);
  l.header_timeout = 200;
  run(&l, h_never, c_header_timeout);
}

static void on_body(weft_req_t *r, int status, const char *data, size_t len, void *ud) {
  WEFT__UNUSED(data);
  WEFT__UNUSED(len);
  WEFT__UNUSED(ud);
  S.body_status = status;
  weft_req_release(r);
}

static void h_read(weft_req_t *r) { CHECK_INT(weft_req_read_body(r, on_body, NULL), 0); }

static void c_body_timeout(void) {
  char buf[4096];
  int fd = cli_connect(0);
  double t0 = now_ms();
  cli_sends(fd, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
  /* a byte every 60 ms never stalls, but the whole body must be in within body_timeout */
  for (int i = 0; i < 6; i++) {
    usleep(60 * 1000);
    if (send(fd, "d", 1, MSG_NOSIGNAL) != 1) break;
  }
  size_t n = cli_read_response(fd, buf, sizeof(buf));
  double dt = now_ms() - t0;
  CHECK(n > 0);
  CHECK(strncmp(buf, "HTTP/1.1 408 ", 13) == 0);
  CHECK(dt >= 190 && dt < 1500);
  CHECK_INT(cli_eof(fd, 3000), 1);
  close(fd);
}

static void test_body_timeout(void) {
  weft_limits_t l;
  weft_limits_default(&l);
  l.body_timeout = 200;
  run(&l, h_read, c_body_timeout);
  CHECK_INT(S.body_status, UV_ETIMEDOUT);
}

static void c_idle_timeout(void) {
  char buf[4096];
  int fd = cli_connect(0);
  cli_sends(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  size_t n = cli_read_response(fd, buf, sizeof(buf));
  CHECK(strncmp(buf, "HTTP/1.1 200 ", 13) == 0 && n > 0);
  double t0 = now_ms();
  CHECK_INT(cli_eof(fd, 3000), 1); /* closed silently */
  double dt = now_ms() - t0;
  CHECK(dt >= 150 && dt < 3000);
  close(fd);
}

static void test_idle_timeout(void) {
  weft_limits_t l;
  weft_limits_default(&l);
  l.idle_timeout = 200;
  run(&l, h_echo, c_idle_timeout);
}

/* ---- lingering close: a client still sending a big body reads the 413 ---- */

static void c_linger(void) {
  char buf[4096];
  int fd = cli_connect(0);
  size_t total = 4u << 20;
  char head[128];
  snprintf(head, sizeof(head), "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
           total);
  cli_sends(fd, head);
  char *body = malloc(total);
  memset(body, 'u', total);
  cli_send(fd, body, total); /* must not fail with a reset */
  free(body);
  size_t n = cli_read_response(fd, buf, sizeof(buf));
  CHECK(n > 0);
  CHECK(strncmp(buf, "HTTP/1.1 413 Content Too Large\r\n", 32) == 0);
  CHECK_HAS(buf, "\r\nConnection: close\r\n");
  shutdown(fd, SHUT_WR);
  CHECK_INT(cli_eof(fd, 3000), 1);
  close(fd);
}

static void test_linger(void) {
  weft_limits_t l;
  weft_limits_default(&l);
  l.max_body = 1024;
  run(&l, h_never, c_linger);
}

/* ---- graceful close with a request in flight ---- */

static void late_answer(weft_timer_t *t, void *data) {
  WEFT__UNUSED(t);
  weft_req_t *r = data;
  CHECK(weft_req_alive(r));
  CHECK_INT(weft_res_send(r, 200, NULL, 0, "late", 4), 0);
  atomic_store(&S.responded, 1);
  weft_req_release(r);
}

static void on_closed_after(weft_server_t *s, void *ud) {
  CHECK(atomic_load(&S.responded)); /* only once the in-flight response is out */
  on_closed(s, ud);
}

static void h_close_in_flight(weft_req_t *r) {
  S.closing = 1;
  weft_server_close(S.srv, on_closed_after, NULL);
  CHECK_INT(weft_server_connections(S.srv), 2);
  weft_timer_t *t;
  CHECK_INT(weft_timer_start(S.loop, &t, 200, 0, late_answer, r), 0);
}

static void c_close_in_flight(void) {
  char buf[4096];
  int idle = cli_connect(0);
  usleep(50 * 1000);
  int fd = cli_connect(0);
  cli_sends(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_INT(cli_eof(idle, 3000), 1); /* the idle connection is closed at once */
  close(idle);
  size_t n = cli_read_response(fd, buf, sizeof(buf));
  CHECK(n > 0);
  CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
  CHECK_HAS(buf, "\r\nConnection: close\r\n");
  CHECK_HAS(buf, "\r\n\r\nlate");
  CHECK_INT(cli_eof(fd, 3000), 1);
  close(fd);
  CHECK_INT(cli_connect(0), -1); /* no longer listening */
}

static void test_close_in_flight(void) { run(NULL, h_close_in_flight, c_close_in_flight); }

/* ---- many idle connections do not delay a new one ---- */

static void c_many_idle(void) {
  enum { N = 300 };
  static int fds[N];
  for (int i = 0; i < N; i++) {
    fds[i] = cli_connect(0);
    CHECK(fds[i] >= 0);
  }
  char buf[4096];
  double t0 = now_ms();
  int fd = cli_connect(0);
  cli_sends(fd, "GET /fresh HTTP/1.1\r\nHost: x\r\n\r\n");
  size_t n = cli_read_response(fd, buf, sizeof(buf));
  double dt = now_ms() - t0;
  CHECK(n > 0 && strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
  CHECK(dt < 500);
  fprintf(stderr, "   request beside %d idle connections: %.2f ms\n", N, dt);
  close(fd);
  for (int i = 0; i < N; i++)
    close(fds[i]);
}

static void test_many_idle(void) {
  run(NULL, h_echo, c_many_idle);
  CHECK_INT(S.nreq, 1);
}

/* ---- a stream cut short ---- */

static void h_cut(weft_req_t *r) {
  CHECK_INT(weft_res_start(r, 200, NULL, 0), 0);
  CHECK_INT(weft_res_write(r, "partial", 7, NULL, NULL), 0);
  weft_req_release(r); /* never finished */
}

static void c_cut(void) {
  char buf[4096];
  /* HTTP/1.1: the chunked body lacks its last chunk, then the connection ends */
  int fd = cli_connect(0);
  cli_sends(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  size_t len = 0;
  for (;;) {
    ssize_t r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
    if (r <= 0) break;
    len += (size_t)r;
  }
  buf[len] = '\0';
  CHECK_HAS(buf, "Transfer-Encoding: chunked");
  CHECK_HAS(buf, "7\r\npartial\r\n");
  CHECK_HASNT(buf, "0\r\n\r\n");
  close(fd);
  /* HTTP/1.0: close-delimited, so only a reset can say it was cut short */
  fd = cli_connect(0);
  cli_sends(fd, "GET / HTTP/1.0\r\n\r\n");
  ssize_t r;
  while ((r = recv(fd, buf, sizeof(buf), 0)) > 0)
    continue;
  CHECK(r < 0 && errno == ECONNRESET);
  close(fd);
}

static void test_cut_stream(void) { run(NULL, h_cut, c_cut); }

int main(void) {
  RUN(test_get);
  RUN(test_slow_reader);
  RUN(test_header_timeout);
  RUN(test_body_timeout);
  RUN(test_idle_timeout);
  RUN(test_linger);
  RUN(test_close_in_flight);
  RUN(test_many_idle);
  RUN(test_cut_stream);
  fprintf(stderr, "test_http_socket: %d checks passed\n", weft_test_checks);
  return 0;
}
