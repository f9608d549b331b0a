/* nnc.c: the command line tool.  Subcommands check, train, emit, gradcheck, hvp, sweep, build, eval, predict, export, fmt; exit status 0 on
 * success, 1 for an error in the user's model or data, 2 for bad usage.  Everything it does
 * is a call into libnnc (driver.h, the backends, the runtime). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "build.h"
#include "driver.h"
#include "format.h"
#include "nvrtc.h"
#include "render_cuda.h"
#include "render_llvm.h"
#include "gradcheck.h"
#include "run.h"
#include "train.h"

static const char usage[] =
    "usage: nnc <command> [options] FILE.nn\n"
    "\n"
    "commands:\n"
    "  check FILE              parse and check the model; print its layers, training setup and memory plan\n"
    "  train FILE              compile the model and train it now\n"
    "  gradcheck FILE          check the model's gradients: finite differences, LLVM vs reference\n"
    "  emit WHAT FILE          print generated code: --ast, --ir, --plan, --llvm, --asm, --cuda, --ptx\n"
    "  build FILE -o NAME      a standalone trainer executable for the model (NAME --help says how to use it)\n"
    "  eval FILE --checkpoint C  the loss and metrics of checkpoint C's weights on the validation and test data\n"
    "  predict FILE --checkpoint C --input X --output Y\n"
    "                          the model's outputs for the inputs in X (NPY, CSV or IDX; several inputs:\n"
    "                          --input NAME=FILE.npy each), written to Y (.npy or .csv); a sampled model:\n"
    "                          --draws D in place of --checkpoint, over its posterior\n"
    "  export --onnx FILE --checkpoint C -o OUT.onnx\n"
    "                          the inference graph of the trained model at C, as an ONNX model\n"
    "  sweep FILE --grid K=V   train a grid of hyperparameters (and --seeds N) in DeepOBS's layout; resumes\n"
    "  fmt FILE...             the model file in the canonical layout, on stdout (- reads stdin; --write:\n"
    "                          in place; --check: name the files not in it, exit status 1 if any)\n"
    "  hvp FILE                the Hessian of the training loss: its extreme eigenvalues by Lanczos over\n"
    "                          Hessian-vector products, and a condition-number estimate\n"
    "  --help                  this text\n"
    "  --version               the version of nnc and of LLVM it uses, and where its block library and\n"
    "                          trainers' runtime are\n"
    "\n"
    "options:\n"
    "  --set NAME=VALUE        override a param or a train setting (epochs, batch, seed, lr, valid,\n"
    "                          eval_every; samples: a sampler's or `evaluate samples`; a sampler's\n"
    "                          burnin, thin, chains, step, max_depth, parallel)\n"
    "  --out DIR               train: where metrics.jsonl, checkpoint.safetensors and result.json go\n"
    "                          (default runs/MODEL); sweep: the sweep's directory (default sweeps/MODEL)\n"
    "  --resume                train: continue from DIR's checkpoint (bit for bit)\n"
    "  --init FILE             train: start from the weights in a safetensors file (matched by name)\n"
    "  --tensorboard DIR       train: the TensorBoard event file's directory (default: the run's, --out)\n"
    "  --no-tensorboard        train: no event file\n"
    "  --histograms N          train: the weights' histograms in it every N epochs (default 1; 0: none)\n"
    "  --checkpoint-every N    train: a checkpoint every N epochs (default 1; always at the end and on\n"
    "                          SIGINT/SIGTERM)\n"
    "  --data PATH             train: this data instead of the train block's (an IDX directory or a CSV file;\n"
    "                          for npy(...) data, a directory of its arrays)\n"
    "  --progress, --no-progress  train: a live progress bar (default: when stdout is a terminal)\n"
    "  --deterministic-reduce[=S]  train: the batch in S shards (default 4), their gradients added in a\n"
    "                          fixed order, so that 1, 2 or 4 ranks (mpirun -np N) give the same bits\n"
    "  --collective-timeout S  train under mpirun: a rank that waits S s for the others ends the job (300)\n"
    "  --device DEV            train, gradcheck: cpu (default), cuda, cuda-emu (the CUDA code run on\n"
    "                          the host, for testing), or auto (CUDA when available, else the CPU)\n"
    "  --grid KEY=VALUES       sweep: logspace(FROM,TO,N), linspace(FROM,TO,N) or a list 1e-3,1e-2 of a --set\n"
    "                          key (lr, momentum, weight_decay, beta1, a param ...); repeat for a product\n"
    "  --seeds N               sweep: N seeds per setting, the model's seed and the next N - 1 (default 1)\n"
    "  --checkpoint C          hvp: the weights of checkpoint C (default: the seeded initial weights)\n"
    "  --method M              hvp: exact (reverse over reverse, default) or fd (differences of gradients)\n"
    "  --batches N             hvp: the Hessian on the first N batches of the training data (default 8; all)\n"
    "  --iterations N          hvp: Lanczos iterations (default 30)\n"
    "  --top K                 hvp: the K largest eigenvalues printed (default 5)\n"
    "  --fd-step H             hvp --method fd: the RMS per element of the step h v (default 1e-3)\n"
    "  --dense FILE.npy        hvp: also the dense Hessian, column by column (at most 20000 weights)\n"
    "  --hvp                   emit: with the program of exact Hessian-vector products (hvp); build: and the\n"
    "                          trainer's hvp command\n"
    "  --arch SM               emit --ptx: the GPU architecture (default sm_90)\n"
    "  --fuse=none             a kernel per op, no fusion (the same results, for checking; default --fuse=all)\n"
    "  -o NAME                 build: the executable to write; export: the file\n"
    "  --target-cpu CPU        build, emit --llvm/--asm: host (default) or a baseline: x86-64, x86-64-v2,\n"
    "                          x86-64-v3, x86-64-v4\n"
    "  --keep-kernels DIR      build: also write the IR, plan, LLVM IR, assembly and CUDA C into DIR\n"
    "\n"
    "exit status: 0 success, 1 an error in the model or its data, 2 bad usage\n";

typedef struct {
    const char *cmd;
    const char *file;
    const char *emit;
    const char *arch;
    const char *output, *target_cpu, *keep;
    bool onnx; /* export --onnx */
    RunOptions run; /* --set, --device, --fuse and the train options */
    HvpOptions hvp;
    SweepOptions sweep;
    Override ov[RUN_MAX_SETS];
} Args;

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "nnc: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(run 'nnc --help' for usage)\n");
    return 2;
}

