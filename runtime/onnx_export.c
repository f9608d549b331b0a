/* onnx_export.c: `nnc export --onnx FILE --checkpoint C -o model.onnx` (or `--draws RUN`), the
 * inference graph of a trained (or sampled) model as an ONNX model (opset 17, IR version 8) that any ONNX runtime runs.
 *
 * The graph is written from the model's layers as the checker made them (compiler/model.h's
 * SVals, blocks expanded, at the checkpoint's widths after pruning), from each prediction that
 * `predict` writes back to the inputs, with the checkpoint's weights as initializers under
 * their model-level names.  Tensors keep nnc's layout, channels last ([N, H, W, C]): ONNX's
 * Conv and pooling take channels first, so each is wrapped in two Transposes.  Evaluation
 * semantics: dropout is the identity, batch_norm uses its running averages (folded into one
 * scale and shift per channel), a variational layer its posterior mean (the metadata says so),
 * a sampled model (`--draws RUN`) the mean of its draws, a gate multiplies its layer's outputs (a pruned gate's neurons are gone from the weights
 * already), a size gate by its factors computed here.
 *
 * The protocol buffers are encoded by protobuf.c: the export writes eight message types and
 * reads none, which a hand encoder does in a page (Debian's protobuf-c would need ONNX's schema
 * compiled into the build, for the same bytes).  Field numbers are those of onnx.proto. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "posterior.h"
#include "protobuf.h"
#include "run.h"

enum { OPSET = 17, IR_VERSION = 8, ONNX_FLOAT = 1, ONNX_INT64 = 7 };
enum { ATTR_FLOAT = 1, ATTR_INT = 2, ATTR_INTS = 7 };

typedef struct {
    Built *b;
    StrBuf nodes, inits;   /* GraphProto.node, .initializer: serialized, each a field */
    int ntemp;             /* names of intermediate values: t0, t1, ... */
    const SVal **done;     /* memo: SVal -> its value's name */
    const char **name;
    int ndone, capdone;
    bool variational;      /* the graph uses a posterior mean */
    char err[1024];
} Export;

/* ---- values and initializers ---- */

static const char *temp(Export *x) {
    char buf[32];
    snprintf(buf, sizeof buf, "t%d", x->ntemp++);
    return arena_strdup(x->b->c.arena, buf);
}

/* A float initializer `name` of shape dims[0..rank). */
static void init_f32(Export *x, const char *name, const int64_t *dims, int rank, const float *v) {
    StrBuf t = {0};
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        pb_int(&t, 1, dims[i]); /* TensorProto.dims */
        n *= dims[i];
    }
    pb_int(&t, 2, ONNX_FLOAT); /* .data_type */
    pb_string(&t, 8, name);    /* .name */
    StrBuf raw = {0};
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        pb_le(&raw, u, 4);
    }
    pb_message(&t, 9, &raw); /* .raw_data, little-endian */
    pb_message(&x->inits, 5, &t);
}

static const char *init_i64(Export *x, const int64_t *v, int n) {
    const char *name = temp(x);
    StrBuf t = {0};
    pb_int(&t, 1, n);
    pb_int(&t, 2, ONNX_INT64);
    pb_string(&t, 8, name);
    StrBuf raw = {0};
    for (int i = 0; i < n; i++) pb_le(&raw, (uint64_t)v[i], 8);
    pb_message(&t, 9, &raw);
    pb_message(&x->inits, 5, &t);
    return name;
}

static const char *init_scalar(Export *x, double v) {
    const char *name = temp(x);
    float f = (float)v;
    init_f32(x, name, NULL, 0, &f);
    return name;
}

/* The checkpoint's values of weight `wname` (shape *s), or NULL after an error. */
static float *weight(Export *x, const char *wname, Shape *s) {
    const Graph *g = x->b->c.graph;
    for (int w = 0; w < g->nweight; w++) {
        if (strcmp(g->weight[w].name, wname)) continue;
        int64_t n = exec_numel(&x->b->e, g->weight[w].node, 1);
        float *v = util_calloc((size_t)n, sizeof(float));
        if (exec_read(&x->b->e, g->weight[w].node, v, sizeof(float) * (size_t)n)) {
            free(v);
            snprintf(x->err, sizeof x->err, "cannot read weight '%s' from the device", wname);
            return NULL;
        }
        *s = g->weight[w].shape;
        return v;
    }
    snprintf(x->err, sizeof x->err, "the model has no weight '%s'", wname);
    return NULL;
}

