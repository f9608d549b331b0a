/* plan_test.c: the plan checker (compiler/plan_verify.c).
 *  1. Real plans pass: every model of models/ and tests/train/models/, the small models the
 *     shell tests write (copied here), and every tests/diag model that compiles, planned with
 *     and without fusion, and the prunable ones again at smaller widths (the re-plan after a
 *     prune).  plan_graph verifies each plan it makes; the test calls plan_verify once more.
 *  2. Broken plans fail: copies of the plans of models/ with one deliberate corruption each
 *     are verified in a forked child, which must abort with a message naming the kernel and
 *     the buffers.  A corruption the checker accepts fails the test.
 * Run from the repository root.  abort() raises SIGABRT under ASan and UBSan as well (their
 * handle_abort is off by default); with ASAN_OPTIONS=handle_abort=1, ASan's report of the
 * abort counts as the abort. */
#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driver.h"

static int failures, plans_checked;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL ");
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
    failures++;
}

/* ---- 1. real plans ---- */

/* The models tests/train, tests/checkpoint and tests/build write for their runs. */
static const char *const shell_models[] = {
    "model blobs\ninput x : f32[3]\ntarget y : class[2]\nlogits = x -> dense(16) -> tanh -> dense(2)\n"
    "loss cross_entropy(logits, y)\nmetric accuracy(logits, y)\n"
    "train { data csv(\"blobs.csv\", target = last) test csv(\"blobs.csv\") batch 32 epochs 5 optimizer sgd(lr = 0.1, momentum = 0.9) seed 3 }\n",
    "model lin\ninput x : f32[3]\ntarget y : f32[1]\nout = x -> dense(8) -> gelu -> dense(1)\nloss mse(out, y)\n"
    "train { data csv(\"lin.csv\") test csv(\"lin.csv\") batch 16 epochs 40 optimizer adamw(lr = 1e-2) seed 5 }\n",
    "model diverge\ninput x : f32[3]\ntarget y : class[2]\nlogits = x -> dense(64) -> relu -> dense(64) -> relu -> dense(2)\n"
    "loss cross_entropy(logits, y)\ntrain { data csv(\"blobs.csv\") batch 32 epochs 5 optimizer sgd(lr = 1e12) seed 3 }\n",
    "model blobs\ninput x : f32[3]\ntarget y : class[2]\nlogits = x -> dense(32) -> relu -> gate(l1 = 1e-3) -> dense(2)\n"
    "loss cross_entropy(logits, y)\nmetric accuracy(logits, y)\n"
    "train { data csv(\"blobs.csv\") valid 0.2 of train batch 50 epochs 3 optimizer adam(lr = 1e-2) seed 11 }\n",
    "model stop\ninput image : f32[28, 28]\ntarget label : class[10]\nh = flatten(image) -> dense(256) -> relu\n"
    "logits = h -> dense(10)\nloss cross_entropy(logits, label)\nmetric accuracy(logits, label)\n"
    "train { data fashion_mnist valid 0.1 of train batch 128 epochs 10 stop when valid.accuracy > 0.85 }\n",
    "model sched\ninput x : f32[3]\ntarget y : class[2]\nparam lambda = 0.01\nh = x -> dense(8) -> relu -> gate(l1 = lambda)\n"
    "logits = h -> dense(2)\nloss cross_entropy(logits, y)\n"
    "train { data csv(\"blobs.csv\") batch 600 epochs 4 optimizer sgd(lr = 0.1)\n"
    "  schedule lr = step(every = 2 epochs, gamma = 0.5)\n  schedule lambda = lambda * 0.5 ^ epoch }\n",
    "model blobs\ninput x : f32[3]\ntarget y : class[2]\nparam lambda = 1e-3\nh = x -> dense(512) -> relu -> gate(l1 = lambda)\n"
    "h2 = h -> dense(384) -> relu -> gate(l1 = lambda)\nlogits = h2 -> dense(2)\nloss cross_entropy(logits, y)\n"
    "metric accuracy(logits, y)\ntrain { data csv(\"blobs.csv\") valid 0.2 of train batch 32 epochs 40 seed 5\n"
    "  optimizer adam(lr = 1e-3)\n  schedule lambda = lambda * 0.95 ^ epoch\n  prune gates every 5 epochs }\n",
    "model leaky\ninput x : f32[4]\ntarget y : class[2]\nparam slope = 0.1\n"
    "logits = x -> dense(8) -> leaky_relu(slope = slope) -> dense(2)\nloss cross_entropy(logits, y)\n"
    "train { data csv(\"none.csv\") }\n",
};

