/* npy.c: the .npy reader and float32 writer (see npy.h).  The header is a Python dict
 * literal, parsed here by hand: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * with any spacing, either quote, and an optional trailing comma.  The data must be exactly
 * as long as the shape says. */
#include "npy.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c reads little-endian data as it is in memory: it needs a little-endian host"
#endif

#define DESCR_LIST "'<f4', '<f8', '<i4', '<i8', '|u1', '|b1'"

typedef enum { K_F4, K_F8, K_I4, K_I8, K_U1, K_B1 } Kind;

static const struct {
    const char *descr;
    Kind kind;
    size_t size;
} descrs[] = {
    {"<f4", K_F4, 4}, {"<f8", K_F8, 8}, {"<i4", K_I4, 4}, {"<i8", K_I8, 8},
    {"|u1", K_U1, 1}, {"<u1", K_U1, 1}, {"|b1", K_B1, 1},
};

/* A loaded, checked file. */
typedef struct {
    char *buf;
    const unsigned char *data;
    Kind kind;
    size_t itemsize, count;
    int rank;
    int64_t shape[NPY_MAX_RANK];
} Npy;

bool npy_is_npy(const void *head, size_t n) { return n >= 6 && memcmp(head, "\x93NUMPY", 6) == 0; }

/* "(2, 3)", "(5,)" or "()", as Python writes a shape. */
static const char *shape_str(char *buf, size_t n, int rank, const int64_t *shape) {
    int k = snprintf(buf, n, "(");
    for (int i = 0; i < rank && k > 0 && (size_t)k < n; i++) k += snprintf(buf + k, n - (size_t)k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k > 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, rank == 1 ? ",)" : ")");
    return buf;
}

/* ---- the header ---- */

typedef struct {
    const char *start, *p, *end;
} Cur;

