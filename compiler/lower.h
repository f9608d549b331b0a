/* lower.h: Model -> forward graph IR (lower.c), reverse-mode autodiff (autodiff.c) and the
 * optimiser update nodes (update.c): the three passes that build a training Graph. */
#ifndef NNC_LOWER_H
#define NNC_LOWER_H

#include "ir.h"
#include "model.h"

/* The forward graph, its loss the model's losses, gate penalties and the negative log prior
 * (times 1/N); NULL after reporting errors (a prior that names no weight). */
Graph *lower_model(Arena *arena, const Model *m, Diag *diag);
/* A learned noise sigma is softplus of the trained scalar <target>.sigma_raw. */
#define SIGMA_RAW "sigma_raw"

/* spaces.c: neuron spaces of the forward graph, which gated layers may shrink, and the
 * activation statistics outputs of every gated layer (called by lower_model). */
void spaces_analyse(Graph *g);

/* Appends the backward pass for d loss / d every trained weight; sets Weight.grad. */
void autodiff_graph(Graph *g);
/* Appends the nodes of d root / d wrt[k] for a scalar node `root` (which may itself be
 * computed from a backward pass: the gradient of a gradient) and stores them in grad_out[k]
 * (-1 when root does not depend on wrt[k]).  Nothing is recomputed instead of read. */
void autodiff_vjp(Graph *g, int root, const int *wrt, int nwrt, int *grad_out);
/* The same for several roots of any shape, each with its cotangent seed[k] (a node of its
 * shape): grad_out[k] = sum over roots of seed' d root / d wrt[k].  With the gradients as roots
 * and a direction as seeds this is a Hessian-vector product without forming sum(<G, v>). */
void autodiff_vjp_seeded(Graph *g, const int *root, const int *seed, int nroot, const int *wrt, int nwrt, int *grad_out);

/* Appends one update node per trained weight, with its optimiser state weights. */
void update_graph(Graph *g, const OptSpec *opt);
/* Or, with a sampler, its leapfrog ops: hmc_kick per weight (update program), hmc_drift (drift). */
void sampler_graph(Graph *g, const SamplerSpec *sp);

/* programs.c: the graph's programs.  programs_build defines grad, update and eval (at
 * PROG_GRAD, PROG_UPDATE, PROG_EVAL); programs_add and programs_root define more; a
 * program's index, by name, or -1. */
void programs_build(Graph *g);
int programs_add(Graph *g, const char *name, bool train, int after);
void programs_root(Graph *g, int prog, int node);
int programs_find(const Graph *g, const char *name);

#endif
