/* sema_train.c: the train block of the checking pass (the TrainSpec of a Model).  A table of
 * the block's settings, one row per keyword (data, test, valid, batch, epochs, seed,
 * optimizer, schedule, prune, stop, ...) with its checker; the data sources, optimisers,
 * schedules and stopping rules they take; and, after the last statement, the --set
 * overrides and the checks that need the whole file (metrics named by `stop when`, params a
 * schedule changes but the model fixed at compile time).  Called by sema.c's driver. */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "sema_internal.h"

/* Train settings that --set may override (apply_overrides), for driver.c's messages. */
const char *const sema_train_keys[] = {"epochs", "iterations", "batch", "seed", "lr", "valid", "samples",
                                       "burnin", "thin",  "chains", "step", "max_depth", "parallel", "eval_every",
                                       "momentum", "weight_decay", "beta1", "beta2", "eps", "alpha", "scale",
                                       "eval_initial", "train_eval"};
const int sema_ntrain_keys = (int)(sizeof sema_train_keys / sizeof *sema_train_keys);

/* ---- data sources and optimisers ---- */

const char *sema_resolve_path(Sema *s, const char *p) {
    if (p[0] == '/' || !s->m->dir[0]) return p;
    return arena_printf(s->arena, "%s/%s", s->m->dir, p);
}

static bool check_data(Sema *s, const Ast *e, DataSpec *d, bool is_test) {
    memset(d, 0, sizeof *d);
    d->loc = e->loc;
    d->header = -1;
    d->target_col = -1;
    const char *name = e->kind == AST_NAME || e->kind == AST_CALL ? e->text : NULL;
    static const char *const sources[] = {"fashion_mnist", "idx", "csv", "npy"};
    if (!name) {
        err(s, e->loc, "expected a data source: fashion_mnist, idx(...), csv(...) or npy(...)");
        return false;
    }
    if (!strcmp(name, "fashion_mnist") && e->kind == AST_NAME) {
        d->kind = DATA_FASHION_MNIST;
        return true;
    }
    if (!strcmp(name, "npy") && e->kind == AST_CALL) {
        int cap = 0;
        for (int i = 0; i < e->narg; i++) {
            const AstArg *a = &e->arg[i];
            if (!a->name) {
                err(s, a->value->loc, "npy names each array: npy(%s = \"file.npy\", ...), one per input and target",
                    s->m->nio ? s->m->io[0].name : "x");
                return false;
            }
            if (a->value->kind != AST_STR) {
                err(s, a->value->loc, "expected a file name in quotes");
                return false;
            }
            for (int k = 0; k < d->narray; k++)
                if (!strcmp(d->array[k].name, a->name)) {
                    err(s, a->name_loc, "npy gives '%s' twice", diag_name(a->name));
                    diag_note(s->diag, d->array[k].loc, "first given here");
                    return false;
                }
            DataArray da = {a->name, sema_resolve_path(s, a->value->text), a->name_loc, -1};
            ARENA_PUSH(s->arena, d->array, d->narray, cap, da);
        }
        if (d->narray == 0) {
            err(s, e->loc, "npy needs a file per input and target: npy(name = \"file.npy\", ...)");
            return false;
        }
        d->kind = DATA_NPY;
        return true;
    }
    if (!strcmp(name, "idx") && e->kind == AST_CALL) {
        static const ArgSpec spec[] = {{"dir", A_STRING, false, 0}, {"images", A_STRING, false, 0},
                                       {"labels", A_STRING, false, 0}};
        const Ast **a = sema_args_bind(s, "idx", e->loc, spec, 3, e->arg, e->narg);
        if (!a) return false;
        for (int i = 0; i < 3; i++)
            if (a[i] && a[i]->kind != AST_STR) {
                err(s, a[i]->loc, "expected a file name in quotes");
                return false;
            }
        if (a[0] && (a[1] || a[2])) {
            err(s, e->loc, "give idx either a directory or images = and labels =, not both");
            return false;
        }
        if (!a[0] && (!a[1] || !a[2])) {
            err(s, e->loc, "idx needs a directory, idx(\"dir\"), or both images = \"...\" and labels = \"...\"");
            return false;
        }
        d->kind = DATA_IDX;
        if (a[0]) d->dir = sema_resolve_path(s, a[0]->text);
        if (a[1]) d->images = sema_resolve_path(s, a[1]->text);
        if (a[2]) d->labels = sema_resolve_path(s, a[2]->text);
        (void)is_test;
        return true;
    }
    if (!strcmp(name, "csv") && e->kind == AST_CALL) {
        static const ArgSpec spec[] = {{"path", A_STRING, true, 0}, {"target", A_ANY, false, 0},
                                       {"header", A_WORD, false, 0}};
        /* a named argument other than these names a target: its column (csv(..., mass = "m")) */
        AstArg *own = arena_alloc(s->arena, sizeof(AstArg) * ((size_t)e->narg + 1));
        int nown = 0, cap = 0;
        for (int i = 0; i < e->narg; i++) {
            const AstArg *g = &e->arg[i];
            bool known = !g->name || !strcmp(g->name, "path") || !strcmp(g->name, "target") || !strcmp(g->name, "header");
            if (known) {
                own[nown++] = *g;
                continue;
            }
            DataArray da = {g->name, NULL, g->name_loc, -1};
            if (g->value->kind == AST_STR) {
                da.path = g->value->text;
            } else {
                int64_t c;
                if (g->value->kind != AST_NUM) {
                    err(s, g->value->loc, "the column of target '%s' is a name in quotes or an index from 0", diag_name(g->name));
                    return false;
                }
                if (!sema_eval_int(s, g->value, "a column index", 0, 1 << 20, &c)) return false;
                da.col = (int)c;
            }
            for (int k = 0; k < d->narray; k++)
                if (!strcmp(d->array[k].name, g->name)) {
                    err(s, g->name_loc, "csv gives '%s' twice", diag_name(g->name));
                    diag_note(s->diag, d->array[k].loc, "first given here");
                    return false;
                }
            ARENA_PUSH(s->arena, d->array, d->narray, cap, da);
        }
        const Ast **a = sema_args_bind(s, "csv", e->loc, spec, 3, own, nown);
        if (!a) return false;
        if (d->narray && a[1]) {
            err(s, a[1]->loc, "csv names each target's column (%s = ...), so `target` has no place here", d->array[0].name);
            return false;
        }
        if (a[0]->kind != AST_STR) {
            err(s, a[0]->loc, "expected a file name in quotes");
            return false;
        }
        d->kind = DATA_CSV;
        d->path = sema_resolve_path(s, a[0]->text);
        if (a[1]) {
            const Ast *t = a[1];
            if (t->kind == AST_NAME && !strcmp(t->text, "last"))
                d->target_col = -1;
            else if (t->kind == AST_NAME && !strcmp(t->text, "first"))
                d->target_col = 0;
            else if (t->kind == AST_STR)
                d->target_name = t->text;
            else if (t->kind == AST_NUM) {
                int64_t c;
                if (!sema_eval_int(s, t, "a column index", 0, 1 << 20, &c)) return false;
                d->target_col = (int)c;
            } else {
                err(s, t->loc, "target must be last, first, a column index or a column name in quotes");
                return false;
            }
        }
        if (a[2]) {
            const Ast *h = a[2];
            if (h->kind == AST_NAME && !strcmp(h->text, "true"))
                d->header = 1;
            else if (h->kind == AST_NAME && !strcmp(h->text, "false"))
                d->header = 0;
            else if (h->kind == AST_NAME && !strcmp(h->text, "auto"))
                d->header = -1;
            else {
                err(s, h->loc, "header must be true, false or auto");
                return false;
            }
        }
        if (d->target_name && d->header == 0) {
            err(s, a[1]->loc, "a target column given by name needs a header row");
            return false;
        }
        for (int k = 0; k < d->narray; k++)
            if (d->array[k].path && d->header == 0) {
                err(s, d->array[k].loc, "a target column given by name needs a header row");
                return false;
            }
        return true;
    }
    const char *near = diag_suggest(name, sources, 4);
    if (near && strcmp(near, name))
        err(s, e->loc, "unknown data source '%s'; did you mean '%s'?", diag_name(name), near);
    else if (near)
        err(s, e->loc, "'%s' is written %s", name, !strcmp(name, "fashion_mnist") ? "fashion_mnist, without arguments" : "as a call, such as csv(\"file.csv\")");
    else
        err(s, e->loc, "unknown data source '%s'; use fashion_mnist, idx(...) or csv(...)", diag_name(name));
    return false;
}

