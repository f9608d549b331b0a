/* build.c: `nnc build FILE -o NAME`, a standalone trainer for one model.  Compiles the model
 * to a plan, renders the plan's CPU kernels with the LLVM backend into an object file (for the
 * host CPU or a named baseline such as x86-64-v3), puts the model's source, its CUDA C, the
 * plan signature the kernels fit, a description of the build and where the MPI plug-in of the
 * nnc that built it is into a second object file,
 * and links both with libnnc_rt (the front end and runtime without LLVM; its main() is
 * runtime/trainer_main.c) and the system libraries.  The linker is `cc`, run with an argument
 * vector (posix_spawnp), never a shell. */
#include "build.h"

#include <cJSON.h>
#include <errno.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "build_config.h"
#include "driver.h"
#include "render_cuda.h"
#include "render_llvm.h"

extern char **environ;

static int write_text(const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        fprintf(stderr, "nnc: error: cannot write %s: %s\n", path, strerror(errno));
        if (f) fclose(f);
        return -1;
    }
    return 0;
}

/* Runs argv[0] with argv (searched in PATH); 0 when it exits with 0. */
static int spawn_wait(char *const *argv) {
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
    if (rc) {
        fprintf(stderr, "nnc: error: cannot run the linker '%s': %s (install build-essential, or set NNC_CC)\n", argv[0],
                strerror(rc));
        return -1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status)) {
        fprintf(stderr, "nnc: error: the linker '%s' failed (status %d)\n", argv[0], WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return -1;
    }
    return 0;
}

/* The MPI plug-in of this nnc, installed beside it or in the build tree: a trainer looks there
 * too (dist_plugin_hint), wherever it is moved. */
static const char *build_mpi_plugin(void) {
    static char installed[4096];
    return util_installed(installed, sizeof installed, "../lib/nnc/libnnc_mpi.so") ? installed : NNC_MPI_PLUGIN_BUILT;
}

/* How it was built, as JSON: shown by the trainer's `info`. */
static char *build_info(const BuildOptions *o, const Compilation *c, uint64_t sig, const char *mpi_plugin) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", c->model->name);
    cJSON_AddStringToObject(j, "source", o->file);
    cJSON_AddStringToObject(j, "nnc", NNC_VERSION);
    cJSON_AddStringToObject(j, "llvm", NNC_LLVM_VERSION);
    cJSON_AddStringToObject(j, "target_cpu", o->cpu ? o->cpu : "host");
    cJSON_AddBoolToObject(j, "fuse", !o->no_fuse);
    cJSON_AddBoolToObject(j, "hvp", o->hvp);
    cJSON *sets = cJSON_AddObjectToObject(j, "set");
    for (int i = 0; i < o->nov; i++) cJSON_AddNumberToObject(sets, o->ov[i].key, o->ov[i].value);
    char hex[32];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)sig);
    cJSON_AddStringToObject(j, "plan_signature", hex);
    cJSON_AddNumberToObject(j, "kernels", c->plan->nkernel);
    cJSON_AddStringToObject(j, "mpi_plugin", mpi_plugin);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    return text;
}

/* The options the trainer applies before its own: `set KEY=VALUE`, `fuse none` and `hvp` lines. */
static char *build_args(const BuildOptions *o) {
    StrBuf b = {0};
    for (int i = 0; i < o->nov; i++) sb_printf(&b, "set %s=%.17g\n", o->ov[i].key, o->ov[i].value);
    if (o->no_fuse) sb_puts(&b, "fuse none\n");
    if (o->hvp) sb_puts(&b, "hvp\n");
    char *r = util_strdup(sb_str(&b));
    sb_free(&b);
    return r;
}

const char *build_runtime_library(void) {
    static char installed[4096];
    return util_installed(installed, sizeof installed, "../lib/nnc/libnnc_rt.a") ? installed : NNC_RT_LIB;
}

