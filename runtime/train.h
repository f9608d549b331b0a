/* train.h: the training loop.  Given a planned graph and its compiled step functions, loads
 * the data the model names, initialises weights from the seed, trains for the configured
 * epochs (shuffled batches, the last one partial), evaluates on the validation and test
 * splits after every epoch, and writes one JSON object per evaluation to metrics.jsonl.
 * A non-finite loss stops training with the op and layer that produced it.  With `prune gates`,
 * dead neurons are removed between epochs and training goes on in a recompiled model. */
#ifndef NNC_TRAIN_H
#define NNC_TRAIN_H

#include <signal.h>
#include <stdio.h>

#include "data.h"
#include "exec.h"
#include "checkpoint.h"
#include "model.h"

typedef struct {
    const Model *model;
    Exec *exec;
    const char *out_dir; /* metrics.jsonl goes here; NULL: no files */
    FILE *out;           /* progress and per-epoch lines */
    Diag *diag;          /* located messages about the model (a NaN's source line) */
    int progress;        /* -1: when out is a terminal, 0 never, 1 always */
    const char *backend; /* for the header line */
    /* Pruning (`prune gates`): rebuild recompiles the model with dense layers at the given
     * widths and opens it on the same device, or returns NULL after printing why; retire
     * releases an Exec the loop no longer uses (the first one, or one rebuild returned). */
    Exec *(*rebuild)(void *ctx, const WidthOverride *width, int nwidth);
    void (*retire)(void *ctx, Exec *e);
    void *rebuild_ctx;
    /* Checkpoints (checkpoint.h), written to out_dir/checkpoint.safetensors every
     * checkpoint_every epochs (0: none but the last), at the end, and on SIGINT or SIGTERM
     * (at the next step boundary; train_run then returns 128 + the signal).  None when
     * identity is NULL. */
    const RunIdentity *identity;
    int64_t checkpoint_every;
    const TrainState *resume; /* continue from here; `exec` already holds the checkpoint's weights */
    bool resume_sampling;     /* a sampler: continue from out_dir's checkpoint, when there is one */
    const char *init;         /* initial weights (a safetensors file) replacing the seeded ones */
    /* Data parallel (dist.h): each rank takes its share of every batch; the exec was planned
     * for a part of the batch.  shards > 0 (--deterministic-reduce): the batch is cut into that
     * many parts however many ranks there are, each part's gradient is gathered and they add
     * up in part order, so that 1, 2 or 4 ranks give the same bits. */
    int64_t shards;
    /* TensorBoard (tensorboard.h): an event file in this directory (NULL: none; only where
     * out_dir is set) with every metrics line's numbers, and the weights' histograms every
     * histogram_every epochs (0: never). */
    const char *tensorboard;
    int64_t histogram_every;
} TrainConfig;

typedef struct {
    int64_t epochs, steps;
    double train_loss;
    double test_loss, test_metric[8]; /* the graph's outputs 1.. (metrics), on the test split */
    double valid_loss;
    double samples_per_s, seconds;
    double peak_rss, expected_rss; /* bytes: measured, and plan + data + runtime baseline */
} TrainResult;

/* 0 on success; 1 after reporting an error in the data or a non-finite value; 128 + the signal
 * after SIGINT or SIGTERM.  Also writes out_dir/result.json (DeepOBS's layout) at the end. */
int train_run(const TrainConfig *cfg, TrainResult *res);

/* The optimizer's hyperparameters into a JSON object, as result.json's optimizer_hyperparams. */
struct cJSON;
void train_opt_json(struct cJSON *hp, const OptSpec *o);

/* The model's data sets, as the train block says (used by train_run and gradcheck). */
typedef struct {
    Dataset train, test;
    bool has_test;
    DataExpect expect;
} ModelData;
int train_load_data(const Model *m, const Graph *g, ModelData *d, char *err, size_t nerr);
/* What g reads per sample: a field per input and target, in g's order (data_expect_free it). */
void train_expect(const Graph *g, DataExpect *ex);
void train_free_data(ModelData *d);

/* A run's budget at `steps_per_epoch`: its optimiser steps (`iterations`, else every step of
 * `epochs` epochs) and its epochs (`epochs`, else enough for the iterations, the last one cut
 * short where they end). */
int64_t train_total_steps(const TrainSpec *t, int64_t steps_per_epoch);
int64_t train_epochs(const TrainSpec *t, int64_t steps_per_epoch);

/* The schedules' values for step t (1-based): every param's into param (m->nparam entries);
 * returns the learning rate. */
double train_schedule_at(const Model *m, int64_t t, int64_t steps_per_epoch, int64_t total_steps, double *param);
/* The run-time scalars of optimiser step t (1-based) into e->scalars: params and the learning
 * rate (scheduled ones evaluated), Adam's bias corrections.  When lr / param (one per model
 * param) are given they receive the values used. */
void train_step_scalars(const Model *m, Exec *e, int64_t t, int64_t steps_per_epoch, int64_t total_steps, double *lr,
                        double *param);

/* Evaluates the weights cfg->exec holds on the model's validation split (the one training
 * held out) and test data, printing loss, metrics and gate statistics.  0, or 1 after an error. */
int train_eval(const TrainConfig *cfg);

/* The model's predictions (each head's: the first argument of its target's loss, e.g. the
 * logits), side by side in the graph's order of its AGG_PREDICT outputs, for every sample of
 * `in`: n x *ncols floats (malloc'd), or NULL after reporting an error. */
float *train_predict(const TrainConfig *cfg, const Dataset *in, int64_t *ncols);

/* After an update program: the first update node from `from` on whose value (0, or NaN when
 * the gradient it read held a NaN or an infinity) is not finite, or -1. */
int train_bad_update(Exec *e, int from);
/* 0, 1, ..., n - 1 (malloc'd, room for one more): a data set's samples in their own order. */
int64_t *train_iota(int64_t n);
/* The n training-data samples in the seeded order that holds the validation split out: the
 * last *n_valid are the validation samples (the same in training, evaluation and sampling). */
int64_t *train_split_order(const TrainSpec *t, int64_t n, int64_t *n_valid);
/* mkdir -p; 0 or -1 (errno set). */
int train_make_dirs(const char *path);

/* SIGINT and SIGTERM, while training or sampling runs: caught from train_signals_catch on (the
 * handlers before it kept in old, and put back by train_signals_restore); train_signal() is
 * the one that came, or 0.  The loop stops at its next step boundary with a checkpoint. */
void train_signals_catch(struct sigaction old[2]);
void train_signals_restore(const struct sigaction old[2]);
int train_signal(void);
/* Test only (tests/checkpoint): NNC_TEST_SIGNAL_AT="E:S" asks for SIGTERM right after step S
 * (1-based) of epoch E ("E:eval": after its last step, *step 0; a sampler reads it as chain
 * and iteration).  Unset or malformed, *epoch is 0: never. */
void train_test_signal_at(int64_t *epoch, int64_t *step);

/* Weight initialisation (deterministic in the seed), written to the device. */
int train_init_weights(Exec *e, uint64_t seed); /* 1 after printing why (an init file) */

#endif
