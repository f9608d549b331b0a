/* dist.h: data-parallel training across processes (ranks).  A process started by a launcher
 * (mpirun, or Slurm's srun) loads the MPI plug-in libnnc_mpi.so with dlopen and joins the job;
 * one started on its own is the single rank of its own job and never touches MPI.  The
 * collectives here are what the training loop needs (train.c): sums of the gradient block and
 * of evaluation tallies, gathers, a broadcast, and agreement on whether every rank is fine.
 * Each waits at most dist.timeout_s for the others; past it the job ends, naming the rank and
 * the collective (a watchdog thread), so that no rank hangs on one that died or stopped. */
#ifndef NNC_DIST_H
#define NNC_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* What the plug-in gives (mpi_plugin.c); every call 0 or -1. */
enum { DIST_PLUGIN_ABI = 2 };
typedef struct {
    int abi;
    int (*init)(int *rank, int *size, char *err, int nerr);
    int (*sum_f32)(float *v, int64_t n);  /* in place, over every rank */
    int (*sum_f64)(double *v, int64_t n);
    int (*max_f64)(double *v, int64_t n);
    int (*allgather)(const void *mine, void *all, int64_t bytes); /* rank r's at all + r bytes */
    int (*bcast)(void *v, int64_t bytes, int root);
    int (*barrier)(void);
    void (*abort_job)(int code);
    void (*finalize)(void);
    void (*library)(char *out, int n); /* "Open MPI v4.1.4" */
    /* a sum started now and finished by wait (test: whether it has, driving it on) */
    int (*isum_f32)(float *v, int64_t n, void **req);
    int (*test)(void *req, int *done);
    int (*wait)(void *req); /* frees req */
} DistPlugin;

typedef struct {
    bool on;          /* started by a launcher: MPI is up (a job of one rank included) */
    int rank, size;   /* 0 and 1 in a process of its own */
    double timeout_s; /* a collective waiting longer ends the job (--collective-timeout) */
    bool failed;      /* the ranks agreed that one failed (dist_first_failed): they end together */
    double wait_s;    /* seconds spent in collectives, and how many */
    int64_t calls;
    char library[128];
    char plugin[1200]; /* the plug-in's path */
} Dist;
extern Dist dist;

/* Whether a launcher started this process, and as which rank of how many (from its
 * environment, before MPI is up). */
bool dist_launched(int *rank, int *size);
/* Joins the job when a launcher started this process (loads the plug-in, MPI_Init); nothing
 * otherwise.  0, or -1 with the reason (the plug-in not found, MPI failing). */
int dist_init(double timeout_s, char *err, size_t nerr);
/* One more place for dist_init to look for the plug-in, after the executable's own: a
 * trainer's, where the nnc that built it had it. */
void dist_plugin_hint(const char *path);
/* The threads each rank should use when nothing says (no NNC_THREADS, OPENBLAS_NUM_THREADS or
 * OMP_NUM_THREADS): the machine's cores shared by the ranks the launcher put on it; 0 when it
 * does not say how many, or when something else says. */
int dist_threads_per_rank(void);
/* At the end of the run: MPI_Finalize when every rank ends the same way (rc 0, or a failure
 * the ranks agreed on), else MPI_Abort, which ends the others too.  Returns rc. */
int dist_end(int rc);

/* The collectives (`what` names them in a timeout's message); with one rank they do nothing
 * but copy.  0, or -1 after a message on stderr. */
int dist_sum_f32(float *v, int64_t n, const char *what);
int dist_sum_f64(double *v, int64_t n, const char *what);
int dist_max_f64(double *v, int64_t n, const char *what);
int dist_allgather(const void *mine, void *all, int64_t bytes, const char *what);
int dist_bcast(void *v, int64_t bytes, int root, const char *what);
/* A sum of v over the ranks started now (a bucket of the gradient block, while the backward
 * pass goes on), driven on by dist_progress and finished by dist_wait.  NULL after a message;
 * with one rank it does nothing but return a token. */
void *dist_isum_f32(float *v, int64_t n, const char *what);
void dist_progress(void *req);
int dist_wait(void *req, const char *what);
/* Something else that waits for the other ranks (NCCL's set-up), under the same timeout. */
double dist_watch(const char *what);
void dist_unwatch(double t0);
/* Every rank says whether it is fine: -1 when all are, else the lowest rank that is not (and
 * dist.failed is set). */
int dist_first_failed(bool ok, const char *what);
/* Share [lo, hi) of n items that rank r of `size` takes: as even as can be, in order. */
void dist_share(int64_t n, int r, int size, int64_t *lo, int64_t *hi);
/* "rank 1: " in a job of several ranks, else "": messages on stderr start with it. */
const char *dist_who(void);

#endif
