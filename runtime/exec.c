/* exec.c: arena, scalar slots and the orchestration loop (see exec.h).  The loop is the
 * same for every device: a GEMM kernel goes to the device's gemm, a loop kernel to its launch.
 * With NNC_PROFILE set (and not 0) each kernel's calls are timed (the device synchronised
 * after each) and a table of where the time went is printed on stderr when the executor is
 * freed: kernels by total time, with calls and microseconds per call. */
#include "exec.h"

#include <stdlib.h>
#include <string.h>

int exec_new(Exec *e, const Plan *plan, const char *device, FILE *note, char *err, size_t nerr) {
    memset(e, 0, sizeof *e);
    util_flush_denormals(); /* the caller's thread; the CPU device's workers set it too */
    e->plan = plan;
    e->g = plan->g;
    double t0 = util_now();
    e->dev = device_open(device ? device : "cpu", plan, note, err, nerr);
    if (!e->dev) return -1;
    e->compile_s = util_now() - t0;
    e->baseline_rss = util_rss_bytes();
    size_t bytes = (size_t)((plan->arena_bytes + 63) / 64 * 64);
    e->arena = e->dev->alloc(e->dev, bytes ? bytes : 64);
    e->scalars = util_calloc((size_t)e->g->nscalar + 1, sizeof(float));
    e->scalars_dev = e->dev->host_memory ? e->scalars : e->dev->alloc(e->dev, sizeof(float) * ((size_t)e->g->nscalar + 1));
    if (!e->arena || !e->scalars_dev) {
        snprintf(err, nerr, "%s: cannot allocate %zu bytes of device memory: %s", e->dev->name, bytes, e->dev->err);
        exec_free(e);
        return -1;
    }
    const char *prof = getenv("NNC_PROFILE");
    if (prof && *prof && strcmp(prof, "0")) {
        e->prof_s = util_calloc((size_t)plan->nkernel + 1, sizeof(double));
        e->prof_calls = util_calloc((size_t)plan->nkernel + 1, sizeof(int64_t));
    }
    e->args = util_calloc((size_t)plan->nkernel + 1, sizeof(void **));
    for (int k = 0; k < plan->nkernel; k++) {
        const Kernel *kn = &plan->kernel[k];
        e->args[k] = util_calloc((size_t)kn->narg + 1, sizeof(void *));
        for (int a = 0; a < kn->narg; a++) e->args[k][a] = e->arena + plan->buf[kn->arg[a].buf].offset;
    }
    exec_reset_scalars(e);
    return 0;
}

void exec_set_scalars(Exec *e, ScalarKind kind, double value) {
    for (int i = 0; i < e->g->nscalar; i++)
        if (e->g->scalar[i].kind == kind) e->scalars[i] = (float)value;
}

void exec_reset_scalars(Exec *e) {
    for (int i = 0; i < e->g->nscalar; i++) e->scalars[i] = (float)e->g->scalar[i].value;
}

static const double *prof_order_s; /* for cmp_prof: qsort has no context argument */
static int cmp_prof(const void *a, const void *b) {
    double x = prof_order_s[*(const int *)a], y = prof_order_s[*(const int *)b];
    return x < y ? 1 : x > y ? -1 : *(const int *)a - *(const int *)b;
}

/* The NNC_PROFILE table: every kernel that ran, the most time first. */
static void print_profile(const Exec *e) {
    int n = e->plan->nkernel, *order = util_calloc((size_t)n + 1, sizeof(int));
    double total = 0;
    int64_t calls = 0;
    for (int k = 0; k < n; k++) order[k] = k, total += e->prof_s[k], calls += e->prof_calls[k];
    prof_order_s = e->prof_s;
    qsort(order, (size_t)n, sizeof(int), cmp_prof);
    fprintf(stderr, "kernel profile (NNC_PROFILE, device %s): %lld calls, %.3f s in kernels\n", e->dev->name,
            (long long)calls, total);
    fprintf(stderr, "  %6s %9s %10s %11s  %s\n", "share", "seconds", "calls", "us/call", "kernel");
    for (int i = 0; i < n; i++) {
        int k = order[i];
        if (!e->prof_calls[k]) continue;
        fprintf(stderr, "  %5.1f%% %9.3f %10lld %11.2f  %s\n", total > 0 ? 100 * e->prof_s[k] / total : 0, e->prof_s[k],
                (long long)e->prof_calls[k], 1e6 * e->prof_s[k] / (double)e->prof_calls[k], e->plan->kernel[k].name);
    }
    free(order);
}

