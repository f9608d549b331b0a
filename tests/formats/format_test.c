/* format_test.c: tests/formats: safetensors and .npy files (runtime/safetensors.c, npy.c).
 * Good files round-trip with their values, shapes and metadata, and writing the same input
 * twice gives the same bytes.  Corrupted files, generated here, must each be refused with a
 * message naming the file, never a crash.  Modes:
 *   test_formats safetensors DIR   the safetensors checks, scratch files in DIR
 *   test_formats npy DIR           the .npy checks
 *   test_formats write DIR         files for read_safetensors.py to check with NumPy
 *   test_formats check-npy DIR     check the files read_safetensors.py saved with NumPy */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "npy.h"
#include "safetensors.h"
#include "util.h"

static const char *dir;
static int failures;

static const char *path_of(const char *name) {
    static char buf[4][1024];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 1024, "%s/%s", dir, name);
    return p;
}

static void write_bytes(const char *name, const void *data, size_t n) {
    FILE *f = fopen(path_of(name), "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        perror(path_of(name));
        exit(1);
    }
}

static void check(const char *what, bool cond) {
    printf("%s %s\n", cond ? "ok  " : "FAIL", what);
    failures += !cond;
}

/* rc must be -1 and err must contain the file's path and every fragment (NULL-terminated). */
static bool fails_with(int rc, const char *err, const char *path, va_list ap) {
    bool ok = rc != 0 && strstr(err, path);
    for (const char *f; ok && (f = va_arg(ap, const char *));) ok = strstr(err, f) != NULL;
    return ok;
}

static void expect_fail(const char *what, int rc, const char *err, const char *path, ...) {
    va_list ap;
    va_start(ap, path);
    bool ok = fails_with(rc, err, path, ap);
    va_end(ap);
    check(what, ok);
    if (!ok) printf("     rc %d, message: %s\n", rc, err);
}

/* ---- safetensors ---- */

static float w[12];
static double bias[4];
static int64_t step = 1234567890123, idx[6];
static int32_t cnt[2] = {-7, 2147483647};
static uint8_t mask[5] = {0, 1, 127, 128, 255};
static const char *meta_k[] = {"format", "step", "note"};
static const char *meta_v[] = {"nnc", "42", "quote \" backslash \\ tab\t caf\xc3\xa9"};

/* The sample checkpoint: the same values read_safetensors.py expects. */
static int sample(StTensor *t) {
    for (int i = 0; i < 12; i++) w[i] = (float)i * 0.25f - 1;
    for (int i = 0; i < 4; i++) bias[i] = i * 0.1;
    for (int i = 0; i < 6; i++) idx[i] = (int64_t)i * ((int64_t)1 << 40) - 3;
    StTensor s[] = {
        {"w", ST_F32, 2, {3, 4}, w, sizeof w},
        {"b", ST_F64, 1, {4}, bias, sizeof bias},
        {"step", ST_I64, 0, {0}, &step, sizeof step},
        {"idx", ST_I64, 2, {2, 3}, idx, sizeof idx},
        {"count", ST_I32, 1, {2}, cnt, sizeof cnt},
        {"mask", ST_U8, 1, {5}, mask, sizeof mask},
        {"empty", ST_F32, 2, {0, 3}, NULL, 0},
    };
    memcpy(t, s, sizeof s);
    return (int)(sizeof s / sizeof *s);
}

static bool same_tensor(const StTensor *a, const StTensor *b) {
    return a && b && strcmp(a->name, b->name) == 0 && a->dtype == b->dtype && a->rank == b->rank &&
           memcmp(a->shape, b->shape, (size_t)a->rank * sizeof(int64_t)) == 0 && a->bytes == b->bytes &&
           (a->bytes == 0 || memcmp(a->data, b->data, a->bytes) == 0);
}

static char *slurp(const char *name, size_t *n) {
    char *s = util_read_file(path_of(name), n);
    if (!s) {
        perror(path_of(name));
        exit(1);
    }
    return s;
}

static bool no_temp_files(void) {
    DIR *d = opendir(dir);
    bool ok = d != NULL;
    for (struct dirent *e; d && (e = readdir(d));) ok = ok && !strstr(e->d_name, ".tmp.");
    if (d) closedir(d);
    return ok;
}

/* A file: 8-byte header size `hsize`, then `n` bytes of header, then `data` zero bytes. */
static void craft_sized(const char *name, uint64_t hsize, const char *json, size_t n, size_t data) {
    size_t len = 8 + n + data;
    unsigned char *b = util_calloc(len, 1);
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)(hsize >> (8 * k));
    memcpy(b + 8, json, n);
    write_bytes(name, b, len);
    free(b);
}
static void craft(const char *name, const char *json, size_t data) { craft_sized(name, strlen(json), json, strlen(json), data); }

static int try_open(const char *name, char *err, size_t nerr) {
    SafeTensors *st = st_open(path_of(name), err, nerr);
    st_close(st);
    return st ? 0 : -1;
}

