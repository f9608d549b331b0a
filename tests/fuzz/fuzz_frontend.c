/* fuzz_frontend.c: a fuzz target for the front end: the input is a model's text, compiled to the
 * memory plan (parse, check, lower, autodiff, fuse, plan) and the plan printed as text.  Any
 * input must end in a plan or in located errors: a crash, a sanitizer report, a hang or a leak
 * is a finding.  Built with libFuzzer (-DNNC_FUZZ=ON with clang) it fuzzes; built with
 * replay_main.c it runs a corpus once (ctest fuzz.replay_frontend). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "kernel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static FILE *quiet;
    if (!quiet) quiet = fopen("/dev/null", "w");
    char *text = malloc(size ? size : 1); /* exactly sized: a read past the end is caught */
    if (!text) abort();
    memcpy(text, data, size);
    Compilation c;
    memset(&c, 0, sizeof c);
    c.arena = arena_new();
    CompileOptions opts = {.err = quiet};
    if (driver_compile_text(&c, "fuzz.nn", text, size, &opts, STAGE_PLAN) == 0) {
        StrBuf b = {0};
        plan_print(&b, c.plan, "fuzz.nn");
        sb_free(&b);
    }
    driver_free(&c);
    free(text);
    return 0;
}