/* Compiles one model to its plan (text NULL: read `path`); returns the compile's status.
 * Diagnostics go to stdout, or nowhere when `quiet`. */
static int compile(Compilation *c, const char *path, const char *text, bool fuse, const WidthOverride *w, int nw,
                   bool quiet) {
    FILE *null = quiet ? fopen("/dev/null", "w") : NULL;
    CompileOptions o = {.no_fuse = !fuse, .width = w, .nwidth = nw, .err = quiet ? null : stdout};
    int rc;
    if (text) {
        memset(c, 0, sizeof *c);
        c->arena = arena_new();
        rc = driver_compile_text(c, path, text, strlen(text), &o, STAGE_PLAN);
    } else {
        rc = driver_compile(c, path, &o, STAGE_PLAN);
    }
    if (null) fclose(null);
    if (rc == 0) {
        plan_verify(c->plan); /* plan_graph did already; an abort here fails the test */
        plans_checked++;
    }
    return rc;
}

/* A model's plans with and without fusion, and at pruned widths when it has prunable layers.
 * Returns false when the model does not compile (quietly unless `must`). */
static bool check_model(const char *path, const char *text, bool must) {
    for (int fuse = 0; fuse < 2; fuse++) {
        Compilation c;
        if (compile(&c, path, text, fuse, NULL, 0, !must)) {
            driver_free(&c);
            return false;
        }
        const Graph *g = c.graph;
        WidthOverride *w = calloc((size_t)g->nspace + 1, sizeof *w);
        bool prunable = false;
        for (int s = 0; s < g->nspace; s++) { /* a third fewer neurons, as the gates allow */
            const Space *sp = &g->space[s];
            int64_t units = sp->fixed ? sp->width : sp->width - sp->width / 3;
            for (int i = 0; i < g->ngate; i++)
                if (g->gate[i].space == s && units < g->gate[i].min_width) units = g->gate[i].min_width;
            w[s] = (WidthOverride){sp->layer, units};
            prunable |= units != sp->width;
        }
        if (prunable) {
            Compilation c2;
            if (compile(&c2, path, text, fuse, w, g->nspace, false)) fail("%s: does not compile at pruned widths", path);
            driver_free(&c2);
        }
        free(w);
        driver_free(&c);
    }
    return true;
}

static int is_model(const struct dirent *e) { return util_ends_with(e->d_name, ".nn"); }

/* The .nn files of a directory, in name order: paths[i] for i < the count returned. */
static int list_models(const char *dir, char paths[][1024], int max) {
    struct dirent **e;
    int n = scandir(dir, &e, is_model, alphasort), k = 0;
    if (n < 0) fail("cannot open %s (run from the repository root)", dir);
    for (int i = 0; i < n; i++) {
        if (k < max) snprintf(paths[k++], 1024, "%s/%s", dir, e[i]->d_name);
        free(e[i]);
    }
    if (n >= 0) free(e);
    return k;
}

enum { MAX_MODELS = 512 };
static char paths[MAX_MODELS][1024];

/* Every model of a directory; each must compile when `must` is set.  Returns how many did. */
static int check_dir(const char *dir, bool must) {
    int n = list_models(dir, paths, MAX_MODELS), ok = 0;
    for (int i = 0; i < n; i++) {
        bool compiled = check_model(paths[i], NULL, must);
        if (!compiled && must) fail("%s does not compile", paths[i]);
        ok += compiled;
    }
    return ok;
}

/* ---- 2. broken plans ---- */

