/* math_test.c: the LLVM backend's inline math (exp, log, log1p, tanh, erf, used by the
 * activations, log densities and their gradients) over its whole range, against ref.c in double: a sweep
 * from -90 to 90 plus zeros, tiny and huge values, infinities and NaN.  The op test only
 * draws values near 1; this is where range reduction and special cases are checked.
 * The same kernels on the emulated CUDA device must give the CPU's results bit for bit: the
 * CUDA backend renders the same float operations (render_cuda.c), and this keeps them so.
 * Also the random generator's reference (runtime/philox.h) against the published
 * known-answer vectors of Philox-4x32-10, and its uniform values' moments; the backends'
 * dropout masks are compared with it by tests/ops.  And the kernels' normal numbers (sgld's
 * noise: Giles's single-precision erfinv of a Philox uniform, compiler/elementwise.c) against
 * the exact inverse of the normal distribution function, and their moments. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elementwise.h"
#include "exec.h"
#include "philox.h"
#include "lower.h"
#include "ref.h"

static const SrcLoc NOLOC = {0};

static int64_t make_values(float *v, int64_t cap) {
    int64_t n = 0;
    for (double x = -90; x <= 90 && n < cap; x += 0.0137) v[n++] = (float)x;
    const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-8f, -1e-8f, 1e-4f, -1e-4f, 0.2499f, 0.2501f,
                             0.4999f, 0.5001f, 88.5f, 88.8f, 100.0f, -100.0f, -104.5f, 1e30f, -1e30f,
                             INFINITY, -INFINITY, NAN, 1.17e-38f, -1.17e-38f};
    for (size_t i = 0; i < sizeof special / sizeof *special && n < cap; i++) v[n++] = special[i];
    return n;
}

/* Relative accuracy of a few float ulps everywhere, tails included.  For gelu, rounding
 * x / sqrt 2 to float alone moves the exponent -x^2/2 (about 72 at x = -12) by up to 1e-5,
 * so its tail gets 2e-5; its gradient crosses zero near x = -0.752, where the rounding of its
 * two terms (about 1e-8) is the floor. */
static bool close_enough(Op op, float got, double want) {
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == (float)want;
    double err = fabs((double)got - want);
    bool gelu = op == OP_GELU || op == OP_GELU_GRAD;
    /* subnormals are flushed to zero (util_flush_denormals): a result whose steps pass below
     * FLT_MIN, gelu's x Phi(x) for x near -13, may come out 0 where its exact value is ~1e-37 */
    double floor = op == OP_GELU_GRAD ? 5e-8 : 1e-36;
    return err <= (gelu ? 2e-5 : 2e-6) * fabs(want) + floor || (fabs(want) > 3.4e38 && isinf(got));
}

/* Philox-4x32-10's known answers (Random123's kat_vectors) and the uniform values' mean and
 * the fraction below 0.3 over 2^20 consecutive elements of one stream. */
static int check_philox(void) {
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    int bad = 0;
    for (int t = 0; t < 3; t++) {
        uint32_t out[4];
        philox4x32_10(kat[t], kat[t] + 4, out);
        for (int w = 0; w < 4; w++)
            if (out[w] != kat[t][6 + w]) {
                printf("FAIL philox4x32-10 vector %d word %d: %08x, expected %08x\n", t, w, out[w], kat[t][6 + w]);
                bad++;
            }
    }
    double sum = 0;
    int64_t below = 0, n = 1 << 20;
    for (int64_t i = 0; i < n; i++) {
        float u = nnc_philox_uniform((uint32_t)i, 3, 77, 4242);
        if (!(u >= 0 && u < 1)) bad++;
        sum += u;
        below += u < 0.3f;
    }
    double mean = sum / (double)n, frac = (double)below / (double)n; /* 5 sigma: 0.0014, 0.0022 */
    printf("%s philox: 3 known-answer vectors; mean %.5f, fraction below 0.3 %.5f over 2^20 values\n",
           bad || fabs(mean - 0.5) > 0.0015 || fabs(frac - 0.3) > 0.0023 ? "FAIL" : "ok  ", mean, frac);
    return bad || fabs(mean - 0.5) > 0.0015 || fabs(frac - 0.3) > 0.0023;
}

