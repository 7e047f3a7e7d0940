/*
 * base64.h - RFC 4648 section 4 base64, strict, for SASL (RFC 4954,
 * RFC 5034, RFC 9051): padding required, no white space, no junk.
 */
#ifndef POCHTA_BASE64_H
#define POCHTA_BASE64_H

#include <stddef.h>

/* Encode n bytes into a new NUL-terminated string. Caller frees. */
char *base64_encode(const void *data, size_t n);

/*
 * Decode the NUL-terminated s into a new buffer (NUL-terminated too, for
 * convenience; the data may hold NULs) and its length. 0, or -EINVAL for
 * malformed input (nothing allocated).
 */
int base64_decode(const char *s, char **out_r, size_t *len_r);

#endif