/* A copy of a plan whose buffers and program lists may be changed (kernels are shared). */
static Plan copy_plan(const Plan *src) {
    Plan p = *src;
    p.buf = malloc(sizeof(Buffer) * (size_t)(p.nbuf + 1));
    memcpy(p.buf, src->buf, sizeof(Buffer) * (size_t)p.nbuf);
    p.prog = malloc(sizeof(ProgramPlan) * (size_t)(p.nprog + 1));
    memcpy(p.prog, src->prog, sizeof(ProgramPlan) * (size_t)p.nprog);
    for (int pr = 0; pr < p.nprog; pr++) {
        p.prog[pr].kernel = malloc(sizeof(int) * (size_t)(p.prog[pr].nkernel + 1));
        memcpy(p.prog[pr].kernel, src->prog[pr].kernel, sizeof(int) * (size_t)p.prog[pr].nkernel);
    }
    return p;
}

static void free_copy(Plan *p) {
    free(p->buf);
    for (int pr = 0; pr < p->nprog; pr++) free(p->prog[pr].kernel);
    free(p->prog);
}

static bool uses(const Kernel *k, int buf, bool write) {
    for (int a = 0; a < k->narg; a++)
        if (k->arg[a].buf == buf && (write ? k->arg[a].write : k->arg[a].read)) return true;
    return false;
}

static const char *range(char *s, const Buffer *b) { /* s: 512 bytes */
    snprintf(s, 512, "'%s' [%lld, %lld)", b->name, (long long)b->offset, (long long)(b->offset + b->bytes));
    return s;
}

/* Verifies `bad` in a child, which must abort with every one of `want` (NULL-terminated) in its
 * stderr.  Frees the copy. */
static void expect_abort(Plan *bad, const char *what, const char *const *want) {
    int fd[2];
    if (pipe(fd)) {
        perror("pipe");
        exit(1);
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        plan_verify(bad);
        _exit(0);
    }
    close(fd[1]);
    char out[8192], chunk[4096];
    size_t len = 0;
    for (ssize_t r; (r = read(fd[0], chunk, sizeof chunk)) > 0;) /* all of it, keeping what fits */
        for (ssize_t i = 0; i < r && len < sizeof out - 1; i++) out[len++] = chunk[i];
    out[len] = 0;
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    free_copy(bad);
    /* with ASAN_OPTIONS=handle_abort=1, ASan reports the abort and exits instead */
    bool aborted = (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) ||
                   (WIFEXITED(status) && WEXITSTATUS(status) != 0 && strstr(out, "AddressSanitizer: ABRT"));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        fail("%s: plan_verify accepted it", what);
        return;
    }
    if (!aborted) {
        fail("%s: the child did not abort but %s %d; it said: %s", what, WIFSIGNALED(status) ? "died of signal" : "exited with",
             WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), out);
        return;
    }
    char *nl = strchr(out, '\n'); /* the internal error is the first line; a sanitizer report may follow */
    if (nl) *nl = 0;
    bool ok = strstr(out, "plan_verify.c:") && strstr(out, ": internal error: plan_verify: ");
    for (int i = 0; want[i]; i++) ok = ok && strstr(out, want[i]);
    if (!ok) {
        fail("%s: wrong message\n  got:  %s", what, out);
        for (int i = 0; want[i]; i++) printf("  want: ...%s...\n", want[i]);
        return;
    }
    printf("ok   %s\n     %s\n", what, out);
}

enum { C_INPUT_OVERLAP, C_SAVED_SHORT, C_LIVE_OVERLAP, C_PAST_ARENA, C_PROG_ORDER, C_PROG_SKIP, NCORRUPT };
static const char *const corrupt_name[NCORRUPT] = {
    "a kernel's output moved onto its input", "a saved activation dies before its last reader",
    "two live temporaries share bytes", "a buffer past the arena's end",
    "a program's kernels out of order", "a program skips a kernel whose output it reads",
};
static int corrupt_runs[NCORRUPT];

