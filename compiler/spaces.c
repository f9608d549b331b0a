/* spaces.c: neuron spaces and gated layers, the facts pruning needs.  Runs at the end of
 * lower.c, over the forward graph.  Every dense layer makes a space (its units); each weight
 * records, per dimension, the space it is indexed by (h2.weight is [h2 units, h1 units]), so
 * the runtime can cut the rows and columns of a removed neuron everywhere at once.
 *
 * A gated layer can shrink when removing a neuron whose gate is 0 leaves the model's function
 * unchanged: every use of the layer's neurons must come after its one gate, through ops that
 * keep 0 at 0 (relu, tanh, prelu, ...; not sigmoid or softplus), and only dense layers may
 * read them (a loss or metric fixes the width).  For each gated layer this pass also adds two
 * evaluation outputs, the per-neuron sums of the activations and of their squares, from which
 * the runtime reports the activations' variance. */
#include <stdlib.h>

#include "lower.h"

static void set_space(Graph *g, int node, int dim, int space) {
    if (g->node[node].op == OP_WEIGHT) g->weight[g->node[node].ref].space[dim] = space;
}

void spaces_analyse(Graph *g) {
    int n = g->nnode;
    int *sp = util_calloc((size_t)n, sizeof(int));
    bool *gated = util_calloc((size_t)n, sizeof(bool));
    Op *lost = util_calloc((size_t)n, sizeof(Op)); /* the op after the gate that does not keep 0 at 0 */
    for (int id = 0; id < n; id++) {
        Node *nd = &g->node[id];
        sp[id] = -1;
        lost[id] = OP_COUNT;
        int a = nd->nin > 0 ? nd->in[0] : -1;
        int in_space = a >= 0 ? sp[a] : -1;
        switch (nd->op) {
        case OP_INPUT: case OP_WEIGHT: case OP_PARAM: case OP_CONST: continue;
        case OP_MATMUL: {
            int s = g->nspace;
            Space space = {.layer = nd->name, .width = shape_numel(nd->shape)};
            if (nd->shape.batched && nd->shape.rank > 1) { /* a convolution's GEMM: its channels */
                space.width = nd->shape.dim[nd->shape.rank - 1];
                space.fixed = "removing a convolution's channels is not built yet";
            }
            ARENA_PUSH(g->arena, g->space, g->nspace, g->capspace, space);
            sp[id] = s;
            set_space(g, nd->in[1], 0, s);
            set_space(g, nd->in[1], 1, in_space);
            if (in_space >= 0 && !gated[a] && !g->space[in_space].fixed)
                g->space[in_space].fixed =
                    lost[a] != OP_COUNT
                        ? arena_printf(g->arena, "'%s' after the gate turns 0 into a non-zero value", op_info[lost[a]].name)
                        : arena_printf(g->arena, "dense layer '%s' reads its neurons without the gate", nd->name);
            continue;
        }
        case OP_BIAS_ADD:
            sp[id] = in_space;
            set_space(g, nd->in[1], 0, in_space);
            continue;
        case OP_RESHAPE:
            if (nd->shape.rank == 1 && g->node[a].shape.rank == 1) {
                sp[id] = in_space;
                gated[id] = gated[a];
            }
            continue;
        case OP_GATE:
            sp[id] = in_space;
            set_space(g, nd->in[1], 0, in_space);
            gated[id] = true;
            for (int i = 0; i < g->ngate; i++)
                if (g->gate[i].node == id) g->gate[i].space = in_space;
            continue;
        case OP_PRELU:
            set_space(g, nd->in[1], 0, in_space);
            /* fall through */
        default:
            bool unary = true; /* its other inputs are run-time scalars (dropout's) or a prelu's slopes */
            for (int i = 1; i < nd->nin; i++) unary &= nd->op == OP_PRELU || op_operand_is_runtime(nd->op, i);
            if (op_info[nd->op].cls == OC_MAP && unary && in_space >= 0 && shape_eq(nd->shape, g->node[a].shape)) {
                sp[id] = in_space;
                gated[id] = gated[a] && op_has(nd->op, OF_KEEPS0); /* not sigmoid(0) = 1/2 */
                lost[id] = gated[a] && !gated[id] ? nd->op : lost[a];
                continue;
            }
            /* anything else (a loss, a metric, arithmetic) depends on the exact width */
            for (int i = 0; i < nd->nin; i++) {
                int s = sp[nd->in[i]];
                if (s >= 0 && !g->space[s].fixed)
                    g->space[s].fixed = arena_printf(g->arena, "'%s' reads its neurons", op_info[nd->op].name);
            }
        }
    }
    for (int i = 0; i < g->ngate; i++) {
        GateInfo *gi = &g->gate[i];
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
    free(gated);
    free(lost);
}
