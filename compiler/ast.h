/* ast.h: the syntax tree the parser builds (grammar/nn.y) and sema reads.
 * Expressions are one node type; statements and train-block items are flat records.
 * Everything lives in the compilation's arena.  Constructors are called from the grammar's
 * one-line actions and guard expression depth, so later recursive passes are bounded. */
#ifndef NNC_AST_H
#define NNC_AST_H

#include "diag.h"
#include "util.h"

enum { AST_MAX_DEPTH = 500 }; /* deepest expression tree any pass has to recurse over */

typedef enum {
    AST_NUM,      /* num (text keeps the spelling) */
    AST_STR,      /* text */
    AST_NAME,     /* text */
    AST_CALL,     /* text(args) */
    AST_PIPE,     /* lhs -> rhs */
    AST_BINARY,   /* lhs op rhs, op is one of + - * / ^ < > <= >= == != and or */
    AST_UNARY,    /* op lhs, op is '-' or 'not' */
    AST_FIELD,    /* lhs.text, e.g. valid.error */
    AST_QUANTITY, /* num unit, e.g. `1 epoch`; text is the unit */
    AST_PATIENCE, /* `patience N` inside a stop condition; lhs is N */
    AST_ERROR,    /* placeholder after a reported error */
} AstKind;

typedef enum {
    OPR_ADD = '+', OPR_SUB = '-', OPR_MUL = '*', OPR_DIV = '/', OPR_POW = '^',
    OPR_LT = '<', OPR_GT = '>', OPR_LE = 256, OPR_GE, OPR_EQ, OPR_NE, OPR_AND, OPR_OR, OPR_NOT,
} AstOp;

typedef struct Ast Ast;
typedef struct {
    const char *name; /* NULL for a positional argument */
    SrcLoc name_loc;
    Ast *value;
} AstArg;

struct Ast {
    AstKind kind;
    SrcLoc loc;
    int depth;
    double num;
    const char *text;
    int op;
    Ast *lhs, *rhs;
    AstArg *arg;
    int narg;
};

typedef struct {
    const char *dtype; /* f32, class, ... */
    SrcLoc loc;
    Ast **dim;
    int ndim;
} AstType;

typedef enum {
    TI_DATA, TI_TEST, TI_VALID, TI_BATCH, TI_EPOCHS, TI_ITERATIONS, TI_OPTIMIZER, TI_SAMPLER,
    TI_SCHEDULE, TI_PRUNE, TI_STOP, TI_SEED, TI_EVALUATE, TI_CLIP,
} TrainItemKind;

typedef struct {
    TrainItemKind kind;
    SrcLoc loc;       /* the item's keyword */
    Ast *expr;        /* the value */
    const char *name; /* schedule/prune target, `of` source for valid */
    SrcLoc name_loc;
    Ast *every; /* prune ... every Q */
} TrainItem;

typedef enum {
    ST_MODEL, ST_INPUT, ST_TARGET, ST_PARAM, ST_LET, ST_LOSS, ST_METRIC, ST_PRIOR, ST_HEAD,
    ST_BLOCK, ST_RETURN, ST_TRAIN,
} StmtKind;

typedef struct Stmt Stmt;
struct Stmt {
    StmtKind kind;
    SrcLoc loc; /* keyword, or the bound name for `x = ...` */
    const char *name;
    SrcLoc name_loc;
    AstType *type;  /* input, target */
    Ast *expr;      /* param, let, loss, prior (the distribution), head, return */
    Ast *target;    /* prior: what the prior applies to (weights, biases, h1.weight) */
    Ast **list;     /* metric: the metric calls */
    int nlist;
    AstArg *params; /* block parameters */
    int nparams;
    Stmt **body; /* block body */
    int nbody;
    TrainItem **item; /* train */
    int nitem;
};

typedef struct {
    Stmt **stmt;
    int nstmt;
} Program;

/* The parser's state, shared by the flex scanner and the bison actions. */
typedef struct Parser {
    Arena *arena;
    Diag *diag;
    const Source *src;
    int file;            /* its index in SrcLoc.file: 0 the model, k > 0 a library file */
    Program prog;
    int capstmt;
    /* scanner state */
    int line, col;       /* position of the next byte */
    size_t off;          /* its byte offset */
    size_t tok_off;      /* byte offset of the last match */
    int prev_line;       /* line of the previous token */
    int tok_at_bol;      /* the current token is the first on its line */
    int nest;            /* open ( [ { */
    int train_state;     /* 0: outside, 1: after `train`, 2: inside the train block */
    int train_nest;      /* nest level of the train block's brace */
    int resync;          /* after a syntax error: skip to the next statement start */
    int fatal;           /* stop parsing (reported already) */
    int depth_reported;  /* the depth error was reported once */
    int err_line, err_col; /* where the last syntax error was */
    int err_repeat;      /* the last syntax error was at that same token again */
    SrcLoc open[257];    /* where each open bracket is, innermost last */
    char open_char[257];
    const char *tok_text; /* spelling of the last token, for messages */
    int tok_len;
} Parser;

