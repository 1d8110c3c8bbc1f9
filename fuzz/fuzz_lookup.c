/*
 * fuzz_lookup.c - libFuzzer target: finding values in a request (http/lookup.h: fields, cookies,
 * query parameters), the hash key digest and the sticky cookie (lb/keys.h).
 *
 * The input is a name, up to the first '\n', then a request head, fed to the parser as it is.
 * Head and name are each copied to an allocation of their exact size, so that a read past
 * either end (or before the head) is caught. Whatever the bytes:
 *   - every value found lies inside what it was looked up in (the head, a field, the query);
 *   - a field found is the first of that name, ignoring ASCII case, as a plain scan finds it;
 *     a cookie value holds no ';' and a query value no '&';
 *   - lb_request_key finds a key exactly when the lookup of its kind finds a value;
 *   - lb_sticky_find, on a fixed pool of three servers, returns one of them or NULL, and one
 *     whose sticky_id the request's cookie holds;
 *   - lb_sticky_cookie, with the name as the cookie's, fits its buffer or returns 0.
 * When the parser refuses the head, the cookie and query lookups still run on its raw bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "core/log.h"
#include "http/http1.h"
#include "http/lookup.h"
#include "lb/keys.h"
#include "servers/pool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FIELDS 64

/* Built on the first input and kept (reachable, so not a leak) for the process's life. */
static struct server *servers[3];
static struct conf_pool pc;
static struct pool pool;

static void make_pool(void)
{
    static const char *const addresses[] = {"127.0.0.1:9001", "127.0.0.1:9002", "[::1]:9003"};
    static const char *const names[] = {"a", "b", "c"};
    if (servers[0])
        return;
    log_max_level = -1;
    for (int i = 0; i < 3; i++) {
        struct net_addr addr;
        const char *why;
        if (net_parse_addr(addresses[i], &addr, &why) != 0 ||
            !(servers[i] = server_new("p", names[i], &addr, 1)))
            abort();
    }
    pc.name = "p";
    pool.name = "p";
    pool.conf = &pc;
    pool.servers = servers;
    pool.nservers = 3;
}

/* [v, v + len) inside [base, base + size)? A value may be empty at the very end. */
static void check_inside(const char *base, size_t size, const char *v, size_t len)
{
    if (v < base || v > base + size || len > (size_t)(base + size - v))
        abort();
}

