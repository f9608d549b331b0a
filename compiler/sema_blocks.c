/* sema_blocks.c: blocks, reusable sub-networks with parameters, in the checking pass.
 *
 *   block mlp(x, n, p = 0.1) {
 *     h = x -> dense(n) -> relu -> dropout(p)
 *     return h -> dense(n)
 *   }
 *   trunk = image -> flatten -> mlp(256)
 *
 * A block is checked for its form where it is defined (its parameters, and a body of bindings
 * ending in one `return`), and expanded where it is called, as a layer is applied: `x -> b(...)`
 * gives x to its first parameter, `b(x, ...)` all of them from the call.  Each call expands the
 * body again, in a scope of its own: the block's parameters, its bindings, and the file's params
 * (nothing else of the file: a block uses what it is given).  A parameter given a tensor holds
 * that tensor; one given a number holds the number (a param passed by name stays that param, so
 * schedules and --set still reach it); one given a word (`padding = same`) holds the word, which
 * the layer argument it reaches checks; a parameter's default is evaluated in the block's scope,
 * after the ones before it.  The weights of an instance are named through it: in `root = x ->
 * conv_root(3)`, the body's binding c3 names root.c3.weight, and its `return` names root.weight;
 * where the binding has other layers with weights, or other calls, the block's name comes
 * between (`logits = x -> mlp(64) -> dense(10)`: logits.mlp.h.weight beside logits.weight), and
 * two calls of one block are numbered as layers are (root.conv_root2.c3.weight).
 * An error inside an instance is located in the block's body, with a note for every call it came
 * through; a block that calls itself, directly or through others, is an error at the call.
 * A block the file does not define comes from the library (driver.h): stdlib/NAME.nn is read
 * when NAME is first called, and errors inside it are located in that file. */
#include <string.h>

#include "sema_internal.h"

static const Stmt *find(const Sema *s, const char *name) {
    for (int i = 0; i < s->nblock; i++)
        if (!strcmp(s->block[i]->name, name)) return s->block[i];
    return NULL;
}

/* The library file of block `name`, read once: its blocks join the file's (which win over
 * theirs), their forms checked; it holds nothing but blocks. */
static void load(Sema *s, const char *name) {
    for (int i = 0; i < s->ntried; i++)
        if (!strcmp(s->tried[i], name)) return;
    ARENA_PUSH(s->arena, s->tried, s->ntried, s->captried, name);
    const Program *lib = s->load_block ? s->load_block(s->load_ctx, name) : NULL;
    if (!lib) return;
    int first = s->nblock;
    for (int i = 0; i < lib->nstmt; i++) {
        const Stmt *st = lib->stmt[i];
        if (st->kind != ST_BLOCK)
            err(s, st->loc, "a library file holds blocks only; '%s' cannot stand in one",
                st->kind == ST_LET ? "=" : ast_stmt_keyword(st->kind));
        else if (!find(s, st->name))
            ARENA_PUSH(s->arena, s->block, s->nblock, s->capblock, st);
    }
    for (int i = first; i < s->nblock; i++) sema_block_check(s, s->block[i]);
}

const Stmt *sema_block_find(Sema *s, const char *name) {
    const Stmt *b = find(s, name);
    if (b || sema_layers_find(name)) return b;
    load(s, name);
    return find(s, name);
}

/* Whether block st's form is sound: a name no layer has, parameters named once with the
 * defaulted ones last, a body of bindings ending in one `return`.  With `report`, what is wrong
 * is said (where the block is defined, once: sema_block_check); expansions ask quietly. */
