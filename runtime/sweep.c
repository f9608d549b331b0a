/* sweep.c: `nnc sweep FILE --grid KEY=VALUES ... --seeds N --out DIR`, a grid of hyperparameters
 * and seeds trained one run after another, in DeepOBS's folder layout so that its analyzer
 * reads the result (docs/optimizers.md, "Sweeps"):
 *   DIR/<testproblem>/<optimizer>/num_epochs__E__batch_size__B__<name>__<value>... (sorted by name)/
 *       random_seed__S__<YYYY-MM-DD-HH-MM-SS>.json
 * Each run trains in DIR.runs/<the same path>/seed_S (metrics, checkpoints; outside DIR, whose every
 * folder DeepOBS's analyzer takes for a test problem, optimizer or setting), so that a sweep run
 * again skips the runs whose JSON is there and resumes the one it was in bit for bit.  Every
 * combination is compiled and checked before the first run starts, so a bad value stops the
 * sweep before any time is spent. */
#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "run.h"
#include "train.h"

enum { MAX_VALUES = 1000 };

typedef struct {
    const char *key;
    double *v;
    int n;
} Axis;

/* A float in a setting folder's name, as DeepOBS's float2str writes it: "{:.10e}" with the
 * mantissa's trailing zeros dropped (0.01 -> 1.e-02, 0.0015 -> 1.5e-03). */
static void deepobs_float(char *buf, size_t n, double v) {
    char s[64];
    snprintf(s, sizeof s, "%.10e", v);
    char *e = strchr(s, 'e');
    if (!e) {
        snprintf(buf, n, "%s", s);
        return;
    }
    char *m = e;
    while (m > s && m[-1] == '0') m--;
    snprintf(buf, n, "%.*s%s", (int)(m - s), s, e);
}

/* A float as Python's repr writes it (in messages): the shortest digits that read back, with
 * ".0" on a whole number. */
static void py_float(char *buf, size_t n, double v) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".einf")) strncat(buf, ".0", n - strlen(buf) - 1);
}

/* KEY=logspace(a,b,n) | linspace(a,b,n) | v1,v2,...  into ax; -1 with the reason. */
static int parse_axis(const char *spec, Axis *ax, char *why, size_t nwhy) {
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec) return util_fail(why, nwhy, "--grid '%s': write KEY=VALUES, as in lr=logspace(1e-5,1,13) or lr=1e-3,1e-2", spec);
    char *key = util_calloc((size_t)(eq - spec) + 1, 1);
    memcpy(key, spec, (size_t)(eq - spec));
    ax->key = key;
    const char *v = eq + 1;
    ax->v = util_calloc(MAX_VALUES, sizeof(double));
    ax->n = 0;
    double a, b;
    int cnt = 0, used = 0;
    bool logspace = !strncmp(v, "logspace(", 9), linspace = !strncmp(v, "linspace(", 9);
    if (logspace || linspace) {
        if (sscanf(v + 9, "%lf , %lf , %d )%n", &a, &b, &cnt, &used) != 3 || v[9 + used] != 0)
            return util_fail(why, nwhy, "--grid %s: %s(FROM,TO,N) takes two numbers and a count", spec, logspace ? "logspace" : "linspace");
        if (cnt < 1 || cnt > MAX_VALUES)
            return util_fail(why, nwhy, "--grid %s: the grid is empty; N must be from 1 to %d", spec, MAX_VALUES);
        if (logspace && !(a > 0 && b > 0))
            return util_fail(why, nwhy, "--grid %s: logspace's ends must be positive", spec);
        double la = logspace ? log10(a) : 0, lb = logspace ? log10(b) : 0; /* logspace: evenly spaced exponents, the ends as given */
        for (int i = 0; i < cnt; i++) {
            double t = cnt == 1 ? 0 : (double)i / (cnt - 1);
            ax->v[ax->n++] = logspace ? (i == 0 ? a : i == cnt - 1 ? b : pow(10, la + t * (lb - la))) : a + t * (b - a);
        }
    } else {
        const char *p = v;
        while (*p) {
            char *end;
            double x = strtod(p, &end);
            if (end == p || (*end && *end != ','))
                return util_fail(why, nwhy, "--grid %s: '%s' is not a number (a list is written 1e-3,1e-2)", spec, p);
            if (ax->n == MAX_VALUES) return util_fail(why, nwhy, "--grid %s: more than %d values", spec, MAX_VALUES);
            ax->v[ax->n++] = x;
            p = *end ? end + 1 : end;
        }
        if (ax->n == 0) return util_fail(why, nwhy, "--grid %s: the grid is empty; give at least one value", spec);
    }
    if (!strcmp(ax->key, "lr"))
        for (int i = 0; i < ax->n; i++)
            if (!(ax->v[i] > 0)) return util_fail(why, nwhy, "--grid %s: the learning rate must be positive, got %g", spec, ax->v[i]);
    return 0;
}

