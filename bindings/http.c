/*
 * http.c — the HTTP server for Lua: servers, requests (lazy: headers are read from the core's
 * buffer when asked for) and responses. Each request runs handler(req) in its own task; when
 * the task ends the request is released to the core, which then moves on to the next
 * pipelined request of that connection.
 */
#include "weft_lua.h"

#include <ctype.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

typedef struct server_ud {
  weft_state_t *st;
  weft_server_t *s;   /* NULL once closed */
  int handler_ref;
  int self_ref;
  int closed_ref;     /* function to run when closed, or LUA_NOREF */
  int refused_ref;    /* on_refused(count), or LUA_NOREF */
  int closing;
} server_ud_t;

typedef struct req_ud {
  weft_state_t *st;
  weft_req_t *r;      /* NULL once released */
  int self_ref;
  int body_read;
} req_ud_t;

/* ---- server ---- */

static void request_done(weft_state_t *st, weft_task_t *t, void *ud) {
  (void)t;
  req_ud_t *rq = ud;
  if (rq->r != NULL) {
    weft_req_t *r = rq->r;
    rq->r = NULL;
    weft_req_release(r);
  }
  if (rq->self_ref != LUA_NOREF) {
    luaL_unref(st->L, LUA_REGISTRYINDEX, rq->self_ref);
    rq->self_ref = LUA_NOREF;
  }
}

typedef struct request_start {
  server_ud_t *srv;
  weft_req_t *r;
  req_ud_t *rq;  /* made, not yet handed to a task */
  int handed;    /* the task owns the request: its end releases it */
} request_start_t;

static void start_request(weft_state_t *st, void *ud) {
  request_start_t *a = ud;
  lua_State *L = st->L;
  weft_b_young_step(st);
  luaL_checkstack(L, 4, NULL);
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->srv->handler_ref);
  req_ud_t *rq = lua_newuserdatauv(L, sizeof(*rq), 1);
  rq->st = st;
  rq->r = a->r;
  rq->body_read = 0;
  rq->self_ref = LUA_NOREF;
  a->rq = rq;
  luaL_setmetatable(L, WEFT_REQ_MT);
  lua_pushvalue(L, -1);
  rq->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  weft_task_t *t = weft_b_start_prepare(st, request_done, rq);
  weft_req_set_data(a->r, rq); /* from here on the task owns the request */
  a->handed = 1;
  weft_b_start_run(st, t, 1);
}

static void on_request(weft_req_t *r, void *ud) {
  server_ud_t *srv = ud;
  request_start_t a = {srv, r, NULL, 0};
  if (weft_b_protect(srv->st, start_request, &a, "starting a request") != LUA_OK && !a.handed) {
    if (a.rq != NULL) { /* never handed to a task: let the userdata go */
      a.rq->r = NULL;
      if (a.rq->self_ref != LUA_NOREF) luaL_unref(srv->st->L, LUA_REGISTRYINDEX, a.rq->self_ref);
      a.rq->self_ref = LUA_NOREF;
    }
    weft_req_release(r); /* the core answers 500 */
  }
}

/* Called by the core when max_connections are open: on_refused(count) in Lua, if given. */
typedef struct refused_call {
  server_ud_t *srv;
  uint64_t refused;
} refused_call_t;

static void call_on_refused(weft_state_t *st, void *ud) {
  refused_call_t *a = ud;
  lua_State *L = st->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->srv->refused_ref);
  lua_pushinteger(L, (lua_Integer)a->refused);
  weft_b_start_now(st, 1, NULL, NULL);
}

static void on_refused(weft_server_t *s, uint64_t refused, void *ud) {
  (void)s;
  server_ud_t *srv = ud;
  if (srv->refused_ref == LUA_NOREF) return;
  refused_call_t a = {srv, refused};
  weft_b_protect(srv->st, call_on_refused, &a, "on_refused");
}

