/* render_llvm.c: Plan -> LLVM IR -> O3 -> LLJIT (see render_llvm.h).
 *
 * Loop kernels become nests `for i < rows (and the other outer dims) { reduction phases over
 * the inner dims; outer-point outputs; for the inner dims { element outputs } }` with the last
 * dim's extent (the column count) a run-time parameter (short rows also get a copy with the
 * planned count as a constant, split at a multiple of 8 columns: see llvm_render and
 * emit_loop_kernel) and the others constants, accesses
 * as row-major offsets of their affine indices (a bounded or divided index selects 0 where
 * the element does not exist), pointer arguments noalias and 64-byte aligned, so the inner
 * loops vectorise (window reductions over channels-last maps are turned inside out so that
 * the channel loop is the inner one: emit_channel_kernel).  Values are placed by level:
 * kernel-invariant ones before the row loop, per-row ones before the inner loop that first
 * needs them, element ones inside it.  exp, expm1, log, log1p, tanh and erfc are emitted inline as branch-free
 * polynomial code so that they vectorise too; sqrt and fabs are LLVM intrinsics.  Each kernel
 * gets an entry wrapper taking an array of buffer pointers, and the module exports the table
 * of entries; GEMMs are left to the device, which calls BLAS.  Facts this relies on: the
 * TargetMachine must be passed to LLVMRunPasses or nothing vectorises; LLJIT resolves nothing
 * from the process unless told to (memset and friends come through a process-symbol
 * generator). */
#include "render_llvm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "philox.h"

struct LlvmModule {
    LLVMOrcThreadSafeContextRef tsc;
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMTargetMachineRef tm;
};

struct LlvmJit {
    LLVMOrcLLJITRef jit;
    LLVMOrcThreadSafeContextRef tsc;
};

typedef struct {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTypeRef f32, i32, i64, i1, ptr, vd;
    LLVMTypeRef math_ty; /* float(float) */
    LLVMValueRef fexp, fexpm1, flog, flog1p, ftanh, ferfc;
    LLVMValueRef sqrt_fn, fabs_fn, rint_fn;
    LLVMTypeRef sqrt_ty, fabs_ty, rint_ty;
    LLVMValueRef trap_fn;
    LLVMTypeRef trap_ty;
} Cg;

static LLVMValueRef cf(Cg *cg, double v) { return LLVMConstReal(cg->f32, v); }
static LLVMValueRef ci32(Cg *cg, long long v) { return LLVMConstInt(cg->i32, (unsigned long long)v, 1); }
static LLVMValueRef ci64(Cg *cg, long long v) { return LLVMConstInt(cg->i64, (unsigned long long)v, 1); }

static void add_attr(Cg *cg, LLVMValueRef fn, unsigned idx, const char *name, uint64_t val) {
    unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
    NNC_ASSERT(kind != 0);
    LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(cg->ctx, kind, val));
}

static LLVMValueRef intrinsic(Cg *cg, const char *name, LLVMTypeRef *ty) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    NNC_ASSERT(id != 0);
    *ty = LLVMIntrinsicGetType(cg->ctx, id, &cg->f32, 1);
    return LLVMGetIntrinsicDeclaration(cg->mod, id, &cg->f32, 1);
}

static LLVMValueRef call1(Cg *cg, LLVMTypeRef ty, LLVMValueRef fn, LLVMValueRef x, const char *name) {
    return LLVMBuildCall2(cg->b, ty, fn, &x, 1, name);
}

#define FADD(x_, y_) LLVMBuildFAdd(cg->b, (x_), (y_), "")
#define FSUB(x_, y_) LLVMBuildFSub(cg->b, (x_), (y_), "")
#define FMUL(x_, y_) LLVMBuildFMul(cg->b, (x_), (y_), "")
#define FDIV(x_, y_) LLVMBuildFDiv(cg->b, (x_), (y_), "")
#define FCMP(p_, x_, y_) LLVMBuildFCmp(cg->b, LLVMReal##p_, (x_), (y_), "")
#define SEL(c_, x_, y_) LLVMBuildSelect(cg->b, (c_), (x_), (y_), "")

static LLVMValueRef poly(Cg *cg, LLVMValueRef x, const double *c, int n) {
    /* c[0] + x (c[1] + x (c[2] + ...)) */
    LLVMValueRef acc = cf(cg, c[n - 1]);
    for (int i = n - 2; i >= 0; i--) acc = FADD(FMUL(acc, x), cf(cg, c[i]));
    return acc;
}

/* 2^n for an i32 n in [-126, 127], as a float, by building the exponent bits. */
static LLVMValueRef pow2i(Cg *cg, LLVMValueRef n) {
    LLVMValueRef bits = LLVMBuildShl(cg->b, LLVMBuildAdd(cg->b, n, ci32(cg, 127), ""), ci32(cg, 23), "");
    return LLVMBuildBitCast(cg->b, bits, cg->f32, "");
}

static LLVMValueRef begin_math_fn(Cg *cg, const char *name, LLVMValueRef *fn) {
    *fn = LLVMAddFunction(cg->mod, name, cg->math_ty);
    LLVMSetLinkage(*fn, LLVMInternalLinkage);
    add_attr(cg, *fn, LLVMAttributeFunctionIndex, "alwaysinline", 0);
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, *fn, "entry"));
    return LLVMGetParam(*fn, 0);
}

/* exp(x): n = rint(x log2 e), r = x - n ln 2 (two-part ln 2), e^r by its degree-7 Taylor
 * polynomial (|r| <= 0.347, error below 1e-8 relative), scaled by 2^n as two halves so that
 * n in [-150, 128] never overflows the exponent field.  inf / 0 / NaN handled by selects. */
static void build_exp(Cg *cg) {
    LLVMValueRef x = begin_math_fn(cg, "nnc.exp", &cg->fexp);
    LLVMValueRef xc = SEL(FCMP(OLT, x, cf(cg, -104.0)), cf(cg, -104.0), x);
    xc = SEL(FCMP(OGT, xc, cf(cg, 89.0)), cf(cg, 89.0), xc);
    LLVMValueRef nf = call1(cg, cg->rint_ty, cg->rint_fn, FMUL(xc, cf(cg, 1.4426950408889634)), "");
    LLVMValueRef r = FSUB(FSUB(xc, FMUL(nf, cf(cg, 0.693145751953125))), FMUL(nf, cf(cg, 1.428606820309417e-06)));
    static const double c[] = {1.0, 1.0, 0.5, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040};
    LLVMValueRef p = poly(cg, r, c, 8);
    LLVMValueRef n = LLVMBuildFPToSI(cg->b, nf, cg->i32, "");
    LLVMValueRef h = LLVMBuildAShr(cg->b, n, ci32(cg, 1), "");
    LLVMValueRef res = FMUL(FMUL(p, pow2i(cg, h)), pow2i(cg, LLVMBuildSub(cg->b, n, h, "")));
    res = SEL(FCMP(OGT, x, cf(cg, 88.72283935546875)), cf(cg, INFINITY), res);
    res = SEL(FCMP(OLT, x, cf(cg, -103.972084045410)), cf(cg, 0.0), res);
    res = SEL(FCMP(UNO, x, x), x, res);
    LLVMBuildRet(cg->b, res);
}

/* expm1(x): its Taylor series to x^8 below |x| = 0.5 (relative error below 1e-8), where
 * exp(x) - 1 would cancel; exp(x) - 1 above. */
static void build_expm1(Cg *cg) {
    LLVMValueRef x = begin_math_fn(cg, "nnc.expm1", &cg->fexpm1);
    static const double c[] = {1.0, 0.5, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320};
    LLVMValueRef small = FMUL(x, poly(cg, x, c, 8));
    LLVMValueRef big = FSUB(LLVMBuildCall2(cg->b, cg->math_ty, cg->fexp, &x, 1, ""), cf(cg, 1));
    LLVMValueRef ax = call1(cg, cg->fabs_ty, cg->fabs_fn, x, "");
    LLVMBuildRet(cg->b, SEL(FCMP(OLT, ax, cf(cg, 0.5)), small, big));
}

