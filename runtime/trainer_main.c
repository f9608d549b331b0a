/* trainer_main.c: main() of the standalone trainers `nnc build` makes (linked with libnnc_rt,
 * which has no LLVM).  The model's source, its CPU kernels (compiled ahead of time), the plan
 * signature they were compiled for, its CUDA C and a description of the build are linked in
 * by `nnc build` as the symbols declared below.  Commands: train, eval, predict, info, and hvp
 * when built with --hvp (or for a model whose optimizer takes Hessian-vector products). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "dist.h"
#include "run.h"

extern const char nnc_model_source[];  /* the .nn file */
extern const char nnc_model_file[];    /* its name, for messages */
extern const char nnc_build_info[];    /* JSON: nnc version, target CPU, date-free build options */
extern const char nnc_cuda_source[];   /* the CUDA C of the plan it was built for */
extern const char nnc_build_args[];    /* `set KEY=VALUE` and `fuse none` lines given to nnc build */
extern const char nnc_library_source[]; /* the library files the model calls blocks of (driver_library_bundle) */
extern const char nnc_mpi_plugin[];     /* the MPI plug-in of the nnc that built it (dist_plugin_hint) */
extern const uint64_t nnc_plan_signature;
extern const KernelEntry nnc_kernels[];

static bool hvp_unbuilt; /* the hvp command, nnc build without --hvp */

const KernelEntry *cpu_kernels_open(const Plan *plan, void **handle, char *err, size_t nerr) {
    *handle = NULL;
    if (plan_signature(plan) != nnc_plan_signature && hvp_unbuilt) {
        snprintf(err, nerr, "this trainer has no kernels for Hessian-vector products; build it with nnc build --hvp");
        return NULL;
    }
    if (plan_signature(plan) != nnc_plan_signature) {
        snprintf(err, nerr,
                 "this trainer's kernels were compiled for another plan (a --set that changes the model's code, "
                 "or --fuse=none); rebuild it with nnc build");
        return NULL;
    }
    return nnc_kernels;
}

void cpu_kernels_close(void *handle) { (void)handle; }

static const char usage[] =
    "usage: %s <command> [options]\n"
    "\n"
    "commands:\n"
    "  train                   train the model\n"
    "  eval --checkpoint C     evaluate the weights in checkpoint C on the model's validation and test data\n"
    "  predict --checkpoint C --input X --output Y\n"
    "                          the model's outputs for the inputs in X (NPY, CSV or IDX), written to Y;\n"
    "                          a model with several inputs: --input NAME=FILE.npy for each\n"
    "                          (.npy or .csv)\n"
    "  eval --draws D, predict --draws D --input X --output Y\n"
    "                          the same for a sampled model, over the posterior: D is the sampling run's\n"
    "                          directory (every chain's draws) or one draws_chain<c>.safetensors file;\n"
    "                          predict writes the mean, sd, 5 %% and 95 %% quantile of each output\n"
    "  hvp [--checkpoint C]    the Hessian of the training loss at C (default: the initial weights): its top\n"
    "                          eigenvalues by Lanczos, the smallest and the condition number (a trainer\n"
    "                          built with nnc build --hvp, or for pre_sgd); --method exact|fd, --batches N|all,\n"
    "                          --iterations N (30), --top K (5), --fd-step H, --dense H.npy, as nnc hvp's\n"
    "  info                    the model, its layers, memory plan and kernels, and how this trainer was built\n"
    "\n"
    "options:\n"
    "  --set NAME=VALUE        override a param or a train setting (epochs, batch, seed, lr, valid,\n"
    "                          eval_every; samples: a sampler's or `evaluate samples`; a sampler's\n"
    "                          burnin, thin, chains, step, max_depth, parallel)\n"
    "  --epochs N, --seed N    the same as --set epochs=N, --set seed=N\n"
    "  --data PATH             train on PATH instead: a directory of IDX files or a CSV file (npy(...)\n"
    "                          data: a directory of its arrays)\n"
    "  --device DEV            cpu (default), cuda, cuda-emu, auto\n"
    "  --out DIR               train: metrics, checkpoints and result.json (default runs/MODEL)\n"
    "  --resume                train: continue from DIR's checkpoint\n"
    "  --init C                train: start from the weights in safetensors file C\n"
    "  --tensorboard DIR       train: the TensorBoard event file's directory (default: --out's)\n"
    "  --no-tensorboard        train: no event file\n"
    "  --histograms N          train: the weights' histograms every N epochs (default 1; 0: none)\n"
    "  --checkpoint-every N    train: a checkpoint every N epochs (default 1; and always at the end)\n"
    "  --deterministic-reduce[=S]  train: the batch in S shards (default 4), added in a fixed order:\n"
    "                          the same bits on 1, 2 or 4 ranks (mpirun -np N ./trainer train)\n"
    "  --collective-timeout S  train under mpirun: a rank that waits S s for the others ends the job (300)\n"
    "  --progress, --no-progress\n"
    "  --help\n"
    "\n"
    "exit status: 0 success, 1 an error in the model, its data or a file, 2 bad usage\n";

