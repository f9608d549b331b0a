/* nn.y: the .nn grammar (reentrant bison with locations).  Actions are one-line ast_* calls
 * (compiler/ast.c).  Statements need no separators: every statement starts with a keyword or
 * `name =`, and no expression can continue with an identifier.  After a syntax error the
 * scanner skips to the next statement that starts a line, so errors are reported per
 * statement without cascades.  The error text is built in yyreport_syntax_error below. */
%require "3.8"
%define api.pure full
%locations
%define parse.error custom
%define parse.trace
%param {yyscan_t scanner}
%parse-param {Parser *p}

%code requires {
#include "ast.h"
typedef void *yyscan_t;
typedef struct { double value; const char *text; } NumTok;
}

%code provides {
int yylex(YYSTYPE *lval, YYLTYPE *lloc, yyscan_t scanner);
}

%code {
#include <stdlib.h>
#include <string.h>
#define YYMAXDEPTH 4000
static int next_token(YYSTYPE *lval, YYLTYPE *lloc, yyscan_t scanner);
#undef yylex
#define yylex next_token
static SrcLoc loc_of(const Parser *p, YYLTYPE l) {
    return (SrcLoc){l.first_line, l.first_column, l.first_line == l.last_line ? l.last_column : l.first_column, p->file};
}
#define L(l) loc_of(p, (l))
static void yyerror(YYLTYPE *loc, yyscan_t scanner, Parser *p, const char *msg);
/* Error recovery: bison keeps the offending token after an `error` rule.  When the same token
 * fails again it is dropped (the scanner then skips to the next statement); at the end of
 * the file there is nothing left to skip, so parsing stops. */
static int recovered(Parser *p, int at_end) { return p->err_repeat && at_end; }
static int starts_statement(int t);
#define yyclearin_if(p)                                                                  \
    do {                                                                                 \
        if ((p)->err_repeat || !(yychar == '}' || ((p)->tok_at_bol && starts_statement(yychar)))) { \
            if (yychar != END) yyclearin; /* skip to the next statement */               \
            (p)->err_repeat = 0;                                                         \
            (p)->resync = 1;                                                             \
        } else {                                                                         \
            (p)->resync = 0; /* the token in hand starts the next statement */           \
        }                                                                                \
    } while (0)
}

%union {
    NumTok num;
    const char *str;
    Ast *ast;
    AstType *type;
    Stmt *stmt;
    TrainItem *item;
    AstArgList args;
    AstList list;
    StmtList stmts;
    ItemList items;
}

%token END 0 "end of file"
%token <str> IDENT "identifier"
%token <num> NUMBER "number"
%token <str> STRING "string"
%token MODEL "'model'" INPUT "'input'" TARGET "'target'" PARAM "'param'" LOSS "'loss'"
%token METRIC "'metric'" PRIOR "'prior'" HEAD "'head'" BLOCK "'block'" RETURN "'return'"
%token TRAIN "'train'" AND "'and'" OR "'or'" NOT "'not'"
%token DATA "'data'" TEST "'test'" VALID "'valid'" OF "'of'" BATCH "'batch'" EPOCHS "'epochs'"
%token ITERATIONS "'iterations'" OPTIMIZER "'optimizer'" SAMPLER "'sampler'"
%token SCHEDULE "'schedule'" PRUNE "'prune'" EVERY "'every'" STOP "'stop'" WHEN "'when'"
%token PATIENCE "'patience'" SEED "'seed'" CLIP "'clip'" EVALUATE "'evaluate'"
%token ARROW "'->'" LE "'<='" GE "'>='" EQ "'=='" NE "'!='"

%type <ast> expr primary call quantity
%type <type> type
%type <stmt> stmt
%type <item> item
%type <args> args opt_args params opt_params named
%type <list> exprs opt_exprs
%type <stmts> stmts
%type <items> items
%type <str> unit argname