/* A test split: its own data, or the one fashion_mnist and idx("dir") carry (train.c). */
static bool has_test(const TrainSpec *t) {
    return t->test.kind != DATA_NONE || t->data.kind == DATA_FASHION_MNIST || (t->data.kind == DATA_IDX && t->data.dir);
}

static int mkdirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST) return -1;
            *p = '/';
        }
    return mkdir(buf, 0777) && errno != EEXIST ? -1 : 0;
}

/* The run's folder below DIR: <testproblem>/<optimizer>/num_epochs__E__batch_size__B__k__v...,
 * the optimizer's hyperparameters and the grid's other keys sorted by name. */
static char *setting_path(const Compilation *c, const Axis *ax, int nax, const int *at) {
    const Model *m = c->model;
    cJSON *hp = cJSON_CreateObject();
    train_opt_json(hp, &m->train.opt);
    for (int k = 0; k < nax; k++)
        if (!cJSON_GetObjectItem(hp, ax[k].key)) cJSON_AddNumberToObject(hp, ax[k].key, ax[k].v[at[k]]);
    const char *names[64];
    int nn = 0;
    for (cJSON *it = hp->child; it && nn < 64; it = it->next) names[nn++] = it->string;
    for (int i = 1; i < nn; i++) /* sorted by name */
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    StrBuf b = {0};
    sb_printf(&b, "%s/%s/num_epochs__%lld__batch_size__%lld", m->name, opt_name(&m->train.opt), (long long)m->train.epochs,
              (long long)m->train.batch);
    for (int i = 0; i < nn; i++) {
        cJSON *it = cJSON_GetObjectItem(hp, names[i]);
        char v[64];
        if (cJSON_IsBool(it))
            snprintf(v, sizeof v, "%s", cJSON_IsTrue(it) ? "True" : "False");
        else if (!strcmp(names[i], "rank")) /* an int in Python: str() */
            snprintf(v, sizeof v, "%d", (int)it->valuedouble);
        else
            deepobs_float(v, sizeof v, it->valuedouble);
        sb_printf(&b, "__%s__%s", names[i], v);
    }
    cJSON_Delete(hp);
    char *r = util_strdup(sb_str(&b));
    sb_free(&b);
    return r;
}

/* A finished run's JSON in the setting folder (random_seed__S__*.json)? */
static bool finished(const char *dir, uint64_t seed) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "random_seed__%llu__", (unsigned long long)seed);
    DIR *d = opendir(dir);
    bool found = false;
    for (struct dirent *e; d && !found && (e = readdir(d));)
        found = !strncmp(e->d_name, prefix, strlen(prefix)) && strstr(e->d_name, ".json");
    if (d) closedir(d);
    return found;
}

