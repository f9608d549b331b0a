/* diag_test.c: the diagnostics corpus runner (tests/diag/, CTest test diag.corpus).
 * Every tests/diag/NAME.nn ends with the exact output the compiler must print for it:
 *
 *   # >>> exit 1
 *   # >>> stderr
 *   # tests/diag/NAME.nn:8:20: error: unknown layer 'dens'; did you mean 'dense'?
 *   #     8 | h1 = x -> dens(10)
 *   #       |           ^~~~
 *   # <<<
 *
 * Each expected line is written after "# " ("#" alone is an empty line); only blank lines may
 * follow "# <<<".  The runner compiles each file up to the memory plan with diagnostics
 * captured in memory, and compares the text byte for byte and the return code.  A file
 * without a well-formed expectation block fails, so no case can pass by accident.
 * Usage: test_diag [DIR]   (DIR defaults to tests/diag under the working directory). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

/* What a corpus file says the compiler must do. */
typedef struct {
    int exit_code;
    char *stderr_text; /* malloc'd, every line ends with '\n' */
} Expectation;

/* A growable list of malloc'd strings. */
typedef struct {
    char **item;
    size_t count, cap;
} NameList;

static void names_add(NameList *list, const char *name) {
    if (list->count == list->cap) {
        list->cap = list->cap ? 2 * list->cap : 64;
        list->item = realloc(list->item, list->cap * sizeof *list->item);
        if (!list->item) abort();
    }
    list->item[list->count] = strdup(name);
    if (!list->item[list->count]) abort();
    list->count++;
}

static void names_free(NameList *list) {
    for (size_t i = 0; i < list->count; i++) free(list->item[i]);
    free(list->item);
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && !strcmp(s + n - k, suffix);
}

/* The whole file, NUL-terminated; NULL on failure. */
static char *read_whole_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) abort();
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf) abort();
        }
    }
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* Splits text into lines (without their '\n'); a final line without '\n' counts too. */
static size_t split_lines(const char *text, size_t len, const char ***starts, size_t **lengths) {
    size_t count = 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n') count++;
    if (len > 0 && text[len - 1] != '\n') count++;
    const char **s = malloc((count + 1) * sizeof *s);
    size_t *l = malloc((count + 1) * sizeof *l);
    if (!s || !l) abort();
    size_t line = 0, begin = 0;
    for (size_t i = 0; i <= len && line < count; i++) {
        if (i == len || text[i] == '\n') {
            s[line] = text + begin;
            l[line] = i - begin;
            line++;
            begin = i + 1;
        }
    }
    *starts = s;
    *lengths = l;
    return count;
}

static bool line_is(const char *line, size_t len, const char *want) {
    return len == strlen(want) && !memcmp(line, want, len);
}

static bool line_is_blank(const char *line, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r') return false;
    return true;
}

/* Parses the expectation block; on failure returns false with the reason in `why`. */
static bool parse_expectation(const char *text, size_t len, Expectation *exp, char *why, size_t nwhy) {
    const char **line;
    size_t *line_len;
    size_t nlines = split_lines(text, len, &line, &line_len);
    bool ok = false;
    size_t header = nlines;
    for (size_t i = 0; i < nlines; i++) {
        if (line_len[i] >= 11 && !memcmp(line[i], "# >>> exit ", 11)) {
            if (header != nlines) {
                snprintf(why, nwhy, "line %zu: a second '# >>> exit' line", i + 1);
                goto done;
            }
            header = i;
        }
    }
    if (header == nlines) {
        snprintf(why, nwhy, "no expectation block ('# >>> exit N' ... '# <<<') at the end of the file");
        goto done;
    }
    {
        char code[16];
        size_t n = line_len[header] - 11;
        if (n == 0 || n >= sizeof code) {
            snprintf(why, nwhy, "line %zu: '# >>> exit' needs a number", header + 1);
            goto done;
        }
        memcpy(code, line[header] + 11, n);
        code[n] = 0;
        char *end;
        long value = strtol(code, &end, 10);
        if (*end || value < 0 || value > 255) {
            snprintf(why, nwhy, "line %zu: bad exit code '%s'", header + 1, code);
            goto done;
        }
        exp->exit_code = (int)value;
    }
    if (header + 1 >= nlines || !line_is(line[header + 1], line_len[header + 1], "# >>> stderr")) {
        snprintf(why, nwhy, "line %zu: '# >>> stderr' must follow '# >>> exit'", header + 2);
        goto done;
    }
    {
        size_t cap = 1, used = 0;
        for (size_t i = header + 2; i < nlines; i++) cap += line_len[i] + 1;
        char *out = malloc(cap);
        if (!out) abort();
        size_t i = header + 2;
        for (; i < nlines; i++) {
            const char *l = line[i];
            size_t n = line_len[i];
            if (line_is(l, n, "# <<<")) break;
            if (line_is(l, n, "#")) {
                out[used++] = '\n';
            } else if (n >= 2 && l[0] == '#' && l[1] == ' ') {
                memcpy(out + used, l + 2, n - 2);
                used += n - 2;
                out[used++] = '\n';
            } else {
                snprintf(why, nwhy, "line %zu: an expected line must start with '# ' (or be '#')", i + 1);
                free(out);
                goto done;
            }
        }
        out[used] = 0;
        if (i == nlines) {
            snprintf(why, nwhy, "the expectation block is not closed with '# <<<'");
            free(out);
            goto done;
        }
        for (size_t k = i + 1; k < nlines; k++)
            if (!line_is_blank(line[k], line_len[k])) {
                snprintf(why, nwhy, "line %zu: only blank lines may follow '# <<<'", k + 1);
                free(out);
                goto done;
            }
        exp->stderr_text = out;
    }
    ok = true;
done:
    free(line);
    free(line_len);
    return ok;
}

