/* run.c: train, eval and predict as commands (see run.h): the glue between the driver, the
 * devices and the training loop that `nnc train` and built trainers share. */
#include "run.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bayes_linear.h"
#include "checkpoint.h"
#include "dist.h"
#include "npy.h"
#include "posterior.h"
#include "train.h"
#include "vi_eval.h"

/* Compiles o's model (the text embedded in a trainer, or the file) up to `upto`. */
static int compile(const RunOptions *o, const CompileOptions *opt, Stage upto, Compilation *c) {
    CompileOptions co = *opt;
    co.library = o->library;
    if (!o->text) return driver_compile(c, o->path, &co, upto);
    memset(c, 0, sizeof *c);
    c->arena = arena_new();
    return driver_compile_text(c, o->path, o->text, o->len, &co, upto);
}

/* The model's identity in checkpoints: a hash of its source text and the library files it
 * read, 16 hex digits. */
/* The model's identity hashes (checkpoint.h's RunIdentity): by tokens, and by bytes. */
static void source_hash(const Compilation *c, char out[17], char text[17]) {
    snprintf(out, 17, "%016llx", (unsigned long long)driver_source_hash(c));
    snprintf(text, 17, "%016llx", (unsigned long long)driver_text_hash(c));
}

Built *run_build(const RunOptions *o, const WidthOverride *width, int nwidth, int64_t max_batch) {
    Built *b = util_calloc(1, sizeof *b);
    CompileOptions co = {.ov = o->ov, .nov = o->nov, .max_batch = max_batch, .no_fuse = o->no_fuse, .width = width,
                         .nwidth = nwidth, .hvp = o->hvp};
    int rc = compile(o, &co, STAGE_PLAN, &b->c);
    char err[1024];
    if (rc == 0 && exec_new(&b->e, b->c.plan, o->device, stderr, err, sizeof err)) {
        fprintf(stderr, "nnc: error: %s%s\n", dist_who(), err);
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
    if (b->e.head) {
        blr_free(b->e.head);
        free(b->e.head);
    }
    if (b->e.dev) exec_free(&b->e);
    driver_free(&b->c);
    free(b);
}

int run_parse_option(RunOptions *o, int argc, char **argv, int i, char *why, size_t nwhy) {
    const char *s = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
    bool takes_value = !strcmp(s, "--set") || !strcmp(s, "--out") || !strcmp(s, "--device") || !strcmp(s, "--data") ||
                       !strcmp(s, "--init") || !strcmp(s, "--checkpoint-every") || !strcmp(s, "--collective-timeout") ||
                       !strcmp(s, "--tensorboard") || !strcmp(s, "--histograms");
    if (takes_value && !value) {
        snprintf(why, nwhy, "%s", !strcmp(s, "--set") ? "--set needs NAME=VALUE"
                                  : !strcmp(s, "--out") ? "--out needs a directory" : "");
        if (!why[0]) snprintf(why, nwhy, "%s needs a value", s);
        return -1;
    }
    if (!strcmp(s, "--set") || !strncmp(s, "--set=", 6)) {
        if (o->nov == RUN_MAX_SETS) {
            snprintf(why, nwhy, "too many --set options");
            return -1;
        }
        if (!driver_parse_override(s[5] == '=' ? s + 6 : value, &o->ov[o->nov], why, nwhy)) return -1;
        o->nov++;
        return s[5] == '=' ? 1 : 2;
    }
    if (!strcmp(s, "--device")) {
        if (strcmp(value, "cpu") && strcmp(value, "cuda") && strcmp(value, "cuda-emu") && strcmp(value, "auto")) {
            snprintf(why, nwhy, "unknown device '%s': use cpu, cuda, cuda-emu or auto", value);
            return -1;
        }
        o->device = value;
        return 2;
    }
    if (!strcmp(s, "--checkpoint-every") || !strcmp(s, "--histograms")) {
        char *end;
        long long n = strtoll(value, &end, 10);
        if (*end || end == value || n < 0) {
            snprintf(why, nwhy, "%s needs a whole number of epochs >= 0, not '%s'", s, value);
            return -1;
        }
        *(s[2] == 'c' ? &o->checkpoint_every : &o->histogram_every) = n;
        return 2;
    }
    if (!strcmp(s, "--no-tensorboard")) {
        o->no_tensorboard = true;
        return 1;
    }
    if (!strcmp(s, "--deterministic-reduce") || !strncmp(s, "--deterministic-reduce=", 23)) {
        char *end;
        long long n = s[22] == '=' ? strtoll(s + 23, &end, 10) : 4;
        if ((s[22] == '=' && (*end || end == s + 23)) || n < 1 || n > 1024) {
            snprintf(why, nwhy, "--deterministic-reduce=S needs a number of shards from 1 to 1024, not '%s'", s + 23);
            return -1;
        }
        o->shards = n;
        return 1;
    }
    if (!strcmp(s, "--collective-timeout")) {
        char *end;
        double t = strtod(value, &end);
        if (*end || end == value || !(t > 0)) {
            snprintf(why, nwhy, "--collective-timeout needs a number of seconds > 0, not '%s'", value);
            return -1;
        }
        o->collective_timeout = t;
        return 2;
    }
    const char **dst = !strcmp(s, "--out") ? &o->out_dir : !strcmp(s, "--data") ? &o->data
                     : !strcmp(s, "--init") ? &o->init : !strcmp(s, "--tensorboard") ? &o->tensorboard : NULL;
    if (dst) {
        *dst = value;
        return 2;
    }
    if (!strcmp(s, "--resume")) {
        o->resume = true;
        return 1;
    }
    if (!strcmp(s, "--progress") || !strcmp(s, "--no-progress")) {
        o->progress = s[2] == 'p';
        return 1;
    }
    return 0;
}

/* --data DIR for a model whose data is npy(...): each array from DIR, under its file's own name
 * (DIR/ringdown_train_x.npy) or else its input's or target's (DIR/x.npy).  1 after reporting. */
static int apply_npy_dir(const RunOptions *o, Model *m, Arena *arena) {
    DataSpec *d = &m->train.data;
    DataArray *moved = arena_alloc(arena, sizeof(DataArray) * (size_t)d->narray);
    for (int i = 0; i < d->narray; i++) {
        const char *base = strrchr(d->array[i].path, '/');
        base = base ? base + 1 : d->array[i].path;
        char *same = arena_printf(arena, "%s/%s", o->data, base), *named = arena_printf(arena, "%s/%s.npy", o->data, d->array[i].name);
        struct stat st;
        moved[i] = d->array[i];
        moved[i].path = stat(same, &st) == 0 ? same : stat(named, &st) == 0 ? named : NULL;
        if (!moved[i].path && !strcmp(same, named)) {
            fprintf(stderr, "nnc: error: --data %s: no array for '%s': %s does not exist\n", o->data, d->array[i].name, same);
            return 1;
        }
        if (!moved[i].path) {
            fprintf(stderr, "nnc: error: --data %s: no array for '%s': neither %s nor %s exists\n", o->data, d->array[i].name, same,
                    named);
            return 1;
        }
    }
    d->array = moved;
    return 0;
}

/* --data: a directory of the four standard IDX files, or a CSV file (target in the last columns);
 * for a model whose data is npy(...), a directory of its arrays. */
static int apply_data(const RunOptions *o, Model *m, Arena *arena) {
    if (!o->data) return 0;
    struct stat st;
    if (stat(o->data, &st)) {
        fprintf(stderr, "nnc: error: --data %s: %s\n", o->data, strerror(errno));
        return 1;
    }
    if (m->train.data.kind == DATA_NPY) {
        if (S_ISDIR(st.st_mode)) return apply_npy_dir(o, m, arena);
        fprintf(stderr, "nnc: error: --data %s: the model reads npy arrays; give a directory holding them\n", o->data);
        return 1;
    }
    DataSpec *d = &m->train.data;
    SrcLoc loc = d->loc;
    memset(d, 0, sizeof *d);
    d->loc = loc;
    d->header = -1;
    d->target_col = -1;
    if (S_ISDIR(st.st_mode)) {
        d->kind = DATA_IDX;
        d->dir = o->data;
    } else if (util_ends_with(o->data, ".csv") || util_ends_with(o->data, ".csv.gz")) {
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
    int64_t max_batch; /* what the first was planned for (a part of the batch, data parallel) */
} Rebuilds;

static Exec *rebuild_model(void *ctx, const WidthOverride *width, int nwidth) {
    Rebuilds *r = ctx;
    if (r->n == 64) {
        fprintf(stderr, "nnc: error: too many recompilations\n");
        return NULL;
    }
    Built *b = run_build(r->o, width, nwidth, r->max_batch);
    if (!b && r->o->built) /* a trainer: its kernels were compiled for the declared widths */
        fprintf(stderr, "nnc: error: this trainer cannot run the pruned model: a pruned convolution's channel count is part of "
                "its kernels' code (a dense layer's width is not); prune this model with nnc train, or train without pruning "
                "here\n");
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

/* What checkpoints of this run belong to: the model, a hash of its source, the settings that
 * change its results (--set values other than epochs, --fuse=none, --data). */
typedef struct {
    RunIdentity id;
    char hash[17], text_hash[17];
    StrBuf settings;
} Identity;

static int cmp_override(const void *a, const void *b) {
    return strcmp(((const Override *)a)->key, ((const Override *)b)->key);
}

static void identify(const RunOptions *o, const Compilation *c, Identity *idn) {
    source_hash(c, idn->hash, idn->text_hash);
    Override *ov = util_calloc((size_t)o->nov + 1, sizeof(Override));
    if (o->nov) memcpy(ov, o->ov, sizeof(Override) * (size_t)o->nov);
    qsort(ov, (size_t)o->nov, sizeof *ov, cmp_override);
    for (int i = 0; i < o->nov; i++) /* the last of a repeated key counts, as in sema */
        if (strcmp(ov[i].key, "epochs") && strcmp(ov[i].key, "iterations") && (i + 1 == o->nov || strcmp(ov[i].key, ov[i + 1].key)))
            sb_printf(&idn->settings, "%s%s=%.17g", idn->settings.len ? "," : "", ov[i].key, ov[i].value);
    free(ov);
    if (o->no_fuse) sb_printf(&idn->settings, "%sfuse=none", idn->settings.len ? "," : "");
    if (o->data) sb_printf(&idn->settings, "%sdata=%s", idn->settings.len ? "," : "", o->data);
    idn->id = (RunIdentity){c->model->name, idn->hash, sb_str(&idn->settings), idn->text_hash};
}

/* Temporary files of checkpoint writes a killed run left behind: never read, removed. */
static void remove_stale(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, "checkpoint.safetensors.tmp.", 27)) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0) printf("removed %s, left by an interrupted checkpoint write\n", path);
    }
    closedir(d);
}

