/* gradcheck.c: see gradcheck.h.  The batch is the first `rows` training samples (rows is the
 * plan's batch size), the weights are the model's seeded initialisation.  A finite-difference
 * sample whose +-h perturbation moves any input of a kinked op (relu, leaky_relu, prelu, l1)
 * across 0 measures a different one-sided slope; such samples are detected and replaced.
 * A difference quotient is trusted to 1e-6 relative plus its own rounding, a few ulps of the
 * loss divided by h.  A weight with a proximal L1 penalty (a gate) has the penalty's slope,
 * lambda sign(w), taken out of the quotient: the optimiser applies it, not the gradient.  The optimiser step is compared from the same (the backend's) gradients:
 * Adam moves a weight by about lr whatever the size of its gradient, so near-zero gradients
 * rounded differently would otherwise dominate. */
#include "gradcheck.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"
#include "rng.h"
#include "train.h"


typedef struct {
    RefState *ref;
    bool *fwd;
    int *kink_in; /* nodes whose sign matters */
    int nkink;
    unsigned char **sign; /* their signs at the unperturbed point */
} Fd;

static double loss_at(Fd *f) {
    ref_run(f->ref, f->fwd);
    return f->ref->val[f->ref->g->loss][0];
}

static bool signs_same(Fd *f) {
    for (int k = 0; k < f->nkink; k++) {
        int id = f->kink_in[k];
        const double *v = f->ref->val[id];
        for (int64_t i = 0; i < ref_size(f->ref, id); i++)
            if ((v[i] > 0) != f->sign[k][i]) return false;
    }
    return true;
}

static void record_signs(Fd *f) {
    for (int k = 0; k < f->nkink; k++) {
        int id = f->kink_in[k];
        for (int64_t i = 0; i < ref_size(f->ref, id); i++) f->sign[k][i] = f->ref->val[id][i] > 0;
    }
}

/* A copy of node's buffer from the device (4-byte elements, f32 or i32), malloc'd. */
static void *fetch(const Exec *e, int node, int64_t rows) {
    size_t bytes = sizeof(float) * (size_t)exec_numel(e, node, rows);
    void *v = util_realloc(NULL, bytes);
    exec_read(e, node, v, bytes);
    return v;
}

