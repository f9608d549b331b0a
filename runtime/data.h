/* data.h: data sets for training and evaluation.  Loads IDX files (gzip read directly) and
 * CSV files, validating everything they read: a problem names the file, the record (1-based)
 * and what was expected.  Images stay compact (uint8, scaled to [0, 1] as batches are
 * gathered); CSV values are float.  A data set holds one input and one target. */
#ifndef NNC_DATA_H
#define NNC_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the model expects of a data set. */
typedef struct {
    const char *input_name, *target_name;
    int64_t nfeat;      /* values per sample of the input */
    int input_rank;     /* and its shape, for messages */
    int64_t input_dim[4];
    bool target_class;  /* class labels in [0, nclass) */
    int64_t nclass;
    int64_t ntarget;    /* real-valued target: values per sample */
} DataExpect;

typedef struct {
    int64_t n;      /* samples */
    int64_t nfeat;
    uint8_t *u8;    /* n * nfeat, or NULL (may point into `owned`) */
    void *owned;    /* a buffer to free with the data set */
    float *f32;     /* n * nfeat, or NULL */
    float scale;    /* u8 value * scale */
    bool target_class;
    int64_t ntarget;
    int32_t *label; /* n, when target_class */
    float *target;  /* n * ntarget otherwise */
    char *name;     /* for messages: the file(s) it came from */
} Dataset;

typedef struct {
    int target_col;          /* first target column; -1: the last ones */
    const char *target_name; /* or the header name of the (first) target column */
    int header;              /* -1 auto, 0 none, 1 present */
    bool inputs_only;        /* every column is an input (predict) */
} CsvOptions;

/* Each returns 0, or -1 with a message (file, record, what was expected) in err. */
int data_load_idx(const char *images, const char *labels, const DataExpect *ex, Dataset *out, char *err, size_t nerr);
int data_load_csv(const char *path, const CsvOptions *opt, const DataExpect *ex, Dataset *out, char *err, size_t nerr);
/* The standard file names in a directory, with or without .gz; split is "train" or "t10k". */
int data_load_idx_dir(const char *dir, const char *split, const DataExpect *ex, Dataset *out, char *err, size_t nerr);
void data_free(Dataset *d);

/* Inputs alone (predict): an NPY array, an IDX file of unsigned bytes (scaled to [0, 1] as
 * IDX training data is) or a CSV file whose columns are all inputs; the format is recognised
 * from the content (and must agree with a .npy, .csv or -ubyte extension).  gzip is read
 * directly for IDX and CSV.  Each sample must hold ex->nfeat values. */
int data_load_inputs(const char *path, const DataExpect *ex, Dataset *out, char *err, size_t nerr);

/* Copy samples idx[0..count) into batch buffers: inputs as float, labels as int32 or targets
 * as float (label and target may be NULL, as may the data set's). */
void data_gather(const Dataset *d, const int64_t *idx, int64_t count, float *x, int32_t *label, float *target);

/* Where Debian's dataset-fashion-mnist puts the files; NNC_FASHION_MNIST_DIR overrides it. */
const char *data_fashion_mnist_dir(void);

#endif
