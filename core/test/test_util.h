/*
 * test_util.h — tiny assertions for the C tests. They never compile out (no NDEBUG), print
 * where they failed, and exit non-zero.
 */
#ifndef WEFT_TEST_UTIL_H
#define WEFT_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int weft_test_checks;

#define CHECK(cond)                                                                   \
  do {                                                                                \
    weft_test_checks++;                                                               \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);        \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

#define CHECK_INT(a, b)                                                               \
  do {                                                                                \
    long long a_ = (long long)(a), b_ = (long long)(b);                               \
    weft_test_checks++;                                                               \
    if (a_ != b_) {                                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__,     \
              __LINE__, #a, #b, a_, b_);                                              \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

/* `hay` (a NUL-terminated string) contains `needle`. */
#define CHECK_HAS(hay, needle)                                                        \
  do {                                                                                \
    weft_test_checks++;                                                               \
    if (strstr((hay), (needle)) == NULL) {                                            \
      fprintf(stderr, "%s:%d: CHECK failed: %s contains \"%s\"\nin: %s\n", __FILE__,  \
              __LINE__, #hay, (needle), (hay));                                       \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

#define CHECK_HASNT(hay, needle)                                                      \
  do {                                                                                \
    weft_test_checks++;                                                               \
    if (strstr((hay), (needle)) != NULL) {                                            \
      fprintf(stderr, "%s:%d: CHECK failed: %s lacks \"%s\"\nin: %s\n", __FILE__,     \
              __LINE__, #hay, (needle), (hay));                                       \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

/* Counts non-overlapping occurrences of needle in hay. */
static inline int weft_test_count(const char *hay, const char *needle) {
  int n = 0;
  size_t len = strlen(needle);
  for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + len, needle)) n++;
  return n;
}

#define RUN(test)                                                                     \
  do {                                                                                \
    fprintf(stderr, "-- %s\n", #test);                                                \
    test();                                                                           \
  } while (0)

#endif /* WEFT_TEST_UTIL_H */
