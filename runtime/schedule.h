/* schedule.h: the run-time side of `schedule` and `stop` (their compiled forms are in
 * model.h, built by sema.c).  A schedule is evaluated before every optimiser step; a
 * stopping rule after every epoch's evaluation. */
#ifndef NNC_SCHEDULE_H
#define NNC_SCHEDULE_H

#include "model.h"

typedef struct {
    int64_t step;            /* steps done before this one */
    int64_t steps_per_epoch;
    int64_t total_steps;     /* of the whole run */
    double base;             /* the scheduled name's own value (the param's, the optimiser's lr) */
    const double *param;     /* every param's current value, by param index */
} SchedContext;

double schedule_eval(const ScheduleSpec *s, const SchedContext *c);

/* The latest value of split.metric, or NAN when it is not known. */
typedef double (*MetricLookup)(void *ctx, const char *split, const char *metric);

typedef struct {
    double best[16]; /* per STOP_PATIENCE node */
    int since[16];   /* evaluations since it improved */
} StopState;

void stop_init(StopState *st);
/* After an evaluation: true when the rule says stop, with the reason in why. */
bool stop_check(const StopSpec *s, StopState *st, MetricLookup lookup, void *ctx, char *why, size_t nwhy);

#endif
