/* sema_internal.h: what the files of the checking pass (AST -> Model) share; nothing outside
 * them includes it.  The pass is one Sema state and five files:
 *   sema.c         the driver: statement order, names and scopes, compile-time numbers,
 *                  tensor expressions, losses and metrics, inputs and params
 *   sema_args.c    argument lists: binding a call's arguments to a spec
 *   sema_layers.c  the layer table: one row per layer (arguments, check, what it makes)
 *   sema_train.c   the train block: one row per setting; schedules, stopping rules, --set
 *   sema_priors.c  prior statements: one row per distribution
 *   sema_blocks.c  blocks: their definitions, and each call expanded in a scope of its own
 *   sema_luna.c    fd_grad and cosine_diversity (input-gradients by finite differences), and
 *                  post-training heads (head bayes_linear)
 * Every function here reports its errors (located) and returns false, NULL or -1 after one. */
#ifndef NNC_SEMA_INTERNAL_H
#define NNC_SEMA_INTERNAL_H

#include "model.h"

/* SYM_ERROR: a name whose definition failed (and was reported); its uses stay silent.
 * SYM_NUMBER: a block's number argument, its value `val` (SV_CONST, or SV_PARAM for a param
 * passed by name, which stays schedulable).  SYM_WORD: a block's word argument (padding =
 * same), the word itself `word`, which stands for the name where an argument is bound. */
typedef enum { SYM_PARAM, SYM_IO, SYM_VALUE, SYM_ERROR, SYM_NUMBER, SYM_WORD } SymKind;
typedef struct {
    const char *name;
    SymKind kind;
    int index;
    SVal *val;
    SrcLoc loc;
    const Ast *word; /* SYM_WORD */
} Sym;

/* Layers with weights in the binding being defined, per weight stem ("dense", "gate"): with
 * more than one, the weights are numbered (h1.dense1.weight, h1.dense2.weight). */
typedef struct {
    const char *stem;
    int count, seen;
} WeightStem;

/* A block instance being expanded: the block, where it was called, and the prefix of its
 * weights' names (sema_blocks.c). */
typedef struct {
    const Stmt *def;
    SrcLoc call;
    const char *prefix;
} BlockInstance;

typedef struct {
    Arena *arena;
    Diag *diag;
    Model *m;
    Override *ov;
    int nov;
    const WidthOverride *width;
    int nwidth;
    Sym *sym;
    int nsym, capsym;
    Sym *later; /* names defined anywhere in the file, for use-before-definition */
    int nlater, caplater;
    const Stmt **block; /* the file's blocks, in order */
    int nblock, capblock;
    BlockInstance *inst; /* the blocks being expanded, outermost first */
    int ninst, capinst;
    int scope_base; /* inside a block: its names start here; below it only params are seen */
    const Program *(*load_block)(void *ctx, const char *name); /* the library (SemaOptions) */
    int (*library_names)(void *ctx, const char ***out);
    void *load_ctx;
    const char **tried; /* names looked for in the library */
    int ntried, captried;
    const char **mention; /* every name used in an expression anywhere */
    int nmention, capmention;
    bool in_loss; /* evaluating a loss or metric: no layers here */
    const char *owner; /* binding being defined, for weight names */
    WeightStem *stem;  /* the owner's layers with weights */
    int nstem, capstem;
    int ndropout; /* dropout layers so far: each has its own random stream */
    int capio, capparam, caprow, capmetric, capsched, capprior;
    const TrainItem *stop_item;
} Sema;