/* Data parallel (dist.h): every rank compiled the same model with the same settings, on the
 * same kind of device, and the batch divides into the ranks' parts.  Checked before any step;
 * 0, or 1 after rank 0 said why (every rank returns the same). */
static int check_ranks(const RunOptions *o, const Built *b, const char *hash_text) {
    const Model *m = b ? b->c.model : NULL;
    int bad = dist_first_failed(b != NULL, "the start");
    if (bad >= 0) {
        if (dist.rank == 0 && bad > 0)
            fprintf(stderr, "nnc: error: rank %d cannot compile the model or open its device%s (its message says why); no rank "
                    "trains\n", bad, o->device && strcmp(o->device, "cpu") ? " (does every rank have a GPU?)" : "");
        return 1;
    }
    uint64_t mine = util_hash(hash_text, strlen(hash_text), 0), *all = util_calloc((size_t)dist.size, sizeof(uint64_t));
    int differs = -1;
    if (dist_allgather(&mine, all, sizeof mine, "the model's hash")) differs = 0;
    for (int r = 1; r < dist.size && differs < 0; r++)
        if (all[r] != all[0]) differs = r;
    free(all);
    if (differs >= 0) {
        dist.failed = true;
        if (dist.rank == 0)
            fprintf(stderr, "nnc: error: rank %d has another model file or other settings than rank 0 (the hash of the source, "
                    "the --set values and the device differ); every rank must train the same model\n", differs);
        return 1;
    }
    bool sampler = m->train.sampler.kind != SAMPLER_NONE; /* chains on ranks: the batch stays whole */
    int64_t parts = sampler ? 1 : o->shards > 0 ? o->shards : dist.size, batch = m->train.batch;
    const char *why = NULL;
    char msg[512];
    if (m->train.sampler.kind != SAMPLER_NONE && o->resume)
        why = "a sampling run on several ranks keeps no checkpoint: --resume a sampling run on one process";
    else if (m->train.sampler.kind != SAMPLER_NONE && o->shards)
        why = "--deterministic-reduce is for optimisers: a sampler's chains run one per rank";
    else if (!sampler && parts % dist.size) {
        snprintf(msg, sizeof msg, "--deterministic-reduce=%lld cannot be shared by %d ranks: give a number of shards that %d divides",
                 (long long)parts, dist.size, dist.size);
        why = msg;
    } else if (batch % parts) {
        snprintf(msg, sizeof msg, "the batch of %lld does not divide into %lld %s: give a batch that %lld divides (--set batch=N), "
                 "or %s", (long long)batch, (long long)parts, o->shards ? "shards" : "ranks' equal shares", (long long)parts,
                 o->shards ? "another number of shards" : "another number of ranks");
        why = msg;
    }
    if (why) {
        dist.failed = true;
        if (dist.rank == 0) fprintf(stderr, "nnc: error: %s\n", why);
        return 1;
    }
    return 0;
}