/* log(x): x = m 2^e with m in [sqrt(1/2), sqrt 2), log m = 2 atanh((m-1)/(m+1)) by its odd
 * series to f^9 (|f| <= 0.172, error below 1e-9).  Subnormals are scaled first. */
static void build_log(Cg *cg) {
    LLVMValueRef x = begin_math_fn(cg, "nnc.log", &cg->flog);
    LLVMValueRef tiny = FCMP(OLT, x, cf(cg, 1.1754943508222875e-38));
    LLVMValueRef xs = SEL(tiny, FMUL(x, cf(cg, 8388608.0)), x);
    LLVMValueRef bits = LLVMBuildBitCast(cg->b, xs, cg->i32, "");
    LLVMValueRef e = LLVMBuildSub(cg->b, LLVMBuildLShr(cg->b, bits, ci32(cg, 23), ""), ci32(cg, 127), "");
    e = SEL(tiny, LLVMBuildSub(cg->b, e, ci32(cg, 23), ""), e);
    LLVMValueRef mbits = LLVMBuildOr(cg->b, LLVMBuildAnd(cg->b, bits, ci32(cg, 0x7fffff), ""), ci32(cg, 0x3f800000), "");
    LLVMValueRef m = LLVMBuildBitCast(cg->b, mbits, cg->f32, "");
    LLVMValueRef big = FCMP(OGT, m, cf(cg, 1.4142135623730951));
    m = SEL(big, FMUL(m, cf(cg, 0.5)), m);
    e = SEL(big, LLVMBuildAdd(cg->b, e, ci32(cg, 1), ""), e);
    LLVMValueRef f = FDIV(FSUB(m, cf(cg, 1)), FADD(m, cf(cg, 1)));
    LLVMValueRef f2 = FMUL(f, f);
    static const double c[] = {2.0, 2.0 / 3, 2.0 / 5, 2.0 / 7, 2.0 / 9};
    LLVMValueRef lm = FMUL(f, poly(cg, f2, c, 5));
    LLVMValueRef ef = LLVMBuildSIToFP(cg->b, e, cg->f32, "");
    LLVMValueRef res = FADD(FMUL(ef, cf(cg, 0.693145751953125)), FADD(FMUL(ef, cf(cg, 1.428606820309417e-06)), lm));
    res = SEL(FCMP(OEQ, x, cf(cg, 0)), cf(cg, -INFINITY), res);
    res = SEL(FCMP(OEQ, x, cf(cg, INFINITY)), x, res);
    res = SEL(FCMP(ULT, x, cf(cg, 0)), cf(cg, NAN), res); /* negative or NaN */
    LLVMBuildRet(cg->b, res);
}

/* log1p(x) = log(u) * x / (u - 1) with u = 1 + x, which cancels the rounding of u. */
static void build_log1p(Cg *cg) {
    LLVMValueRef x = begin_math_fn(cg, "nnc.log1p", &cg->flog1p);
    LLVMValueRef u = FADD(x, cf(cg, 1));
    LLVMValueRef lu = LLVMBuildCall2(cg->b, cg->math_ty, cg->flog, &u, 1, "");
    LLVMValueRef res = FDIV(FMUL(lu, x), FSUB(u, cf(cg, 1)));
    res = SEL(FCMP(OEQ, u, cf(cg, 1)), x, res);
    res = SEL(FCMP(OEQ, u, cf(cg, INFINITY)), u, res);
    res = SEL(FCMP(OEQ, u, cf(cg, 0)), cf(cg, -INFINITY), res);
    LLVMBuildRet(cg->b, res);
}

/* tanh(x): its odd Taylor series below |x| = 0.25, else sign(x) (1 - t) / (1 + t) with
 * t = exp(-2|x|). */
static void build_tanh(Cg *cg) {
    LLVMValueRef x = begin_math_fn(cg, "nnc.tanh", &cg->ftanh);
    LLVMValueRef ax = call1(cg, cg->fabs_ty, cg->fabs_fn, x, "");
    LLVMValueRef m2 = FMUL(ax, cf(cg, -2));
    LLVMValueRef t = LLVMBuildCall2(cg->b, cg->math_ty, cg->fexp, &m2, 1, "");
    LLVMValueRef big = FDIV(FSUB(cf(cg, 1), t), FADD(cf(cg, 1), t));
    big = SEL(FCMP(OLT, x, cf(cg, 0)), LLVMBuildFNeg(cg->b, big, ""), big);
    static const double c[] = {1.0, -1.0 / 3, 2.0 / 15, -17.0 / 315, 62.0 / 2835};
    LLVMValueRef small = FMUL(x, poly(cg, FMUL(x, x), c, 5));
    LLVMBuildRet(cg->b, SEL(FCMP(OLT, ax, cf(cg, 0.25)), small, big));
}

/* erfc(x) for x >= 0 by the Chebyshev-fitted form t exp(-x^2 + P(t)), t = 1 / (1 + x/2)
 * (Numerical Recipes' erfcc, fractional error below 1.2e-7 everywhere), so the tail keeps
 * its relative accuracy; erfc(x) = 2 - erfc(-x) for x < 0. */
static void build_erfc(Cg *cg) {
    LLVMValueRef x = begin_math_fn(cg, "nnc.erfc", &cg->ferfc);
    LLVMValueRef z = call1(cg, cg->fabs_ty, cg->fabs_fn, x, "");
    LLVMValueRef t = FDIV(cf(cg, 1), FADD(cf(cg, 1), FMUL(cf(cg, 0.5), z)));
    static const double c[] = {-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
                               0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277};
    LLVMValueRef arg = FADD(FMUL(LLVMBuildFNeg(cg->b, z, ""), z), poly(cg, t, c, 10));
    LLVMValueRef r = FMUL(t, LLVMBuildCall2(cg->b, cg->math_ty, cg->fexp, &arg, 1, ""));
    r = SEL(FCMP(OLT, x, cf(cg, 0)), FSUB(cf(cg, 2), r), r);
    LLVMBuildRet(cg->b, SEL(FCMP(UNO, x, x), x, r));
}

/* ---- loops ---- */

typedef struct {
    LLVMBasicBlockRef pre, head, body, exit;
    LLVMValueRef iv;
} Loop;

/* for (iv = start; iv < n; iv++), the builder left in the body */
static void loop_begin_at(Cg *cg, LLVMValueRef fn, Loop *l, LLVMValueRef start, LLVMValueRef n, const char *name) {
    char buf[64];
    l->pre = LLVMGetInsertBlock(cg->b);
    snprintf(buf, sizeof buf, "%s.head", name);
    l->head = LLVMAppendBasicBlockInContext(cg->ctx, fn, buf);
    snprintf(buf, sizeof buf, "%s.body", name);
    l->body = LLVMAppendBasicBlockInContext(cg->ctx, fn, buf);
    snprintf(buf, sizeof buf, "%s.exit", name);
    l->exit = LLVMAppendBasicBlockInContext(cg->ctx, fn, buf);
    LLVMBuildBr(cg->b, l->head);
    LLVMPositionBuilderAtEnd(cg->b, l->head);
    l->iv = LLVMBuildPhi(cg->b, cg->i64, name);
    LLVMAddIncoming(l->iv, &start, &l->pre, 1);
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, l->iv, n, ""), l->body, l->exit);
    LLVMPositionBuilderAtEnd(cg->b, l->body);
}

static void loop_begin(Cg *cg, LLVMValueRef fn, Loop *l, LLVMValueRef n, const char *name) {
    loop_begin_at(cg, fn, l, ci64(cg, 0), n, name);
}

static void loop_end(Cg *cg, Loop *l) {
    LLVMValueRef next = LLVMBuildNSWAdd(cg->b, l->iv, ci64(cg, 1), "");
    LLVMBasicBlockRef from = LLVMGetInsertBlock(cg->b);
    LLVMAddIncoming(l->iv, &next, &from, 1);
    LLVMBuildBr(cg->b, l->head);
    LLVMPositionBuilderAtEnd(cg->b, l->exit);
}

