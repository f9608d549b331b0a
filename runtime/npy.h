/* npy.h: NumPy .npy array files (runtime/; inputs, labels and exported arrays).  Reads
 * versions 1.0, 2.0 and 3.0 holding C-order arrays of dtype '<f4', '<f8', '<i4', '<i8',
 * '|u1' ('<u1') or '|b1', rank 0 to 8; writes float32 arrays as version 1.0, byte for byte as
 * numpy.save does.  Every problem is reported as -1 with one line in `err` naming the file,
 * what is wrong and what was expected. */
#ifndef NNC_NPY_H
#define NNC_NPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_RANK 8

/* Do the first n bytes of a file start like a .npy file ("\x93NUMPY")? */
bool npy_is_npy(const void *head, size_t n);

/* The whole array, converted to float32 (float64 values beyond float32's range are an error).
 * *out is malloc'd (free it); *rank and shape[0..*rank) give its shape. */
int npy_read_f32(const char *path, float **out, int *rank, int64_t shape[NPY_MAX_RANK], char *err, size_t nerr);

/* The same, converted to int32 class labels: every value must be a whole number (floats
 * included) that fits in int32.  Whether labels are in range for a model is the caller's. */
int npy_read_labels_i32(const char *path, int32_t **out, int *rank, int64_t shape[NPY_MAX_RANK], char *err, size_t nerr);

/* Writes data (product(shape) floats, row-major) as a '<f4' version 1.0 file. */
/* The shape alone, from the file's header (the data is not read).  0, or -1 with the reason. */
int npy_read_shape(const char *path, int *rank, int64_t shape[NPY_MAX_RANK], char *err, size_t nerr);
int npy_write_f32(const char *path, const float *data, int rank, const int64_t *shape, char *err, size_t nerr);

#endif
