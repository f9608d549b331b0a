/* sema_fd.c: checks `fd_grad(heads, x, eps = 1e-3, method = central)`, the input-gradients of
 * M heads by finite differences, and the loss `cosine_diversity(g, eps = 1e-6)` on them
 * (workload 4, LUNA).  Part of the checking pass (sema_internal.h); lower.c builds both through
 * fd_grad.c.  The shapes are the point: the heads are [M] per sample, the input [D], the
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
                  v->shape, 0, e->loc};
    ARENA_PUSH(s->arena, s->m->row, s->m->nrow, s->caprow, r);
    return v;
}

SVal *sema_cosine_diversity(Sema *s, const Ast *e) {
    static const ArgSpec spec[] = {{"gradients", A_TENSOR, true, 0}, {"eps", A_NUM, false, 1e-6}};
    const Ast **a = sema_args_bind(s, "cosine_diversity", e->loc, spec, 2, e->arg, e->narg);
    if (!a) return NULL;
    SVal *g = sema_eval_tensor(s, a[0]);
    double eps;
    if (!g || !sema_args_num(s, a[1], &spec[1], &eps)) return NULL;
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
    return v;
}