/* Applies corruption `which` to a copy of `p` and expects plan_verify to abort; false when the
 * plan has nothing to corrupt that way. */
static bool corrupt(const Plan *p, int which, const char *model) {
    char what[2048], msg[2048], r1[512], r2[512];
    Plan q = copy_plan(p);
    const char *want[5] = {msg, NULL, NULL, NULL, NULL};
    switch (which) {
    case C_INPUT_OVERLAP: /* T, written by k, moved onto k's input I, a temporary no smaller */
        for (int k = 0; k < p->nkernel; k++)
            for (int t = 0; t < p->kernel[k].narg; t++)
                for (int i = 0; i < p->kernel[k].narg; i++) {
                    const KArg *at = &p->kernel[k].arg[t], *ai = &p->kernel[k].arg[i];
                    Buffer *T = &q.buf[at->buf], *I = &q.buf[ai->buf];
                    if (at->read || !at->write || T->kind < BUF_GRAD || !ai->read || ai->write || I->kind < BUF_GRAD ||
                        T->bytes > I->bytes)
                        continue;
                    T->offset = I->offset;
                    snprintf(msg, sizeof msg, "kernel %s writes %s which overlaps its input %s", p->kernel[k].name,
                             range(r1, T), range(r2, I));
                    snprintf(what, sizeof what, "%s: %s ('%s' onto '%s' in %s)", model, corrupt_name[which], T->name, I->name,
                             p->kernel[k].name);
                    goto run;
                }
        break;
    case C_SAVED_SHORT: /* S's live range ends just before its last reader */
        for (int s = 0; s < p->nbuf; s++) {
            if (p->buf[s].kind != BUF_SAVED) continue;
            int last = -1;
            for (int k = 0; k < p->nkernel; k++)
                if (uses(&p->kernel[k], s, false)) last = k;
            if (last <= p->buf[s].first) continue;
            q.buf[s].last = last - 1;
            snprintf(msg, sizeof msg, "kernel %s reads '%s' outside its live range (live k%d..k%d)", p->kernel[last].name,
                     p->buf[s].name, p->buf[s].first, last - 1);
            snprintf(what, sizeof what, "%s: %s ('%s', read by %s)", model, corrupt_name[which], p->buf[s].name,
                     p->kernel[last].name);
            goto run;
        }
        break;
    case C_LIVE_OVERLAP: /* B, live within A's range and no larger, moved onto A; no kernel uses both */
        for (int a = 0; a < p->nbuf; a++)
            for (int b = 0; b < p->nbuf; b++) {
                const Buffer *A = &p->buf[a], *B = &p->buf[b];
                if (a == b || A->kind < BUF_GRAD || B->kind < BUF_GRAD || B->first < A->first || B->last > A->last ||
                    B->bytes > A->bytes || B->bytes == 0 || B->first >= p->nkernel)
                    continue;
                bool together = false;
                for (int k = 0; k < p->nkernel; k++)
                    together |= (uses(&p->kernel[k], a, false) || uses(&p->kernel[k], a, true)) &&
                                (uses(&p->kernel[k], b, false) || uses(&p->kernel[k], b, true));
                if (together) continue;
                q.buf[b].offset = A->offset;
                snprintf(msg, sizeof msg, "%s", range(r1, &q.buf[a]));
                want[1] = range(r2, &q.buf[b]);
                want[2] = "share bytes while both are live, at kernel ";
                want[3] = p->kernel[B->first].name;
                snprintf(what, sizeof what, "%s: %s ('%s' onto '%s')", model, corrupt_name[which], B->name, A->name);
                goto run;
            }
        break;
    case C_PAST_ARENA: /* a temporary that some kernel writes ends 64 bytes past the arena */
        for (int k = 0; k < p->nkernel; k++)
            for (int t = 0; t < p->kernel[k].narg; t++) {
                Buffer *T = &q.buf[p->kernel[k].arg[t].buf];
                if (T->kind < BUF_GRAD || !p->kernel[k].arg[t].write) continue;
                T->offset = p->arena_bytes - T->bytes + 64;
                snprintf(msg, sizeof msg, "buffer %s lies outside the arena [0, %lld) (used by kernel %s)", range(r1, T),
                         (long long)p->arena_bytes, p->kernel[k].name);
                snprintf(what, sizeof what, "%s: %s ('%s')", model, corrupt_name[which], T->name);
                goto run;
            }
        break;
    case C_PROG_ORDER: /* the grad program's first two kernels swapped */
        if (q.prog[PROG_GRAD].nkernel < 2) break;
        {
            int *ks = q.prog[PROG_GRAD].kernel, t = ks[0];
            ks[0] = ks[1];
            ks[1] = t;
            snprintf(msg, sizeof msg, "program grad lists kernel %s after %s, not in increasing order", p->kernel[ks[1]].name,
                     p->kernel[ks[0]].name);
            snprintf(what, sizeof what, "%s: %s", model, corrupt_name[which]);
        }
        goto run;
    case C_PROG_SKIP: /* eval without its first kernel that writes what a later one reads */
        for (int i = 0; i < q.prog[PROG_EVAL].nkernel; i++) {
            const ProgramPlan *e = &p->prog[PROG_EVAL];
            const Kernel *d = &p->kernel[e->kernel[i]];
            for (int j = i + 1; j < e->nkernel; j++) {
                const Kernel *r = &p->kernel[e->kernel[j]];
                for (int a = 0; a < r->narg; a++) {
                    int b = r->arg[a].buf;
                    if (!r->arg[a].read || p->buf[b].kind < BUF_GRAD || !uses(d, b, true)) continue;
                    memmove(q.prog[PROG_EVAL].kernel + i, q.prog[PROG_EVAL].kernel + i + 1, sizeof(int) * (size_t)(e->nkernel - i - 1));
                    q.prog[PROG_EVAL].nkernel--;
                    snprintf(msg, sizeof msg, "kernel %s reads '%s', which no kernel before it writes in program eval", r->name,
                             p->buf[b].name);
                    snprintf(what, sizeof what, "%s: %s (%s)", model, corrupt_name[which], d->name);
                    goto run;
                }
            }
        }
        break;
    }
    free_copy(&q);
    return false;
run:
    corrupt_runs[which]++;
    expect_abort(&q, what, want);
    return true;
}

