/* tensorboard.h: TensorBoard event files written during training (train.c): each number of a
 * metrics.jsonl line as a scalar, and histograms of the weights.  See tensorboard.c. */
#ifndef NNC_TENSORBOARD_H
#define NNC_TENSORBOARD_H

#include <cJSON.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    FILE *f;
    char path[4200];
} Tensorboard;

/* Starts a new event file events.out.tfevents.<seconds>.<host>.<pid> in the directory dir, with
 * its version record.  1 with the reason in err. */
int tensorboard_open(Tensorboard *tb, const char *dir, char *err, size_t nerr);
/* A scalar `tag` at `step`. */
void tensorboard_scalar(Tensorboard *tb, const char *tag, int64_t step, double value);
/* Every number of a metrics.jsonl line but its position, tagged "<split>/<key>" (an event line:
 * "<event>/<key>"; neither: "<key>"), at the line's step. */
void tensorboard_line(Tensorboard *tb, const cJSON *line);
/* A histogram of v[0..n) (30 buckets of equal width between its extremes) at `step`. */
void tensorboard_histogram(Tensorboard *tb, const char *tag, int64_t step, const float *v, int64_t n);
void tensorboard_close(Tensorboard *tb);

/* CRC-32C (Castagnoli) of data, and the masked form TFRecord stores. */
uint32_t tensorboard_crc32c(const void *data, size_t n);
uint32_t tensorboard_masked_crc(uint32_t crc);

#endif
