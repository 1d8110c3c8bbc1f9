/*
 * test_lookup.c - what the balancers read from a request: header fields, cookies and query
 * parameters (http/lookup.h) on heads parsed by the real parser; the hash key digest and the
 * sticky cookie (lb/keys.h); and the fixed hash both rest on (core/hash.h), whose values are
 * pinned: fulcrum instances, and versions of fulcrum, must agree on them, or a hash key and a
 * sticky cookie would name another server after an upgrade.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "core/hash.h"
#include "http/http1.h"
#include "http/lookup.h"
#include "lb/keys.h"
#include "servers/pool.h"

#define MAX_FIELDS 32

/* A request head parsed as the proxy parses it, held in a buffer of exactly its size so that
 * any value found can be checked to lie inside it. */
struct req {
    char *head;
    size_t len;
    struct http1_msg msg;
    struct http1_field fields[MAX_FIELDS];
};

static void parse(struct req *r, const char *raw)
{
    static const struct http1_limits limits = {.max_head_bytes = 8192, .max_fields = MAX_FIELDS};
    memset(r, 0, sizeof(*r));
    r->len = strlen(raw);
    r->head = malloc(r->len);
    assert_non_null(r->head);
    memcpy(r->head, raw, r->len);
    struct http1_scan scan = {0};
    uint16_t status = 0;
    const char *why = NULL;
    assert_int_equal(http1_scan_head(&scan, r->head, r->len, &limits, true, &status, &why),
                     HTTP1_DONE);
    r->msg.fields = r->fields;
    assert_int_equal(http1_parse_request(&scan, r->head, &limits, &r->msg), HTTP1_DONE);
}

static void unparse(struct req *r)
{
    free(r->head);
}

/* Asserts that [v, v + len) lies inside [base, base + size) and equals want. */
static void assert_value(const char *base, size_t size, const char *v, size_t len, const char *want)
{
    assert_true(v >= base && v <= base + size && len <= (size_t)(base + size - v));
    if (len != strlen(want) || memcmp(v, want, len) != 0)
        fail_msg("found \"%.*s\", expected \"%s\"", (int)len, v, want);
}

/* The field's value, or NULL when there is none; checked to lie in the head. */
static void field_is(const struct req *r, const char *name, const char *want)
{
    const char *v = NULL;
    size_t len = 0;
    bool found = http_field_value(r->head, &r->msg, name, strlen(name), &v, &len);
    if (!want) {
        assert_false(found);
        return;
    }
    assert_true(found);
    assert_value(r->head, r->len, v, len, want);
}

static void cookie_is(const struct req *r, const char *name, const char *want)
{
    const char *v = NULL;
    size_t len = 0;
    bool found = http_cookie_value(r->head, &r->msg, name, strlen(name), &v, &len);
    if (!want) {
        assert_false(found);
        return;
    }
    assert_true(found);
    assert_value(r->head, r->len, v, len, want);
}

/* http_cookie_in on one field value, as a string (no parser). */
static void cookie_in_is(const char *field, const char *name, const char *want)
{
    const char *v = NULL;
    size_t len = 0, flen = strlen(field);
    bool found = http_cookie_in(field, flen, name, strlen(name), &v, &len);
    if (!want) {
        if (found)
            fail_msg("%s found in \"%s\": \"%.*s\"", name, field, (int)len, v);
        return;
    }
    if (!found)
        fail_msg("%s not found in \"%s\"", name, field);
    assert_value(field, flen, v, len, want);
}

static void query_is(const char *query, size_t qlen, const char *name, const char *want)
{
    const char *v = NULL;
    size_t len = 0;
    bool found = http_query_value(query, qlen, name, strlen(name), &v, &len);
    if (!want) {
        assert_false(found);
        return;
    }
    assert_true(found);
    assert_value(query, qlen, v, len, want);
}

/* ==== header fields ==== */

/* Names match ignoring ASCII case, the first field of a name counts, values lose the whitespace
 * around them, and a name only matches whole. */
