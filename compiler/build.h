/* build.h: `nnc build`, a model compiled into a standalone trainer executable (build.c). */
#ifndef NNC_BUILD_H
#define NNC_BUILD_H

#include "model.h"

typedef struct {
    const char *file;  /* the model */
    const char *out;   /* the executable to write */
    const char *cpu;   /* --target-cpu: NULL or "host", or e.g. "x86-64-v3" */
    const char *keep;  /* --keep-kernels DIR, or NULL */
    Override *ov;      /* --set, baked in: the trainer applies them before its own */
    int nov;
    bool no_fuse;
    bool hvp; /* with the program of exact Hessian-vector products: the trainer's `hvp` command */
} BuildOptions;

/* 0 built; 1 an error in the model or the build (reported); 2 bad usage. */
int build_trainer(const BuildOptions *o);

/* The trainers' runtime library nnc links: an installed nnc's lib/nnc/libnnc_rt.a, else the build's. */
const char *build_runtime_library(void);

#endif
