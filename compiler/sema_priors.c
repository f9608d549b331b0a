/* sema_priors.c: `prior TARGET ~ dist(args)` statements (part of the checking pass, see
 * sema_internal.h).  One row per distribution gives its arguments; the location and scale are
 * run-time scalar expressions (params may be scheduled or set with --set), a scale must be
 * positive, and student_t's degrees of freedom are a number fixed when the model is compiled.
 * The target is `weights`, `biases`, a layer or a weight, written as a dotted name; which
 * weights it names is only known once lower.c has made them, so it is resolved there.  The
 * same target twice is an error here. */
#include <string.h>

#include "sema_internal.h"

typedef struct {
    const char *name;
    PriorKind kind;
    const ArgSpec *args; /* SEMA_ARGS(...) */
    int nargs;
} DistDef;

static const DistDef dists[] = {
    {"normal", PRIOR_NORMAL, SEMA_ARGS({"loc", A_SCALAR, false, 0}, {"scale", A_SCALAR, false, 1})},
    {"laplace", PRIOR_LAPLACE, SEMA_ARGS({"loc", A_SCALAR, false, 0}, {"scale", A_SCALAR, false, 1})},
    {"cauchy", PRIOR_CAUCHY,
     SEMA_ARGS({"loc", A_SCALAR, false, 0}, {"scale", A_SCALAR, false, 1}, {"noncentred", A_BOOL, false, 0})},
    {"student_t", PRIOR_STUDENT_T,
     SEMA_ARGS({"nu", A_NUM, true, 0}, {"loc", A_SCALAR, false, 0}, {"scale", A_SCALAR, false, 1}, {"noncentred", A_BOOL, false, 0})},
};
enum { NDISTS = sizeof dists / sizeof *dists };

bool sema_prior_is_dist(const char *name) {
    for (int i = 0; i < NDISTS; i++)
        if (!strcmp(dists[i].name, name)) return true;
    return false;
}

/* The dotted name of a target (`h1.weight`), or NULL after reporting. */
static const char *target_name(Sema *s, const Ast *e, SrcLoc *loc) {
    if (e->kind == AST_NAME) {
        *loc = e->loc;
        return e->text;
    }
    if (e->kind == AST_FIELD) {
        const char *head = target_name(s, e->lhs, loc);
        if (!head) return NULL;
        loc->end_col = e->loc.end_col;
        return arena_printf(s->arena, "%s.%s", head, e->text);
    }
    if (e->kind != AST_ERROR)
        err(s, e->loc, "a prior's target is `weights`, `biases`, a layer such as h1, or a weight such as h1.weight");
    return NULL;
}

/* A scalar expression as written back: a number, a param, or "(expr)". */
static const char *scalar_text(Sema *s, const SVal *v) {
    if (v->kind == SV_CONST) return arena_printf(s->arena, "%g", v->num);
    if (v->kind == SV_PARAM) return s->m->param[v->index].name;
    return "(expr)";
}

void sema_prior_check(Sema *s, const Stmt *st) {
    PriorDef pd = {.loc = st->loc};
    if (!(pd.target = target_name(s, st->target, &pd.target_loc))) return;
    if (!sema_prior_dist(s, st->expr, &pd)) return;
    for (int i = 0; i < s->m->nprior; i++)
        if (!strcmp(s->m->prior[i].target, pd.target)) {
            err(s, pd.target_loc, "'%s' has two priors of equal rank; give it one", pd.target);
            diag_note(s->diag, s->m->prior[i].target_loc, "the other prior on '%s' is here", pd.target);
            return;
        }
    ARENA_PUSH(s->arena, s->m->prior, s->m->nprior, s->capprior, pd);
}

bool sema_prior_dist(Sema *s, const Ast *e, PriorDef *out) {
    PriorDef pd = *out;
    const char *name = e->kind == AST_CALL || e->kind == AST_NAME ? e->text : NULL;
    const DistDef *dd = NULL;
    for (int i = 0; name && i < NDISTS; i++)
        if (!strcmp(dists[i].name, name)) dd = &dists[i];
    if (!dd) {
        const char *cand[NDISTS];
        for (int i = 0; i < NDISTS; i++) cand[i] = dists[i].name;
        const char *near = name ? diag_suggest(name, cand, NDISTS) : NULL;
        if (near)
            err(s, e->loc, "unknown distribution '%s'; did you mean '%s'?", diag_name(name), near);
        else if (name)
            err(s, e->loc, "unknown distribution '%s'; priors are normal, laplace, cauchy or student_t", diag_name(name));
        else if (e->kind != AST_ERROR)
            err(s, e->loc, "expected a distribution such as normal(0, 1) after '~'");
        return false;
    }
    const Ast **a = sema_args_bind(s, dd->name, e->loc, dd->args, dd->nargs, e->arg, e->narg);
    if (!a) return false;
    pd.kind = dd->kind;
    pd.nu = 1;
    int at = 0;
    if (dd->kind == PRIOR_STUDENT_T) {
        if (!sema_eval_const(s, a[0], &pd.nu)) return false;
        if (!(pd.nu > 0)) {
            err(s, a[0]->loc, "student_t's degrees of freedom nu must be positive, got %g", pd.nu);
            return false;
        }
        at = 1;
    }
    if (a[at]) {
        if (!(pd.mean = sema_eval_scalar(s, a[at]))) return false;
    } else {
        pd.mean = sema_sval(s, SV_CONST, e->loc);
    }
    if (a[at + 1]) {
        if (!(pd.scale = sema_positive_scalar(s, a[at + 1], arena_printf(s->arena, "the scale of a %s prior", dd->name))))
            return false;
    } else {
        pd.scale = sema_sval(s, SV_CONST, e->loc);
        pd.scale->num = 1;
    }
    if (dd->nargs > at + 2 && !sema_args_bool(s, a[at + 2], false, &pd.noncentred)) return false;
    pd.text = dd->kind == PRIOR_STUDENT_T
                  ? arena_printf(s->arena, "student_t(%g, %s, %s%s)", pd.nu, scalar_text(s, pd.mean), scalar_text(s, pd.scale),
                                 pd.noncentred ? ", noncentred = true" : "")
                  : arena_printf(s->arena, "%s(%s, %s%s)", dd->name, scalar_text(s, pd.mean), scalar_text(s, pd.scale),
                                 pd.noncentred ? ", noncentred = true" : "");
    *out = pd;
    return true;
}
