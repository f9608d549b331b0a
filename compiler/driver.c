/* driver.c: the pass list written out (see driver.h).  Each pass's output is verified before
 * the next runs (ir_verify inside the IR passes). */
#include "driver.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hvp.h"
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
bool driver_key_known(const Compilation *c, const char *key, const char **near) {
    const char *cand[256];
    int ncand = 0;
    for (int k = 0; k < sema_ntrain_keys; k++) {
        cand[ncand++] = sema_train_keys[k];
        if (!strcmp(key, sema_train_keys[k])) return true;
    }
    for (int s = 0; s < c->prog->nstmt; s++) {
        const Stmt *st = c->prog->stmt[s];
        if (st->kind != ST_PARAM) continue;
        if (ncand < 256) cand[ncand++] = st->name;
        if (!strcmp(key, st->name)) return true;
    }
    *near = diag_suggest(key, cand, ncand);
    return false;
}

static int check_overrides(Compilation *c, const CompileOptions *opt) {
    int rc = 0;
    for (int i = 0; i < opt->nov; i++) {
        const char *key = opt->ov[i].key, *near = NULL;
        if (driver_key_known(c, key, &near)) continue;
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

/* `gate(fold = true)`: its layer must be one the gates fold into, and something must prune. */
static bool check_foldable(Compilation *c) {
    const Graph *g = c->graph;
    bool ok = true;
    for (int i = 0; i < g->ngate; i++) {
        const GateInfo *gi = &g->gate[i];
        if (!gi->fold) continue;
        SrcLoc at = g->weight[gi->weight].loc;
        if (gi->nofold) {
            diag_error(&c->diag, at, "the gates of '%s' cannot fold into its layer: %s", gi->layer, gi->nofold);
            ok = false;
        } else if (!c->model->train.prune_every) {
            diag_error(&c->diag, at, "fold = true folds the gates of '%s' into its layer when pruning, but the model "
                                     "never prunes (add `prune gates every 1 epoch` to train)",
                       gi->layer);
            ok = false;
        }
    }
    return ok;
}

/* A sampler draws from the posterior of a deterministic network: no dropout, no batch
 * statistics. */
static bool check_sampler(Compilation *c) {
    const Graph *g = c->graph;
    const SamplerSpec *sp = &c->model->train.sampler;
    if (sp->kind == SAMPLER_NONE) return true;
    for (int id = 0; id < g->nnode; id++) {
        const Node *n = &g->node[id];
        bool bn = n->op == OP_TRAIN_SELECT, vi = n->op == OP_NORMAL_NOISE;
        if (n->op != OP_DROPOUT && !bn && !vi) continue;
        diag_error(&c->diag, sp->loc, "a sampler needs a deterministic potential, but the model has %s",
                   bn ? "batch_norm, whose batch statistics change it from batch to batch"
                   : vi ? "a variational layer, whose weights are drawn at every step" : "dropout");
        diag_note(&c->diag, n->loc, "%s is here", bn ? "batch_norm" : vi ? "the variational layer" : "dropout");
        return false;
    }
    return true;
}

/* ---- the library ---- */

#ifndef NNC_STDLIB_DIR
#define NNC_STDLIB_DIR "stdlib"
#endif

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* The library's directory: NNC_STDLIB, else an installed nnc's share/nnc/stdlib, else the source
 * tree's stdlib/; *own says whether it is nnc's own. */
static const char *stdlib_dir(bool *own) {
    static char installed[4096];
    const char *env = getenv("NNC_STDLIB");
    *own = !(env && *env);
    if (!*own) return env;
    return util_installed(installed, sizeof installed, "../share/nnc/stdlib") ? installed : NNC_STDLIB_DIR;
}

const char *driver_stdlib_dir(void) {
    bool own;
    return stdlib_dir(&own);
}

/* The next record of a trainer's bundle (driver_library_bundle) at *at: its block's name (n
 * bytes) and its text; false at the end or at a malformed record. */
static bool bundle_next(const char **at, const char **name, size_t *n, const char **text, size_t *len) {
    const char *nl = *at ? strchr(*at, '\n') : NULL;
    if (!nl) return false;
    char *end;
    *len = strtoull(nl + 1, &end, 10);
    if (*end != '\n' || strlen(end + 1) < *len) return false;
    *name = *at, *n = (size_t)(nl - *at), *text = end + 1;
    *at = end + 1 + *len;
    return true;
}

/* SemaOptions.load_block: NAME.nn of the library (NAME is an identifier), parsed as file
 * nlib + 1. */
static const Program *load_block(void *ctx, const char *name) {
    Compilation *c = ctx;
    if (c->nlib == DRIVER_MAX_LIB) return NULL;
    bool own;
    const char *path = arena_printf(c->arena, "%s/%s.nn", stdlib_dir(&own), name), *text = NULL, *rec, *t;
    size_t len = 0, n;
    if (c->library) {
        for (const char *at = c->library; !text && bundle_next(&at, &rec, &n, &t, &len);)
            if (n == strlen(name) && !strncmp(rec, name, n)) text = arena_strndup(c->arena, t, len);
    } else {
        char *file = util_read_file(path, &len);
        if (file) text = arena_strndup(c->arena, file, len);
        free(file);
    }
    if (!text) return NULL;
    /* messages name the built-in library as stdlib/NAME.nn, wherever it was read from */
    const char *shown = own ? arena_printf(c->arena, "stdlib/%s.nn", name) : path;
    c->lib[c->nlib] = (Source){shown, text, len};
    c->lib_name[c->nlib] = arena_strndup(c->arena, name, strlen(name));
    c->nlib++;
    c->diag.lib = c->lib;
    c->diag.nlib = c->nlib;
    return parse_source(c->arena, &c->diag, &c->lib[c->nlib - 1], c->nlib);
}

/* SemaOptions.library_names: the library's block names (its files', or a bundle's), sorted;
 * asked only for a did-you-mean. */
static int library_names(void *ctx, const char ***out) {
    Compilation *c = ctx;
    int n = 0, cap = 0;
    const char **names = NULL;
    if (c->library) {
        const char *rec, *t;
        size_t len, k;
        for (const char *at = c->library; bundle_next(&at, &rec, &k, &t, &len);)
            ARENA_PUSH(c->arena, names, n, cap, arena_strndup(c->arena, rec, k));
    } else {
        bool own;
        DIR *d = opendir(stdlib_dir(&own));
        for (struct dirent *e; d && (e = readdir(d));) {
            size_t len = strlen(e->d_name);
            if (len > 3 && !strcmp(e->d_name + len - 3, ".nn"))
                ARENA_PUSH(c->arena, names, n, cap, arena_strndup(c->arena, e->d_name, len - 3));
        }
        if (d) closedir(d);
    }
    if (n > 1) qsort(names, (size_t)n, sizeof *names, cmp_str);
    *out = names;
    return n;
}

void driver_library_bundle(const Compilation *c, StrBuf *b) {
    for (int i = 0; i < c->nlib; i++) {
        sb_printf(b, "%s\n%zu\n", c->lib_name[i], c->lib[i].len);
        sb_putn(b, c->lib[i].text, c->lib[i].len);
    }
}

uint64_t driver_source_hash(const Compilation *c) {
    uint64_t h = parse_token_hash(&c->src, 0);
    for (int i = 0; i < c->nlib; i++) h = parse_token_hash(&c->lib[i], h);
    return h;
}

uint64_t driver_text_hash(const Compilation *c) {
    uint64_t h = util_hash(c->src.text, c->src.len, 0);
    for (int i = 0; i < c->nlib; i++) h = util_hash(c->lib[i].text, c->lib[i].len, h);
    return h;
}

int driver_compile_text(Compilation *c, const char *path, const char *text, size_t len,
                        const CompileOptions *opt, Stage upto) {
    static const CompileOptions none = {0};
    if (!opt) opt = &none;
    c->src = (Source){path, text, len};
    c->library = opt->library;
    diag_init(&c->diag, &c->src, opt->err ? opt->err : stderr);
    c->prog = parse_source(c->arena, &c->diag, &c->src, 0);
    if (c->diag.nerror) return 1;
    int rc = check_overrides(c, opt);
    if (rc) return rc;
    if (upto == STAGE_PARSE) return 0;
    SemaOptions so = {opt->ov, opt->nov, opt->width, opt->nwidth, load_block, library_names, c};
    c->model = sema_check(c->arena, &c->diag, c->prog, path, &so);
    if (!c->model) return 1;
    if (upto == STAGE_CHECK) return 0;
    c->graph = lower_model(c->arena, c->model, &c->diag);
    if (!c->graph) return 1;
    if (!check_prunable(c) || !check_foldable(c)) return 1;
    if (!check_sampler(c)) return 1;
    autodiff_graph(c->graph);
    if (c->model->train.sampler.kind != SAMPLER_NONE)
        sampler_graph(c->graph, &c->model->train.sampler);
    else
        update_graph(c->graph, &c->model->train.opt);
    programs_build(c->graph);
    bool pre = c->model->train.sampler.kind == SAMPLER_NONE && c->model->train.opt.kind == OPT_PRE_SGD;
    if (opt->hvp || pre) { /* pre_sgd estimates the Hessian from its products */
        if (!hvp_check(c->graph, &c->diag, pre ? "pre_sgd" : "a Hessian-vector product")) return 1;
        hvp_graph(c->graph);
    }
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
