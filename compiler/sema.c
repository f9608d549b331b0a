/* sema.c: name resolution, type and shape checking of a parsed program (AST -> Model).
 * Walks statements in order, so a name is usable only after its definition.  Layers, losses,
 * metrics, data sources and optimisers are table-driven (name, arguments, defaults), which
 * gives every call the same argument checking and did-you-mean.  Documented constructs that
 * are not built yet are rejected here with a located "not implemented yet" error.
 * Guarantees: a returned Model is well-typed; NULL means errors were reported. */
#include <math.h>
#include <string.h>

#include "model.h"

const char *const sema_train_keys[] = {"epochs", "batch", "seed", "lr", "valid"};
const int sema_ntrain_keys = 5;

/* SYM_ERROR: a name whose definition failed (and was reported); its uses stay silent. */
typedef enum { SYM_PARAM, SYM_IO, SYM_VALUE, SYM_ERROR } SymKind;
typedef struct {
    const char *name;
    SymKind kind;
    int index;
    SVal *val;
    SrcLoc loc;
} Sym;

typedef struct {
    Arena *arena;
    Diag *diag;
    Model *m;
    Override *ov;
    int nov;
    const WidthOverride *width;
    int nwidth;
    Sym *sym;
    int nsym, capsym;
    Sym *later; /* names defined anywhere in the file, for use-before-definition */
    int nlater, caplater;
    const char **block; /* blocks declared (not built yet): their uses stay silent */
    int nblock, capblock;
    const char **mention; /* every name used in an expression anywhere */
    int nmention, capmention;
    bool in_loss; /* evaluating a loss or metric: no layers here */
    const char *owner; /* binding being defined, for weight names */
    int owner_count[8]; /* per layer kind: how many param layers the binding has */
    int owner_seen[8];
    int capio, capparam, caprow, capmetric, capsched;
    const TrainItem *stop_item;
} Sema;