/* The run's result.json, with DeepOBS's fields, as DIR/<setting>/random_seed__S__<time>.json. */
static int publish(const char *work, const char *dir, uint64_t seed, double *final_acc, char *why, size_t nwhy) {
    char path[8192];
    snprintf(path, sizeof path, "%s/result.json", work);
    size_t len;
    char *text = util_read_file(path, &len);
    cJSON *r = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!r) return util_fail(why, nwhy, "%s: missing or not JSON", path);
    /* DeepOBS 1.1.2's runner fields, which its analyzer reads, beside the ones above (1.2's names):
     * the optimizer, the learning rate and the other hyperparameters apart, no schedule */
    if (!cJSON_GetObjectItem(r, "weight_decay")) cJSON_AddNullToObject(r, "weight_decay"); /* the test problem's L2: in the loss here */
    cJSON *ohp = cJSON_GetObjectItem(r, "optimizer_hyperparams"), *name = cJSON_GetObjectItem(r, "optimizer_name");
    cJSON_AddStringToObject(r, "optimizer", cJSON_GetStringValue(name) ? cJSON_GetStringValue(name) : "?");
    cJSON *lr = cJSON_GetObjectItem(ohp, "lr");
    cJSON_AddNumberToObject(r, "learning_rate", cJSON_IsNumber(lr) ? lr->valuedouble : 0);
    cJSON *hp = cJSON_Duplicate(ohp, 1);
    cJSON_DeleteItemFromObject(hp, "lr");
    cJSON_AddItemToObject(r, "hyperparams", hp);
    static const char *const lists[] = {"train_accuracies", "valid_accuracies", "test_accuracies", "valid_losses"};
    for (int i = 0; i < 4; i++) /* as DeepOBS: no accuracies for a problem without them (its analyzer reads any it finds) */
        if (cJSON_GetArraySize(cJSON_GetObjectItem(r, lists[i])) == 0) cJSON_DeleteItemFromObject(r, lists[i]);
    cJSON_AddNullToObject(r, "lr_sched_epochs");
    cJSON_AddNullToObject(r, "lr_sched_factors");
    cJSON *acc = cJSON_GetObjectItem(r, "test_accuracies"), *loss = cJSON_GetObjectItem(r, "test_losses");
    if (cJSON_GetArraySize(loss) == 0) loss = cJSON_GetObjectItem(r, "train_losses");
    int na = cJSON_GetArraySize(acc), nl = cJSON_GetArraySize(loss);
    /* the summary's figure: the final test accuracy, or else the final loss (as DeepOBS falls back) */
    *final_acc = na ? cJSON_GetArrayItem(acc, na - 1)->valuedouble : nl ? -cJSON_GetArrayItem(loss, nl - 1)->valuedouble - 1 : NAN;
    for (int i = 0; i < na; i++)
        if (cJSON_GetArrayItem(acc, i)->valuedouble == 0)
            printf("sweep: note: %s: a test accuracy is exactly 0, and DeepOBS's analyzer then ignores the accuracies\n", path);
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%d-%H-%M-%S", &tm);
    snprintf(path, sizeof path, "%s/random_seed__%llu__%s.json", dir, (unsigned long long)seed, stamp);
    char *json = cJSON_Print(r);
    cJSON_Delete(r);
    char tmp[8300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int rc = !f || fputs(json, f) < 0 || fputc('\n', f) < 0 || fclose(f) || rename(tmp, path);
    free(json);
    return rc ? util_fail(why, nwhy, "cannot write %s: %s", path, strerror(errno)) : 0;
}

/* Combination i of the grids (the last grid fastest): each grid's value index into at[], their
 * overrides into ov[0 .. nax), then DeepOBS's protocol (epoch 0, a training subset) at ov[nax],
 * ov[nax + 1]. */
static void combination(const Axis *ax, int nax, int64_t i, int *at, Override *ov) {
    for (int k = nax - 1; k >= 0; k--) {
        at[k] = (int)(i % ax[k].n);
        i /= ax[k].n;
        ov[k] = (Override){ax[k].key, ax[k].v[at[k]]};
    }
    ov[nax] = (Override){"eval_initial", 1};
    ov[nax + 1] = (Override){"train_eval", 1};
}

