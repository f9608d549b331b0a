/* driver.h: the pass list.  Reads a model file and runs parse -> sema -> lower -> autodiff
 * -> update -> plan, stopping at the requested stage.  Used by the CLI and by tests; never
 * exits the process: returns 0 on success, 1 for an error in the user's model (reported on
 * the diagnostics stream), 2 for bad usage (an unknown --set key). */
#ifndef NNC_DRIVER_H
#define NNC_DRIVER_H

#include <stdio.h>

#include "ast.h"
#include "kernel.h"
#include "model.h"

typedef enum { STAGE_PARSE, STAGE_CHECK, STAGE_IR, STAGE_PLAN } Stage;

typedef struct {
    Override *ov;
    int nov;
    int64_t max_batch; /* 0: the model's batch size */
    bool no_fuse;      /* --fuse=none: a kernel per op */
    bool hvp;          /* also the `hvp` program: exact Hessian-vector products (hvp.c) */
    const WidthOverride *width; /* dense layers at other widths (pruning) */
    int nwidth;
    FILE *err;         /* diagnostics; stderr when NULL */
    const char *library; /* the library files a trainer carries (driver_library_bundle); NULL:
                            read them from the stdlib directory */
} CompileOptions;

/* The library: blocks a model calls without defining them, one file per block (stdlib/NAME.nn
 * holds block NAME, and may hold blocks it uses), read from NNC_STDLIB when it is set, else from
 * the stdlib directory of nnc's source tree; a file is read only when a model calls its block. */
enum { DRIVER_MAX_LIB = 32 };

typedef struct {
    Arena *arena;
    Source src;
    Diag diag;
    char *text;
    Program *prog;
    Model *model;
    Graph *graph;
    Plan *plan;
    Source lib[DRIVER_MAX_LIB]; /* the library files read, in order: SrcLoc.file k is lib[k - 1] */
    const char *lib_name[DRIVER_MAX_LIB]; /* the block each was read for */
    int nlib;
    const char *library; /* CompileOptions.library */
} Compilation;

int driver_compile(Compilation *c, const char *path, const CompileOptions *opt, Stage upto);
/* Same, from text in memory (tests); `path` is only used in messages. */
int driver_compile_text(Compilation *c, const char *path, const char *text, size_t len,
                        const CompileOptions *opt, Stage upto);
void driver_free(Compilation *c);

/* The library files the compilation read, as one text a trainer carries (CompileOptions.library):
 * for each, its block's name, a newline, its length in bytes, a newline, its text. */
void driver_library_bundle(const Compilation *c, StrBuf *b);
/* The model's identity in checkpoints: a hash of its tokens and of the library files' (its
 * meaning: spacing and comments left out, so a reformatted model resumes its runs). */
uint64_t driver_source_hash(const Compilation *c);
/* The hash of the same texts' bytes, which checkpoints of nnc before 2026-12-04 hold. */
uint64_t driver_text_hash(const Compilation *c);

/* `nnc check`'s report: layer table, parameter counts, training setup, memory plan. */
void summary_print(StrBuf *b, const Compilation *c);

/* Whether --set KEY names a param of the parsed model or a train setting; if not, the nearest
 * name in *near (or NULL). */
bool driver_key_known(const Compilation *c, const char *key, const char **near);

/* Parses "name=value" for --set; returns false with a message in `why`. */
bool driver_parse_override(const char *text, Override *ov, char *why, size_t nwhy);

/* The block library's directory this nnc reads (NNC_STDLIB, an installed one, or the source tree's). */
const char *driver_stdlib_dir(void);

#endif