static void err(Sema *s, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void err(Sema *s, SrcLoc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_verror(s->diag, loc, fmt, ap);
    va_end(ap);
}

static SVal *sval(Sema *s, SValKind kind, SrcLoc loc) {
    SVal *v = arena_alloc(s->arena, sizeof *v);
    v->kind = kind;
    v->loc = loc;
    v->act = OP_COUNT;
    return v;
}

static const char *type_str(char *buf, size_t n, const SVal *v) {
    if (v->is_class) {
        snprintf(buf, n, "class[%lld]", (long long)v->nclass);
        return buf;
    }
    return shape_str(buf, n, DT_F32, v->shape);
}

/* ---- scope ---- */

static Sym *lookup(Sema *s, const char *name) {
    for (int i = s->nsym - 1; i >= 0; i--)
        if (!strcmp(s->sym[i].name, name)) return &s->sym[i];
    return NULL;
}

static void define(Sema *s, const char *name, SrcLoc loc, SymKind kind, int index, SVal *val) {
    Sym *prev = lookup(s, name);
    if (prev) {
        err(s, loc, "redefinition of '%s'", diag_name(name));
        diag_note(s->diag, prev->loc, "'%s' was first defined here", diag_name(name));
        return;
    }
    Sym sym = {name, kind, index, val, loc};
    ARENA_PUSH(s->arena, s->sym, s->nsym, s->capsym, sym);
}

static void unknown_name(Sema *s, SrcLoc loc, const char *name, const char *what) {
    for (int i = 0; i < s->nlater; i++)
        if (!strcmp(s->later[i].name, name)) {
            err(s, loc, "'%s' is used before its definition", diag_name(name));
            diag_note(s->diag, s->later[i].loc, "'%s' is defined here", diag_name(name));
            return;
        }
    const char **cand = arena_alloc(s->arena, sizeof(char *) * (size_t)(s->nsym + 1));
    for (int i = 0; i < s->nsym; i++) cand[i] = s->sym[i].name;
    const char *near = diag_suggest(name, cand, s->nsym);
    if (near)
        err(s, loc, "unknown %s '%s'; did you mean '%s'?", what, diag_name(name), near);
    else
        err(s, loc, "unknown %s '%s'", what, diag_name(name));
}

/* ---- compile-time numbers ---- */

static bool eval_const(Sema *s, const Ast *e, double *out) {
    switch (e->kind) {
    case AST_NUM: *out = e->num; return true;
    case AST_NAME: {
        Sym *sym = lookup(s, e->text);
        if (!sym) {
            unknown_name(s, e->loc, e->text, "name");
            return false;
        }
        if (sym->kind == SYM_ERROR) return false;
        if (sym->kind != SYM_PARAM) {
            err(s, e->loc, "'%s' is a tensor, but a number is needed here", diag_name(e->text));
            return false;
        }
        ParamDef *pd = &s->m->param[sym->index];
        if (pd->fixed_at.line == 0) pd->fixed_at = e->loc; /* a schedule could not change this use */
        *out = pd->value;
        return true;
    }
    case AST_UNARY:
        if (e->op == '-' && eval_const(s, e->lhs, out)) {
            *out = -*out;
            return true;
        }
        if (e->op != '-') err(s, e->loc, "expected a number here");
        return false;
    case AST_BINARY: {
        double a, b;
        if (e->op == OPR_AND || e->op == OPR_OR || (e->op >= OPR_LE && e->op <= OPR_NE) ||
            e->op == '<' || e->op == '>') {
            err(s, e->loc, "comparisons are only allowed in `stop when` conditions");
            return false;
        }
        bool ok = eval_const(s, e->lhs, &a);
        ok = eval_const(s, e->rhs, &b) && ok;
        if (!ok) return false;
        switch (e->op) {
        case '+': *out = a + b; break;
        case '-': *out = a - b; break;
        case '*': *out = a * b; break;
        case '/':
            if (b == 0) {
                err(s, e->loc, "division by zero in a constant expression");
                return false;
            }
            *out = a / b;
            break;
        case '^': *out = pow(a, b); break;
        default: NNC_BUG("operator %d", e->op);
        }
        if (!isfinite(*out)) {
            err(s, e->loc, "constant expression overflows");
            return false;
        }
        return true;
    }
    case AST_ERROR: return false;
    case AST_QUANTITY:
        err(s, e->loc, "a quantity with a unit ('%s') is only allowed in schedules", diag_name(e->text));
        return false;
    default: err(s, e->loc, "expected a number here"); return false;
    }
}

static bool eval_int(Sema *s, const Ast *e, const char *what, int64_t min, int64_t max, int64_t *out) {
    double v;
    if (!eval_const(s, e, &v)) return false;
    if (v != floor(v)) {
        err(s, e->loc, "%s must be a whole number, got %g", what, v);
        return false;
    }
    if (v < (double)min || v > (double)max) {
        err(s, e->loc, "%s must be between %lld and %lld, got %g", what, (long long)min, (long long)max, v);
        return false;
    }
    *out = (int64_t)v;
    return true;
}

/* ---- the losses and metrics the language knows ---- */

typedef struct {
    const char *name;
    int kind; /* LossKind or MetricKind */
    const char *todo;
} FuncDef;

static const FuncDef losses[] = {
    {"cross_entropy", LOSS_CROSS_ENTROPY, NULL},
    {"mse", LOSS_MSE, NULL},
    {"gaussian_nll", 0, "the gaussian_nll loss"},
    {"kl", 0, "the kl term of variational layers"},
    {"cosine_diversity", 0, "the cosine_diversity loss"},
};
static const FuncDef metrics[] = {
    {"accuracy", METRIC_ACCURACY, NULL},
    {"error", METRIC_ERROR, NULL},
    {"relative_error", 0, "the relative_error metric"},
    {"rmse", 0, "the rmse metric"},
    {"nll", 0, "the nll metric"},
    {"live", 0, "the live-neuron metric"},
};

static const FuncDef *find_func(const FuncDef *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return &t[i];
    return NULL;
}

/* ---- run-time scalar expressions (gate penalties, loss weights) ---- */

static SVal *eval_loss_call(Sema *s, const Ast *e);
static SVal *eval_tensor(Sema *s, const Ast *e);

/* Numbers and params combined with + - * / ^; in a loss (`in_loss`), loss calls too. */
static SVal *eval_arith(Sema *s, const Ast *e, bool in_loss) {
    char buf[96];
    switch (e->kind) {
    case AST_CALL:
        if (in_loss) return eval_loss_call(s, e);
        break;
    case AST_NUM: {
        SVal *v = sval(s, SV_CONST, e->loc);
        v->num = e->num;
        return v;
    }
    case AST_NAME: {
        Sym *sym = lookup(s, e->text);
        const FuncDef *todo = in_loss && !sym ? find_func(losses, (int)(sizeof losses / sizeof *losses), e->text) : NULL;
        if (todo && todo->todo) {
            err(s, e->loc, "loss '%s' is not implemented yet", todo->name);
            return NULL;
        }
        if (!sym) {
            unknown_name(s, e->loc, e->text, "name");
            return NULL;
        }
        if (sym->kind == SYM_ERROR) return NULL;
        if (sym->kind != SYM_PARAM) {
            if (in_loss)
                err(s, e->loc, "a loss must be a scalar, but '%s' is %s; apply a loss function such as cross_entropy",
                    diag_name(e->text), type_str(buf, sizeof buf, sym->val));
            else
                err(s, e->loc, "'%s' is a tensor, but a scalar is needed here", diag_name(e->text));
            return NULL;
        }
        SVal *v = sval(s, SV_PARAM, e->loc);
        v->index = sym->index;
        return v;
    }
    case AST_UNARY:
        if (e->op == '-') {
            SVal *x = eval_arith(s, e->lhs, in_loss);
            if (!x) return NULL;
            SVal *v = sval(s, SV_NEG, e->loc);
            v->a = x;
            return v;
        }
        break;
    case AST_BINARY:
        if (e->op == '+' || e->op == '-' || e->op == '*' || e->op == '/') {
            SVal *a = eval_arith(s, e->lhs, in_loss), *b = eval_arith(s, e->rhs, in_loss);
            if (!a || !b) return NULL;
            if (e->op == '/' && b->kind == SV_CONST && b->num == 0) {
                err(s, e->rhs->loc, "division by zero");
                return NULL;
            }
            SVal *v = sval(s, SV_BINARY, e->loc);
            v->op = e->op;
            v->a = a;
            v->b = b;
            return v;
        }
        if (e->op == '^') {
            double x;
            if (!eval_const(s, e, &x)) return NULL;
            SVal *v = sval(s, SV_CONST, e->loc);
            v->num = x;
            return v;
        }
        break;
    case AST_PIPE:
        if (in_loss) {
            SVal *x = eval_tensor(s, e);
            if (x)
                err(s, e->loc, "a loss must be a scalar, but this is %s; apply a loss function such as cross_entropy",
                    type_str(buf, sizeof buf, x));
            return NULL;
        }
        break;
    case AST_ERROR: return NULL;
    default: break;
    }
    if (in_loss)
        err(s, e->loc, "expected a loss expression: loss functions, numbers and params combined with + - * /");
    else
        err(s, e->loc, "expected a scalar expression of numbers and params here");
    return NULL;
}

static SVal *eval_scalar(Sema *s, const Ast *e) { return eval_arith(s, e, false); }

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

/* ---- argument binding ---- */

typedef enum { A_INT, A_NUM, A_SCALAR, A_BOOL, A_TENSOR, A_WORD, A_STRING, A_ANY } ArgType;
typedef struct {
    const char *name;
    ArgType type;
    bool required;
    double def;
} ArgSpec;

enum { MAX_ARGS = 8 };

/* Matches positional then named arguments to the spec; out[i] is the AST for spec[i] or NULL. */
static bool bind_args(Sema *s, const char *callee, SrcLoc loc, const ArgSpec *spec, int nspec,
                      const AstArg *args, int nargs, int skip, const Ast **out) {
    bool ok = true;
    for (int i = 0; i < MAX_ARGS; i++) out[i] = NULL;
    int pos = skip;
    for (int i = 0; i < nargs; i++) {
        const AstArg *a = &args[i];
        int k = -1;
        if (!a->name) {
            if (pos >= nspec) {
                int np = nspec - skip;
                err(s, a->value->loc, "too many arguments to '%s' (it takes %d)", callee, np);
                ok = false;
                continue;
            }
            k = pos++;
        } else {
            for (int j = skip; j < nspec; j++)
                if (!strcmp(spec[j].name, a->name)) k = j;
            if (k < 0) {
                const char *cand[MAX_ARGS];
                for (int j = 0; j < nspec; j++) cand[j] = spec[j].name;
                const char *near = diag_suggest(a->name, cand + skip, nspec - skip);
                if (nspec == skip)
                    err(s, a->name_loc, "'%s' takes no arguments", callee);
                else if (near)
                    err(s, a->name_loc, "'%s' has no argument '%s'; did you mean '%s'?", callee,
                        diag_name(a->name), near);
                else
                    err(s, a->name_loc, "'%s' has no argument '%s'", callee, diag_name(a->name));
                ok = false;
                continue;
            }
        }
        if (out[k]) {
            err(s, a->name ? a->name_loc : a->value->loc, "argument '%s' of '%s' is given twice",
                spec[k].name, callee);
            ok = false;
            continue;
        }
        out[k] = a->value;
    }
    for (int j = skip; j < nspec; j++)
        if (spec[j].required && !out[j]) {
            err(s, loc, "'%s' needs the argument '%s'", callee, spec[j].name);
            ok = false;
        }
    return ok;
}

static bool arg_num(Sema *s, const Ast *e, const ArgSpec *spec, double *out) {
    if (!e) {
        *out = spec->def;
        return true;
    }
    return eval_const(s, e, out);
}

static bool arg_bool(Sema *s, const Ast *e, bool def, bool *out) {
    if (!e) {
        *out = def;
        return true;
    }
    if (e->kind == AST_NAME && (!strcmp(e->text, "true") || !strcmp(e->text, "false"))) {
        *out = !strcmp(e->text, "true");
        return true;
    }
    err(s, e->loc, "expected true or false");
    return false;
}

/* ---- layers ---- */

typedef struct {
    const char *name;
    LayerKind kind;
    Op act;
    const char *todo; /* not implemented yet: which issue area */
    int nargs;
    ArgSpec args[5];
} LayerDef;

static const LayerDef layers[] = {
    {"dense", L_DENSE, OP_COUNT, NULL, 2, {{"units", A_INT, true, 0}, {"bias", A_BOOL, false, 1}}},
    {"flatten", L_FLATTEN, OP_COUNT, NULL, 0, {{0}}},
    {"relu", L_ACT, OP_RELU, NULL, 0, {{0}}},
    {"leaky_relu", L_ACT, OP_LEAKY_RELU, NULL, 1, {{"slope", A_NUM, false, 0.01}}},
    {"elu", L_ACT, OP_ELU, NULL, 1, {{"alpha", A_NUM, false, 1.0}}},
    {"tanh", L_ACT, OP_TANH, NULL, 0, {{0}}},
    {"sigmoid", L_ACT, OP_SIGMOID, NULL, 0, {{0}}},
    {"softplus", L_ACT, OP_SOFTPLUS, NULL, 0, {{0}}},
    {"gelu", L_ACT, OP_GELU, NULL, 0, {{0}}},
    {"identity", L_ACT, OP_COUNT, NULL, 0, {{0}}},
    {"prelu", L_PRELU, OP_COUNT, NULL, 1, {{"init", A_NUM, false, 0.25}}},
    {"gate", L_GATE, OP_COUNT, NULL, 2, {{"l1", A_SCALAR, false, 0}, {"min_width", A_INT, false, 1}}},
    {"size_gate", L_GATE, OP_COUNT, NULL, 5,
     {{"slope", A_NUM, true, 0}, {"penalty", A_SCALAR, false, 0}, {"threshold", A_NUM, false, 0.01},
      {"init", A_NUM, false, 0}, {"min_width", A_INT, false, 1}}},
    {"conv1d", L_DENSE, OP_COUNT, "convolutions", 0, {{0}}},
    {"conv2d", L_DENSE, OP_COUNT, "convolutions", 0, {{0}}},
    {"maxpool", L_DENSE, OP_COUNT, "pooling layers", 0, {{0}}},
    {"avgpool", L_DENSE, OP_COUNT, "pooling layers", 0, {{0}}},
    {"dropout", L_DENSE, OP_COUNT, "dropout", 0, {{0}}},
    {"batch_norm", L_DENSE, OP_COUNT, "normalisation layers", 0, {{0}}},
    {"layer_norm", L_DENSE, OP_COUNT, "normalisation layers", 0, {{0}}},
    {"bayes_dense", L_DENSE, OP_COUNT, "variational layers", 0, {{0}}},
    {"fd_grad", L_DENSE, OP_COUNT, "finite-difference input gradients", 0, {{0}}},
};
enum { NLAYERS = sizeof layers / sizeof *layers };

static const LayerDef *find_layer(const char *name) {
    for (int i = 0; i < NLAYERS; i++)
        if (!strcmp(layers[i].name, name)) return &layers[i];
    return NULL;
}


static void unknown_layer(Sema *s, SrcLoc loc, const char *name) {
    const char *cand[NLAYERS];
    for (int i = 0; i < NLAYERS; i++) cand[i] = layers[i].name;
    const char *near = diag_suggest(name, cand, NLAYERS);
    if (near)
        err(s, loc, "unknown layer '%s'; did you mean '%s'?", diag_name(name), near);
    else
        err(s, loc, "unknown layer '%s'", diag_name(name));
}

static const char *weight_prefix(Sema *s, LayerKind kind) {
    const char *owner = s->owner ? s->owner : "loss";
    static const char *const kname[] = {[L_DENSE] = "dense", [L_PRELU] = "prelu", [L_GATE] = "gate"};
    int k = ++s->owner_seen[kind];
    if (s->owner_count[kind] <= 1) return owner;
    return arena_printf(s->arena, "%s.%s%d", owner, kname[kind], k);
}

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
            type_str(buf, sizeof buf, x), x->shape.rank > 1 ? "; apply flatten first" : "");
        return false;
    }
    return true;
}

