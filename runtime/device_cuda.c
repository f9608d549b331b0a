/* device_cuda.c: the CUDA device and its emulation.
 *
 * The device code (launch, gemm, memory) is written once against CudaApi, a table of the few
 * CUDA operations it needs.  Two tables fill it:
 *   real      libcuda.so.1 (driver API), libcublas and NVRTC, all loaded with dlopen; kernels
 *             compiled by NVRTC for the GPU's own architecture and cached on disk (key: source
 *             hash, architecture, NVRTC version); GEMMs by cublasSgemm;
 *   emulated  the same CUDA C, compiled with the host C compiler and runtime/cuda_emu_prelude.h
 *             into a shared object (also cached); host memory; GEMMs by a function with
 *             cuBLAS's column-major signature, implemented by the CPU device's device_sgemm.
 * Row-major GEMMs become cuBLAS's column-major ones by computing C^T = op(B)^T op(A)^T, the
 * same code for both tables, so a transpose or leading-dimension mistake shows in emulation.
 * Any missing piece (driver, GPU, NVRTC, cuBLAS, host compiler) fails with one line saying
 * which and why. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "device.h"
#include "nvrtc.h"
#include "render_cuda.h"

extern const char nnc_cuda_emu_prelude[]; /* runtime/cuda_emu_prelude.h, embedded by CMake */
extern char **environ;

typedef unsigned long long CuPtr;
typedef int (*SgemmFn)(void *handle, int ta, int tb, int m, int n, int k, const float *alpha, const float *A,
                       int lda, const float *B, int ldb, const float *beta, float *C, int ldc);

typedef struct CudaApi {
    void *self;
    int (*mem_alloc)(void *self, CuPtr *p, size_t bytes);
    int (*mem_free)(void *self, CuPtr p);
    int (*htod)(void *self, CuPtr dst, const void *src, size_t n);
    int (*dtoh)(void *self, void *dst, CuPtr src, size_t n);
    int (*memset0)(void *self, CuPtr dst, size_t n);
    int (*function)(void *self, const char *name, void **fn);
    int (*launch)(void *self, void *fn, unsigned grid, unsigned block, int barrier, void **params);
    int (*sync)(void *self);
    const char *(*error)(void *self, int code);
    void (*close)(void *self);
    SgemmFn sgemm; /* cuBLAS's signature: column-major */
    void *blas;    /* its handle */
} CudaApi;

typedef struct {
    Device d;
    CudaApi api;
    const Plan *plan;
    void **fn, **fn_sum;
    CuPtr ws;
} CudaDevice;

/* ---- the cache of compiled kernels ---- */

static const char *cache_dir(char *buf, size_t n) {
    const char *d = getenv("NNC_CACHE_DIR"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    if (d && *d)
        snprintf(buf, n, "%s", d);
    else if (x && *x)
        snprintf(buf, n, "%s/nnc", x);
    else if (h && *h)
        snprintf(buf, n, "%s/.cache/nnc", h);
    else
        snprintf(buf, n, "/tmp/nnc-cache-%d", (int)getuid());
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(buf, 0755);
            *p = '/';
        }
    mkdir(buf, 0755);
    return buf;
}

/* Write a file atomically: a temporary file in the same directory, then rename. */
static int write_atomic(const char *path, const void *data, size_t n) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return -1;
    bool ok = fwrite(data, 1, n, f) == n;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path)) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* ---- the real CUDA device: driver API, NVRTC, cuBLAS ---- */

typedef int CUresult;
typedef struct {
    void *cuda, *cublas;
    Nvrtc *nvrtc;
    void *ctx, *module;
    int dev;
    CUresult (*Init)(unsigned);
    CUresult (*DeviceGetCount)(int *);
    CUresult (*DeviceGet)(int *, int);
    CUresult (*DeviceGetAttribute)(int *, int, int);
    CUresult (*DeviceGetName)(char *, int, int);
    CUresult (*PrimaryCtxRetain)(void **, int);
    CUresult (*PrimaryCtxRelease)(int);
    CUresult (*CtxSetCurrent)(void *);
    CUresult (*CtxSynchronize)(void);
    CUresult (*MemAlloc)(CuPtr *, size_t);
    CUresult (*MemFree)(CuPtr);
    CUresult (*MemcpyHtoD)(CuPtr, const void *, size_t);
    CUresult (*MemcpyDtoH)(void *, CuPtr, size_t);
    CUresult (*MemsetD8)(CuPtr, unsigned char, size_t);
    CUresult (*ModuleLoadData)(void **, const void *);
    CUresult (*ModuleUnload)(void *);
    CUresult (*ModuleGetFunction)(void **, void *, const char *);
    CUresult (*LaunchKernel)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *,
                             void **, void **);
    CUresult (*GetErrorString)(CUresult, const char **);
    int (*BlasCreate)(void **);
    int (*BlasDestroy)(void *);
} Real;

