/*
 * alloc.c — a Lua allocator for the server process: small blocks from size classes, no
 * per-block header, freed blocks reused newest first.
 *
 * Why: under the generational collector a request's objects die young, and with the C
 * library's malloc they are scattered through whatever holes the application's load left in
 * the heap (10,000 components leave many): every request then touches cold memory, the minor
 * collections free into bins that merge with cold neighbours, and a server with a big heap is
 * slower on a route that touches none of it. Lua tells the allocator every block's size when
 * it frees or resizes it, so size classes need no header: a free is a push on the class's
 * list, an allocation a pop (or a bump of the arena pointer), and the blocks a request uses
 * are the ones the previous requests just gave back.
 *
 * Blocks up to POOL_MAX bytes come from one reserved address range (pages are only made real
 * when first touched); bigger blocks, and every block allocated before the allocator was
 * installed, stay with the previous allocator, recognised by their address. Memory given to a
 * class is kept for it (not returned to the system): the process's footprint is its peak.
 *
 * The range is aligned to 2 MiB and offered to the kernel for transparent huge pages
 * (madvise MADV_HUGEPAGE, honoured when /sys/kernel/mm/transparent_hugepage/enabled says
 * "madvise" or "always"): an app of 10,000 components spreads ~30 MiB of objects that a request
 * reaches in no particular order, and with 4 KiB pages most of those reaches also miss the
 * TLB. The cost: resident memory grows by 2 MiB steps.
 *
 * Starting fresh (alloc_fresh): while an app loads, its garbage (the compiler's arrays, each
 * file's main function) is freed and reused between the objects that stay, so when loading ends
 * the free blocks are holes scattered through the whole heap, one or two per page. Objects made
 * next (the app's routes and handlers) and every request's objects would be taken from those
 * holes, one page each, and a request would then touch hundreds of pages where an app of one
 * component touches a few dozen. That costs one TLB miss per page, and on machines whose kernel
 * flushes the TLB at every system call (page-table isolation without PCID, as in many VMs) it
 * costs them again after every read and write: measured at 10,000 components, a request took
 * 12.3 us instead of 9.2 at one component; with the holes left unused, 10.0. So at the end of a
 * big load (weft.di's container:load) and once the app is loaded (weft.tune_gc), the free lists
 * are dropped: those blocks are never handed out again (their bytes are counted, a few hundred
 * per component loaded) and new blocks come from the untouched arena, one after another, where
 * a request's objects are then recycled. Only while the process starts: the last call seals it
 * (later calls do nothing), so a running server never abandons memory.
 *
 * Installed by use_pool_allocator() (the `weft` command does, before loading the app);
 * nowhere under AddressSanitizer, which must see every block.
 */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "weft_lua.h"

#define POOL_QUANTUM 16
#define POOL_MAX 512
#define POOL_CLASSES (POOL_MAX / POOL_QUANTUM)
#define POOL_RESERVE ((size_t)8 << 30) /* address space only */
#define POOL_ALIGN ((size_t)2 << 20)   /* a huge page */

typedef struct pool_alloc {
  lua_Alloc prev; /* the allocator of everything not ours */
  void *prev_ud;
  char *base, *end;  /* the reserved range */
  char *next;        /* the arena: [next, end) never handed out yet */
  int huge_pages;    /* the kernel accepted MADV_HUGEPAGE for the range */
  int sealed;        /* alloc_fresh(true) was called: no more fresh starts */
  size_t abandoned;  /* bytes in blocks dropped from the free lists by alloc_fresh */
  void *free[POOL_CLASSES + 1];
  size_t blocks_in_use[POOL_CLASSES + 1];
} pool_alloc_t;

#define CLASS_OF(n) (((n) + POOL_QUANTUM - 1) / POOL_QUANTUM)

