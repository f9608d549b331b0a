/* hessian.c: see hessian.h.  Both methods run the model's generated kernels on its device:
 * HVP_EXACT writes the direction into the `<w>.hvp_dir` weights and runs the `hvp` program
 * (compiler/hvp.c) after `grad`; HVP_FD runs `grad` at w + h v and w - h v and takes the
 * central difference, (g(w + h v) - g(w - h v)) / 2h, whose error is O(h^2) from the third
 * derivatives plus the gradients' rounding divided by h.  Vectors are double on the host;
 * the device sees float32. */
#include "hessian.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lower.h"
#include "rng.h"

const char *const hvp_method_name[2] = {"exact", "fd"};

/* LAPACK (OpenBLAS): the eigenvalues and vectors of a symmetric tridiagonal matrix. */
extern void dstev_(const char *jobz, const int *n, double *d, double *e, double *z, const int *ldz, double *work, int *info,
                   size_t jobz_len);

static int device_fail(const Hessian *h, char *err, size_t nerr) {
    return util_fail(err, nerr, "%s: %s", h->e->dev->name, h->e->dev->err);
}

int hessian_open(Hessian *h, Exec *e, HvpMethod method, const Dataset *data, int64_t nbatch, int64_t rows, char *err,
                 size_t nerr) {
    memset(h, 0, sizeof *h);
    const Graph *g = e->g;
    h->e = e;
    h->method = method;
    h->fd_step = 1e-3;
    h->data = data;
    h->rows = rows < e->plan->max_batch ? rows : e->plan->max_batch;
    if (h->rows < 1) return util_fail(err, nerr, "no samples to take the Hessian on");
    if (data) {
        int64_t all = (data->n + h->rows - 1) / h->rows;
        h->nbatch = nbatch <= 0 || nbatch > all ? all : nbatch;
        h->nsamples = h->nbatch * h->rows < data->n ? h->nbatch * h->rows : data->n;
        if (h->nsamples < 1) return util_fail(err, nerr, "%s has no samples to take the Hessian on", data->name);
    } else {
        h->nbatch = 1;
        h->nsamples = h->rows;
        h->current = true;
    }
    if (method == HVP_EXACT && programs_find(g, "hvp") < 0)
        return util_fail(err, nerr, "the model was compiled without its hvp program (CompileOptions.hvp)");
    h->weight = util_calloc((size_t)g->nweight + 1, sizeof(int));
    h->off = util_calloc((size_t)g->nweight + 1, sizeof(int64_t));
    for (int i = 0; i < g->nweight; i++) {
        const Weight *w = &g->weight[i];
        if (w->kind != W_PARAM || w->grad < 0) continue;
        h->weight[h->nw] = i;
        h->off[h->nw++] = h->n;
        h->n += exec_numel(e, w->node, 1);
    }
    if (h->n == 0) return util_fail(err, nerr, "the model has no trained weights");
    h->tmp = util_calloc((size_t)h->n, sizeof(float));
    if (method == HVP_FD) {
        h->w0 = util_calloc((size_t)h->n, sizeof(float));
        for (int k = 0; k < h->nw; k++) {
            const Weight *w = &g->weight[h->weight[k]];
            exec_read(e, w->node, h->w0 + h->off[k], sizeof(float) * (size_t)exec_numel(e, w->node, 1));
        }
    }
    return 0;
}

void hessian_close(Hessian *h) {
    free(h->weight);
    free(h->off);
    free(h->tmp);
    free(h->w0);
    memset(h, 0, sizeof *h);
}

static int64_t batch_rows(const Hessian *h, int64_t b) {
    int64_t left = h->nsamples - b * h->rows;
    return left < h->rows ? left : h->rows;
}

/* The batch b in the arena and the gradient computed on it. */
static int run_grad(Hessian *h, int64_t b, char *err, size_t nerr) {
    int64_t rows = batch_rows(h, b);
    if (h->data) {
        int64_t *idx = util_calloc((size_t)rows, sizeof(int64_t));
        for (int64_t i = 0; i < rows; i++) idx[i] = b * h->rows + i;
        int rc = exec_feed(h->e, h->data, idx, rows);
        free(idx);
        if (rc) return device_fail(h, err, nerr);
    }
    double t0 = util_now();
    if (exec_run(h->e, PROG_GRAD, rows)) return device_fail(h, err, nerr);
    h->grad_s += util_now() - t0;
    h->grads++;
    return 0;
}

/* Writes the flat float vector x into each trained weight (which 0), or reads their gradients
 * into it (which 2). */
static int move(Hessian *h, float *x, int which) {
    const Graph *g = h->e->g;
    for (int k = 0; k < h->nw; k++) {
        const Weight *w = &g->weight[h->weight[k]];
        size_t bytes = sizeof(float) * (size_t)exec_numel(h->e, w->node, 1);
        float *seg = x + h->off[k];
        if (which == 0 ? exec_write(h->e, w->node, seg, bytes) : exec_read(h->e, w->grad, seg, bytes)) return -1;
    }
    return 0;
}

