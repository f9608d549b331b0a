/* nvrtc.c: NVRTC through dlopen (see nvrtc.h).  The few signatures used are declared here,
 * as nvrtc.h documents them, so building nnc needs no CUDA headers. */
#include "nvrtc.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef int NvrtcResult;
typedef struct NvrtcProgram *NvrtcProgram;

struct Nvrtc {
    void *lib;
    char version[16];
    NvrtcResult (*Version)(int *, int *);
    NvrtcResult (*CreateProgram)(NvrtcProgram *, const char *, const char *, int, const char *const *, const char *const *);
    NvrtcResult (*CompileProgram)(NvrtcProgram, int, const char *const *);
    NvrtcResult (*GetProgramLogSize)(NvrtcProgram, size_t *);
    NvrtcResult (*GetProgramLog)(NvrtcProgram, char *);
    NvrtcResult (*GetPTXSize)(NvrtcProgram, size_t *);
    NvrtcResult (*GetPTX)(NvrtcProgram, char *);
    NvrtcResult (*GetCUBINSize)(NvrtcProgram, size_t *);
    NvrtcResult (*GetCUBIN)(NvrtcProgram, char *);
    NvrtcResult (*DestroyProgram)(NvrtcProgram *);
    const char *(*GetErrorString)(NvrtcResult);
};

Nvrtc *nvrtc_open(char *err, size_t nerr) {
    const char *names[] = {getenv("NNC_NVRTC"), "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so",
                           "/usr/local/cuda/lib64/libnvrtc.so"};
    void *lib = NULL;
    const char *why = "";
    for (size_t i = 0; i < sizeof names / sizeof *names && !lib; i++) {
        if (!names[i] || !*names[i]) continue;
        lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib && !*why) why = dlerror();
    }
    if (!lib) {
        snprintf(err, nerr, "NVRTC is not available: libnvrtc.so was not found (%s)", why);
        return NULL;
    }
    Nvrtc *n = util_calloc(1, sizeof *n);
    n->lib = lib;
#define SYM(field, name)                                                                      \
    do {                                                                                      \
        *(void **)&n->field = dlsym(lib, name);                                               \
        if (!n->field) {                                                                      \
            snprintf(err, nerr, "NVRTC is not usable: %s is missing from the library", name); \
            nvrtc_close(n);                                                                   \
            return NULL;                                                                      \
        }                                                                                     \
    } while (0)
    SYM(Version, "nvrtcVersion");
    SYM(CreateProgram, "nvrtcCreateProgram");
    SYM(CompileProgram, "nvrtcCompileProgram");
    SYM(GetProgramLogSize, "nvrtcGetProgramLogSize");
    SYM(GetProgramLog, "nvrtcGetProgramLog");
    SYM(GetPTXSize, "nvrtcGetPTXSize");
    SYM(GetPTX, "nvrtcGetPTX");
    SYM(GetCUBINSize, "nvrtcGetCUBINSize");
    SYM(GetCUBIN, "nvrtcGetCUBIN");
    SYM(DestroyProgram, "nvrtcDestroyProgram");
    SYM(GetErrorString, "nvrtcGetErrorString");
#undef SYM
    int major = 0, minor = 0;
    n->Version(&major, &minor);
    snprintf(n->version, sizeof n->version, "%d.%d", major, minor);
    return n;
}

/* The library stays loaded: NVRTC keeps global state that unloading would orphan, and a
 * later nvrtc_open gets the same handle back. */
void nvrtc_close(Nvrtc *n) { free(n); }

const char *nvrtc_version(Nvrtc *n) { return n->version; }

int nvrtc_compile(Nvrtc *n, const char *src, const char *arch, bool cubin, char **out, size_t *outlen, char **log,
                  char *err, size_t nerr) {
    *out = NULL;
    *log = NULL;
    NvrtcProgram prog;
    NvrtcResult r = n->CreateProgram(&prog, src, "nnc_kernels.cu", 0, NULL, NULL);
    if (r) {
        snprintf(err, nerr, "nvrtcCreateProgram: %s", n->GetErrorString(r));
        return -1;
    }
    char archopt[64];
    snprintf(archopt, sizeof archopt, "--gpu-architecture=%s", arch);
    /* no FMA contraction: the same float operations as the CPU backend, the same bits */
    const char *opts[] = {archopt, "--std=c++17", "--fmad=false", "--ftz=true"}; /* subnormals flushed, as on the CPU */
    r = n->CompileProgram(prog, 3, opts);
    size_t loglen = 0;
    if (!n->GetProgramLogSize(prog, &loglen) && loglen > 1) {
        *log = util_calloc(loglen + 1, 1);
        n->GetProgramLog(prog, *log);
    }
    if (r) {
        snprintf(err, nerr, "NVRTC could not compile the kernels for %s: %s", arch, n->GetErrorString(r));
        n->DestroyProgram(&prog);
        return -1;
    }
    size_t size = 0;
    r = cubin ? n->GetCUBINSize(prog, &size) : n->GetPTXSize(prog, &size);
    if (!r) {
        *out = util_calloc(size + 1, 1);
        r = cubin ? n->GetCUBIN(prog, *out) : n->GetPTX(prog, *out);
    }
    n->DestroyProgram(&prog);
    if (r) {
        snprintf(err, nerr, "NVRTC gave no %s for %s: %s", cubin ? "CUBIN" : "PTX", arch, n->GetErrorString(r));
        free(*out);
        *out = NULL;
        return -1;
    }
    *outlen = size;
    return 0;
}