/* Weight `prefix.role` as an initializer of its own shape; its name, or NULL. */
static const char *weight_init(Export *x, const char *prefix, const char *role) {
    char name[512];
    snprintf(name, sizeof name, "%s.%s", prefix, role);
    Shape s;
    float *v = weight(x, name, &s);
    if (!v) return NULL;
    init_f32(x, name, s.dim, s.rank, v);
    free(v);
    return arena_strdup(x->b->c.arena, name);
}

/* ---- nodes ---- */

typedef struct {
    const char *name;
    int type;
    double f;
    int64_t i;
    const int64_t *ints;
    int nints;
} Attr;

/* A node op(in...) -> a value named `out` (NULL: a new name); its name.  Attributes end at one
 * with a NULL name. */
static const char *node_to(Export *x, const char *out, const char *op, const char *const *in, int nin, const Attr *attr) {
    if (!out) out = temp(x);
    StrBuf n = {0};
    for (int i = 0; i < nin; i++) pb_string(&n, 1, in[i]); /* NodeProto.input */
    pb_string(&n, 2, out);                                /* .output */
    pb_string(&n, 3, out);                                /* .name */
    pb_string(&n, 4, op);                                 /* .op_type */
    for (const Attr *a = attr; a && a->name; a++) {
        StrBuf at = {0};
        pb_string(&at, 1, a->name);
        pb_int(&at, 20, a->type); /* AttributeProto.type */
        if (a->type == ATTR_FLOAT) pb_float(&at, 2, (float)a->f);
        if (a->type == ATTR_INT) pb_int(&at, 3, a->i);
        for (int k = 0; a->type == ATTR_INTS && k < a->nints; k++) pb_int(&at, 8, a->ints[k]);
        pb_message(&n, 5, &at);
    }
    pb_message(&x->nodes, 1, &n);
    return out;
}

static const char *node(Export *x, const char *op, const char *const *in, int nin, const Attr *attr) {
    return node_to(x, NULL, op, in, nin, attr);
}

static const char *node1(Export *x, const char *op, const char *a, const Attr *attr) { return node(x, op, &a, 1, attr); }
static const char *node2(Export *x, const char *op, const char *a, const char *b) {
    const char *in[2] = {a, b};
    return node(x, op, in, 2, NULL);
}

/* x reshaped to [N, dims of s] (s per sample). */
static const char *reshape(Export *x, const char *v, Shape s) {
    int64_t d[IR_MAX_RANK + 1] = {-1};
    for (int i = 0; i < s.rank; i++) d[i + 1] = s.dim[i];
    return node2(x, "Reshape", v, init_i64(x, d, s.rank + 1));
}

/* ---- layers ---- */

static const char *value(Export *x, const SVal *v);

/* conv2d/conv1d and pooling: the input as [N, H, W, C] (H = 1 for one-dimensional layers),
 * transposed to channels first around the ONNX op, and back. */
