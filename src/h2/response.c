/*
 * response.c - HTTP/1.1 heads as HTTP/2 header lists (response.h): a response to a client (the
 * server role), a trailer section, and a request to a server (the client role).
 */
#include "h2/response.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Fields that belong to one HTTP/1.1 connection and have no meaning in HTTP/2. */
static int connection_specific(const struct http1_field *f)
{
    switch (f->id) {
    case HTTP1_FIELD_CONNECTION:
    case HTTP1_FIELD_KEEP_ALIVE:
    case HTTP1_FIELD_PROXY_CONNECTION:
    case HTTP1_FIELD_TRANSFER_ENCODING:
    case HTTP1_FIELD_UPGRADE:
    case HTTP1_FIELD_TE:
        return 1;
    default:
        return 0;
    }
}

static nghttp2_nv entry(const char *name, size_t name_len, const char *value, size_t value_len)
{
    return (nghttp2_nv){.name = (uint8_t *)name,
                        .namelen = name_len,
                        .value = (uint8_t *)value,
                        .valuelen = value_len,
                        .flags = NGHTTP2_NV_FLAG_NONE};
}

int h2_response_fields(const char *head, const struct http1_msg *msg, nghttp2_nv *nv, size_t max,
                       char status[H2_STATUS_TEXT], char *lower, size_t cap)
{
    if (max < 1 || msg->status < 100 || msg->status > 999)
        return -1;
    snprintf(status, H2_STATUS_TEXT, "%03u", msg->status);
    size_t n = 0, used = 0;
    nv[n++] = entry(":status", 7, status, 3);
    for (uint32_t i = 0; i < msg->nfields; i++) {
        const struct http1_field *f = &msg->fields[i];
        if (connection_specific(f))
            continue;
        if (n == max || f->name_len > cap - used)
            return -1;
        char *name = lower + used;
        for (uint16_t k = 0; k < f->name_len; k++) {
            char c = head[f->name_off + k];
            name[k] = c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
        }
        used += f->name_len;
        nv[n++] = entry(name, f->name_len, head + f->value_off, f->value_len);
    }
    return (int)n;
}

/* Fields a trailer section must not carry into HTTP/2: the connection-specific ones, and those
 * about framing, which HTTP/2 does itself. */
static bool forbidden_trailer(const char *lower, size_t len)
{
    static const char *const names[] = {"connection",        "keep-alive", "proxy-connection",
                                        "transfer-encoding", "upgrade",    "te",
                                        "content-length",    "host",       "trailer"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == len && memcmp(names[i], lower, len) == 0)
            return true;
    return false;
}

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

int h2_trailer_fields(const char *section, size_t len, nghttp2_nv *nv, size_t max, char *lower,
                      size_t cap)
{
    size_t n = 0, used = 0, at = 0;
    while (at < len) {
        const char *line = section + at;
        const char *eol = memchr(line, '\r', len - at);
        if (!eol || eol == line) /* the empty line that ends the section */
            break;
        at = (size_t)(eol - section) + 2;
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (!colon)
            continue; /* the decoder let no such line through */
        size_t name_len = (size_t)(colon - line);
        if (name_len > cap - used)
            return -1;
        char *name = lower + used;
        for (size_t k = 0; k < name_len; k++)
            name[k] = line[k] >= 'A' && line[k] <= 'Z' ? (char)(line[k] + ('a' - 'A')) : line[k];
        if (forbidden_trailer(name, name_len))
            continue;
        used += name_len;
        const char *v = colon + 1, *end = eol;
        while (v < end && ows(*v))
            v++;
        while (end > v && ows(end[-1]))
            end--;
        if (n == max)
            return -1;
        nv[n++] = entry(name, name_len, v, (size_t)(end - v));
    }
    return (int)n;
}

/* Appends name in lowercase to lower; NULL when it does not fit. */
static const char *lowercase(const char *name, size_t len, char *lower, size_t cap, size_t *used)
{
    if (len > cap - *used)
        return NULL;
    char *out = lower + *used;
    for (size_t k = 0; k < len; k++)
        out[k] = name[k] >= 'A' && name[k] <= 'Z' ? (char)(name[k] + ('a' - 'A')) : name[k];
    *used += len;
    return out;
}

int h2_request_fields(const char *head, const struct http1_msg *msg, const char *scheme,
                      nghttp2_nv *nv, size_t max, char *lower, size_t cap)
{
    if (msg->method == HTTP1_METHOD_CONNECT || max < 4)
        return -1;
    size_t n = 0, used = 0;
    nv[n++] = entry(":method", 7, head + msg->method_off, msg->method_len);
    nv[n++] = entry(":scheme", 7, scheme, strlen(scheme));
    if (msg->path_len && head[msg->path_off] != '/' && head[msg->path_off] != '*')
        return -1; /* "?q" of an absolute-form target: the proxy sends origin-form ones */
    if (msg->path_len)
        nv[n++] = entry(":path", 5, head + msg->path_off, msg->path_len);
    else if (msg->target_len == 1 && head[msg->target_off] == '*')
        nv[n++] = entry(":path", 5, "*", 1);
    else
        nv[n++] = entry(":path", 5, "/", 1);
    /* pseudo-header fields come first (RFC 9113 section 8.3): the authority before any field */
    if (msg->flags & HTTP1_F_ABSOLUTE_FORM) {
        nv[n++] = entry(":authority", 10, head + msg->authority_off, msg->authority_len);
    } else {
        for (uint32_t i = 0; i < msg->nfields; i++) {
            const struct http1_field *f = &msg->fields[i];
            if (f->id == HTTP1_FIELD_HOST) {
                nv[n++] = entry(":authority", 10, head + f->value_off, f->value_len);
                break;
            }
        }
    }
    /* We take trailers and pass them on (as chunked trailers, or HTTP/2 ones), whatever the
     * client said: "te: trailers" is the one TE HTTP/2 allows, and gRPC servers require it. */
    if (n == max)
        return -1;
    nv[n++] = entry("te", 2, "trailers", 8);
    /* every other field of the head is sent but these: the proxy wrote the head, so what it left
     * in is meant for the server (the parser's drop marks would drop its own X-Forwarded-For) */
    for (uint32_t i = 0; i < msg->nfields; i++) {
        const struct http1_field *f = &msg->fields[i];
        const char *value = head + f->value_off;
        if (f->id == HTTP1_FIELD_HOST || connection_specific(f))
            continue;
        const char *name = lowercase(head + f->name_off, f->name_len, lower, cap, &used);
        if (!name || n == max)
            return -1;
        nv[n++] = entry(name, f->name_len, value, f->value_len);
    }
    return (int)n;
}
