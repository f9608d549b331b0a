/* format.c: the canonical layout of a model file (`nnc fmt`, format.h).  It parses the file to
 * learn where each statement and train setting starts, then writes the scanner's tokens out
 * again, verbatim, with this spacing:
 *   - one statement per line; a block's or train's body indented by two spaces; `}` alone;
 *   - one space around binary operators, `=`, `:`, `~` and after a comma; none inside brackets,
 *     before a call's `(` or a type's `[`, around `.`, or after a unary minus;
 *   - columns aligned in a run of statements of one kind with no blank line between them: the
 *     keyword of input/target/param and the names of the inputs and targets (and apart, of
 *     the params), the name of `x = ...`, the keyword of loss/metric/prior/head/return, and
 *     the keyword of each train setting;
 *   - the line breaks inside a statement kept (after its value has started): the next line is
 *     indented under the innermost open bracket, or four past that bracket's line when the
 *     bracket ends it, or two past the statement's value outside brackets;
 *   - comments kept: a comment line indented as the code after it; the trailing comments of
 *     consecutive lines aligned two spaces past the longest of those lines;
 *   - a run of blank lines kept as one, none at the start or end of the file or of a body.
 * It then scans its own output and compares the tokens, so a layout bug can never change a
 * model.  Formatting formatted text changes nothing. */
#include <stdlib.h>
#include <string.h>

#include "ast.h"
#include "format.h"

enum { MAX_BODIES = 300 };

typedef enum { AL_NONE, AL_DECL, AL_LET, AL_KW, AL_ITEM } AlignKind;

typedef struct {
    int first, end; /* its tokens [first, end) */
    bool close;     /* a body's `}` */
    int depth;      /* bodies it stands in */
    AlignKind align;
    int ncell;      /* leading tokens set in aligned columns (0, 1 or 2) */
    int value;      /* the token its value starts with: line breaks before it are not kept */
    int group;      /* units aligned together share it */
} Unit;

typedef enum { LN_CODE, LN_COMMENT, LN_BLANK } LineKind;
typedef struct {
    LineKind kind;
    int depth;
    StrBuf text;         /* code or a comment, with its indentation */
    const char *comment; /* a trailing comment, or NULL */
    size_t comment_len;
} Line;

typedef struct {
    const char *text; /* a comment line; NULL for a blank line */
    size_t len;
} Pending;

typedef struct {
    const Source *src;
    const SrcToken *tok;
    int ntok;
    Line *line;
    int nline, capline;
    Pending *pend; /* comment and blank lines waiting for the next line of code */
    int npend, cappend;
    bool body_start; /* nothing written yet, or the last line opened a body */
} Fmt;

static bool is(const Fmt *f, int i, const char *s) {
    return i >= 0 && i < f->ntok && f->tok[i].len == strlen(s) && !memcmp(f->src->text + f->tok[i].off, s, f->tok[i].len);
}

static bool is_any(const Fmt *f, int i, const char *const *words) {
    for (; *words; words++)
        if (is(f, i, *words)) return true;
    return false;
}

static size_t tok_end(const Fmt *f, int i) { return f->tok[i].off + f->tok[i].len; }

/* Columns as a reader sees them: UTF-8 continuation bytes take none. */
static int width(const char *s, size_t n) {
    int w = 0;
    for (size_t i = 0; i < n; i++) w += ((unsigned char)s[i] & 0xc0) != 0x80;
    return w;
}

static Line *add_line(Fmt *f, LineKind kind, int depth) {
    if (f->nline == f->capline) f->line = util_realloc(f->line, sizeof *f->line * (size_t)(f->capline = f->capline ? 2 * f->capline : 64));
    Line *l = &f->line[f->nline++];
    *l = (Line){.kind = kind, .depth = depth};
    return l;
}

static void indent(StrBuf *b, int n) {
    for (int i = 0; i < n; i++) sb_putc(b, ' ');
}

static int line_width(const Line *l) { return width(l->text.s ? l->text.s : "", l->text.len); }

