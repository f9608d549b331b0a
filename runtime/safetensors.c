/* safetensors.c: the .safetensors writer (deterministic, atomic) and the validating reader
 * (see safetensors.h).  The reader loads the whole file and checks the header completely
 * before it hands out a pointer into the data: sizes, UTF-8, JSON, dtypes, shapes, offsets
 * against the file's length, duplicate names and overlaps. */
#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c writes and reads tensor data as it is in memory: it needs a little-endian host"
#endif

#define MAX_HEADER 100000000ull      /* bytes of JSON; real headers are far smaller */
#define MAX_EXACT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact doubles */
#define DTYPE_LIST "F32, F64, I32, I64, U8"

static const struct {
    const char *name;
    size_t size;
} dtypes[ST_NDTYPES] = {
    [ST_F32] = {"F32", 4}, [ST_F64] = {"F64", 8}, [ST_I32] = {"I32", 4}, [ST_I64] = {"I64", 8}, [ST_U8] = {"U8", 1},
};
/* In the format, but not read by nnc: such files get a clearer message than "unknown". */
static const char *const other_dtypes[] = {"BOOL", "I8", "I16", "U16", "U32", "U64", "F16", "BF16",
                                           "F8_E4M3", "F8_E5M2", NULL};

struct SafeTensors {
    char *buf;                /* the whole file */
    cJSON *header;            /* tensor names point into it */
    const cJSON *meta;        /* its "__metadata__" object, or NULL */
    StTensor *t;              /* in file order */
    const StTensor **by_name; /* sorted by name, for st_find */
    int n;
};

const char *st_dtype_name(StDtype d) { return (unsigned)d < ST_NDTYPES ? dtypes[d].name : "?"; }
size_t st_dtype_size(StDtype d) { return (unsigned)d < ST_NDTYPES ? dtypes[d].size : 0; }

/* product(shape) * size in *bytes; false when a dimension is negative or it overflows. */
static bool shape_bytes(int rank, const int64_t *shape, size_t size, size_t *bytes) {
    size_t b = size;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > SIZE_MAX) return false;
        if (shape[i] != 0 && b > SIZE_MAX / (size_t)shape[i]) return false;
        b *= (size_t)shape[i];
    }
    *bytes = b;
    return true;
}

/* "F32[3,4]", for messages. */
static const char *describe(char *buf, size_t n, const char *dtype, int rank, const int64_t *shape) {
    int k = snprintf(buf, n, "%s[", dtype);
    for (int i = 0; i < rank && k > 0 && (size_t)k < n; i++) k += snprintf(buf + k, n - (size_t)k, "%s%" PRId64, i ? "," : "", shape[i]);
    if (k > 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, "]");
    return buf;
}

/* Length of the well-formed UTF-8 character at s (n bytes left), or 0. */
static size_t utf8_char(const unsigned char *s, size_t n) {
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000}; /* no overlong forms */
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 1) return 1;
    if (len == 0 || len > n) return 0;
    uint32_t cp = c & (0x7fu >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[k] & 0x3f);
    }
    return cp < least[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : len;
}

/* Offset of the first byte that is not well-formed UTF-8, or n. */
static size_t utf8_prefix(const void *p, size_t n) {
    const unsigned char *s = p;
    size_t i = 0, k;
    while (i < n && (k = utf8_char(s + i, n - i)) > 0) i += k;
    return i;
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp((*(const StTensor *const *)a)->name, (*(const StTensor *const *)b)->name);
}
static int cmp_key_name(const void *key, const void *b) { return strcmp(key, (*(const StTensor *const *)b)->name); }
static int cmp_by_data(const void *a, const void *b) {
    const char *x = (*(const StTensor *const *)a)->data, *y = (*(const StTensor *const *)b)->data;
    return (x > y) - (x < y);
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* A name given twice among n (sorts `names`), or NULL. */
static const char *duplicate(const char **names, int n) {
    if (n > 1) qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) return names[i];
    return NULL;
}

/* ---- writing ---- */

static void json_string(StrBuf *b, const char *s) {
    sb_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') sb_putc(b, '\\');
        if (*p < 0x20) sb_printf(b, "\\u%04x", *p);
        else sb_putc(b, (char)*p);
    }
    sb_putc(b, '"');
}

