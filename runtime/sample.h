/* sample.h: posterior sampling in place of training (`sampler hmc(...)`, `nuts(...)` or
 * `sgld(...)` in the train block).  train_run hands a model with a sampler to sample_run.
 * Every trained weight is sampled, with the potential U = N x loss (the negative log
 * likelihood of the whole training split plus the negative log prior: lower.c scales the prior
 * by 1/N).  HMC's leapfrog steps run as generated kernels (the `update` program's hmc_kick
 * after each gradient, the `drift` program's hmc_drift), NUTS's in the runtime (nuts.c) on the
 * `grad` program's gradients, SGLD's as the update program's sgld ops on minibatches; the
 * momentum draws, the Metropolis test and the adaptation run here.  Outputs in the run
 * directory: draws_chain<c>.safetensors (each weight with a leading draw dimension),
 * summary.json, metrics.jsonl lines and checkpoint.safetensors (sample_checkpoint.c), from
 * which --resume continues bit for bit. */
#ifndef NNC_SAMPLE_H
#define NNC_SAMPLE_H

#include "train.h"

int sample_run(const TrainConfig *cfg, TrainResult *res);

#endif