/* A comment after code on its line.  Two can meet on one line when a line break there is not
 * kept; the earlier one then goes on a line of its own above, indented as that line. */
static void attach_trailing(Fmt *f, const char *s, size_t n) {
    Line *l = &f->line[f->nline - 1];
    if (l->comment) {
        int depth = l->depth;
        add_line(f, LN_COMMENT, depth);
        Line moved = f->line[f->nline - 1];
        f->line[f->nline - 1] = f->line[f->nline - 2];
        f->line[f->nline - 2] = moved;
        Line *c = &f->line[f->nline - 2];
        const Line *code = &f->line[f->nline - 1];
        int lead = 0; /* under the code line, as a comment line there would be put */
        while ((size_t)lead < code->text.len && code->text.s[lead] == ' ') lead++;
        indent(&c->text, lead);
        sb_putn(&c->text, f->line[f->nline - 1].comment, f->line[f->nline - 1].comment_len);
        l = &f->line[f->nline - 1];
    }
    l->comment = s;
    l->comment_len = n;
}

static void add_pending(Fmt *f, const char *s, size_t n) {
    if (f->npend == f->cappend) f->pend = util_realloc(f->pend, sizeof *f->pend * (size_t)(f->cappend = f->cappend ? 2 * f->cappend : 16));
    f->pend[f->npend++] = (Pending){s, n};
}

/* The bytes between two tokens are spaces and comments.  The part on the first token's line
 * can hold its trailing comment; each whole line after it is blank or a comment line.  With
 * `record` they are handed on (trailing comments attached, the rest left pending; blank lines
 * only between statements, `between`); either way the answer is whether there is a blank line. */
static bool scan_gap(Fmt *f, size_t from, size_t to, bool after_token, bool record, bool between) {
    const char *t = f->src->text;
    bool blank = false, first = after_token;
    for (size_t i = from; i < to;) {
        size_t e = i;
        while (e < to && t[e] != '\n') e++;
        size_t c = i;
        while (c < e && t[c] != '#') c++;
        if (c < e) {
            size_t end = e;
            while (end > c && (t[end - 1] == ' ' || t[end - 1] == '\t' || t[end - 1] == '\r' || t[end - 1] == '\f' || t[end - 1] == '\v')) end--;
            if (record && first)
                attach_trailing(f, t + c, end - c);
            else if (record)
                add_pending(f, t + c, end - c);
        } else if (!first && e < to) {
            blank = true;
            if (record && between) add_pending(f, NULL, 0);
        }
        first = false;
        i = e + 1;
    }
    return blank;
}

/* Writes the pending comment lines at `ind` spaces; blank lines only where `blanks` allows,
 * one for a run, none first in a body.  `trailing_blanks` false drops those after the last
 * comment (before a `}` or the end of the file). */
static void flush_pending(Fmt *f, int ind, int depth, bool blanks, bool trailing_blanks) {
    int n = f->npend;
    if (!trailing_blanks)
        while (n > 0 && !f->pend[n - 1].text) n--;
    for (int i = 0; i < n; i++) {
        if (!f->pend[i].text) {
            if (blanks && !f->body_start && f->line[f->nline - 1].kind != LN_BLANK) add_line(f, LN_BLANK, depth);
            continue;
        }
        Line *l = add_line(f, LN_COMMENT, depth);
        indent(&l->text, ind);
        sb_putn(&l->text, f->pend[i].text, f->pend[i].len);
        f->body_start = false;
    }
    f->npend = 0;
}

static bool operand_end(const Fmt *f, int i) {
    SrcTokenKind k = f->tok[i].kind;
    return k == TOKEN_NAME || k == TOKEN_NUMBER || k == TOKEN_STRING || is(f, i, ")") || is(f, i, "]");
}

static bool unary_minus(const Fmt *f, int i, int first) { return is(f, i, "-") && (i == first || !operand_end(f, i - 1)); }

