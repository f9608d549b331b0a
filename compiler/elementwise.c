/* elementwise.c: the elementwise function table (see elementwise.h).  Each function's four
 * definitions sit together: forward and derivative as kernel expressions (float, written so
 * that no branch produces a NaN the select would then hide), and as double references
 * (written independently, for clarity).  Stable forms avoid cancellation: sigmoid from
 * exp(-|x|), sech^2 as 4e / (1 + e)^2, the normal CDF from erfc. */
#include "elementwise.h"

#include <math.h>

#define C(v) kb_const(kb, (v))
#define U(op, a) kb_un(kb, KX_##op, (a))
#define B(op, a, b) kb_bin(kb, KX_##op, (a), (b))
#define SEL(c, a, b) kb_select(kb, (c), (a), (b))

int elem_sigmoid_kx(KBuilder *kb, int x) {
    int e = U(EXP, U(NEG, U(ABS, x))); /* exp(-|x|) in (0, 1] */
    int den = B(ADD, C(1), e);
    return SEL(B(GE, x, C(0)), B(DIV, C(1), den), B(DIV, e, den));
}
double elem_sigmoid_ref(double x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }

/* Phi(x) = erfc(-x / sqrt 2) / 2: accurate in both tails, where 1 + erf(x) would cancel. */
static int normal_cdf_kx(KBuilder *kb, int x) { return B(MUL, C(0.5), U(ERFC, B(MUL, x, C(-M_SQRT1_2)))); }
static double normal_cdf_ref(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }
static double normal_pdf_ref(double x) { return exp(-0.5 * x * x) / sqrt(2 * M_PI); }

/* A standard normal from a kernel uniform u (a multiple of 2^-24 in [0, 1)): sqrt(2) erfinv(x)
 * at x = 2 u - 1 + 2^-24, the middle of u's interval (exact in float, symmetric, never +-1).
 * erfinv in single precision by Giles's approximation ("Approximating the erfinv function",
 * GPU Computing Gems, 2011): with w = -log((1 - x)(1 + x)), a polynomial in w - 2.5 for w < 5
 * and in sqrt(w) - 3 beyond, times x.  Both branches are finite for every x here. */
int elem_normal_kx(KBuilder *kb, int u) {
    static const double central[9] = {2.81022636e-08,  3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                                      -0.00125372503, -0.00417768164, 0.246640727,     1.50140941};
    static const double tail[9] = {-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
                                   -0.0076224613,   0.00943887047,  1.00167406,     2.83297682};
    int x = B(ADD, B(SUB, B(MUL, C(2), u), C(1)), C(1.0 / 16777216.0));
    int w = U(NEG, U(LOG, B(MUL, B(SUB, C(1), x), B(ADD, C(1), x))));
    int wc = B(SUB, w, C(2.5)), wt = B(SUB, U(SQRT, w), C(3));
    int pc = C(central[0]), pt = C(tail[0]);
    for (int k = 1; k < 9; k++) {
        pc = B(ADD, C(central[k]), B(MUL, pc, wc));
        pt = B(ADD, C(tail[k]), B(MUL, pt, wt));
    }
    return B(MUL, C(M_SQRT2), B(MUL, SEL(B(LT, w, C(5)), pc, pt), x));
}

/* The same normal by an independent route: Phi^-1((x + 1) / 2) by bisection on the normal
 * distribution function (erfc, double precision) to its last bit. */
double elem_normal_ref(double u) {
    double p = (2 * u - 1 + 1.0 / 16777216.0 + 1) / 2, lo = -12, hi = 12;
    for (int k = 0; k < 200 && lo < hi; k++) {
        double mid = (lo + hi) / 2;
        if (mid <= lo || mid >= hi) break;
        if (normal_cdf_ref(mid) < p) lo = mid;
        else hi = mid;
    }
    return (lo + hi) / 2;
}