static void *pool_new(pool_alloc_t *a, size_t nsize) {
  if (nsize > POOL_MAX) return a->prev(a->prev_ud, NULL, 0, nsize);
  size_t c = CLASS_OF(nsize);
  void *p = a->free[c];
  if (p != NULL) {
    a->free[c] = *(void **)p;
  } else {
    size_t bytes = c * POOL_QUANTUM;
    if ((size_t)(a->end - a->next) < bytes) return a->prev(a->prev_ud, NULL, 0, nsize);
    p = a->next;
    a->next += bytes;
  }
  a->blocks_in_use[c]++;
  return p;
}

static void pool_free(pool_alloc_t *a, void *p, size_t osize) {
  size_t c = CLASS_OF(osize);
  *(void **)p = a->free[c];
  a->free[c] = p;
  a->blocks_in_use[c]--;
}

static void *pool_fn(void *ud, void *ptr, size_t osize, size_t nsize) {
  pool_alloc_t *a = ud;
  int mine = ptr != NULL && (char *)ptr >= a->base && (char *)ptr < a->end;
  if (nsize == 0) {
    if (mine) {
      pool_free(a, ptr, osize);
      return NULL;
    }
    return a->prev(a->prev_ud, ptr, osize, 0);
  }
  if (ptr == NULL) return pool_new(a, nsize); /* (osize is then a type tag, not a size) */
  if (mine) {
    if (nsize <= POOL_MAX && CLASS_OF(nsize) == CLASS_OF(osize)) return ptr;
  } else if (nsize > POOL_MAX) {
    return a->prev(a->prev_ud, ptr, osize, nsize); /* stays where it is */
  }
  void *n = pool_new(a, nsize);
  if (n == NULL) return NULL; /* Lua collects and retries; ptr is untouched */
  memcpy(n, ptr, osize < nsize ? osize : nsize);
  if (mine)
    pool_free(a, ptr, osize);
  else
    a->prev(a->prev_ud, ptr, osize, 0);
  return n;
}

/* ---- the memory limit ----
 *
 * A counting layer, outermost, over whatever allocator is below it (the pool or the C
 * library's): it keeps the bytes Lua has allocated (Lua tells every block's size when it frees
 * or resizes it), and while a task runs (tasks_running > 0, set around each task resume) it
 * refuses to grow past `limit`. Lua then collects at once and retries; if it still cannot, the
 * allocating task gets Lua's memory error, which for a request is a 500. Outside tasks (weft's
 * own bookkeeping between them: starting a request, waking a task, reporting an error) it
 * never refuses, so that the server always gets to the point where the failed task's memory
 * is garbage. `everywhere` (for tests) refuses outside tasks too. */

typedef struct limit_alloc {
  lua_Alloc inner;
  void *inner_ud;
  size_t limit; /* 0: none */
  size_t total; /* bytes allocated through this state's allocator */
  size_t refused;
  int everywhere;
  size_t fail_skip, fail_count; /* fail_allocations(): the fault injection of the specs */
} limit_alloc_t;

static weft_state_t *limit_state; /* whose tasks_running the limit looks at */

static void *limit_fn(void *ud, void *ptr, size_t osize, size_t nsize) {
  limit_alloc_t *a = ud;
  size_t old = ptr != NULL ? osize : 0; /* (with no block, osize is a type tag) */
  if (a->fail_count > 0 && nsize > old && (limit_state == NULL || limit_state->tasks_running == 0)) {
    if (a->fail_skip > 0) {
      a->fail_skip--;
    } else {
      a->fail_count--;
      a->refused++;
      return NULL;
    }
  }
  if (nsize > old && a->limit != 0 && a->total + (nsize - old) > a->limit &&
      (a->everywhere || (limit_state != NULL && limit_state->tasks_running > 0))) {
    a->refused++;
    return NULL;
  }
  void *p = a->inner(a->inner_ud, ptr, osize, nsize);
  if (p != NULL || nsize == 0) a->total = a->total - old + nsize;
  return p;
}

static size_t lua_heap_bytes(lua_State *L) {
  return (size_t)lua_gc(L, LUA_GCCOUNT) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB);
}

