/* hvp_command.c: `nnc hvp FILE` (and a trainer's `hvp`, built with --hvp), the curvature of a model's training loss at a checkpoint (or
 * at its seeded initial weights): the extreme eigenvalues of the Hessian by Lanczos over
 * Hessian-vector products (hessian.c), a condition-number estimate, the cost of a product
 * against a gradient, and on request the dense Hessian as a .npy file. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "hessian.h"
#include "npy.h"
#include "run.h"
#include "train.h"

enum { DENSE_MAX = 20000 };

int run_parse_hvp_option(HvpOptions *h, int argc, char **argv, int i, char *why, size_t nwhy) {
    static const char *const opts[] = {"--method", "--batches", "--iterations", "--top", "--fd-step", "--dense"};
    const char *opt = argv[i];
    int k = 0;
    while (k < 6 && strcmp(opt, opts[k])) k++;
    if (k == 6) return 0;
    if (i + 1 >= argc) return util_fail(why, nwhy, "%s needs a value", opt);
    const char *val = argv[i + 1];
    char *end = NULL;
    if (k == 5) {
        h->dense = val;
    } else if (k == 0) {
        if (strcmp(val, "exact") && strcmp(val, "fd")) return util_fail(why, nwhy, "--method must be exact or fd, not '%s'", val);
        h->method = val[0] == 'f' ? HVP_FD : HVP_EXACT;
    } else if (k == 4) {
        h->fd_step = strtod(val, &end);
        if (*end || !(h->fd_step > 0)) return util_fail(why, nwhy, "--fd-step needs a positive number, not '%s'", val);
    } else if (k == 1 && !strcmp(val, "all")) {
        h->batches = 0;
    } else {
        long long n = strtoll(val, &end, 10);
        if (*end || n < 1 || n > 1000000000)
            return util_fail(why, nwhy, "%s needs a positive whole number%s, not '%s'", opt, k == 1 ? " or all" : "", val);
        if (k == 1) h->batches = n;
        if (k == 2) h->iterations = (int)n;
        if (k == 3) h->top = (int)n;
    }
    return 2;
}

static int report(const RunOptions *o, const HvpOptions *ho, Built *b) {
    Exec *e = &b->e;
    const Model *m = b->c.model;
    char err[1024];
    ModelData data;
    if (train_load_data(m, e->g, &data, err, sizeof err)) {
        fprintf(stderr, "nnc: error: %s\n", err);
        return 1;
    }
    exec_set_scalars(e, SC_DATA_INV_N, 1.0 / (double)data.train.n);
    Hessian h;
    int rc = hessian_open(&h, e, ho->method, &data.train, ho->batches, e->plan->max_batch, err, sizeof err);
    if (rc == 0 && ho->fd_step > 0) h.fd_step = ho->fd_step;
    if (rc == 0 && ho->dense && h.n > DENSE_MAX)
        rc = util_fail(err, sizeof err, "--dense: the model has %lld trained weights; a dense Hessian is written for at most %d",
                       (long long)h.n, DENSE_MAX);
    if (rc == 0) {
        printf("Hessian of %s's training loss at %s: %lld weights, %lld samples (%lld batch%s of %lld) of %s\n", m->name,
               o->checkpoint ? o->checkpoint : "its initial weights", (long long)h.n, (long long)h.nsamples,
               (long long)h.nbatch, h.nbatch == 1 ? "" : "es", (long long)h.rows, data.train.name);
        double *gr = util_calloc((size_t)h.n, sizeof(double)), gn = 0;
        rc = hessian_gradient(&h, gr, err, sizeof err);
        for (int64_t i = 0; i < h.n && rc == 0; i++) gn += gr[i] * gr[i];
        if (rc == 0) printf("gradient norm %.6g\n", sqrt(gn));
        free(gr);
    }
    int iters = ho->iterations > 0 ? ho->iterations : 30, nritz = 0;
    double *ritz = util_calloc((size_t)iters + 1, sizeof(double)), *resid = util_calloc((size_t)iters + 1, sizeof(double));
    double t0 = util_now();
    if (rc == 0) rc = hessian_lanczos(&h, iters, m->train.seed, ritz, resid, &nritz, err, sizeof err);
    if (rc == 0) {
        double hvp_each = h.hvp_s / (double)(h.products ? h.products : 1), grad_each = h.grad_s / (double)(h.grads ? h.grads : 1);
        double each = 1e3 * hvp_each / (double)h.nbatch, grad = 1e3 * grad_each;
        if (ho->method == HVP_EXACT)
            printf("exact Hessian-vector products (reverse over reverse): %lld in %.2f s; per batch of %lld, %.3f ms each on top "
                   "of the gradient pass it reads (%.3f ms): %.2f gradients for a product alone, %.2f where the gradient is "
                   "taken anyway\n",
                   (long long)h.products, util_now() - t0, (long long)h.rows, each, grad, grad > 0 ? (each + grad) / grad : 0,
                   grad > 0 ? each / grad : 0);
        else
            printf("finite-difference Hessian-vector products (central differences of two gradients): %lld in %.2f s; per batch "
                   "of %lld, %.3f ms each against a gradient's %.3f ms: %.2f gradients\n",
                   (long long)h.products, util_now() - t0, (long long)h.rows, each, grad, grad > 0 ? each / grad : 0);
        int top = ho->top > 0 ? ho->top : 5;
        if (top > nritz) top = nritz;
        printf("Lanczos, %d iterations: the top eigenvalues (Ritz values, with a bound on each one's residual)\n", nritz);
        for (int i = 0; i < top; i++) printf("  %2d  %14.6g  +- %.2g\n", i + 1, ritz[nritz - 1 - i], resid[nritz - 1 - i]);
        double lmax = ritz[nritz - 1], lmin = ritz[0];
        printf("  smallest Ritz value %.6g  +- %.2g\n", lmin, resid[0]);
        if (lmin > 0)
            printf("condition number estimate lambda_max / lambda_min: %.6g\n", lmax / lmin);
        else
            printf("condition number estimate |lambda_max / lambda_min|: %.6g (not positive definite here: lambda_min <= 0)\n",
                   lmin != 0 ? fabs(lmax / lmin) : INFINITY);
    }
    free(ritz);
    free(resid);
    if (rc == 0 && ho->dense) {
        double *H = hessian_dense(&h, err, sizeof err);
        if (!H) rc = -1;
        float *f = H ? util_calloc((size_t)h.n * (size_t)h.n, sizeof(float)) : NULL;
        for (int64_t i = 0; H && i < h.n * h.n; i++) f[i] = (float)H[i];
        int64_t shape[2] = {h.n, h.n};
        if (H && npy_write_f32(ho->dense, f, 2, shape, err, sizeof err)) rc = -1;
        if (rc == 0) printf("dense Hessian %lld x %lld (column by column, symmetrised) written to %s\n", (long long)h.n, (long long)h.n, ho->dense);
        free(f);
        free(H);
    }
    if (rc) fprintf(stderr, "nnc: error: %s\n", err);
    hessian_close(&h);
    train_free_data(&data);
    return rc ? 1 : 0;
}

int run_hvp(const RunOptions *o, const HvpOptions *ho) {
    RunOptions ro = *o;
    ro.hvp = true; /* for HVP_FD too: the loss is checked the same way */
    Checkpoint ck;
    Built *b;
    if (o->checkpoint) {
        b = run_from_checkpoint(&ro, &ck);
    } else {
        b = run_build(&ro, NULL, 0, 0);
        if (b && train_init_weights(&b->e, b->c.model->train.seed)) {
            run_free(b);
            b = NULL;
        }
        if (b) exec_reset_scalars(&b->e);
    }
    if (!b) return 1;
    int rc = report(o, ho, b);
    if (o->checkpoint) checkpoint_close(&ck);
    run_free(b);
    return rc;
}
