/* sema_layers.c: the layer table of the checking pass.  One row per layer the language knows:
 * its name, its arguments, the LayerKind it makes (what lower.c turns into IR), the stem of
 * its weights' names, and a check function that checks its input's shape and its arguments'
 * values (located errors), fills in the SV_LAYER and adds its line to `nnc check`'s table.
 * A new layer is a row here (and, for a new LayerKind, a case in lower.c).  sema.c resolves
 * a name to a row and calls sema_layers_apply. */
#include <string.h>

#include "sema_internal.h"

/* ---- what the rows share ---- */

static void add_row(Sema *s, const char *desc, SVal *v, int64_t nparams) {
    LayerRow r = {s->owner ? s->owner : "(loss)", desc, v->shape, nparams, v->loc};
    ARENA_PUSH(s->arena, s->m->row, s->m->nrow, s->caprow, r);
}

static bool need_flat(Sema *s, const char *lname, SVal *x, SrcLoc loc) {
    char buf[96];
    if (x->is_class) {
        err(s, loc, "'%s' cannot take a class target as input", lname);
        return false;
    }
    if (!x->shape.batched || x->shape.rank != 1) {
        err(s, loc, "'%s' needs a flat input f32[B,n], but its input is %s%s", lname,
            sema_type_str(buf, sizeof buf, x), x->shape.rank > 1 ? "; apply flatten first" : "");
        return false;
    }
    return true;
}

/* The current value of a run-time scalar expression (params at their values). */
static double scalar_value(const Sema *s, const SVal *v) {
    switch (v->kind) {
    case SV_CONST: return v->num;
    case SV_PARAM: return s->m->param[v->index].value;
    case SV_NEG: return -scalar_value(s, v->a);
    case SV_BINARY: {
        double a = scalar_value(s, v->a), b = scalar_value(s, v->b);
        return v->op == '+' ? a + b : v->op == '-' ? a - b : v->op == '*' ? a * b : a / b;
    }
    default: NNC_BUG("not a scalar expression");
    }
}

/* ---- the rows' checks ---- */

static SVal *check_dense(Sema *s, const LayerDef *ld, const Ast *e, const Ast *const *a, SVal *v) {
    SVal *x = v->a;
    int64_t units;
    if (!need_flat(s, ld->name, x, e->loc)) return NULL;
    if (!sema_eval_int(s, a[0], "the number of units", 1, 1 << 24, &units)) return NULL;
    if (!sema_args_bool(s, a[1], true, &v->bias)) return NULL;
    v->declared = units;
    for (int i = 0; i < s->nwidth; i++) /* pruned: the surviving width */
        if (!strcmp(s->width[i].layer, v->wname)) units = s->width[i].units;
    v->units = units;
    v->shape = shape_vec(units, true);
    int64_t np = units * x->shape.dim[0] + (v->bias ? units : 0);
    add_row(s, arena_printf(s->arena, "dense(%lld)", (long long)units), v, np);
    return v;
}

static SVal *check_flatten(Sema *s, const LayerDef *ld, const Ast *e, const Ast *const *a, SVal *v) {
    SVal *x = v->a;
    char buf[96];
    if (x->is_class) {
        err(s, e->loc, "'flatten' cannot take a class target as input");
        return NULL;
    }
    if (!x->shape.batched || x->shape.rank < 1) {
        err(s, e->loc, "'flatten' needs a batched tensor, but its input is %s", sema_type_str(buf, sizeof buf, x));
        return NULL;
    }
    v->shape = shape_vec(shape_numel(x->shape), true);
    add_row(s, "flatten", v, 0);
    return v;
}

/* The activations, identity included: elementwise, any batched real-valued input. */
static SVal *check_act(Sema *s, const LayerDef *ld, const Ast *e, const Ast *const *a, SVal *v) {
    SVal *x = v->a;
    char buf[96];
    if (x->is_class || !x->shape.batched) {
        err(s, e->loc, "'%s' needs a batched real-valued tensor, but its input is %s", ld->name,
            sema_type_str(buf, sizeof buf, x));
        return NULL;
    }
    v->act = ld->act;
    if (ld->nargs && !sema_args_num(s, a[0], &ld->args[0], &v->alpha)) return NULL;
    if (ld->act == OP_ELU && v->alpha <= 0) {
        err(s, a[0]->loc, "elu's alpha must be positive, got %g", v->alpha);
        return NULL;
    }
    if (ld->act == OP_COUNT) return x; /* identity */
    add_row(s, ld->nargs ? arena_printf(s->arena, "%s(%g)", ld->name, v->alpha) : ld->name, v, 0);
    return v;
}

