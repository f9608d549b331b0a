/* ir.h: the graph IR.  A Graph is a list of Nodes in topological order (every input id is
 * smaller than the node's id); lower.c builds the forward part, autodiff.c appends the
 * backward and update parts.  Shapes are per sample: a batched tensor has an implicit leading
 * batch dimension B that is a run-time value.  Weights, run-time scalar slots and model inputs
 * are described in side tables.  ir_verify() runs after every pass; ir_print() is the
 * deterministic text form used by `nnc emit --ir`. */
#ifndef NNC_IR_H
#define NNC_IR_H

#include "diag.h"
#include "util.h"

typedef enum {
#define OP(e, name, nin, cls, dom, flags, operands, attrs, syn) OP_##e,
#include "ops.def"
#undef OP
    OP_COUNT
} Op;

typedef enum { OC_LEAF, OC_VIEW, OC_GEMM, OC_MAP, OC_COLSUM, OC_SUM, OC_ROW, OC_UPDATE, OC_WINDOW, OC_PERMUTE, OC_INDEXED, OC_COUNT } OpClass;

/* Facts about an op (see ops.def for their meaning). */
enum { OF_KEEPS0 = 1, OF_KINKED = 2, OF_RECOMPUTE = 4, OF_NOGRAD = 8 };

typedef struct {
    const char *name;
    int nin;
    OpClass cls;
    int domain;           /* the operand whose shape is the kernel's iteration space, or -1: its own */
    unsigned flags;       /* OF_* */
    const char *operands; /* input names, "$" before a run-time scalar */
    const char *attrs;    /* names of the immediates in Node.attr[] */
    const char *synopsis;
} OpInfo;
extern const OpInfo op_info[OP_COUNT];
static inline bool op_has(Op op, unsigned flag) { return (op_info[op].flags & flag) != 0; }
/* Whether input i of op is a run-time scalar ("$" in its operand list). */
bool op_operand_is_runtime(Op op, int i);

typedef enum { DT_F32, DT_I32 } DType;

enum { IR_MAX_RANK = 4, IR_MAX_IN = 8, IR_MAX_ATTR = 8 };

typedef struct {
    int rank; /* per-sample rank; 0 is a scalar (per sample when batched) */
    int64_t dim[IR_MAX_RANK];
    bool batched; /* an implicit leading batch dimension */
} Shape;

int64_t shape_numel(Shape s); /* per sample */
bool shape_eq(Shape a, Shape b);
Shape shape_scalar(void);
Shape shape_vec(int64_t n, bool batched);
/* "f32[B,784]" style text into buf */
const char *shape_str(char *buf, size_t n, DType dt, Shape s);

/* Which part of the step a node belongs to. */
typedef enum { PH_FORWARD, PH_BACKWARD, PH_UPDATE } Phase;

typedef struct {
    Op op;
    DType dtype;
    Shape shape;
    int in[IR_MAX_IN];
    int nin;
    double attr[IR_MAX_ATTR];
    int ref;          /* INPUT: input index; WEIGHT: weight index; PARAM: scalar slot */
    Phase phase;
    SrcLoc loc;       /* model line it came from */
    const char *name; /* user-level label, e.g. "h1" (may be NULL) */
    int remat_of;     /* a backward recomputation of this forward node, or -1 */
} Node;

/* How a weight is initialised and what it is: a trained parameter, an optimiser's state, a
 * model statistic (batch_norm's running averages: not trained, but part of the model, saved
 * and loaded with its parameters and used in evaluation), or a fixed weight (`trainable =
 * false`: never trained nor updated, saved with the model). */
typedef enum { W_PARAM, W_STATE, W_STAT, W_FIXED } WeightKind;
/* INIT_FILE: read from the NPY file init_path (`init = npy("...")`) */
typedef enum { INIT_ZERO, INIT_ONE, INIT_CONST, INIT_UNIFORM_FANIN, INIT_NORMAL, INIT_TRUNC_NORMAL, INIT_FILE } InitKind;

typedef struct {
    const char *name; /* h1.weight, h1.bias, h1.gate, h1.weight.adam_m ... */
    WeightKind kind;
    Shape shape;
    InitKind init;
    double init_value; /* INIT_CONST: the value; INIT_NORMAL, INIT_TRUNC_NORMAL: the standard deviation
                          (truncated: redrawn beyond 2 of them, as TensorFlow and DeepOBS do) */
    int64_t fan_in;    /* INIT_UNIFORM_FANIN: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
    const char *init_path; /* INIT_FILE: the NPY file (resolved against the model's directory) */
    int node;          /* the WEIGHT node */
    int grad;          /* node holding d loss / d weight, or -1 */
    int prox;          /* an L1 penalty coefficient (scalar node) applied by a proximal step, or -1 */
    int space[2];      /* per dimension of the matrix view [dim 0, the rest]: the neuron space it
                          indexes (see Space), or -1 */
    int64_t space_inner[2]; /* consecutive elements per entry of that space: a conv weight's
                               [F, C, kh, kw] has kh kw per input channel; else 1 */
    int prior;         /* the Model's prior on it (an index into Model.prior), or -1 */
    bool mixture_part; /* z or log_tau of a weight under a non-centred prior (lower.c), whose log
                          prior was made with it */
    bool variational;  /* mu or rho of a variational layer's weight: its prior is the layer's (a KL term) */
    int of;            /* W_STATE: the weight it belongs to */
    int grad_power;    /* W_STATE: a running sum of the gradient's powers of this degree (a
                          momentum or first moment 1, a second moment 2), or 0: how it scales
                          when its weight is rescaled (prune.c's gate folding) */
    int dir, hvp;      /* W_PARAM in a graph with an `hvp` program (hvp.c): the node of its part of
                          the direction v (a scratch W_STATE weight) and of its part of H v, or -1 */
    bool scratch;      /* W_STATE: set by the runtime before each use, never saved (a direction) */
    int stat;          /* W_STAT: the node of the batch statistic it averages (running_avg) */
    double momentum;   /* W_STAT: the running average's weight on the batch's value */
    SrcLoc loc;
} Weight;