/* ---- loop kernels ---- */

typedef struct {
    Cg *cg;
    const Kernel *k;
    LLVMValueRef fn;
    LLVMValueRef rows, cols, scalars;
    LLVMValueRef *argp;
    LLVMValueRef v[K_MAX_DIMS];   /* the current index of each domain dim (NULL outside its loop) */
    LLVMValueRef ext[K_MAX_DIMS]; /* each domain dim's extent */
    LLVMBasicBlockRef anchor0, anchor1; /* where level-0 / level-1 values go */
    LLVMValueRef *memo;    /* per expression */
    int *memo_level;
    LLVMValueRef *red;     /* reduction results for the current outer point */
    int vec_dim;           /* the innermost loop's dim in channel-innermost kernels, else -1 */
} KCtx;

static LLVMValueRef emit_expr(KCtx *kc, int id);

static LLVMValueRef extent(KCtx *kc, KDim d) {
    if (d.cols) return kc->cols;
    if (d.batch) return d.n == 1 ? kc->rows : LLVMBuildNSWMul(kc->cg->b, kc->rows, ci64(kc->cg, d.n), "");
    return ci64(kc->cg, d.n);
}

/* Whether access `a` holds the vector dim (see emit_channel_kernel) only in its last index,
 * undivided and unbounded, with a stride small enough that the row at offset 0 has room for it:
 * then that term is left out of the select that sends a missing element to offset 0, and the
 * loads stay consecutive (or evenly strided) along the innermost loop. */
static bool vec_term_apart(const KCtx *kc, const KAccess *a) {
    int vd = kc->vec_dim;
    if (vd < 0 || a->rank == 0) return false;
    for (int m = 0; m < a->rank - 1; m++)
        if (a->idx[m].coef[vd]) return false;
    const KIdx *last = &a->idx[a->rank - 1];
    return last->coef[vd] > 0 && last->div == 1 && !last->bounded && !last->ext.batch && !last->ext.cols &&
           last->coef[vd] * (kc->k->dim[vd].n - 1) < last->ext.n;
}

/* The element of access `a`: its address, and (when some index is bounded or divided) in
 * *valid whether it exists; an element that does not is read at offset 0 and replaced by 0
 * (at the vector dim's own offset when vec_term_apart). */
static LLVMValueRef access_ptr(KCtx *kc, const KAccess *a, LLVMValueRef *valid) {
    Cg *cg = kc->cg;
    LLVMTypeRef et = kc->k->arg[a->arg].dtype == DT_I32 ? cg->i32 : cg->f32;
    bool apart = vec_term_apart(kc, a);
    LLVMValueRef off = NULL, ok = NULL;
    for (int m = 0; m < a->rank; m++) {
        const KIdx *x = &a->idx[m];
        LLVMValueRef idx = NULL;
        for (int d = 0; d < kc->k->ndim; d++) {
            if (!x->coef[d] || (apart && d == kc->vec_dim)) continue;
            NNC_ASSERT(kc->v[d]);
            LLVMValueRef t = x->coef[d] == 1 ? kc->v[d] : LLVMBuildNSWMul(cg->b, kc->v[d], ci64(cg, x->coef[d]), "");
            idx = idx ? LLVMBuildNSWAdd(cg->b, idx, t, "") : t;
        }
        if (!idx) idx = ci64(cg, x->off);
        else if (x->off) idx = LLVMBuildNSWAdd(cg->b, idx, ci64(cg, x->off), "");
        LLVMValueRef ext = extent(kc, x->ext);
        if (x->div > 1) {
            LLVMValueRef exact = LLVMBuildICmp(cg->b, LLVMIntEQ, LLVMBuildSRem(cg->b, idx, ci64(cg, x->div), ""), ci64(cg, 0), "");
            ok = ok ? LLVMBuildAnd(cg->b, ok, exact, "") : exact;
            idx = LLVMBuildSDiv(cg->b, idx, ci64(cg, x->div), "");
        }
        if (x->bounded) {
            LLVMValueRef in = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, idx, ci64(cg, 0), ""),
                                           LLVMBuildICmp(cg->b, LLVMIntSLT, idx, ext, ""), "");
            ok = ok ? LLVMBuildAnd(cg->b, ok, in, "") : in;
        }
        off = off ? LLVMBuildNSWAdd(cg->b, LLVMBuildNSWMul(cg->b, off, ext, ""), idx, "") : idx;
    }
    if (!off) off = ci64(cg, 0);
    if (ok) off = LLVMBuildSelect(cg->b, ok, off, ci64(cg, 0), "");
    if (apart) {
        int64_t coef = a->idx[a->rank - 1].coef[kc->vec_dim];
        LLVMValueRef v = kc->v[kc->vec_dim];
        off = LLVMBuildNSWAdd(cg->b, off, coef == 1 ? v : LLVMBuildNSWMul(cg->b, v, ci64(cg, coef), ""), "");
    }
    *valid = ok;
    return LLVMBuildInBoundsGEP2(cg->b, et, kc->argp[a->arg], &off, 1, "");
}

/* Philox-4x32-10 of (counter, key) as inline i32 code, the same rounds as runtime/philox.h:
 * the first output word's top 24 bits as a float in [0, 1). */
static LLVMValueRef philox_uniform(Cg *cg, LLVMValueRef c[4], LLVMValueRef k[2]) {
    LLVMBuilderRef b = cg->b;
    LLVMValueRef m0 = LLVMConstInt(cg->i64, 0xD2511F53u, 0), m1 = LLVMConstInt(cg->i64, 0xCD9E8D57u, 0);
    LLVMValueRef thirty_two = LLVMConstInt(cg->i64, 32, 0);
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k[0] = LLVMBuildAdd(b, k[0], LLVMConstInt(cg->i32, 0x9E3779B9u, 0), "");
            k[1] = LLVMBuildAdd(b, k[1], LLVMConstInt(cg->i32, 0xBB67AE85u, 0), "");
        }
        LLVMValueRef p0 = LLVMBuildMul(b, m0, LLVMBuildZExt(b, c[0], cg->i64, ""), "");
        LLVMValueRef p1 = LLVMBuildMul(b, m1, LLVMBuildZExt(b, c[2], cg->i64, ""), "");
        LLVMValueRef hi0 = LLVMBuildTrunc(b, LLVMBuildLShr(b, p0, thirty_two, ""), cg->i32, "");
        LLVMValueRef hi1 = LLVMBuildTrunc(b, LLVMBuildLShr(b, p1, thirty_two, ""), cg->i32, "");
        LLVMValueRef lo0 = LLVMBuildTrunc(b, p0, cg->i32, ""), lo1 = LLVMBuildTrunc(b, p1, cg->i32, "");
        c[0] = LLVMBuildXor(b, LLVMBuildXor(b, hi1, c[1], ""), k[0], "");
        c[1] = lo1;
        c[2] = LLVMBuildXor(b, LLVMBuildXor(b, hi0, c[3], ""), k[1], "");
        c[3] = lo0;
    }
    LLVMValueRef top = LLVMBuildLShr(b, c[0], LLVMConstInt(cg->i32, 8, 0), "");
    return LLVMBuildFMul(b, LLVMBuildUIToFP(b, top, cg->f32, ""), cf(cg, 1.0 / 16777216.0), "");
}