static bool block_form(Sema *s, const Stmt *st, bool report) {
    if (sema_layers_find(st->name)) {
        if (report) err(s, st->name_loc, "block '%s' has the name of a layer; give it another name", diag_name(st->name));
        return false;
    }
    bool ok = true;
    for (int i = 0; i < st->nparams; i++) {
        for (int j = 0; j < i; j++)
            if (!strcmp(st->params[i].name, st->params[j].name)) {
                ok = false;
                if (report)
                    err(s, st->params[i].name_loc, "block '%s' has two parameters named '%s'", diag_name(st->name),
                        diag_name(st->params[i].name));
            }
        if (!st->params[i].value && i > 0 && st->params[i - 1].value) {
            ok = false;
            if (report)
                err(s, st->params[i].name_loc, "parameter '%s' has no default, but one before it has; parameters with defaults come last",
                    diag_name(st->params[i].name));
        }
    }
    const Stmt *ret = NULL;
    for (int i = 0; i < st->nbody; i++) {
        const Stmt *b = st->body[i];
        if (b->kind == ST_LET && !ret) continue;
        if (b->kind == ST_RETURN && !ret) {
            ret = b;
            continue;
        }
        if (report && ret)
            err(s, b->loc, "nothing may follow the `return` of block '%s'", diag_name(st->name));
        else if (report)
            err(s, b->loc, "a block holds bindings (`name = ...`) and one `return`; '%s' cannot be used inside one",
                b->kind == ST_LET ? "=" : ast_stmt_keyword(b->kind));
        return false;
    }
    if (!ret && report) err(s, st->name_loc, "block '%s' has no `return`: it must end with `return EXPR`", diag_name(st->name));
    return ok && ret;
}

void sema_block_check(Sema *s, const Stmt *st) {
    const Stmt *first = find(s, st->name);
    if (first != st && !sema_layers_find(st->name)) {
        err(s, st->name_loc, "block '%s' is defined twice", diag_name(st->name));
        diag_note(s->diag, first->name_loc, "first defined here");
    }
    block_form(s, st, true);
}

/* The prefix of an instance's names: the binding's own name when the call is the only thing
 * with weights in it, else binding.block (binding.block2 for the second call of one block), so
 * that no name is given twice. */
static const char *instance_prefix(Sema *s, const Stmt *def) {
    int total = 0;
    WeightStem *own = NULL;
    for (int i = 0; i < s->nstem; i++) {
        total += s->stem[i].count;
        if (!strcmp(s->stem[i].stem, def->name)) own = &s->stem[i];
    }
    const char *owner = s->owner ? s->owner : "loss";
    if (!own || total <= 1) return owner;
    if (own->count == 1) return arena_printf(s->arena, "%s.%s", owner, def->name);
    return sema_layers_prefix(s, def->name);
}

/* The chain of calls that comes back to `def`, as "a -> b -> a". */
static const char *cycle(Sema *s, const Stmt *def) {
    int from = s->ninst - 1;
    while (from > 0 && s->inst[from].def != def) from--;
    const char *text = def->name;
    for (int i = from + 1; i < s->ninst; i++) text = arena_printf(s->arena, "%s -> %s", text, s->inst[i].def->name);
    return arena_printf(s->arena, "'%s -> %s'", text, def->name);
}

/* Binds a parameter of the instance: a tensor, or a number (a param by name stays a param). */
static bool bind_param(Sema *s, const AstArg *p, SVal *tensor, const Ast *arg, int caller_base, int caller_ninst) {
    if (!tensor && !arg) return false;
    if (tensor) {
        sema_define(s, p->name, p->name_loc, SYM_VALUE, 0, tensor);
        return true;
    }
    /* an argument of the call is evaluated where the call is: the caller's scope */
    int base = s->scope_base, ninst = s->ninst;
    bool own_default = arg == p->value;
    if (!own_default) s->scope_base = caller_base, s->ninst = caller_ninst;
    SVal *v = NULL;
    Sym *sym = arg->kind == AST_NAME ? sema_lookup(s, arg->text) : NULL;
    if (arg->kind == AST_NAME && !sym && !sema_layers_find(arg->text) &&
        !sema_block_find(s, arg->text)) { /* a word, such as `same`: the layer it reaches checks it */
        s->scope_base = base, s->ninst = ninst;
        int n = s->nsym;
        sema_define(s, p->name, p->name_loc, SYM_WORD, 0, NULL);
        if (s->nsym > n) s->sym[n].word = arg;
        return s->nsym > n;
    }
    if (sema_is_tensor(s, arg)) {
        v = tensor = sema_eval_tensor(s, arg);
    } else if (sym && (sym->kind == SYM_PARAM || sym->kind == SYM_NUMBER)) {
        if (sym->kind == SYM_NUMBER) {
            v = sym->val;
        } else {
            v = sema_sval(s, SV_PARAM, arg->loc);
            v->index = sym->index;
        }
    } else {
        double x;
        if (sema_eval_const(s, arg, &x)) {
            v = sema_sval(s, SV_CONST, arg->loc);
            v->num = x;
        }
    }
    s->scope_base = base, s->ninst = ninst;
    if (!v) {
        sema_define(s, p->name, p->name_loc, SYM_ERROR, 0, NULL);
        return false;
    }
    sema_define(s, p->name, p->name_loc, tensor ? SYM_VALUE : SYM_NUMBER, 0, v);
    return true;
}