/* memory_limit(bytes [, "everywhere"]) -> true: 0 lifts the limit (the counting layer stays). */
static int l_memory_limit(lua_State *L) {
  weft_state_t *st = weft_b_state(L);
  lua_Integer bytes = luaL_checkinteger(L, 1);
  luaL_argcheck(L, bytes >= 0, 1, "must not be negative");
  int everywhere = lua_isstring(L, 2) && strcmp(lua_tostring(L, 2), "everywhere") == 0;
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  limit_alloc_t *a;
  if (f == limit_fn) {
    a = ud;
  } else {
    a = calloc(1, sizeof(*a));
    if (a == NULL) return luaL_error(L, "weft: out of memory");
    a->inner = f;
    a->inner_ud = ud;
    a->total = lua_heap_bytes(L);
    lua_setallocf(L, limit_fn, a); /* a lives as long as the process, as the pool does */
  }
  limit_state = st;
  a->limit = (size_t)bytes;
  a->everywhere = everywhere;
  lua_pushboolean(L, 1);
  return 1;
}

/* fail_allocations(skip, count): outside tasks, after `skip` more allocations that grow the
 * heap, the next `count` fail (Lua retries a failed one once, after a full collection: two make
 * one real failure). For the specs: every loop callback must survive a memory error in weft's
 * own code. Needs the limit layer (memory_limit). */
static int l_fail_allocations(lua_State *L) {
  lua_Integer skip = luaL_checkinteger(L, 1), count = luaL_checkinteger(L, 2);
  luaL_argcheck(L, skip >= 0, 1, "must not be negative");
  luaL_argcheck(L, count >= 0, 2, "must not be negative");
  void *ud;
  if (lua_getallocf(L, &ud) != limit_fn) return luaL_error(L, "fail_allocations: no memory_limit");
  limit_alloc_t *a = ud;
  a->fail_skip = (size_t)skip;
  a->fail_count = (size_t)count;
  return 0;
}

/* memory_stats() -> nil without a limit layer, else { limit =, bytes =, refused = } */
static int l_memory_stats(lua_State *L) {
  void *ud;
  if (lua_getallocf(L, &ud) != limit_fn) {
    lua_pushnil(L);
    return 1;
  }
  limit_alloc_t *a = ud;
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)a->limit);
  lua_setfield(L, -2, "limit");
  lua_pushinteger(L, (lua_Integer)a->total);
  lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, (lua_Integer)a->refused);
  lua_setfield(L, -2, "refused");
  return 1;
}

/* The allocator a new layer goes on top of: below the limit layer, which stays outermost. */
static lua_Alloc alloc_below_limit(lua_State *L, void **ud, limit_alloc_t **limit) {
  lua_Alloc f = lua_getallocf(L, ud);
  *limit = NULL;
  if (f == limit_fn) {
    *limit = *ud;
    *ud = (*limit)->inner_ud;
    return (*limit)->inner;
  }
  return f;
}

/* The pool allocator, whether or not a limit layer is above it. */
static pool_alloc_t *pool_in_use(lua_State *L) {
  void *ud;
  limit_alloc_t *limit;
  return alloc_below_limit(L, &ud, &limit) == pool_fn ? ud : NULL;
}

/* use_pool_allocator() -> true, or false and why not. Idempotent. */
static int l_use_pool_allocator(lua_State *L) {
#if defined(__SANITIZE_ADDRESS__)
  lua_pushboolean(L, 0);
  lua_pushliteral(L, "built with AddressSanitizer");
  return 2;
#else
  void *ud;
  limit_alloc_t *limit;
  lua_Alloc f = alloc_below_limit(L, &ud, &limit);
  if (f == pool_fn) {
    lua_pushboolean(L, 1);
    return 1;
  }
  /* The allocator must outlive the state: lua_close unloads C modules before it frees the last
   * objects, so this module must never be unloaded once its function is the allocator. */
  Dl_info info;
  if (dladdr((void *)pool_fn, &info) == 0 || info.dli_fname == NULL ||
      dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE) == NULL) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "cannot pin the module in memory");
    return 2;
  }
  pool_alloc_t *a = calloc(1, sizeof(*a));
  if (a == NULL) return luaL_error(L, "weft: out of memory");
  char *raw = mmap(NULL, POOL_RESERVE + POOL_ALIGN, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) {
    free(a);
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "cannot reserve address space");
    return 2;
  }
  char *base = (char *)(((uintptr_t)raw + POOL_ALIGN - 1) & ~(uintptr_t)(POOL_ALIGN - 1));
  if (base > raw) munmap(raw, (size_t)(base - raw));
  munmap(base + POOL_RESERVE, (size_t)(raw + POOL_ALIGN - base)); /* the tail beyond it */
