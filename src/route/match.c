/*
 * match.c - one route against one request (see match.h and, for the rules, route.h).
 *
 * A request's Host and server name are cut down once, in route_keys_init(), to the part that is
 * compared (no port, no trailing dot), keeping their case: comparisons fold ASCII case on the
 * fly, so no copy is made. The conditions are then tested cheapest first, and the regular
 * expression last, since only it needs a NUL-terminated copy of the path.
 */
#include "route/match.h"

#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "core/container.h"
#include "http/http1.h"
#include "route/route.h"

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

bool route_fold_eq(const char *a, const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

static size_t without_trailing_dot(const char *s, size_t len)
{
    return len > 0 && s[len - 1] == '.' ? len - 1 : len;
}

struct route_name route_name_of(const char *pattern)
{
    struct route_name n = {.s = pattern};
    if (pattern[0] == '*' && pattern[1] == '.') {
        n.wild = true;
        n.s += 2;
    }
    n.len = (uint32_t)without_trailing_dot(n.s, strlen(n.s));
    return n;
}

bool route_name_covers(const struct route_name *n, const char *name, size_t len)
{
    if (n->len == 0)
        return false;
    if (n->wild) {
        const char *dot = memchr(name, '.', len);
        if (!dot || dot == name) /* no label, or an empty one */
            return false;
        size_t skip = (size_t)(dot - name) + 1;
        name += skip;
        len -= skip;
    }
    return len == n->len && route_fold_eq(name, n->s, len);
}

/*
 * The host part of a Host field: "[v6]" or "[v6]:port" keeps the brackets; otherwise a final
 * ":digits" (or a bare ':', an empty port) goes. Then one trailing dot goes. A malformed value is
 * kept as it is, and matches nothing (no pattern has a ':' outside brackets).
 */
static size_t host_part(const char *s, size_t len)
{
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close) {
            size_t end = (size_t)(close - s) + 1, i = end;
            if (i < len && s[i] == ':')
                for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
                    ;
            return i == len ? end : len;
        }
        return len;
    }
    size_t i = len;
    while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9')
        i--;
    if (i > 0 && s[i - 1] == ':')
        len = i - 1;
    return without_trailing_dot(s, len);
}

void route_keys_init(struct route_keys *k, const struct route_request *req, char *buf, size_t cap)
{
    *k = (struct route_keys){.req = req, .zbuf = buf, .zcap = cap};
    if (req->host) {
        k->host = req->host;
        k->host_len = host_part(req->host, req->host_len);
    }
    if (req->sni) {
        k->sni = req->sni;
        k->sni_len = without_trailing_dot(req->sni, req->sni_len);
    }
    k->path = req->path ? req->path : "";
    k->path_len = req->path ? req->path_len : 0;
}

void route_keys_done(struct route_keys *k)
{
    free(k->zheap);
    k->zheap = NULL;
}

static bool any_name(const struct route_name *names, unsigned n, const char *name, size_t len)
{
    if (!name)
        return false;
    for (unsigned i = 0; i < n; i++)
        if (route_name_covers(&names[i], name, len))
            return true;
    return false;
}

static bool any_method(const struct conf_route_match *m, const struct route_request *req)
{
    if (!req->method)
        return false;
    for (unsigned i = 0; i < m->nmethods; i++)
        if (strlen(m->methods[i]) == req->method_len &&
            memcmp(m->methods[i], req->method, req->method_len) == 0)
            return true;
    return false;
}

static bool has_header(const struct conf_header *want, const struct route_request *req)
{
    const struct http1_msg *msg = req->msg;
    if (!msg || !req->head)
        return false;
    size_t name_len = strlen(want->name);
    size_t value_len = want->value ? strlen(want->value) : 0;
    for (uint32_t i = 0; i < msg->nfields; i++) {
        const struct http1_field *f = &msg->fields[i];
        if (f->name_len != name_len ||
            !route_fold_eq(req->head + f->name_off, want->name, name_len))
            continue;
        if (!want->value || (f->value_len == value_len &&
                             memcmp(req->head + f->value_off, want->value, value_len) == 0))
            return true;
    }
    return false;
}

static bool has_param(const struct conf_header *want, const struct route_request *req)
{
    if (!req->query)
        return false;
    size_t name_len = strlen(want->name);
    size_t value_len = want->value ? strlen(want->value) : 0;
    const char *p = req->query, *end = req->query + req->query_len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *name_end = eq ? eq : stop;
        if ((size_t)(name_end - p) == name_len && memcmp(p, want->name, name_len) == 0 &&
            (!want->value || (eq && (size_t)(stop - eq - 1) == value_len &&
                              memcmp(eq + 1, want->value, value_len) == 0)))
            return true;
        p = stop + 1;
    }
    return false;
}

/* The path with a NUL after it, made once per lookup: in the caller's buffer if it fits. */
static const char *terminated_path(struct route_keys *k)
{
    if (k->zpath || k->zfailed)
        return k->zpath;
    if (memchr(k->path, '\0', k->path_len)) { /* regexec() would see only a part of it */
        k->zfailed = true;
        return NULL;
    }
    char *z = k->zbuf;
    if (k->path_len >= k->zcap) {
        z = k->zheap = malloc(k->path_len + 1);
        if (!z) {
            k->zfailed = true;
            return NULL;
        }
    }
    memcpy(z, k->path, k->path_len);
    z[k->path_len] = '\0';
    k->zpath = z;
    return z;
}

bool route_entry_holds(const struct route_entry *e, struct route_keys *k)
{
    const struct conf_route_match *m = &e->pub.conf->match;
    const struct route_request *req = k->req;
    if (e->nhosts && !any_name(e->hosts, e->nhosts, k->host, k->host_len))
        return false;
    if (m->path && (k->path_len != e->path_len || memcmp(k->path, m->path, e->path_len) != 0))
        return false;
    if (m->path_prefix &&
        (k->path_len < e->prefix_len || memcmp(k->path, m->path_prefix, e->prefix_len) != 0))
        return false;
    if (m->nmethods && !any_method(m, req))
        return false;
    if (e->nsnis && !any_name(e->snis, e->nsnis, k->sni, k->sni_len))
        return false;
    if (m->query.name && !has_param(&m->query, req))
        return false;
    if (m->header.name && !has_header(&m->header, req))
        return false;
    if (e->has_regex) {
        const char *z = terminated_path(k);
        if (!z || regexec(&e->regex, z, 0, NULL, 0) != 0)
            return false;
    }
    return true;
}

bool route_check(const struct route *r, const struct route_request *req)
{
    const struct route_entry *e = container_of(r, const struct route_entry, pub);
    char buf[ROUTE_REGEX_STACK];
    struct route_keys k;
    route_keys_init(&k, req, buf, sizeof(buf));
    bool ok = route_entry_holds(e, &k);
    route_keys_done(&k);
    return ok;
}