SVal *sema_block_apply(Sema *s, const Stmt *def, SVal *x, const Ast *e, int skip) {
    if (s->in_loss) {
        err(s, e->loc, "blocks cannot be called inside a loss or metric; bind the result to a name first, as in `out = h -> %s(...)`",
            def->name);
        return NULL;
    }
    for (int i = 0; i < s->ninst; i++)
        if (s->inst[i].def == def) {
            err(s, e->loc, "block '%s' calls itself (%s): a block expands into layers, so it cannot recur", def->name,
                cycle(s, def));
            return NULL;
        }
    if (!block_form(s, def, false)) return NULL; /* reported where it is defined */
    int given = x ? 1 : 0;
    if (x && def->nparams == 0) {
        err(s, e->loc, "block '%s' takes no input; call it as `%s()`", def->name, def->name);
        return NULL;
    }
    ArgSpec *spec = arena_alloc(s->arena, sizeof *spec * ((size_t)def->nparams + 1));
    for (int i = 0; i < def->nparams; i++) spec[i] = (ArgSpec){def->params[i].name, A_ANY, !def->params[i].value, 0};
    const AstArg *args = e->kind == AST_CALL && e->arg ? e->arg + skip : NULL;
    int nargs = e->kind == AST_CALL ? e->narg - skip : 0;
    const Ast **a = sema_args_bind(s, def->name, e->loc, spec + given, def->nparams - given, args, nargs);
    if (!a) return NULL;
    /* the instance: its name, and a scope of its own */
    BlockInstance in = {def, e->loc, instance_prefix(s, def)};
    int caller_base = s->scope_base, caller_ninst = s->ninst, nsym = s->nsym;
    const char *owner = s->owner;
    WeightStem *stem = s->stem;
    int nstem = s->nstem, capstem = s->capstem;
    ARENA_PUSH(s->arena, s->inst, s->ninst, s->capinst, in);
    s->scope_base = nsym;
    bool ok = true;
    for (int i = 0; i < def->nparams; i++) {
        const Ast *arg = i < given ? NULL : a[i - given] ? a[i - given] : def->params[i].value;
        ok &= bind_param(s, &def->params[i], i < given ? x : NULL, arg, caller_base, caller_ninst);
    }
    SVal *out = NULL;
    for (int i = 0; ok && i < def->nbody; i++) {
        const Stmt *b = def->body[i];
        s->stem = NULL, s->nstem = s->capstem = 0;
        if (b->kind == ST_LET) { /* the symbol keeps its name; its weights are named through the instance */
            s->owner = arena_printf(s->arena, "%s.%s", in.prefix, b->name);
            sema_layers_count(s, b->expr);
            SVal *v = sema_eval_tensor(s, b->expr);
            sema_define(s, b->name, b->name_loc, v ? SYM_VALUE : SYM_ERROR, 0, v);
            ok = v != NULL;
        } else {
            s->owner = in.prefix;
            sema_layers_count(s, b->expr);
            out = sema_eval_tensor(s, b->expr);
        }
    }
    s->nsym = nsym, s->scope_base = caller_base, s->ninst = caller_ninst;
    s->owner = owner, s->stem = stem, s->nstem = nstem, s->capstem = capstem;
    return out;
}
