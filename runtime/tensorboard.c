/* tensorboard.c: TensorBoard event files, which `train` writes beside metrics.jsonl (train.c):
 * every number of every metrics line as a scalar (losses, metrics, the learning rate and other
 * scheduled values, gated layers' live widths, pruning events) and histograms of the weights.
 *
 * The file is what TensorFlow's summary writer makes: a sequence of TFRecords (the payload's
 * length as uint64, its masked CRC-32C, the payload, its masked CRC-32C; little-endian), each
 * payload a serialized `Event` protocol buffer.  The first event carries the file version
 * "brain.Event:2"; the others a wall time, a step and a `Summary` of one `Value` (a tag and a
 * `simple_value`, or a `HistogramProto`).  Those few messages are encoded here directly: the
 * field numbers are those of TensorFlow's event.proto and summary.proto. */
#include "tensorboard.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "protobuf.h"
#include "util.h"

/* ---- checksums ---- */

uint32_t tensorboard_crc32c(const void *data, size_t n) {
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1; /* the reflected polynomial */
            table[i] = c;
        }
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t tensorboard_masked_crc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u; }

/* ---- records ---- */

static double wall_time(void) { /* seconds since the epoch, as TensorBoard shows them */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One TFRecord: the event's length, its masked CRC, the event, its masked CRC. */
static void write_record(Tensorboard *tb, const StrBuf *event) {
    if (!tb->f) return;
    StrBuf r = {0};
    pb_le(&r, event->len, 8);
    pb_le(&r, tensorboard_masked_crc(tensorboard_crc32c(r.s, 8)), 4);
    sb_putn(&r, event->s, event->len);
    pb_le(&r, tensorboard_masked_crc(tensorboard_crc32c(event->s, event->len)), 4);
    fwrite(r.s, 1, r.len, tb->f);
    fflush(tb->f);
    sb_free(&r);
}

/* An Event {wall_time, step, summary {value}} from one serialized Summary.Value (freed). */
static void write_value(Tensorboard *tb, int64_t step, StrBuf *value) {
    StrBuf summary = {0}, event = {0};
    pb_message(&summary, 1, value);   /* Summary.value */
    pb_double(&event, 1, wall_time()); /* Event.wall_time */
    pb_int(&event, 2, step);           /* Event.step */
    pb_message(&event, 5, &summary);   /* Event.summary */
    write_record(tb, &event);
    sb_free(&event);
}

int tensorboard_open(Tensorboard *tb, const char *dir, char *err, size_t nerr) {
    memset(tb, 0, sizeof *tb);
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(tb->path, sizeof tb->path, "%s/events.out.tfevents.%lld.%s.%ld", dir, (long long)wall_time(), host, (long)getpid());
    if (!(tb->f = fopen(tb->path, "wb"))) return util_fail(err, nerr, "%s: cannot create: %s", tb->path, strerror(errno));
    StrBuf event = {0};
    pb_double(&event, 1, wall_time());
    pb_string(&event, 3, "brain.Event:2"); /* Event.file_version */
    write_record(tb, &event);
    sb_free(&event);
    return 0;
}

void tensorboard_scalar(Tensorboard *tb, const char *tag, int64_t step, double value) {
    StrBuf v = {0};
    pb_string(&v, 1, tag);         /* Value.tag */
    pb_float(&v, 2, (float)value); /* Value.simple_value */
    write_value(tb, step, &v);
}

static void line_numbers(Tensorboard *tb, const cJSON *o, const char *prefix, int64_t step) {
    for (const cJSON *c = o->child; c; c = c->next) {
        if (!c->string) continue;
        char tag[512];
        snprintf(tag, sizeof tag, "%s%s%s", prefix, prefix[0] ? "/" : "", c->string);
        if (cJSON_IsNumber(c) && strcmp(c->string, "epoch") && strcmp(c->string, "step"))
            tensorboard_scalar(tb, tag, step, c->valuedouble);
        else if (cJSON_IsObject(c))
            line_numbers(tb, c, tag, step);
    }
}

void tensorboard_line(Tensorboard *tb, const cJSON *line) {
    if (!tb->f) return;
    const char *split = cJSON_GetStringValue(cJSON_GetObjectItem(line, "split"));
    const char *event = cJSON_GetStringValue(cJSON_GetObjectItem(line, "event"));
    const cJSON *step = cJSON_GetObjectItem(line, "step");
    line_numbers(tb, line, split ? split : event ? event : "", cJSON_IsNumber(step) ? (int64_t)step->valuedouble : 0);
}

void tensorboard_histogram(Tensorboard *tb, const char *tag, int64_t step, const float *v, int64_t n) {
    enum { BUCKETS = 30 };
    if (!tb->f || n <= 0) return;
    double lo = v[0], hi = v[0], sum = 0, sumsq = 0;
    for (int64_t i = 0; i < n; i++) {
        lo = fmin(lo, v[i]);
        hi = fmax(hi, v[i]);
        sum += v[i];
        sumsq += (double)v[i] * v[i];
    }
    int nb = hi > lo ? BUCKETS : 1;
    double width = (hi - lo) / nb, count[BUCKETS] = {0}, limit[BUCKETS];
    for (int k = 0; k < nb; k++) limit[k] = k == nb - 1 ? hi : lo + width * (k + 1); /* right edges; the last is the maximum */
    for (int64_t i = 0; i < n; i++) {
        int k = nb == 1 ? 0 : (int)((v[i] - lo) / width);
        count[k < 0 ? 0 : k >= nb ? nb - 1 : k]++;
    }
    StrBuf h = {0}, v2 = {0};
    pb_double(&h, 1, lo);
    pb_double(&h, 2, hi);
    pb_double(&h, 3, (double)n);
    pb_double(&h, 4, sum);
    pb_double(&h, 5, sumsq);
    for (int field = 6; field <= 7; field++) { /* bucket_limit, bucket: packed */
        StrBuf packed = {0};
        for (int k = 0; k < nb; k++) {
            uint64_t u;
            memcpy(&u, field == 6 ? &limit[k] : &count[k], 8);
            pb_le(&packed, u, 8);
        }
        pb_message(&h, field, &packed);
    }
    pb_string(&v2, 1, tag);     /* Value.tag */
    pb_message(&v2, 5, &h);     /* Value.histo */
    write_value(tb, step, &v2);
}

void tensorboard_close(Tensorboard *tb) {
    if (tb->f) fclose(tb->f);
    tb->f = NULL;
}
