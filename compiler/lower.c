/* lower.c: the checked Model -> forward graph IR.  Each layer becomes primitive ops
 * (dense = matmul + bias_add, gate = gate op + an l1 penalty term on the loss), each
 * weight gets its model-level name (h1.weight, h1.bias, h1.gate, h1.slope) and initialiser,
 * and the loss and metrics become the graph's outputs.  Values used twice are lowered once.
 * Gated layers are listed in Graph.gate; spaces.c then works out which of them can shrink. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fd_grad.h"
#include "lower.h"

typedef struct {
    const SVal *key;
    int id;
} Memo;

typedef struct {
    Graph *g;
    const Model *m;
    Diag *diag;
    Memo *memo;
    int nmemo, capmemo;
    int *penalty;
    int npenalty, cappenalty;
    int *kl; /* the variational layers' KL terms */
    int nkl, capkl;
    int *mixture_prior; /* the log priors of the non-centred weights' parts, summed by lower_priors */
    int nmixture_prior, capmixture_prior;
    const SVal *gnll;     /* the first gaussian_nll lowered: its per-sample log densities [B, D] */
    int gnll_lp, gnll_norm; /* and D log sigma, for nll_rows */
    int *sigma_of;          /* per input: the sigma of the gaussian_nll of that target, or -1 */
    bool failed;            /* an error was reported (fd_grad through a layer it cannot take) */
} Lower;

static int lower_val(Lower *L, const SVal *v);
static int prior_rank(const char *target, const char *weight);
static bool const_is(const SVal *v, double x);
static const char *wname(Lower *L, const SVal *v, const char *role);

/* The most specific of the model's priors on weight `name` (prior_rank), or -1. */
static int best_prior(const Model *m, const char *name) {
    int best = -1, rank = 0;
    for (int p = 0; p < m->nprior; p++) {
        int r = prior_rank(m->prior[p].target, name);
        if (r > rank) rank = r, best = p;
    }
    return best;
}

/* A dense or convolution layer's weight or bias (`role`): the trained weight, or, under a
 * non-centred Cauchy or Student-t prior, the scale mixture w = loc + scale z exp(log_tau / 2)
 * of two trained weights of its shape: name.z (initialised as the weight would be, prior
 * normal(0, 1)) and name.log_tau (from 0; tau ~ inverse gamma(nu / 2, nu / 2), so that
 * z sqrt(tau) is Student-t with nu degrees of freedom, Cauchy for nu = 1; in log_tau, with the
 * change of variable, log p = -(nu / 2)(log_tau + exp(-log_tau)) + const).  The sampler then
 * moves along z and log_tau, where the heavy tail is a smooth scale instead of a funnel.
 * Their log priors are kept for lower_priors. */
static int layer_weight(Lower *L, const SVal *v, const char *role, Shape s, int64_t fan_in) {
    Graph *g = L->g;
    const char *name = wname(L, v, role);
    int p = v->fixed ? -1 : best_prior(L->m, name); /* (a fixed weight has no prior: never trained nor sampled) */
    if (p < 0 || !L->m->prior[p].noncentred) {
        int w = ir_weight(g, name, v->fixed ? W_FIXED : W_PARAM, s, INIT_UNIFORM_FANIN, v->loc);
        Weight *wt = &g->weight[g->node[w].ref];
        wt->fan_in = fan_in;
        bool bias = !strcmp(role, "bias");
        if (!bias && (v->kind == SV_LAYER && (v->layer == L_DENSE || v->layer == L_CONV))) { /* `init =` (sema_layers.c) */
            wt->init = v->winit;
            wt->init_value = v->winit_std;
            wt->init_path = v->winit_path;
        }
        if (bias && v->bias_init_set) { /* `bias_init =` */
            wt->init = v->bias_init == 0 ? INIT_ZERO : INIT_CONST;
            wt->init_value = v->bias_init;
        }
        return w;
    }
    const PriorDef *pd = &L->m->prior[p];
    SrcLoc at = pd->loc;
    Shape sc = shape_scalar();
    int z = ir_weight(g, arena_printf(g->arena, "%s.z", name), W_PARAM, s, INIT_UNIFORM_FANIN, v->loc);
    int lt = ir_weight(g, arena_printf(g->arena, "%s.log_tau", name), W_PARAM, s, INIT_ZERO, v->loc);
    Weight *wz = &g->weight[g->node[z].ref], *wl = &g->weight[g->node[lt].ref];
    wz->fan_in = fan_in;
    wz->prior = wl->prior = p;
    wz->mixture_part = wl->mixture_part = true;
    int first = g->nnode;
    int w = ir_add2(g, OP_MUL, s, z, ir_add1(g, OP_EXP, s, ir_add2(g, OP_MUL, s, lt, ir_const(g, 0.5, at), at), at), at);
    if (!const_is(pd->scale, 1)) w = ir_add2(g, OP_MUL, s, w, lower_val(L, pd->scale), at);
    if (!const_is(pd->mean, 0)) w = ir_add2(g, OP_ADD, s, w, lower_val(L, pd->mean), at);
    int lz = ir_add1(g, OP_SUM, sc, ir_add1(g, OP_LOGP_NORMAL, s, z, at), at);
    int tail = ir_add2(g, OP_ADD, s, lt, ir_add1(g, OP_EXP, s, ir_add1(g, OP_NEG, s, lt, at), at), at);
    int ll = ir_add2(g, OP_MUL, sc, ir_const(g, -pd->nu / 2, at), ir_add1(g, OP_SUM, sc, tail, at), at);
    for (int id = first; id < g->nnode; id++)
        if (op_info[g->node[id].op].cls != OC_LEAF) g->node[id].name = v->wname;
    g->node[w].name = name;
    ARENA_PUSH(g->arena, L->mixture_prior, L->nmixture_prior, L->capmixture_prior, ir_add2(g, OP_ADD, sc, lz, ll, at));
    return w;
}

