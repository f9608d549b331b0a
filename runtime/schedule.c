/* schedule.c: evaluating schedules and stopping rules (see schedule.h). */
#include "schedule.h"

#include <math.h>
#include <stdio.h>

static double steps(Quantity q, const SchedContext *c) {
    return q.epochs ? q.value * (double)c->steps_per_epoch : q.value;
}

static double eval(const ScheduleSpec *s, int i, const SchedContext *c) {
    const SchedNode *n = &s->node[i];
    double t = (double)c->step, T = (double)c->total_steps, b = c->base;
    switch (n->op) {
    case SCH_CONST: return n->num;
    case SCH_BASE: return b;
    case SCH_EPOCH: return floor(t / (double)c->steps_per_epoch);
    case SCH_STEP: return t;
    case SCH_PARAM: return c->param[n->param];
    case SCH_ADD: return eval(s, n->a, c) + eval(s, n->b, c);
    case SCH_SUB: return eval(s, n->a, c) - eval(s, n->b, c);
    case SCH_MUL: return eval(s, n->a, c) * eval(s, n->b, c);
    case SCH_DIV: return eval(s, n->a, c) / eval(s, n->b, c);
    case SCH_POW: return pow(eval(s, n->a, c), eval(s, n->b, c));
    case SCH_NEG: return -eval(s, n->a, c);
    case SCH_COSINE: {
        double w = steps(n->q, c);
        if (t < w) return b * (t + 1) / w;
        double span = T - w, x = span > 0 ? (t - w) / span : 1;
        return n->arg + (b - n->arg) * 0.5 * (1 + cos(M_PI * (x > 1 ? 1 : x)));
    }
    case SCH_WARMUP: {
        double w = steps(n->q, c);
        return t + 1 < w ? b * (t + 1) / w : b;
    }
    case SCH_STEP_DECAY: return b * pow(n->arg, floor(t / steps(n->q, c)));
    case SCH_EXPONENTIAL: return b * pow(n->arg, floor(t / (double)c->steps_per_epoch));
    case SCH_LINEAR: return T > 1 ? b + (n->arg - b) * t / (T - 1) : b;
    }
    return NAN;
}

double schedule_eval(const ScheduleSpec *s, const SchedContext *c) { return eval(s, s->nnode - 1, c); }

static const char *cmp_text(int op) {
    switch (op) {
    case '<': return "<";
    case '>': return ">";
    case OPR_LE: return "<=";
    case OPR_GE: return ">=";
    case OPR_EQ: return "==";
    default: return "!=";
    }
}

static bool check(const StopSpec *s, int i, StopState *st, MetricLookup lookup, void *ctx, char *why, size_t nwhy) {
    const StopNode *n = &s->node[i];
    switch (n->op) {
    case STOP_AND: {
        char w1[256] = "", w2[256] = "";
        bool a = check(s, n->a, st, lookup, ctx, w1, sizeof w1), b = check(s, n->b, st, lookup, ctx, w2, sizeof w2);
        if (a && b) snprintf(why, nwhy, "%s and %s", w1, w2);
        return a && b;
    }
    case STOP_OR: { /* both sides are evaluated: patience counts every evaluation */
        char w1[256] = "", w2[256] = "";
        bool a = check(s, n->a, st, lookup, ctx, w1, sizeof w1), b = check(s, n->b, st, lookup, ctx, w2, sizeof w2);
        if (a || b) snprintf(why, nwhy, "%s", a ? w1 : w2);
        return a || b;
    }
    case STOP_CMP: {
        double v = lookup(ctx, n->split, n->metric);
        if (isnan(v)) return false;
        bool r = n->cmp == '<' ? v < n->value : n->cmp == '>' ? v > n->value : n->cmp == OPR_LE ? v <= n->value
               : n->cmp == OPR_GE ? v >= n->value : n->cmp == OPR_EQ ? v == n->value : v != n->value;
        if (r) snprintf(why, nwhy, "%s.%s %.6g %s %g", n->split, n->metric, v, cmp_text(n->cmp), n->value);
        return r;
    }
    case STOP_PATIENCE: {
        int slot = i % 16;
        double v = lookup(ctx, n->split, n->metric);
        if (isnan(v)) return false;
        bool better = isnan(st->best[slot]) || (n->maximize ? v > st->best[slot] : v < st->best[slot]);
        if (better) {
            st->best[slot] = v;
            st->since[slot] = 0;
        } else {
            st->since[slot]++;
        }
        if (st->since[slot] >= n->patience)
            snprintf(why, nwhy, "%s.%s has not improved for %d evaluations (best %.6g)", n->split, n->metric,
                     n->patience, st->best[slot]);
        return st->since[slot] >= n->patience;
    }
    }
    return false;
}

void stop_init(StopState *st) {
    for (int i = 0; i < 16; i++) {
        st->best[i] = NAN;
        st->since[i] = 0;
    }
}

bool stop_check(const StopSpec *s, StopState *st, MetricLookup lookup, void *ctx, char *why, size_t nwhy) {
    return s->nnode > 0 && check(s, s->nnode - 1, st, lookup, ctx, why, nwhy);
}
