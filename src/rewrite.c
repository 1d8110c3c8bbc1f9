/*
 * rewrite.c - forwarded heads (see rewrite.h).
 *
 * A small bounded writer appends pieces; once a piece does not fit the writer stays failed, so
 * the code reads as a straight sequence of appends with one check at the end.
 */
#include "rewrite.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

struct writer {
    char *p, *end;
    bool overflow;
};

static void put(struct writer *w, const char *s, size_t n)
{
    if (w->overflow || (size_t)(w->end - w->p) < n) {
        w->overflow = true;
        return;
    }
    memcpy(w->p, s, n);
    w->p += n;
}

#define PUT_LITERAL(w, s) put((w), (s), sizeof(s) - 1)

static void put_u64(struct writer *w, uint64_t v)
{
    char tmp[20];
    size_t n = sizeof(tmp);
    do {
        tmp[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(w, tmp + n, sizeof(tmp) - n);
}

static void put_field(struct writer *w, const char *buf, const struct http1_field *f)
{
    put(w, buf + f->name_off, f->name_len);
    PUT_LITERAL(w, ": ");
    put(w, buf + f->value_off, f->value_len);
    PUT_LITERAL(w, "\r\n");
}

static size_t finish(struct writer *w, char *out)
{
    PUT_LITERAL(w, "\r\n");
    return w->overflow ? 0 : (size_t)(w->p - out);
}

size_t rewrite_request(const char *buf, const struct http1_msg *msg, const char *client_ip,
                       size_t client_ip_len, char *out, size_t cap)
{
    struct writer w = {out, out + cap, false};
    const struct http1_field *host = msg->host_field >= 0 ? &msg->fields[msg->host_field] : NULL;
    bool absolute = msg->flags & HTTP1_F_ABSOLUTE_FORM;

    put(&w, buf + msg->method_off, msg->method_len);
    PUT_LITERAL(&w, " ");
    if (msg->flags & HTTP1_F_TARGET_NO_SLASH)
        PUT_LITERAL(&w, "/");
    put(&w, buf + msg->path_off, msg->path_len);
    PUT_LITERAL(&w, " HTTP/1.1\r\n");

    /* Host first, as RFC 9112 recommends; for absolute-form the target's authority wins. */
    PUT_LITERAL(&w, "Host: ");
    if (absolute)
        put(&w, buf + msg->authority_off, msg->authority_len);
    else if (host)
        put(&w, buf + host->value_off, host->value_len);
    PUT_LITERAL(&w, "\r\n");

    for (uint32_t i = 0; i < msg->nfields; i++) {
        const struct http1_field *f = &msg->fields[i];
        if (!f->drop && f->id != HTTP1_FIELD_HOST)
            put_field(&w, buf, f);
    }
    if (msg->flags & HTTP1_F_HAS_LENGTH) {
        PUT_LITERAL(&w, "Content-Length: ");
        put_u64(&w, msg->content_length);
        PUT_LITERAL(&w, "\r\n");
    }

    /* X-Forwarded-For: every value the client sent, in order, then the client's own address. */
    PUT_LITERAL(&w, "X-Forwarded-For: ");
    for (uint32_t i = 0; i < msg->nfields; i++) {
        const struct http1_field *f = &msg->fields[i];
        if (f->id == HTTP1_FIELD_X_FORWARDED_FOR && f->value_len) {
            put(&w, buf + f->value_off, f->value_len);
            PUT_LITERAL(&w, ", ");
        }
    }
    put(&w, client_ip, client_ip_len);
    PUT_LITERAL(&w, "\r\nX-Forwarded-Proto: http\r\n");
    if (absolute || host) {
        PUT_LITERAL(&w, "X-Forwarded-Host: ");
        if (absolute)
            put(&w, buf + msg->authority_off, msg->authority_len);
        else
            put(&w, buf + host->value_off, host->value_len);
        PUT_LITERAL(&w, "\r\n");
    }
    return finish(&w, out);
}

size_t rewrite_response(const char *buf, const struct http1_msg *msg, unsigned flags, char *out,
                        size_t cap)
{
    struct writer w = {out, out + cap, false};
    char status[4] = {(char)('0' + msg->status / 100), (char)('0' + msg->status / 10 % 10),
                      (char)('0' + msg->status % 10), ' '};

    PUT_LITERAL(&w, "HTTP/1.1 ");
    put(&w, status, sizeof(status));
    put(&w, buf + msg->reason_off, msg->reason_len);
    PUT_LITERAL(&w, "\r\n");
    for (uint32_t i = 0; i < msg->nfields; i++) {
        const struct http1_field *f = &msg->fields[i];
        if (f->drop)
            continue;
        if ((flags & REWRITE_DECHUNK) && f->id == HTTP1_FIELD_TRANSFER_ENCODING)
            continue;
        put_field(&w, buf, f);
    }
    if (msg->flags & HTTP1_F_HAS_LENGTH) {
        PUT_LITERAL(&w, "Content-Length: ");
        put_u64(&w, msg->content_length);
        PUT_LITERAL(&w, "\r\n");
    }
    if (flags & REWRITE_CONN_CLOSE)
        PUT_LITERAL(&w, "Connection: close\r\n");
    else if (flags & REWRITE_CONN_KEEP_ALIVE)
        PUT_LITERAL(&w, "Connection: keep-alive\r\n");
    return finish(&w, out);
}