int run_train(const RunOptions *o) {
    double t0 = util_now();
    char err[1024];
    int env_rank, env_size;
    dist_launched(&env_rank, &env_size);
    if (dist_init(o->collective_timeout, err, sizeof err)) {
        fprintf(stderr, "nnc: error: rank %d: %s\n", env_rank, err);
        return 1;
    }
    int per_rank = dist_threads_per_rank();
    if (per_rank > 0) device_cpu_set_threads(per_rank); /* not every rank on every core */
    if (dist.rank > 0) /* rank 0 alone prints progress, metrics, checkpoints and result.json */
        if (!freopen("/dev/null", "w", stdout)) return dist_end(1);
    int64_t parts = o->shards > 0 ? o->shards : dist.size;
    int64_t batch = 0;
    if (parts > 1) { /* the batch the model gives, to plan for one part of it (a sampler's: whole) */
        Compilation c;
        CompileOptions co = {.ov = o->ov, .nov = o->nov, .err = fopen("/dev/null", "w")};
        if (compile(o, &co, STAGE_CHECK, &c) == 0) batch = c.model->train.sampler.kind != SAMPLER_NONE ? 0 : c.model->train.batch;
        if (co.err) fclose(co.err);
        driver_free(&c);
    }
    Built *b = run_build(o, NULL, 0, batch > 0 && batch % parts == 0 ? batch / parts : 0);
    if (dist.on) {
        StrBuf h = {0};
        if (b) sb_printf(&h, "%016llx", (unsigned long long)driver_source_hash(&b->c));
        for (int i = 0; i < o->nov; i++) sb_printf(&h, " %s=%.17g", o->ov[i].key, o->ov[i].value);
        sb_printf(&h, " device=%s fuse=%d data=%s shards=%lld", o->device ? o->device : "cpu", !o->no_fuse, o->data ? o->data : "",
                  (long long)o->shards);
        int rc = check_ranks(o, b, sb_str(&h));
        sb_free(&h);
        if (rc) {
            run_free(b);
            return dist_end(1);
        }
    }
    if (!b) return dist_end(1);
    if (apply_data(o, b->c.model, b->c.arena)) {
        run_free(b);
        return dist_end(1);
    }
    Identity idn = {0};
    identify(o, &b->c, &idn);
    char outdir[1024], ckpt[1200];
    snprintf(outdir, sizeof outdir, "runs/%s", b->c.model->name);
    const char *dir = o->out_dir ? o->out_dir : outdir;
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", dir);
    Rebuilds rb = {.o = o, .first = b, .max_batch = b->c.plan->max_batch};
    TrainConfig cfg = {.model = b->c.model, .exec = &b->e, .out = stdout, .diag = &b->c.diag, .progress = o->progress,
                       .rebuild = rebuild_model, .retire = retire_model, .rebuild_ctx = &rb, .out_dir = dist.rank ? NULL : dir,
                       .identity = &idn.id, .checkpoint_every = o->checkpoint_every, .init = o->init, .shards = o->shards,
                       .tensorboard = o->no_tensorboard ? NULL : o->tensorboard ? o->tensorboard : dir,
                       .histogram_every = o->histogram_every < 0 ? 1 : o->histogram_every};
    Checkpoint ck = {0};
    int rc = 0;
    if (dist.rank == 0) remove_stale(dir);
    if (o->resume && b->c.model->train.sampler.kind != SAMPLER_NONE) {
        cfg.resume_sampling = true; /* its checkpoint is the sampler's own (sample.c) */
    } else if (o->resume) {
        struct stat st;
        if (stat(ckpt, &st) && errno == ENOENT) {
            printf("no checkpoint in %s: starting from the beginning\n", dir);
        } else if (checkpoint_open(ckpt, &idn.id, &ck, err, sizeof err)) {
            fprintf(stderr, "nnc: error: %scannot resume: %s\n", dist_who(), err);
            rc = 1;
        } else { /* the checkpoint's widths, its weights and optimiser state */
            Exec *e = rebuild_model(&rb, ck.width, ck.nwidth);
            if (!e || checkpoint_load(&ck, e, false, err, sizeof err)) {
                if (e) fprintf(stderr, "nnc: error: %scannot resume: %s\n", dist_who(), err);
                rc = 1;
            } else {
                exec_free(&b->e);
                cfg.exec = e;
                cfg.resume = &ck.state;
            }
        }
    }
    if (dist.size > 1) { /* every rank resumes from the same step, or none resumes */
        double at[2] = {rc ? -2 : cfg.resume ? (double)cfg.resume->step : -1, 0};
        at[1] = -at[0];
        int bad = dist_first_failed(rc == 0, "resuming");
        if (bad < 0 && dist_max_f64(at, 2, "resuming")) bad = dist.rank;
        if (bad >= 0 || at[0] != -at[1]) {
            dist.failed = true;
            if (dist.rank == 0)
                fprintf(stderr, "nnc: error: %s: every rank must read the same checkpoint\n",
                        bad >= 0 ? "a rank cannot resume (its message says why)" : "the ranks found different checkpoints in the run's directory");
            rc = 1;
        }
    }
    if (rc == 0) {
        char backend[512];
        snprintf(backend, sizeof backend, "%s; %s in %.2f s", cfg.exec->dev->info, o->built ? o->built : "compiled",
                 util_now() - t0);
        cfg.backend = backend;
        TrainResult res;
        rc = train_run(&cfg, &res);
        if (rc == 0) printf("metrics written to %s/metrics.jsonl\n", dir);
    }
    checkpoint_close(&ck);
    sb_free(&idn.settings);
    for (int i = 0; i < rb.n; i++) run_free(rb.rebuilt[i]);
    run_free(b);
    return dist_end(rc);
}

