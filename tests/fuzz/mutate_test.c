/* mutate_test.c: deterministic mutation testing of the front end (tests/fuzz/, CTest test
 * fuzz.mutate).  Every model file in the directory given as argv[1] is mutated in fixed,
 * seeded ways (truncations, deleted and inserted tokens, random bytes, NUL bytes, very deep
 * brackets and operator chains, megabyte-long lines) and each mutant is compiled up to the
 * memory plan.  A mutant passes when the compiler returns 0, or returns 1 having printed
 * only well-formed errors (`PATH:LINE:COL: error: ...`, LINE and COL inside the mutant,
 * with an optional final `PATH: error: too many errors (N), stopping`), within 2 seconds.
 * Each mutant runs in a forked child, so a crash or a hang is reported as that mutant's
 * failure; failing inputs are written to the build directory for reproduction.
 * Usage: test_mutate [--no-fork] DIR */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"

#ifndef MUTANT_DIR
#define MUTANT_DIR "mutants"
#endif

enum {
    MUTANT_TIME_LIMIT_S = 2,  /* a mutant must compile within this */
    HANG_KILL_S = 20,         /* a child still running after this is killed as hung */
    DEEP_BRACKETS = 20000,    /* nesting depth of the bracket mutants */
    DEEP_CHAIN = 100000,      /* length of the operator-chain mutants */
    HUGE_LINE = 1 << 20,      /* bytes in the megabyte-line mutants */
    INSERTIONS = 200,         /* inserted-token mutants per model */
    NUL_INSERTIONS = 24,      /* NUL-byte mutants per model (plus first and last offset) */
};

typedef enum {
    MUT_TRUNCATE,
    MUT_DELETE_TOKEN,
    MUT_INSERT_TOKEN,
    MUT_REPLACE_BYTES,
    MUT_INSERT_NUL,
    MUT_DEEP_BRACKETS,
    MUT_DEEP_CHAIN,
    MUT_HUGE_LINE,
    MUT_KIND_COUNT,
} MutationKind;

static const char *const kind_name[MUT_KIND_COUNT] = {
    "truncate", "delete-token", "insert-token", "replace-bytes",
    "insert-nul", "deep-brackets", "deep-chain", "huge-line",
};

/* ---- deterministic randomness: splitmix64 ---- */

typedef struct {
    uint64_t state;
} Rng;

static uint64_t rng_next(Rng *r) {
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t rng_below(Rng *r, size_t n) { return n ? (size_t)(rng_next(r) % n) : 0; }

/* ---- a growable byte buffer ---- */

typedef struct {
    char *data;
    size_t len, cap;
} Bytes;

static void bytes_reserve(Bytes *b, size_t extra) {
    if (extra > SIZE_MAX / 4 || b->len > SIZE_MAX / 4) abort(); /* no mutant is that large */
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data) abort();
    b->cap = cap;
}