/* Whether a space goes between tokens i - 1 and i of a statement that starts at `first`. */
static bool spaced(const Fmt *f, int i, int first) {
    static const char *const tight_after[] = {"(", "[", ".", NULL}, *const tight_before[] = {",", ")", "]", ".", NULL};
    if (is(f, i, ".") && f->tok[i - 1].kind == TOKEN_NUMBER) return true; /* `2 .x`: `2.x` would be one (bad) number */
    if (is_any(f, i, tight_before) || is_any(f, i - 1, tight_after) || unary_minus(f, i - 1, first)) return false;
    if ((is(f, i, "(") || is(f, i, "[")) && f->tok[i - 1].kind == TOKEN_NAME) return false;
    return true;
}

typedef struct {
    int line_indent; /* the indentation of the line it is on */
    int inner;       /* where a line inside it starts */
} Bracket;

static void render_unit(Fmt *f, const Unit *u, const int *w0, const int *w1) {
    const SrcToken *tk = f->tok;
    int ind = 2 * u->depth;
    Line *l = add_line(f, LN_CODE, u->depth);
    f->body_start = false;
    indent(&l->text, ind);
    Bracket br[300];
    int nbr = 0, value_col = ind, line_indent = ind;
    for (int i = u->first; i < u->end; i++) {
        if (i > u->first) scan_gap(f, tok_end(f, i - 1), tk[i].off, true, true, false);
        l = &f->line[f->nline - 1];
        int cell = i - u->first;
        bool broken = i > u->value && tk[i].line != tk[i - 1].line && !is(f, i, "{");
        if (broken) {
            bool closer = is(f, i, ")") || is(f, i, "]");
            if (nbr > 0 && (is(f, i - 1, "(") || is(f, i - 1, "[")))
                br[nbr - 1].inner = br[nbr - 1].line_indent + 4; /* the bracket ends its line */
            int at = nbr == 0 ? value_col + 2 : closer ? br[nbr - 1].line_indent : br[nbr - 1].inner;
            flush_pending(f, at, u->depth, false, false);
            l = add_line(f, LN_CODE, u->depth);
            indent(&l->text, at);
            line_indent = at;
        } else if (cell > u->ncell) {
            if (spaced(f, i, u->first)) sb_putc(&l->text, ' ');
        } else if (cell > 0) { /* after an aligned column */
            int w = cell == 1 ? w0[u->group] : w1[2 * u->group + is(f, i, "=")];
            indent(&l->text, w - (int)tk[i - 1].len + 1);
        }
        if (i == u->value) value_col = line_width(l);
        sb_putn(&l->text, f->src->text + tk[i].off, tk[i].len);
        if ((is(f, i, "(") || is(f, i, "[")) && nbr < (int)(sizeof br / sizeof *br)) {
            int col = line_width(l);
            br[nbr++] = (Bracket){line_indent, col};
        } else if ((is(f, i, ")") || is(f, i, "]")) && nbr > 0) {
            nbr--;
        }
    }
}

/* The statements' and train settings' first tokens, from the syntax tree. */
typedef struct {
    int line, col;
} Pos;

static void collect_starts(const Stmt *const *s, int n, Pos **pos, int *npos, int *cap) {
    for (int i = 0; i < n; i++) {
        if (*npos + 1 + s[i]->nitem > *cap) *pos = util_realloc(*pos, sizeof **pos * (size_t)(*cap = 2 * (*cap + 1 + s[i]->nitem)));
        (*pos)[(*npos)++] = (Pos){s[i]->loc.line, s[i]->loc.col};
        for (int k = 0; k < s[i]->nitem; k++) (*pos)[(*npos)++] = (Pos){s[i]->item[k]->loc.line, s[i]->item[k]->loc.col};
        if (s[i]->kind == ST_BLOCK) collect_starts((const Stmt *const *)s[i]->body, s[i]->nbody, pos, npos, cap);
    }
}

static int pos_cmp(const void *a, const void *b) {
    const Pos *x = a, *y = b;
    return x->line != y->line ? (x->line > y->line) - (x->line < y->line) : (x->col > y->col) - (x->col < y->col);
}

