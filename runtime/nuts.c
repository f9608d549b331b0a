/* nuts.c: the no-U-turn sampler's transition (see nuts.h).
 *
 * A transition draws a momentum r ~ N(0, M), M = diag(1 / minv), and doubles a trajectory
 * forward or backward in time (a fair coin each time) until it makes a U-turn, diverges or
 * reaches max_depth.  Each new subtree is built recursively, depth by depth, from the end of
 * the trajectory it extends; within a subtree a point is drawn in proportion to exp(-H)
 * (multinomial sampling), and a finished subtree replaces the transition's draw with
 * probability min(1, w(subtree) / w(old tree)) (biased progressive sampling, which favours the
 * points further out).  The U-turn criterion is the generalised one, p#(-)' rho > 0 and
 * p#(+)' rho > 0 with p# = minv r and rho the sum of the momenta, checked on every subtree and
 * again across the two halves of each merge (the extra checks Stan added in 2.23).  A point whose
 * energy exceeds H0 by more than 1000 (or is not finite) is a divergence: its subtree is
 * discarded and the trajectory stops.  The acceptance statistic for step-size adaptation is the
 * mean of min(1, exp(H0 - H)) over the points built. */
#include "nuts.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct {
    double *q, *r, *g, u;
} State;

/* The vectors a subtree of one depth needs while its halves are built. */
typedef struct {
    State propose_final;
    double *p_sharp_init_end, *p_sharp_final_begin, *p_init_end, *p_final_begin, *rho_left, *rho_right;
} Level;

struct NutsWork {
    State fwd, bck, sample, propose;
    double *p_sharp_fwd_bck, *p_sharp_fwd_fwd, *p_sharp_bck_fwd, *p_sharp_bck_bck;
    double *p_fwd_bck, *p_fwd_fwd, *p_bck_fwd, *p_bck_bck, *rho, *rho_fwd, *rho_bck, *tmp;
    Level *level; /* [max_depth + 1] */
    double h0, lsw_build, sum_metro;
    int64_t leapfrogs;
    bool divergent;
    double energy_error;
};

static double *vec(const Nuts *n) { return util_calloc((size_t)n->dim + 1, sizeof(double)); }
static State state(const Nuts *n) { return (State){vec(n), vec(n), vec(n), 0}; }
static void state_free(State *s) {
    free(s->q);
    free(s->r);
    free(s->g);
}
static void copy(const Nuts *n, double *dst, const double *src) { memcpy(dst, src, sizeof(double) * (size_t)n->dim); }
/* A draw is its position, gradient and potential: its momentum is never used again. */
static void draw_copy(const Nuts *n, State *dst, const State *src) {
    copy(n, dst->q, src->q);
    copy(n, dst->g, src->g);
    dst->u = src->u;
}
static void state_copy(const Nuts *n, State *dst, const State *src) {
    draw_copy(n, dst, src);
    copy(n, dst->r, src->r);
}

void nuts_init(Nuts *n) {
    NutsWork *w = util_calloc(1, sizeof *w);
    w->fwd = state(n), w->bck = state(n), w->sample = state(n), w->propose = state(n);
    double **v[] = {&w->p_sharp_fwd_bck, &w->p_sharp_fwd_fwd, &w->p_sharp_bck_fwd, &w->p_sharp_bck_bck, &w->p_fwd_bck, &w->p_fwd_fwd,
                    &w->p_bck_fwd, &w->p_bck_bck, &w->rho, &w->rho_fwd, &w->rho_bck, &w->tmp};
    for (size_t k = 0; k < sizeof v / sizeof *v; k++) *v[k] = vec(n);
    w->level = util_calloc((size_t)n->max_depth + 1, sizeof(Level));
    for (int d = 0; d <= n->max_depth; d++) {
        Level *l = &w->level[d];
        l->propose_final = state(n);
        double **lv[] = {&l->p_sharp_init_end, &l->p_sharp_final_begin, &l->p_init_end, &l->p_final_begin, &l->rho_left, &l->rho_right};
        for (size_t k = 0; k < sizeof lv / sizeof *lv; k++) *lv[k] = vec(n);
    }
    n->w = w;
}

