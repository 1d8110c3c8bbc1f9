/*
 * rewrite.c - forwarded heads (see rewrite.h).
 *
 * Each head is a straight run of appends to a bounded writer (wbuf.h), checked once at the end:
 * a head that does not fit yields 0.
 */
#include "http/rewrite.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "core/wbuf.h"

static void put_field(struct wbuf *w, const char *buf, const struct http1_field *f)
{
    wbuf_put(w, buf + f->name_off, f->name_len);
    WBUF_LITERAL(w, ": ");
    wbuf_put(w, buf + f->value_off, f->value_len);
    WBUF_LITERAL(w, "\r\n");
}

static size_t finish(struct wbuf *w)
{
    WBUF_LITERAL(w, "\r\n");
    return wbuf_len(w);
}

size_t rewrite_request(const char *buf, const struct http1_msg *msg,
                       const struct rewrite_client *client, char *out, size_t cap)
{
    struct wbuf w = wbuf_init(out, cap);
    const struct http1_field *host = msg->host_field >= 0 ? &msg->fields[msg->host_field] : NULL;
    bool absolute = msg->flags & HTTP1_F_ABSOLUTE_FORM;

    wbuf_put(&w, buf + msg->method_off, msg->method_len);
    WBUF_LITERAL(&w, " ");
    if (msg->flags & HTTP1_F_TARGET_NO_SLASH)
        WBUF_LITERAL(&w, "/");
    wbuf_put(&w, buf + msg->path_off, msg->path_len);
    WBUF_LITERAL(&w, " HTTP/1.1\r\n");

    /* Host first, as RFC 9112 recommends; for absolute-form the target's authority wins. */
    WBUF_LITERAL(&w, "Host: ");
    if (absolute)
        wbuf_put(&w, buf + msg->authority_off, msg->authority_len);
    else if (host)
        wbuf_put(&w, buf + host->value_off, host->value_len);
    WBUF_LITERAL(&w, "\r\n");

    for (uint32_t i = 0; i < msg->nfields; i++) {
        const struct http1_field *f = &msg->fields[i];
        if (f->drop || f->id == HTTP1_FIELD_HOST)
            continue;
        if (client->subject_header && f->name_len == strlen(client->subject_header) &&
            strncasecmp(buf + f->name_off, client->subject_header, f->name_len) == 0)
            continue; /* a client's own claim of a certificate subject */
        put_field(&w, buf, f);
    }
    if (msg->flags & HTTP1_F_HAS_LENGTH) {
        WBUF_LITERAL(&w, "Content-Length: ");
        wbuf_u64(&w, msg->content_length);
        WBUF_LITERAL(&w, "\r\n");
    }
    /* The parser accepts only "chunked" and drops the client's lines: one canonical line leaves
     * the backend nothing to read differently (case, whitespace, commas, several lines). */
    if (msg->body == HTTP1_BODY_CHUNKED)
        WBUF_LITERAL(&w, "Transfer-Encoding: chunked\r\n");

    /* X-Forwarded-For: every value the client sent, in order, then the client's own address. */
    WBUF_LITERAL(&w, "X-Forwarded-For: ");
    for (uint32_t i = 0; i < msg->nfields; i++) {
        const struct http1_field *f = &msg->fields[i];
        if (f->id == HTTP1_FIELD_X_FORWARDED_FOR && f->value_len) {
            wbuf_put(&w, buf + f->value_off, f->value_len);
            WBUF_LITERAL(&w, ", ");
        }
    }
    wbuf_put(&w, client->ip, client->ip_len);
    if (client->tls)
        WBUF_LITERAL(&w, "\r\nX-Forwarded-Proto: https\r\n");
    else
        WBUF_LITERAL(&w, "\r\nX-Forwarded-Proto: http\r\n");
    if (client->subject_header && client->subject) {
        wbuf_put(&w, client->subject_header, strlen(client->subject_header));
        WBUF_LITERAL(&w, ": ");
        wbuf_put(&w, client->subject, strlen(client->subject));
        WBUF_LITERAL(&w, "\r\n");
    }
    if (absolute || host) {
        WBUF_LITERAL(&w, "X-Forwarded-Host: ");
        if (absolute)
            wbuf_put(&w, buf + msg->authority_off, msg->authority_len);
        else
            wbuf_put(&w, buf + host->value_off, host->value_len);
        WBUF_LITERAL(&w, "\r\n");
    }
    return finish(&w);
}

size_t rewrite_response(const char *buf, const struct http1_msg *msg, unsigned flags, char *out,
                        size_t cap)
{
    struct wbuf w = wbuf_init(out, cap);
    char status[4] = {(char)('0' + msg->status / 100), (char)('0' + msg->status / 10 % 10),
                      (char)('0' + msg->status % 10), ' '};

    WBUF_LITERAL(&w, "HTTP/1.1 ");
    wbuf_put(&w, status, sizeof(status));
    wbuf_put(&w, buf + msg->reason_off, msg->reason_len);
    WBUF_LITERAL(&w, "\r\n");
    for (uint32_t i = 0; i < msg->nfields; i++) {
        const struct http1_field *f = &msg->fields[i];
        if (f->drop)
            continue;
        if ((flags & REWRITE_DECHUNK) && f->id == HTTP1_FIELD_TRANSFER_ENCODING)
            continue;
        put_field(&w, buf, f);
    }
    if (msg->flags & HTTP1_F_HAS_LENGTH) {
        WBUF_LITERAL(&w, "Content-Length: ");
        wbuf_u64(&w, msg->content_length);
        WBUF_LITERAL(&w, "\r\n");
    }
    if (flags & REWRITE_CONN_CLOSE)
        WBUF_LITERAL(&w, "Connection: close\r\n");
    else if (flags & REWRITE_CONN_KEEP_ALIVE)
        WBUF_LITERAL(&w, "Connection: keep-alive\r\n");
    return finish(&w);
}
