/* nccl.c: NCCL through dlopen (see nccl.h).  The few signatures used are declared here, as
 * NCCL's nccl.h documents them (ncclUniqueId is 128 bytes; ncclFloat32 is 7, ncclSum 0,
 * ncclScalarHostImmediate 1), so building nnc needs no NCCL header. */
#include "nccl.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "util.h"

typedef int NcclResult;
typedef struct NcclComm *NcclComm;
typedef struct { char internal[128]; } NcclUniqueId;
enum { NCCL_FLOAT32 = 7, NCCL_SUM = 0, NCCL_SCALAR_HOST_IMMEDIATE = 1 };

struct Nccl {
    void *lib;
    NcclComm comm;
    NcclResult (*GetVersion)(int *);
    NcclResult (*GetUniqueId)(NcclUniqueId *);
    NcclResult (*CommInitRank)(NcclComm *, int, NcclUniqueId, int);
    NcclResult (*CommDestroy)(NcclComm);
    NcclResult (*AllReduce)(const void *, void *, size_t, int, int, NcclComm, void *);
    NcclResult (*RedOpCreatePreMulSum)(int *, void *, int, int, NcclComm);
    NcclResult (*RedOpDestroy)(int, NcclComm);
    const char *(*GetErrorString)(NcclResult);
};

Nccl *nccl_load(char *version, size_t nversion, char *err, size_t nerr) {
    const char *names[] = {getenv("NNC_NCCL"), "libnccl.so.2", "libnccl.so", "/usr/local/cuda/lib64/libnccl.so.2"};
    void *lib = NULL;
    char why[512] = "";
    for (size_t i = 0; i < sizeof names / sizeof *names && !lib; i++) {
        if (!names[i] || !*names[i]) continue;
        lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib && !why[0]) snprintf(why, sizeof why, "%s", dlerror());
    }
    if (!lib) {
        snprintf(err, nerr, "libnccl.so.2 was not found (%s)", why);
        return NULL;
    }
    Nccl *n = util_calloc(1, sizeof *n);
    n->lib = lib;
    struct { void **fn; const char *name; } syms[] = {
        {(void **)&n->GetVersion, "ncclGetVersion"}, {(void **)&n->GetUniqueId, "ncclGetUniqueId"},
        {(void **)&n->CommInitRank, "ncclCommInitRank"}, {(void **)&n->CommDestroy, "ncclCommDestroy"},
        {(void **)&n->AllReduce, "ncclAllReduce"}, {(void **)&n->RedOpCreatePreMulSum, "ncclRedOpCreatePreMulSum"},
        {(void **)&n->RedOpDestroy, "ncclRedOpDestroy"}, {(void **)&n->GetErrorString, "ncclGetErrorString"}};
    for (size_t i = 0; i < sizeof syms / sizeof *syms; i++)
        if (!(*syms[i].fn = dlsym(lib, syms[i].name))) {
            snprintf(err, nerr, "the NCCL library has no %s (NCCL 2.11 or later is needed)", syms[i].name);
            dlclose(lib);
            free(n);
            return NULL;
        }
    int v = 0;
    n->GetVersion(&v); /* 22809: 2.28.9 (since 2.9: major * 10000 + minor * 100 + patch) */
    snprintf(version, nversion, "%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
    return n;
}

static int fail(const Nccl *n, NcclResult rc, const char *what, char *err, size_t nerr) {
    snprintf(err, nerr, "%s: %s", what, n->GetErrorString(rc));
    return -1;
}

int nccl_join(Nccl *n, char *err, size_t nerr) {
    struct { int ok; NcclUniqueId id; } made;
    memset(&made, 0, sizeof made);
    NcclResult rc = dist.rank == 0 ? n->GetUniqueId(&made.id) : 0;
    made.ok = rc == 0;
    if (dist_bcast(&made, sizeof made, 0, "NCCL's id")) return util_fail(err, nerr, "the broadcast of NCCL's id failed");
    if (rc) return fail(n, rc, "ncclGetUniqueId", err, nerr);
    if (!made.ok) return util_fail(err, nerr, "rank 0 could not make NCCL's id");
    double t0 = dist_watch("ncclCommInitRank"); /* (it waits for every rank) */
    rc = n->CommInitRank(&n->comm, dist.size, made.id, dist.rank);
    dist_unwatch(t0);
    if (rc) {
        n->comm = NULL;
        return fail(n, rc, "ncclCommInitRank", err, nerr);
    }
    return 0;
}

int nccl_sum(Nccl *n, void *v, int64_t count, float share, char *err, size_t nerr) {
    int op;
    NcclResult rc = n->RedOpCreatePreMulSum(&op, &share, NCCL_FLOAT32, NCCL_SCALAR_HOST_IMMEDIATE, n->comm);
    if (rc) return fail(n, rc, "ncclRedOpCreatePreMulSum", err, nerr);
    rc = n->AllReduce(v, v, (size_t)count, NCCL_FLOAT32, op, n->comm, NULL);
    NcclResult rc2 = n->RedOpDestroy(op, n->comm);
    if (rc) return fail(n, rc, "ncclAllReduce", err, nerr);
    return rc2 ? fail(n, rc2, "ncclRedOpDestroy", err, nerr) : 0;
}

/* The library stays loaded: NCCL's own threads (ncclGetUniqueId starts one) outlive every call,
 * and would run unmapped code after a dlclose. */
void nccl_close(Nccl *n) {
    if (!n) return;
    if (n->comm) n->CommDestroy(n->comm);
    free(n);
}
