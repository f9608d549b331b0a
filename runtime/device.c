/* device.c: choosing a device by name (see device.h).  "auto" tries CUDA and falls back to
 * the CPU, saying why on the note stream. */
#include <string.h>

#include "device.h"

Device *device_open(const char *kind, const Plan *plan, FILE *note, char *err, size_t nerr) {
    if (!strcmp(kind, "cpu")) return device_cpu_new(plan, err, nerr);
    if (!strcmp(kind, "cuda")) return device_cuda_new(plan, false, err, nerr);
    if (!strcmp(kind, "cuda-emu")) return device_cuda_new(plan, true, err, nerr);
    if (!strcmp(kind, "auto")) {
        char why[1024];
        Device *d = device_cuda_new(plan, false, why, sizeof why);
        if (d) return d;
        if (note) fprintf(note, "nnc: no CUDA device (%s); using the CPU\n", why);
        return device_cpu_new(plan, err, nerr);
    }
    snprintf(err, nerr, "unknown device '%s': use cpu, cuda, cuda-emu or auto", kind);
    return NULL;
}
