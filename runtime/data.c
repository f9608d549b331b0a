/* data.c: IDX and CSV loaders with full validation, and batch gathering (see data.h).
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
    for (int i = 0; i < x->ndim; i++) {
        x->dim[i] = be32(p + 4 + 4 * i);
        if (i > 0) x->recsize *= x->dim[i];
    }
    x->count = x->dim[0];
    if (x->count == 0) return util_fail(err, nerr, "%s: the file holds no records", path);
    if (x->recsize == 0) return util_fail(err, nerr, "%s: records of size 0", path);
    size_t need = (size_t)x->count * (size_t)x->recsize;
    size_t have = len - header;
    if (have < need)
        return util_fail(err, nerr, "%s: truncated: the header announces %lld records of %lld bytes, but the data ends in record %lld",
                    path, (long long)x->count, (long long)x->recsize, (long long)(have / (size_t)x->recsize + 1));
    if (have > need)
        return util_fail(err, nerr, "%s: %zu bytes after the last of its %lld records", path, have - need, (long long)x->count);
    x->data = p + header;
    return 0;
}

static void shape_text(char *buf, size_t n, const DataExpect *ex) {
    size_t k = (size_t)snprintf(buf, n, "f32[");
    for (int i = 0; i < ex->input_rank && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)ex->input_dim[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

int data_load_idx(const char *images, const char *labels, const DataExpect *ex, Dataset *out, char *err, size_t nerr) {
    memset(out, 0, sizeof *out);
    if (!ex->target_class)
        return util_fail(err, nerr, "%s: IDX labels are class indices, but target '%s' is real-valued; declare it class[N]",
                    labels, ex->target_name);
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
    shape_text(want, sizeof want, ex);
    if (im.recsize != ex->nfeat) {
        char dims[64] = "";
        size_t k = 0;
        for (int i = 1; i < im.ndim; i++) k += (size_t)snprintf(dims + k, sizeof dims - k, "%s%lld", i > 1 ? "x" : "", (long long)im.dim[i]);
        util_fail(err, nerr, "%s: each image is %s = %lld values, but input '%s' is %s (%lld values)", images, dims,
             (long long)im.recsize, ex->input_name, want, (long long)ex->nfeat);
        goto done;
    }
    if (lb.count != im.count) {
        util_fail(err, nerr, "%s holds %lld labels, but %s holds %lld images", labels, (long long)lb.count, images, (long long)im.count);
        goto done;
    }
    for (int64_t i = 0; i < lb.count; i++)
        if (lb.data[i] >= ex->nclass) {
            util_fail(err, nerr, "%s: record %lld: label %d is out of range for class[%lld] (labels are 0 to %lld)", labels,
                 (long long)i + 1, lb.data[i], (long long)ex->nclass, (long long)ex->nclass - 1);
            goto done;
        }
    out->n = im.count;
    out->nfeat = im.recsize;
    out->u8 = (uint8_t *)im.data; /* the pixels stay where the file was decompressed */
    out->owned = im.raw;
    im.raw = NULL;
    out->scale = 1.0f / 255.0f;
    out->target_class = true;
    out->ntarget = 1;
    out->label = util_realloc(NULL, sizeof(int32_t) * (size_t)lb.count);
    for (int64_t i = 0; i < lb.count; i++) out->label[i] = lb.data[i];
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