static void check_corruptions(const char *path) {
    for (int fuse = 0; fuse < 2; fuse++) {
        Compilation c;
        if (compile(&c, path, NULL, fuse, NULL, 0, false)) {
            fail("%s does not compile", path);
            driver_free(&c);
            continue;
        }
        char model[1100];
        snprintf(model, sizeof model, "%s%s", path, fuse ? "" : " (no fusion)");
        for (int w = 0; w < NCORRUPT; w++) corrupt(c.plan, w, model);
        plan_verify(c.plan); /* the copies were corrupted, not the plan */
        driver_free(&c);
    }
}

int main(void) {
    int n = check_dir("models", true);
    int ntrain = check_dir("tests/train/models", true);
    int nshell = 0;
    for (size_t i = 0; i < sizeof shell_models / sizeof *shell_models; i++) {
        char path[64];
        snprintf(path, sizeof path, "<shell test model %zu>", i);
        if (!check_model(path, shell_models[i], true)) fail("%s does not compile", path);
        nshell++;
    }
    int ndiag = check_dir("tests/diag", false);
    printf("real plans: %d verified (%d models/, %d tests/train/models/, %d shell-test and %d tests/diag models that compile)\n",
           plans_checked, n, ntrain, nshell, ndiag);
    if (n < 3) fail("expected the models of models/, found %d", n);

    for (int i = 0, nm = list_models("models", paths, MAX_MODELS); i < nm; i++) check_corruptions(paths[i]);
    for (int w = 0; w < NCORRUPT; w++) {
        printf("corruption '%s': %d plans\n", corrupt_name[w], corrupt_runs[w]);
        if (!corrupt_runs[w]) fail("no plan could be corrupted as '%s'", corrupt_name[w]);
    }
    printf("%s: %d failures\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
