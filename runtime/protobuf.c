/* protobuf.c: the protocol buffer wire format's writer (protobuf.h): varints, fixed-width
 * little-endian fields and length-delimited ones, as the format's encoding rules define them. */
#include "protobuf.h"

#include <string.h>

enum { WIRE_VARINT = 0, WIRE_64 = 1, WIRE_BYTES = 2, WIRE_32 = 5 };

void pb_varint(StrBuf *b, uint64_t v) {
    while (v >= 0x80) {
        sb_putc(b, (char)(v | 0x80));
        v >>= 7;
    }
    sb_putc(b, (char)v);
}

static void key(StrBuf *b, int field, int wire) { pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire); }

void pb_le(StrBuf *b, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) sb_putc(b, (char)(v >> (8 * i)));
}

void pb_int(StrBuf *b, int field, int64_t v) {
    key(b, field, WIRE_VARINT);
    pb_varint(b, (uint64_t)v); /* negative numbers: ten bytes, as the format says for int64 */
}

void pb_double(StrBuf *b, int field, double x) {
    uint64_t u;
    memcpy(&u, &x, 8);
    key(b, field, WIRE_64);
    pb_le(b, u, 8);
}

void pb_float(StrBuf *b, int field, float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    key(b, field, WIRE_32);
    pb_le(b, u, 4);
}

void pb_bytes(StrBuf *b, int field, const void *data, size_t n) {
    key(b, field, WIRE_BYTES);
    pb_varint(b, n);
    if (n) sb_putn(b, data, n);
}

void pb_string(StrBuf *b, int field, const char *s) { pb_bytes(b, field, s, strlen(s)); }

void pb_message(StrBuf *b, int field, StrBuf *sub) {
    pb_bytes(b, field, sub->s, sub->len);
    sb_free(sub);
}
