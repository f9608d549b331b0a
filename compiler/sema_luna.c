/* sema_luna.c: checks `fd_grad(heads, x, eps = 1e-3, method = central)`, the input-gradients of
 * M heads by finite differences, the loss `cosine_diversity(g, eps = 1e-6)` on them, and the
 * post-training head `head bayes_linear(features, y, alpha, beta)` (workload 4: LUNA and the
 * neural linear model).  Part of the checking pass (sema_internal.h); lower.c builds the first
 * two through fd_grad.c, runtime/bayes_linear.c fits the head.  The shapes are the point: the heads are [M] per sample, the input [D], the
 * gradient [M, D], and a scalar-per-sample function where M heads were meant is an error here,
 * not a silently wrong gradient. */
#include <string.h>

#include "sema_internal.h"

/* Whether v is computed from w (through layers, arithmetic, other fd_grads). */
static bool depends_on(const SVal *v, const SVal *w) {
    if (!v) return false;
    if (v == w) return true;
    return depends_on(v->a, w) || ((v->kind == SV_BINARY || v->kind == SV_FD_GRAD) && depends_on(v->b, w));
}

static const char *const methods[] = {"central", "forward", "backward"};

SVal *sema_fd_grad(Sema *s, const Ast *e) {
    static const ArgSpec spec[] = {
        {"heads", A_TENSOR, true, 0}, {"x", A_TENSOR, true, 0}, {"eps", A_NUM, false, 1e-3}, {"method", A_WORD, false, 0}};
    const Ast **a = sema_args_bind(s, "fd_grad", e->loc, spec, 4, e->arg, e->narg);
    if (!a) return NULL;
    SVal *h = sema_eval_tensor(s, a[0]), *x = sema_eval_tensor(s, a[1]);
    double eps;
    if (!h || !x || !sema_args_num(s, a[2], &spec[2], &eps)) return NULL;
    char bh[96], bx[96];
    if (eps <= 0) {
        err(s, a[2]->loc, "fd_grad's eps is the step of its differences and must be positive, got %g", eps);
        return NULL;
    }
    int method = 0;
    if (a[3]) {
        const Ast *m = a[3];
        method = -1;
        for (int i = 0; i < 3 && m->kind == AST_NAME; i++)
            if (!strcmp(m->text, methods[i])) method = i;
        if (method < 0) {
            const char *near = m->kind == AST_NAME ? diag_suggest(m->text, methods, 3) : NULL;
            err(s, m->loc, "fd_grad's method is central, forward or backward%s%s%s", near ? "; did you mean '" : "",
                near ? near : "", near ? "'?" : "");
            return NULL;
        }
    }
    if (x->kind != SV_INPUT || s->m->io[x->index].is_target || x->is_class) {
        err(s, a[1]->loc, "fd_grad differentiates by a model input, but this is %s; name an `input`",
            x->kind == SV_INPUT ? "a target" : "a computed value");
        return NULL;
    }
    if (x->shape.rank != 1) {
        err(s, a[1]->loc, "fd_grad needs an input of D values per sample, f32[B,D], but '%s' is %s", s->m->io[x->index].name,
            sema_type_str(bx, sizeof bx, x));
        return NULL;
    }
    bool one = h->shape.batched && shape_numel(h->shape) == 1; /* one value per sample */
    if (h->is_class || !h->shape.batched || h->shape.rank != 1 || one) {
        err(s, a[0]->loc, "fd_grad needs M heads per sample, f32[B,M] with M >= 2, but its first argument is %s%s",
            sema_type_str(bh, sizeof bh, h),
            one ? ": one value per sample, so its gradient would be one vector where M were meant; give the heads' layer M "
                  "outputs, such as dense(30)" : "");
        return NULL;
    }
    if (h == x) {
        err(s, a[0]->loc, "fd_grad's heads are input '%s' itself, whose gradient by it is the identity; compute the heads "
            "from it, as in `fd_grad(%s -> dense(30), %s)`", s->m->io[x->index].name, s->m->io[x->index].name, s->m->io[x->index].name);
        return NULL;
    }
    if (!depends_on(h, x)) {
        err(s, a[0]->loc, "fd_grad's heads do not depend on input '%s', so their gradient by it is 0", s->m->io[x->index].name);
        return NULL;
    }
    SVal *v = sema_sval(s, SV_FD_GRAD, e->loc);
    v->a = h;
    v->b = x;
    v->num = eps;
    v->op = method;
    v->shape = (Shape){.rank = 2, .dim = {h->shape.dim[0], x->shape.dim[0]}, .batched = true};
    LayerRow r = {s->owner ? s->owner : "(loss)",
                  arena_printf(s->arena, "fd_grad(%s, eps %g, %lld points)", methods[method], eps,
                               (long long)(method == 0 ? 2 * x->shape.dim[0] : x->shape.dim[0] + 1)),
                  v->shape, 0, false, e->loc};
    ARENA_PUSH(s->arena, s->m->row, s->m->nrow, s->caprow, r);
    return v;
}