enum { CU_ATTR_CC_MAJOR = 75, CU_ATTR_CC_MINOR = 76 };

static const char *real_error(void *self, int code) {
    Real *r = self;
    const char *s = NULL;
    if (r->GetErrorString && !r->GetErrorString(code, &s) && s) return s;
    return "unknown CUDA error";
}
static int real_alloc(void *self, CuPtr *p, size_t n) { return ((Real *)self)->MemAlloc(p, n); }
static int real_free(void *self, CuPtr p) { return ((Real *)self)->MemFree(p); }
static int real_htod(void *self, CuPtr d, const void *s, size_t n) { return ((Real *)self)->MemcpyHtoD(d, s, n); }
static int real_dtoh(void *self, void *d, CuPtr s, size_t n) { return ((Real *)self)->MemcpyDtoH(d, s, n); }
static int real_memset0(void *self, CuPtr d, size_t n) { return ((Real *)self)->MemsetD8(d, 0, n); }
static int real_function(void *self, const char *name, void **fn) {
    Real *r = self;
    return r->ModuleGetFunction(fn, r->module, name);
}
static int real_launch(void *self, void *fn, unsigned grid, unsigned block, int barrier, void **params) {
    (void)barrier;
    return ((Real *)self)->LaunchKernel(fn, grid, 1, 1, block, 1, 1, 0, NULL, params, NULL);
}
static int real_sync(void *self) { return ((Real *)self)->CtxSynchronize(); }
static void real_close(void *self) {
    Real *r = self;
    if (r->module && r->ModuleUnload) r->ModuleUnload(r->module);
    if (r->ctx && r->PrimaryCtxRelease) r->PrimaryCtxRelease(r->dev);
    nvrtc_close(r->nvrtc);
    free(r); /* libcuda and libcublas stay loaded: unloading would orphan their global state */
}

static void *open_first(const char *const *names, int n, const char **why) {
    *why = "";
    for (int i = 0; i < n; i++) {
        if (!names[i] || !*names[i]) continue;
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
        if (!**why) *why = dlerror();
    }
    return NULL;
}

#define SYM(lib, field, name, what)                                                              \
    do {                                                                                         \
        *(void **)&r->field = dlsym(lib, name);                                                  \
        if (!r->field) {                                                                         \
            snprintf(err, nerr, "%s has no %s", what, name);                                     \
            goto fail;                                                                           \
        }                                                                                        \
    } while (0)

/* The kernels for this GPU: from the cache, or compiled by NVRTC and cached. */
static void *real_cubin(Real *r, const char *src, const char *arch, size_t *len, char *err, size_t nerr) {
    char dir[4096], path[4200];
    uint64_t h = util_hash(src, strlen(src), 0);
    snprintf(path, sizeof path, "%s/%016llx-%s-nvrtc%s.cubin", cache_dir(dir, sizeof dir), (unsigned long long)h, arch,
             nvrtc_version(r->nvrtc));
    char *cubin = util_read_file(path, len);
    if (cubin) return cubin;
    char *log = NULL;
    if (nvrtc_compile(r->nvrtc, src, arch, true, &cubin, len, &log, err, nerr)) {
        if (log) {
            size_t k = strlen(err);
            snprintf(err + k, nerr - k, "; NVRTC log: %.400s", log);
        }
        free(log);
        return NULL;
    }
    free(log);
    write_atomic(path, cubin, *len); /* a cache that cannot be written only costs time */
    return cubin;
}

