/* sample.h: posterior sampling in place of training (`sampler hmc(...)` in the train block).
 * train_run hands a model with a sampler to sample_run.  Hamiltonian Monte Carlo over every
 * trained weight, with the potential U = N x loss (the negative log likelihood of the whole
 * training split plus the negative log prior: lower.c scales the prior by 1/N).  The leapfrog
 * steps run as generated kernels (the `update` program's hmc_kick after each gradient, the
 * `drift` program's hmc_drift); the momentum draws, the Metropolis test and the adaptation run
 * here.  Outputs in the run directory: draws_chain<c>.safetensors (each weight with a leading
 * draw dimension), summary.json, and metrics.jsonl lines. */
#ifndef NNC_SAMPLE_H
#define NNC_SAMPLE_H

#include "train.h"

int sample_run(const TrainConfig *cfg, TrainResult *res);

#endif
