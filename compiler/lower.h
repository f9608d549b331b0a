/* lower.h: Model -> forward graph IR (lower.c), reverse-mode autodiff (autodiff.c) and the
 * optimiser update nodes (update.c): the three passes that build a training Graph. */
#ifndef NNC_LOWER_H
#define NNC_LOWER_H

#include "ir.h"
#include "model.h"

Graph *lower_model(Arena *arena, const Model *m);

/* Appends the backward pass for d loss / d every trained weight; sets Weight.grad. */
void autodiff_graph(Graph *g);

/* Appends one update node per trained weight, with its optimiser state weights. */
void update_graph(Graph *g, const OptSpec *opt);

#endif