/* KX_RANDOM at the current element: its row-major index in the domain is the counter. */
static LLVMValueRef emit_random(KCtx *kc, const KExpr *e, LLVMValueRef seed, LLVMValueRef lo, LLVMValueRef hi) {
    Cg *cg = kc->cg;
    LLVMValueRef idx = NULL;
    for (int d = 0; d < kc->k->ndim; d++) {
        NNC_ASSERT(kc->v[d]);
        idx = idx ? LLVMBuildNSWAdd(cg->b, LLVMBuildNSWMul(cg->b, idx, kc->ext[d], ""), kc->v[d], "") : kc->v[d];
    }
    LLVMValueRef step = LLVMBuildAdd(cg->b, LLVMBuildFPToUI(cg->b, lo, cg->i32, ""),
                                     LLVMBuildShl(cg->b, LLVMBuildFPToUI(cg->b, hi, cg->i32, ""), LLVMConstInt(cg->i32, 24, 0), ""), "");
    LLVMValueRef c[4] = {LLVMBuildTrunc(cg->b, idx, cg->i32, ""), LLVMConstInt(cg->i32, (unsigned)e->arg, 0), step,
                         LLVMConstInt(cg->i32, 0, 0)};
    LLVMValueRef k[2] = {LLVMBuildFPToUI(cg->b, seed, cg->i32, ""), LLVMConstInt(cg->i32, NNC_PHILOX_KEY1, 0)};
    return philox_uniform(cg, c, k);
}

static LLVMValueRef out_ptr(KCtx *kc, int acc) {
    LLVMValueRef valid;
    LLVMValueRef p = access_ptr(kc, &kc->k->acc[acc], &valid);
    NNC_ASSERT(!valid); /* outputs are never bounded (kb_out_at) */
    return p;
}

static LLVMValueRef emit_uncached(KCtx *kc, const KExpr *e) {
    Cg *cg = kc->cg;
    LLVMValueRef a = e->a >= 0 ? emit_expr(kc, e->a) : NULL;
    LLVMValueRef b = e->b >= 0 ? emit_expr(kc, e->b) : NULL;
    LLVMValueRef c = e->c >= 0 ? emit_expr(kc, e->c) : NULL;
    switch (e->op) {
    case KX_CONST: return cf(cg, (double)e->imm);
    case KX_LOAD: {
        const KAccess *ac = &kc->k->acc[e->arg];
        bool i32 = kc->k->arg[ac->arg].dtype == DT_I32;
        LLVMValueRef valid;
        LLVMValueRef p = access_ptr(kc, ac, &valid);
        LLVMValueRef v = LLVMBuildLoad2(cg->b, i32 ? cg->i32 : cg->f32, p, "");
        if (i32) v = LLVMBuildSIToFP(cg->b, v, cg->f32, "");
        return valid ? LLVMBuildSelect(cg->b, valid, v, cf(cg, 0), "") : v;
    }
    case KX_SCALAR: {
        LLVMValueRef idx = ci64(cg, e->arg);
        return LLVMBuildLoad2(cg->b, cg->f32, LLVMBuildInBoundsGEP2(cg->b, cg->f32, kc->scalars, &idx, 1, ""), "");
    }
    case KX_INDEX: NNC_ASSERT(kc->v[e->arg]); return LLVMBuildSIToFP(cg->b, kc->v[e->arg], cg->f32, "");
    case KX_ROWS: return LLVMBuildSIToFP(cg->b, kc->rows, cg->f32, "");
    case KX_EXTENT: return LLVMBuildSIToFP(cg->b, kc->ext[e->arg], cg->f32, "");
    case KX_RED: NNC_ASSERT(kc->red[e->arg]); return kc->red[e->arg];
    case KX_RANDOM: return emit_random(kc, e, a, b, c);
    case KX_NEG: return LLVMBuildFNeg(cg->b, a, "");
    case KX_ABS: return call1(cg, cg->fabs_ty, cg->fabs_fn, a, "");
    case KX_SQRT: return call1(cg, cg->sqrt_ty, cg->sqrt_fn, a, "");
    case KX_EXP: return LLVMBuildCall2(cg->b, cg->math_ty, cg->fexp, &a, 1, "");
    case KX_EXPM1: return LLVMBuildCall2(cg->b, cg->math_ty, cg->fexpm1, &a, 1, "");
    case KX_LOG: return LLVMBuildCall2(cg->b, cg->math_ty, cg->flog, &a, 1, "");
    case KX_LOG1P: return LLVMBuildCall2(cg->b, cg->math_ty, cg->flog1p, &a, 1, "");
    case KX_TANH: return LLVMBuildCall2(cg->b, cg->math_ty, cg->ftanh, &a, 1, "");
    case KX_ERFC: return LLVMBuildCall2(cg->b, cg->math_ty, cg->ferfc, &a, 1, "");
    case KX_ADD: return FADD(a, b);
    case KX_SUB: return FSUB(a, b);
    case KX_MUL: return FMUL(a, b);
    case KX_DIV: return FDIV(a, b);
    case KX_MAX: return SEL(FCMP(OGT, a, b), a, b);
    case KX_MIN: return SEL(FCMP(OLT, a, b), a, b);
    case KX_LT: return SEL(FCMP(OLT, a, b), cf(cg, 1), cf(cg, 0));
    case KX_LE: return SEL(FCMP(OLE, a, b), cf(cg, 1), cf(cg, 0));
    case KX_GT: return SEL(FCMP(OGT, a, b), cf(cg, 1), cf(cg, 0));
    case KX_GE: return SEL(FCMP(OGE, a, b), cf(cg, 1), cf(cg, 0));
    case KX_EQ: return SEL(FCMP(OEQ, a, b), cf(cg, 1), cf(cg, 0));
    case KX_NE: return SEL(FCMP(UNE, a, b), cf(cg, 1), cf(cg, 0));
    case KX_SELECT: return SEL(FCMP(UNE, a, cf(cg, 0)), b, c);
    case KX_COUNT: break;
    }
    NNC_BUG("expression op %d", e->op);
}

/* Emit expression `id` where its level says it belongs, once. */
static LLVMValueRef emit_expr(KCtx *kc, int id) {
    if (kc->memo[id]) return kc->memo[id];
    const KExpr *e = &kc->k->x[id];
    Cg *cg = kc->cg;
    LLVMBasicBlockRef here = LLVMGetInsertBlock(cg->b);
    LLVMBasicBlockRef anchor = e->level == 0 ? kc->anchor0 : e->level == 1 ? kc->anchor1 : NULL;
    if (anchor && anchor != here) {
        LLVMValueRef term = LLVMGetBasicBlockTerminator(anchor);
        if (term)
            LLVMPositionBuilderBefore(cg->b, term);
        else
            LLVMPositionBuilderAtEnd(cg->b, anchor);
    }
    LLVMValueRef v = emit_uncached(kc, e);
    if (anchor && anchor != here) LLVMPositionBuilderAtEnd(cg->b, here);
    kc->memo[id] = v;
    kc->memo_level[id] = e->level;
    return v;
}

static void forget_level(KCtx *kc, int level) {
    for (int i = 0; i < kc->k->nx; i++)
        if (kc->memo[i] && kc->memo_level[i] >= level) kc->memo[i] = NULL;
}

static LLVMValueRef red_init(Cg *cg, KRedOp op) {
    return cf(cg, op == KR_SUM ? 0.0 : op == KR_MAX ? -INFINITY : INFINITY);
}

static LLVMValueRef red_step(Cg *cg, KRedOp op, LLVMValueRef acc, LLVMValueRef v, bool reassoc) {
    if (op == KR_SUM) {
        LLVMValueRef s = FADD(acc, v);
        if (reassoc) LLVMSetFastMathFlags(s, LLVMFastMathAllowReassoc);
        return s;
    }
    return op == KR_MAX ? SEL(FCMP(OGT, v, acc), v, acc) : SEL(FCMP(OLT, v, acc), v, acc);
}

/* Loops over the inner dims, outermost first, the last one over [from, to) (NULL, NULL: all
 * of it); level-1 values go before the first.  The loops' exits are left to nest_end. */
static void nest_range_begin(KCtx *kc, Loop *loops, const char *name, LLVMValueRef from, LLVMValueRef to) {
    const Kernel *k = kc->k;
    for (int d = k->nouter; d < k->ndim; d++) {
        char nm[16];
        snprintf(nm, sizeof nm, d == k->ndim - 1 ? "%s" : "%s%d", name, d);
        bool last = d == k->ndim - 1 && to;
        loop_begin_at(kc->cg, kc->fn, &loops[d], last ? from : ci64(kc->cg, 0), last ? to : kc->ext[d], nm);
        if (d == k->nouter) kc->anchor1 = loops[d].pre;
        kc->v[d] = loops[d].iv;
    }
}