/* The file cut into statements (a block's or train's header ends with its `{`) and `}`s. */
static Unit *cut_units(const Fmt *f, const Program *prog, int *nunit) {
    Pos *pos = NULL;
    int npos = 0, cap = 0;
    collect_starts((const Stmt *const *)prog->stmt, prog->nstmt, &pos, &npos, &cap);
    if (npos) qsort(pos, (size_t)npos, sizeof *pos, pos_cmp);
    bool *starts = util_calloc((size_t)f->ntok + 1, sizeof *starts);
    for (int i = 0, k = 0; i < f->ntok; i++) {
        while (k < npos && pos_cmp(&pos[k], &(Pos){f->tok[i].line, f->tok[i].col}) < 0) k++;
        starts[i] = k < npos && pos[k].line == f->tok[i].line && pos[k].col == f->tok[i].col;
    }
    free(pos);
    static const char *const decl[] = {"input", "target", "param", NULL},
                             *const kw[] = {"loss", "metric", "prior", "head", "return", NULL};
    Unit *u = util_calloc((size_t)f->ntok + 1, sizeof *u);
    bool train_body[MAX_BODIES];
    int n = 0, depth = 0;
    for (int i = 0; i < f->ntok;) {
        Unit *x = &u[n++];
        if (is(f, i, "}")) {
            if (depth > 0) depth--;
            *x = (Unit){.first = i, .end = i + 1, .close = true, .depth = depth};
            i++;
            continue;
        }
        int j = i + 1;
        while (j < f->ntok && !starts[j] && !is(f, j, "}") && !is(f, j - 1, "{")) j++;
        *x = (Unit){.first = i, .end = j, .depth = depth, .value = i + 1};
        bool keyword = f->tok[i].kind == TOKEN_KEYWORD;
        if (depth > 0 && depth <= MAX_BODIES && train_body[depth - 1])
            x->align = AL_ITEM, x->ncell = 1;
        else if (keyword && is_any(f, i, decl) && j - i >= 3)
            x->align = AL_DECL, x->ncell = 2, x->value = i + 3;
        else if (f->tok[i].kind == TOKEN_NAME && is(f, i + 1, "="))
            x->align = AL_LET, x->ncell = 1, x->value = i + 2;
        else if (keyword && is_any(f, i, kw))
            x->align = AL_KW, x->ncell = 1;
        if (is(f, j - 1, "{")) {
            if (depth < MAX_BODIES) train_body[depth] = keyword && is(f, i, "train");
            depth++;
        }
        i = j;
    }
    free(starts);
    *nunit = n;
    return u;
}

/* Units in one body, of one kind, with no blank line between them are aligned together. */
static int group_units(Fmt *f, Unit *u, int n) {
    int ngroup = 0;
    for (int k = 0; k < n; k++) {
        const Unit *p = k > 0 ? &u[k - 1] : NULL;
        bool blank = k > 0 && scan_gap(f, tok_end(f, u[k].first - 1), f->tok[u[k].first].off, true, false, true);
        bool joined = p && !p->close && !u[k].close && p->depth == u[k].depth && p->align == u[k].align &&
                      u[k].align != AL_NONE && !blank && !is(f, p->end - 1, "{");
        u[k].group = joined ? p->group : ngroup++;
    }
    return ngroup;
}

/* Lines of code at one depth with no comment or blank line between them share a column for
 * their trailing comments. */
static void write_lines(const Fmt *f, StrBuf *out) {
    for (int s = 0; s < f->nline;) {
        int e = s + 1;
        if (f->line[s].kind == LN_CODE)
            while (e < f->nline && f->line[e].kind == LN_CODE && f->line[e].depth == f->line[s].depth) e++;
        int col = 0;
        for (int k = s; k < e; k++)
            if (f->line[k].comment && line_width(&f->line[k]) + 2 > col) col = line_width(&f->line[k]) + 2;
        for (int k = s; k < e; k++) {
            const Line *l = &f->line[k];
            sb_putn(out, l->text.s ? l->text.s : "", l->text.len);
            if (l->comment) {
                indent(out, col - line_width(l));
                sb_putn(out, l->comment, l->comment_len);
            }
            sb_putc(out, '\n');
        }
        s = e;
    }
}

