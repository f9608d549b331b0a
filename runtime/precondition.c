/* precondition.c: see precondition.h.  Written from the algorithm as de Roos and Hennig (2019)
 * state it (docs/optimizers.md), with every covariance a scalar times the identity, which is
 * what they use for deep networks, so that each matrix the inference needs is small (i x i for
 * i observations).  Vectors are flat over the trained weights, double on the host; products
 * and gradients come from the generated kernels (hessian.c). */
#include "precondition.h"

#include <cblas.h>

#include "npy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK (OpenBLAS) */
extern void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w, double *work,
                   const int *lwork, int *info, size_t jobz_len, size_t uplo_len);
extern void dgesv_(const int *n, const int *nrhs, double *a, const int *lda, int *ipiv, double *b, const int *ldb, int *info);

static double dot(const double *a, const double *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Eigen-decomposition of the symmetric k x k matrix a (row-major, overwritten by the vectors as
 * columns of a column-major matrix: vector j is a[j*k .. j*k+k)); eigenvalues ascending. */
static int sym_eig(double *a, int k, double *w) {
    int info = 0, lwork = 8 * k + 16;
    double *work = util_calloc((size_t)lwork, sizeof(double));
    dsyev_("V", "U", &k, a, &k, w, work, &lwork, &info, 1, 1);
    free(work);
    return info;
}

int precond_open(Precond *p, Exec *e, const OptSpec *o, int64_t rows, char *err, size_t nerr) {
    memset(p, 0, sizeof *p);
    p->o = o;
    p->e = e;
    if (hessian_open(&p->h, e, HVP_EXACT, NULL, 1, rows, err, nerr)) return -1;
    p->q = util_calloc((size_t)(o->rank > 0 ? o->rank : 1) * (size_t)p->h.n, sizeof(float));
    return 0;
}

void precond_close(Precond *p) {
    hessian_close(&p->h);
    free(p->q);
    memset(p, 0, sizeof *p);
}

/* The gradient (negated: the descent direction, as the algorithm writes it) on batch j. */
static int descent(Precond *p, PrecondFeed feed, void *ctx, int j, double *g, char *err, size_t nerr) {
    if (feed(ctx, j) < 0) return util_fail(err, nerr, "%s: %s", p->e->dev->name, p->e->dev->err);
    p->h.current = false;
    if (hessian_gradient(&p->h, g, err, nerr)) return -1;
    for (int64_t i = 0; i < p->h.n; i++) g[i] = -g[i];
    return 0;
}

/* Test only: NNC_TEST_PRE_DUMP=DIR writes each estimate's observations, DIR/NAME.npy, for
 * tests/train/pre_sgd_np.py to redo the inference with full matrices. */
static void dump(const char *name, const double *rows, int nrows, int64_t n) {
    const char *dir = getenv("NNC_TEST_PRE_DUMP");
    if (!dir || !*dir || nrows == 0) return;
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    float *f = util_calloc((size_t)nrows * (size_t)n, sizeof(float));
    for (int64_t i = 0; i < (int64_t)nrows * n; i++) f[i] = (float)rows[i];
    int64_t shape[2] = {nrows, n};
    if (npy_write_f32(path, f, 2, shape, err, sizeof err)) fprintf(stderr, "NNC_TEST_PRE_DUMP: %s\n", err);
    free(f);
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Step 1: the prior's scalars from `estimate` pairs (g_j, H_j g_j), each on a batch of its own:
 * alpha = sqrt(sum |H g|^2 / sum g'H g), the curvature that a step along a gradient meets
 * (Rayleigh-like, weighted to the large eigenvalues); the prior's width |sum g'H g / sum g'g|;
 * the noise, the median over elements of the gradients' variance, over their RMS norm. */
static int prior_scalars(Precond *p, PrecondFeed feed, void *ctx, double *g, char *err, size_t nerr) {
    int64_t n = p->h.n;
    int E = p->o->estimate;
    double *hv = util_calloc((size_t)n, sizeof(double)), *sum = util_calloc((size_t)n, sizeof(double));
    double *sq = util_calloc((size_t)n, sizeof(double));
    double sHs = 0, sHHs = 0, sTs = 0;
    bool dumping = getenv("NNC_TEST_PRE_DUMP") != NULL;
    double *gs = dumping ? util_calloc((size_t)E * (size_t)n, sizeof(double)) : NULL;
    double *hs = dumping ? util_calloc((size_t)E * (size_t)n, sizeof(double)) : NULL;
    int rc = 0;
    for (int j = 0; j < E && !rc; j++) {
        rc = descent(p, feed, ctx, j, g, err, nerr);
        if (!rc) rc = hessian_apply(&p->h, g, hv, err, nerr);
        if (rc) break;
        if (dumping) {
            memcpy(gs + (size_t)j * (size_t)n, g, sizeof(double) * (size_t)n);
            memcpy(hs + (size_t)j * (size_t)n, hv, sizeof(double) * (size_t)n);
        }
        sHs += dot(g, hv, n);
        sHHs += dot(hv, hv, n);
        sTs += dot(g, g, n);
        for (int64_t i = 0; i < n; i++) {
            sum[i] += g[i];
            sq[i] += g[i] * g[i];
        }
    }
    if (!rc) {
        for (int64_t i = 0; i < n; i++) sq[i] = fabs((sum[i] / E) * (sum[i] / E) - sq[i] / E);
        qsort(sq, (size_t)n, sizeof(double), by_value);
        int64_t mid = n / 2;
        double rms = sqrt(sTs) / E;
        p->noise = rms > 0 ? sq[mid] / rms : 0;
        p->prior_w = sTs > 0 ? fabs(sHs / sTs) : 0;
        /* with negative curvature along the gradients the ratio is meaningless: the RMS scale */
        p->alpha = sHs > 0 ? sqrt(sHHs / sHs) : sTs > 0 ? sqrt(sHHs / sTs) : 0;
        if (!(p->alpha > 0) || !isfinite(p->alpha))
            rc = util_fail(err, nerr, "pre_sgd: the Hessian-vector products along the gradients are 0 or not finite (alpha %g)",
                           p->alpha);
    }
    if (dumping && !rc) {
        dump("prior_g", gs, E, n);
        dump("prior_hg", hs, E, n);
    }
    free(gs);
    free(hs);
    free(hv);
    free(sum);
    free(sq);
    return rc;
}

/* Step 2: `hvps` observations y_i = H s_i along actively chosen directions, each on a batch of
 * its own; the posterior mean B = alpha I + w Delta C S' (Delta = Y - alpha S) and, from its
 * symmetric part, the top eigenpairs above alpha. */
static int infer(Precond *p, PrecondFeed feed, void *ctx, double *g, char *err, size_t nerr) {
    int64_t n = p->h.n;
    int M = p->o->hvps, E = p->o->estimate;
    double a = p->alpha, w = p->prior_w, lam = p->noise > 0 ? p->noise : 1e-12 * (w > 0 ? w : 1);
    double *S = util_calloc((size_t)M * (size_t)n, sizeof(double)), *D = util_calloc((size_t)M * (size_t)n, sizeof(double));
    double C[PRE_MAX_HVPS * PRE_MAX_HVPS];
    double *s = util_calloc((size_t)n, sizeof(double)), *y = util_calloc((size_t)n, sizeof(double));
    int rc = 0, m = 0;
    double *gi = getenv("NNC_TEST_PRE_DUMP") ? util_calloc((size_t)(M + 1) * (size_t)n, sizeof(double)) : NULL;
    if (gi) memcpy(gi, g, sizeof(double) * (size_t)n); /* the gradient the first direction follows */
    for (int64_t k = 0; k < n; k++) s[k] = g[k] / a; /* the first direction: the gradient step of rate 1/alpha */
    for (int i = 0; i < M && !rc; i++) {
        rc = descent(p, feed, ctx, E + i, g, err, nerr);
        if (!rc) rc = hessian_apply(&p->h, s, y, err, nerr);
        if (rc) break;
        if (gi) memcpy(gi + (size_t)(i + 1) * (size_t)n, g, sizeof(double) * (size_t)n);
        double *Si = S + (size_t)i * (size_t)n, *Di = D + (size_t)i * (size_t)n;
        for (int64_t k = 0; k < n; k++) {
            Si[k] = s[k];
            Di[k] = y[k] - a * s[k];
        }
        m = i + 1;
        /* the generalised eigenproblem w G v = mu lambda diag(G) v, G = S'S, by symmetric scaling */
        double G[PRE_MAX_HVPS * PRE_MAX_HVPS], nu[PRE_MAX_HVPS], dg[PRE_MAX_HVPS];
        for (int r = 0; r < m; r++)
            for (int c = 0; c < m; c++) G[r * m + c] = dot(S + (size_t)r * (size_t)n, S + (size_t)c * (size_t)n, n);
        for (int r = 0; r < m; r++) dg[r] = G[r * m + r] > 0 ? G[r * m + r] : 1;
        for (int r = 0; r < m; r++)
            for (int c = 0; c < m; c++) G[r * m + c] /= sqrt(dg[r] * dg[c]);
        if (sym_eig(G, m, nu)) {
            rc = util_fail(err, nerr, "pre_sgd: LAPACK dsyev failed on the observations' Gram matrix");
            break;
        }
        /* C = (w / lam^2) Vr diag(h) Vr' with Vr = diag(G)^-1/2 P (so that Vr' lam diag(G) Vr = lam I),
         * h_k = 1 / ((w / lam) mu_k + 1), mu_k = (w / lam) nu_k; without noise B S = Y exactly */
        for (int r = 0; r < m; r++)
            for (int c = 0; c < m; c++) {
                double sum = 0;
                for (int k = 0; k < m; k++) {
                    double mu = (w / lam) * nu[k], hk = 1 / ((w / lam) * mu + 1);
                    sum += G[k * m + r] * hk * G[k * m + c];
                }
                C[r * m + c] = (w / (lam * lam)) * sum / sqrt(dg[r] * dg[c]);
            }
        if (i + 1 == M) break;
        /* the next direction: B^-1 g by Woodbury, B = a I + U V, U = D C, V = w S' */
        double Vg[PRE_MAX_HVPS], Mx[PRE_MAX_HVPS * PRE_MAX_HVPS], SD[PRE_MAX_HVPS * PRE_MAX_HVPS];
        int ipiv[PRE_MAX_HVPS], one = 1, info = 0;
        for (int r = 0; r < m; r++) Vg[r] = w * dot(S + (size_t)r * (size_t)n, g, n) / a;
        for (int r = 0; r < m; r++)
            for (int c = 0; c < m; c++) SD[r * m + c] = dot(S + (size_t)r * (size_t)n, D + (size_t)c * (size_t)n, n);
        for (int r = 0; r < m; r++) /* column-major for LAPACK: Mx[c*m + r] = (I + (w/a) S'D C)[r][c] */
            for (int c = 0; c < m; c++) {
                double sum = 0;
                for (int k = 0; k < m; k++) sum += SD[r * m + k] * C[k * m + c];
                Mx[c * m + r] = (r == c) + (w / a) * sum;
            }
        dgesv_(&m, &one, Mx, &m, ipiv, Vg, &m, &info);
        if (info) {
            rc = util_fail(err, nerr, "pre_sgd: the Woodbury system is singular (LAPACK dgesv info %d)", info);
            break;
        }
        double Cz[PRE_MAX_HVPS];
        for (int r = 0; r < m; r++) {
            Cz[r] = 0;
            for (int c = 0; c < m; c++) Cz[r] += C[r * m + c] * Vg[c];
        }
        for (int64_t k = 0; k < n; k++) {
            double u = 0;
            for (int r = 0; r < m; r++) u += D[(size_t)r * (size_t)n + (size_t)k] * Cz[r];
            s[k] = (g[k] - u) / a;
        }
    }
    if (!rc) { /* the symmetric part of w D C S' in an orthonormal basis Z of [D S] */
        int k2 = 2 * m, nz = 0;
        double *Z = util_calloc((size_t)k2 * (size_t)n, sizeof(double));
        for (int c = 0; c < k2; c++) {
            double *z = Z + (size_t)nz * (size_t)n;
            memcpy(z, c < m ? D + (size_t)c * (size_t)n : S + (size_t)(c - m) * (size_t)n, sizeof(double) * (size_t)n);
            double before = sqrt(dot(z, z, n));
            for (int pass = 0; pass < 2; pass++)
                for (int j = 0; j < nz; j++) {
                    double cj = dot(z, Z + (size_t)j * (size_t)n, n);
                    for (int64_t k = 0; k < n; k++) z[k] -= cj * Z[(size_t)j * (size_t)n + (size_t)k];
                }
            double len = sqrt(dot(z, z, n));
            if (len <= 1e-10 * before || len == 0) continue;
            for (int64_t k = 0; k < n; k++) z[k] /= len;
            nz++;
        }
        double P1[2 * PRE_MAX_HVPS * PRE_MAX_HVPS], P2[2 * PRE_MAX_HVPS * PRE_MAX_HVPS];
        double K[4 * PRE_MAX_HVPS * PRE_MAX_HVPS], kap[2 * PRE_MAX_HVPS];
        for (int r = 0; r < nz; r++)
            for (int c = 0; c < m; c++) {
                P1[r * m + c] = dot(Z + (size_t)r * (size_t)n, D + (size_t)c * (size_t)n, n);
                P2[r * m + c] = dot(Z + (size_t)r * (size_t)n, S + (size_t)c * (size_t)n, n);
            }
        for (int r = 0; r < nz; r++)
            for (int c = 0; c < nz; c++) { /* K = w/2 (P1 C P2' + P2 C' P1') */
                double sum = 0;
                for (int x = 0; x < m; x++)
                    for (int y2 = 0; y2 < m; y2++)
                        sum += P1[r * m + x] * C[x * m + y2] * P2[c * m + y2] + P2[r * m + x] * C[y2 * m + x] * P1[c * m + y2];
                K[r * nz + c] = 0.5 * w * sum;
            }
        if (nz > 0 && sym_eig(K, nz, kap)) rc = util_fail(err, nerr, "pre_sgd: LAPACK dsyev failed on the estimate");
        p->rank = 0;
        for (int j = nz - 1; j >= 0 && !rc && p->rank < p->o->rank; j--) {
            if (!(kap[j] > 0)) break; /* only curvature above the bulk's is damped */
            float *q = p->q + (size_t)p->rank * (size_t)n;
            for (int64_t k = 0; k < n; k++) {
                double v = 0;
                for (int r = 0; r < nz; r++) v += Z[(size_t)r * (size_t)n + (size_t)k] * K[j * nz + r];
                q[k] = (float)v;
            }
            p->lambda[p->rank++] = a + kap[j];
        }
        free(Z);
    }
    if (gi && !rc) {
        dump("infer_g", gi, m + 1, n);
        dump("infer_s", S, m, n);
        for (int i = 0; i < m; i++) /* y = D + alpha S */
            for (int64_t k = 0; k < n; k++) D[(size_t)i * (size_t)n + (size_t)k] += a * S[(size_t)i * (size_t)n + (size_t)k];
        dump("infer_y", D, m, n);
    }
    free(gi);
    free(S);
    free(D);
    free(s);
    free(y);
    return rc;
}

/* The eigenvectors into (which 0) or out of (1) the <w>.pre_qK state weights; absent ones are 0. */
static int move_q(Precond *p, int which) {
    const Graph *g = p->e->g;
    for (int k = 0; k < p->o->rank; k++)
        for (int i = 0; i < p->h.nw; i++) {
            const Weight *w = &g->weight[p->h.weight[i]];
            char name[512];
            snprintf(name, sizeof name, "%s.pre_q%d", w->name, k + 1);
            int node = -1;
            for (int j = 0; j < g->nweight && node < 0; j++)
                if (g->weight[j].kind == W_STATE && g->weight[j].of == p->h.weight[i] && !strcmp(g->weight[j].name, name))
                    node = g->weight[j].node;
            if (node < 0) return -1;
            float *seg = p->q + (size_t)k * (size_t)p->h.n + (size_t)p->h.off[i];
            size_t bytes = sizeof(float) * (size_t)exec_numel(p->e, w->node, 1);
            if (k >= p->rank && which == 0) memset(seg, 0, bytes);
            if (which == 0 ? exec_write(p->e, node, seg, bytes) : exec_read(p->e, node, seg, bytes)) return -1;
        }
    return 0;
}

int precond_estimate(Precond *p, PrecondFeed feed, void *ctx, char *err, size_t nerr) {
    double t0 = util_now();
    double *g = util_calloc((size_t)p->h.n, sizeof(double));
    int rc = prior_scalars(p, feed, ctx, g, err, nerr);
    if (!rc && p->o->pre == PRE_FULL) rc = infer(p, feed, ctx, g, err, nerr);
    if (!rc && p->o->pre == PRE_FULL && move_q(p, 0))
        rc = util_fail(err, nerr, "pre_sgd: cannot store the eigenvectors: %s", p->e->dev->err);
    free(g);
    p->estimates++;
    p->seconds += util_now() - t0;
    return rc;
}

/* Trained weight i's gradient as float32 on the host: the arena's own memory on a host-memory
 * device, else its segment of the staging vector (precond_apply moves it there and back). */
static float *grad_seg(Precond *p, int i) {
    const Weight *w = &p->e->g->weight[p->h.weight[i]];
    return p->e->dev->host_memory ? exec_buf(p->e, w->grad) : p->h.tmp + p->h.off[i];
}

int precond_apply(Precond *p, char *err, size_t nerr) {
    if (p->rank == 0) return 0;
    const Graph *g = p->e->g;
    bool staged = !p->e->dev->host_memory;
    for (int i = 0; i < p->h.nw && staged; i++) {
        const Weight *w = &g->weight[p->h.weight[i]];
        if (exec_read(p->e, w->grad, grad_seg(p, i), sizeof(float) * (size_t)exec_numel(p->e, w->node, 1)))
            return util_fail(err, nerr, "%s: %s", p->e->dev->name, p->e->dev->err);
    }
    for (int k = 0; k < p->rank; k++) { /* two passes of BLAS per eigenvector: q'g, then g += c q */
        const float *q = p->q + (size_t)k * (size_t)p->h.n;
        double c = 0;
        for (int i = 0; i < p->h.nw; i++)
            c += cblas_dsdot((int)exec_numel(p->e, g->weight[p->h.weight[i]].node, 1), q + p->h.off[i], 1, grad_seg(p, i), 1);
        c *= p->alpha / p->lambda[k] - 1;
        for (int i = 0; i < p->h.nw; i++)
            cblas_saxpy((int)exec_numel(p->e, g->weight[p->h.weight[i]].node, 1), (float)c, q + p->h.off[i], 1, grad_seg(p, i), 1);
    }
    for (int i = 0; i < p->h.nw && staged; i++) {
        const Weight *w = &g->weight[p->h.weight[i]];
        if (exec_write(p->e, w->grad, grad_seg(p, i), sizeof(float) * (size_t)exec_numel(p->e, w->node, 1)))
            return util_fail(err, nerr, "%s: %s", p->e->dev->name, p->e->dev->err);
    }
    return 0;
}

void precond_format(const Precond *p, char *buf, size_t n) {
    int at = snprintf(buf, n, "%a %a %a %lld", p->alpha, p->prior_w, p->noise, (long long)p->estimates);
    for (int k = 0; k < p->rank && at > 0 && (size_t)at < n; k++) at += snprintf(buf + at, n - (size_t)at, " %a", p->lambda[k]);
}

int precond_restore(Precond *p, const char *text, char *err, size_t nerr) {
    char *end;
    double v[3 + PRE_MAX_RANK + 1];
    int nv = 0;
    for (const char *c = text; nv < 3 + PRE_MAX_RANK + 1; c = end) {
        v[nv] = strtod(c, &end);
        if (end == c) break;
        nv++;
    }
    if (nv < 4 || nv - 4 > p->o->rank) return util_fail(err, nerr, "the checkpoint's pre_sgd estimate '%s' is malformed", text);
    p->alpha = v[0];
    p->prior_w = v[1];
    p->noise = v[2];
    p->estimates = (int64_t)v[3];
    p->rank = nv - 4;
    for (int k = 0; k < p->rank; k++) p->lambda[k] = v[4 + k];
    if (p->o->pre == PRE_FULL && move_q(p, 1)) return util_fail(err, nerr, "pre_sgd: cannot read the eigenvectors back");
    return 0;
}
