/* model.h: the checked model that sema.c produces and lower.c turns into graph IR.
 * Values (SVal) form a DAG of typed layer applications, losses and scalar arithmetic; the
 * train block becomes a TrainSpec with every default filled in. */
#ifndef NNC_MODEL_H
#define NNC_MODEL_H

#include "ast.h"
#include "ir.h"

typedef enum { DATA_NONE, DATA_FASHION_MNIST, DATA_IDX, DATA_CSV, DATA_NPY } DataKind;

/* npy(x = "x.npy", mass = "mass.npy"): one file per input or target (runtime/data.h's NpyArray). */
/* npy: a named array's file; csv: a target's column, by header name (path) or index (col). */
typedef struct {
    const char *name, *path;
    SrcLoc loc;
    int col;
} DataArray;

typedef struct {
    DataKind kind;
    SrcLoc loc;
    const char *dir;            /* idx("dir"): the four standard file names inside */
    const char *images, *labels; /* idx(images = ..., labels = ...) */
    const char *path;           /* csv */
    int target_col;             /* csv: column index of the first target column; -1: last */
    const char *target_name;    /* csv: column name (needs a header) */
    int header;                 /* csv: -1 auto, 0 no, 1 yes */
    DataArray *array;           /* npy: a file per input and target; csv: a column per target */
    int narray;
} DataSpec;

typedef enum { OPT_SGD, OPT_ADAM, OPT_ADAMW, OPT_RMSPROP, OPT_ADAGRAD, OPT_PRE_SGD } OptKind;
/* OPT_PRE_SGD's variants (docs/optimizers.md): the low-rank preconditioner and its learning rate
 * estimated every `every` epochs; the learning rate alone, every `every` epochs; or once. */
typedef enum { PRE_FULL, PRE_ADAPTIVE, PRE_ONLY_ADAPTIVE } PreVariant;
enum { PRE_MAX_RANK = 16, PRE_MAX_HVPS = 16 };

typedef struct {
    OptKind kind;
    SrcLoc loc;
    double lr, momentum, weight_decay, beta1, beta2, eps;
    double alpha;               /* rmsprop: the decay of the average of squared gradients */
    double initial_accumulator; /* adagrad: where the sum of squared gradients starts */
    PreVariant pre;             /* pre_sgd: which of the three */
    int rank, hvps, estimate;   /* pre_sgd: eigenpairs kept, active HVP observations, gradient-HVP
                                   pairs that set the prior */
    int64_t every;              /* pre_sgd: epochs between estimates */
    double scale;               /* pre_sgd: the step is scale / alpha (times a `schedule lr`) */
    bool nesterov;
} OptSpec;
/* The optimizer's name as a model writes it: sgd, momentum (sgd with momentum), adam, adamw,
 * rmsprop, adagrad; and its hyperparameters, "name = value" joined by ", " into buf. */
const char *opt_name(const OptSpec *o);
const char *opt_hyperparams(const OptSpec *o, char *buf, size_t n);

/* A schedule: a value computed before every optimiser step from the step and epoch counts.
 * Nodes form a tree (root last).  Quantities are in steps or in epochs (resolved at run time,
 * when the number of steps per epoch is known). */
typedef enum {
    SCH_CONST, SCH_BASE, SCH_EPOCH, SCH_STEP, SCH_PARAM,
    SCH_ADD, SCH_SUB, SCH_MUL, SCH_DIV, SCH_POW, SCH_NEG,
    SCH_COSINE,      /* base, warm-up q[0], then half a cosine down to arg[0] at the end */
    SCH_WARMUP,      /* base * min(1, (step + 1) / q[0]) */
    SCH_STEP_DECAY,  /* base * arg[0] ^ floor(step / q[0]) */
    SCH_EXPONENTIAL, /* base * arg[0] ^ epoch */
    SCH_LINEAR,      /* from base to arg[0], linearly over the run */
} SchedOp;

typedef struct {
    double value;
    bool epochs; /* in epochs; otherwise in steps */
} Quantity;

typedef struct {
    SchedOp op;
    int a, b;
    double num;  /* SCH_CONST */
    int param;   /* SCH_PARAM */
    Quantity q;
    double arg;
} SchedNode;

