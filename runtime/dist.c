/* dist.c: joining a data-parallel job and its collectives (see dist.h).  The MPI plug-in is
 * looked for at $NNC_MPI_PLUGIN, beside the executable, in ../lib/nnc beside it (an install),
 * where the nnc that built a trainer had it (dist_plugin_hint), and where the build put it
 * (NNC_MPI_PLUGIN_PATH).  The watchdog thread wakes every 50 ms and
 * ends the process (exit 1, which makes the launcher end the job) when a collective has
 * waited past the timeout. */
#include "dist.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

Dist dist = {.rank = 0, .size = 1, .timeout_s = 300};

static const DistPlugin *plug;
static const char *plugin_hint;    /* dist_plugin_hint's, or NULL */
static _Atomic double deadline;    /* of the collective under way; 0: none */
static const char *_Atomic waiting; /* its name */

void dist_plugin_hint(const char *path) { plugin_hint = path && *path ? path : NULL; }

static int env_int(const char *name, int *v) {
    const char *s = getenv(name);
    char *end;
    if (!s || !*s) return 0;
    long x = strtol(s, &end, 10);
    if (*end || x < 0 || x > INT_MAX) return 0;
    *v = (int)x;
    return 1;
}

bool dist_launched(int *rank, int *size) {
    *rank = 0;
    *size = 1;
    /* Open MPI; MPICH's Hydra and PMI-2; Slurm's srun (SLURM_STEP_NUM_TASKS: only inside a step) */
    static const char *const pairs[][2] = {{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                                          {"PMI_RANK", "PMI_SIZE"},
                                          {"SLURM_PROCID", "SLURM_STEP_NUM_TASKS"}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        if (env_int(pairs[i][0], rank) && env_int(pairs[i][1], size) && *size >= 1) return true;
    *rank = 0;
    *size = 1;
    return false;
}

static void *watchdog(void *arg) {
    (void)arg;
    for (;;) {
        struct timespec nap = {0, 50 * 1000 * 1000};
        nanosleep(&nap, NULL);
        double d = atomic_load(&deadline);
        if (d > 0 && util_now() > d) {
            fprintf(stderr, "nnc: error: rank %d: %s: no answer from the other ranks in %g s (--collective-timeout): one of them "
                    "died or stopped; ending the job\n", dist.rank, atomic_load(&waiting), dist.timeout_s);
            fflush(stderr);
            _exit(1);
        }
    }
    return NULL;
}

static void *try_plugin(const char *path, char *why, size_t nwhy) {
    void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL); /* global: MPI's own components resolve against libmpi */
    if (!h) {
        size_t at = strlen(why);
        snprintf(why + at, nwhy - at, "%s%s", at ? "; " : "", dlerror());
    }
    return h;
}

int dist_init(double timeout_s, char *err, size_t nerr) {
    int rank, size;
    if (timeout_s > 0) dist.timeout_s = timeout_s;
    if (!dist_launched(&rank, &size) || dist.on) return 0;
    char exe[1024] = "", cand[5][1200], why[2048] = "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
    }
    int nc = 0;
    if (getenv("NNC_MPI_PLUGIN")) snprintf(cand[nc++], sizeof cand[0], "%s", getenv("NNC_MPI_PLUGIN"));
    if (n > 0) {
        snprintf(cand[nc++], sizeof cand[0], "%s/libnnc_mpi.so", exe);
        snprintf(cand[nc++], sizeof cand[0], "%s/../lib/nnc/libnnc_mpi.so", exe);
    }
    if (plugin_hint) snprintf(cand[nc++], sizeof cand[0], "%s", plugin_hint);
#ifdef NNC_MPI_PLUGIN_PATH
    if (!plugin_hint || strcmp(plugin_hint, NNC_MPI_PLUGIN_PATH)) snprintf(cand[nc++], sizeof cand[0], "%s", NNC_MPI_PLUGIN_PATH);
#endif
    void *h = NULL;
    for (int i = 0; i < nc && !h; i++)
        if (access(cand[i], F_OK) == 0 && (h = try_plugin(cand[i], why, sizeof why))) memcpy(dist.plugin, cand[i], sizeof dist.plugin);
    if (!h) {
        StrBuf looked = {0};
        for (int i = 0; i < nc; i++) sb_printf(&looked, "%s%s", i ? ", " : "", cand[i]);
        snprintf(err, nerr, "started by a launcher as rank %d of %d, but the MPI plug-in libnnc_mpi.so %s (looked at %s)%s%s", rank,
                 size, why[0] ? "does not load" : "is not there: build nnc with an MPI installed (Debian: libopenmpi-dev)",
                 sb_str(&looked), why[0] ? ": " : "", why);
        sb_free(&looked);
        return -1;
    }
    const DistPlugin *(*get)(void) = (const DistPlugin *(*)(void))dlsym(h, "nnc_mpi_plugin");
    plug = get ? get() : NULL;
    if (!plug || plug->abi != DIST_PLUGIN_ABI) {
        snprintf(err, nerr, "%s is not an MPI plug-in of this nnc (rebuild it)", dist.plugin);
        plug = NULL;
        return -1;
    }
    char why_init[512] = "";
    if (plug->init(&dist.rank, &dist.size, why_init, (int)sizeof why_init)) {
        snprintf(err, nerr, "%s", why_init);
        return -1;
    }
    dist.on = true;
    plug->library(dist.library, (int)sizeof dist.library);
    pthread_t t;
    if (pthread_create(&t, NULL, watchdog, NULL) == 0) pthread_detach(t);
    return 0;
}

