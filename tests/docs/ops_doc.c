/* ops_doc.c: prints docs/ops.md from the op table (compiler/ops.def).  The test `docs.ops`
 * compares its output with the file; regenerate with
 *   ./build/tests/docs/ops_doc > docs/ops.md */
#include <stdio.h>
#include <string.h>

#include "ir.h"

int main(void) {
    static const char *const cls[] = {"leaf", "view", "gemm", "map", "colsum", "sum", "row", "update", "window", "permute", "indexed"};
    _Static_assert(sizeof cls / sizeof *cls == OC_COUNT, "a name per op class");
    static const char *const what[] = {
        "no computation: data, weights, run-time scalars, constants",
        "the input's buffer seen with another shape",
        "matrix product by BLAS; one with a unit dimension (an outer product x[B,1] w, or a^T b over the batch with a [B,1] side) is a map or colsum kernel instead, and fuses (`ir_class`)",
        "elementwise over the output; inputs broadcast (same shape, a row vector over the batch, or a scalar)",
        "an elementwise expression summed over the batch rows",
        "an elementwise expression summed over everything, giving a scalar",
        "per-row reductions over the columns (the softmax family)",
        "an optimiser step, in place on the parameter and its state",
        "sliding windows over [B, H, W, C] feature maps (channels last): convolution patches, pooling, their adjoints",
        "the elements of an unbatched tensor in another order (a transpose)",
        "per-sample tensors read and written through affine index maps of the op's own domain: axis sums and broadcasts, fd_grad's finite differences",
    };
    _Static_assert(sizeof what / sizeof *what == OC_COUNT, "a description per op class");
    printf("# Ops\n\n");
    printf("Generated from `compiler/ops.def` by `tests/docs/ops_doc.c`; do not edit by hand.\n\n");
    printf("Every op has a double-precision reference in `runtime/ref.c`, a kernel definition in\n"
           "`compiler/opkernels.c` shared by the backends, and (when differentiable) a rule in\n"
           "`compiler/autodiff.c`. Elementwise functions (activations, `exp`) are rows of one table,\n"
           "`compiler/elementwise.c`: forward and derivative as kernel expressions and as double\n"
           "references. `tests/ops` checks each against finite differences and the LLVM backend\n"
           "against the reference. Autodiff is closed: the ops it emits have rules too, checked to the\n"
           "third order by `ops.second_order`.\n\n"
           "Columns: *operands* name the inputs in order, `$` marking a run-time scalar (set each step,\n"
           "never compiled in); *attributes* are the compile-time immediates `attr0`, `attr1`, ...;\n"
           "*domain* is the operand whose shape the kernel iterates over (`out`: the op's own);\n"
           "*facts*: `keeps0` f(0) = 0 (a zero gate passes through it, so pruning may cross it),\n"
           "`kinked` not differentiable everywhere, `recompute` recomputed by the backward pass\n"
           "instead of kept alive, `nograd` not differentiated.\n\n");
    printf("## Classes\n\n| class | how it is computed |\n|---|---|\n");
    for (int c = 0; c < OC_COUNT; c++) printf("| %s | %s |\n", cls[c], what[c]);
    printf("\n## Ops\n\n| op | operands | attributes | class | domain | facts | meaning |\n|---|---|---|---|---|---|---|\n");
    static const char *const fact[] = {"keeps0", "kinked", "recompute", "nograd"};
    for (int i = 0; i < OP_COUNT; i++) {
        const OpInfo *o = &op_info[i];
        char facts[64] = "", dom[16] = "out";
        for (int f = 0; f < 4; f++)
            if (o->flags & (1u << f)) snprintf(facts + strlen(facts), sizeof facts - strlen(facts), "%s%s", *facts ? " " : "", fact[f]);
        if (o->domain >= 0) snprintf(dom, sizeof dom, "in%d", o->domain);
        printf("| `%s` | %s | %s | %s | %s | %s | %s |\n", o->name, o->operands, o->attrs, cls[o->cls], dom, facts, o->synopsis);
    }
    return 0;
}
