/*
 * base64.h - standard base64 (RFC 4648 section 4, padded), as etcd's JSON gateway writes and
 * reads keys and values, and as HTTP Basic credentials (RFC 7617) arrive. No I/O, no allocation.
 */
#ifndef FULCRUM_BASE64_H
#define FULCRUM_BASE64_H

#include <stddef.h>
#include <sys/types.h>

/* Size of the text base64_encode() writes for n bytes, NUL included. */
size_t base64_encoded_size(size_t n);
/* Writes the base64 text of in[0, n) and a NUL to out (base64_encoded_size(n) bytes). */
void base64_encode(const void *in, size_t n, char *out);
/* Decodes text[0, len) into out (room bytes; len / 4 * 3 always suffice). Returns the decoded
 * length, or -1 if the text is not padded standard base64 or does not fit. */
ssize_t base64_decode(const char *text, size_t len, unsigned char *out, size_t room);

#endif
