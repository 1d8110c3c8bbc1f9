/*
 * base64.c - standard base64 (RFC 4648 section 4), padded: etcd's JSON gateway carries keys and
 * values in it, and HTTP Basic credentials come in it (see base64.h).
 */
#include "core/base64.h"

#include <stdbool.h>
#include <stdint.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encoded_size(size_t n)
{
    return (n + 2) / 3 * 4 + 1;
}

void base64_encode(const void *in, size_t n, char *out)
{
    const unsigned char *p = in;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = alphabet[(v >> 6) & 63];
        *out++ = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = '=';
        *out++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = alphabet[(v >> 6) & 63];
        *out++ = '=';
    }
    *out = '\0';
}

/* The 6-bit value of a base64 character, or -1. */
static int value_of(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

ssize_t base64_decode(const char *text, size_t len, unsigned char *out, size_t room)
{
    if (len % 4 != 0)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        const unsigned char *q = (const unsigned char *)text + i;
        bool last = i + 4 == len;
        /* "xx==" and "xxx=" only in the last quantum */
        size_t pad = last && q[3] == '=' ? (q[2] == '=' ? 2 : 1) : 0;
        uint32_t v = 0;
        for (size_t k = 0; k < 4 - pad; k++) {
            int d = value_of(q[k]);
            if (d < 0)
                return -1;
            v = v << 6 | (uint32_t)d;
        }
        v <<= 6 * pad;
        size_t bytes = 3 - pad;
        if (room - n < bytes)
            return -1;
        out[n++] = (unsigned char)(v >> 16);
        if (bytes > 1)
            out[n++] = (unsigned char)(v >> 8);
        if (bytes > 2)
            out[n++] = (unsigned char)v;
    }
    return (ssize_t)n;
}