int build_trainer(const BuildOptions *o) {
    double t0 = util_now();
    if (o->cpu && !llvm_known_cpu(o->cpu)) {
        fprintf(stderr, "nnc: error: unknown --target-cpu '%s': use host, x86-64, x86-64-v2, x86-64-v3 or x86-64-v4\n", o->cpu);
        return 2;
    }
    Compilation c;
    CompileOptions co = {.ov = o->ov, .nov = o->nov, .no_fuse = o->no_fuse, .hvp = o->hvp};
    int rc = driver_compile(&c, o->file, &co, STAGE_PLAN);
    if (rc) {
        driver_free(&c);
        return rc;
    }
    char dir[] = "/tmp/nnc-build-XXXXXX", kobj[64], dobj[64], err[1024];
    if (!mkdtemp(dir)) {
        fprintf(stderr, "nnc: error: cannot make a temporary directory: %s\n", strerror(errno));
        driver_free(&c);
        return 1;
    }
    snprintf(kobj, sizeof kobj, "%s/kernels.o", dir);
    snprintf(dobj, sizeof dobj, "%s/model.o", dir);
    uint64_t sig = plan_signature(c.plan);
    const char *mpi_plugin = build_mpi_plugin();
    char *cuda = cuda_render(c.plan, o->file), *info = build_info(o, &c, sig, mpi_plugin), *args = build_args(o);
    LlvmModule *m = llvm_render(c.plan, o->cpu, false, err, sizeof err);
    if (!m) {
        fprintf(stderr, "nnc: error: %s\n", err);
        rc = 1;
    }
    if (rc == 0 && o->keep) { /* everything a user may want to read, next to the binary */
        if (mkdir(o->keep, 0777) && errno != EEXIST) {
            fprintf(stderr, "nnc: error: cannot make %s: %s\n", o->keep, strerror(errno));
            rc = 1;
        }
        StrBuf ir = {0}, plan = {0};
        ir_print(&ir, c.graph, o->file);
        plan_print(&plan, c.plan, o->file);
        char *ll = llvm_print_ir(m), *as = llvm_emit_asm(m, err, sizeof err);
        if (!as) {
            fprintf(stderr, "nnc: error: %s\n", err);
            rc = 1;
        }
        if (rc == 0 && (write_text(o->keep, "model.ir", sb_str(&ir)) || write_text(o->keep, "plan.txt", sb_str(&plan)) ||
                        write_text(o->keep, "kernels.ll", ll) || write_text(o->keep, "kernels.s", as) ||
                        write_text(o->keep, "kernels.cu", cuda)))
            rc = 1;
        sb_free(&ir);
        sb_free(&plan);
        free(ll);
        free(as);
    }
    const char *slash = strrchr(o->file, '/');
    StrBuf lib = {0}; /* the library files the model calls blocks of: the trainer compiles it again */
    driver_library_bundle(&c, &lib);
    const char *names[] = {"nnc_model_source", "nnc_model_file", "nnc_build_info", "nnc_cuda_source", "nnc_build_args",
                           "nnc_library_source", "nnc_mpi_plugin"};
    const char *texts[] = {c.text, slash ? slash + 1 : o->file, info, cuda, args, c.nlib ? sb_str(&lib) : "", mpi_plugin};
    if (rc == 0 && (llvm_emit_object(m, kobj, err, sizeof err) ||
                    llvm_emit_data_object(dobj, o->cpu, names, texts, 7, "nnc_plan_signature", sig, err, sizeof err))) {
        fprintf(stderr, "nnc: error: %s\n", err);
        rc = 1;
    }
    if (rc == 0) {
        const char *cc = getenv("NNC_CC") ? getenv("NNC_CC") : "cc";
        const char *argv[] = {cc, "-o", o->out, kobj, dobj, build_runtime_library(), NNC_TRAINER_LINK, NULL};
        rc = spawn_wait((char *const *)argv) ? 1 : 0;
    }
    unlink(kobj);
    unlink(dobj);
    rmdir(dir);
    if (rc == 0)
        printf("built %s: model %s, %d kernels for %s CPUs, %s; in %.2f s\n", o->out, c.model->name, c.plan->nkernel,
               o->cpu ? o->cpu : "this host's", o->keep ? "generated code kept" : "run it with --help", util_now() - t0);
    llvm_module_free(m);
    free(cuda);
    free(info);
    free(args);
    sb_free(&lib);
    driver_free(&c);
    return rc;
}
