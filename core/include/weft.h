/*
 * weft.h — the public contract of weft's C core.
 *
 * The core is plain C on libuv (and llhttp, privately). It knows nothing of Lua: a C program can
 * embed it and serve HTTP with a C handler. Five parts:
 *   1. the loop           weft_loop_*     one per thread; owns the current async-context frame
 *   2. async context      weft_frame_*    immutable frames mapping keys to values
 *   3. continuations      weft_timer_*, weft_defer   capture the frame at registration
 *   4. HTTP/1.1 server    weft_server_*, weft_req_*, weft_res_*
 *   5. files              weft_fs_*       asynchronous, on libuv's thread pool
 *   6. URLs               weft_url_*, weft_utf8_*   percent-decoding, UTF-8 validation
 *
 * Conventions (libuv's): functions return 0 or a negative libuv error code (UV_E*); memory a
 * function hands out is released by the matching *_release / *_free / close call.
 * Nothing here is thread-safe: everything belongs to the thread running the loop.
 */
#ifndef WEFT_H
#define WEFT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WEFT_VERSION "0.1.0"

/* ------------------------------------------------------------------------------------------ */
/* 1. The loop                                                                                 */

typedef struct weft_loop weft_loop_t;

/* Creates a weft loop on top of `uv` (uv_default_loop() when NULL). */
int weft_loop_new(weft_loop_t **out, uv_loop_t *uv);

/* The libuv loop underneath. */
uv_loop_t *weft_loop_uv(weft_loop_t *loop);

/* Frees the loop; its frame is released. Closes weft's own internal handles and runs the libuv
 * loop until they are closed; the caller must have closed its own handles first. */
void weft_loop_free(weft_loop_t *loop);

/* Milliseconds from a monotonic clock (libuv's cached loop time, refreshed). */
uint64_t weft_loop_now(weft_loop_t *loop);

/* ------------------------------------------------------------------------------------------ */
/* 2. Async context                                                                            */
/*
 * A frame maps keys (one per AsyncLocalStorage instance) to values. Frames are immutable and
 * reference counted; NULL is the empty frame. Deriving a frame with one change is O(1): the new
 * frame links to its parent, and chains are collapsed into a flat table every few levels, so
 * neither lookups nor memory grow with nesting depth. Propagation is a pointer copy.
 *
 * A value is an opaque pointer owned by the frames that hold it: when the last frame holding
 * it is released, the key's free_value callback receives it.
 */
typedef struct weft_frame weft_frame_t;
typedef struct weft_ctx_key weft_ctx_key_t;

typedef void (*weft_ctx_free_value_cb)(void *value, void *ud);

/* A new key with one reference. free_value may be NULL (values are then not owned). */
weft_ctx_key_t *weft_ctx_key_new(weft_ctx_free_value_cb free_value, void *ud);
/* Drops a reference; the key lives on while any frame still holds a value under it. */
void weft_ctx_key_release(weft_ctx_key_t *key);

weft_frame_t *weft_frame_retain(weft_frame_t *f);   /* NULL-safe; returns f */
void weft_frame_release(weft_frame_t *f);           /* NULL-safe */

/* A new frame (one reference) equal to `base` except that `key` maps to `value`. The frame takes
 * ownership of `value`. value == NULL records "explicitly no store" (it shadows outer values). */
weft_frame_t *weft_frame_with(weft_frame_t *base, weft_ctx_key_t *key, void *value);

/* Looks `key` up in `f`: returns 1 and sets *value when the frame has an entry (which may be
 * NULL: explicitly no store), 0 when it has none. Does not change any reference count. */
int weft_frame_get(weft_frame_t *f, weft_ctx_key_t *key, void **value);

/* The one in-place change: every frame that shares f's entry for `key` stops seeing its value
 * (AsyncLocalStorage.disable). The value is released when no frame holds it any more. */
void weft_frame_disable(weft_frame_t *f, weft_ctx_key_t *key);

/* The frame current on this loop (borrowed: retain it to keep it). */
weft_frame_t *weft_ctx_current(weft_loop_t *loop);

/* Installs `f` as current, taking over the caller's reference to it, and returns the previous
 * current frame together with its reference. Restoring is the same call with the old frame. */
weft_frame_t *weft_ctx_swap(weft_loop_t *loop, weft_frame_t *f);

/* Number of frames alive (diagnostics and leak tests). */
size_t weft_ctx_live_frames(void);

/* ------------------------------------------------------------------------------------------ */
/* 3. Continuations: each captures the current frame when registered and installs it around   */
/*    its callback. A one-shot drops its frame when it fires; a repeating one when stopped.    */

typedef struct weft_timer weft_timer_t;
typedef void (*weft_timer_cb)(weft_timer_t *t, void *data);

