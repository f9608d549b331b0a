/* driver.c: the pass list written out (see driver.h).  Each pass's output is verified before
 * the next runs (ir_verify inside the IR passes). */
#include "driver.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lower.h"

bool driver_parse_override(const char *text, Override *ov, char *why, size_t nwhy) {
    const char *eq = strchr(text, '=');
    if (!eq || eq == text) {
        snprintf(why, nwhy, "--set needs name=value, got '%s'", text);
        return false;
    }
    char *end;
    errno = 0;
    double v = strtod(eq + 1, &end);
    if (eq[1] == 0 || *end != 0 || errno == ERANGE) {
        snprintf(why, nwhy, "--set %.*s: '%s' is not a number", (int)(eq - text), text, eq + 1);
        return false;
    }
    ov->key = strndup(text, (size_t)(eq - text));
    ov->value = v;
    return true;
}

/* Every --set key must name a param of the model or a train setting. */
static int check_overrides(Compilation *c, const CompileOptions *opt) {
    int rc = 0;
    for (int i = 0; i < opt->nov; i++) {
        const char *key = opt->ov[i].key;
        bool found = false;
        const char *cand[256];
        int ncand = 0;
        for (int k = 0; k < sema_ntrain_keys; k++) {
            cand[ncand++] = sema_train_keys[k];
            if (!strcmp(key, sema_train_keys[k])) found = true;
        }
        for (int s = 0; s < c->prog->nstmt; s++) {
            const Stmt *st = c->prog->stmt[s];
            if (st->kind != ST_PARAM) continue;
            if (ncand < 256) cand[ncand++] = st->name;
            if (!strcmp(key, st->name)) found = true;
        }
        if (found) continue;
        const char *near = diag_suggest(key, cand, ncand);
        fprintf(c->diag.out, "nnc: error: --set %s: the model has no param or train setting '%s'%s%s%s\n",
                diag_name(key), diag_name(key), near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
        rc = 2;
    }
    return rc;
}

/* `prune gates` needs at least one gated layer that can shrink; each that cannot says why. */
static bool check_prunable(Compilation *c) {
    const Graph *g = c->graph;
    const TrainSpec *t = &c->model->train;
    if (!t->prune_every) return true;
    for (int i = 0; i < g->ngate; i++)
        if (!g->gate[i].fixed) return true;
    diag_error(&c->diag, t->prune_loc, "nothing to prune: %s", g->ngate ? "no gated layer can shrink" : "the model has no gates");
    for (int line = 1, next; line > 0; line = next) { /* the notes in source order */
        next = 0;
        for (int i = 0; i < g->ngate; i++) {
            SrcLoc at = g->weight[g->gate[i].weight].loc;
            if (at.line == line)
                diag_note(&c->diag, at, "the gate of '%s' cannot remove neurons: %s", g->gate[i].layer, g->gate[i].fixed);
            else if (at.line > line && (!next || at.line < next))
                next = at.line;
        }
    }
    return false;
}

/* A sampler draws from the posterior of a deterministic network: no dropout, no batch
 * statistics. */
static bool check_sampler(Compilation *c) {
    const Graph *g = c->graph;
    const SamplerSpec *sp = &c->model->train.sampler;
    if (sp->kind == SAMPLER_NONE) return true;
    for (int id = 0; id < g->nnode; id++) {
        const Node *n = &g->node[id];
        bool bn = n->op == OP_TRAIN_SELECT;
        if (n->op != OP_DROPOUT && !bn) continue;
        diag_error(&c->diag, sp->loc, "a sampler needs a deterministic potential, but the model has %s",
                   bn ? "batch_norm, whose batch statistics change it from batch to batch" : "dropout");
        diag_note(&c->diag, n->loc, "%s is here", bn ? "batch_norm" : "dropout");
        return false;
    }
    return true;
}

int driver_compile_text(Compilation *c, const char *path, const char *text, size_t len,
                        const CompileOptions *opt, Stage upto) {
    static const CompileOptions none = {0};
    if (!opt) opt = &none;
    c->src = (Source){path, text, len};
    diag_init(&c->diag, &c->src, opt->err ? opt->err : stderr);
    c->prog = parse_source(c->arena, &c->diag, &c->src);
    if (c->diag.nerror) return 1;
    int rc = check_overrides(c, opt);
    if (rc) return rc;
    if (upto == STAGE_PARSE) return 0;
    SemaOptions so = {opt->ov, opt->nov, opt->width, opt->nwidth};
    c->model = sema_check(c->arena, &c->diag, c->prog, path, &so);
    if (!c->model) return 1;
    if (upto == STAGE_CHECK) return 0;
    c->graph = lower_model(c->arena, c->model, &c->diag);
    if (!c->graph) return 1;
    if (!check_prunable(c)) return 1;
    if (!check_sampler(c)) return 1;
    autodiff_graph(c->graph);
    if (c->model->train.sampler.kind != SAMPLER_NONE)
        sampler_graph(c->graph, &c->model->train.sampler);
    else
        update_graph(c->graph, &c->model->train.opt);
    programs_build(c->graph);
    if (upto == STAGE_IR) return 0;
    int64_t mb = opt->max_batch > 0 ? opt->max_batch : c->model->train.batch;
    c->plan = plan_graph(c->arena, c->graph, mb, !opt->no_fuse);
    c->plan->path = path;
    return 0;
}

int driver_compile(Compilation *c, const char *path, const CompileOptions *opt, Stage upto) {
    memset(c, 0, sizeof *c);
    c->arena = arena_new();
    size_t len;
    c->text = util_read_file(path, &len);
    if (!c->text) {
        fprintf(opt && opt->err ? opt->err : stderr, "nnc: error: cannot read '%s': %s\n", path, strerror(errno));
        return 1;
    }
    return driver_compile_text(c, path, c->text, len, opt, upto);
}

void driver_free(Compilation *c) {
    arena_free(c->arena);
    free(c->text);
    memset(c, 0, sizeof *c);
}