const char *opt_name(const OptSpec *o) {
    switch (o->kind) {
    case OPT_SGD: return o->momentum > 0 ? "momentum" : "sgd";
    case OPT_ADAM: return "adam";
    case OPT_ADAMW: return "adamw";
    case OPT_RMSPROP: return "rmsprop";
    case OPT_ADAGRAD: return "adagrad";
    case OPT_PRE_SGD: return o->pre == PRE_FULL ? "pre_sgd" : o->pre == PRE_ADAPTIVE ? "adaptive_sgd" : "only_adaptive_sgd";
    }
    return "?";
}

const char *opt_hyperparams(const OptSpec *o, char *buf, size_t n) {
    switch (o->kind) {
    case OPT_SGD:
        snprintf(buf, n, "lr = %g, momentum = %g, nesterov = %s, weight_decay = %g", o->lr, o->momentum,
                 o->nesterov ? "true" : "false", o->weight_decay);
        break;
    case OPT_ADAM: case OPT_ADAMW:
        snprintf(buf, n, "lr = %g, beta1 = %g, beta2 = %g, eps = %g, weight_decay = %g", o->lr, o->beta1, o->beta2, o->eps,
                 o->weight_decay);
        break;
    case OPT_RMSPROP:
        snprintf(buf, n, "lr = %g, alpha = %g, eps = %g, momentum = %g, weight_decay = %g", o->lr, o->alpha, o->eps,
                 o->momentum, o->weight_decay);
        break;
    case OPT_ADAGRAD:
        snprintf(buf, n, "lr = %g, eps = %g, initial_accumulator = %g, weight_decay = %g", o->lr, o->eps,
                 o->initial_accumulator, o->weight_decay);
        break;
    case OPT_PRE_SGD:
        snprintf(buf, n, "rank = %d, hvps = %d, estimate = %d, every = %lld, scale = %g, weight_decay = %g", o->rank, o->hvps,
                 o->estimate, (long long)o->every, o->scale, o->weight_decay);
        break;
    }
    return buf;
}

static bool check_optimizer(Sema *s, const Ast *e, OptSpec *o) {
    static const char *const names[] = {"sgd", "adam", "adamw", "rmsprop", "adagrad", "momentum", "nesterov", "pre_sgd",
                                        "adaptive_sgd", "only_adaptive_sgd"};
    if (e->kind != AST_CALL && e->kind != AST_NAME) {
        err(s, e->loc, "expected an optimizer such as adam(lr = 1e-3)");
        return false;
    }
    const char *name = e->text;
    const AstArg *args = e->kind == AST_CALL ? e->arg : NULL;
    int nargs = e->kind == AST_CALL ? e->narg : 0;
    const Ast **a;
    memset(o, 0, sizeof *o);
    o->loc = e->loc;
    if (!strcmp(name, "sgd") || !strcmp(name, "momentum")) { /* momentum(...): sgd whose momentum defaults to 0.9 */
        static const ArgSpec sgd[] = {{"lr", A_NUM, true, 0}, {"momentum", A_NUM, false, 0},
                                      {"nesterov", A_BOOL, false, 0}, {"weight_decay", A_NUM, false, 0}};
        ArgSpec spec[4];
        memcpy(spec, sgd, sizeof spec);
        if (name[0] == 'm') spec[1].def = 0.9;
        if (!(a = sema_args_bind(s, name, e->loc, spec, 4, args, nargs))) return false;
        o->kind = OPT_SGD;
        if (!sema_args_num(s, a[0], &spec[0], &o->lr) || !sema_args_num(s, a[1], &spec[1], &o->momentum) ||
            !sema_args_bool(s, a[2], false, &o->nesterov) || !sema_args_num(s, a[3], &spec[3], &o->weight_decay))
            return false;
        if (o->momentum < 0 || o->momentum >= 1) {
            err(s, a[1]->loc, "momentum must be in [0, 1), got %g", o->momentum);
            return false;
        }
        if (o->nesterov && o->momentum == 0) {
            err(s, a[2]->loc, "nesterov needs a momentum > 0");
            return false;
        }
    } else if (!strcmp(name, "adam") || !strcmp(name, "adamw")) {
        bool w = name[4] == 'w';
        static const ArgSpec spec[] = {{"lr", A_NUM, false, 1e-3}, {"beta1", A_NUM, false, 0.9},
                                       {"beta2", A_NUM, false, 0.999}, {"eps", A_NUM, false, 1e-8},
                                       {"weight_decay", A_NUM, false, 0}};
        ArgSpec sp[sizeof spec / sizeof *spec];
        memcpy(sp, spec, sizeof sp);
        if (w) sp[4].def = 0.01;
        if (!(a = sema_args_bind(s, name, e->loc, sp, (int)(sizeof sp / sizeof *sp), args, nargs))) return false;
        o->kind = w ? OPT_ADAMW : OPT_ADAM;
        if (!sema_args_num(s, a[0], &sp[0], &o->lr) || !sema_args_num(s, a[1], &sp[1], &o->beta1) ||
            !sema_args_num(s, a[2], &sp[2], &o->beta2) || !sema_args_num(s, a[3], &sp[3], &o->eps) ||
            !sema_args_num(s, a[4], &sp[4], &o->weight_decay))
            return false;
        if (o->beta1 < 0 || o->beta1 >= 1 || o->beta2 < 0 || o->beta2 >= 1) {
            err(s, e->loc, "beta1 and beta2 must be in [0, 1)");
            return false;
        }
        if (o->eps <= 0) {
            err(s, a[3] ? a[3]->loc : e->loc, "eps must be positive");
            return false;
        }
    } else if (!strcmp(name, "rmsprop")) { /* PyTorch's defaults */
        static const ArgSpec spec[] = {{"lr", A_NUM, false, 1e-2}, {"alpha", A_NUM, false, 0.99}, {"eps", A_NUM, false, 1e-8},
                                       {"momentum", A_NUM, false, 0}, {"weight_decay", A_NUM, false, 0}};
        if (!(a = sema_args_bind(s, name, e->loc, spec, 5, args, nargs))) return false;
        o->kind = OPT_RMSPROP;
        if (!sema_args_num(s, a[0], &spec[0], &o->lr) || !sema_args_num(s, a[1], &spec[1], &o->alpha) ||
            !sema_args_num(s, a[2], &spec[2], &o->eps) || !sema_args_num(s, a[3], &spec[3], &o->momentum) ||
            !sema_args_num(s, a[4], &spec[4], &o->weight_decay))
            return false;
        if (o->alpha < 0 || o->alpha >= 1) {
            err(s, a[1] ? a[1]->loc : e->loc, "alpha must be in [0, 1), got %g", o->alpha);
            return false;
        }
        if (o->momentum < 0 || o->momentum >= 1) {
            err(s, a[3] ? a[3]->loc : e->loc, "momentum must be in [0, 1), got %g", o->momentum);
            return false;
        }
        if (o->eps <= 0) {
            err(s, a[2] ? a[2]->loc : e->loc, "eps must be positive");
            return false;
        }
    } else if (!strcmp(name, "adagrad")) { /* PyTorch's defaults */
        static const ArgSpec spec[] = {{"lr", A_NUM, false, 1e-2}, {"eps", A_NUM, false, 1e-10},
                                       {"initial_accumulator", A_NUM, false, 0}, {"weight_decay", A_NUM, false, 0}};
        if (!(a = sema_args_bind(s, name, e->loc, spec, 4, args, nargs))) return false;
        o->kind = OPT_ADAGRAD;
        if (!sema_args_num(s, a[0], &spec[0], &o->lr) || !sema_args_num(s, a[1], &spec[1], &o->eps) ||
            !sema_args_num(s, a[2], &spec[2], &o->initial_accumulator) || !sema_args_num(s, a[3], &spec[3], &o->weight_decay))
            return false;
        if (o->eps <= 0) {
            err(s, a[1] ? a[1]->loc : e->loc, "eps must be positive");
            return false;
        }
        if (o->initial_accumulator < 0) {
            err(s, a[2]->loc, "initial_accumulator must not be negative");
            return false;
        }
    } else if (!strcmp(name, "pre_sgd") || !strcmp(name, "adaptive_sgd") || !strcmp(name, "only_adaptive_sgd")) {
        static const ArgSpec spec[] = {{"rank", A_NUM, false, 1}, {"hvps", A_NUM, false, 3}, {"estimate", A_NUM, false, 4},
                                       {"every", A_NUM, false, 1}, {"scale", A_NUM, false, 1}, {"weight_decay", A_NUM, false, 0}};
        if (!(a = sema_args_bind(s, name, e->loc, spec, 6, args, nargs))) return false;
        o->kind = OPT_PRE_SGD;
        o->pre = name[0] == 'p' ? PRE_FULL : name[0] == 'a' ? PRE_ADAPTIVE : PRE_ONLY_ADAPTIVE;
        o->lr = 1; /* the rate is scale / alpha; a `schedule lr` multiplies it */
        double v[5];
        for (int k = 0; k < 5; k++)
            if (!sema_args_num(s, a[k], &spec[k], &v[k])) return false;
        if (!sema_args_num(s, a[5], &spec[5], &o->weight_decay)) return false;
        static const double lo[5] = {1, 1, 2, 1, 0}, hi[5] = {PRE_MAX_RANK, PRE_MAX_HVPS, 64, 1e9, 1e9};
        for (int k = 0; k < 5; k++)
            if ((k < 4 && v[k] != floor(v[k])) || v[k] < lo[k] || v[k] > hi[k] || (k == 4 && v[k] <= 0)) {
                if (k == 4)
                    err(s, a[k]->loc, "scale must be positive, got %g", v[k]);
                else
                    err(s, a[k]->loc, "%s must be a whole number from %g to %g, got %g", spec[k].name, lo[k], hi[k], v[k]);
                return false;
            }
        o->rank = (int)v[0];
        o->hvps = (int)v[1];
        o->estimate = (int)v[2];
        o->every = (int64_t)v[3];
        o->scale = v[4];
        if (o->pre != PRE_FULL && (a[0] || a[1])) {
            err(s, a[0] ? a[0]->loc : a[1]->loc, "%s sets the learning rate alone: it has no rank or hvps (pre_sgd has)", name);
            return false;
        }
        if (o->pre == PRE_FULL && o->rank > o->hvps) {
            err(s, a[0]->loc, "rank %d is more than hvps %d: the estimate has at most one eigenpair per observation; raise hvps",
                o->rank, o->hvps);
            return false;
        }
        if (o->pre == PRE_ONLY_ADAPTIVE && a[3]) {
            err(s, a[3]->loc, "only_adaptive_sgd estimates its learning rate once; adaptive_sgd re-estimates it every N epochs");
            return false;
        }
    } else if (!strcmp(name, "nesterov")) {
        err(s, e->loc, "'nesterov' is an option of sgd and momentum: momentum(lr = 0.1, nesterov = true)");
        return false;
    } else {
        const char *near = diag_suggest(name, names, 10);
        if (near)
            err(s, e->loc, "unknown optimizer '%s'; did you mean '%s'?", diag_name(name), near);
        else
            err(s, e->loc, "unknown optimizer '%s'; use sgd, momentum, adam, adamw, rmsprop, adagrad or pre_sgd", diag_name(name));
        return false;
    }
    if (o->lr <= 0) {
        err(s, e->loc, "the learning rate must be positive, got %g", o->lr);
        return false;
    }
    if (o->weight_decay < 0) {
        err(s, e->loc, "weight_decay must not be negative");
        return false;
    }
    return true;
}