static int memo_get(Lower *L, const SVal *v) {
    for (int i = 0; i < L->nmemo; i++)
        if (L->memo[i].key == v) return L->memo[i].id;
    return -1;
}

static void memo_put(Lower *L, const SVal *v, int id) { VEC_PUSH(L->memo, L->nmemo, L->capmemo, ((Memo){v, id})); }

static const char *wname(Lower *L, const SVal *v, const char *role) {
    return arena_printf(L->g->arena, "%s.%s", v->wname, role);
}

/* A dense layer's x W^T (W [out, in], as PyTorch keeps it), and its bias. */
static int dense_product(Lower *L, const SVal *v, int x, int w, int64_t fan_in) {
    Graph *g = L->g;
    int y = ir_add2(g, OP_MATMUL, v->shape, x, w, v->loc);
    g->node[y].attr[1] = 1; /* x . W^T */
    g->node[y].name = v->wname;
    if (v->bias) {
        int b = layer_weight(L, v, "bias", shape_vec(v->units, false), fan_in);
        y = ir_add2(g, OP_BIAS_ADD, v->shape, y, b, v->loc);
        g->node[y].name = v->wname;
    }
    return y;
}

/* The run-time scalars the kernel generator reads (on/off flag, seed, step), shared by every
 * dropout and variational layer (their names have a dot, which no param's can).  Dropout is on
 * in training (mode.train); variational noise also in an evaluation over draws (mode.noise). */
static void random_scalars(Lower *L, SrcLoc at, bool noise, int out[4]) {
    static const char *const names[4] = {"mode.train", "rng.seed", "rng.step_lo", "rng.step_hi"};
    static const ScalarKind kinds[4] = {SC_TRAIN, SC_SEED, SC_STEP_LO, SC_STEP_HI};
    for (int k = 0; k < 4; k++) {
        double value = k == 0 ? 1 : kinds[k] == SC_SEED ? (double)(L->m->train.seed & 0xFFFFFF) : 0;
        out[k] = ir_scalar(L->g, k == 0 && noise ? "mode.noise" : names[k], k == 0 && noise ? SC_NOISE : kinds[k], value, at);
    }
}

/* The mean of z [B, ..., C]: per channel over the batch and the positions (batch_norm), or
 * per sample over all its features (layer_norm). */
static int norm_mean(Graph *g, const SVal *v, int z) {
    Shape s = v->shape, vec = shape_vec(s.dim[s.rank - 1], false), row = {.rank = 0, .batched = true};
    bool batch = v->layer == L_BATCH_NORM;
    int sum = batch ? ir_add1(g, OP_COLSUM, vec, ir_add1(g, OP_BATCH_MEAN, s, z, v->loc), v->loc)
                    : ir_add1(g, OP_ROWSUM, row, z, v->loc);
    double inv = 1.0 / (double)(batch ? shape_numel(s) / vec.dim[0] : shape_numel(s));
    return ir_add2(g, OP_MUL, batch ? vec : row, sum, ir_const(g, inv, v->loc), v->loc);
}

/* batch_norm's statistic in training, its running average `name` (a model statistic that
 * running_avg moves toward it) in evaluation. */
static int running(Lower *L, const SVal *v, int stat, const char *name, InitKind init) {
    Graph *g = L->g;
    Shape vec = g->node[stat].shape;
    int avg = ir_weight(g, wname(L, v, name), W_STAT, vec, init, v->loc);
    Weight *w = &g->weight[g->node[avg].ref];
    w->stat = stat;
    w->momentum = v->momentum;
    return ir_add3(g, OP_TRAIN_SELECT, vec, stat, avg, ir_scalar(g, "mode.train", SC_TRAIN, 1, v->loc), v->loc);
}

/* batch_norm and layer_norm, written with ops that have gradient rules (autodiff stays closed):
 *   batch_norm, per channel c over the batch and the P positions of a sample:
 *     mean = sum(x / B) / P (colsum), centred = x - mean, var = sum(centred^2 / B) / P;
 *     in evaluation mean and var are the running averages instead (train_select), which
 *     running_avg updates in training from the batch's values;
 *   layer_norm, per sample over its N features: mean = rowsum(x) / N, var likewise;
 *   then y = centred rsqrt(var + eps) scale + shift, scale and shift per channel. */
static int lower_norm(Lower *L, const SVal *v, int x) {
    Graph *g = L->g;
    int first = g->nnode;
    SrcLoc at = v->loc;
    Shape s = v->shape, vec = shape_vec(s.dim[s.rank - 1], false);
    bool batch = v->layer == L_BATCH_NORM;
    int mean = norm_mean(g, v, x);
    if (batch) mean = running(L, v, mean, "running_mean", INIT_ZERO);
    int centred = batch ? ir_add2(g, OP_BIAS_ADD, s, x, ir_add1(g, OP_NEG, vec, mean, at), at) : ir_add2(g, OP_SUB, s, x, mean, at);
    int var = norm_mean(g, v, ir_add2(g, OP_MUL, s, centred, centred, at));
    if (batch) var = running(L, v, var, "running_var", INIT_ONE);
    Shape vs = g->node[var].shape;
    int r = ir_add1(g, OP_RSQRT, vs, ir_add2(g, OP_ADD, vs, var, ir_const(g, v->eps, at), at), at);
    int norm = ir_add2(g, batch ? OP_GATE : OP_MUL, s, centred, r, at);
    int scale = ir_weight(g, wname(L, v, "scale"), W_PARAM, vec, INIT_ONE, at);
    int shift = ir_weight(g, wname(L, v, "shift"), W_PARAM, vec, INIT_ZERO, at);
    int y = ir_add2(g, OP_BIAS_ADD, s, ir_add2(g, OP_GATE, s, norm, scale, at), shift, at);
    for (int id = first; id < g->nnode; id++)
        if (op_info[g->node[id].op].cls != OC_LEAF) g->node[id].name = v->wname;
    return y;
}

