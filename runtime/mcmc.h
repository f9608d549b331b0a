/* mcmc.h: convergence diagnostics of Markov chains (runtime/; used by the sampler, sample.c):
 * rank-normalised split R-hat and bulk and tail effective sample sizes as Stan defines them
 * (Vehtari, Gelman, Simpson, Carpenter and Buerkner, 2021), and quantiles.  Draws of one scalar
 * quantity are given chain after chain: x[c * n + i] is draw i of chain c. */
#ifndef NNC_MCMC_H
#define NNC_MCMC_H

#include <stdint.h>

typedef struct {
    double mean, sd, q5, q50, q95;
    double ess_bulk, ess_tail, rhat;
} McmcSummary;

/* Everything above for m chains of n draws (n >= 4).  sd has n m - 1 in its denominator. */
void mcmc_summary(const double *x, int m, int64_t n, McmcSummary *s);

/* The parts, for tests: the effective sample size of the draws as given (Geyer's initial
 * monotone sequence over the chains' autocorrelations), the split-and-rank-normalised R-hat
 * (the larger of the bulk and folded ones), the p-quantile with linear interpolation between
 * order statistics (NumPy's default), and the standard normal's inverse CDF. */
double mcmc_ess(const double *x, int m, int64_t n);
double mcmc_rhat(const double *x, int m, int64_t n);
double mcmc_quantile(const double *x, int64_t n, double p);
double mcmc_normal_quantile(double p);

#endif