static inline void err(Sema *s, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* An error; inside block instances, a note for each call it came through, innermost first. */
static inline void err(Sema *s, SrcLoc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_verror(s->diag, loc, fmt, ap);
    va_end(ap);
    for (int i = s->ninst - 1; i >= 0; i--)
        diag_note(s->diag, s->inst[i].call, "in block '%s', called here", s->inst[i].def->name);
}

/* ---- sema.c ---- */

SVal *sema_sval(Sema *s, SValKind kind, SrcLoc loc);
const char *sema_type_str(char *buf, size_t n, const SVal *v); /* f32[B,10], class[10] */
const char *sema_resolve_path(Sema *s, const char *p); /* a file name, against the model's directory */
Sym *sema_lookup(Sema *s, const char *name);
/* Compile-time numbers: numbers and params with + - * / ^. */
bool sema_eval_const(Sema *s, const Ast *e, double *out);
bool sema_eval_int(Sema *s, const Ast *e, const char *what, int64_t min, int64_t max, int64_t *out);
/* A run-time scalar expression (params stay params): gate penalties. */
SVal *sema_eval_scalar(Sema *s, const Ast *e);
/* One that must be positive (a scale): a number or a param's value <= 0 is an error naming `what`. */
SVal *sema_positive_scalar(Sema *s, const Ast *e, const char *what);

/* Defines a name in the current scope (a redefinition there is an error). */
void sema_define(Sema *s, const char *name, SrcLoc loc, SymKind kind, int index, SVal *val);
/* The value of a tensor expression (names, layers, blocks, `->`), or NULL after reporting. */
SVal *sema_eval_tensor(Sema *s, const Ast *e);
/* Whether e is a tensor expression (a pipe, a layer or block call, a tensor's name) rather than
 * a number. */
bool sema_is_tensor(Sema *s, const Ast *e);

/* ---- sema_luna.c ---- */

/* fd_grad(heads, x, eps, method): an SV_FD_GRAD, with its `nnc check` row. */
SVal *sema_fd_grad(Sema *s, const Ast *e);
/* The loss cosine_diversity(g, eps) of fd_grad's gradients. */
SVal *sema_cosine_diversity(Sema *s, const Ast *e);
/* `head bayes_linear(features, y, alpha, beta)` into Model.head. */
void sema_head_check(Sema *s, const Stmt *st);

/* ---- sema_blocks.c ---- */

/* The block named `name`: the file's, else the library's (its file read and its blocks'
 * forms checked on first use), or NULL. */
const Stmt *sema_block_find(Sema *s, const char *name);
/* Checks a block definition's form: its name, parameters and body (bindings, then one return). */
void sema_block_check(Sema *s, const Stmt *st);
/* Expands the block `def` called by `e` on x (NULL: every parameter from the call's arguments;
 * `skip` = 1 when x came as the call's first positional argument): the value it returns. */
SVal *sema_block_apply(Sema *s, const Stmt *def, SVal *x, const Ast *e, int skip);

/* ---- sema_priors.c ---- */

/* `prior TARGET ~ dist(...)`: the target's form and the distribution, added to Model.prior;
 * which weights it names is resolved when they exist (lower.c). */
void sema_prior_check(Sema *s, const Stmt *st);
/* Whether `name` is a distribution a prior may take (normal, laplace, ...). */
bool sema_prior_is_dist(const char *name);
/* A distribution call, normal(0, 1) or laplace(loc, scale), ..., into pd's kind, nu, mean, scale,
 * noncentred and text; false after reporting an error. */
bool sema_prior_dist(Sema *s, const Ast *e, PriorDef *pd);

/* ---- sema_args.c ---- */

typedef enum { A_INT, A_NUM, A_SCALAR, A_BOOL, A_TENSOR, A_WORD, A_STRING, A_ANY } ArgType;
typedef struct {
    const char *name;
    ArgType type;
    bool required;
    double def;
} ArgSpec;

/* An argument list in a table row, `SEMA_ARGS({"units", A_INT, true, 0}, ...)`: sets the
 * row's `args` and `nargs`, so a row takes any number of arguments. */
#define SEMA_ARGS(...)                                                                     \
    .args = (const ArgSpec[]){__VA_ARGS__},                                               \
    .nargs = (int)(sizeof((const ArgSpec[]){__VA_ARGS__}) / sizeof(ArgSpec))

/* Matches positional then named arguments to the spec: returns out[nspec], out[i] the AST for
 * spec[i] or NULL when not given; NULL after reporting too many, unknown, repeated or missing
 * arguments. */
const Ast **sema_args_bind(Sema *s, const char *callee, SrcLoc loc, const ArgSpec *spec, int nspec,
                           const AstArg *args, int nargs);
/* The value of an optional argument: its default when not given. */
bool sema_args_num(Sema *s, const Ast *e, const ArgSpec *spec, double *out);
bool sema_args_bool(Sema *s, const Ast *e, bool def, bool *out);

/* ---- sema_layers.c ---- */

typedef struct LayerDef LayerDef;
/* Checks a layer's input and arguments and fills in v, an SV_LAYER of the row's kind whose
 * input v->a and shape are set (and wname, for a row with weights).  Returns the layer's
 * value (v, or its input for identity), or NULL after reporting. */
typedef SVal *LayerCheck(Sema *s, const LayerDef *ld, const Ast *e, const Ast *const *a, SVal *v);

/* One row per layer the language knows. */
struct LayerDef {
    const char *name;
    LayerKind kind;    /* the SV_LAYER it makes; lower.c turns each kind into IR */
    LayerCheck *check; /* also adds the layer's line to `nnc check`'s table */
    const char *stem;  /* it has weights: named h1.weight, or h1.<stem>2.weight beside others */
    const ArgSpec *args; /* SEMA_ARGS(...) */
    int nargs;
    Op act;           /* L_ACT: the activation op (OP_COUNT for identity); L_POOL: the pooling op */
    const char *todo; /* documented but not implemented yet: which issue area */
};

const LayerDef *sema_layers_find(const char *name);
const char *sema_layers_suggest(const char *name); /* a layer's name near `name`, or NULL */
/* Counts the owner's layers with weights, and its block calls, in a binding's expression,
 * before it is checked. */
void sema_layers_count(Sema *s, const Ast *e);
/* The prefix of the names of a layer's weights (or of a block instance's) with this stem:
 * the owner for the binding's only one, owner.<stem>2 for the second of several. */
const char *sema_layers_prefix(Sema *s, const char *stem);
/* Applies the layer ld named by `e` (a name or a call) to x; `skip` = 1 when x came as the
 * first positional argument of the call. */
SVal *sema_layers_apply(Sema *s, const LayerDef *ld, SVal *x, const Ast *e, int skip);

/* ---- sema_train.c ---- */

void sema_train_check(Sema *s, const Stmt *st);
/* After every statement: --set overrides, stopping rules against the metrics, schedules of
 * params whose values were fixed at compile time. */
void sema_train_finish(Sema *s);

#endif