/* ---- schedules ---- */

static int sched_node(Sema *s, ScheduleSpec *sp, SchedNode n, int *cap) {
    ARENA_PUSH(s->arena, sp->node, sp->nnode, *cap, n);
    return sp->nnode - 1;
}

/* `1 epoch`, `500 steps`, or a number of steps. */
static bool sched_quantity(Sema *s, const Ast *e, Quantity *q) {
    if (e->kind == AST_QUANTITY) {
        const char *u = e->text;
        bool ep = !strcmp(u, "epoch") || !strcmp(u, "epochs"), st = !strcmp(u, "step") || !strcmp(u, "steps");
        if (!ep && !st) {
            err(s, e->loc, "unknown unit '%s'; use epoch(s) or step(s)", diag_name(u));
            return false;
        }
        if (!(e->num >= 0)) {
            err(s, e->loc, "a duration must not be negative");
            return false;
        }
        *q = (Quantity){e->num, ep};
        return true;
    }
    double v;
    if (!sema_eval_const(s, e, &v)) return false;
    if (v < 0) {
        err(s, e->loc, "a duration must not be negative");
        return false;
    }
    *q = (Quantity){v, false};
    return true;
}

/* The schedule functions, as in `schedule lr = cosine(warmup = 1 epoch)`. */
static const struct {
    const char *name;
    SchedOp op;
    const ArgSpec *args;
    int nargs;
} sched_fns[] = {
    {"cosine", SCH_COSINE, SEMA_ARGS({"warmup", A_ANY, false, 0}, {"min", A_NUM, false, 0})},
    {"warmup", SCH_WARMUP, SEMA_ARGS({"over", A_ANY, true, 0})},
    {"step", SCH_STEP_DECAY, SEMA_ARGS({"every", A_ANY, true, 0}, {"gamma", A_NUM, false, 0.1})},
    {"exponential", SCH_EXPONENTIAL, SEMA_ARGS({"gamma", A_NUM, true, 0})},
    {"linear", SCH_LINEAR, SEMA_ARGS({"to", A_NUM, true, 0})},
};
enum { NSCHED_FNS = sizeof sched_fns / sizeof *sched_fns };

