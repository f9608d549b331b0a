/* hvp_test.c: Hessian-vector products (CTest ops.hvp).  For small models (about 100 weights)
 * compiled with their hvp program (compiler/hvp.c):
 *   1. the exact product, run by the reference interpreter in double precision, against a
 *      dense Hessian assembled column by column from central differences of the reference
 *      gradient (h = 1e-5): H v to 1e-6 relative, and every column H e_j likewise;
 *   2. finite differences of gradients converge at their order: the error of
 *      (g(w + h v) - g(w - h v)) / 2h falls by about 4 when h halves;
 *   3. the generated kernels (runtime/hessian.c, float32): the exact product on the LLVM
 *      backend and on the emulated CUDA device against the reference (1e-4 relative) and
 *      against each other (1e-5); the finite-difference product on both against H v within
 *      its truncation and rounding error (2e-3 relative);
 *   4. Lanczos on the generated products against the eigenvalues of the dense Hessian
 *      (LAPACK dsyev, what NumPy's eigvalsh calls) to 1e-4 relative.
 * A model whose loss has an L1 penalty is refused with a located error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "exec.h"
#include "hessian.h"
#include "ref.h"
#include "rng.h"

extern void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w, double *work,
                   const int *lwork, int *info, size_t jobz_len, size_t uplo_len);

enum { ROWS = 7 };
static int failures;

static const char *const models[] = {
    "model reg\ninput x : f32[10]\ntarget y : f32[1]\nout = x -> dense(8) -> tanh -> dense(1)\nloss mse(out, y)\n"
    "train {\n  data csv(\"none.csv\")\n  batch 7\n  optimizer sgd(lr = 0.1)\n}\n",
    "model cls\ninput x : f32[6]\ntarget label : class[3]\n"
    "out = x -> dense(8) -> gelu -> dense(3)\nloss cross_entropy(out, label)\n"
    "prior weights ~ normal(0, 3)\ntrain {\n  data csv(\"none.csv\")\n  batch 7\n  optimizer adam(lr = 0.01)\n}\n",
};

static void check(bool ok, const char *model, const char *what, double got, double limit) {
    printf("%s %-8s %-58s %.3g (limit %.3g)\n", ok ? "ok  " : "FAIL", model, what, got, limit);
    if (!ok) failures++;
}

static double rel(const double *a, const double *b, int64_t n) {
    double d = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        d += (a[i] - b[i]) * (a[i] - b[i]);
        s += b[i] * b[i];
    }
    return sqrt(d / (s > 0 ? s : 1));
}

typedef struct {
    const Graph *g;
    RefState *ref;
    bool *grad_mask, *hvp_mask;
    int nw, *wi;
    int64_t n, *off;
} Case;

/* The flat vector x to or from the trained weights' nodes (which: 0 the weight, 1 its
 * direction), or their gradient (2) or H v (3) into x. */
static void flat(Case *c, double *x, int which) {
    for (int k = 0; k < c->nw; k++) {
        const Weight *w = &c->g->weight[c->wi[k]];
        int node = which == 0 ? w->node : which == 1 ? w->dir : which == 2 ? w->grad : w->hvp;
        int64_t m = ref_size(c->ref, w->node);
        for (int64_t i = 0; i < m; i++) {
            if (which <= 1)
                c->ref->val[node][i] = x[c->off[k] + i];
            else
                x[c->off[k] + i] = node < 0 ? 0 : c->ref->val[node][i];
        }
    }
}

static void ref_grad(Case *c, const double *w, double *gr) {
    flat(c, (double *)w, 0);
    ref_run(c->ref, c->grad_mask);
    flat(c, gr, 2);
}

static void ref_hvp(Case *c, const double *w, const double *v, double *hv) {
    flat(c, (double *)w, 0);
    flat(c, (double *)v, 1);
    ref_run(c->ref, c->hvp_mask);
    flat(c, hv, 3);
}

/* The generated kernels on `device`: the exact product and the finite-difference one of v,
 * Lanczos's top and bottom Ritz values. */
static int on_device(const Compilation *cp, const RefState *ref, const char *device, const double *v, double *hv_exact,
                     double *hv_fd, double *top, double *bottom) {
    Exec e;
    char err[1024];
    if (exec_new(&e, cp->plan, device, stderr, err, sizeof err)) {
        printf("FAIL %s: %s\n", device, err);
        failures++;
        return -1;
    }
    const Graph *g = cp->graph;
    for (int id = 0; id < g->nnode; id++) { /* the reference's inputs and weights, as float */
        const Node *n = &g->node[id];
        if (n->op != OP_INPUT && n->op != OP_WEIGHT) continue;
        if (n->op == OP_WEIGHT && g->weight[n->ref].scratch) continue;
        int64_t m = exec_numel(&e, id, ROWS);
        void *buf = util_calloc((size_t)m, 4);
        for (int64_t i = 0; i < m; i++) {
            if (n->dtype == DT_I32)
                ((int32_t *)buf)[i] = (int32_t)ref->val[id][i];
            else
                ((float *)buf)[i] = (float)ref->val[id][i];
        }
        exec_write(&e, id, buf, 4 * (size_t)m);
        free(buf);
    }
    exec_reset_scalars(&e);
    int rc = exec_run(&e, PROG_GRAD, ROWS);
    Hessian h;
    for (int method = 0; method < 2 && !rc; method++) {
        rc = hessian_open(&h, &e, method ? HVP_FD : HVP_EXACT, NULL, 1, ROWS, err, sizeof err);
        if (!rc) rc = hessian_apply(&h, v, method ? hv_fd : hv_exact, err, sizeof err);
        if (!rc && method) rc = exec_run(&e, PROG_GRAD, ROWS); /* back at w */
        if (!rc && !method) {
            double ritz[64], resid[64];
            int nr = 0;
            rc = hessian_lanczos(&h, 40, 3, ritz, resid, &nr, err, sizeof err);
            *top = ritz[nr - 1];
            *bottom = ritz[0];
        }
        hessian_close(&h);
    }
    if (rc) {
        printf("FAIL %s: %s\n", device, err);
        failures++;
    }
    exec_free(&e);
    return rc;
}