static void print_numbered(const char *title, const char *const *line, const size_t *len, size_t n,
                           size_t mark) {
    printf("  %s (%zu line%s):\n", title, n, n == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++)
        printf("  %s%4zu | %.*s\n", i == mark ? ">>" : "  ", i + 1, (int)len[i], line[i]);
}

/* Prints both texts line by line, marking the first line where they differ. */
static void report_difference(const char *expected, const char *actual) {
    const char **el, **al;
    size_t *elen, *alen;
    size_t ne = split_lines(expected, strlen(expected), &el, &elen);
    size_t na = split_lines(actual, strlen(actual), &al, &alen);
    size_t first = 0;
    while (first < ne && first < na && elen[first] == alen[first] &&
           !memcmp(el[first], al[first], elen[first]))
        first++;
    if (first == ne && first == na) {
        printf("  (the texts differ only in a final newline)\n");
    } else {
        printf("  first difference at line %zu\n", first + 1);
    }
    print_numbered("expected", el, elen, ne, first);
    print_numbered("actual", al, alen, na, first);
    free(el);
    free(elen);
    free(al);
    free(alen);
}

/* Runs one corpus file; true when the compiler did exactly what the file expects. */
static bool run_case(const char *path) {
    size_t len;
    char *text = read_whole_file(path, &len);
    if (!text) {
        printf("FAIL %s: cannot read: %s\n", path, strerror(errno));
        return false;
    }
    Expectation exp = {0};
    char why[256];
    bool parsed = parse_expectation(text, len, &exp, why, sizeof why);
    free(text);
    if (!parsed) {
        printf("FAIL %s: %s\n", path, why);
        return false;
    }

    char *captured = NULL;
    size_t captured_len = 0;
    FILE *err = open_memstream(&captured, &captured_len);
    if (!err) {
        printf("FAIL %s: open_memstream: %s\n", path, strerror(errno));
        free(exp.stderr_text);
        return false;
    }
    Compilation c;
    CompileOptions opts = {.err = err};
    int rc = driver_compile(&c, path, &opts, STAGE_PLAN);
    driver_free(&c);
    fclose(err);

    bool text_ok = captured_len == strlen(exp.stderr_text) && !memcmp(captured, exp.stderr_text, captured_len);
    bool ok = text_ok && rc == exp.exit_code;
    if (!ok) {
        printf("FAIL %s\n", path);
        if (rc != exp.exit_code) printf("  exit code: expected %d, got %d\n", exp.exit_code, rc);
        if (!text_ok) report_difference(exp.stderr_text, captured);
    }
    free(captured);
    free(exp.stderr_text);
    return ok;
}

int main(int argc, char **argv) {
    char *dir = strdup(argc > 1 ? argv[1] : "tests/diag");
    if (!dir) abort();
    size_t dir_len = strlen(dir);
    while (dir_len > 1 && dir[dir_len - 1] == '/') dir[--dir_len] = 0;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "test_diag: cannot open '%s': %s (pass the corpus directory as the argument)\n", dir,
                strerror(errno));
        free(dir);
        return 1;
    }
    NameList files = {0};
    const struct dirent *entry;
    while ((entry = readdir(d)) != NULL)
        if (has_suffix(entry->d_name, ".nn")) names_add(&files, entry->d_name);
    closedir(d);
    qsort(files.item, files.count, sizeof *files.item, compare_names);

    size_t failed = 0;
    for (size_t i = 0; i < files.count; i++) {
        char *path;
        if (asprintf(&path, "%s/%s", dir, files.item[i]) < 0) abort();
        if (!run_case(path)) failed++;
        free(path);
    }
    printf("test_diag: %zu file%s, %zu passed, %zu failed\n", files.count, files.count == 1 ? "" : "s",
           files.count - failed, failed);
    bool ok = failed == 0 && files.count > 0;
    if (files.count == 0) printf("test_diag: no .nn files in '%s'\n", dir);
    names_free(&files);
    free(dir);
    return ok ? 0 : 1;
}
