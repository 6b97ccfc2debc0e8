/*
 * test_fs.c — the asynchronous file operations: their results and errors, and that each
 * callback runs later, in the frame that was current when the operation was queued.
 */
#include "weft_internal.h"
#include "test_util.h"

#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static weft_loop_t *loop;
static weft_ctx_key_t *key;
static int queuing; /* set while an operation is being queued: no callback may run then */
static intptr_t next_tag = 100;

typedef struct got {
  int calls;
  weft_fs_result_t res;
  char path[PATH_MAX];
  weft_frame_t *want;     /* the frame current when the operation was queued */
  weft_frame_t *seen;     /* the frame current in the callback */
  intptr_t seen_value;    /* key's value in it */
  intptr_t want_value;
} got_t;

static void on_fs(const weft_fs_result_t *res, void *data) {
  got_t *g = data;
  CHECK(!queuing);
  g->calls++;
  g->res = *res;
  if (res->path != NULL) {
    snprintf(g->path, sizeof(g->path), "%s", res->path);
    g->res.path = g->path;
  }
  g->seen = weft_ctx_current(loop);
  void *v = NULL;
  g->seen_value = weft_frame_get(g->seen, key, &v) ? (intptr_t)v : -1;
}

/* Queues an operation in a fresh frame, leaves that frame, runs the loop until the callback
 * ran, and checks that the callback saw the frame. */
#define OP(g, call)                                                                   \
  do {                                                                                \
    memset(&(g), 0, sizeof(g));                                                       \
    (g).want_value = ++next_tag;                                                      \
    weft_frame_t *prev_ = weft_ctx_swap(loop, weft_frame_with(NULL, key,              \
                                                              (void *)(g).want_value)); \
    (g).want = weft_ctx_current(loop);                                                \
    queuing = 1;                                                                      \
    CHECK_INT((call), 0);                                                             \
    queuing = 0;                                                                      \
    CHECK_INT((g).calls, 0);                                                          \
    CHECK_INT(weft_fs_pending(), 1);                                                  \
    weft_frame_t *mine_ = weft_ctx_swap(loop, prev_);                                 \
    uv_run(weft_loop_uv(loop), UV_RUN_DEFAULT);                                       \
    CHECK_INT((g).calls, 1);                                                          \
    CHECK((g).seen == mine_);                                                         \
    CHECK_INT((g).seen_value, (g).want_value);                                        \
    CHECK(weft_ctx_current(loop) == prev_); /* restored after the callback */         \
    CHECK_INT(weft_fs_pending(), 0);                                                  \
    weft_frame_release(mine_);                                                        \
  } while (0)

static char dir[PATH_MAX], file[PATH_MAX + 32], link_path[PATH_MAX + 32];
static char sub[PATH_MAX + 32], fifo[PATH_MAX + 32], missing[PATH_MAX + 32];
static const char content[] = "hello, weft files\n";

static void make_tree(void) {
  char tmpl[] = "/tmp/weft-test-fs-XXXXXX";
  CHECK(mkdtemp(tmpl) != NULL);
  CHECK(realpath(tmpl, dir) != NULL);
  snprintf(file, sizeof(file), "%s/hello.txt", dir);
  snprintf(link_path, sizeof(link_path), "%s/link", dir);
  snprintf(sub, sizeof(sub), "%s/sub", dir);
  snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
  snprintf(missing, sizeof(missing), "%s/missing", dir);
  FILE *f = fopen(file, "wb");
  CHECK(f != NULL);
  CHECK(fwrite(content, 1, sizeof(content) - 1, f) == sizeof(content) - 1);
  fclose(f);
  CHECK(symlink("hello.txt", link_path) == 0);
  CHECK(mkdir(sub, 0755) == 0);
  CHECK(mkfifo(fifo, 0600) == 0);
}

static void remove_tree(void) {
  unlink(file);
  unlink(link_path);
  unlink(fifo);
  rmdir(sub);
  rmdir(dir);
}