static int log_prior(Lower *L, const PriorDef *p, int v);

/* A variational layer's weight of shape ws: its mean NAME.weight_mu and NAME.weight_rho trained,
 * sigma = softplus(rho), and w = mu + sigma eps with eps from normal_noise (0 when mode.noise is:
 * the posterior mean); with the local reparameterisation no w is drawn (-1), the layer draws its
 * outputs instead (lower_local).  KL(N(mu, sigma^2) || N(m, s^2)) = log s - log sigma +
 * (sigma^2 + (mu - m)^2) / 2 s^2 - 1/2, summed, goes to the loss's KL terms; for another prior,
 * the Monte-Carlo estimate -H(q) - log p(w) at the drawn w (the entropy in closed form). */
static int variational_weight(Lower *L, const SVal *v, Shape ws, int64_t fan_in, int *mu_out, int *sigma_out) {
    Graph *g = L->g;
    int mu = ir_weight(g, wname(L, v, "weight_mu"), W_PARAM, ws, INIT_UNIFORM_FANIN, v->loc);
    int rho = ir_weight(g, wname(L, v, "weight_rho"), W_PARAM, ws, INIT_CONST, v->loc);
    Weight *wm = &g->weight[g->node[mu].ref], *wr = &g->weight[g->node[rho].ref];
    wm->fan_in = fan_in;
    wr->init_value = v->rho0;
    wm->variational = wr->variational = true;
    int w = -1, sigma, first = g->nnode;
    if (v->local) {
        sigma = ir_add1(g, OP_SOFTPLUS, ws, rho, v->loc);
    } else {
        int sc[4];
        random_scalars(L, v->loc, true, sc);
        int eps = ir_add(g, OP_NORMAL_NOISE, DT_F32, ws, sc, 4, v->loc);
        g->node[eps].attr[0] = v->stream;
        first = eps;
        sigma = ir_add1(g, OP_SOFTPLUS, ws, rho, v->loc);
        w = ir_add2(g, OP_ADD, ws, mu, ir_add2(g, OP_MUL, ws, sigma, eps, v->loc), v->loc);
    }
    for (int id = first; id < g->nnode; id++) g->node[id].name = v->wname;
    if (v->mc_prior) { /* KL = E_q[log q(w) - log p(w)]: -H(q) in closed form, - log p(w) at the draw */
        SrcLoc at = v->loc;
        Shape sc = shape_scalar();
        int from = g->nnode;
        double n = (double)shape_numel(ws);
        int neg_h = ir_add2(g, OP_SUB, sc, ir_const(g, -n * 0.5 * (1 + log(2 * M_PI)), at),
                            ir_add1(g, OP_SUM, sc, ir_add1(g, OP_LOG, ws, sigma, at), at), at);
        int kl = ir_add2(g, OP_SUB, sc, neg_h, log_prior(L, v->mc_prior, w), at);
        for (int id = from; id < g->nnode; id++)
            if (op_info[g->node[id].op].cls != OC_LEAF) g->node[id].name = v->wname;
        VEC_PUSH(L->kl, L->nkl, L->capkl, kl);
        *mu_out = mu;
        *sigma_out = sigma;
        return w;
    }
    double m = v->prior_mean, s = v->prior_scale;
    int d = m == 0 ? mu : ir_add2(g, OP_SUB, ws, mu, ir_const(g, m, v->loc), v->loc);
    int q = ir_add2(g, OP_ADD, ws, ir_add2(g, OP_MUL, ws, sigma, sigma, v->loc), ir_add2(g, OP_MUL, ws, d, d, v->loc), v->loc);
    int e = ir_add2(g, OP_SUB, ws, ir_add2(g, OP_MUL, ws, q, ir_const(g, 1 / (2 * s * s), v->loc), v->loc),
                    ir_add1(g, OP_LOG, ws, sigma, v->loc), v->loc);
    int kl = ir_add2(g, OP_ADD, shape_scalar(), ir_add1(g, OP_SUM, shape_scalar(), e, v->loc),
                     ir_const(g, (double)shape_numel(ws) * (log(s) - 0.5), v->loc), v->loc);
    for (int id = d; id < g->nnode; id++)
        if (op_info[g->node[id].op].cls != OC_LEAF) g->node[id].name = v->wname;
    VEC_PUSH(L->kl, L->nkl, L->capkl, kl);
    *mu_out = mu;
    *sigma_out = sigma;
    return w;
}

/* bayes_dense(local = true), the local reparameterisation: each output is drawn, not the weight.
 * For a sample x, y = x mu^T + b + sqrt(x^2 (sigma^2)^T) eps, eps standard normal per sample and
 * output (the distribution of x w^T + b under the weight's): the noise varies within a batch,
 * so its gradients have a lower variance. */
static int lower_local(Lower *L, const SVal *v, int x, int mu, int sigma, int64_t fan_in) {
    Graph *g = L->g;
    SrcLoc at = v->loc;
    Shape ys = v->shape, ws = g->node[mu].shape;
    int first = g->nnode;
    int mean = dense_product(L, v, x, mu, fan_in);
    int var = ir_add2(g, OP_MATMUL, ys, ir_add2(g, OP_MUL, g->node[x].shape, x, x, at), ir_add2(g, OP_MUL, ws, sigma, sigma, at), at);
    g->node[var].attr[1] = 1; /* x^2 . (sigma^2)^T */
    int pos = ir_add2(g, OP_ADD, ys, var, ir_const(g, 1e-12, at), at); /* sqrt(v) = v rsqrt(v), v > 0 */
    int sd = ir_add2(g, OP_MUL, ys, pos, ir_add1(g, OP_RSQRT, ys, pos, at), at);
    int sc[4];
    random_scalars(L, at, true, sc);
    int eps = ir_add(g, OP_NORMAL_NOISE, DT_F32, ys, sc, 4, at);
    g->node[eps].attr[0] = v->stream;
    int y = ir_add2(g, OP_ADD, ys, mean, ir_add2(g, OP_MUL, ys, sd, eps, at), at);
    for (int id = first; id < g->nnode; id++)
        if (op_info[g->node[id].op].cls != OC_LEAF) g->node[id].name = v->wname;
    return y;
}