static const char *windowed(Export *x, const SVal *v, const char *in) {
    const Shape is = v->a->shape;
    int64_t h = v->spatial == 2 ? is.dim[0] : 1, w = is.dim[v->spatial - 1], c = is.rank == v->spatial + 1 ? is.dim[v->spatial] : 1;
    Shape map = {.rank = 3, .dim = {h, w, c}};
    in = reshape(x, in, map);
    static const int64_t to_nchw[] = {0, 3, 1, 2}, to_nhwc[] = {0, 2, 3, 1};
    const char *t = node1(x, "Transpose", in, (Attr[]){{"perm", ATTR_INTS, .ints = to_nchw, .nints = 4}, {0}});
    int64_t oh = v->spatial == 2 ? v->shape.dim[0] : 1, ow = v->shape.dim[v->spatial - 1];
    int64_t span_h = v->dilation * (v->kh - 1) + 1, span_w = v->dilation * (v->kw - 1) + 1;
    int64_t tot_h = (oh - 1) * v->stride + span_h - h, tot_w = (ow - 1) * v->stride + span_w - w;
    int64_t pads[4] = {v->pad_top, v->pad_left, tot_h - v->pad_top > 0 ? tot_h - v->pad_top : 0,
                       tot_w - v->pad_left > 0 ? tot_w - v->pad_left : 0};
    int64_t kernel[2] = {v->kh, v->kw}, strides[2] = {v->stride, v->stride}, dil[2] = {v->dilation, v->dilation};
    const char *y;
    if (v->layer == L_POOL) {
        Attr a[] = {{"kernel_shape", ATTR_INTS, .ints = kernel, .nints = 2}, {"strides", ATTR_INTS, .ints = strides, .nints = 2},
                    {"pads", ATTR_INTS, .ints = pads, .nints = 4}, {0}};
        y = node1(x, v->pool == OP_MAXPOOL ? "MaxPool" : "AveragePool", t, a);
    } else {
        const char *wt = weight_init(x, v->wname, v->variational ? "weight_mu" : "weight");
        if (!wt) return NULL;
        if (v->spatial == 1) { /* [F, C, k] -> [F, C, 1, k] */
            static const int64_t axis2[] = {2};
            wt = node2(x, "Unsqueeze", wt, init_i64(x, axis2, 1));
        }
        const char *in3[3] = {t, wt, NULL};
        if (v->bias && !(in3[2] = weight_init(x, v->wname, "bias"))) return NULL;
        Attr a[] = {{"kernel_shape", ATTR_INTS, .ints = kernel, .nints = 2}, {"strides", ATTR_INTS, .ints = strides, .nints = 2},
                    {"dilations", ATTR_INTS, .ints = dil, .nints = 2}, {"pads", ATTR_INTS, .ints = pads, .nints = 4}, {0}};
        y = node(x, "Conv", in3, v->bias ? 3 : 2, a);
        x->variational |= v->variational;
    }
    y = node1(x, "Transpose", y, (Attr[]){{"perm", ATTR_INTS, .ints = to_nhwc, .nints = 4}, {0}});
    return reshape(x, y, v->shape);
}

/* A per-channel (last dimension) vector v[0..n) as an initializer broadcast by Mul or Add. */
static const char *channel_vec(Export *x, const float *v, int64_t n) {
    const char *name = temp(x);
    init_f32(x, name, &n, 1, v);
    return name;
}

/* batch_norm in evaluation, folded: x a + b, a = scale / sqrt(running_var + eps),
 * b = shift - running_mean a. */
static const char *batch_norm(Export *x, const SVal *v, const char *in) {
    const char *roles[4] = {"running_mean", "running_var", "scale", "shift"};
    float *p[4];
    Shape s;
    char name[512];
    for (int k = 0; k < 4; k++) {
        snprintf(name, sizeof name, "%s.%s", v->wname, roles[k]);
        if (!(p[k] = weight(x, name, &s))) {
            for (int j = 0; j < k; j++) free(p[j]);
            return NULL;
        }
    }
    int64_t c = s.dim[0];
    float *a = util_calloc((size_t)c, sizeof(float)), *b = util_calloc((size_t)c, sizeof(float));
    for (int64_t i = 0; i < c; i++) {
        a[i] = (float)(p[2][i] / sqrt((double)p[1][i] + v->eps));
        b[i] = (float)(p[3][i] - (double)p[0][i] * a[i]);
    }
    const char *y = node2(x, "Add", node2(x, "Mul", in, channel_vec(x, a, c)), channel_vec(x, b, c));
    for (int k = 0; k < 4; k++) free(p[k]);
    free(a);
    free(b);
    return y;
}

/* layer_norm: per sample over all its features, scale and shift per channel. */
static const char *layer_norm(Export *x, const SVal *v, const char *in) {
    int64_t axes[IR_MAX_RANK];
    for (int i = 0; i < v->shape.rank; i++) axes[i] = i + 1;
    Attr mean[] = {{"axes", ATTR_INTS, .ints = axes, .nints = v->shape.rank}, {"keepdims", ATTR_INT, .i = 1}, {0}};
    const char *c = node2(x, "Sub", in, node1(x, "ReduceMean", in, mean));
    const char *var = node1(x, "ReduceMean", node2(x, "Mul", c, c), mean);
    const char *norm = node2(x, "Div", c, node1(x, "Sqrt", node2(x, "Add", var, init_scalar(x, v->eps)), NULL));
    const char *sc = weight_init(x, v->wname, "scale"), *sh = sc ? weight_init(x, v->wname, "shift") : NULL;
    return sh ? node2(x, "Add", node2(x, "Mul", norm, sc), sh) : NULL;
}

