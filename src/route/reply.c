/*
 * reply.c - redirects and fixed responses (see reply.h), each one run of appends to a bounded
 * writer (core/wbuf.h), checked once at the end.
 */
#include "route/reply.h"

#include <string.h>

#include "core/wbuf.h"
#include "http/http1.h"

/* The status line and the fields every reply has, up to (not including) Content-Length. */
static void put_start(struct wbuf *w, unsigned status, const struct rewrite_rule_list *rules)
{
    WBUF_LITERAL(w, "HTTP/1.1 ");
    wbuf_u64(w, status);
    WBUF_LITERAL(w, " ");
    wbuf_puts(w, http1_reason(status));
    WBUF_LITERAL(w, "\r\n");
    rewrite_put_rule_fields(w, rules);
}

static size_t put_end(struct wbuf *w, const struct reply_request *req, const char *body,
                      size_t body_len)
{
    WBUF_LITERAL(w, "Content-Length: ");
    wbuf_u64(w, body_len);
    if (req->keep_alive)
        WBUF_LITERAL(w, "\r\nConnection: keep-alive\r\n\r\n");
    else
        WBUF_LITERAL(w, "\r\nConnection: close\r\n\r\n");
    if (!req->head)
        wbuf_put(w, body, body_len);
    return wbuf_len(w);
}

/* The Host field's host, without a port: "[::1]:8080" -> "[::1]", "a.example:80" -> "a.example". */
static size_t host_without_port(const char *host, size_t len)
{
    size_t end = len;
    while (end > 0 && host[end - 1] >= '0' && host[end - 1] <= '9')
        end--;
    bool bracketed = host[0] == '['; /* an IPv6 literal: its colons are not a port's */
    if (end > 0 && host[end - 1] == ':' && (!bracketed || (end >= 2 && host[end - 2] == ']')))
        return end - 1;
    return len;
}

size_t route_reply_redirect(const struct conf_redirect *r, const struct reply_request *req,
                            const struct rewrite_rule_list *rules, char *out, size_t cap)
{
    struct wbuf w = wbuf_init(out, cap);
    put_start(&w, r->status, rules);
    WBUF_LITERAL(&w, "Location: ");
    if (r->location) {
        wbuf_puts(&w, r->location);
    } else {
        const char *scheme = r->scheme ? r->scheme : req->tls ? "https" : "http";
        if (!r->host && (!req->host || !req->host_len))
            return 0;
        wbuf_puts(&w, scheme);
        WBUF_LITERAL(&w, "://");
        if (r->host)
            wbuf_puts(&w, r->host);
        else
            wbuf_put(&w, req->host, host_without_port(req->host, req->host_len));
        unsigned default_port = strcmp(scheme, "https") == 0 ? 443 : 80;
        if (r->port && r->port != default_port) {
            WBUF_LITERAL(&w, ":");
            wbuf_u64(&w, r->port);
        }
        wbuf_put(&w, req->target, req->target_len);
    }
    WBUF_LITERAL(&w, "\r\n");
    return put_end(&w, req, "", 0);
}

size_t route_reply_respond(const struct conf_respond *r, const struct reply_request *req,
                           const struct rewrite_rule_list *rules, char *out, size_t cap)
{
    struct wbuf w = wbuf_init(out, cap);
    size_t body_len = r->body ? strlen(r->body) : 0;
    put_start(&w, r->status, rules);
    if (r->status != 204 && r->status != 304) {
        WBUF_LITERAL(&w, "Content-Type: ");
        wbuf_puts(&w, r->content_type ? r->content_type : "text/plain");
        WBUF_LITERAL(&w, "\r\n");
    }
    return put_end(&w, req, r->body ? r->body : "", body_len);
}