static void bytes_put(Bytes *b, const void *data, size_t n) {
    bytes_reserve(b, n);
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void bytes_puts(Bytes *b, const char *s) { bytes_put(b, s, strlen(s)); }

static void bytes_repeat(Bytes *b, const char *unit, size_t times) {
    size_t n = strlen(unit);
    bytes_reserve(b, n * times);
    for (size_t i = 0; i < times; i++) {
        memcpy(b->data + b->len, unit, n);
        b->len += n;
    }
    b->data[b->len] = 0;
}

/* ---- a rough tokenizer: where the tokens of a model file start and end ---- */

typedef enum { TOK_WORD, TOK_NUMBER, TOK_STRING, TOK_COMMENT, TOK_PUNCT } TokenKind;

typedef struct {
    size_t start, len;
    TokenKind kind;
} Token;

static bool is_word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static size_t scan_tokens(const char *text, size_t len, Token **out) {
    size_t n = 0, cap = 64;
    Token *tok = malloc(cap * sizeof *tok);
    if (!tok) abort();
    size_t i = 0;
    while (i < len) {
        char c = text[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            i++;
            continue;
        }
        Token t = {i, 1, TOK_PUNCT};
        if (c == '#') {
            t.kind = TOK_COMMENT;
            while (i + t.len < len && text[i + t.len] != '\n') t.len++;
        } else if (c == '"') {
            t.kind = TOK_STRING;
            while (i + t.len < len && text[i + t.len] != '\n') {
                char d = text[i + t.len++];
                if (d == '"') break;
                if (d == '\\' && i + t.len < len && text[i + t.len] != '\n') t.len++;
            }
        } else if ((c >= '0' && c <= '9') || (c == '.' && i + 1 < len && text[i + 1] >= '0' && text[i + 1] <= '9')) {
            t.kind = TOK_NUMBER;
            while (i + t.len < len && (is_word_char(text[i + t.len]) || text[i + t.len] == '.' ||
                                       ((text[i + t.len] == '-' || text[i + t.len] == '+') &&
                                        (text[i + t.len - 1] == 'e' || text[i + t.len - 1] == 'E'))))
                t.len++;
        } else if (is_word_char(c)) {
            t.kind = TOK_WORD;
            while (i + t.len < len && is_word_char(text[i + t.len])) t.len++;
        } else if (i + 1 < len && strchr("-<>=!", c) && strchr(">=", text[i + 1])) {
            t.len = 2;
        }
        if (n == cap) {
            cap *= 2;
            tok = realloc(tok, cap * sizeof *tok);
            if (!tok) abort();
        }
        tok[n++] = t;
        i += t.len;
    }
    *out = tok;
    return n;
}

/* ---- checking one compilation's output ---- */

typedef struct {
    int rc;
    double seconds;
    bool passed;
    char why[600];
} Verdict;

static void fail(Verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(Verdict *v, const char *fmt, ...) {
    if (!v->passed) return; /* keep the first reason */
    v->passed = false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->why, sizeof v->why, fmt, ap);
    va_end(ap);
}

/* Reads a positive decimal number at *p (no sign, no leading zero); advances *p. */
static bool read_positive(const char **p, long *value) {
    const char *s = *p;
    if (*s < '1' || *s > '9') return false;
    long v = 0;
    while (*s >= '0' && *s <= '9') {
        if (v > 100000000) return false;
        v = v * 10 + (*s++ - '0');
    }
    *value = v;
    *p = s;
    return true;
}

/* Lines of the source excerpt that follow a diagnostic: "%5d | text" and "      | ^~~". */
static bool is_excerpt_line(const char *line) {
    const char *s = line;
    while (*s == ' ') s++;
    while (*s >= '0' && *s <= '9') s++;
    return s > line && s[0] == ' ' && s[1] == '|' && (s[2] == ' ' || s[2] == 0);
}

/* Length of line `want` (1-based) of the mutant, or -1 when it has fewer lines.  The line
 * after the last one exists too (an error at the end of the file), with length 0. */
static long source_line_length(const char *text, size_t len, long want) {
    long line = 1;
    size_t start = 0;
    for (size_t i = 0; i < len && line < want; i++)
        if (text[i] == '\n') {
            line++;
            start = i + 1;
        }
    if (line < want) return -1;
    size_t end = start;
    while (end < len && text[end] != '\n') end++;
    return (long)(end - start);
}

static void check_output(const char *path, const char *src, size_t src_len, const char *out, size_t out_len,
                         Verdict *v) {
    if (v->rc != 0 && v->rc != 1) {
        fail(v, "return code %d (expected 0 or 1)", v->rc);
        return;
    }
    if (strlen(out) != out_len) {
        fail(v, "the diagnostics contain a NUL byte");
        return;
    }
    size_t path_len = strlen(path);
    int errors = 0;
    bool stopped = false;
    const char *line = out;
    while (*line) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        char *text = strndup(line, n);
        if (!text) abort();
        line = nl ? nl + 1 : line + n;
        bool is_error = strstr(text, ": error: ") != NULL && !is_excerpt_line(text);
        if (stopped && n > 0) fail(v, "output continues after the 'too many errors' line: '%.200s'", text);
        if (!is_error) {
            free(text);
            continue;
        }
        errors++;
        const char *p = text + path_len;
        long lno, col;
        const char *lib = !strncmp(text, "stdlib/", 7) ? strstr(text, ".nn:") : NULL;
        if (lib) { /* an error inside a library block the mutant calls: located in the library's file */
            p = lib + 3;
            if (*p++ != ':' || !read_positive(&p, &lno) || *p++ != ':' || !read_positive(&p, &col) || strncmp(p, ": error: ", 9) != 0)
                fail(v, "a library error line is not stdlib/FILE.nn:LINE:COL: error: ...: '%.200s'", text);
        } else if (strncmp(text, path, path_len) != 0) {
            fail(v, "an error line does not start with the path '%s': '%.200s'", path, text);
        } else if (!strncmp(p, ": error: too many errors (", 26)) {
            stopped = true;
            p += 26;
            long count;
            if (!read_positive(&p, &count) || strcmp(p, "), stopping") != 0)
                fail(v, "malformed 'too many errors' line: '%.200s'", text);
        } else if (*p++ != ':' || !read_positive(&p, &lno) || *p++ != ':' || !read_positive(&p, &col) ||
                   strncmp(p, ": error: ", 9) != 0) {
            fail(v, "an error line is not PATH:LINE:COL: error: ...: '%.200s'", text);
        } else {
            long line_len = source_line_length(src, src_len, lno);
            if (line_len < 0)
                fail(v, "error at line %ld, but the input has fewer lines: '%.200s'", lno, text);
            else if (col > line_len + 1)
                fail(v, "error at column %ld, but line %ld has %ld bytes: '%.200s'", col, lno, line_len, text);
        }
        free(text);
    }
    if (v->rc == 1 && errors == 0) fail(v, "return code 1 without any error line");
    if (v->rc == 0 && errors > 0) fail(v, "return code 0, but %d error line%s printed", errors, errors == 1 ? "" : "s");
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Compiles one mutant in this process and judges the result. */
static void compile_and_check(const char *path, const char *text, size_t len, Verdict *v) {
    char *captured = NULL;
    size_t captured_len = 0;
    FILE *err = open_memstream(&captured, &captured_len);
    if (!err) {
        fail(v, "open_memstream: %s", strerror(errno));
        return;
    }
    /* an exactly sized copy, so that the sanitizers catch any read past the end */
    char *exact = malloc(len ? len : 1);
    if (!exact) abort();
    memcpy(exact, text, len);
    Compilation c;
    memset(&c, 0, sizeof c);
    c.arena = arena_new();
    CompileOptions opts = {.err = err};
    double start = now_seconds();
    v->rc = driver_compile_text(&c, path, exact, len, &opts, STAGE_PLAN);
    v->seconds = now_seconds() - start;
    driver_free(&c);
    fclose(err);
    free(exact);
    check_output(path, text, len, captured, captured_len, v);
    /* sanitized builds (NNC_SANITIZED) run the same work about 3 times slower */
    int limit = getenv("NNC_SANITIZED") ? 3 * MUTANT_TIME_LIMIT_S : MUTANT_TIME_LIMIT_S;
    if (v->seconds > limit) fail(v, "took %.2f s (the limit is %d s)", v->seconds, limit);
    if (!v->passed && captured_len) {
        size_t used = strlen(v->why);
        snprintf(v->why + used, sizeof v->why - used, "\n    output begins: %.300s", captured);
    }
    free(captured);
}

/* ---- running mutants ---- */

typedef struct {
    const char *path; /* the model's path, as given */
    const char *name; /* its file name, for the saved mutants */
    bool fork_each;
    Verdict *shared; /* one result slot shared with the child */
    int count[MUT_KIND_COUNT];
    int total, failures, compiled;
    double seconds, slowest;
    char slowest_what[240];
} Run;

static void save_mutant(const Run *run, MutationKind kind, const char *text, size_t len, char *saved, size_t nsaved) {
    mkdir(MUTANT_DIR, 0777);
    snprintf(saved, nsaved, "%s/%s-%s-%d.nn", MUTANT_DIR, run->name, kind_name[kind], run->count[kind]);
    FILE *f = fopen(saved, "wb");
    if (!f || fwrite(text, 1, len, f) != len) snprintf(saved, nsaved, "(could not write the mutant)");
    if (f) fclose(f);
}

static void try_mutant(Run *run, MutationKind kind, const char *text, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void try_mutant(Run *run, MutationKind kind, const char *text, size_t len, const char *fmt, ...) {
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    run->count[kind]++;
    run->total++;

    Verdict *v = run->shared;
    memset(v, 0, sizeof *v);
    v->passed = true;
    v->rc = -1;
    double start = now_seconds();
    if (!run->fork_each) {
        compile_and_check(run->path, text, len, v);
    } else {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            perror("test_mutate: fork");
            exit(1);
        }
        if (pid == 0) {
            alarm(HANG_KILL_S);
            compile_and_check(run->path, text, len, v);
            _exit(0);
        }
        int status;
        while (waitpid(pid, &status, 0) < 0)
            if (errno != EINTR) {
                perror("test_mutate: waitpid");
                exit(1);
            }
        if (WIFSIGNALED(status) || WEXITSTATUS(status) != 0) {
            v->passed = true; /* whatever the child wrote before dying is replaced */
            v->why[0] = 0;
        }
        if (WIFSIGNALED(status)) {
            int sig = WTERMSIG(status);
            if (sig == SIGALRM)
                fail(v, "hung: killed after %d s", HANG_KILL_S);
            else
                fail(v, "crashed with signal %d (%s)", sig, strsignal(sig));
        } else if (WEXITSTATUS(status) != 0) {
            fail(v, "the child exited with status %d (a sanitizer report or an internal abort?)",
                 WEXITSTATUS(status));
        }
    }
    double elapsed = now_seconds() - start;
    run->seconds += elapsed;
    if (v->seconds > run->slowest) {
        run->slowest = v->seconds;
        snprintf(run->slowest_what, sizeof run->slowest_what, "%s: %s", kind_name[kind], what);
    }
    if (v->passed && v->rc == 0) run->compiled++;
    if (!v->passed) {
        char saved[512];
        save_mutant(run, kind, text, len, saved, sizeof saved);
        printf("FAIL %s %s: %s\n  %s\n  mutant saved as %s\n", kind_name[kind], run->path, what, v->why, saved);
        run->failures++;
    }
}

/* ---- the mutations ---- */

static const char *const insert_tokens[] = {
    /* keywords */
    "model", "input", "target", "param", "loss", "metric", "prior", "head", "block", "return",
    "train", "and", "or", "not", "data", "test", "valid", "of", "batch", "epochs", "iterations",
    "optimizer", "sampler", "schedule", "prune", "every", "stop", "when", "patience", "seed",
    "clip",
    /* operators and punctuation */
    "->", "<=", ">=", "==", "!=", "-", "+", "*", "/", "^", "=", ":", ",", ".", "(", ")", "[",
    "]", "{", "}", "<", ">", "~", "!", "$", "@", ";",
    /* names, numbers, strings, comments, odd bytes */
    "x", "image", "label", "h1", "logits", "dense", "relu", "flatten", "gate", "lambda",
    "fashion_mnist", "csv", "idx", "adam", "sgd", "cross_entropy", "mse", "accuracy", "true",
    "f32", "class", "epoch", "0", "1", "-1", "1e-3", "0.5", "1e999", "12abc", "1.2.3",
    "99999999999999999999999", "\"train.csv\"", "\"unterminated", "\"bad\\qescape\"", "# comment",
    "\n", "\t", "\r", "\xce\xbb", "\xff", "\xc3",
};
enum { NINSERT = sizeof insert_tokens / sizeof *insert_tokens };

/* The first token of `kind` after the token matching `after` (any token when NULL). */
static const Token *find_token(const char *text, const Token *tok, size_t ntok, const char *after, TokenKind kind) {
    for (size_t i = 0; i + 1 < ntok; i++) {
        bool match = !after || (tok[i].len == strlen(after) && !memcmp(text + tok[i].start, after, tok[i].len));
        if (match && tok[i + 1].kind == kind) return &tok[i + 1];
    }
    return NULL;
}

/* `word` with control and non-ASCII bytes written as \xNN, for descriptions. */
static const char *printable(const char *word, char *buf, size_t nbuf) {
    size_t used = 0;
    for (const unsigned char *c = (const unsigned char *)word; *c && used + 5 < nbuf; c++) {
        if (*c >= 32 && *c < 127)
            buf[used++] = (char)*c;
        else
            used += (size_t)snprintf(buf + used, nbuf - used, "\\x%02x", *c);
    }
    buf[used] = 0;
    return buf;
}

/* A copy of text[0, len) with text[at, at + cut) replaced by `insert`. */
static void splice(Bytes *out, const char *text, size_t len, size_t at, size_t cut, const char *insert,
                   size_t insert_len) {
    out->len = 0;
    bytes_put(out, text, at);
    bytes_put(out, insert, insert_len);
    bytes_put(out, text + at + cut, len - at - cut);
}

static void mutate_truncate(Run *run, const char *text, size_t len, const Token *tok, size_t ntok) {
    for (size_t i = 0; i < ntok; i++) {
        try_mutant(run, MUT_TRUNCATE, text, tok[i].start, "cut before token %zu (offset %zu)", i, tok[i].start);
        if (tok[i].len >= 2) {
            size_t mid = tok[i].start + tok[i].len / 2;
            try_mutant(run, MUT_TRUNCATE, text, mid, "cut inside token %zu (offset %zu)", i, mid);
        }
    }
    if (len > 0) try_mutant(run, MUT_TRUNCATE, text, len - 1, "cut the last byte");

    /* The models have no strings: cut a variant that reads a csv file inside its string. */
    const Token *source = find_token(text, tok, ntok, "data", TOK_WORD);
    if (!source) return;
    size_t at = source->start;
    static const char replacement[] = "csv(\"fashion \\\"mnist\\\" train.csv\", target = last)";
    Bytes variant = {0};
    splice(&variant, text, len, at, source->len, replacement, sizeof replacement - 1);
    try_mutant(run, MUT_TRUNCATE, variant.data, variant.len, "csv variant, whole");
    size_t quote = at + 4; /* the opening quote */
    for (size_t cut = quote; cut < quote + 30 && cut < variant.len; cut += 2)
        try_mutant(run, MUT_TRUNCATE, variant.data, cut, "csv variant, cut inside the string (offset %zu)", cut);
    free(variant.data);
}

static void mutate_delete(Run *run, const char *text, size_t len, const Token *tok, size_t ntok) {
    Bytes out = {0};
    for (size_t i = 0; i < ntok; i++) {
        splice(&out, text, len, tok[i].start, tok[i].len, "", 0);
        try_mutant(run, MUT_DELETE_TOKEN, out.data, out.len, "delete token %zu '%.*s'", i,
                   tok[i].len > 40 ? 40 : (int)tok[i].len, text + tok[i].start);
    }
    free(out.data);
}

static void mutate_insert(Run *run, Rng *rng, const char *text, size_t len, const Token *tok, size_t ntok) {
    Bytes out = {0};
    for (int i = 0; i < INSERTIONS; i++) {
        const char *word = insert_tokens[i < NINSERT ? i : (int)rng_below(rng, NINSERT)];
        size_t where = rng_below(rng, ntok + 1);
        size_t at = where < ntok ? tok[where].start : len;
        bool glued = rng_below(rng, 4) == 0; /* sometimes stuck to the next token */
        char piece[64];
        snprintf(piece, sizeof piece, glued ? "%s" : "%s ", word);
        splice(&out, text, len, at, 0, piece, strlen(piece));
        char shown[64];
        try_mutant(run, MUT_INSERT_TOKEN, out.data, out.len, "insert '%s' at offset %zu%s",
                   printable(word, shown, sizeof shown), at, glued ? ", glued to the next token" : "");
    }
    free(out.data);
}

static void mutate_bytes(Run *run, Rng *rng, const char *text, size_t len) {
    Bytes out = {0};
    for (int value = 0; value < 256 && len > 0; value++) {
        out.len = 0;
        bytes_put(&out, text, len);
        size_t first = rng_below(rng, len);
        out.data[first] = (char)value; /* every byte value is used once */
        int more = (int)rng_below(rng, 4);
        for (int k = 0; k < more; k++) out.data[rng_below(rng, len)] = (char)rng_below(rng, 256);
        try_mutant(run, MUT_REPLACE_BYTES, out.data, out.len, "byte 0x%02x at offset %zu, and %d more random bytes",
                   value, first, more);
    }
    free(out.data);
}

static void mutate_nul(Run *run, Rng *rng, const char *text, size_t len) {
    Bytes out = {0};
    for (int i = 0; i < NUL_INSERTIONS + 2; i++) {
        size_t at = i == 0 ? 0 : i == 1 ? len : rng_below(rng, len + 1);
        splice(&out, text, len, at, 0, "", 1);
        try_mutant(run, MUT_INSERT_NUL, out.data, out.len, "NUL at offset %zu", at);
    }
    free(out.data);
}

static void mutate_brackets(Run *run, const char *text, size_t len, const Token *tok, size_t ntok) {
    static const struct {
        const char *after, *open, *close;
        TokenKind kind;
    } sites[] = {
        {"(", "(", ")", TOK_WORD},   /* flatten(((...image...))) */
        {"=", "(", ")", TOK_WORD},   /* h1 = ((...flatten...))(image): an expression replaced */
        {"(", "(", ")", TOK_NUMBER}, /* dense(((...1024...))) */
        {"(", "[", "]", TOK_WORD},   /* brackets of the other kinds */
        {"(", "{", "}", TOK_WORD},
        {NULL, "(", "", TOK_WORD},   /* only opened, never closed */
    };
    Bytes out = {0};
    for (size_t s = 0; s < sizeof sites / sizeof *sites; s++) {
        const Token *t = find_token(text, tok, ntok, sites[s].after, sites[s].kind);
        if (!t) continue;
        out.len = 0;
        bytes_put(&out, text, t->start);
        bytes_repeat(&out, sites[s].open, DEEP_BRACKETS);
        bytes_put(&out, text + t->start, t->len);
        bytes_repeat(&out, sites[s].close, DEEP_BRACKETS);
        bytes_put(&out, text + t->start + t->len, len - t->start - t->len);
        try_mutant(run, MUT_DEEP_BRACKETS, out.data, out.len, "%d x '%s%s' around '%.*s' at offset %zu", DEEP_BRACKETS,
                   sites[s].open, sites[s].close, (int)t->len, text + t->start, t->start);
    }
    free(out.data);
}

/* Offset just after the first line that starts with `model` (or 0): where new lines go. */
static size_t after_model_line(const char *text, size_t len) {
    size_t start;
    if (!strncmp(text, "model ", 6)) {
        start = 0;
    } else {
        const char *m = strstr(text, "\nmodel ");
        if (!m) return 0;
        start = (size_t)(m - text) + 1;
    }
    const char *nl = memchr(text + start, '\n', len - start);
    return nl ? (size_t)(nl - text) + 1 : len;
}

/* Inserts `prefix` + `unit` * times + `suffix` + "\n" after the model line. */
static void try_inserted_line(Run *run, MutationKind kind, const char *text, size_t len, const char *prefix,
                              const char *unit, size_t times, const char *suffix, const char *what) {
    size_t at = after_model_line(text, len);
    Bytes out = {0};
    bytes_put(&out, text, at);
    bytes_puts(&out, prefix);
    bytes_repeat(&out, unit, times);
    bytes_puts(&out, suffix);
    bytes_puts(&out, "\n");
    bytes_put(&out, text + at, len - at);
    try_mutant(run, kind, out.data, out.len, "%s (%zu bytes)", what, out.len - len);
    free(out.data);
}

static void mutate_chains(Run *run, const char *text, size_t len) {
    try_inserted_line(run, MUT_DEEP_CHAIN, text, len, "param deep = ", "-", DEEP_CHAIN, "1", "unary minus chain");
    try_inserted_line(run, MUT_DEEP_CHAIN, text, len, "param deep = ", "not ", DEEP_CHAIN, "1", "'not' chain");
    try_inserted_line(run, MUT_DEEP_CHAIN, text, len, "param deep = ", "2^", DEEP_CHAIN, "1", "right-nested '^' chain");
    try_inserted_line(run, MUT_DEEP_CHAIN, text, len, "deep = image", " -> relu", DEEP_CHAIN, "", "'->' chain");
    try_inserted_line(run, MUT_DEEP_CHAIN, text, len, "deep = image", "->", DEEP_CHAIN, " relu",
                      "'->' repeated with no operands");
}

static void mutate_huge_lines(Run *run, const char *text, size_t len, const Token *tok, size_t ntok) {
    try_inserted_line(run, MUT_HUGE_LINE, text, len, "", "a", HUGE_LINE, " = image -> relu", "1 MB binding name");
    try_inserted_line(run, MUT_HUGE_LINE, text, len, "# ", "x", HUGE_LINE, "", "1 MB comment");
    try_inserted_line(run, MUT_HUGE_LINE, text, len, "param big = 1", "+1", HUGE_LINE / 2, "", "1 MB sum");
    try_inserted_line(run, MUT_HUGE_LINE, text, len, "wide = image", " -> relu", HUGE_LINE / 8, "",
                      "1 MB layer chain");
    try_inserted_line(run, MUT_HUGE_LINE, text, len, "param big = ", "9", HUGE_LINE, "", "1 MB number");
    try_inserted_line(run, MUT_HUGE_LINE, text, len, "param big = \"", "s", HUGE_LINE, "\"", "1 MB string");
    try_inserted_line(run, MUT_HUGE_LINE, text, len, "", " ", HUGE_LINE, "$ = 1", "1 MB of spaces, then a bad byte");
    try_inserted_line(run, MUT_HUGE_LINE, text, len, "param big = ", "(1+", HUGE_LINE / 3, "", "1 MB of open '(1+'");

    /* the model's own name replaced by a 1 MB identifier: a valid file */
    const Token *name = find_token(text, tok, ntok, "model", TOK_WORD);
    if (name) {
        Bytes out = {0};
        bytes_put(&out, text, name->start);
        bytes_repeat(&out, "m", HUGE_LINE);
        bytes_put(&out, text + name->start + name->len, len - name->start - name->len);
        try_mutant(run, MUT_HUGE_LINE, out.data, out.len, "1 MB model name");
        free(out.data);
    }
}

static void mutate_model(Run *run, const char *text, size_t len, uint64_t seed) {
    Token *tok;
    size_t ntok = scan_tokens(text, len, &tok);
    Rng rng = {seed};
    mutate_truncate(run, text, len, tok, ntok);
    mutate_delete(run, text, len, tok, ntok);
    mutate_insert(run, &rng, text, len, tok, ntok);
    mutate_bytes(run, &rng, text, len);
    mutate_nul(run, &rng, text, len);
    mutate_brackets(run, text, len, tok, ntok);
    mutate_chains(run, text, len);
    mutate_huge_lines(run, text, len, tok, ntok);
    free(tok);
}

/* ---- main ---- */

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *read_whole_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    Bytes b = {0};
    char chunk[8192];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) bytes_put(&b, chunk, got);
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        free(b.data);
        return NULL;
    }
    if (!b.data) bytes_put(&b, "", 0);
    *len = b.len;
    return b.data;
}