static int real_open(CudaApi *api, const Plan *plan, char *info, size_t ninfo, char *err, size_t nerr) {
    Real *r = util_calloc(1, sizeof *r);
    const char *why;
    const char *cuda_names[] = {"libcuda.so.1"};
    r->cuda = open_first(cuda_names, 1, &why);
    if (!r->cuda) {
        snprintf(err, nerr, "libcuda.so.1 was not found: no NVIDIA driver is installed (%s)", why);
        goto fail;
    }
    SYM(r->cuda, Init, "cuInit", "libcuda.so.1");
    SYM(r->cuda, DeviceGetCount, "cuDeviceGetCount", "libcuda.so.1");
    SYM(r->cuda, DeviceGet, "cuDeviceGet", "libcuda.so.1");
    SYM(r->cuda, DeviceGetAttribute, "cuDeviceGetAttribute", "libcuda.so.1");
    SYM(r->cuda, DeviceGetName, "cuDeviceGetName", "libcuda.so.1");
    SYM(r->cuda, PrimaryCtxRetain, "cuDevicePrimaryCtxRetain", "libcuda.so.1");
    SYM(r->cuda, PrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", "libcuda.so.1");
    SYM(r->cuda, CtxSetCurrent, "cuCtxSetCurrent", "libcuda.so.1");
    SYM(r->cuda, CtxSynchronize, "cuCtxSynchronize", "libcuda.so.1");
    SYM(r->cuda, MemAlloc, "cuMemAlloc_v2", "libcuda.so.1");
    SYM(r->cuda, MemFree, "cuMemFree_v2", "libcuda.so.1");
    SYM(r->cuda, MemcpyHtoD, "cuMemcpyHtoD_v2", "libcuda.so.1");
    SYM(r->cuda, MemcpyDtoH, "cuMemcpyDtoH_v2", "libcuda.so.1");
    SYM(r->cuda, MemsetD8, "cuMemsetD8_v2", "libcuda.so.1");
    SYM(r->cuda, ModuleLoadData, "cuModuleLoadData", "libcuda.so.1");
    SYM(r->cuda, ModuleUnload, "cuModuleUnload", "libcuda.so.1");
    SYM(r->cuda, ModuleGetFunction, "cuModuleGetFunction", "libcuda.so.1");
    SYM(r->cuda, LaunchKernel, "cuLaunchKernel", "libcuda.so.1");
    SYM(r->cuda, GetErrorString, "cuGetErrorString", "libcuda.so.1");
    CUresult rc;
    if ((rc = r->Init(0))) {
        snprintf(err, nerr, "cuInit failed: %s (is there a GPU?)", real_error(r, rc));
        goto fail;
    }
    int count = 0;
    if ((rc = r->DeviceGetCount(&count)) || count == 0) {
        snprintf(err, nerr, "no CUDA GPU found%s%s", rc ? ": " : "", rc ? real_error(r, rc) : "");
        goto fail;
    }
    int major = 0, minor = 0;
    char name[128] = "";
    if ((rc = r->DeviceGet(&r->dev, 0)) || (rc = r->DeviceGetAttribute(&major, CU_ATTR_CC_MAJOR, r->dev)) ||
        (rc = r->DeviceGetAttribute(&minor, CU_ATTR_CC_MINOR, r->dev)) || (rc = r->DeviceGetName(name, sizeof name, r->dev)) ||
        (rc = r->PrimaryCtxRetain(&r->ctx, r->dev)) || (rc = r->CtxSetCurrent(r->ctx))) {
        snprintf(err, nerr, "cannot open CUDA device 0: %s", real_error(r, rc));
        goto fail;
    }
    r->nvrtc = nvrtc_open(err, nerr);
    if (!r->nvrtc) goto fail;
    const char *blas_names[] = {getenv("NNC_CUBLAS"), "libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"};
    r->cublas = open_first(blas_names, 5, &why);
    if (!r->cublas) {
        snprintf(err, nerr, "cuBLAS is not available: libcublas.so was not found (%s)", why);
        goto fail;
    }
    SYM(r->cublas, BlasCreate, "cublasCreate_v2", "libcublas");
    SYM(r->cublas, BlasDestroy, "cublasDestroy_v2", "libcublas");
    *(void **)&api->sgemm = dlsym(r->cublas, "cublasSgemm_v2");
    if (!api->sgemm) {
        snprintf(err, nerr, "libcublas has no cublasSgemm_v2");
        goto fail;
    }
    if (r->BlasCreate(&api->blas)) {
        snprintf(err, nerr, "cublasCreate failed");
        goto fail;
    }
    char arch[16];
    snprintf(arch, sizeof arch, "sm_%d%d", major, minor);
    char *src = cuda_render(plan, plan->path);
    size_t len;
    void *cubin = real_cubin(r, src, arch, &len, err, nerr);
    free(src);
    if (!cubin) goto fail;
    rc = r->ModuleLoadData(&r->module, cubin);
    free(cubin);
    if (rc) {
        snprintf(err, nerr, "cannot load the compiled kernels: %s", real_error(r, rc));
        goto fail;
    }
    snprintf(info, ninfo, "CUDA GPU %s (%s), NVRTC %s, cuBLAS", name, arch, nvrtc_version(r->nvrtc));
    api->self = r;
    api->mem_alloc = real_alloc;
    api->mem_free = real_free;
    api->htod = real_htod;
    api->dtoh = real_dtoh;
    api->memset0 = real_memset0;
    api->function = real_function;
    api->launch = real_launch;
    api->sync = real_sync;
    api->error = real_error;
    api->close = real_close;
    return 0;
fail:
    if (api->blas && r->BlasDestroy) r->BlasDestroy(api->blas);
    api->blas = NULL;
    real_close(r);
    return -1;
}
#undef SYM

/* ---- the emulated CUDA device ---- */

typedef struct {
    void *so;
    int (*launch)(void *fn, unsigned grid, unsigned block, int barrier, void **params);
} Emu;

static const char *emu_error(void *self, int code) {
    (void)self;
    return code == 1 ? "bad launch dimensions" : code == 2 ? "out of memory for fiber stacks" : "emulation error";
}
static int emu_alloc(void *self, CuPtr *p, size_t n) {
    (void)self;
    void *q = aligned_alloc(256, (n + 255) / 256 * 256);
    *p = (CuPtr)(uintptr_t)q;
    return q ? 0 : 2;
}
static int emu_free(void *self, CuPtr p) {
    (void)self;
    free((void *)(uintptr_t)p);
    return 0;
}
static int emu_htod(void *self, CuPtr d, const void *s, size_t n) {
    (void)self;
    memcpy((void *)(uintptr_t)d, s, n);
    return 0;
}
static int emu_dtoh(void *self, void *d, CuPtr s, size_t n) {
    (void)self;
    memcpy(d, (const void *)(uintptr_t)s, n);
    return 0;
}
static int emu_memset0(void *self, CuPtr d, size_t n) {
    (void)self;
    memset((void *)(uintptr_t)d, 0, n);
    return 0;
}
static int emu_function(void *self, const char *name, void **fn) {
    *fn = dlsym(((Emu *)self)->so, name);
    return *fn ? 0 : 3;
}
static int emu_launch(void *self, void *fn, unsigned grid, unsigned block, int barrier, void **params) {
    return ((Emu *)self)->launch(fn, grid, block, barrier, params);
}
static int emu_sync(void *self) {
    (void)self;
    return 0;
}
static void emu_close(void *self) {
    Emu *e = self;
    if (e->so) dlclose(e->so);
    free(e);
}

/* cuBLAS's cublasSgemm, column-major, done on the host: what the emulated device calls for
 * every GEMM, with the arguments a real GPU would get.  Column-major C = op(A) op(B) is
 * row-major C^T = op(B)^T op(A)^T over the same memory, and that is device_sgemm's GEMM, so the
 * emulated device gives the CPU device's bits. */
static int emu_sgemm(void *handle, int ta, int tb, int m, int n, int k, const float *alpha, const float *A, int lda,
                     const float *B, int ldb, const float *beta, float *C, int ldc) {
    (void)handle;
    if (m < 0 || n < 0 || k < 0 || lda < (ta ? k : m) || ldb < (tb ? n : k) || ldc < m) return 7; /* INVALID_VALUE */
    if (*alpha != 1.0f || *beta != 0.0f) return 7; /* the plan's GEMMs have none other; not emulated */
    GemmShape s = {.m = n, .n = m, .k = k, .lda = ldb, .ldb = lda, .ldc = ldc, .ta = tb, .tb = ta};
    device_sgemm(s, B, A, C);
    return 0;
}

/* Compile src with the host C compiler into a shared object (argument vector, no shell). */
static int host_compile(const char *dir, const char *src, char *so_path, size_t nso, char *err, size_t nerr) {
    const char *cc = getenv("NNC_HOST_CC");
    if (!cc || !*cc) cc = "cc";
    char slots[32];
    snprintf(slots, sizeof slots, "-DNNC_ARGS_SLOTS=%d", CUDA_MAX_ARGS + 1);
    uint64_t h = util_hash(src, strlen(src), util_hash(nnc_cuda_emu_prelude, strlen(nnc_cuda_emu_prelude), 0));
    h = util_hash(cc, strlen(cc), h);
    snprintf(so_path, nso, "%s/emu-%016llx.so", dir, (unsigned long long)h);
    struct stat st;
    if (stat(so_path, &st) == 0) return 0;
    char base[4200], cu[4300], pre[4300], tmp_so[4300], log[4300];
    snprintf(base, sizeof base, "%s/emu-%016llx-%d", dir, (unsigned long long)h, (int)getpid());
    snprintf(cu, sizeof cu, "%s.cu", base);
    snprintf(pre, sizeof pre, "%s.h", base);
    snprintf(tmp_so, sizeof tmp_so, "%s.so", base);
    snprintf(log, sizeof log, "%s.log", base);
    if (write_atomic(cu, src, strlen(src)) || write_atomic(pre, nnc_cuda_emu_prelude, strlen(nnc_cuda_emu_prelude))) {
        snprintf(err, nerr, "cannot write the emulated kernels under %s: %s", dir, strerror(errno));
        return -1;
    }
    char *argv[] = {(char *)cc, "-O2", "-std=gnu11", "-ffp-contract=off", "-fPIC", "-shared", "-w", slots, "-include", pre,
                    "-x", "c", cu, "-o", tmp_so, "-lm", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, cc, &fa, NULL, argv, environ), status = 0;
    posix_spawn_file_actions_destroy(&fa);
    if (rc) {
        snprintf(err, nerr, "the emulated CUDA device needs a host C compiler: cannot run '%s': %s", cc, strerror(rc));
        return -1;
    }
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status)) {
        size_t n = 0;
        char *text = util_read_file(log, &n);
        snprintf(err, nerr, "'%s' could not compile the emulated kernels (%s): %.600s", cc, cu, text ? text : "");
        free(text);
        return -1;
    }
    unlink(log);
    unlink(cu);
    unlink(pre);
    if (rename(tmp_so, so_path)) {
        snprintf(err, nerr, "cannot move %s into place: %s", tmp_so, strerror(errno));
        return -1;
    }
    return 0;
}

