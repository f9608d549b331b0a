/* spaces.c: neuron spaces and gated layers, the facts pruning needs.  Runs at the end of
 * lower.c, over the forward graph.  Every dense layer makes a space (its units), and every
 * convolution one (its output channels).  Each weight records, per dimension of its matrix view
 * [rows, the rest], the space it is indexed by: h2.weight is [h2 units, h1 units]; a conv's
 * [F, C, kh, kw] weight is [c2 channels, c1 channels x kh kw], each c1 entry a block of kh kw
 * columns (its `inner`); a dense layer after flatten([H, W, C]) reads c channels repeated H W
 * times.  So the runtime can cut a removed neuron's or channel's rows and columns everywhere at
 * once.
 *
 * A node's elements relate to a space by its per-sample flat index e: the entry is
 * (e / inner) % width.  Views keep that (a reshape does not move elements); a convolution's
 * patches keep it too (channels fastest, each repeated kh kw times); pooling keeps channels.
 *
 * A gated layer can shrink when removing a neuron whose gate is 0 leaves the model's function
 * unchanged: every use of the layer's neurons must come after its one gate, through ops that
 * keep 0 at 0 (relu, tanh, prelu, pooling, a convolution's patches; not sigmoid or softplus),
 * and only dense and convolution layers may read them (a loss or metric fixes the width).  For
 * each gated layer this pass also adds two evaluation outputs, the per-element sums of the
 * activations and of their squares, from which the runtime reports the variance of each neuron
 * (or channel, over its positions).  For a gate with `fold = true` it finds the weight and bias
 * the gate folds into (fold_targets). */
#include <stdlib.h>

#include "lower.h"

/* The weight a GEMM operand is, seen through views and a transpose (a conv's [F, C, kh, kw]
 * as the [F, kh kw C] matrix of its patches' order); with `inner`, a column entry's block in
 * that view becomes the one in the weight's own order [F, C kh kw] (kh kw where the view's
 * is 1). */
static Weight *weight_of(Graph *g, int node, int64_t *inner) {
    for (;;) {
        const Node *n = &g->node[node];
        if (n->op == OP_TRANSPOSE) { /* [F, C, K] -> [F, K, C]: column entry c, one element each */
            if (inner && *inner != 1) return NULL;
            if (inner) *inner = n->shape.dim[1];
        } else if (n->op != OP_RESHAPE) {
            break;
        }
        node = n->in[0];
    }
    return g->node[node].op == OP_WEIGHT ? &g->weight[g->node[node].ref] : NULL;
}

/* The trained weight behind node through a softplus (a variational layer's rho), or NULL. */
static Weight *softplus_of(Graph *g, int node) {
    const Node *n = &g->node[node];
    return n->op == OP_SOFTPLUS ? weight_of(g, n->in[0], NULL) : NULL;
}

/* The weights a GEMM operand is made of, seen through views and a transpose as weight_of sees
 * them: a weight; a variational layer's w = mu + softplus(rho) eps (mu and rho, which its
 * neurons index alike); the local reparameterisation's softplus(rho)^2 (rho).  Their number. */
static int weights_of(Graph *g, int node, int64_t *inner, Weight *out[2]) {
    for (;;) {
        const Node *n = &g->node[node];
        if (n->op == OP_TRANSPOSE) {
            if (inner && *inner != 1) return 0;
            if (inner) *inner = n->shape.dim[1];
        } else if (n->op != OP_RESHAPE) {
            break;
        }
        node = n->in[0];
    }
    const Node *n = &g->node[node];
    if (n->op == OP_WEIGHT) return out[0] = &g->weight[n->ref], 1;
    if (n->op == OP_ADD) { /* mu + softplus(rho) eps */
        const Node *m = &g->node[n->in[1]];
        Weight *mu = weight_of(g, n->in[0], NULL), *rho = m->op == OP_MUL ? softplus_of(g, m->in[0]) : NULL;
        if (mu && rho && mu->variational && rho->variational && g->node[m->in[1]].op == OP_NORMAL_NOISE)
            return out[0] = mu, out[1] = rho, 2;
    }
    if (n->op == OP_MUL && n->in[0] == n->in[1]) { /* softplus(rho)^2 */
        Weight *rho = softplus_of(g, n->in[0]);
        if (rho && rho->variational) return out[0] = rho, 1;
    }
    return 0;
}