static int sched_expr(Sema *s, const Ast *e, ScheduleSpec *sp, int *cap) {
    SchedNode n = {.a = -1, .b = -1, .param = -1};
    switch (e->kind) {
    case AST_NUM:
        n.op = SCH_CONST;
        n.num = e->num;
        return sched_node(s, sp, n, cap);
    case AST_NAME: {
        if (!strcmp(e->text, "epoch") || !strcmp(e->text, "step")) {
            n.op = e->text[0] == 'e' ? SCH_EPOCH : SCH_STEP;
            return sched_node(s, sp, n, cap);
        }
        if (!strcmp(e->text, sp->target)) {
            n.op = SCH_BASE;
            return sched_node(s, sp, n, cap);
        }
        Sym *sym = sema_lookup(s, e->text);
        if (sym && sym->kind == SYM_PARAM) {
            n.op = SCH_PARAM;
            n.param = sym->index;
            return sched_node(s, sp, n, cap);
        }
        if (sym && sym->kind == SYM_ERROR) return -1;
        const char *cand[64] = {"epoch", "step", sp->target};
        int nc = 3;
        for (int i = 0; i < s->m->nparam && nc < 64; i++) cand[nc++] = s->m->param[i].name;
        const char *near = diag_suggest(e->text, cand, nc);
        if (sym)
            err(s, e->loc, "'%s' is a tensor; a schedule uses numbers, params, epoch and step", diag_name(e->text));
        else if (near)
            err(s, e->loc, "unknown name '%s' in a schedule; did you mean '%s'?", diag_name(e->text), near);
        else
            err(s, e->loc, "unknown name '%s' in a schedule; it can use numbers, params, epoch, step and '%s'",
                diag_name(e->text), sp->target);
        return -1;
    }
    case AST_UNARY:
        if (e->op != '-') break;
        n.op = SCH_NEG;
        if ((n.a = sched_expr(s, e->lhs, sp, cap)) < 0) return -1;
        return sched_node(s, sp, n, cap);
    case AST_BINARY: {
        static const int ops[][2] = {{'+', SCH_ADD}, {'-', SCH_SUB}, {'*', SCH_MUL}, {'/', SCH_DIV}, {'^', SCH_POW}};
        int op = -1;
        for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
            if (ops[i][0] == e->op) op = ops[i][1];
        if (op < 0) break;
        n.op = (SchedOp)op;
        n.a = sched_expr(s, e->lhs, sp, cap);
        n.b = sched_expr(s, e->rhs, sp, cap);
        if (n.a < 0 || n.b < 0) return -1;
        return sched_node(s, sp, n, cap);
    }
    case AST_CALL: {
        int f = -1;
        const char *cand[NSCHED_FNS];
        for (int i = 0; i < NSCHED_FNS; i++) {
            cand[i] = sched_fns[i].name;
            if (!strcmp(sched_fns[i].name, e->text)) f = i;
        }
        if (f < 0) {
            const char *near = diag_suggest(e->text, cand, NSCHED_FNS);
            if (near)
                err(s, e->loc, "unknown schedule '%s'; did you mean '%s'?", diag_name(e->text), near);
            else
                err(s, e->loc, "unknown schedule '%s'; use cosine, warmup, step, exponential or linear", diag_name(e->text));
            return -1;
        }
        const Ast **a = sema_args_bind(s, e->text, e->loc, sched_fns[f].args, sched_fns[f].nargs, e->arg, e->narg);
        if (!a) return -1;
        n.op = sched_fns[f].op;
        bool ok = true;
        if (n.op == SCH_COSINE || n.op == SCH_WARMUP || n.op == SCH_STEP_DECAY) {
            if (a[0])
                ok = sched_quantity(s, a[0], &n.q);
            else
                n.q = (Quantity){0, false};
            if (ok && n.op != SCH_COSINE && n.q.value <= 0) {
                err(s, a[0]->loc, "'%s' needs a duration greater than 0", e->text);
                ok = false;
            }
        }
        int k = n.op == SCH_COSINE || n.op == SCH_STEP_DECAY ? 1 : 0;
        if (ok && (n.op != SCH_WARMUP)) ok = sema_args_num(s, a[k], &sched_fns[f].args[k], &n.arg);
        if (!ok) return -1;
        return sched_node(s, sp, n, cap);
    }
    case AST_ERROR: return -1;
    default: break;
    }
    err(s, e->loc, "expected a schedule: numbers, params, epoch, step, the scheduled value and cosine, warmup, step, "
                   "exponential or linear, combined with + - * / ^");
    return -1;
}