static int emu_open(CudaApi *api, const Plan *plan, char *info, size_t ninfo, char *err, size_t nerr) {
    char dir[4096], so[4300];
    cache_dir(dir, sizeof dir);
    char *src = cuda_render(plan, plan->path);
    int rc = host_compile(dir, src, so, sizeof so, err, nerr);
    free(src);
    if (rc) return -1;
    Emu *e = util_calloc(1, sizeof *e);
    e->so = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!e->so || !(*(void **)&e->launch = dlsym(e->so, "nnc_emu_launch"))) {
        snprintf(err, nerr, "cannot load the emulated kernels %s: %s", so, dlerror());
        emu_close(e);
        return -1;
    }
    snprintf(info, ninfo, "emulated CUDA device: the generated CUDA C compiled for the host, GEMMs through a cuBLAS-shaped OpenBLAS call");
    api->self = e;
    api->mem_alloc = emu_alloc;
    api->mem_free = emu_free;
    api->htod = emu_htod;
    api->dtoh = emu_dtoh;
    api->memset0 = emu_memset0;
    api->function = emu_function;
    api->launch = emu_launch;
    api->sync = emu_sync;
    api->error = emu_error;
    api->close = emu_close;
    api->sgemm = emu_sgemm;
    return 0;
}

/* ---- the device, written once over CudaApi ---- */