/* sgld's noise: with c = 0 and s = 1 its step leaves p = z, the normal of each element's
 * uniform; 2^20 of them (tails to |z| = 4.9, about 7,000 in erfinv's tail branch). */
static int check_normal(void) {
    enum { N = 1 << 20 };
    Arena *arena = arena_new();
    Graph *g = ir_new(arena);
    int p = ir_weight(g, "p", W_PARAM, shape_vec(N, false), INIT_ZERO, NOLOC);
    g->loss = ir_add1(g, OP_SUM, shape_scalar(), p, NOLOC);
    ir_add_output(g, "loss", g->loss, AGG_MEAN);
    g->nforward = g->nnode;
    autodiff_graph(g);
    SamplerSpec sp = {.kind = SAMPLER_SGLD};
    sampler_graph(g, &sp);
    programs_build(g);
    int stream = -1;
    for (int id = 0; id < g->nnode; id++)
        if (g->node[id].op == OP_SGLD) stream = (int)g->node[id].attr[0];
    Plan *plan = plan_graph(arena, g, 1, true);
    int bad = 0, differ = 0;
    float *z[2] = {malloc(sizeof(float) * N), malloc(sizeof(float) * N)};
    const char *dev[2] = {"cpu", "cuda-emu"};
    for (int e = 0; e < 2; e++) {
        Exec ex;
        char err[1024];
        if (exec_new(&ex, plan, dev[e], NULL, err, sizeof err)) {
            printf("FAIL %s\n", err);
            return 1;
        }
        exec_set_scalars(&ex, SC_SGLD_DRIFT, 0);
        exec_set_scalars(&ex, SC_SGLD_NOISE, 1);
        exec_set_scalars(&ex, SC_SEED, 99);
        exec_set_scalars(&ex, SC_STEP_LO, 5);
        exec_set_scalars(&ex, SC_STEP_HI, 1);
        if (exec_run(&ex, PROG_GRAD, 1) || exec_run(&ex, PROG_UPDATE, 1) || exec_read(&ex, p, z[e], sizeof(float) * N)) {
            printf("FAIL %s: %s\n", dev[e], ex.dev->err);
            return 1;
        }
        exec_free(&ex);
    }
    double sum = 0, sum2 = 0, worst = 0;
    int64_t below = 0, tail = 0;
    for (int64_t i = 0; i < N; i++) {
        double want = elem_normal_ref(nnc_philox_uniform((uint32_t)i, (uint32_t)stream, 5 + (1u << 24), 99));
        double err = fabs(z[0][i] - want) / fmax(1, fabs(want));
        worst = fmax(worst, err);
        if (!(err < 1e-6) && bad++ < 5) printf("FAIL normal %lld: %.9g, exactly %.9g\n", (long long)i, (double)z[0][i], want);
        differ += memcmp(&z[0][i], &z[1][i], sizeof(float)) != 0;
        sum += z[0][i];
        sum2 += (double)z[0][i] * z[0][i];
        below += z[0][i] < -1.959964;
        tail += fabs(z[0][i]) > 2.7;
    }
    double mean = sum / N, var = sum2 / N - mean * mean, frac = (double)below / N;
    /* 5 standard errors: mean 5 / 1024, variance 5 sqrt(2) / 1024, fraction 5 sqrt(0.025 0.975) / 1024 */
    bool moments = fabs(mean) < 0.0049 && fabs(var - 1) < 0.0069 && fabs(frac - 0.025) < 0.00077;
    printf("%s sgld's normal numbers: 2^20 within %.1e of the exact quantile (1e-6 relative allowed; %lld beyond 2.7); mean %.5f, "
           "variance %.5f, below -1.96 %.5f%s\n", bad || differ || !moments ? "FAIL" : "ok  ", worst, (long long)tail, mean, var,
           frac, differ ? "; cuda-emu differs" : "; cuda-emu gives the same bits");
    free(z[0]);
    free(z[1]);
    arena_free(arena);
    return bad || differ || !moments;
}