typedef struct {
    const char *target; /* "lr" or a param's name */
    int param;          /* the param, or -1 for lr */
    SchedNode *node;
    int nnode;
    SrcLoc loc;
} ScheduleSpec;

/* A stopping rule, checked after every epoch's evaluation. */
typedef enum { STOP_CMP, STOP_AND, STOP_OR, STOP_PATIENCE } StopOp;
typedef struct {
    StopOp op;
    int a, b;
    const char *split, *metric; /* STOP_CMP, STOP_PATIENCE: e.g. valid, error */
    SrcLoc loc;                 /* STOP_CMP: of split.metric */
    int cmp;                    /* AstOp: < > <= >= == != */
    double value;
    int patience;
    bool maximize; /* PATIENCE: larger is better (accuracy) */
} StopNode;

typedef struct {
    StopNode *node;
    int nnode; /* 0: no rule; the root is the last node */
    SrcLoc loc;
    const char *text; /* the condition as written, for the message */
} StopSpec;

/* A sampler in place of an optimizer: draws from the posterior whose potential is N x loss. */
typedef enum { SAMPLER_NONE, SAMPLER_HMC, SAMPLER_NUTS, SAMPLER_SGLD } SamplerKind;
typedef struct {
    SamplerKind kind;
    SrcLoc loc;
    double step;          /* the leapfrog step size (the start of its adaptation) */
    double target_accept; /* dual averaging's target acceptance rate during burn-in */
    double jitter;        /* each trajectory takes a number of steps drawn uniformly from
                             [ceil((1 - jitter) leapfrog), leapfrog] */
    int64_t leapfrog;     /* hmc: leapfrog steps per proposal */
    int max_depth;        /* nuts: the deepest tree, 2^max_depth - 1 leapfrog steps */
    int64_t samples, burnin, thin, chains;
    bool adapt_step, adapt_mass; /* during burn-in: the step size (dual averaging), a diagonal mass matrix */
    double lr;            /* sgld: the step size */
    bool precondition;    /* sgld: RMSprop's diagonal preconditioner */
    double alpha, lambda; /* sgld: its decay and the floor added to sqrt(v) */
    bool parallel;        /* chains may run at once, one per core (sample.c says when they do) */
} SamplerSpec;

typedef struct {
    DataSpec data, test;
    double valid_fraction; /* held out of the training data; 0: none */
    int64_t batch, epochs;
    int64_t iterations; /* a budget of optimiser steps instead of epochs; 0: `epochs` */
    uint64_t seed;
    OptSpec opt;
    SamplerSpec sampler;
    ScheduleSpec *sched;
    int nsched;
    StopSpec stop;
    int64_t prune_every; /* prune gates every N epochs (prune_steps: steps); 0: never */
    bool prune_steps;
    SrcLoc prune_loc;
    int64_t eval_samples; /* `evaluate samples = S`: evaluation and predict average S draws of the
                             variational weights; 0: their means */
    int64_t eval_every;   /* `evaluate every N steps`: the valid and test splits after every N-th
                             step and the last (stopping rules then); 0: after every epoch */
    SrcLoc eval_loc;
    bool eval_initial;    /* `evaluate initial = true`: every split evaluated before the first step (epoch 0) */
    bool eval_train;      /* `evaluate train_eval = true`: also a fixed subset of the training split, as
                             large as the test split, evaluated like the others (DeepOBS's train eval) */
} TrainSpec;

/* SV_FD_GRAD: fd_grad(a, b, eps = num, method = op), the gradient [M, D] of heads a [M] by input b [D] */
typedef enum { SV_INPUT, SV_CONST, SV_PARAM, SV_LAYER, SV_LOSS, SV_METRIC, SV_BINARY, SV_NEG, SV_FD_GRAD } SValKind;
typedef enum { L_DENSE, L_FLATTEN, L_ACT, L_PRELU, L_GATE, L_CONV, L_POOL, L_DROPOUT, L_BATCH_NORM, L_LAYER_NORM, L_BAYES_DENSE, L_SHIFT } LayerKind;
/* LOSS_COSINE_DIVERSITY: cosine_diversity(a, eps = num), of gradients, with no target (b NULL) */
/* LOSS_SSE: sse(p, t), mse's per-sample sum; mse and sse compare with a number (b SV_CONST) too */
typedef enum { LOSS_CROSS_ENTROPY, LOSS_MSE, LOSS_GAUSSIAN_NLL, LOSS_COSINE_DIVERSITY, LOSS_SSE } LossKind;
typedef enum { METRIC_ACCURACY, METRIC_ERROR, METRIC_RMSE, METRIC_NLL, METRIC_RELATIVE_ERROR } MetricKind;