static int lower_layer(Lower *L, const SVal *v) {
    Graph *g = L->g;
    int x = lower_val(L, v->a);
    Shape in = g->node[x].shape;
    switch (v->layer) {
    case L_BAYES_DENSE: {
        Shape ws = {.rank = 2, .dim = {v->units, in.dim[0]}};
        int mu, sigma, w = variational_weight(L, v, ws, in.dim[0], &mu, &sigma);
        return v->local ? lower_local(L, v, x, mu, sigma, in.dim[0]) : dense_product(L, v, x, w, in.dim[0]);
    }
    case L_DENSE: {
        Shape ws = {.rank = 2, .dim = {v->units, in.dim[0]}};
        return dense_product(L, v, x, layer_weight(L, v, "weight", ws, in.dim[0]), in.dim[0]);
    }
    case L_CONV: case L_POOL: { /* windows over [H, W, C]; one-dimensional layers have H = 1 */
        Shape map = {.rank = 3, .batched = true};
        map.dim[0] = v->spatial == 2 ? in.dim[0] : 1;
        map.dim[1] = in.dim[v->spatial - 1];
        map.dim[2] = in.rank == v->spatial + 1 ? in.dim[v->spatial] : 1;
        if (!shape_eq(map, in)) x = ir_add1(g, OP_RESHAPE, map, x, v->loc);
        Shape out = {.rank = 3, .dim = {v->spatial == 2 ? v->shape.dim[0] : 1, v->shape.dim[v->spatial - 1], v->shape.dim[v->spatial]},
                     .batched = true};
        double at[6] = {(double)v->kh, (double)v->kw, (double)v->stride, (double)v->dilation, (double)v->pad_top, (double)v->pad_left};
        int y;
        if (v->layer == L_POOL) {
            y = ir_add1(g, v->pool, out, x, v->loc);
            memcpy(g->node[y].attr, at, sizeof at);
        } else {
            int64_t c = map.dim[2], k = c * v->kh * v->kw;
            /* the weight as PyTorch and ONNX keep it, [F, C, kh, kw] ([F, C, k] for conv1d); the
             * patches hold a window position's channels together (a run of the input's row),
             * so the patches' GEMM multiplies by it as [F, kh kw C]: transposed, unless C or
             * kh kw is 1 */
            Shape ws = v->spatial == 2 ? (Shape){.rank = 4, .dim = {v->units, c, v->kh, v->kw}}
                                       : (Shape){.rank = 3, .dim = {v->units, c, v->kw}};
            int mu, sigma, kk = (int)(v->kh * v->kw);
            int w = v->variational ? variational_weight(L, v, ws, k, &mu, &sigma) : layer_weight(L, v, "weight", ws, k);
            if (c > 1 && kk > 1) {
                w = ir_add1(g, OP_RESHAPE, (Shape){.rank = 3, .dim = {v->units, c, kk}}, w, v->loc);
                w = ir_add1(g, OP_TRANSPOSE, (Shape){.rank = 3, .dim = {v->units, kk, c}}, w, v->loc);
                g->node[w].name = v->wname;
            }
            int wm = ir_add1(g, OP_RESHAPE, (Shape){.rank = 2, .dim = {v->units, k}}, w, v->loc);
            Shape ps = out;
            ps.dim[2] = k;
            int cols = ir_add1(g, OP_IM2COL, ps, x, v->loc);
            memcpy(g->node[cols].attr, at, sizeof at);
            g->node[cols].name = v->wname;
            y = ir_add2(g, OP_MATMUL, out, cols, wm, v->loc);
            g->node[y].attr[1] = 1;
            g->node[y].name = v->wname;
            if (v->bias) {
                int b = layer_weight(L, v, "bias", shape_vec(v->units, false), k);
                y = ir_add2(g, OP_BIAS_ADD, out, y, b, v->loc);
                g->node[y].name = v->wname;
            }
        }
        return shape_eq(out, v->shape) ? y : ir_add1(g, OP_RESHAPE, v->shape, y, v->loc);
    }
    case L_DROPOUT: {
        int ops[5] = {x};
        random_scalars(L, v->loc, false, ops + 1);
        int y = ir_add(g, OP_DROPOUT, DT_F32, v->shape, ops, 5, v->loc);
        g->node[y].attr[0] = v->alpha;
        g->node[y].attr[1] = v->stream;
        g->node[y].name = v->wname;
        return y;
    }
    case L_BATCH_NORM: case L_LAYER_NORM: return lower_norm(L, v, x);
    case L_FLATTEN:
        if (shape_eq(in, v->shape)) return x;
        return ir_add1(g, OP_RESHAPE, v->shape, x, v->loc);
    case L_ACT: {
        int y = ir_add1(g, v->act, v->shape, x, v->loc);
        g->node[y].attr[0] = v->alpha;
        return y;
    }
    case L_SHIFT: { /* x + b over the last dimension, b trained */
        int b = ir_weight(g, wname(L, v, "shift"), W_PARAM, shape_vec(in.dim[in.rank - 1], false), INIT_CONST, v->loc);
        g->weight[g->node[b].ref].init_value = v->init;
        int y = ir_add2(g, OP_BIAS_ADD, v->shape, x, b, v->loc);
        g->node[y].name = v->wname;
        return y;
    }
    case L_PRELU: { /* (flat inputs only: sema) */
        int a = ir_weight(g, wname(L, v, "slope"), W_PARAM, shape_vec(in.dim[0], false), INIT_CONST, v->loc);
        g->weight[g->node[a].ref].init_value = v->alpha;
        return ir_add2(g, OP_PRELU, v->shape, x, a, v->loc);
    }
    case L_GATE: {
        int64_t width = in.dim[in.rank - 1]; /* per neuron, or per channel of a feature map */
        GateInfo gi = {.layer = v->wname, .kind = v->size_gate ? GATE_SIZE : GATE_L1, .slope = v->slope,
                       .threshold = v->threshold, .min_width = v->min_width, .space = -1, .out_sum = -1, .out_sumsq = -1,
                       .coef = v->coef, .fold = v->fold, .fold_weight = {-1, -1}};
        bool penalised = !(v->coef->kind == SV_CONST && v->coef->num == 0);
        int y, gw;
        if (v->size_gate) {
            /* factor_j = sigmoid(k (x0 - j)), x0 = declared width * boundary (a fraction, so that
             * optimisers move it in proportion to the layer); the penalty lambda sum_j factor_j
             * is differentiated */
            gw = ir_weight(g, wname(L, v, "boundary"), W_PARAM, shape_scalar(), INIT_CONST, v->loc);
            g->weight[g->node[gw].ref].init_value = v->init / (double)v->declared;
            int f = ir_add1(g, OP_SIZE_GATE_FACTOR, shape_vec(width, false), gw, v->loc);
            g->node[f].attr[0] = v->slope;
            g->node[f].attr[1] = (double)v->declared;
            gi.scale = (double)v->declared;
            g->node[f].name = v->wname;
            y = ir_add2(g, OP_GATE, v->shape, x, f, v->loc);
            if (penalised) {
                int count = ir_add1(g, OP_SUM, shape_scalar(), f, v->loc);
                VEC_PUSH(L->penalty, L->npenalty, L->cappenalty, ir_add2(g, OP_MUL, shape_scalar(), lower_val(L, v->coef), count, v->loc));
            }
        } else {
            gw = ir_weight(g, wname(L, v, "gate"), W_PARAM, shape_vec(width, false), INIT_ONE, v->loc);
            y = ir_add2(g, OP_GATE, v->shape, x, gw, v->loc);
            if (penalised) {
                /* lambda sum |g|: part of the reported loss, applied by the update's proximal step */
                int l1 = ir_add1(g, OP_L1, shape_scalar(), gw, v->loc);
                g->node[l1].attr[0] = 1;
                int coef = lower_val(L, v->coef);
                g->weight[g->node[gw].ref].prox = coef;
                VEC_PUSH(L->penalty, L->npenalty, L->cappenalty, ir_add2(g, OP_MUL, shape_scalar(), coef, l1, v->loc));
            }
        }
        g->node[y].name = v->wname;
        gi.weight = g->node[gw].ref;
        gi.node = y;
        ARENA_PUSH(g->arena, g->gate, g->ngate, g->capgate, gi);
        return y;
    }
    }
    NNC_BUG("layer kind %d", v->layer);
}