static int bad_usage(const char *prog, const char *what, const char *arg) {
    fprintf(stderr, "%s: error: %s%s\n(run '%s --help' for usage)\n", prog, what, arg ? arg : "", prog);
    return 2;
}

int main(int argc, char **argv) {
    const char *prog = argc > 0 ? argv[0] : "trainer";
    if (argc < 2) return bad_usage(prog, "no command given", NULL);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        printf(usage, prog);
        return 0;
    }
    const char *cmd = argv[1];
    dist_plugin_hint(nnc_mpi_plugin);
    static Override ov[RUN_MAX_SETS];
    HvpOptions hvp = {.method = HVP_EXACT, .batches = 8};
    RunOptions o = {.path = nnc_model_file, .text = nnc_model_source, .len = strlen(nnc_model_source),
                    .library = nnc_library_source, .ov = ov,
                    .progress = -1, .checkpoint_every = 1, .histogram_every = -1, .built = "compiled ahead of time by nnc build"};
    static char baked[4096];
    snprintf(baked, sizeof baked, "%s", nnc_build_args);
    for (char *line = strtok(baked, "\n"); line; line = strtok(NULL, "\n")) { /* nnc build's options come first */
        char why[256];
        if (!strcmp(line, "fuse none"))
            o.no_fuse = true;
        else if (!strcmp(line, "hvp"))
            o.hvp = true;
        else if (!strncmp(line, "set ", 4) && o.nov < RUN_MAX_SETS && driver_parse_override(line + 4, &ov[o.nov], why, sizeof why))
            o.nov++;
    }
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        char why[256];
        int used = run_parse_option(&o, argc, argv, i, why, sizeof why);
        if (used == 0 && !strcmp(cmd, "hvp")) used = run_parse_hvp_option(&hvp, argc, argv, i, why, sizeof why);
        if (used < 0) return bad_usage(prog, why, NULL);
        if (used > 0) {
            i += used - 1;
        } else if (!strcmp(s, "--help")) {
            printf(usage, prog);
            return 0;
        } else if (!strcmp(s, "--epochs") || !strcmp(s, "--seed") || !strcmp(s, "--checkpoint") || !strcmp(s, "--input") ||
                   !strcmp(s, "--output") || !strcmp(s, "--draws")) {
            if (!next) return bad_usage(prog, s, " needs a value");
            i++;
            if (!strcmp(s, "--input")) { /* X, or NAME=FILE.npy once per input */
                if (o.ninputs == (int)(sizeof o.inputs / sizeof *o.inputs)) return bad_usage(prog, "too many --input options", NULL);
                if (!o.input) o.input = next;
                o.inputs[o.ninputs++] = next;
                continue;
            }
            if (!strcmp(s, "--checkpoint") || !strcmp(s, "--output") || !strcmp(s, "--draws")) {
                *(s[2] == 'c' ? &o.checkpoint : s[2] == 'd' ? &o.draws : &o.output) = next;
                continue;
            }
            char set[128]; /* --epochs N, --seed N: --set epochs=N, --set seed=N */
            snprintf(set, sizeof set, "%s=%s", s + 2, next);
            if (o.nov == RUN_MAX_SETS) return bad_usage(prog, "too many --set options", NULL);
            if (!driver_parse_override(set, &ov[o.nov], why, sizeof why)) return bad_usage(prog, why, NULL);
            o.nov++;
        } else {
            return bad_usage(prog, "unknown option ", s);
        }
    }
    if (!strcmp(cmd, "train")) return run_train(&o);
    if (!strcmp(cmd, "eval") || !strcmp(cmd, "predict")) {
        if (!o.checkpoint == !o.draws) return bad_usage(prog, cmd, " needs --checkpoint C (a trained model) or --draws D (a sampled one)");
        if (cmd[0] == 'p' && (!o.input || !o.output)) return bad_usage(prog, "predict needs --input X and --output Y", NULL);
        return cmd[0] == 'e' ? run_eval(&o) : run_predict(&o);
    }
    if (!strcmp(cmd, "info")) return run_info(&o, nnc_build_info, nnc_cuda_source);
    if (!strcmp(cmd, "hvp")) {
        hvp_unbuilt = !o.hvp;
        return run_hvp(&o, &hvp);
    }
    return bad_usage(prog, "unknown command ", cmd);
}
