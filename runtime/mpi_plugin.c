/* mpi_plugin.c: the MPI plug-in, libnnc_mpi.so.  The one file compiled against mpi.h (by
 * CMake, when an MPI is installed); nnc and trainers load it with dlopen only when a launcher
 * (mpirun, srun) started them, so neither needs MPI otherwise (dist.c).  It exposes the few
 * collectives data-parallel training uses, on MPI_COMM_WORLD, behind a table of functions
 * (dist.h's DistPlugin), so that the rest of nnc never sees an MPI type. */
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"

/* MPI counts are int: long buffers go in pieces of at most 1 GiB. */
enum { PIECE = 1 << 28 };

static int init(int *rank, int *size, char *err, int nerr) {
    int provided, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) {
        int len = 0;
        char msg[MPI_MAX_ERROR_STRING];
        MPI_Error_string(rc, msg, &len);
        snprintf(err, (size_t)nerr, "MPI_Init_thread: %s", msg);
        return -1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    return 0;
}

static int allreduce(void *v, int64_t n, MPI_Datatype t, size_t width, MPI_Op op) {
    for (int64_t at = 0; at < n; at += PIECE) {
        int count = (int)(n - at < PIECE ? n - at : PIECE);
        if (MPI_Allreduce(MPI_IN_PLACE, (char *)v + (size_t)at * width, count, t, op, MPI_COMM_WORLD) != MPI_SUCCESS) return -1;
    }
    return 0;
}
static int sum_f32(float *v, int64_t n) { return allreduce(v, n, MPI_FLOAT, sizeof(float), MPI_SUM); }
static int sum_f64(double *v, int64_t n) { return allreduce(v, n, MPI_DOUBLE, sizeof(double), MPI_SUM); }
static int max_f64(double *v, int64_t n) { return allreduce(v, n, MPI_DOUBLE, sizeof(double), MPI_MAX); }

/* Each rank's `bytes` (at most 2 GiB) side by side in rank order. */
static int allgather(const void *mine, void *all, int64_t bytes) {
    if (bytes > INT32_MAX) return -1;
    return MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : -1;
}

static int bcast(void *v, int64_t bytes, int root) {
    for (int64_t at = 0; at < bytes; at += PIECE) {
        int count = (int)(bytes - at < PIECE ? bytes - at : PIECE);
        if (MPI_Bcast((char *)v + at, count, MPI_BYTE, root, MPI_COMM_WORLD) != MPI_SUCCESS) return -1;
    }
    return 0;
}

/* Non-blocking sums: at most 1 GiB (one piece), the request in malloc'd memory. */
static int isum_f32(float *v, int64_t n, void **req) {
    if (n > PIECE) return -1;
    MPI_Request *r = malloc(sizeof *r);
    if (!r || MPI_Iallreduce(MPI_IN_PLACE, v, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, r) != MPI_SUCCESS) {
        free(r);
        return -1;
    }
    *req = r;
    return 0;
}
static int test(void *req, int *done) { return MPI_Test(req, done, MPI_STATUS_IGNORE) == MPI_SUCCESS ? 0 : -1; }
static int wait(void *req) {
    int rc = MPI_Wait(req, MPI_STATUS_IGNORE) == MPI_SUCCESS ? 0 : -1;
    free(req);
    return rc;
}

static int barrier(void) { return MPI_Barrier(MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : -1; }
static void abort_job(int code) { MPI_Abort(MPI_COMM_WORLD, code); }
static void finalize(void) { MPI_Finalize(); }

static void library(char *out, int n) {
    int len = 0;
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    MPI_Get_library_version(v, &len);
    char *nl = strchr(v, '\n');
    if (nl) *nl = 0;
    char *comma = strchr(v, ',');
    if (comma) *comma = 0;
    snprintf(out, (size_t)n, "%s", v);
}

static const DistPlugin plugin = {
    .abi = DIST_PLUGIN_ABI, .init = init, .sum_f32 = sum_f32, .sum_f64 = sum_f64, .max_f64 = max_f64,
    .allgather = allgather, .bcast = bcast, .barrier = barrier, .abort_job = abort_job, .finalize = finalize,
    .library = library, .isum_f32 = isum_f32, .test = test, .wait = wait};

const DistPlugin *nnc_mpi_plugin(void);
const DistPlugin *nnc_mpi_plugin(void) { return &plugin; }