int data_load_csv(const char *path, const CsvOptions *opt, const DataExpect *ex, Dataset *out, char *err, size_t nerr) {
    memset(out, 0, sizeof *out);
    unsigned char *raw;
    size_t len;
    if (read_file(path, &raw, &len, err, nerr)) return -1;
    if (memchr(raw, 0, len)) {
        free(raw);
        return util_fail(err, nerr, "%s: contains a NUL byte; not a text CSV file", path);
    }
    Fields f = {0};
    int rc = -1, nfields = -1, first_target = -1;
    int ntc = opt->inputs_only ? 0 : ex->target_class ? 1 : (int)ex->ntarget;
    int64_t cap = 0, records = 0;
    float *x = NULL, *tv = NULL;
    int32_t *lab = NULL;
    char sbuf[40];
    int line = 0;
    bool header_done = opt->header == 0;
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
                if (opt->target_name) {
                    for (int i = 0; i < f.n; i++)
                        if (!strcmp(f.field[i], opt->target_name)) first_target = i;
                    if (first_target < 0) {
                        util_fail(err, nerr, "%s:%d: the header has no column named '%s'", path, line, opt->target_name);
                        goto done;
                    }
                }
                continue;
            }
            if (opt->target_name) {
                util_fail(err, nerr, "%s:%d: the target column is given by name ('%s') but the file has no header row", path,
                     line, opt->target_name);
                goto done;
            }
        }
        if (nfields < 0) nfields = f.n;
        if (f.n != nfields) {
            util_fail(err, nerr, "%s:%d: record %lld has %d fields, expected %d like the %s", path, line, (long long)records + 1,
                 f.n, nfields, records ? "records before it" : "header");
            goto done;
        }
        if (first_target < 0) first_target = opt->target_col >= 0 ? opt->target_col : nfields - ntc;
        if (records == 0) {
            if (!opt->inputs_only && (first_target + ntc > nfields || nfields - ntc <= 0)) {
                util_fail(err, nerr, "%s:%d: records have %d fields, too few for %d target value%s at column %d and any input",
                     path, line, nfields, ntc, ntc > 1 ? "s" : "", first_target);
                goto done;
            }
            if (nfields - ntc != ex->nfeat) {
                char want[64];
                shape_text(want, sizeof want, ex);
                if (opt->inputs_only)
                    util_fail(err, nerr, "%s:%d: each record has %d fields, but input '%s' is %s (%lld values)", path, line,
                         nfields, ex->input_name, want, (long long)ex->nfeat);
                else
                    util_fail(err, nerr, "%s:%d: each record has %d fields: %d target and %d input values, but input '%s' is %s (%lld values)",
                         path, line, nfields, ntc, nfields - ntc, ex->input_name, want, (long long)ex->nfeat);
                goto done;
            }
        }
        if (records == cap) {
            cap = cap ? 2 * cap : 1024;
            x = util_realloc(x, sizeof(float) * (size_t)(cap * ex->nfeat));
            if (ex->target_class && ntc)
                lab = util_realloc(lab, sizeof(int32_t) * (size_t)cap);
            else if (ntc)
                tv = util_realloc(tv, sizeof(float) * (size_t)(cap * ntc));
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
            int t = opt->inputs_only ? -1 : i - first_target;
            if (t >= 0 && t < ntc) {
                if (ex->target_class) {
                    if (v != floor(v) || v < 0 || v >= (double)ex->nclass) {
                        util_fail(err, nerr, "%s:%d: record %lld: target %s is not a class index of class[%lld] (0 to %lld)",
                             path, line, (long long)records + 1, shorten(f.field[i], sbuf, sizeof sbuf),
                             (long long)ex->nclass, (long long)ex->nclass - 1);
                        goto done;
                    }
                    lab[records] = (int32_t)v;
                } else {
                    tv[records * ntc + t] = (float)v;
                }
            } else {
                x[records * ex->nfeat + fi++] = (float)v;
            }
        }
        records++;
    }
    if (records == 0) {
        util_fail(err, nerr, "%s: no data records", path);
        goto done;
    }
    out->n = records;
    out->nfeat = ex->nfeat;
    out->f32 = x;
    out->scale = 1;
    out->target_class = ex->target_class && ntc;
    out->ntarget = ntc;
    out->label = lab;
    out->target = tv;
    out->name = util_strdup(path);
    x = NULL;
    tv = NULL;
    lab = NULL;
    rc = 0;
done:
    free(x);
    free(tv);
    free(lab);
    free(f.field);
    free(raw);
    return rc;
}

void data_free(Dataset *d) {
    if (!d->owned) free(d->u8);
    free(d->owned);
    free(d->f32);
    free(d->label);
    free(d->target);
    free(d->name);
    memset(d, 0, sizeof *d);
}

void data_gather(const Dataset *d, const int64_t *idx, int64_t count, float *x, int32_t *label, float *target) {
    int64_t nf = d->nfeat;
    for (int64_t b = 0; b < count; b++) {
        int64_t i = idx[b];
        float *dst = x + b * nf;
        if (d->u8) {
            const uint8_t *src = d->u8 + i * nf;
            for (int64_t f = 0; f < nf; f++) dst[f] = (float)src[f] * d->scale;
        } else {
            memcpy(dst, d->f32 + i * nf, sizeof(float) * (size_t)nf);
        }
        if (d->target_class && label && d->label)
            label[b] = d->label[i];
        else if (!d->target_class && target && d->target && d->ntarget)
            memcpy(target + b * d->ntarget, d->target + i * d->ntarget, sizeof(float) * (size_t)d->ntarget);
    }
}

int data_load_inputs(const char *path, const DataExpect *ex, Dataset *out, char *err, size_t nerr) {
    memset(out, 0, sizeof *out);
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
        if (rank < 1 || per != ex->nfeat || shape[0] == 0) {
            free(v);
            return util_fail(err, nerr, "%s: an array of %s%lld samples of %lld values, but input '%s' has %lld values per sample", path,
                        rank < 1 ? "0-d shape: " : "", (long long)(rank ? shape[0] : 0), (long long)per, ex->input_name,
                        (long long)ex->nfeat);
        }
        out->n = shape[0];
        out->nfeat = per;
        out->f32 = v;
        out->scale = 1;
        out->name = util_strdup(path);
        return 0;
    }
    if (idx) {
        Idx im;
        if (idx_open(path, "image", 0, &im, err, nerr)) {
            free(im.raw);
            return -1;
        }
        if (im.recsize != ex->nfeat) {
            free(im.raw);
            return util_fail(err, nerr, "%s: each record is %lld values, but input '%s' has %lld", path, (long long)im.recsize,
                        ex->input_name, (long long)ex->nfeat);
        }
        out->n = im.count;
        out->nfeat = im.recsize;
        out->u8 = (uint8_t *)im.data;
        out->owned = im.raw;
        out->scale = 1.0f / 255.0f;
        out->name = util_strdup(path);
        return 0;
    }
    CsvOptions co = {.target_col = -1, .header = -1, .inputs_only = true};
    return data_load_csv(path, &co, ex, out, err, nerr);
}