static int fail_with(CudaDevice *c, const char *what, int code) {
    snprintf(c->d.err, sizeof c->d.err, "%s: %s", what, c->api.error(c->api.self, code));
    return -1;
}

static void *cuda_alloc(Device *d, size_t bytes) {
    CudaDevice *c = (CudaDevice *)d;
    CuPtr p = 0;
    int rc = c->api.mem_alloc(c->api.self, &p, bytes ? bytes : 1);
    if (!rc) rc = c->api.memset0(c->api.self, p, bytes);
    if (rc) {
        fail_with(c, "cuMemAlloc", rc);
        return NULL;
    }
    return (void *)(uintptr_t)p;
}

static void cuda_free(Device *d, void *p) {
    CudaDevice *c = (CudaDevice *)d;
    c->api.mem_free(c->api.self, (CuPtr)(uintptr_t)p);
}

static int cuda_upload(Device *d, void *dst, const void *src, size_t n) {
    CudaDevice *c = (CudaDevice *)d;
    int rc = c->api.htod(c->api.self, (CuPtr)(uintptr_t)dst, src, n);
    return rc ? fail_with(c, "cuMemcpyHtoD", rc) : 0;
}

static int cuda_download(Device *d, void *dst, const void *src, size_t n) {
    CudaDevice *c = (CudaDevice *)d;
    int rc = c->api.dtoh(c->api.self, dst, (CuPtr)(uintptr_t)src, n);
    return rc ? fail_with(c, "cuMemcpyDtoH", rc) : 0;
}

