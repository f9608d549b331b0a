/* kernel.h: the kernel plan, the backend-neutral data that every renderer consumes.
 *
 * A plan is a list of buffers (with arena offsets), a list of kernels and, per program
 * (train, grad, eval), the kernels to run in order.  A kernel is either a GEMM (done by
 * BLAS) or a loop kernel over an N-d iteration space.  A loop kernel is described, not coded:
 *   - its domain: dims 0..ndim-1 (dim 0 outermost; dim 0 may be the run-time batch, and the
 *     last dim's extent is a run-time value of the CPU kernels), split into outer dims
 *     [0, nouter) and inner dims [nouter, ndim);
 *   - KAccess: how an argument is indexed: per tensor dim an affine map of the domain's
 *     indices, optionally divided (the gathers of strided input gradients) and bounded (padding:
 *     outside the tensor the value is 0), so x[b, oh*s + kh - p, ow*s + kw - p, c] is an
 *     ordinary load;
 *   - KExpr: a small SSA expression DAG of scalar float operations over loads, run-time scalar
 *     slots, constants and the domain's indices and extents;
 *   - KRed: reductions over the inner dims, per outer point (sum, max, min), that later
 *     expressions may use; a reduction's phase is one more than the deepest reduction it reads;
 *   - KOut: what is written: an element per domain point, a value per outer point, a sum into
 *     the elements of an access that leaves dims out (column sums: over the batch), or a total.
 * Renderers turn this into loops (render_llvm.c) or CUDA C (render_cuda.c); ref.c never sees
 * it, so the reference stays an independent oracle.  Built by plan.c from per-op definitions
 * in opkernels.c. */
#ifndef NNC_KERNEL_H
#define NNC_KERNEL_H

#include "ir.h"

typedef enum {
    KX_CONST,  /* imm */
    KX_LOAD,   /* access `arg` (Kernel.acc) */
    KX_SCALAR, /* run-time scalar slot `arg` */
    KX_INDEX,  /* the index of domain dim `arg`, as a float */
    KX_ROWS,   /* the number of rows in this call, as a float */
    KX_EXTENT, /* the extent of domain dim `arg`, as a float (the last one is a run-time value of the CPU kernels) */
    KX_RED,    /* the value of reduction `arg` for the current outer point */
    KX_RANDOM, /* uniform in [0, 1) for the current element: Philox-4x32-10 (runtime/philox.h) of
                  (the element's row-major index in the domain, stream `arg`, step b + 2^24 c;
                  seed a), where a, b, c are whole numbers below 2^24 */
    /* unary */
    KX_NEG, KX_ABS, KX_EXP, KX_EXPM1, KX_LOG, KX_LOG1P, KX_SQRT, KX_TANH, KX_ERFC,
    /* binary */
    KX_ADD, KX_SUB, KX_MUL, KX_DIV, KX_MAX, KX_MIN,
    KX_LT, KX_LE, KX_GT, KX_GE, KX_EQ, KX_NE, /* 1.0 or 0.0 */
    /* ternary */
    KX_SELECT, /* a != 0 ? b : c */
    KX_COUNT
} KxOp;

enum { K_MAX_DIMS = 8 };

/* An extent: a constant n, or n times the run-time batch size, or (CPU kernels) the run-time
 * column count, whose planned value is n. */
typedef struct {
    int64_t n;
    bool batch; /* rows * n */
    bool cols;  /* the run-time column count of the call (a loop domain's last dim) */
} KDim;

/* One tensor dim of an access: index = (sum_d coef[d] * v_d + off) / div.  With div > 1 the
 * element exists only where the division is exact; with `bounded`, only where 0 <= index <
 * ext; elsewhere a load reads 0 (and no store may go there). */
typedef struct {
    int64_t coef[K_MAX_DIMS];
    int64_t off, div;
    KDim ext;
    bool bounded;
} KIdx;

typedef struct {
    int arg; /* kernel argument */
    int rank;
    KIdx idx[K_MAX_DIMS]; /* row-major: the last one varies fastest */
} KAccess;

/* The usual accesses of a domain [rows, ..., cols]: every element, a vector over the last
 * dim (per neuron or channel), a value per row, a scalar. */
typedef enum { IX_ELEM, IX_ROW, IX_COL, IX_SCALAR } IndexMode; /* x[...], v[j], v[i], s[0] */

typedef struct {
    KxOp op;
    int a, b, c;  /* operand expression ids */
    float imm;    /* KX_CONST */
    int arg;      /* KX_LOAD: access; KX_SCALAR: slot; KX_RED: reduction; KX_INDEX, KX_EXTENT: dim */
    int level;    /* 0: same for the whole kernel, 1: per outer point, 2: per element */
    int phase;    /* computable once the reductions of phases < phase are done */
} KExpr;

typedef enum { KR_SUM, KR_MAX, KR_MIN } KRedOp;
typedef struct {
    KRedOp op;
    int expr;
    int phase;
} KRed;

