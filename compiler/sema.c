/* sema.c: name resolution, type and shape checking of a parsed program (AST -> Model), the
 * pass between the parser and lower.c.  This file is its driver: it walks the statements in
 * order, so a name is usable only after its definition; and it holds what the other parts
 * share (sema_internal.h): scopes, compile-time numbers, tensor expressions, losses and
 * metrics.  Argument lists are in sema_args.c, the layer table in sema_layers.c, the train
 * block in sema_train.c.  Layers, losses, metrics, data sources and optimisers are
 * table-driven (name, arguments, defaults), which gives every call the same argument checking
 * and did-you-mean.  Documented constructs that are not built yet are rejected with a located
 * "not implemented yet" error.
 * Guarantees: a returned Model is well-typed; NULL means errors were reported. */
#include <math.h>
#include <string.h>

#include "sema_internal.h"

SVal *sema_sval(Sema *s, SValKind kind, SrcLoc loc) {
    SVal *v = arena_alloc(s->arena, sizeof *v);
    v->kind = kind;
    v->loc = loc;
    v->act = OP_COUNT;
    return v;
}

const char *sema_type_str(char *buf, size_t n, const SVal *v) {
    if (v->is_class) {
        snprintf(buf, n, "class[%lld]", (long long)v->nclass);
        return buf;
    }
    return shape_str(buf, n, DT_F32, v->shape);
}

/* ---- scope ---- */

static Sym *lookup_from(Sema *s, const char *name, int base) {
    for (int i = s->nsym - 1; i >= base; i--)
        if (!strcmp(s->sym[i].name, name)) return &s->sym[i];
    return NULL;
}

/* Inside a block, the names of the file below its scope are out of sight but for params
 * (unknown_name says so). */
Sym *sema_lookup(Sema *s, const char *name) {
    Sym *sym = lookup_from(s, name, 0);
    if (!sym || s->ninst == 0 || sym - s->sym >= s->scope_base || sym->kind == SYM_PARAM) return sym;
    return NULL;
}

void sema_define(Sema *s, const char *name, SrcLoc loc, SymKind kind, int index, SVal *val) {
    Sym *prev = lookup_from(s, name, s->scope_base);
    if (prev) {
        err(s, loc, "redefinition of '%s'", diag_name(name));
        diag_note(s->diag, prev->loc, "'%s' was first defined here", diag_name(name));
        return;
    }
    Sym sym = {name, kind, index, val, loc, NULL};
    ARENA_PUSH(s->arena, s->sym, s->nsym, s->capsym, sym);
}

static void unknown_name(Sema *s, SrcLoc loc, const char *name, const char *what) {
    if (s->ninst > 0 && lookup_from(s, name, 0)) {
        err(s, loc, "'%s' is outside block '%s': a block sees its parameters, its own bindings and the file's params",
            diag_name(name), s->inst[s->ninst - 1].def->name);
        return;
    }
    for (int i = 0; i < s->nlater && s->ninst == 0; i++)
        if (!strcmp(s->later[i].name, name)) {
            err(s, loc, "'%s' is used before its definition", diag_name(name));
            diag_note(s->diag, s->later[i].loc, "'%s' is defined here", diag_name(name));
            return;
        }
    const char **cand = arena_alloc(s->arena, sizeof(char *) * (size_t)(s->nsym + 1));
    int ncand = 0;
    for (int i = 0; i < s->nsym; i++)
        if (i >= s->scope_base || s->ninst == 0 || s->sym[i].kind == SYM_PARAM) cand[ncand++] = s->sym[i].name;
    const char *near = diag_suggest(name, cand, ncand);
    if (near)
        err(s, loc, "unknown %s '%s'; did you mean '%s'?", what, diag_name(name), near);
    else
        err(s, loc, "unknown %s '%s'", what, diag_name(name));
}

/* ---- compile-time numbers ---- */

