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
    if (v->fixed) desc = arena_printf(s->arena, "%s fixed", desc);
    LayerRow r = {s->owner ? s->owner : "(loss)", desc, v->shape, nparams, v->fixed, v->loc};
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

/* ---- the rows' checks ---- */

/* `init = truncated_normal(std)`, `normal(std)`, `zeros` or `npy("file")` (the weight),
 * `bias_init = c`, `trainable = false` (weight and bias fixed); false after an error. */
static bool init_args(Sema *s, const LayerDef *ld, const Ast *init, const Ast *bias_init, int bias_arg, const Ast *trainable,
                      SVal *v) {
    v->winit = INIT_UNIFORM_FANIN;
    bool file = init && init->kind == AST_CALL && !strcmp(init->text, "npy");
    if (init && init->kind == AST_NAME && !strcmp(init->text, "zeros")) {
        v->winit = INIT_ZERO;
    } else if (file) {
        if (init->narg != 1 || init->arg[0].value->kind != AST_STR || (init->arg[0].name && strcmp(init->arg[0].name, "path"))) {
            err(s, init->loc, "npy(\"file\") takes one file name, a string");
            return false;
        }
        v->winit = INIT_FILE;
        v->winit_path = sema_resolve_path(s, init->arg[0].value->text);
    } else if (init) {
        bool tn = init->kind == AST_CALL && !strcmp(init->text, "truncated_normal"), nm = init->kind == AST_CALL && !strcmp(init->text, "normal");
        if (!(tn || nm) || init->narg != 1 || (init->arg[0].name && strcmp(init->arg[0].name, "std"))) {
            err(s, init->loc, "%s's init is truncated_normal(std), normal(std), zeros or npy(\"file\") (default: uniform in "
                "+-1/sqrt(fan_in))", ld->name);
            return false;
        }
        if (!sema_eval_const(s, init->arg[0].value, &v->winit_std)) return false;
        if (!(v->winit_std > 0)) {
            err(s, init->arg[0].value->loc, "the standard deviation must be positive, got %g", v->winit_std);
            return false;
        }
        v->winit = tn ? INIT_TRUNC_NORMAL : INIT_NORMAL;
    }
    if (bias_init) {
        if (!sema_args_num(s, bias_init, &ld->args[bias_arg], &v->bias_init)) return false;
        v->bias_init_set = true;
        if (!v->bias) {
            err(s, bias_init->loc, "bias_init with bias = false: the layer has no bias");
            return false;
        }
    }
    bool trained = true;
    if (!sema_args_bool(s, trainable, true, &trained)) return false;
    v->fixed = !trained;
    return true;
}

static SVal *check_dense(Sema *s, const LayerDef *ld, const Ast *e, const Ast *const *a, SVal *v) {
    SVal *x = v->a;
    int64_t units;
    if (!need_flat(s, ld->name, x, e->loc)) return NULL;
    if (!sema_eval_int(s, a[0], "the number of units", 1, 1 << 24, &units)) return NULL;
    if (!sema_args_bool(s, a[1], true, &v->bias) || !init_args(s, ld, a[2], a[3], 3, a[4], v)) return NULL;
    v->declared = units;
    for (int i = 0; i < s->nwidth; i++) /* pruned: the surviving width */
        if (!strcmp(s->width[i].layer, v->wname)) units = s->width[i].units;
    v->units = units;
    v->shape = shape_vec(units, true);
    int64_t np = units * x->shape.dim[0] + (v->bias ? units : 0);
    add_row(s, arena_printf(s->arena, "dense(%lld)", (long long)units), v, np);
    return v;
}

/* A variational layer's own arguments: its prior (`prior`: a normal, whose KL term is in closed
 * form, normal(0, 1) when absent; or laplace, cauchy, student_t, whose KL is estimated at each
 * step's draw, v->mc_prior) and rho's start (`rho`).  Marks v variational, with its random
 * stream.  False after reporting an error. */
