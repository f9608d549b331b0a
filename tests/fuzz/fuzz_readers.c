/* fuzz_readers.c: fuzz targets for the file readers, one per build (FUZZ_READER): the input is
 * written to a file and read as an IDX pair (1), a CSV file (2), an NPY array (3), a
 * safetensors file (4) or a checkpoint's metadata (5).  Each must either load or fail with a
 * message: a crash, a sanitizer report, a hang or a leak is a finding.  libFuzzer drives it with
 * -DNNC_FUZZ=ON and clang; replay_main.c runs a corpus once (ctest fuzz.replay_*). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "data.h"
#include "npy.h"
#include "safetensors.h"

#ifndef FUZZ_READER
#define FUZZ_READER 1
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *write_input(const uint8_t *data, size_t size, const char *suffix) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/nnc_fuzz_%ld%s", (long)getpid(), suffix);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size) fwrite(data, 1, size, f);
    fclose(f);
    return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[1024];
    /* an image input of 28 x 28 and a class target of 10, or a CSV of three inputs and a class */
    DataField image[2] = {{"image", false, false, 0, 784, 2, {28, 28}}, {"label", true, true, 10, 1, 1, {1}}};
    DataField row[2] = {{"x", false, false, 0, 3, 1, {3}}, {"y", true, true, 2, 1, 1, {1}}};
    DataExpect ex = {FUZZ_READER == 1 ? image : row, 2};
    Dataset d;
    memset(&d, 0, sizeof d);
    switch (FUZZ_READER) {
    case 1: { /* the same bytes as the images and the labels file */
        const char *p = write_input(data, size, ".idx");
        if (data_load_idx(p, p, &ex, &d, err, sizeof err) == 0) data_free(&d);
        unlink(p);
        break;
    }
    case 2: {
        const char *p = write_input(data, size, ".csv");
        CsvOptions opt = {.target_col = -1, .header = -1};
        if (data_load_csv(p, &opt, &ex, &d, err, sizeof err) == 0) data_free(&d);
        unlink(p);
        break;
    }
    case 3: {
        const char *p = write_input(data, size, ".npy");
        float *v = NULL;
        int32_t *l = NULL;
        int rank;
        int64_t shape[NPY_MAX_RANK];
        if (npy_read_f32(p, &v, &rank, shape, err, sizeof err) == 0) free(v);
        if (npy_read_labels_i32(p, &l, &rank, shape, err, sizeof err) == 0) free(l);
        unlink(p);
        break;
    }
    case 4: {
        const char *p = write_input(data, size, ".safetensors");
        SafeTensors *st = st_open(p, err, sizeof err);
        if (st) {
            for (int i = 0; i < st_count(st); i++) (void)st_find(st, st_get(st, i)->name);
            (void)st_meta(st, "model");
            st_close(st);
        }
        unlink(p);
        break;
    }
    case 5: {
        const char *p = write_input(data, size, ".safetensors");
        Checkpoint c;
        if (checkpoint_open(p, NULL, &c, err, sizeof err) == 0) checkpoint_close(&c);
        unlink(p);
        break;
    }
    }
    return 0;
}
