/*
 * weft_internal.h — the core's private header: structures shared between core/src files and
 * the C tests. Nothing outside core/ (and core/test/) includes it.
 */
#ifndef WEFT_INTERNAL_H
#define WEFT_INTERNAL_H

#include "weft.h"

#include <stdlib.h>
#include <string.h>

#define WEFT__UNUSED(x) ((void)(x))
#define WEFT__CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

/* Allocation that never returns NULL: weft aborts on out-of-memory, as Lua's own allocator
 * failure would leave the process unusable anyway. */
void *weft__xmalloc(size_t n);
void *weft__xrealloc(void *p, size_t n);

/* ---- loop ---- */

typedef struct weft__defer_node {
  struct weft__defer_node *next;
  weft_defer_cb cb;
  void *data;
  weft_frame_t *frame;
} weft__defer_node_t;

struct weft_loop {
  uv_loop_t *uv;
  weft_frame_t *current;          /* the current frame; this field owns one reference */
  uv_idle_t idle;                 /* active while deferred callbacks are queued */
  weft__defer_node_t *dq_head, *dq_tail;
  weft__defer_node_t *dq_free;    /* recycled nodes: deferring allocates nothing steady-state */
  time_t date_sec;                /* the second date_buf was formatted for */
  char date_buf[40];
  size_t date_len;
};

/* ---- HTTP/1.1 server ---- */

typedef struct weft__conn weft__conn_t;
typedef struct weft__wbuf weft__wbuf_t;

/* A writer waiting for the write queue to drain (weft_res_write returned 1). */
typedef struct weft__drain {
  struct weft__drain *next;
  weft_drain_cb cb;
  void *ud;
  weft_frame_t *frame;
} weft__drain_t;

/* A pooled output buffer; also carries the uv_write_t of the write it belongs to, so one write
 * needs no allocation beyond the pool. */
struct weft__wbuf {
  uv_write_t req;
  weft__wbuf_t *next; /* pool link, or an io implementation's own queue link */
  weft__conn_t *conn;
  size_t cap, len;
  char data[];
};

/* How a connection reaches its peer. The socket implementation wraps a uv_tcp_t; tests use one
 * that records output, so a connection can be driven without a socket. Every function but
 * `peer` is required. Completions come back through weft__conn_write_done,
 * weft__conn_shutdown_done and weft__conn_io_closed; any of them may run synchronously. */
typedef struct weft__conn_io {
  int (*read_start)(weft__conn_t *c);
  void (*read_stop)(weft__conn_t *c);
  /* Writes what it can at once: bytes written (>= 0), UV_EAGAIN, or an error. */
  int (*try_write)(weft__conn_t *c, const uv_buf_t *bufs, unsigned n);
  /* Queues bufs (which stay valid until completion); weft__conn_write_done(c, w, status)
   * follows, also when the connection closes first (UV_ECANCELED). */
  int (*write)(weft__conn_t *c, weft__wbuf_t *w, const uv_buf_t *bufs, unsigned n);
  /* Bytes queued by write and not yet written. */
  size_t (*queued)(weft__conn_t *c);
  /* Ends the write side after queued writes; weft__conn_shutdown_done(c, status) follows. */
  int (*shutdown)(weft__conn_t *c);
  /* Closes; pending writes complete with UV_ECANCELED, then weft__conn_io_closed(c) runs. */
  void (*close)(weft__conn_t *c);
  /* The peer's address (optional: NULL means UV_ENOTSUP). */
  int (*peer)(weft__conn_t *c, struct sockaddr_storage *ss);
  /* Bytes written but still held below (the kernel's send queue), so that send_timeout sees
   * a client reading while the queue above stands still (optional: NULL counts none). */
  size_t (*unsent)(weft__conn_t *c);
} weft__conn_io_t;

/* One header line of the request being parsed: offsets into the connection's read buffer. */
typedef struct weft__hdr {
  uint32_t name_off, name_len, value_off, value_len;
} weft__hdr_t;

struct weft_req {
  weft__conn_t *conn;
  void *data;
};

enum weft__phase {
  WEFT__PH_IDLE,   /* between requests: nothing of the next one received */
  WEFT__PH_HEAD,   /* a request head is arriving */
  WEFT__PH_ACTIVE, /* a request was handed out (its head is pinned); body and response flow */
  WEFT__PH_LINGER, /* answered and closing: write side shut, input discarded until EOF */
  WEFT__PH_CLOSED  /* closed (or closing): memory lives on until the request is released */
};

enum weft__res_state { WEFT__RES_NONE, WEFT__RES_STREAM, WEFT__RES_DONE };