/* gaussian_nll(a, b, sigma), per sample and summed over its D outputs, mean over the batch:
 *   D log sigma - mean_B sum_D logp_normal((a - b) / sigma);
 * sigma = learned is softplus of a trained scalar named after the target (y.sigma_raw), which
 * starts at sigma = 1. */
static int gaussian_nll(Lower *L, const SVal *v, int a, int b) {
    Graph *g = L->g;
    SrcLoc at = v->loc;
    Shape s = g->node[a].shape, sc = shape_scalar();
    int sigma;
    if (v->coef) {
        sigma = lower_val(L, v->coef);
    } else {
        const char *target = L->m->io[v->b->index].name;
        int raw = ir_weight(g, arena_printf(g->arena, "%s.%s", target, SIGMA_RAW), W_PARAM, sc, INIT_CONST, at);
        g->weight[g->node[raw].ref].init_value = log(expm1(1.0));
        sigma = ir_add1(g, OP_SOFTPLUS, sc, raw, at);
    }
    int z = ir_add2(g, OP_DIV, s, ir_add2(g, OP_SUB, s, a, b, at), sigma, at);
    int lpz = ir_add1(g, OP_LOGP_NORMAL, s, z, at);
    int lp = ir_add1(g, OP_SUM, sc, ir_add1(g, OP_BATCH_MEAN, s, lpz, at), at);
    int norm = ir_add2(g, OP_MUL, sc, ir_const(g, (double)shape_numel(s), at), ir_add1(g, OP_LOG, sc, sigma, at), at);
    if (!L->gnll) L->gnll = v, L->gnll_lp = lpz, L->gnll_norm = norm;
    if (L->sigma_of[v->b->index] < 0) L->sigma_of[v->b->index] = sigma;
    return ir_add2(g, OP_SUB, sc, norm, lp, at);
}

/* ---- priors ---- */

/* How specifically a prior's target names a weight: 0 not at all; 1 `weights` (every .weight)
 * or `biases` (every .bias); 2 and more a layer, the deeper the more specific (h1, then
 * f.dense1); 1000 the weight itself. */
static int prior_rank(const char *target, const char *weight) {
    size_t n = strlen(target), m = strlen(weight);
    if (!strcmp(target, weight)) return 1000;
    if (m > n && !strncmp(target, weight, n) && weight[n] == '.') {
        int depth = 2;
        for (size_t i = 0; i < n; i++) depth += target[i] == '.';
        return depth;
    }
    if (!strcmp(target, "weights")) return util_ends_with(weight, ".weight");
    if (!strcmp(target, "biases")) return util_ends_with(weight, ".bias");
    return 0;
}