static void test_field_value(void **state)
{
    struct req r;
    parse(&r, "GET /p HTTP/1.1\r\nHost: a.example\r\nX-User:  alice \r\nx-user: bob\r\n"
              "X-Empty:\r\nACCEPT: */*\r\nX-Tab:\tv\t\r\n\r\n");
    field_is(&r, "X-User", "alice");
    field_is(&r, "x-user", "alice");
    field_is(&r, "X-USER", "alice");
    field_is(&r, "accept", "*/*");
    field_is(&r, "Host", "a.example");
    field_is(&r, "x-tab", "v");
    field_is(&r, "X-Empty", "");
    field_is(&r, "X-Use", NULL);
    field_is(&r, "X-Users", NULL);
    field_is(&r, "X_User", NULL);
    field_is(&r, "Cookie", NULL);
    /* the name's length counts, not a terminator */
    const char *v;
    size_t len;
    assert_false(http_field_value(r.head, &r.msg, "X-User", 5, &v, &len));
    assert_true(http_field_value(r.head, &r.msg, "Hostile", 4, &v, &len));
    assert_value(r.head, r.len, v, len, "a.example");
    unparse(&r);
}

/* ==== cookies ==== */

/* Several Cookie fields are read in order (the first cookie of a name wins, whichever field
 * holds it), whatever the field name's case; other fields holding "name=value" do not count. */