static void skip_space(Cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static bool eat(Cur *c, char ch) {
    skip_space(c);
    if (c->p == c->end || *c->p != ch) return false;
    c->p++;
    return true;
}

/* A quoted string without escapes: its text is [*s, *s + *n). */
static bool quoted(Cur *c, const char **s, size_t *n) {
    skip_space(c);
    if (c->p == c->end || (*c->p != '\'' && *c->p != '"')) return false;
    char q = *c->p++;
    const char *from = c->p;
    while (c->p < c->end && *c->p != q && *c->p != '\\') c->p++;
    if (c->p == c->end || *c->p != q) return false;
    *s = from;
    *n = (size_t)(c->p++ - from);
    return true;
}

static bool word(Cur *c, const char *w) {
    skip_space(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0) return false;
    c->p += n;
    return true;
}

/* A non-negative integer, with Python 2's optional 'L' suffix. */
static bool integer(Cur *c, int64_t *v) {
    skip_space(c);
    if (c->p == c->end || *c->p < '0' || *c->p > '9') return false;
    *v = 0;
    for (; c->p < c->end && *c->p >= '0' && *c->p <= '9'; c->p++) {
        if (*v > (INT64_MAX - (*c->p - '0')) / 10) return false;
        *v = *v * 10 + (*c->p - '0');
    }
    if (c->p < c->end && *c->p == 'L') c->p++;
    return true;
}

/* "expected X at byte N of the header, found 'abc'". */
static int bad(const char *path, const Cur *c, const char *expected, char *err, size_t nerr) {
    char found[24];
    size_t n = 0;
    for (const char *p = c->p; p < c->end && n < 20; p++) found[n++] = *p >= ' ' && *p < 127 ? *p : '?';
    found[n] = 0;
    return util_fail(err, nerr, "%s: malformed .npy header: expected %s at byte %td of the header, found %s%s%s", path, expected,
                c->p - c->start, n ? "'" : "its end", found, n ? "'" : "");
}

static int parse_shape(const char *path, Cur *c, Npy *x, char *err, size_t nerr) {
    if (!eat(c, '(')) return bad(path, c, "a shape tuple such as (2, 3) after 'shape'", err, nerr);
    while (!eat(c, ')')) {
        int64_t v;
        if (x->rank == NPY_MAX_RANK)
            return util_fail(err, nerr, "%s: the array has more than %d dimensions; at most %d are supported", path, NPY_MAX_RANK, NPY_MAX_RANK);
        if (!integer(c, &v)) return bad(path, c, "a non-negative dimension (below 2^63) or ')'", err, nerr);
        x->shape[x->rank++] = v;
        if (!eat(c, ',')) {
            if (!eat(c, ')')) return bad(path, c, "',' or ')' in the shape", err, nerr);
            break;
        }
    }
    return 0;
}

static int parse_descr(const char *path, const char *s, size_t n, Npy *x, char *err, size_t nerr) {
    for (size_t i = 0; i < sizeof descrs / sizeof *descrs; i++)
        if (strlen(descrs[i].descr) == n && memcmp(s, descrs[i].descr, n) == 0) {
            x->kind = descrs[i].kind;
            x->itemsize = descrs[i].size;
            return 0;
        }
    int show = n > 20 ? 20 : (int)n;
    if (n > 0 && s[0] == '>')
        return util_fail(err, nerr, "%s: dtype '%.*s' is big-endian; nnc reads little-endian " DESCR_LIST " (convert with a.astype('<%.*s'))",
                    path, show, s, show - 1, s + 1);
    return util_fail(err, nerr, "%s: unsupported dtype '%.*s' (expected one of " DESCR_LIST ")", path, show, s);
}

static int parse_header(const char *path, const char *h, size_t n, Npy *x, char *err, size_t nerr) {
    Cur c = {h, h, h + n};
    bool seen[3] = {false, false, false}, fortran = false;
    static const char *const keys[3] = {"descr", "fortran_order", "shape"};
    if (!eat(&c, '{')) return bad(path, &c, "'{'", err, nerr);
    while (!eat(&c, '}')) {
        const char *key, *val;
        size_t nkey, nval;
        int k = 0;
        if (!quoted(&c, &key, &nkey)) return bad(path, &c, "a quoted key or '}'", err, nerr);
        while (k < 3 && (strlen(keys[k]) != nkey || memcmp(key, keys[k], nkey) != 0)) k++;
        if (k == 3)
            return util_fail(err, nerr, "%s: the .npy header has an unknown key '%.*s' (expected 'descr', 'fortran_order' and 'shape')",
                        path, nkey > 20 ? 20 : (int)nkey, key);
        if (seen[k]) return util_fail(err, nerr, "%s: the .npy header gives '%s' twice", path, keys[k]);
        seen[k] = true;
        if (!eat(&c, ':')) return bad(path, &c, "':'", err, nerr);
        if (k == 0) {
            if (!quoted(&c, &val, &nval))
                return bad(path, &c, "a dtype string such as '<f4' after 'descr' (structured dtypes are not supported)", err, nerr);
            if (parse_descr(path, val, nval, x, err, nerr) != 0) return -1;
        } else if (k == 1) {
            if (word(&c, "True")) fortran = true;
            else if (!word(&c, "False")) return bad(path, &c, "True or False after 'fortran_order'", err, nerr);
        } else if (parse_shape(path, &c, x, err, nerr) != 0) {
            return -1;
        }
        if (!eat(&c, ',')) {
            if (!eat(&c, '}')) return bad(path, &c, "',' or '}'", err, nerr);
            break;
        }
    }
    skip_space(&c);
    if (c.p != c.end) return bad(path, &c, "nothing but spaces after the closing '}'", err, nerr);
    for (int k = 0; k < 3; k++)
        if (!seen[k])
            return util_fail(err, nerr, "%s: the .npy header has no '%s' (expected 'descr', 'fortran_order' and 'shape')", path, keys[k]);
    if (fortran)
        return util_fail(err, nerr, "%s: the array is stored in Fortran (column-major) order; nnc reads C order only "
                    "(save numpy.ascontiguousarray(a) instead)", path);
    return 0;
}

/* ---- reading ---- */

/* The preamble and header of b[0..len) (the whole file, or only its start: npy_read_shape),
 * parsed into x; *pre and *hlen: the preamble's and the header's bytes. */
static int parse_start(const char *path, const unsigned char *b, size_t len, Npy *x, size_t *pre_out, size_t *hlen_out,
                       char *err, size_t nerr) {
    if (!npy_is_npy(b, len)) return util_fail(err, nerr, "%s: not a .npy file: it does not start with \"\\x93NUMPY\"", path);
    if (len < 10) return util_fail(err, nerr, "%s: truncated: the file ends inside the .npy preamble (%zu bytes)", path, len);
    int major = b[6], minor = b[7];
    if (major < 1 || major > 3 || minor != 0)
        return util_fail(err, nerr, "%s: unsupported .npy format version %d.%d (expected 1.0, 2.0 or 3.0)", path, major, minor);
    size_t pre = major == 1 ? 10 : 12;
    if (len < pre) return util_fail(err, nerr, "%s: truncated: the file ends inside the .npy preamble (%zu bytes)", path, len);
    size_t hlen = b[8] | (size_t)b[9] << 8;
    if (major > 1) hlen |= (size_t)b[10] << 16 | (size_t)b[11] << 24;
    if (hlen > len - pre)
        return util_fail(err, nerr, "%s: truncated: the .npy header should be %zu bytes, but only %zu bytes follow the preamble",
                    path, hlen, len - pre);
    if (parse_header(path, (const char *)b + pre, hlen, x, err, nerr) != 0) return -1;
    *pre_out = pre;
    *hlen_out = hlen;
    return 0;
}

static int load(const char *path, Npy *x, char *err, size_t nerr) {
    memset(x, 0, sizeof *x);
    struct stat sb;
    if (stat(path, &sb) != 0) return util_fail(err, nerr, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return util_fail(err, nerr, "%s: is a directory, not a .npy file", path);
    size_t len, pre, hlen;
    x->buf = util_read_file(path, &len);
    if (!x->buf) return util_fail(err, nerr, "%s: cannot read: %s", path, strerror(errno));
    const unsigned char *b = (const unsigned char *)x->buf;
    if (parse_start(path, b, len, x, &pre, &hlen, err, nerr)) return -1;
    char shape[200];
    shape_str(shape, sizeof shape, x->rank, x->shape);
    x->count = 1;
    for (int i = 0; i < x->rank; i++) {
        uint64_t d = (uint64_t)x->shape[i];
        if (d != 0 && x->count > SIZE_MAX / x->itemsize / d)
            return util_fail(err, nerr, "%s: shape %s is too large to load", path, shape);
        x->count *= (size_t)d;
    }
    size_t have = len - pre - hlen, need = x->count * x->itemsize;
    if (have != need)
        return util_fail(err, nerr, "%s: %s: shape %s of %zu-byte values needs %zu bytes of data after the header, but the file has %zu",
                    path, have < need ? "truncated" : "too long", shape, x->itemsize, need, have);
    x->data = b + pre + hlen;
    return 0;
}

static bool is_float(Kind k) { return k == K_F4 || k == K_F8; }

static double get_f64(const Npy *x, size_t i) {
    const unsigned char *p = x->data + i * x->itemsize;
    if (x->kind == K_F4) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    double d;
    memcpy(&d, p, 8);
    return d;
}

static int64_t get_i64(const Npy *x, size_t i) {
    const unsigned char *p = x->data + i * x->itemsize;
    int32_t v4;
    int64_t v8;
    switch (x->kind) {
    case K_I4: memcpy(&v4, p, 4); return v4;
    case K_I8: memcpy(&v8, p, 8); return v8;
    case K_B1: return p[0] != 0;
    default: return p[0];
    }
}

/* "[1, 4]": where flat element i sits, for messages. */
static const char *where(char *buf, size_t n, const Npy *x, size_t i) {
    size_t idx[NPY_MAX_RANK];
    for (int d = x->rank - 1; d >= 0; d--) {
        idx[d] = i % (size_t)x->shape[d];
        i /= (size_t)x->shape[d];
    }
    int k = snprintf(buf, n, "[");
    for (int d = 0; d < x->rank && k > 0 && (size_t)k < n; d++) k += snprintf(buf + k, n - (size_t)k, "%s%zu", d ? ", " : "", idx[d]);
    if (k > 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, "]");
    return buf;
}

static void give_shape(const Npy *x, int *rank, int64_t *shape) {
    *rank = x->rank;
    memcpy(shape, x->shape, sizeof x->shape);
}

int npy_read_f32(const char *path, float **out, int *rank, int64_t shape[NPY_MAX_RANK], char *err, size_t nerr) {
    Npy x;
    *out = NULL;
    if (load(path, &x, err, nerr) != 0) {
        free(x.buf);
        return -1;
    }
    float *v = util_calloc(x.count, sizeof *v);
    for (size_t i = 0; i < x.count; i++) {
        if (x.kind == K_F4) {
            memcpy(&v[i], x.data + 4 * i, 4);
        } else if (x.kind == K_F8) {
            double d = get_f64(&x, i);
            if (isfinite(d) && fabs(d) > FLT_MAX) {
                char at[200];
                util_fail(err, nerr, "%s: value %g at %s does not fit in float32", path, d, where(at, sizeof at, &x, i));
                free(v);
                free(x.buf);
                return -1;
            }
            v[i] = (float)d;
        } else {
            v[i] = (float)get_i64(&x, i);
        }
    }
    give_shape(&x, rank, shape);
    free(x.buf);
    *out = v;
    return 0;
}

int npy_read_labels_i32(const char *path, int32_t **out, int *rank, int64_t shape[NPY_MAX_RANK], char *err, size_t nerr) {
    Npy x;
    *out = NULL;
    if (load(path, &x, err, nerr) != 0) {
        free(x.buf);
        return -1;
    }
    int32_t *v = util_calloc(x.count, sizeof *v);
    for (size_t i = 0; i < x.count; i++) {
        char at[200];
        const char *why = NULL;
        double d = 0;
        if (is_float(x.kind)) {
            d = get_f64(&x, i);
            if (d != floor(d)) why = "is not a whole number";
        } else {
            d = (double)get_i64(&x, i); /* exact wherever it fits in int32 */
        }
        if (!why && (d < INT32_MIN || d > INT32_MAX)) why = "does not fit in int32";
        if (why) {
            util_fail(err, nerr, "%s: label %.17g at %s %s (labels must be whole numbers)", path, d, where(at, sizeof at, &x, i), why);
            free(v);
            free(x.buf);
            return -1;
        }
        v[i] = (int32_t)d;
    }
    give_shape(&x, rank, shape);
    free(x.buf);
    *out = v;
    return 0;
}

/* ---- writing ---- */

int npy_write_f32(const char *path, const float *data, int rank, const int64_t *shape, char *err, size_t nerr) {
    if (rank < 0 || rank > NPY_MAX_RANK)
        return util_fail(err, nerr, "%s: cannot write an array of rank %d (expected 0 to %d)", path, rank, NPY_MAX_RANK);
    size_t count = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0 || (shape[i] != 0 && count > SIZE_MAX / sizeof(float) / (uint64_t)shape[i]))
            return util_fail(err, nerr, "%s: cannot write: dimension %d is %" PRId64 ", expected a size from 0 up", path, i, shape[i]);
        count *= (size_t)shape[i];
    }
    if (count > 0 && !data) return util_fail(err, nerr, "%s: cannot write %zu values without data", path, count);

    StrBuf h = {0};
    sb_puts(&h, "{'descr': '<f4', 'fortran_order': False, 'shape': ");
    char s[200];
    sb_puts(&h, shape_str(s, sizeof s, rank, shape));
    sb_puts(&h, ", }");
    while ((10 + h.len + 1) % 64) sb_putc(&h, ' '); /* data starts at a multiple of 64, like numpy */
    sb_putc(&h, '\n');
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)h.len, (unsigned char)(h.len >> 8)};

    int rc = 0;
    FILE *f = fopen(path, "wb");
    if (!f) {
        rc = util_fail(err, nerr, "%s: cannot create: %s", path, strerror(errno));
    } else {
        errno = 0;
        bool ok = fwrite(pre, 1, 10, f) == 10 && fwrite(h.s, 1, h.len, f) == h.len &&
                  (count == 0 || fwrite(data, sizeof(float), count, f) == count) && fflush(f) == 0;
        int e = errno;
        if (fclose(f) != 0 && ok) {
            ok = false;
            e = errno;
        }
        if (!ok) {
            rc = util_fail(err, nerr, "%s: cannot write: %s", path, e ? strerror(e) : "short write");
            unlink(path);
        }
    }
    sb_free(&h);
    return rc;
}

int npy_read_shape(const char *path, int *rank, int64_t shape[NPY_MAX_RANK], char *err, size_t nerr) {
    enum { MOST = 1 << 16 }; /* the preamble and a header of up to 64 KiB: more than NumPy writes */
    FILE *f = fopen(path, "rb");
    if (!f) return util_fail(err, nerr, "%s: cannot open: %s", path, strerror(errno));
    unsigned char *b = util_calloc(MOST, 1);
    size_t len = fread(b, 1, MOST, f), pre, hlen;
    fclose(f);
    Npy x = {0};
    int rc = parse_start(path, b, len, &x, &pre, &hlen, err, nerr);
    if (rc == 0) give_shape(&x, rank, shape);
    free(b);
    return rc;
}