/* STORE: at every domain point; STORE_ROW: once per outer point (its access uses outer dims
 * only); COLSUM: added into the access's element (zeroed first), whose dims are a subset of
 * the domain's, each indexed by one domain dim; SUM: the total into arg[0]. */
typedef enum { KO_STORE, KO_STORE_ROW, KO_COLSUM, KO_SUM } KOutKind;
typedef struct {
    KOutKind kind;
    int arg;
    int acc; /* the access written (-1 for SUM) */
    int expr;
} KOut;

typedef struct {
    int buf;
    DType dtype;
    bool read, write;
} KArg;

typedef enum { K_LOOP, K_GEMM } KernelKind;

/* How a loop kernel is spread over GPU threads; the planner chooses, renderers follow. */
typedef enum {
    CS_ELEM, /* a thread per element (i, j), grid-stride */
    CS_COL,  /* a thread per column j, looping over the rows (column sums stay in order) */
    CS_ROW,  /* a thread per row i, looping over the columns (row reductions) */
} CudaSched;

typedef struct {
    CudaSched sched;
    int threads;    /* per block, a power of two */
    int max_blocks; /* grid = min(ceil(work / threads), max_blocks), work = rows*cols, cols or rows */
    int nsum;       /* total-sum outputs: one partial per block, added in order by a second kernel */
} CudaLaunch;

typedef struct {
    KernelKind kind;
    const char *name; /* k3_relu, k1_bias_add_relu_gate */
    int node;         /* the IR node it computes (the last one, when fused) */
    const int *member; /* the IR nodes it computes, in order */
    int nmember;
    Op op;
    SrcLoc loc;
    KArg *arg;
    int narg;
    /* K_LOOP */
    int ndim, nouter;
    KDim dim[K_MAX_DIMS];
    KAccess *acc;
    int nacc;
    KExpr *x;
    int nx;
    KRed *red;
    int nred, nphase;
    KOut *out;
    int nout;
    /* K_GEMM: C = op(A) op(B), row-major; args 0, 1, 2 are A, B, C; a batched dim is rows * n */
    bool ta, tb;
    KDim m, n, k;
    CudaLaunch cuda; /* K_LOOP */
} Kernel;

/* What a buffer holds, for the memory accounting: trained weights, optimiser state, a batch of
 * data, gradients of the weights, forward values kept for the backward pass (saved
 * activations), and everything else (workspace).  The last three share the liveness-planned
 * part of the arena. */
typedef enum { BUF_WEIGHT, BUF_STATE, BUF_INPUT, BUF_GRAD, BUF_SAVED, BUF_TEMP, BUF_KINDS } BufKind;
extern const char *const buf_kind_name[BUF_KINDS];

typedef struct {
    const char *name;
    BufKind kind;
    DType dtype;
    bool batched;
    int64_t elems; /* per sample if batched, else in total */
    int64_t bytes; /* at the planned maximum batch */
    int64_t offset;
    int node;   /* the node that owns it */
    int weight; /* BUF_WEIGHT / BUF_STATE: index in the graph's weight table */
    int first, last; /* live range in node order */
    bool grad_block; /* a weight's gradient, in the plan's gradient block */
} Buffer;

/* A program's kernels, in order (Program, ir.h: a training step runs grad then update; the
 * runtime checks the loss between them). */
typedef struct {
    const char *name;
    bool train; /* run in training mode (SC_TRAIN = 1) */
    int after;  /* the program it runs right after, or -1 */
    int *kernel;
    int nkernel;
} ProgramPlan;

typedef struct Plan {
    const Graph *g;
    const char *path; /* the model file, for comments in generated code */
    int64_t max_batch;
    Buffer *buf;
    int nbuf, capbuf;
    int *node_buf; /* node id -> buffer, or -1 (constants, scalars, updates) */
    Kernel *kernel;
    int nkernel, capkernel;
    ProgramPlan *prog; /* one per Graph.prog, same indices */
    int nprog;
    int64_t arena_bytes, persistent_bytes;
    /* The weights' gradients lie side by side in [grad_offset, grad_offset + grad_bytes) of the
     * arena (alignment gaps zero), live for the whole step: one block that a data-parallel
     * all-reduce sums in one call (dist.h). */
    int64_t grad_offset, grad_bytes;
    int64_t cuda_workspace; /* floats of per-block partial sums the CUDA device needs */
    int64_t bytes_by_kind[BUF_KINDS];  /* the sum of the buffers of each kind */
    int64_t peak_by_kind[BUF_KINDS];   /* at most this much of each is live at once */
} Plan;

/* Whether a loop kernel's outer dim 0 is the run-time batch; its last dim's planned extent. */
static inline bool kernel_batched(const Kernel *k) { return k->dim[0].batch; }
static inline int64_t kernel_cols(const Kernel *k) { return k->dim[k->ndim - 1].n; }
/* The planned value of an extent at `rows` rows. */
static inline int64_t kdim_value(KDim d, int64_t rows) { return d.batch ? rows * d.n : d.n; }

