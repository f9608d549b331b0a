/* data.c: IDX, CSV and NPY loaders with full validation, and batch gathering (see data.h).
 * Files are read through zlib, so .gz and plain files both work.  Records are numbered from
 * 1 in messages; CSV messages also give the line. */
#include "data.h"
#include "npy.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "util.h"

/* Whole file, decompressed when it is gzip. */
static int read_file(const char *path, unsigned char **data, size_t *len, char *err, size_t nerr) {
    struct stat st;
    if (stat(path, &st) != 0) return util_fail(err, nerr, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return util_fail(err, nerr, "%s: is a directory, not a data file", path);
    gzFile f = gzopen(path, "rb");
    if (!f) return util_fail(err, nerr, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1 << 17);
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = util_realloc(NULL, cap);
    for (;;) {
        if (cap - n < (1 << 16)) buf = util_realloc(buf, cap *= 2);
        int got = gzread(f, buf + n, (unsigned)(cap - n - 1));
        if (got < 0) {
            int code;
            const char *msg = gzerror(f, &code);
            util_fail(err, nerr, "%s: cannot read: %s", path, code == Z_ERRNO ? strerror(errno) : msg);
            gzclose(f);
            free(buf);
            return -1;
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    int code;
    gzerror(f, &code);
    if (code == Z_BUF_ERROR) { /* zlib hands out what it could decompress of a cut stream */
        util_fail(err, nerr, "%s: truncated: the gzip stream ends early (after %zu bytes of data)", path, n);
        gzclose(f);
        free(buf);
        return -1;
    }
    gzclose(f);
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

typedef struct {
    unsigned char *raw;
    const unsigned char *data;
    int ndim;
    int64_t dim[4];
    int64_t count, recsize;
} Idx;

/* Parse and check an IDX file of unsigned bytes with `want_dims` dimensions (0: any >= 2). */
static int idx_open(const char *path, const char *what, int want_dims, Idx *x, char *err, size_t nerr) {
    size_t len;
    memset(x, 0, sizeof *x);
    if (read_file(path, &x->raw, &len, err, nerr)) return -1;
    const unsigned char *p = x->raw;
    if (len < 4 || p[0] != 0 || p[1] != 0) {
        int n = len < 4 ? (int)len : 4;
        char got[32] = "";
        for (int i = 0; i < n; i++) snprintf(got + 3 * i, sizeof got - 3 * (size_t)i, "%02x ", p[i]);
        return util_fail(err, nerr, "%s: not an IDX file: the magic number must start with 00 00, but the file starts with %s%s",
                    path, n ? got : "nothing (it is empty)", n ? "" : "");
    }
    if (p[2] != 0x08)
        return util_fail(err, nerr, "%s: IDX element type 0x%02x is not supported; %s files must hold unsigned bytes (0x08)",
                    path, p[2], what);
    x->ndim = p[3];
    if (x->ndim < 1 || x->ndim > 4) return util_fail(err, nerr, "%s: IDX file with %d dimensions; expected 1 to 4", path, x->ndim);
    if (want_dims == 1 && x->ndim != 1)
        return util_fail(err, nerr, "%s: expected a label file (1 dimension), but it has %d dimensions (an image file?)", path, x->ndim);
    if (want_dims == 0 && x->ndim < 2)
        return util_fail(err, nerr, "%s: expected an image file (2 or more dimensions), but it has 1 dimension (a label file?)", path);
    size_t header = 4 + 4 * (size_t)x->ndim;
    if (len < header) return util_fail(err, nerr, "%s: truncated: the file ends inside its header", path);
    x->recsize = 1;
    size_t have = len - header;
    for (int i = 0; i < x->ndim; i++) {
        x->dim[i] = be32(p + 4 + 4 * i);
        if (i > 0 && x->dim[i] > 0 && (size_t)x->recsize > have / (size_t)x->dim[i]) /* (no overflow: larger than the file) */
            return util_fail(err, nerr, "%s: truncated: the header announces records larger than the %zu bytes of data", path, have);
        if (i > 0) x->recsize *= x->dim[i];
    }
    x->count = x->dim[0];
    if (x->count == 0) return util_fail(err, nerr, "%s: the file holds no records", path);
    if (x->recsize == 0) return util_fail(err, nerr, "%s: records of size 0", path);
    if ((size_t)x->count > have / (size_t)x->recsize)
        return util_fail(err, nerr, "%s: truncated: the header announces %lld records of %lld bytes, but the data ends in record %lld",
                         path, (long long)x->count, (long long)x->recsize, (long long)(have / (size_t)x->recsize + 1));
    size_t need = (size_t)x->count * (size_t)x->recsize;
    if (have < need)
        return util_fail(err, nerr, "%s: truncated: the header announces %lld records of %lld bytes, but the data ends in record %lld",
                    path, (long long)x->count, (long long)x->recsize, (long long)(have / (size_t)x->recsize + 1));
    if (have > need)
        return util_fail(err, nerr, "%s: %zu bytes after the last of its %lld records", path, have - need, (long long)x->count);
    x->data = p + header;
    return 0;
}

/* ---- the expectation and the columns ---- */

void data_field_type(char *buf, size_t n, const DataField *f) {
    if (f->is_class) {
        snprintf(buf, n, "class[%lld]", (long long)f->nclass);
        return;
    }
    size_t k = (size_t)snprintf(buf, n, "f32[");
    for (int i = 0; i < f->rank && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)f->dim[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

void data_expect_free(DataExpect *ex) {
    free(ex->field);
    memset(ex, 0, sizeof *ex);
}

int data_expect_first(const DataExpect *ex, bool target) {
    for (int i = 0; i < ex->nfield; i++)
        if (ex->field[i].is_target == target) return i;
    return -1;
}

/* An empty data set with a column per field of ex. */
static void dataset_begin(Dataset *d, const DataExpect *ex) {
    memset(d, 0, sizeof *d);
    d->ncol = ex->nfield;
    d->col = util_calloc((size_t)ex->nfield + 1, sizeof(DataColumn));
    for (int i = 0; i < ex->nfield; i++) {
        d->col[i].width = ex->field[i].width;
        d->col[i].is_class = ex->field[i].is_class;
        d->col[i].scale = 1;
    }
}

/* IDX and CSV files give one input and at most one target: the model must want no more. */
static int one_input_one_target(const char *path, const char *format, const DataExpect *ex, bool inputs_only, int *in, int *tg,
                                char *err, size_t nerr) {
    int ni = 0, nt = 0;
    for (int i = 0; i < ex->nfield; i++) *(ex->field[i].is_target ? &nt : &ni) += 1;
    *in = data_expect_first(ex, false);
    *tg = inputs_only ? -1 : data_expect_first(ex, true);
    if (ni > 1 || (!inputs_only && nt > 1))
        return util_fail(err, nerr, "%s: %s data gives one input and one target, but the model has %d input%s and %d target%s; "
                         "give each its own file with npy(name = \"file.npy\", ...)", path, format, ni, ni == 1 ? "" : "s", nt,
                         nt == 1 ? "" : "s");
    return 0;
}

int data_load_idx(const char *images, const char *labels, const DataExpect *ex, Dataset *out, char *err, size_t nerr) {
    memset(out, 0, sizeof *out);
    int in, tg;
    if (one_input_one_target(images, "IDX", ex, false, &in, &tg, err, nerr)) return -1;
    const DataField *fi = &ex->field[in], *ft = &ex->field[tg];
    if (!ft->is_class)
        return util_fail(err, nerr, "%s: IDX labels are class indices, but target '%s' is real-valued; declare it class[N]",
                    labels, ft->name);
    Idx im, lb;
    if (idx_open(images, "image", 0, &im, err, nerr)) {
        free(im.raw);
        return -1;
    }
    if (idx_open(labels, "label", 1, &lb, err, nerr)) {
        free(im.raw);
        free(lb.raw);
        return -1;
    }
    int rc = -1;
    char want[64];
    data_field_type(want, sizeof want, fi);
    if (im.recsize != fi->width) {
        char dims[64] = "";
        size_t k = 0;
        for (int i = 1; i < im.ndim; i++) k += (size_t)snprintf(dims + k, sizeof dims - k, "%s%lld", i > 1 ? "x" : "", (long long)im.dim[i]);
        util_fail(err, nerr, "%s: each image is %s = %lld values, but input '%s' is %s (%lld values)", images, dims,
             (long long)im.recsize, fi->name, want, (long long)fi->width);
        goto done;
    }
    if (lb.count != im.count) {
        util_fail(err, nerr, "%s holds %lld labels, but %s holds %lld images", labels, (long long)lb.count, images, (long long)im.count);
        goto done;
    }
    for (int64_t i = 0; i < lb.count; i++)
        if (lb.data[i] >= ft->nclass) {
            util_fail(err, nerr, "%s: record %lld: label %d is out of range for class[%lld] (labels are 0 to %lld)", labels,
                 (long long)i + 1, lb.data[i], (long long)ft->nclass, (long long)ft->nclass - 1);
            goto done;
        }
    dataset_begin(out, ex);
    out->n = im.count;
    DataColumn *x = &out->col[in], *y = &out->col[tg];
    x->u8 = (uint8_t *)im.data; /* the pixels stay where the file was decompressed */
    x->owned = im.raw;
    im.raw = NULL;
    x->scale = 1.0f / 255.0f;
    y->label = util_realloc(NULL, sizeof(int32_t) * (size_t)lb.count);
    for (int64_t i = 0; i < lb.count; i++) y->label[i] = lb.data[i];
    size_t nn = strlen(images) + strlen(labels) + 8;
    out->name = util_realloc(NULL, nn);
    snprintf(out->name, nn, "%s + %s", images, labels);
    rc = 0;
done:
    free(im.raw);
    free(lb.raw);
    return rc;
}

static char *find_file(const char *dir, const char *base) {
    size_t n = strlen(dir) + strlen(base) + 8;
    char *p = util_realloc(NULL, n);
    struct stat st;
    snprintf(p, n, "%s/%s.gz", dir, base);
    if (stat(p, &st) == 0) return p;
    snprintf(p, n, "%s/%s", dir, base);
    if (stat(p, &st) == 0) return p;
    snprintf(p, n, "%s/%s.gz", dir, base);
    return p; /* missing: the loader reports it */
}

int data_load_idx_dir(const char *dir, const char *split, const DataExpect *ex, Dataset *out, char *err, size_t nerr) {
    char ib[64], lb[64];
    snprintf(ib, sizeof ib, "%s-images-idx3-ubyte", split);
    snprintf(lb, sizeof lb, "%s-labels-idx1-ubyte", split);
    char *images = find_file(dir, ib), *labels = find_file(dir, lb);
    int rc = data_load_idx(images, labels, ex, out, err, nerr);
    free(images);
    free(labels);
    return rc;
}

const char *data_fashion_mnist_dir(void) {
    const char *env = getenv("NNC_FASHION_MNIST_DIR");
    return env && *env ? env : "/usr/share/datasets/fashion-mnist";
}

/* ---- CSV ---- */

typedef struct {
    char **field;
    int n, cap;
} Fields;

/* Split a line (modified in place) at commas, trimming blanks. */
static void split_line(char *line, Fields *f) {
    f->n = 0;
    for (char *p = line;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = 0;
        while (isspace((unsigned char)*p)) p++;
        char *end = p + strlen(p);
        while (end > p && isspace((unsigned char)end[-1])) *--end = 0;
        VEC_PUSH(f->field, f->n, f->cap, p);
        if (!comma) break;
        p = comma + 1;
    }
}

static bool parse_number(const char *s, double *v) {
    if (!*s) return false;
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return *end == 0 && errno != ERANGE && isfinite(*v);
}

static const char *shorten(const char *s, char *buf, size_t n) {
    snprintf(buf, n, "%.*s%s", 24, s, strlen(s) > 24 ? "..." : "");
    return buf;
}

/* The targets a CSV file gives: opt's named ones (csv(..., mass = "m", spin = 3)), else the
 * model's one target at target_col / target_name; none for inputs only.  Each gets its field,
 * its column given by name or index (-1: the last columns) and its width in columns. */
typedef struct {
    int field, col, ncol;
    const char *column;
} CsvTargetAt;

static int csv_targets(const char *path, const CsvOptions *opt, const DataExpect *ex, CsvTargetAt *t, int *nt, char *err,
                       size_t nerr) {
    int in, tg, ni = 0;
    *nt = 0;
    if (opt->inputs_only || !opt->ntarget) {
        if (one_input_one_target(path, "CSV", ex, opt->inputs_only, &in, &tg, err, nerr)) return -1;
        if (tg < 0) return 0; /* inputs only */
        t[0] = (CsvTargetAt){tg, opt->target_col, 0, opt->target_name};
        *nt = 1;
    }
    for (int i = 0; i < ex->nfield; i++) ni += !ex->field[i].is_target;
    if (opt->ntarget && ni > 1)
        return util_fail(err, nerr, "%s: CSV data gives one input, the columns the targets leave, but the model has %d inputs; "
                         "give each its own file with npy(name = \"file.npy\", ...)", path, ni);
    for (int k = 0; k < opt->ntarget; k++) {
        int field = -1;
        for (int i = 0; i < ex->nfield; i++)
            if (ex->field[i].is_target && !strcmp(ex->field[i].name, opt->target[k].field)) field = i;
        if (field < 0) return util_fail(err, nerr, "%s: the model has no target '%s'", path, opt->target[k].field);
        t[(*nt)++] = (CsvTargetAt){field, opt->target[k].col, 0, opt->target[k].column};
    }
    for (int k = 0; k < *nt; k++) t[k].ncol = ex->field[t[k].field].is_class ? 1 : (int)ex->field[t[k].field].width;
    return 0;
}

int data_load_csv(const char *path, const CsvOptions *opt, const DataExpect *ex, Dataset *out, char *err, size_t nerr) {
    memset(out, 0, sizeof *out);
    unsigned char *raw;
    size_t len;
    if (read_file(path, &raw, &len, err, nerr)) return -1;
    if (memchr(raw, 0, len)) {
        free(raw);
        return util_fail(err, nerr, "%s: contains a NUL byte; not a text CSV file", path);
    }
    enum { MAX_TARGETS = 64 };
    CsvTargetAt tgt[MAX_TARGETS];
    int nt = 0, in = data_expect_first(ex, false);
    NNC_ASSERT(opt->ntarget <= MAX_TARGETS); /* sema: a target each */
    if (csv_targets(path, opt, ex, tgt, &nt, err, nerr)) {
        free(raw);
        return -1;
    }
    const DataField *fin = &ex->field[in];
    int64_t nfeat = fin->width;
    Fields f = {0};
    int rc = -1, nfields = -1, ntc = 0;
    for (int k = 0; k < nt; k++) ntc += tgt[k].ncol;
    int *role = NULL; /* per column: the target it belongs to, or -1 for the input */
    int64_t cap = 0, records = 0;
    float *x = NULL, *tv[MAX_TARGETS] = {0};
    int32_t *lab[MAX_TARGETS] = {0};
    char sbuf[40];
    int line = 0;
    bool header_done = opt->header == 0, named = false;
    for (int k = 0; k < nt; k++) named |= tgt[k].column != NULL;
    for (char *p = (char *)raw, *next; p && *p; p = next) {
        line++;
        next = strchr(p, '\n');
        if (next) *next++ = 0;
        size_t ll = strlen(p);
        if (ll && p[ll - 1] == '\r') p[ll - 1] = 0;
        char *q = p;
        while (isspace((unsigned char)*q)) q++;
        if (!*q || *q == '#') continue;
        split_line(p, &f);
        if (!header_done) {
            header_done = true;
            int numeric = 0;
            double v;
            for (int i = 0; i < f.n; i++) numeric += parse_number(f.field[i], &v);
            if (opt->header == 1 || numeric == 0) {
                nfields = f.n;
                for (int k = 0; k < nt; k++) {
                    if (!tgt[k].column) continue;
                    for (int i = 0; i < f.n && tgt[k].col < 0; i++)
                        if (!strcmp(f.field[i], tgt[k].column)) tgt[k].col = i;
                    if (tgt[k].col < 0) {
                        util_fail(err, nerr, "%s:%d: the header has no column named '%s'", path, line, tgt[k].column);
                        goto done;
                    }
                }
                continue;
            }
            if (named) {
                for (int k = 0; k < nt; k++)
                    if (tgt[k].column) {
                        util_fail(err, nerr, "%s:%d: the target column is given by name ('%s') but the file has no header row", path,
                                  line, tgt[k].column);
                        goto done;
                    }
            }
        }
        if (nfields < 0) nfields = f.n;
        if (f.n != nfields) {
            util_fail(err, nerr, "%s:%d: record %lld has %d fields, expected %d like the %s", path, line, (long long)records + 1,
                 f.n, nfields, records ? "records before it" : "header");
            goto done;
        }
        if (records == 0) {
            for (int k = 0; k < nt; k++)
                if (tgt[k].col < 0) tgt[k].col = nfields - tgt[k].ncol; /* last */
            for (int k = 0; k < nt; k++)
                if (tgt[k].col + tgt[k].ncol > nfields || nfields - ntc <= 0) {
                    util_fail(err, nerr, "%s:%d: records have %d fields, too few for %d target value%s at column %d and any input",
                              path, line, nfields, tgt[k].ncol, tgt[k].ncol > 1 ? "s" : "", tgt[k].col);
                    goto done;
                }
            role = util_calloc((size_t)nfields + 1, sizeof(int));
            for (int i = 0; i < nfields; i++) role[i] = -1;
            for (int k = 0; k < nt; k++)
                for (int c = tgt[k].col; c < tgt[k].col + tgt[k].ncol; c++) {
                    if (role[c] >= 0) {
                        util_fail(err, nerr, "%s: column %d holds both target '%s' and target '%s'", path, c,
                                  ex->field[tgt[role[c]].field].name, ex->field[tgt[k].field].name);
                        goto done;
                    }
                    role[c] = k;
                }
            if (nfields - ntc != nfeat) {
                char want[64];
                data_field_type(want, sizeof want, fin);
                if (!nt)
                    util_fail(err, nerr, "%s:%d: each record has %d fields, but input '%s' is %s (%lld values)", path, line,
                         nfields, fin->name, want, (long long)nfeat);
                else
                    util_fail(err, nerr, "%s:%d: each record has %d fields: %d target and %d input values, but input '%s' is %s (%lld values)",
                         path, line, nfields, ntc, nfields - ntc, fin->name, want, (long long)nfeat);
                goto done;
            }
        }
        if (records == cap) {
            cap = cap ? 2 * cap : 1024;
            x = util_realloc(x, sizeof(float) * (size_t)(cap * nfeat));
            for (int k = 0; k < nt; k++) {
                if (ex->field[tgt[k].field].is_class)
                    lab[k] = util_realloc(lab[k], sizeof(int32_t) * (size_t)cap);
                else
                    tv[k] = util_realloc(tv[k], sizeof(float) * (size_t)(cap * tgt[k].ncol));
            }
        }
        int64_t fi = 0;
        for (int i = 0; i < f.n; i++) {
            double v;
            if (!parse_number(f.field[i], &v)) {
                if (!*f.field[i])
                    util_fail(err, nerr, "%s:%d: record %lld: field %d is empty", path, line, (long long)records + 1, i + 1);
                else
                    util_fail(err, nerr, "%s:%d: record %lld: field %d ('%s') is not a finite number", path, line,
                         (long long)records + 1, i + 1, shorten(f.field[i], sbuf, sizeof sbuf));
                goto done;
            }
            int k = role[i];
            if (k < 0) {
                x[records * nfeat + fi++] = (float)v;
                continue;
            }
            const DataField *ft = &ex->field[tgt[k].field];
            if (ft->is_class) {
                if (v != floor(v) || v < 0 || v >= (double)ft->nclass) {
                    util_fail(err, nerr, "%s:%d: record %lld: target %s is not a class index of class[%lld] (0 to %lld)",
                         path, line, (long long)records + 1, shorten(f.field[i], sbuf, sizeof sbuf),
                         (long long)ft->nclass, (long long)ft->nclass - 1);
                    goto done;
                }
                lab[k][records] = (int32_t)v;
            } else {
                tv[k][records * tgt[k].ncol + (i - tgt[k].col)] = (float)v;
            }
        }
        records++;
    }
    if (records == 0) {
        util_fail(err, nerr, "%s: no data records", path);
        goto done;
    }
    dataset_begin(out, ex);
    out->n = records;
    out->col[in].f32 = x;
    x = NULL;
    for (int k = 0; k < nt; k++) {
        out->col[tgt[k].field].label = lab[k];
        out->col[tgt[k].field].f32 = tv[k];
        lab[k] = NULL;
        tv[k] = NULL;
    }
    out->name = util_strdup(path);
    rc = 0;
done:
    free(x);
    for (int k = 0; k < nt; k++) {
        free(tv[k]);
        free(lab[k]);
    }
    free(role);
    free(f.field);
    free(raw);
    return rc;
}

void data_free(Dataset *d) {
    for (int c = 0; c < d->ncol; c++) {
        DataColumn *k = &d->col[c];
        if (!k->owned) free(k->u8);
        free(k->owned);
        free(k->f32);
        free(k->label);
    }
    free(d->col);
    free(d->name);
    memset(d, 0, sizeof *d);
}

int64_t data_bytes_held(const Dataset *d) {
    int64_t bytes = 0;
    for (int c = 0; c < d->ncol; c++) {
        const DataColumn *k = &d->col[c];
        if (k->u8 || k->f32 || k->label) bytes += d->n * k->width * (k->u8 ? 1 : 4);
    }
    return bytes;
}

void data_gather(const Dataset *d, int c, const int64_t *idx, int64_t count, void *dst) {
    const DataColumn *k = &d->col[c];
    if (k->is_class) {
        int32_t *label = dst;
        for (int64_t b = 0; b < count; b++) label[b] = k->label ? k->label[idx[b]] : 0;
        return;
    }
    int64_t w = k->width;
    for (int64_t b = 0; b < count; b++) {
        int64_t i = idx[b];
        float *to = (float *)dst + b * w;
        if (k->u8) {
            const uint8_t *src = k->u8 + i * w;
            for (int64_t f = 0; f < w; f++) to[f] = (float)src[f] * k->scale;
        } else if (k->f32) {
            memcpy(to, k->f32 + i * w, sizeof(float) * (size_t)w);
        } else {
            memset(to, 0, sizeof(float) * (size_t)w);
        }
    }
}

/* ---- NPY: one file per field ---- */

int data_load_npy(const NpyArray *arr, int narr, const DataExpect *ex, bool inputs_only, Dataset *out, char *err, size_t nerr) {
    dataset_begin(out, ex);
    out->n = -1;
    const char *first = NULL;
    size_t namelen = 1;
    for (int f = 0; f < ex->nfield; f++) {
        const DataField *fd = &ex->field[f];
        if (inputs_only && fd->is_target) continue;
        const NpyArray *a = NULL;
        for (int i = 0; i < narr && !a; i++)
            if (!strcmp(arr[i].name, fd->name)) a = &arr[i];
        if (!a) {
            util_fail(err, nerr, "the npy data source gives no array for %s '%s'", fd->is_target ? "target" : "input", fd->name);
            goto fail;
        }
        int rank;
        int64_t shape[NPY_MAX_RANK];
        DataColumn *k = &out->col[f];
        int rc = fd->is_class ? npy_read_labels_i32(a->path, &k->label, &rank, shape, err, nerr)
                              : npy_read_f32(a->path, &k->f32, &rank, shape, err, nerr);
        if (rc) goto fail;
        int64_t per = 1;
        for (int i = 1; i < rank; i++) per *= shape[i];
        char want[64], got[96] = "";
        data_field_type(want, sizeof want, fd);
        size_t g = 0;
        for (int i = 1; i < rank && g < sizeof got; i++) g += (size_t)snprintf(got + g, sizeof got - g, "%s%lld", i > 1 ? "," : "", (long long)shape[i]);
        if (rank < 1 || shape[0] == 0) {
            util_fail(err, nerr, "%s: %s, but %s '%s' needs one %s per sample", a->path, rank < 1 ? "a 0-d array" : "an array of 0 samples",
                      fd->is_target ? "target" : "input", fd->name, want);
            goto fail;
        }
        if (per != fd->width) {
            util_fail(err, nerr, "%s: %lld samples of shape [%s] (%lld value%s each), but %s '%s' is %s (%lld value%s)", a->path,
                      (long long)shape[0], got, (long long)per, per == 1 ? "" : "s", fd->is_target ? "target" : "input", fd->name,
                      want, (long long)fd->width, fd->width == 1 ? "" : "s");
            goto fail;
        }
        if (out->n >= 0 && shape[0] != out->n) {
            util_fail(err, nerr, "%s: %lld samples, but %s has %lld; every array of a data set has one row per sample", a->path,
                      (long long)shape[0], first, (long long)out->n);
            goto fail;
        }
        for (int64_t i = 0; fd->is_class && i < shape[0]; i++)
            if (k->label[i] < 0 || k->label[i] >= fd->nclass) {
                util_fail(err, nerr, "%s: sample %lld: label %d is out of range for class[%lld] (labels are 0 to %lld)", a->path,
                          (long long)i + 1, k->label[i], (long long)fd->nclass, (long long)fd->nclass - 1);
                goto fail;
            }
        out->n = shape[0];
        if (!first) first = a->path;
        namelen += strlen(a->path) + 3;
    }
    out->name = util_calloc(namelen + 1, 1);
    for (int f = 0; f < ex->nfield; f++)
        for (int i = 0; i < narr; i++)
            if (!strcmp(arr[i].name, ex->field[f].name) && (out->col[f].f32 || out->col[f].label)) {
                if (*out->name) strcat(out->name, " + ");
                strcat(out->name, arr[i].path);
            }
    return 0;
fail:
    data_free(out);
    return -1;
}

int data_load_inputs(const char *path, const DataExpect *ex, Dataset *out, char *err, size_t nerr) {
    memset(out, 0, sizeof *out);
    int in, tg;
    if (one_input_one_target(path, "a file of", ex, true, &in, &tg, err, nerr)) return -1;
    const DataField *fin = &ex->field[in];
    unsigned char head[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return util_fail(err, nerr, "%s: cannot open: %s", path, strerror(errno));
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    bool gz = got >= 2 && head[0] == 0x1f && head[1] == 0x8b;
    if (gz) { /* look inside */
        gzFile z = gzopen(path, "rb");
        got = z ? (size_t)gzread(z, head, sizeof head) : 0;
        if (z) gzclose(z);
    }
    bool npy = npy_is_npy(head, got), idx = got >= 4 && head[0] == 0 && head[1] == 0 && head[2] == 0x08;
    bool ext_npy = util_ends_with(path, ".npy"), ext_csv = util_ends_with(path, ".csv") || util_ends_with(path, ".csv.gz");
    bool ext_idx = util_ends_with(path, "-ubyte") || util_ends_with(path, "-ubyte.gz") || util_ends_with(path, ".idx");
    const char *is = npy ? "an NPY file" : idx ? "an IDX file" : "text (CSV)";
    if ((ext_npy && !npy) || (ext_csv && (npy || idx)) || (ext_idx && !idx))
        return util_fail(err, nerr, "%s: the name says %s, but the content is %s", path,
                    ext_npy ? "NPY" : ext_csv ? "CSV" : "IDX", is);
    if (npy) {
        if (gz) return util_fail(err, nerr, "%s: a gzip-compressed NPY file; decompress it first", path);
        float *v;
        int rank;
        int64_t shape[NPY_MAX_RANK];
        if (npy_read_f32(path, &v, &rank, shape, err, nerr)) return -1;
        int64_t per = 1;
        for (int i = 1; i < rank; i++) per *= shape[i];
        if (rank < 1 || per != fin->width || shape[0] == 0) {
            free(v);
            return util_fail(err, nerr, "%s: an array of %s%lld samples of %lld values, but input '%s' has %lld values per sample", path,
                        rank < 1 ? "0-d shape: " : "", (long long)(rank ? shape[0] : 0), (long long)per, fin->name,
                        (long long)fin->width);
        }
        dataset_begin(out, ex);
        out->n = shape[0];
        out->col[in].f32 = v;
        out->name = util_strdup(path);
        return 0;
    }
    if (idx) {
        Idx im;
        if (idx_open(path, "image", 0, &im, err, nerr)) {
            free(im.raw);
            return -1;
        }
        if (im.recsize != fin->width) {
            free(im.raw);
            return util_fail(err, nerr, "%s: each record is %lld values, but input '%s' has %lld", path, (long long)im.recsize,
                        fin->name, (long long)fin->width);
        }
        dataset_begin(out, ex);
        out->n = im.count;
        out->col[in].u8 = (uint8_t *)im.data;
        out->col[in].owned = im.raw;
        out->col[in].scale = 1.0f / 255.0f;
        out->name = util_strdup(path);
        return 0;
    }
    CsvOptions co = {.target_col = -1, .header = -1, .inputs_only = true};
    return data_load_csv(path, &co, ex, out, err, nerr);
}