static int opt_size(lua_State *L, int idx, const char *name, size_t *out) {
  lua_getfield(L, idx, name);
  if (!lua_isnil(L, -1)) {
    lua_Integer v = luaL_checkinteger(L, -1);
    if (v < 0) return luaL_error(L, "%s must not be negative", name);
    *out = (size_t)v;
  }
  lua_pop(L, 1);
  return 0;
}

static int opt_ms(lua_State *L, int idx, const char *name, uint64_t *out) {
  size_t v = (size_t)*out;
  opt_size(L, idx, name, &v);
  *out = (uint64_t)v;
  return 0;
}

/* listen{host=, port=, backlog=, limits...}, handler -> server | nil, err */
static int l_listen(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  weft_limits_t lim;
  weft_limits_default(&lim);
  opt_size(L, 1, "max_url", &lim.max_url);
  opt_size(L, 1, "max_header_bytes", &lim.max_header_bytes);
  opt_size(L, 1, "max_headers", &lim.max_headers);
  opt_size(L, 1, "max_body", &lim.max_body);
  opt_ms(L, 1, "header_timeout", &lim.header_timeout);
  opt_ms(L, 1, "body_timeout", &lim.body_timeout);
  opt_ms(L, 1, "idle_timeout", &lim.idle_timeout);
  opt_ms(L, 1, "linger_timeout", &lim.linger_timeout);
  opt_ms(L, 1, "send_timeout", &lim.send_timeout);
  opt_size(L, 1, "write_high_water", &lim.write_high_water);
  opt_size(L, 1, "max_connections", &lim.max_connections);
  lua_getfield(L, 1, "on_refused");
  int has_refused = !lua_isnil(L, -1);
  if (has_refused) luaL_checktype(L, -1, LUA_TFUNCTION);
  lua_pop(L, 1);
  lua_getfield(L, 1, "host");
  const char *host = luaL_optstring(L, -1, "127.0.0.1");
  lua_getfield(L, 1, "port");
  lua_Integer port = luaL_optinteger(L, -1, 8080);
  lua_getfield(L, 1, "backlog");
  lua_Integer backlog = luaL_optinteger(L, -1, 511);
  if (port < 0 || port > 65535) return luaL_error(L, "port must be between 0 and 65535");

  server_ud_t *srv = lua_newuserdatauv(L, sizeof(*srv), 0);
  memset(srv, 0, sizeof(*srv));
  srv->st = st;
  srv->handler_ref = srv->self_ref = srv->closed_ref = srv->refused_ref = LUA_NOREF;
  luaL_setmetatable(L, WEFT_SERVER_MT);
  weft_server_config_t cfg = {.host = host,
                              .port = (int)port,
                              .backlog = (int)backlog,
                              .limits = &lim,
                              .on_request = on_request,
                              .on_refused = on_refused,
                              .ud = srv};
  int rc = weft_server_listen(st->loop, &cfg, &srv->s);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s (%s:%d)", uv_err_name(rc), uv_strerror(rc), host, (int)port);
    lua_pushstring(L, uv_err_name(rc));
    return 3;
  }
  lua_pushvalue(L, 2);
  srv->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (has_refused) {
    lua_getfield(L, 1, "on_refused");
    srv->refused_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_pushvalue(L, -1);
  srv->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static server_ud_t *check_server(lua_State *L) { return luaL_checkudata(L, 1, WEFT_SERVER_MT); }

static int server_address(lua_State *L) {
  server_ud_t *srv = check_server(L);
  if (srv->s == NULL) return luaL_error(L, "server is closed");
  char host[64];
  int port;
  int rc = weft_server_address(srv->s, host, sizeof(host), &port);
  if (rc != 0) return luaL_error(L, "address: %s", uv_strerror(rc));
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  return 2;
}

static void run_closed(weft_state_t *st, void *ud) {
  server_ud_t *srv = ud;
  lua_State *L = st->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, srv->closed_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, srv->closed_ref);
  srv->closed_ref = LUA_NOREF;
  weft_b_start_now(st, 0, NULL, NULL);
}