typedef struct SVal SVal;
struct SVal {
    SValKind kind;
    SrcLoc loc;
    Shape shape; /* per sample; batched for data-dependent values */
    bool is_class;
    int64_t nclass;
    SVal *a, *b;
    int index;  /* SV_INPUT: input index; SV_PARAM: param index */
    double num; /* SV_CONST */
    int op;     /* SV_BINARY: + - * /; SV_LOSS: LossKind; SV_METRIC: MetricKind */
    /* SV_LAYER */
    LayerKind layer;
    int64_t units;
    Op act;       /* L_ACT: the activation op (OP_RELU, ...); OP_COUNT for identity */
    double alpha; /* leaky_relu slope, elu alpha, prelu initial slope */
    bool bias;
    InitKind winit;   /* L_DENSE, L_CONV: how the weight starts (`init =`); INIT_UNIFORM_FANIN by default */
    double winit_std; /* its standard deviation */
    const char *winit_path; /* INIT_FILE: `init = npy("...")`, resolved against the model's directory */
    bool fixed;       /* L_DENSE, L_CONV: `trainable = false`: its weight and bias are W_FIXED */
    double bias_init; /* `bias_init = c` (bias_init_set): the bias starts at c; else like the weight's default */
    bool bias_init_set;
    SVal *coef;   /* L_GATE: the l1 coefficient / size_gate's penalty, a run-time scalar expression;
                     SV_LOSS gaussian_nll: the noise sigma (NULL: learned) */
    bool fold;        /* L_GATE (l1): `fold = true`: once its penalty is 0, pruning folds the gates'
                         magnitudes into the layer's weights (runtime/prune.c) */
    bool size_gate;   /* L_GATE: a size gate, factor_j = 1 - sigmoid(slope (j - x0)), x0 learned */
    double slope, threshold, init; /* size gate: k, the factor below which a neuron is dead, x0's start */
    int64_t declared; /* L_DENSE: units as written (before a pruning override); L_GATE: its layer's */
    int64_t min_width; /* L_GATE: pruning never leaves fewer live neurons */
    const char *wname; /* weight name prefix, e.g. "h1" or "f.dense2" */
    /* L_CONV (units filters) and L_POOL: the window over the input seen as [H, W, C]
     * (one-dimensional layers: H = 1); pool is OP_MAXPOOL or OP_AVGPOOL */
    int spatial; /* 1 or 2 */
    int64_t kh, kw, stride, dilation, pad_top, pad_left;
    Op pool;
    int stream; /* L_DROPOUT, L_BAYES_DENSE: the layer's random stream; alpha is dropout's p */
    double prior_mean, prior_scale, rho0; /* variational: its prior normal(mean, scale), rho's start */
    bool variational; /* bayes_dense, bayes_conv1d, bayes_conv2d: mean-field Gaussian weights */
    bool local;       /* bayes_dense(local = true): the local reparameterisation */
    const struct PriorDef *mc_prior; /* variational, a non-normal prior: its KL estimated at the draw */
    double eps, momentum; /* L_BATCH_NORM, L_LAYER_NORM: added to the variance; the running
                             averages' weight on each batch (batch_norm) */
    bool graph, squared;  /* cosine_diversity: of the graphs' normals (g, -1); of squared cosines */
};

typedef struct {
    const char *name;
    SrcLoc loc;
    double value;
    bool overridden; /* --set */
    SrcLoc fixed_at; /* where its value is used at compile time (line 0: nowhere) */
} ParamDef;

typedef struct {
    const char *name;
    SrcLoc loc;
    bool is_target, is_class;
    int64_t nclass;
    Shape shape; /* per sample, batched */
} IoDef;

typedef struct {
    const char *name;
    MetricKind kind;
    SVal *val;
    SrcLoc loc; /* the metric's call */
} MetricDef;