static void nest_begin(KCtx *kc, Loop *loops, const char *name) { nest_range_begin(kc, loops, name, NULL, NULL); }

static void nest_end(KCtx *kc, Loop *loops) {
    const Kernel *k = kc->k;
    forget_level(kc, 2); /* the stores must not be read back by later element loads */
    for (int d = k->ndim - 1; d >= k->nouter; d--) {
        loop_end(kc->cg, &loops[d]);
        kc->v[d] = NULL;
    }
    kc->anchor1 = loops[k->nouter].exit;
}

enum { SHORT_ROW = 32 }; /* columns: a row of fewer is short (see llvm_render) */
enum { SPLIT_LANES = 8 };  /* a short row's columns are split at a multiple of this (emit_loop_kernel) */

/* The context for emitting kernel k into fn, its entry block begun; cols is the column count. */
static KCtx kctx_begin(Cg *cg, const Kernel *k, LLVMValueRef fn, LLVMValueRef cols, int vec_dim) {
    KCtx kc = {.cg = cg, .k = k, .fn = fn, .vec_dim = vec_dim, .cols = cols};
    kc.rows = LLVMGetParam(fn, 0);
    kc.argp = util_calloc((size_t)k->narg + 1, sizeof(LLVMValueRef));
    for (int a = 0; a < k->narg; a++) kc.argp[a] = LLVMGetParam(fn, (unsigned)a + 2);
    kc.scalars = LLVMGetParam(fn, (unsigned)k->narg + 2);
    kc.memo = util_calloc((size_t)k->nx + 1, sizeof(LLVMValueRef));
    kc.memo_level = util_calloc((size_t)k->nx + 1, sizeof(int));
    kc.red = util_calloc((size_t)k->nred + 1, sizeof(LLVMValueRef));
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    for (int d = 0; d < k->ndim; d++) kc.ext[d] = extent(&kc, k->dim[d]);
    return kc;
}

static void kctx_end(KCtx *kc) {
    free(kc->argp);
    free(kc->memo);
    free(kc->memo_level);
    free(kc->red);
}

/* The body of loop kernel k into fn; with fixed_cols > 0 the column count is that constant
 * (the planned one) rather than the parameter. */
static void emit_loop_kernel(Cg *cg, const Kernel *k, LLVMValueRef fn, int64_t fixed_cols) {
    KCtx kc = kctx_begin(cg, k, fn, fixed_cols > 0 ? ci64(cg, fixed_cols) : LLVMGetParam(fn, 1), -1);
    /* accumulators for total sums, and zeroed column sums */
    LLVMValueRef *acc = util_calloc((size_t)k->nout + 1, sizeof(LLVMValueRef));
    bool inner = false;
    for (int o = 0; o < k->nout; o++) {
        const KOut *out = &k->out[o];
        if (out->kind == KO_SUM) {
            acc[o] = LLVMBuildAlloca(cg->b, cg->f32, "acc");
            LLVMBuildStore(cg->b, cf(cg, 0), acc[o]);
        }
        if (out->kind == KO_STORE || out->kind == KO_COLSUM || (out->kind == KO_SUM && k->x[out->expr].level == 2))
            inner = true;
    }
    LLVMValueRef *racc = util_calloc((size_t)k->nred + 1, sizeof(LLVMValueRef));
    for (int r = 0; r < k->nred; r++) racc[r] = LLVMBuildAlloca(cg->b, cg->f32, "red");
    for (int o = 0; o < k->nout; o++) {
        if (k->out[o].kind != KO_COLSUM) continue;
        const KAccess *a = &k->acc[k->out[o].acc];
        LLVMValueRef n = NULL;
        for (int m = 0; m < a->rank; m++) {
            LLVMValueRef e = extent(&kc, a->idx[m].ext);
            n = n ? LLVMBuildNSWMul(cg->b, n, e, "") : e;
        }
        Loop z;
        loop_begin(cg, fn, &z, n ? n : ci64(cg, 1), "zero");
        LLVMBuildStore(cg->b, cf(cg, 0), LLVMBuildInBoundsGEP2(cg->b, cg->f32, kc.argp[a->arg], &z.iv, 1, ""));
        loop_end(cg, &z);
    }
    Loop lo[K_MAX_DIMS], li[K_MAX_DIMS];
    for (int d = 0; d < k->nouter; d++) {
        char nm[16];
        snprintf(nm, sizeof nm, d == 0 ? "i" : "o%d", d);
        loop_begin(cg, fn, &lo[d], kc.ext[d], nm);
        if (d == 0) kc.anchor0 = lo[0].pre;
        kc.v[d] = lo[d].iv;
    }
    kc.anchor1 = lo[k->nouter - 1].body;
    for (int ph = 0; ph < k->nphase; ph++) {
        for (int r = 0; r < k->nred; r++)
            if (k->red[r].phase == ph) LLVMBuildStore(cg->b, red_init(cg, k->red[r].op), racc[r]);
        nest_begin(&kc, li, "r");
        for (int r = 0; r < k->nred; r++) {
            if (k->red[r].phase != ph) continue;
            LLVMValueRef v = emit_expr(&kc, k->red[r].expr);
            LLVMValueRef old = LLVMBuildLoad2(cg->b, cg->f32, racc[r], "");
            LLVMBuildStore(cg->b, red_step(cg, k->red[r].op, old, v, false), racc[r]);
        }
        nest_end(&kc, li);
        for (int r = 0; r < k->nred; r++)
            if (k->red[r].phase == ph) kc.red[r] = LLVMBuildLoad2(cg->b, cg->f32, racc[r], "");
    }
    for (int o = 0; o < k->nout; o++) { /* per outer point */
        const KOut *out = &k->out[o];
        if (out->kind == KO_STORE_ROW) LLVMBuildStore(cg->b, emit_expr(&kc, out->expr), out_ptr(&kc, out->acc));
        if (out->kind == KO_SUM && k->x[out->expr].level < 2) {
            LLVMValueRef old = LLVMBuildLoad2(cg->b, cg->f32, acc[o], "");
            LLVMBuildStore(cg->b, FADD(old, emit_expr(&kc, out->expr)), acc[o]);
        }
    }
    /* A planned short row whose count is not a multiple of 8 is done in two loops, the first
     * 8-multiple columns and the rest: with one loop of 20, LLVM vectorises by 4 (no tail);
     * split, 16 + 4 (AVX-512) or 8 + 8 + 4.  Each element's value and each column sum's order
     * are the same. */
    int64_t split = k->nouter < k->ndim && fixed_cols > SPLIT_LANES && fixed_cols % SPLIT_LANES ? fixed_cols / SPLIT_LANES * SPLIT_LANES : 0;
    for (int part = 0; inner && part < (split ? 2 : 1); part++) {
        if (split)
            nest_range_begin(&kc, li, part ? "jt" : "j", ci64(cg, part ? split : 0), ci64(cg, part ? fixed_cols : split));
        else
            nest_begin(&kc, li, "j");
        for (int o = 0; o < k->nout; o++) {
            const KOut *out = &k->out[o];
            switch (out->kind) {
            case KO_STORE: LLVMBuildStore(cg->b, emit_expr(&kc, out->expr), out_ptr(&kc, out->acc)); break;
            case KO_COLSUM: {
                LLVMValueRef p = out_ptr(&kc, out->acc);
                LLVMValueRef v = emit_expr(&kc, out->expr);
                LLVMBuildStore(cg->b, FADD(LLVMBuildLoad2(cg->b, cg->f32, p, ""), v), p);
                break;
            }
            case KO_SUM:
                if (k->x[out->expr].level == 2) {
                    LLVMValueRef old = LLVMBuildLoad2(cg->b, cg->f32, acc[o], "");
                    LLVMBuildStore(cg->b, red_step(cg, KR_SUM, old, emit_expr(&kc, out->expr), true), acc[o]);
                }
                break;
            case KO_STORE_ROW: break;
            }
        }
        nest_end(&kc, li);
    }
    forget_level(&kc, 1);
    for (int d = k->nouter - 1; d >= 0; d--) {
        loop_end(cg, &lo[d]);
        kc.v[d] = NULL;
    }
    for (int o = 0; o < k->nout; o++)
        if (k->out[o].kind == KO_SUM) {
            LLVMValueRef idx = ci64(cg, 0);
            LLVMValueRef p = LLVMBuildInBoundsGEP2(cg->b, cg->f32, kc.argp[k->out[o].arg], &idx, 1, "");
            LLVMBuildStore(cg->b, LLVMBuildLoad2(cg->b, cg->f32, acc[o], ""), p);
        }
    LLVMBuildRetVoid(cg->b);
    free(acc);
    free(racc);
    kctx_end(&kc);
}

