/* model.h: the checked model that sema.c produces and lower.c turns into graph IR.
 * Values (SVal) form a DAG of typed layer applications, losses and scalar arithmetic; the
 * train block becomes a TrainSpec with every default filled in. */
#ifndef NNC_MODEL_H
#define NNC_MODEL_H

#include "ast.h"
#include "ir.h"

typedef enum { DATA_NONE, DATA_FASHION_MNIST, DATA_IDX, DATA_CSV } DataKind;

typedef struct {
    DataKind kind;
    SrcLoc loc;
    const char *dir;            /* idx("dir"): the four standard file names inside */
    const char *images, *labels; /* idx(images = ..., labels = ...) */
    const char *path;           /* csv */
    int target_col;             /* csv: column index of the first target column; -1: last */
    const char *target_name;    /* csv: column name (needs a header) */
    int header;                 /* csv: -1 auto, 0 no, 1 yes */
} DataSpec;

typedef enum { OPT_SGD, OPT_ADAM, OPT_ADAMW } OptKind;

typedef struct {
    OptKind kind;
    SrcLoc loc;
    double lr, momentum, weight_decay, beta1, beta2, eps;
    bool nesterov;
} OptSpec;

typedef struct {
    DataSpec data, test;
    double valid_fraction; /* held out of the training data; 0: none */
    int64_t batch, epochs;
    uint64_t seed;
    OptSpec opt;
} TrainSpec;

typedef enum { SV_INPUT, SV_CONST, SV_PARAM, SV_LAYER, SV_LOSS, SV_METRIC, SV_BINARY, SV_NEG } SValKind;
typedef enum { L_DENSE, L_FLATTEN, L_ACT, L_PRELU, L_GATE } LayerKind;
typedef enum { LOSS_CROSS_ENTROPY, LOSS_MSE } LossKind;
typedef enum { METRIC_ACCURACY, METRIC_ERROR } MetricKind;

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
    SVal *coef;   /* L_GATE: the l1 coefficient, a run-time scalar expression */
    const char *wname; /* weight name prefix, e.g. "h1" or "f.dense2" */
};

typedef struct {
    const char *name;
    SrcLoc loc;
    double value;
    bool overridden; /* --set */
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
} MetricDef;

/* One row of `nnc check`'s layer table. */
typedef struct {
    const char *owner; /* binding */
    const char *desc;  /* dense(1024) */
    Shape shape;
    int64_t nparams;
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
    LayerRow *row;
    int nrow;
    TrainSpec train;
} Model;

/* A --set name=value from the command line. */
typedef struct {
    const char *key;
    double value;
} Override;

/* Checks the program and builds the Model; NULL after reporting errors.  Overrides whose
 * key names neither a param nor a train setting are reported by driver.c, not here. */
Model *sema_check(Arena *arena, Diag *diag, const Program *prog, const char *path,
                  Override *ov, int nov);

/* Train settings that --set may override, for usage messages. */
extern const char *const sema_train_keys[];
extern const int sema_ntrain_keys;

#endif
