/*
 * c_server.c — "Hello, World!" from a C handler on weft's core: the architecture's own speed
 * limit, which the Lua figures in bench/ are measured against.
 *
 *   weft_bench_c [--host H] [--port N]
 *
 * Prints "listening on http://HOST:PORT" once listening; SIGTERM or SIGINT closes the server
 * gracefully and the program exits when the loop is empty.
 */
#include "weft.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static weft_server_t *server;
static uv_signal_t sig_term, sig_int;

static void on_request(weft_req_t *r, void *ud) {
  static const weft_header_t headers[] = {{"Content-Type", 12, "text/plain", 10}};
  static const char body[] = "Hello, World!";
  (void)ud;
  weft_res_send(r, 200, headers, 1, body, sizeof(body) - 1);
  weft_req_release(r);
}

static void on_closed(weft_server_t *s, void *ud) {
  (void)s;
  (void)ud;
  server = NULL;
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)h;
  (void)signum;
  uv_close((uv_handle_t *)&sig_term, NULL);
  uv_close((uv_handle_t *)&sig_int, NULL);
  if (server != NULL) weft_server_close(server, on_closed, NULL);
}

static void usage(const char *argv0) {
  fprintf(stderr, "usage: %s [--host H] [--port N]\n", argv0);
  exit(2);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 8080;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
      host = argv[++i];
    else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = atoi(argv[++i]);
    else
      usage(argv[0]);
  }

  weft_loop_t *loop;
  int rc = weft_loop_new(&loop, NULL);
  if (rc != 0) {
    fprintf(stderr, "weft_loop_new: %s\n", uv_strerror(rc));
    return 1;
  }
  weft_server_config_t cfg = {0};
  cfg.host = host;
  cfg.port = port;
  cfg.on_request = on_request;
  rc = weft_server_listen(loop, &cfg, &server);
  if (rc != 0) {
    fprintf(stderr, "listen on %s:%d: %s\n", host, port, uv_strerror(rc));
    weft_loop_free(loop);
    return 1;
  }
  char addr[64];
  int bound;
  weft_server_address(server, addr, sizeof(addr), &bound);
  if (strchr(addr, ':') != NULL)
    printf("listening on http://[%s]:%d\n", addr, bound);
  else
    printf("listening on http://%s:%d\n", addr, bound);
  fflush(stdout);

  uv_loop_t *uv = weft_loop_uv(loop);
  uv_signal_init(uv, &sig_term);
  uv_signal_init(uv, &sig_int);
  uv_signal_start(&sig_term, on_signal, SIGTERM);
  uv_signal_start(&sig_int, on_signal, SIGINT);

  uv_run(uv, UV_RUN_DEFAULT);
  weft_loop_free(loop);
  uv_loop_close(uv);
  return 0;
}
