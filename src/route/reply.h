/*
 * reply.h - the answers a route gives without a server: redirects and fixed responses, written as
 * complete HTTP/1.1 messages into a buffer.
 *
 * A redirect with a location sends exactly that URL. One with scheme, host or port builds
 * SCHEME://HOST[:PORT] from the parts given and the request's own (the listener's scheme, the
 * Host field without its port) and appends the request target as the client sent it, path and
 * query; a port is written only when it is given and is not the scheme's default. Both kinds
 * carry the response header rules that apply (listener's, then route's).
 */
#ifndef FULCRUM_ROUTE_REPLY_H
#define FULCRUM_ROUTE_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/conf.h"
#include "http/rewrite.h"

struct reply_request {
    const char *host; /* the Host field (or an absolute-form target's authority); NULL: none */
    size_t host_len;
    const char *target; /* origin-form target: path and query, as sent */
    size_t target_len;
    bool tls;        /* the request came over TLS: the default scheme is https */
    bool head;       /* a HEAD request: the head alone */
    bool keep_alive; /* the connection stays open after this answer */
};

/* Each returns the message's length, or 0 if it does not fit in cap (or, for a redirect that
 * needs the request's host, if the request has none). */
size_t route_reply_redirect(const struct conf_redirect *r, const struct reply_request *req,
                            const struct rewrite_rule_list *rules, char *out, size_t cap);
size_t route_reply_respond(const struct conf_respond *r, const struct reply_request *req,
                           const struct rewrite_rule_list *rules, char *out, size_t cap);

#endif
