/* render_cuda.h: the CUDA backend's code generator.  Renders every loop kernel of a Plan as
 * CUDA C in one translation unit, in the subset of CUDA that docs/cuda.md describes and the
 * emulated device (runtime/cuda_emu_prelude.h) supports.  GEMMs are not rendered: the device
 * calls cuBLAS for them.  The text is deterministic. */
#ifndef NNC_RENDER_CUDA_H
#define NNC_RENDER_CUDA_H

#include "kernel.h"

enum { CUDA_MAX_ARGS = 15 }; /* kernel arguments; slot CUDA_MAX_ARGS holds the workspace */

/* Every rendered kernel has the signature
 *   NNC_KERNEL void NAME(long long rows, const float *scalars, NncArgs args)
 * with args.p[i] the i-th buffer of the plan's kernel and args.p[CUDA_MAX_ARGS] the device's
 * workspace.  A kernel with total sums (Kernel.cuda.nsum > 0) writes one partial per block
 * and is followed by NAME_sum, launched as one thread, which adds the partials in order.
 * `path` names the model file in comments. */
char *cuda_render(const Plan *p, const char *path); /* malloc'd */

/* The name of kernel k's finalize kernel, NAME_sum (into buf). */
const char *cuda_sum_name(char *buf, size_t n, const Kernel *k);

#endif