#define ST_BAD(what, name, ...)                                                                      \
    do {                                                                                             \
        char err_[1024] = "";                                                                        \
        int rc_ = try_open(name, err_, sizeof err_);                                                 \
        expect_fail(what, rc_, err_, path_of(name), __VA_ARGS__, NULL);                              \
    } while (0)

static void safetensors_round_trip(void) {
    StTensor t[8];
    int n = sample(t);
    char err[1024] = "";
    int rc = st_write_atomic(path_of("a.safetensors"), t, n, meta_k, meta_v, 3, err, sizeof err);
    check("safetensors: the sample writes", rc == 0);
    if (rc) printf("     %s\n", err);
    SafeTensors *st = st_open(path_of("a.safetensors"), err, sizeof err);
    check("safetensors: and opens", st != NULL);
    if (!st) {
        printf("     %s\n", err);
        return;
    }
    bool same = st_count(st) == n;
    for (int i = 0; same && i < n; i++) same = same_tensor(st_get(st, i), &t[i]);
    check("safetensors: names, dtypes, shapes and values come back, in order", same);
    check("safetensors: st_find finds by name, NULL for a missing one",
          st_find(st, "idx") == st_get(st, 3) && st_find(st, "w") == st_get(st, 0) && !st_find(st, "nope") &&
              st_get(st, n) == NULL && st_get(st, -1) == NULL);
    check("safetensors: metadata comes back, NULL for a missing key",
          st_meta(st, "note") && strcmp(st_meta(st, "note"), meta_v[2]) == 0 && strcmp(st_meta(st, "step"), "42") == 0 &&
              !st_meta(st, "absent"));
    st_close(st);

    size_t na, nb;
    char *a = slurp("a.safetensors", &na);
    uint64_t h = 0;
    for (int k = 0; k < 8; k++) h |= (uint64_t)(unsigned char)a[k] << (8 * k);
    check("safetensors: the data starts at a multiple of 8, after a header padded with spaces",
          (8 + h) % 8 == 0 && h < na && (a[8 + h - 1] == ' ' || a[8 + h - 1] == '}'));
    rc = st_write_atomic(path_of("b.safetensors"), t, n, meta_k, meta_v, 3, err, sizeof err);
    char *b = slurp("b.safetensors", &nb);
    check("safetensors: the same input gives byte-identical files", rc == 0 && na == nb && memcmp(a, b, na) == 0);
    free(b);
    w[0] = 99;
    rc = st_write_atomic(path_of("b.safetensors"), t, n, meta_k, meta_v, 3, err, sizeof err);
    st = st_open(path_of("b.safetensors"), err, sizeof err);
    float w0 = 0;
    if (st) memcpy(&w0, st_find(st, "w")->data, sizeof w0);
    check("safetensors: writing over a file replaces it", rc == 0 && st && w0 == 99);
    st_close(st);
    check("safetensors: no temporary files are left behind", no_temp_files());

    rc = st_write_atomic(path_of("none.safetensors"), NULL, 0, NULL, NULL, 0, err, sizeof err);
    st = rc == 0 ? st_open(path_of("none.safetensors"), err, sizeof err) : NULL;
    check("safetensors: a file without tensors round-trips", st && st_count(st) == 0 && !st_find(st, "w") && !st_meta(st, "k"));
    st_close(st);
    free(a);
}

static void safetensors_write_errors(void) {
    StTensor t[8];
    int n = sample(t);
    char err[1024] = "";
    const char *p = path_of("bad.safetensors");
    t[1].name = "w";
    expect_fail("safetensors write: a name given twice", st_write_atomic(p, t, n, NULL, NULL, 0, err, sizeof err), err, p,
                "tensor name 'w' is given twice", NULL);
    n = sample(t);
    t[0].bytes = 40;
    expect_fail("safetensors write: data length vs shape", st_write_atomic(p, t, n, NULL, NULL, 0, err, sizeof err), err, p,
                "'w'", "F32[3,4] needs 48 bytes of data, but 40 were given", NULL);
    n = sample(t);
    t[2].rank = 9;
    expect_fail("safetensors write: rank 9", st_write_atomic(p, t, n, NULL, NULL, 0, err, sizeof err), err, p, "rank 9", NULL);
    n = sample(t);
    t[2].name = "__metadata__";
    expect_fail("safetensors write: a tensor called __metadata__", st_write_atomic(p, t, n, NULL, NULL, 0, err, sizeof err), err,
                p, "__metadata__", NULL);
    n = sample(t);
    const char *dk[] = {"a", "a"}, *dv[] = {"1", "2"};
    expect_fail("safetensors write: a metadata key given twice", st_write_atomic(p, t, n, dk, dv, 2, err, sizeof err), err, p,
                "metadata key 'a' is given twice", NULL);
    const char *q = path_of("no/such/dir/x.safetensors");
    expect_fail("safetensors write: into a missing directory", st_write_atomic(q, t, n, NULL, NULL, 0, err, sizeof err), err, q,
                "cannot create the temporary file", "No such file", NULL);
    mkdir(path_of("adir.safetensors"), 0700);
    q = path_of("adir.safetensors");
    expect_fail("safetensors write: over a directory", st_write_atomic(q, t, n, NULL, NULL, 0, err, sizeof err), err, q,
                "cannot rename", NULL);
    check("safetensors write: failed writes leave no temporary files", no_temp_files());
    struct stat sb;
    check("safetensors write: a refused write creates nothing", stat(p, &sb) != 0);
}