typedef struct {
    void *p[CUDA_MAX_ARGS + 1];
} Args; /* NncArgs of the generated code, by value */

static int cuda_launch(Device *d, const Kernel *k, int kernel, void *const *args, const float *scalars, int64_t rows) {
    CudaDevice *c = (CudaDevice *)d;
    Args a = {{0}};
    for (int i = 0; i < k->narg; i++) a.p[i] = args[i];
    a.p[CUDA_MAX_ARGS] = (void *)(uintptr_t)c->ws;
    long long r = rows;
    const float *sc = scalars;
    void *params[3] = {&r, &sc, &a};
    unsigned grid = (unsigned)plan_cuda_blocks(k, rows);
    int rc = c->api.launch(c->api.self, c->fn[kernel], grid, (unsigned)k->cuda.threads, k->cuda.nsum > 0, params);
    if (!rc && k->cuda.nsum) rc = c->api.launch(c->api.self, c->fn_sum[kernel], 1, 1, 0, params);
    if (rc) {
        snprintf(d->err, sizeof d->err, "launching %s: %s", k->name, c->api.error(c->api.self, rc));
        return -1;
    }
    return 0;
}

enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };

static int cuda_gemm(Device *d, const Kernel *k, void *const *args, int64_t rows) {
    CudaDevice *c = (CudaDevice *)d;
    GemmShape s = device_gemm_shape(k, rows);
    const float one = 1, zero = 0;
    /* row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T */
    int rc = c->api.sgemm(c->api.blas, s.tb ? CUBLAS_OP_T : CUBLAS_OP_N, s.ta ? CUBLAS_OP_T : CUBLAS_OP_N, s.n, s.m, s.k,
                          &one, args[1], s.ldb, args[0], s.lda, &zero, args[2], s.ldc);
    if (rc) {
        snprintf(d->err, sizeof d->err, "cublasSgemm for %s failed with status %d", k->name, rc);
        return -1;
    }
    return 0;
}

static int cuda_sync(Device *d) {
    CudaDevice *c = (CudaDevice *)d;
    int rc = c->api.sync(c->api.self);
    return rc ? fail_with(c, "cuCtxSynchronize", rc) : 0;
}

static void cuda_destroy(Device *d) {
    CudaDevice *c = (CudaDevice *)d;
    if (c->ws) c->api.mem_free(c->api.self, c->ws);
    c->api.close(c->api.self);
    free(c->fn);
    free(c->fn_sum);
    free(c);
}

Device *device_cuda_new(const Plan *plan, bool emulated, char *err, size_t nerr) {
    CudaDevice *c = util_calloc(1, sizeof *c);
    c->plan = plan;
    Device *d = &c->d;
    if ((emulated ? emu_open : real_open)(&c->api, plan, d->info, sizeof d->info, err, nerr)) {
        free(c);
        return NULL;
    }
    d->name = emulated ? "cuda-emu" : "cuda";
    d->host_memory = emulated;
    d->alloc = cuda_alloc;
    d->free = cuda_free;
    d->upload = cuda_upload;
    d->download = cuda_download;
    d->launch = cuda_launch;
    d->gemm = cuda_gemm;
    d->sync = cuda_sync;
    d->destroy = cuda_destroy;
    c->fn = util_calloc((size_t)plan->nkernel + 1, sizeof(void *));
    c->fn_sum = util_calloc((size_t)plan->nkernel + 1, sizeof(void *));
    for (int i = 0; i < plan->nkernel; i++) {
        const Kernel *k = &plan->kernel[i];
        if (k->kind != K_LOOP) continue;
        char sum[96];
        int rc = c->api.function(c->api.self, k->name, &c->fn[i]);
        if (!rc && k->cuda.nsum) rc = c->api.function(c->api.self, cuda_sum_name(sum, sizeof sum, k), &c->fn_sum[i]);
        if (rc) {
            snprintf(err, nerr, "the compiled kernels have no %s", k->name);
            cuda_destroy(d);
            return NULL;
        }
    }
    if (plan->cuda_workspace > 0) {
        void *ws = cuda_alloc(d, sizeof(float) * (size_t)plan->cuda_workspace);
        if (!ws) {
            snprintf(err, nerr, "%s", d->err);
            cuda_destroy(d);
            return NULL;
        }
        c->ws = (CuPtr)(uintptr_t)ws;
    }
    return d;
}