%left ARROW
%left OR
%left AND
%precedence NOT
%nonassoc '<' '>' LE GE EQ NE
%left '+' '-'
%left '*' '/'
%precedence UMINUS
%right '^'

%%

file: stmts                          { p->prog.stmt = $1.item; p->prog.nstmt = $1.n; }
    ;

stmts: %empty                        { $$ = (StmtList){0}; }
     | stmts stmt                    { $$ = ast_stmts_add(p, $1, $2); }
     | stmts error                   { $$ = $1; if (recovered(p, yychar == END)) YYABORT; yyclearin_if(p); yyerrok; }
     ;

stmt: MODEL IDENT                    { $$ = ast_stmt(p, ST_MODEL, L(@1), $2, L(@2), NULL); }
    | INPUT IDENT ':' type           { $$ = ast_decl(p, ST_INPUT, L(@1), $2, L(@2), $4); }
    | TARGET IDENT ':' type          { $$ = ast_decl(p, ST_TARGET, L(@1), $2, L(@2), $4); }
    | PARAM IDENT '=' expr           { $$ = ast_stmt(p, ST_PARAM, L(@1), $2, L(@2), $4); }
    | IDENT '=' expr                 { $$ = ast_stmt(p, ST_LET, L(@1), $1, L(@1), $3); }
    | LOSS expr                      { $$ = ast_stmt(p, ST_LOSS, L(@1), NULL, L(@1), $2); }
    | METRIC exprs                   { $$ = ast_metric(p, L(@1), $2); }
    | PRIOR expr '~' expr            { $$ = ast_prior(p, L(@1), $2, $4); }
    | HEAD expr                      { $$ = ast_stmt(p, ST_HEAD, L(@1), NULL, L(@1), $2); }
    | RETURN expr                    { $$ = ast_stmt(p, ST_RETURN, L(@1), NULL, L(@1), $2); }
    | BLOCK IDENT '(' opt_params ')' '{' stmts '}'
                                     { $$ = ast_block(p, L(@1), $2, L(@2), $4, $7); }
    | TRAIN '{' items '}'            { $$ = ast_train(p, L(@1), $3); }
    ;

type: IDENT '[' opt_exprs ']'        { $$ = ast_type(p, ast_span(L(@1), L(@4)), $1, $3); }
    ;

opt_params: %empty                   { $$ = (AstArgList){0}; }
          | params
          ;
params: IDENT                        { $$ = ast_args_add(p, (AstArgList){0}, $1, L(@1), NULL); }
      | IDENT '=' expr               { $$ = ast_args_add(p, (AstArgList){0}, $1, L(@1), $3); }
      | params ',' IDENT             { $$ = ast_args_add(p, $1, $3, L(@3), NULL); }
      | params ',' IDENT '=' expr    { $$ = ast_args_add(p, $1, $3, L(@3), $5); }
      ;

items: %empty                        { $$ = (ItemList){0}; }
     | items item                    { $$ = ast_items_add(p, $1, $2); }
     | items error                   { $$ = $1; if (recovered(p, yychar == END)) YYABORT; yyclearin_if(p); yyerrok; }
     ;

