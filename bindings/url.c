/*
 * url.c — the core's URL decoding for Lua: url_decode(s [, how]) on weft.core.
 */
#include "weft_lua.h"

#include <string.h>

/* url_decode(s [, how]) -> decoded | nil, err. how: "path" (default: strict, nil and an error
 * for a malformed escape or bytes that are not UTF-8), "component" (lenient: a '%' that starts
 * no escape stays), "form" (lenient, and '+' is a space). A string without '%' (or '+' for
 * "form") is returned as it is, without a copy. */
static int l_url_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  static const char *const hows[] = {"path", "component", "form", NULL};
  static const unsigned flags[] = {0, WEFT_URL_LENIENT, WEFT_URL_LENIENT | WEFT_URL_PLUS};
  unsigned f = flags[luaL_checkoption(L, 2, "path", hows)];
  if (memchr(s, '%', len) == NULL && (!(f & WEFT_URL_PLUS) || memchr(s, '+', len) == NULL)) {
    if (f == 0 && weft_utf8_check(s, len) != len) {
      lua_pushnil(L);
      lua_pushliteral(L, "EILSEQ: not UTF-8");
      return 2;
    }
    lua_settop(L, 1);
    return 1;
  }
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, len);
  long n = weft_url_decode(s, len, out, f);
  if (n < 0) {
    lua_pushnil(L);
    lua_pushstring(L, n == UV_EINVAL ? "EINVAL: malformed percent-escape" : "EILSEQ: not UTF-8");
    return 2;
  }
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

void weft_b_open_url(lua_State *L, weft_state_t *st) {
  static const luaL_Reg fns[] = {{"url_decode", l_url_decode}, {NULL, NULL}};
  weft_b_setfuncs(L, st, fns);
}