static void test_open_read_stat_close(void) {
  got_t g;
  OP(g, weft_fs_open(loop, file, on_fs, &g));
  CHECK_INT(g.res.status, 0);
  uv_file fd = g.res.fd;
  CHECK(fd >= 0);

  OP(g, weft_fs_fstat(loop, fd, on_fs, &g));
  CHECK_INT(g.res.status, 0);
  CHECK_INT(g.res.stat.type, WEFT_FS_FILE);
  CHECK_INT(g.res.stat.size, sizeof(content) - 1);
  struct stat sb;
  CHECK(stat(file, &sb) == 0);
  CHECK_INT(g.res.stat.mtime_sec, sb.st_mtime);
  CHECK_INT(g.res.stat.ino, sb.st_ino);

  char buf[64];
  OP(g, weft_fs_read(loop, fd, buf, 5, 0, on_fs, &g));
  CHECK_INT(g.res.status, 0);
  CHECK_INT(g.res.nread, 5);
  CHECK(memcmp(buf, "hello", 5) == 0);

  OP(g, weft_fs_read(loop, fd, buf, sizeof(buf), 7, on_fs, &g)); /* a short read at the end */
  CHECK_INT(g.res.nread, sizeof(content) - 1 - 7);
  CHECK(memcmp(buf, content + 7, g.res.nread) == 0);

  OP(g, weft_fs_read(loop, fd, buf, sizeof(buf), sizeof(content) - 1, on_fs, &g));
  CHECK_INT(g.res.status, 0);
  CHECK_INT(g.res.nread, 0); /* end of file */

  OP(g, weft_fs_read(loop, fd, buf, 6, -1, on_fs, &g)); /* at the position, which advances */
  CHECK_INT(g.res.nread, 6);
  CHECK(memcmp(buf, "hello,", 6) == 0);
  OP(g, weft_fs_read(loop, fd, buf, 5, -1, on_fs, &g));
  CHECK(memcmp(buf, " weft", 5) == 0);

  OP(g, weft_fs_close(loop, fd, on_fs, &g));
  CHECK_INT(g.res.status, 0);
  OP(g, weft_fs_fstat(loop, fd, on_fs, &g)); /* closed: the error comes in the callback */
  CHECK_INT(g.res.status, UV_EBADF);
}

static void test_stat_lstat_realpath(void) {
  got_t g;
  OP(g, weft_fs_stat(loop, link_path, on_fs, &g));
  CHECK_INT(g.res.status, 0);
  CHECK_INT(g.res.stat.type, WEFT_FS_FILE);
  CHECK_INT(g.res.stat.size, sizeof(content) - 1);

  OP(g, weft_fs_lstat(loop, link_path, on_fs, &g));
  CHECK_INT(g.res.status, 0);
  CHECK_INT(g.res.stat.type, WEFT_FS_LINK);

  OP(g, weft_fs_stat(loop, sub, on_fs, &g));
  CHECK_INT(g.res.stat.type, WEFT_FS_DIR);

  OP(g, weft_fs_lstat(loop, fifo, on_fs, &g));
  CHECK_INT(g.res.stat.type, WEFT_FS_OTHER);

  OP(g, weft_fs_realpath(loop, link_path, on_fs, &g));
  CHECK_INT(g.res.status, 0);
  CHECK(g.res.path != NULL);
  CHECK(strcmp(g.res.path, file) == 0);

  char dotted[PATH_MAX + 64];
  snprintf(dotted, sizeof(dotted), "%s/sub/../sub/./../hello.txt", dir);
  OP(g, weft_fs_realpath(loop, dotted, on_fs, &g));
  CHECK(strcmp(g.res.path, file) == 0);
}

static void test_errors(void) {
  got_t g;
  OP(g, weft_fs_open(loop, missing, on_fs, &g));
  CHECK_INT(g.res.status, UV_ENOENT);
  CHECK_INT(g.res.fd, -1);

  OP(g, weft_fs_stat(loop, missing, on_fs, &g));
  CHECK_INT(g.res.status, UV_ENOENT);

  OP(g, weft_fs_realpath(loop, missing, on_fs, &g));
  CHECK_INT(g.res.status, UV_ENOENT);
  CHECK(g.res.path == NULL);

  char notdir[PATH_MAX + 64];
  snprintf(notdir, sizeof(notdir), "%s/x", file);
  OP(g, weft_fs_stat(loop, notdir, on_fs, &g));
  CHECK_INT(g.res.status, UV_ENOTDIR);

  /* refused at once: the callback never runs */
  char buf[4];
  CHECK_INT(weft_fs_read(loop, -1, buf, sizeof(buf), 0, on_fs, NULL), UV_EBADF);
  CHECK_INT(weft_fs_read(loop, 0, buf, sizeof(buf), -2, on_fs, NULL), UV_EINVAL);
  CHECK_INT(weft_fs_open(loop, file, NULL, NULL), UV_EINVAL);
  CHECK_INT(weft_fs_fstat(loop, -1, on_fs, NULL), UV_EBADF);
  CHECK_INT(weft_fs_close(loop, -1, on_fs, NULL), UV_EBADF);
  CHECK_INT(weft_fs_pending(), 0);
}