static void server_closed(weft_server_t *s, void *ud) {
  (void)s;
  server_ud_t *srv = ud;
  lua_State *L = srv->st->L;
  srv->s = NULL;
  if (srv->closed_ref != LUA_NOREF) weft_b_protect(srv->st, run_closed, srv, "server:close callback");
  luaL_unref(L, LUA_REGISTRYINDEX, srv->handler_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, srv->refused_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, srv->self_ref);
  srv->handler_ref = srv->self_ref = srv->refused_ref = LUA_NOREF;
}

/* server:close([on_closed]) — stop accepting, finish in-flight requests, then on_closed() */
static int server_close(lua_State *L) {
  server_ud_t *srv = check_server(L);
  if (srv->s == NULL || srv->closing) return 0;
  srv->closing = 1;
  if (!lua_isnoneornil(L, 2)) {
    lua_pushvalue(L, 2);
    srv->closed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  weft_server_close(srv->s, server_closed, srv);
  return 0;
}

/* server:abort() — after close(): closes every connection at once (a shutdown deadline) */
static int server_abort(lua_State *L) {
  server_ud_t *srv = check_server(L);
  if (srv->s != NULL) weft_server_abort_connections(srv->s);
  return 0;
}

/* server:closing() -> whether close() was called (or the server is gone) */
static int server_closing(lua_State *L) {
  server_ud_t *srv = check_server(L);
  lua_pushboolean(L, srv->s == NULL || srv->closing);
  return 1;
}

static int server_connections(lua_State *L) {
  server_ud_t *srv = check_server(L);
  lua_pushinteger(L, srv->s ? (lua_Integer)weft_server_connections(srv->s) : 0);
  return 1;
}

/* ---- request ---- */

/* The request at 1, which must not have ended. Its metatable is compared with the methods'
 * upvalue 2 (a registry lookup by name on every call costs more than most of these methods);
 * anything else gets luaL_checkudata's error. */
static req_ud_t *check_req(lua_State *L) {
  req_ud_t *rq = lua_touserdata(L, 1);
  int ok = 0;
  if (rq != NULL && lua_getmetatable(L, 1)) {
    ok = lua_rawequal(L, -1, lua_upvalueindex(2));
    lua_pop(L, 1);
  }
  if (!ok) rq = luaL_checkudata(L, 1, WEFT_REQ_MT);
  if (rq->r == NULL) luaL_error(L, "the request has ended");
  return rq;
}

static int req_method(lua_State *L) {
  req_ud_t *rq = check_req(L);
  size_t n;
  const char *m = weft_req_method(rq->r, &n);
  lua_pushlstring(L, m, n);
  return 1;
}

static int req_target(lua_State *L) {
  req_ud_t *rq = check_req(L);
  size_t n;
  const char *t = weft_req_target(rq->r, &n);
  lua_pushlstring(L, t, n);
  return 1;
}

static int req_http_minor(lua_State *L) {
  req_ud_t *rq = check_req(L);
  lua_pushinteger(L, weft_req_http_minor(rq->r));
  return 1;
}

static int req_header(lua_State *L) {
  req_ud_t *rq = check_req(L);
  size_t nlen, vlen;
  const char *name = luaL_checklstring(L, 2, &nlen);
  const char *v = weft_req_header(rq->r, name, nlen, &vlen);
  if (v == NULL)
    lua_pushnil(L);
  else
    lua_pushlstring(L, v, vlen);
  return 1;
}

/* headers() -> { lower-case name = value }; repeated headers are joined with ", " ("; " for
 * cookie), as RFC 9110 allows for list-valued fields */
static int req_headers(lua_State *L) {
  req_ud_t *rq = check_req(L);
  size_t n = weft_req_header_count(rq->r);
  lua_createtable(L, 0, (int)n);
  char lower[256];
  for (size_t i = 0; i < n; i++) {
    const char *name, *value;
    size_t nlen, vlen;
    weft_req_header_at(rq->r, i, &name, &nlen, &value, &vlen);
    luaL_Buffer b;
    if (nlen < sizeof(lower)) {
      for (size_t j = 0; j < nlen; j++) lower[j] = (char)tolower((unsigned char)name[j]);
      lua_pushlstring(L, lower, nlen);
    } else {
      char *p = luaL_buffinitsize(L, &b, nlen);
      for (size_t j = 0; j < nlen; j++) p[j] = (char)tolower((unsigned char)name[j]);
      luaL_pushresultsize(&b, nlen);
    }
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TSTRING) {
      int is_cookie = nlen == 6 && strncmp(lua_tostring(L, -2), "cookie", 6) == 0;
      lua_pushstring(L, is_cookie ? "; " : ", ");
      lua_pushlstring(L, value, vlen);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, value, vlen);
    }
    lua_rawset(L, -3);
  }
  return 1;
}

