/* fd_grad.h: input-gradients by finite differences and their cosine diversity, built as graph
 * IR (fd_grad.c); lower.c calls these for fd_grad(...) and cosine_diversity(...). */
#ifndef NNC_FD_GRAD_H
#define NNC_FD_GRAD_H

#include "ir.h"

/* The gradient [B, M, D] of the heads [B, M] (a forward node) by the model input x [B, D]:
 * the forward nodes between them evaluated again at fd_perturb's points, then fd_diff
 * (method 0 central, 1 forward, 2 backward; step eps).  -1 after reporting, at loc, a node on
 * the way that cannot be evaluated at the points. */
int fd_grad_lower(Graph *g, int heads, int x, double eps, int method, SrcLoc loc, Diag *diag);

/* The mean over the batch of the mean pairwise cosine similarity between the M >= 2 rows of
 * grads [B, M, D], each row normalised by sqrt(|g|^2 + eps^2) (finite at g = 0): a scalar.
 * With `graph`, the cosine between the normals (g_m, -1) of the heads' graphs instead,
 * (g_m . g_m' + 1) / sqrt((|g_m|^2 + 1)(|g_m'|^2 + 1)), which in one dimension is the cosine of
 * the angle between the heads' tangents; with `squared`, the mean of the squared cosines. */
int cosine_diversity_lower(Graph *g, int grads, double eps, bool graph, bool squared, SrcLoc loc);

#endif
