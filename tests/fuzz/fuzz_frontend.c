/* fuzz_frontend.c: a fuzz target for the front end: the input is a model's text, compiled to the
 * memory plan (parse, check, lower, autodiff, fuse, plan) and the plan printed as text, and laid
 * out by `nnc fmt`.  Any input must end in a plan or in located errors: a crash, a sanitizer
 * report, a hang or a leak is a finding; so is a file that parses but that fmt refuses, or whose
 * formatted text formats otherwise.  Built with libFuzzer (-DNNC_FUZZ=ON with clang) it fuzzes; built with
 * replay_main.c it runs a corpus once (ctest fuzz.replay_frontend). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"
#include "driver.h"
#include "format.h"
#include "kernel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* fmt: a file that parses is formatted, and formatting that changes nothing more */
static void check_format(const char *text, size_t size, FILE *quiet) {
    Source src = {"fuzz.nn", text, size};
    Diag d;
    diag_init(&d, &src, quiet);
    size_t n1, n2;
    char *once = format_source(&src, &d, &n1);
    if (!once) {
        Arena *arena = arena_new();
        diag_init(&d, &src, quiet);
        parse_source(arena, &d, &src, 0);
        if (!d.nerror) {
            fprintf(stderr, "fmt refused a file that parses\n");
            abort();
        }
        arena_free(arena);
        return;
    }
    Source again = {"fuzz.nn", once, n1};
    diag_init(&d, &again, quiet);
    char *twice = format_source(&again, &d, &n2);
    if (!twice || n1 != n2 || memcmp(once, twice, n1)) {
        fprintf(stderr, "fmt is not idempotent on this input; once:\n%s\ntwice:\n%s\n", once, twice ? twice : "(refused)");
        abort();
    }
    free(once);
    free(twice);
}

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
    check_format(text, size, quiet);
    free(text);
    return 0;
}
