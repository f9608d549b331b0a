/* nvrtc.h: NVRTC, loaded at run time with dlopen (no link-time CUDA dependency).  Compiles
 * the CUDA C that render_cuda.c produces to PTX or to a CUBIN for a given architecture; works
 * on machines without a GPU or driver.  Used by the CUDA device, `nnc emit --ptx` and tests. */
#ifndef NNC_NVRTC_H
#define NNC_NVRTC_H

#include <stdbool.h>
#include <stddef.h>

typedef struct Nvrtc Nvrtc;

/* NULL with a one-line reason (which library was looked for, what dlopen said).
 * NNC_NVRTC names the library file to use instead of the usual names. */
Nvrtc *nvrtc_open(char *err, size_t nerr);
void nvrtc_close(Nvrtc *n);
/* "13.0" */
const char *nvrtc_version(Nvrtc *n);
/* Compiles `src` for `arch` (sm_80, sm_90, ...): PTX text, or the CUBIN when `cubin`.
 * On failure returns -1 with a reason in err and NVRTC's log (malloc'd) in *log. */
int nvrtc_compile(Nvrtc *n, const char *src, const char *arch, bool cubin, char **out, size_t *outlen, char **log,
                  char *err, size_t nerr);

#endif
