/*
 * ctx.c — the async-context core: immutable, reference-counted frames.
 *
 * A frame is either a *link* (one entry and a parent) or *flat* (a sorted table of entries and
 * no parent). weft_frame_with() makes a link in O(1); when a chain would grow past
 * WEFT__MAX_LINKS links it is collapsed into a flat frame holding the newest entry per key, so
 * a lookup walks at most WEFT__MAX_LINKS links plus one small table however deep runs nest.
 *
 * Values live in boxes shared by every frame holding them (a collapse copies box pointers, not
 * values), so a value is freed exactly when the last frame that can observe it goes away.
 *
 * Each key caches its last lookup by frame id (ids are never reused, unlike addresses), which
 * makes repeated getStore() calls in one context a compare and a load.
 */
#include "weft_internal.h"

#define WEFT__MAX_LINKS 8

typedef struct weft__box {
  uint32_t refs;
  weft_ctx_key_t *key;
  void *value;
} weft__box_t;

typedef struct weft__entry {
  weft_ctx_key_t *key;
  weft__box_t *box; /* NULL: explicitly no store */
} weft__entry_t;

struct weft_ctx_key {
  uint32_t refs;
  uint64_t id;
  weft_ctx_free_value_cb free_value;
  void *ud;
  /* lookup cache: the result of the last weft_frame_get for frame `cache_frame` */
  uint64_t cache_frame;
  int cache_found;
  void *cache_value;
};

struct weft_frame {
  uint32_t refs;
  uint16_t depth;        /* links from here to the nearest flat frame (0 = flat) */
  uint16_t n;            /* entries */
  uint64_t id;
  weft_frame_t *parent;  /* links only */
  weft__entry_t e[];     /* links: 1; flat: n, sorted by key id */
};

static uint64_t weft__next_key_id = 1;
static uint64_t weft__next_frame_id = 1; /* 0 is the empty frame (NULL) */
static size_t weft__live_frames;
#define WEFT__NO_FRAME UINT64_MAX

void *weft__xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL) abort();
  return p;
}

void *weft__xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (p == NULL) abort();
  return p;
}

weft_ctx_key_t *weft_ctx_key_new(weft_ctx_free_value_cb free_value, void *ud) {
  weft_ctx_key_t *k = weft__xmalloc(sizeof(*k));
  k->refs = 1;
  k->id = weft__next_key_id++;
  k->free_value = free_value;
  k->ud = ud;
  k->cache_frame = WEFT__NO_FRAME;
  k->cache_found = 0;
  k->cache_value = NULL;
  return k;
}

void weft_ctx_key_release(weft_ctx_key_t *key) {
  if (key != NULL && --key->refs == 0) free(key);
}

static void weft__box_release(weft__box_t *b) {
  if (b == NULL || --b->refs > 0) return;
  weft_ctx_key_t *k = b->key;
  if (b->value != NULL && k->free_value != NULL) k->free_value(b->value, k->ud);
  free(b);
  weft_ctx_key_release(k);
}

static inline uint64_t weft__frame_id(const weft_frame_t *f) { return f ? f->id : 0; }

static weft_frame_t *weft__frame_alloc(uint16_t n) {
  weft_frame_t *f = weft__xmalloc(sizeof(*f) + (size_t)n * sizeof(weft__entry_t));
  f->refs = 1;
  f->n = n;
  f->id = weft__next_frame_id++;
  f->parent = NULL;
  weft__live_frames++;
  return f;
}

weft_frame_t *weft_frame_retain(weft_frame_t *f) {
  if (f != NULL) f->refs++;
  return f;
}

void weft_frame_release(weft_frame_t *f) {
  /* Iterative, so that releasing a long chain cannot overflow the C stack. */
  while (f != NULL && --f->refs == 0) {
    weft_frame_t *parent = f->parent;
    for (uint16_t i = 0; i < f->n; i++) weft__box_release(f->e[i].box);
    weft__live_frames--;
    free(f);
    f = parent;
  }
}

size_t weft_ctx_live_frames(void) { return weft__live_frames; }

/* The entry for key in flat frame f, or NULL. */
static weft__entry_t *weft__flat_find(weft_frame_t *f, const weft_ctx_key_t *key) {
  uint16_t lo = 0, hi = f->n;
  while (lo < hi) {
    uint16_t mid = (uint16_t)((lo + hi) / 2);
    if (f->e[mid].key->id < key->id)
      lo = (uint16_t)(mid + 1);
    else
      hi = mid;
  }
  return (lo < f->n && f->e[lo].key == key) ? &f->e[lo] : NULL;
}

