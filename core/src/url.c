/*
 * url.c — percent-decoding and UTF-8 validation of URL parts: the request path check the
 * parser makes before any handler runs, and the decoders the bindings expose.
 *
 * A path is decoded strictly: every '%' must start an escape of two hex digits, and the bytes
 * decoded must be UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF), so
 * that a handler never gets a path it cannot print or put in JSON. Query strings and form
 * bodies are decoded leniently, as browsers and other servers do: a '%' that starts no escape
 * stays as it is, and the bytes are not checked.
 */
#include "weft_internal.h"

#include <limits.h>

static int weft__hexval(unsigned char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  ch |= 0x20; /* ASCII letters to lower case */
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  return -1;
}

/* A UTF-8 validator fed one byte at a time: `need` continuation bytes are still to come, and
 * the next must lie in [lo, hi] (narrower than 80..bf right after some lead bytes). */
typedef struct weft__utf8 {
  unsigned need, lo, hi;
} weft__utf8_t;

/* 0, or -1 when b cannot come next. */
static int weft__utf8_step(weft__utf8_t *s, unsigned char b) {
  if (s->need == 0) {
    if (b < 0x80) return 0;
    s->lo = 0x80;
    s->hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) {
      s->need = 1;
    } else if (b >= 0xe0 && b <= 0xef) {
      s->need = 2;
      if (b == 0xe0) s->lo = 0xa0;      /* overlong */
      else if (b == 0xed) s->hi = 0x9f; /* surrogates */
    } else if (b >= 0xf0 && b <= 0xf4) {
      s->need = 3;
      if (b == 0xf0) s->lo = 0x90;      /* overlong */
      else if (b == 0xf4) s->hi = 0x8f; /* past U+10FFFF */
    } else {
      return -1; /* a stray continuation byte, an overlong lead (c0, c1) or f5..ff */
    }
    return 0;
  }
  if (b < s->lo || b > s->hi) return -1;
  s->need--;
  s->lo = 0x80;
  s->hi = 0xbf;
  return 0;
}

size_t weft_utf8_check(const char *s, size_t len) {
  weft__utf8_t u = {0, 0x80, 0xbf};
  size_t start = 0; /* where the sequence being checked began */
  for (size_t i = 0; i < len; i++) {
    if (u.need == 0) start = i;
    if (weft__utf8_step(&u, (unsigned char)s[i]) != 0) return start;
  }
  return u.need == 0 ? len : start;
}

/* The escape at in[i] ('%' and two hex digits): its byte, or -1. */
static int weft__escape(const char *in, size_t len, size_t i) {
  if (len - i < 3) return -1;
  int hi = weft__hexval((unsigned char)in[i + 1]), lo = weft__hexval((unsigned char)in[i + 2]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

long weft_url_decode(const char *in, size_t len, char *out, unsigned flags) {
  if (len > (size_t)LONG_MAX) return UV_E2BIG;
  int strict = !(flags & WEFT_URL_LENIENT);
  weft__utf8_t u = {0, 0x80, 0xbf};
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    int ch = (unsigned char)in[i];
    if (ch == '%') {
      int v = weft__escape(in, len, i);
      if (v >= 0) {
        ch = v;
        i += 2;
      } else if (strict) {
        return UV_EINVAL;
      }
    } else if (ch == '+' && (flags & WEFT_URL_PLUS)) {
      ch = ' ';
    }
    if (strict && weft__utf8_step(&u, (unsigned char)ch) != 0) return UV_EILSEQ;
    if (out != NULL) out[o] = (char)ch;
    o++;
  }
  if (strict && u.need != 0) return UV_EILSEQ;
  return (long)o;
}