static SVal *check_prelu(Sema *s, const LayerDef *ld, const Ast *e, const Ast *const *a, SVal *v) {
    SVal *x = v->a;
    if (!need_flat(s, ld->name, x, e->loc)) return NULL;
    if (!sema_args_num(s, a[0], &ld->args[0], &v->alpha)) return NULL;
    add_row(s, "prelu", v, x->shape.dim[0]);
    return v;
}

/* What gate and size_gate share: a flat input, whose neurons' dense layer gives the declared
 * width; the penalty coefficient (coef, a run-time scalar) and min_width. */
static bool check_gate_common(Sema *s, const LayerDef *ld, const Ast *e, const Ast *coef, const Ast *minw, SVal *v) {
    SVal *x = v->a;
    if (!need_flat(s, ld->name, x, e->loc)) return false;
    int64_t width = x->shape.dim[0];
    v->declared = width;
    for (const SVal *l = x; l && l->kind == SV_LAYER; l = l->a) /* the dense layer that made the neurons */
        if (l->layer == L_DENSE) {
            v->declared = l->declared;
            break;
        } else if (l->layer != L_ACT && l->layer != L_PRELU && l->layer != L_GATE) {
            break;
        }
    if (coef) {
        v->coef = sema_eval_scalar(s, coef);
        if (!v->coef) return false;
        double now = scalar_value(s, v->coef);
        if (now < 0) {
            err(s, coef->loc, "the %s must not be negative, but it is %g", v->size_gate ? "penalty" : "l1 penalty", now);
            return false;
        }
    } else {
        v->coef = sema_sval(s, SV_CONST, e->loc);
    }
    v->min_width = 1;
    if (minw && !sema_eval_int(s, minw, "min_width", 1, width, &v->min_width)) return false;
    return true;
}

static SVal *check_gate(Sema *s, const LayerDef *ld, const Ast *e, const Ast *const *a, SVal *v) {
    if (!check_gate_common(s, ld, e, a[0], a[1], v)) return NULL;
    add_row(s, "gate", v, v->a->shape.dim[0]);
    return v;
}

static SVal *check_size_gate(Sema *s, const LayerDef *ld, const Ast *e, const Ast *const *a, SVal *v) {
    v->size_gate = true;
    if (!check_gate_common(s, ld, e, a[1], a[4], v)) return NULL;
    if (!sema_args_num(s, a[0], &ld->args[0], &v->slope) || !sema_args_num(s, a[2], &ld->args[2], &v->threshold))
        return NULL;
    if (!(v->slope > 0)) {
        err(s, a[0]->loc, "the slope must be positive, got %g", v->slope);
        return NULL;
    }
    if (!(v->threshold > 0 && v->threshold < 1)) {
        err(s, a[2]->loc, "the threshold is a gate factor, between 0 and 1 (exclusive), got %g", v->threshold);
        return NULL;
    }
    v->init = (double)v->a->shape.dim[0]; /* every neuron starts open */
    if (a[3] && !sema_eval_const(s, a[3], &v->init)) return NULL;
    add_row(s, arena_printf(s->arena, "size_gate(slope %g)", v->slope), v, 1);
    return v;
}

/* ---- the table ---- */