static bool const_is(const SVal *v, double x) { return v->kind == SV_CONST && v->num == x; }

/* log p(v) for prior p, summed over the n entries of node v (a weight, or a learned sigma):
 * sum_i f((v_i - loc) / scale) - n log scale, f the standard density's log (elementwise.c). */
static int log_prior(Lower *L, const PriorDef *p, int v) {
    Graph *g = L->g;
    SrcLoc at = p->loc;
    Shape s = g->node[v].shape, sc = shape_scalar();
    int z = v;
    if (!const_is(p->mean, 0)) z = ir_add2(g, OP_SUB, s, z, lower_val(L, p->mean), at);
    int scale = const_is(p->scale, 1) ? -1 : lower_val(L, p->scale);
    if (scale >= 0) z = ir_add2(g, OP_DIV, s, z, scale, at);
    static const Op density[] = {[PRIOR_NORMAL] = OP_LOGP_NORMAL, [PRIOR_LAPLACE] = OP_LOGP_LAPLACE,
                                 [PRIOR_CAUCHY] = OP_LOGP_STUDENT_T, [PRIOR_STUDENT_T] = OP_LOGP_STUDENT_T};
    int f = ir_add1(g, density[p->kind], s, z, at);
    if (density[p->kind] == OP_LOGP_STUDENT_T) g->node[f].attr[0] = p->nu; /* the Cauchy: nu = 1 */
    int sum = ir_add1(g, OP_SUM, sc, f, at);
    if (scale >= 0)
        sum = ir_add2(g, OP_SUB, sc, sum,
                      ir_add2(g, OP_MUL, sc, ir_const(g, (double)shape_numel(s), at), ir_add1(g, OP_LOG, sc, scale, at), at), at);
    return sum;
}

/* A learned noise sigma = softplus(raw) takes a prior by its name (y.sigma for target y): log
 * p(sigma) + log sigmoid(raw), the change of variable's log Jacobian, so that the sampled raw
 * weight's density is the prior's on sigma (a half distribution over sigma > 0). */
static int log_prior_sigma(Lower *L, const PriorDef *p, const Weight *raw) {
    Graph *g = L->g;
    Shape sc = shape_scalar();
    int sigma = ir_add1(g, OP_SOFTPLUS, sc, raw->node, p->loc);
    int log_jacobian = ir_add1(g, OP_NEG, sc, ir_add1(g, OP_SOFTPLUS, sc, ir_add1(g, OP_NEG, sc, raw->node, p->loc), p->loc), p->loc);
    return ir_add2(g, OP_ADD, sc, log_prior(L, p, sigma), log_jacobian, p->loc);
}

/* `name` up to its last dot: the layer of a weight (h1 of h1.weight), or the weight of a
 * non-centred weight's part (h1.weight of h1.weight.z). */
static const char *owner_name(Graph *g, const char *name) {
    return arena_strndup(g->arena, name, (size_t)(strrchr(name, '.') - name));
}

/* The name a prior gives a weight by: the weight's own; for a learned sigma's raw weight the
 * sigma's (y.sigma); for a non-centred weight's z or log_tau the weight's (layer_weight). */
static const char *prior_name(Graph *g, const Weight *w) {
    if (w->mixture_part) return owner_name(g, w->name);
    if (!util_ends_with(w->name, "." SIGMA_RAW)) return w->name;
    return arena_strndup(g->arena, w->name, strlen(w->name) - strlen("_raw"));
}

/* Each trained weight's most specific prior (Weight.prior), and the log prior of them all
 * (-1: none).  A prior that names no weight is an error, with a did-you-mean among the
 * weights and layers (one that more specific priors override everywhere is not). */