#ifdef MADV_HUGEPAGE
  a->huge_pages = madvise(base, POOL_RESERVE, MADV_HUGEPAGE) == 0;
#endif
  a->prev = f;
  a->prev_ud = ud;
  a->base = a->next = base;
  a->end = a->base + POOL_RESERVE;
  /* a lives as long as the process: blocks may outlive the state */
  if (limit != NULL) {
    limit->inner = pool_fn;
    limit->inner_ud = a;
  } else {
    lua_setallocf(L, pool_fn, a);
  }
  lua_pushboolean(L, 1);
  return 1;
#endif
}

static size_t in_use_bytes(const pool_alloc_t *a) {
  size_t n = 0;
  for (size_t c = 1; c <= POOL_CLASSES; c++) n += a->blocks_in_use[c] * c * POOL_QUANTUM;
  return n;
}

/* alloc_fresh([seal]) -> bytes abandoned, or false and why not. Runs a full collection, then
 * drops every free block (see the top of this file); with seal true, the last time. */
static int l_alloc_fresh(lua_State *L) {
  int seal = lua_toboolean(L, 1);
  pool_alloc_t *a = pool_in_use(L);
  if (a == NULL) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "the pool allocator is not in use");
    return 2;
  }
  if (a->sealed) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "sealed");
    return 2;
  }
  lua_gc(L, LUA_GCCOLLECT);
  /* every byte of the arena not in use and not abandoned before is on a free list */
  size_t bytes = (size_t)(a->next - a->base) - in_use_bytes(a) - a->abandoned;
  memset(a->free, 0, sizeof(a->free));
  a->abandoned += bytes;
  if (seal) a->sealed = 1;
  lua_pushinteger(L, (lua_Integer)bytes);
  return 1;
}

/* alloc_stats() -> nil when the pool allocator is not in use, else
 * { arena_bytes = bytes handed out of the arena so far, pooled_bytes = in blocks in use,
 *   free_bytes = in free blocks (waiting for reuse, or abandoned),
 *   abandoned_bytes = in blocks alloc_fresh dropped, sealed = whether it was sealed,
 *   huge_pages = whether the kernel took the range for transparent huge pages } */
static int l_alloc_stats(lua_State *L) {
  pool_alloc_t *a = pool_in_use(L);
  if (a == NULL) {
    lua_pushnil(L);
    return 1;
  }
  size_t in_use = in_use_bytes(a), arena = (size_t)(a->next - a->base);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)arena);
  lua_setfield(L, -2, "arena_bytes");
  lua_pushinteger(L, (lua_Integer)in_use);
  lua_setfield(L, -2, "pooled_bytes");
  lua_pushinteger(L, (lua_Integer)(arena - in_use));
  lua_setfield(L, -2, "free_bytes");
  lua_pushinteger(L, (lua_Integer)a->abandoned);
  lua_setfield(L, -2, "abandoned_bytes");
  lua_pushboolean(L, a->sealed);
  lua_setfield(L, -2, "sealed");
  lua_pushboolean(L, a->huge_pages);
  lua_setfield(L, -2, "huge_pages");
  return 1;
}

void weft_b_open_alloc(lua_State *L, weft_state_t *st) {
  static const luaL_Reg fns[] = {{"use_pool_allocator", l_use_pool_allocator},
                                 {"alloc_stats", l_alloc_stats},
                                 {"alloc_fresh", l_alloc_fresh},
                                 {"memory_limit", l_memory_limit},
                                 {"memory_stats", l_memory_stats},
                                 {"fail_allocations", l_fail_allocations},
                                 {NULL, NULL}};
  weft_b_setfuncs(L, st, fns);
}