/* Apply the layer named by `e` (a name or a call) to x; `skip` = 1 when x came as the first
 * positional argument of the call. */
static SVal *apply_layer(Sema *s, SVal *x, const Ast *e, int skip) {
    const char *name = e->text;
    const LayerDef *ld = find_layer(name);
    for (int i = 0; !ld && i < s->nblock; i++)
        if (!strcmp(s->block[i], name)) return NULL; /* the block was reported */
    if (!ld) {
        if (find_func(losses, sizeof losses / sizeof *losses, name))
            err(s, e->loc, "'%s' is a loss, not a layer; use it in a `loss` statement", name);
        else if (find_func(metrics, sizeof metrics / sizeof *metrics, name))
            err(s, e->loc, "'%s' is a metric, not a layer; use it in a `metric` statement", name);
        else
            unknown_layer(s, e->loc, name);
        return NULL;
    }
    if (ld->todo) {
        err(s, e->loc, "layer '%s' is not implemented yet", name);
        return NULL;
    }
    if (s->in_loss) {
        err(s, e->loc, "layers cannot be applied inside a loss or metric; bind the result to a name first, as in `out = h -> %s(...)`",
            name);
        return NULL;
    }
    const Ast *a[MAX_ARGS];
    if (!bind_args(s, name, e->loc, ld->args, ld->nargs, e->kind == AST_CALL ? e->arg + skip : NULL,
                   e->kind == AST_CALL ? e->narg - skip : 0, 0, a))
        return NULL;
    char buf[96];
    SVal *v = sval(s, SV_LAYER, e->loc);
    v->layer = ld->kind;
    v->a = x;
    v->shape = x->shape;
    switch (ld->kind) {
    case L_DENSE: {
        int64_t units;
        if (!need_flat(s, name, x, e->loc)) return NULL;
        if (!eval_int(s, a[0], "the number of units", 1, 1 << 24, &units)) return NULL;
        if (!arg_bool(s, a[1], true, &v->bias)) return NULL;
        v->wname = weight_prefix(s, L_DENSE);
        v->declared = units;
        for (int i = 0; i < s->nwidth; i++) /* pruned: the surviving width */
            if (!strcmp(s->width[i].layer, v->wname)) units = s->width[i].units;
        v->units = units;
        v->shape = shape_vec(units, true);
        int64_t np = units * x->shape.dim[0] + (v->bias ? units : 0);
        add_row(s, arena_printf(s->arena, "dense(%lld)", (long long)units), v, np);
        return v;
    }
    case L_FLATTEN:
        if (x->is_class) {
            err(s, e->loc, "'flatten' cannot take a class target as input");
            return NULL;
        }
        if (!x->shape.batched || x->shape.rank < 1) {
            err(s, e->loc, "'flatten' needs a batched tensor, but its input is %s", type_str(buf, sizeof buf, x));
            return NULL;
        }
        v->shape = shape_vec(shape_numel(x->shape), true);
        add_row(s, "flatten", v, 0);
        return v;
    case L_ACT:
        if (x->is_class || !x->shape.batched) {
            err(s, e->loc, "'%s' needs a batched real-valued tensor, but its input is %s", name,
                type_str(buf, sizeof buf, x));
            return NULL;
        }
        v->act = ld->act;
        if (ld->nargs && !arg_num(s, a[0], &ld->args[0], &v->alpha)) return NULL;
        if (ld->act == OP_ELU && v->alpha <= 0) {
            err(s, a[0]->loc, "elu's alpha must be positive, got %g", v->alpha);
            return NULL;
        }
        if (ld->act == OP_COUNT) return x; /* identity */
        add_row(s, ld->nargs ? arena_printf(s->arena, "%s(%g)", name, v->alpha) : name, v, 0);
        return v;
    case L_PRELU:
        if (!need_flat(s, name, x, e->loc)) return NULL;
        if (!arg_num(s, a[0], &ld->args[0], &v->alpha)) return NULL;
        v->wname = weight_prefix(s, L_PRELU);
        add_row(s, "prelu", v, x->shape.dim[0]);
        return v;
    case L_GATE: {
        if (!need_flat(s, name, x, e->loc)) return NULL;
        int64_t width = x->shape.dim[0];
        v->size_gate = !strcmp(name, "size_gate");
        v->declared = width;
        for (const SVal *l = x; l && l->kind == SV_LAYER; l = l->a) /* the dense layer that made the neurons */
            if (l->layer == L_DENSE) {
                v->declared = l->declared;
                break;
            } else if (l->layer != L_ACT && l->layer != L_PRELU && l->layer != L_GATE) {
                break;
            }
        const Ast *coef = a[v->size_gate ? 1 : 0], *minw = a[v->size_gate ? 4 : 1];
        if (coef) {
            v->coef = eval_scalar(s, coef);
            if (!v->coef) return NULL;
            double now = scalar_value(s, v->coef);
            if (now < 0) {
                err(s, coef->loc, "the %s must not be negative, but it is %g", v->size_gate ? "penalty" : "l1 penalty", now);
                return NULL;
            }
        } else {
            v->coef = sval(s, SV_CONST, e->loc);
        }
        v->min_width = 1;
        if (minw && !eval_int(s, minw, "min_width", 1, width, &v->min_width)) return NULL;
        if (v->size_gate) {
            if (!arg_num(s, a[0], &ld->args[0], &v->slope) || !arg_num(s, a[2], &ld->args[2], &v->threshold)) return NULL;
            if (!(v->slope > 0)) {
                err(s, a[0]->loc, "the slope must be positive, got %g", v->slope);
                return NULL;
            }
            if (!(v->threshold > 0 && v->threshold < 1)) {
                err(s, a[2]->loc, "the threshold is a gate factor, between 0 and 1 (exclusive), got %g", v->threshold);
                return NULL;
            }
            v->init = (double)width; /* every neuron starts open */
            if (a[3] && !eval_const(s, a[3], &v->init)) return NULL;
        }
        v->wname = weight_prefix(s, L_GATE);
        add_row(s, v->size_gate ? arena_printf(s->arena, "size_gate(slope %g)", v->slope) : "gate", v,
                v->size_gate ? 1 : width);
        return v;
    }
    }
    NNC_BUG("layer kind");
}

