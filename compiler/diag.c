/* diag.c: prints located diagnostics with the source line and a caret (see diag.h).
 * Long lines are shown as a window around the column; control bytes are shown as '?'
 * so the caret stays aligned.  A message is printed, and counted, holding its stream's lock
 * (flockfile), so that threads reporting at once (chains sampled at once) neither interleave
 * their lines nor lose a count. */
#include "diag.h"

#include <string.h>

#include "util.h"

enum { DEFAULT_MAX_ERRORS = 20, WINDOW = 100 };

void diag_init(Diag *d, const Source *src, FILE *out) {
    memset(d, 0, sizeof *d);
    d->src = src;
    d->out = out ? out : stderr;
}

/* The file a location is in. */
static const Source *source_of(const Diag *d, SrcLoc loc) {
    return loc.file > 0 && loc.file <= d->nlib ? &d->lib[loc.file - 1] : d->src;
}

static void print_source_line(Diag *d, SrcLoc loc) {
    const Source *s = source_of(d, loc);
    if (!s || !s->text || loc.line <= 0) return;
    size_t pos = 0;
    for (int line = 1; line < loc.line && pos < s->len; pos++)
        if (s->text[pos] == '\n') line++;
    size_t end = pos;
    while (end < s->len && s->text[end] != '\n') end++;
    if (end > pos && s->text[end - 1] == '\r') end--; /* CRLF files */
    size_t linelen = end - pos;
    size_t col = loc.col > 0 ? (size_t)loc.col - 1 : 0;
    if (col > linelen) col = linelen;
    size_t ecol = loc.end_col >= loc.col ? (size_t)loc.end_col - 1 : col;
    if (ecol >= linelen) ecol = linelen ? linelen - 1 : 0;
    if (ecol < col) ecol = col;
    /* window */
    size_t from = 0, to = linelen;
    if (linelen > 2 * WINDOW) {
        from = col > WINDOW / 2 ? col - WINDOW / 2 : 0;
        to = from + WINDOW < linelen ? from + WINDOW : linelen;
        if (ecol >= to) ecol = to ? to - 1 : 0;
    }
    bool cut_left = from > 0, cut_right = to < linelen;
    fprintf(d->out, "%5d | %s", loc.line, cut_left ? "..." : "");
    for (size_t i = from; i < to; i++) {
        unsigned char c = (unsigned char)s->text[pos + i];
        fputc(c == '\t' || (c >= 32 && c != 127) ? c : '?', d->out);
    }
    fprintf(d->out, "%s\n      | %s", cut_right ? "..." : "", cut_left ? "   " : "");
    for (size_t i = from; i < col; i++) fputc(s->text[pos + i] == '\t' ? '\t' : ' ', d->out);
    fputc('^', d->out);
    for (size_t i = col + 1; i <= ecol && i < to; i++) fputc('~', d->out);
    fputc('\n', d->out);
}

void diag_verror(Diag *d, SrcLoc loc, const char *fmt, va_list ap) {
    flockfile(d->out);
    if (d->stopped) {
        funlockfile(d->out);
        return;
    }
    int cap = d->max_errors > 0 ? d->max_errors : DEFAULT_MAX_ERRORS;
    const Source *src = source_of(d, loc);
    const char *path = src && src->path ? src->path : "<input>";
    if (loc.line > 0)
        fprintf(d->out, "%s:%d:%d: error: ", path, loc.line, loc.col > 0 ? loc.col : 1);
    else
        fprintf(d->out, "%s: error: ", path);
    vfprintf(d->out, fmt, ap);
    fputc('\n', d->out);
    print_source_line(d, loc);
    d->nerror++;
    if (d->nerror >= cap) {
        fprintf(d->out, "%s: error: too many errors (%d), stopping\n", path, d->nerror);
        d->stopped = true;
    }
    funlockfile(d->out);
}

void diag_error(Diag *d, SrcLoc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_verror(d, loc, fmt, ap);
    va_end(ap);
}

void diag_note(Diag *d, SrcLoc loc, const char *fmt, ...) {
    flockfile(d->out);
    if (d->stopped) {
        funlockfile(d->out);
        return;
    }
    const Source *src = source_of(d, loc);
    const char *path = src && src->path ? src->path : "<input>";
    va_list ap;
    va_start(ap, fmt);
    if (loc.line > 0)
        fprintf(d->out, "%s:%d:%d: note: ", path, loc.line, loc.col > 0 ? loc.col : 1);
    else
        fprintf(d->out, "note: ");
    vfprintf(d->out, fmt, ap);
    fputc('\n', d->out);
    va_end(ap);
    print_source_line(d, loc);
    funlockfile(d->out);
}

const char *diag_name(const char *name) {
    static char buf[4][80];
    static int next;
    char *b = buf[next++ & 3];
    size_t n = strlen(name);
    if (n <= 60) {
        snprintf(b, 80, "%s", name);
    } else {
        snprintf(b, 80, "%.40s...(%zu bytes)", name, n);
    }
    return b;
}

const char *diag_suggest(const char *name, const char *const *cand, int ncand) {
    const char *best = NULL;
    int limit = strlen(name) <= 3 ? 1 : 2, bestd = limit + 1;
    for (int i = 0; i < ncand; i++) {
        if (!cand[i] || !strcmp(cand[i], name)) continue;
        int dist = util_edit_distance(name, cand[i], limit);
        if (dist < bestd) {
            bestd = dist;
            best = cand[i];
        }
    }
    return best;
}
