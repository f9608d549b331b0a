/* sema_args.c: argument lists of the checking pass.  Every call the language knows (layers,
 * losses, metrics, data sources, optimisers, schedules) is described by a table of ArgSpecs
 * (name, type, required, default); binding a call to its spec gives every call the same
 * messages for too many, unknown (with did-you-mean), repeated and missing arguments.
 * Called by sema.c, sema_layers.c and sema_train.c; the values are checked by the caller. */
#include <string.h>

#include "sema_internal.h"

const Ast **sema_args_bind(Sema *s, const char *callee, SrcLoc loc, const ArgSpec *spec, int nspec,
                           const AstArg *args, int nargs) {
    bool ok = true;
    const Ast **out = arena_alloc(s->arena, sizeof *out * ((size_t)nspec + 1)); /* never NULL */
    int pos = 0;
    for (int i = 0; i < nargs; i++) {
        const AstArg *a = &args[i];
        int k = -1;
        if (!a->name) {
            if (pos >= nspec) {
                err(s, a->value->loc, "too many arguments to '%s' (it takes %d)", callee, nspec);
                ok = false;
                continue;
            }
            k = pos++;
        } else {
            for (int j = 0; j < nspec; j++)
                if (!strcmp(spec[j].name, a->name)) k = j;
            if (k < 0) {
                const char **cand = arena_alloc(s->arena, sizeof *cand * ((size_t)nspec + 1));
                for (int j = 0; j < nspec; j++) cand[j] = spec[j].name;
                const char *near = diag_suggest(a->name, cand, nspec);
                if (nspec == 0)
                    err(s, a->name_loc, "'%s' takes no arguments", callee);
                else if (near)
                    err(s, a->name_loc, "'%s' has no argument '%s'; did you mean '%s'?", callee,
                        diag_name(a->name), near);
                else
                    err(s, a->name_loc, "'%s' has no argument '%s'", callee, diag_name(a->name));
                ok = false;
                continue;
            }
        }
        if (out[k]) {
            err(s, a->name ? a->name_loc : a->value->loc, "argument '%s' of '%s' is given twice",
                spec[k].name, callee);
            ok = false;
            continue;
        }
        out[k] = a->value;
    }
    for (int j = 0; j < nspec; j++) { /* a block's word argument stands for its name */
        Sym *w = out[j] && out[j]->kind == AST_NAME ? sema_lookup(s, out[j]->text) : NULL;
        if (w && w->kind == SYM_WORD) out[j] = w->word;
    }
    for (int j = 0; j < nspec; j++)
        if (spec[j].required && !out[j]) {
            err(s, loc, "'%s' needs the argument '%s'", callee, spec[j].name);
            ok = false;
        }
    return ok ? out : NULL;
}

bool sema_args_num(Sema *s, const Ast *e, const ArgSpec *spec, double *out) {
    if (!e) {
        *out = spec->def;
        return true;
    }
    return sema_eval_const(s, e, out);
}

bool sema_args_bool(Sema *s, const Ast *e, bool def, bool *out) {
    if (!e) {
        *out = def;
        return true;
    }
    if (e->kind == AST_NAME && (!strcmp(e->text, "true") || !strcmp(e->text, "false"))) {
        *out = !strcmp(e->text, "true");
        return true;
    }
    err(s, e->loc, "expected true or false");
    return false;
}
