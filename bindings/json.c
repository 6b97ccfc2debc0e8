/*
 * json.c — json_flat(t): one JSON object from a flat table, for log lines.
 *
 * A log line is a flat record: string keys; string, integer, float and boolean values.
 * lua-cjson writes every number through its double formatter (some 2,000 instructions a
 * number) and spent about 13,000 instructions on an access-log record; this writes integers
 * digit by digit and strings in one pass of escaping. Anything else (a nested table, a
 * function, NaN) makes it answer nil, and the caller falls back to cjson. Bytes >= 0x80 pass
 * through as they are, as in cjson.
 */
#include "weft_lua.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The text grows in a stack array, then in a userdata box (collected with everything else,
 * so an error on the way leaks nothing). The box lives at stack index 2, under the key that
 * lua_next needs on top; a bigger box replaces it there. */
typedef struct out {
  lua_State *L;
  char *p;
  size_t len, cap;
  int boxed;
  char stackbuf[1024];
} out_t;

static void reserve(out_t *o, size_t more) {
  if (o->len + more <= o->cap) return;
  size_t cap = o->cap * 2;
  while (cap < o->len + more) cap *= 2;
  char *p = lua_newuserdatauv(o->L, cap, 0);
  memcpy(p, o->p, o->len);
  if (o->boxed)
    lua_replace(o->L, 2); /* the old box is dropped */
  else
    lua_insert(o->L, 2);
  o->boxed = 1;
  o->p = p;
  o->cap = cap;
}

static void put(out_t *o, const char *s, size_t n) {
  reserve(o, n);
  memcpy(o->p + o->len, s, n);
  o->len += n;
}

static void put_string(out_t *o, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  reserve(o, len + 2);
  o->p[o->len++] = '"';
  size_t from = 0; /* start of the bytes not yet copied */
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    put(o, s + from, i - from);
    from = i + 1;
    switch (c) {
      case '"': put(o, "\\\"", 2); break;
      case '\\': put(o, "\\\\", 2); break;
      case '\n': put(o, "\\n", 2); break;
      case '\r': put(o, "\\r", 2); break;
      case '\t': put(o, "\\t", 2); break;
      default: {
        char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
        put(o, u, 6);
      }
    }
  }
  put(o, s + from, len - from);
  put(o, "\"", 1);
}

static void put_integer(out_t *o, lua_Integer v) {
  char digits[24];
  int n = 0;
  /* through the unsigned magnitude, so that the most negative integer works too */
  unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
  do {
    digits[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) digits[n++] = '-';
  reserve(o, (size_t)n);
  while (n) o->p[o->len++] = digits[--n];
}

/* A float that reads back as the same number. The usual log float (a duration rounded to a
 * few decimals) is written by hand in plain decimal when it has at most 6 decimals and is
 * below 1e9 (so 1e-06 comes out as 0.000001, and -0.0 as 0); anything else as "%.14g", as
 * cjson writes it. snprintf's float path costs some 2,000 instructions. */
static void put_float(out_t *o, double d) {
  double a = fabs(d);
  if (a < 1e9) {
    long long scaled = llround(a * 1e6);
    if ((double)scaled / 1e6 == a) {
      long long ip = scaled / 1000000, fp = scaled % 1000000;
      if (d < 0 && scaled != 0) put(o, "-", 1);
      put_integer(o, ip);
      if (fp != 0) {
        char frac[7];
        int n = 6;
        for (int i = 5; i >= 0; i--, fp /= 10) frac[i] = (char)('0' + fp % 10);
        while (frac[n - 1] == '0') n--;
        put(o, ".", 1);
        put(o, frac, (size_t)n);
      }
      return;
    }
  }
  char num[32];
  int n = snprintf(num, sizeof(num), "%.14g", d);
  put(o, num, (size_t)n);
}

/* json_flat(t) -> the JSON text, or nil when t holds something a flat record cannot */
static int l_json_flat(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  out_t o;
  o.L = L;
  o.p = o.stackbuf;
  o.len = 0;
  o.cap = sizeof(o.stackbuf);
  o.boxed = 0;
  put(&o, "{", 1);
  int first = 1;
  lua_pushnil(L);
  while (lua_next(L, 1) != 0) { /* key at -2, value at -1 */
    int vt = lua_type(L, -1);
    if (lua_type(L, -2) != LUA_TSTRING ||
        (vt != LUA_TSTRING && vt != LUA_TNUMBER && vt != LUA_TBOOLEAN)) {
      lua_pushnil(L);
      return 1;
    }
    if (!first) put(&o, ",", 1);
    first = 0;
    size_t klen;
    const char *k = lua_tolstring(L, -2, &klen);
    put_string(&o, k, klen);
    put(&o, ":", 1);
    if (vt == LUA_TSTRING) {
      size_t vlen;
      const char *v = lua_tolstring(L, -1, &vlen);
      put_string(&o, v, vlen);
    } else if (vt == LUA_TBOOLEAN) {
      if (lua_toboolean(L, -1))
        put(&o, "true", 4);
      else
        put(&o, "false", 5);
    } else if (lua_isinteger(L, -1)) {
      put_integer(&o, lua_tointeger(L, -1));
    } else {
      double d = (double)lua_tonumber(L, -1);
      if (!isfinite(d)) {
        lua_pushnil(L);
        return 1;
      }
      put_float(&o, d);
    }
    lua_pop(L, 1); /* the value; the key stays for lua_next */
  }
  put(&o, "}", 1);
  lua_pushlstring(L, o.p, o.len);
  return 1;
}

void weft_b_open_json(lua_State *L, weft_state_t *st) {
  static const luaL_Reg fns[] = {{"json_flat", l_json_flat}, {NULL, NULL}};
  weft_b_setfuncs(L, st, fns);
}
