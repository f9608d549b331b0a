/* compare_test.c: one model trained two ways from the same seed, step by step: the same
 * initial weights, the same batches (the first training samples in order), the same
 * optimiser steps.  Every step's loss must agree to a relative tolerance.
 *   test_compare MODEL STEPS TOLERANCE A B
 * A and B are a device (cpu, cuda-emu, cuda) with ",nofuse" to turn fusion off.  With cuda and
 * no GPU it exits 77 (CTest's skip).  It prints each side's steps/s. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "exec.h"
#include "train.h"

typedef struct {
    char device[32];
    bool nofuse;
    Compilation c;
    Exec e;
    double seconds;
} Side;

/* "cuda-emu,nofuse" -> device and fusion; compile and open it.  1 error, 77 no GPU, 0 fine. */
static int open_side(Side *s, const char *spec, const char *path) {
    snprintf(s->device, sizeof s->device, "%s", spec);
    char *comma = strchr(s->device, ',');
    if (comma) {
        s->nofuse = !strcmp(comma + 1, "nofuse");
        *comma = 0;
    }
    CompileOptions o = {.no_fuse = s->nofuse};
    if (driver_compile(&s->c, path, &o, STAGE_PLAN)) return 1;
    char err[1024];
    if (exec_new(&s->e, s->c.plan, s->device, NULL, err, sizeof err)) {
        printf("%s: %s\n", spec, err);
        driver_free(&s->c);
        return !strcmp(s->device, "cuda") ? 77 : 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: test_compare MODEL STEPS TOLERANCE A B  (A, B: cpu|cuda-emu|cuda[,nofuse])\n");
        return 2;
    }
    const char *path = argv[1];
    int steps = atoi(argv[2]);
    double tol = atof(argv[3]);
    Side side[2] = {0};
    for (int k = 0; k < 2; k++) {
        int rc = open_side(&side[k], argv[4 + k], path);
        if (rc) {
            if (k) {
                exec_free(&side[0].e);
                driver_free(&side[0].c);
            }
            if (rc == 77) printf("skipped: no GPU\n");
            return rc;
        }
    }
    char err[1024];
    ModelData data;
    const Compilation *c0 = &side[0].c;
    if (train_load_data(c0->model, c0->graph, &data, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int64_t B = c0->plan->max_batch;
    int64_t *idx = calloc((size_t)B, sizeof(int64_t));
    for (int k = 0; k < 2; k++) train_init_weights(&side[k].e, side[k].c.model->train.seed);
    double worst = 0;
    int failures = 0;
    for (int s = 1; s <= steps; s++) {
        for (int64_t b = 0; b < B; b++) idx[b] = ((int64_t)(s - 1) * B + b) % data.train.n;
        float loss[2];
        for (int k = 0; k < 2; k++) {
            Exec *e = &side[k].e;
            const Graph *g = e->g;
            double t0 = util_now();
            exec_feed(e, &data.train, idx, B);
            train_step_scalars(side[k].c.model, e, s, (data.train.n + B - 1) / B, steps, NULL, NULL);
            if (exec_run(e, PROG_GRAD, B) || exec_run(e, PROG_UPDATE, B)) {
                fprintf(stderr, "%s: %s\n", e->dev->name, e->dev->err);
                return 1;
            }
            exec_read(e, g->loss, &loss[k], sizeof(float));
            side[k].seconds += util_now() - t0;
        }
        double rel = fabs((double)loss[0] - loss[1]) / fmax(fabs((double)loss[0]), 1e-30);
        if (rel > worst) worst = rel;
        if (!(rel <= tol)) {
            printf("FAIL step %d: %s loss %.9g, %s loss %.9g (relative difference %.2e)\n", s, argv[4], loss[0], argv[5],
                   loss[1], rel);
            failures++;
        } else if (s == 1 || s % 10 == 0) {
            printf("step %3d: %s loss %.7f  %s loss %.7f  relative difference %.2e\n", s, argv[4], loss[0], argv[5], loss[1],
                   rel);
        }
    }
    printf("%d steps of %s: worst relative loss difference %.2e (limit %g); %s %.1f steps/s, %s %.1f steps/s\n", steps,
           path, worst, tol, argv[4], steps / side[0].seconds, argv[5], steps / side[1].seconds);
    free(idx);
    train_free_data(&data);
    for (int k = 0; k < 2; k++) {
        exec_free(&side[k].e);
        driver_free(&side[k].c);
    }
    return failures ? 1 : 0;
}
