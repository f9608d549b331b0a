/* ast.c: AST constructors for the grammar's actions, the depth guard, and a deterministic
 * printer (`nnc emit --ast`).  Sits between grammar/ and sema.c. */
#include "ast.h"

#include <string.h>

SrcLoc ast_span(SrcLoc a, SrcLoc b) {
    SrcLoc r = a;
    if (b.line == a.line && b.end_col > a.end_col) r.end_col = b.end_col;
    return r;
}

static Ast *node(Parser *p, AstKind kind, SrcLoc loc) {
    Ast *e = arena_alloc(p->arena, sizeof *e);
    e->kind = kind;
    e->loc = loc;
    e->depth = 1;
    return e;
}

/* Children deeper than AST_MAX_DEPTH poison the parent: one error, then an error node. */
static Ast *guard(Parser *p, Ast *e, const Ast *a, const Ast *b) {
    int d = 0;
    if (a && a->depth > d) d = a->depth;
    if (b && b->depth > d) d = b->depth;
    e->depth = d + 1;
    if (e->depth > AST_MAX_DEPTH) {
        if (!p->depth_reported) {
            diag_error(p->diag, e->loc, "expression nested too deeply (more than %d levels)",
                       AST_MAX_DEPTH);
            p->depth_reported = 1;
        }
        e->kind = AST_ERROR;
        e->lhs = e->rhs = NULL;
        e->depth = AST_MAX_DEPTH + 1;
    }
    return e;
}

Ast *ast_num(Parser *p, SrcLoc loc, double v, const char *text) {
    Ast *e = node(p, AST_NUM, loc);
    e->num = v;
    e->text = text;
    return e;
}

Ast *ast_str(Parser *p, SrcLoc loc, const char *s) {
    Ast *e = node(p, AST_STR, loc);
    e->text = s;
    return e;
}

Ast *ast_name(Parser *p, SrcLoc loc, const char *s) {
    Ast *e = node(p, AST_NAME, loc);
    e->text = s;
    return e;
}

Ast *ast_call(Parser *p, SrcLoc loc, const char *callee, AstArg *args, int nargs) {
    Ast *e = node(p, AST_CALL, loc);
    e->text = callee;
    e->arg = args;
    e->narg = nargs;
    int d = 0;
    for (int i = 0; i < nargs; i++)
        if (args[i].value && args[i].value->depth > d) d = args[i].value->depth;
    Ast tmp = {.depth = d};
    return guard(p, e, &tmp, NULL);
}

Ast *ast_binary(Parser *p, SrcLoc loc, int op, Ast *l, Ast *r) {
    Ast *e = node(p, AST_BINARY, loc);
    e->op = op;
    e->lhs = l;
    e->rhs = r;
    return guard(p, e, l, r);
}

Ast *ast_pipe(Parser *p, SrcLoc loc, Ast *l, Ast *r) {
    Ast *e = node(p, AST_PIPE, loc);
    e->lhs = l;
    e->rhs = r;
    return guard(p, e, l, r);
}

Ast *ast_unary(Parser *p, SrcLoc loc, int op, Ast *x) {
    Ast *e = node(p, AST_UNARY, loc);
    e->op = op;
    e->lhs = x;
    return guard(p, e, x, NULL);
}

Ast *ast_field(Parser *p, SrcLoc loc, Ast *x, const char *field) {
    Ast *e = node(p, AST_FIELD, loc);
    e->lhs = x;
    e->text = field;
    return guard(p, e, x, NULL);
}

Ast *ast_quantity(Parser *p, SrcLoc loc, double v, const char *unit) {
    Ast *e = node(p, AST_QUANTITY, loc);
    e->num = v;
    e->text = unit;
    return e;
}

Ast *ast_patience(Parser *p, SrcLoc loc, Ast *n) {
    Ast *e = node(p, AST_PATIENCE, loc);
    e->lhs = n;
    return guard(p, e, n, NULL);
}

AstArgList ast_args_add(Parser *p, AstArgList l, const char *name, SrcLoc name_loc, Ast *v) {
    ARENA_GROW(p->arena, l.arg, l.narg, l.cap);
    l.arg[l.narg++] = (AstArg){name, name_loc, v};
    return l;
}

AstList ast_list_add(Parser *p, AstList l, Ast *x) {
    ARENA_GROW(p->arena, l.item, l.n, l.cap);
    l.item[l.n++] = x;
    return l;
}

StmtList ast_stmts_add(Parser *p, StmtList l, Stmt *s) {
    if (!s) return l;
    ARENA_GROW(p->arena, l.item, l.n, l.cap);
    l.item[l.n++] = s;
    return l;
}