item: DATA expr                      { $$ = ast_item(p, TI_DATA, L(@1), $2); }
    | TEST expr                      { $$ = ast_item(p, TI_TEST, L(@1), $2); }
    | VALID expr                     { $$ = ast_item(p, TI_VALID, L(@1), $2); }
    | VALID expr OF TRAIN            { $$ = ast_item_named(p, TI_VALID, L(@1), "train", L(@4), $2, NULL); }
    | BATCH expr                     { $$ = ast_item(p, TI_BATCH, L(@1), $2); }
    | EPOCHS expr                    { $$ = ast_item(p, TI_EPOCHS, L(@1), $2); }
    | ITERATIONS expr                { $$ = ast_item(p, TI_ITERATIONS, L(@1), $2); }
    | OPTIMIZER expr                 { $$ = ast_item(p, TI_OPTIMIZER, L(@1), $2); }
    | SAMPLER expr                   { $$ = ast_item(p, TI_SAMPLER, L(@1), $2); }
    | SEED expr                      { $$ = ast_item(p, TI_SEED, L(@1), $2); }
    | CLIP expr                      { $$ = ast_item(p, TI_CLIP, L(@1), $2); }
    | SCHEDULE IDENT '=' expr        { $$ = ast_item_named(p, TI_SCHEDULE, L(@1), $2, L(@2), $4, NULL); }
    | PRUNE IDENT EVERY quantity     { $$ = ast_item_named(p, TI_PRUNE, L(@1), $2, L(@2), NULL, $4); }
    | STOP WHEN expr                 { $$ = ast_item(p, TI_STOP, L(@1), $3); }
    | EVALUATE named                 { $$ = ast_item(p, TI_EVALUATE, L(@1), ast_call(p, L(@1), "evaluate", $2.arg, $2.narg)); }
    | EVALUATE EVERY quantity        { $$ = ast_item_named(p, TI_EVALUATE, L(@1), NULL, L(@1), ast_call(p, L(@1), "evaluate", NULL, 0), $3); }
    | EVALUATE EVERY quantity ',' named
                                     { $$ = ast_item_named(p, TI_EVALUATE, L(@1), NULL, L(@1), ast_call(p, L(@1), "evaluate", $5.arg, $5.narg), $3); }
    ;

/* name = value, ... (evaluate's settings) */
named: IDENT '=' expr                { $$ = ast_args_add(p, (AstArgList){0}, $1, L(@1), $3); }
     | named ',' IDENT '=' expr      { $$ = ast_args_add(p, $1, $3, L(@3), $5); }
     ;

unit: IDENT                          { $$ = $1; }
    | EPOCHS                         { $$ = "epochs"; }
    ;
quantity: unit                       { $$ = ast_quantity(p, L(@1), 1, $1); }
        | NUMBER unit                { $$ = ast_quantity(p, ast_span(L(@1), L(@2)), $1.value, $2); }
        ;

expr: primary
    | '-' expr %prec UMINUS          { $$ = ast_unary(p, L(@1), '-', $2); }
    | NOT expr                       { $$ = ast_unary(p, L(@1), OPR_NOT, $2); }
    | expr ARROW expr                { $$ = ast_pipe(p, L(@2), $1, $3); }
    | expr '+' expr                  { $$ = ast_binary(p, L(@2), '+', $1, $3); }
    | expr '-' expr                  { $$ = ast_binary(p, L(@2), '-', $1, $3); }
    | expr '*' expr                  { $$ = ast_binary(p, L(@2), '*', $1, $3); }
    | expr '/' expr                  { $$ = ast_binary(p, L(@2), '/', $1, $3); }
    | expr '^' expr                  { $$ = ast_binary(p, L(@2), '^', $1, $3); }
    | expr '<' expr                  { $$ = ast_binary(p, L(@2), '<', $1, $3); }
    | expr '>' expr                  { $$ = ast_binary(p, L(@2), '>', $1, $3); }
    | expr LE expr                   { $$ = ast_binary(p, L(@2), OPR_LE, $1, $3); }
    | expr GE expr                   { $$ = ast_binary(p, L(@2), OPR_GE, $1, $3); }
    | expr EQ expr                   { $$ = ast_binary(p, L(@2), OPR_EQ, $1, $3); }
    | expr NE expr                   { $$ = ast_binary(p, L(@2), OPR_NE, $1, $3); }
    | expr AND expr                  { $$ = ast_binary(p, L(@2), OPR_AND, $1, $3); }
    | expr OR expr                   { $$ = ast_binary(p, L(@2), OPR_OR, $1, $3); }
    ;