static const char *activation(Export *x, const SVal *v, const char *in) {
    switch (v->act) {
    case OP_RELU: return node1(x, "Relu", in, NULL);
    case OP_TANH: return node1(x, "Tanh", in, NULL);
    case OP_SIGMOID: return node1(x, "Sigmoid", in, NULL);
    case OP_SOFTPLUS: return node1(x, "Softplus", in, NULL);
    case OP_ELU: return node1(x, "Elu", in, (Attr[]){{"alpha", ATTR_FLOAT, .f = v->alpha}, {0}});
    case OP_LEAKY_RELU: return node1(x, "LeakyRelu", in, (Attr[]){{"alpha", ATTR_FLOAT, .f = v->alpha}, {0}});
    case OP_GELU: { /* x (1 + erf(x / sqrt 2)) / 2: Gelu is an operator from opset 20 */
        const char *e = node1(x, "Erf", node2(x, "Div", in, init_scalar(x, sqrt(2.0))), NULL);
        return node2(x, "Mul", node2(x, "Mul", in, node2(x, "Add", e, init_scalar(x, 1))), init_scalar(x, 0.5));
    }
    case OP_COUNT: return in; /* identity */
    default: snprintf(x->err, sizeof x->err, "activation '%s' has no ONNX counterpart here", op_info[v->act].name); return NULL;
    }
}

/* A size gate's factors sigmoid(k (w b - j)), j = 0 .. width-1, from its boundary b. */
static const char *size_gate(Export *x, const SVal *v, const char *in) {
    char name[512];
    snprintf(name, sizeof name, "%s.boundary", v->wname);
    Shape s;
    float *b = weight(x, name, &s);
    if (!b) return NULL;
    int64_t n = v->a->shape.dim[v->a->shape.rank - 1];
    float *f = util_calloc((size_t)n, sizeof(float));
    for (int64_t j = 0; j < n; j++) f[j] = (float)(1 / (1 + exp(-v->slope * ((double)v->declared * b[0] - (double)j))));
    const char *y = node2(x, "Mul", in, channel_vec(x, f, n));
    free(b);
    free(f);
    return y;
}

static const char *layer(Export *x, const SVal *v) {
    const char *in = value(x, v->a);
    if (!in) return NULL;
    switch (v->layer) {
    case L_DENSE: case L_BAYES_DENSE: { /* Gemm: x W^T + b, W [units, in] as nnc keeps it */
        const char *w = weight_init(x, v->wname, v->layer == L_BAYES_DENSE ? "weight_mu" : "weight");
        const char *in3[3] = {in, w, NULL};
        if (!w || (v->bias && !(in3[2] = weight_init(x, v->wname, "bias")))) return NULL;
        x->variational |= v->layer == L_BAYES_DENSE;
        return node(x, "Gemm", in3, v->bias ? 3 : 2, (Attr[]){{"transB", ATTR_INT, .i = 1}, {0}});
    }
    case L_FLATTEN: return reshape(x, in, v->shape);
    case L_ACT: return activation(x, v, in);
    case L_PRELU: {
        const char *s = weight_init(x, v->wname, "slope");
        return s ? node2(x, "PRelu", in, s) : NULL;
    }
    case L_GATE: {
        if (v->size_gate) return size_gate(x, v, in);
        const char *g = weight_init(x, v->wname, "gate");
        return g ? node2(x, "Mul", in, g) : NULL;
    }
    case L_SHIFT: {
        const char *s = weight_init(x, v->wname, "shift");
        return s ? node2(x, "Add", in, s) : NULL;
    }
    case L_DROPOUT: return in; /* off in evaluation */
    case L_CONV: case L_POOL: return windowed(x, v, in);
    case L_BATCH_NORM: return batch_norm(x, v, in);
    case L_LAYER_NORM: return layer_norm(x, v, in);
    }
    snprintf(x->err, sizeof x->err, "layer kind %d has no ONNX counterpart here", (int)v->layer);
    return NULL;
}