#define WEFT__H1_PARSER_SIZE 128 /* >= sizeof(llhttp_t), checked in http1.c */

struct weft__conn {
  weft__conn_t *prev, *next; /* the server's list */
  weft_server_t *server;
  const weft__conn_io_t *io;
  void *io_ud;
  weft_req_t req; /* one request at a time; reused */

  /* Parser state (http1.c). The llhttp_t lives here as opaque storage. */
  union {
    uint64_t align;
    void *ptr;
    char bytes[WEFT__H1_PARSER_SIZE];
  } parser;
  int h1_event;  /* what the last llhttp callback paused for */
  int h1_status; /* the HTTP status a limit violation asks for, 0 if none */
  const char *h1_data; /* the input of the llhttp_execute in progress */
  uint64_t h1_abs;     /* stream position of h1_data: bytes parsed before this execute */
  uint64_t body_start; /* stream position where the body began */
  uint64_t chunk_line_start, chunk_data_end; /* chunked framing: see http1.c */

  /* Read buffer: [0, hend) the pinned head of the active request (or the head in progress,
   * which always starts at 0), [rpos, rlen) unparsed input. */
  char *rbuf;
  size_t rcap, rlen, rpos, hend;

  /* The request head, as slices of rbuf. */
  const char *method;
  size_t method_len;
  uint32_t target_off, target_len;
  weft__hdr_t *hdrs;
  uint32_t nhdrs, hdrs_cap;
  size_t header_bytes;  /* header block bytes so far (and then trailer bytes) */
  uint8_t hstate;       /* where the header callbacks are: see http1.c */
  uint8_t http_minor;
  unsigned target_started : 1;
  unsigned head_done : 1;     /* headers complete: later header callbacks are trailers */
  unsigned is_head : 1;       /* HEAD request */
  unsigned keep_alive : 1;    /* the connection may carry another request after this one */
  unsigned body_expected : 1; /* Content-Length > 0 or chunked */
  unsigned chunked : 1;       /* the body is chunked */
  unsigned chunk_line_open : 1; /* a chunk-size line is being parsed */
  unsigned chunk_last : 1;    /* the last chunk (size 0) has begun */
  unsigned expect_continue : 1;
  unsigned continue_sent : 1;
  unsigned msg_done : 1;      /* the whole request (body included) has been parsed */
  unsigned req_active : 1;    /* handed to on_request and not yet released */
  unsigned res_chunked : 1;   /* the streaming response uses chunked framing */
  unsigned res_nobody : 1;    /* the response carries no body (HEAD, 204, 304) */
  unsigned core_answered : 1; /* the core answered this request itself (an error) */
  unsigned peer_eof : 1;      /* the client ended its side */
  unsigned reading : 1;
  unsigned dead : 1;          /* closed: the client can no longer be answered */
  unsigned in_process : 1;
  unsigned process_again : 1;
  unsigned timer_closed : 1;
  unsigned io_closed : 1;
  unsigned linger : 1;    /* LINGER: wait for the peer's EOF after the shutdown */
  unsigned shut_done : 1; /* the write side is shut */
  unsigned close_reset : 1; /* close with a reset: a close-delimited body was cut short */
  uint8_t phase;     /* enum weft__phase */
  uint8_t res_state; /* enum weft__res_state */
  uint64_t content_length;
  uint64_t body_total; /* body bytes parsed, kept or not */
  uint64_t nreq;       /* requests handed out on this connection */

  /* The body, decoded; kept while the request is active. */
  char *body;
  size_t body_len, body_cap;
  int body_err;         /* a body failure to report to a later read (0 if none) */
  uint8_t body_reading; /* 0 not asked, 1 waiting, 2 delivered */
  weft_body_cb body_cb;
  void *body_ud;
  weft_frame_t *body_frame;

  weft__drain_t *drains, *drains_tail; /* writers waiting for the queue to drain, in order */

  /* One timer for every phase and for the write deadline; a deadline moved later costs no
   * re-arm (see server.c). */
  uv_timer_t timer;
  uint64_t deadline, timer_due;
  uint8_t tkind;
  unsigned wq_active : 1;   /* response bytes are queued: send_timeout applies */
  unsigned idle_wait : 1;   /* idle, but the idle timer waits for the queue to empty */
  unsigned linger_wait : 1; /* lingering, but the linger timer waits for the shutdown */
  size_t wq_last;           /* bytes queued at the last look */
  uint64_t wq_progress;     /* when the queue last moved */
  uint64_t wq_check;        /* when to look next */
  int close_status;         /* why the connection was closed: UV_ETIMEDOUT (send_timeout) or 0 */

  int busy; /* entry points in progress: memory is freed only when this is 0 */