static void check_schedule(Sema *s, const TrainItem *it) {
    ScheduleSpec sp = {.target = it->name, .param = -1, .loc = it->name_loc};
    if (strcmp(it->name, "lr")) {
        Sym *sym = sema_lookup(s, it->name);
        if (!sym || sym->kind != SYM_PARAM) {
            if (sym && sym->kind == SYM_ERROR) return;
            const char *cand[64] = {"lr"};
            int nc = 1;
            for (int i = 0; i < s->m->nparam && nc < 64; i++) cand[nc++] = s->m->param[i].name;
            const char *near = diag_suggest(it->name, cand, nc);
            err(s, it->name_loc, "only lr and params can be scheduled; '%s' is %s%s%s%s", diag_name(it->name),
                sym ? "a tensor" : "not defined", near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
            return;
        }
        sp.param = sym->index;
    }
    for (int i = 0; i < s->m->train.nsched; i++)
        if (!strcmp(s->m->train.sched[i].target, it->name)) {
            err(s, it->name_loc, "'%s' is scheduled twice", diag_name(it->name));
            diag_note(s->diag, s->m->train.sched[i].loc, "first scheduled here");
            return;
        }
    int cap = 0;
    if (sched_expr(s, it->expr, &sp, &cap) < 0) return;
    ARENA_PUSH(s->arena, s->m->train.sched, s->m->train.nsched, s->capsched, sp);
}

/* ---- stopping rules ---- */

static int stop_node(Sema *s, StopSpec *sp, StopNode n, int *cap) {
    ARENA_PUSH(s->arena, sp->node, sp->nnode, *cap, n);
    return sp->nnode - 1;
}

static int stop_expr(Sema *s, const Ast *e, StopSpec *sp, int *cap) {
    StopNode n = {.a = -1, .b = -1};
    if (e->kind == AST_BINARY && (e->op == OPR_AND || e->op == OPR_OR)) {
        n.op = e->op == OPR_AND ? STOP_AND : STOP_OR;
        n.a = stop_expr(s, e->lhs, sp, cap);
        n.b = stop_expr(s, e->rhs, sp, cap);
        return n.a < 0 || n.b < 0 ? -1 : stop_node(s, sp, n, cap);
    }
    if (e->kind == AST_PATIENCE) {
        int64_t p;
        if (!sema_eval_int(s, e->lhs, "patience", 1, 1 << 20, &p)) return -1;
        n.op = STOP_PATIENCE;
        n.patience = (int)p;
        return stop_node(s, sp, n, cap);
    }
    bool cmp = e->kind == AST_BINARY && (e->op == '<' || e->op == '>' || (e->op >= OPR_LE && e->op <= OPR_NE));
    if (cmp) {
        const Ast *field = e->lhs, *num = e->rhs;
        int op = e->op;
        if (field->kind != AST_FIELD && e->rhs->kind == AST_FIELD) { /* 0.85 < valid.accuracy */
            field = e->rhs;
            num = e->lhs;
            op = op == '<' ? '>' : op == '>' ? '<' : op == OPR_LE ? OPR_GE : op == OPR_GE ? OPR_LE : op;
        }
        /* split.metric, or split.target.metric for a model with several targets */
        const Ast *head = field->kind == AST_FIELD && field->lhs->kind == AST_FIELD ? field->lhs : NULL;
        const Ast *split = head ? head->lhs : field->kind == AST_FIELD ? field->lhs : NULL;
        if (split && split->kind == AST_NAME) {
            n.op = STOP_CMP;
            n.split = split->text;
            n.metric = head ? arena_printf(s->arena, "%s.%s", head->text, field->text) : field->text;
            n.loc = ast_span(split->loc, field->loc);
            n.cmp = op;
            if (!sema_eval_const(s, num, &n.value)) return -1;
            if (strcmp(n.split, "train") && strcmp(n.split, "valid") && strcmp(n.split, "test")) {
                err(s, split->loc, "'%s' is not a split; use train, valid or test", diag_name(n.split));
                return -1;
            }
            return stop_node(s, sp, n, cap);
        }
    }
    if (e->kind != AST_ERROR)
        err(s, e->loc, "expected a stopping condition: split.metric compared with a number (valid.error < 0.03), "
                       "patience N, joined by and / or");
    return -1;
}

static void check_stop(Sema *s, const TrainItem *it) {
    StopSpec sp = {.loc = it->loc};
    int cap = 0;
    if (stop_expr(s, it->expr, &sp, &cap) >= 0) s->m->train.stop = sp;
    s->stop_item = it;
}

/* Metric names and splits in the stopping rule exist; patience watches a validation metric. */
static void finish_stop(Sema *s) {
    StopSpec *sp = &s->m->train.stop;
    const char *watch = NULL;
    for (int i = 0; i < sp->nnode; i++) {
        StopNode *n = &sp->node[i];
        if (n->op != STOP_CMP) continue;
        bool known = !strcmp(n->metric, "loss");
        for (int k = 0; k < s->m->nmetric && !known; k++) known = !strcmp(n->metric, s->m->metric[k].name);
        const char *headed = NULL; /* the metrics of several heads: mass.rmse for rmse */
        for (int k = 0; k < s->m->nmetric && !known; k++) {
            const char *name = s->m->metric[k].name, *dot = strchr(name, '.');
            if (dot && !strcmp(dot + 1, n->metric))
                headed = headed ? arena_printf(s->arena, "%s or %s.%s", headed, n->split, name) : arena_printf(s->arena, "%s.%s", n->split, name);
        }
        if (headed && strcmp(n->split, "train")) {
            err(s, n->loc, "the stopping rule uses %s.%s, but with several targets each metric is named after its head: %s",
                n->split, n->metric, headed);
            sp->nnode = 0;
            return;
        }
        if (!known || (!strcmp(n->split, "train") && strcmp(n->metric, "loss"))) {
            const char *cand[16] = {"loss"};
            int nc = 1;
            for (int k = 0; k < s->m->nmetric && nc < 16; k++) cand[nc++] = s->m->metric[k].name;
            const char *near = diag_suggest(n->metric, cand, nc);
            err(s, n->loc, "the stopping rule uses %s.%s, but %s%s%s%s", n->split, diag_name(n->metric),
                !strcmp(n->split, "train") ? "training reports only train.loss" : "the model has no such metric",
                near && known == false ? "; did you mean '" : "", near && !known ? near : "", near && !known ? "'?" : "");
            sp->nnode = 0;
            return;
        }
        if (!strcmp(n->split, "valid") && s->m->train.valid_fraction <= 0) {
            err(s, n->loc, "the stopping rule uses valid.%s, but the train block has no `valid F of train` split",
                n->metric);
            sp->nnode = 0;
            return;
        }
        if (!strcmp(n->split, "valid") && !watch) watch = n->metric;
    }
    for (int i = 0; i < sp->nnode; i++) {
        StopNode *n = &sp->node[i];
        if (n->op != STOP_PATIENCE) continue;
        if (s->m->train.valid_fraction <= 0) {
            err(s, s->stop_item->loc, "patience watches a validation metric, but the train block has no `valid F of train` split");
            sp->nnode = 0;
            return;
        }
        n->split = "valid";
        n->metric = watch ? watch : "loss";
        n->maximize = !strcmp(n->metric, "accuracy") || util_ends_with(n->metric, ".accuracy");
    }
}

/* ---- the settings ---- */

static void item_data(Sema *s, const TrainItem *it) { check_data(s, it->expr, &s->m->train.data, false); }

static void item_test(Sema *s, const TrainItem *it) { check_data(s, it->expr, &s->m->train.test, true); }

static void item_valid(Sema *s, const TrainItem *it) {
    if (!it->name) {
        err(s, it->expr->loc, "a separate validation data set is not implemented yet; write `valid 0.1 of train`");
        return;
    }
    double f;
    if (!sema_eval_const(s, it->expr, &f)) return;
    if (!(f > 0 && f < 1)) {
        err(s, it->expr->loc, "the validation fraction must be between 0 and 1, got %g", f);
        return;
    }
    s->m->train.valid_fraction = f;
}

static void item_batch(Sema *s, const TrainItem *it) {
    int64_t v;
    if (sema_eval_int(s, it->expr, "the batch size", 1, 1 << 20, &v)) s->m->train.batch = v;
}

static void item_epochs(Sema *s, const TrainItem *it) {
    int64_t v;
    if (sema_eval_int(s, it->expr, "the number of epochs", 1, 1 << 30, &v)) s->m->train.epochs = v;
}

static void item_iterations(Sema *s, const TrainItem *it) {
    int64_t v;
    if (sema_eval_int(s, it->expr, "the number of iterations", 1, (int64_t)1 << 40, &v)) s->m->train.iterations = v;
}

static void item_seed(Sema *s, const TrainItem *it) {
    int64_t v;
    if (sema_eval_int(s, it->expr, "the seed", 0, (int64_t)1 << 53, &v)) s->m->train.seed = (uint64_t)v;
}

static void item_optimizer(Sema *s, const TrainItem *it) { check_optimizer(s, it->expr, &s->m->train.opt); }

static int arg_index(const ArgSpec *spec, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(spec[i].name, name)) return i;
    return -1;
}

/* A sampler's whole-number settings and their ranges, for its arguments and for --set. */
static const struct {
    const char *name;
    int64_t lo, hi;
} sampler_ints[] = {{"leapfrog", 1, 100000}, {"samples", 1, 100000000}, {"burnin", 0, 100000000},
                    {"thin", 1, 1000000},    {"chains", 1, 1024},         {"max_depth", 1, 20}};
enum { NSAMPLER_INTS = sizeof sampler_ints / sizeof *sampler_ints };

/* Where setting k of sampler_ints lives (max_depth: in *depth, an int64_t, copied by the caller). */
static int64_t *sampler_int(SamplerSpec *sp, int k, int64_t *depth) {
    int64_t *at[] = {&sp->leapfrog, &sp->samples, &sp->burnin, &sp->thin, &sp->chains, depth};
    static_assert(sizeof at / sizeof *at == NSAMPLER_INTS, "one field per sampler setting");
    return at[k];
}

/* `sampler hmc(step, leapfrog, samples, burnin, thin, ...)`: Hamiltonian Monte Carlo with
 * a step size and diagonal mass matrix adapted during burn-in; `sampler nuts(samples, burnin,
 * max_depth, ...)`: the no-U-turn sampler with the same adaptation (runtime/sample.c). */
