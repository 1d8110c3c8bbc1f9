/*
 * rewrite.h - builds the heads fulcrum forwards, from heads the parser checked.
 *
 * Requests go to the backend as HTTP/1.1 in origin-form, without the fields the parser marked
 * drop (hop-by-hop fields, names with '_' by default), with one canonical Content-Length when the
 * client sent one, one canonical "Transfer-Encoding: chunked" for a chunked body, X-Forwarded-For
 * extended by the client's address, X-Forwarded-Proto / X-Forwarded-Host set, and the client
 * certificate's subject in the field the listener names (never a copy the client sent). Host is
 * kept as the client sent it (replaced by the target's authority for an absolute-form target, as
 * RFC 9112 section 3.2.2 asks).
 *
 * Responses go to the client as HTTP/1.1 without hop-by-hop fields, with the Connection field
 * fulcrum decides on, and without Transfer-Encoding when the body is being de-chunked for an
 * HTTP/1.0 client.
 *
 * Both functions write into out[0, cap) and return the length, or 0 when it does not fit.
 */
#ifndef FULCRUM_REWRITE_H
#define FULCRUM_REWRITE_H

#include <stdbool.h>
#include <stddef.h>

#include "http/http1.h"

/* What fulcrum tells the backend about the client. */
struct rewrite_client {
    const char *ip; /* appended to X-Forwarded-For */
    size_t ip_len;
    bool tls; /* the request arrived over TLS: X-Forwarded-Proto: https */
    /* A field for the verified client certificate's subject (NULL: none). Whatever the client
     * sent under that name is dropped; subject, if not NULL, goes out in its place. */
    const char *subject_header;
    const char *subject;
};

size_t rewrite_request(const char *buf, const struct http1_msg *msg,
                       const struct rewrite_client *client, char *out, size_t cap);

enum {
    REWRITE_CONN_CLOSE = 1u << 0,      /* add "Connection: close" */
    REWRITE_CONN_KEEP_ALIVE = 1u << 1, /* add "Connection: keep-alive" (HTTP/1.0 clients) */
    REWRITE_DECHUNK = 1u << 2,         /* drop Transfer-Encoding: the body goes out de-chunked */
};

size_t rewrite_response(const char *buf, const struct http1_msg *msg, unsigned flags, char *out,
                        size_t cap);

#endif