static const char *scalar(Export *x, const SVal *v) { return init_scalar(x, sval_value(x->b->c.model, v, NULL, NULL)); }

static const char *value(Export *x, const SVal *v) {
    for (int i = 0; i < x->ndone; i++)
        if (x->done[i] == v) return x->name[i];
    const char *r = NULL;
    switch (v->kind) {
    case SV_INPUT: r = x->b->c.model->io[v->index].name; break;
    case SV_LAYER: r = layer(x, v); break;
    case SV_NEG: {
        const char *a = value(x, v->a);
        r = a ? node1(x, "Neg", a, NULL) : NULL;
        break;
    }
    case SV_BINARY: {
        const char *a = v->a->shape.batched ? value(x, v->a) : scalar(x, v->a);
        const char *b = v->b->shape.batched ? value(x, v->b) : scalar(x, v->b);
        static const char *const ops[] = {['+'] = "Add", ['-'] = "Sub", ['*'] = "Mul", ['/'] = "Div"};
        r = a && b ? node2(x, ops[v->op], a, b) : NULL;
        break;
    }
    case SV_FD_GRAD:
        snprintf(x->err, sizeof x->err, "%d:%d: fd_grad (input-gradients by finite differences) has no ONNX counterpart here",
                 v->loc.line, v->loc.col);
        return NULL;
    default:
        snprintf(x->err, sizeof x->err, "%d:%d: this value has no ONNX counterpart", v->loc.line, v->loc.col);
        return NULL;
    }
    if (r) {
        if (x->ndone == x->capdone) {
            x->capdone = x->capdone ? 2 * x->capdone : 64;
            x->done = util_realloc(x->done, sizeof *x->done * (size_t)x->capdone);
            x->name = util_realloc(x->name, sizeof *x->name * (size_t)x->capdone);
        }
        x->done[x->ndone] = v;
        x->name[x->ndone++] = r;
    }
    return r;
}

/* ---- the model ---- */

/* ValueInfoProto of a float tensor [N, dims of s] (N symbolic). */
static void value_info(StrBuf *graph, int field, const char *name, Shape s) {
    StrBuf shape = {0}, dim = {0};
    pb_string(&dim, 2, "N"); /* Dimension.dim_param */
    pb_message(&shape, 1, &dim);
    for (int i = 0; i < s.rank; i++) {
        pb_int(&dim, 1, s.dim[i]); /* Dimension.dim_value */
        pb_message(&shape, 1, &dim);
    }
    StrBuf tensor = {0}, type = {0}, vi = {0};
    pb_int(&tensor, 1, ONNX_FLOAT); /* TypeProto.Tensor.elem_type */
    pb_message(&tensor, 2, &shape); /* .shape */
    pb_message(&type, 1, &tensor);  /* TypeProto.tensor_type */
    pb_string(&vi, 1, name);
    pb_message(&vi, 2, &type);
    pb_message(graph, field, &vi);
}

static void meta(StrBuf *model, const char *key, const char *value) {
    StrBuf e = {0};
    pb_string(&e, 1, key);
    pb_string(&e, 2, value);
    pb_message(model, 14, &e); /* ModelProto.metadata_props */
}

/* A sampled model's weights set to their posterior mean over all draws of all chains; its
 * description for the metadata, or NULL after an error. */
static const char *posterior_mean(Built *b, const Draws *d, char *desc, size_t n) {
    const Graph *g = b->c.graph;
    for (int k = 0; k < d->npar; k++) {
        const Weight *w = &g->weight[d->weight[k]];
        if (w->mixture_part) {
            fprintf(stderr, "nnc: error: '%s' is part of a non-centred prior: the posterior mean of the weight it makes is not "
                    "the weight its parts' means make, and is not exported\n", w->name);
            return NULL;
        }
        double *sum = util_calloc((size_t)d->n[k], sizeof(double));
        for (int c = 0; c < d->nchain; c++)
            for (int64_t t = 0; t < d->kept[c]; t++)
                for (int64_t i = 0; i < d->n[k]; i++) sum[i] += d->q[c][t * d->dim + d->off[k] + i];
        float *mean = util_calloc((size_t)d->n[k], sizeof(float));
        for (int64_t i = 0; i < d->n[k]; i++) mean[i] = (float)(sum[i] / (double)d->ndraw);
        exec_write(&b->e, w->node, mean, sizeof(float) * (size_t)d->n[k]);
        free(sum);
        free(mean);
    }
    snprintf(desc, n, "the posterior mean of the weights over %lld draws of %d chain%s", (long long)d->ndraw, d->nchain,
             d->nchain == 1 ? "" : "s");
    return desc;
}