static void test_cookie_fields(void **state)
{
    struct req r;
    parse(&r, "GET / HTTP/1.1\r\nHost: h\r\nX-Cookie: a=0; z=0\r\nCookie: a=1; b=2\r\n"
              "Set-Cookie: c=0\r\nCookie: c=3;d=4\r\ncookie: a=9; e=5\r\n\r\n");
    cookie_is(&r, "a", "1");
    cookie_is(&r, "b", "2");
    cookie_is(&r, "c", "3");
    cookie_is(&r, "d", "4");
    cookie_is(&r, "e", "5");
    cookie_is(&r, "z", NULL);
    cookie_is(&r, "A", NULL); /* cookie names are case-sensitive */
    unparse(&r);

    parse(&r, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    cookie_is(&r, "a", NULL);
    unparse(&r);
    /* an empty Cookie field */
    parse(&r, "GET / HTTP/1.1\r\nHost: h\r\nCookie:\r\nCookie: a=1\r\n\r\n");
    cookie_is(&r, "a", "1");
    cookie_is(&r, "", NULL);
    unparse(&r);
}

/* Spaces, tabs and empty pairs between cookies; empty values; quoted values. */
static void test_cookie_syntax(void **state)
{
    cookie_in_is("a=1; b=2", "b", "2");
    cookie_in_is("a=1;b=2", "b", "2");
    cookie_in_is("  a=1 ;\tb=2\t ", "a", "1");
    cookie_in_is("  a=1 ;\tb=2\t ", "b", "2");
    cookie_in_is(";; ;a=1;;", "a", "1");
    cookie_in_is("a=; b=2", "a", "");
    cookie_in_is("a=", "a", "");
    cookie_in_is("a=;", "a", "");
    cookie_in_is("", "a", NULL);
    cookie_in_is(";;;", "a", NULL);
    cookie_in_is("   ", "a", NULL);
    /* a value may hold '=' */
    cookie_in_is("t=x=y; u=1", "t", "x=y");
    /* a pair of quotes around the value goes; anything else stays */
    cookie_in_is("s=\"abc\"", "s", "abc");
    cookie_in_is("s=\"abc\"; t=1", "s", "abc");
    cookie_in_is("s=\"\"", "s", "");
    cookie_in_is("s=\"", "s", "\"");
    cookie_in_is("s=\"abc", "s", "\"abc");
    cookie_in_is("s=abc\"", "s", "abc\"");
    cookie_in_is("s=\"a\"b\"", "s", "a\"b");
    /* whitespace around the name and the value is not theirs (RFC 6265 section 5.2) */
    cookie_in_is("e= 5", "e", "5");
    cookie_in_is("SRV =2; x=1", "SRV", "2");
    cookie_in_is("SRV \t= 2 ", "SRV", "2");
    cookie_in_is("S RV=2", "RV", NULL);
}

/* A name matches whole: not as the suffix or prefix of another, and a pair without '=' names no
 * cookie (and does not swallow the next one). */
static void test_cookie_names(void **state)
{
    cookie_in_is("xSRV=1; SRV=2", "SRV", "2");
    cookie_in_is("SRVx=1; SRV=3", "SRV", "3");
    cookie_in_is("xSRV=1; SRVx=2", "SRV", NULL);
    cookie_in_is("SRV=1", "SR", NULL);
    cookie_in_is("SRV=1", "RV", NULL);
    cookie_in_is("SRV=1", "SRV=", NULL);
    cookie_in_is("flag; SRV=2", "SRV", "2");
    cookie_in_is("flag; SRV=2", "flag", NULL);
    cookie_in_is("SRV;SRV=5", "SRV", "5");
    cookie_in_is("SRV", "SRV", NULL);
    cookie_in_is("a=1; SRV", "SRV", NULL);
    /* the name at the very end, with and without a value */
    cookie_in_is("a=1; SRV=9", "SRV", "9");
    cookie_in_is("a=1; SRV=", "SRV", "");
    /* a length, not a terminator */
    const char *v;
    size_t len;
    assert_true(http_cookie_in("ab=1; a=2", 9, "abc", 1, &v, &len));
    assert_int_equal(len, 1);
    assert_memory_equal(v, "2", 1);
    /* the field ends where its length says: a cookie past it is not found */
    assert_false(http_cookie_in("a=1; b=2", 4, "b", 1, &v, &len));
    assert_true(http_cookie_in("a=1; b=2", 3, "a", 1, &v, &len));
    assert_int_equal(len, 1);
}

/* The same lookups through the parser: the values lie in the head. */
static void test_cookie_parsed(void **state)
{
    struct req r;
    parse(&r, "GET / HTTP/1.1\r\nHost: h\r\nCookie: xSRV=1; SRV=\"q2\" ;flag; e=\r\n"
              "Cookie: SRV=3; last=end\r\n\r\n");
    cookie_is(&r, "SRV", "q2");
    cookie_is(&r, "xSRV", "1");
    cookie_is(&r, "flag", NULL);
    cookie_is(&r, "e", "");
    cookie_is(&r, "last", "end");
    unparse(&r);
}

/* ==== query parameters ==== */

static void test_query_value(void **state)
{
    const char *q = "a&b=&c=1&c=2&dd=x=y&e";
    size_t n = strlen(q);
    query_is(q, n, "a", "");
    query_is(q, n, "b", "");
    query_is(q, n, "c", "1"); /* the first of that name */
    query_is(q, n, "dd", "x=y");
    query_is(q, n, "d", NULL);
    query_is(q, n, "e", ""); /* the very end, no '=' */
    query_is(q, n, "f", NULL);
    query_is(q, n, "a&b", NULL);
    /* a name at the very end, with a value; and its pointer at the end when without */
    query_is("x=1&last=9", 10, "last", "9");
    const char *v = NULL;
    size_t len = 1;
    assert_true(http_query_value(q, n, "e", 1, &v, &len));
    assert_ptr_equal(v, q + n);
    assert_int_equal(len, 0);
    /* empty queries hold nothing, not even an empty name */
    query_is("", 0, "a", NULL);
    query_is("", 0, "", NULL);
    query_is("a=1", 0, "a", NULL);
    /* empty pieces between '&' */
    query_is("&&a=1&&", 7, "a", "1");
    /* no percent-decoding: names and values are the bytes received */
    query_is("k%20=1&k =2", 11, "k%20", "1");
    query_is("k=%41", 5, "k", "%41");
    /* the length counts: a parameter past it is not found */
    query_is("a=1&b=2", 3, "b", NULL);
    query_is("a=12&b=2", 3, "a", "1");
}

/* The query of a parsed request's target, as lb_request_key reads it. */
static void test_query_parsed(void **state)
{
    struct req r;
    parse(&r, "GET /p/q?a&b=&c=1&c=2 HTTP/1.1\r\nHost: h\r\n\r\n");
    const char *target = r.head + r.msg.path_off;
    const char *qm = memchr(target, '?', r.msg.path_len);
    assert_non_null(qm);
    size_t qlen = r.msg.path_len - (size_t)(qm + 1 - target);
    const char *v;
    size_t len;
    assert_true(http_query_value(qm + 1, qlen, "c", 1, &v, &len));
    assert_value(r.head, r.len, v, len, "1");
    assert_true(http_query_value(qm + 1, qlen, "a", 1, &v, &len));
    assert_value(r.head, r.len, v, len, "");
    unparse(&r);
}

/* ==== lb_request_key ==== */

/* The digest of the request's key for a pool hashing on kind (name for header, cookie, query),
 * with the target as the proxy passes it; false if there is none. */
static bool key_of(const struct req *r, enum conf_hash_key kind, const char *name, uint64_t *digest)
{
    struct conf_pool pc = {.name = "p", .balance = CONF_BALANCE_HASH, .hash_key = kind};
    pc.hash_key_name = (char *)name;
    *digest = 0x5a5a5a5a5a5a5a5aull; /* untouched when there is no key */
    return lb_request_key(&pc, r->head, &r->msg, r->head + r->msg.path_off, r->msg.path_len,
                          digest);
}

static uint64_t must_key(const struct req *r, enum conf_hash_key kind, const char *name)
{
    uint64_t d;
    assert_true(key_of(r, kind, name, &d));
    return d;
}

/* Each kind: the same value gives the same digest (wherever it sits in the head), another value
 * another digest; and the digests are pinned, as they decide servers across instances. */
static void test_key_same_and_different(void **state)
{
    struct req a, b, c;
    parse(&a, "GET /path/x?id=42&z=1 HTTP/1.1\r\nHost: h\r\nX-Key: 42\r\nCookie: id=42\r\n\r\n");
    parse(&b, "POST /path/x?z=0&id=42 HTTP/1.1\r\nHost: other\r\nX-Other: 1\r\n"
              "Cookie: z=1; id=\"42\"\r\nx-key:   42\r\nContent-Length: 0\r\n\r\n");
    parse(&c, "GET /path/y?id=43 HTTP/1.1\r\nHost: h\r\nX-Key: 43\r\nCookie: id=43\r\n\r\n");

    assert_int_equal(must_key(&a, CONF_HASH_HEADER, "X-Key"), 0xa3f98546350594d6ull);
    assert_int_equal(must_key(&a, CONF_HASH_COOKIE, "id"), 0x13b469c30a4fe60bull);
    assert_int_equal(must_key(&a, CONF_HASH_QUERY, "id"), 0x1e34d672943b372cull);
    assert_int_equal(must_key(&a, CONF_HASH_PATH, NULL), 0x46d01d089f1c998aull);

    const struct {
        enum conf_hash_key kind;
        const char *name;
    } kinds[] = {{CONF_HASH_HEADER, "X-Key"},
                 {CONF_HASH_COOKIE, "id"},
                 {CONF_HASH_QUERY, "id"},
                 {CONF_HASH_PATH, NULL}};
    for (unsigned k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        uint64_t da = must_key(&a, kinds[k].kind, kinds[k].name);
        assert_int_equal(must_key(&a, kinds[k].kind, kinds[k].name), da);
        assert_int_equal(must_key(&b, kinds[k].kind, kinds[k].name), da);
        assert_int_not_equal(must_key(&c, kinds[k].kind, kinds[k].name), da);
    }
    /* uri: the whole target, so a and b (other queries) differ, and a equals itself */
    uint64_t ua = must_key(&a, CONF_HASH_URI, NULL);
    assert_int_equal(must_key(&a, CONF_HASH_URI, NULL), ua);
    assert_int_not_equal(must_key(&b, CONF_HASH_URI, NULL), ua);
    assert_int_not_equal(must_key(&c, CONF_HASH_URI, NULL), ua);
    unparse(&a);
    unparse(&b);
    unparse(&c);
}

/* The same bytes under different kinds give different digests: a header and a cookie of the same
 * value, or the path and the uri of a target without a query. */
static void test_key_kinds_differ(void **state)
{
    struct req r;
    parse(&r, "GET /42 HTTP/1.1\r\nHost: h\r\nX-Key: /42\r\nCookie: k=/42\r\n\r\n");
    uint64_t d[5] = {
        must_key(&r, CONF_HASH_HEADER, "X-Key"),
        must_key(&r, CONF_HASH_COOKIE, "k"),
        must_key(&r, CONF_HASH_PATH, NULL),
        must_key(&r, CONF_HASH_URI, NULL),
        0,
    };
    unparse(&r);
    parse(&r, "GET /?k=/42 HTTP/1.1\r\nHost: h\r\n\r\n");
    d[4] = must_key(&r, CONF_HASH_QUERY, "k");
    unparse(&r);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < i; j++)
            assert_int_not_equal(d[i], d[j]);
    /* pinned: the value "42" under each kind */
    parse(&r, "GET /?q=42 HTTP/1.1\r\nHost: h\r\nX-Key: 42\r\nCookie: c=42\r\n\r\n");
    assert_int_equal(must_key(&r, CONF_HASH_HEADER, "X-Key"), 0xa3f98546350594d6ull);
    assert_int_equal(must_key(&r, CONF_HASH_COOKIE, "c"), 0x13b469c30a4fe60bull);
    assert_int_equal(must_key(&r, CONF_HASH_QUERY, "q"), 0x1e34d672943b372cull);
    unparse(&r);
}