/* The first token at which two sources differ, or -1 when they scan alike. */
static int first_difference(const Source *a, const SrcToken *ta, int na, const Source *b) {
    Arena *arena = arena_new();
    int nb;
    const SrcToken *tb = parse_tokens(arena, b, &nb);
    int at = -1;
    for (int i = 0; i < na || i < nb; i++)
        if (i >= na || i >= nb || ta[i].kind != tb[i].kind || ta[i].len != tb[i].len ||
            memcmp(a->text + ta[i].off, b->text + tb[i].off, ta[i].len)) {
            at = i < na ? i : na - 1;
            break;
        }
    arena_free(arena);
    return at;
}

char *format_source(const Source *src, Diag *diag, size_t *len) {
    Arena *arena = arena_new();
    const Program *prog = parse_source(arena, diag, src, 0);
    if (diag->nerror) {
        arena_free(arena);
        return NULL;
    }
    Fmt f = {.src = src, .body_start = true};
    f.tok = parse_tokens(arena, src, &f.ntok);
    int nunit;
    Unit *u = cut_units(&f, prog, &nunit);
    int ngroup = group_units(&f, u, nunit);
    /* the widths of a group's first column, and of its second: names before `:` and before `=` apart */
    int *w0 = util_calloc((size_t)ngroup + 1, sizeof *w0), *w1 = util_calloc(2 * (size_t)ngroup + 2, sizeof *w1);
    for (int k = 0; k < nunit; k++) {
        const SrcToken *t = &f.tok[u[k].first];
        if (u[k].ncell >= 1 && (int)t[0].len > w0[u[k].group]) w0[u[k].group] = (int)t[0].len;
        int *w = &w1[2 * u[k].group + is(&f, u[k].first + 2, "=")];
        if (u[k].ncell >= 2 && (int)t[1].len > *w) *w = (int)t[1].len;
    }
    for (int k = 0; k < nunit; k++) {
        const Unit *x = &u[k];
        scan_gap(&f, x->first > 0 ? tok_end(&f, x->first - 1) : 0, f.tok[x->first].off, x->first > 0, true, true);
        if (x->close) {
            flush_pending(&f, 2 * (x->depth + 1), x->depth + 1, true, false);
            Line *l = add_line(&f, LN_CODE, x->depth);
            indent(&l->text, 2 * x->depth);
            sb_putc(&l->text, '}');
            f.body_start = false;
            continue;
        }
        flush_pending(&f, 2 * x->depth, x->depth, true, true);
        render_unit(&f, x, w0, w1);
        if (is(&f, x->end - 1, "{")) f.body_start = true;
    }
    scan_gap(&f, f.ntok ? tok_end(&f, f.ntok - 1) : 0, src->len, f.ntok > 0, true, true);
    flush_pending(&f, 0, 0, true, false);
    StrBuf out = {0};
    write_lines(&f, &out);
    for (int i = 0; i < f.nline; i++) sb_free(&f.line[i].text);
    free(f.line);
    free(f.pend);
    free(u);
    free(w0);
    free(w1);
    sb_putc(&out, 0); /* a terminator; a comment may hold a NUL of its own */
    char *text = out.s;
    *len = out.len - 1;
    /* the layout must scan to the same tokens */
    Source formatted = {src->path, text, *len};
    int bad = first_difference(src, f.tok, f.ntok, &formatted);
    if (bad >= 0) {
        const SrcToken *t = &f.tok[bad];
        diag_error(diag, (SrcLoc){t->line, t->col, t->col + (int)t->len - 1, 0},
                   "internal error: the layout would change this token; the file is left as it was (please report it)");
        free(text);
        text = NULL;
    }
    arena_free(arena);
    return text;
}