static int parse_args(int argc, char **argv, Args *a) {
    memset(a, 0, sizeof *a);
    a->hvp = (HvpOptions){.method = HVP_EXACT, .batches = 8};
    a->run = (RunOptions){.ov = a->ov, .progress = -1, .checkpoint_every = 1, .histogram_every = -1};
    if (argc < 2) return usage_error("%s", "no command given");
    a->cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        char why[256];
        int used = run_parse_option(&a->run, argc, argv, i, why, sizeof why);
        if (used < 0) return usage_error("%s", why);
        if (used > 0) {
            i += used - 1;
        } else if (!strcmp(s, "--arch") || !strcmp(s, "-o") || !strcmp(s, "--target-cpu") || !strcmp(s, "--keep-kernels")) {
            if (i + 1 >= argc) return usage_error("%s needs a value", s);
            *(s[1] == 'o' ? &a->output : s[2] == 'a' ? &a->arch : s[2] == 't' ? &a->target_cpu : &a->keep) = argv[++i];
        } else if ((used = run_parse_hvp_option(&a->hvp, argc, argv, i, why, sizeof why)) != 0) {
            if (used < 0) return usage_error("%s", why);
            i += used - 1;
        } else if (!strcmp(s, "--checkpoint") || !strcmp(s, "--draws") || !strcmp(s, "--output") || !strcmp(s, "--input")) {
            if (i + 1 >= argc) return usage_error("%s needs a value", s);
            const char *v = argv[++i];
            if (s[2] == 'i') { /* X, or NAME=FILE.npy once per input */
                if (a->run.ninputs == (int)(sizeof a->run.inputs / sizeof *a->run.inputs)) return usage_error("%s", "too many --input options");
                if (!a->run.input) a->run.input = v;
                a->run.inputs[a->run.ninputs++] = v;
            } else {
                *(s[2] == 'c' ? &a->run.checkpoint : s[2] == 'd' ? &a->run.draws : &a->run.output) = v;
            }
        } else if (!strcmp(s, "--grid") || !strcmp(s, "--seeds")) {
            if (i + 1 >= argc) return usage_error("%s needs a value", s);
            const char *v = argv[++i];
            if (s[2] == 's') {
                char *end;
                long n = strtol(v, &end, 10);
                if (*end || n < 1 || n > 10000) return usage_error("--seeds needs a whole number from 1 to 10000, not '%s'", v);
                a->sweep.seeds = (int)n;
            } else {
                if (a->sweep.ngrid == SWEEP_MAX_GRIDS) return usage_error("at most %s grids", "8");
                a->sweep.grid[a->sweep.ngrid++] = v;
            }
        } else if (!strcmp(s, "--hvp")) {
            a->run.hvp = true;
        } else if (!strcmp(s, "--onnx") && !strcmp(a->cmd, "export")) {
            a->onnx = true;
        } else if (!strcmp(s, "--fuse=none") || !strcmp(s, "--fuse=all")) {
            a->run.no_fuse = s[7] == 'n';
        } else if (!strcmp(a->cmd, "emit") && !a->emit && s[0] == '-' && s[1] == '-') {
            a->emit = s + 2;
        } else if (s[0] == '-' && s[1]) {
            return usage_error("unknown option '%s'", s);
        } else if (!a->file) {
            a->file = s;
        } else {
            return usage_error("unexpected argument '%s'", s);
        }
    }
    return 0;
}