/* `prior TARGET ~ dist(...)`: a prior on the trained weights TARGET names: `weights` (every
 * dense and convolution weight matrix), `biases`, a layer (`h1`: all its weights) or one weight
 * (`h1.weight`).  Each weight takes the most specific prior that names it (lower.c). */
typedef enum { PRIOR_NORMAL, PRIOR_LAPLACE, PRIOR_CAUCHY, PRIOR_STUDENT_T } PriorKind;
typedef struct PriorDef {
    const char *target; /* as written, dotted: weights, biases, h1, h1.weight */
    SrcLoc loc, target_loc;
    PriorKind kind;
    SVal *mean, *scale; /* the location and the scale: run-time scalar expressions (params may be
                           scheduled or --set) */
    double nu;          /* student_t's degrees of freedom, fixed when compiled; cauchy: 1 */
    bool noncentred;    /* cauchy, student_t: as a scale mixture of normals (lower.c) */
    const char *text;   /* the distribution for messages and `nnc check`: cauchy(0, 1) */
} PriorDef;

/* `head bayes_linear(features, y, alpha = 1, beta = 100)`: Bayesian linear regression fitted in
 * closed form on a feature layer's values after training (runtime/bayes_linear.c); alpha and
 * beta are the prior's and the noise's precisions, or chosen by the evidence. */
typedef struct {
    bool on;
    SrcLoc loc;
    SVal *features;
    const char *features_name; /* as written, for messages */
    int target;                /* the target's io index */
    double alpha, beta;
    bool alpha_evidence, beta_evidence;
} HeadSpec;

/* One row of `nnc check`'s layer table. */
typedef struct {
    const char *owner; /* binding */
    const char *desc;  /* dense(1024) */
    Shape shape;
    int64_t nparams;
    bool fixed; /* its weights are not trained (`trainable = false`) */
    SrcLoc loc;
} LayerRow;

typedef struct {
    const char *path; /* model file as given */
    const char *dir;  /* its directory: relative data paths resolve against it */
    const char *name;
    ParamDef *param;
    int nparam;
    IoDef *io;
    int nio;
    SVal *loss;
    MetricDef *metric;
    int nmetric;
    PriorDef *prior;
    int nprior;
    LayerRow *row;
    int nrow;
    int nvariational; /* variational layers (bayes_dense, bayes_conv*), every block instance counted */
    HeadSpec head;
    TrainSpec train;
} Model;

/* A --set name=value from the command line. */
typedef struct {
    const char *key;
    double value;
} Override;

/* A dense layer's number of units, replaced (pruning recompiles with the surviving widths).
 * `layer` is the dense layer's weight prefix: h1 for h1.weight. */
typedef struct {
    const char *layer;
    int64_t units;
} WidthOverride;

typedef struct {
    Override *ov;
    int nov;
    const WidthOverride *width;
    int nwidth;
    /* The library (driver.c): the file of block `name` parsed, or NULL when there is none; and
     * the names of its blocks (*out), for did-you-mean, their count returned. */
    const Program *(*load_block)(void *ctx, const char *name);
    int (*library_names)(void *ctx, const char ***out);
    void *load_ctx;
} SemaOptions;

/* Checks the program and builds the Model; NULL after reporting errors.  Overrides whose
 * key names neither a param nor a train setting are reported by driver.c, not here. */
Model *sema_check(Arena *arena, Diag *diag, const Program *prog, const char *path, const SemaOptions *opt);

/* A scalar expression (numbers and params with + - * /, negation), evaluated with the params'
 * values `param` (one per model param, by index), or the model's own when param is NULL;
 * *uses_param (when given) is set if a param takes part. */
double sval_value(const Model *m, const SVal *v, const double *param, bool *uses_param);

/* The model's predictions, what `predict` writes: the first argument of each loss function that
 * compares one with a target or a number, in the order the loss names them, once per name:
 * "prediction" with one target, else the target's name.  Fills pred[] and name[] (at most cap);
 * returns how many. */
int sema_predictions(const Model *m, const SVal **pred, const char **name, int cap);

/* Train settings that --set may override, for usage messages. */
extern const char *const sema_train_keys[];
extern const int sema_ntrain_keys;

#endif