/* relu: max(x, 0); NaN stays NaN */
static int relu_kx(KBuilder *kb, int x, double a) { return SEL(B(LT, x, C(0)), C(0), x); }
static int relu_dkx(KBuilder *kb, int dy, int x, double a) { return SEL(B(GT, x, C(0)), dy, C(0)); }
static double relu_ref(double x, double a) { return x < 0 ? 0 : x; }
static double relu_dref(double dy, double x, double a) { return x > 0 ? dy : 0; }

/* leaky_relu: x > 0 ? x : a x */
static int leaky_kx(KBuilder *kb, int x, double a) { return SEL(B(GT, x, C(0)), x, B(MUL, C(a), x)); }
static int leaky_dkx(KBuilder *kb, int dy, int x, double a) { return SEL(B(GT, x, C(0)), dy, B(MUL, C(a), dy)); }
static double leaky_ref(double x, double a) { return x > 0 ? x : a * x; }
static double leaky_dref(double dy, double x, double a) { return x > 0 ? dy : a * dy; }

/* elu: x > 0 ? x : a (exp(x) - 1) */
static int elu_kx(KBuilder *kb, int x, double a) { return SEL(B(GT, x, C(0)), x, B(MUL, C(a), U(EXPM1, x))); }
static int elu_dkx(KBuilder *kb, int dy, int x, double a) {
    return SEL(B(GT, x, C(0)), dy, B(MUL, dy, B(MUL, C(a), U(EXP, x))));
}
static double elu_ref(double x, double a) { return x > 0 ? x : a * expm1(x); }
static double elu_dref(double dy, double x, double a) { return x > 0 ? dy : dy * a * exp(x); }

/* tanh; 1 - tanh^2 = 4e / (1 + e)^2 with e = exp(-2|x|): no cancellation */
static int tanh_kx(KBuilder *kb, int x, double a) { return U(TANH, x); }
static int tanh_dkx(KBuilder *kb, int dy, int x, double a) {
    int e = U(EXP, B(MUL, C(-2), U(ABS, x)));
    int d = B(ADD, C(1), e);
    return B(MUL, dy, B(DIV, B(MUL, C(4), e), B(MUL, d, d)));
}
static double tanh_ref(double x, double a) { return tanh(x); }
static double tanh_dref(double dy, double x, double a) {
    double e = exp(-2 * fabs(x));
    return dy * 4 * e / ((1 + e) * (1 + e));
}

/* sigmoid; s (1 - s) = e / (1 + e)^2 with e = exp(-|x|): no cancellation */
static int sigmoid_kx(KBuilder *kb, int x, double a) { return elem_sigmoid_kx(kb, x); }
static int sigmoid_dkx(KBuilder *kb, int dy, int x, double a) {
    int e = U(EXP, U(NEG, U(ABS, x)));
    int d = B(ADD, C(1), e);
    return B(MUL, dy, B(DIV, e, B(MUL, d, d)));
}
static double sigmoid_ref(double x, double a) { return elem_sigmoid_ref(x); }
static double sigmoid_dref(double dy, double x, double a) {
    double e = exp(-fabs(x));
    return dy * e / ((1 + e) * (1 + e));
}

/* softplus: log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)); its derivative is sigmoid */
static int softplus_kx(KBuilder *kb, int x, double a) { return B(ADD, B(MAX, x, C(0)), U(LOG1P, U(EXP, U(NEG, U(ABS, x))))); }
static int softplus_dkx(KBuilder *kb, int dy, int x, double a) { return B(MUL, dy, elem_sigmoid_kx(kb, x)); }
static double softplus_ref(double x, double a) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }
static double softplus_dref(double dy, double x, double a) { return dy * elem_sigmoid_ref(x); }

/* gelu: x Phi(x); derivative Phi(x) + x phi(x) */
static int gelu_kx(KBuilder *kb, int x, double a) { return B(MUL, x, normal_cdf_kx(kb, x)); }
static int gelu_dkx(KBuilder *kb, int dy, int x, double a) {
    int pdf = B(MUL, C(0.3989422804014327), U(EXP, B(MUL, C(-0.5), B(MUL, x, x))));
    return B(MUL, dy, B(ADD, normal_cdf_kx(kb, x), B(MUL, x, pdf)));
}
static double gelu_ref(double x, double a) { return x * normal_cdf_ref(x); }
static double gelu_dref(double dy, double x, double a) { return dy * (normal_cdf_ref(x) + x * normal_pdf_ref(x)); }