int run_info(const RunOptions *o, const char *build_info, const char *cuda_source) {
    Compilation c;
    CompileOptions co = {.ov = o->ov, .nov = o->nov, .no_fuse = o->no_fuse};
    int rc = compile(o, &co, STAGE_PLAN, &c);
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

/* The run-time scalars (scheduled params, such as a decaying penalty) as the checkpoint's last
 * step used them, so that eval and predict compute what training's last evaluation did.  The
 * steps per epoch come from the checkpoint's position (whole epochs done, or the steps of the
 * first one so far). */
static void scalars_at_checkpoint(const Checkpoint *ck, const Model *m, Exec *e) {
    const TrainState *st = &ck->state;
    int64_t whole = st->epoch - 1;
    int64_t spe = whole > 0 ? (st->step - st->epoch_step) / whole : st->epoch_step;
    if (st->step > 0) train_step_scalars(m, e, st->step, spe, train_total_steps(&m->train, spe), NULL, NULL);
}

Built *run_from_checkpoint(const RunOptions *o, Checkpoint *ck) {
    Compilation c;
    CompileOptions co = {.ov = o->ov, .nov = o->nov};
    int rc = compile(o, &co, STAGE_CHECK, &c);
    char err[1024], hash[17], text_hash[17];
    if (rc == 0 && c.model->train.sampler.kind != SAMPLER_NONE) {
        fprintf(stderr, "nnc: error: model '%s' is sampled, not trained: give --draws D, the sampling run's directory, instead of "
                "--checkpoint\n", c.model->name);
        rc = 1;
    }
    if (rc == 0) {
        source_hash(&c, hash, text_hash);
        RunIdentity id = {c.model->name, hash, NULL, text_hash};
        if (checkpoint_open(o->checkpoint, &id, ck, err, sizeof err)) {
            fprintf(stderr, "nnc: error: %s\n", err);
            rc = 1;
        }
    }
    driver_free(&c);
    if (rc) return NULL;
    Built *b = run_build(o, ck->width, ck->nwidth, 0);
    if (b && checkpoint_load(ck, &b->e, true, err, sizeof err)) {
        fprintf(stderr, "nnc: error: %s: %s\n", o->checkpoint, err);
        run_free(b);
        b = NULL;
    }
    if (b) scalars_at_checkpoint(ck, b->c.model, &b->e);
    if (b && b->c.model->head.on) { /* the head fitted after training, when the run got that far */
        BayesLinear h;
        int got = checkpoint_load_head(ck, o->checkpoint, &h, err, sizeof err);
        if (got < 0) {
            fprintf(stderr, "nnc: error: %s\n", err);
            run_free(b);
            b = NULL;
        } else if (got > 0) {
            b->e.head = util_calloc(1, sizeof h);
            *b->e.head = h;
        }
    }
    if (!b) checkpoint_close(ck);
    return b;
}

/* eval, predict of a sampled model: the model as its source says, and its run's draws (d is
 * emptied on failure). */
Built *run_from_draws(const RunOptions *o, Draws *d) {
    memset(d, 0, sizeof *d);
    Built *b = run_build(o, NULL, 0, 0);
    if (!b) return NULL;
    char hash[17], text_hash[17], err[1024];
    source_hash(&b->c, hash, text_hash);
    RunIdentity id = {b->c.model->name, hash, NULL, text_hash};
    if (b->c.model->train.sampler.kind == SAMPLER_NONE) {
        fprintf(stderr, "nnc: error: --draws: model '%s' is trained by an optimizer, not sampled: give its --checkpoint instead\n",
                b->c.model->name);
    } else if (draws_load(o->draws, b->c.graph, &id, d, err, sizeof err)) {
        fprintf(stderr, "nnc: error: %s\n", err);
    } else {
        printf("draws: %lld from %d chain%s (%s)\n", (long long)d->ndraw, d->nchain, d->nchain == 1 ? "" : "s", o->draws);
        return b;
    }
    draws_free(d);
    run_free(b);
    return NULL;
}

static int eval_draws(const RunOptions *o) {
    Draws d;
    Built *b = run_from_draws(o, &d);
    if (!b) return 1;
    Model *m = b->c.model;
    ModelData data;
    char err[1024];
    int rc = apply_data(o, m, b->c.arena);
    if (rc == 0 && train_load_data(m, b->c.graph, &data, err, sizeof err)) {
        fprintf(stderr, "nnc: error: %s\n", err);
        rc = 1;
    } else if (rc == 0) {
        int64_t n_valid, *order = train_split_order(&m->train, data.train.n, &n_valid);
        printf("evaluating %s: ", m->name);
        rc = posterior_report(&b->e, m, &d, &data, order + data.train.n - n_valid, n_valid, stdout, NULL) ? 1 : 0;
        free(order);
        train_free_data(&data);
    }
    draws_free(&d);
    run_free(b);
    return rc;
}

int run_eval(const RunOptions *o) {
    if (o->draws) return eval_draws(o);
    Checkpoint ck;
    Built *b = run_from_checkpoint(o, &ck);
    if (!b) return 1;
    int rc = apply_data(o, b->c.model, b->c.arena);
    if (rc == 0) {
        printf("checkpoint %s: after epoch %lld, step %lld\n", o->checkpoint, (long long)ck.state.epoch - 1,
               (long long)ck.state.step);
        TrainConfig cfg = {.model = b->c.model, .exec = &b->e, .out = stdout, .diag = &b->c.diag};
        rc = train_eval(&cfg);
    }
    checkpoint_close(&ck);
    run_free(b);
    return rc;
}

/* The predictions as NPY (n x cols float32), or as CSV: for a classifier the predicted class
 * first, then the outputs.  With `per` 4 (a posterior's), each output is four values: mean,
 * sd, 5 % and 95 % quantile (NPY n x cols x 4; CSV columns out0_mean, out0_sd, out0_q5,
 * out0_q95, ...), and the class is the one of the highest mean. */
static const char *const stat_name[] = {"mean", "sd", "q5", "q95"};
/* n rows of `per` values (the prediction, or the posterior predictive's statistics) for each
 * column of each head: an .npy array [n, cols(, per)], or a CSV file with a header, where a
 * class head's columns come after its most probable class. */
static int write_predictions(const char *path, const float *y, int64_t n, int per, const ViHead *h, int nh) {
    char err[1024];
    int64_t cols = h[nh - 1].from + h[nh - 1].cols;
    if (!util_ends_with(path, ".csv")) {
        int64_t shape[3] = {n, cols, per};
        if (npy_write_f32(path, y, per > 1 ? 3 : 2, shape, err, sizeof err)) {
            fprintf(stderr, "nnc: error: %s\n", err);
            return 1;
        }
        return 0;
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "nnc: error: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    for (int k = 0; k < nh; k++) {
        bool one = !strcmp(h[k].name, "prediction"); /* a model with one target: out0, out1, ... */
        const char *pre = one ? "" : h[k].name, *sep = one ? "" : ".";
        if (h[k].classes) fprintf(f, "%s%sclass,", pre, sep);
        for (int64_t j = 0; j < h[k].cols * per; j++)
            fprintf(f, "%s%sout%lld%s%s%s", pre, sep, (long long)(j / per), per > 1 ? "_" : "", per > 1 ? stat_name[j % per] : "",
                    k + 1 < nh || j + 1 < h[k].cols * per ? "," : "\n");
    }
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < nh; k++) {
            const float *r = y + (i * cols + h[k].from) * per;
            if (h[k].classes) {
                int64_t best = 0;
                for (int64_t j = 1; j < h[k].cols; j++)
                    if (r[j * per] > r[best * per]) best = j;
                fprintf(f, "%lld,", (long long)best);
            }
            for (int64_t j = 0; j < h[k].cols * per; j++)
                fprintf(f, "%.9g%s", (double)r[j], k + 1 < nh || j + 1 < h[k].cols * per ? "," : "\n");
        }
    if (fclose(f)) {
        fprintf(stderr, "nnc: error: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* predict's inputs: one file for a model with one input (data_load_inputs), or --input
 * NAME=FILE.npy for each of several.  -1 with the reason in err. */
static int load_inputs(const RunOptions *o, const Graph *g, const DataExpect *ex, Dataset *d, char *err, size_t nerr) {
    int ni = 0;
    for (int i = 0; i < g->ninput; i++) ni += !g->input[i].is_target;
    bool named = strchr(o->inputs[0], '=') != NULL;
    if (ni == 1 && o->ninputs == 1 && !named) return data_load_inputs(o->input, ex, d, err, nerr);
    char names[512] = "";
    for (int i = 0, at = 0; i < g->ninput; i++)
        if (!g->input[i].is_target && at < (int)sizeof names)
            at += snprintf(names + at, sizeof names - (size_t)at, "%s%s", at ? ", " : "", g->input[i].name);
    NpyArray arr[16];
    char name[16][128];
    for (int k = 0; k < o->ninputs; k++) {
        const char *eq = strchr(o->inputs[k], '=');
        if (!eq) {
            memset(d, 0, sizeof *d);
            return util_fail(err, nerr, "--input %s: the model has %d inputs (%s): give each as --input NAME=FILE.npy", o->inputs[k],
                             ni, names);
        }
        snprintf(name[k], sizeof name[k], "%.*s", (int)(eq - o->inputs[k]), o->inputs[k]);
        bool known = false;
        for (int i = 0; i < g->ninput; i++) known |= !g->input[i].is_target && !strcmp(g->input[i].name, name[k]);
        for (int j = 0; j < k; j++) known &= strcmp(name[j], name[k]) != 0;
        if (!known) {
            memset(d, 0, sizeof *d);
            return util_fail(err, nerr, "--input %s: '%s' is not an input of the model, or is given twice (its inputs: %s)",
                             o->inputs[k], name[k], names);
        }
        arr[k] = (NpyArray){name[k], eq + 1};
    }
    for (int i = 0; i < g->ninput; i++) {
        bool given = g->input[i].is_target;
        for (int k = 0; k < o->ninputs; k++) given |= !strcmp(name[k], g->input[i].name);
        if (!given) {
            memset(d, 0, sizeof *d);
            return util_fail(err, nerr, "predict has no array for input '%s'; add --input %s=FILE.npy", g->input[i].name, g->input[i].name);
        }
    }
    int rc = data_load_npy(arr, o->ninputs, ex, true, d, err, nerr);
    if (rc) memset(d, 0, sizeof *d);
    return rc;
}

int run_predict(const RunOptions *o) {
    if (!util_ends_with(o->output, ".npy") && !util_ends_with(o->output, ".csv")) {
        fprintf(stderr, "nnc: error: --output %s: name it .npy or .csv, the format to write\n", o->output);
        return 2;
    }
    Checkpoint ck = {0};
    Draws draws = {0};
    Built *b = o->draws ? run_from_draws(o, &draws) : run_from_checkpoint(o, &ck);
    if (!b) return 1;
    const Graph *g = b->c.graph;
    enum { MAX_HEADS = 64 };
    ViHead head[MAX_HEADS];
    int nh = vi_heads(g, head, MAX_HEADS);
    bool classes = head[0].classes;
    DataExpect ex;
    train_expect(g, &ex);
    Dataset d;
    char err[1024];
    int rc = 0;
    if (load_inputs(o, g, &ex, &d, err, sizeof err)) {
        fprintf(stderr, "nnc: error: %s\n", err);
        rc = 1;
    } else {
        TrainConfig cfg = {.model = b->c.model, .exec = &b->e, .out = stdout, .diag = &b->c.diag};
        int64_t cols = 0;
        float *y = NULL;
        int64_t S = b->c.model->train.eval_samples;
        bool fitted = !o->draws && b->e.head;
        if (!o->draws && b->c.model->head.on && !fitted) {
            fprintf(stderr, "nnc: error: %s has no fitted head: bayes_linear is fitted after the last epoch, and this run had not "
                    "finished (resume it to the end first)\n", o->checkpoint);
        } else if (fitted) { /* the head's predictive mean and sd per output */
            const BayesLinear *h = b->e.head;
            nh = 1;
            head[0] = (ViHead){.name = "prediction", .from = 0, .cols = h->T};
            cols = h->T;
            int64_t *idx = train_iota(d.n);
            y = util_calloc((size_t)(d.n * cols * 2) + 1, sizeof(float));
            if (blr_predict_all(&b->e, h, &d, idx, d.n, y)) {
                fprintf(stderr, "nnc: error: %s: %s\n", b->e.dev->name, b->e.dev->err);
                free(y);
                y = NULL;
            }
            free(idx);
        } else if (!o->draws && S > 0) { /* `evaluate samples = S`: mean and sd over S draws of the variational weights */
            cols = head[nh - 1].from + head[nh - 1].cols;
            int64_t *idx = train_iota(d.n);
            y = util_calloc((size_t)(d.n * cols * 2) + 1, sizeof(float));
            if (vi_predict(&b->e, S, &d, idx, d.n, y, NULL, NULL)) {
                fprintf(stderr, "nnc: error: %s: %s\n", b->e.dev->name, b->e.dev->err);
                free(y);
                y = NULL;
            }
            free(idx);
        } else if (o->draws) { /* the posterior predictive's four statistics per output */
            cols = posterior_cols(&b->e);
            int64_t *idx = train_iota(d.n);
            y = util_calloc((size_t)(d.n * cols * 4) + 1, sizeof(float));
            if (posterior_predictive(&b->e, &draws, &d, idx, d.n, classes, y, NULL, NULL)) {
                fprintf(stderr, "nnc: error: %s: %s\n", b->e.dev->name, b->e.dev->err);
                free(y);
                y = NULL;
            }
            free(idx);
        } else {
            y = train_predict(&cfg, &d, &cols);
        }
        int per = o->draws ? 4 : S > 0 || fitted ? 2 : 1;
        rc = !y || write_predictions(o->output, y, d.n, per, head, nh);
        if (rc == 0 && fitted)
            printf("predictions of the head bayes_linear(%s) for %lld samples of %s (%lld output%s, each as the predictive mean and "
                   "sd) written to %s\n", b->c.model->head.features_name, (long long)d.n, o->input, (long long)cols,
                   cols == 1 ? "" : "s", o->output);
        else if (rc == 0 && per == 2)
            printf("predictions for %lld samples of %s over %lld draws of the variational weights (%lld output%s, each as mean "
                   "and sd%s%s) written to %s\n", (long long)d.n, o->input, (long long)S, (long long)cols, cols == 1 ? "" : "s",
                   classes ? " of its probability" : "", classes && util_ends_with(o->output, ".csv") ? ", after the most probable class" : "",
                   o->output);
        else if (rc == 0 && per > 1)
            printf("posterior predictive for %lld samples of %s over %lld draws (%lld output%s, each as mean, sd, 5 %% and 95 %% "
                   "quantile%s%s) written to %s\n", (long long)d.n, o->input, (long long)draws.ndraw, (long long)cols,
                   cols == 1 ? "" : "s", classes ? " of its probability" : "",
                   classes && util_ends_with(o->output, ".csv") ? ", after the most probable class" : "", o->output);
        else if (rc == 0 && nh == 1)
            printf("predictions for %lld samples of %s (%lld values each%s) written to %s\n", (long long)d.n, o->input,
                   (long long)cols, classes && util_ends_with(o->output, ".csv") ? ", after the predicted class" : "", o->output);
        else if (rc == 0) {
            printf("predictions of %d heads for %lld samples of %s written to %s:", nh, (long long)d.n, o->input, o->output);
            for (int k = 0; k < nh; k++) {
                printf("%s %s in column %lld", k ? "," : "", head[k].name, (long long)head[k].from);
                if (head[k].cols > 1) printf(" to %lld", (long long)(head[k].from + head[k].cols - 1));
            }
            printf("%s\n", util_ends_with(o->output, ".csv") ? " (the CSV header names them)" : "");
        }
        free(y);
        data_free(&d);
    }
    data_expect_free(&ex);
    checkpoint_close(&ck);
    draws_free(&draws);
    run_free(b);
    return rc;
}