int gradcheck_run(const Model *m, Exec *ex, const GradcheckOptions *o) {
    const Graph *g = ex->g;
    const Plan *plan = ex->plan;
    FILE *out = o->out ? o->out : stdout;
    int64_t rows = plan->max_batch;
    char err[1024];
    ModelData data;
    if (train_load_data(m, g, &data, err, sizeof err)) {
        fprintf(stderr, "nnc: error: %s\n", err);
        return -1;
    }
    if (data.train.n < rows) rows = data.train.n;
    /* the batch and the weights, in the backend's arena and in the reference */
    int64_t *idx = util_calloc((size_t)rows, sizeof(int64_t));
    for (int64_t i = 0; i < rows; i++) idx[i] = i;
    exec_feed(ex, &data.train, idx, rows);
    if (train_init_weights(ex, m->train.seed)) {
        free(idx);
        train_free_data(&data);
        return -1;
    }
    exec_reset_scalars(ex);
    exec_set_scalars(ex, SC_DATA_INV_N, 1.0 / (double)data.train.n); /* the whole file as the training set */
    for (int s = 0; s < g->nscalar; s++) { /* the first optimiser step */
        const Scalar *sc = &g->scalar[s];
        const OptSpec *op = &m->train.opt;
        if (sc->kind == SC_ADAM_STEP) ex->scalars[s] = (float)(op->lr / (1 - op->beta1));
        if (sc->kind == SC_ADAM_BC2_SQRT) ex->scalars[s] = (float)sqrt(1 - op->beta2);
    }
    RefState *ref = ref_new(g, rows);
    for (int s = 0; s < g->nscalar; s++) ref->scalar[s] = ex->scalars[s];
    for (int id = 0; id < g->nnode; id++) {
        const Node *n = &g->node[id];
        if (n->op != OP_INPUT && n->op != OP_WEIGHT) continue;
        void *v = fetch(ex, id, rows);
        for (int64_t i = 0; i < ref_size(ref, id); i++)
            ref->val[id][i] = n->dtype == DT_I32 ? ((int32_t *)v)[i] : ((float *)v)[i];
        free(v);
    }
    fprintf(out, "gradcheck %s: %lld samples of %s, weights from seed %llu\n", m->name, (long long)rows,
            data.train.name, (unsigned long long)m->train.seed);
    /* reference gradients (double) and the backend's (float) */
    Fd f = {.ref = ref};
    f.fwd = util_calloc((size_t)g->nnode, sizeof(bool));
    bool *grad_nodes = util_calloc((size_t)g->nnode, sizeof(bool));
    for (int id = 0; id < g->nnode; id++) {
        f.fwd[id] = id < g->nforward;
        grad_nodes[id] = g->node[id].phase != PH_UPDATE;
    }
    ref_run(ref, grad_nodes);
    if (exec_run(ex, PROG_GRAD, rows)) {
        fprintf(stderr, "nnc: error: %s: %s\n", ex->dev->name, ex->dev->err);
        return -1;
    }
    f.kink_in = util_calloc((size_t)g->nnode, sizeof(int));
    f.sign = util_calloc((size_t)g->nnode, sizeof(unsigned char *));
    for (int id = 0; id < g->nforward; id++)
        if (op_has(g->node[id].op, OF_KINKED)) {
            int in = g->node[id].in[0];
            f.sign[f.nkink] = util_calloc((size_t)ref_size(ref, in), 1);
            f.kink_in[f.nkink++] = in;
        }
    record_signs(&f);
    double loss0 = ref->val[g->loss][0];
    fprintf(out, "  %-24s %-14s %10s %20s %20s\n", "weight", "shape", "max |grad|", "finite differences",
            "LLVM vs reference");
    int failed = 0;
    Rng rng;
    rng_seed(&rng, m->train.seed, 99);
    for (int w = 0; w < g->nweight; w++) {
        const Weight *wt = &g->weight[w];
        if (wt->kind != W_PARAM || wt->grad < 0) continue;
        int node = wt->node;
        int64_t n = ref_size(ref, node);
        double *an = util_calloc((size_t)n, sizeof(double));
        memcpy(an, ref->val[wt->grad], sizeof(double) * (size_t)n);
        float *bk = fetch(ex, wt->grad, rows);
        double gmax = 0, bk_err = 0;
        for (int64_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(an[i]));
        for (int64_t i = 0; i < n; i++) bk_err = fmax(bk_err, fabs((double)bk[i] - an[i]) / fmax(gmax, 1e-30));
        /* finite differences: the largest entry and random ones */
        int64_t arg = 0;
        for (int64_t i = 1; i < n; i++)
            if (fabs(an[i]) > fabs(an[arg])) arg = i;
        double fd_err = 0;
        int done = 0, skipped = 0;
        for (int t = 0; done < o->per_weight && t < 20 * o->per_weight; t++) {
            int64_t i = t == 0 ? arg : (int64_t)rng_below(&rng, (uint64_t)n);
            double v = ref->val[node][i], h = 1e-6 * fmax(1.0, fabs(v));
            ref->val[node][i] = v + h;
            double lp = loss_at(&f);
            bool same = signs_same(&f);
            ref->val[node][i] = v - h;
            double lm = loss_at(&f);
            same = same && signs_same(&f);
            ref->val[node][i] = v;
            if (!same) {
                skipped++;
                continue;
            }
            double fd = (lp - lm) / (2 * h);
            if (wt->prox >= 0) fd -= ref->val[wt->prox][0] * (v > 0 ? 1 : v < 0 ? -1 : 0);
            double tol = 1e-6 * fabs(an[i]) + 16 * DBL_EPSILON * fmax(1.0, fabs(loss0)) / h;
            fd_err = fmax(fd_err, fabs(fd - an[i]) / tol); /* in units of the tolerance */
            done++;
        }
        ref_run(ref, f.fwd); /* back to the unperturbed values */
        char shape[64], fds[48], bks[48];
        shape_str(shape, sizeof shape, DT_F32, wt->shape);
        bool fd_ok = fd_err <= 1 && done > 0, bk_ok = bk_err <= 1e-4;
        snprintf(fds, sizeof fds, "%d ok of %d%s", fd_ok ? done : 0, done, fd_ok ? "" : " FAIL");
        snprintf(bks, sizeof bks, "%.1e %s", bk_err, bk_ok ? "ok" : "FAIL");
        fprintf(out, "  %-24s %-14s %10.2e %20s %20s\n", wt->name, shape + 3, gmax, fds, bks);
        if (!fd_ok)
            fprintf(out, "  %-24s worst finite-difference error: %.1f times the tolerance\n", "", fd_err);
        if (skipped) fprintf(out, "  %-24s (%d samples crossed a kink and were replaced)\n", "", skipped);
        failed += !fd_ok + !bk_ok;
        free(an);
        free(bk);
    }
    /* one optimiser step in both, from the backend's gradients */
    bool *upd = util_calloc((size_t)g->nnode, sizeof(bool));
    for (int w = 0; w < g->nweight; w++)
        if (g->weight[w].grad >= 0) {
            float *bk = fetch(ex, g->weight[w].grad, rows);
            for (int64_t i = 0; i < ref_size(ref, g->weight[w].grad); i++) ref->val[g->weight[w].grad][i] = bk[i];
            free(bk);
        }
    for (int id = 0; id < g->nnode; id++) upd[id] = g->node[id].phase == PH_UPDATE;
    ref_run(ref, upd);
    free(upd);
    exec_run(ex, PROG_UPDATE, rows);
    double upd_err = 0;
    for (int w = 0; w < g->nweight; w++) {
        int node = g->weight[w].node;
        float *bk = fetch(ex, node, rows);
        double scale = 0;
        for (int64_t i = 0; i < ref_size(ref, node); i++) scale = fmax(scale, fabs(ref->val[node][i]));
        for (int64_t i = 0; i < ref_size(ref, node); i++)
            upd_err = fmax(upd_err, fabs((double)bk[i] - ref->val[node][i]) / fmax(scale, 1e-30));
        free(bk);
    }
    bool upd_ok = upd_err <= 1e-5;
    fprintf(out, "  after one optimiser step, weights and state: LLVM vs reference %.1e %s\n", upd_err, upd_ok ? "ok" : "FAIL");
    failed += !upd_ok;
    fprintf(out, "gradcheck %s\n", failed ? "FAILED" : "passed");
    for (int k = 0; k < f.nkink; k++) free(f.sign[k]);
    free(f.sign);
    free(f.kink_in);
    free(f.fwd);
    free(grad_nodes);
    free(idx);
    ref_free(ref);
    train_free_data(&data);
    return failed ? 1 : 0;
}