static int req_remote_addr(lua_State *L) {
  req_ud_t *rq = check_req(L);
  char buf[64];
  int port = 0;
  if (weft_req_remote_addr(rq->r, buf, sizeof(buf), &port) != 0) return 0;
  lua_pushstring(L, buf);
  lua_pushinteger(L, port);
  return 2;
}

static int req_alive(lua_State *L) {
  req_ud_t *rq = luaL_checkudata(L, 1, WEFT_REQ_MT);
  lua_pushboolean(L, rq->r != NULL && weft_req_alive(rq->r));
  return 1;
}

static int req_started(lua_State *L) {
  req_ud_t *rq = luaL_checkudata(L, 1, WEFT_REQ_MT);
  lua_pushboolean(L, rq->r == NULL || weft_res_started(rq->r));
  return 1;
}

/* body reads: the result is cached in the request's user value */

typedef struct body_wait {
  weft_state_t *st;
  weft_task_t *t;
  uint32_t token;
  int in_call;   /* the core answered before weft_req_read_body returned */
  int done;
  int status;
  const char *data;
  size_t len;
} body_wait_t;

/* body | nil, err: "closed" when the client went away or the request was released first,
 * else "ENAME: why" (E2BIG, ETIMEDOUT, EINVAL: the core has answered 413, 408, 400). */
static void push_body_result(lua_State *L, int status, const char *data, size_t len) {
  if (status == 0) {
    lua_pushlstring(L, data, len);
    lua_pushnil(L);
  } else if (status == UV_ECONNRESET || status == UV_ECANCELED) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
  } else {
    lua_pushnil(L);
    const char *why = status == UV_E2BIG        ? "request body too large"
                      : status == UV_ETIMEDOUT  ? "request body timed out"
                      : status == UV_EINVAL     ? "malformed request body"
                                                : uv_strerror(status);
    lua_pushfstring(L, "%s: %s", uv_err_name(status), why);
  }
}

static void body_resume(weft_state_t *st, void *ud) {
  body_wait_t *bw = ud;
  push_body_result(st->L, bw->status, bw->data, bw->len);
  weft_b_resume_waiter(st, bw->t, bw->token, 2);
}

static void body_cb(weft_req_t *r, int status, const char *data, size_t len, void *ud) {
  (void)r;
  body_wait_t *bw = ud;
  bw->done = 1;
  bw->status = status;
  bw->data = data;
  bw->len = len;
  if (bw->in_call) return;
  weft_state_t *st = bw->st;
  weft_task_t *t = bw->t;
  if (weft_b_protect(st, body_resume, bw, "resuming a body read") != LUA_OK)
    weft_b_resume_failed(st, t, bw->token);
  free(bw);
  weft_b_task_unpin(st->L, t);
}

static int req_body_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  /* stack: req, body|nil, nil|err; or only req (weft_b_resume_failed) */
  if (lua_gettop(L) < 3) return luaL_error(L, WEFT_B_NO_ANSWER);
  if (lua_isnil(L, -2)) return 2;
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 1, 1); /* cached for later calls */
  return 1;
}