primary: NUMBER                      { $$ = ast_num(p, L(@1), $1.value, $1.text); }
       | STRING                      { $$ = ast_str(p, L(@1), $1); }
       | IDENT                       { $$ = ast_name(p, L(@1), $1); }
       | call
       | '(' expr ')'                { $$ = $2; }
       | primary '.' IDENT           { $$ = ast_field(p, L(@3), $1, $3); }
       | TRAIN '.' IDENT             { $$ = ast_field(p, L(@3), ast_name(p, L(@1), "train"), $3); }
       | VALID '.' IDENT             { $$ = ast_field(p, L(@3), ast_name(p, L(@1), "valid"), $3); }
       | TEST '.' IDENT              { $$ = ast_field(p, L(@3), ast_name(p, L(@1), "test"), $3); }
       | PATIENCE NUMBER             { $$ = ast_patience(p, L(@1), ast_num(p, L(@2), $2.value, $2.text)); }
       ;

call: IDENT '(' opt_args ')'         { $$ = ast_call(p, L(@1), $1, $3.arg, $3.narg); }
    ;

opt_args: %empty                     { $$ = (AstArgList){0}; }
        | args
        ;
args: expr                             { $$ = ast_args_add(p, (AstArgList){0}, NULL, L(@1), $1); }
    | NUMBER unit                      { $$ = ast_args_add(p, (AstArgList){0}, NULL, L(@1), ast_quantity(p, ast_span(L(@1), L(@2)), $1.value, $2)); }
    | argname '=' expr                 { $$ = ast_args_add(p, (AstArgList){0}, $1, L(@1), $3); }
    | argname '=' NUMBER unit          { $$ = ast_args_add(p, (AstArgList){0}, $1, L(@1), ast_quantity(p, ast_span(L(@3), L(@4)), $3.value, $4)); }
    | args ',' expr                    { $$ = ast_args_add(p, $1, NULL, L(@3), $3); }
    | args ',' NUMBER unit             { $$ = ast_args_add(p, $1, NULL, L(@3), ast_quantity(p, ast_span(L(@3), L(@4)), $3.value, $4)); }
    | args ',' argname '=' expr        { $$ = ast_args_add(p, $1, $3, L(@3), $5); }
    | args ',' argname '=' NUMBER unit { $$ = ast_args_add(p, $1, $3, L(@3), ast_quantity(p, ast_span(L(@5), L(@6)), $5.value, $6)); }
    ;

/* a named argument may be spelled like a keyword: csv("f.csv", target = last) */
argname: IDENT                       { $$ = $1; }
       | MODEL { $$ = "model"; }   | INPUT { $$ = "input"; }     | TARGET { $$ = "target"; }
       | PARAM { $$ = "param"; }   | LOSS { $$ = "loss"; }       | METRIC { $$ = "metric"; }
       | PRIOR { $$ = "prior"; }   | HEAD { $$ = "head"; }       | BLOCK { $$ = "block"; }
       | RETURN { $$ = "return"; } | TRAIN { $$ = "train"; }     | DATA { $$ = "data"; }
       | TEST { $$ = "test"; }     | VALID { $$ = "valid"; }     | OF { $$ = "of"; }
       | BATCH { $$ = "batch"; }   | EPOCHS { $$ = "epochs"; }   | ITERATIONS { $$ = "iterations"; }
       | OPTIMIZER { $$ = "optimizer"; } | SAMPLER { $$ = "sampler"; } | SCHEDULE { $$ = "schedule"; }
       | PRUNE { $$ = "prune"; }   | EVERY { $$ = "every"; }     | STOP { $$ = "stop"; }
       | WHEN { $$ = "when"; }     | PATIENCE { $$ = "patience"; } | SEED { $$ = "seed"; }
       | CLIP { $$ = "clip"; }     | EVALUATE { $$ = "evaluate"; }
       ;

exprs: expr                          { $$ = ast_list_add(p, (AstList){0}, $1); }
     | exprs ',' expr                { $$ = ast_list_add(p, $1, $3); }
     ;
