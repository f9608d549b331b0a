/* data_test.c: bad data gives an error naming the file and the record, never a crash.
 * Writes small IDX (plain and gzip), CSV and NPY files into a scratch directory, each broken in
 * one way, loads them through runtime/data.c and checks the message; also checks that good
 * files load with the right values, and batch gathering. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"
#include "npy.h"

static char dir[256];
static int failures;

static const char *path_of(const char *name) {
    static char buf[4][512];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

static void write_bytes(const char *name, const void *data, size_t n, bool gz) {
    if (gz) {
        gzFile f = gzopen(path_of(name), "wb");
        gzwrite(f, data, (unsigned)n);
        gzclose(f);
    } else {
        FILE *f = fopen(path_of(name), "wb");
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

static void write_text(const char *name, const char *text) { write_bytes(name, text, strlen(text), false); }

/* An IDX file of unsigned bytes: dims given, data = i % mod. */
static void write_idx(const char *name, int ndim, const int *dims, int mod, size_t drop, bool gz) {
    size_t count = 1;
    for (int i = 0; i < ndim; i++) count *= (size_t)dims[i];
    size_t n = 4 + 4 * (size_t)ndim + count;
    unsigned char *b = calloc(n, 1);
    b[2] = 0x08;
    b[3] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++) {
        b[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
        b[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
        b[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
        b[7 + 4 * i] = (unsigned char)dims[i];
    }
    for (size_t i = 0; i < count; i++) b[4 + 4 * (size_t)ndim + i] = (unsigned char)(i % (size_t)mod);
    write_bytes(name, b, n - drop, gz);
    free(b);
}

static DataField img_fields[2] = {{.name = "image", .width = 16, .rank = 2, .dim = {4, 4}},
                                   {.name = "label", .is_target = true, .is_class = true, .nclass = 10, .width = 1}};

static DataExpect images_4x4(void) { return (DataExpect){img_fields, 2}; }

static DataField csv_fields[2][2] = {
    {{.name = "x", .width = 3, .rank = 1, .dim = {3}}, {.name = "y", .is_target = true, .nclass = 3, .width = 1, .rank = 1, .dim = {1}}},
    {{.name = "x", .width = 3, .rank = 1, .dim = {3}}, {.name = "y", .is_target = true, .is_class = true, .nclass = 3, .width = 1}}};

static DataExpect csv_3_features(bool cls) { return (DataExpect){csv_fields[cls], 2}; }

/* The load must fail with a message containing every one of the fragments. */
static void expect_error(const char *what, int rc, const char *err, const char *const *frag) {
    bool ok = rc != 0;
    for (int i = 0; ok && frag[i]; i++) ok = strstr(err, frag[i]) != NULL;
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) {
        printf("     rc %d, message: %s\n     expected it to contain:", rc, err);
        for (int i = 0; frag[i]; i++) printf(" [%s]", frag[i]);
        printf("\n");
        failures++;
    }
}

#define EXPECT(what, call, ...)                                                         \
    do {                                                                                \
        char err[1024] = "";                                                            \
        Dataset d;                                                                      \
        int rc = (call);                                                                \
        if (rc == 0) data_free(&d);                                                     \
        const char *const frag[] = {__VA_ARGS__, NULL};                                 \
        expect_error(what, rc, err, frag);                                              \
    } while (0)

static void check(const char *what, bool cond) {
    printf("%s %s\n", cond ? "ok  " : "FAIL", what);
    failures += !cond;
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/nnc-data-test-%d", (int)getpid());
    if (mkdir(dir, 0700) != 0) {
        perror(dir);
        return 1;
    }
    DataExpect img = images_4x4();
    int d_img[3] = {5, 4, 4}, d_lab[1] = {5}, d_lab6[1] = {6}, d_img3[3] = {5, 3, 3};
    write_idx("img.idx", 3, d_img, 251, 0, false);
    write_idx("img.idx.gz", 3, d_img, 251, 0, true);
    write_idx("lab.idx", 1, d_lab, 10, 0, false);
    write_idx("lab.idx.gz", 1, d_lab, 10, 0, true);

    /* good files load, plain and gzip, with the right values */
    {
        char err[1024];
        Dataset d;
        int rc = data_load_idx(path_of("img.idx.gz"), path_of("lab.idx.gz"), &img, &d, err, sizeof err);
        check("gzip IDX loads", rc == 0 && d.n == 5 && d.ncol == 2 && d.col[0].width == 16 && d.col[1].label[3] == 3 &&
                               d.col[0].u8[17] == 17);
        if (rc == 0) {
            float x[32];
            int32_t lab[2];
            int64_t idx[2] = {4, 1};
            data_gather(&d, 0, idx, 2, x);
            data_gather(&d, 1, idx, 2, lab);
            check("gather scales bytes to [0, 1] and picks the right samples",
                  lab[0] == 4 && lab[1] == 1 && x[0] == 64.0f / 255.0f && x[16] == 16.0f / 255.0f);
            data_free(&d);
        }
        rc = data_load_idx(path_of("img.idx"), path_of("lab.idx"), &img, &d, err, sizeof err);
        check("plain IDX loads", rc == 0 && d.n == 5);
        if (rc == 0) data_free(&d);
    }
    EXPECT("missing file", data_load_idx(path_of("nope.idx"), path_of("lab.idx"), &img, &d, err, sizeof err),
           path_of("nope.idx"), "cannot open", "No such file");
    EXPECT("a directory", data_load_idx(dir, path_of("lab.idx"), &img, &d, err, sizeof err), dir, "is a directory");
    write_text("text.idx", "hello, this is not IDX\n");
    EXPECT("wrong magic", data_load_idx(path_of("text.idx"), path_of("lab.idx"), &img, &d, err, sizeof err),
           path_of("text.idx"), "not an IDX file", "68 65 6c 6c");
    write_text("empty.idx", "");
    EXPECT("empty file", data_load_idx(path_of("empty.idx"), path_of("lab.idx"), &img, &d, err, sizeof err),
           path_of("empty.idx"), "not an IDX file", "empty");
    write_idx("trunc.idx", 3, d_img, 251, 20, false);
    EXPECT("truncated data", data_load_idx(path_of("trunc.idx"), path_of("lab.idx"), &img, &d, err, sizeof err),
           path_of("trunc.idx"), "truncated", "5 records of 16 bytes", "ends in record 4");
    write_idx("trunc.idx.gz", 3, d_img, 251, 20, true);
    EXPECT("truncated data in gzip", data_load_idx(path_of("trunc.idx.gz"), path_of("lab.idx"), &img, &d, err, sizeof err),
           path_of("trunc.idx.gz"), "truncated", "ends in record 4");
    write_idx("hdr.idx", 3, d_img, 251, 86, false); /* 96 bytes, cut to 10: inside the 16-byte header */
    EXPECT("truncated header", data_load_idx(path_of("hdr.idx"), path_of("lab.idx"), &img, &d, err, sizeof err),
           path_of("hdr.idx"), "truncated");
    {
        /* a gzip stream cut short */
        write_idx("full.idx.gz", 3, d_img, 251, 0, true);
        FILE *f = fopen(path_of("full.idx.gz"), "rb");
        unsigned char buf[4096];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        write_bytes("cut.idx.gz", buf, n / 2, false);
        EXPECT("gzip stream cut short", data_load_idx(path_of("cut.idx.gz"), path_of("lab.idx"), &img, &d, err, sizeof err),
               path_of("cut.idx.gz"), "truncated: the gzip stream ends early");
    }
    int d_badlab[1] = {5};
    write_idx("lab12.idx", 1, d_badlab, 13, 0, false); /* labels 0..4: fine */
    {
        unsigned char b[8 + 5] = {0, 0, 8, 1, 0, 0, 0, 5, 1, 2, 12, 3, 4};
        write_bytes("lab_range.idx", b, sizeof b, false);
    }
    EXPECT("label out of range", data_load_idx(path_of("img.idx"), path_of("lab_range.idx"), &img, &d, err, sizeof err),
           path_of("lab_range.idx"), "record 3", "label 12 is out of range for class[10]");
    write_idx("lab6.idx", 1, d_lab6, 10, 0, false);
    EXPECT("count mismatch", data_load_idx(path_of("img.idx"), path_of("lab6.idx"), &img, &d, err, sizeof err),
           path_of("lab6.idx"), "6 labels", "5 images");
    write_idx("img3.idx", 3, d_img3, 251, 0, false);
    EXPECT("image size vs input shape", data_load_idx(path_of("img3.idx"), path_of("lab.idx"), &img, &d, err, sizeof err),
           path_of("img3.idx"), "3x3 = 9 values", "input 'image' is f32[4,4] (16 values)");
    EXPECT("labels where images belong", data_load_idx(path_of("lab.idx"), path_of("lab.idx"), &img, &d, err, sizeof err),
           path_of("lab.idx"), "expected an image file");
    EXPECT("images where labels belong", data_load_idx(path_of("img.idx"), path_of("img.idx"), &img, &d, err, sizeof err),
           path_of("img.idx"), "expected a label file");
    {
        unsigned char b[8 + 4] = {0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0};
        write_bytes("float.idx", b, sizeof b, false);
    }
    EXPECT("unsupported element type", data_load_idx(path_of("img.idx"), path_of("float.idx"), &img, &d, err, sizeof err),
           path_of("float.idx"), "0x0d");
    EXPECT("missing idx directory", data_load_idx_dir(path_of("nodir"), "train", &img, &d, err, sizeof err),
           path_of("nodir"), "cannot open");

    /* CSV */
    CsvOptions last = {.target_col = -1, .header = -1}, named = {.target_col = -1, .target_name = "y", .header = -1};
    DataExpect cls = csv_3_features(true), reg = csv_3_features(false);
    write_text("good.csv", "a,b,c,y\n1,2,3,0\n4, 5 ,6,2\n\n# a comment\n7,8,9e-1,1\n");
    {
        char err[1024];
        Dataset d;
        int rc = data_load_csv(path_of("good.csv"), &named, &cls, &d, err, sizeof err);
        check("CSV with a header loads", rc == 0 && d.n == 3 && d.col[1].label[1] == 2 && d.col[0].f32[8] == 0.9f &&
                                           d.col[0].f32[4] == 5.0f);
        if (rc == 0) data_free(&d);
        write_text("reg.csv", "0.5,1,2,3.25\n");
        CsvOptions first = {.target_col = 0, .header = 0};
        rc = data_load_csv(path_of("reg.csv"), &first, &reg, &d, err, sizeof err);
        check("CSV with the target first loads", rc == 0 && d.col[1].f32[0] == 0.5f && d.col[0].f32[2] == 3.25f);
        if (rc == 0) data_free(&d);
    }
    EXPECT("CSV missing", data_load_csv(path_of("nope.csv"), &last, &cls, &d, err, sizeof err), path_of("nope.csv"),
           "cannot open");
    write_text("nonnum.csv", "1,2,3,0\n4,five,6,1\n");
    EXPECT("CSV non-numeric field", data_load_csv(path_of("nonnum.csv"), &last, &cls, &d, err, sizeof err),
           path_of("nonnum.csv"), ":2:", "record 2", "field 2 ('five') is not a finite number");
    write_text("ragged.csv", "1,2,3,0\n4,5,6,1\n7,8,1\n");
    EXPECT("CSV ragged record", data_load_csv(path_of("ragged.csv"), &last, &cls, &d, err, sizeof err),
           path_of("ragged.csv"), ":3:", "record 3 has 3 fields, expected 4");
    write_text("emptyfield.csv", "1,2,3,0\n4,,6,1\n");
    EXPECT("CSV empty field", data_load_csv(path_of("emptyfield.csv"), &last, &cls, &d, err, sizeof err),
           path_of("emptyfield.csv"), "record 2", "field 2 is empty");
    write_text("nan.csv", "1,2,3,0\n4,nan,6,1\n");
    EXPECT("CSV NaN value", data_load_csv(path_of("nan.csv"), &last, &cls, &d, err, sizeof err), path_of("nan.csv"),
           "record 2", "not a finite number");
    write_text("class.csv", "1,2,3,0\n4,5,6,3\n");
    EXPECT("CSV class out of range", data_load_csv(path_of("class.csv"), &last, &cls, &d, err, sizeof err),
           path_of("class.csv"), "record 2", "target 3 is not a class index of class[3]");
    write_text("frac.csv", "1,2,3,0.5\n");
    EXPECT("CSV fractional class", data_load_csv(path_of("frac.csv"), &last, &cls, &d, err, sizeof err),
           path_of("frac.csv"), "record 1", "target 0.5 is not a class index");
    write_text("wide.csv", "1,2,3,4,0\n");
    EXPECT("CSV too many columns for the input", data_load_csv(path_of("wide.csv"), &last, &cls, &d, err, sizeof err),
           path_of("wide.csv"), "5 fields", "4 input values", "input 'x' is f32[3] (3 values)");
    write_text("header_only.csv", "a,b,c,y\n");
    EXPECT("CSV without records", data_load_csv(path_of("header_only.csv"), &last, &cls, &d, err, sizeof err),
           path_of("header_only.csv"), "no data records");
    EXPECT("CSV target name not in header", data_load_csv(path_of("nonnum.csv"), &named, &cls, &d, err, sizeof err),
           path_of("nonnum.csv"), "no header row");
    write_text("noname.csv", "a,b,c,z\n1,2,3,0\n");
    EXPECT("CSV unknown target column", data_load_csv(path_of("noname.csv"), &named, &cls, &d, err, sizeof err),
           path_of("noname.csv"), "no column named 'y'");
    write_bytes("nul.csv", "1,2\0,3,0\n", 9, false);
    EXPECT("CSV with a NUL byte", data_load_csv(path_of("nul.csv"), &last, &cls, &d, err, sizeof err),
           path_of("nul.csv"), "NUL byte");

    /* npy sources: one array per field, each checked when it is loaded */
    {
        static DataField f[2] = {{.name = "x", .width = 3, .rank = 1, .dim = {3}},
                                 {.name = "y", .is_target = true, .is_class = true, .nclass = 10, .width = 1}};
        DataExpect ex = {f, 2};
        float xs[12] = {0}, good[4] = {1, 2, 3, 9}, bad[4] = {1, 2, 10, 3}, frac[4] = {1, 2.5f, 3, 4};
        int64_t s43[2] = {4, 3}, s4[1] = {4}, s3[1] = {3}, s0[2] = {0, 3};
        char e[256];
        npy_write_f32(path_of("x.npy"), xs, 2, s43, e, sizeof e);
        npy_write_f32(path_of("y.npy"), good, 1, s4, e, sizeof e);
        npy_write_f32(path_of("y10.npy"), bad, 1, s4, e, sizeof e);
        npy_write_f32(path_of("yfrac.npy"), frac, 1, s4, e, sizeof e);
        npy_write_f32(path_of("y3.npy"), good, 1, s3, e, sizeof e);
        npy_write_f32(path_of("scalar.npy"), good, 0, s4, e, sizeof e);
        npy_write_f32(path_of("empty.npy"), xs, 2, s0, e, sizeof e);
        NpyArray ok[2] = {{"x", path_of("x.npy")}, {"y", path_of("y.npy")}};
        char msg[1024] = "";
        Dataset got = {0};
        check("npy: two arrays load", data_load_npy(ok, 2, &ex, false, &got, msg, sizeof msg) == 0 && got.n == 4 && got.col[1].label[3] == 9);
        if (got.n == 4) data_free(&got);
        NpyArray lab10[2] = {{"x", path_of("x.npy")}, {"y", path_of("y10.npy")}};
        EXPECT("npy label out of range", data_load_npy(lab10, 2, &ex, false, &d, err, sizeof err), path_of("y10.npy"),
               "sample 3: label 10 is out of range for class[10] (labels are 0 to 9)");
        NpyArray labfrac[2] = {{"x", path_of("x.npy")}, {"y", path_of("yfrac.npy")}};
        EXPECT("npy fractional label", data_load_npy(labfrac, 2, &ex, false, &d, err, sizeof err), path_of("yfrac.npy"));
        NpyArray short_[2] = {{"x", path_of("x.npy")}, {"y", path_of("y3.npy")}};
        EXPECT("npy arrays of different lengths", data_load_npy(short_, 2, &ex, false, &d, err, sizeof err), path_of("y3.npy"),
               "3 samples, but", "has 4; every array of a data set has one row per sample");
        NpyArray zero_d[2] = {{"x", path_of("scalar.npy")}, {"y", path_of("y.npy")}};
        EXPECT("npy 0-d array", data_load_npy(zero_d, 2, &ex, false, &d, err, sizeof err), path_of("scalar.npy"),
               "a 0-d array, but input 'x' needs one f32[3] per sample");
        NpyArray empty[2] = {{"x", path_of("empty.npy")}, {"y", path_of("y.npy")}};
        EXPECT("npy array of 0 samples", data_load_npy(empty, 2, &ex, false, &d, err, sizeof err), path_of("empty.npy"),
               "an array of 0 samples, but input 'x' needs one f32[3] per sample");
        NpyArray wrong[2] = {{"x", path_of("y.npy")}, {"y", path_of("y.npy")}};
        EXPECT("npy input of the wrong width", data_load_npy(wrong, 2, &ex, false, &d, err, sizeof err), path_of("y.npy"),
               "4 samples of shape [] (1 value each), but input 'x' is f32[3] (3 values)");
        NpyArray missing[1] = {{"x", path_of("x.npy")}};
        EXPECT("npy without the target", data_load_npy(missing, 1, &ex, false, &d, err, sizeof err),
               "the npy data source gives no array for target 'y'");
        got = (Dataset){0};
        check("npy inputs only: the target not needed", data_load_npy(missing, 1, &ex, true, &got, msg, sizeof msg) == 0 && got.n == 4);
        if (got.n == 4) data_free(&got);
    }
    {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (failures == 0 && system(cmd) != 0) printf("note: could not remove %s\n", dir);
    }
    printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