/* req:body() -> string | nil, err. Suspends the task until the whole body has arrived. */
static int req_body(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  req_ud_t *rq = check_req(L);
  lua_settop(L, 1);
  if (rq->body_read) {
    lua_getiuservalue(L, 1, 1);
    if (!lua_isnil(L, -1)) return 1;
    lua_pushliteral(L, "EALREADY: the request body could not be read");
    return 2;
  }
  rq->body_read = 1;
  weft_task_t *t;
  uint32_t token = weft_b_prepare_wait(L, st, &t, "req:body()");
  body_wait_t *bw = calloc(1, sizeof(*bw));
  if (bw == NULL) return luaL_error(L, "out of memory");
  bw->st = st;
  bw->t = t;
  bw->token = token;
  bw->in_call = 1;
  weft_b_task_pin(L, t);
  int rc = weft_req_read_body(rq->r, body_cb, bw);
  bw->in_call = 0;
  if (rc != 0 || bw->done) {
    weft_b_cancel_wait(t);
    push_body_result(L, rc != 0 ? rc : bw->status, bw->data, bw->len);
    free(bw);
    weft_b_task_unpin(L, t);
    return req_body_k(L, LUA_OK, 0);
  }
  lua_pushlightuserdata(L, &weft_b_suspend_sentinel);
  return lua_yieldk(L, 1, 0, req_body_k);
}

/* ---- response ---- */

#define MAX_STACK_HEADERS 32

/* Reads a flat array {name1, value1, name2, value2, ...} at idx. Uses stackbuf, or a userdata
 * left on the stack (so it lives until the calling function returns) when there are more
 * headers. Returns the number of headers. A name or value that is a string stays alive in the
 * table; a number is converted on the stack, and that copy is left there: popped, the new
 * string would be garbage while the core still reads it. */