static void item_sampler(Sema *s, const TrainItem *it) {
    const Ast *e = it->expr;
    const char *name = e->kind == AST_CALL || e->kind == AST_NAME ? e->text : "";
    static const char *const names[] = {"hmc", "nuts", "sgld"};
    bool nuts = !strcmp(name, "nuts"), sgld = !strcmp(name, "sgld");
    if (strcmp(name, "hmc") && !nuts && !sgld) {
        const char *near = name[0] ? diag_suggest(name, names, 3) : NULL;
        if (near)
            err(s, e->loc, "unknown sampler '%s'; did you mean '%s'?", diag_name(name), near);
        else
            err(s, e->loc, "expected a sampler: hmc(step = 0.01, leapfrog = 20, samples = 1000, burnin = 500), nuts(samples = 1000, "
                "burnin = 500) or sgld(lr = 1e-5, samples = 1000, burnin = 500)");
        return;
    }
    static const ArgSpec hmc[] = {{"step", A_NUM, false, 0.01},  {"leapfrog", A_INT, false, 20},  {"samples", A_INT, false, 1000},
                                  {"burnin", A_INT, false, 500}, {"thin", A_INT, false, 1},      {"chains", A_INT, false, 1},
                                  {"target_accept", A_NUM, false, 0.8}, {"adapt_step", A_BOOL, false, 1},
                                  {"adapt_mass", A_BOOL, false, 1}, {"jitter", A_NUM, false, 0.5}, {"parallel", A_BOOL, false, 1}};
    static const ArgSpec nuts_args[] = {{"samples", A_INT, false, 1000}, {"burnin", A_INT, false, 500}, {"max_depth", A_INT, false, 10},
                                        {"thin", A_INT, false, 1},       {"chains", A_INT, false, 1},   {"step", A_NUM, false, 0.01},
                                        {"target_accept", A_NUM, false, 0.8}, {"adapt_step", A_BOOL, false, 1},
                                        {"adapt_mass", A_BOOL, false, 1}, {"parallel", A_BOOL, false, 1}};
    static const ArgSpec sgld_args[] = {{"lr", A_NUM, true, 0},        {"samples", A_INT, false, 1000},  {"burnin", A_INT, false, 500},
                                        {"thin", A_INT, false, 1},     {"chains", A_INT, false, 1},      {"rmsprop", A_BOOL, false, 0},
                                        {"alpha", A_NUM, false, 0.99}, {"lambda", A_NUM, false, 1e-5},
                                        {"parallel", A_BOOL, false, 1}};
    const ArgSpec *spec = nuts ? nuts_args : sgld ? sgld_args : hmc;
    int nspec = nuts ? (int)(sizeof nuts_args / sizeof *nuts_args) : sgld ? (int)(sizeof sgld_args / sizeof *sgld_args)
                                                                          : (int)(sizeof hmc / sizeof *hmc);
    const Ast **a = sema_args_bind(s, name, e->loc, spec, nspec, e->arg, e->narg);
    if (!a) return;
    SamplerSpec *sp = &s->m->train.sampler;
    *sp = (SamplerSpec){.kind = nuts ? SAMPLER_NUTS : sgld ? SAMPLER_SGLD : SAMPLER_HMC, .loc = it->loc, .leapfrog = 1};
    int64_t depth = 0;
    for (int k = 0; k < NSAMPLER_INTS; k++) { /* each argument checked on its own: every mistake is reported */
        int i = arg_index(spec, nspec, sampler_ints[k].name);
        if (i < 0) continue;
        int64_t *v = sampler_int(sp, k, &depth);
        if (!a[i])
            *v = (int64_t)spec[i].def;
        else
            sema_eval_int(s, a[i], spec[i].name, sampler_ints[k].lo, sampler_ints[k].hi, v);
    }
    sp->max_depth = (int)depth;
    sema_args_bool(s, a[arg_index(spec, nspec, "parallel")], true, &sp->parallel);
    if (sgld) {
        int i = arg_index(spec, nspec, "lr");
        if (sema_args_num(s, a[i], &spec[i], &sp->lr) && !(sp->lr > 0))
            err(s, a[i]->loc, "sgld's lr must be positive, got %g", sp->lr);
        i = arg_index(spec, nspec, "alpha");
        if (sema_args_num(s, a[i], &spec[i], &sp->alpha) && !(sp->alpha >= 0 && sp->alpha < 1))
            err(s, a[i]->loc, "alpha must be in [0, 1), got %g", sp->alpha);
        i = arg_index(spec, nspec, "lambda");
        if (sema_args_num(s, a[i], &spec[i], &sp->lambda) && !(sp->lambda > 0))
            err(s, a[i]->loc, "lambda must be positive, got %g", sp->lambda);
        sema_args_bool(s, a[arg_index(spec, nspec, "rmsprop")], false, &sp->precondition);
        return;
    }
    int i = arg_index(spec, nspec, "step");
    if (sema_args_num(s, a[i], &spec[i], &sp->step) && !(sp->step > 0))
        err(s, a[i]->loc, "%s's step must be positive, got %g", name, sp->step);
    i = arg_index(spec, nspec, "target_accept");
    if (sema_args_num(s, a[i], &spec[i], &sp->target_accept) && !(sp->target_accept > 0 && sp->target_accept < 1))
        err(s, a[i]->loc, "target_accept must be in (0, 1), got %g", sp->target_accept);
    i = arg_index(spec, nspec, "jitter");
    if (i >= 0 && sema_args_num(s, a[i], &spec[i], &sp->jitter) && !(sp->jitter >= 0 && sp->jitter < 1))
        err(s, a[i]->loc, "jitter must be in [0, 1), got %g", sp->jitter);
    sema_args_bool(s, a[arg_index(spec, nspec, "adapt_step")], true, &sp->adapt_step);
    sema_args_bool(s, a[arg_index(spec, nspec, "adapt_mass")], true, &sp->adapt_mass);
}

/* `prune gates every N epochs` (or `every N steps`): between epochs (or after every N-th step),
 * dead neurons of gated layers are removed. */
static void check_prune(Sema *s, const TrainItem *it) {
    if (strcmp(it->name, "gates")) {
        err(s, it->name_loc, "only gates can be pruned; write `prune gates every 1 epoch`");
        return;
    }
    const Ast *q = it->every;
    bool epochs = q->kind == AST_QUANTITY && (!strcmp(q->text, "epoch") || !strcmp(q->text, "epochs"));
    bool steps = q->kind == AST_QUANTITY && (!strcmp(q->text, "step") || !strcmp(q->text, "steps"));
    if (!epochs && !steps) {
        err(s, q->loc, "give the pruning interval in epochs or steps, as in `every 2 epochs` or `every 100 steps`");
        return;
    }
    if (!(q->num >= 1 && q->num == floor(q->num) && q->num <= 1e9)) {
        err(s, q->loc, "the pruning interval must be a whole number of %s >= 1, got %g", epochs ? "epochs" : "steps", q->num);
        return;
    }
    s->m->train.prune_every = (int64_t)q->num;
    s->m->train.prune_steps = steps;
    s->m->train.prune_loc = it->loc;
}

/* `evaluate samples = S`: evaluation and predict average S draws of the variational weights
 * (runtime/vi_eval.c); without it they use the weights' means.  `evaluate initial = true`: an
 * evaluation at epoch 0, before training; `train_eval = true`: a training subset evaluated too.  `evaluate every N steps`: the
 * validation and test splits after every N-th optimiser step (and the last) instead of after
 * every epoch. */
static void item_evaluate(Sema *s, const TrainItem *it) {
    const Ast *q = it->every;
    if (q) {
        bool steps = q->kind == AST_QUANTITY && (!strcmp(q->text, "steps") || !strcmp(q->text, "step") ||
                                                 !strcmp(q->text, "iterations") || !strcmp(q->text, "iteration"));
        if (!steps)
            err(s, q->loc, "give the evaluation interval in steps, as in `evaluate every 2000 steps` (without it, the run "
                "evaluates after every epoch)");
        else if (!(q->num >= 1 && q->num == floor(q->num) && q->num <= 1e12))
            err(s, q->loc, "the evaluation interval must be a whole number of steps >= 1, got %g", q->num);
        else
            s->m->train.eval_every = (int64_t)q->num;
    }
    static const ArgSpec spec[] = {{"samples", A_INT, false, 0}, {"initial", A_BOOL, false, 0}, {"train_eval", A_BOOL, false, 0}};
    const Ast *e = it->expr;
    const Ast **a = sema_args_bind(s, "evaluate", e->loc, spec, 3, e->arg, e->narg);
    if (!a) return;
    if ((a[1] && !sema_args_bool(s, a[1], false, &s->m->train.eval_initial)) ||
        (a[2] && !sema_args_bool(s, a[2], false, &s->m->train.eval_train)))
        return;
    if (!a[0]) return;
    int64_t v;
    if (!sema_eval_int(s, a[0], "the number of samples", 2, 100000, &v)) return;
    s->m->train.eval_samples = v;
    s->m->train.eval_loc = it->loc;
}

typedef struct {
    void (*check)(Sema *s, const TrainItem *it);
    const char *todo;  /* not implemented yet: the error */
    bool repeats;      /* may be given more than once */
} TrainKey;