/* Starts a timer firing after `timeout` ms, then every `repeat` ms if repeat > 0. */
int weft_timer_start(weft_loop_t *loop, weft_timer_t **out, uint64_t timeout, uint64_t repeat,
                     weft_timer_cb cb, void *data);

/* Stops the timer and frees it (safe inside its own callback, and after a one-shot fired only
 * if called from inside that callback: a one-shot that returned from its callback is freed). */
void weft_timer_stop(weft_timer_t *t);

/* Keeps / stops keeping the loop alive for this timer (uv_ref/uv_unref). */
void weft_timer_ref(weft_timer_t *t, int ref);

typedef void (*weft_defer_cb)(void *data);

/* Runs cb(data) on a later turn of the loop (after pending I/O has been polled), in the frame
 * current now. Callbacks deferred while the queue runs wait for the next turn. */
int weft_defer(weft_loop_t *loop, weft_defer_cb cb, void *data);

/* ------------------------------------------------------------------------------------------ */
/* 4. HTTP/1.1 server                                                                          */

typedef struct weft_server weft_server_t;
typedef struct weft_req weft_req_t;

/* Called when a request's headers are complete and within limits, in the frame that was current
 * when the server started listening. The request stays valid until weft_req_release(). */
typedef void (*weft_request_cb)(weft_req_t *req, void *ud);

typedef struct weft_limits {
  size_t max_url;            /* request line over this: 414 (default 8 KiB) */
  size_t max_header_bytes;   /* header block over this: 431 (default 16 KiB) */
  size_t max_headers;        /* more header lines than this: 431 (default 100) */
  size_t max_body;           /* body over this: 413 before reading the rest (default 1 MiB) */
  uint64_t header_timeout;   /* ms until headers must be complete: 408 (default 30000) */
  uint64_t body_timeout;     /* ms from the end of the head until the whole body is in: 408
                                (default 30000); it bounds the body, not each read */
  uint64_t idle_timeout;     /* ms an idle keep-alive connection lives, counted from when its
                                last response has been written out (default 5000) */
  uint64_t linger_timeout;   /* ms a closing connection drains the client's input once its
                                answer is written out (default 2000) */
  uint64_t send_timeout;     /* ms the client may read nothing of a response that waits to be
                                written: then it is closed, and waiting writers learn
                                UV_ETIMEDOUT (default 60000). Time without progress, as nginx's
                                send_timeout: a slow but steady reader is never cut */
  size_t write_high_water;   /* queued response bytes above which writers wait (default 64 KiB) */
  size_t max_connections;    /* connections open at once; past it a new one is accepted and
                                closed at once (default 0: no cap but the descriptor limit) */
} weft_limits_t;

/* Fills *l with the defaults above. */
void weft_limits_default(weft_limits_t *l);

/* Called, in the server's frame, each time a connection is refused because max_connections
 * are open; `refused` counts them since the server started. */
typedef void (*weft_refused_cb)(weft_server_t *s, uint64_t refused, void *ud);

typedef struct weft_server_config {
  const char *host;          /* default "127.0.0.1" */
  int port;                  /* 0 = any free port */
  int backlog;               /* default 511 */
  const weft_limits_t *limits; /* NULL = defaults */
  weft_request_cb on_request;
  weft_refused_cb on_refused; /* optional */
  void *ud;
} weft_server_config_t;

/* Binds and listens (host: a numeric IPv4/IPv6 address or a name resolved once). The current
 * frame is captured and installed around every on_request. If SIGPIPE still has its default
 * disposition it is set to ignored, so that a vanished peer costs an EPIPE, not the process. */
int weft_server_listen(weft_loop_t *loop, const weft_server_config_t *cfg, weft_server_t **out);

/* The bound address: host as text into buf (size >= 64), and the port. */
int weft_server_address(weft_server_t *s, char *buf, size_t len, int *port);

typedef void (*weft_server_closed_cb)(weft_server_t *s, void *ud);

/* Graceful close: stop accepting, close idle connections, let in-flight requests finish (their
 * connections close after the response); closed(s, ud) runs once every connection is gone, and
 * the server is freed after it returns; it runs in the frame current at this call. Safe to
 * call twice (the second call is ignored) as long as closed() has not run yet. */
void weft_server_close(weft_server_t *s, weft_server_closed_cb closed, void *ud);

/* Connections currently open (diagnostics and tests). */
size_t weft_server_connections(weft_server_t *s);

/* Closes every connection at once, in flight or not (after weft_server_close, when a shutdown
 * deadline has passed): waiting body readers and writers learn UV_ECONNRESET, and the requests
 * stay valid until released. */
void weft_server_abort_connections(weft_server_t *s);

/* ---- the request ------------------------------------------------------------------------- */

