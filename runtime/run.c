/* run.c: train, eval and predict as commands (see run.h): the glue between the driver, the
 * devices and the training loop that `nnc train` and built trainers share. */
#include "run.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train.h"

Built *run_build(const RunOptions *o, const WidthOverride *width, int nwidth, int64_t max_batch) {
    Built *b = util_calloc(1, sizeof *b);
    CompileOptions co = {.ov = o->ov, .nov = o->nov, .max_batch = max_batch, .no_fuse = o->no_fuse, .width = width,
                         .nwidth = nwidth};
    int rc;
    if (o->text) {
        b->c.arena = arena_new();
        rc = driver_compile_text(&b->c, o->path, o->text, o->len, &co, STAGE_PLAN);
    } else {
        rc = driver_compile(&b->c, o->path, &co, STAGE_PLAN);
    }
    char err[1024];
    if (rc == 0 && exec_new(&b->e, b->c.plan, o->device, stderr, err, sizeof err)) {
        fprintf(stderr, "nnc: error: %s\n", err);
        rc = 1;
    }
    if (rc) {
        driver_free(&b->c);
        free(b);
        return NULL;
    }
    return b;
}

void run_free(Built *b) {
    if (!b) return;
    if (b->e.dev) exec_free(&b->e);
    driver_free(&b->c);
    free(b);
}

/* --data: a directory of the four standard IDX files, or a CSV file (target in the last columns). */
static int apply_data(const RunOptions *o, Model *m) {
    if (!o->data) return 0;
    struct stat st;
    if (stat(o->data, &st)) {
        fprintf(stderr, "nnc: error: --data %s: %s\n", o->data, strerror(errno));
        return 1;
    }
    DataSpec *d = &m->train.data;
    SrcLoc loc = d->loc;
    memset(d, 0, sizeof *d);
    d->loc = loc;
    d->header = -1;
    d->target_col = -1;
    size_t n = strlen(o->data);
    if (S_ISDIR(st.st_mode)) {
        d->kind = DATA_IDX;
        d->dir = o->data;
    } else if ((n > 4 && !strcmp(o->data + n - 4, ".csv")) || (n > 7 && !strcmp(o->data + n - 7, ".csv.gz"))) {
        d->kind = DATA_CSV;
        d->path = o->data;
    } else {
        fprintf(stderr, "nnc: error: --data %s: give a directory holding the four standard IDX files, or a .csv file\n",
                o->data);
        return 1;
    }
    return 0;
}

/* Pruning recompiles the model at the surviving widths, each as its own compilation and device
 * instance.  The first stays alive for the whole run (its model and diagnostics describe the
 * source); retired rebuilds are freed at once. */
typedef struct {
    const RunOptions *o;
    Built *first;
    Built *rebuilt[64];
    int n;
} Rebuilds;

static Exec *rebuild_model(void *ctx, const WidthOverride *width, int nwidth) {
    Rebuilds *r = ctx;
    if (r->n == 64) {
        fprintf(stderr, "nnc: error: too many recompilations\n");
        return NULL;
    }
    Built *b = run_build(r->o, width, nwidth, 0);
    if (!b) return NULL;
    r->rebuilt[r->n++] = b;
    return &b->e;
}

static void retire_model(void *ctx, Exec *e) {
    Rebuilds *r = ctx;
    for (int i = 0; i < r->n; i++)
        if (r->rebuilt[i] && &r->rebuilt[i]->e == e) {
            run_free(r->rebuilt[i]);
            r->rebuilt[i] = NULL;
            return;
        }
    exec_free(e); /* the first one: its compilation lives on */
}

int run_train(const RunOptions *o) {
    double t0 = util_now();
    Built *b = run_build(o, NULL, 0, 0);
    if (!b) return 1;
    if (apply_data(o, b->c.model)) {
        run_free(b);
        return 1;
    }
    Rebuilds rb = {.o = o, .first = b};
    TrainConfig cfg = {.model = b->c.model, .exec = &b->e, .out = stdout, .diag = &b->c.diag, .progress = o->progress,
                       .rebuild = rebuild_model, .retire = retire_model, .rebuild_ctx = &rb};
    char backend[512];
    snprintf(backend, sizeof backend, "%s; %s in %.2f s", b->e.dev->info, o->built ? o->built : "compiled",
             util_now() - t0);
    cfg.backend = backend;
    char outdir[1024];
    snprintf(outdir, sizeof outdir, "runs/%s", b->c.model->name);
    cfg.out_dir = o->out_dir ? o->out_dir : outdir;
    TrainResult res;
    int rc = train_run(&cfg, &res);
    if (rc == 0) printf("metrics written to %s/metrics.jsonl\n", cfg.out_dir);
    for (int i = 0; i < rb.n; i++) run_free(rb.rebuilt[i]);
    run_free(b);
    return rc;
}

int run_info(const RunOptions *o, const char *build_info, const char *cuda_source) {
    Compilation c = {.arena = arena_new()};
    CompileOptions co = {.ov = o->ov, .nov = o->nov, .no_fuse = o->no_fuse};
    int rc = driver_compile_text(&c, o->path, o->text, o->len, &co, STAGE_PLAN);
    if (rc == 0) {
        StrBuf b = {0};
        summary_print(&b, &c);
        fputs(sb_str(&b), stdout);
        sb_free(&b);
        printf("\nbuilt with: %s\nCUDA C for the CUDA backend: %zu bytes (nnc build --keep-kernels writes it out)\n",
               build_info, strlen(cuda_source));
    }
    driver_free(&c);
    return rc;
}

int run_eval(const RunOptions *o) {
    fprintf(stderr, "nnc: error: eval is not available yet\n");
    return 1;
}

int run_predict(const RunOptions *o) {
    fprintf(stderr, "nnc: error: predict is not available yet\n");
    return 1;
}