/* exp; its derivative is itself (autodiff multiplies by the value: no derivative op) */
static int exp_kx(KBuilder *kb, int x, double a) { return U(EXP, x); }
static int exp_dkx(KBuilder *kb, int dy, int x, double a) { return B(MUL, dy, U(EXP, x)); }
static double exp_ref(double x, double a) { return exp(x); }
static double exp_dref(double dy, double x, double a) { return dy * exp(x); }

/* rsqrt: 1 / sqrt(x); its derivative -y^3 / 2 autodiff writes from the value (no derivative op) */
static int rsqrt_kx(KBuilder *kb, int x, double a) { return B(DIV, C(1), U(SQRT, x)); }
static int rsqrt_dkx(KBuilder *kb, int dy, int x, double a) {
    int y = B(DIV, C(1), U(SQRT, x));
    return B(MUL, dy, B(MUL, C(-0.5), B(MUL, y, B(MUL, y, y))));
}
static double rsqrt_ref(double x, double a) { return 1 / sqrt(x); }
static double rsqrt_dref(double dy, double x, double a) { return -0.5 * dy / (x * sqrt(x)); }

/* log; its derivative dy / x autodiff writes with div (no derivative op) */
static int log_kx(KBuilder *kb, int x, double a) { return U(LOG, x); }
static int log_dkx(KBuilder *kb, int dy, int x, double a) { return B(DIV, dy, x); }
static double log_ref(double x, double a) { return log(x); }
static double log_dref(double dy, double x, double a) { return dy / x; }

/* Log densities of standardised values z = (x - loc) / scale (priors, likelihoods); the
 * -log(scale) of each density is added where the scale is known (compiler/priors.c). */

/* normal: -z^2/2 - log(2 pi)/2; derivative -z dy (autodiff writes it with mul and neg) */
static const double HALF_LOG_2PI = 0.91893853320467274178;
static int normal_kx(KBuilder *kb, int z, double a) { return B(SUB, B(MUL, C(-0.5), B(MUL, z, z)), C(HALF_LOG_2PI)); }
static int normal_dkx(KBuilder *kb, int dy, int z, double a) { return U(NEG, B(MUL, dy, z)); }
static double normal_ref(double z, double a) { return -0.5 * z * z - 0.5 * log(2 * M_PI); }
static double normal_dref(double dy, double z, double a) { return -dy * z; }

/* laplace: -|z| - log 2; derivative -sign(z) dy (autodiff writes it as -l1_grad) */
static int laplace_kx(KBuilder *kb, int z, double a) { return B(SUB, U(NEG, U(ABS, z)), C(M_LN2)); }
static int laplace_dkx(KBuilder *kb, int dy, int z, double a) {
    return SEL(B(GT, z, C(0)), U(NEG, dy), SEL(B(LT, z, C(0)), dy, C(0)));
}
static double laplace_ref(double z, double a) { return -fabs(z) - log(2.0); }
static double laplace_dref(double dy, double z, double a) { return z > 0 ? -dy : z < 0 ? dy : 0; }

/* Student's t with nu = a degrees of freedom: c(nu) - (nu + 1)/2 log1p(z^2 / nu), its constant
 * c(nu) = lgamma((nu + 1)/2) - lgamma(nu/2) - log(nu pi)/2 computed here in double (nu is an
 * immediate); nu = 1 is the Cauchy, -log(pi) - log1p(z^2).  With a = |z| / sqrt(nu), log1p(a^2)
 * keeps the small-z end exact, and beyond a = 1e4 it is 2 log a + log1p(1 / a^2), which does
 * not overflow (a^2 would above 1.8e19); each branch is fed a clamped a, so neither makes a
 * NaN.  The derivative -(nu + 1) z / (nu + z^2) is written -(nu + 1) / (z + nu / z), which
 * neither overflows nor divides 0 by 0 (z = 0 gives nu / z infinite, and the result 0). */
