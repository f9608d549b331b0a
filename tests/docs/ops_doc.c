/* ops_doc.c: prints docs/ops.md from the op table (compiler/ops.def).  The test `docs.ops`
 * compares its output with the file; regenerate with
 *   ./build/tests/docs/ops_doc > docs/ops.md */
#include <stdio.h>

#include "ir.h"

int main(void) {
    static const char *const cls[] = {"leaf", "view", "gemm", "map", "colsum", "sum", "row", "update"};
    static const char *const what[] = {
        "no computation: data, weights, run-time scalars, constants",
        "the input's buffer seen with another shape",
        "matrix product by BLAS",
        "elementwise over the output; inputs broadcast (same shape, a row vector over the batch, or a scalar)",
        "an elementwise expression summed over the batch rows",
        "an elementwise expression summed over everything, giving a scalar",
        "per-row reductions over the columns (the softmax family)",
        "an optimiser step, in place on the parameter and its state",
    };
    printf("# Ops\n\n");
    printf("Generated from `compiler/ops.def` by `tests/docs/ops_doc.c`; do not edit by hand.\n\n");
    printf("Every op has a double-precision reference in `runtime/ref.c`, a kernel definition in\n"
           "`compiler/opkernels.c` shared by the backends, and (when differentiable) a rule in\n"
           "`compiler/autodiff.c`. `tests/ops` checks each against finite differences and the LLVM\n"
           "backend against the reference.\n\n");
    printf("## Classes\n\n| class | how it is computed |\n|---|---|\n");
    for (int c = 0; c < 8; c++) printf("| %s | %s |\n", cls[c], what[c]);
    printf("\n## Ops\n\n| op | inputs | class | meaning |\n|---|---|---|---|\n");
    for (int i = 0; i < OP_COUNT; i++)
        printf("| `%s` | %d | %s | %s |\n", op_info[i].name, op_info[i].nin, cls[op_info[i].cls], op_info[i].synopsis);
    return 0;
}
