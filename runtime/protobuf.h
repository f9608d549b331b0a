/* protobuf.h: the protocol buffer wire format, written (not read) into a StrBuf: what the
 * TensorBoard event files (tensorboard.c) and the ONNX export (onnx_export.c) encode their few
 * messages with.  Each call appends one field: its key (field number and wire type) and value. */
#ifndef NNC_PROTOBUF_H
#define NNC_PROTOBUF_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

void pb_varint(StrBuf *b, uint64_t v);                                /* a bare varint */
void pb_le(StrBuf *b, uint64_t v, int bytes);                         /* a bare little-endian integer */
void pb_int(StrBuf *b, int field, int64_t v);                         /* int32, int64, enum: varint */
void pb_double(StrBuf *b, int field, double x);                       /* 64-bit */
void pb_float(StrBuf *b, int field, float x);                         /* 32-bit */
void pb_bytes(StrBuf *b, int field, const void *data, size_t n);      /* length-delimited */
void pb_string(StrBuf *b, int field, const char *s);                  /* length-delimited, NUL-free */
void pb_message(StrBuf *b, int field, StrBuf *sub);                   /* a nested message; frees sub */

#endif