/* ---- window reductions, channels innermost ---- */

enum { VEC_MIN = 8, VEC_MAX = 4096 }; /* the channel counts emit_channel_kernel takes */

/* A kernel that reduces over small constant inner dims (a pooling window; the patches that
 * read an input element) for every outer point [.., c], whose last outer dim c is the last
 * index of every access that uses it (channels last): the nest above would put the window
 * loops innermost, a few iterations of scalar code per output, with the channels outside
 * them.  emit_channel_kernel turns it inside out instead. */
static bool channel_innermost(const Kernel *k) {
    if (k->nouter < 2 || k->nred == 0) return false;
    int c = k->nouter - 1;
    if (k->dim[c].batch || k->dim[c].cols || k->dim[c].n < VEC_MIN || k->dim[c].n > VEC_MAX) return false;
    for (int d = k->nouter; d < k->ndim; d++)
        if (k->dim[d].batch || k->dim[d].cols) return false;
    for (int o = 0; o < k->nout; o++)
        if (k->out[o].kind != KO_STORE_ROW) return false;
    for (int i = 0; i < k->nx; i++)
        if (k->x[i].op == KX_RANDOM) return false;
    for (int a = 0; a < k->nacc; a++) {
        const KAccess *ac = &k->acc[a];
        for (int m = 0; m + 1 < ac->rank; m++)
            if (ac->idx[m].coef[c]) return false;
    }
    return true;
}

/* Loop over the channel dim c = kc->vec_dim; the caller fills the body and calls chan_end. */
static void chan_begin(KCtx *kc, Loop *l) {
    loop_begin(kc->cg, kc->fn, l, kc->ext[kc->vec_dim], "c");
    kc->v[kc->vec_dim] = l->iv;
}

static void chan_end(KCtx *kc, Loop *l) {
    forget_level(kc, 1); /* per-point and per-element values hold this c */
    loop_end(kc->cg, l);
    kc->v[kc->vec_dim] = NULL;
}

static LLVMValueRef chan_slot(KCtx *kc, LLVMValueRef row) {
    LLVMValueRef idx[2] = {ci64(kc->cg, 0), kc->v[kc->vec_dim]};
    return LLVMBuildInBoundsGEP2(kc->cg->b, LLVMGetAllocatedType(row), row, idx, 2, "");
}

/* A channel_innermost kernel: for each outer point but the channel, per reduction phase
 * { every channel's accumulator set; for the window's positions { for c { accumulate } } },
 * then for c { the outputs }.  The accumulators are a row of C floats on the stack; each
 * output element still adds its window positions in the same order, so the results are the
 * ones emit_loop_kernel's nest gives, bit for bit, while the c loop vectorises (maxpool's
 * gradient over 32 channels: scalar code before). */
static void emit_channel_kernel(Cg *cg, const Kernel *k, LLVMValueRef fn) {
    KCtx kc = kctx_begin(cg, k, fn, LLVMGetParam(fn, 1), k->nouter - 1);
    LLVMTypeRef row_ty = LLVMArrayType2(cg->f32, (uint64_t)k->dim[kc.vec_dim].n);
    LLVMValueRef *racc = util_calloc((size_t)k->nred + 1, sizeof(LLVMValueRef));
    for (int r = 0; r < k->nred; r++) {
        racc[r] = LLVMBuildAlloca(cg->b, row_ty, "red");
        LLVMSetAlignment(racc[r], 64);
    }
    Loop lo[K_MAX_DIMS], li[K_MAX_DIMS], lc;
    for (int d = 0; d < kc.vec_dim; d++) {
        char nm[16];
        snprintf(nm, sizeof nm, d == 0 ? "i" : "o%d", d);
        loop_begin(cg, fn, &lo[d], kc.ext[d], nm);
        if (d == 0) kc.anchor0 = lo[0].pre;
        kc.v[d] = lo[d].iv;
    }
    kc.anchor1 = NULL; /* a per-point value depends on c: emitted where it is used */
    for (int ph = 0; ph < k->nphase; ph++) {
        chan_begin(&kc, &lc);
        for (int r = 0; r < k->nred; r++)
            if (k->red[r].phase == ph) LLVMBuildStore(cg->b, red_init(cg, k->red[r].op), chan_slot(&kc, racc[r]));
        chan_end(&kc, &lc);
        for (int d = k->nouter; d < k->ndim; d++) {
            char nm[16];
            snprintf(nm, sizeof nm, "r%d", d);
            loop_begin(cg, fn, &li[d], kc.ext[d], nm);
            kc.v[d] = li[d].iv;
        }
        chan_begin(&kc, &lc);
        for (int r = 0; r < k->nred; r++)
            if (k->red[r].phase < ph) kc.red[r] = LLVMBuildLoad2(cg->b, cg->f32, chan_slot(&kc, racc[r]), "");
        for (int r = 0; r < k->nred; r++) {
            if (k->red[r].phase != ph) continue;
            LLVMValueRef v = emit_expr(&kc, k->red[r].expr), slot = chan_slot(&kc, racc[r]);
            LLVMBuildStore(cg->b, red_step(cg, k->red[r].op, LLVMBuildLoad2(cg->b, cg->f32, slot, ""), v, false), slot);
        }
        chan_end(&kc, &lc);
        for (int d = k->ndim - 1; d >= k->nouter; d--) {
            loop_end(cg, &li[d]);
            kc.v[d] = NULL;
        }
    }
    chan_begin(&kc, &lc);
    for (int r = 0; r < k->nred; r++) kc.red[r] = LLVMBuildLoad2(cg->b, cg->f32, chan_slot(&kc, racc[r]), "");
    for (int o = 0; o < k->nout; o++) LLVMBuildStore(cg->b, emit_expr(&kc, k->out[o].expr), out_ptr(&kc, k->out[o].acc));
    chan_end(&kc, &lc);
    for (int d = kc.vec_dim - 1; d >= 0; d--) {
        loop_end(cg, &lo[d]);
        kc.v[d] = NULL;
    }
    LLVMBuildRetVoid(cg->b);
    free(racc);
    kctx_end(&kc);
}

static LLVMValueRef declare_kernel(Cg *cg, const Kernel *k, const char *name) {
    LLVMTypeRef *params = util_calloc((size_t)k->narg + 3, sizeof(LLVMTypeRef));
    params[0] = cg->i64;
    params[1] = cg->i64;
    for (int a = 0; a < k->narg; a++) params[a + 2] = cg->ptr;
    params[k->narg + 2] = cg->ptr;
    LLVMTypeRef ty = LLVMFunctionType(cg->vd, params, (unsigned)k->narg + 3, 0);
    free(params);
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, ty);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_attr(cg, fn, LLVMAttributeFunctionIndex, "noinline", 0);
    add_attr(cg, fn, LLVMAttributeFunctionIndex, "nounwind", 0);
    for (int a = 0; a <= k->narg; a++) { /* attribute index 1 is the first parameter */
        add_attr(cg, fn, (unsigned)a + 3, "noalias", 0);
        add_attr(cg, fn, (unsigned)a + 3, "nocapture", 0);
        if (a < k->narg) add_attr(cg, fn, (unsigned)a + 3, "align", 64);
    }
    return fn;
}