void nuts_free(Nuts *n) {
    NutsWork *w = n->w;
    if (!w) return;
    state_free(&w->fwd), state_free(&w->bck), state_free(&w->sample), state_free(&w->propose);
    double *v[] = {w->p_sharp_fwd_bck, w->p_sharp_fwd_fwd, w->p_sharp_bck_fwd, w->p_sharp_bck_bck, w->p_fwd_bck, w->p_fwd_fwd,
                   w->p_bck_fwd, w->p_bck_bck, w->rho, w->rho_fwd, w->rho_bck, w->tmp};
    for (size_t k = 0; k < sizeof v / sizeof *v; k++) free(v[k]);
    for (int d = 0; d <= n->max_depth; d++) {
        Level *l = &w->level[d];
        state_free(&l->propose_final);
        double *lv[] = {l->p_sharp_init_end, l->p_sharp_final_begin, l->p_init_end, l->p_final_begin, l->rho_left, l->rho_right};
        for (size_t k = 0; k < sizeof lv / sizeof *lv; k++) free(lv[k]);
    }
    free(w->level);
    free(w);
    n->w = NULL;
}

static double kinetic(const Nuts *n, const double *r) {
    double k = 0;
    for (int64_t i = 0; i < n->dim; i++) k += 0.5 * (double)n->minv[i] * r[i] * r[i];
    return k;
}

static double log_sum_exp(double a, double b) {
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    return a > b ? a + log1p(exp(b - a)) : b + log1p(exp(a - b));
}

/* p# = minv r */
static void sharp(const Nuts *n, double *dst, const double *r) {
    for (int64_t i = 0; i < n->dim; i++) dst[i] = (double)n->minv[i] * r[i];
}

