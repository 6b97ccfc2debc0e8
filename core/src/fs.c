/*
 * fs.c — asynchronous file operations: thin wrappers over libuv's uv_fs_* on its thread pool.
 * Each request captures the frame current when it is queued and installs it around its
 * callback; the request (and its frame) is released when the callback returns.
 */
#include "weft_internal.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

typedef struct weft__fs_req {
  uv_fs_t req;
  weft_loop_t *loop;
  weft_frame_t *frame; /* the frame at registration: owned, moved in around the callback */
  weft_fs_cb cb;
  void *data;
} weft__fs_req_t;

static size_t weft__fs_npending;

size_t weft_fs_pending(void) { return weft__fs_npending; }

static weft_fs_type_t weft__fs_type(uint64_t mode) {
  if (S_ISREG(mode)) return WEFT_FS_FILE;
  if (S_ISDIR(mode)) return WEFT_FS_DIR;
  if (S_ISLNK(mode)) return WEFT_FS_LINK;
  return WEFT_FS_OTHER;
}

static void weft__fs_fill_stat(weft_fs_stat_t *out, const uv_stat_t *s) {
  out->type = weft__fs_type(s->st_mode);
  out->size = s->st_size;
  out->mtime_sec = (int64_t)s->st_mtim.tv_sec;
  out->mtime_nsec = (long)s->st_mtim.tv_nsec;
  out->mode = s->st_mode;
  out->dev = s->st_dev;
  out->ino = s->st_ino;
}

static void weft__fs_done(uv_fs_t *uvreq) {
  weft__fs_req_t *r = WEFT__CONTAINER_OF(uvreq, weft__fs_req_t, req);
  weft_fs_result_t res;
  memset(&res, 0, sizeof(res));
  res.fd = -1;
  ssize_t result = uv_fs_get_result(uvreq);
  res.status = result < 0 ? (int)result : 0;
  if (result >= 0) {
    switch (uv_fs_get_type(uvreq)) {
    case UV_FS_OPEN: res.fd = (uv_file)result; break;
    case UV_FS_READ: res.nread = (size_t)result; break;
    case UV_FS_REALPATH: res.path = uv_fs_get_ptr(uvreq); break;
    case UV_FS_STAT:
    case UV_FS_LSTAT:
    case UV_FS_FSTAT: weft__fs_fill_stat(&res.stat, uv_fs_get_statbuf(uvreq)); break;
    default: break;
    }
  }
  weft_loop_t *loop = r->loop;
  weft_frame_t *prev = weft_ctx_swap(loop, r->frame); /* the request's reference moves in */
  r->frame = NULL;
  r->cb(&res, r->data);
  weft_frame_release(weft_ctx_swap(loop, prev));
  uv_fs_req_cleanup(uvreq);
  free(r);
  weft__fs_npending--;
}

/* A request for cb, capturing the current frame. */
static weft__fs_req_t *weft__fs_req_new(weft_loop_t *loop, weft_fs_cb cb, void *data) {
  weft__fs_req_t *r = weft__xmalloc(sizeof(*r));
  memset(r, 0, sizeof(*r));
  r->loop = loop;
  r->cb = cb;
  r->data = data;
  r->frame = weft_frame_retain(loop->current);
  return r;
}

/* After a uv_fs_* call: counts the request in flight, or undoes it when libuv refused it. */
static int weft__fs_queued(weft__fs_req_t *r, int rc) {
  if (rc < 0) {
    uv_fs_req_cleanup(&r->req);
    weft_frame_release(r->frame);
    free(r);
    return rc;
  }
  weft__fs_npending++;
  return 0;
}

int weft_fs_open(weft_loop_t *loop, const char *path, weft_fs_cb cb, void *data) {
  if (path == NULL || cb == NULL) return UV_EINVAL;
  weft__fs_req_t *r = weft__fs_req_new(loop, cb, data);
  int flags = UV_FS_O_RDONLY | UV_FS_O_NONBLOCK; /* libuv adds O_CLOEXEC */
  return weft__fs_queued(r, uv_fs_open(loop->uv, &r->req, path, flags, 0, weft__fs_done));
}

int weft_fs_close(weft_loop_t *loop, uv_file fd, weft_fs_cb cb, void *data) {
  if (fd < 0) return UV_EBADF;
  if (cb == NULL) {
    uv_fs_t req;
    int rc = uv_fs_close(loop->uv, &req, fd, NULL);
    uv_fs_req_cleanup(&req);
    return rc < 0 ? rc : 0;
  }
  weft__fs_req_t *r = weft__fs_req_new(loop, cb, data);
  return weft__fs_queued(r, uv_fs_close(loop->uv, &r->req, fd, weft__fs_done));
}

int weft_fs_read(weft_loop_t *loop, uv_file fd, char *buf, size_t len, int64_t offset,
                 weft_fs_cb cb, void *data) {
  if (cb == NULL || (buf == NULL && len > 0) || offset < -1) return UV_EINVAL;
  if (fd < 0) return UV_EBADF;
  if (len > INT32_MAX) len = INT32_MAX;
  weft__fs_req_t *r = weft__fs_req_new(loop, cb, data);
  uv_buf_t b = uv_buf_init(buf, (unsigned int)len);
  return weft__fs_queued(r, uv_fs_read(loop->uv, &r->req, fd, &b, 1, offset, weft__fs_done));
}

int weft_fs_stat(weft_loop_t *loop, const char *path, weft_fs_cb cb, void *data) {
  if (path == NULL || cb == NULL) return UV_EINVAL;
  weft__fs_req_t *r = weft__fs_req_new(loop, cb, data);
  return weft__fs_queued(r, uv_fs_stat(loop->uv, &r->req, path, weft__fs_done));
}

int weft_fs_lstat(weft_loop_t *loop, const char *path, weft_fs_cb cb, void *data) {
  if (path == NULL || cb == NULL) return UV_EINVAL;
  weft__fs_req_t *r = weft__fs_req_new(loop, cb, data);
  return weft__fs_queued(r, uv_fs_lstat(loop->uv, &r->req, path, weft__fs_done));
}

int weft_fs_fstat(weft_loop_t *loop, uv_file fd, weft_fs_cb cb, void *data) {
  if (cb == NULL) return UV_EINVAL;
  if (fd < 0) return UV_EBADF;
  weft__fs_req_t *r = weft__fs_req_new(loop, cb, data);
  return weft__fs_queued(r, uv_fs_fstat(loop->uv, &r->req, fd, weft__fs_done));
}

int weft_fs_realpath(weft_loop_t *loop, const char *path, weft_fs_cb cb, void *data) {
  if (path == NULL || cb == NULL) return UV_EINVAL;
  weft__fs_req_t *r = weft__fs_req_new(loop, cb, data);
  return weft__fs_queued(r, uv_fs_realpath(loop->uv, &r->req, path, weft__fs_done));
}