static SVal *eval_tensor(Sema *s, const Ast *e);

static SVal *lookup_tensor(Sema *s, const Ast *e) {
    Sym *sym = lookup(s, e->text);
    if (!sym) {
        if (find_layer(e->text)) {
            err(s, e->loc, "layer '%s' has no input; write `x -> %s` or `%s(x)`", e->text, e->text, e->text);
            return NULL;
        }
        unknown_name(s, e->loc, e->text, "name");
        return NULL;
    }
    if (sym->kind == SYM_ERROR) return NULL;
    if (sym->kind == SYM_PARAM) {
        err(s, e->loc, "'%s' is a param (a number), but a tensor is needed here", diag_name(e->text));
        return NULL;
    }
    return sym->val;
}

static SVal *eval_tensor(Sema *s, const Ast *e) {
    switch (e->kind) {
    case AST_NAME: return lookup_tensor(s, e);
    case AST_PIPE: {
        SVal *x = eval_tensor(s, e->lhs);
        if (!x) return NULL;
        const Ast *r = e->rhs;
        if (r->kind == AST_NAME) {
            if (lookup(s, r->text) && !find_layer(r->text)) {
                err(s, r->loc, "'%s' is not a layer; the right side of '->' must be a layer", diag_name(r->text));
                return NULL;
            }
            return apply_layer(s, x, r, 0);
        }
        if (r->kind == AST_CALL) return apply_layer(s, x, r, 0);
        if (r->kind != AST_ERROR) err(s, r->loc, "the right side of '->' must be a layer, such as relu or dense(10)");
        return NULL;
    }
    case AST_CALL: {
        bool config_first = e->narg > 0 && !e->arg[0].name &&
                            (e->arg[0].value->kind == AST_NUM || e->arg[0].value->kind == AST_STR);
        if (!find_layer(e->text) || e->narg == 0 || e->arg[0].name || config_first) {
            if (find_layer(e->text) && !find_layer(e->text)->todo) {
                err(s, e->loc, "layer '%s' has no input; write `x -> %s(...)` or pass the input first",
                    e->text, e->text);
                return NULL;
            }
            return apply_layer(s, NULL, e, 0);
        }
        SVal *x = eval_tensor(s, e->arg[0].value);
        if (!x) return NULL;
        return apply_layer(s, x, e, 1);
    }
    case AST_NUM: err(s, e->loc, "expected a tensor, got the number %s", e->text); return NULL;
    case AST_STR: err(s, e->loc, "expected a tensor, got a string"); return NULL;
    case AST_BINARY:
    case AST_UNARY: err(s, e->loc, "arithmetic on tensors is not implemented yet"); return NULL;
    case AST_ERROR: return NULL;
    default: err(s, e->loc, "expected a tensor expression here"); return NULL;
    }
}

/* ---- losses and metrics ---- */

static SVal *need_target(Sema *s, const Ast *e, const char *fname) {
    if (e->kind != AST_NAME) {
        err(s, e->loc, "the second argument of '%s' must be a target", fname);
        return NULL;
    }
    Sym *sym = lookup(s, e->text);
    if (sym && sym->kind == SYM_ERROR) return NULL;
    if (!sym || sym->kind != SYM_IO || !s->m->io[sym->index].is_target) {
        if (!sym)
            unknown_name(s, e->loc, e->text, "target");
        else
            err(s, e->loc, "'%s' is not a target; the second argument of '%s' must be one", diag_name(e->text), fname);
        return NULL;
    }
    return sym->val;
}

