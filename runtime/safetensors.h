/* safetensors.h: reading and writing .safetensors files (runtime/; used for checkpoints and
 * weights).  The format: an 8-byte little-endian header size N, N bytes of UTF-8 JSON mapping
 * each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the data
 * that follows the header) plus an optional "__metadata__" object of strings, then the data,
 * little-endian.  The reader trusts nothing in the file; every problem is reported as -1 with
 * one line in `err` naming the file, what is wrong and what was expected. */
#ifndef NNC_SAFETENSORS_H
#define NNC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_RANK 8

typedef enum { ST_F32, ST_F64, ST_I32, ST_I64, ST_U8, ST_NDTYPES } StDtype;

typedef struct {
    const char *name;
    StDtype dtype;
    int rank; /* 0 (a scalar) .. ST_MAX_RANK */
    int64_t shape[ST_MAX_RANK];
    const void *data; /* bytes, little-endian, row-major */
    size_t bytes;     /* product(shape) * st_dtype_size(dtype) */
} StTensor;

const char *st_dtype_name(StDtype d); /* "F32", ... */
size_t st_dtype_size(StDtype d);      /* bytes per element */

/* Writes the tensors (in the order given) and the metadata strings to `path` atomically:
 * into `path.tmp.<pid>` first, flushed and fsync'd, then renamed over `path`, then the
 * directory is fsync'd.  On failure the temporary file is removed and `path` is untouched.
 * The same input always gives the same bytes.  The header is padded with spaces so the data
 * starts at a multiple of 8; tensors follow each other without gaps (as the format wants),
 * so a tensor after one of odd size may sit at an unaligned offset. */
int st_write_atomic(const char *path, const StTensor *t, int n, const char *const *meta_keys,
                    const char *const *meta_values, int nmeta, char *err, size_t nerr);

/* Reads and validates a whole file.  NULL with a message in `err` on any problem.  Gaps
 * between tensors are allowed; overlaps, duplicate names and missing data are not. */
typedef struct SafeTensors SafeTensors;
SafeTensors *st_open(const char *path, char *err, size_t nerr);
int st_count(const SafeTensors *st);
/* Tensors in file order.  Their names and data point into `st` and live until st_close.  The
 * data is NOT necessarily aligned for its type: copy it out with memcpy. */
const StTensor *st_get(const SafeTensors *st, int i);
const StTensor *st_find(const SafeTensors *st, const char *name); /* NULL if absent */
const char *st_meta(const SafeTensors *st, const char *key);      /* NULL if absent */
void st_close(SafeTensors *st);

#endif