/* Trained weight k's part of `node` (its direction, gradient or H v) as float32 on the host: the
 * arena's own memory on a host-memory device, else k's segment of h->tmp, read from the device
 * when `fetch`.  NULL after a device error. */
static float *host_seg(Hessian *h, int k, int node, bool fetch) {
    if (h->e->dev->host_memory) return exec_buf(h->e, node);
    float *seg = h->tmp + h->off[k];
    size_t bytes = sizeof(float) * (size_t)exec_numel(h->e, h->e->g->weight[h->weight[k]].node, 1);
    return fetch && exec_read(h->e, node, seg, bytes) ? NULL : seg;
}

/* acc += wt * (weight k's part of `node`); a part that is a constant, or absent (-1: it does
 * not depend on the weights), adds that constant, or nothing.  -1 after a device error. */
static int add_seg(Hessian *h, int k, int node, double wt, double *acc) {
    const Graph *g = h->e->g;
    int64_t n = exec_numel(h->e, g->weight[h->weight[k]].node, 1);
    double *dst = acc + h->off[k];
    if (node < 0 || g->node[node].op == OP_CONST) {
        double c = node < 0 ? 0 : g->node[node].attr[0];
        for (int64_t i = 0; i < n; i++) dst[i] += wt * c;
        return 0;
    }
    const float *r = host_seg(h, k, node, true);
    if (!r) return -1;
    for (int64_t i = 0; i < n; i++) dst[i] += wt * r[i];
    return 0;
}

int hessian_gradient(Hessian *h, double *gr, char *err, size_t nerr) {
    memset(gr, 0, sizeof(double) * (size_t)h->n);
    for (int64_t b = 0; b < h->nbatch; b++) {
        if (!(h->current && h->nbatch == 1) && run_grad(h, b, err, nerr)) return -1;
        double wt = (double)batch_rows(h, b) / (double)h->nsamples;
        for (int k = 0; k < h->nw; k++)
            if (add_seg(h, k, h->e->g->weight[h->weight[k]].grad, wt, gr)) return device_fail(h, err, nerr);
    }
    h->current = h->nbatch == 1 && h->method == HVP_EXACT;
    return 0;
}

int hessian_apply(Hessian *h, const double *v, double *hv, char *err, size_t nerr) {
    memset(hv, 0, sizeof(double) * (size_t)h->n);
    double t0 = util_now(), g0 = h->grad_s;
    if (h->method == HVP_EXACT) {
        int prog = programs_find(h->e->g, "hvp");
        const Graph *g = h->e->g;
        for (int k = 0; k < h->nw; k++) { /* the direction, into the <w>.hvp_dir weights */
            const Weight *w = &g->weight[h->weight[k]];
            float *d = host_seg(h, k, w->dir, false);
            const double *src = v + h->off[k];
            int64_t m = exec_numel(h->e, w->node, 1);
            for (int64_t i = 0; i < m; i++) d[i] = (float)src[i];
            if (!h->e->dev->host_memory && exec_write(h->e, w->dir, d, sizeof(float) * (size_t)m)) return device_fail(h, err, nerr);
        }
        for (int64_t b = 0; b < h->nbatch; b++) {
            if (!(h->current && h->nbatch == 1) && run_grad(h, b, err, nerr)) return -1;
            if (exec_run(h->e, prog, batch_rows(h, b))) return device_fail(h, err, nerr);
            double wt = (double)batch_rows(h, b) / (double)h->nsamples;
            for (int k = 0; k < h->nw; k++)
                if (add_seg(h, k, g->weight[h->weight[k]].hvp, wt, hv)) return device_fail(h, err, nerr);
        }
        h->current = h->nbatch == 1;
    } else {
        double ss = 0;
        for (int64_t i = 0; i < h->n; i++) ss += v[i] * v[i];
        if (ss == 0) return 0;
        double step = h->fd_step / sqrt(ss / (double)h->n);
        float *gp = util_calloc((size_t)h->n, sizeof(float));
        int rc = 0;
        for (int64_t b = 0; b < h->nbatch && !rc; b++) {
            for (int side = 0; side < 2 && !rc; side++) { /* w + h v, then w - h v */
                for (int64_t i = 0; i < h->n; i++) h->tmp[i] = (float)(h->w0[i] + (side ? -step : step) * v[i]);
                if (move(h, h->tmp, 0)) rc = device_fail(h, err, nerr);
                if (!rc && h->data) rc = run_grad(h, b, err, nerr);
                if (!rc && !h->data && exec_run(h->e, PROG_GRAD, h->rows)) rc = device_fail(h, err, nerr);
                if (!rc && move(h, side ? h->tmp : gp, 2)) rc = device_fail(h, err, nerr);
            }
            double wt = (double)batch_rows(h, b) / (double)h->nsamples;
            for (int64_t i = 0; i < h->n && !rc; i++) hv[i] += wt * ((double)gp[i] - (double)h->tmp[i]) / (2 * step);
        }
        free(gp);
        if (move(h, h->w0, 0) && !rc) rc = device_fail(h, err, nerr);
        h->current = false;
        if (rc) return rc;
    }
    h->products++;
    h->hvp_s += (util_now() - t0) - (h->method == HVP_EXACT ? h->grad_s - g0 : 0);
    return 0;
}