/* logits vs class target, for cross_entropy and the classification metrics */
static bool check_class_pair(Sema *s, const char *fname, const Ast *ea, SVal *x, const Ast *eb, SVal *t) {
    char bx[96], bt[96];
    if (!t->is_class) {
        err(s, eb->loc, "'%s' needs a class target, but '%s' is %s; use mse for real-valued targets",
            fname, diag_name(eb->text), type_str(bt, sizeof bt, t));
        return false;
    }
    if (x->is_class || !x->shape.batched || x->shape.rank != 1) {
        err(s, ea->loc, "'%s' needs logits f32[B,n], but got %s", fname, type_str(bx, sizeof bx, x));
        return false;
    }
    if (x->shape.dim[0] != t->nclass) {
        err(s, ea->loc, "'%s': the logits are %s but target '%s' is %s; they need the same number of classes",
            fname, type_str(bx, sizeof bx, x), diag_name(eb->text), type_str(bt, sizeof bt, t));
        return false;
    }
    return true;
}

static SVal *eval_loss_call(Sema *s, const Ast *e) {
    const FuncDef *fd = find_func(losses, sizeof losses / sizeof *losses, e->text);
    if (!fd) {
        if (find_layer(e->text)) {
            err(s, e->loc, "'%s' is a layer; a loss needs a loss function such as cross_entropy or mse", e->text);
            return NULL;
        }
        const char *cand[8];
        int n = (int)(sizeof losses / sizeof *losses);
        for (int i = 0; i < n; i++) cand[i] = losses[i].name;
        const char *near = diag_suggest(e->text, cand, n);
        if (near)
            err(s, e->loc, "unknown loss '%s'; did you mean '%s'?", diag_name(e->text), near);
        else
            err(s, e->loc, "unknown loss '%s'", diag_name(e->text));
        return NULL;
    }
    if (fd->todo) {
        err(s, e->loc, "loss '%s' is not implemented yet", fd->name);
        return NULL;
    }
    static const ArgSpec spec[] = {{"prediction", A_TENSOR, true, 0}, {"target", A_TENSOR, true, 0}};
    const Ast *a[MAX_ARGS];
    if (!bind_args(s, e->text, e->loc, spec, 2, e->arg, e->narg, 0, a)) return NULL;
    SVal *x = eval_tensor(s, a[0]);
    SVal *t = need_target(s, a[1], e->text);
    if (!x || !t) return NULL;
    char bx[96], bt[96];
    if (fd->kind == LOSS_CROSS_ENTROPY) {
        if (!check_class_pair(s, e->text, a[0], x, a[1], t)) return NULL;
    } else {
        if (t->is_class) {
            err(s, a[1]->loc, "'mse' needs a real-valued target, but '%s' is %s; use cross_entropy for class targets",
                diag_name(a[1]->text), type_str(bt, sizeof bt, t));
            return NULL;
        }
        /* a one-value target is compared with every prediction of its row (several heads) */
        bool one = t->shape.batched && shape_numel(t->shape) == 1 && x->shape.batched;
        if (!shape_eq(x->shape, t->shape) && !one) {
            err(s, a[0]->loc, "'mse': the prediction is %s but target '%s' is %s",
                type_str(bx, sizeof bx, x), diag_name(a[1]->text), type_str(bt, sizeof bt, t));
            return NULL;
        }
    }
    SVal *v = sval(s, SV_LOSS, e->loc);
    v->op = fd->kind;
    v->a = x;
    v->b = t;
    return v;
}

static bool has_loss_term(const SVal *v) {
    return v && (v->kind == SV_LOSS || has_loss_term(v->a) || (v->kind == SV_BINARY && has_loss_term(v->b)));
}

static SVal *eval_loss(Sema *s, const Ast *e) { return eval_arith(s, e, true); }

static void check_metric(Sema *s, const Ast *e) {
    if (e->kind != AST_CALL) {
        err(s, e->loc, "expected a metric call such as accuracy(logits, label)");
        return;
    }
    int n = (int)(sizeof metrics / sizeof *metrics);
    const FuncDef *fd = find_func(metrics, n, e->text);
    if (!fd) {
        const char *cand[8];
        for (int i = 0; i < n; i++) cand[i] = metrics[i].name;
        const char *near = diag_suggest(e->text, cand, n);
        if (near)
            err(s, e->loc, "unknown metric '%s'; did you mean '%s'?", diag_name(e->text), near);
        else
            err(s, e->loc, "unknown metric '%s'", diag_name(e->text));
        return;
    }
    if (fd->todo) {
        err(s, e->loc, "metric '%s' is not implemented yet", fd->name);
        return;
    }
    static const ArgSpec spec[] = {{"prediction", A_TENSOR, true, 0}, {"target", A_TENSOR, true, 0}};
    const Ast *a[MAX_ARGS];
    if (!bind_args(s, e->text, e->loc, spec, 2, e->arg, e->narg, 0, a)) return;
    SVal *x = eval_tensor(s, a[0]);
    SVal *t = need_target(s, a[1], e->text);
    if (!x || !t || !check_class_pair(s, e->text, a[0], x, a[1], t)) return;
    for (int i = 0; i < s->m->nmetric; i++)
        if (!strcmp(s->m->metric[i].name, fd->name)) {
            err(s, e->loc, "metric '%s' is given twice", fd->name);
            return;
        }
    SVal *v = sval(s, SV_METRIC, e->loc);
    v->op = fd->kind;
    v->a = x;
    v->b = t;
    MetricDef md = {fd->name, (MetricKind)fd->kind, v};
    ARENA_PUSH(s->arena, s->m->metric, s->m->nmetric, s->capmetric, md);
}

/* ---- declarations ---- */

static Override *find_override(Sema *s, const char *key) {
    for (int i = 0; i < s->nov; i++)
        if (!strcmp(s->ov[i].key, key)) return &s->ov[i];
    return NULL;
}

static void check_io(Sema *s, const Stmt *st) {
    const AstType *t = st->type;
    bool is_target = st->kind == ST_TARGET;
    IoDef io = {.name = st->name, .loc = st->name_loc, .is_target = is_target};
    SVal *v = sval(s, SV_INPUT, st->name_loc);
    bool ok = true;
    if (!strcmp(t->dtype, "class")) {
        if (!is_target) {
            err(s, t->loc, "class types are only for targets; an input is f32[...]");
            ok = false;
        } else if (t->ndim != 1) {
            err(s, t->loc, "a class target is class[N] with the number of classes N");
            ok = false;
        } else if (eval_int(s, t->dim[0], "the number of classes", 2, 1 << 24, &io.nclass)) {
            io.is_class = true;
            io.shape = (Shape){.rank = 0, .batched = true};
        } else {
            ok = false;
        }
    } else if (!strcmp(t->dtype, "f32")) {
        if (t->ndim < 1 || t->ndim > IR_MAX_RANK) {
            err(s, t->loc, "a tensor type needs 1 to %d dimensions, such as f32[784]", IR_MAX_RANK);
            ok = false;
        }
        io.shape = (Shape){.rank = t->ndim, .batched = true};
        for (int i = 0; ok && i < t->ndim; i++)
            ok = eval_int(s, t->dim[i], "a dimension", 1, 1 << 24, &io.shape.dim[i]);
        if (ok && shape_numel(io.shape) > (1 << 24)) {
            err(s, t->loc, "this type has more than 2^24 elements per sample");
            ok = false;
        }
    } else {
        static const char *const dts[] = {"f32", "class"};
        const char *near = diag_suggest(t->dtype, dts, 2);
        if (near)
            err(s, t->loc, "unknown element type '%s'; did you mean '%s'?", diag_name(t->dtype), near);
        else
            err(s, t->loc, "unknown element type '%s'; use f32[...] or class[N]", diag_name(t->dtype));
        ok = false;
    }
    v->shape = io.shape;
    v->is_class = io.is_class;
    v->nclass = io.nclass;
    v->index = s->m->nio;
    if (!ok) {
        define(s, st->name, st->name_loc, SYM_ERROR, 0, NULL);
        return;
    }
    ARENA_PUSH(s->arena, s->m->io, s->m->nio, s->capio, io);
    define(s, st->name, st->name_loc, SYM_IO, s->m->nio - 1, v);
}