static void set_space(Graph *g, int node, int dim, int space, int64_t inner) {
    Weight *w[2];
    int n = weights_of(g, node, dim == 1 ? &inner : NULL, w);
    for (int i = 0; i < n; i++) {
        w[i]->space[dim] = space;
        w[i]->space_inner[dim] = inner;
    }
}

/* The number of nodes that read node id. */
static int readers(const Graph *g, int id) {
    int n = 0;
    for (int k = id + 1; k < g->nnode; k++)
        for (int i = 0; i < g->node[k].nin; i++) n += g->node[k].in[i] == id;
    return n;
}

/* A trained weight of the gate's layer whose rows are the layer's neurons. */
static Weight *layer_weight(Graph *g, const GateInfo *gi, int node) {
    Weight *w = weight_of(g, node, NULL);
    return w && w->kind == W_PARAM && !w->variational && w->space[0] == gi->space ? w : NULL;
}

/* Folding an L1 gate: g_j relu(w_j x + b_j) = sign(g_j) relu(|g_j| w_j x + |g_j| b_j), since
 * relu, leaky_relu, prelu, pooling and dropout are positively homogeneous; so the runtime may
 * scale the layer's weight rows and bias by |g_j| and set the gate to sign(g_j) without
 * changing the function.  Finds those two weights (gi->fold_weight) walking back from the
 * gate, or says why there are none: another op in between, or an intermediate value with a
 * second reader. */
static const char *fold_targets(Graph *g, GateInfo *gi) {
    if (gi->space < 0) return "it gates a model input, not a layer's neurons";
    int x = g->node[gi->node].in[0];
    for (;;) {
        const Node *n = &g->node[x];
        bool homogeneous = n->op == OP_RELU || n->op == OP_LEAKY_RELU || n->op == OP_PRELU || n->op == OP_MAXPOOL ||
                           n->op == OP_AVGPOOL || n->op == OP_DROPOUT || n->op == OP_RESHAPE;
        if (!homogeneous) break;
        if (readers(g, x) != 1) return arena_printf(g->arena, "the output of its '%s' has other readers", op_info[n->op].name);
        x = n->in[0];
    }
    const Node *n = &g->node[x];
    if (n->op == OP_BIAS_ADD) {
        Weight *b = layer_weight(g, gi, n->in[1]);
        if (!b) return "its layer's bias is not a trained vector of its neurons";
        if (readers(g, x) != 1) return "its layer's output has other readers";
        gi->fold_weight[1] = (int)(b - g->weight);
        x = n->in[0];
        n = &g->node[x];
    }
    Weight *w = n->op == OP_MATMUL ? layer_weight(g, gi, n->in[1]) : NULL;
    if (w && readers(g, x) != 1) return gi->fold_weight[1] = -1, "its layer's output has other readers";
    if (!w) {
        gi->fold_weight[1] = -1;
        return arena_printf(g->arena, "'%s' stands between the gate and a dense or convolution layer (fold needs relu, "
                                      "leaky_relu, prelu, pooling or dropout there)",
                            op_info[n->op].name);
    }
    gi->fold_weight[0] = (int)(w - g->weight);
    return NULL;
}

/* The gated layer whose gate node is id, or NULL. */
static GateInfo *gate_at(Graph *g, int id) {
    for (int i = 0; i < g->ngate; i++)
        if (g->gate[i].node == id) return &g->gate[i];
    return NULL;
}

/* An elementwise op that works per entry of one space: its operands are run-time scalars,
 * values of that space (the output's shape, or a vector over the space's entries), or weight
 * vectors, which become indexed by the space (a bias, a gate, a prelu slope, a norm's scale,
 * a running mean).  A value per sample (layer_norm's mean) indexes no space: what it was
 * computed from has been fixed already, if it read the space.  Gated when the op keeps 0 at
 * 0 and every full-shape operand is gated.  False when another kind of operand takes part. */
