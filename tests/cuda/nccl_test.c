/* nccl_test.c: NCCL through dlopen (runtime/nccl.h), what can be checked without a GPU: the
 * library loads and every symbol nnc calls resolves (NCCL 2.11 or later), its version reads;
 * joining a communicator with no GPU fails with a one-line reason instead of crashing or
 * hanging.  Exits 77 (skipped) when no NCCL library is installed. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "nccl.h"

int main(void) {
    char version[32] = "", err[512] = "";
    Nccl *n = nccl_load(version, sizeof version, err, sizeof err);
    if (!n) {
        printf("skipped: %s\n", err);
        return 77;
    }
    int major = 0;
    sscanf(version, "%d.", &major);
    printf("%s NCCL %s loaded, every symbol resolved\n", major == 2 ? "ok  " : "FAIL", version);
    int rc = nccl_join(n, err, sizeof err); /* one process, one rank: needs a GPU */
    printf("join without a GPU: %s\n", rc ? err : "joined (a GPU is there)");
    bool clean = rc == 0 || (strlen(err) > 0 && strchr(err, '\n') == NULL);
    printf("%s a failed join says why on one line\n", clean ? "ok  " : "FAIL");
    nccl_close(n);
    return major == 2 && clean ? 0 : 1;
}
