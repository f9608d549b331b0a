/* run.h: what a model is run with, shared by `nnc train` and the trainers `nnc build` makes.
 * Compiles the model (from its file, or from text embedded in a trainer), opens the device,
 * and trains it (recompiling at new widths when gates are pruned, writing checkpoints,
 * resuming from one, starting from given weights), evaluates a checkpoint, or predicts with
 * one.  Everything prints to stdout, problems to stderr; each returns an exit status. */
#ifndef NNC_RUN_H
#define NNC_RUN_H

#include "driver.h"
#include "exec.h"
#include "hessian.h"

typedef struct {
    const char *path;   /* the model file: messages, and the directory relative data paths use */
    const char *text;   /* its text; NULL: read `path` */
    size_t len;
    const char *library; /* a trainer's library files (CompileOptions.library); NULL: stdlib/ */
    Override *ov;
    int nov;
    const char *device; /* cpu (NULL), cuda, cuda-emu, auto */
    bool no_fuse;
    int progress;       /* -1 when stdout is a terminal, 0 never, 1 always */
    const char *out_dir;  /* train: metrics, checkpoints, result.json; NULL: runs/MODEL */
    const char *data;     /* replaces the train block's data: an IDX directory or a CSV file */
    bool resume;          /* continue from out_dir's checkpoint */
    const char *init;     /* initial weights, a safetensors file */
    int64_t checkpoint_every; /* epochs between checkpoints; 0: at the end only */
    const char *checkpoint; /* eval, predict: the checkpoint to load */
    const char *draws;      /* eval, predict of a sampled model: its run directory or a draws file */
    const char *input, *output; /* predict: X (a model with one input), Y */
    const char *inputs[16];     /* predict, a model with several inputs: NAME=FILE.npy each */
    int ninputs;
    const char *built;    /* a trainer: how it was built, for the training header; NULL in nnc */
    int64_t shards;       /* --deterministic-reduce[=S]: the batch in S shards (4 when not given); 0: off */
    double collective_timeout; /* --collective-timeout S: seconds a rank waits for the others; 0: dist.h's default */
    bool hvp;             /* compile the hvp program too (compiler/hvp.c) */
    const char *tensorboard; /* train: the event file's directory (--tensorboard DIR); NULL: out_dir */
    bool no_tensorboard;     /* --no-tensorboard */
    int64_t histogram_every; /* --histograms N: the weights' histograms every N epochs; 0: never; -1: 1 */
} RunOptions;

/* The options `nnc train` and a trainer's `train` share: --set NAME=VALUE (or --set=NAME=VALUE),
 * --data, --device, --out, --init, --resume, --checkpoint-every N, --progress, --no-progress,
 * --deterministic-reduce[=S], --collective-timeout S, --tensorboard DIR, --no-tensorboard, --histograms N.
 * o->ov must have room for RUN_MAX_SETS overrides.  Returns how many arguments argv[i] and its
 * value took (1 or 2), 0 when argv[i] is none of these, or -1 with a usage message in why. */
enum { RUN_MAX_SETS = 64 };
int run_parse_option(RunOptions *o, int argc, char **argv, int i, char *why, size_t nwhy);

int run_train(const RunOptions *o);
int run_eval(const RunOptions *o);
int run_predict(const RunOptions *o);
/* The model's layer table, training setup and memory plan, how the trainer was built, and the
 * size of its CUDA C. */
int run_info(const RunOptions *o, const char *build_info, const char *cuda_source);

/* `nnc hvp`: the Hessian's extreme eigenvalues at o->checkpoint (or the initial weights). */
typedef struct {
    HvpMethod method;
    int64_t batches;  /* the first N batches of the training data; <= 0: all */
    int iterations;   /* Lanczos steps (30) */
    int top;          /* eigenvalues printed (5) */
    double fd_step;   /* HVP_FD: the RMS of h v per element; 0: hessian.c's default */
    const char *dense; /* also the dense Hessian, to this .npy file */
} HvpOptions;
int run_hvp(const RunOptions *o, const HvpOptions *h);
/* hvp's own options (--method, --batches, --iterations, --top, --fd-step, --dense) into h, as
 * run_parse_option: how many arguments argv[i] took (2), 0 when it is none of these, -1 with
 * the reason in why. */
int run_parse_hvp_option(HvpOptions *h, int argc, char **argv, int i, char *why, size_t nwhy);

/* `nnc export --onnx FILE --checkpoint C -o OUT` (onnx_export.c): the inference graph of the model
 * at checkpoint C as an ONNX model in OUT. */
int run_export_onnx(const RunOptions *o, const char *out);

/* `nnc sweep`: a grid of hyperparameters and seeds in DeepOBS's layout (sweep.c). */
enum { SWEEP_MAX_GRIDS = 8 };
typedef struct {
    const char *grid[SWEEP_MAX_GRIDS]; /* KEY=logspace(a,b,n) | linspace(a,b,n) | v1,v2,... */
    int ngrid;
    int seeds;       /* seeds per setting: the model's seed, +1, ...  (1) */
    const char *out; /* DIR (default sweeps/MODEL) */
} SweepOptions;
int run_sweep(const RunOptions *o, const SweepOptions *so);

/* A compiled model on a device. */
typedef struct {
    Compilation c;
    Exec e;
} Built;

/* Compiles (dense layers at `width` when given) and opens the device; NULL after printing why.
 * `max_batch` 0 is the model's batch size. */
Built *run_build(const RunOptions *o, const WidthOverride *width, int nwidth, int64_t max_batch);
void run_free(Built *b);
/* eval, predict, hvp: the model at the checkpoint's widths, with its trained weights (and model
 * statistics: batch_norm's running averages) and the scalars of its last step.  The
 * checkpoint must be of this model (name and source hash; its settings may differ); NULL after
 * printing why.  checkpoint_close(ck) once done. */
struct Checkpoint;
Built *run_from_checkpoint(const RunOptions *o, struct Checkpoint *ck);
/* eval, predict, export of a sampled model: the model and the draws of the run o->draws (a run
 * directory or one chain's file) of this model; NULL after printing why.  draws_free(d) once done. */
struct Draws;
Built *run_from_draws(const RunOptions *o, struct Draws *d);

#endif