ItemList ast_items_add(Parser *p, ItemList l, TrainItem *t) {
    if (!t) return l;
    ARENA_GROW(p->arena, l.item, l.n, l.cap);
    l.item[l.n++] = t;
    return l;
}

AstType *ast_type(Parser *p, SrcLoc loc, const char *dtype, AstList dims) {
    AstType *t = arena_alloc(p->arena, sizeof *t);
    t->dtype = dtype;
    t->loc = loc;
    t->dim = dims.item;
    t->ndim = dims.n;
    return t;
}

Stmt *ast_stmt(Parser *p, StmtKind kind, SrcLoc loc, const char *name, SrcLoc name_loc, Ast *expr) {
    Stmt *s = arena_alloc(p->arena, sizeof *s);
    s->kind = kind;
    s->loc = loc;
    s->name = name;
    s->name_loc = name_loc;
    s->expr = expr;
    return s;
}

Stmt *ast_decl(Parser *p, StmtKind kind, SrcLoc loc, const char *name, SrcLoc name_loc, AstType *t) {
    Stmt *s = ast_stmt(p, kind, loc, name, name_loc, NULL);
    s->type = t;
    return s;
}

Stmt *ast_metric(Parser *p, SrcLoc loc, AstList list) {
    Stmt *s = ast_stmt(p, ST_METRIC, loc, NULL, (SrcLoc){0}, NULL);
    s->list = list.item;
    s->nlist = list.n;
    return s;
}

Stmt *ast_prior(Parser *p, SrcLoc loc, Ast *target, Ast *dist) {
    Stmt *s = ast_stmt(p, ST_PRIOR, loc, NULL, (SrcLoc){0}, dist);
    s->target = target;
    return s;
}

Stmt *ast_block(Parser *p, SrcLoc loc, const char *name, SrcLoc name_loc, AstArgList params,
                StmtList body) {
    Stmt *s = ast_stmt(p, ST_BLOCK, loc, name, name_loc, NULL);
    s->params = params.arg;
    s->nparams = params.narg;
    s->body = body.item;
    s->nbody = body.n;
    return s;
}

Stmt *ast_train(Parser *p, SrcLoc loc, ItemList items) {
    Stmt *s = ast_stmt(p, ST_TRAIN, loc, NULL, (SrcLoc){0}, NULL);
    s->item = items.item;
    s->nitem = items.n;
    return s;
}

TrainItem *ast_item(Parser *p, TrainItemKind kind, SrcLoc loc, Ast *expr) {
    return ast_item_named(p, kind, loc, NULL, (SrcLoc){0}, expr, NULL);
}

TrainItem *ast_item_named(Parser *p, TrainItemKind kind, SrcLoc loc, const char *name,
                          SrcLoc name_loc, Ast *expr, Ast *every) {
    TrainItem *t = arena_alloc(p->arena, sizeof *t);
    t->kind = kind;
    t->loc = loc;
    t->name = name;
    t->name_loc = name_loc;
    t->expr = expr;
    t->every = every;
    return t;
}

void ast_add_stmt(Parser *p, Stmt *s) {
    if (!s) return;
    ARENA_GROW(p->arena, p->prog.stmt, p->prog.nstmt, p->capstmt);
    p->prog.stmt[p->prog.nstmt++] = s;
}

/* ---- printing ---- */
const char *ast_op_name(int op) {
    switch (op) {
    case OPR_LE: return "<=";
    case OPR_GE: return ">=";
    case OPR_EQ: return "==";
    case OPR_NE: return "!=";
    case OPR_AND: return "and";
    case OPR_OR: return "or";
    case OPR_NOT: return "not";
    case '+': return "+";
    case '-': return "-";
    case '*': return "*";
    case '/': return "/";
    case '^': return "^";
    case '<': return "<";
    case '>': return ">";
    default: return "?";
    }
}