static unsigned char fold(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static bool named(const char *head, const struct http1_field *f, const char *name, size_t name_len)
{
    if (f->name_len != name_len)
        return false;
    for (size_t k = 0; k < name_len; k++)
        if (fold((unsigned char)head[f->name_off + k]) != fold((unsigned char)name[k]))
            return false;
    return true;
}

/* The first field called name ignoring ASCII case, by a plain scan; -1 if none. */
static long first_field(const char *head, const struct http1_msg *msg, const char *name,
                        size_t name_len)
{
    for (uint32_t i = 0; i < msg->nfields; i++)
        if (named(head, &msg->fields[i], name, name_len))
            return (long)i;
    return -1;
}

/* The lookups that need no parser: cookies and query parameters in any bytes. */
static void raw_lookups(const char *bytes, size_t len, const char *name, size_t name_len)
{
    const char *v;
    size_t vlen;
    if (http_cookie_in(bytes, len, name, name_len, &v, &vlen)) {
        check_inside(bytes, len, v, vlen);
        if (memchr(v, ';', vlen))
            abort();
    }
    if (http_query_value(bytes, len, name, name_len, &v, &vlen)) {
        check_inside(bytes, len, v, vlen);
        if (memchr(v, '&', vlen))
            abort();
    }
}

/* lb_request_key for every kind must find a key exactly when `expect` says one is there. */
static void check_keys(const char *head, const struct http1_msg *msg, const char *cname,
                       const bool expect[])
{
    static const enum conf_hash_key kinds[] = {CONF_HASH_CLIENT_IP, CONF_HASH_HEADER,
                                               CONF_HASH_COOKIE,    CONF_HASH_QUERY,
                                               CONF_HASH_PATH,      CONF_HASH_URI};
    for (unsigned k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        struct conf_pool kp = {.name = "k", .balance = CONF_BALANCE_HASH, .hash_key = kinds[k]};
        kp.hash_key_name = (char *)cname;
        uint64_t d1 = 0, d2 = 0;
        bool f1 = lb_request_key(&kp, head, msg, head + msg->path_off, msg->path_len, &d1);
        bool f2 = lb_request_key(&kp, head, msg, head + msg->path_off, msg->path_len, &d2);
        if (f1 != expect[kinds[k]] || f2 != f1 || d1 != d2)
            abort();
    }
}

/* lb_sticky_find with cookie as the pool's sticky cookie: NULL or a server the cookie names. */
static void check_sticky(const char *head, const struct http1_msg *msg, char *cookie)
{
    pc.sticky.enabled = true;
    pc.sticky.cookie = cookie;
    struct server *s = lb_sticky_find(&pool, head, msg);
    if (!s)
        return;
    if (s != servers[0] && s != servers[1] && s != servers[2])
        abort();
    const char *v;
    size_t len;
    if (!http_cookie_value(head, msg, cookie, strlen(cookie), &v, &len) ||
        len != strlen(s->sticky_id) || memcmp(v, s->sticky_id, len) != 0)
        abort();
}

static void parsed_lookups(const char *head, size_t size, const struct http1_msg *msg,
                           const char *name, size_t name_len, char *cname)
{
    const char *v;
    size_t len;
    bool expect[CONF_HASH_URI + 1] = {false};

    long i = first_field(head, msg, name, name_len);
    expect[CONF_HASH_HEADER] = http_field_value(head, msg, name, name_len, &v, &len);
    if (expect[CONF_HASH_HEADER] != (i >= 0))
        abort();
    if (i >= 0) {
        check_inside(head, size, v, len);
        if (v != head + msg->fields[i].value_off || len != msg->fields[i].value_len)
            abort();
    }

    expect[CONF_HASH_COOKIE] = http_cookie_value(head, msg, name, name_len, &v, &len);
    if (expect[CONF_HASH_COOKIE]) {
        check_inside(head, size, v, len);
        if (memchr(v, ';', len))
            abort();
    }
    for (uint32_t k = 0; k < msg->nfields; k++) {
        const struct http1_field *f = &msg->fields[k];
        if (named(head, f, "cookie", 6)) {
            check_inside(head, size, head + f->value_off, f->value_len);
            raw_lookups(head + f->value_off, f->value_len, name, name_len);
        }
    }

    const char *target = head + msg->path_off;
    check_inside(head, size, target, msg->path_len);
    const char *q = memchr(target, '?', msg->path_len);
    if (q) {
        size_t qlen = msg->path_len - (size_t)(q + 1 - target);
        expect[CONF_HASH_QUERY] = http_query_value(q + 1, qlen, name, name_len, &v, &len);
        if (expect[CONF_HASH_QUERY])
            check_inside(q + 1, qlen, v, len);
    }
    expect[CONF_HASH_PATH] = expect[CONF_HASH_URI] = true;

    /* The configuration's names are strings: a name holding a NUL byte is cut there, and the
     * lookups are then of the shorter name. */
    size_t clen = strlen(cname);
    if (clen != name_len) {
        expect[CONF_HASH_HEADER] = http_field_value(head, msg, cname, clen, &v, &len);
        expect[CONF_HASH_COOKIE] = http_cookie_value(head, msg, cname, clen, &v, &len);
        expect[CONF_HASH_QUERY] =
            q && http_query_value(q + 1, msg->path_len - (size_t)(q + 1 - target), cname, clen, &v,
                                  &len);
    }
    check_keys(head, msg, cname, expect);

    char srv[] = "SRV";
    check_sticky(head, msg, srv);
    if (clen)
        check_sticky(head, msg, cname);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    make_pool();
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl)
        return 0;
    size_t name_len = (size_t)(nl - data), head_len = size - name_len - 1;
    char *name = malloc(name_len ? name_len : 1);
    char *cname = malloc(name_len + 1);
    char *head = malloc(head_len ? head_len : 1);
    if (!name || !cname || !head)
        abort();
    memcpy(name, data, name_len);
    memcpy(cname, data, name_len);
    cname[name_len] = 0;
    memcpy(head, nl + 1, head_len);

    raw_lookups(head, head_len, name, name_len);

    static struct http1_field fields[MAX_FIELDS];
    static const struct http1_limits limits = {.max_head_bytes = 65536, .max_fields = MAX_FIELDS};
    struct http1_scan scan = {0};
    struct http1_msg msg = {0};
    uint16_t status;
    const char *why;
    msg.fields = fields;
    if (http1_scan_head(&scan, head, head_len, &limits, true, &status, &why) == HTTP1_DONE &&
        http1_parse_request(&scan, head, &limits, &msg) == HTTP1_DONE)
        parsed_lookups(head, head_len, &msg, name, name_len, cname);

    /* The cookie's name as configured, with every attribute: the value fits or is refused. */
    struct conf_sticky st = {.enabled = true,
                             .cookie = cname,
                             .max_age = (uint32_t)size,
                             .secure = size & 1,
                             .httponly = size & 2,
                             .samesite = (enum conf_samesite)(size % 3),
                             .path = size & 4 ? cname : NULL};
    st.attributes = conf_sticky_attributes(&st); /* as validation completes it */
    if (!st.attributes)
        abort();
    char buf[128];
    size_t n = lb_sticky_cookie(&st, servers[size % 3], buf, sizeof(buf));
    free(st.attributes);
    if (n && (n >= sizeof(buf) || strlen(buf) != n || strncmp(buf, cname, strlen(cname)) != 0 ||
              buf[strlen(cname)] != '='))
        abort();

    free(name);
    free(cname);
    free(head);
    return 0;
}