int main(int argc, char **argv) {
    bool fork_each = true;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-fork"))
            fork_each = false;
        else
            dir = argv[i];
    }
    if (!dir) {
        fprintf(stderr, "usage: test_mutate [--no-fork] DIR   (DIR holds the .nn models to mutate)\n");
        return 1;
    }
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "test_mutate: cannot open '%s': %s\n", dir, strerror(errno));
        return 1;
    }
    char **names = NULL;
    size_t nnames = 0;
    const struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        size_t n = strlen(entry->d_name);
        if (n <= 3 || strcmp(entry->d_name + n - 3, ".nn") != 0) continue;
        names = realloc(names, (nnames + 1) * sizeof *names);
        if (!names) abort();
        names[nnames++] = strdup(entry->d_name);
    }
    closedir(d);
    qsort(names, nnames, sizeof *names, compare_names);

    Verdict *shared = mmap(NULL, sizeof(Verdict), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        perror("test_mutate: mmap");
        return 1;
    }
    int total = 0, failures = 0;
    double seconds = 0;
    for (size_t i = 0; i < nnames; i++) {
        char *path;
        if (asprintf(&path, "%s/%s", dir, names[i]) < 0) abort();
        size_t len;
        char *text = read_whole_file(path, &len);
        if (!text) {
            printf("FAIL cannot read %s: %s\n", path, strerror(errno));
            failures++;
            free(path);
            continue;
        }
        Run run = {.path = path, .name = names[i], .fork_each = fork_each, .shared = shared};
        mutate_model(&run, text, len, 0x6e6e632d66757a7aull + i);
        printf("%s: %d mutants (", path, run.total);
        for (int k = 0; k < MUT_KIND_COUNT; k++) printf("%s%s %d", k ? ", " : "", kind_name[k], run.count[k]);
        printf("); %d compiled cleanly, %d failed; %.2f s, slowest compile %.3f s (%s)\n", run.compiled,
               run.failures, run.seconds, run.slowest, run.slowest_what);
        total += run.total;
        failures += run.failures;
        seconds += run.seconds;
        free(text);
        free(path);
    }
    printf("test_mutate: %zu model%s, %d mutants, %d failed, %.2f s\n", nnames, nnames == 1 ? "" : "s", total,
           failures, seconds);
    for (size_t i = 0; i < nnames; i++) free(names[i]);
    free(names);
    munmap(shared, sizeof(Verdict));
    return failures || nnames == 0 ? 1 : 0;
}