opt_exprs: %empty                    { $$ = (AstList){0}; }
         | exprs
         ;

%%

#include "lex.yy.h"

/* Tokens that can begin a statement or train item: where the scanner resumes after an error. */
static int starts_statement(int t) {
    switch (t) {
    case MODEL: case INPUT: case TARGET: case PARAM: case LOSS: case METRIC: case PRIOR:
    case HEAD: case BLOCK: case RETURN: case TRAIN: case IDENT: case DATA: case TEST:
    case VALID: case BATCH: case EPOCHS: case ITERATIONS: case OPTIMIZER: case SAMPLER:
    case SCHEDULE: case PRUNE: case STOP: case SEED: case CLIP: case EVALUATE:
        return 1;
    default:
        return 0;
    }
}

static int next_token(YYSTYPE *lval, YYLTYPE *lloc, yyscan_t scanner) {
    Parser *p = yyget_extra(scanner);
    for (;;) {
        int t = yylex(lval, lloc, scanner);
        if (p->fatal || diag_stopped(p->diag)) return END;
        if (!p->resync) return t;
        if (t == END || t == '}' || (p->tok_at_bol && starts_statement(t))) {
            p->resync = 0;
            return t;
        }
    }
}

static void yyerror(YYLTYPE *loc, yyscan_t scanner, Parser *p, const char *msg) {
    (void)scanner;
    if (p->fatal) return;
    if (!strcmp(msg, "memory exhausted"))
        msg = "input nested too deeply";
    diag_error(p->diag, L(*loc), "%s", msg);
    p->fatal = 1;
}

/* Expected tokens are summarised by kind: whatever can start an expression, a statement or a
 * train setting is named as such; brackets and other punctuation are listed. */
enum { K_EXPR = 1, K_STMT = 2, K_ITEM = 4 };
static int token_kinds(yysymbol_kind_t s) {
    const char *n = yysymbol_name(s);
    switch (s) {
    case YYSYMBOL_NUMBER: case YYSYMBOL_STRING: case YYSYMBOL_NOT: case YYSYMBOL_PATIENCE:
        return K_EXPR;
    case YYSYMBOL_IDENT: return K_EXPR | K_STMT;
    case YYSYMBOL_TRAIN: return K_EXPR | K_STMT;
    case YYSYMBOL_TEST: case YYSYMBOL_VALID: return K_EXPR | K_ITEM;
    case YYSYMBOL_MODEL: case YYSYMBOL_INPUT: case YYSYMBOL_TARGET: case YYSYMBOL_PARAM:
    case YYSYMBOL_LOSS: case YYSYMBOL_METRIC: case YYSYMBOL_PRIOR: case YYSYMBOL_HEAD:
    case YYSYMBOL_BLOCK: case YYSYMBOL_RETURN:
        return K_STMT;
    case YYSYMBOL_DATA: case YYSYMBOL_BATCH: case YYSYMBOL_EPOCHS: case YYSYMBOL_ITERATIONS:
    case YYSYMBOL_OPTIMIZER: case YYSYMBOL_SAMPLER: case YYSYMBOL_SCHEDULE: case YYSYMBOL_PRUNE:
    case YYSYMBOL_STOP: case YYSYMBOL_SEED: case YYSYMBOL_CLIP: case YYSYMBOL_EVALUATE:
        return K_ITEM;
    default:
        return !strcmp(n, "'('") || !strcmp(n, "'-'") ? K_EXPR : 0;
    }
}

static void describe(StrBuf *b, yysymbol_kind_t s, const Parser *p) {
    if (s == YYSYMBOL_IDENT || s == YYSYMBOL_NUMBER) {
        char text[64];
        int n = p->tok_len < 40 ? p->tok_len : 40;
        memcpy(text, p->tok_text, (size_t)n);
        text[n] = 0;
        sb_printf(b, "%s '%s%s'", yysymbol_name(s), text, p->tok_len > 40 ? "..." : "");
    } else {
        sb_puts(b, yysymbol_name(s));
    }
}