extern char **environ;

/* Runs argv[0] with argv, its output to the terminal (quiet: to /dev/null); true when it exits 0. */
static bool run_quietly(char *const argv[], bool quiet) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (quiet) {
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    }
    pid_t pid;
    int status = 1;
    bool ok = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) == 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0;
    posix_spawn_file_actions_destroy(&fa);
    return ok;
}

/* The sweep's figures as PNG in OUT (learning curves with the seeds' spread, learning-rate
 * sensitivity), drawn by runtime/plot_sweep.py with matplotlib: NNC_PLOT_SWEEP names the script
 * (default: the source tree's), NNC_PYTHON the interpreter (default Debian's /usr/bin/python3,
 * whose python3-matplotlib the README installs).  Without matplotlib, says how to draw them. */
static void draw_figures(const char *out) {
    const char *script = getenv("NNC_PLOT_SWEEP"), *python = getenv("NNC_PYTHON");
    static char installed[4096];
    if (!script)
        script = util_installed(installed, sizeof installed, "../share/nnc/plot_sweep.py") ? installed : NNC_SOURCE_DIR "/runtime/plot_sweep.py";
    if (!python) python = "/usr/bin/python3";
    fflush(stdout);
    char *probe[] = {(char *)python, "-c", "import matplotlib, numpy", NULL};
    char *plot[] = {(char *)python, (char *)script, (char *)out, NULL};
    if (access(script, R_OK) == 0 && run_quietly(probe, true)) {
        if (run_quietly(plot, false)) return;
        printf("figures: %s %s %s failed (above)\n", python, script, out);
        return;
    }
    printf("figures: not drawn: they need %s with matplotlib and numpy (apt install python3-matplotlib) and %s; then run: "
           "%s %s %s\n", python, script, python, script, out);
}