static void free_args(Args *a) {
    for (int i = 0; i < a->run.nov; i++) free((char *)a->ov[i].key);
}

static int cmd_check(Args *a) {
    Compilation c;
    CompileOptions o = {.ov = a->ov, .nov = a->run.nov, .no_fuse = a->run.no_fuse};
    int rc = driver_compile(&c, a->file, &o, STAGE_PLAN);
    if (rc == 0) {
        StrBuf b = {0};
        summary_print(&b, &c);
        fputs(sb_str(&b), stdout);
        sb_free(&b);
    }
    driver_free(&c);
    return rc;
}

static int cmd_emit(Args *a) {
    static const char *const what[] = {"ast", "ir", "plan", "llvm", "asm", "cuda", "ptx"};
    int w = -1;
    for (int i = 0; i < 7; i++)
        if (a->emit && !strcmp(a->emit, what[i])) w = i;
    if (w < 0) return usage_error("emit needs one of --ast, --ir, --plan, --llvm, --asm, --cuda, --ptx%s", "");
    Compilation c;
    CompileOptions o = {.ov = a->ov, .nov = a->run.nov, .no_fuse = a->run.no_fuse, .hvp = a->run.hvp};
    int rc = driver_compile(&c, a->file, &o, w == 0 ? STAGE_PARSE : w == 1 ? STAGE_IR : STAGE_PLAN);
    if (rc == 0) {
        StrBuf b = {0};
        if (w == 0) ast_print_program(&b, c.prog);
        if (w == 1) ir_print(&b, c.graph, a->file);
        if (w == 2) plan_print(&b, c.plan, a->file);
        if (w == 5) {
            char *text = cuda_render(c.plan, a->file);
            sb_puts(&b, text);
            free(text);
        }
        if (w == 6) {
            char err[1024], *ptx = NULL, *log = NULL;
            size_t n;
            Nvrtc *nv = nvrtc_open(err, sizeof err);
            char *src = cuda_render(c.plan, a->file);
            if (!nv || nvrtc_compile(nv, src, a->arch ? a->arch : "sm_90", false, &ptx, &n, &log, err, sizeof err)) {
                fprintf(stderr, "nnc: error: %s\n%s", err, log ? log : "");
                rc = 1;
            } else {
                sb_puts(&b, ptx);
            }
            free(ptx);
            free(log);
            free(src);
            nvrtc_close(nv);
        }
        if (w == 3 || w == 4) {
            char err[512];
            LlvmModule *m = NULL;
            if (a->target_cpu && !llvm_known_cpu(a->target_cpu))
                rc = usage_error("unknown --target-cpu '%s': use host, x86-64, x86-64-v2, x86-64-v3 or x86-64-v4", a->target_cpu);
            else
                m = llvm_render(c.plan, a->target_cpu, true, err, sizeof err);
            char *text = m ? (w == 3 ? llvm_print_ir(m) : llvm_emit_asm(m, err, sizeof err)) : NULL;
            if (!text) {
                if (!rc) fprintf(stderr, "nnc: error: %s\n", err);
                rc = rc ? rc : 1;
            } else {
                sb_puts(&b, text);
                free(text);
            }
            llvm_module_free(m);
        }
        fputs(sb_str(&b), stdout);
        sb_free(&b);
    }
    driver_free(&c);
    return rc;
}