static int lower_priors(Lower *L, bool *ok) {
    Graph *g = L->g;
    const Model *m = L->m;
    int *used = util_calloc((size_t)m->nprior + 1, sizeof(int));
    bool *reported = util_calloc((size_t)m->nprior + 1, sizeof(bool));
    int total = -1;
    for (int wi = 0; wi < g->nweight; wi++) {
        Weight *w = &g->weight[wi];
        if (w->kind != W_PARAM) continue;
        bool sigma = util_ends_with(w->name, "." SIGMA_RAW);
        const char *name = prior_name(g, w);
        int best = -1, rank = 0;
        for (int p = 0; p < m->nprior; p++) {
            int r = prior_rank(m->prior[p].target, name);
            if (sigma && r != 1000) r = 0; /* a sigma's prior names it: weights, biases and layers are not about it */
            used[p] += r > 0;
            if (r > rank) rank = r, best = p;
        }
        if (best >= 0 && w->variational) {
            if (!reported[best]) /* once per statement: it may reach the layer's mu and rho */
                diag_error(L->diag, m->prior[best].target_loc, "'%s' belongs to a variational layer, whose prior is its own "
                           "(bayes_dense(prior = ...)); a prior statement cannot reach it", w->name);
            reported[best] = true;
            *ok = false;
            continue;
        }
        if (best < 0 || w->mixture_part) continue; /* (a part's log prior was made with it) */
        if (m->prior[best].noncentred) {
            diag_error(L->diag, m->prior[best].target_loc, "a non-centred prior is for dense and convolution weights and biases, but "
                       "it reaches '%s'; give that one a prior of its own", sigma ? name : w->name);
            *ok = false;
            continue;
        }
        w->prior = best;
        int first = g->nnode, term = sigma ? log_prior_sigma(L, &m->prior[best], w) : log_prior(L, &m->prior[best], w->node);
        const char *layer = owner_name(g, w->name);
        for (int id = first; id < g->nnode; id++)
            if (op_info[g->node[id].op].cls != OC_LEAF) g->node[id].name = layer;
        total = total < 0 ? term : ir_add2(g, OP_ADD, shape_scalar(), total, term, m->prior[best].loc);
    }
    for (int i = 0; i < L->nmixture_prior; i++)
        total = total < 0 ? L->mixture_prior[i] : ir_add2(g, OP_ADD, shape_scalar(), total, L->mixture_prior[i], g->node[L->mixture_prior[i]].loc);
    for (int p = 0; p < m->nprior; p++) {
        if (used[p]) continue;
        const PriorDef *pd = &m->prior[p];
        *ok = false;
        if (!strcmp(pd->target, "weights") || !strcmp(pd->target, "biases")) {
            diag_error(L->diag, pd->target_loc, "prior on '%s': the model has no %s", pd->target,
                       pd->target[0] == 'w' ? "dense or convolution weights" : "biases");
            continue;
        }
        bool target_sigma = false; /* y.sigma for a target y whose sigma is not learned */
        for (int i = 0; i < m->nio; i++)
            if (m->io[i].is_target && !strcmp(pd->target, arena_printf(g->arena, "%s.sigma", m->io[i].name))) target_sigma = true;
        if (target_sigma) {
            diag_error(L->diag, pd->target_loc, "prior on '%s': the noise sigma of '%.*s' is not learned; only gaussian_nll(..., "
                       "sigma = learned) makes it a trained weight that a prior can be on", pd->target,
                       (int)(strlen(pd->target) - strlen(".sigma")), pd->target);
            continue;
        }
        const char **cand = util_calloc((size_t)g->nweight * 2 + 1, sizeof(char *));
        int ncand = 0;
        for (int wi = 0; wi < g->nweight; wi++) {
            const Weight *w = &g->weight[wi];
            if (w->kind != W_PARAM) continue;
            const char *name = prior_name(g, w);
            cand[ncand++] = name;
            if (!util_ends_with(w->name, "." SIGMA_RAW)) cand[ncand++] = owner_name(g, name); /* (a sigma's is no layer) */
        }
        const char *near = diag_suggest(pd->target, cand, ncand);
        if (near)
            diag_error(L->diag, pd->target_loc, "prior on '%s': the model has no layer or weight '%s'; did you mean '%s'?",
                       diag_name(pd->target), diag_name(pd->target), near);
        else
            diag_error(L->diag, pd->target_loc, "prior on '%s': the model has no layer or weight '%s'", diag_name(pd->target),
                       diag_name(pd->target));
        free(cand);
    }
    free(reported);
    free(used);
    return total;
}

static int lower_val(Lower *L, const SVal *v) {
    int id = memo_get(L, v);
    if (id >= 0) return id;
    Graph *g = L->g;
    switch (v->kind) {
    case SV_INPUT: id = g->input[v->index].node; break;
    case SV_CONST: id = ir_const(g, v->num, v->loc); break;
    case SV_PARAM: {
        const ParamDef *p = &L->m->param[v->index];
        id = ir_scalar(g, p->name, SC_PARAM, p->value, v->loc);
        break;
    }
    case SV_LAYER: id = lower_layer(L, v); break;
    case SV_LOSS: {
        if (v->op == LOSS_COSINE_DIVERSITY) {
            id = cosine_diversity_lower(g, lower_val(L, v->a), v->num, v->graph, v->squared, v->loc);
            break;
        }
        int a = lower_val(L, v->a), b = lower_val(L, v->b);
        if (v->b->kind == SV_CONST) b = ir_add1(g, OP_BROADCAST, g->node[a].shape, b, v->loc); /* mse(p, 0) */
        if (v->op == LOSS_GAUSSIAN_NLL)
            id = gaussian_nll(L, v, a, b);
        else
            id = ir_add2(g, v->op == LOSS_CROSS_ENTROPY ? OP_CROSS_ENTROPY : OP_MSE, shape_scalar(), a, b, v->loc);
        if (v->op == LOSS_SSE) /* the mean over the batch of each sample's sum */
            id = ir_add2(g, OP_MUL, shape_scalar(), id, ir_const(g, (double)shape_numel(g->node[a].shape), v->loc), v->loc);
        break;
    }
    case SV_METRIC: { /* accuracy and error share one count; rmse is the root of an mse */
        int a = lower_val(L, v->a), b = lower_val(L, v->b);
        Op op = v->op == METRIC_RMSE ? OP_MSE : v->op == METRIC_RELATIVE_ERROR ? OP_RELATIVE_ERROR : OP_ACCURACY;
        for (int i = 0; i < g->nnode && id < 0; i++)
            if (g->node[i].op == op && g->node[i].in[0] == a && g->node[i].in[1] == b) id = i;
        if (id < 0) id = ir_add2(g, op, shape_scalar(), a, b, v->loc);
        break;
    }
    case SV_BINARY: {
        int a = lower_val(L, v->a), b = lower_val(L, v->b);
        Op op = v->op == '+' ? OP_ADD : v->op == '-' ? OP_SUB : v->op == '*' ? OP_MUL : OP_DIV;
        id = ir_add2(g, op, v->shape, a, b, v->loc); /* a scalar's shape is rank 0; a tensor's its own */
        break;
    }
    case SV_NEG: id = ir_add1(g, OP_NEG, v->shape, lower_val(L, v->a), v->loc); break;
    case SV_FD_GRAD:
        id = fd_grad_lower(g, lower_val(L, v->a), lower_val(L, v->b), v->num, v->op, v->loc, L->diag);
        if (id < 0) { /* reported; a stand-in of the gradient's shape */
            L->failed = true;
            id = ir_add1(g, OP_BROADCAST, v->shape, ir_const(g, 0, v->loc), v->loc);
        }
        break;
    }
    memo_put(L, v, id);
    return id;
}

