/* emu_train_test.c: a model trained on a CUDA device (the emulated one by default) and on the
 * CPU from the same seed: the same initial weights, the same batches (the first training
 * samples in order), the same optimiser steps.  Every step's loss must agree to 1e-4
 * relative.  Usage: test_emu_train MODEL STEPS [cuda-emu|cuda]; with cuda and no GPU it exits
 * 77 (CTest's skip).  With a GPU it also prints the GPU's steps/s. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "exec.h"
#include "train.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: test_emu_train MODEL STEPS [cuda-emu|cuda]\n");
        return 2;
    }
    const char *path = argv[1], *device = argc > 3 ? argv[3] : "cuda-emu";
    int steps = atoi(argv[2]);
    Compilation c;
    if (driver_compile(&c, path, NULL, STAGE_PLAN)) return 1;
    char err[1024];
    Exec cpu, dev;
    if (exec_new(&cpu, c.plan, "cpu", NULL, err, sizeof err)) {
        fprintf(stderr, "cpu: %s\n", err);
        return 1;
    }
    if (exec_new(&dev, c.plan, device, NULL, err, sizeof err)) {
        printf("skipped: %s\n", err);
        exec_free(&cpu);
        driver_free(&c);
        return !strcmp(device, "cuda") ? 77 : 1;
    }
    ModelData data;
    if (train_load_data(c.model, c.graph, &data, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const Graph *g = c.graph;
    int x = -1, t = -1;
    for (int i = 0; i < g->ninput; i++) *(g->input[i].is_target ? &t : &x) = g->input[i].node;
    int64_t B = c.plan->max_batch;
    float *xb = calloc((size_t)(B * data.expect.nfeat), sizeof(float));
    float *tb = calloc((size_t)(B * data.expect.ntarget), sizeof(float)); /* int32 labels fit too */
    int64_t *idx = calloc((size_t)B, sizeof(int64_t));
    train_init_weights(&cpu, c.model->train.seed);
    train_init_weights(&dev, c.model->train.seed);
    double worst = 0, dev_time = 0;
    int failures = 0;
    Exec *both[2] = {&cpu, &dev};
    for (int s = 1; s <= steps; s++) {
        for (int64_t b = 0; b < B; b++) idx[b] = ((int64_t)(s - 1) * B + b) % data.train.n;
        data_gather(&data.train, idx, B, xb, data.train.target_class ? (int32_t *)tb : NULL,
                    data.train.target_class ? NULL : tb);
        float loss[2];
        for (int e = 0; e < 2; e++) {
            double t0 = util_now();
            exec_write(both[e], x, xb, sizeof(float) * (size_t)(B * data.expect.nfeat));
            exec_write(both[e], t, tb, sizeof(float) * (size_t)(B * data.expect.ntarget));
            train_step_scalars(c.model, both[e], s);
            if (exec_run(both[e], PROG_GRAD, B) || exec_run(both[e], PROG_UPDATE, B)) {
                fprintf(stderr, "%s: %s\n", both[e]->dev->name, both[e]->dev->err);
                return 1;
            }
            exec_read(both[e], g->loss, &loss[e], sizeof(float));
            if (e == 1) dev_time += util_now() - t0;
        }
        double rel = fabs((double)loss[0] - loss[1]) / fmax(fabs((double)loss[0]), 1e-30);
        if (rel > worst) worst = rel;
        if (!(rel <= 1e-4)) {
            printf("FAIL step %d: cpu loss %.9g, %s loss %.9g (relative difference %.2e)\n", s, loss[0], device, loss[1], rel);
            failures++;
        } else if (s == 1 || s % 10 == 0) {
            printf("step %3d: cpu loss %.7f  %s loss %.7f  relative difference %.2e\n", s, loss[0], device, loss[1], rel);
        }
    }
    printf("%d steps of %s: worst relative loss difference %.2e (limit 1e-4); %s: %.1f steps/s\n", steps, path, worst,
           device, steps / dev_time);
    free(xb);
    free(tb);
    free(idx);
    train_free_data(&data);
    exec_free(&cpu);
    exec_free(&dev);
    driver_free(&c);
    return failures ? 1 : 0;
}
