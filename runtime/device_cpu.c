/* device_cpu.c: the CPU device.  Kernels are the LLVM backend's compiled entries (JIT-compiled
 * by nnc, or linked into a built trainer: see cpu_kernels_open in device.h), GEMMs are
 * device_sgemm (gemm_small.c's kernel for small ones and for tall ones, a convolution's
 * patches times its weight; one-thread OpenBLAS calls for the rest; see split_sgemm),
 * memory is host memory.
 *
 * Row-parallel launches.  A loop kernel whose results are each a function of one batch row
 * (every output stored per row, every batched argument indexed by the row, no batch-wide
 * value: no column or total sums, no row count, no random numbers, which number elements
 * across the batch) is split by rows over the device's threads: each runs the same compiled
 * entry on its rows (from a row whose arguments stay 64-byte aligned), its batched arguments
 * offset to them.  Each element is computed by the same instructions as in one call, so the
 * results are bit-identical whatever the number of threads.  The threads are OpenBLAS's count
 * (OPENBLAS_NUM_THREADS), so one setting governs both; NNC_THREADS overrides it.  Kernels with
 * sums over the batch run whole, on one thread.  GEMMs are shared out too (split_sgemm). */
#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "gemm_small.h"

/* MIN_SPLIT_WORK: elements of a loop kernel worth waking the threads for (below it, a 1000 x 20
 * layer, the hand-off costs more than it saves); SMALL_GEMM: the same for a GEMM's multiply-adds */
enum { MAX_THREADS = 64, MIN_SPLIT_WORK = 1 << 17, SMALL_GEMM = 1 << 20 };
/* A tall GEMM (tall_gemm): at least TALL_ROWS rows of C, at most TALL_COLS columns, op(B) of at
 * most TALL_B floats */
enum { TALL_ROWS = 4096, TALL_COLS = 1024, TALL_B = 1 << 18 };

typedef struct CpuDevice CpuDevice;

typedef struct {
    CpuDevice *c;
    int index; /* 1..nthread-1; the caller is 0 */
    pthread_t id;
} Worker;

struct CpuDevice {
    Device d;
    void *kernels; /* cpu_kernels_open's handle */
    const KernelEntry *table;
    const Plan *plan;
    int64_t **row_bytes; /* per kernel: per argument, bytes per batch row (0: not batched);
                            NULL: the kernel runs whole */
    int nthread;
    int64_t min_split; /* MIN_SPLIT_WORK, or NNC_SPLIT_MIN (tests split every kernel they can) */
    Worker *worker;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t generation; /* a new job for the workers */
    int pending;         /* workers still on it */
    bool stop;
    /* the job */
    int job_kernel;
    void *const *job_args;
    const float *job_scalars;
    int64_t job_rows;
};

/* Whether kernel k's results are per batch row; the bytes per row of each argument if so. */
static int64_t *row_split(const Plan *p, const Kernel *k) {
    if (k->kind != K_LOOP || !kernel_batched(k) || k->dim[0].n != 1) return NULL;
    for (int i = 0; i < k->nx; i++) {
        const KExpr *x = &k->x[i];
        if (x->op == KX_ROWS || x->op == KX_RANDOM || (x->op == KX_INDEX && x->arg == 0) ||
            (x->op == KX_EXTENT && x->arg == 0))
            return NULL;
    }
    for (int o = 0; o < k->nout; o++)
        if (k->out[o].kind != KO_STORE && k->out[o].kind != KO_STORE_ROW) return NULL;
    for (int a = 0; a < k->nacc; a++) {
        const KAccess *ac = &k->acc[a];
        bool batched = p->buf[k->arg[ac->arg].buf].batched;
        for (int d = 0; d < ac->rank; d++) {
            const KIdx *ix = &ac->idx[d];
            bool row = d == 0 && batched; /* the batch index itself: dim 0, exactly */
            if (row && (ix->coef[0] != 1 || ix->off != 0 || ix->div != 1)) return NULL;
            if (row)
                for (int v = 1; v < k->ndim; v++)
                    if (ix->coef[v]) return NULL;
            if (!row && ix->coef[0]) return NULL;
        }
        if (batched && ac->rank == 0) return NULL;
    }
    int64_t *bytes = util_calloc((size_t)k->narg + 1, sizeof(int64_t)), granule = 1;
    for (int a = 0; a < k->narg; a++) {
        const Buffer *b = &p->buf[k->arg[a].buf];
        if (b->batched) {
            bytes[a] = b->elems * 4; /* f32 and i32 */
            int64_t g = 1; /* rows whose bytes are a multiple of 64 */
            while ((bytes[a] * g) % 64) g *= 2;
            if (g > granule) granule = g;
        } else if (k->arg[a].write) {
            free(bytes);
            return NULL;
        }
    }
    bytes[k->narg] = granule;
    return bytes;
}