static int yyreport_syntax_error(const yypcontext_t *ctx, yyscan_t scanner, Parser *p) {
    (void)scanner;
    const YYLTYPE *at = yypcontext_location(ctx);
    if (at->first_line == p->err_line && at->first_column == p->err_col) {
        p->err_repeat = 1; /* the same token again: reported already */
        return 0;
    }
    p->err_line = at->first_line;
    p->err_col = at->first_column;
    p->err_repeat = 0;
    p->resync = 1;
    if (p->fatal) return 0;
    enum { MAXEXP = 40 };
    yysymbol_kind_t exp[MAXEXP];
    int n = yypcontext_expected_tokens(ctx, exp, MAXEXP);
    StrBuf b = {0};
    sb_puts(&b, "unexpected ");
    describe(&b, yypcontext_token(ctx), p);
    const char *list[MAXEXP];
    int nlist = 0, kinds = 0;
    for (int i = 0; i < n; i++) kinds |= exp[i] == YYSYMBOL_YYerror ? 0 : token_kinds(exp[i]);
    /* a kind is named when most of its tokens are expected; else its tokens are listed */
    int named = 0, count[8] = {0};
    for (int i = 0; i < n; i++)
        for (int k = 1; k <= 4; k <<= 1)
            if (token_kinds(exp[i]) & k) count[k]++;
    if (count[K_EXPR] >= 4)
        named = K_EXPR; /* keywords expected there are argument names */
    else {
        if (count[K_STMT] >= 6) named |= K_STMT;
        if (count[K_ITEM] >= 6) named |= K_ITEM;
    }
    if (named & K_STMT) list[nlist++] = "a statement";
    if (named & K_ITEM) list[nlist++] = "a train setting";
    if ((named & K_EXPR) && !(named & K_STMT)) list[nlist++] = "an expression";
    for (int i = 0; i < n; i++) {
        if (exp[i] == YYSYMBOL_YYerror || (token_kinds(exp[i]) & named)) continue;
        /* where an expression may start, keywords are only there as argument names */
        const char *nm = yysymbol_name(exp[i]);
        bool keyword = nm[0] == '\'' && nm[1] >= 'a' && nm[1] <= 'z';
        if ((named & K_EXPR) && keyword) continue;
        if (exp[i] == YYSYMBOL_IDENT) nm = "a name";
        if (exp[i] == YYSYMBOL_NUMBER) nm = "a number";
        if (exp[i] == YYSYMBOL_STRING) nm = "a string";
        if (nlist < MAXEXP) list[nlist++] = nm;
    }
    (void)kinds;
    if (nlist > 0 && nlist <= 8) {
        sb_puts(&b, ", expected ");
        for (int i = 0; i < nlist; i++) {
            if (i) sb_puts(&b, i == nlist - 1 ? " or " : ", ");
            sb_puts(&b, list[i]);
        }
    }
    diag_error(p->diag, L(*yypcontext_location(ctx)), "%s", sb_str(&b));
    sb_free(&b);
    if (yypcontext_token(ctx) == YYSYMBOL_YYEOF && p->nest > 0 && p->nest <= 256)
        diag_note(p->diag, p->open[p->nest - 1], "the '%c' opened here is never closed", p->open_char[p->nest - 1]);
    return 0;
}

Program *parse_source(Arena *arena, Diag *diag, const Source *src, int file) {
    yydebug = getenv("NNC_PARSE_TRACE") != NULL;
    Parser *p = arena_alloc(arena, sizeof *p);
    p->arena = arena;
    p->diag = diag;
    p->src = src;
    p->file = file;
    p->line = p->col = 1;
    yyscan_t scanner;
    if (yylex_init_extra(p, &scanner)) NNC_BUG("cannot create scanner");
    YY_BUFFER_STATE buf = yy_scan_bytes(src->text, (int)src->len, scanner);
    yyparse(scanner, p);
    yy_delete_buffer(buf, scanner);
    yylex_destroy(scanner);
    Program *prog = arena_alloc(arena, sizeof *prog);
    *prog = p->prog;
    return prog;
}