/* The entry visible for key from f (the newest along the chain), or NULL. */
static weft__entry_t *weft__find(weft_frame_t *f, const weft_ctx_key_t *key) {
  for (; f != NULL; f = f->parent) {
    if (f->depth == 0) return weft__flat_find(f, key);
    if (f->e[0].key == key) return &f->e[0];
  }
  return NULL;
}

/* A flat frame with the newest entry per key of chain f plus (key, box) on top. */
static weft_frame_t *weft__collapse(weft_frame_t *f, weft_ctx_key_t *key, weft__box_t *box) {
  size_t cap = 1 + WEFT__MAX_LINKS;
  weft_frame_t *flat = NULL;
  for (weft_frame_t *p = f; p != NULL; p = p->parent)
    if (p->depth == 0) {
      flat = p;
      cap += p->n;
      break;
    }
  weft__entry_t stackbuf[64];
  weft__entry_t *tmp = cap <= 64 ? stackbuf : weft__xmalloc(cap * sizeof(*tmp));
  size_t n = 0;
  tmp[n++] = (weft__entry_t){key, box};
  for (weft_frame_t *p = f; p != NULL && p != flat; p = p->parent) {
    size_t j = 0;
    while (j < n && tmp[j].key != p->e[0].key) j++;
    if (j == n) tmp[n++] = p->e[0];
  }
  if (flat != NULL)
    for (uint16_t i = 0; i < flat->n; i++) {
      size_t j = 0;
      while (j < n && tmp[j].key != flat->e[i].key) j++;
      if (j == n) tmp[n++] = flat->e[i];
    }
  /* insertion sort by key id: n is small, and mostly sorted already */
  for (size_t i = 1; i < n; i++) {
    weft__entry_t x = tmp[i];
    size_t j = i;
    while (j > 0 && tmp[j - 1].key->id > x.key->id) {
      tmp[j] = tmp[j - 1];
      j--;
    }
    tmp[j] = x;
  }
  weft_frame_t *out = weft__frame_alloc((uint16_t)n);
  out->depth = 0;
  for (size_t i = 0; i < n; i++) {
    out->e[i] = tmp[i];
    if (tmp[i].box != NULL && tmp[i].box != box) tmp[i].box->refs++;
  }
  if (tmp != stackbuf) free(tmp);
  return out;
}

weft_frame_t *weft_frame_with(weft_frame_t *base, weft_ctx_key_t *key, void *value) {
  weft__box_t *box = NULL;
  if (value != NULL) {
    box = weft__xmalloc(sizeof(*box));
    box->refs = 1;
    box->key = key;
    box->value = value;
    key->refs++;
  }
  if (base != NULL && base->depth >= WEFT__MAX_LINKS) return weft__collapse(base, key, box);
  weft_frame_t *f = weft__frame_alloc(1);
  f->depth = (uint16_t)(base ? base->depth + 1 : 1);
  f->parent = weft_frame_retain(base);
  f->e[0] = (weft__entry_t){key, box};
  return f;
}

int weft_frame_get(weft_frame_t *f, weft_ctx_key_t *key, void **value) {
  uint64_t id = weft__frame_id(f);
  if (key->cache_frame != id) {
    weft__entry_t *e = weft__find(f, key);
    key->cache_frame = id;
    key->cache_found = e != NULL;
    key->cache_value = (e && e->box) ? e->box->value : NULL;
  }
  *value = key->cache_value;
  return key->cache_found;
}

void weft_frame_disable(weft_frame_t *f, weft_ctx_key_t *key) {
  weft__entry_t *e = weft__find(f, key);
  key->cache_frame = WEFT__NO_FRAME;
  if (e == NULL || e->box == NULL || e->box->value == NULL) return;
  /* Every frame sharing this box stops seeing the value; the box itself stays, empty. */
  void *v = e->box->value;
  e->box->value = NULL;
  if (key->free_value != NULL) key->free_value(v, key->ud);
}

weft_frame_t *weft_ctx_current(weft_loop_t *loop) { return loop->current; }

weft_frame_t *weft_ctx_swap(weft_loop_t *loop, weft_frame_t *f) {
  weft_frame_t *prev = loop->current;
  loop->current = f;
  return prev;
}