/* Each tensor and metadata entry makes sense; 0 or -1 with a message. */
static int check_input(const char *path, const StTensor *t, int n, const char *const *keys,
                       const char *const *values, int nmeta, char *err, size_t nerr) {
    if (n < 0 || nmeta < 0 || (n > 0 && !t) || (nmeta > 0 && (!keys || !values)))
        return util_fail(err, nerr, "%s: cannot write: %d tensors and %d metadata entries were asked for without arrays to match",
                    path, n, nmeta);
    for (int i = 0; i < n; i++) {
        const char *name = t[i].name;
        char what[256];
        size_t bytes;
        if (!name || !name[0] || strcmp(name, "__metadata__") == 0 || utf8_prefix(name, strlen(name)) < strlen(name))
            return util_fail(err, nerr, "%s: cannot write tensor %d: its name must be non-empty UTF-8 and not __metadata__", path, i);
        if ((unsigned)t[i].dtype >= ST_NDTYPES)
            return util_fail(err, nerr, "%s: cannot write tensor '%s': dtype %d is not one of " DTYPE_LIST, path, name, (int)t[i].dtype);
        if (t[i].rank < 0 || t[i].rank > ST_MAX_RANK)
            return util_fail(err, nerr, "%s: cannot write tensor '%s': rank %d, expected 0 to %d", path, name, t[i].rank, ST_MAX_RANK);
        describe(what, sizeof what, st_dtype_name(t[i].dtype), t[i].rank, t[i].shape);
        if (!shape_bytes(t[i].rank, t[i].shape, st_dtype_size(t[i].dtype), &bytes))
            return util_fail(err, nerr, "%s: cannot write tensor '%s': shape %s has a negative dimension or is too large", path, name, what);
        if (bytes != t[i].bytes || (bytes > 0 && !t[i].data))
            return util_fail(err, nerr, "%s: cannot write tensor '%s': %s needs %zu bytes of data, but %zu were given%s", path, name,
                        what, bytes, t[i].bytes, t[i].data ? "" : " (and no data pointer)");
    }
    for (int i = 0; i < nmeta; i++)
        if (!keys[i] || !values[i] || utf8_prefix(keys[i], strlen(keys[i])) < strlen(keys[i]) ||
            utf8_prefix(values[i], strlen(values[i])) < strlen(values[i]))
            return util_fail(err, nerr, "%s: cannot write metadata entry %d: its key and value must be UTF-8 strings", path, i);
    const char **names = util_calloc((size_t)(n > nmeta ? n : nmeta), sizeof *names);
    for (int i = 0; i < n; i++) names[i] = t[i].name;
    const char *dup = duplicate(names, n);
    int rc = dup ? util_fail(err, nerr, "%s: cannot write: tensor name '%s' is given twice", path, dup) : 0;
    for (int i = 0; i < nmeta; i++) names[i] = keys[i];
    if (rc == 0 && (dup = duplicate(names, nmeta)))
        rc = util_fail(err, nerr, "%s: cannot write: metadata key '%s' is given twice", path, dup);
    free(names);
    return rc;
}

/* The JSON header, padded with spaces so that 8 + its length is a multiple of 8. */
static void build_header(StrBuf *h, const StTensor *t, int n, const char *const *keys, const char *const *values, int nmeta) {
    sb_putc(h, '{');
    if (nmeta > 0) {
        sb_puts(h, "\"__metadata__\":{");
        for (int i = 0; i < nmeta; i++) {
            if (i) sb_putc(h, ',');
            json_string(h, keys[i]);
            sb_putc(h, ':');
            json_string(h, values[i]);
        }
        sb_putc(h, '}');
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (i || nmeta > 0) sb_putc(h, ',');
        json_string(h, t[i].name);
        sb_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(t[i].dtype));
        for (int d = 0; d < t[i].rank; d++) sb_printf(h, "%s%" PRId64, d ? "," : "", t[i].shape[d]);
        sb_printf(h, "],\"data_offsets\":[%zu,%zu]}", off, off + t[i].bytes);
        off += t[i].bytes;
    }
    sb_putc(h, '}');
    while ((8 + h->len) % 8) sb_putc(h, ' ');
}