/* Every proper prefix of the good file, and every header byte changed to a few values: each
 * fails with the file's name (or, for a change that keeps it valid, opens), never crashes. */
static void safetensors_damage(void) {
    size_t n;
    char *good = slurp("a.safetensors", &n), err[1024];
    int bad = 0, tries = 0;
    for (size_t len = 0; len < n; len++) {
        write_bytes("cut.safetensors", good, len);
        err[0] = 0;
        int rc = try_open("cut.safetensors", err, sizeof err);
        bad += rc == 0 || !strstr(err, path_of("cut.safetensors"));
    }
    printf("     (%zu truncated files)\n", n);
    check("safetensors: every truncation fails with the file's name", bad == 0);

    uint64_t h = 0;
    for (int k = 0; k < 8; k++) h |= (uint64_t)(unsigned char)good[k] << (8 * k);
    static const unsigned char vals[] = {0x00, 0xff, '"', '}', ']', ',', '-', '9'};
    bad = 0;
    char *m = util_calloc(n, 1);
    for (size_t pos = 0; pos < 8 + h; pos++)
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(m, good, n);
            m[pos] = (char)vals[v];
            write_bytes("flip.safetensors", m, n);
            err[0] = 0;
            int rc = try_open("flip.safetensors", err, sizeof err);
            bad += rc != 0 && !strstr(err, path_of("flip.safetensors"));
            tries++;
        }
    printf("     (%d changed files)\n", tries);
    check("safetensors: changed header bytes never crash, and failures name the file", bad == 0);
    free(m);
    free(good);
}

