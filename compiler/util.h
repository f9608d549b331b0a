/* util.h: small shared helpers for the whole compiler and runtime: an arena allocator
 * (one per compilation; everything the front end and IR allocate lives in it), growable
 * arrays, a string builder, and the internal-bug abort.  Nothing here knows about .nn. */
#ifndef NNC_UTIL_H
#define NNC_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* An internal bug (never a user error): report where and abort. */
#define NNC_BUG(...) util_bug(__FILE__, __LINE__, __VA_ARGS__)
#define NNC_ASSERT(c) ((c) ? (void)0 : util_bug(__FILE__, __LINE__, "assertion failed: %s", #c))
_Noreturn void util_bug(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

typedef struct Arena Arena;
Arena *arena_new(void);
void arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t size); /* zeroed, 16-byte aligned */
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_strdup(Arena *a, const char *s);
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Growable array held in malloc'd memory: `T *x; int nx, capx;` */
#define VEC_PUSH(arr, n, cap, value)                                                   \
    do {                                                                               \
        if ((n) == (cap)) {                                                            \
            (cap) = (cap) ? 2 * (cap) : 8;                                             \
            (arr) = util_realloc((arr), (size_t)(cap) * sizeof(*(arr)));               \
        }                                                                              \
        (arr)[(n)++] = (value);                                                        \
    } while (0)

/* The same, for arrays that live in an arena (the old block stays in the arena). */
#define ARENA_GROW(arena, arr, n, cap)                                                 \
    do {                                                                               \
        if ((n) == (cap)) {                                                            \
            int nc_ = (cap) ? 2 * (cap) : 8;                                           \
            void *na_ = arena_alloc((arena), (size_t)nc_ * sizeof(*(arr)));            \
            if (n) memcpy(na_, (arr), (size_t)(n) * sizeof(*(arr)));                   \
            (arr) = na_;                                                               \
            (cap) = nc_;                                                               \
        }                                                                              \
    } while (0)
#define ARENA_PUSH(arena, arr, n, cap, value)                                          \
    do {                                                                               \
        ARENA_GROW(arena, arr, n, cap);                                                \
        (arr)[(n)++] = (value);                                                        \
    } while (0)

void *util_realloc(void *p, size_t size); /* aborts on exhaustion */
void *util_calloc(size_t n, size_t size);
char *util_strdup(const char *s);

/* A growable string. */
typedef struct {
    char *s;
    size_t len, cap;
} StrBuf;
void sb_putc(StrBuf *b, char c);
void sb_puts(StrBuf *b, const char *s);
void sb_putn(StrBuf *b, const char *s, size_t n);
void sb_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_vprintf(StrBuf *b, const char *fmt, va_list ap);
void sb_free(StrBuf *b);
const char *sb_str(StrBuf *b); /* never NULL */

/* Edit distance for did-you-mean suggestions; gives up (returns a large value) past `limit`. */
int util_edit_distance(const char *a, const char *b, int limit);

/* FNV-1a 64-bit hash, used for deterministic keys (model hash, cache keys). */
uint64_t util_hash(const void *data, size_t n, uint64_t seed);

bool util_ends_with(const char *s, const char *tail);

/* Formats a one-line error message into err and returns -1: `return util_fail(err, nerr, ...)`. */
int util_fail(char *err, size_t nerr, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* An installed file beside the running executable: out = <its directory>/rel (rel such as
 * "../share/nnc/stdlib"); true when that exists.  How an installed nnc finds its library, its
 * trainers' runtime and its scripts (`cmake --install`); a build tree's nnc falls back to the
 * paths it was built with. */
bool util_installed(char *out, size_t n, const char *rel);

/* Read a whole file; NULL with errno set on failure. Adds a NUL after the data. */
char *util_read_file(const char *path, size_t *len);

/* Monotonic clock in seconds. */
double util_now(void);
/* Subnormal floats flushed to zero in this thread's arithmetic (x86-64: MXCSR's FTZ and DAZ),
 * as deep-learning runtimes do: weights that weight decay drives toward 0 become subnormal and
 * slow every product they enter by tens of times.  Threads started later inherit it. */
void util_flush_denormals(void);

/* This process's resident memory now, and its peak so far, in bytes. */
int64_t util_rss_bytes(void);
int64_t util_peak_rss_bytes(void);

#endif