static bool map_per_entry(Graph *g, int id, int *sp, int64_t *inner, bool *gated, Op *lost) {
    const Node *nd = &g->node[id];
    Shape out = nd->shape;
    int64_t last = out.rank ? out.dim[out.rank - 1] : 1;
    int s = -1, nfull = 0, nvector = 0;
    int64_t q = 1;
    bool all_gated = true, any_gated = false;
    Op was = OP_COUNT;
    for (int i = 0; i < nd->nin; i++) {
        const Node *x = &g->node[nd->in[i]];
        bool vector = x->shape.rank == 1 && !x->shape.batched && x->shape.dim[0] == last;
        if (op_operand_is_runtime(nd->op, i) || x->shape.rank == 0) continue; /* a scalar, or one per sample */
        if (sp[nd->in[i]] < 0) {
            if (x->op == OP_NORMAL_NOISE && shape_eq(x->shape, out)) continue; /* noise per entry (local reparameterisation) */
            if (!(vector && weight_of(g, nd->in[i], NULL))) return false;
            nvector++;
            continue;
        }
        if (s >= 0 && sp[nd->in[i]] != s) return false;
        s = sp[nd->in[i]];
        if (shape_eq(x->shape, out)) {
            q = inner[nd->in[i]];
            nfull++;
            all_gated &= gated[nd->in[i]];
            any_gated |= gated[nd->in[i]];
            if (was == OP_COUNT) was = lost[nd->in[i]];
        } else if (vector) {
            nvector++;
        } else {
            return false;
        }
    }
    /* a vector indexes the space when the entries are the last dimension, one element each */
    if (s < 0 || (nvector && !(q == 1 && last == g->space[s].width))) return false;
    for (int i = 0; i < nd->nin; i++) {
        const Node *x = &g->node[nd->in[i]];
        if (sp[nd->in[i]] < 0 && !op_operand_is_runtime(nd->op, i) && x->shape.rank == 1) set_space(g, nd->in[i], 0, s, 1);
    }
    sp[id] = s;
    inner[id] = q;
    /* not sigmoid(0) = 1/2; a product is 0 where any factor is (x^2 of a gated x: the local
     * reparameterisation's variance) */
    gated[id] = nfull > 0 && (nd->op == OP_MUL ? any_gated : all_gated && op_has(nd->op, OF_KEEPS0));
    lost[id] = any_gated && !gated[id] ? nd->op : was;
    return true;
}