static size_t collect_headers(lua_State *L, int idx, weft_header_t **hs, weft_header_t *stackbuf) {
  *hs = stackbuf;
  if (lua_isnoneornil(L, idx)) return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  size_t n = (size_t)lua_rawlen(L, idx) / 2;
  if (n > MAX_STACK_HEADERS) *hs = lua_newuserdatauv(L, n * sizeof(weft_header_t), 0);
  for (size_t i = 0; i < n; i++) {
    const char *p[2];
    size_t len[2];
    for (int k = 0; k < 2; k++) {
      int t = lua_rawgeti(L, idx, (lua_Integer)(2 * i + 1 + k));
      if (t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_error(L, "header %d: name and value must be strings", (int)i + 1);
      p[k] = lua_tolstring(L, -1, &len[k]);
      if (t == LUA_TSTRING)
        lua_pop(L, 1);
      else
        luaL_checkstack(L, 4, "too many header values to convert");
    }
    (*hs)[i] = (weft_header_t){p[0], len[0], p[1], len[1]};
  }
  return n;
}

static int push_rc(lua_State *L, int rc) {
  if (rc >= 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(rc), uv_strerror(rc));
  lua_pushstring(L, uv_err_name(rc));
  return 3;
}

/* req:send(status, headers, body) -> true | nil, err */
static int req_send(lua_State *L) {
  req_ud_t *rq = check_req(L);
  int status = (int)luaL_checkinteger(L, 2);
  size_t blen = 0;
  const char *body = luaL_optlstring(L, 4, "", &blen);
  weft_header_t stackbuf[MAX_STACK_HEADERS], *hs;
  lua_settop(L, 4);
  size_t n = collect_headers(L, 3, &hs, stackbuf);
  return push_rc(L, weft_res_send(rq->r, status, hs, n, body, blen));
}

static int req_start(lua_State *L) {
  req_ud_t *rq = check_req(L);
  int status = (int)luaL_checkinteger(L, 2);
  lua_settop(L, 3);
  weft_header_t stackbuf[MAX_STACK_HEADERS], *hs;
  size_t n = collect_headers(L, 3, &hs, stackbuf);
  return push_rc(L, weft_res_start(rq->r, status, hs, n));
}

typedef struct drain_wait {
  weft_state_t *st;
  weft_task_t *t;
  uint32_t token;
  int status;
} drain_wait_t;

static void drain_resume(weft_state_t *st, void *ud) {
  drain_wait_t *dw = ud;
  lua_pushinteger(st->L, dw->status);
  weft_b_resume_waiter(st, dw->t, dw->token, 1);
}

static void drained_cb(weft_req_t *r, int status, void *ud) {
  (void)r;
  drain_wait_t *dw = ud;
  weft_state_t *st = dw->st;
  if (dw->t == NULL) { /* the writer could not wait: nobody to tell */
    free(dw);
    return;
  }
  dw->status = status;
  weft_task_t *t = dw->t;
  if (weft_b_protect(st, drain_resume, dw, "resuming a writer") != LUA_OK)
    weft_b_resume_failed(st, t, dw->token);
  free(dw);
  weft_b_task_unpin(st->L, t);
}

/* A write that cannot go on: nil, "timeout" (the client read nothing for send_timeout) or
 * nil, "closed" (the connection is gone, or the request was released). */
static int push_write_error(lua_State *L, int status) {
  lua_pushnil(L);
  if (status == UV_ETIMEDOUT)
    lua_pushliteral(L, "timeout");
  else
    lua_pushliteral(L, "closed");
  return 2;
}

static int req_write_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  if (lua_gettop(L) < 2) return luaL_error(L, WEFT_B_NO_ANSWER); /* weft_b_resume_failed */
  int drained = (int)lua_tointeger(L, -1);
  if (drained == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return push_write_error(L, drained);
}

/* req:write(chunk) -> true | nil, "timeout" | nil, "closed". Suspends while the client is
 * slower than the writer; every task writing waits its turn. */
static int req_write(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  req_ud_t *rq = check_req(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  drain_wait_t *dw = malloc(sizeof(*dw));
  if (dw == NULL) return luaL_error(L, "out of memory");
  dw->st = st;
  dw->t = NULL;
  int rc = weft_res_write(rq->r, data, len, drained_cb, dw);
  if (rc != 1) {
    free(dw);
    if (rc == UV_ECONNRESET) return push_write_error(L, rc);
    return push_rc(L, rc);
  }
  /* over the high-water mark: wait for the client, if this code runs in a task that can */
  if (st->task == NULL || !lua_isyieldable(L)) return push_rc(L, 0);
  weft_task_t *t;
  dw->token = weft_b_prepare_wait(L, st, &t, "req:write()");
  dw->t = t;
  weft_b_task_pin(L, t);
  lua_settop(L, 1);
  lua_pushlightuserdata(L, &weft_b_suspend_sentinel);
  return lua_yieldk(L, 1, 0, req_write_k);
}

static int req_finish(lua_State *L) {
  req_ud_t *rq = check_req(L);
  return push_rc(L, weft_res_finish(rq->r));
}

static int req_tostring(lua_State *L) {
  req_ud_t *rq = luaL_checkudata(L, 1, WEFT_REQ_MT);
  lua_pushfstring(L, "weft.request: %p%s", (void *)rq, rq->r ? "" : " (ended)");
  return 1;
}

/* ---- signals: fn runs as a task in the context current at registration ---- */

typedef struct signal_ud {
  uv_signal_t h;
  weft_state_t *st;
  weft_frame_t *frame;
  int fn_ref;
  int self_ref;
  int signum;
} signal_ud_t;

static void signal_start(weft_state_t *st, void *ud) {
  signal_ud_t *sg = ud;
  lua_State *L = st->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, sg->fn_ref);
  lua_pushinteger(L, sg->signum);
  weft_b_start_now(st, 1, NULL, NULL);
}

static void signal_cb(uv_signal_t *h, int signum) {
  signal_ud_t *sg = (signal_ud_t *)h;
  weft_state_t *st = sg->st;
  weft_frame_t *prev = weft_ctx_swap(st->loop, weft_frame_retain(sg->frame));
  sg->signum = signum;
  weft_b_protect(st, signal_start, sg, "a signal handler");
  weft_frame_release(weft_ctx_swap(st->loop, prev));
}

static void signal_closed(uv_handle_t *h) { (void)h; }

static int signal_close(lua_State *L) {
  signal_ud_t *sg = luaL_checkudata(L, 1, WEFT_SIGNAL_MT);
  if (sg->self_ref == LUA_NOREF) return 0;
  uv_signal_stop(&sg->h);
  uv_close((uv_handle_t *)&sg->h, signal_closed);
  weft_frame_release(sg->frame);
  sg->frame = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, sg->fn_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, sg->self_ref);
  sg->fn_ref = sg->self_ref = LUA_NOREF;
  return 0;
}