Graph *lower_model(Arena *arena, const Model *m, Diag *diag) {
    Graph *g = ir_new(arena);
    Lower L = {.g = g, .m = m, .diag = diag, .sigma_of = util_calloc((size_t)m->nio + 1, sizeof(int))};
    for (int i = 0; i < m->nio; i++) L.sigma_of[i] = -1;
    g->nlib = diag->nlib;
    g->lib_path = arena_alloc(arena, sizeof(char *) * ((size_t)g->nlib + 1));
    for (int i = 0; i < g->nlib; i++) g->lib_path[i] = diag->lib[i].path;
    for (int i = 0; i < m->nio; i++) {
        const IoDef *io = &m->io[i];
        ir_input(g, io->name, io->is_target, io->is_class, io->nclass, io->shape, io->loc);
    }
    /* every param gets its slot, used or not, so --set and schedules see them all */
    for (int i = 0; i < m->nparam; i++)
        if (ir_find_scalar(g, m->param[i].name) < 0) ir_scalar(g, m->param[i].name, SC_PARAM, m->param[i].value, m->param[i].loc);
    int loss = lower_val(&L, m->loss);
    for (int i = 0; i < L.npenalty; i++)
        loss = ir_add2(g, OP_ADD, shape_scalar(), loss, L.penalty[i], g->node[L.penalty[i]].loc);
    /* the loss is per sample: the negative log prior counts 1/N of itself, N the training
     * samples, so that N x loss is the potential, the posterior's negative log density */
    bool ok = true;
    int log_prior = lower_priors(&L, &ok);
    if (log_prior >= 0) {
        SrcLoc at = m->prior[0].loc;
        int inv_n = ir_scalar(g, "data.inv_n", SC_DATA_INV_N, 1.0, at);
        loss = ir_add2(g, OP_ADD, shape_scalar(), loss,
                       ir_add2(g, OP_MUL, shape_scalar(), inv_n, ir_add1(g, OP_NEG, shape_scalar(), log_prior, at), at), at);
    }
    /* the variational layers' KL(q || prior), 1/N of it per sample as the log prior's */
    for (int i = 0; i < L.nkl; i++) {
        SrcLoc at = g->node[L.kl[i]].loc;
        int inv_n = ir_scalar(g, "data.inv_n", SC_DATA_INV_N, 1.0, at);
        loss = ir_add2(g, OP_ADD, shape_scalar(), loss, ir_add2(g, OP_MUL, shape_scalar(), inv_n, L.kl[i], at), at);
    }
    g->loss = loss;
    ir_add_output(g, "loss", loss, AGG_MEAN);
    for (int i = 0; i < m->nmetric; i++) {
        MetricKind k = m->metric[i].kind;
        ir_add_output(g, m->metric[i].name, lower_val(&L, m->metric[i].val),
                      k == METRIC_ERROR ? AGG_ONE_MINUS_FRACTION : k == METRIC_RMSE ? AGG_RMS : k == METRIC_NLL || k == METRIC_RELATIVE_ERROR ? AGG_MEAN : AGG_FRACTION);
    }
    spaces_analyse(g);
    /* each head's prediction, the first argument of its target's loss function, in the order
     * the loss names them: "prediction" for a model with one target, else the target's name */
    enum { MAX_PREDICTIONS = 64 };
    const SVal *pred[MAX_PREDICTIONS];
    const char *pname[MAX_PREDICTIONS];
    int npred = sema_predictions(m, pred, pname, MAX_PREDICTIONS), ntarget = 0;
    for (int i = 0; i < npred; i++) ir_add_output(g, pname[i], lower_val(&L, pred[i]), AGG_PREDICT);
    for (int i = 0; i < m->nio; i++) ntarget += m->io[i].is_target;
    /* a post-training head's features, which its fit and its predictions read */
    if (m->head.on) ir_add_output(g, "head.features", lower_val(&L, m->head.features), AGG_FEATURES);
    /* the nll metric per sample, D log sigma - sum_D logp_normal(z), for a sampler's posterior
     * predictive (runtime/posterior.c), which needs it per sample and draw */
    for (int i = 0; i < m->nmetric; i++)
        if (m->metric[i].kind == METRIC_NLL && m->metric[i].val == L.gnll) {
            SrcLoc at = L.gnll->loc;
            Shape row = {.rank = 0, .batched = true};
            int rs = ir_add1(g, OP_ROWSUM, row, L.gnll_lp, at);
            ir_add_output(g, "nll_rows", ir_add2(g, OP_SUB, row, L.gnll_norm, rs, at), AGG_ROWS);
            break;
        }
    /* a variational model's KL(q || prior), and each head's gaussian_nll sigma, read by an
     * evaluation (the KL beside the likelihood; the sigma in a prediction's interval) */
    if (L.nkl) {
        int kl = L.kl[0];
        for (int i = 1; i < L.nkl; i++) kl = ir_add2(g, OP_ADD, shape_scalar(), kl, L.kl[i], g->node[L.kl[i]].loc);
        ir_add_output(g, "kl", kl, AGG_WEIGHTS);
        for (int i = 0; i < m->nio; i++)
            if (L.sigma_of[i] >= 0)
                ir_add_output(g, ntarget > 1 ? arena_printf(g->arena, "%s.sigma", m->io[i].name) : "sigma", L.sigma_of[i], AGG_WEIGHTS);
    }
    g->nforward = g->nnode;
    free(L.sigma_of);
    free(L.memo);
    free(L.penalty);
    free(L.kl);
    if (!ok || L.failed) return NULL;
    for (int i = 0; i < g->nweight; i++) /* checkpoints and --init find weights by name */
        for (int k = 0; k < i; k++)
            if (!strcmp(g->weight[i].name, g->weight[k].name)) NNC_BUG("two weights are named '%s'", g->weight[i].name);
    ir_verify(g, "lower");
    return g;
}