int main(void) {
    enum { CAP = 16384 };
    static float vals[CAP];
    int64_t n = make_values(vals, CAP);
    const Op ops[] = {OP_ELU, OP_TANH, OP_SIGMOID, OP_SOFTPLUS, OP_GELU, OP_ELU_GRAD, OP_TANH_GRAD,
                      OP_SIGMOID_GRAD, OP_SOFTPLUS_GRAD, OP_GELU_GRAD, OP_RELU, OP_LEAKY_RELU, OP_LOG,
                      OP_LOGP_NORMAL, OP_LOGP_LAPLACE, OP_LOGP_STUDENT_T, OP_LOGP_STUDENT_T_GRAD};
    int failures = check_philox() + check_normal();
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        Op op = ops[k];
        Arena *arena = arena_new();
        Graph *g = ir_new(arena);
        Shape s = shape_vec(n, true);
        int x = ir_input(g, "x", false, false, 0, s, NOLOC);
        bool grad = op_info[op].nin == 2;
        int y;
        if (grad) {
            int ones = ir_input(g, "dy", false, false, 0, s, NOLOC);
            y = ir_add2(g, op, s, ones, x, NOLOC);
        } else {
            y = ir_add1(g, op, s, x, NOLOC);
        }
        g->node[y].attr[0] = op == OP_LEAKY_RELU ? 0.01 : 1.0;
        g->loss = ir_add1(g, OP_SUM, shape_scalar(), y, NOLOC);
        ir_add_output(g, "y", y, AGG_MEAN);
        g->nforward = g->nnode;
        programs_build(g);
        Plan *plan = plan_graph(arena, g, 1, true);
        Exec ex, emu;
        char err[1024];
        if (exec_new(&ex, plan, "cpu", NULL, err, sizeof err) || exec_new(&emu, plan, "cuda-emu", NULL, err, sizeof err)) {
            printf("FAIL %s\n", err);
            return 1;
        }
        RefState *ref = ref_new(g, 1);
        float *ones = malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) ones[i] = 1.0f;
        Exec *both[2] = {&ex, &emu};
        for (int e = 0; e < 2; e++) {
            exec_write(both[e], x, vals, sizeof(float) * (size_t)n);
            if (grad) exec_write(both[e], 1, ones, sizeof(float) * (size_t)n);
            exec_run(both[e], PROG_EVAL, 1);
        }
        for (int64_t i = 0; i < n; i++) ref->val[x][i] = vals[i];
        if (grad)
            for (int64_t i = 0; i < n; i++) ref->val[1][i] = 1.0;
        ref_run(ref, NULL);
        const float *got = exec_buf(&ex, y);
        int bad = 0;
        for (int64_t i = 0; i < n; i++)
            if (!close_enough(op, got[i], ref->val[y][i])) {
                if (bad++ < 5)
                    printf("FAIL %s(%.9g): LLVM %.9g, reference %.9g\n", op_info[op].name, (double)vals[i],
                           (double)got[i], ref->val[y][i]);
            }
        const float *emu_got = exec_buf(&emu, y);
        int differ = 0;
        for (int64_t i = 0; i < n; i++) {
            /* the same bits; or, for a subnormal input passed through, zero and the subnormal, one
             * value once subnormals are flushed (a select copies the bits, an arithmetic op flushes) */
            bool flushed = fabsf(got[i]) < FLT_MIN && fabsf(emu_got[i]) < FLT_MIN;
            bool same = memcmp(&got[i], &emu_got[i], sizeof(float)) == 0 || (isnan(got[i]) && isnan(emu_got[i])) || flushed;
            if (!same && differ++ < 3)
                printf("FAIL %s(%.9g): cpu %.9g, cuda-emu %.9g: not the same bits\n", op_info[op].name, (double)vals[i],
                       (double)got[i], (double)emu_got[i]);
        }
        printf("%s %s over %lld values%s\n", bad || differ ? "FAIL" : "ok  ", op_info[op].name, (long long)n,
               differ ? "" : "; cuda-emu gives the same bits");
        failures += bad + differ;
        free(ones);
        exec_free(&emu);
        ref_free(ref);
        exec_free(&ex);
        arena_free(arena);
    }
    return failures ? 1 : 0;
}
