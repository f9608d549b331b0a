/* data.h: data sets for training and evaluation.  Loads IDX files (gzip read directly) and
 * CSV files, validating everything they read: a problem names the file, the record (1-based)
 * and what was expected.  Images stay compact (uint8, scaled to [0, 1] as batches are
 * gathered); CSV and NPY values are float.  A data set holds a column per input and target of
 * the model (the expectation's fields); IDX and CSV give one input and one target, npy(...) any
 * number of named arrays. */
#ifndef NNC_DATA_H
#define NNC_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One array the model reads per sample: an input, or a target (what a loss compares with). */
typedef struct {
    const char *name;
    bool is_target, is_class; /* a class target: labels in [0, nclass) */
    int64_t nclass;
    int64_t width;            /* values per sample (1 for class labels) */
    int rank;                 /* the per-sample shape, for messages */
    int64_t dim[4];
} DataField;

/* What the model expects of a data set: its inputs and targets in the graph's order. */
typedef struct {
    DataField *field;
    int nfield;
} DataExpect;

/* A data set's values of one field, for every sample; all NULL when the source does not give
 * that field (predict's inputs without targets): gathered batches then hold zeros. */
typedef struct {
    int64_t width;
    bool is_class;
    uint8_t *u8;    /* n * width, or NULL (may point into `owned`) */
    void *owned;    /* a buffer to free with the data set */
    float *f32;     /* n * width, or NULL */
    float scale;    /* u8 value * scale */
    int32_t *label; /* n, when is_class */
} DataColumn;

/* The samples of one split; col[i] holds the values of the expectation's field[i]. */
typedef struct {
    int64_t n; /* samples */
    DataColumn *col;
    int ncol;
    char *name; /* for messages: the file(s) it came from */
} Dataset;

/* One named array file of an npy(...) source. */
typedef struct {
    const char *name, *path;
} NpyArray;

/* A target of several in a CSV file, its first column by header name or index. */
typedef struct {
    const char *field;  /* the target's name */
    const char *column; /* its header name, or NULL */
    int col;            /* its index (when column is NULL) */
} CsvTarget;

typedef struct {
    int target_col;          /* first target column; -1: the last ones */
    const char *target_name; /* or the header name of the (first) target column */
    int header;              /* -1 auto, 0 none, 1 present */
    bool inputs_only;        /* every column is an input (predict) */
    const CsvTarget *target; /* several targets, each named (csv(..., mass = "m", spin = 3)); the
                                columns they leave are the one input */
    int ntarget;
} CsvOptions;

/* The expectation from a list of fields (copied; free with data_expect_free). */
void data_expect_free(DataExpect *ex);
/* The index of the first input (targets: the first target) among ex's fields, or -1. */
int data_expect_first(const DataExpect *ex, bool target);
/* shape text of a field: f32[28,28] or class[10] */
void data_field_type(char *buf, size_t n, const DataField *f);

/* Each returns 0, or -1 with a message (file, record, what was expected) in err. */
int data_load_idx(const char *images, const char *labels, const DataExpect *ex, Dataset *out, char *err, size_t nerr);
int data_load_csv(const char *path, const CsvOptions *opt, const DataExpect *ex, Dataset *out, char *err, size_t nerr);
/* The standard file names in a directory, with or without .gz; split is "train" or "t10k". */
int data_load_idx_dir(const char *dir, const char *split, const DataExpect *ex, Dataset *out, char *err, size_t nerr);
/* One .npy file per field; every field of ex must be named (inputs_only: every input).  A field
 * whose file gives the wrong number of values per sample, or files of different sample
 * counts, are errors naming the file and the field. */
int data_load_npy(const NpyArray *arr, int narr, const DataExpect *ex, bool inputs_only, Dataset *out, char *err, size_t nerr);
void data_free(Dataset *d);
/* The bytes its values take in memory. */
int64_t data_bytes_held(const Dataset *d);

/* Inputs alone (predict): an NPY array, an IDX file of unsigned bytes (scaled to [0, 1] as
 * IDX training data is) or a CSV file whose columns are all inputs; the format is recognised
 * from the content (and must agree with a .npy, .csv or -ubyte extension).  gzip is read
 * directly for IDX and CSV.  Each sample must hold ex->nfeat values. */
int data_load_inputs(const char *path, const DataExpect *ex, Dataset *out, char *err, size_t nerr);

/* Copy column c of samples idx[0..count) into dst: floats, or int32 labels for a class column
 * (zeros where the data set does not give the column). */
void data_gather(const Dataset *d, int c, const int64_t *idx, int64_t count, void *dst);

/* Where Debian's dataset-fashion-mnist puts the files; NNC_FASHION_MNIST_DIR overrides it. */
const char *data_fashion_mnist_dir(void);

#endif