/* One row per TrainItemKind (the keywords are in ast.c's ast_item_keyword). */
static const TrainKey keys[] = {
    [TI_DATA] = {item_data},
    [TI_TEST] = {item_test},
    [TI_VALID] = {item_valid},
    [TI_BATCH] = {item_batch},
    [TI_EPOCHS] = {item_epochs},
    [TI_ITERATIONS] = {item_iterations},
    [TI_OPTIMIZER] = {item_optimizer},
    [TI_SAMPLER] = {item_sampler},
    [TI_SCHEDULE] = {check_schedule, .repeats = true},
    [TI_PRUNE] = {check_prune},
    [TI_STOP] = {check_stop},
    [TI_SEED] = {item_seed},
    [TI_EVALUATE] = {item_evaluate},
    [TI_CLIP] = {.todo = "gradient clipping is not implemented yet"},
};
enum { NKEYS = sizeof keys / sizeof *keys };
_Static_assert(NKEYS == TI_CLIP + 1, "one row per TrainItemKind; TI_CLIP is the last");

void sema_train_check(Sema *s, const Stmt *st) {
    const TrainItem *first[NKEYS] = {0};
    for (int i = 0; i < st->nitem; i++) {
        const TrainItem *it = st->item[i];
        if ((unsigned)it->kind >= NKEYS || (!keys[it->kind].check && !keys[it->kind].todo))
            NNC_BUG("train item %d has no row", it->kind);
        const TrainKey *k = &keys[it->kind];
        if (first[it->kind] && !k->repeats) {
            err(s, it->loc, "'%s' is given twice in the train block", ast_item_keyword(it->kind));
            diag_note(s->diag, first[it->kind]->loc, "first given here");
            continue;
        }
        first[it->kind] = it;
        if (k->todo)
            err(s, it->loc, "%s", k->todo);
        else
            k->check(s, it);
    }
    if (!first[TI_DATA]) err(s, st->loc, "the train block needs a data source, such as `data fashion_mnist`");
    if (first[TI_EPOCHS] && first[TI_ITERATIONS]) {
        const TrainItem *later = first[TI_EPOCHS]->loc.line > first[TI_ITERATIONS]->loc.line ? first[TI_EPOCHS] : first[TI_ITERATIONS];
        err(s, later->loc, "a run's budget is epochs or iterations, not both");
        diag_note(s->diag, (later == first[TI_EPOCHS] ? first[TI_ITERATIONS] : first[TI_EPOCHS])->loc, "the other is here");
    }
    if (first[TI_SAMPLER]) { /* a sampler replaces the optimizer and the epochs */
        static const TrainItemKind clash[] = {TI_OPTIMIZER, TI_EPOCHS, TI_PRUNE, TI_STOP, TI_ITERATIONS, TI_EVALUATE};
        static const char *const why[] = {"a sampler replaces the optimizer: give one or the other",
                                          "a sampler's run is its burnin and samples, not epochs",
                                          "a sampler cannot prune: the posterior is over a fixed network",
                                          "a sampler runs all its samples: stopping rules are for optimizers",
                                          "a sampler's run is its burnin and samples, not iterations",
                                          "a sampler evaluates its posterior predictive once, over its own draws"};
        for (int k = 0; k < 6; k++)
            if (first[clash[k]]) {
                err(s, first[clash[k]]->loc, "%s", why[k]);
                diag_note(s->diag, first[TI_SAMPLER]->loc, "the sampler is here");
            }
    }
}

/* ---- after the last statement ---- */

static bool is_sampler_key(const char *key) {
    if (!strcmp(key, "step") || !strcmp(key, "parallel")) return true;
    for (int k = 0; k < NSAMPLER_INTS; k++)
        if (!strcmp(key, sampler_ints[k].name)) return strcmp(key, "leapfrog") != 0;
    return false;
}

/* --set of an optimizer hyperparameter: checked as the optimizer's own argument would be. */
static void override_optimizer(Sema *s, const char *key, double v) {
    OptSpec *o = &s->m->train.opt;
    const char *name = opt_name(o);
    bool sgd = o->kind == OPT_SGD, adam = o->kind == OPT_ADAM || o->kind == OPT_ADAMW, rms = o->kind == OPT_RMSPROP;
    bool applies = !strcmp(key, "weight_decay") || (!strcmp(key, "momentum") && (sgd || rms)) ||
                   ((!strcmp(key, "beta1") || !strcmp(key, "beta2")) && adam) ||
                   (!strcmp(key, "eps") && (adam || rms || o->kind == OPT_ADAGRAD)) || (!strcmp(key, "alpha") && rms) ||
                   (!strcmp(key, "scale") && o->kind == OPT_PRE_SGD);
    if (s->m->train.sampler.kind != SAMPLER_NONE || !applies) {
        err(s, (SrcLoc){0}, "--set %s=%g: %s has no %s", key, v, s->m->train.sampler.kind != SAMPLER_NONE ? "a sampler" : name,
            key);
        return;
    }
    bool unit = !strcmp(key, "momentum") || key[0] == 'b' || !strcmp(key, "alpha"); /* in [0, 1) */
    if (unit ? !(v >= 0 && v < 1) : !strcmp(key, "weight_decay") ? !(v >= 0) : !(v > 0)) {
        err(s, (SrcLoc){0}, "--set %s=%g: %s must be %s", key, v, key, unit ? "in [0, 1)" : key[0] == 'w' ? "0 or more" : "positive");
        return;
    }
    if (!strcmp(key, "momentum")) o->momentum = v;
    if (!strcmp(key, "weight_decay")) o->weight_decay = v;
    if (!strcmp(key, "beta1")) o->beta1 = v;
    if (!strcmp(key, "beta2")) o->beta2 = v;
    if (!strcmp(key, "eps")) o->eps = v;
    if (!strcmp(key, "alpha")) o->alpha = v;
    if (!strcmp(key, "scale")) o->scale = v;
    if (sgd && o->momentum == 0) o->nesterov = false;
}