int dist_threads_per_rank(void) {
    int local = 0;
    if (!dist.on || getenv("NNC_THREADS") || getenv("OPENBLAS_NUM_THREADS") || getenv("OMP_NUM_THREADS")) return 0;
    if (!env_int("OMPI_COMM_WORLD_LOCAL_SIZE", &local) && !env_int("MPI_LOCALNRANKS", &local) &&
        !env_int("SLURM_NTASKS_PER_NODE", &local))
        return 0;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return local > 0 && cores > 0 ? (int)(cores / local > 0 ? cores / local : 1) : 0;
}

int dist_end(int rc) {
    if (!dist.on) return rc;
    if (rc == 0 || dist.failed) {
        plug->finalize();
    } else {
        fflush(stdout);
        fflush(stderr);
        plug->abort_job(rc);
    }
    dist.on = false;
    return rc;
}

const char *dist_who(void) {
    static char who[32];
    if (dist.size <= 1) return "";
    snprintf(who, sizeof who, "rank %d: ", dist.rank);
    return who;
}

/* A collective under the watchdog, timed. */
static double enter(const char *what) {
    double t0 = util_now();
    atomic_store(&waiting, what);
    atomic_store(&deadline, t0 + dist.timeout_s);
    return t0;
}
static int leave(double t0, int rc, const char *what) {
    atomic_store(&deadline, 0.0);
    dist.wait_s += util_now() - t0;
    dist.calls++;
    if (rc) fprintf(stderr, "nnc: error: rank %d: %s failed in MPI\n", dist.rank, what);
    return rc;
}

double dist_watch(const char *what) { return dist.on ? enter(what) : 0; }
void dist_unwatch(double t0) {
    if (dist.on) leave(t0, 0, "");
}

int dist_sum_f32(float *v, int64_t n, const char *what) {
    if (!dist.on) return 0;
    double t0 = enter(what);
    return leave(t0, plug->sum_f32(v, n), what);
}
int dist_sum_f64(double *v, int64_t n, const char *what) {
    if (!dist.on) return 0;
    double t0 = enter(what);
    return leave(t0, plug->sum_f64(v, n), what);
}
int dist_max_f64(double *v, int64_t n, const char *what) {
    if (!dist.on) return 0;
    double t0 = enter(what);
    return leave(t0, plug->max_f64(v, n), what);
}
int dist_allgather(const void *mine, void *all, int64_t bytes, const char *what) {
    if (!dist.on) {
        memmove(all, mine, (size_t)bytes);
        return 0;
    }
    double t0 = enter(what);
    return leave(t0, plug->allgather(mine, all, bytes), what);
}
int dist_bcast(void *v, int64_t bytes, int root, const char *what) {
    if (!dist.on) return 0;
    double t0 = enter(what);
    return leave(t0, plug->bcast(v, bytes, root), what);
}

void *dist_isum_f32(float *v, int64_t n, const char *what) {
    static char token;
    if (!dist.on) return &token;
    void *req = NULL;
    double t0 = enter(what);
    leave(t0, plug->isum_f32(v, n, &req), what);
    return req;
}
void dist_progress(void *req) {
    int done;
    if (dist.on && req) plug->test(req, &done);
}
int dist_wait(void *req, const char *what) {
    if (!dist.on) return 0;
    if (!req) return -1;
    double t0 = enter(what);
    return leave(t0, plug->wait(req), what);
}

int dist_first_failed(bool ok, const char *what) {
    if (!dist.on) return ok ? -1 : 0;
    int mine = ok, *all = util_calloc((size_t)dist.size, sizeof(int)), first = -1;
    if (dist_allgather(&mine, all, sizeof mine, what) == 0)
        for (int r = 0; r < dist.size && first < 0; r++)
            if (!all[r]) first = r;
    free(all);
    if (first >= 0) dist.failed = true;
    return first;
}

void dist_share(int64_t n, int r, int size, int64_t *lo, int64_t *hi) {
    *lo = n * r / size;
    *hi = n * (r + 1) / size;
}
