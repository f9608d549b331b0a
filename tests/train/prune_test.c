/* prune_test.c: physical pruning keeps the model's function and its optimiser state.
 *   test_prune MODEL STEPS DEVICE [TOLERANCE]
 * Trains MODEL (which must have prunable gates and a penalty strong enough to close some)
 * for STEPS steps, evaluates a fixed batch, prunes (decides from the gates, recompiles at the
 * surviving widths, moves weights and state), and checks that:
 *   - something was removed, every layer's new width is its number of open gates (or its
 *     min_width), and no open gate was dropped;
 *   - the pruned model computes the same loss and metrics on the batch (to TOLERANCE relative,
 *     1e-5 by default: an L1 gate's removed neurons are exactly 0; a size gate's are below
 *     its threshold, so its models need a looser bound; a variational model's loss without its
 *     KL term, whose removed weights' share goes with them);
 *   - every surviving weight and optimiser-state entry moved to the right place;
 *   - where gates ask to be folded (`fold = true`), folding them keeps the outputs too and
 *     rescales the layer's weights, bias and optimiser state as it should;
 *   - the pruned model trains on (20 more steps, finite losses).
 * With DEVICE cuda and no GPU it exits 77 (CTest's skip). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "exec.h"
#include "prune.h"
#include "train.h"

static int failures;
#define CHECK(cond, ...)                                                                                           \
    do {                                                                                                           \
        if (!(cond)) {                                                                                             \
            printf("FAIL: " __VA_ARGS__);                                                                          \
            printf("\n");                                                                                          \
            failures++;                                                                                            \
        }                                                                                                          \
    } while (0)

typedef struct {
    ModelData data;
    int64_t B;
    int64_t *idx;
} Batches;

static void put_batch(Batches *b, Exec *e, int64_t first) {
    for (int64_t k = 0; k < b->B; k++) b->idx[k] = (first + k) % b->data.train.n;
    exec_feed(e, &b->data.train, b->idx, b->B);
}

/* A weight or state tensor by name, and its number of columns as a matrix [dim 0, the rest]
 * (1 for vectors). */
static float *read_all(const Exec *e, const char *name, int64_t *cols) {
    for (int i = 0; i < e->plan->nbuf; i++) {
        const Buffer *b = &e->plan->buf[i];
        if ((b->kind == BUF_WEIGHT || b->kind == BUF_STATE) && !strcmp(b->name, name)) {
            Shape s = e->g->weight[b->weight].shape;
            *cols = s.rank >= 2 ? shape_numel(s) / s.dim[0] : 1;
            float *v = calloc((size_t)b->elems, sizeof(float));
            exec_read(e, b->node, v, sizeof(float) * (size_t)b->elems);
            return v;
        }
    }
    return NULL;
}

/* The scalar outputs (loss, metrics) on the evaluation batch. */
static void eval_batch(Batches *b, Exec *e, double *out, int *nout) {
    put_batch(b, e, 50000);
    if (exec_run(e, PROG_EVAL, b->B)) {
        printf("FAIL: eval: %s\n", e->dev->err);
        exit(1);
    }
    *nout = 0;
    const Graph *g = e->g;
    for (int o = 0; o < g->noutput && output_is_scalar(&g->output[o]); o++) {
        float v;
        exec_read(e, g->output[o].node, &v, sizeof v);
        out[(*nout)++] = v;
    }
    /* a variational model's loss holds the KL of its weights, which pruning removes some of:
     * the loss compared is the rest, loss - kl / N */
    for (int o = 0; o < g->noutput; o++)
        if (g->output[o].agg == AGG_WEIGHTS && !strcmp(g->output[o].name, "kl"))
            for (int i = 0; i < g->nscalar; i++)
                if (g->scalar[i].kind == SC_DATA_INV_N) {
                    float kl;
                    exec_read(e, g->output[o].node, &kl, sizeof kl);
                    out[0] -= (double)kl * e->scalars[i];
                }
}

/* Close to `want` relative to its size (float rounding of a product). */
static bool near(double got, double want) { return fabs(got - want) <= 1e-6 * fmax(fabs(want), 1e-30); }

/* With `gate(fold = true)` gates and their penalty at 0 (every param 0 here): folding leaves
 * the outputs as they were, sets the open gates to +-1, scales the layer's weight
 * and bias rows by |g_j| and their optimiser state by the matching power of the gradient's
 * factor (the gate's state inversely). */