  uv_shutdown_t shutdown_req; /* socket io */
  uv_tcp_t tcp;               /* socket io */
};

struct weft_server {
  weft_loop_t *loop;
  weft_limits_t limits;
  weft_request_cb on_request;
  void *ud;
  weft_frame_t *frame; /* captured at listen, installed around on_request */
  uv_tcp_t listener;
  unsigned listening : 1;
  unsigned listener_open : 1;
  unsigned closing : 1;
  unsigned defer_pending : 1; /* a deferred free check is queued */
  unsigned freeing : 1;
  weft__conn_t *conns; /* all connections not yet freed */
  size_t nconns;
  weft_refused_cb on_refused;
  uint64_t refused;    /* connections refused over max_connections */
  weft_server_closed_cb closed_cb;
  void *closed_ud;
  weft_frame_t *closed_frame;
  size_t rbuf_size, head_cap; /* standard read buffer; largest head buffer */
  void *rpool;                /* free standard read buffers (linked through their first bytes) */
  size_t rpool_n;
  weft__wbuf_t *wpool; /* free standard output buffers */
  size_t wpool_n;
};

/* A server without a listening socket, for driving connections in tests. */
int weft__server_new_detached(weft_loop_t *loop, const weft_server_config_t *cfg,
                              weft_server_t **out);

/* A connection over `io` (the server's limits apply; reading starts at once). */
weft__conn_t *weft__conn_new(weft_server_t *s, const weft__conn_io_t *io, void *io_ud);
/* Bytes as if read from the peer; returns how many were taken (fewer when reading stopped). */
size_t weft__conn_feed(weft__conn_t *c, const char *data, size_t len);
/* The peer ended its side (as if read returned UV_EOF). */
void weft__conn_eof(weft__conn_t *c);
void *weft__conn_io_ud(weft__conn_t *c);

/* Completions, for io implementations. */
void weft__conn_write_done(weft__conn_t *c, weft__wbuf_t *w, int status);
void weft__conn_shutdown_done(weft__conn_t *c, int status);
void weft__conn_io_closed(weft__conn_t *c);

/* ---- server.c internals shared with response.c and http1.c ---- */

/* Frees the connection if nothing holds it any more (closed, released, no entry point). */
void weft__conn_maybe_free(weft__conn_t *c);
/* An entry point in progress keeps the connection's memory alive. */
static inline void weft__conn_hold(weft__conn_t *c) { c->busy++; }
static inline void weft__conn_unhold(weft__conn_t *c) {
  if (--c->busy == 0) weft__conn_maybe_free(c);
}
/* Closes the connection now: pending writes are dropped, waiting callbacks are told. */
void weft__conn_abort(weft__conn_t *c);
/* Runs the connection's state machine: parses, hands requests out, moves to the next one. */
void weft__conn_process(weft__conn_t *c);
/* Body bytes from the parser: kept, discarded or refused. 0 or the HTTP status to answer. */
int weft__conn_body(weft__conn_t *c, const char *at, size_t len);

/* ---- response.c ---- */

/* Serialises and writes a whole response (also for the core's own answers). */
int weft__res_send(weft__conn_t *c, int status, const weft_header_t *h, size_t n,
                   const char *body, size_t len);
/* The core's own answer: `status` with a short text/plain body and Connection: close. */
void weft__res_error(weft__conn_t *c, int status);
/* Writes "HTTP/1.1 100 Continue". */
int weft__res_continue(weft__conn_t *c);
/* Runs and forgets every drained callback, each in the frame captured with it. */
void weft__res_fire_drain(weft__conn_t *c, int status);
/* Response bytes were queued, or some were written: the write deadline moves (server.c). */
void weft__conn_wq_changed(weft__conn_t *c);
/* Frees the server's pooled output buffers. */
void weft__wbuf_pool_free(weft_server_t *s);

/* ---- http1.c: the only user of llhttp ---- */

enum { WEFT__H1_MORE = 0, WEFT__H1_HEAD = 1, WEFT__H1_DONE = 2 }; /* >= 100: an HTTP status */

/* Initialises the connection's parser. */
void weft__http1_init(weft__conn_t *c);
/* Parses [rpos, rlen) of the read buffer, stopping after a complete head (WEFT__H1_HEAD) or a
 * complete request (WEFT__H1_DONE); WEFT__H1_MORE when all input is consumed, or the HTTP status
 * to answer when the input is bad or over a limit (the parser is then unusable). */
int weft__http1_execute(weft__conn_t *c);
/* Forgets the previous request's head so that the next one can be parsed. */
void weft__http1_next(weft__conn_t *c);

#endif /* WEFT_INTERNAL_H */