static const double T_BIG = 1e4;
static double student_t_const(double nu) { return lgamma((nu + 1) / 2) - lgamma(nu / 2) - 0.5 * log(nu * M_PI); }
static int student_t_kx(KBuilder *kb, int z, double nu) {
    int a = B(MUL, U(ABS, z), C(1 / sqrt(nu)));
    int above = B(GT, a, C(T_BIG)); /* false for a NaN, which the small branch passes on */
    int small = SEL(above, C(T_BIG), a), big = SEL(above, a, C(T_BIG));
    int l = SEL(above, B(ADD, B(MUL, C(2), U(LOG, big)), U(LOG1P, B(DIV, C(1), B(MUL, big, big)))),
                U(LOG1P, B(MUL, small, small)));
    return B(SUB, C(student_t_const(nu)), B(MUL, C((nu + 1) / 2), l));
}
static int student_t_dkx(KBuilder *kb, int dy, int z, double nu) {
    return B(MUL, dy, B(DIV, C(-(nu + 1)), B(ADD, z, B(DIV, C(nu), z))));
}
static double student_t_ref(double z, double nu) {
    /* written from the density itself: log( Gamma((nu+1)/2) / (sqrt(nu pi) Gamma(nu/2)) (1 + z^2/nu)^(-(nu+1)/2) ) */
    return lgamma((nu + 1) / 2) - lgamma(nu / 2) - log(sqrt(nu * M_PI)) - (nu + 1) / 2 * log1p(z * z / nu);
}
static double student_t_dref(double dy, double z, double nu) { return isinf(z) ? 0 * dy : -dy * (nu + 1) * z / (nu + z * z); }

static const ElemFn fns[] = {
    {OP_RELU, OP_RELU_GRAD, relu_kx, relu_dkx, relu_ref, relu_dref},
    {OP_LEAKY_RELU, OP_LEAKY_RELU_GRAD, leaky_kx, leaky_dkx, leaky_ref, leaky_dref},
    {OP_ELU, OP_ELU_GRAD, elu_kx, elu_dkx, elu_ref, elu_dref},
    {OP_TANH, OP_TANH_GRAD, tanh_kx, tanh_dkx, tanh_ref, tanh_dref},
    {OP_SIGMOID, OP_SIGMOID_GRAD, sigmoid_kx, sigmoid_dkx, sigmoid_ref, sigmoid_dref},
    {OP_SOFTPLUS, OP_SOFTPLUS_GRAD, softplus_kx, softplus_dkx, softplus_ref, softplus_dref},
    {OP_GELU, OP_GELU_GRAD, gelu_kx, gelu_dkx, gelu_ref, gelu_dref},
    {OP_EXP, OP_COUNT, exp_kx, exp_dkx, exp_ref, exp_dref},
    {OP_RSQRT, OP_COUNT, rsqrt_kx, rsqrt_dkx, rsqrt_ref, rsqrt_dref},
    {OP_LOG, OP_COUNT, log_kx, log_dkx, log_ref, log_dref},
    {OP_LOGP_NORMAL, OP_COUNT, normal_kx, normal_dkx, normal_ref, normal_dref},
    {OP_LOGP_LAPLACE, OP_COUNT, laplace_kx, laplace_dkx, laplace_ref, laplace_dref},
    {OP_LOGP_STUDENT_T, OP_LOGP_STUDENT_T_GRAD, student_t_kx, student_t_dkx, student_t_ref, student_t_dref},
};

const ElemFn *elem_fn(Op op) {
    for (size_t i = 0; i < sizeof fns / sizeof *fns; i++)
        if (fns[i].op == op || (fns[i].grad == op && op != OP_COUNT)) return &fns[i];
    return NULL;
}