/* Run-time scalar slots, set by the runtime before every step. */
/* SC_TRAIN: 1 while a program runs in training mode, 0 in evaluation (set per program by the
 * runtime); SC_SEED, SC_STEP_LO, SC_STEP_HI: the random generator's seed (24 bits) and the
 * training step, split in 24-bit halves so that a float holds each exactly; SC_DATA_INV_N:
 * 1 / N, N the number of training samples (a log prior's weight beside a per-sample mean
 * likelihood), set by the runtime once the data is loaded; SC_HMC_KICK, SC_HMC_STEP: the
 * leapfrog's momentum and position step sizes (hmc_kick, hmc_drift), set by the sampler;
 * SC_SGLD_DRIFT, SC_SGLD_NOISE: SGLD's lr N / 2 and sqrt(lr) (sgld, sgld_rms); SC_NOISE: 1 while the
 * variational layers draw their weights (in training, and in an evaluation over draws), else 0
 * (their means). */
typedef enum { SC_PARAM, SC_LR, SC_ADAM_STEP, SC_ADAM_BC2_SQRT, SC_TRAIN, SC_SEED, SC_STEP_LO, SC_STEP_HI, SC_DATA_INV_N,
               SC_HMC_KICK, SC_HMC_STEP, SC_SGLD_DRIFT, SC_SGLD_NOISE, SC_NOISE } ScalarKind;
typedef struct {
    const char *name;
    ScalarKind kind;
    double value; /* SC_PARAM: the value (after --set) */
} Scalar;

typedef struct {
    const char *name;
    bool is_target;
    bool is_class; /* class labels stored as i32 */
    int64_t nclass;
    Shape shape; /* batched */
    int node;
    int grad; /* d loss / d input when Graph.input_grads, else -1 */
    SrcLoc loc;
} Input;

typedef enum { AGG_MEAN, AGG_FRACTION, AGG_ONE_MINUS_FRACTION, AGG_RMS, AGG_VECTOR, AGG_PREDICT, AGG_ROWS, AGG_WEIGHTS, AGG_FEATURES } Aggregate;
typedef struct {
    const char *name; /* "loss", "accuracy" */
    int node;
    Aggregate agg; /* MEAN: a per-batch mean, weighted by rows; FRACTION: a count over samples;
                      RMS: the square root of a per-batch mean weighted by rows (rmse);
                      VECTOR: per-column sums, added over batches (metrics computed from them);
                      PREDICT: the model's prediction per sample (the first loss's first argument),
                      not aggregated: what `predict` writes out;
                      ROWS: a per-sample value, not aggregated (nll_rows: the nll metric of each
                      sample, which a sampler's predictive NLL needs per draw);
                      WEIGHTS: a scalar of the weights alone, the same for every batch, read once
                      per evaluation (kl: the variational layers' KL(q || prior); a head's
                      gaussian_nll sigma, T.sigma);
                      FEATURES: a post-training head's features per sample, not aggregated
                      (head.features: bayes_linear's fit and predictions read them) */
} Output;
/* A scalar output (the loss, a metric); the graph lists them first. */
static inline bool output_is_scalar(const Output *o) { return o->agg < AGG_VECTOR; }

/* A neuron space: the units of one dense layer, or the output channels of a convolution.
 * They index that layer's weight rows and bias, the gates and prelu slopes applied to its
 * output, and the columns of every dense or convolution layer that reads it (spaces.c).
 * Pruning removes entries of a space from all of these at once. */
typedef struct {
    const char *layer; /* the layer's weight prefix: h1 */
    int64_t width;
    const char *fixed; /* why its width cannot change, or NULL */
} Space;