/* on_signal("SIGTERM" | number, fn) -> handle with :close(); the handle does not keep the loop
 * alive on its own */
static int l_on_signal(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  int signum;
  if (lua_type(L, 1) == LUA_TSTRING) {
    const char *name = lua_tostring(L, 1);
    if (strcmp(name, "SIGTERM") == 0) signum = SIGTERM;
    else if (strcmp(name, "SIGINT") == 0) signum = SIGINT;
    else if (strcmp(name, "SIGHUP") == 0) signum = SIGHUP;
    else if (strcmp(name, "SIGUSR1") == 0) signum = SIGUSR1;
    else if (strcmp(name, "SIGUSR2") == 0) signum = SIGUSR2;
    else return luaL_argerror(L, 1, "unknown signal name");
  } else {
    signum = (int)luaL_checkinteger(L, 1);
  }
  luaL_checktype(L, 2, LUA_TFUNCTION);
  signal_ud_t *sg = lua_newuserdatauv(L, sizeof(*sg), 0);
  memset(sg, 0, sizeof(*sg));
  sg->st = st;
  sg->fn_ref = sg->self_ref = LUA_NOREF;
  luaL_setmetatable(L, WEFT_SIGNAL_MT);
  int rc = uv_signal_init(weft_loop_uv(st->loop), &sg->h);
  if (rc == 0) rc = uv_signal_start(&sg->h, signal_cb, signum);
  if (rc != 0) return luaL_error(L, "on_signal: %s", uv_strerror(rc));
  uv_unref((uv_handle_t *)&sg->h);
  sg->frame = weft_frame_retain(weft_ctx_current(st->loop));
  lua_pushvalue(L, 2);
  sg->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  sg->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

void weft_b_open_http(lua_State *L, weft_state_t *st) {
  luaL_newmetatable(L, WEFT_SERVER_MT);
  static const luaL_Reg server_methods[] = {{"address", server_address},
                                            {"close", server_close},
                                            {"abort", server_abort},
                                            {"closing", server_closing},
                                            {"connections", server_connections},
                                            {NULL, NULL}};
  lua_newtable(L);
  weft_b_setfuncs(L, st, server_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  luaL_newmetatable(L, WEFT_REQ_MT);
  static const luaL_Reg req_methods[] = {{"method", req_method},
                                         {"target", req_target},
                                         {"http_minor", req_http_minor},
                                         {"header", req_header},
                                         {"headers", req_headers},
                                         {"remote_addr", req_remote_addr},
                                         {"alive", req_alive},
                                         {"started", req_started},
                                         {"body", req_body},
                                         {"send", req_send},
                                         {"start", req_start},
                                         {"write", req_write},
                                         {"finish", req_finish},
                                         {NULL, NULL}};
  lua_newtable(L);
  lua_pushlightuserdata(L, st); /* upvalues: the state, and the metatable for check_req */
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, req_methods, 2);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, req_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  luaL_newmetatable(L, WEFT_SIGNAL_MT);
  lua_newtable(L);
  lua_pushcfunction(L, signal_close);
  lua_setfield(L, -2, "close");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  static const luaL_Reg fns[] = {{"listen", l_listen}, {"on_signal", l_on_signal}, {NULL, NULL}};
  weft_b_setfuncs(L, st, fns);
}