/* fsync the directory holding `path`, so the rename is durable.  0, or an errno value. */
static int sync_dir(const char *path) {
    char *dir = util_strdup(path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[slash == dir] = 0; /* "/x" -> "/" */
    int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), e = 0;
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL)) e = errno; /* EINVAL: cannot sync directories here */
    if (fd >= 0) close(fd);
    free(dir);
    return e;
}

int st_write_atomic(const char *path, const StTensor *t, int n, const char *const *meta_keys,
                    const char *const *meta_values, int nmeta, char *err, size_t nerr) {
    if (check_input(path, t, n, meta_keys, meta_values, nmeta, err, nerr) != 0) return -1;
    StrBuf h = {0}, tmp = {0};
    build_header(&h, t, n, meta_keys, meta_values, nmeta);
    unsigned char size[8];
    for (int k = 0; k < 8; k++) size[k] = (unsigned char)((uint64_t)h.len >> (8 * k));
    sb_printf(&tmp, "%s.tmp.%d", path, (int)getpid());

    int rc = -1;
    FILE *f = fopen(tmp.s, "wb");
    if (!f) {
        util_fail(err, nerr, "%s: cannot create the temporary file %s: %s", path, tmp.s, strerror(errno));
        goto done;
    }
    errno = 0;
    bool ok = fwrite(size, 1, 8, f) == 8 && fwrite(h.s, 1, h.len, f) == h.len;
    for (int i = 0; ok && i < n; i++) ok = t[i].bytes == 0 || fwrite(t[i].data, 1, t[i].bytes, f) == t[i].bytes;
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        util_fail(err, nerr, "%s: cannot write the temporary file %s: %s", path, tmp.s, e ? strerror(e) : "short write");
        unlink(tmp.s);
        goto done;
    }
    if (rename(tmp.s, path) != 0) {
        util_fail(err, nerr, "%s: cannot rename the temporary file %s to it: %s", path, tmp.s, strerror(errno));
        unlink(tmp.s);
        goto done;
    }
    if ((e = sync_dir(path)) != 0) {
        util_fail(err, nerr, "%s: written, but syncing its directory failed, so it may not survive a crash: %s", path, strerror(e));
        goto done;
    }
    rc = 0;
done:
    sb_free(&h);
    sb_free(&tmp);
    return rc;
}

/* ---- reading ---- */

/* A JSON number that is a whole number in [0, 2^53). */
static bool json_count(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double v = j->valuedouble;
    if (!(v >= 0 && v < MAX_EXACT) || v != floor(v)) return false;
    *out = (uint64_t)v;
    return true;
}

/* One header entry -> *t, checked against the data area data[0..dlen) (which starts at file
 * offset `base`). */