static void apply_overrides(Sema *s) {
    TrainSpec *t = &s->m->train;
    for (int i = 0; i < s->nov; i++) {
        Override *o = &s->ov[i];
        double v = o->value;
        if (!strcmp(o->key, "epochs") || !strcmp(o->key, "iterations") || !strcmp(o->key, "batch") || !strcmp(o->key, "seed")) {
            if (v != floor(v) || v < (o->key[0] == 's' ? 0 : 1) || v > 1e15) {
                err(s, (SrcLoc){0}, "--set %s=%g: must be a whole number%s", o->key, v, o->key[0] == 's' ? "" : " >= 1");
                continue;
            }
            /* the budget --set gives replaces the model's, epochs or iterations */
            if (o->key[0] == 'e') t->epochs = (int64_t)v, t->iterations = 0;
            if (o->key[0] == 'i') t->iterations = (int64_t)v;
            if (o->key[0] == 'b') t->batch = (int64_t)v;
            if (o->key[0] == 's') t->seed = (uint64_t)v;
        } else if (!strcmp(o->key, "lr")) {
            if (!(v > 0)) {
                err(s, (SrcLoc){0}, "--set lr=%g: the learning rate must be positive", v);
                continue;
            }
            t->opt.lr = v;
        } else if (!strcmp(o->key, "momentum") || !strcmp(o->key, "weight_decay") || !strcmp(o->key, "beta1") ||
                   !strcmp(o->key, "beta2") || !strcmp(o->key, "eps") || !strcmp(o->key, "alpha") || !strcmp(o->key, "scale")) {
            override_optimizer(s, o->key, v); /* an optimizer hyperparameter (nnc sweep's grids) */
        } else if (!strcmp(o->key, "eval_initial") || !strcmp(o->key, "train_eval")) { /* `evaluate initial/train_eval` */
            if ((v != 0 && v != 1) || t->sampler.kind != SAMPLER_NONE) {
                err(s, (SrcLoc){0}, "--set %s=%g: %s", o->key, v, t->sampler.kind != SAMPLER_NONE ? "a sampler evaluates once, over its draws"
                                                                                                : "1 (on) or 0 (off)");
                continue;
            }
            *(o->key[0] == 'e' ? &t->eval_initial : &t->eval_train) = v == 1;
        } else if (!strcmp(o->key, "valid")) {
            if (!(v >= 0 && v < 1)) {
                err(s, (SrcLoc){0}, "--set valid=%g: the validation fraction must be in [0, 1)", v);
                continue;
            }
            t->valid_fraction = v;
        } else if (!strcmp(o->key, "eval_every")) { /* `evaluate every N steps`; 0: after every epoch */
            if (t->sampler.kind != SAMPLER_NONE || v != floor(v) || v < 0 || v > 1e12) {
                err(s, (SrcLoc){0}, "--set eval_every=%g: %s", v, t->sampler.kind != SAMPLER_NONE
                    ? "a sampler evaluates once, over its draws" : "a whole number of steps (0: after every epoch)");
                continue;
            }
            t->eval_every = (int64_t)v;
        } else if (!strcmp(o->key, "samples") && t->sampler.kind == SAMPLER_NONE && t->eval_samples) {
            if (v != floor(v) || v < 2 || v > 100000) { /* `evaluate samples = S` */
                err(s, (SrcLoc){0}, "--set samples=%g: the draws an evaluation averages, a whole number in [2, 100000]", v);
                continue;
            }
            t->eval_samples = (int64_t)v;
        } else if (is_sampler_key(o->key)) {
            SamplerSpec *sp = &t->sampler;
            if (sp->kind == SAMPLER_NONE) {
                err(s, (SrcLoc){0}, "--set %s=%g: the model has no sampler; it trains with an optimizer", o->key, v);
                continue;
            }
            if (!strcmp(o->key, "parallel")) {
                if (v != 0 && v != 1) {
                    err(s, (SrcLoc){0}, "--set parallel=%g: 1 (chains at once, where they can) or 0 (one after another)", v);
                    continue;
                }
                sp->parallel = v == 1;
                continue;
            }
            if (!strcmp(o->key, "step")) {
                if (sp->kind == SAMPLER_SGLD || !(v > 0)) {
                    err(s, (SrcLoc){0}, "--set step=%g: %s", v,
                        sp->kind == SAMPLER_SGLD ? "sgld has no step (its step size is lr)" : "the step must be positive");
                    continue;
                }
                sp->step = v;
                continue;
            }
            int k = 0;
            while (strcmp(sampler_ints[k].name, o->key)) k++;
            bool applies = strcmp(o->key, "max_depth") || sp->kind == SAMPLER_NUTS; /* max_depth: nuts only */
            if (!applies || v != floor(v) || v < (double)sampler_ints[k].lo || v > (double)sampler_ints[k].hi) {
                if (!applies)
                    err(s, (SrcLoc){0}, "--set max_depth=%g: only nuts has a tree depth", v);
                else
                    err(s, (SrcLoc){0}, "--set %s=%g: must be a whole number in [%lld, %lld]", o->key, v,
                        (long long)sampler_ints[k].lo, (long long)sampler_ints[k].hi);
                continue;
            }
            int64_t depth = sp->max_depth;
            *sampler_int(sp, k, &depth) = (int64_t)v;
            sp->max_depth = (int)depth;
        }
    }
}

/* The names a source gives, npy's arrays or csv's target columns, against the model's inputs
 * and targets (csv: its targets alone, the input being the columns they leave): a name the model
 * lacks (with did-you-mean) or, for csv, names as an input; then each one not given, with a note
 * at its declaration (not the one a misspelling was taken for). */
static void check_names(Sema *s, const DataSpec *d, bool csv) {
    const char *suggested = NULL;
    for (int k = 0; k < d->narray; k++) {
        const IoDef *io = NULL;
        const char *cand[32];
        int nc = 0;
        for (int i = 0; i < s->m->nio; i++) {
            if (!strcmp(s->m->io[i].name, d->array[k].name)) io = &s->m->io[i];
            if ((!csv || s->m->io[i].is_target) && nc < 32) cand[nc++] = s->m->io[i].name;
        }
        if (io && (!csv || io->is_target)) continue;
        const char *near = io ? NULL : diag_suggest(d->array[k].name, cand, nc);
        if (near) suggested = near;
        const char *what = csv ? io ? "it is an input: the input is the columns the targets leave" : "the model has no target of that name"
                               : "the model has no input or target of that name";
        err(s, d->array[k].loc, csv ? "csv names '%s' as a target, but %s%s%s%s" : "npy gives '%s', but %s%s%s%s",
            diag_name(d->array[k].name), what, near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
    }
    for (int i = 0; i < s->m->nio; i++) {
        const IoDef *io = &s->m->io[i];
        bool given = false;
        for (int k = 0; k < d->narray; k++) given |= !strcmp(io->name, d->array[k].name);
        if ((csv && !io->is_target) || given || (suggested && !strcmp(suggested, io->name))) continue;
        if (csv)
            err(s, d->loc, "this csv source gives no column for target '%s'; add %s = \"COLUMN\" (a header name) or an index",
                diag_name(io->name), io->name);
        else
            err(s, d->loc, "this data source gives no array for %s '%s'; add %s = \"FILE.npy\"", io->is_target ? "target" : "input",
                diag_name(io->name), io->name);
        diag_note(s->diag, io->loc, "'%s' is declared here", io->name);
    }
}

/* A source names every input and target of the model it must (npy: all; csv with several
 * targets: each target), and nothing else; the others give one input and one target. */
static void finish_arrays(Sema *s, const DataSpec *d) {
    if (d->kind == DATA_NONE) return;
    int ni = 0, nt = 0;
    for (int i = 0; i < s->m->nio; i++) *(s->m->io[i].is_target ? &nt : &ni) += 1;
    bool csv = d->kind == DATA_CSV && (d->narray || nt > 1); /* several targets: each named, the rest is the one input */
    if (csv && ni > 1) {
        err(s, d->loc, "csv gives one input (the columns its targets leave), but the model has %d inputs; give each its own "
            "file with npy(NAME = \"FILE.npy\", ...)", ni);
        return;
    }
    if (csv || d->kind == DATA_NPY) {
        check_names(s, d, csv);
        return;
    }
    if (ni > 1 || nt > 1)
        err(s, d->loc, "this data source gives one input and one target, but the model has %d input%s and %d target%s; "
            "give each its own file with npy(NAME = \"FILE.npy\", ...)", ni, ni == 1 ? "" : "s", nt, nt == 1 ? "" : "s");
}

void sema_train_finish(Sema *s) {
    Model *m = s->m;
    apply_overrides(s);
    finish_arrays(s, &m->train.data);
    finish_arrays(s, &m->train.test);
    if (m->train.stop.nnode) finish_stop(s);
    if (m->train.sampler.kind == SAMPLER_NONE && m->train.opt.kind == OPT_PRE_SGD && m->train.prune_every)
        err(s, m->train.prune_loc, "%s keeps a Hessian estimate of the weights it trains; it cannot prune them as it goes "
                                   "(train with another optimizer to prune)", opt_name(&m->train.opt));
    for (int i = 0; i < m->train.nsched; i++) {
        const ScheduleSpec *sp = &m->train.sched[i];
        if (m->train.sampler.kind != SAMPLER_NONE) {
            err(s, sp->loc, "schedules are for optimizers: a sampler draws from one posterior, with its params fixed "
                            "(its step size adapts during burn-in)");
            continue;
        }
        if (sp->param < 0 || m->param[sp->param].fixed_at.line == 0) continue;
        err(s, sp->loc, "'%s' cannot be scheduled: its value is fixed when the model is compiled", sp->target);
        diag_note(s->diag, m->param[sp->param].fixed_at, "its value is used here");
    }
}