bool sema_eval_const(Sema *s, const Ast *e, double *out) {
    switch (e->kind) {
    case AST_NUM: *out = e->num; return true;
    case AST_NAME: {
        Sym *sym = sema_lookup(s, e->text);
        if (!sym) {
            unknown_name(s, e->loc, e->text, "name");
            return false;
        }
        if (sym->kind == SYM_ERROR) return false;
        if (sym->kind == SYM_NUMBER && sym->val->kind == SV_CONST) {
            *out = sym->val->num;
            return true;
        }
        if (sym->kind != SYM_PARAM && sym->kind != SYM_NUMBER) {
            if (sym->kind == SYM_WORD)
                err(s, e->loc, "'%s' is the word '%s', but a number is needed here", diag_name(e->text), sym->word->text);
            else
                err(s, e->loc, "'%s' is a tensor, but a number is needed here", diag_name(e->text));
            return false;
        }
        ParamDef *pd = &s->m->param[sym->kind == SYM_NUMBER ? sym->val->index : sym->index];
        if (pd->fixed_at.line == 0) pd->fixed_at = e->loc; /* a schedule could not change this use */
        *out = pd->value;
        return true;
    }
    case AST_UNARY:
        if (e->op == '-' && sema_eval_const(s, e->lhs, out)) {
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
        bool ok = sema_eval_const(s, e->lhs, &a);
        ok = sema_eval_const(s, e->rhs, &b) && ok;
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

bool sema_eval_int(Sema *s, const Ast *e, const char *what, int64_t min, int64_t max, int64_t *out) {
    double v;
    if (!sema_eval_const(s, e, &v)) return false;
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
    {"sse", LOSS_SSE, NULL},
    {"gaussian_nll", LOSS_GAUSSIAN_NLL, NULL},
    {"kl", 0, "the kl term of variational layers"},
    {"cosine_diversity", LOSS_COSINE_DIVERSITY, NULL},
};
static const FuncDef metrics[] = {
    {"accuracy", METRIC_ACCURACY, NULL},
    {"error", METRIC_ERROR, NULL},
    {"relative_error", METRIC_RELATIVE_ERROR, NULL},
    {"rmse", METRIC_RMSE, NULL},
    {"nll", METRIC_NLL, NULL},
    {"live", 0, "the live-neuron metric"},
};
enum { NLOSSES = sizeof losses / sizeof *losses, NMETRICS = sizeof metrics / sizeof *metrics };

static const FuncDef *find_func(const FuncDef *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return &t[i];
    return NULL;
}

/* ---- run-time scalar expressions (gate penalties, loss weights) ---- */

static SVal *eval_loss_call(Sema *s, const Ast *e);

/* Numbers and params combined with + - * / ^; in a loss (`in_loss`), loss calls too. */
static SVal *eval_arith(Sema *s, const Ast *e, bool in_loss) {
    char buf[96];
    switch (e->kind) {
    case AST_CALL:
        if (in_loss) return eval_loss_call(s, e);
        break;
    case AST_NUM: {
        SVal *v = sema_sval(s, SV_CONST, e->loc);
        v->num = e->num;
        return v;
    }
    case AST_NAME: {
        Sym *sym = sema_lookup(s, e->text);
        const FuncDef *todo = in_loss && !sym ? find_func(losses, NLOSSES, e->text) : NULL;
        if (todo && todo->todo) {
            err(s, e->loc, "loss '%s' is not implemented yet", todo->name);
            return NULL;
        }
        if (!sym) {
            unknown_name(s, e->loc, e->text, "name");
            return NULL;
        }
        if (sym->kind == SYM_ERROR) return NULL;
        if (sym->kind == SYM_NUMBER) return sym->val;
        if (sym->kind == SYM_WORD) {
            err(s, e->loc, "'%s' is the word '%s', but a scalar is needed here", diag_name(e->text), sym->word->text);
            return NULL;
        }
        if (sym->kind != SYM_PARAM) {
            if (in_loss)
                err(s, e->loc, "a loss must be a scalar, but '%s' is %s; apply a loss function such as cross_entropy",
                    diag_name(e->text), sema_type_str(buf, sizeof buf, sym->val));
            else
                err(s, e->loc, "'%s' is a tensor, but a scalar is needed here", diag_name(e->text));
            return NULL;
        }
        SVal *v = sema_sval(s, SV_PARAM, e->loc);
        v->index = sym->index;
        return v;
    }
    case AST_UNARY:
        if (e->op == '-') {
            SVal *x = eval_arith(s, e->lhs, in_loss);
            if (!x) return NULL;
            SVal *v = sema_sval(s, SV_NEG, e->loc);
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
            SVal *v = sema_sval(s, SV_BINARY, e->loc);
            v->op = e->op;
            v->a = a;
            v->b = b;
            return v;
        }
        if (e->op == '^') {
            double x;
            if (!sema_eval_const(s, e, &x)) return NULL;
            SVal *v = sema_sval(s, SV_CONST, e->loc);
            v->num = x;
            return v;
        }
        break;
    case AST_PIPE:
        if (in_loss) {
            SVal *x = sema_eval_tensor(s, e);
            if (x)
                err(s, e->loc, "a loss must be a scalar, but this is %s; apply a loss function such as cross_entropy",
                    sema_type_str(buf, sizeof buf, x));
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

SVal *sema_eval_scalar(Sema *s, const Ast *e) { return eval_arith(s, e, false); }

/* model.h: a scalar expression's value. */
double sval_value(const Model *m, const SVal *v, const double *param, bool *uses_param) {
    switch (v->kind) {
    case SV_CONST: return v->num;
    case SV_PARAM:
        if (uses_param) *uses_param = true;
        return param ? param[v->index] : m->param[v->index].value;
    case SV_NEG: return -sval_value(m, v->a, param, uses_param);
    case SV_BINARY: {
        double a = sval_value(m, v->a, param, uses_param), b = sval_value(m, v->b, param, uses_param);
        return v->op == '+' ? a + b : v->op == '-' ? a - b : v->op == '*' ? a * b : a / b;
    }
    default: NNC_BUG("not a scalar expression");
    }
}

SVal *sema_positive_scalar(Sema *s, const Ast *e, const char *what) {
    SVal *v = eval_arith(s, e, false);
    if (!v) return NULL;
    bool params = false;
    double x = sval_value(s->m, v, NULL, &params);
    if (x > 0) return v;
    if (v->kind == SV_PARAM)
        err(s, e->loc, "%s must be positive, but param '%s' is %g", what, s->m->param[v->index].name, x);
    else if (params)
        err(s, e->loc, "%s must be positive, but it is %g with the params' values", what, x);
    else
        err(s, e->loc, "%s must be positive, got %g", what, x);
    return NULL;
}

/* ---- tensor expressions ---- */

/* An unknown layer: the nearest layer, block of the file or block of the library. */
static void unknown_layer(Sema *s, SrcLoc loc, const char *name) {
    const char *near = sema_layers_suggest(name), **lib = NULL;
    int nlib = s->library_names ? s->library_names(s->load_ctx, &lib) : 0, n = s->nblock + nlib;
    const char **cand = arena_alloc(s->arena, sizeof(char *) * ((size_t)n + 2));
    for (int i = 0; i < s->nblock; i++) cand[i] = s->block[i]->name;
    for (int i = 0; i < nlib; i++) cand[s->nblock + i] = lib[i];
    if (near) cand[n++] = near;
    near = diag_suggest(name, cand, n);
    if (near)
        err(s, loc, "unknown layer '%s'; did you mean '%s'?", diag_name(name), near);
    else
        err(s, loc, "unknown layer '%s'", diag_name(name));
}

/* Apply the layer named by `e` (a name or a call) to x; `skip` = 1 when x came as the first
 * positional argument of the call. */
static SVal *apply_layer(Sema *s, SVal *x, const Ast *e, int skip);

/* `x -> repeat(n, L)`: layer or block call L applied n times in a row, each with weights of its
 * own (numbered as a binding's layers of one kind are: r.dense1, r.dense2, ...). */
static SVal *apply_repeat(Sema *s, SVal *x, const Ast *e, int skip) {
    if (!x) {
        err(s, e->loc, "repeat has no input; write `x -> repeat(3, dense(64))`");
        return NULL;
    }
    if (e->kind != AST_CALL || e->narg - skip != 2 || e->arg[skip].name || e->arg[skip + 1].name) {
        err(s, e->loc, "repeat takes a count and a layer or block: `x -> repeat(3, resblock(64))`");
        return NULL;
    }
    int64_t n;
    if (!sema_eval_int(s, e->arg[skip].value, "the number of repeats", 1, 1000, &n)) return NULL;
    const Ast *f = e->arg[skip + 1].value;
    if (f->kind != AST_CALL && f->kind != AST_NAME) {
        err(s, f->loc, "repeat's second argument is a layer or block, such as dense(64) or resblock(64)");
        return NULL;
    }
    for (int64_t i = 0; i < n && x; i++) x = apply_layer(s, x, f, 0);
    return x;
}

static SVal *apply_layer(Sema *s, SVal *x, const Ast *e, int skip) {
    const char *name = e->text;
    const LayerDef *ld = sema_layers_find(name);
    const Stmt *blk = ld ? NULL : sema_block_find(s, name);
    if (blk) return sema_block_apply(s, blk, x, e, skip);
    if (!ld && !strcmp(name, "repeat")) return apply_repeat(s, x, e, skip);
    if (!ld) {
        if (!strcmp(name, "fd_grad"))
            err(s, e->loc, "fd_grad is not a layer: it takes the heads and the input they depend on, as in `g = fd_grad(aux, x)`");
        else if (find_func(losses, NLOSSES, name))
            err(s, e->loc, "'%s' is a loss, not a layer; use it in a `loss` statement", name);
        else if (find_func(metrics, NMETRICS, name))
            err(s, e->loc, "'%s' is a metric, not a layer; use it in a `metric` statement", name);
        else
            unknown_layer(s, e->loc, name);
        return NULL;
    }
    return sema_layers_apply(s, ld, x, e, skip);
}

static SVal *lookup_tensor(Sema *s, const Ast *e) {
    Sym *sym = sema_lookup(s, e->text);
    if (!sym) {
        if (sema_layers_find(e->text)) {
            err(s, e->loc, "layer '%s' has no input; write `x -> %s` or `%s(x)`", e->text, e->text, e->text);
            return NULL;
        }
        unknown_name(s, e->loc, e->text, "name");
        return NULL;
    }
    if (sym->kind == SYM_ERROR) return NULL;
    if (sym->kind == SYM_PARAM || sym->kind == SYM_NUMBER) {
        err(s, e->loc, "'%s' is a %s (a number), but a tensor is needed here", diag_name(e->text),
            sym->kind == SYM_PARAM ? "param" : "block argument");
        return NULL;
    }
    if (sym->kind == SYM_WORD) {
        err(s, e->loc, "'%s' is the word '%s', but a tensor is needed here", diag_name(e->text), sym->word->text);
        return NULL;
    }
    return sym->val;
}

bool sema_is_tensor(Sema *s, const Ast *e) {
    if (e->kind == AST_PIPE || e->kind == AST_CALL) return true;
    if (e->kind == AST_UNARY) return e->op == '-' && sema_is_tensor(s, e->lhs);
    if (e->kind == AST_BINARY) /* arithmetic with a tensor on either side */
        return (e->op == '+' || e->op == '-' || e->op == '*' || e->op == '/') &&
               (sema_is_tensor(s, e->lhs) || sema_is_tensor(s, e->rhs));
    if (e->kind != AST_NAME) return false;
    Sym *sym = sema_lookup(s, e->text);
    return sym ? sym->kind == SYM_IO || sym->kind == SYM_VALUE : sema_layers_find(e->text) != NULL;
}

/* Arithmetic on tensors, elementwise: x + y, x - y, x * y of two tensors of one shape (a residual
 * connection, x + f(x)); a tensor times or over a scalar expression (x * 0.5, lambda * x, x / 2);
 * -x.  The result has the tensor's shape; the lowering's map ops broadcast a scalar. */
static SVal *tensor_arith(Sema *s, const Ast *e) {
    char ta[96], tb[96], op[2] = {(char)e->op, 0};
    if (e->kind == AST_UNARY) {
        if (e->op != '-') {
            err(s, e->loc, "'not' applies to conditions, not tensors");
            return NULL;
        }
        SVal *x = sema_eval_tensor(s, e->lhs);
        if (!x) return NULL;
        SVal *v = sema_sval(s, SV_NEG, e->loc);
        v->a = x;
        v->shape = x->shape;
        return v;
    }
    if (e->op != '+' && e->op != '-' && e->op != '*' && e->op != '/') {
        err(s, e->loc, "tensors take + - * and /, elementwise; comparisons and '^' are for numbers");
        return NULL;
    }
    bool lt = sema_is_tensor(s, e->lhs), rt = sema_is_tensor(s, e->rhs);
    SVal *a = lt ? sema_eval_tensor(s, e->lhs) : sema_eval_scalar(s, e->lhs);
    SVal *b = rt ? sema_eval_tensor(s, e->rhs) : sema_eval_scalar(s, e->rhs);
    if (!a || !b) return NULL;
    const SVal *t = lt ? a : b;
    if ((lt && a->is_class) || (rt && b->is_class)) {
        err(s, e->loc, "'%s' on class labels (%s) means nothing; arithmetic is for real-valued tensors", op,
            sema_type_str(ta, sizeof ta, lt && a->is_class ? a : b));
        return NULL;
    }
    if (lt && rt && e->op == '/') {
        err(s, e->loc, "one tensor over another is not supported; divide by a number or a param");
        return NULL;
    }
    if (lt && rt && !shape_eq(a->shape, b->shape)) {
        err(s, e->loc, "'%s' needs tensors of one shape, but the left is %s and the right %s", op,
            sema_type_str(ta, sizeof ta, a), sema_type_str(tb, sizeof tb, b));
        return NULL;
    }
    if (!(lt && rt) && (e->op == '+' || e->op == '-')) {
        err(s, e->loc, "a tensor %s a number is not supported; scale it (x * 2) or %s a tensor of its shape",
            e->op == '+' ? "plus" : "minus", e->op == '+' ? "add" : "subtract");
        return NULL;
    }
    if (!lt && e->op == '/') {
        err(s, e->loc, "a number over a tensor is not supported; divide the tensor by a number");
        return NULL;
    }
    SVal *v = sema_sval(s, SV_BINARY, e->loc);
    v->op = e->op;
    v->a = a;
    v->b = b;
    v->shape = t->shape;
    return v;
}

SVal *sema_eval_tensor(Sema *s, const Ast *e) {
    switch (e->kind) {
    case AST_NAME: return lookup_tensor(s, e);
    case AST_PIPE: {
        SVal *x = sema_eval_tensor(s, e->lhs);
        if (!x) return NULL;
        const Ast *r = e->rhs;
        if (r->kind == AST_NAME) {
            if (sema_lookup(s, r->text) && !sema_layers_find(r->text) && !sema_block_find(s, r->text)) {
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
        const Stmt *blk = sema_layers_find(e->text) ? NULL : sema_block_find(s, e->text);
        if (blk) return sema_block_apply(s, blk, NULL, e, 0);
        if (!strcmp(e->text, "fd_grad")) return sema_fd_grad(s, e);
        if (!strcmp(e->text, "repeat") && e->narg == 3 && !e->arg[0].name) { /* repeat(x, n, L) */
            SVal *x = sema_eval_tensor(s, e->arg[0].value);
            return x ? apply_repeat(s, x, e, 1) : NULL;
        }
        bool config_first = e->narg > 0 && !e->arg[0].name &&
                            (e->arg[0].value->kind == AST_NUM || e->arg[0].value->kind == AST_STR);
        if (!sema_layers_find(e->text) || e->narg == 0 || e->arg[0].name || config_first) {
            if (sema_layers_find(e->text) && !sema_layers_find(e->text)->todo) {
                err(s, e->loc, "layer '%s' has no input; write `x -> %s(...)` or pass the input first",
                    e->text, e->text);
                return NULL;
            }
            return apply_layer(s, NULL, e, 0);
        }
        SVal *x = sema_eval_tensor(s, e->arg[0].value);
        if (!x) return NULL;
        return apply_layer(s, x, e, 1);
    }
    case AST_NUM: err(s, e->loc, "expected a tensor, got the number %s", e->text); return NULL;
    case AST_STR: err(s, e->loc, "expected a tensor, got a string"); return NULL;
    case AST_BINARY:
    case AST_UNARY: return tensor_arith(s, e);
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
    Sym *sym = sema_lookup(s, e->text);
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
            fname, diag_name(eb->text), sema_type_str(bt, sizeof bt, t));
        return false;
    }
    if (x->is_class || !x->shape.batched || x->shape.rank != 1) {
        err(s, ea->loc, "'%s' needs logits f32[B,n], but got %s", fname, sema_type_str(bx, sizeof bx, x));
        return false;
    }
    if (x->shape.dim[0] != t->nclass) {
        err(s, ea->loc, "'%s': the logits are %s but target '%s' is %s; they need the same number of classes",
            fname, sema_type_str(bx, sizeof bx, x), diag_name(eb->text), sema_type_str(bt, sizeof bt, t));
        return false;
    }
    return true;
}

static SVal *eval_loss_call(Sema *s, const Ast *e) {
    const FuncDef *fd = find_func(losses, NLOSSES, e->text);
    if (!fd) {
        if (sema_layers_find(e->text)) {
            err(s, e->loc, "'%s' is a layer; a loss needs a loss function such as cross_entropy or mse", e->text);
            return NULL;
        }
        const char *cand[NLOSSES];
        for (int i = 0; i < NLOSSES; i++) cand[i] = losses[i].name;
        const char *near = diag_suggest(e->text, cand, NLOSSES);
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
    if (fd->kind == LOSS_COSINE_DIVERSITY) return sema_cosine_diversity(s, e);
    static const ArgSpec spec[] = {{"prediction", A_TENSOR, true, 0}, {"target", A_TENSOR, true, 0}, {"sigma", A_ANY, true, 0}};
    bool nll = fd->kind == LOSS_GAUSSIAN_NLL;
    const Ast **a = sema_args_bind(s, e->text, e->loc, spec, nll ? 3 : 2, e->arg, e->narg);
    if (!a) return NULL;
    SVal *x = sema_eval_tensor(s, a[0]);
    bool squares = fd->kind == LOSS_MSE || fd->kind == LOSS_SSE;
    bool number = squares && (a[1]->kind == AST_NUM || (a[1]->kind == AST_UNARY && a[1]->lhs->kind == AST_NUM));
    SVal *t = number ? sema_sval(s, SV_CONST, a[1]->loc) : need_target(s, a[1], e->text);
    if (number && !sema_eval_const(s, a[1], &t->num)) return NULL;
    SVal *sigma = NULL; /* learned */
    bool learned = nll && a[2]->kind == AST_NAME && !strcmp(a[2]->text, "learned") && !sema_lookup(s, "learned");
    if (nll && !learned && !(sigma = sema_positive_scalar(s, a[2], "gaussian_nll's sigma"))) return NULL;
    if (!x || !t) return NULL;
    char bx[96], bt[96];
    if (nll) {
        if (t->is_class || !shape_eq(x->shape, t->shape)) {
            err(s, a[0]->loc, "'gaussian_nll': the prediction is %s but target '%s' is %s; they need the same shape",
                sema_type_str(bx, sizeof bx, x), diag_name(a[1]->text), sema_type_str(bt, sizeof bt, t));
            return NULL;
        }
    } else if (fd->kind == LOSS_CROSS_ENTROPY) {
        if (!check_class_pair(s, e->text, a[0], x, a[1], t)) return NULL;
    } else if (number) { /* every prediction compared with the number */
        if (x->is_class || !x->shape.batched) {
            err(s, a[0]->loc, "'%s' needs a batched real-valued prediction, but this is %s", fd->name, sema_type_str(bx, sizeof bx, x));
            return NULL;
        }
    } else {
        if (t->is_class) {
            err(s, a[1]->loc, "'%s' needs a real-valued target, but '%s' is %s; use cross_entropy for class targets", fd->name,
                diag_name(a[1]->text), sema_type_str(bt, sizeof bt, t));
            return NULL;
        }
        /* a one-value target is compared with every prediction of its row (several heads) */
        bool one = t->shape.batched && shape_numel(t->shape) == 1 && x->shape.batched;
        if (!shape_eq(x->shape, t->shape) && !one) {
            err(s, a[0]->loc, "'%s': the prediction is %s but target '%s' is %s", fd->name,
                sema_type_str(bx, sizeof bx, x), diag_name(a[1]->text), sema_type_str(bt, sizeof bt, t));
            return NULL;
        }
    }
    SVal *v = sema_sval(s, SV_LOSS, e->loc);
    v->op = fd->kind;
    v->a = x;
    v->b = t;
    v->coef = sigma;
    return v;
}

/* The likelihood term of `loss` on prediction x and target t (gaussian_nll, cross_entropy), or NULL. */
static SVal *find_likelihood(SVal *loss, const SVal *x, const SVal *t) {
    if (!loss) return NULL;
    if (loss->kind == SV_LOSS)
        return loss->a == x && loss->b == t && loss->op != LOSS_MSE && loss->op != LOSS_SSE ? loss : NULL;
    SVal *l = find_likelihood(loss->a, x, t);
    return l ? l : loss->kind == SV_BINARY ? find_likelihood(loss->b, x, t) : NULL;
}

/* metric nll(x, t) is the loss's likelihood term on x and t, per sample. */
static void finish_nll(Sema *s, SVal *loss) {
    for (int i = 0; i < s->m->nmetric; i++) {
        MetricDef *md = &s->m->metric[i];
        if (md->kind != METRIC_NLL) continue;
        SVal *l = find_likelihood(loss, md->val->a, md->val->b);
        if (!l) {
            err(s, md->val->loc, "metric 'nll' needs a likelihood of the same prediction and target in the loss: "
                "gaussian_nll or cross_entropy (mse is not one)");
            continue;
        }
        md->val = l;
    }
}

/* The loss functions of the loss that compare a prediction with a target, in the order they are
 * written (not cosine_diversity, which has no target). */
static void loss_terms(SVal *v, SVal **term, int *n, int cap) {
    if (!v) return;
    if (v->kind == SV_LOSS) {
        if (*n < cap && v->b && v->b->kind != SV_CONST) term[(*n)++] = v; /* (not mse(p, 0)) */
        return;
    }
    if (v->kind == SV_BINARY || v->kind == SV_NEG) {
        loss_terms(v->a, term, n, cap);
        if (v->kind == SV_BINARY) loss_terms(v->b, term, n, cap);
    }
}

static void collect_predictions(const Model *m, const SVal *v, int ntarget, const SVal **pred, const char **name, int *n,
                                int cap) {
    if (v->kind == SV_BINARY || v->kind == SV_NEG) {
        collect_predictions(m, v->a, ntarget, pred, name, n, cap);
        if (v->kind == SV_BINARY) collect_predictions(m, v->b, ntarget, pred, name, n, cap);
    }
    if (v->kind != SV_LOSS || !v->b) return; /* (cosine_diversity has no prediction) */
    const char *nm = ntarget > 1 && v->b->kind != SV_CONST ? m->io[v->b->index].name : "prediction";
    for (int i = 0; i < *n; i++)
        if (!strcmp(name[i], nm)) return;
    if (*n < cap) pred[*n] = v->a, name[(*n)++] = nm;
}

int sema_predictions(const Model *m, const SVal **pred, const char **name, int cap) {
    int n = 0, ntarget = 0;
    for (int i = 0; i < m->nio; i++) ntarget += m->io[i].is_target;
    if (m->loss) collect_predictions(m, m->loss, ntarget, pred, name, &n, cap);
    return n;
}

/* With several targets, each target is one head's: compared with one prediction, which
 * `predict` writes under its name; metrics are named after their target (mass.rmse); and a
 * sampler, whose posterior predictive follows one prediction, is refused.  (With one target,
 * a loss on a second prediction is an auxiliary loss; the first loss names the prediction.) */
static void finish_heads(Sema *s, SVal *loss) {
    enum { CAP = 64 };
    SVal *term[CAP];
    int n = 0, ntarget = 0;
    loss_terms(loss, term, &n, CAP);
    for (int i = 0; i < s->m->nio; i++) ntarget += s->m->io[i].is_target;
    if (ntarget < 2) return; /* one target: later losses on it are auxiliary; the first names the prediction */
    for (int i = 0; i < n; i++)
        for (int k = 0; k < i; k++)
            if (term[k]->b == term[i]->b && term[k]->a != term[i]->a) {
                const char *t = s->m->io[term[i]->b->index].name;
                err(s, term[i]->loc, "a second head writes target '%s'; with several targets each target is one head's, named "
                    "after it in metrics and predictions", t);
                diag_note(s->diag, term[k]->loc, "the first head writing '%s' is here", t);
                break;
            }
    if (s->m->train.sampler.kind != SAMPLER_NONE)
        err(s, s->m->train.sampler.loc, "a sampler follows one prediction, but the model has %d targets; sample a model with one "
            "target, or train this one with an optimizer", ntarget);
    for (int i = 0; i < s->m->nmetric; i++) {
        MetricDef *md = &s->m->metric[i];
        md->name = arena_printf(s->arena, "%s.%s", s->m->io[md->val->b->index].name, md->name);
    }
}

/* `evaluate samples = S` draws the variational weights S times and measures each head's
 * predictive mean (runtime/vi_eval.c): the model needs variational layers and an optimizer, and
 * every metric must measure the prediction of its target's head. */
static void finish_eval_samples(Sema *s, SVal *loss) {
    const TrainSpec *t = &s->m->train;
    if (!t->eval_samples || t->sampler.kind != SAMPLER_NONE) return; /* (a sampler with `evaluate`: sema_train.c) */
    if (!s->m->nvariational) {
        err(s, t->eval_loc, "`evaluate samples` draws the weights of variational layers, but the model has none (bayes_dense, bayes_conv1d, bayes_conv2d)");
        return;
    }
    enum { CAP = 64 };
    SVal *term[CAP];
    int n = 0;
    loss_terms(loss, term, &n, CAP);
    for (int i = 0; i < s->m->nmetric; i++) {
        const SVal *v = s->m->metric[i].val;
        SrcLoc at = s->m->metric[i].loc;
        const SVal *head = NULL;
        for (int k = 0; k < n && !head; k++)
            if (term[k]->b == v->b) head = term[k];
        const char *target = s->m->io[v->b->index].name;
        if (!head || head->a != v->a) {
            err(s, at, "with `evaluate samples`, a metric measures the predictive mean of a head, but this one measures "
                "another value than the prediction the loss compares with '%s'", target);
            if (head) diag_note(s->diag, head->loc, "the loss on '%s' is here", target);
        } /* (an nll metric is its head's likelihood, finish_nll: gaussian_nll for a real-valued target) */
    }
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
    const FuncDef *fd = find_func(metrics, NMETRICS, e->text);
    if (!fd) {
        const char *cand[NMETRICS];
        for (int i = 0; i < NMETRICS; i++) cand[i] = metrics[i].name;
        const char *near = diag_suggest(e->text, cand, NMETRICS);
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
    const Ast **a = sema_args_bind(s, e->text, e->loc, spec, 2, e->arg, e->narg);
    if (!a) return;
    SVal *x = sema_eval_tensor(s, a[0]);
    SVal *t = need_target(s, a[1], e->text);
    if (!x || !t) return;
    char bx[96], bt[96];
    if (fd->kind == METRIC_ACCURACY || fd->kind == METRIC_ERROR) {
        if (!check_class_pair(s, e->text, a[0], x, a[1], t)) return;
    } else if ((fd->kind == METRIC_RMSE || fd->kind == METRIC_RELATIVE_ERROR) && (t->is_class || !shape_eq(x->shape, t->shape))) {
        err(s, a[0]->loc, "'%s' needs a prediction and a real-valued target of the same shape, but they are %s and %s",
            fd->name, sema_type_str(bx, sizeof bx, x), sema_type_str(bt, sizeof bt, t));
        return;
    }
    for (int i = 0; i < s->m->nmetric; i++)
        if (!strcmp(s->m->metric[i].name, fd->name) && s->m->metric[i].val->b == t) {
            err(s, e->loc, "metric '%s' of target '%s' is given twice", fd->name, a[1]->text);
            return;
        }
    SVal *v = sema_sval(s, SV_METRIC, e->loc);
    v->op = fd->kind;
    v->a = x;
    v->b = t;
    MetricDef md = {fd->name, (MetricKind)fd->kind, v, e->loc};
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
    SVal *v = sema_sval(s, SV_INPUT, st->name_loc);
    bool ok = true;
    if (!strcmp(t->dtype, "class")) {
        if (!is_target) {
            err(s, t->loc, "class types are only for targets; an input is f32[...]");
            ok = false;
        } else if (t->ndim != 1) {
            err(s, t->loc, "a class target is class[N] with the number of classes N");
            ok = false;
        } else if (sema_eval_int(s, t->dim[0], "the number of classes", 2, 1 << 24, &io.nclass)) {
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
            ok = sema_eval_int(s, t->dim[i], "a dimension", 1, 1 << 24, &io.shape.dim[i]);
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
        sema_define(s, st->name, st->name_loc, SYM_ERROR, 0, NULL);
        return;
    }
    ARENA_PUSH(s->arena, s->m->io, s->m->nio, s->capio, io);
    sema_define(s, st->name, st->name_loc, SYM_IO, s->m->nio - 1, v);
}

static void check_param(Sema *s, const Stmt *st) {
    double v = 0;
    bool ok = sema_eval_const(s, st->expr, &v);
    ParamDef p = {.name = st->name, .loc = st->name_loc, .value = v};
    Override *ov = find_override(s, st->name);
    if (ov) {
        p.value = ov->value;
        p.overridden = true;
        ok = true;
    }
    if (!ok) {
        sema_define(s, st->name, st->name_loc, SYM_ERROR, 0, NULL);
        return;
    }
    ARENA_PUSH(s->arena, s->m->param, s->m->nparam, s->capparam, p);
    sema_define(s, st->name, st->name_loc, SYM_PARAM, s->m->nparam - 1, NULL);
}

static void check_let(Sema *s, const Stmt *st) {
    s->owner = st->name;
    s->nstem = 0;
    sema_layers_count(s, st->expr);
    SVal *v = sema_eval_tensor(s, st->expr);
    s->owner = NULL;
    sema_define(s, st->name, st->name_loc, v ? SYM_VALUE : SYM_ERROR, 0, v);
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
            Sym sym = {st->name, SYM_VALUE, 0, NULL, st->name_loc, NULL};
            ARENA_PUSH(s->arena, s->later, s->nlater, s->caplater, sym);
        }
        if (st->kind == ST_BLOCK) ARENA_PUSH(s->arena, s->block, s->nblock, s->capblock, st);
        if (st->kind == ST_LET || st->kind == ST_LOSS || st->kind == ST_HEAD || st->kind == ST_PRIOR)
            collect_mentions(s, st->expr);
        for (int k = 0; k < st->nlist; k++) collect_mentions(s, st->list[k]);
    }
}

Model *sema_check(Arena *arena, Diag *diag, const Program *prog, const char *path, const SemaOptions *opt) {
    Sema s = {.arena = arena, .diag = diag, .ov = opt->ov, .nov = opt->nov, .width = opt->width, .nwidth = opt->nwidth,
              .load_block = opt->load_block, .library_names = opt->library_names, .load_ctx = opt->load_ctx};
    Model *m = s.m = arena_alloc(arena, sizeof *m);
    m->path = path;
    const char *slash = strrchr(path, '/');
    m->dir = slash ? arena_strndup(arena, path, (size_t)(slash - path + (slash == path))) : "";
    m->train = (TrainSpec){.batch = 64, .epochs = 10, .seed = 1,
                           .opt = {.kind = OPT_ADAM, .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8}};
    collect_names(&s, prog);
    bool seen_loss = false;
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
                SVal *sum = sema_sval(&s, SV_BINARY, st->loc);
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
            sema_train_check(&s, st);
            break;
        case ST_PRIOR: sema_prior_check(&s, st); break;
        case ST_HEAD: sema_head_check(&s, st); break;
        case ST_BLOCK: sema_block_check(&s, st); break;
        case ST_RETURN: err(&s, st->loc, "'return' is only allowed inside a block"); break;
        }
    }
    if (diag_stopped(diag)) return NULL;
    SrcLoc top = {1, 1, 1, 0};
    if (!model_stmt) err(&s, top, "the file does not start with `model NAME`");
    if (!seen_loss) err(&s, model_stmt ? model_stmt->loc : top, "the model has no `loss` statement");
    if (!train_stmt) err(&s, model_stmt ? model_stmt->loc : top, "the model has no `train { ... }` block");
    for (int i = 0; i < m->nio; i++)
        if (!mentioned(&s, m->io[i].name))
            err(&s, m->io[i].loc, "%s '%s' is never used", m->io[i].is_target ? "target" : "input",
                diag_name(m->io[i].name));
    if (m->head.on && m->train.sampler.kind != SAMPLER_NONE)
        err(&s, m->head.loc, "a head is fitted after an optimizer's training, but this model samples its weights");
    finish_nll(&s, loss);
    finish_heads(&s, loss);
    sema_train_finish(&s);
    finish_eval_samples(&s, loss);
    m->loss = loss;
    if (diag->nerror) return NULL;
    return m;
}