/* Thread t's share [r0, r1) of n rows, and its call.  Shares start at a multiple of the
 * kernel's granule of rows, so that every argument keeps the 64-byte alignment its compiled
 * code assumes (a kernel over short rows, compiled for its column count, uses aligned vector
 * loads across them). */
static void run_share(CpuDevice *c, int t) {
    const Kernel *k = &c->plan->kernel[c->job_kernel];
    const int64_t *rb = c->row_bytes[c->job_kernel], g = rb[k->narg];
    int64_t n = c->job_rows, r0 = n * t / c->nthread / g * g, r1 = t + 1 == c->nthread ? n : n * (t + 1) / c->nthread / g * g;
    if (r1 <= r0) return;
    void *args[256];
    NNC_ASSERT(k->narg <= 256);
    for (int a = 0; a < k->narg; a++) args[a] = (char *)c->job_args[a] + r0 * rb[a];
    c->table[c->job_kernel](args, c->job_scalars, r1 - r0, kernel_cols(k));
}

static void *worker_main(void *arg) {
    Worker *w = arg;
    CpuDevice *c = w->c;
    uint64_t seen = 0;
    util_flush_denormals();
    for (;;) {
        pthread_mutex_lock(&c->mu);
        while (!c->stop && c->generation == seen) pthread_cond_wait(&c->go, &c->mu);
        if (c->stop) {
            pthread_mutex_unlock(&c->mu);
            return NULL;
        }
        seen = c->generation;
        pthread_mutex_unlock(&c->mu);
        run_share(c, w->index);
        pthread_mutex_lock(&c->mu);
        if (--c->pending == 0) pthread_cond_signal(&c->done);
        pthread_mutex_unlock(&c->mu);
    }
}

/* OpenBLAS's own thread count (OPENBLAS_NUM_THREADS), read once, before OpenBLAS is set to run
 * every call on one thread (split_sgemm says why); chains sampled at once get here together. */
static int blas_all;
static void blas_one_thread(void) {
    blas_all = openblas_get_num_threads();
    openblas_set_num_threads(1);
}
static int blas_all_threads(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, blas_one_thread);
    return blas_all;
}

static int thread_count(void) {
    const char *v = getenv("NNC_THREADS");
    int n = v && *v ? atoi(v) : blas_all_threads();
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
}

static void start_threads(CpuDevice *c) {
    c->nthread = thread_count();
    const char *v = getenv("NNC_SPLIT_MIN");
    c->min_split = v && *v ? atoll(v) : MIN_SPLIT_WORK;
    if (c->nthread == 1) return;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->go, NULL);
    pthread_cond_init(&c->done, NULL);
    c->worker = util_calloc((size_t)c->nthread, sizeof(Worker));
    for (int t = 1; t < c->nthread; t++) {
        c->worker[t] = (Worker){c, t, 0};
        if (pthread_create(&c->worker[t].id, NULL, worker_main, &c->worker[t])) { /* run with the ones we have */
            c->nthread = t;
            break;
        }
    }
}

static void stop_threads(CpuDevice *c) {
    if (!c->worker) return; /* (made, and kept when no thread would start: nthread is then 1) */
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_broadcast(&c->go);
    pthread_mutex_unlock(&c->mu);
    for (int t = 1; t < c->nthread; t++) pthread_join(c->worker[t].id, NULL);
    free(c->worker);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->go);
    pthread_cond_destroy(&c->done);
}

/* The bound under which a GEMM of m x n x k multiply-adds counts as small: SMALL_GEMM, about
 * 50 us of one core's work, or NNC_SMALL_GEMM. */
static double small_gemm_bound(void) {
    static double small = -1;
    if (small < 0) {
        const char *v = getenv("NNC_SMALL_GEMM");
        small = v && *v ? atof(v) : SMALL_GEMM;
    }
    return small;
}

bool device_gemm_small(int64_t m, int64_t n, int64_t k) { return (double)m * (double)n * (double)k < small_gemm_bound(); }

int device_cpu_threads(void) { return thread_count(); }

void device_cpu_set_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }

/* Splitting a GEMM over threads.  OpenBLAS runs on one thread in every call (set once, by
 * blas_all_threads): the threads of its own pool spin after each call, and on 2 cores they held the
 * second one while the loop kernels ran (fashion_2c2d on a Zen 3: loop kernels split over 2
 * threads ran no faster than on 1, col2im slower).  nnc gives each of its threads a part of a
 * GEMM instead:
 *   - a tall product (many rows of A times a narrow and short op(B): a convolution's patches
 *     times its weight, [B OH OW, kh kw C] x [kh kw C, F], or its output gradient times the
 *     weight), which OpenBLAS's blocking suits badly (fashion_2c2d's conv2, 25088 x 64 x 800 and
 *     25088 x 800 x 64: 41 ms each on OpenBLAS's two threads, about 50 on one of gemm_small),
 *     runs, on CPUs without AVX-512 (device_tall_in_gemm_small), in gemm_small, its rows
 *     shared by all the threads (NNC_THREADS, else OpenBLAS's count): each element of C is
 *     gemm_small's fixed chain of multiply-adds however the rows are shared, so the bits do not
 *     depend on the thread count; with AVX-512 it is cut as the other GEMMs are;
 *   - any other GEMM above the small bound is cut into OPENBLAS_NUM_THREADS parts, by rows of C
 *     (or by columns when it has fewer rows), each a one-thread OpenBLAS call.  OpenBLAS may
 *     round a part otherwise than the whole, so the parts follow OpenBLAS's own setting, as its
 *     threads did, not NNC_THREADS. */
static bool tall_gemm(GemmShape s) {
    return !s.ta && s.m >= TALL_ROWS && s.n <= TALL_COLS && (double)s.k * (double)s.n <= TALL_B && device_tall_in_gemm_small();
}

/* Whether tall GEMMs go to gemm_small: where its AVX2 kernel is the best this CPU has, that is
 * without AVX-512.  OpenBLAS's AVX-512 kernels beat it (a Xeon of Sapphire Rapids, one thread,
 * bench/tall_gemms.c: 12544 x 64 x 800 in 12.4-14.9 ms against 18.3-18.4; fashion_2c2d, whole
 * runs: 1292-1300 -> 1333-1342 samples/s).
 * NNC_TALL_GEMM=small or blas overrides the choice (tests take both ways on any CPU). */
bool device_tall_in_gemm_small(void) {
    const char *v = getenv("NNC_TALL_GEMM");
    if (v && !strcmp(v, "small")) return gemm_small_available();
    if (v && !strcmp(v, "blas")) return false;
    static int wide = -1;
    if (wide < 0) {
        __builtin_cpu_init();
        wide = __builtin_cpu_supports("avx512f");
    }
    return !wide && gemm_small_available();
}

typedef struct {
    GemmShape s;
    const float *A, *B;
    float *C;
    bool small; /* gemm_small, else OpenBLAS */
} GemmPart;

static void *gemm_part(void *arg) {
    const GemmPart *p = arg;
    util_flush_denormals();
    const GemmShape *s = &p->s;
    if (p->small)
        gemm_small(s->ta, s->tb, s->m, s->n, s->k, p->A, s->lda, p->B, s->ldb, p->C, s->ldc);
    else
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, s->m, s->n, s->k, 1.0f,
                    p->A, s->lda, p->B, s->ldb, 0.0f, p->C, s->ldc);
    return NULL;
}

/* C in nt parts, by rows (by columns when there are fewer rows and `small` is false: a
 * gemm_small part must keep every column, or one column alone would be its dot product), on nt
 * threads: the caller and nt - 1 started for the call. */
static void split_sgemm(GemmShape s, const float *A, const float *B, float *C, int nt, bool small) {
    GemmPart part[MAX_THREADS];
    pthread_t id[MAX_THREADS];
    bool started[MAX_THREADS] = {false};
    bool rows = small || s.m >= s.n;
    int64_t total = rows ? s.m : s.n;
    nt = nt > total ? (int)total : nt;
    for (int t = 0; t < nt; t++) {
        int64_t a = total * t / nt, b = total * (t + 1) / nt;
        GemmPart p = {s, A, B, C + (rows ? a * s.ldc : a), small};
        if (rows) {
            p.s.m = (int)(b - a);
            p.A = s.ta ? A + a : A + a * s.lda;
        } else {
            p.s.n = (int)(b - a);
            p.B = s.tb ? B + a * s.ldb : B + a;
        }
        part[t] = p;
    }
    for (int t = 1; t < nt; t++) started[t] = !pthread_create(&id[t], NULL, gemm_part, &part[t]);
    gemm_part(&part[0]);
    for (int t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(id[t], NULL);
        else
            gemm_part(&part[t]); /* no thread for it: this one does its part */
    }
}