static bool variational_args(Sema *s, const LayerDef *ld, const Ast *p, const Ast *rho, int rho_arg, SVal *v) {
    if (!sema_args_num(s, rho, &ld->args[rho_arg], &v->rho0)) return false;
    v->prior_mean = 0, v->prior_scale = 1;
    if (p && (p->kind != AST_CALL || !sema_prior_is_dist(p->text))) {
        err(s, p->loc, "%s's prior is a distribution, such as normal(0, 1)", ld->name);
        return false;
    }
    if (p && strcmp(p->text, "normal")) { /* a Monte-Carlo KL: log q(w) - log p(w) at the drawn w */
        PriorDef *pd = arena_alloc(s->arena, sizeof *pd);
        *pd = (PriorDef){.target = v->wname, .loc = p->loc, .target_loc = p->loc};
        if (!sema_prior_dist(s, p, pd)) return false;
        if (pd->noncentred) {
            err(s, p->loc, "a variational layer's prior is a density for its KL term: it has no non-centred form");
            return false;
        }
        if (v->local) {
            err(s, p->loc, "with local = true no weight is drawn, so a Monte-Carlo KL for '%s' has none to use; give a normal "
                "prior (its KL is in closed form)", p->text);
            return false;
        }
        v->mc_prior = pd;
        p = NULL;
    }
    if (p) {
        static const ArgSpec spec[] = {{"loc", A_NUM, true, 0}, {"scale", A_NUM, true, 0}};
        const Ast **q = sema_args_bind(s, "normal", p->loc, spec, 2, p->arg, p->narg);
        if (!q || !sema_eval_const(s, q[0], &v->prior_mean) || !sema_eval_const(s, q[1], &v->prior_scale)) return false;
        if (!(v->prior_scale > 0)) {
            err(s, q[1]->loc, "the prior's scale must be positive, got %g", v->prior_scale);
            return false;
        }
    }
    v->variational = true;
    v->stream = s->ndropout++; /* (the random streams of dropout and variational layers are one series) */
    s->m->nvariational++;
    return true;
}

/* bayes_dense(units, prior = normal(m, s), rho = -5, local = false): a dense layer whose weight is
 * a mean-field Gaussian, w = mu + softplus(rho) eps, with a normal prior whose KL term is in closed
 * form; `local`: the local reparameterisation (its outputs drawn instead, lower.c). */