static void check_fold(Batches *b, Exec *e, double tol, int nparam) {
    const Graph *g = e->g;
    int asked = 0;
    for (int i = 0; i < g->ngate; i++) asked += g->gate[i].fold;
    if (!asked) return;
    exec_set_scalars(e, SC_PARAM, 0); /* the params' values folding is given: no penalty */
    double before[16];
    int nbefore;
    eval_batch(b, e, before, &nbefore);
    /* every weight and state tensor before folding, by weight index */
    float **old = calloc((size_t)g->nweight, sizeof(float *));
    int64_t *cols = calloc((size_t)g->nweight, sizeof(int64_t));
    for (int w = 0; w < g->nweight; w++)
        if (g->weight[w].kind == W_PARAM || g->weight[w].kind == W_STATE) old[w] = read_all(e, g->weight[w].name, &cols[w]);
    double *zero = calloc((size_t)nparam + 1, sizeof(double));
    const char **folded = calloc((size_t)g->ngate + 1, sizeof(char *));
    int n = prune_fold(e, zero, folded);
    CHECK(n == asked, "%d gates folded, not %d", n, asked);
    double now[16];
    int nnow;
    eval_batch(b, e, now, &nnow);
    for (int i = 0; i < nbefore && i < nnow; i++) {
        double rel = fabs(before[i] - now[i]) / fmax(fabs(before[i]), 1e-30);
        printf("%-10s folded %.7f  relative difference %.1e\n", g->output[i].name, now[i], rel);
        CHECK(rel <= tol, "'%s' changed by folding (limit %g)", g->output[i].name, tol);
    }
    int64_t checked = 0;
    for (int i = 0; i < g->ngate; i++) {
        const GateInfo *gi = &g->gate[i];
        if (!gi->fold) continue;
        int64_t c;
        float *gate = read_all(e, g->weight[gi->weight].name, &c), *was = old[gi->weight];
        int64_t width = shape_numel(g->weight[gi->weight].shape);
        for (int w = 0; w < g->nweight; w++) {
            const Weight *x = &g->weight[w];
            int power = w == gi->fold_weight[0] || w == gi->fold_weight[1]                                ? 1
                        : x->kind == W_STATE && (x->of == gi->fold_weight[0] || x->of == gi->fold_weight[1]) ? -x->grad_power
                        : x->kind == W_STATE && x->of == gi->weight                                           ? x->grad_power
                                                                                                              : 0;
            if (!power) continue;
            float *cur = read_all(e, x->name, &c);
            int bad = 0;
            for (int64_t r = 0; r < width; r++)
                for (int64_t k = 0; k < cols[w]; k++) {
                    double m = was[r] == 0 ? 1 : pow(fabs((double)was[r]), power);
                    bad += !near(cur[r * cols[w] + k], old[w][r * cols[w] + k] * m);
                    checked++;
                }
            CHECK(bad == 0, "%s: %d entries not scaled by |%s|^%d", x->name, bad, g->weight[gi->weight].name, power);
            free(cur);
        }
        int open = 0, bad = 0;
        for (int64_t j = 0; j < width; j++) {
            open += was[j] != 0;
            bad += gate[j] != (was[j] > 0 ? 1.0f : was[j] < 0 ? -1.0f : 0.0f);
        }
        CHECK(bad == 0 && open > 0, "%s: %d of %d open gates are not +-1 after folding", g->weight[gi->weight].name, bad, open);
        free(gate);
    }
    printf("folded %d gated layers; %lld weight and state values rescaled as they should be\n", n, (long long)checked);
    for (int w = 0; w < g->nweight; w++) free(old[w]);
    free(old);
    free(cols);
    free(zero);
    free(folded);
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: test_prune MODEL STEPS DEVICE [TOLERANCE]\n");
        return 2;
    }
    const char *path = argv[1], *device = argv[3];
    int steps = atoi(argv[2]);
    double tol = argc == 5 ? atof(argv[4]) : 1e-5;
    Compilation c;
    Exec e;
    char err[1024];
    if (driver_compile(&c, path, NULL, STAGE_PLAN)) return 1;
    if (exec_new(&e, c.plan, device, NULL, err, sizeof err)) {
        printf("%s: %s\n", device, err);
        driver_free(&c);
        return !strcmp(device, "cuda") ? 77 : 1;
    }
    Batches b = {.B = c.plan->max_batch};
    if (train_load_data(c.model, c.graph, &b.data, err, sizeof err)) {
        printf("%s\n", err);
        return 1;
    }
    b.idx = calloc((size_t)b.B, sizeof(int64_t));
    int64_t spe = (b.data.train.n + b.B - 1) / b.B;
    exec_set_scalars(&e, SC_DATA_INV_N, 1.0 / (double)b.data.train.n); /* a KL term's 1 / N, as training sets it */
    train_init_weights(&e, c.model->train.seed);
    for (int s = 1; s <= steps; s++) {
        put_batch(&b, &e, (int64_t)(s - 1) * b.B);
        train_step_scalars(c.model, &e, s, spe, steps + 20, NULL, NULL);
        if (exec_run(&e, PROG_GRAD, b.B) || exec_run(&e, PROG_UPDATE, b.B)) {
            printf("FAIL: step %d: %s\n", s, e.dev->err);
            return 1;
        }
    }
    double before[16], after[16];
    int nb, na;
    eval_batch(&b, &e, before, &nb);

    const Graph *g = e.g;
    GateStat *st = calloc((size_t)g->ngate + 1, sizeof(GateStat));
    gate_counts(&e, st);
    PruneDecision d;
    bool any = prune_decide(&e, &d);
    CHECK(any, "after %d steps no gate of %s is closed; the test needs a stronger penalty", steps, path);
    WidthOverride *w = calloc((size_t)g->nspace + 1, sizeof(WidthOverride));
    for (int i = 0; i < g->ngate; i++) {
        const GateInfo *gi = &g->gate[i];
        if (gi->fixed) continue;
        int64_t want = st[i].live < gi->min_width ? gi->min_width : st[i].live;
        CHECK(d.width[gi->space] == want, "%s: %lld live of %lld (min %lld), but pruning keeps %lld", gi->layer,
              (long long)st[i].live, (long long)st[i].width, (long long)gi->min_width, (long long)d.width[gi->space]);
        printf("%s: %lld -> %lld neurons%s\n", gi->layer, (long long)st[i].width, (long long)d.width[gi->space],
               d.at_min[i] ? " (its minimum width)" : "");
    }
    for (int s = 0; s < g->nspace; s++) w[s] = (WidthOverride){g->space[s].layer, d.width[s]};
    Compilation c2;
    Exec e2;
    CompileOptions o = {.width = w, .nwidth = g->nspace};
    if (driver_compile(&c2, path, &o, STAGE_PLAN) || exec_new(&e2, c2.plan, device, NULL, err, sizeof err)) {
        printf("FAIL: recompiling: %s\n", err);
        return 1;
    }
    exec_set_scalars(&e2, SC_DATA_INV_N, 1.0 / (double)b.data.train.n);
    if (prune_transfer(&e, &e2, &d, err, sizeof err)) {
        printf("FAIL: transfer: %s\n", err);
        return 1;
    }
    eval_batch(&b, &e2, after, &na);
    CHECK(na == nb, "output counts differ");
    for (int i = 0; i < nb && i < na; i++) {
        double rel = fabs(before[i] - after[i]) / fmax(fabs(before[i]), 1e-30);
        printf("%-10s before %.7f  after %.7f  relative difference %.1e\n", g->output[i].name, before[i], after[i], rel);
        CHECK(rel <= tol, "'%s' changed by pruning (limit %g)", g->output[i].name, tol);
    }
    /* every surviving entry of every weight and state tensor, by name */
    int64_t moved = 0;
    for (int i = 0; i < e2.plan->nbuf; i++) {
        const Buffer *nb2 = &e2.plan->buf[i];
        if (nb2->kind != BUF_WEIGHT && nb2->kind != BUF_STATE) continue;
        const Weight *nw = &e2.g->weight[nb2->weight];
        int64_t old_cols, cols;
        float *old = read_all(&e, nb2->name, &old_cols), *cur = read_all(&e2, nb2->name, &cols);
        int64_t rows = nw->shape.rank >= 1 ? nw->shape.dim[0] : 1;
        const int64_t *kr = nw->shape.rank >= 1 && nw->space[0] >= 0 ? d.keep[nw->space[0]] : NULL;
        const int64_t *kc = nw->shape.rank >= 2 && nw->space[1] >= 0 ? d.keep[nw->space[1]] : NULL;
        /* a column is (repetition o, entry c of the space, element i of its block): a conv
         * weight's input channel is a block of kh kw columns, a dense layer after flatten reads
         * a channel at every position */
        int64_t q = nw->space_inner[1], width = kc ? d.width[nw->space[1]] : cols, old_width = kc ? g->space[nw->space[1]].width : cols;
        if (!kc) q = 1;
        int bad = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < cols; k++) {
                int64_t elem = k % q, entry = k / q % width, rep = k / q / width;
                int64_t from = (rep * old_width + (kc ? kc[entry] : entry)) * q + elem;
                bad += cur[r * cols + k] != old[(kr ? kr[r] : r) * old_cols + from];
            }
        CHECK(bad == 0, "%s: %d entries not where they belong", nb2->name, bad);
        moved += rows * cols;
        free(old);
        free(cur);
    }
    printf("%lld weight and optimiser-state values moved\n", (long long)moved);
    check_fold(&b, &e2, tol, c2.model->nparam);
    /* training goes on in the smaller model */
    double first = NAN, last = NAN;
    for (int s = steps + 1; s <= steps + 20; s++) {
        put_batch(&b, &e2, (int64_t)(s - 1) * b.B);
        train_step_scalars(c2.model, &e2, s, spe, steps + 20, NULL, NULL);
        if (exec_run(&e2, PROG_GRAD, b.B) || exec_run(&e2, PROG_UPDATE, b.B)) {
            printf("FAIL: step %d after pruning: %s\n", s, e2.dev->err);
            return 1;
        }
        float loss;
        exec_read(&e2, e2.g->loss, &loss, sizeof loss);
        if (s == steps + 1) first = loss;
        last = loss;
        CHECK(isfinite(loss), "step %d after pruning: loss %g", s, (double)loss);
    }
    printf("after pruning: loss %.4f at the first step, %.4f at the 20th\n", first, last);
    prune_free(&d);
    free(st);
    free(w);
    free(b.idx);
    train_free_data(&b.data);
    exec_free(&e2);
    driver_free(&c2);
    exec_free(&e);
    driver_free(&c);
    printf(failures ? "%d failures\n" : "ok\n", failures);
    return failures ? 1 : 0;
}