void ast_print_expr(StrBuf *b, const Ast *e) {
    if (!e) {
        sb_puts(b, "<null>");
        return;
    }
    switch (e->kind) {
    case AST_NUM: sb_puts(b, e->text ? e->text : "?"); break;
    case AST_STR: sb_printf(b, "\"%s\"", e->text); break;
    case AST_NAME: sb_puts(b, e->text); break;
    case AST_CALL:
        sb_printf(b, "(call %s", e->text);
        for (int i = 0; i < e->narg; i++) {
            sb_putc(b, ' ');
            if (e->arg[i].name) sb_printf(b, "%s=", e->arg[i].name);
            ast_print_expr(b, e->arg[i].value);
        }
        sb_putc(b, ')');
        break;
    case AST_PIPE:
        sb_puts(b, "(-> ");
        ast_print_expr(b, e->lhs);
        sb_putc(b, ' ');
        ast_print_expr(b, e->rhs);
        sb_putc(b, ')');
        break;
    case AST_BINARY:
        sb_printf(b, "(%s ", ast_op_name(e->op));
        ast_print_expr(b, e->lhs);
        sb_putc(b, ' ');
        ast_print_expr(b, e->rhs);
        sb_putc(b, ')');
        break;
    case AST_UNARY:
        sb_printf(b, "(%s ", ast_op_name(e->op));
        ast_print_expr(b, e->lhs);
        sb_putc(b, ')');
        break;
    case AST_FIELD:
        ast_print_expr(b, e->lhs);
        sb_printf(b, ".%s", e->text);
        break;
    case AST_QUANTITY: sb_printf(b, "(%g %s)", e->num, e->text); break;
    case AST_PATIENCE:
        sb_puts(b, "(patience ");
        ast_print_expr(b, e->lhs);
        sb_putc(b, ')');
        break;
    case AST_ERROR: sb_puts(b, "<error>"); break;
    }
}

const char *ast_item_keyword(TrainItemKind k) {
    static const char *const kw[] = {
        [TI_DATA] = "data",       [TI_TEST] = "test",         [TI_VALID] = "valid",
        [TI_BATCH] = "batch",     [TI_EPOCHS] = "epochs",     [TI_ITERATIONS] = "iterations",
        [TI_OPTIMIZER] = "optimizer", [TI_SAMPLER] = "sampler", [TI_SCHEDULE] = "schedule",
        [TI_PRUNE] = "prune",     [TI_STOP] = "stop",         [TI_SEED] = "seed",
        [TI_EVALUATE] = "evaluate", [TI_CLIP] = "clip",
    };
    return kw[k];
}

static const char *const stmt_kw[] = {
    [ST_MODEL] = "model", [ST_INPUT] = "input",   [ST_TARGET] = "target", [ST_PARAM] = "param",
    [ST_LET] = "let",     [ST_LOSS] = "loss",     [ST_METRIC] = "metric", [ST_PRIOR] = "prior",
    [ST_HEAD] = "head",   [ST_BLOCK] = "block",   [ST_RETURN] = "return", [ST_TRAIN] = "train",
};

const char *ast_stmt_keyword(StmtKind k) { return stmt_kw[k]; }

static void print_stmt(StrBuf *b, const Stmt *s, int indent) {
    sb_printf(b, "%*s%d:%d %s", indent, "", s->loc.line, s->loc.col, stmt_kw[s->kind]);
    if (s->name) sb_printf(b, " %s", s->name);
    if (s->type) {
        sb_printf(b, " : %s[", s->type->dtype);
        for (int i = 0; i < s->type->ndim; i++) {
            if (i) sb_puts(b, ", ");
            ast_print_expr(b, s->type->dim[i]);
        }
        sb_putc(b, ']');
    }
    if (s->target) {
        sb_putc(b, ' ');
        ast_print_expr(b, s->target);
        sb_puts(b, " ~");
    }
    if (s->expr) {
        sb_putc(b, ' ');
        ast_print_expr(b, s->expr);
    }
    for (int i = 0; i < s->nlist; i++) {
        sb_putc(b, ' ');
        ast_print_expr(b, s->list[i]);
    }
    if (s->kind == ST_BLOCK) {
        sb_putc(b, '(');
        for (int i = 0; i < s->nparams; i++) {
            if (i) sb_puts(b, ", ");
            sb_puts(b, s->params[i].name);
            if (s->params[i].value) {
                sb_putc(b, '=');
                ast_print_expr(b, s->params[i].value);
            }
        }
        sb_puts(b, ")\n");
        for (int i = 0; i < s->nbody; i++) print_stmt(b, s->body[i], indent + 2);
        return;
    }
    sb_putc(b, '\n');
    for (int i = 0; i < s->nitem; i++) {
        const TrainItem *t = s->item[i];
        sb_printf(b, "%*s%d:%d %s", indent + 2, "", t->loc.line, t->loc.col,
                  ast_item_keyword(t->kind));
        if (t->name) sb_printf(b, " %s", t->name);
        if (t->expr) {
            sb_putc(b, ' ');
            ast_print_expr(b, t->expr);
        }
        if (t->every) {
            sb_puts(b, " every ");
            ast_print_expr(b, t->every);
        }
        sb_putc(b, '\n');
    }
}

void ast_print_program(StrBuf *b, const Program *prog) {
    for (int i = 0; i < prog->nstmt; i++) print_stmt(b, prog->stmt[i], 0);
}