static int parse_tensor(const char *path, const cJSON *e, const unsigned char *data, size_t dlen, size_t base,
                        StTensor *t, char *err, size_t nerr) {
    const char *name = e->string;
    t->name = name;
    if (!cJSON_IsObject(e))
        return util_fail(err, nerr, "%s: tensor '%s' should be an object with dtype, shape and data_offsets", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype"), *sh = cJSON_GetObjectItemCaseSensitive(e, "shape"),
                *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets"), *d;
    if (!cJSON_IsString(dt))
        return util_fail(err, nerr, "%s: tensor '%s' has no \"dtype\" string (expected one of " DTYPE_LIST ")", path, name);
    int k = 0;
    while (k < ST_NDTYPES && strcmp(dt->valuestring, dtypes[k].name) != 0) k++;
    if (k == ST_NDTYPES) {
        for (int o = 0; other_dtypes[o]; o++)
            if (strcmp(dt->valuestring, other_dtypes[o]) == 0)
                return util_fail(err, nerr, "%s: tensor '%s' has dtype %s, which nnc does not read (it reads " DTYPE_LIST ")",
                            path, name, dt->valuestring);
        return util_fail(err, nerr, "%s: tensor '%s' has unknown dtype \"%s\" (expected one of " DTYPE_LIST ")", path, name,
                    dt->valuestring);
    }
    t->dtype = (StDtype)k;

    if (!cJSON_IsArray(sh)) return util_fail(err, nerr, "%s: tensor '%s' has no \"shape\" array", path, name);
    if (cJSON_GetArraySize(sh) > ST_MAX_RANK)
        return util_fail(err, nerr, "%s: tensor '%s' has %d dimensions; at most %d are supported", path, name,
                    cJSON_GetArraySize(sh), ST_MAX_RANK);
    cJSON_ArrayForEach(d, sh) {
        uint64_t v;
        if (!json_count(d, &v))
            return util_fail(err, nerr, "%s: tensor '%s': shape entry %d is not a whole number from 0 to 2^53", path, name, t->rank);
        t->shape[t->rank++] = (int64_t)v;
    }
    char what[256];
    describe(what, sizeof what, dt->valuestring, t->rank, t->shape);
    if (!shape_bytes(t->rank, t->shape, st_dtype_size(t->dtype), &t->bytes))
        return util_fail(err, nerr, "%s: tensor '%s' is %s, which is too large to address", path, name, what);

    uint64_t begin, end;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_count(off->child, &begin) ||
        !json_count(off->child->next, &end))
        return util_fail(err, nerr, "%s: tensor '%s' has no \"data_offsets\" pair [begin, end] of whole numbers", path, name);
    if (end < begin)
        return util_fail(err, nerr, "%s: tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64 "], which end before they begin",
                    path, name, begin, end);
    if (end - begin != t->bytes)
        return util_fail(err, nerr, "%s: tensor '%s' is %s, which is %zu bytes, but its data_offsets [%" PRIu64 ", %" PRIu64
                    "] span %" PRIu64 " bytes", path, name, what, t->bytes, begin, end, end - begin);
    if (end > dlen)
        return util_fail(err, nerr, "%s: tensor '%s' needs %zu bytes at file offset %" PRIu64 ", but the file ends after %zu bytes",
                    path, name, t->bytes, base + begin, base + dlen);
    t->data = data + begin;
    return 0;
}

static int check_meta(const char *path, const cJSON *m, char *err, size_t nerr) {
    if (!cJSON_IsObject(m)) return util_fail(err, nerr, "%s: \"__metadata__\" should be an object of strings", path);
    int n = cJSON_GetArraySize(m), i = 0;
    const char **keys = util_calloc((size_t)n, sizeof *keys);
    const cJSON *e;
    cJSON_ArrayForEach(e, m) {
        keys[i++] = e->string;
        if (!cJSON_IsString(e)) {
            free(keys);
            return util_fail(err, nerr, "%s: metadata entry '%s' is not a string (all metadata values must be strings)", path, e->string);
        }
    }
    const char *dup = duplicate(keys, n);
    int rc = dup ? util_fail(err, nerr, "%s: metadata key '%s' appears twice in the header", path, dup) : 0;
    free(keys);
    return rc;
}

/* No name twice, no two tensors sharing a byte; builds st->by_name. */
static int check_layout(SafeTensors *st, const char *path, const unsigned char *data, char *err, size_t nerr) {
    int rc = 0;
    const StTensor **by_data = util_calloc((size_t)st->n, sizeof *by_data);
    st->by_name = util_calloc((size_t)st->n, sizeof *st->by_name);
    for (int i = 0; i < st->n; i++) st->by_name[i] = by_data[i] = &st->t[i];
    if (st->n > 1) {
        qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, cmp_by_name);
        qsort(by_data, (size_t)st->n, sizeof *by_data, cmp_by_data);
    }
    for (int i = 1; rc == 0 && i < st->n; i++)
        if (strcmp(st->by_name[i - 1]->name, st->by_name[i]->name) == 0)
            rc = util_fail(err, nerr, "%s: tensor '%s' appears twice in the header", path, st->by_name[i]->name);
    const StTensor *prev = NULL;
    for (int i = 0; rc == 0 && i < st->n; i++) {
        const StTensor *t = by_data[i];
        if (t->bytes == 0) continue; /* occupies nothing */
        size_t pb = prev ? (size_t)((const unsigned char *)prev->data - data) : 0, tb = (size_t)((const unsigned char *)t->data - data);
        if (prev && pb + prev->bytes > tb)
            rc = util_fail(err, nerr, "%s: tensors '%s' (data_offsets [%zu, %zu]) and '%s' ([%zu, %zu]) overlap", path, prev->name,
                      pb, pb + prev->bytes, t->name, tb, tb + t->bytes);
        prev = t;
    }
    free(by_data);
    return rc;
}

