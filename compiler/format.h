/* format.h: `nnc fmt`, a model file in the canonical layout (format.c).  The layout changes
 * only spacing, line breaks and indentation: the tokens, and so the model's meaning and its
 * checkpoints' identity (parse_token_hash), stay as they were; comments are kept. */
#ifndef NNC_FORMAT_H
#define NNC_FORMAT_H

#include "diag.h"

/* The source laid out canonically (malloc'd, *len bytes, ends in one newline; a comment may hold
 * a NUL byte), or NULL when it does not parse: the errors are then reported through diag. */
char *format_source(const Source *src, Diag *diag, size_t *len);

#endif
