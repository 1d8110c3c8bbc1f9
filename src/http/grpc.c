/*
 * grpc.c - gRPC's deadline and status, for the proxy (grpc.h).
 */
#include "http/grpc.h"

#include <stdio.h>
#include <string.h>

#include "http/lookup.h"

bool grpc_request(const char *head, const struct http1_msg *msg)
{
    static const char prefix[] = "application/grpc";
    const size_t plen = sizeof(prefix) - 1;
    const char *v;
    size_t len;
    if (!http_field_value(head, msg, "content-type", 12, &v, &len) || len < plen)
        return false;
    for (size_t i = 0; i < plen; i++) {
        char c = v[i] >= 'A' && v[i] <= 'Z' ? (char)(v[i] + ('a' - 'A')) : v[i];
        if (c != prefix[i])
            return false;
    }
    return len == plen || v[plen] == '+' || v[plen] == ';';
}

bool grpc_timeout_ms(const char *head, const struct http1_msg *msg, uint64_t *ms)
{
    const char *v;
    size_t len;
    if (!http_field_value(head, msg, "grpc-timeout", 12, &v, &len) || len < 2 || len > 9)
        return false;
    uint64_t n = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    switch (v[len - 1]) { /* at most 99,999,999 of a unit: no overflow below */
    case 'H':
        *ms = n * 3600000;
        break;
    case 'M':
        *ms = n * 60000;
        break;
    case 'S':
        *ms = n * 1000;
        break;
    case 'm':
        *ms = n;
        break;
    case 'u':
        *ms = (n + 999) / 1000;
        break;
    case 'n':
        *ms = (n + 999999) / 1000000;
        break;
    default:
        return false;
    }
    return true;
}

enum grpc_status grpc_status_of_http(unsigned http_status)
{
    switch (http_status) {
    case 400:
        return GRPC_INTERNAL;
    case 401:
        return GRPC_UNAUTHENTICATED;
    case 403:
        return GRPC_PERMISSION_DENIED;
    case 404:
        return GRPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return GRPC_UNAVAILABLE;
    default:
        return GRPC_UNKNOWN;
    }
}

/* grpc-message is percent-encoded: bytes outside printable ASCII, and '%' itself. */
static size_t percent_encode(char *out, size_t cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = c >= 0x20 && c <= 0x7e && c != '%';
        if (n + (plain ? 1 : 3) > cap)
            return (size_t)-1;
        if (plain) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    return n;
}

size_t grpc_reply(char *out, size_t cap, enum grpc_status status, const char *message,
                  const char *extra)
{
    char encoded[256];
    size_t elen = percent_encode(encoded, sizeof(encoded), message);
    if (elen == (size_t)-1)
        elen = 0; /* a message too long for a local answer: the status says enough */
    int n = snprintf(out, cap,
                     "HTTP/1.1 200 OK\r\n"
                     "Content-Type: application/grpc\r\n"
                     "grpc-status: %d\r\n"
                     "grpc-message: %.*s\r\n"
                     "Content-Length: 0\r\n"
                     "%s"
                     "\r\n",
                     (int)status, (int)elen, encoded, extra);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}