int run_export_onnx(const RunOptions *o, const char *out) {
    Checkpoint ck = {0};
    Draws draws = {0};
    char sampled[256];
    Built *b = o->draws ? run_from_draws(o, &draws) : run_from_checkpoint(o, &ck);
    if (!b) return 1;
    const char *mean = o->draws ? posterior_mean(b, &draws, sampled, sizeof sampled) : NULL;
    if (o->draws && !mean) {
        draws_free(&draws);
        run_free(b);
        return 1;
    }
    const Model *m = b->c.model;
    Export x = {.b = b};
    enum { MAX_OUT = 64 };
    const SVal *pred[MAX_OUT];
    const char *pname[MAX_OUT];
    int np = sema_predictions(m, pred, pname, MAX_OUT);
    int rc = 0;
    StrBuf graph = {0};
    for (int i = 0; i < np && rc == 0; i++) {
        const char *v = value(&x, pred[i]);
        if (!v) {
            fprintf(stderr, "nnc: error: %s: cannot export to ONNX: %s\n", o->path, x.err);
            rc = 1;
            break;
        }
        node_to(&x, pname[i], "Identity", &v, 1, NULL); /* the output under its prediction's name */
    }
    if (rc == 0 && np == 0) {
        fprintf(stderr, "nnc: error: %s: the model has no prediction (a loss comparing one with a target) to export\n", o->path);
        rc = 1;
    }
    if (rc == 0) {
        if (x.nodes.len) sb_putn(&graph, x.nodes.s, x.nodes.len); /* GraphProto.node (fields 1) */
        pb_string(&graph, 2, m->name);                            /* GraphProto.name */
        if (x.inits.len) sb_putn(&graph, x.inits.s, x.inits.len); /* GraphProto.initializer (fields 5) */
        for (int i = 0; i < m->nio; i++)    /* GraphProto.input: the inputs a prediction reads */
            if (!m->io[i].is_target)
                for (int k = 0; k < x.ndone; k++)
                    if (x.done[k]->kind == SV_INPUT && x.done[k]->index == i) {
                        value_info(&graph, 11, m->io[i].name, m->io[i].shape);
                        break;
                    }
        for (int i = 0; i < np; i++) value_info(&graph, 12, pname[i], pred[i]->shape); /* GraphProto.output */
    }
    StrBuf model = {0};
    if (rc == 0) {
        pb_int(&model, 1, IR_VERSION);
        StrBuf opset = {0};
        pb_string(&opset, 1, "");
        pb_int(&opset, 2, OPSET);
        pb_message(&model, 8, &opset);
        pb_string(&model, 2, "nnc");
        pb_string(&model, 3, NNC_VERSION);
        pb_message(&model, 7, &graph);
        meta(&model, "nnc.model", o->path);
        meta(&model, o->draws ? "nnc.draws" : "nnc.checkpoint", o->draws ? o->draws : o->checkpoint);
        meta(&model, "nnc.weights", mean ? mean : x.variational ? "the posterior mean of the variational layers' weights" : "trained");
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", out);
        FILE *f = fopen(tmp, "wb");
        if (!f || fwrite(model.s, 1, model.len, f) != model.len || fclose(f) || rename(tmp, out)) {
            fprintf(stderr, "nnc: error: cannot write %s\n", out);
            rc = 1;
        } else {
            printf("exported %s to %s: %d output%s, opset %d\n", m->name, out, np, np == 1 ? "" : "s", OPSET);
        }
    }
    sb_free(&model);
    sb_free(&graph);
    sb_free(&x.nodes);
    sb_free(&x.inits);
    free(x.done);
    free(x.name);
    if (o->draws)
        draws_free(&draws);
    else
        checkpoint_close(&ck);
    run_free(b);
    return rc;
}