void exec_free(Exec *e) {
    if (e->prof_s && e->dev) print_profile(e);
    free(e->staging);
    free(e->prof_s);
    free(e->prof_calls);
    if (e->dev) {
        if (e->arena) e->dev->free(e->dev, e->arena);
        if (e->scalars_dev && e->scalars_dev != e->scalars) e->dev->free(e->dev, e->scalars_dev);
        device_close(e->dev);
    }
    if (e->args)
        for (int k = 0; k < e->plan->nkernel; k++) free(e->args[k]);
    free(e->args);
    free(e->scalars);
    memset(e, 0, sizeof *e);
}

void *exec_buf(const Exec *e, int node) {
    int b = e->plan->node_buf[node];
    NNC_ASSERT(b >= 0);
    return e->arena + e->plan->buf[b].offset;
}

int64_t exec_numel(const Exec *e, int node, int64_t rows) {
    Shape s = e->g->node[node].shape;
    return shape_numel(s) * (s.batched ? rows : 1);
}

int exec_feed(Exec *e, const Dataset *d, const int64_t *idx, int64_t rows) {
    const Graph *g = e->g;
    NNC_ASSERT(d->ncol == g->ninput);
    for (int i = 0; i < g->ninput; i++) {
        const Input *in = &g->input[i];
        size_t bytes = (size_t)rows * (size_t)d->col[i].width * 4; /* float or int32 */
        if (e->dev->host_memory) {
            data_gather(d, i, idx, rows, exec_buf(e, in->node));
            continue;
        }
        if (bytes > e->staging_bytes) {
            free(e->staging);
            e->staging = util_calloc(bytes, 1);
            e->staging_bytes = bytes;
        }
        data_gather(d, i, idx, rows, e->staging);
        if (exec_write(e, in->node, e->staging, bytes)) return -1;
    }
    return 0;
}

int exec_write(const Exec *e, int node, const void *src, size_t bytes) {
    return e->dev->upload(e->dev, exec_buf(e, node), src, bytes);
}

int exec_read(const Exec *e, int node, void *dst, size_t bytes) {
    const Node *n = &e->g->node[node];
    if ((n->op == OP_CONST || n->op == OP_PARAM) && bytes == sizeof(float)) {
        /* an output that is a scalar of the model (a head's fixed sigma) has no buffer */
        float v = n->op == OP_CONST ? (float)n->attr[0] : e->scalars[n->ref];
        memcpy(dst, &v, sizeof v);
        return 0;
    }
    return e->dev->download(e->dev, dst, exec_buf(e, node), bytes);
}

int exec_run_checked(Exec *e, int prog, int64_t rows, KernelHook hook, void *ctx) {
    NNC_ASSERT(rows >= 1 && rows <= e->plan->max_batch);
    Device *d = e->dev;
    bool train = e->plan->prog[prog].train;
    for (int s = 0; s < e->g->nscalar; s++) { /* evaluation runs in evaluation mode (dropout off) */
        if (e->g->scalar[s].kind == SC_TRAIN) e->scalars[s] = train ? 1.0f : 0.0f;
        if (e->g->scalar[s].kind == SC_NOISE) e->scalars[s] = train || e->draw_in_eval ? 1.0f : 0.0f;
    }
    if (!d->host_memory && d->upload(d, e->scalars_dev, e->scalars, sizeof(float) * (size_t)e->g->nscalar)) return -1;
    const ProgramPlan *pp = &e->plan->prog[prog];
    for (int i = 0; i < pp->nkernel; i++) {
        int k = pp->kernel[i];
        const Kernel *kn = &e->plan->kernel[k];
        double t0 = e->prof_s ? util_now() : 0;
        int rc = kn->kind == K_GEMM ? d->gemm(d, kn, e->args[k], rows) : d->launch(d, kn, k, e->args[k], e->scalars_dev, rows);
        if (rc) return -1;
        if (e->prof_s) {
            if (d->sync(d)) return -1;
            e->prof_s[k] += util_now() - t0;
            e->prof_calls[k]++;
        }
        if (hook) {
            if (d->sync(d)) return -1;
            hook(ctx, k);
        }
    }
    return 0;
}

int exec_run(Exec *e, int prog, int64_t rows) { return exec_run_checked(e, prog, rows, NULL, NULL); }
