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
 * Header rules (a listener's, then a route's: request_headers, response_headers) are applied last,
 * in order, each as remove, then set (every field of that name replaced by one), then add (one
 * more). A later rule set sees what an earlier one did: a route's remove takes out a field the
 * listener's set added. The fields fulcrum adds itself (X-Forwarded-*, the subject field) count
 * as already present, so a rule may replace or remove them too. The configuration refuses rules
 * on framing fields (Content-Length, Transfer-Encoding, Connection...).
 *
 * Both functions write into out[0, cap) and return the length, or 0 when it does not fit.
 */
#ifndef FULCRUM_REWRITE_H
#define FULCRUM_REWRITE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/wbuf.h"
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
    /* A WebSocket opening handshake: Connection: Upgrade and Upgrade: websocket go on (every other
     * Upgrade, h2c included, is dropped with the other hop-by-hop fields). */
    bool websocket;
    /* The path (and query) to send instead of the request's own; NULL: as the client sent it. */
    const char *path;
    size_t path_len;
};

/* One field of a rule: for remove, only the name counts. */
struct rewrite_field {
    const char *name, *value;
    size_t name_len, value_len;
};

struct rewrite_rules {
    const struct rewrite_field *remove, *set, *add;
    unsigned nremove, nset, nadd;
};

/* The rule sets that apply to one message, in order (listener, route, and for a response the
 * sticky session cookie); n may be 0. */
#define REWRITE_MAX_RULES 3
struct rewrite_rule_list {
    const struct rewrite_rules *sets[REWRITE_MAX_RULES];
    unsigned n;
};

size_t rewrite_request(const char *buf, const struct http1_msg *msg,
                       const struct rewrite_client *client, const struct rewrite_rule_list *rules,
                       char *out, size_t cap);

enum {
    REWRITE_CONN_CLOSE = 1u << 0,        /* add "Connection: close" */
    REWRITE_CONN_KEEP_ALIVE = 1u << 1,   /* add "Connection: keep-alive" (HTTP/1.0 clients) */
    REWRITE_DECHUNK = 1u << 2,           /* drop Transfer-Encoding: the body goes out de-chunked */
    REWRITE_UPGRADE_WEBSOCKET = 1u << 3, /* a 101 to a WebSocket handshake: Connection: Upgrade,
                                          * Upgrade: websocket (instead of the other two) */
};

size_t rewrite_response(const char *buf, const struct http1_msg *msg, unsigned flags,
                        const struct rewrite_rule_list *rules, char *out, size_t cap);

/* Appends the fields rules set and add to w (for heads fulcrum writes itself: redirects, fixed
 * answers), each as "Name: value\r\n". */
void rewrite_put_rule_fields(struct wbuf *w, const struct rewrite_rule_list *rules);

#endif
