/* nvrtc_test.c: every kernel of every model compiles with NVRTC for sm_80 and sm_90, to PTX
 * and to a CUBIN (so ptxas runs too), on a machine without a GPU.  Each kernel the plan needs
 * (and each partial-sum finisher) must appear as an .entry of the PTX.  Exits 77 (skipped)
 * only when no NVRTC library is found.  Usage: test_nvrtc MODEL... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "nvrtc.h"
#include "render_cuda.h"

int main(int argc, char **argv) {
    char err[2048];
    Nvrtc *nv = nvrtc_open(err, sizeof err);
    if (!nv) {
        printf("skipped: %s\n", err);
        return 77;
    }
    printf("NVRTC %s\n", nvrtc_version(nv));
    const char *arch[] = {"sm_80", "sm_90"};
    int failures = 0;
    for (int m = 1; m < argc; m++) {
        Compilation c;
        if (driver_compile(&c, argv[m], NULL, STAGE_PLAN)) return 1;
        char *src = cuda_render(c.plan, argv[m]);
        for (int a = 0; a < 2; a++)
            for (int cubin = 0; cubin < 2; cubin++) {
                char *out = NULL, *log = NULL;
                size_t n = 0;
                if (nvrtc_compile(nv, src, arch[a], cubin, &out, &n, &log, err, sizeof err)) {
                    printf("FAIL %s %s %s: %s\n%s\n", argv[m], arch[a], cubin ? "cubin" : "ptx", err, log ? log : "");
                    failures++;
                } else if (!cubin) {
                    int kernels = 0;
                    for (int k = 0; k < c.plan->nkernel; k++) {
                        const Kernel *kn = &c.plan->kernel[k];
                        if (kn->kind != K_LOOP) continue;
                        char entry[128], sum[96];
                        for (int s = 0; s <= (kn->cuda.nsum > 0); s++) {
                            snprintf(entry, sizeof entry, ".entry %s(", s ? cuda_sum_name(sum, sizeof sum, kn) : kn->name);
                            kernels++;
                            if (!strstr(out, entry)) {
                                printf("FAIL %s %s: no %s in the PTX\n", argv[m], arch[a], entry);
                                failures++;
                            }
                        }
                    }
                    printf("ok   %s %s: %d kernels, PTX %zu bytes\n", argv[m], arch[a], kernels, n);
                } else {
                    printf("ok   %s %s: CUBIN %zu bytes\n", argv[m], arch[a], n);
                }
                free(out);
                free(log);
            }
        free(src);
        driver_free(&c);
    }
    nvrtc_close(nv);
    return failures ? 1 : 0;
}