static void safetensors_bad_files(void) {
    char err[256];
    const char *nope = path_of("nope.safetensors");
    expect_fail("safetensors: a missing file", try_open("nope.safetensors", err, sizeof err), err, nope, "cannot open",
                "No such file", NULL);
    mkdir(path_of("dir.safetensors"), 0700);
    ST_BAD("safetensors: a directory", "dir.safetensors", "is a directory");
    write_bytes("empty.safetensors", "", 0);
    ST_BAD("safetensors: an empty file", "empty.safetensors", "0 bytes, fewer than the 8-byte header size");
    craft_sized("huge.safetensors", (uint64_t)1 << 63, "{}", 2, 0);
    ST_BAD("safetensors: a huge header size", "huge.safetensors", "header size of 9223372036854775808 bytes", "at most 100000000");
    craft_sized("long.safetensors", 1000, "{}", 2, 10);
    ST_BAD("safetensors: a header size beyond the file", "long.safetensors", "truncated", "header should be 1000 bytes",
           "only 12 bytes follow");
    craft_sized("zero.safetensors", 0, "", 0, 0);
    ST_BAD("safetensors: a zero header size", "zero.safetensors", "JSON object starting with '{'");
    craft("array.safetensors", "[1, 2]", 0);
    ST_BAD("safetensors: a header that is not an object", "array.safetensors", "starting with '{'");
    craft("json.safetensors", "{\"a\": {\"dtype\": ", 0);
    ST_BAD("safetensors: a header that is not JSON", "json.safetensors", "not valid JSON", "of the 16-byte header");
    craft("stray.safetensors", "{}  x ", 0);
    ST_BAD("safetensors: bytes after the JSON", "stray.safetensors", "stray bytes", "byte 4");
    craft_sized("nul.safetensors", 6, "{}  \0 ", 6, 0);
    ST_BAD("safetensors: a NUL in the header", "nul.safetensors", "stray bytes");
    craft("utf8.safetensors", "{\"\xff\": 1}", 0);
    ST_BAD("safetensors: a header that is not UTF-8", "utf8.safetensors", "not valid UTF-8", "byte 2");
    craft("overlong.safetensors", "{\"\xc0\xaf\": 1}", 0);
    ST_BAD("safetensors: an overlong UTF-8 form", "overlong.safetensors", "not valid UTF-8");
    {
        StrBuf deep = {0};
        sb_puts(&deep, "{\"a\":");
        for (int i = 0; i < 100000; i++) sb_putc(&deep, '[');
        sb_putc(&deep, '}');
        craft("deep.safetensors", deep.s, 0);
        sb_free(&deep);
    }
    ST_BAD("safetensors: deeply nested JSON", "deep.safetensors", "not valid JSON");

    craft("dtype.safetensors", "{\"a\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    ST_BAD("safetensors: an unknown dtype", "dtype.safetensors", "tensor 'a' has unknown dtype \"Q7\"", "F32, F64, I32, I64, U8");
    craft("f16.safetensors", "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
    ST_BAD("safetensors: a dtype nnc does not read", "f16.safetensors", "dtype F16, which nnc does not read");
    craft("nodtype.safetensors", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    ST_BAD("safetensors: no dtype", "nodtype.safetensors", "'a' has no \"dtype\"");
    craft("notobj.safetensors", "{\"a\":5}", 0);
    ST_BAD("safetensors: an entry that is not an object", "notobj.safetensors", "'a' should be an object");
    craft("neg.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4);
    ST_BAD("safetensors: a negative dimension", "neg.safetensors", "'a': shape entry 0 is not a whole number");
    craft("frac.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2.5],\"data_offsets\":[0,20]}}", 20);
    ST_BAD("safetensors: a fractional dimension", "frac.safetensors", "shape entry 1");
    craft("noshape.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":\"3\",\"data_offsets\":[0,12]}}", 12);
    ST_BAD("safetensors: a shape that is not an array", "noshape.safetensors", "no \"shape\" array");
    craft("rank9.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1);
    ST_BAD("safetensors: rank 9", "rank9.safetensors", "9 dimensions; at most 8");
    craft("big.safetensors", "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8);
    ST_BAD("safetensors: a shape too large to address", "big.safetensors", "F64[4294967296,4294967296], which is too large");
    craft("len.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20);
    ST_BAD("safetensors: shape vs data length", "len.safetensors", "'a' is F32[2,3], which is 24 bytes",
           "data_offsets [0, 20] span 20 bytes");
    craft("back.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8);
    ST_BAD("safetensors: offsets that run backwards", "back.safetensors", "[8, 4], which end before they begin");
    craft("one.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4);
    ST_BAD("safetensors: one offset", "one.safetensors", "no \"data_offsets\" pair");
    craft("hugeoff.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1e300,4]}}", 4);
    ST_BAD("safetensors: an offset beyond 2^53", "hugeoff.safetensors", "no \"data_offsets\" pair [begin, end] of whole numbers");
    /* header: 64 bytes; data: 8 of the 16 bytes */
    craft("short.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}         ", 8);
    ST_BAD("safetensors: data cut short", "short.safetensors", "tensor 'a' needs 16 bytes at file offset 72",
           "the file ends after 80 bytes");
    craft("nodata.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 0);
    ST_BAD("safetensors: no data at all", "nodata.safetensors", "tensor 'a' needs 16 bytes");
    craft("overlap.safetensors",
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24);
    ST_BAD("safetensors: overlapping tensors", "overlap.safetensors", "tensors 'a' (data_offsets [0, 16]) and 'b' ([8, 24]) overlap");
    craft("same.safetensors",
          "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
          "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    ST_BAD("safetensors: two tensors on the same bytes", "same.safetensors", "overlap");
    craft("dup.safetensors",
          "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
          "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8);
    ST_BAD("safetensors: a name given twice", "dup.safetensors", "tensor 'a' appears twice");
    craft("meta.safetensors", "{\"__metadata__\":{\"k\":5}}", 0);
    ST_BAD("safetensors: a metadata value that is not a string", "meta.safetensors", "metadata entry 'k' is not a string");
    craft("metaobj.safetensors", "{\"__metadata__\":[1]}", 0);
    ST_BAD("safetensors: metadata that is not an object", "metaobj.safetensors", "\"__metadata__\" should be an object");
    craft("meta2.safetensors", "{\"__metadata__\":{},\"__metadata__\":{}}", 0);
    ST_BAD("safetensors: metadata twice", "meta2.safetensors", "\"__metadata__\" appears twice");
    craft("metadup.safetensors", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0);
    ST_BAD("safetensors: a metadata key twice", "metadup.safetensors", "metadata key 'k' appears twice");

    /* allowed: gaps, trailing bytes, an empty tensor anywhere, padding */
    craft("gaps.safetensors",
          "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
          "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[2,2]},"
          "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[8,12]}}   ", 16);
    SafeTensors *st = st_open(path_of("gaps.safetensors"), err, sizeof err);
    check("safetensors: gaps, an empty tensor and padding are accepted",
          st && st_count(st) == 3 && st_find(st, "b") && st_find(st, "b")->bytes == 4 && st_find(st, "e")->bytes == 0);
    if (!st) printf("     %s\n", err);
    st_close(st);
}

/* ---- npy ---- */

/* A .npy file: preamble of version `major`.0, the header text padded to 64, then data. */
static void craft_npy(const char *name, int major, const char *header, const void *data, size_t n) {
    StrBuf b = {0};
    size_t pre = major == 1 ? 10 : 12, h = strlen(header);
    size_t hlen = h + 1;
    while ((pre + hlen) % 64) hlen++;
    sb_putn(&b, "\x93NUMPY", 6);
    sb_putc(&b, (char)major);
    sb_putc(&b, 0);
    for (size_t k = 0; k < pre - 8; k++) sb_putc(&b, (char)(hlen >> (8 * k)));
    sb_puts(&b, header);
    while (b.len < pre + hlen - 1) sb_putc(&b, ' ');
    sb_putc(&b, '\n');
    if (n) sb_putn(&b, data, n);
    write_bytes(name, b.s, b.len);
    sb_free(&b);
}

static int read_f32(const char *name, float **v, int *rank, int64_t *shape, char *err, size_t nerr) {
    return npy_read_f32(path_of(name), v, rank, shape, err, nerr);
}

/* Reads name as float32 (and frees it): 0, or -1 with the message in err. */
static int try_npy(const char *name, char *err, size_t nerr) {
    float *v = NULL;
    int rank;
    int64_t shape[NPY_MAX_RANK];
    int rc = read_f32(name, &v, &rank, shape, err, nerr);
    free(v);
    return rc;
}

static int try_labels(const char *name, char *err, size_t nerr) {
    int32_t *v = NULL;
    int rank;
    int64_t shape[NPY_MAX_RANK];
    int rc = npy_read_labels_i32(path_of(name), &v, &rank, shape, err, nerr);
    free(v);
    return rc;
}

#define NPY_BAD(what, name, ...)                                                                     \
    do {                                                                                             \
        char err_[1024] = "";                                                                        \
        expect_fail(what, try_npy(name, err_, sizeof err_), err_, path_of(name), __VA_ARGS__, NULL); \
    } while (0)
#define LABELS_BAD(what, name, ...)                                                                     \
    do {                                                                                                \
        char err_[1024] = "";                                                                           \
        expect_fail(what, try_labels(name, err_, sizeof err_), err_, path_of(name), __VA_ARGS__, NULL); \
    } while (0)

/* A float32 array read back must have this shape and these values. */
static bool f32_is(const char *name, int rank, const int64_t *shape, const float *want, size_t n) {
    float *v = NULL;
    int r;
    int64_t s[NPY_MAX_RANK];
    char err[1024];
    int rc = read_f32(name, &v, &r, s, err, sizeof err);
    bool ok = rc == 0 && r == rank && memcmp(s, shape, (size_t)rank * sizeof *s) == 0 && (n == 0 || memcmp(v, want, n * 4) == 0);
    if (rc) printf("     %s\n", err);
    free(v);
    return ok;
}

static bool labels_are(const char *name, const int32_t *want, size_t n) {
    int32_t *v = NULL;
    int r;
    int64_t s[NPY_MAX_RANK];
    char err[1024];
    int rc = npy_read_labels_i32(path_of(name), &v, &r, s, err, sizeof err);
    bool ok = rc == 0 && memcmp(v, want, n * 4) == 0;
    if (rc) printf("     %s\n", err);
    free(v);
    return ok;
}

static void npy_round_trip(void) {
    static const struct {
        const char *name;
        int rank;
        int64_t shape[8];
    } cases[] = {
        {"scalar.npy", 0, {0}}, {"v5.npy", 1, {5}}, {"m2x3.npy", 2, {2, 3}}, {"e2x0x3.npy", 3, {2, 0, 3}},
        {"r8.npy", 8, {1, 2, 1, 2, 1, 2, 1, 2}},
    };
    float v[64];
    for (int i = 0; i < 64; i++) v[i] = (float)i * 0.37f - 1;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char err[1024] = "", what[128];
        size_t n = 1;
        for (int d = 0; d < cases[c].rank; d++) n *= (size_t)cases[c].shape[d];
        int rc = npy_write_f32(path_of(cases[c].name), v, cases[c].rank, cases[c].shape, err, sizeof err);
        if (rc) printf("     %s\n", err);
        size_t len;
        char *file = slurp(cases[c].name, &len);
        snprintf(what, sizeof what, "npy: %s round-trips; the data starts at a multiple of 64", cases[c].name);
        check(what, rc == 0 && f32_is(cases[c].name, cases[c].rank, cases[c].shape, v, n) && len >= 4 * n &&
                        (len - 4 * n) % 64 == 0 && file[len - 4 * n - 1] == '\n' && npy_is_npy(file, len));
        free(file);
    }
    size_t len;
    char *file = slurp("m2x3.npy", &len);
    const char *want = "\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    check("npy: the header is written as numpy writes it", memcmp(file, want, strlen(want)) == 0);
    free(file);
    file = slurp("v5.npy", &len);
    check("npy: a 1-D shape is written (5,)", strstr(file + 10, "'shape': (5,), }") != NULL);
    free(file);
    check("npy: npy_is_npy refuses other bytes and short heads", !npy_is_npy("hello!", 6) && !npy_is_npy("\x93NUMP", 5));

    char err[1024] = "";
    const char *q = path_of("no/such/x.npy");
    int64_t s2[2] = {2, 3}, neg[1] = {-1};
    expect_fail("npy write: into a missing directory", npy_write_f32(q, v, 2, s2, err, sizeof err), err, q, "cannot create", NULL);
    q = path_of("w.npy");
    expect_fail("npy write: rank 9", npy_write_f32(q, v, 9, s2, err, sizeof err), err, q, "rank 9", NULL);
    expect_fail("npy write: a negative dimension", npy_write_f32(q, v, 1, neg, err, sizeof err), err, q, "dimension 0 is -1", NULL);
}

static void npy_dtypes(void) {
    double d[3] = {1.5, -2, 1e30};
    float fd[3] = {1.5f, -2, 1e30f};
    int64_t s3[1] = {3}, s22[2] = {2, 2}, s4[1] = {4};
    craft_npy("f8.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", d, sizeof d);
    check("npy: '<f8' reads as float32", f32_is("f8.npy", 1, s3, fd, 3));
    int32_t i4[4] = {-5, 0, 7, 2147483647};
    float fi4[4] = {-5, 0, 7, 2147483647.0f};
    craft_npy("i4.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }", i4, sizeof i4);
    check("npy: '<i4' reads as float32 and as labels", f32_is("i4.npy", 2, s22, fi4, 4) && labels_are("i4.npy", i4, 4));
    int64_t i8[3] = {0, 9, -1};
    int32_t li8[3] = {0, 9, -1};
    craft_npy("i8.npy", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3L,), }", i8, sizeof i8);
    check("npy: '<i8' labels, with Python 2's 3L", labels_are("i8.npy", li8, 3));
    uint8_t u1[4] = {0, 1, 200, 255};
    float fu1[4] = {0, 1, 200, 255};
    int32_t lu1[4] = {0, 1, 200, 255};
    craft_npy("u1.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", u1, 4);
    craft_npy("u1le.npy", 1, "{'descr': '<u1', 'fortran_order': False, 'shape': (4,), }", u1, 4);
    check("npy: '|u1' and '<u1' read as float32 and labels",
          f32_is("u1.npy", 1, s4, fu1, 4) && f32_is("u1le.npy", 1, s4, fu1, 4) && labels_are("u1.npy", lu1, 4));
    uint8_t b1[4] = {1, 0, 1, 1};
    float fb1[4] = {1, 0, 1, 1};
    craft_npy("b1.npy", 1, "{'descr': '|b1', 'fortran_order': False, 'shape': (4,), }", b1, 4);
    check("npy: '|b1' reads as 0 and 1", f32_is("b1.npy", 1, s4, fb1, 4));
    float f[6] = {1, 2, 3, 4, 5, 6};
    int64_t s23[2] = {2, 3};
    craft_npy("v2.npy", 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f, sizeof f);
    craft_npy("v3.npy", 3, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f, sizeof f);
    check("npy: versions 2.0 and 3.0", f32_is("v2.npy", 2, s23, f, 6) && f32_is("v3.npy", 2, s23, f, 6));
    craft_npy("spaces.npy", 1, "{ \"shape\" :( 2 ,3 ) ,\"fortran_order\":False,   \"descr\" : \"<f4\"}", f, sizeof f);
    check("npy: any spacing and key order, double quotes, no trailing comma", f32_is("spaces.npy", 2, s23, f, 6));
    double whole[3] = {0, 3, 7};
    int32_t lwhole[3] = {0, 3, 7};
    craft_npy("whole.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", whole, sizeof whole);
    check("npy: whole floats are labels", labels_are("whole.npy", lwhole, 3));
    int64_t s0big[3] = {2, 0, 4611686018427387904};
    craft_npy("zerobig.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 0, 4611686018427387904), }", NULL, 0);
    check("npy: a zero dimension before a huge one is an empty array", f32_is("zerobig.npy", 3, s0big, NULL, 0));
}

static void npy_bad_files(void) {
    char err[256];
    float f[6] = {0};
    const char *nope = path_of("nope.npy");
    expect_fail("npy: a missing file", try_npy("nope.npy", err, sizeof err), err, nope, "cannot open", NULL);
    mkdir(path_of("dir.npy"), 0700);
    NPY_BAD("npy: a directory", "dir.npy", "is a directory");
    write_bytes("magic.npy", "hello world, not npy", 20);
    NPY_BAD("npy: bad magic", "magic.npy", "not a .npy file", "\\x93NUMPY");
    write_bytes("pre.npy", "\x93NUMPY\x01", 7);
    NPY_BAD("npy: a cut preamble", "pre.npy", "truncated", "preamble");
    write_bytes("pre2.npy", "\x93NUMPY\x02\x00\x10\x00", 10);
    NPY_BAD("npy: a cut version 2 preamble", "pre2.npy", "truncated", "preamble");
    craft_npy("v4.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", f, 4);
    {
        size_t n;
        char *b = slurp("v4.npy", &n);
        b[6] = 4;
        write_bytes("v4.npy", b, n);
        b[6] = 1;
        b[8] = (char)0xff; /* header length 255 + ... beyond the file */
        b[9] = 0x7f;
        write_bytes("hlen.npy", b, n);
        free(b);
    }
    NPY_BAD("npy: version 4.0", "v4.npy", "unsupported .npy format version 4.0");
    NPY_BAD("npy: a header length beyond the file", "hlen.npy", "truncated", "header should be 32767 bytes");
    craft_npy("fortran.npy", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f, sizeof f);
    NPY_BAD("npy: Fortran order", "fortran.npy", "Fortran (column-major) order", "C order only");
    craft_npy("c8.npy", 1, "{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }", f, 24);
    NPY_BAD("npy: an unknown dtype", "c8.npy", "unsupported dtype '<c8'", "'<f4', '<f8'");
    craft_npy("be.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }", f, 12);
    NPY_BAD("npy: big-endian", "be.npy", "'>f4' is big-endian", "a.astype('<f4')");
    craft_npy("struct.npy", 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", f, 12);
    NPY_BAD("npy: a structured dtype", "struct.npy", "structured dtypes are not supported");
    craft_npy("short.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f, 20);
    NPY_BAD("npy: short data", "short.npy", "truncated", "shape (2, 3) of 4-byte values needs 24 bytes", "the file has 20");
    craft_npy("long.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", f, 24);
    NPY_BAD("npy: extra data", "long.npy", "too long", "shape (5,)", "needs 20 bytes");
    craft_npy("noshape.npy", 1, "{'descr': '<f4', 'fortran_order': False}", f, 4);
    NPY_BAD("npy: no shape", "noshape.npy", "has no 'shape'");
    craft_npy("key.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), 'foo': 1}", f, 4);
    NPY_BAD("npy: an unknown key", "key.npy", "unknown key 'foo'");
    craft_npy("twice.npy", 1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}", f, 4);
    NPY_BAD("npy: a key twice", "twice.npy", "gives 'descr' twice");
    craft_npy("neg.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", f, 4);
    NPY_BAD("npy: a negative dimension", "neg.npy", "expected a non-negative dimension", "found '-1,), }");
    craft_npy("huge.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", f, 4);
    NPY_BAD("npy: a dimension beyond 2^63", "huge.npy", "non-negative dimension (below 2^63)");
    craft_npy("over.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", f, 4);
    NPY_BAD("npy: a shape too large", "over.npy", "shape (4611686018427387904, 4) is too large");
    craft_npy("rank9.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", f, 4);
    NPY_BAD("npy: rank 9", "rank9.npy", "more than 8 dimensions");
    craft_npy("after.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': ()} x", f, 4);
    NPY_BAD("npy: bytes after the dict", "after.npy", "nothing but spaces after the closing '}'", "found 'x");
    craft_npy("quote.npy", 1, "{'descr: '<f4', 'fortran_order': False, 'shape': ()}", f, 4);
    NPY_BAD("npy: a broken quote", "quote.npy", "unknown key 'descr: '");
    craft_npy("bool.npy", 1, "{'descr': '<f4', 'fortran_order': false, 'shape': ()}", f, 4);
    NPY_BAD("npy: a lower-case bool", "bool.npy", "True or False after 'fortran_order'");
    craft_npy("notdict.npy", 1, "'descr'", f, 4);
    NPY_BAD("npy: a header that is not a dict", "notdict.npy", "expected '{' at byte 0");
    double big[2] = {1, 1e300};
    craft_npy("range.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }", big, sizeof big);
    NPY_BAD("npy: a float64 beyond float32", "range.npy", "value 1e+300 at [0, 1] does not fit in float32");

    double half[2] = {1, 2.5}, nan[1] = {NAN};
    craft_npy("half.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", half, sizeof half);
    LABELS_BAD("npy labels: a fraction", "half.npy", "label 2.5 at [1] is not a whole number");
    craft_npy("nan.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", nan, sizeof nan);
    LABELS_BAD("npy labels: NaN", "nan.npy", "is not a whole number");
    int64_t large[2] = {3, (int64_t)1 << 40};
    craft_npy("large.npy", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", large, sizeof large);
    LABELS_BAD("npy labels: beyond int32", "large.npy", "label 1099511627776 at [1] does not fit in int32");

    /* every proper prefix fails; changed header bytes never crash */
    size_t n;
    char *good = slurp("m2x3.npy", &n), e[1024];
    int bad = 0;
    for (size_t len = 0; len < n; len++) {
        write_bytes("cut.npy", good, len);
        e[0] = 0;
        bad += try_npy("cut.npy", e, sizeof e) == 0 || !strstr(e, path_of("cut.npy"));
    }
    check("npy: every truncation fails with the file's name", bad == 0);
    static const unsigned char vals[] = {0x00, 0xff, '\'', '"', '{', '}', '(', ')', ',', ':', '-', '9', 'L', ' '};
    char *m = util_calloc(n, 1);
    bad = 0;
    for (size_t pos = 0; pos < n - 24; pos++)
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(m, good, n);
            m[pos] = (char)vals[v];
            write_bytes("flip.npy", m, n);
            e[0] = 0;
            bad += try_npy("flip.npy", e, sizeof e) != 0 && !strstr(e, path_of("flip.npy"));
            bad += try_labels("flip.npy", e, sizeof e) != 0 && !strstr(e, path_of("flip.npy"));
        }
    check("npy: changed header bytes never crash, and failures name the file", bad == 0);
    free(m);
    free(good);
}

/* ---- interchange with read_safetensors.py ---- */

static int write_interchange(void) {
    StTensor t[8];
    int n = sample(t);
    char err[1024];
    if (st_write_atomic(path_of("sample.safetensors"), t, n, meta_k, meta_v, 3, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    float v[24];
    for (int i = 0; i < 24; i++) v[i] = (float)i * 0.5f - 3;
    static const struct {
        const char *name;
        int rank;
        int64_t shape[3];
    } arrays[] = {{"c_2x3x4.npy", 3, {2, 3, 4}}, {"c_scalar.npy", 0, {0}}, {"c_5.npy", 1, {5}}, {"c_0x3.npy", 2, {0, 3}}};
    for (int i = 0; i < 4; i++)
        if (npy_write_f32(path_of(arrays[i].name), v, arrays[i].rank, arrays[i].shape, err, sizeof err) != 0) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
    return 0;
}

/* The arrays read_safetensors.py saved with numpy.save. */
static int check_numpy_files(void) {
    float f32[6], f64[4], i64[6], u8[8], b1[4] = {1, 0, 1, 1}, v3[3] = {1, 2, 3}, sc[1] = {2.5f};
    int32_t li64[6], li32[5] = {0, 1, 2, 3, 4}, lf64[3] = {0, 1, 2};
    for (int i = 0; i < 6; i++) {
        f32[i] = (float)i * 0.5f - 1;
        i64[i] = (float)(i - 2);
        li64[i] = i - 2;
    }
    for (int i = 0; i < 4; i++) f64[i] = (float)(i * 0.1);
    for (int i = 0; i < 8; i++) u8[i] = (float)(i * 30);
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s32[2] = {3, 2}, s222[3] = {2, 2, 2}, s3[1] = {3};
    check("numpy.save float32 (2, 3)", f32_is("np_f32.npy", 2, s23, f32, 6));
    check("numpy.save float64 (4,)", f32_is("np_f64.npy", 1, s4, f64, 4));
    check("numpy.save int64 (3, 2), as floats and labels", f32_is("np_i64.npy", 2, s32, i64, 6) && labels_are("np_i64.npy", li64, 6));
    check("numpy.save uint8 (2, 2, 2)", f32_is("np_u8.npy", 3, s222, u8, 8));
    check("numpy.save bool (4,)", f32_is("np_bool.npy", 1, s4, b1, 4));
    check("numpy.save float32 scalar", f32_is("np_scalar.npy", 0, s3, sc, 1));
    check("numpy format versions 2.0 and 3.0", f32_is("np_v2.npy", 1, s3, v3, 3) && f32_is("np_v3.npy", 1, s3, v3, 3));
    check("numpy.save int32 and whole float64 labels", labels_are("np_i32.npy", li32, 5) && labels_are("np_f64_labels.npy", lf64, 3));
    NPY_BAD("numpy.save Fortran order is refused", "np_fortran.npy", "Fortran");
    NPY_BAD("numpy.save big-endian is refused", "np_be.npy", "big-endian");
    NPY_BAD("numpy.save complex is refused", "np_c8.npy", "unsupported dtype '<c8'");
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_formats safetensors|npy|write|check-npy DIR\n");
        return 2;
    }
    dir = argv[2];
    char *parent = util_strdup(dir); /* mkdir -p */
    for (char *p = parent + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(parent, 0700);
            *p = '/';
        }
    free(parent);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    if (strcmp(argv[1], "write") == 0) return write_interchange();
    if (strcmp(argv[1], "check-npy") == 0) return check_numpy_files();
    if (strcmp(argv[1], "safetensors") == 0) {
        safetensors_round_trip();
        safetensors_write_errors();
        safetensors_damage();
        safetensors_bad_files();
    } else if (strcmp(argv[1], "npy") == 0) {
        npy_round_trip();
        npy_dtypes();
        npy_bad_files();
    } else {
        fprintf(stderr, "test_formats: unknown mode '%s'\n", argv[1]);
        return 2;
    }
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
