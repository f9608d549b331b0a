/* nccl.h: NCCL, loaded at run time with dlopen (no link-time CUDA dependency), for the
 * data-parallel gradient sum on GPUs (train.c, docs/parallel.md): one communicator over the
 * ranks of the job (its id made by rank 0 and broadcast by MPI, dist.h), and a sum of the
 * gradient block in device memory, each rank's part pre-multiplied by its share of the batch. */
#ifndef NNC_NCCL_H
#define NNC_NCCL_H

#include <stddef.h>
#include <stdint.h>

typedef struct Nccl Nccl;

/* The library alone (NNC_NCCL, else libnccl.so.2 from the loader's path or CUDA's lib64), its
 * version in *version ("2.28.9"): NULL with a one-line reason.  No GPU is needed for this. */
Nccl *nccl_load(char *version, size_t nversion, char *err, size_t nerr);
/* A communicator over every rank of the job, on the current CUDA context's device: collective
 * (every rank calls it).  -1 with a reason (this rank's). */
int nccl_join(Nccl *n, char *err, size_t nerr);
/* v[0..count) (device memory, the default stream) summed over the ranks in place, this rank's
 * values multiplied by `share` first.  -1 with a reason. */
int nccl_sum(Nccl *n, void *v, int64_t count, float share, char *err, size_t nerr);
void nccl_close(Nccl *n);

#endif