SVal *sema_cosine_diversity(Sema *s, const Ast *e) {
    static const ArgSpec spec[] = {
        {"gradients", A_TENSOR, true, 0}, {"eps", A_NUM, false, 1e-6}, {"graph", A_BOOL, false, 0}, {"squared", A_BOOL, false, 0}};
    const Ast **a = sema_args_bind(s, "cosine_diversity", e->loc, spec, 4, e->arg, e->narg);
    if (!a) return NULL;
    SVal *g = sema_eval_tensor(s, a[0]);
    double eps;
    bool graph, squared;
    if (!g || !sema_args_num(s, a[1], &spec[1], &eps) || !sema_args_bool(s, a[2], false, &graph) ||
        !sema_args_bool(s, a[3], false, &squared))
        return NULL;
    char bg[96];
    if (eps <= 0) {
        err(s, a[1]->loc, "cosine_diversity's eps keeps a zero gradient's norm finite and must be positive, got %g", eps);
        return NULL;
    }
    if (g->is_class || !g->shape.batched || g->shape.rank != 2) {
        err(s, a[0]->loc, "cosine_diversity compares the gradients of M heads per sample, f32[B,M,D] as fd_grad gives them, "
            "but this is %s", sema_type_str(bg, sizeof bg, g));
        return NULL;
    }
    if (g->shape.dim[0] < 2) {
        err(s, a[0]->loc, "cosine_diversity of one head: %s has M = 1, and a similarity needs two heads to compare",
            sema_type_str(bg, sizeof bg, g));
        return NULL;
    }
    SVal *v = sema_sval(s, SV_LOSS, e->loc);
    v->op = LOSS_COSINE_DIVERSITY;
    v->a = g;
    v->num = eps;
    v->graph = graph;
    v->squared = squared;
    return v;
}

/* alpha or beta: a positive number, or the word `evidence`. */
static bool precision_arg(Sema *s, const Ast *e, const char *what, const char *meaning, double def, double *out, bool *evidence) {
    *evidence = false;
    *out = def;
    if (!e) return true;
    if (e->kind == AST_NAME && !strcmp(e->text, "evidence") && !sema_lookup(s, "evidence")) {
        *evidence = true;
        return true;
    }
    if (!sema_eval_const(s, e, out)) return false;
    if (!(*out > 0)) {
        err(s, e->loc, "bayes_linear's %s is %s and must be positive (or `evidence`), got %g", what, meaning, *out);
        return false;
    }
    return true;
}

void sema_head_check(Sema *s, const Stmt *st) {
    const Ast *e = st->expr;
    if (s->m->head.on) {
        err(s, st->loc, "a model has one post-training head; this is a second");
        diag_note(s->diag, s->m->head.loc, "the first is here");
        return;
    }
    if (e->kind != AST_CALL || strcmp(e->text, "bayes_linear")) {
        err(s, e->loc, "a head is fitted after training: `head bayes_linear(features, y, alpha = 1, beta = 100)` is the one there is");
        return;
    }
    static const ArgSpec spec[] = {
        {"features", A_TENSOR, true, 0}, {"target", A_TENSOR, true, 0}, {"alpha", A_ANY, false, 1}, {"beta", A_ANY, false, 100}};
    const Ast **a = sema_args_bind(s, "bayes_linear", e->loc, spec, 4, e->arg, e->narg);
    if (!a) return;
    HeadSpec h = {.loc = e->loc, .target = -1};
    bool ok = precision_arg(s, a[2], "alpha", "the prior's precision on the weights", 1, &h.alpha, &h.alpha_evidence);
    ok &= precision_arg(s, a[3], "beta", "the noise's precision", 100, &h.beta, &h.beta_evidence);
    SVal *f = sema_eval_tensor(s, a[0]);
    Sym *t = a[1]->kind == AST_NAME ? sema_lookup(s, a[1]->text) : NULL;
    if (!f || !ok) return;
    char bf[96];
    h.features_name = a[0]->kind == AST_NAME ? a[0]->text : "this value";
    if (f->kind != SV_LAYER || f->is_class || !f->shape.batched || f->shape.rank != 1) {
        const char *what = f->kind == SV_INPUT ? (s->m->io[f->index].is_target ? "a target" : "a model input")
                           : f->kind == SV_FD_GRAD ? "gradients" : f->shape.rank != 1 ? "a feature map" : "not a layer's output";
        err(s, a[0]->loc, "bayes_linear fits on a feature layer's values, f32[B,F] from a layer, but '%s' is %s (%s)%s",
            h.features_name, sema_type_str(bf, sizeof bf, f), what,
            f->shape.rank > 1 ? "; flatten it first" : "");
        return;
    }
    if (!t || t->kind != SYM_IO || !s->m->io[t->index].is_target || s->m->io[t->index].is_class) {
        err(s, a[1]->loc, "bayes_linear's second argument is the real-valued target it regresses on%s",
            t && t->kind == SYM_IO && s->m->io[t->index].is_class ? "; a class target needs a classifier, not a linear regression" : "");
        return;
    }
    h.on = true;
    h.features = f;
    h.target = t->index;
    s->m->head = h;
}