static const LayerDef layers[] = {
    {"dense", L_DENSE, .check = check_dense, .stem = "dense",
     SEMA_ARGS({"units", A_INT, true, 0}, {"bias", A_BOOL, false, 1})},
    {"flatten", L_FLATTEN, .check = check_flatten},
    {"relu", L_ACT, .check = check_act, .act = OP_RELU},
    {"leaky_relu", L_ACT, .check = check_act, .act = OP_LEAKY_RELU, SEMA_ARGS({"slope", A_NUM, false, 0.01})},
    {"elu", L_ACT, .check = check_act, .act = OP_ELU, SEMA_ARGS({"alpha", A_NUM, false, 1.0})},
    {"tanh", L_ACT, .check = check_act, .act = OP_TANH},
    {"sigmoid", L_ACT, .check = check_act, .act = OP_SIGMOID},
    {"softplus", L_ACT, .check = check_act, .act = OP_SOFTPLUS},
    {"gelu", L_ACT, .check = check_act, .act = OP_GELU},
    {"identity", L_ACT, .check = check_act, .act = OP_COUNT},
    {"prelu", L_PRELU, .check = check_prelu, .stem = "prelu", SEMA_ARGS({"init", A_NUM, false, 0.25})},
    {"gate", L_GATE, .check = check_gate, .stem = "gate",
     SEMA_ARGS({"l1", A_SCALAR, false, 0}, {"min_width", A_INT, false, 1})},
    {"size_gate", L_GATE, .check = check_size_gate, .stem = "gate",
     SEMA_ARGS({"slope", A_NUM, true, 0}, {"penalty", A_SCALAR, false, 0}, {"threshold", A_NUM, false, 0.01},
               {"init", A_NUM, false, 0}, {"min_width", A_INT, false, 1})},
    {"conv1d", .todo = "convolutions"},
    {"conv2d", .todo = "convolutions"},
    {"maxpool", .todo = "pooling layers"},
    {"avgpool", .todo = "pooling layers"},
    {"dropout", .todo = "dropout"},
    {"batch_norm", .todo = "normalisation layers"},
    {"layer_norm", .todo = "normalisation layers"},
    {"bayes_dense", .todo = "variational layers"},
    {"fd_grad", .todo = "finite-difference input gradients"},
};
enum { NLAYERS = sizeof layers / sizeof *layers };

const LayerDef *sema_layers_find(const char *name) {
    for (int i = 0; i < NLAYERS; i++)
        if (!strcmp(layers[i].name, name)) return &layers[i];
    return NULL;
}

const char *sema_layers_suggest(const char *name) {
    const char *cand[NLAYERS];
    for (int i = 0; i < NLAYERS; i++) cand[i] = layers[i].name;
    return diag_suggest(name, cand, NLAYERS);
}

/* ---- applying a row ---- */

static WeightStem *find_stem(Sema *s, const char *stem) {
    for (int i = 0; i < s->nstem; i++)
        if (!strcmp(s->stem[i].stem, stem)) return &s->stem[i];
    return NULL;
}

void sema_layers_count(Sema *s, const Ast *e) {
    for (; e; e = e->kind == AST_PIPE ? e->lhs : NULL) {
        const Ast *l = e->kind == AST_PIPE ? e->rhs : e;
        if (l->kind == AST_CALL || l->kind == AST_NAME) {
            const LayerDef *ld = sema_layers_find(l->text);
            if (ld && !ld->todo && ld->stem) {
                WeightStem *w = find_stem(s, ld->stem);
                if (!w) {
                    ARENA_PUSH(s->arena, s->stem, s->nstem, s->capstem, ((WeightStem){ld->stem, 0, 0}));
                    w = &s->stem[s->nstem - 1];
                }
                w->count++;
            }
            if (l->kind == AST_CALL && l->narg > 0 && !l->arg[0].name) sema_layers_count(s, l->arg[0].value);
        }
    }
}

/* h1 for the binding's only dense layer, h1.dense2 for the second of several. */
static const char *weight_prefix(Sema *s, const char *stem) {
    const char *owner = s->owner ? s->owner : "loss";
    WeightStem *w = find_stem(s, stem);
    if (!w || w->count <= 1) return owner;
    return arena_printf(s->arena, "%s.%s%d", owner, stem, ++w->seen);
}

SVal *sema_layers_apply(Sema *s, const LayerDef *ld, SVal *x, const Ast *e, int skip) {
    const char *name = e->text;
    if (ld->todo) {
        err(s, e->loc, "layer '%s' is not implemented yet", name);
        return NULL;
    }
    if (s->in_loss) {
        err(s, e->loc, "layers cannot be applied inside a loss or metric; bind the result to a name first, as in `out = h -> %s(...)`",
            name);
        return NULL;
    }
    const Ast **a = sema_args_bind(s, name, e->loc, ld->args, ld->nargs, e->kind == AST_CALL ? e->arg + skip : NULL,
                                   e->kind == AST_CALL ? e->narg - skip : 0);
    if (!a) return NULL;
    SVal *v = sema_sval(s, SV_LAYER, e->loc);
    v->layer = ld->kind;
    v->a = x;
    v->shape = x->shape;
    if (ld->stem) v->wname = weight_prefix(s, ld->stem);
    return ld->check(s, ld, e, a, v);
}