/* Runs the scanner alone over a source that parsed without error, calling `each` per token. */
#undef yylex
typedef void TokenFn(void *ctx, int t, const YYSTYPE *lval, const Parser *p);
static void scan_tokens(const Source *src, TokenFn *each, void *ctx) {
    static FILE *null_out; /* silent: the sources parsed already, or are compared token by token (fmt) */
    if (!null_out) null_out = fopen("/dev/null", "w");
    Arena *arena = arena_new();
    Diag quiet;
    diag_init(&quiet, src, null_out ? null_out : stderr);
    Parser *p = arena_alloc(arena, sizeof *p);
    p->arena = arena;
    p->diag = &quiet;
    p->src = src;
    p->line = p->col = 1;
    yyscan_t scanner;
    if (yylex_init_extra(p, &scanner)) NNC_BUG("cannot create scanner");
    YY_BUFFER_STATE buf = yy_scan_bytes(src->text, (int)src->len, scanner);
    YYSTYPE lval;
    YYLTYPE lloc;
    for (int t; (t = yylex(&lval, &lloc, scanner)) != END && !p->fatal;) each(ctx, t, &lval, p);
    yy_delete_buffer(buf, scanner);
    yylex_destroy(scanner);
    arena_free(arena);
}

/* A hash of the source's tokens: each token's kind and text (a number's value), without its
 * spacing, line breaks or comments, so that a reformatted model hashes the same
 * (driver_source_hash). */
static void hash_token(void *ctx, int t, const YYSTYPE *lval, const Parser *p) {
    uint64_t *h = ctx;
    *h = util_hash(&t, sizeof t, *h);
    if (t == NUMBER)
        *h = util_hash(&lval->num.value, sizeof lval->num.value, *h);
    else
        *h = util_hash(p->tok_text, (size_t)p->tok_len, *h);
}

uint64_t parse_token_hash(const Source *src, uint64_t h) {
    scan_tokens(src, hash_token, &h);
    return h;
}

typedef struct {
    Arena *arena;
    SrcToken *tok;
    int n, cap;
} TokenList;

static void list_token(void *ctx, int t, const YYSTYPE *lval, const Parser *p) {
    (void)lval;
    TokenList *l = ctx;
    if (l->n == l->cap) {
        SrcToken *grown = arena_alloc(l->arena, sizeof *grown * (size_t)(l->cap = l->cap ? 2 * l->cap : 256));
        if (l->n) memcpy(grown, l->tok, sizeof *grown * (size_t)l->n);
        l->tok = grown;
    }
    SrcTokenKind k = t == IDENT ? TOKEN_NAME : t == NUMBER ? TOKEN_NUMBER : t == STRING ? TOKEN_STRING
                   : t < 256 || t == ARROW || t == LE || t == GE || t == EQ || t == NE ? TOKEN_PUNCT : TOKEN_KEYWORD;
    l->tok[l->n++] = (SrcToken){k, p->line, 0, p->tok_off, (size_t)p->tok_len};
}

SrcToken *parse_tokens(Arena *arena, const Source *src, int *ntok) {
    TokenList l = {arena, NULL, 0, 0};
    scan_tokens(src, list_token, &l);
    /* columns from the offsets: the scanner's line is already past a token that ends a line */
    int line = 1;
    size_t bol = 0, at = 0;
    for (int i = 0; i < l.n; i++) {
        for (; at < l.tok[i].off; at++)
            if (src->text[at] == '\n') line++, bol = at + 1;
        l.tok[i].line = line;
        l.tok[i].col = (int)(l.tok[i].off - bol) + 1;
    }
    *ntok = l.n;
    return l.tok;
}