/* A small GEMM runs on one thread in gemm_small (AVX2 + FMA) where the CPU has it, else in
 * one OpenBLAS call; a tall one in gemm_small on all the threads; the rest in OpenBLAS, cut
 * into parts (split_sgemm).  The CPU device and the emulated CUDA device's cuBLAS both come
 * here for every GEMM, so they give the same bits. */
void device_sgemm(GemmShape s, const float *A, const float *B, float *C) {
    int blas_parts = blas_all_threads(); /* also sets OpenBLAS to one thread, before any call */
    if (device_gemm_small(s.m, s.n, s.k) && gemm_small(s.ta, s.tb, s.m, s.n, s.k, A, s.lda, B, s.ldb, C, s.ldc)) return;
    if (tall_gemm(s))
        split_sgemm(s, A, B, C, thread_count(), true);
    else
        split_sgemm(s, A, B, C, device_gemm_small(s.m, s.n, s.k) ? 1 : blas_parts, false);
}

GemmShape device_gemm_shape(const Kernel *k, int64_t rows) {
    GemmShape s;
    s.m = (int)kdim_value(k->m, rows);
    s.n = (int)kdim_value(k->n, rows);
    s.k = (int)kdim_value(k->k, rows);
    s.ta = k->ta;
    s.tb = k->tb;
    s.lda = k->ta ? s.m : s.k;
    s.ldb = k->tb ? s.k : s.n;
    s.ldc = s.n;
    return s;
}

static void *cpu_alloc(Device *d, size_t bytes) {
    (void)d;
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (p) memset(p, 0, bytes);
    return p;
}
static void cpu_free(Device *d, void *p) {
    (void)d;
    free(p);
}
static int cpu_copy(Device *d, void *dst, const void *src, size_t bytes) {
    (void)d;
    memcpy(dst, src, bytes);
    return 0;
}
static int cpu_launch(Device *d, const Kernel *k, int index, void *const *args, const float *scalars, int64_t rows) {
    CpuDevice *c = (CpuDevice *)d;
    int64_t work = rows;
    for (int i = 1; i < k->ndim; i++) work *= k->dim[i].n;
    if (c->nthread <= 1 || !c->row_bytes[index] || rows < 2 || work < c->min_split) {
        c->table[index](args, scalars, rows, kernel_cols(k));
        return 0;
    }
    pthread_mutex_lock(&c->mu);
    c->job_kernel = index, c->job_args = args, c->job_scalars = scalars, c->job_rows = rows;
    c->pending = c->nthread - 1;
    c->generation++;
    pthread_cond_broadcast(&c->go);
    pthread_mutex_unlock(&c->mu);
    run_share(c, 0);
    pthread_mutex_lock(&c->mu);
    while (c->pending) pthread_cond_wait(&c->done, &c->mu);
    pthread_mutex_unlock(&c->mu);
    return 0;
}
static int cpu_gemm(Device *d, const Kernel *k, void *const *args, int64_t rows) {
    (void)d;
    device_sgemm(device_gemm_shape(k, rows), args[0], args[1], args[2]);
    return 0;
}
static int cpu_sync(Device *d) {
    (void)d;
    return 0;
}
static void cpu_destroy(Device *d) {
    CpuDevice *c = (CpuDevice *)d;
    stop_threads(c);
    for (int k = 0; k < c->plan->nkernel; k++) free(c->row_bytes[k]);
    free(c->row_bytes);
    cpu_kernels_close(c->kernels);
    free(d);
}

Device *device_cpu_new(const Plan *plan, char *err, size_t nerr) {
    CpuDevice *c = util_calloc(1, sizeof *c);
    if (!(c->table = cpu_kernels_open(plan, &c->kernels, err, nerr))) {
        free(c);
        return NULL;
    }
    c->plan = plan;
    c->row_bytes = util_calloc((size_t)plan->nkernel + 1, sizeof(int64_t *));
    for (int k = 0; k < plan->nkernel; k++) c->row_bytes[k] = row_split(plan, &plan->kernel[k]);
    start_threads(c);
    Device *d = &c->d;
    d->name = "cpu";
    snprintf(d->info, sizeof d->info, "the host CPU: LLVM-compiled kernels, OpenBLAS GEMMs");
    d->host_memory = true;
    d->alloc = cpu_alloc;
    d->free = cpu_free;
    d->upload = cpu_copy;
    d->download = cpu_copy;
    d->launch = cpu_launch;
    d->gemm = cpu_gemm;
    d->sync = cpu_sync;
    d->destroy = cpu_destroy;
    return d;
}

void device_close(Device *d) {
    if (d) d->destroy(d);
}
