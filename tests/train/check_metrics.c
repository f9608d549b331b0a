/* check_metrics.c: reads a metrics.jsonl that `nnc train` wrote and checks the last line of
 * one split: `check_metrics FILE SPLIT KEY MIN [MAX]` passes when MIN <= value <= MAX.
 * `check_metrics --same A B` passes when both files hold the same lines apart from the
 * timing fields (samples_per_s, time_s, rebuild_s, fit_s): the determinism check. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_line(FILE *f) {
    size_t cap = 256, n = 0;
    char *s = malloc(cap);
    int c;
    while ((c = fgetc(f)) != EOF && c != '\n') {
        if (n + 1 == cap) s = realloc(s, cap *= 2);
        s[n++] = (char)c;
    }
    if (c == EOF && n == 0) {
        free(s);
        return NULL;
    }
    s[n] = 0;
    return s;
}

static char *without_timing(const char *line) {
    cJSON *o = cJSON_Parse(line);
    if (!o) return NULL;
    cJSON_DeleteItemFromObject(o, "samples_per_s");
    cJSON_DeleteItemFromObject(o, "time_s");
    cJSON_DeleteItemFromObject(o, "rebuild_s");
    cJSON_DeleteItemFromObject(o, "fit_s");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int same(const char *a, const char *b) {
    FILE *fa = fopen(a, "r"), *fb = fopen(b, "r");
    if (!fa || !fb) {
        fprintf(stderr, "cannot open %s or %s\n", a, b);
        return 1;
    }
    int line = 0, rc = 0;
    for (;;) {
        char *la = read_line(fa), *lb = read_line(fb);
        line++;
        if (!la || !lb) {
            if (la || lb) {
                fprintf(stderr, "line %d: one file is longer\n", line);
                rc = 1;
            }
            free(la);
            free(lb);
            break;
        }
        char *ca = without_timing(la), *cb = without_timing(lb);
        if (!ca || !cb || strcmp(ca, cb)) {
            fprintf(stderr, "line %d differs:\n  %s\n  %s\n", line, la, lb);
            rc = 1;
        }
        free(ca);
        free(cb);
        free(la);
        free(lb);
        if (rc) break;
    }
    fclose(fa);
    fclose(fb);
    if (!rc) printf("identical apart from timing: %s %s (%d lines)\n", a, b, line - 1);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--same")) return same(argv[2], argv[3]);
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: check_metrics FILE SPLIT KEY MIN [MAX] | --same A B\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    double value = 0;
    int found = 0, lines = 0;
    for (char *l; (l = read_line(f)); free(l)) {
        cJSON *o = cJSON_Parse(l);
        lines++;
        if (!o) {
            fprintf(stderr, "%s:%d: not a JSON object: %s\n", argv[1], lines, l);
            return 1;
        }
        const cJSON *split = cJSON_GetObjectItem(o, "split"), *v = cJSON_GetObjectItem(o, argv[3]);
        if (cJSON_IsString(split) && !strcmp(split->valuestring, argv[2]) && cJSON_IsNumber(v)) {
            value = v->valuedouble;
            found = 1;
        }
        cJSON_Delete(o);
    }
    fclose(f);
    if (!found) {
        fprintf(stderr, "%s: no %s line with a numeric '%s'\n", argv[1], argv[2], argv[3]);
        return 1;
    }
    double lo = atof(argv[4]), hi = argc == 6 ? atof(argv[5]) : 1e300;
    int ok = value >= lo && value <= hi;
    printf("%s %s = %.4f (want %s%s%s)\n", argv[2], argv[3], value, argv[4], argc == 6 ? " .. " : " or more",
           argc == 6 ? argv[5] : "");
    return ok ? 0 : 1;
}
