/* diag.h: user-facing diagnostics.  Every error about a model file is printed as
 *   file:line:col: error: message
 *       12 | h1 = x -> dens(10)
 *          |           ^~~~
 * Errors accumulate up to a cap; callers check diag_stopped() to give up early.
 * Used by every front-end pass; never exits the process. */
#ifndef NNC_DIAG_H
#define NNC_DIAG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* A source range on one line (1-based line and byte columns; end_col is inclusive) of a file:
 * 0 the model's, k > 0 the k-th library file the compilation read (Diag.lib). */
typedef struct {
    int line, col, end_col;
    int file;
} SrcLoc;

typedef struct {
    const char *path; /* as given by the user */
    const char *text; /* may contain NUL bytes; len is authoritative */
    size_t len;
} Source;

typedef struct {
    const Source *src;
    const Source *lib; /* the library files (stdlib/): a location in file k is in lib[k - 1] */
    int nlib;
    FILE *out;
    int nerror;
    int max_errors; /* 0: default cap */
    bool stopped;   /* the cap was reached */
} Diag;

void diag_init(Diag *d, const Source *src, FILE *out);
void diag_error(Diag *d, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_verror(Diag *d, SrcLoc loc, const char *fmt, va_list ap);
/* A note attached to the previous error; loc.line == 0 prints no location. */
void diag_note(Diag *d, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline bool diag_stopped(const Diag *d) { return d->stopped; }

/* Quote a user-supplied name for a message, shortening very long ones. Returns a pointer
 * into a small rotating static buffer: use within one message. */
const char *diag_name(const char *name);

/* The nearest candidate to `name` within a small edit distance, or NULL. */
const char *diag_suggest(const char *name, const char *const *cand, int ncand);

#endif