static SVal *check_bayes_dense(Sema *s, const LayerDef *ld, const Ast *e, const Ast *const *a, SVal *v) {
    SVal *x = v->a;
    int64_t units;
    if (!need_flat(s, ld->name, x, e->loc)) return NULL;
    if (!sema_eval_int(s, a[0], "the number of units", 1, 1 << 24, &units)) return NULL;
    if (!sema_args_bool(s, a[3], true, &v->bias) || !sema_args_bool(s, a[4], false, &v->local)) return NULL;
    if (!variational_args(s, ld, a[1], a[2], 2, v)) return NULL;
    v->declared = units;
    for (int i = 0; i < s->nwidth; i++) /* pruned: the surviving neurons */
        if (!strcmp(s->width[i].layer, v->wname)) units = s->width[i].units;
    v->units = units;
    v->shape = shape_vec(units, true);
    int64_t np = 2 * units * x->shape.dim[0] + (v->bias ? units : 0);
    add_row(s, arena_printf(s->arena, "bayes_dense(%lld%s)", (long long)units, v->local ? ", local" : ""), v, np);
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

/* shift(init = 0): a trained vector added over the last dimension (per feature, or per
 * channel of a feature map). */
static SVal *check_shift(Sema *s, const LayerDef *ld, const Ast *e, const Ast *const *a, SVal *v) {
    SVal *x = v->a;
    char buf[96];
    if (x->is_class) {
        err(s, e->loc, "'%s' cannot take a class target as input", ld->name);
        return NULL;
    }
    if (!x->shape.batched || x->shape.rank < 1) {
        err(s, e->loc, "'%s' needs a batched tensor f32[B,n] (or a feature map, shifted per channel), but its input is %s", ld->name,
            sema_type_str(buf, sizeof buf, x));
        return NULL;
    }
    if (!sema_args_num(s, a[0], &ld->args[0], &v->init)) return NULL;
    add_row(s, "shift", v, x->shape.dim[x->shape.rank - 1]);
    return v;
}

/* What gate and size_gate share: a flat input, whose neurons' dense layer gives the declared
 * width; the penalty coefficient (coef, a run-time scalar) and min_width. */
static bool check_gate_common(Sema *s, const LayerDef *ld, const Ast *e, const Ast *coef, const Ast *minw, SVal *v) {
    SVal *x = v->a;
    char buf[96];
    if (v->size_gate) { /* a size gate orders neurons: a flat layer only */
        if (!need_flat(s, ld->name, x, e->loc)) return false;
    } else if (x->is_class || !x->shape.batched || x->shape.rank < 1) {
        err(s, e->loc, "'%s' needs a batched tensor f32[B,n] (or a feature map, gated per channel), but its input is %s", ld->name,
            sema_type_str(buf, sizeof buf, x));
        return false;
    }
    int64_t width = x->shape.dim[x->shape.rank - 1]; /* a neuron, or a channel of a feature map */
    v->declared = width;
    for (const SVal *l = x; l && l->kind == SV_LAYER; l = l->a) /* the dense or conv layer that made the neurons */
        if (l->layer == L_DENSE || l->layer == L_CONV) {
            v->declared = l->declared;
            break;
        } else if (l->layer != L_ACT && l->layer != L_PRELU && l->layer != L_GATE && l->layer != L_SHIFT) {
            break;
        }
    if (coef) {
        v->coef = sema_eval_scalar(s, coef);
        if (!v->coef) return false;
        double now = sval_value(s->m, v->coef, NULL, NULL);
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
    if (!check_gate_common(s, ld, e, a[0], a[1], v) || !sema_args_bool(s, a[2], false, &v->fold)) return NULL;
    add_row(s, v->a->shape.rank > 1 ? "gate (per channel)" : "gate", v, v->a->shape.dim[v->a->shape.rank - 1]);
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

/* ---- convolution and pooling: feature maps [H, W, C] (channels last) ---- */

/* The input as [H, W, C] for a `spatial`-d window layer: conv2d and maxpool take [H, W, C] or
 * [H, W] (one channel), conv1d and maxpool1d take [L, C] or [L]; false after reporting. */
static bool feature_map(Sema *s, const LayerDef *ld, const Ast *e, const SVal *x, int spatial, int64_t hwc[3]) {
    char buf[96];
    const Shape *sh = &x->shape;
    if (x->is_class || !sh->batched || sh->rank < spatial || sh->rank > spatial + 1) {
        err(s, e->loc, "'%s' needs %s, but its input is %s%s", ld->name,
            spatial == 2 ? "a feature map f32[B,H,W,C] (or an image f32[B,H,W])" : "a sequence f32[B,L,C] (or f32[B,L])",
            sema_type_str(buf, sizeof buf, x),
            spatial == 2 && sh->rank == 1 ? "; a flat input has no height and width" : "");
        return false;
    }
    hwc[0] = spatial == 2 ? sh->dim[0] : 1;
    hwc[1] = sh->dim[spatial - 1];
    hwc[2] = sh->rank == spatial + 1 ? sh->dim[spatial] : 1;
    return true;
}

/* The output length of a window of k (spread by dilation d) sliding by `stride` over n with
 * padding p0 + p1; 0 when the window does not fit. */
static int64_t window_out(int64_t n, int64_t k, int64_t stride, int64_t d, int64_t pad) {
    int64_t span = d * (k - 1) + 1;
    return n + pad < span ? 0 : (n + pad - span) / stride + 1;
}

static SVal *window_shape(SVal *v, int spatial, int64_t oh, int64_t ow, int64_t c) {
    v->shape = spatial == 2 ? (Shape){.rank = 3, .dim = {oh, ow, c}, .batched = true}
                            : (Shape){.rank = 2, .dim = {ow, c}, .batched = true};
    return v;
}

static SVal *check_conv(Sema *s, const LayerDef *ld, const Ast *e, const Ast *const *a, SVal *v) {
    int spatial = strstr(ld->name, "2d") ? 2 : 1;
    int64_t hwc[3], filters, k, stride = 1, dil = 1;
    if (!feature_map(s, ld, e, v->a, spatial, hwc)) return NULL;
    if (!sema_eval_int(s, a[0], "the number of filters", 1, 1 << 20, &filters)) return NULL;
    if (!sema_eval_int(s, a[1], "the kernel size", 1, 1 << 12, &k)) return NULL;
    if (a[2] && !sema_eval_int(s, a[2], "the stride", 1, 1 << 12, &stride)) return NULL;
    if (a[4] && !sema_eval_int(s, a[4], "the dilation", 1, 1 << 12, &dil)) return NULL;
    bool own = !v->variational; /* bayes_conv's arguments 6 and 7 are its prior and rho */
    if (!sema_args_bool(s, a[5], true, &v->bias) || !init_args(s, ld, own ? a[6] : NULL, own ? a[7] : NULL, 7, own ? a[8] : NULL, v))
        return NULL;
    int64_t total = 0; /* padding along each axis, split top/bottom (left/right) */
    const Ast *p = a[3];
    bool word = p && p->kind == AST_NAME && !sema_lookup(s, p->text); /* (a name that is a number: a param) */
    if (word && !strcmp(p->text, "same")) {
        if (stride != 1) {
            err(s, p->loc, "padding = same needs stride 1, but the stride is %lld; give the padding as a number", (long long)stride);
            return NULL;
        }
        total = dil * (k - 1);
    } else if (word && strcmp(p->text, "valid")) {
        static const char *const words[] = {"same", "valid"};
        const char *near = diag_suggest(p->text, words, 2);
        err(s, p->loc, "padding is same, valid or a number of elements, got '%s'%s%s%s", p->text, near ? "; did you mean '" : "",
            near ? near : "", near ? "'?" : "");
        return NULL;
    } else if (p && !word) {
        int64_t n;
        if (!sema_eval_int(s, p, "the padding", 0, 1 << 12, &n)) return NULL;
        total = 2 * n;
    }
    int64_t kh = spatial == 2 ? k : 1, ph = spatial == 2 ? total : 0;
    int64_t oh = window_out(hwc[0], kh, stride, dil, ph), ow = window_out(hwc[1], k, stride, dil, total);
    if (!oh || !ow) {
        char kern[96] = "", in[96];
        int64_t span = dil * (k - 1) + 1;
        if (spatial == 2) snprintf(in, sizeof in, "%lld x %lld", (long long)(hwc[0] + ph), (long long)(hwc[1] + total));
        else snprintf(in, sizeof in, "%lld", (long long)(hwc[1] + total));
        if (dil > 1) snprintf(kern, sizeof kern, ", spanning %lld with dilation %lld", (long long)span, (long long)dil);
        err(s, e->loc, "the kernel (%lld%s%s) is larger than the padded input (%s)", (long long)k,
            spatial == 2 ? arena_printf(s->arena, " x %lld", (long long)k) : "", kern, in);
        return NULL;
    }
    v->spatial = spatial;
    v->kh = kh, v->kw = k, v->stride = stride, v->dilation = dil, v->pad_top = ph / 2, v->pad_left = total / 2;
    v->declared = filters;
    for (int i = 0; i < s->nwidth; i++) /* pruned: the surviving channels */
        if (!strcmp(s->width[i].layer, v->wname)) filters = s->width[i].units;
    v->units = filters;
    window_shape(v, spatial, oh, ow, filters);
    int64_t np = (v->variational ? 2 : 1) * filters * hwc[2] * kh * k + (v->bias ? filters : 0);
    const char *kernel = spatial == 2 ? arena_printf(s->arena, "%lldx%lld", (long long)k, (long long)k)
                                      : arena_printf(s->arena, "%lld", (long long)k);
    add_row(s, arena_printf(s->arena, "%s(%lld, %s%s%s)", ld->name, (long long)filters, kernel,
                            total ? (word ? ", same" : ", padded") : "", stride > 1 ? ", strided" : ""),
            v, np);
    return v;
}

/* bayes_conv1d / bayes_conv2d(filters, kernel, ..., prior = normal(m, s), rho = -5): a convolution
 * whose weight is a mean-field Gaussian, as bayes_dense's (the bias is an ordinary weight). */
static SVal *check_bayes_conv(Sema *s, const LayerDef *ld, const Ast *e, const Ast *const *a, SVal *v) {
    if (!variational_args(s, ld, a[6], a[7], 7, v)) return NULL;
    return check_conv(s, ld, e, a, v);
}

static SVal *check_pool(Sema *s, const LayerDef *ld, const Ast *e, const Ast *const *a, SVal *v) {
    int spatial = strstr(ld->name, "1d") ? 1 : 2;
    int64_t hwc[3], k, stride;
    if (!feature_map(s, ld, e, v->a, spatial, hwc)) return NULL;
    if (!sema_eval_int(s, a[0], "the window size", 1, 1 << 12, &k)) return NULL;
    stride = k;
    if (a[1] && !sema_eval_int(s, a[1], "the stride", 1, 1 << 12, &stride)) return NULL;
    int64_t kh = spatial == 2 ? k : 1;
    int64_t oh = window_out(hwc[0], kh, stride, 1, 0), ow = window_out(hwc[1], k, stride, 1, 0);
    if (!oh || !ow) {
        if (spatial == 2)
            err(s, e->loc, "the window (%lld x %lld) is larger than the input (%lld x %lld)", (long long)k, (long long)k,
                (long long)hwc[0], (long long)hwc[1]);
        else
            err(s, e->loc, "the window (%lld) is larger than the input (%lld)", (long long)k, (long long)hwc[1]);
        return NULL;
    }
    v->spatial = spatial;
    v->pool = ld->act;
    v->kh = kh, v->kw = k, v->stride = stride, v->dilation = 1;
    window_shape(v, spatial, oh, ow, hwc[2]);
    add_row(s, arena_printf(s->arena, "%s(%lld)", ld->name, (long long)k), v, 0);
    return v;
}

/* batch_norm(momentum, eps) and layer_norm(eps): normalise to mean 0 and variance 1, then
 * scale and shift per feature (per channel of a feature map) by learned vectors.  batch_norm
 * normalises each feature (channel) over the batch (and the positions), with running averages
 * of those statistics used in evaluation; layer_norm normalises each sample over all its
 * features (a feature map over its positions and channels). */
static SVal *check_norm(Sema *s, const LayerDef *ld, const Ast *e, const Ast *const *a, SVal *v) {
    char buf[96];
    const SVal *x = v->a;
    bool batch = ld->kind == L_BATCH_NORM;
    if (x->is_class || !x->shape.batched || x->shape.rank < 1) {
        err(s, e->loc, "'%s' needs a batched real-valued tensor f32[B,n] or a feature map, but its input is %s", ld->name,
            sema_type_str(buf, sizeof buf, x));
        return NULL;
    }
    if (!batch && shape_numel(x->shape) < 2) {
        err(s, e->loc, "'layer_norm' of a single feature is always 0; it needs at least two features per sample");
        return NULL;
    }
    if (batch) {
        if (!sema_args_num(s, a[0], &ld->args[0], &v->momentum)) return NULL;
        if (!(v->momentum > 0 && v->momentum <= 1)) {
            err(s, a[0]->loc, "the momentum is the running averages' weight on each batch, in (0, 1], got %g", v->momentum);
            return NULL;
        }
    }
    int ieps = batch ? 1 : 0;
    if (!sema_args_num(s, a[ieps], &ld->args[ieps], &v->eps)) return NULL;
    if (!(v->eps > 0)) {
        err(s, a[ieps]->loc, "eps is added to the variance before its square root and must be positive, got %g", v->eps);
        return NULL;
    }
    int64_t c = x->shape.dim[x->shape.rank - 1];
    add_row(s, x->shape.rank > 1 ? arena_printf(s->arena, "%s (per channel)", ld->name) : ld->name, v, 2 * c);
    return v;
}

/* dropout(p): in training each element is kept with probability 1 - p (and scaled by
 * 1 / (1 - p)), by the kernels' counter-based generator; in evaluation it is the identity. */
static SVal *check_dropout(Sema *s, const LayerDef *ld, const Ast *e, const Ast *const *a, SVal *v) {
    char buf[96];
    if (v->a->is_class || !v->a->shape.batched) {
        err(s, e->loc, "'dropout' needs a batched real-valued tensor, but its input is %s", sema_type_str(buf, sizeof buf, v->a));
        return NULL;
    }
    if (!sema_eval_const(s, a[0], &v->alpha)) return NULL;
    if (!(v->alpha >= 0 && v->alpha < 1)) {
        err(s, a[0]->loc, "dropout's p is the probability of dropping an element, in [0, 1), got %g", v->alpha);
        return NULL;
    }
    v->stream = s->ndropout++;
    add_row(s, arena_printf(s->arena, "dropout(%g)", v->alpha), v, 0);
    return v;
}

/* ---- the table ---- */

static const LayerDef layers[] = {
    {"dense", L_DENSE, .check = check_dense, .stem = "dense",
     SEMA_ARGS({"units", A_INT, true, 0}, {"bias", A_BOOL, false, 1}, {"init", A_ANY, false, 0}, {"bias_init", A_NUM, false, 0},
               {"trainable", A_BOOL, false, 1})},
    {"flatten", L_FLATTEN, .check = check_flatten},
    {"relu", L_ACT, .check = check_act, .act = OP_RELU},
    {"leaky_relu", L_ACT, .check = check_act, .act = OP_LEAKY_RELU, SEMA_ARGS({"slope", A_NUM, false, 0.01})},
    {"elu", L_ACT, .check = check_act, .act = OP_ELU, SEMA_ARGS({"alpha", A_NUM, false, 1.0})},
    {"tanh", L_ACT, .check = check_act, .act = OP_TANH},
    {"sigmoid", L_ACT, .check = check_act, .act = OP_SIGMOID},
    {"softplus", L_ACT, .check = check_act, .act = OP_SOFTPLUS},
    {"gelu", L_ACT, .check = check_act, .act = OP_GELU},
    {"identity", L_ACT, .check = check_act, .act = OP_COUNT},
    {"shift", L_SHIFT, .check = check_shift, .stem = "shift", SEMA_ARGS({"init", A_NUM, false, 0})},
    {"prelu", L_PRELU, .check = check_prelu, .stem = "prelu", SEMA_ARGS({"init", A_NUM, false, 0.25})},
    {"gate", L_GATE, .check = check_gate, .stem = "gate",
     SEMA_ARGS({"l1", A_SCALAR, false, 0}, {"min_width", A_INT, false, 1}, {"fold", A_BOOL, false, 0})},
    {"size_gate", L_GATE, .check = check_size_gate, .stem = "gate",
     SEMA_ARGS({"slope", A_NUM, true, 0}, {"penalty", A_SCALAR, false, 0}, {"threshold", A_NUM, false, 0.01},
               {"init", A_NUM, false, 0}, {"min_width", A_INT, false, 1})},
    {"conv2d", L_CONV, .check = check_conv, .stem = "conv",
     SEMA_ARGS({"filters", A_INT, true, 0}, {"kernel", A_INT, true, 0}, {"stride", A_INT, false, 1},
               {"padding", A_ANY, false, 0}, {"dilation", A_INT, false, 1}, {"bias", A_BOOL, false, 1},
               {"init", A_ANY, false, 0}, {"bias_init", A_NUM, false, 0}, {"trainable", A_BOOL, false, 1})},
    {"conv1d", L_CONV, .check = check_conv, .stem = "conv",
     SEMA_ARGS({"filters", A_INT, true, 0}, {"kernel", A_INT, true, 0}, {"stride", A_INT, false, 1},
               {"padding", A_ANY, false, 0}, {"dilation", A_INT, false, 1}, {"bias", A_BOOL, false, 1},
               {"init", A_ANY, false, 0}, {"bias_init", A_NUM, false, 0}, {"trainable", A_BOOL, false, 1})},
    {"maxpool", L_POOL, .check = check_pool, .act = OP_MAXPOOL, SEMA_ARGS({"size", A_INT, true, 0}, {"stride", A_INT, false, 0})},
    {"avgpool", L_POOL, .check = check_pool, .act = OP_AVGPOOL, SEMA_ARGS({"size", A_INT, true, 0}, {"stride", A_INT, false, 0})},
    {"maxpool1d", L_POOL, .check = check_pool, .act = OP_MAXPOOL, SEMA_ARGS({"size", A_INT, true, 0}, {"stride", A_INT, false, 0})},
    {"avgpool1d", L_POOL, .check = check_pool, .act = OP_AVGPOOL, SEMA_ARGS({"size", A_INT, true, 0}, {"stride", A_INT, false, 0})},
    {"dropout", L_DROPOUT, .check = check_dropout, SEMA_ARGS({"p", A_NUM, true, 0})},
    {"batch_norm", L_BATCH_NORM, .check = check_norm, .stem = "norm",
     SEMA_ARGS({"momentum", A_NUM, false, 0.1}, {"eps", A_NUM, false, 1e-5})},
    {"layer_norm", L_LAYER_NORM, .check = check_norm, .stem = "norm", SEMA_ARGS({"eps", A_NUM, false, 1e-5})},
    {"bayes_dense", L_BAYES_DENSE, .check = check_bayes_dense, .stem = "bayes_dense",
     SEMA_ARGS({"units", A_INT, true, 0}, {"prior", A_ANY, false, 0}, {"rho", A_NUM, false, -5}, {"bias", A_BOOL, false, 1},
               {"local", A_BOOL, false, 0})},
    {"bayes_conv2d", L_CONV, .check = check_bayes_conv, .stem = "bayes_conv",
     SEMA_ARGS({"filters", A_INT, true, 0}, {"kernel", A_INT, true, 0}, {"stride", A_INT, false, 1},
               {"padding", A_ANY, false, 0}, {"dilation", A_INT, false, 1}, {"bias", A_BOOL, false, 1},
               {"prior", A_ANY, false, 0}, {"rho", A_NUM, false, -5})},
    {"bayes_conv1d", L_CONV, .check = check_bayes_conv, .stem = "bayes_conv",
     SEMA_ARGS({"filters", A_INT, true, 0}, {"kernel", A_INT, true, 0}, {"stride", A_INT, false, 1},
               {"padding", A_ANY, false, 0}, {"dilation", A_INT, false, 1}, {"bias", A_BOOL, false, 1},
               {"prior", A_ANY, false, 0}, {"rho", A_NUM, false, -5})},
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

/* How many times `repeat(n, L)` applies L, without reporting (the application reports): n when
 * it is a number, a block's number argument or a param; else 2, so that its layers are numbered. */
static int repeats(Sema *s, const Ast *n) {
    const Sym *sym = n->kind == AST_NAME ? sema_lookup(s, n->text) : NULL;
    double v = n->kind == AST_NUM ? n->num
             : sym && sym->kind == SYM_NUMBER && sym->val->kind == SV_CONST ? sym->val->num
             : sym && sym->kind == SYM_PARAM ? s->m->param[sym->index].value : 2;
    return v >= 1 && v <= 1000 ? (int)v : 2;
}

void sema_layers_count(Sema *s, const Ast *e) {
    for (; e; e = e->kind == AST_PIPE ? e->lhs : NULL) {
        const Ast *l = e->kind == AST_PIPE ? e->rhs : e;
        bool input_first = l->kind == AST_CALL && l->narg == 3 && !l->arg[0].name;
        if (l->kind == AST_CALL && !strcmp(l->text, "repeat") && !sema_layers_find(l->text) && !sema_block_find(s, l->text) &&
            l->narg >= 2) { /* repeat(n, L) or repeat(x, n, L): L counted n times */
            const Ast *inner = l->arg[l->narg - 1].value;
            for (int i = repeats(s, l->arg[l->narg - 2].value); i > 0; i--) sema_layers_count(s, inner);
            if (input_first) sema_layers_count(s, l->arg[0].value);
            continue;
        }
        if (l->kind == AST_CALL || l->kind == AST_NAME) {
            const LayerDef *ld = sema_layers_find(l->text);
            bool tensor = l->kind == AST_NAME && sema_lookup(s, l->text); /* (not a block to look for) */
            const Stmt *blk = ld || tensor ? NULL : sema_block_find(s, l->text);
            const char *stem = ld && !ld->todo ? ld->stem : blk ? blk->name : NULL;
            if (stem) {
                WeightStem *w = find_stem(s, stem);
                if (!w) {
                    ARENA_PUSH(s->arena, s->stem, s->nstem, s->capstem, ((WeightStem){stem, 0, 0}));
                    w = &s->stem[s->nstem - 1];
                }
                w->count++;
            }
            if (l->kind == AST_CALL && l->narg > 0 && !l->arg[0].name) sema_layers_count(s, l->arg[0].value);
        }
    }
}

/* Layers whose weights are a weight (or its mean and rho) and a bias: two of them named after
 * the binding alone would give two NAME.bias. */
static bool has_bias(const char *stem) {
    return !strcmp(stem, "dense") || !strcmp(stem, "conv") || !strcmp(stem, "bayes_dense") || !strcmp(stem, "bayes_conv");
}

/* h1 for the binding's only dense layer, h1.dense2 for the second of several; h.dense1 and
 * h.bayes_dense1 where a dense and a bayes_dense layer (or a convolution) share the binding,
 * each alone of its kind, whose weights would otherwise share the name h.bias. */
const char *sema_layers_prefix(Sema *s, const char *stem) {
    const char *owner = s->owner ? s->owner : "loss";
    WeightStem *w = find_stem(s, stem);
    if (!w) return owner;
    bool clash = false;
    for (int i = 0; i < s->nstem && w->count == 1 && has_bias(stem); i++)
        clash |= &s->stem[i] != w && s->stem[i].count == 1 && has_bias(s->stem[i].stem);
    if (w->count <= 1 && !clash) return owner;
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
    const Ast **a = sema_args_bind(s, name, e->loc, ld->args, ld->nargs, e->kind == AST_CALL && e->arg ? e->arg + skip : NULL,
                                   e->kind == AST_CALL ? e->narg - skip : 0);
    if (!a) return NULL;
    SVal *v = sema_sval(s, SV_LAYER, e->loc);
    v->layer = ld->kind;
    v->a = x;
    v->shape = x->shape;
    if (ld->stem) v->wname = sema_layers_prefix(s, ld->stem);
    return ld->check(s, ld, e, a, v);
}