static void run_case(const char *text) {
    Compilation cp;
    memset(&cp, 0, sizeof cp);
    cp.arena = arena_new();
    CompileOptions co = {.hvp = true, .max_batch = ROWS};
    if (driver_compile_text(&cp, "hvp_test.nn", text, strlen(text), &co, STAGE_PLAN)) {
        printf("FAIL: the model does not compile\n");
        failures++;
        driver_free(&cp);
        return;
    }
    const Graph *g = cp.graph;
    const char *name = cp.model->name;
    Case c = {.g = g, .ref = ref_new(g, ROWS)};
    c.wi = util_calloc((size_t)g->nweight, sizeof(int));
    c.off = util_calloc((size_t)g->nweight, sizeof(int64_t));
    for (int i = 0; i < g->nweight; i++)
        if (g->weight[i].kind == W_PARAM && g->weight[i].grad >= 0) {
            c.wi[c.nw] = i;
            c.off[c.nw++] = c.n;
            c.n += ref_size(c.ref, g->weight[i].node);
        }
    int first_dir = g->nnode; /* hvp.c adds the directions first, then the product's nodes */
    for (int k = 0; k < c.nw; k++)
        if (g->weight[c.wi[k]].dir < first_dir) first_dir = g->weight[c.wi[k]].dir;
    c.grad_mask = util_calloc((size_t)g->nnode, sizeof(bool));
    c.hvp_mask = util_calloc((size_t)g->nnode, sizeof(bool));
    for (int id = 0; id < g->nnode; id++) {
        c.grad_mask[id] = g->node[id].phase != PH_UPDATE && id < first_dir;
        c.hvp_mask[id] = g->node[id].phase != PH_UPDATE;
    }
    Rng rng;
    rng_seed(&rng, 11, 1);
    for (int id = 0; id < g->nnode; id++) {
        const Node *n = &g->node[id];
        if (n->op != OP_INPUT) continue;
        const Input *in = &g->input[n->ref];
        for (int64_t i = 0; i < ref_size(c.ref, id); i++)
            c.ref->val[id][i] = in->is_class ? (double)rng_below(&rng, (uint64_t)in->nclass) : rng_normal(&rng);
    }
    ref_reset_scalars(c.ref);
    int64_t n = c.n;
    double *w = util_calloc((size_t)n, sizeof(double)), *v = util_calloc((size_t)n, sizeof(double));
    double *hv = util_calloc((size_t)n, sizeof(double)), *Hv = util_calloc((size_t)n, sizeof(double));
    double *gp = util_calloc((size_t)n, sizeof(double)), *gm = util_calloc((size_t)n, sizeof(double));
    double *H = util_calloc((size_t)(n * n), sizeof(double)), *col = util_calloc((size_t)n, sizeof(double));
    double *e = util_calloc((size_t)n, sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        w[i] = 0.5 * rng_normal(&rng);
        v[i] = rng_normal(&rng);
    }
    /* 1. the dense Hessian by central differences of the reference gradient */
    const double h = 1e-5;
    double *wp = util_calloc((size_t)n, sizeof(double));
    for (int64_t j = 0; j < n; j++) {
        memcpy(wp, w, sizeof(double) * (size_t)n);
        wp[j] = w[j] + h;
        ref_grad(&c, wp, gp);
        wp[j] = w[j] - h;
        ref_grad(&c, wp, gm);
        for (int64_t i = 0; i < n; i++) H[i * n + j] = (gp[i] - gm[i]) / (2 * h);
    }
    for (int64_t i = 0; i < n; i++) {
        Hv[i] = 0;
        for (int64_t j = 0; j < n; j++) Hv[i] += H[i * n + j] * v[j];
    }
    ref_hvp(&c, w, v, hv);
    char what[128];
    snprintf(what, sizeof what, "exact H v (reference) vs dense Hessian, %lld weights", (long long)n);
    double r = rel(hv, Hv, n);
    check(r < 1e-6, name, what, r, 1e-6);
    double worst = 0;
    for (int64_t j = 0; j < n; j++) {
        e[j] = 1;
        ref_hvp(&c, w, e, col);
        e[j] = 0;
        for (int64_t i = 0; i < n; i++) gp[i] = H[i * n + j];
        double rj = rel(col, gp, n);
        if (rj > worst) worst = rj;
    }
    check(worst < 1e-6, name, "exact H e_j (reference) vs dense column j, worst j", worst, 1e-6);
    /* 2. finite differences of gradients converge at second order */
    double err_h[2];
    for (int k = 0; k < 2; k++) {
        double step = k ? 5e-3 : 1e-2;
        for (int64_t i = 0; i < n; i++) wp[i] = w[i] + step * v[i];
        ref_grad(&c, wp, gp);
        for (int64_t i = 0; i < n; i++) wp[i] = w[i] - step * v[i];
        ref_grad(&c, wp, gm);
        for (int64_t i = 0; i < n; i++) col[i] = (gp[i] - gm[i]) / (2 * step);
        err_h[k] = rel(col, hv, n);
    }
    double ratio = err_h[0] / err_h[1];
    check(ratio > 3.5 && ratio < 4.5, name, "FD H v error ratio for h and h/2 (second order: 4)", ratio, 4);
    /* 3, 4. the generated kernels */
    flat(&c, w, 0);
    double *ex[2], *fd[2], top[2] = {0}, bottom[2] = {0};
    const char *dev[2] = {"cpu", "cuda-emu"};
    for (int d = 0; d < 2; d++) {
        ex[d] = util_calloc((size_t)n, sizeof(double));
        fd[d] = util_calloc((size_t)n, sizeof(double));
        if (on_device(&cp, c.ref, dev[d], v, ex[d], fd[d], &top[d], &bottom[d])) continue;
        snprintf(what, sizeof what, "%s: exact H v (float32 kernels) vs reference", dev[d]);
        r = rel(ex[d], hv, n);
        check(r < 1e-4, name, what, r, 1e-4);
        snprintf(what, sizeof what, "%s: finite-difference H v (float32 kernels) vs reference", dev[d]);
        r = rel(fd[d], hv, n);
        check(r < 2e-3, name, what, r, 2e-3);
    }
    r = rel(ex[1], ex[0], n);
    check(r < 1e-5, name, "exact H v: emulated CUDA vs LLVM", r, 1e-5);
    int nn = (int)n, lwork = -1, info = 0;
    double q, *eig = util_calloc((size_t)n, sizeof(double));
    dsyev_("N", "U", &nn, H, &nn, eig, &q, &lwork, &info, 1, 1);
    lwork = (int)q;
    double *work = util_calloc((size_t)lwork, sizeof(double));
    dsyev_("N", "U", &nn, H, &nn, eig, work, &lwork, &info, 1, 1);
    for (int d = 0; d < 2; d++) {
        double scale = fmax(fabs(eig[n - 1]), fabs(eig[0]));
        snprintf(what, sizeof what, "%s: Lanczos top eigenvalue %.6g vs dsyev %.6g", dev[d], top[d], eig[n - 1]);
        check(fabs(top[d] - eig[n - 1]) < 1e-4 * scale, name, what, fabs(top[d] - eig[n - 1]) / scale, 1e-4);
        snprintf(what, sizeof what, "%s: Lanczos bottom eigenvalue %.6g vs dsyev %.6g", dev[d], bottom[d], eig[0]);
        check(fabs(bottom[d] - eig[0]) < 1e-4 * scale, name, what, fabs(bottom[d] - eig[0]) / scale, 1e-4);
        free(ex[d]);
        free(fd[d]);
    }
    free(work);
    free(eig);
    free(w);
    free(v);
    free(hv);
    free(Hv);
    free(gp);
    free(gm);
    free(H);
    free(col);
    free(e);
    free(wp);
    free(c.wi);
    free(c.off);
    free(c.grad_mask);
    free(c.hvp_mask);
    ref_free(c.ref);
    driver_free(&cp);
}

/* An L1 penalty in the loss: a located error, and no graph. */
static void refused(void) {
    const char *text = "model l1\ninput x : f32[4]\ntarget y : f32[1]\nout = x -> dense(3) -> tanh -> gate(l1 = 0.1) -> dense(1)\n"
                       "loss mse(out, y)\ntrain {\n  data csv(\"none.csv\")\n  batch 4\n}\n";
    Compilation cp;
    memset(&cp, 0, sizeof cp);
    cp.arena = arena_new();
    char buf[4096] = {0};
    FILE *err = fmemopen(buf, sizeof buf - 1, "w");
    CompileOptions co = {.hvp = true, .err = err};
    int rc = driver_compile_text(&cp, "l1.nn", text, strlen(text), &co, STAGE_PLAN);
    fclose(err);
    bool ok = rc == 1 && strstr(buf, "l1.nn:4:") && strstr(buf, "error: a Hessian-vector product needs a loss that is twice differentiable");
    printf("%s l1       refused with a located error\n%s", ok ? "ok  " : "FAIL", buf);
    if (!ok) failures++;
    driver_free(&cp);
}

int main(void) {
    for (size_t k = 0; k < sizeof models / sizeof *models; k++) run_case(models[k]);
    refused();
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