/* ---- building loop kernels (used by plan.c and opkernels.c) ---- */
typedef struct KBuilder {
    const Plan *plan;
    Kernel *k;
    int capx, capred, capout, caparg, capacc;
} KBuilder;

/* The domain: [rows or 1, ...inner] with `nouter` outer dims; the last dim is the run-time
 * column count.  Set before anything else is built. */
void kb_domain(KBuilder *kb, bool batched, const int64_t *inner, int ninner, int nouter);
int kb_arg(KBuilder *kb, int buf, bool read, bool write);
int kb_const(KBuilder *kb, double v);
int kb_scalar(KBuilder *kb, int slot);
int kb_index(KBuilder *kb, int dim);
int kb_rows(KBuilder *kb);
int kb_extent(KBuilder *kb, int dim);
/* x divided by each extent of the domain, the last first, then by the rows when batched:
 * x / numel, in the order the 2-D kernels have always computed it. */
int kb_per_element(KBuilder *kb, int x);
/* An access of argument `arg` (deduplicated), and the standard ones of the domain. */
int kb_access(KBuilder *kb, const KAccess *a);
int kb_std_access(KBuilder *kb, int arg, IndexMode ix);
int kb_load(KBuilder *kb, int acc);
int kb_load_arg(KBuilder *kb, int arg, IndexMode ix);
int kb_un(KBuilder *kb, KxOp op, int a);
int kb_bin(KBuilder *kb, KxOp op, int a, int b);
int kb_select(KBuilder *kb, int c, int a, int b);
int kb_red(KBuilder *kb, KRedOp op, int expr); /* returns an expression reading it */
int kb_random(KBuilder *kb, int seed, int step_lo, int step_hi, int stream);
int kb_load_red(KBuilder *kb, int red);
void kb_out(KBuilder *kb, KOutKind kind, int arg, int expr); /* at the kind's standard access */
void kb_out_at(KBuilder *kb, KOutKind kind, int acc, int expr); /* not KO_SUM */
/* An IR node's value inside the kernel being built: a load (the standard access its shape
 * has against the kernel's domain), an immediate for constants, a slot for run-time scalars. */
int kb_node(KBuilder *kb, int node);
/* The domain an elementwise kernel over a value of shape s loops over: [rows or 1, n] for a
 * per-sample rank below 2 or an unbatched value, else [rows, n / last, last], so that a vector
 * over the last dim (a bias or gate per channel) is a load of the last index. */
void kb_domain_of(KBuilder *kb, Shape s);

/* Per-op definitions (opkernels.c): the loop kernel computing a group of nodes (fuse.c), given
 * in node order; `stored[node]` says which values are written out. */
void opk_build_group(KBuilder *kb, const int *member, int nmember, const bool *stored);

/* Fusion (fuse.c): which nodes share a kernel, and the order kernels run in. */
typedef struct {
    int ngroup;
    int *group;   /* node -> group, -1 for leaves and views */
    int *order;   /* groups in execution order */
    int **member; /* per group, its nodes in node order */
    int *nmember;
    bool *stored; /* node's value is written to memory (needed outside its group) */
} Fusion;
Fusion *fuse_graph(Arena *arena, const Graph *g, bool enabled);
/* Bit p of progs[node] is set when program p (Graph.prog) computes the node: its roots need it
 * and the program it runs after has not computed it already. */
void fuse_program_masks(const Graph *g, uint32_t *progs);

/* Planning (plan.c) and printing. */
Plan *plan_graph(Arena *arena, const Graph *g, int64_t max_batch, bool fuse);
/* Checks the plan's invariants (arena bounds, no aliasing within a kernel, live ranges cover
 * every use, no two live buffers share bytes); a broken plan is an internal error.  plan_graph
 * calls it on every plan it makes (plan_verify.c). */
void plan_verify(const Plan *p);
/* A loop kernel compiled for the CPU: its buffer pointers in argument order, the run-time
 * scalar slots, the rows of this call and the kernel's column count.  The column count is a
 * run-time value, so the same code serves the plan of a model whose layers were pruned to
 * other widths, as long as plan_signature() is unchanged. */
typedef void (*KernelEntry)(void *const *args, const float *scalars, int64_t rows, int64_t cols);

/* A hash of what the CPU backend's code depends on: every kernel's kind, arguments,
 * expressions, reductions and outputs, but not the sizes (column counts are run-time values of
 * the generated code).  Equal signatures: one compiled kernel table serves both plans. */
uint64_t plan_signature(const Plan *p);
/* The threads' work items of a CUDA launch of kernel k at `rows` rows (elements, columns or
 * rows, as its schedule says), and the number of blocks it uses. */
int64_t plan_cuda_work(const Kernel *k, int64_t rows);
int64_t plan_cuda_blocks(const Kernel *k, int64_t rows);
void plan_print(StrBuf *b, const Plan *p, const char *path);
void plan_print_memory(StrBuf *b, const Plan *p, const char *sep);
void plan_print_kernel(StrBuf *b, const Plan *p, const Kernel *k);
const char *kx_name(KxOp op);

#endif