static bool init_native(char *err, size_t nerr) {
    static int done, ok;
    if (!done) {
        done = 1;
        ok = !LLVMInitializeNativeTarget() && !LLVMInitializeNativeAsmPrinter() && !LLVMInitializeNativeAsmParser();
    }
    if (!ok) snprintf(err, nerr, "LLVM has no code generator for this machine");
    return ok;
}

/* A target machine for the host triple: the host CPU (cpu NULL or "host") or a named one. */
static LLVMTargetMachineRef make_tm(const char *cpu_name, char *err, size_t nerr) {
    char *triple = LLVMGetDefaultTargetTriple(), *msg = NULL;
    LLVMTargetRef target;
    if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
        snprintf(err, nerr, "LLVM: %s", msg);
        LLVMDisposeMessage(msg);
        LLVMDisposeMessage(triple);
        return NULL;
    }
    bool host = !cpu_name || !strcmp(cpu_name, "host");
    char *cpu = host ? LLVMGetHostCPUName() : NULL, *hostf = host ? LLVMGetHostCPUFeatures() : NULL;
    /* No gathers or scatters: the vectoriser otherwise turns a short row's fully unrolled
     * columns into a row loop of strided AVX-512 scatters, microcoded on AMD's Zen 4 (xsec_bnn's
     * bias + PReLU: 26 us a call against 2.5 with plain vector stores). */
    StrBuf features = {0};
    if (host && *hostf) sb_printf(&features, "%s,", hostf);
    sb_puts(&features, "+prefer-no-gather,+prefer-no-scatter");
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, host ? cpu : cpu_name, sb_str(&features),
                                                      LLVMCodeGenLevelAggressive, LLVMRelocPIC, LLVMCodeModelDefault);
    sb_free(&features);
    if (host) {
        LLVMDisposeMessage(cpu);
        LLVMDisposeMessage(hostf);
    }
    LLVMDisposeMessage(triple);
    if (!tm) snprintf(err, nerr, "LLVM cannot create a target machine for CPU '%s'", host ? "host" : cpu_name);
    return tm;
}

static LLVMTargetMachineRef host_tm(char *err, size_t nerr) { return make_tm(NULL, err, nerr); }

bool llvm_short_row(const Kernel *k) { return k->kind == K_LOOP && k->dim[k->ndim - 1].cols && kernel_cols(k) < SHORT_ROW; }

bool llvm_known_cpu(const char *cpu) {
    static const char *const known[] = {"host", "x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (!strcmp(cpu, known[i])) return true;
    return false;
}

LlvmModule *llvm_render(const Plan *p, const char *cpu, bool planned_only, char *err, size_t nerr) {
    if (!init_native(err, nerr)) return NULL;
    LlvmModule *m = util_calloc(1, sizeof *m);
    m->tm = make_tm(cpu, err, nerr);
    if (!m->tm) {
        free(m);
        return NULL;
    }
    m->tsc = LLVMOrcCreateNewThreadSafeContext();
    m->ctx = LLVMOrcThreadSafeContextGetContext(m->tsc);
    m->mod = LLVMModuleCreateWithNameInContext("nnc", m->ctx);
    char *triple = LLVMGetTargetMachineTriple(m->tm);
    LLVMSetTarget(m->mod, triple);
    LLVMDisposeMessage(triple);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(m->tm);
    LLVMSetModuleDataLayout(m->mod, td);
    LLVMDisposeTargetData(td);

    Cg cgv = {.ctx = m->ctx, .mod = m->mod}, *cg = &cgv;
    cg->b = LLVMCreateBuilderInContext(m->ctx);
    cg->f32 = LLVMFloatTypeInContext(m->ctx);
    cg->i32 = LLVMInt32TypeInContext(m->ctx);
    cg->i64 = LLVMInt64TypeInContext(m->ctx);
    cg->i1 = LLVMInt1TypeInContext(m->ctx);
    cg->ptr = LLVMPointerTypeInContext(m->ctx, 0);
    cg->vd = LLVMVoidTypeInContext(m->ctx);
    cg->math_ty = LLVMFunctionType(cg->f32, &cg->f32, 1, 0);
    cg->sqrt_fn = intrinsic(cg, "llvm.sqrt", &cg->sqrt_ty);
    cg->fabs_fn = intrinsic(cg, "llvm.fabs", &cg->fabs_ty);
    cg->rint_fn = intrinsic(cg, "llvm.rint", &cg->rint_ty);
    unsigned trap_id = LLVMLookupIntrinsicID("llvm.trap", 9);
    cg->trap_ty = LLVMIntrinsicGetType(cg->ctx, trap_id, NULL, 0);
    cg->trap_fn = LLVMGetIntrinsicDeclaration(cg->mod, trap_id, NULL, 0);
    build_exp(cg);
    build_expm1(cg);
    build_log(cg);
    build_log1p(cg);
    build_tanh(cg);
    build_erfc(cg);

    /* Each loop kernel whose last dim is the run-time column count, planned below
     * SHORT_ROW, also gets a copy for its planned count, a constant there, which the entry
     * calls when the count is that one (always, unless pruning has narrowed the layer): short
     * rows (a 20-unit layer) then unroll in full, and column sums stay in registers across the
     * rows (xsec_bnn's PReLU backward: about 10 -> 5 us).  Longer rows vectorise well as they are.
     * With planned_only (the JIT) the copy for any count is left out: a third of the module
     * (diabetes_bnn compiles in 0.13 s instead of 0.25-0.29 on a Zen 4). */
    LLVMValueRef *kfn = util_calloc((size_t)p->nkernel + 1, sizeof(LLVMValueRef));
    LLVMValueRef *kfixed = util_calloc((size_t)p->nkernel + 1, sizeof(LLVMValueRef));
    for (int i = 0; i < p->nkernel; i++) {
        const Kernel *k = &p->kernel[i];
        if (k->kind != K_LOOP) continue;
        bool short_row = llvm_short_row(k);
        if (!short_row || !planned_only) {
            kfn[i] = declare_kernel(cg, k, k->name);
            if (channel_innermost(k))
                emit_channel_kernel(cg, k, kfn[i]);
            else
                emit_loop_kernel(cg, k, kfn[i], 0);
        }
        if (short_row) {
            char name[96];
            snprintf(name, sizeof name, "%s_c%lld", k->name, (long long)kernel_cols(k));
            kfixed[i] = declare_kernel(cg, k, name);
            emit_loop_kernel(cg, k, kfixed[i], kernel_cols(k));
        }
    }
    /* entry wrappers and the kernel table */
    LLVMTypeRef ep[4] = {cg->ptr, cg->ptr, cg->i64, cg->i64};
    LLVMTypeRef entry_ty = LLVMFunctionType(cg->vd, ep, 4, 0);
    LLVMValueRef *entries = util_calloc((size_t)p->nkernel + 1, sizeof(LLVMValueRef));
    for (int i = 0; i < p->nkernel; i++) {
        const Kernel *k = &p->kernel[i];
        if (k->kind != K_LOOP) {
            entries[i] = LLVMConstNull(cg->ptr);
            continue;
        }
        char name[96];
        snprintf(name, sizeof name, "%s_entry", k->name);
        LLVMValueRef fn = LLVMAddFunction(m->mod, name, entry_ty);
        LLVMSetLinkage(fn, LLVMInternalLinkage);
        LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(m->ctx, fn, "entry"));
        LLVMValueRef *args = util_calloc((size_t)k->narg + 3, sizeof(LLVMValueRef));
        args[0] = LLVMGetParam(fn, 2);
        args[1] = LLVMGetParam(fn, 3);
        for (int a2 = 0; a2 < k->narg; a2++) {
            LLVMValueRef idx = ci64(cg, a2);
            LLVMValueRef slot = LLVMBuildInBoundsGEP2(cg->b, cg->ptr, LLVMGetParam(fn, 0), &idx, 1, "");
            args[a2 + 2] = LLVMBuildLoad2(cg->b, cg->ptr, slot, p->buf[k->arg[a2].buf].name);
        }
        args[k->narg + 2] = LLVMGetParam(fn, 1);
        if (kfixed[i]) {
            LLVMBasicBlockRef fixed = LLVMAppendBasicBlockInContext(m->ctx, fn, "planned_cols");
            LLVMBasicBlockRef other = LLVMAppendBasicBlockInContext(m->ctx, fn, "other_cols");
            LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, args[1], ci64(cg, kernel_cols(k)), ""), fixed, other);
            LLVMPositionBuilderAtEnd(cg->b, fixed);
            LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(kfixed[i]), kfixed[i], args, (unsigned)k->narg + 3, "");
            LLVMBuildRetVoid(cg->b);
            LLVMPositionBuilderAtEnd(cg->b, other);
        }
        if (kfn[i]) {
            LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(kfn[i]), kfn[i], args, (unsigned)k->narg + 3, "");
            LLVMBuildRetVoid(cg->b);
        } else { /* planned_only: another count cannot happen */
            LLVMBuildCall2(cg->b, cg->trap_ty, cg->trap_fn, NULL, 0, "");
            LLVMBuildUnreachable(cg->b);
        }
        free(args);
        entries[i] = fn;
    }
    LLVMTypeRef table_ty = LLVMArrayType2(cg->ptr, (uint64_t)p->nkernel);
    LLVMValueRef table = LLVMAddGlobal(m->mod, table_ty, "nnc_kernels");
    LLVMSetInitializer(table, LLVMConstArray2(cg->ptr, entries, (uint64_t)p->nkernel));
    LLVMSetGlobalConstant(table, 1);
    free(entries);
    free(kfn);
    free(kfixed);
    LLVMDisposeBuilder(cg->b);

    char *msg = NULL;
    if (LLVMVerifyModule(m->mod, LLVMReturnStatusAction, &msg)) {
        fprintf(stderr, "%s\n", msg);
        NNC_BUG("generated LLVM module does not verify");
    }
    LLVMDisposeMessage(msg);
    LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(opts, 1);
    LLVMPassBuilderOptionsSetSLPVectorization(opts, 1);
    LLVMErrorRef e = LLVMRunPasses(m->mod, "default<O3>", m->tm, opts);
    LLVMDisposePassBuilderOptions(opts);
    if (e) {
        char *em = LLVMGetErrorMessage(e);
        snprintf(err, nerr, "LLVM optimisation failed: %s", em);
        LLVMDisposeErrorMessage(em);
        llvm_module_free(m);
        return NULL;
    }
    return m;
}