static void check_param(Sema *s, const Stmt *st) {
    double v = 0;
    bool ok = eval_const(s, st->expr, &v);
    ParamDef p = {.name = st->name, .loc = st->name_loc, .value = v};
    Override *ov = find_override(s, st->name);
    if (ov) {
        p.value = ov->value;
        p.overridden = true;
        ok = true;
    }
    if (!ok) {
        define(s, st->name, st->name_loc, SYM_ERROR, 0, NULL);
        return;
    }
    ARENA_PUSH(s->arena, s->m->param, s->m->nparam, s->capparam, p);
    define(s, st->name, st->name_loc, SYM_PARAM, s->m->nparam - 1, NULL);
}

/* Count the parameterised layers of a binding's chain so weights get stable names. */
static void count_layers(Sema *s, const Ast *e) {
    for (; e; e = e->kind == AST_PIPE ? e->lhs : NULL) {
        const Ast *l = e->kind == AST_PIPE ? e->rhs : e;
        if (l->kind == AST_CALL || l->kind == AST_NAME) {
            const LayerDef *ld = find_layer(l->text);
            if (ld && !ld->todo && (ld->kind == L_DENSE || ld->kind == L_PRELU || ld->kind == L_GATE))
                s->owner_count[ld->kind]++;
            if (l->kind == AST_CALL && l->narg > 0 && !l->arg[0].name) count_layers(s, l->arg[0].value);
        }
    }
}

static void check_let(Sema *s, const Stmt *st) {
    s->owner = st->name;
    memset(s->owner_count, 0, sizeof s->owner_count);
    memset(s->owner_seen, 0, sizeof s->owner_seen);
    count_layers(s, st->expr);
    SVal *v = eval_tensor(s, st->expr);
    s->owner = NULL;
    define(s, st->name, st->name_loc, v ? SYM_VALUE : SYM_ERROR, 0, v);
}

/* ---- train block ---- */