/* Two doubles, the SSE2 every x86-64 has (a GCC vector: plain code elsewhere). */
typedef double V2 __attribute__((vector_size(16)));
static V2 load2(const double *p) {
    V2 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* No U-turn between the ends with sharp momenta a and b over the momentum sum rho = x + y (y
 * NULL: x): a' rho > 0 and b' rho > 0.  Each dot product in four interleaved partial sums (two
 * vectors of two), added in a fixed order: one chain of dim additions was most of a tree's
 * bookkeeping. */
static bool no_u_turn(const Nuts *n, const double *a, const double *b, const double *x, const double *y) {
    V2 a01 = {0, 0}, a23 = {0, 0}, b01 = {0, 0}, b23 = {0, 0};
    int64_t i = 0;
    for (; i + 4 <= n->dim; i += 4) {
        V2 r01 = load2(x + i), r23 = load2(x + i + 2);
        if (y) r01 += load2(y + i), r23 += load2(y + i + 2);
        a01 += load2(a + i) * r01, a23 += load2(a + i + 2) * r23;
        b01 += load2(b + i) * r01, b23 += load2(b + i + 2) * r23;
    }
    double da[4] = {a01[0], a01[1], a23[0], a23[1]}, db[4] = {b01[0], b01[1], b23[0], b23[1]};
    for (int l = 0; i < n->dim; i++, l++) {
        double r = y ? x[i] + y[i] : x[i];
        da[l] += a[i] * r;
        db[l] += b[i] * r;
    }
    return (da[0] + da[1]) + (da[2] + da[3]) > 0 && (db[0] + db[1]) + (db[2] + db[3]) > 0;
}

/* dst = x + y */
static void sum(const Nuts *n, double *dst, const double *x, const double *y) {
    for (int64_t i = 0; i < n->dim; i++) dst[i] = x[i] + y[i];
}

/* z moves one leapfrog step of size eps (negative: backward in time); *h: its energy, the
 * kinetic part summed as kinetic() does, in the loop of the last half step. */
static int leapfrog(Nuts *n, State *z, double eps, double *h) {
    for (int64_t i = 0; i < n->dim; i++) {
        z->r[i] -= 0.5 * eps * z->g[i];
        z->q[i] = (float)(z->q[i] + eps * (double)n->minv[i] * z->r[i]);
    }
    if (n->grad(n->ctx, z->q, z->g, &z->u)) return -1;
    if (!isfinite(z->u)) { /* a divergence: the momentum no longer matters */
        *h = z->u + kinetic(n, z->r);
        return 0;
    }
    double k = 0;
    for (int64_t i = 0; i < n->dim; i++) {
        z->r[i] -= 0.5 * eps * z->g[i];
        k += 0.5 * (double)n->minv[i] * z->r[i] * z->r[i];
    }
    *h = z->u + k;
    return 0;
}

/* A subtree of 2^depth points from the end z (which it moves to the subtree's far end).
 * *propose: its draw; *lsw: its log weight added; rho: its momenta added; the first and last
 * points' momenta (and sharp momenta) into p_begin, p_end.  1: no U-turn and no divergence;
 * 0: stop; -1: an error. */
static int build(Nuts *n, int depth, State *z, State *propose, double *p_sharp_begin, double *p_sharp_end, double *rho, double *p_begin,
                 double *p_end, double eps, double *lsw) {
    NutsWork *w = n->w;
    if (depth == 0) {
        double h;
        if (leapfrog(n, z, eps, &h)) return -1;
        w->leapfrogs++;
        if (isnan(h)) h = INFINITY;
        w->energy_error = h - w->h0;
        if (!(h - w->h0 <= 1000)) { /* (NaN too) */
            w->divergent = true;
            return 0;
        }
        *lsw = log_sum_exp(*lsw, w->h0 - h);
        w->sum_metro += w->h0 - h > 0 ? 1 : exp(w->h0 - h);
        draw_copy(n, propose, z);
        for (int64_t i = 0; i < n->dim; i++) { /* a one-point subtree: both ends are z */
            double r = z->r[i], s = (double)n->minv[i] * r;
            rho[i] += r;
            p_sharp_begin[i] = p_sharp_end[i] = s;
            p_begin[i] = p_end[i] = r;
        }
        return 1;
    }
    Level *l = &n->w->level[depth];
    memset(l->rho_left, 0, sizeof(double) * (size_t)n->dim);
    double lsw_left = -INFINITY, lsw_right = -INFINITY;
    int rc = build(n, depth - 1, z, propose, p_sharp_begin, l->p_sharp_init_end, l->rho_left, p_begin, l->p_init_end, eps, &lsw_left);
    if (rc != 1) return rc;
    memset(l->rho_right, 0, sizeof(double) * (size_t)n->dim);
    rc = build(n, depth - 1, z, &l->propose_final, l->p_sharp_final_begin, p_sharp_end, l->rho_right, l->p_final_begin, p_end, eps,
               &lsw_right);
    if (rc != 1) return rc;
    double lsw_subtree = log_sum_exp(lsw_left, lsw_right);
    *lsw = log_sum_exp(*lsw, lsw_subtree);
    if (rng_uniform(n->rng) < exp(lsw_right - lsw_subtree)) draw_copy(n, propose, &l->propose_final); /* within: uniform in weight */
    /* a U-turn across the halves stops the trajectory, and nothing else of this subtree is used */
    if (!no_u_turn(n, p_sharp_begin, l->p_sharp_final_begin, l->rho_left, l->p_final_begin) ||
        !no_u_turn(n, l->p_sharp_init_end, p_sharp_end, l->rho_right, l->p_init_end))
        return 0;
    double *rho_subtree = l->rho_left; /* (the left half's sum is not needed apart any more) */
    for (int64_t i = 0; i < n->dim; i++) {
        rho_subtree[i] += l->rho_right[i];
        rho[i] += rho_subtree[i];
    }
    return no_u_turn(n, p_sharp_begin, p_sharp_end, rho_subtree, NULL);
}

int nuts_transition(Nuts *n, double eps, double *q, double *g, double *u, NutsInfo *info) {
    NutsWork *w = n->w;
    State z0 = {q, w->tmp, g, *u};
    for (int64_t i = 0; i < n->dim; i++) w->tmp[i] = rng_normal(n->rng) / sqrt((double)n->minv[i]);
    state_copy(n, &w->fwd, &z0);
    state_copy(n, &w->bck, &z0);
    state_copy(n, &w->sample, &z0);
    w->h0 = *u + kinetic(n, w->fwd.r);
    if (!isfinite(w->h0)) { /* the potential is not finite where the chain stands: no trajectory can start */
        *info = (NutsInfo){.accept_stat = 0, .energy_error = INFINITY, .divergent = true};
        return 0;
    }
    sharp(n, w->p_sharp_fwd_bck, w->fwd.r);
    double *ps[] = {w->p_sharp_fwd_fwd, w->p_sharp_bck_fwd, w->p_sharp_bck_bck};
    for (int k = 0; k < 3; k++) copy(n, ps[k], w->p_sharp_fwd_bck);
    double *pp[] = {w->p_fwd_bck, w->p_fwd_fwd, w->p_bck_fwd, w->p_bck_bck, w->rho};
    for (int k = 0; k < 5; k++) copy(n, pp[k], w->fwd.r);
    double lsw = 0; /* log exp(H0 - H0) */
    w->leapfrogs = 0;
    w->sum_metro = 0;
    w->divergent = false;
    w->energy_error = 0;
    int depth = 0;
    while (depth < n->max_depth) {
        double lsw_subtree = -INFINITY;
        int rc;
        memset(w->rho_fwd, 0, sizeof(double) * (size_t)n->dim);
        memset(w->rho_bck, 0, sizeof(double) * (size_t)n->dim);
        if (rng_uniform(n->rng) > 0.5) { /* forward from the front end */
            copy(n, w->rho_bck, w->rho);
            copy(n, w->p_bck_fwd, w->p_fwd_fwd); /* the old trajectory is the backward half now */
            copy(n, w->p_sharp_bck_fwd, w->p_sharp_fwd_fwd);
            rc = build(n, depth, &w->fwd, &w->propose, w->p_sharp_fwd_bck, w->p_sharp_fwd_fwd, w->rho_fwd, w->p_fwd_bck, w->p_fwd_fwd, eps,
                       &lsw_subtree);
        } else { /* backward from the back end */
            copy(n, w->rho_fwd, w->rho);
            copy(n, w->p_fwd_bck, w->p_bck_bck); /* the old trajectory is the forward half now */
            copy(n, w->p_sharp_fwd_bck, w->p_sharp_bck_bck);
            rc = build(n, depth, &w->bck, &w->propose, w->p_sharp_bck_fwd, w->p_sharp_bck_bck, w->rho_bck, w->p_bck_fwd, w->p_bck_bck, -eps,
                       &lsw_subtree);
        }
        if (rc < 0) return -1;
        if (rc == 0) break;
        depth++;
        if (lsw_subtree > lsw || rng_uniform(n->rng) < exp(lsw_subtree - lsw)) draw_copy(n, &w->sample, &w->propose);
        lsw = log_sum_exp(lsw, lsw_subtree);
        sum(n, w->rho, w->rho_bck, w->rho_fwd);
        if (!no_u_turn(n, w->p_sharp_bck_bck, w->p_sharp_fwd_fwd, w->rho, NULL) ||
            !no_u_turn(n, w->p_sharp_bck_bck, w->p_sharp_fwd_bck, w->rho_bck, w->p_fwd_bck) ||
            !no_u_turn(n, w->p_sharp_bck_fwd, w->p_sharp_fwd_fwd, w->rho_fwd, w->p_bck_fwd))
            break;
    }
    copy(n, q, w->sample.q);
    copy(n, g, w->sample.g);
    *u = w->sample.u;
    *info = (NutsInfo){.accept_stat = w->leapfrogs ? w->sum_metro / (double)w->leapfrogs : 0, .energy_error = w->energy_error,
                       .depth = depth, .leapfrogs = w->leapfrogs, .divergent = w->divergent};
    return 0;
}

int nuts_probe(Nuts *n, double eps, const double *q, const double *g, double u, double *dh) {
    NutsWork *w = n->w;
    State z = w->fwd;
    copy(n, z.q, q);
    copy(n, z.g, g);
    z.u = u;
    for (int64_t i = 0; i < n->dim; i++) z.r[i] = rng_normal(n->rng) / sqrt((double)n->minv[i]);
    double h0 = u + kinetic(n, z.r), h1;
    if (leapfrog(n, &z, eps, &h1)) return -1;
    *dh = isfinite(h1) ? h0 - h1 : -INFINITY;
    return 0;
}