/* Compile the model and JIT it; on failure everything is freed and the exit status returned. */
static int compile_and_jit(Args *a, int64_t max_batch, Compilation *c, Exec *ex) {
    CompileOptions o = {.ov = a->ov, .nov = a->run.nov, .max_batch = max_batch, .no_fuse = a->run.no_fuse};
    int rc = driver_compile(c, a->file, &o, STAGE_PLAN);
    char err[1024];
    if (rc == 0 && exec_new(ex, c->plan, a->run.device, stderr, err, sizeof err)) {
        fprintf(stderr, "nnc: error: %s\n", err);
        rc = 1;
    }
    if (rc) driver_free(c);
    return rc;
}

static int cmd_train(Args *a) {
    a->run.path = a->file;
    return run_train(&a->run);
}

static int cmd_gradcheck(Args *a) {
    Compilation c;
    Exec ex;
    int rc = compile_and_jit(a, 8, &c, &ex);
    if (rc) return rc;
    GradcheckOptions go = {.per_weight = 12, .out = stdout};
    rc = gradcheck_run(c.model, &ex, &go);
    exec_free(&ex);
    driver_free(&c);
    return rc < 0 ? 1 : rc;
}

/* Writes `len` bytes of `text` over `path` through a temporary file beside it, keeping the file's mode. */
static int replace_file(const char *path, const char *text, size_t len) {
    char tmp[4096];
    struct stat st;
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.fmt-tmp", path) >= sizeof tmp) return errno = ENAMETOOLONG, -1;
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    int rc = fwrite(text, 1, len, f) != len;
    if (!stat(path, &st)) rc |= fchmod(fileno(f), st.st_mode & 07777);
    rc |= fclose(f);
    if (rc || rename(tmp, path)) {
        int e = errno;
        remove(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

/* nnc fmt [--check | --write] FILE...: each file in the canonical layout (format.c). */
static int cmd_fmt(int argc, char **argv) {
    const char *mode = NULL;
    int nfile = 0, rc = 0;
    bool has_stdin = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--check") || !strcmp(argv[i], "--write")) {
            if (mode && strcmp(mode, argv[i])) return usage_error("%s", "fmt takes --check or --write, not both");
            mode = argv[i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage_error("unknown option '%s' (fmt takes --check or --write)", argv[i]);
        } else {
            nfile++;
            has_stdin |= !strcmp(argv[i], "-");
        }
    }
    if (!nfile) return usage_error("%s", "'fmt' needs a model file");
    if (mode && has_stdin) return usage_error("fmt %s needs files, not '-'", mode); /* before any file is touched */
    for (int i = 2; i < argc; i++) {
        const char *path = argv[i];
        if (path[0] == '-' && path[1]) continue;
        size_t len = 0;
        char *text = NULL;
        if (!strcmp(path, "-")) { /* standard input, as editors pipe a buffer through a formatter */
            path = "<stdin>";
            text = util_realloc(NULL, 1);
            for (size_t got, cap = 1; (got = fread(text + len, 1, cap - len, stdin)) > 0;)
                if ((len += got) == cap) text = util_realloc(text, cap *= 2);
        } else {
            text = util_read_file(path, &len);
        }
        if (!text) {
            fprintf(stderr, "nnc: error: cannot read '%s': %s\n", path, strerror(errno));
            rc = 1;
            continue;
        }
        Source src = {path, text, len};
        Diag d;
        diag_init(&d, &src, stderr);
        size_t n;
        char *out = format_source(&src, &d, &n);
        bool same = out && n == len && !memcmp(out, text, len);
        if (!out) {
            rc = 1;
            if (!strcmp(path, "<stdin>")) fwrite(text, 1, len, stdout); /* an editor's buffer stays as it was */
        } else if (!mode) {
            fwrite(out, 1, n, stdout);
        } else if (!same && mode[2] == 'c') {
            printf("%s\n", path);
            rc = 1;
        } else if (!same && replace_file(path, out, n)) {
            fprintf(stderr, "nnc: error: cannot write '%s': %s\n", path, strerror(errno));
            rc = 1;
        }
        free(out);
        free(text);
    }
    return rc;
}

int main(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "--version")) {
        printf("nnc %s (LLVM %s)\nblock library: %s\ntrainers' runtime: %s\n", NNC_VERSION, NNC_LLVM_VERSION, driver_stdlib_dir(),
               build_runtime_library());
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "fmt")) return cmd_fmt(argc, argv);
    Args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    if (!a.file) {
        free_args(&a);
        return usage_error("'%s' needs a model file", a.cmd);
    }
    if (!strcmp(a.cmd, "check"))
        rc = cmd_check(&a);
    else if (!strcmp(a.cmd, "train"))
        rc = cmd_train(&a);
    else if (!strcmp(a.cmd, "gradcheck"))
        rc = cmd_gradcheck(&a);
    else if (!strcmp(a.cmd, "sweep")) {
        a.run.path = a.file;
        a.sweep.out = a.run.out_dir;
        rc = a.sweep.ngrid ? run_sweep(&a.run, &a.sweep) : usage_error("%s", "sweep needs at least one --grid KEY=VALUES");
    } else if (!strcmp(a.cmd, "hvp")) {
        a.run.path = a.file;
        rc = run_hvp(&a.run, &a.hvp);
    } else if (!strcmp(a.cmd, "emit"))
        rc = cmd_emit(&a);
    else if (!strcmp(a.cmd, "eval") || !strcmp(a.cmd, "predict")) {
        a.run.path = a.file;
        if (!a.run.checkpoint == !a.run.draws)
            rc = usage_error("%s needs --checkpoint C (a trained model) or --draws D (a sampled one)", a.cmd);
        else if (a.cmd[0] == 'p' && (!a.run.input || !a.run.output))
            rc = usage_error("%s", "predict needs --input X and --output Y");
        else
            rc = a.cmd[0] == 'e' ? run_eval(&a.run) : run_predict(&a.run);
    } else if (!strcmp(a.cmd, "export")) {
        a.run.path = a.file;
        rc = !a.onnx              ? usage_error("%s", "export needs a format: --onnx")
             : !a.run.checkpoint == !a.run.draws ? usage_error("%s", "export --onnx needs --checkpoint C, the trained weights (or --draws D, a sampled model's run)")
             : !a.output         ? usage_error("%s", "export --onnx needs -o FILE.onnx, the file to write")
                                 : run_export_onnx(&a.run, a.output);
    } else if (!strcmp(a.cmd, "build"))
        rc = a.output ? build_trainer(&(BuildOptions){.file = a.file, .out = a.output, .cpu = a.target_cpu, .keep = a.keep,
                                                      .ov = a.ov, .nov = a.run.nov, .no_fuse = a.run.no_fuse,
                                                      .hvp = a.run.hvp})
                      : usage_error("%s", "build needs -o NAME, the executable to write");
    else
        rc = usage_error("unknown command '%s'", a.cmd);
    free_args(&a);
    return rc;
}