/* A gated layer (gate or size_gate), found by lower.c, analysed by spaces.c. */
typedef enum { GATE_L1, GATE_SIZE } GateKind;
typedef struct {
    const char *layer;  /* the gate's weight prefix: h1 */
    GateKind kind;
    int weight;         /* the gate vector (GATE_L1) or the boundary b (GATE_SIZE), a weight index */
    int node;           /* the gate op: its output is the layer's activations */
    double slope, threshold, scale; /* GATE_SIZE: factor_j = sigmoid(slope (x0 - j)), x0 = scale b;
                                       a neuron is dead below threshold */
    int64_t min_width;
    int space;          /* the neurons it gates, or -1 (model inputs) */
    const char *fixed;  /* why its width cannot change, or NULL: it can be pruned */
    int out_sum, out_sumsq; /* eval outputs: per-neuron sums of the activations and their squares */
    const struct SVal *coef; /* GATE_L1: its penalty coefficient, a scalar expression of params */
    bool fold;          /* `fold = true`: pruning folds |gate| into the layer once coef is 0 */
    int fold_weight[2]; /* the weights whose row j scales with neuron j's |gate|: the layer's
                           weight and its bias (or -1); spaces.c, when folding is possible */
    const char *nofold; /* why the gates cannot be folded into the layer, or NULL */
} GateInfo;

/* A program: what one call of exec_run computes (programs.c).  The nodes its roots need, in
 * training or evaluation mode (the SC_TRAIN scalar), and the program of the same step it runs
 * right after (update after grad), whose values it reads rather than computes, or -1. */
typedef struct {
    const char *name;
    int *root;
    int nroot, caproot;
    bool train;
    int after;
} ProgramDef;
/* The programs every training graph has, at these indices (programs_build). */
enum { PROG_GRAD, PROG_UPDATE, PROG_EVAL, PROGRAMS_MAX = 32 };

typedef struct Graph {
    Arena *arena;
    Node *node;
    int nnode, capnode;
    Weight *weight;
    int nweight, capweight;
    Scalar *scalar;
    int nscalar, capscalar;
    Input *input;
    int ninput, capinput;
    Output *output; /* [0] is the loss; then the metrics */
    int noutput, capoutput;
    GateInfo *gate;
    int ngate, capgate;
    Space *space;
    int nspace, capspace;
    ProgramDef *prog; /* programs.c */
    int nprog, capprog;
    int loss;          /* node id of the total loss */
    int nforward;      /* nodes [0, nforward) are the forward pass */
    bool has_backward; /* autodiff ran */
    bool input_grads;  /* autodiff also differentiates by the f32 inputs */
    Phase phase;       /* the phase new nodes belong to */
    const char **lib_path; /* the library files' names: a SrcLoc in file k > 0 is in lib_path[k - 1] */
    int nlib;
} Graph;

/* The name of the file a location is in: the model's (`path`), or a library file's. */
const char *ir_loc_file(const Graph *g, SrcLoc loc, const char *path);

/* A gated layer's width: its neurons, or the channels of a feature map (the last dimension). */
static inline int64_t gate_width(const Graph *g, const GateInfo *gi) {
    Shape s = g->node[gi->node].shape;
    return s.dim[s.rank - 1];
}

Graph *ir_new(Arena *arena);
int ir_add(Graph *g, Op op, DType dt, Shape shape, const int *in, int nin, SrcLoc loc);
int ir_add1(Graph *g, Op op, Shape shape, int a, SrcLoc loc);
int ir_add2(Graph *g, Op op, Shape shape, int a, int b, SrcLoc loc);
int ir_add3(Graph *g, Op op, Shape shape, int a, int b, int c, SrcLoc loc);
int ir_const(Graph *g, double v, SrcLoc loc);
/* A model input or target: an INPUT node (i32 for class labels, one per row). */
int ir_input(Graph *g, const char *name, bool is_target, bool is_class, int64_t nclass, Shape shape, SrcLoc loc);
int ir_weight(Graph *g, const char *name, WeightKind kind, Shape shape, InitKind init, SrcLoc loc);
int ir_scalar(Graph *g, const char *name, ScalarKind kind, double value, SrcLoc loc);
int ir_find_scalar(const Graph *g, const char *name);
/* The node of the model's prediction (the AGG_PREDICT output: the first loss's first argument,
 * the logits of a classifier), or -1. */
int ir_prediction(const Graph *g);
void ir_add_output(Graph *g, const char *name, int node, Aggregate agg);
/* The geometry of a window op (OC_WINDOW): the big side [H,W,C] and the small side [OH,OW,.]
 * of its sliding windows, and the window attributes (ops.def). */
typedef struct {
    int64_t H, W, C, OH, OW, kh, kw, stride, dilation, pad_top, pad_left;
} Window;
Window ir_window(const Graph *g, const Node *n);

/* How a node is computed: its op's class (ops.def), except that a matrix product with a unit
 * dimension is a loop kernel (OC_MAP or OC_COLSUM; ir.c says which). */
OpClass ir_class(const Graph *g, const Node *n);
/* The shape a node's loop kernel iterates over: its own, or its domain operand's (ops.def). */
Shape ir_domain(const Graph *g, const Node *n);
/* Node x seen through its views (reshapes): the node whose buffer, or register value, it is. */
int ir_view_source(const Graph *g, int x);

/* Checks every invariant; on failure prints what broke and aborts (an internal bug). */
void ir_verify(const Graph *g, const char *after_pass);
/* `%7 = relu %6  f32[B,1024]  # file.nn:9:12 h1` per node. */
void ir_print(StrBuf *b, const Graph *g, const char *path);

#endif