static int parse(SafeTensors *st, const char *path, size_t len, char *err, size_t nerr) {
    const unsigned char *b = (const unsigned char *)st->buf;
    if (len < 8)
        return util_fail(err, nerr, "%s: not a safetensors file: it has %zu bytes, fewer than the 8-byte header size it should start with",
                    path, len);
    uint64_t hlen = 0;
    for (int k = 0; k < 8; k++) hlen |= (uint64_t)b[k] << (8 * k);
    if (hlen > MAX_HEADER)
        return util_fail(err, nerr, "%s: not a safetensors file, or corrupt: it starts with a header size of %" PRIu64
                    " bytes (expected at most %llu)", path, hlen, MAX_HEADER);
    if (hlen > len - 8)
        return util_fail(err, nerr, "%s: truncated: the header should be %" PRIu64 " bytes of JSON, but only %zu bytes follow the 8-byte size",
                    path, hlen, len - 8);
    if (hlen < 2 || b[8] != '{')
        return util_fail(err, nerr, "%s: not a safetensors file: the header should be a JSON object starting with '{'", path);
    size_t good = utf8_prefix(b + 8, hlen);
    if (good < hlen) return util_fail(err, nerr, "%s: the header is not valid UTF-8 (at byte %zu of the header)", path, good);
    const char *json = st->buf + 8, *end = NULL;
    st->header = cJSON_ParseWithLengthOpts(json, hlen, &end, 0);
    if (!st->header)
        return util_fail(err, nerr, "%s: the header is not valid JSON (error near byte %td of the %" PRIu64 "-byte header)", path,
                    end ? end - json : 0, hlen);
    for (const char *p = end; p < json + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return util_fail(err, nerr, "%s: the header has stray bytes after its JSON object "
                        "(at byte %td of the header; only spaces may pad it)", path, p - json);
    if (!cJSON_IsObject(st->header)) return util_fail(err, nerr, "%s: the header should be a JSON object of tensors", path);

    const unsigned char *data = b + 8 + hlen;
    size_t dlen = len - 8 - (size_t)hlen;
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, st->header) n += strcmp(e->string, "__metadata__") != 0;
    st->t = util_calloc((size_t)n, sizeof *st->t);
    cJSON_ArrayForEach(e, st->header) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (st->meta) return util_fail(err, nerr, "%s: \"__metadata__\" appears twice in the header", path);
            if (check_meta(path, e, err, nerr) != 0) return -1;
            st->meta = e;
        } else if (parse_tensor(path, e, data, dlen, 8 + (size_t)hlen, &st->t[st->n++], err, nerr) != 0) {
            return -1;
        }
    }
    return check_layout(st, path, data, err, nerr);
}

SafeTensors *st_open(const char *path, char *err, size_t nerr) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        util_fail(err, nerr, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(sb.st_mode)) {
        util_fail(err, nerr, "%s: is a directory, not a safetensors file", path);
        return NULL;
    }
    size_t len;
    char *buf = util_read_file(path, &len);
    if (!buf) {
        util_fail(err, nerr, "%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    SafeTensors *st = util_calloc(1, sizeof *st);
    st->buf = buf;
    if (parse(st, path, len, err, nerr) != 0) {
        st_close(st);
        return NULL;
    }
    return st;
}

int st_count(const SafeTensors *st) { return st->n; }

const StTensor *st_get(const SafeTensors *st, int i) { return i >= 0 && i < st->n ? &st->t[i] : NULL; }

const StTensor *st_find(const SafeTensors *st, const char *name) {
    if (st->n == 0) return NULL;
    const StTensor *const *hit = bsearch(name, st->by_name, (size_t)st->n, sizeof *st->by_name, cmp_key_name);
    return hit ? *hit : NULL;
}

const char *st_meta(const SafeTensors *st, const char *key) {
    const cJSON *v = st->meta ? cJSON_GetObjectItemCaseSensitive(st->meta, key) : NULL;
    return v ? v->valuestring : NULL;
}

void st_close(SafeTensors *st) {
    if (!st) return;
    cJSON_Delete(st->header);
    free(st->t);
    free(st->by_name);
    free(st->buf);
    free(st);
}