Program *parse_source(Arena *arena, Diag *diag, const Source *src, int file);
/* A hash of the source's tokens, their spacing and comments left out (nn.y). */
uint64_t parse_token_hash(const Source *src, uint64_t h);

/* A token as written: what kind it is and where its bytes are.  Keywords are the words the
 * scanner reserves where they stand (`epochs` is one inside a train block, a name outside). */
typedef enum { TOKEN_NAME, TOKEN_KEYWORD, TOKEN_NUMBER, TOKEN_STRING, TOKEN_PUNCT } SrcTokenKind;
typedef struct {
    SrcTokenKind kind;
    int line, col; /* of its first byte, 1-based */
    size_t off, len;
} SrcToken;
/* The tokens of a source that parses without error, in order, in the arena (nn.y). */
SrcToken *parse_tokens(Arena *arena, const Source *src, int *ntok);

/* constructors used by grammar actions */
SrcLoc ast_span(SrcLoc a, SrcLoc b);
Ast *ast_num(Parser *p, SrcLoc loc, double v, const char *text);
Ast *ast_str(Parser *p, SrcLoc loc, const char *s);
Ast *ast_name(Parser *p, SrcLoc loc, const char *s);
Ast *ast_call(Parser *p, SrcLoc loc, const char *callee, AstArg *args, int nargs);
Ast *ast_binary(Parser *p, SrcLoc loc, int op, Ast *l, Ast *r);
Ast *ast_pipe(Parser *p, SrcLoc loc, Ast *l, Ast *r);
Ast *ast_unary(Parser *p, SrcLoc loc, int op, Ast *x);
Ast *ast_field(Parser *p, SrcLoc loc, Ast *x, const char *field);
Ast *ast_quantity(Parser *p, SrcLoc loc, double v, const char *unit);
Ast *ast_patience(Parser *p, SrcLoc loc, Ast *n);

/* argument lists: grown in the arena */
typedef struct {
    AstArg *arg;
    int narg, cap;
} AstArgList;
AstArgList ast_args_add(Parser *p, AstArgList l, const char *name, SrcLoc name_loc, Ast *v);
typedef struct {
    Ast **item;
    int n, cap;
} AstList;
AstList ast_list_add(Parser *p, AstList l, Ast *x);
typedef struct {
    Stmt **item;
    int n, cap;
} StmtList;
StmtList ast_stmts_add(Parser *p, StmtList l, Stmt *s);
typedef struct {
    TrainItem **item;
    int n, cap;
} ItemList;
ItemList ast_items_add(Parser *p, ItemList l, TrainItem *t);

AstType *ast_type(Parser *p, SrcLoc loc, const char *dtype, AstList dims);
Stmt *ast_stmt(Parser *p, StmtKind kind, SrcLoc loc, const char *name, SrcLoc name_loc, Ast *expr);
Stmt *ast_decl(Parser *p, StmtKind kind, SrcLoc loc, const char *name, SrcLoc name_loc, AstType *t);
Stmt *ast_metric(Parser *p, SrcLoc loc, AstList list);
Stmt *ast_prior(Parser *p, SrcLoc loc, Ast *target, Ast *dist);
Stmt *ast_block(Parser *p, SrcLoc loc, const char *name, SrcLoc name_loc, AstArgList params,
                StmtList body);
Stmt *ast_train(Parser *p, SrcLoc loc, ItemList items);
TrainItem *ast_item(Parser *p, TrainItemKind kind, SrcLoc loc, Ast *expr);
TrainItem *ast_item_named(Parser *p, TrainItemKind kind, SrcLoc loc, const char *name,
                          SrcLoc name_loc, Ast *expr, Ast *every);
void ast_add_stmt(Parser *p, Stmt *s);

/* printing (for `nnc emit --ast` and tests): deterministic s-expressions */
void ast_print_expr(StrBuf *b, const Ast *e);
void ast_print_program(StrBuf *b, const Program *prog);
const char *ast_op_name(int op);
const char *ast_item_keyword(TrainItemKind k);
const char *ast_stmt_keyword(StmtKind k);

#endif