/* Method name ("GET"), request target as sent ("/a?b=1"), HTTP minor version (0 or 1). */
const char *weft_req_method(weft_req_t *r, size_t *len);
const char *weft_req_target(weft_req_t *r, size_t *len);
int weft_req_http_minor(weft_req_t *r);

/* Header lines in arrival order; names as sent (compare case-insensitively). */
size_t weft_req_header_count(weft_req_t *r);
int weft_req_header_at(weft_req_t *r, size_t i, const char **name, size_t *nlen,
                       const char **value, size_t *vlen);
/* The first header named `name` (case-insensitive), or NULL. */
const char *weft_req_header(weft_req_t *r, const char *name, size_t nlen, size_t *vlen);
/* The method, target, header names and values above are NUL-terminated (the lengths are those
 * of the strings) and stay valid until weft_req_release(). Values have no surrounding
 * whitespace; trailers of a chunked body are not kept. */

/* The peer's address as text ("127.0.0.1") into buf; 0 or a UV error. */
int weft_req_remote_addr(weft_req_t *r, char *buf, size_t len, int *port);

/* 1 while the client connection is still open and the request may be answered. */
int weft_req_alive(weft_req_t *r);

/* Whole-body read. cb runs once: status 0 with the body (valid until weft_req_release), or a
 * negative code: UV_E2BIG (over max_body: the core has answered 413), UV_ETIMEDOUT (not all in
 * within body_timeout: 408 sent), UV_ECONNRESET (client went away), UV_EINVAL (malformed: 400
 * sent), UV_ECANCELED (the request was released first). Sends "100 Continue" first if the
 * client asked for it. cb may run before this returns if the body is already complete. Only
 * one read per request. */
typedef void (*weft_body_cb)(weft_req_t *r, int status, const char *data, size_t len, void *ud);
int weft_req_read_body(weft_req_t *r, weft_body_cb cb, void *ud);

/* Declares the request finished from the handler's side. If it was never answered, the core
 * answers 500. A body read or drain callback still waiting runs now with UV_ECANCELED. The
 * connection moves on to the next request once the response is written. */
void weft_req_release(weft_req_t *r);

/* Opaque user pointer carried by the request. */
void weft_req_set_data(weft_req_t *r, void *data);
void *weft_req_data(weft_req_t *r);

/* ---- the response ------------------------------------------------------------------------ */

typedef struct weft_header {
  const char *name;
  size_t nlen;
  const char *value;
  size_t vlen;
} weft_header_t;

/* The whole response in one write: status line, Date, Content-Length (none for 204 and 304;
 * for HEAD the length of the body given, which is not sent), Connection when closing, the
 * given headers, then the body (omitted for HEAD, 204, 304).
 * UV_EALREADY if a response was already started; UV_ECONNRESET if the client is gone;
 * UV_EINVAL for a header name that is not a token (RFC 9110: so never "Transfer-Encoding " or
 * "a:b"), a value with a control character other than HTAB, or a status outside 100..999.
 * Framing is the core's: Content-Length and Transfer-Encoding among `headers` are dropped. A
 * Date given replaces the core's; a Connection given is sent unless the core closes the
 * connection and the value lacks "close" ("close" makes the core close after the response).
 * A 1xx status (not 101) sends an interim response with no body (nothing on HTTP/1.0): the
 * final response is still to come and weft_res_started() stays 0. */
int weft_res_send(weft_req_t *r, int status, const weft_header_t *headers, size_t n,
                  const char *body, size_t len);

/* Starts a streaming response: chunked (HTTP/1.1) or close-delimited (HTTP/1.0); status
 * 200..999. Releasing the request before weft_res_finish() cuts the connection. */
int weft_res_start(weft_req_t *r, int status, const weft_header_t *headers, size_t n);

/* Writes one chunk of a streaming response. Returns 0 when the caller may write again at once,
 * 1 when the queue is over the high-water mark: drained(r, status, ud) will run once, with
 * status 0 once it has drained below it, or UV_ETIMEDOUT (send_timeout passed: the connection
 * was closed), UV_ECONNRESET (the connection closed) or UV_ECANCELED (the request was
 * released). Every writer registered runs, in the order they registered, each in the frame
 * current when it did. Negative on error. */
typedef void (*weft_drain_cb)(weft_req_t *r, int status, void *ud);
int weft_res_write(weft_req_t *r, const char *data, size_t len, weft_drain_cb drained, void *ud);

/* Ends a streaming response (the terminating chunk). An empty write sends nothing. */
int weft_res_finish(weft_req_t *r);

/* 1 once a response has been started or sent. */
int weft_res_started(weft_req_t *r);

