/* checkpoint.h: a training run's complete state in one safetensors file, so that a run can be
 * resumed bit for bit: every weight and optimiser-state tensor under its model-level name
 * (h1.weight, h1.weight.adam_m, ...), and in the header's metadata the position (epoch, step,
 * steps into the epoch), the shuffle generator's state, the partial training loss and time, the
 * stopping rule's state, the current (possibly pruned) widths, and what the run is: the
 * model's name and a hash of its source, and the --set values it runs with.  Written
 * atomically (runtime/safetensors.c).  Also loads initial weights (`train --init`). */
#ifndef NNC_CHECKPOINT_H
#define NNC_CHECKPOINT_H

#include "exec.h"
#include "model.h"
#include "safetensors.h"
#include "schedule.h"

enum { CKPT_MAX_GATES = 64 };

typedef struct {
    int64_t epoch;        /* the epoch to run next, 1-based */
    int64_t epoch_step;   /* steps of it already done (a checkpoint taken on a signal) */
    int64_t step;         /* optimiser steps done in all */
    uint64_t shuffle[4];  /* the shuffle generator's state before `epoch`'s shuffle */
    double loss_sum;      /* `epoch`'s training loss so far, summed over its samples */
    double train_s;       /* seconds its steps so far took (with epoch_step > 0; the one timing value) */
    StopState stop;
    bool finished;        /* a stopping rule ended the run */
    bool reported_min[CKPT_MAX_GATES]; /* gates whose minimum width was reported */
    char pre[512];        /* pre_sgd's estimate (precond_format), or "" */
} TrainState;

/* What a checkpoint belongs to; resuming refuses a checkpoint of anything else. */
typedef struct {
    const char *model;    /* its name */
    const char *hash;     /* of the model's source tokens (driver_source_hash), 16 hex digits */
    const char *settings; /* the --set values other than epochs, canonical: "a=1,b=2"; NULL: any
                             (eval and predict load weights whatever the run's settings were) */
    const char *text_hash; /* of its bytes (driver_text_hash), which older checkpoints hold; NULL: none */
} RunIdentity;
/* Whether a checkpoint's model_hash is the model's (by tokens, or by bytes as older ones are). */
bool checkpoint_hash_matches(const RunIdentity *id, const char *hash);

int checkpoint_write(const char *path, const Exec *e, const TrainState *s, const RunIdentity *id, char *err,
                     size_t nerr);

typedef struct Checkpoint {
    SafeTensors *st;
    TrainState state;
    WidthOverride width[64]; /* the layers' widths when it was written */
    int nwidth;
    char layer[64][128];     /* their names */
} Checkpoint;

/* Opens and checks a checkpoint: its metadata, and when `expect` is given that it belongs to
 * the same model and settings.  -1 with the reason (file, what is wrong). */
int checkpoint_open(const char *path, const RunIdentity *expect, Checkpoint *c, char *err, size_t nerr);
/* Every weight and optimiser-state tensor of e's plan from the checkpoint: each must be there,
 * float32, with the plan's shape.  With params_only, only the model's own tensors: its trained
 * weights and statistics, not the optimiser's state (eval, predict). */
int checkpoint_load(const Checkpoint *c, Exec *e, bool params_only, char *err, size_t nerr);
void checkpoint_close(Checkpoint *c);
/* The fitted post-training head the checkpoint holds (tensors head.mean, head.chol and the
 * metadata 'head'): 1 and *h filled, 0 when it has none, -1 with the reason when it is broken. */
struct BayesLinear;
int checkpoint_load_head(const Checkpoint *c, const char *path, struct BayesLinear *h, char *err, size_t nerr);

/* `--init FILE`: the model's trained weights by name from a safetensors file (float32 or
 * float64, the model's shapes); optimiser state tensors in it are ignored.  Every mismatch is
 * a line on `report` (a weight missing, a shape that differs, a tensor the model does not
 * have); -1 when there was any. */
int weights_load(const char *path, Exec *e, FILE *report);

#endif
