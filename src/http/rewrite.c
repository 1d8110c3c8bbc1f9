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

static bool same_name(const char *a, size_t a_len, const char *b, size_t b_len)
{
    return a_len == b_len && strncasecmp(a, b, a_len) == 0;
}

static bool named_in(const struct rewrite_field *v, unsigned n, const char *name, size_t len)
{
    for (unsigned i = 0; i < n; i++)
        if (same_name(v[i].name, v[i].name_len, name, len))
            return true;
    return false;
}

/* Is a field of this name taken out (removed, or replaced) by rule set `from` or a later one? */
static bool replaced_from(const struct rewrite_rule_list *rules, unsigned from, const char *name,
                          size_t len)
{
    for (unsigned i = from; rules && i < rules->n; i++) {
        const struct rewrite_rules *r = rules->sets[i];
        if (named_in(r->remove, r->nremove, name, len) || named_in(r->set, r->nset, name, len))
            return true;
    }
    return false;
}

static void put_rule_field(struct wbuf *w, const struct rewrite_field *f)
{
    wbuf_put(w, f->name, f->name_len);
    WBUF_LITERAL(w, ": ");
    wbuf_put(w, f->value, f->value_len);
    WBUF_LITERAL(w, "\r\n");
}

/* What the rules set and add, each rule set's fields unless a later one replaces them. A request's
 * Host is set in its place at the top (skip_host). */
static void put_rules(struct wbuf *w, const struct rewrite_rule_list *rules, bool skip_host)
{
    for (unsigned i = 0; rules && i < rules->n; i++) {
        const struct rewrite_rules *r = rules->sets[i];
        for (unsigned j = 0; j < r->nset; j++)
            if (!replaced_from(rules, i + 1, r->set[j].name, r->set[j].name_len) &&
                !(skip_host && same_name(r->set[j].name, r->set[j].name_len, "host", 4)))
                put_rule_field(w, &r->set[j]);
        for (unsigned j = 0; j < r->nadd; j++)
            if (!replaced_from(rules, i + 1, r->add[j].name, r->add[j].name_len))
                put_rule_field(w, &r->add[j]);
    }
}

void rewrite_put_rule_fields(struct wbuf *w, const struct rewrite_rule_list *rules)
{
    put_rules(w, rules, false);
}

/* Host is the one field a rule may set but not remove (HTTP/1.1 needs it): the last set wins. */
static const struct rewrite_field *host_rule(const struct rewrite_rule_list *rules)
{
    const struct rewrite_field *found = NULL;
    for (unsigned i = 0; rules && i < rules->n; i++)
        for (unsigned j = 0; j < rules->sets[i]->nset; j++)
            if (same_name(rules->sets[i]->set[j].name, rules->sets[i]->set[j].name_len, "host", 4))
                found = &rules->sets[i]->set[j];
    return found;
}

size_t rewrite_request(const char *buf, const struct http1_msg *msg,
                       const struct rewrite_client *client, const struct rewrite_rule_list *rules,
                       char *out, size_t cap)
{
    struct wbuf w = wbuf_init(out, cap);
    const struct http1_field *host = msg->host_field >= 0 ? &msg->fields[msg->host_field] : NULL;
    const struct rewrite_field *set_host = host_rule(rules);
    bool absolute = msg->flags & HTTP1_F_ABSOLUTE_FORM;

    wbuf_put(&w, buf + msg->method_off, msg->method_len);
    WBUF_LITERAL(&w, " ");
    if (client->path) {
        wbuf_put(&w, client->path, client->path_len);
    } else {
        if (msg->flags & HTTP1_F_TARGET_NO_SLASH)
            WBUF_LITERAL(&w, "/");
        wbuf_put(&w, buf + msg->path_off, msg->path_len);
    }
    WBUF_LITERAL(&w, " HTTP/1.1\r\n");

    /* Host first, as RFC 9112 recommends; for absolute-form the target's authority wins, and a
     * rule that sets Host wins over both. */
    WBUF_LITERAL(&w, "Host: ");
    if (set_host)
        wbuf_put(&w, set_host->value, set_host->value_len);
    else if (absolute)
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
        if (rules && rules->n && replaced_from(rules, 0, buf + f->name_off, f->name_len))
            continue;
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
    if (!replaced_from(rules, 0, "X-Forwarded-For", 15)) {
        WBUF_LITERAL(&w, "X-Forwarded-For: ");
        for (uint32_t i = 0; i < msg->nfields; i++) {
            const struct http1_field *f = &msg->fields[i];
            if (f->id == HTTP1_FIELD_X_FORWARDED_FOR && f->value_len) {
                wbuf_put(&w, buf + f->value_off, f->value_len);
                WBUF_LITERAL(&w, ", ");
            }
        }
        wbuf_put(&w, client->ip, client->ip_len);
        WBUF_LITERAL(&w, "\r\n");
    }
    if (!replaced_from(rules, 0, "X-Forwarded-Proto", 17)) {
        if (client->tls)
            WBUF_LITERAL(&w, "X-Forwarded-Proto: https\r\n");
        else
            WBUF_LITERAL(&w, "X-Forwarded-Proto: http\r\n");
    }
    if (client->subject_header && client->subject &&
        !replaced_from(rules, 0, client->subject_header, strlen(client->subject_header))) {
        wbuf_put(&w, client->subject_header, strlen(client->subject_header));
        WBUF_LITERAL(&w, ": ");
        wbuf_put(&w, client->subject, strlen(client->subject));
        WBUF_LITERAL(&w, "\r\n");
    }
    if ((absolute || host) && !replaced_from(rules, 0, "X-Forwarded-Host", 16)) {
        WBUF_LITERAL(&w, "X-Forwarded-Host: ");
        if (absolute)
            wbuf_put(&w, buf + msg->authority_off, msg->authority_len);
        else
            wbuf_put(&w, buf + host->value_off, host->value_len);
        WBUF_LITERAL(&w, "\r\n");
    }
    put_rules(&w, rules, true);
    if (client->websocket)
        WBUF_LITERAL(&w, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
    return finish(&w);
}

size_t rewrite_response(const char *buf, const struct http1_msg *msg, unsigned flags,
                        const struct rewrite_rule_list *rules, char *out, size_t cap)
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
        if (rules && rules->n && replaced_from(rules, 0, buf + f->name_off, f->name_len))
            continue;
        put_field(&w, buf, f);
    }
    if (msg->flags & HTTP1_F_HAS_LENGTH) {
        WBUF_LITERAL(&w, "Content-Length: ");
        wbuf_u64(&w, msg->content_length);
        WBUF_LITERAL(&w, "\r\n");
    }
    put_rules(&w, rules, false);
    if (flags & REWRITE_UPGRADE_WEBSOCKET)
        WBUF_LITERAL(&w, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
    else if (flags & REWRITE_CONN_CLOSE)
        WBUF_LITERAL(&w, "Connection: close\r\n");
    else if (flags & REWRITE_CONN_KEEP_ALIVE)
        WBUF_LITERAL(&w, "Connection: keep-alive\r\n");
    return finish(&w);
}