static const char *resolve_path(Sema *s, const char *p) {
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
        err(s, e->loc, "expected a data source: fashion_mnist, idx(...) or csv(...)");
        return false;
    }
    if (!strcmp(name, "fashion_mnist") && e->kind == AST_NAME) {
        d->kind = DATA_FASHION_MNIST;
        return true;
    }
    if (!strcmp(name, "npy")) {
        err(s, e->loc, "npy data sources are not implemented yet");
        return false;
    }
    if (!strcmp(name, "idx") && e->kind == AST_CALL) {
        static const ArgSpec spec[] = {{"dir", A_STRING, false, 0}, {"images", A_STRING, false, 0},
                                       {"labels", A_STRING, false, 0}};
        const Ast *a[MAX_ARGS];
        if (!bind_args(s, "idx", e->loc, spec, 3, e->arg, e->narg, 0, a)) return false;
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
        if (a[0]) d->dir = resolve_path(s, a[0]->text);
        if (a[1]) d->images = resolve_path(s, a[1]->text);
        if (a[2]) d->labels = resolve_path(s, a[2]->text);
        (void)is_test;
        return true;
    }
    if (!strcmp(name, "csv") && e->kind == AST_CALL) {
        static const ArgSpec spec[] = {{"path", A_STRING, true, 0}, {"target", A_ANY, false, 0},
                                       {"header", A_WORD, false, 0}};
        const Ast *a[MAX_ARGS];
        if (!bind_args(s, "csv", e->loc, spec, 3, e->arg, e->narg, 0, a)) return false;
        if (a[0]->kind != AST_STR) {
            err(s, a[0]->loc, "expected a file name in quotes");
            return false;
        }
        d->kind = DATA_CSV;
        d->path = resolve_path(s, a[0]->text);
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
                if (!eval_int(s, t, "a column index", 0, 1 << 20, &c)) return false;
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

static bool check_optimizer(Sema *s, const Ast *e, OptSpec *o) {
    static const char *const names[] = {"sgd", "adam", "adamw", "rmsprop", "adagrad", "momentum", "nesterov"};
    if (e->kind != AST_CALL && e->kind != AST_NAME) {
        err(s, e->loc, "expected an optimizer such as adam(lr = 1e-3)");
        return false;
    }
    const char *name = e->text;
    const AstArg *args = e->kind == AST_CALL ? e->arg : NULL;
    int nargs = e->kind == AST_CALL ? e->narg : 0;
    const Ast *a[MAX_ARGS];
    memset(o, 0, sizeof *o);
    o->loc = e->loc;
    if (!strcmp(name, "sgd")) {
        static const ArgSpec spec[] = {{"lr", A_NUM, true, 0}, {"momentum", A_NUM, false, 0},
                                       {"nesterov", A_BOOL, false, 0}, {"weight_decay", A_NUM, false, 0}};
        if (!bind_args(s, name, e->loc, spec, 4, args, nargs, 0, a)) return false;
        o->kind = OPT_SGD;
        if (!arg_num(s, a[0], &spec[0], &o->lr) || !arg_num(s, a[1], &spec[1], &o->momentum) ||
            !arg_bool(s, a[2], false, &o->nesterov) || !arg_num(s, a[3], &spec[3], &o->weight_decay))
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
        ArgSpec sp[5];
        memcpy(sp, spec, sizeof sp);
        if (w) sp[4].def = 0.01;
        if (!bind_args(s, name, e->loc, sp, 5, args, nargs, 0, a)) return false;
        o->kind = w ? OPT_ADAMW : OPT_ADAM;
        if (!arg_num(s, a[0], &sp[0], &o->lr) || !arg_num(s, a[1], &sp[1], &o->beta1) ||
            !arg_num(s, a[2], &sp[2], &o->beta2) || !arg_num(s, a[3], &sp[3], &o->eps) ||
            !arg_num(s, a[4], &sp[4], &o->weight_decay))
            return false;
        if (o->beta1 < 0 || o->beta1 >= 1 || o->beta2 < 0 || o->beta2 >= 1) {
            err(s, e->loc, "beta1 and beta2 must be in [0, 1)");
            return false;
        }
        if (o->eps <= 0) {
            err(s, a[3] ? a[3]->loc : e->loc, "eps must be positive");
            return false;
        }
    } else if (!strcmp(name, "rmsprop") || !strcmp(name, "adagrad")) {
        err(s, e->loc, "the %s optimizer is not implemented yet", name);
        return false;
    } else if (!strcmp(name, "momentum") || !strcmp(name, "nesterov")) {
        err(s, e->loc, "'%s' is an option of sgd: sgd(lr = 0.1, momentum = 0.9%s)", name,
            name[0] == 'n' ? ", nesterov = true" : "");
        return false;
    } else {
        const char *near = diag_suggest(name, names, 7);
        if (near)
            err(s, e->loc, "unknown optimizer '%s'; did you mean '%s'?", diag_name(name), near);
        else
            err(s, e->loc, "unknown optimizer '%s'; use sgd, adam or adamw", diag_name(name));
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
    if (!eval_const(s, e, &v)) return false;
    if (v < 0) {
        err(s, e->loc, "a duration must not be negative");
        return false;
    }
    *q = (Quantity){v, false};
    return true;
}

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
        Sym *sym = lookup(s, e->text);
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
        static const struct {
            const char *name;
            SchedOp op;
            int nargs;
            ArgSpec args[2];
        } fns[] = {
            {"cosine", SCH_COSINE, 2, {{"warmup", A_ANY, false, 0}, {"min", A_NUM, false, 0}}},
            {"warmup", SCH_WARMUP, 1, {{"over", A_ANY, true, 0}}},
            {"step", SCH_STEP_DECAY, 2, {{"every", A_ANY, true, 0}, {"gamma", A_NUM, false, 0.1}}},
            {"exponential", SCH_EXPONENTIAL, 1, {{"gamma", A_NUM, true, 0}}},
            {"linear", SCH_LINEAR, 1, {{"to", A_NUM, true, 0}}},
        };
        int f = -1;
        const char *cand[5];
        for (int i = 0; i < 5; i++) {
            cand[i] = fns[i].name;
            if (!strcmp(fns[i].name, e->text)) f = i;
        }
        if (f < 0) {
            const char *near = diag_suggest(e->text, cand, 5);
            if (near)
                err(s, e->loc, "unknown schedule '%s'; did you mean '%s'?", diag_name(e->text), near);
            else
                err(s, e->loc, "unknown schedule '%s'; use cosine, warmup, step, exponential or linear", diag_name(e->text));
            return -1;
        }
        const Ast *a[MAX_ARGS];
        if (!bind_args(s, e->text, e->loc, fns[f].args, fns[f].nargs, e->arg, e->narg, 0, a)) return -1;
        n.op = fns[f].op;
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
        if (ok && (n.op != SCH_WARMUP)) ok = arg_num(s, a[k], &fns[f].args[k], &n.arg);
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
        Sym *sym = lookup(s, it->name);
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
        if (!eval_int(s, e->lhs, "patience", 1, 1 << 20, &p)) return -1;
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
        if (field->kind == AST_FIELD && field->lhs->kind == AST_NAME) {
            n.op = STOP_CMP;
            n.split = field->lhs->text;
            n.metric = field->text;
            n.loc = ast_span(field->lhs->loc, field->loc);
            n.cmp = op;
            if (!eval_const(s, num, &n.value)) return -1;
            if (strcmp(n.split, "train") && strcmp(n.split, "valid") && strcmp(n.split, "test")) {
                err(s, field->lhs->loc, "'%s' is not a split; use train, valid or test", diag_name(n.split));
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
        n->maximize = !strcmp(n->metric, "accuracy");
    }
}

/* `prune gates every N epochs`: between epochs, dead neurons of gated layers are removed. */
static void check_prune(Sema *s, const TrainItem *it) {
    if (strcmp(it->name, "gates")) {
        err(s, it->name_loc, "only gates can be pruned; write `prune gates every 1 epoch`");
        return;
    }
    const Ast *q = it->every;
    bool epochs = q->kind == AST_QUANTITY && (!strcmp(q->text, "epoch") || !strcmp(q->text, "epochs"));
    if (!epochs) {
        err(s, q->loc, "pruning happens between epochs; give the interval in epochs, as in `every 2 epochs`");
        return;
    }
    if (!(q->num >= 1 && q->num == floor(q->num) && q->num <= 1e9)) {
        err(s, q->loc, "the pruning interval must be a whole number of epochs >= 1, got %g", q->num);
        return;
    }
    s->m->train.prune_every = (int64_t)q->num;
    s->m->train.prune_loc = it->loc;
}

static void check_train(Sema *s, const Stmt *st, bool *seen_train) {
    TrainSpec *t = &s->m->train;
    const TrainItem *first[TI_CLIP + 1] = {0};
    for (int i = 0; i < st->nitem; i++) {
        const TrainItem *it = st->item[i];
        if (first[it->kind] && it->kind != TI_SCHEDULE) {
            err(s, it->loc, "'%s' is given twice in the train block", ast_item_keyword(it->kind));
            diag_note(s->diag, first[it->kind]->loc, "first given here");
            continue;
        }
        first[it->kind] = it;
        int64_t v;
        switch (it->kind) {
        case TI_DATA: check_data(s, it->expr, &t->data, false); break;
        case TI_TEST: check_data(s, it->expr, &t->test, true); break;
        case TI_VALID: {
            if (!it->name) {
                err(s, it->expr->loc, "a separate validation data set is not implemented yet; write `valid 0.1 of train`");
                break;
            }
            double f;
            if (!eval_const(s, it->expr, &f)) break;
            if (!(f > 0 && f < 1)) {
                err(s, it->expr->loc, "the validation fraction must be between 0 and 1, got %g", f);
                break;
            }
            t->valid_fraction = f;
            break;
        }
        case TI_BATCH:
            if (eval_int(s, it->expr, "the batch size", 1, 1 << 20, &v)) t->batch = v;
            break;
        case TI_EPOCHS:
            if (eval_int(s, it->expr, "the number of epochs", 1, 1 << 30, &v)) t->epochs = v;
            break;
        case TI_SEED:
            if (eval_int(s, it->expr, "the seed", 0, (int64_t)1 << 53, &v)) t->seed = (uint64_t)v;
            break;
        case TI_OPTIMIZER: check_optimizer(s, it->expr, &t->opt); break;
        case TI_ITERATIONS: err(s, it->loc, "'iterations' is not implemented yet; use 'epochs'"); break;
        case TI_SAMPLER: err(s, it->loc, "samplers are not implemented yet"); break;
        case TI_SCHEDULE: check_schedule(s, it); break;
        case TI_PRUNE: check_prune(s, it); break;
        case TI_STOP: check_stop(s, it); break;
        case TI_CLIP: err(s, it->loc, "gradient clipping is not implemented yet"); break;
        }
    }
    if (!first[TI_DATA]) err(s, st->loc, "the train block needs a data source, such as `data fashion_mnist`");
    *seen_train = true;
}

static void apply_train_overrides(Sema *s) {
    TrainSpec *t = &s->m->train;
    for (int i = 0; i < s->nov; i++) {
        Override *o = &s->ov[i];
        double v = o->value;
        if (!strcmp(o->key, "epochs") || !strcmp(o->key, "batch") || !strcmp(o->key, "seed")) {
            if (v != floor(v) || v < (o->key[0] == 's' ? 0 : 1) || v > 1e15) {
                err(s, (SrcLoc){0}, "--set %s=%g: must be a whole number%s", o->key, v, o->key[0] == 's' ? "" : " >= 1");
                continue;
            }
            if (o->key[0] == 'e') t->epochs = (int64_t)v;
            if (o->key[0] == 'b') t->batch = (int64_t)v;
            if (o->key[0] == 's') t->seed = (uint64_t)v;
        } else if (!strcmp(o->key, "lr")) {
            if (!(v > 0)) {
                err(s, (SrcLoc){0}, "--set lr=%g: the learning rate must be positive", v);
                continue;
            }
            t->opt.lr = v;
        } else if (!strcmp(o->key, "valid")) {
            if (!(v >= 0 && v < 1)) {
                err(s, (SrcLoc){0}, "--set valid=%g: the validation fraction must be in [0, 1)", v);
                continue;
            }
            t->valid_fraction = v;
        }
    }
}

/* ---- driver ---- */

static void collect_mentions(Sema *s, const Ast *e) {
    for (; e; e = e->rhs) {
        if (e->kind == AST_NAME) ARENA_PUSH(s->arena, s->mention, s->nmention, s->capmention, e->text);
        for (int i = 0; i < e->narg; i++) collect_mentions(s, e->arg[i].value);
        collect_mentions(s, e->lhs);
    }
}

static bool mentioned(const Sema *s, const char *name) {
    for (int i = 0; i < s->nmention; i++)
        if (!strcmp(s->mention[i], name)) return true;
    return false;
}

static void collect_names(Sema *s, const Program *prog) {
    for (int i = 0; i < prog->nstmt; i++) {
        const Stmt *st = prog->stmt[i];
        if (st->name && st->kind != ST_MODEL && st->kind != ST_BLOCK) {
            Sym sym = {st->name, SYM_VALUE, 0, NULL, st->name_loc};
            ARENA_PUSH(s->arena, s->later, s->nlater, s->caplater, sym);
        }
        if (st->kind == ST_BLOCK) ARENA_PUSH(s->arena, s->block, s->nblock, s->capblock, st->name);
        if (st->kind == ST_LET || st->kind == ST_LOSS || st->kind == ST_HEAD || st->kind == ST_PRIOR)
            collect_mentions(s, st->expr);
        for (int k = 0; k < st->nlist; k++) collect_mentions(s, st->list[k]);
    }
}

Model *sema_check(Arena *arena, Diag *diag, const Program *prog, const char *path, const SemaOptions *opt) {
    Sema s = {.arena = arena, .diag = diag, .ov = opt->ov, .nov = opt->nov, .width = opt->width, .nwidth = opt->nwidth};
    Model *m = s.m = arena_alloc(arena, sizeof *m);
    m->path = path;
    const char *slash = strrchr(path, '/');
    m->dir = slash ? arena_strndup(arena, path, (size_t)(slash - path + (slash == path))) : "";
    m->train = (TrainSpec){.batch = 64, .epochs = 10, .seed = 1,
                           .opt = {.kind = OPT_ADAM, .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8}};
    collect_names(&s, prog);
    bool seen_train = false, seen_loss = false;
    const Stmt *model_stmt = NULL, *train_stmt = NULL;
    SVal *loss = NULL;
    for (int i = 0; i < prog->nstmt && !diag_stopped(diag); i++) {
        const Stmt *st = prog->stmt[i];
        switch (st->kind) {
        case ST_MODEL:
            if (model_stmt) {
                err(&s, st->loc, "a file holds one model; 'model' is given twice");
                diag_note(diag, model_stmt->loc, "first given here");
                break;
            }
            if (i != 0) err(&s, st->loc, "'model' must be the first statement of the file");
            model_stmt = st;
            m->name = st->name;
            break;
        case ST_INPUT:
        case ST_TARGET: check_io(&s, st); break;
        case ST_PARAM: check_param(&s, st); break;
        case ST_LET: check_let(&s, st); break;
        case ST_LOSS: {
            s.in_loss = true;
            SVal *l = eval_loss(&s, st->expr);
            s.in_loss = false;
            seen_loss = true;
            if (!l) break;
            if (!has_loss_term(l)) {
                err(&s, st->expr->loc, "this loss does not depend on the model; it needs a loss function such as cross_entropy or mse");
                break;
            }
            if (!loss) {
                loss = l;
            } else {
                SVal *sum = sval(&s, SV_BINARY, st->loc);
                sum->op = '+';
                sum->a = loss;
                sum->b = l;
                loss = sum;
            }
            break;
        }
        case ST_METRIC:
            s.in_loss = true;
            for (int k = 0; k < st->nlist; k++) check_metric(&s, st->list[k]);
            s.in_loss = false;
            break;
        case ST_TRAIN:
            if (train_stmt) {
                err(&s, st->loc, "a file holds one train block; 'train' is given twice");
                diag_note(diag, train_stmt->loc, "first given here");
                break;
            }
            train_stmt = st;
            check_train(&s, st, &seen_train);
            break;
        case ST_PRIOR: err(&s, st->loc, "priors are not implemented yet"); break;
        case ST_HEAD: err(&s, st->loc, "post-training heads are not implemented yet"); break;
        case ST_BLOCK: err(&s, st->loc, "blocks are not implemented yet"); break;
        case ST_RETURN: err(&s, st->loc, "'return' is only allowed inside a block"); break;
        }
    }
    if (diag_stopped(diag)) return NULL;
    SrcLoc top = {1, 1, 1};
    if (!model_stmt) err(&s, top, "the file does not start with `model NAME`");
    if (!seen_loss) err(&s, model_stmt ? model_stmt->loc : top, "the model has no `loss` statement");
    if (!seen_train) err(&s, model_stmt ? model_stmt->loc : top, "the model has no `train { ... }` block");
    for (int i = 0; i < m->nio; i++)
        if (!mentioned(&s, m->io[i].name))
            err(&s, m->io[i].loc, "%s '%s' is never used", m->io[i].is_target ? "target" : "input",
                diag_name(m->io[i].name));
    apply_train_overrides(&s);
    if (m->train.stop.nnode) finish_stop(&s);
    for (int i = 0; i < m->train.nsched; i++) {
        const ScheduleSpec *sp = &m->train.sched[i];
        if (sp->param < 0 || m->param[sp->param].fixed_at.line == 0) continue;
        err(&s, sp->loc, "'%s' cannot be scheduled: its value is fixed when the model is compiled", sp->target);
        diag_note(diag, m->param[sp->param].fixed_at, "its value is used here");
    }
    m->loss = loss;
    if (diag->nerror) return NULL;
    return m;
}