/* Formats the current Date header value (IMF-fixdate), cached once a second. */
const char *weft_http_date(weft_loop_t *loop, size_t *len);

/* ------------------------------------------------------------------------------------------ */
/* 5. Files: thin asynchronous wrappers over libuv's thread-pool file operations. Each is a   */
/*    one-shot continuation: it captures the frame current at the call and installs it around */
/*    its callback, then drops it.                                                              */
/*
 * Every function returns 0 when the operation was queued, and then cb(res, data) runs exactly
 * once, on a later turn of the loop (never before the function returns); or a negative UV
 * error, and then cb never runs. `res` and what it points to are valid during the callback
 * only. Operations in flight keep the loop alive; the loop must not be freed under them.
 */

typedef enum weft_fs_type {
  WEFT_FS_OTHER = 0, /* FIFO, socket, device */
  WEFT_FS_FILE,      /* regular file */
  WEFT_FS_DIR,       /* directory */
  WEFT_FS_LINK       /* symbolic link (only weft_fs_lstat sees one) */
} weft_fs_type_t;

typedef struct weft_fs_stat {
  weft_fs_type_t type;
  uint64_t size;      /* bytes */
  int64_t mtime_sec;  /* last modification, seconds since the epoch */
  long mtime_nsec;    /* and nanoseconds */
  uint64_t mode;      /* st_mode: type and permission bits */
  uint64_t dev, ino;  /* identity of the file */
} weft_fs_stat_t;

typedef struct weft_fs_result {
  int status;          /* 0, or a negative UV error code (UV_ENOENT, ...) */
  uv_file fd;          /* weft_fs_open: the new descriptor; -1 on error */
  size_t nread;        /* weft_fs_read: bytes read into the caller's buffer; 0 at end of file */
  const char *path;    /* weft_fs_realpath: the resolved absolute path; NULL on error */
  weft_fs_stat_t stat; /* weft_fs_stat, weft_fs_lstat, weft_fs_fstat */
} weft_fs_result_t;

typedef void (*weft_fs_cb)(const weft_fs_result_t *res, void *data);

/* Opens `path` read-only, non-blocking and close-on-exec. O_NONBLOCK makes opening a FIFO or a
 * device return at once instead of stalling a pool thread; regular files ignore it. */
int weft_fs_open(weft_loop_t *loop, const char *path, weft_fs_cb cb, void *data);

/* Closes fd. With cb == NULL the descriptor is closed synchronously, now, and the result is
 * returned (closing a descriptor opened read-only does not wait on the disk). */
int weft_fs_close(weft_loop_t *loop, uv_file fd, weft_fs_cb cb, void *data);

/* Reads up to len bytes at `offset` (-1: at the descriptor's position, which then advances)
 * into buf, which must stay valid until cb runs. res->nread is 0 at end of file. Reads of
 * more than INT32_MAX bytes are cut to that. */
int weft_fs_read(weft_loop_t *loop, uv_file fd, char *buf, size_t len, int64_t offset,
                 weft_fs_cb cb, void *data);

/* stat(2) (following symbolic links), lstat(2) (not following the last one), fstat(2). */
int weft_fs_stat(weft_loop_t *loop, const char *path, weft_fs_cb cb, void *data);
int weft_fs_lstat(weft_loop_t *loop, const char *path, weft_fs_cb cb, void *data);
int weft_fs_fstat(weft_loop_t *loop, uv_file fd, weft_fs_cb cb, void *data);

/* realpath(3): the absolute path with every symbolic link, "." and ".." resolved; the file
 * must exist (UV_ENOENT otherwise). */
int weft_fs_realpath(weft_loop_t *loop, const char *path, weft_fs_cb cb, void *data);

/* File operations queued and not yet called back, on every loop (diagnostics and tests). */
size_t weft_fs_pending(void);

/* ------------------------------------------------------------------------------------------ */
/* 6. URLs                                                                                     */

enum {
  WEFT_URL_PLUS = 1,   /* '+' decodes to ' ' (query strings and form bodies) */
  WEFT_URL_LENIENT = 2 /* a '%' that starts no escape is kept as it is, and the bytes decoded
                          are not checked for UTF-8 */
};

/* Percent-decodes in[0, len) into out (room for len bytes; out may equal in; NULL only
 * validates) and returns the decoded length. Strict by default: UV_EINVAL when a '%' is not
 * followed by two hex digits, UV_EILSEQ when the bytes decoded are not UTF-8. The core applies
 * this check to the path of every request before handing it out (400 when it fails). */
long weft_url_decode(const char *in, size_t len, char *out, unsigned flags);

/* The length of the longest prefix of s[0, len) that is complete, valid UTF-8 (RFC 3629):
 * len when all of it is. */
size_t weft_utf8_check(const char *s, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_H */