void spaces_analyse(Graph *g) {
    int n = g->nnode;
    int *sp = util_calloc((size_t)n, sizeof(int));
    int64_t *inner = util_calloc((size_t)n, sizeof(int64_t));
    bool *gated = util_calloc((size_t)n, sizeof(bool));
    Op *lost = util_calloc((size_t)n, sizeof(Op)); /* the op after the gate that does not keep 0 at 0 */
    for (int id = 0; id < n; id++) {
        Node *nd = &g->node[id];
        sp[id] = -1;
        inner[id] = 1;
        lost[id] = OP_COUNT;
        int a = nd->nin > 0 ? nd->in[0] : -1;
        int in_space = a >= 0 ? sp[a] : -1;
        int64_t in_inner = a >= 0 ? inner[a] : 1;
        Shape in_shape = a >= 0 ? g->node[a].shape : shape_scalar();
        /* the input's space entries lie along its last dimension: whole channels (width x inner) */
        int64_t in_last = in_shape.rank ? in_shape.dim[in_shape.rank - 1] : 1;
        bool along_last = in_space >= 0 && in_last % (g->space[in_space].width * in_inner) == 0;
        switch (nd->op) {
        case OP_INPUT: case OP_WEIGHT: case OP_PARAM: case OP_CONST: continue;
        case OP_MATMUL: { /* a dense layer, or a convolution's GEMM over its patches */
            int s = g->nspace;
            bool conv = nd->shape.batched && nd->shape.rank > 1;
            Space space = {.layer = nd->name, .width = nd->shape.dim[nd->shape.rank - 1]};
            for (int k = 0; k < g->nspace && s == g->nspace; k++) /* a second product of one layer (local reparameterisation's variance) */
                if (nd->name && g->space[k].layer && !strcmp(g->space[k].layer, nd->name) && g->space[k].width == space.width) s = k;
            if (s == g->nspace) ARENA_PUSH(g->arena, g->space, g->nspace, g->capspace, space);
            sp[id] = s;
            set_space(g, nd->in[1], 0, s, 1);
            set_space(g, nd->in[1], 1, along_last ? in_space : -1, in_inner);
            Weight *wt[2];
            bool known = weights_of(g, nd->in[1], NULL, wt) > 0; /* a weight, or a variational layer's */
            if (!known)
                g->space[s].fixed = arena_printf(g->arena, "layer '%s' multiplies by a computed matrix", nd->name);
            if (in_space >= 0 && !g->space[in_space].fixed) {
                if (!known)
                    g->space[in_space].fixed = arena_printf(g->arena, "layer '%s' multiplies them by a computed matrix", nd->name);
                else if (!along_last)
                    g->space[in_space].fixed = arena_printf(g->arena, "%s layer '%s' reads its neurons across positions",
                                                            conv ? "convolution" : "dense", nd->name);
                else if (!gated[a])
                    g->space[in_space].fixed =
                        lost[a] != OP_COUNT
                            ? arena_printf(g->arena, "'%s' after the gate turns 0 into a non-zero value", op_info[lost[a]].name)
                            : arena_printf(g->arena, "%s layer '%s' reads its neurons without the gate",
                                           conv ? "convolution" : "dense", nd->name);
            }
            continue;
        }
        case OP_RESHAPE: /* the same elements in the same order: flatten keeps the entries */
            sp[id] = in_space;
            inner[id] = in_inner;
            gated[id] = gated[a];
            lost[id] = lost[a];
            continue;
        case OP_COLSUM: /* per channel, over the batch and the positions: batch_norm's statistics */
            if (in_space >= 0 && in_inner == 1 && in_last == g->space[in_space].width && nd->shape.rank == 1 &&
                nd->shape.dim[0] == in_last) {
                sp[id] = in_space;
                continue;
            }
            break;
        default:
            if (op_info[nd->op].cls == OC_WINDOW && nd->nin == 1 && in_space >= 0 && in_inner == 1 &&
                in_last == g->space[in_space].width && op_has(nd->op, OF_KEEPS0)) {
                /* pooling keeps channels; a convolution's patches hold each channel kh kw times,
                 * channels fastest (the entry of patch column e is e % C) */
                sp[id] = in_space;
                inner[id] = 1;
                gated[id] = gated[a];
                lost[id] = lost[a];
                continue;
            }
            GateInfo *gi = gate_at(g, id);
            if (gi) { /* the gate of its input's entries (a size gate's factors are computed) */
                sp[id] = in_space;
                inner[id] = in_inner;
                set_space(g, nd->in[1], 0, in_space, 1);
                gated[id] = true;
                gi->space = in_space;
                continue;
            }
            if (op_info[nd->op].cls == OC_MAP && map_per_entry(g, id, sp, inner, gated, lost)) continue;
            break;
        }
        /* anything else (a loss, a metric, a normalisation across neurons) depends on the exact width */
        for (int i = 0; i < nd->nin; i++) {
            int s = sp[nd->in[i]];
            if (s >= 0 && !g->space[s].fixed)
                g->space[s].fixed = nd->op == OP_ROWSUM && nd->name
                                        ? arena_printf(g->arena, "'%s' normalises across them", nd->name)
                                        : arena_printf(g->arena, "'%s' reads its neurons", op_info[nd->op].name);
        }
    }
    for (int i = 0; i < g->ngate; i++) {
        GateInfo *gi = &g->gate[i];
        if (gi->fold) gi->nofold = fold_targets(g, gi);
        int others = 0;
        for (int k = 0; k < g->ngate; k++) others += k != i && gi->space >= 0 && g->gate[k].space == gi->space;
        if (gi->space < 0)
            gi->fixed = "it gates a model input";
        else if (others)
            gi->fixed = "its neurons have more than one gate";
        else
            gi->fixed = g->space[gi->space].fixed;
        /* evaluation statistics of the activations */
        Shape s = g->node[gi->node].shape, v = shape_vec(shape_numel(s), false);
        SrcLoc loc = g->node[gi->node].loc;
        int sum = ir_add1(g, OP_COLSUM, v, gi->node, loc);
        int sq = ir_add2(g, OP_MUL, s, gi->node, gi->node, loc);
        int sumsq = ir_add1(g, OP_COLSUM, v, sq, loc);
        g->node[sum].name = g->node[sq].name = g->node[sumsq].name = gi->layer;
        gi->out_sum = g->noutput;
        ir_add_output(g, arena_printf(g->arena, "%s.sum", gi->layer), sum, AGG_VECTOR);
        gi->out_sumsq = g->noutput;
        ir_add_output(g, arena_printf(g->arena, "%s.sumsq", gi->layer), sumsq, AGG_VECTOR);
    }
    free(sp);
    free(inner);
    free(gated);
    free(lost);
}