int run_sweep(const RunOptions *o, const SweepOptions *so) {
    char why[1024];
    Axis ax[SWEEP_MAX_GRIDS];
    int nax = 0, rc = 0;
    memset(ax, 0, sizeof ax);
    for (int i = 0; i < so->ngrid && rc == 0; i++) {
        if (parse_axis(so->grid[i], &ax[nax], why, sizeof why)) {
            fprintf(stderr, "nnc: error: %s\n", why);
            rc = 2;
        }
        nax++;
    }
    Compilation c;
    memset(&c, 0, sizeof c);
    CompileOptions co = {.ov = o->ov, .nov = o->nov};
    if (rc == 0) rc = driver_compile(&c, o->path, &co, STAGE_CHECK) ? 1 : 0;
    if (rc == 0 && (!has_test(&c.model->train) || c.model->train.sampler.kind != SAMPLER_NONE)) {
        fprintf(stderr, "nnc: error: %s: %s\n", o->path, c.model->train.sampler.kind != SAMPLER_NONE
                ? "a sweep trains optimizers; this model samples its posterior"
                : "a sweep's runs are measured on the test split (DeepOBS's test losses), and the model has no `test` data");
        rc = 1;
    }
    for (int k = 0; k < nax && rc == 0; k++) {
        const char *near = NULL;
        if (!strcmp(ax[k].key, "seed")) {
            fprintf(stderr, "nnc: error: --grid seed=...: give the number of seeds with --seeds N\n");
            rc = 2;
        } else if (!driver_key_known(&c, ax[k].key, &near)) {
            fprintf(stderr, "nnc: error: --grid %s: the model has no param or train setting '%s'%s%s%s\n", so->grid[k],
                    diag_name(ax[k].key), near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
            rc = 2;
        }
        for (int j = 0; j < k && rc == 0; j++)
            if (!strcmp(ax[j].key, ax[k].key)) {
                fprintf(stderr, "nnc: error: --grid %s: '%s' has a grid already\n", so->grid[k], ax[k].key);
                rc = 2;
            }
    }
    if (rc == 0 || c.arena) driver_free(&c);
    int64_t ncomb = 1;
    for (int k = 0; k < nax; k++) ncomb *= ax[k].n;
    int seeds = so->seeds > 0 ? so->seeds : 1;
    /* every combination's model, checked before anything runs */
    char **setting = rc == 0 ? util_calloc((size_t)ncomb, sizeof(char *)) : NULL;
    Override *ov = util_calloc((size_t)o->nov + SWEEP_MAX_GRIDS + 4, sizeof(Override));
    memcpy(ov, o->ov, sizeof(Override) * (size_t)o->nov);
    int at[SWEEP_MAX_GRIDS] = {0};
    uint64_t seed0 = 0;
    char *testproblem = NULL;
    for (int64_t i = 0; i < ncomb && rc == 0; i++) {
        combination(ax, nax, i, at, ov + o->nov);
        co = (CompileOptions){.ov = ov, .nov = o->nov + nax + 2};
        if (driver_compile(&c, o->path, &co, STAGE_CHECK)) {
            fprintf(stderr, "nnc: error: the grid's setting %lld of %lld (above) does not compile; nothing was run\n", (long long)i + 1,
                    (long long)ncomb);
            rc = 1;
        } else {
            setting[i] = setting_path(&c, ax, nax, at);
            seed0 = c.model->train.seed;
            if (!testproblem) testproblem = util_strdup(c.model->name);
        }
        driver_free(&c);
    }
    const char *out = so->out;
    char defout[512];
    if (rc == 0 && !out) {
        snprintf(defout, sizeof defout, "sweeps/%s", testproblem);
        out = defout;
    } else if (rc == 0) { /* without trailing slashes: its runs go beside it, in OUT.runs */
        snprintf(defout, sizeof defout, "%s", out);
        for (size_t l = strlen(defout); l > 1 && defout[l - 1] == '/'; l--) defout[l - 1] = 0;
        out = defout;
    }
    int64_t total = ncomb * seeds, done = 0, skipped = 0, failed = 0;
    double spent = 0;
    double *acc = util_calloc((size_t)total + 1, sizeof(double));
    if (rc == 0)
        printf("sweep %s: %lld setting%s x %d seed%s = %lld runs into %s\n", testproblem, (long long)ncomb, ncomb == 1 ? "" : "s",
               seeds, seeds == 1 ? "" : "s", (long long)total, out);
    for (int64_t i = 0; i < ncomb && rc == 0; i++) {
        combination(ax, nax, i, at, ov + o->nov);
        for (int s = 0; s < seeds && rc == 0; s++) {
            int64_t run = i * seeds + s;
            uint64_t seed = seed0 + (uint64_t)s;
            char dir[4096], work[4200], ck[4300];
            snprintf(dir, sizeof dir, "%s/%s", out, setting[i]);
            snprintf(work, sizeof work, "%s.runs/%s/seed_%llu", out, setting[i], (unsigned long long)seed);
            acc[run] = NAN;
            if (finished(dir, seed)) {
                skipped++;
                continue;
            }
            char failed_mark[4400];
            snprintf(failed_mark, sizeof failed_mark, "%s/FAILED", work);
            struct stat fb;
            if (stat(failed_mark, &fb) == 0) { /* failed in an earlier sweep: the same seed fails the same way */
                printf("sweep: run %lld of %lld failed before (%s); delete that file to try it again\n", (long long)run + 1,
                       (long long)total, failed_mark);
                failed++;
                continue;
            }
            if (mkdirs(work)) { /* (the setting's folder: with its first result, so that a setting whose runs all fail
                                  leaves no empty folder, which DeepOBS's analyzer cannot read) */
                fprintf(stderr, "nnc: error: cannot make %s: %s\n", work, strerror(errno));
                rc = 1;
                break;
            }
            snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", work);
            struct stat sb;
            bool resume = stat(ck, &sb) == 0;
            int64_t left = total - done - skipped;
            StrBuf what = {0};
            for (int k = 0; k < nax; k++) {
                char v[64];
                py_float(v, sizeof v, ax[k].v[at[k]]);
                sb_printf(&what, "%s=%s ", ax[k].key, v);
            }
            printf("sweep: run %lld of %lld: %sseed %llu%s; %lld left with it", (long long)run + 1, (long long)total, sb_str(&what),
                   (unsigned long long)seed, resume ? " (resuming)" : "", (long long)left);
            if (done > 0) printf(", about %.0f s more at %.1f s a run", spent / (double)done * (double)left, spent / (double)done);
            printf("\n");
            fflush(stdout);
            sb_free(&what);
            ov[o->nov + nax + 2] = (Override){"seed", (double)seed};
            RunOptions ro = *o;
            ro.ov = ov;
            ro.nov = o->nov + nax + 3;
            ro.out_dir = work;
            ro.resume = resume;
            double t0 = util_now();
            int trc = run_train(&ro);
            if (trc > 1) { /* a signal: the sweep stops, and resumes this run when started again */
                fprintf(stderr, "nnc: error: sweep: the run in %s ended with status %d; run the sweep again to resume it\n", work, trc);
                rc = trc;
                break;
            }
            if (trc) { /* an error in the run (a non-finite loss: the learning rate too large): noted, and the sweep goes on */
                FILE *f = fopen(failed_mark, "w");
                if (f) {
                    fprintf(f, "status %d: see the run's messages above it in the sweep's output\n", trc);
                    fclose(f);
                }
                printf("sweep: run %lld of %lld failed (status %d, its error above); no result for it; the sweep goes on\n",
                       (long long)run + 1, (long long)total, trc);
                failed++;
                continue;
            }
            if (mkdirs(dir)) {
                fprintf(stderr, "nnc: error: cannot make %s: %s\n", dir, strerror(errno));
                rc = 1;
                break;
            }
            if (publish(work, dir, seed, &acc[run], why, sizeof why)) {
                fprintf(stderr, "nnc: error: %s\n", why);
                rc = 1;
                break;
            }
            spent += util_now() - t0;
            done++;
        }
    }
    if (rc == 0) {
        bool accuracy = true; /* publish: a loss L is stored as -L - 1 (below -1) */
        for (int64_t i = 0; i < total; i++)
            if (acc[i] < -0.5) accuracy = false;
        printf("sweep %s: %lld runs done now, %lld done before%s%s%s\n", testproblem, (long long)done, (long long)skipped,
               done ? "; the final " : "", done ? (accuracy ? "test accuracy" : "loss (test, else training)") : "",
               done ? " by setting (this session's runs):" : "");
        for (int64_t i = 0; i < ncomb; i++) {
            double sum = 0, sq = 0;
            int n = 0;
            for (int s = 0; s < seeds; s++)
                if (!isnan(acc[i * seeds + s])) {
                    double v = acc[i * seeds + s] < -0.5 ? -acc[i * seeds + s] - 1 : acc[i * seeds + s];
                    sum += v;
                    sq += v * v;
                    n++;
                }
            if (n) printf("  %-72s %.4f +- %.4f (%d seed%s)\n", setting[i], sum / n, n > 1 ? sqrt(fmax(0, sq / n - (sum / n) * (sum / n))) : 0, n, n == 1 ? "" : "s");
        }
        draw_figures(out);
        if (failed) {
            printf("sweep %s: %lld run%s failed (marked FAILED in %s.runs); exit status 1\n", testproblem, (long long)failed,
                   failed == 1 ? "" : "s", out);
            rc = 1;
        }
    }
    for (int64_t i = 0; setting && i < ncomb; i++) free(setting[i]);
    free(setting);
    for (int k = 0; k < nax; k++) {
        free((char *)ax[k].key);
        free(ax[k].v);
    }
    free(ov);
    free(acc);
    free(testproblem);
    return rc;
}