static double dot(const double *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

int hessian_lanczos(Hessian *h, int iters, uint64_t seed, double *ritz, double *resid, int *nritz, char *err, size_t nerr) {
    int64_t n = h->n;
    int m = iters < n ? iters : (int)n;
    float *q = util_calloc((size_t)(m + 1) * (size_t)n, sizeof(float)); /* the Lanczos vectors, rows */
    double *w = util_calloc((size_t)n, sizeof(double)), *v = util_calloc((size_t)n, sizeof(double));
    double *alpha = util_calloc((size_t)m + 1, sizeof(double)), *beta = util_calloc((size_t)m + 1, sizeof(double));
    Rng rng;
    rng_seed(&rng, seed, RNG_HESSIAN);
    double norm = 0;
    for (int64_t i = 0; i < n; i++) {
        v[i] = rng_normal(&rng);
        norm += v[i] * v[i];
    }
    for (int64_t i = 0; i < n; i++) q[i] = (float)(v[i] / sqrt(norm));
    int k = 0, rc = 0;
    double scale = 0; /* the largest |alpha| or beta so far: what "beta is 0" is relative to */
    while (k < m) {
        for (int64_t i = 0; i < n; i++) v[i] = q[(size_t)k * (size_t)n + (size_t)i];
        if ((rc = hessian_apply(h, v, w, err, nerr))) break;
        alpha[k] = dot(w, q + (size_t)k * (size_t)n, n);
        for (int pass = 0; pass < 2; pass++) /* full reorthogonalisation, twice */
            for (int j = 0; j <= k; j++) {
                const float *qj = q + (size_t)j * (size_t)n;
                double c = dot(w, qj, n);
                for (int64_t i = 0; i < n; i++) w[i] -= c * qj[i];
            }
        double b = 0;
        for (int64_t i = 0; i < n; i++) b += w[i] * w[i];
        b = sqrt(b);
        beta[k] = b;
        scale = fmax(scale, fmax(fabs(alpha[k]), b));
        k++;
        if (k == m || b <= 1e-10 * scale) break; /* done, or an invariant subspace: the Ritz values are exact */
        for (int64_t i = 0; i < n; i++) q[(size_t)k * (size_t)n + (size_t)i] = (float)(w[i] / b);
    }
    if (!rc && k > 0) {
        double *d = util_calloc((size_t)k, sizeof(double)), *e = util_calloc((size_t)k, sizeof(double));
        double *z = util_calloc((size_t)k * (size_t)k, sizeof(double)), *work = util_calloc(2 * (size_t)k + 2, sizeof(double));
        memcpy(d, alpha, sizeof(double) * (size_t)k);
        memcpy(e, beta, sizeof(double) * (size_t)(k - 1 > 0 ? k - 1 : 0));
        int nn = k, info = 0;
        dstev_("V", &nn, d, e, z, &nn, work, &info, 1);
        if (info) {
            rc = util_fail(err, nerr, "LAPACK dstev failed (info %d)", info);
        } else {
            for (int i = 0; i < k; i++) { /* z is column-major: the last component of eigenvector i */
                ritz[i] = d[i];
                resid[i] = fabs(beta[k - 1] * z[(size_t)i * (size_t)k + (size_t)(k - 1)]);
            }
            *nritz = k;
        }
        free(d);
        free(e);
        free(z);
        free(work);
    }
    free(q);
    free(w);
    free(v);
    free(alpha);
    free(beta);
    return rc;
}

double *hessian_dense(Hessian *h, char *err, size_t nerr) {
    int64_t n = h->n;
    double *H = util_calloc((size_t)n * (size_t)n, sizeof(double));
    double *e = util_calloc((size_t)n, sizeof(double)), *col = util_calloc((size_t)n, sizeof(double));
    for (int64_t j = 0; j < n; j++) {
        e[j] = 1;
        if (hessian_apply(h, e, col, err, nerr)) {
            free(H);
            H = NULL;
            break;
        }
        e[j] = 0;
        for (int64_t i = 0; i < n; i++) H[(size_t)i * (size_t)n + (size_t)j] = col[i];
    }
    for (int64_t i = 0; H && i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            double s = 0.5 * (H[(size_t)i * (size_t)n + (size_t)j] + H[(size_t)j * (size_t)n + (size_t)i]);
            H[(size_t)i * (size_t)n + (size_t)j] = H[(size_t)j * (size_t)n + (size_t)i] = s;
        }
    free(e);
    free(col);
    return H;
}