/* path ignores the query, uri includes it. */
static void test_key_path_and_uri(void **state)
{
    struct req a, b, c;
    parse(&a, "GET /path/x HTTP/1.1\r\nHost: h\r\n\r\n");
    parse(&b, "GET /path/x?v=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    parse(&c, "GET /path/x? HTTP/1.1\r\nHost: h\r\n\r\n");
    uint64_t pa = must_key(&a, CONF_HASH_PATH, NULL);
    assert_int_equal(pa, 0x46d01d089f1c998aull);
    assert_int_equal(must_key(&b, CONF_HASH_PATH, NULL), pa);
    assert_int_equal(must_key(&c, CONF_HASH_PATH, NULL), pa);
    uint64_t ua = must_key(&a, CONF_HASH_URI, NULL), ub = must_key(&b, CONF_HASH_URI, NULL),
             uc = must_key(&c, CONF_HASH_URI, NULL);
    assert_int_not_equal(ua, ub);
    assert_int_not_equal(ua, uc);
    assert_int_not_equal(ub, uc);
    assert_int_equal(ua, hash_bytes("/path/x", 7, 0x6b6579u + CONF_HASH_URI));
    assert_int_equal(ub, hash_bytes("/path/x?v=1", 11, 0x6b6579u + CONF_HASH_URI));
    unparse(&a);
    unparse(&b);
    unparse(&c);
}

/* No key: false, and the digest is left alone. */
static void test_key_missing(void **state)
{
    struct req r;
    uint64_t d;
    parse(&r, "GET /p?a=1 HTTP/1.1\r\nHost: h\r\nX-Key: 1\r\nCookie: c=1\r\n\r\n");
    assert_false(key_of(&r, CONF_HASH_HEADER, "X-Missing", &d));
    assert_int_equal(d, 0x5a5a5a5a5a5a5a5aull);
    assert_false(key_of(&r, CONF_HASH_HEADER, "X-Ke", &d));
    assert_false(key_of(&r, CONF_HASH_COOKIE, "missing", &d));
    assert_false(key_of(&r, CONF_HASH_COOKIE, "X-Key", &d)); /* a header is not a cookie */
    assert_false(key_of(&r, CONF_HASH_QUERY, "b", &d));
    assert_false(key_of(&r, CONF_HASH_CLIENT_IP, NULL, &d)); /* the proxy's, not read here */
    assert_int_equal(d, 0x5a5a5a5a5a5a5a5aull);
    unparse(&r);
    /* no query at all, an empty one */
    parse(&r, "GET /p HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_false(key_of(&r, CONF_HASH_QUERY, "a", &d));
    assert_false(key_of(&r, CONF_HASH_COOKIE, "a", &d));
    unparse(&r);
    parse(&r, "GET /p? HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_false(key_of(&r, CONF_HASH_QUERY, "a", &d));
    unparse(&r);
    /* present but empty is a key: the empty string's digest */
    parse(&r, "GET /p?a HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nCookie: c=\r\n\r\n");
    assert_int_equal(must_key(&r, CONF_HASH_QUERY, "a"),
                     hash_bytes("", 0, 0x6b6579u + CONF_HASH_QUERY));
    assert_int_equal(must_key(&r, CONF_HASH_HEADER, "x-empty"),
                     hash_bytes("", 0, 0x6b6579u + CONF_HASH_HEADER));
    assert_int_equal(must_key(&r, CONF_HASH_COOKIE, "c"),
                     hash_bytes("", 0, 0x6b6579u + CONF_HASH_COOKIE));
    unparse(&r);
}

/* ==== sticky cookies ==== */

static struct server *new_server(const char *name, const char *address)
{
    struct net_addr addr;
    const char *why;
    assert_int_equal(net_parse_addr(address, &addr, &why), 0);
    struct server *s = server_new("p", name, &addr, 1);
    assert_non_null(s);
    return s;
}

/* A server's sticky id: 16 lowercase hex digits of its name and address, the same for the same
 * pair (in any pool, any process: pinned) and different otherwise. */
static void test_sticky_id(void **state)
{
    struct server *a = new_server("a", "127.0.0.1:9001"), *a2 = new_server("a", "127.0.0.1:9001"),
                  *b = new_server("b", "127.0.0.1:9001"), *a3 = new_server("a", "127.0.0.1:9002"),
                  *a4 = new_server("a", "127.0.0.2:9001"), *a6 = new_server("a", "[::1]:9001");
    assert_string_equal(a->addr_text, "127.0.0.1:9001");
    assert_string_equal(a->sticky_id, "a5e9cd231ca19c6d");
    assert_int_equal(strlen(a->sticky_id), 16);
    assert_int_equal(strspn(a->sticky_id, "0123456789abcdef"), 16);
    assert_string_equal(a->sticky_id, a2->sticky_id);
    struct server *others[] = {b, a3, a4, a6};
    for (unsigned i = 0; i < 4; i++) {
        assert_string_not_equal(others[i]->sticky_id, a->sticky_id);
        for (unsigned j = 0; j < i; j++)
            assert_string_not_equal(others[i]->sticky_id, others[j]->sticky_id);
    }
    struct server *all[] = {a, a2, b, a3, a4, a6};
    for (unsigned i = 0; i < 6; i++)
        server_unref(all[i]);
}

/* The cookie for st as configuration validation completes it (its attributes written out). */
static size_t cookie_of(const struct conf_sticky *st, const struct server *s, char *buf,
                        size_t size)
{
    struct conf_sticky done = *st;
    done.attributes = conf_sticky_attributes(st);
    assert_non_null(done.attributes);
    memset(buf, '#', size);
    size_t n = lb_sticky_cookie(&done, s, buf, size);
    free(done.attributes);
    return n;
}

/* The Set-Cookie value: "NAME=ID; Path=P[; Max-Age=N][; Secure][; HttpOnly]; SameSite=S" for
 * every combination of the attributes. */
static void test_sticky_cookie_format(void **state)
{
    struct server *s = new_server("a", "127.0.0.1:9001");
    memcpy(s->sticky_id, "0123456789abcdef", 17); /* readable strings below */
    char buf[256];
    struct conf_sticky st = {.enabled = true, .cookie = "SRV"};
    size_t len = cookie_of(&st, s, buf, sizeof(buf));
    assert_int_equal(len, strlen(buf));
    assert_string_equal(buf, "SRV=0123456789abcdef; Path=/; SameSite=Lax");
    st = (struct conf_sticky){.enabled = true,
                              .cookie = "lb",
                              .max_age = 3600,
                              .secure = true,
                              .httponly = true,
                              .samesite = CONF_SAMESITE_NONE,
                              .path = "/app"};
    cookie_of(&st, s, buf, sizeof(buf));
    assert_string_equal(buf, "lb=0123456789abcdef; Path=/app; Max-Age=3600; Secure; HttpOnly; "
                             "SameSite=None");
    st = (struct conf_sticky){.cookie = "SRV", .httponly = true, .samesite = CONF_SAMESITE_STRICT};
    cookie_of(&st, s, buf, sizeof(buf));
    assert_string_equal(buf, "SRV=0123456789abcdef; Path=/; HttpOnly; SameSite=Strict");

    const char *paths[] = {NULL, "/", "/app"};
    const unsigned ages[] = {0, 1, 4294967295u};
    const char *samesite[] = {"Lax", "Strict", "None"};
    unsigned combos = 0;
    for (unsigned p = 0; p < 3; p++)
        for (unsigned a = 0; a < 3; a++)
            for (unsigned bits = 0; bits < 4; bits++)
                for (unsigned ss = 0; ss < 3; ss++) {
                    st = (struct conf_sticky){.enabled = true,
                                              .cookie = "SRV",
                                              .path = (char *)paths[p],
                                              .max_age = ages[a],
                                              .secure = bits & 1,
                                              .httponly = bits & 2,
                                              .samesite = (enum conf_samesite)ss};
                    char want[256];
                    int n = snprintf(want, sizeof(want), "SRV=0123456789abcdef; Path=%s",
                                     paths[p] ? paths[p] : "/");
                    if (ages[a])
                        n += snprintf(want + n, sizeof(want) - (size_t)n, "; Max-Age=%u", ages[a]);
                    if (bits & 1)
                        n += snprintf(want + n, sizeof(want) - (size_t)n, "; Secure");
                    if (bits & 2)
                        n += snprintf(want + n, sizeof(want) - (size_t)n, "; HttpOnly");
                    n +=
                        snprintf(want + n, sizeof(want) - (size_t)n, "; SameSite=%s", samesite[ss]);
                    assert_int_equal(cookie_of(&st, s, buf, sizeof(buf)), (size_t)n);
                    assert_string_equal(buf, want);
                    combos++;
                }
    assert_int_equal(combos, 108);
    server_unref(s);
}

/* A buffer too small for the whole value (its terminator included) gives 0, never a cut value. */
static void test_sticky_cookie_too_small(void **state)
{
    struct server *s = new_server("a", "127.0.0.1:9001");
    struct conf_sticky st = {.enabled = true, .cookie = "SRV", .max_age = 60, .secure = true};
    char buf[128];
    size_t len = cookie_of(&st, s, buf, sizeof(buf));
    assert_int_equal(len, strlen("SRV=a5e9cd231ca19c6d; Path=/; Max-Age=60; Secure; SameSite=Lax"));
    assert_string_equal(buf, "SRV=a5e9cd231ca19c6d; Path=/; Max-Age=60; Secure; SameSite=Lax");
    assert_int_equal(cookie_of(&st, s, buf, len + 1), len);
    assert_int_equal(cookie_of(&st, s, buf, len), 0);
    assert_int_equal(cookie_of(&st, s, buf, len - 1), 0);
    assert_int_equal(cookie_of(&st, s, buf, 1), 0);
    assert_int_equal(cookie_of(&st, s, buf, 0), 0);
    /* nothing written past the size given */
    assert_int_equal(cookie_of(&st, s, buf, 10), 0);
    assert_int_equal(buf[10], '#');
    server_unref(s);
}

struct sticky_pool {
    struct conf_pool pc;
    struct pool pool;
    struct server *servers[3];
};

static void make_sticky_pool(struct sticky_pool *sp, const char *cookie)
{
    memset(sp, 0, sizeof(*sp));
    sp->pc.name = "p";
    sp->pc.sticky.enabled = cookie != NULL;
    sp->pc.sticky.cookie = (char *)cookie;
    sp->servers[0] = new_server("a", "127.0.0.1:9001");
    sp->servers[1] = new_server("b", "127.0.0.1:9002");
    sp->servers[2] = new_server("c", "127.0.0.1:9003");
    sp->pool.name = "p";
    sp->pool.conf = &sp->pc;
    sp->pool.servers = sp->servers;
    sp->pool.nservers = 3;
}

static void free_sticky_pool(struct sticky_pool *sp)
{
    for (unsigned i = 0; i < 3; i++)
        server_unref(sp->servers[i]);
}

/* The server whose sticky_id a request's cookie names, or NULL. */
static struct server *sticky_for(const struct sticky_pool *sp, const char *cookie_field)
{
    char raw[512];
    snprintf(raw, sizeof(raw), "GET / HTTP/1.1\r\nHost: h\r\n%s%s%s\r\n",
             cookie_field ? "Cookie: " : "", cookie_field ? cookie_field : "",
             cookie_field ? "\r\n" : "");
    struct req r;
    parse(&r, raw);
    struct server *s = lb_sticky_find(&sp->pool, r.head, &r.msg);
    unparse(&r);
    return s;
}

static void test_sticky_find(void **state)
{
    struct sticky_pool sp;
    make_sticky_pool(&sp, "SRV");
    char field[128];
    for (unsigned i = 0; i < 3; i++) {
        snprintf(field, sizeof(field), "SRV=%s", sp.servers[i]->sticky_id);
        assert_ptr_equal(sticky_for(&sp, field), sp.servers[i]);
        snprintf(field, sizeof(field), "a=1; SRV=\"%s\"; z=2", sp.servers[i]->sticky_id);
        assert_ptr_equal(sticky_for(&sp, field), sp.servers[i]);
    }
    const char *id = sp.servers[1]->sticky_id;
    /* wrong lengths: one digit more, one less, empty */
    snprintf(field, sizeof(field), "SRV=%s0", id);
    assert_null(sticky_for(&sp, field));
    snprintf(field, sizeof(field), "SRV=%.15s", id);
    assert_null(sticky_for(&sp, field));
    assert_null(sticky_for(&sp, "SRV="));
    /* an id of the right form that no server has; one in upper case */
    assert_null(sticky_for(&sp, "SRV=0000000000000000"));
    char upper[17];
    for (int k = 0; k < 17; k++)
        upper[k] = (char)(id[k] >= 'a' && id[k] <= 'f' ? id[k] - 32 : id[k]);
    snprintf(field, sizeof(field), "SRV=%s", upper);
    if (strcmp(upper, id) != 0)
        assert_null(sticky_for(&sp, field));
    /* another cookie's name, no cookie at all */
    snprintf(field, sizeof(field), "xSRV=%s; SRVx=%s", id, id);
    assert_null(sticky_for(&sp, field));
    assert_null(sticky_for(&sp, NULL));
    /* the first SRV cookie counts, even when a later one would match */
    snprintf(field, sizeof(field), "SRV=zzzz; SRV=%s", id);
    assert_null(sticky_for(&sp, field));
    free_sticky_pool(&sp);

    /* no sticky cookie configured: nothing is read */
    make_sticky_pool(&sp, NULL);
    snprintf(field, sizeof(field), "SRV=%s", sp.servers[0]->sticky_id);
    assert_null(sticky_for(&sp, field));
    free_sticky_pool(&sp);
}

/* ==== core/hash.h ==== */

/* Pinned: computed once (and by an independent implementation of the algorithm as hash.h
 * describes it). A change here breaks agreement with every fulcrum already deployed. */
static void test_hash_pinned(void **state)
{
    assert_int_equal(hash_bytes("", 0, 0), 0x48218226ff3cd4bfull);
    assert_int_equal(hash_bytes("a", 1, 0), 0x85077e5b3b497e92ull);
    assert_int_equal(hash_bytes("hello", 5, 0), 0x6b9c3fcad13dbe05ull);
    assert_int_equal(hash_bytes("fulcrum", 7, 0), 0xf283791adf3c71a0ull);
    assert_int_equal(hash_bytes("01234567", 8, 0), 0x5d74b9befaf50a8bull);
    assert_int_equal(hash_bytes("0123456789abcdef0123456789abcdef01234567", 40, 0),
                     0xd9a5099072405da8ull);
    /* bytes above 0x7f read as unsigned, whatever char is */
    const unsigned char high[] = {0xff, 0x80, 0x00, 0x7f, 0xfe, 0x01, 0xc3, 0xa9, 0xe2};
    assert_int_equal(hash_bytes(high, sizeof(high), 0), 0x48b5f6a96f3bbce4ull);
    assert_int_equal(hash_bytes("", 0, 0x5e55), 0x7b60b9f996624547ull);
    assert_int_equal(hash_bytes("hello", 5, 0x5e55), 0x92c357055e3176acull);
}

/* Every prefix of 0..40 bytes hashes differently, of a text and of zeros (where only the length
 * tells them apart), and the seed changes every one. */
static void test_hash_lengths_differ(void **state)
{
    const char text[] = "The quick brown fox jumps over the lazy d";
    const char zeros[41] = {0};
    uint64_t h[3][41];
    for (size_t n = 0; n <= 40; n++) {
        h[0][n] = hash_bytes(text, n, 0);
        h[1][n] = hash_bytes(zeros, n, 0);
        h[2][n] = hash_bytes(text, n, 1);
    }
    for (int a = 0; a < 3; a++)
        for (int b = 0; b <= a; b++)
            for (size_t i = 0; i <= 40; i++)
                for (size_t j = 0; j <= 40; j++)
                    if ((a != b || i != j) && !(i == 0 && j == 0 && a + b == 1))
                        assert_int_not_equal(h[a][i], h[b][j]);
    /* the empty text and the empty run of zeros are the same input */
    assert_int_equal(h[0][0], h[1][0]);
    /* the same bytes give the same value wherever they sit in memory */
    char copy[48];
    memcpy(copy + 3, text, 40);
    assert_int_equal(hash_bytes(copy + 3, 40, 0), h[0][40]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_field_value),          cmocka_unit_test(test_cookie_fields),
        cmocka_unit_test(test_cookie_syntax),        cmocka_unit_test(test_cookie_names),
        cmocka_unit_test(test_cookie_parsed),        cmocka_unit_test(test_query_value),
        cmocka_unit_test(test_query_parsed),         cmocka_unit_test(test_key_same_and_different),
        cmocka_unit_test(test_key_kinds_differ),     cmocka_unit_test(test_key_path_and_uri),
        cmocka_unit_test(test_key_missing),          cmocka_unit_test(test_sticky_id),
        cmocka_unit_test(test_sticky_cookie_format), cmocka_unit_test(test_sticky_cookie_too_small),
        cmocka_unit_test(test_sticky_find),          cmocka_unit_test(test_hash_pinned),
        cmocka_unit_test(test_hash_lengths_differ),
    };
    return cmocka_run_group_tests_name("lookup", tests, NULL, NULL);
}
