/* sample_internal.h: what sample.c (the samplers) and sample_checkpoint.c (their checkpoints)
 * share: a sampling run's state, a chain's progress, and the flat views of the weights. */
#ifndef NNC_SAMPLE_INTERNAL_H
#define NNC_SAMPLE_INTERNAL_H

#include "nuts.h"
#include "rng.h"
#include "sample.h"

typedef struct {
    const Weight *w;
    int r, minv;    /* nodes of its momentum and inverse mass */
    int64_t n, off; /* elements, and where they sit in the flat vectors */
} Param;

/* A chain's progress as the run's bar shows it when chains run at once: iterations done, the
 * last window's acceptance, divergences; written by its worker at each window of 100
 * iterations, read by the run's thread (atomically). */
struct ChainProgress {
    int64_t it, div;
    double acc;
};

typedef struct {
    const TrainConfig *cfg;
    const SamplerSpec *sp;
    Exec *e;
    const Graph *g;
    FILE *out, *metrics;
    Param *par;
    int npar;
    int64_t dim;
    int drift, kick_slot, step_slot; /* hmc's leapfrog programs and scalars */
    int64_t sgld_step, sgld_batch;   /* sgld: steps so far in this chain, and the next batch of the pass */
    int64_t sgld_skips;               /* sgld: steps skipped in a row for a non-finite loss (not in checkpoints) */
    bool keep;                        /* sgld: this iteration's position is kept (read before the step) */
    Nuts nuts;                        /* nuts: its trees' vectors */
    double *qd, *gd;                  /* nuts: the position and grad U there */
    float *gbuf;
    ModelData data;
    int64_t n_train, batch, nbatch, *idx; /* the training split, in batches of at most the plan's */
    const int64_t *order0;                /* the split's order: each chain's idx starts from it (sgld shuffles idx) */
    bool resident;                        /* it is one batch, loaded once */
    bool class_target;
    float *q, *r, *minv; /* the current position, a momentum, the inverse mass */
    Rng rng;
    double u;      /* the potential at q */
    int64_t grads; /* gradient passes over the training split */
    int64_t divergences;
    double t0, first_draw_s;
    struct ChainProgress *progress; /* set in a worker, one of several running chains at once
                                       (sample.c): per chain, what the run's progress bar shows;
                                       a worker writes no checkpoints and shows no bar itself */
} Hmc;

/* The trained weights as one flat vector: the positions, hmc's momenta or inverse masses, or
 * the gradients, read (put false) or written.  -1 after a device error. */
enum { WHICH_Q, WHICH_R, WHICH_MINV, WHICH_GRAD };
int sample_flat_io(Hmc *h, int which, float *v, bool put);
/* "hmc", "nuts" or "sgld": in the start line, draws files and checkpoints. */
const char *sample_name(SamplerKind k);

/* Dual averaging of log eps toward the target acceptance. */
typedef struct {
    double mu, hbar, log_eps, log_eps_bar;
    int64_t t;
} DualAvg;

/* A chain's whole progress: its draws so far and the state of its walk, all that a checkpoint
 * must hold to go on bit for bit (with Hmc's position, generator and counters). */
typedef struct {
    float *q;          /* kept draws x dim */
    double *potential; /* per kept draw */
    int64_t kept, nkeep; /* draws kept so far, and in all */
    int64_t it;          /* iterations done */
    double eps;          /* the step size (sgld: lr) */
    DualAvg da;
    int win;             /* the mass-matrix window being filled */
    int64_t wn;          /* positions in it so far, their Welford mean and sum of squares */
    double *mean, *m2;
    int64_t window_div, reported;           /* the 100-iteration window's divergences; divergences printed */
    double window_acc, window_depth;        /* its acceptance and tree depth sums */
    double acc_sum, depth_sum;              /* over the sampling iterations */
    int64_t grads_start;                    /* Hmc.grads when the chain started */
    double seconds;                         /* spent on it (before a resume, and after) */
    int64_t divergences, warm_divergences;  /* while sampling, and in warm-up */
    int64_t max_depth_hits;                 /* nuts: trees that stopped at max_depth */
    /* at the end: */
    double accept, step, mean_depth;
    int64_t grads;
} Chain;

/* checkpoint.safetensors in the run directory (sample_checkpoint.c; docs/formats.md): chains
 * 0..c-1 complete, chain c at ch[c].it.  sample_resume reads one back into h and ch (*c the
 * chain to go on with, *started true; with no checkpoint, which is not an error, *c is 0 and
 * *started false).  -1 after reporting why. */
int sample_checkpoint(Hmc *h, const Chain *ch, int c);
int sample_resume(Hmc *h, Chain *ch, int *c, bool *started);
/* metrics.jsonl without the lines after chain `chain`'s iteration `it` (1-based chain), which
 * a killed run wrote after its checkpoint.  -1 with errno set. */
int sample_trim_metrics(const char *path, int chain, int64_t it);

#endif