void llvm_module_free(LlvmModule *m) {
    if (!m) return;
    if (m->mod) LLVMDisposeModule(m->mod);
    if (m->tm) LLVMDisposeTargetMachine(m->tm);
    if (m->tsc) LLVMOrcDisposeThreadSafeContext(m->tsc);
    free(m);
}

char *llvm_print_ir(LlvmModule *m) {
    char *s = LLVMPrintModuleToString(m->mod);
    char *r = util_strdup(s);
    LLVMDisposeMessage(s);
    return r;
}

char *llvm_emit_asm(LlvmModule *m, char *err, size_t nerr) {
    LLVMMemoryBufferRef buf;
    char *msg = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(m->tm, m->mod, LLVMAssemblyFile, &msg, &buf)) {
        snprintf(err, nerr, "LLVM: %s", msg);
        LLVMDisposeMessage(msg);
        return NULL;
    }
    size_t n = LLVMGetBufferSize(buf);
    char *r = util_realloc(NULL, n + 1);
    memcpy(r, LLVMGetBufferStart(buf), n);
    r[n] = 0;
    LLVMDisposeMemoryBuffer(buf);
    return r;
}

int llvm_emit_object(LlvmModule *m, const char *path, char *err, size_t nerr) {
    char *msg = NULL;
    if (LLVMTargetMachineEmitToFile(m->tm, m->mod, path, LLVMObjectFile, &msg)) {
        snprintf(err, nerr, "LLVM: writing %s: %s", path, msg);
        LLVMDisposeMessage(msg);
        return -1;
    }
    return 0;
}

int llvm_emit_data_object(const char *path, const char *cpu, const char *const *names, const char *const *texts,
                          int n, const char *u64_name, uint64_t u64, char *err, size_t nerr) {
    if (!init_native(err, nerr)) return -1;
    LLVMTargetMachineRef tm = make_tm(cpu, err, nerr);
    if (!tm) return -1;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("nnc_data", ctx);
    char *triple = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(mod, triple);
    LLVMDisposeMessage(triple);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(mod, td);
    LLVMDisposeTargetData(td);
    for (int i = 0; i < n; i++) {
        LLVMValueRef s = LLVMConstStringInContext2(ctx, texts[i], strlen(texts[i]), 0); /* with its NUL */
        LLVMValueRef g = LLVMAddGlobal(mod, LLVMTypeOf(s), names[i]);
        LLVMSetInitializer(g, s);
        LLVMSetGlobalConstant(g, 1);
    }
    LLVMTypeRef i64 = LLVMInt64TypeInContext(ctx);
    LLVMValueRef g = LLVMAddGlobal(mod, i64, u64_name);
    LLVMSetInitializer(g, LLVMConstInt(i64, u64, 0));
    LLVMSetGlobalConstant(g, 1);
    char *msg = NULL;
    int rc = 0;
    if (LLVMTargetMachineEmitToFile(tm, mod, path, LLVMObjectFile, &msg)) {
        snprintf(err, nerr, "LLVM: writing %s: %s", path, msg);
        LLVMDisposeMessage(msg);
        rc = -1;
    }
    LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    LLVMDisposeTargetMachine(tm);
    return rc;
}

static bool jit_error(LLVMErrorRef e, const char *what, char *err, size_t nerr) {
    if (!e) return false;
    char *em = LLVMGetErrorMessage(e);
    snprintf(err, nerr, "LLVM JIT: %s: %s", what, em);
    LLVMDisposeErrorMessage(em);
    return true;
}

LlvmJit *llvm_jit(LlvmModule *m, const KernelEntry **table, char *err, size_t nerr) {
    LlvmJit *j = util_calloc(1, sizeof *j);
    char emsg[256];
    LLVMTargetMachineRef tm = host_tm(emsg, sizeof emsg);
    if (!tm) {
        snprintf(err, nerr, "%s", emsg);
        free(j);
        llvm_module_free(m);
        return NULL;
    }
    LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(jb, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
    if (jit_error(LLVMOrcCreateLLJIT(&j->jit, jb), "create", err, nerr)) {
        free(j);
        llvm_module_free(m);
        return NULL;
    }
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->jit);
    LLVMOrcDefinitionGeneratorRef gen;
    if (!jit_error(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(j->jit), NULL, NULL),
                   "process symbols", err, nerr))
        LLVMOrcJITDylibAddGenerator(jd, gen);
    else
        goto fail;
    j->tsc = m->tsc;
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(m->mod, m->tsc);
    m->mod = NULL;
    m->tsc = NULL;
    llvm_module_free(m);
    m = NULL;
    if (jit_error(LLVMOrcLLJITAddLLVMIRModule(j->jit, jd, tsm), "add module", err, nerr)) goto fail;
    LLVMOrcExecutorAddress addr = 0;
    if (jit_error(LLVMOrcLLJITLookup(j->jit, &addr, "nnc_kernels"), "nnc_kernels", err, nerr)) goto fail;
    *table = (const KernelEntry *)(uintptr_t)addr;
    return j;
fail:
    llvm_module_free(m);
    llvm_jit_free(j);
    return NULL;
}

void llvm_jit_free(LlvmJit *j) {
    if (!j) return;
    if (j->jit) LLVMOrcDisposeLLJIT(j->jit);
    if (j->tsc) LLVMOrcDisposeThreadSafeContext(j->tsc);
    free(j);
}