/* A FIFO opens at once (O_NONBLOCK) and is seen for what it is; a directory opens too. */
static void test_special_files(void) {
  got_t g;
  OP(g, weft_fs_open(loop, fifo, on_fs, &g));
  CHECK_INT(g.res.status, 0);
  uv_file fd = g.res.fd;
  OP(g, weft_fs_fstat(loop, fd, on_fs, &g));
  CHECK_INT(g.res.stat.type, WEFT_FS_OTHER);
  CHECK_INT(weft_fs_close(loop, fd, NULL, NULL), 0); /* synchronous */

  OP(g, weft_fs_open(loop, sub, on_fs, &g));
  CHECK_INT(g.res.status, 0);
  fd = g.res.fd;
  OP(g, weft_fs_fstat(loop, fd, on_fs, &g));
  CHECK_INT(g.res.stat.type, WEFT_FS_DIR);
  char buf[8];
  OP(g, weft_fs_read(loop, fd, buf, sizeof(buf), 0, on_fs, &g));
  CHECK_INT(g.res.status, UV_EISDIR);
  CHECK_INT(weft_fs_close(loop, fd, NULL, NULL), 0);
  CHECK_INT(weft_fs_close(loop, fd, NULL, NULL), UV_EBADF); /* twice */
}

/* Many operations in flight at once, each queued in its own frame: every callback sees its
 * own, whatever order the pool finishes them in. */
#define MANY 64
static got_t many[MANY];

static void test_many_frames(void) {
  weft_frame_t *frames[MANY];
  for (int i = 0; i < MANY; i++) {
    memset(&many[i], 0, sizeof(many[i]));
    many[i].want_value = i + 1;
    weft_frame_t *prev = weft_ctx_swap(loop, weft_frame_with(NULL, key, (void *)(intptr_t)(i + 1)));
    CHECK_INT(i % 2 ? weft_fs_stat(loop, file, on_fs, &many[i])
                    : weft_fs_realpath(loop, link_path, on_fs, &many[i]), 0);
    frames[i] = weft_ctx_swap(loop, prev);
  }
  CHECK_INT(weft_fs_pending(), MANY);
  uv_run(weft_loop_uv(loop), UV_RUN_DEFAULT);
  for (int i = 0; i < MANY; i++) {
    CHECK_INT(many[i].calls, 1);
    CHECK_INT(many[i].res.status, 0);
    CHECK(many[i].seen == frames[i]);
    CHECK_INT(many[i].seen_value, i + 1);
    weft_frame_release(frames[i]);
  }
  CHECK_INT(weft_fs_pending(), 0);
}

int main(void) {
  make_tree();
  uv_loop_t uv;
  CHECK_INT(uv_loop_init(&uv), 0);
  CHECK_INT(weft_loop_new(&loop, &uv), 0);
  key = weft_ctx_key_new(NULL, NULL);
  /* the frame outside every operation */
  weft_frame_release(weft_ctx_swap(loop, weft_frame_with(NULL, key, (void *)1)));

  RUN(test_open_read_stat_close);
  RUN(test_stat_lstat_realpath);
  RUN(test_errors);
  RUN(test_special_files);
  RUN(test_many_frames);

  weft_frame_release(weft_ctx_swap(loop, NULL));
  weft_loop_free(loop);
  CHECK_INT(uv_loop_close(&uv), 0);
  weft_ctx_key_release(key);
  CHECK_INT(weft_ctx_live_frames(), 0); /* no operation kept a frame */
  remove_tree();
  fprintf(stderr, "test_fs: %d checks passed\n", weft_test_checks);
  return 0;
}
