/*
 * test_route.c - the route table (route/route.h): each condition's rules (Host with ports, case,
 * IPv6 literals and trailing dots; one-label wildcards; exact, prefix and regex paths; methods;
 * header fields; query parameters; server names), the first match winning across the index's
 * groups, a table of 1,000 routes, and a property test: over many random route sets and
 * requests, route_match() agrees with a linear scan of route_check() and with a naive matcher
 * written here from the rules alone.
 *
 * Every lookup made through lookup() is also compared with the linear scan. Tables are built from
 * YAML through conf_load_string(), so they hold what validation lets through.
 *
 * With ROUTE_BENCH=1 in the environment, test_1000_routes also prints the time of a lookup in
 * the 1,000-route table and in a one-route table. Nothing is asserted on time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "conf/conf.h"
#include "http/http1.h"
#include "route/route.h"

#define POOLS "pools:\n  - name: app\n    servers:\n      - address: 127.0.0.1:9001\n"
#define HEAD  "listeners:\n  - bind: 127.0.0.1:8080\n    routes:\n"
/* One route of a listener's list, in flow style: R("{host: a.com}") */
#define R(match) "      - {pool: app, match: " match "}\n"

struct fixture {
    struct conf *conf;
    struct route_table *t;
};

static struct conf *load(const char *yaml)
{
    char *errors = NULL;
    struct conf *conf = conf_load_string(yaml, strlen(yaml), "t.yaml", &errors);
    if (!conf)
        fail_msg("unexpected errors:\n%s\nin:\n%s", errors ? errors : "(none)", yaml);
    return conf;
}

/* A table for the routes (YAML lines, R()) of the first listener of HEAD routes POOLS. */
static struct fixture table_yaml(const char *routes)
{
    size_t n = strlen(HEAD) + strlen(routes) + strlen(POOLS) + 1;
    char *yaml = malloc(n);
    assert_non_null(yaml);
    snprintf(yaml, n, "%s%s%s", HEAD, routes, POOLS);
    struct fixture f = {.conf = load(yaml)};
    free(yaml);
    char why[256];
    f.t = route_table_new(&f.conf->listeners[0], why, sizeof(why));
    if (!f.t)
        fail_msg("route_table_new: %s", why);
    return f;
}

/* A table of routes to pool app with these matches (flow mappings), NULL-terminated. */
static struct fixture table_of(const char *const *matches)
{
    char yaml[4096] = "";
    for (size_t len = 0; *matches; matches++, len = strlen(yaml))
        snprintf(yaml + len, sizeof(yaml) - len, R("%s"), *matches);
    return table_yaml(yaml);
}

#define TABLE(...) table_of((const char *const[]){__VA_ARGS__, NULL})

static void done(struct fixture *f)
{
    route_table_free(f->t);
    conf_free(f->conf);
}

/* A request as the tests write it. target is path and query; fields are "Name: value\r\n" lines
 * (NULL: no parsed head at all). */
struct rq {
    const char *host, *sni, *method, *target, *fields;
};

static const struct http1_limits limits = {.max_head_bytes = 8192, .max_fields = 32};

/* The parsed head holding fields, for header conditions. */
struct head {
    char text[8192];
    struct http1_field fields[32];
    struct http1_msg msg;
};

static void parse_head(struct head *h, const char *fields)
{
    int n = snprintf(h->text, sizeof(h->text), "GET / HTTP/1.1\r\nHost: x\r\n%s\r\n", fields);
    assert_true(n > 0 && (size_t)n < sizeof(h->text));
    struct http1_scan scan = {0};
    uint16_t status;
    const char *why;
    assert_int_equal(http1_scan_head(&scan, h->text, (size_t)n, &limits, true, &status, &why),
                     HTTP1_DONE);
    memset(&h->msg, 0, sizeof(h->msg));
    h->msg.fields = h->fields;
    assert_int_equal(http1_parse_request(&scan, h->text, &limits, &h->msg), HTTP1_DONE);
}

/* route_request for q; h is where a parsed head goes. */
static struct route_request request_of(const struct rq *q, struct head *h)
{
    const char *target = q->target ? q->target : "/";
    const char *mark = strchr(target, '?');
    struct route_request r = {
        .host = q->host,
        .host_len = q->host ? strlen(q->host) : 0,
        .sni = q->sni,
        .sni_len = q->sni ? strlen(q->sni) : 0,
        .method = q->method ? q->method : "GET",
        .method_len = strlen(q->method ? q->method : "GET"),
        .path = target,
        .path_len = mark ? (size_t)(mark - target) : strlen(target),
        .query = mark ? mark + 1 : NULL,
        .query_len = mark ? strlen(mark + 1) : 0,
    };
    if (q->fields) {
        parse_head(h, q->fields);
        r.head = h->text;
        r.msg = &h->msg;
    }
    return r;
}

/* The first route of a linear scan, or -1. */
static int scan_all(const struct route_table *t, const struct route_request *r)
{
    for (unsigned i = 0; i < route_table_count(t); i++)
        if (route_check(route_table_get(t, i), r))
            return (int)i;
    return -1;
}

/* route_match() for r as an index (-1: none), after checking it against the linear scan. */
static int match_index(const struct route_table *t, const struct route_request *r)
{
    const struct route *hit = route_match(t, r);
    int got = hit ? (int)hit->index : -1;
    if (hit)
        assert_ptr_equal(hit, route_table_get(t, hit->index));
    int want = scan_all(t, r);
    if (got != want)
        fail_msg("index says %d, linear scan %d (host %.*s, path %.*s)", got, want,
                 (int)r->host_len, r->host ? r->host : "", (int)r->path_len, r->path);
    return got;
}

static int lookup(const struct route_table *t, struct rq q)
{
    struct head *h = malloc(sizeof(*h));
    assert_non_null(h);
    struct route_request r = request_of(&q, h);
    int got = match_index(t, &r);
    free(h);
    return got;
}

#define M(f, ...) lookup((f).t, (struct rq){__VA_ARGS__})

/* ---- each rule ---- */

static void test_host(void **state)
{
    struct fixture f =
        TABLE("{host: a.example.com}", "{host: [b.example.com, '[::1]', c.example.com.]}",
              "{host: '[2001:db8::1]'}", "{host: 'abcdefghijklmnopqrstuvwxyz0123456789-_.example'}",
              "{host: '*.xyz.abcdefghijklmnopqrstuvwxyz.example'}");
    assert_int_equal(M(f, .host = "a.example.com"), 0);
    assert_int_equal(M(f, .host = "A.Example.COM"), 0);
    assert_int_equal(M(f, .host = "a.example.com:8080"), 0);
    assert_int_equal(M(f, .host = "a.example.com."), 0);
    assert_int_equal(M(f, .host = "a.example.com.:80"), 0);
    assert_int_equal(M(f, .host = "a.example.com:"), 0); /* an empty port */
    assert_int_equal(M(f, .host = "b.example.com"), 1);
    assert_int_equal(M(f, .host = "c.example.com"), 1); /* the route's trailing dot goes too */
    assert_int_equal(M(f, .host = "C.example.com.:443"), 1);
    assert_int_equal(M(f, .host = "[::1]"), 1);
    assert_int_equal(M(f, .host = "[::1]:8443"), 1);
    assert_int_equal(M(f, .host = "[2001:DB8::1]:80"), 2);
    assert_int_equal(M(f, .host = "[2001:db8::1]"), 2);
    /* every letter, in keys longer than a word of the hash */
    assert_int_equal(M(f, .host = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.EXAMPLE"), 3);
    assert_int_equal(M(f, .host = "abcdefghijklmnopqrstuvwxyz0123456789-_.Example:1"), 3);
    assert_int_equal(M(f, .host = "abcdefghijklmnopqrstuvwxyz0123456789-@.example"), -1);
    assert_int_equal(M(f, .host = "Q.XYZ.ABCDEFGHIJKLMNOPQRSTUVWXYZ.EXAMPLE."), 4);
    assert_int_equal(M(f, .host = "q.xyz.abcdefghijklmnopqrstuvwxyz.exampl\xc5"), -1);

    assert_int_equal(M(f, .host = "[::1]x"), -1);
    assert_int_equal(M(f, .host = "[::1]:8a"), -1);
    assert_int_equal(M(f, .host = "[::1"), -1);
    assert_int_equal(M(f, .host = "::1"), -1);
    assert_int_equal(M(f, .host = "a.example.com:80:80"), -1);
    assert_int_equal(M(f, .host = "a.example.com:8o"), -1);
    assert_int_equal(M(f, .host = "a.example.com.."), -1);
    assert_int_equal(M(f, .host = "xa.example.com"), -1);
    assert_int_equal(M(f, .host = "a.example.co"), -1);
    assert_int_equal(M(f, .host = "x.a.example.com"), -1);
    assert_int_equal(M(f, .host = ""), -1);
    assert_int_equal(M(f, .host = NULL), -1);
    /* a NUL byte inside the Host is not the end of it */
    struct route_request r = {
        .host = "a.example.com\0x", .host_len = 15, .path = "/", .path_len = 1};
    assert_int_equal(match_index(f.t, &r), -1);
    r.host_len = 13;
    assert_int_equal(match_index(f.t, &r), 0);
    done(&f);
}

static void test_wildcard(void **state)
{
    struct fixture f =
        TABLE("{host: '*.example.com'}", "{host: example.com}", "{host: '*.b.example.org'}",
              "{host: www.example.com}", "{host: '*.example.net.'}");
    assert_int_equal(M(f, .host = "a.example.com"), 0);
    assert_int_equal(M(f, .host = "www.example.com"), 0); /* route order, not exact first */
    assert_int_equal(M(f, .host = "A.EXAMPLE.COM:80"), 0);
    assert_int_equal(M(f, .host = "a.example.com."), 0);
    assert_int_equal(M(f, .host = "a-b.example.com"), 0);
    assert_int_equal(M(f, .host = "example.com"), 1); /* no label for the '*' */
    assert_int_equal(M(f, .host = "x.b.example.org"), 2);
    assert_int_equal(M(f, .host = "x.example.net"), 4);
    assert_int_equal(M(f, .host = "x.example.net.:1"), 4);

    assert_int_equal(M(f, .host = "a.b.example.com"), -1); /* two labels */
    assert_int_equal(M(f, .host = ".example.com"), -1);    /* an empty label */
    assert_int_equal(M(f, .host = "aexample.com"), -1);    /* not on a label boundary */
    assert_int_equal(M(f, .host = "a.example.com.evil"), -1);
    assert_int_equal(M(f, .host = "b.example.org"), -1);
    assert_int_equal(M(f, .host = "a.x.b.example.org"), -1);
    assert_int_equal(M(f, .host = "example.net"), -1);
    done(&f);

    /* an exact host before a wildcard that also covers it */
    f = TABLE("{host: www.example.com, path: /x}", "{host: '*.example.com'}");
    assert_int_equal(M(f, .host = "www.example.com", .target = "/x"), 0);
    assert_int_equal(M(f, .host = "www.example.com", .target = "/y"), 1);
    assert_int_equal(M(f, .host = "api.example.com", .target = "/x"), 1);
    done(&f);
}

static void test_paths(void **state)
{
    struct fixture f =
        TABLE("{path: /exact}", "{path_prefix: /api/}", "{path_prefix: /api}",
              "{path_regex: '^/img/[0-9]+\\.png$'}", "{path: /both, path_prefix: /bo}",
              "{path_prefix: /r, path_regex: 'x$'}", "{path: /nope, path_prefix: /other}");
    assert_int_equal(M(f, .target = "/exact"), 0);
    assert_int_equal(M(f, .target = "/exact?q=1"), 0); /* the query is not part of the path */
    assert_int_equal(M(f, .target = "/exact/"), -1);
    assert_int_equal(M(f, .target = "/exac"), -1);
    assert_int_equal(M(f, .target = "/EXACT"), -1);
    assert_int_equal(M(f, .target = "/api/v1"), 1);
    assert_int_equal(M(f, .target = "/api/"), 1);
    assert_int_equal(M(f, .target = "/api"), 2);
    assert_int_equal(M(f, .target = "/apis"), 2); /* a prefix is bytes, not segments */
    assert_int_equal(M(f, .target = "/ap"), -1);
    assert_int_equal(M(f, .target = "/img/12.png"), 3);
    assert_int_equal(M(f, .target = "/img/12xpng"), -1);
    assert_int_equal(M(f, .target = "/x/img/1.png"), -1);
    assert_int_equal(M(f, .target = "/both"), 4);
    assert_int_equal(M(f, .target = "/bot"), -1);
    assert_int_equal(M(f, .target = "/rx"), 5);
    assert_int_equal(M(f, .target = "/r/a/x"), 5);
    assert_int_equal(M(f, .target = "/ry"), -1);
    assert_int_equal(M(f, .target = "/xx"), -1);
    assert_int_equal(M(f, .target = "/nope"), -1); /* both must hold */
    assert_int_equal(M(f, .target = "/other"), -1);
    struct route_request r = {.path = NULL, .path_len = 0};
    assert_int_equal(match_index(f.t, &r), -1);
    done(&f);

    /* a regex searches anywhere in the path unless anchored */
    f = TABLE("{path_regex: b}", "{path_regex: '^/(a|c)/?$'}");
    assert_int_equal(M(f, .target = "/abc"), 0);
    assert_int_equal(M(f, .target = "/a/"), 1);
    assert_int_equal(M(f, .target = "/c"), 1);
    assert_int_equal(M(f, .target = "/ac"), -1);
    done(&f);
}

/* Paths around the stack buffer's size go through the heap copy; a NUL byte never matches. */
static void test_regex_long_path(void **state)
{
    struct fixture f = TABLE("{path_regex: 'z$'}", "{path_prefix: /}");
    size_t sizes[] = {1,
                      100,
                      ROUTE_REGEX_STACK - 1,
                      ROUTE_REGEX_STACK,
                      ROUTE_REGEX_STACK + 1,
                      5 * ROUTE_REGEX_STACK};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t len = sizes[s] + 1;
        char *path = malloc(len);
        assert_non_null(path);
        memset(path, 'a', len);
        path[0] = '/';
        path[len - 1] = 'z';
        struct route_request r = {.path = path, .path_len = len};
        assert_int_equal(match_index(f.t, &r), 0);
        path[len - 1] = 'y';
        assert_int_equal(match_index(f.t, &r), 1);
        path[len - 1] = 'z';
        path[len / 2] = '\0'; /* regexec() would see only "/aaa" */
        assert_int_equal(match_index(f.t, &r), 1);
        free(path);
    }
    done(&f);
}

static void test_methods(void **state)
{
    struct fixture f = TABLE("{method: [GET, HEAD]}", "{method: post}", "{method: M-SEARCH}");
    assert_int_equal(M(f, .method = "GET"), 0);
    assert_int_equal(M(f, .method = "HEAD"), 0);
    assert_int_equal(M(f, .method = "post"), 1);
    assert_int_equal(M(f, .method = "M-SEARCH"), 2);
    assert_int_equal(M(f, .method = "get"), -1); /* methods are case-sensitive */
    assert_int_equal(M(f, .method = "POST"), -1);
    assert_int_equal(M(f, .method = "GE"), -1);
    assert_int_equal(M(f, .method = "GETS"), -1);
    struct route_request r = {.method = NULL, .path = "/", .path_len = 1};
    assert_int_equal(match_index(f.t, &r), -1);
    done(&f);
}

static void test_header(void **state)
{
    struct fixture f = TABLE("{header: {name: X-Env, value: canary}}", "{header: {name: x-debug}}",
                             "{header: {name: Accept, value: 'a, b'}}");
    assert_int_equal(M(f, .fields = "X-Env: canary\r\n"), 0);
    assert_int_equal(M(f, .fields = "x-env: canary\r\n"), 0);
    assert_int_equal(M(f, .fields = "X-ENV:   canary \t\r\n"), 0); /* trimmed by the parser */
    assert_int_equal(M(f, .fields = "X-Env: stable\r\nX-Env: canary\r\n"), 0);
    assert_int_equal(M(f, .fields = "X-Env: Canary\r\n"), -1);
    assert_int_equal(M(f, .fields = "X-Env: canary2\r\n"), -1);
    assert_int_equal(M(f, .fields = "X-Env-2: canary\r\n"), -1);
    assert_int_equal(M(f, .fields = "X-Env: stable\r\nX-Debug: 1\r\n"), 1);
    assert_int_equal(M(f, .fields = "X-Debug:\r\n"), 1); /* present, even empty */
    assert_int_equal(M(f, .fields = "Accept: a, b\r\n"), 2);
    assert_int_equal(M(f, .fields = "Accept: a,b\r\n"), -1); /* not split at commas */
    assert_int_equal(M(f, .fields = ""), -1);
    assert_int_equal(M(f, .fields = NULL), -1); /* no parsed head: no fields */
    done(&f);
}

static void test_query(void **state)
{
    struct fixture f =
        TABLE("{query: {name: k, value: v}}", "{query: {name: debug}}",
              "{query: {name: e, value: x}}", "{query: {name: 'a%20b', value: '1'}}");
    assert_int_equal(M(f, .target = "/?k=v"), 0);
    assert_int_equal(M(f, .target = "/x?a=1&k=v&b"), 0);
    assert_int_equal(M(f, .target = "/?&&k=v&&"), 0);
    assert_int_equal(M(f, .target = "/?k=vv&debug"), 1);
    assert_int_equal(M(f, .target = "/?k=v&debug"), 0);
    assert_int_equal(M(f, .target = "/?debug"), 1);
    assert_int_equal(M(f, .target = "/?debug=1"), 1);
    assert_int_equal(M(f, .target = "/?debug="), 1);
    assert_int_equal(M(f, .target = "/?e=x"), 2);
    assert_int_equal(M(f, .target = "/?e&e=x"), 2);
    assert_int_equal(M(f, .target = "/?a%20b=1"), 3); /* nothing is decoded */

    assert_int_equal(M(f, .target = "/?k=vv"), -1);
    assert_int_equal(M(f, .target = "/?k=v=w"), -1);
    assert_int_equal(M(f, .target = "/?K=v"), -1);
    assert_int_equal(M(f, .target = "/?kk=v"), -1);
    assert_int_equal(M(f, .target = "/?xdebug=1"), -1);
    assert_int_equal(M(f, .target = "/?e=1"), -1);
    assert_int_equal(M(f, .target = "/?e"), -1); /* no '=': no value */
    assert_int_equal(M(f, .target = "/?e="), -1);
    assert_int_equal(M(f, .target = "/?ex"), -1);
    assert_int_equal(M(f, .target = "/?a b=1"), -1);
    assert_int_equal(M(f, .target = "/?a+b=1"), -1);
    assert_int_equal(M(f, .target = "/?"), -1);
    assert_int_equal(M(f, .target = "/"), -1);
    assert_int_equal(M(f, .target = "/k=v"), -1);
    done(&f);
}

static void test_sni(void **state)
{
    struct fixture f = TABLE("{sni: [a.example.com, '*.w.example.com']}", "{host: a.example.com}");
    assert_int_equal(M(f, .sni = "a.example.com", .host = "a.example.com"), 0);
    assert_int_equal(M(f, .sni = "A.EXAMPLE.COM."), 0);
    assert_int_equal(M(f, .sni = "x.w.example.com"), 0);
    assert_int_equal(M(f, .sni = "w.example.com"), -1);
    assert_int_equal(M(f, .sni = "y.x.w.example.com"), -1);
    assert_int_equal(M(f, .sni = "a.example.com:443"), -1); /* a server name has no port */
    assert_int_equal(M(f, .sni = ""), -1);
    assert_int_equal(M(f, .host = "a.example.com"), 1); /* no server name: no sni match */
    assert_int_equal(M(f, .sni = "b.example.com", .host = "a.example.com"), 1);
    done(&f);
}

/* The first route in the list wins, whichever group of the index it sits in. */
static void test_first_match(void **state)
{
    struct fixture f = TABLE("{path_prefix: /admin, method: POST}",
                             "{host: '*.example.com', path: /admin}", "{host: www.example.com}",
                             "{host: [www.example.com, '*.example.com', "
                             "WWW.example.com.], path_prefix: /}",
                             "{path_prefix: /}");
    assert_int_equal(M(f, .method = "POST", .host = "www.example.com", .target = "/admin"), 0);
    assert_int_equal(M(f, .method = "POST", .target = "/admin/x"), 0);
    assert_int_equal(M(f, .host = "www.example.com", .target = "/admin"), 1);
    assert_int_equal(M(f, .host = "www.example.com", .target = "/x"), 2);
    assert_int_equal(M(f, .host = "a.example.com", .target = "/x"), 3);
    assert_int_equal(M(f, .host = "other.org", .target = "/x"), 4);
    assert_int_equal(M(f, .target = "/admin"), 4);
    done(&f);

    /* no condition at all matches everything */
    f = TABLE("{host: a.com}", "{}");
    assert_int_equal(M(f, .host = "a.com"), 0);
    assert_int_equal(M(f, .host = "b.com", .target = "/x?y", .method = "PUT"), 1);
    struct route_request r = {0};
    assert_int_equal(match_index(f.t, &r), 1);
    done(&f);
}

static void test_table_access(void **state)
{
    struct fixture f =
        table_yaml(R("{host: a.com}") "      - {name: second, pool: app, match: {path: /b}}\n"
                                      "      - {respond: {status: 204}, match: {}}\n");
    assert_int_equal(route_table_count(f.t), 3);
    const struct conf_listener *l = &f.conf->listeners[0];
    for (unsigned i = 0; i < 3; i++) {
        const struct route *r = route_table_get(f.t, i);
        assert_non_null(r);
        assert_int_equal(r->index, i);
        assert_ptr_equal(r->conf, &l->routes[i]);
    }
    assert_string_equal(route_table_get(f.t, 1)->conf->name, "second");
    assert_int_equal(route_table_get(f.t, 2)->conf->action, CONF_ROUTE_RESPOND);
    assert_null(route_table_get(f.t, 3));
    done(&f);

    /* a listener without routes: an empty table */
    struct conf *conf = load("listeners:\n  - bind: 127.0.0.1:8080\n    pool: app\n" POOLS);
    struct route_table *t = route_table_new(&conf->listeners[0], NULL, 0);
    assert_non_null(t);
    assert_int_equal(route_table_count(t), 0);
    assert_null(route_table_get(t, 0));
    struct route_request r = {.host = "a.com", .host_len = 5, .path = "/", .path_len = 1};
    assert_null(route_match(t, &r));
    route_table_free(t);
    route_table_free(NULL);
    conf_free(conf);
}

/* conf refuses a bad regular expression; one that gets past it is refused here, with a reason. */
static void test_bad_regex(void **state)
{
    struct conf *conf = load(HEAD R("{host: a.com}") R("{path_regex: ok}") POOLS);
    struct conf_route_match *m = &conf->listeners[0].routes[1].match;
    free(m->path_regex);
    m->path_regex = strdup("a(");
    assert_non_null(m->path_regex);
    char why[200];
    assert_null(route_table_new(&conf->listeners[0], why, sizeof(why)));
    if (!strstr(why, "routes[1] (route2): path_regex: "))
        fail_msg("why: %s", why);
    char tiny[8];
    assert_null(route_table_new(&conf->listeners[0], tiny, sizeof(tiny)));
    assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
    conf_free(conf);
}

/* ---- 1,000 routes ---- */

static char *append(char *buf, size_t *len, size_t *cap, const char *text)
{
    size_t n = strlen(text);
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        buf = realloc(buf, *cap);
        assert_non_null(buf);
    }
    memcpy(buf + *len, text, n + 1);
    *len += n;
    return buf;
}

/* Route i of 1,000: four kinds in turn, then a catch-all as route 1000. */
static struct fixture thousand(void)
{
    size_t len = 0, cap = 0;
    char *yaml = append(NULL, &len, &cap, HEAD);
    for (int i = 0; i < 1000; i++) {
        char line[200];
        switch (i % 4) {
        case 0:
            snprintf(line, sizeof(line), R("{host: h%d.example.com, path_prefix: /p/}"), i);
            break;
        case 1:
            snprintf(line, sizeof(line), R("{host: '*.w%d.example.com'}"), i);
            break;
        case 2:
            snprintf(line, sizeof(line), R("{path_prefix: /p%d/}"), i);
            break;
        default:
            snprintf(line, sizeof(line), R("{path: /e%d, method: [GET, PUT]}"), i);
        }
        yaml = append(yaml, &len, &cap, line);
    }
    yaml = append(yaml, &len, &cap, R("{}") POOLS);
    struct fixture f = {.conf = load(yaml)};
    free(yaml);
    f.t = route_table_new(&f.conf->listeners[0], NULL, 0);
    assert_non_null(f.t);
    return f;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Nanoseconds per route_match() over a mix of requests; printed, never asserted. */
static double bench(const struct route_table *t)
{
    static const char *const hosts[] = {"h400.example.com", "a.w401.example.com", "x.org",
                                        "H996.EXAMPLE.COM:8080"};
    static const char *const paths[] = {"/p/index.html", "/p402/a/b/c", "/e403", "/static/app.js"};
    enum { ROUNDS = 400000 };
    unsigned sum = 0;
    double start = now_ns();
    for (unsigned i = 0; i < ROUNDS; i++) {
        const char *h = hosts[i % 4], *p = paths[(i / 4) % 4];
        struct route_request r = {.host = h,
                                  .host_len = strlen(h),
                                  .method = "GET",
                                  .method_len = 3,
                                  .path = p,
                                  .path_len = strlen(p)};
        const struct route *hit = route_match(t, &r);
        sum += hit ? hit->index : 0;
    }
    double ns = (now_ns() - start) / ROUNDS;
    return sum == 1 ? -ns : ns; /* sum used, so the loop stays */
}

static void test_1000_routes(void **state)
{
    struct fixture f = thousand();
    assert_int_equal(route_table_count(f.t), 1001);
    assert_int_equal(M(f, .host = "h400.example.com", .target = "/p/x"), 400);
    assert_int_equal(M(f, .host = "H400.example.com.:80", .target = "/p/"), 400);
    assert_int_equal(M(f, .host = "h400.example.com", .target = "/q"), 1000);
    assert_int_equal(M(f, .host = "a.w401.example.com", .target = "/p/x"), 401);
    assert_int_equal(M(f, .host = "w401.example.com"), 1000);
    assert_int_equal(M(f, .host = "h4.example.com", .target = "/p402/x"), 402);
    assert_int_equal(M(f, .host = "h0.example.com", .target = "/p/x"), 0);
    assert_int_equal(M(f, .target = "/p402/x"), 402);
    assert_int_equal(M(f, .target = "/p402"), 1000);
    assert_int_equal(M(f, .target = "/e403", .method = "PUT"), 403);
    assert_int_equal(M(f, .target = "/e403", .method = "POST"), 1000);
    assert_int_equal(M(f, .host = "a.w1.example.com", .target = "/e3"), 1);
    assert_int_equal(M(f, .host = "a.w999.example.com", .target = "/e3"), 3);
    /* every route is reachable by a request of its own */
    for (int i = 0; i < 1000; i++) {
        char host[64], path[64];
        snprintf(host, sizeof(host), i % 4 == 0 ? "h%d.example.com" : "x.w%d.example.com", i);
        snprintf(path, sizeof(path), i % 4 == 0 ? "/p/" : i % 4 == 2 ? "/p%d/" : "/e%d", i);
        struct rq q = {.target = path, .host = i % 4 < 2 ? host : "none.org"};
        assert_int_equal(lookup(f.t, q), i);
    }
    if (getenv("ROUTE_BENCH")) {
        struct fixture one = TABLE("{}");
        printf("route_match: %.1f ns with 1,001 routes, %.1f ns with 1 route\n", bench(f.t),
               bench(one.t));
        done(&one);
    }
    done(&f);
}

/* ---- property test: index, linear scan and a naive matcher agree ---- */

static uint64_t rng_state;

static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

#define PICK(a) ((a)[rnd(sizeof(a) / sizeof((a)[0]))])

static const char *const g_hosts[] = {"a.com", "b.com",  "x.a.com", "*.a.com",  "*.x.a.com",
                                      "[::1]", "a.com.", "*.com",   "*.b.com.", "c.b.com"};
static const char *const g_paths[] = {"/", "/a", "/a/b", "/ab", "/b"};
static const char *const g_prefixes[] = {"/", "/a", "/a/", "/ab", "/b/c", "/a/b", "/b"};
static const char *const g_regexes[] = {"^/a", "b$", "^/[ab]+$", "c", "^/$"};
static const char *const g_methods[] = {"GET", "POST", "get"};
static const char *const g_fnames[] = {"X-K", "x-k", "Y"};
static const char *const g_fvalues[] = {NULL, "v", "w"};
static const char *const g_qnames[] = {"k", "a%20b", "e"};
static const char *const g_qvalues[] = {NULL, "v", "1"};
static const char *const g_snis[] = {"a.com", "*.a.com", "b.com."};

static const char *const q_hosts[] = {
    "a.com",  "A.COM", "x.a.com",   "X.A.com:8080", "y.x.a.com", "b.com.", "b.com.:80",
    "a.com:", "[::1]", "[::1]:443", "[::1]x",       "com",       "c.com",  ".a.com",
    "a..com", "",      "b.a.com",   "z.b.com",      "c.b.com:1", NULL,     "C.B.COM."};
static const char *const q_paths[] = {"/",  "/a",   "/a/",   "/a/b", "/ab",   "/abc",
                                      "/b", "/b/c", "/b/cd", "/c",   "/a/b/c"};
static const char *const q_methods[] = {"GET", "POST", "get", "PUT"};
static const char *const q_fields[] = {"X-K: v", "x-k: w", "Y:", "Z: v", "Y: v", "x-K:  v "};
static const char *const q_queries[] = {NULL,   "",     "k",      "k=v",  "a=1&k=v",
                                        "k=vv", "kk=v", "k=",     "&k&",  "a%20b=1",
                                        "e",    "e=1",  "k=v&e=", "a%20b"};
static const char *const q_snis[] = {NULL,    "a.com",    "x.a.com",  "A.COM.",
                                     "b.com", "c.a.com.", "a.com:443"};

struct gen_route {
    const char *hosts[3], *snis[2], *methods[2];
    unsigned nhosts, nsnis, nmethods;
    const char *path, *prefix, *regex;
    const char *fname, *fvalue, *qname, *qvalue;
    regex_t re;
};

struct gen_req {
    const char *host, *sni, *method, *path, *query;
    const char *fields[3];
    unsigned nfields;
};

static void gen_route(struct gen_route *g, bool last)
{
    memset(g, 0, sizeof(*g));
    if (rnd(3))
        g->nhosts = 1 + rnd(3);
    for (unsigned i = 0; i < g->nhosts; i++)
        g->hosts[i] = PICK(g_hosts);
    unsigned p = rnd(6);
    if (p == 0 || p == 4)
        g->path = PICK(g_paths);
    if (p == 1 || p == 4)
        g->prefix = PICK(g_prefixes);
    if (p == 2 || (p == 5 && rnd(2)))
        g->regex = PICK(g_regexes);
    if (!rnd(4)) {
        g->nmethods = 1 + rnd(2);
        for (unsigned i = 0; i < g->nmethods; i++)
            g->methods[i] = PICK(g_methods);
    }
    if (!rnd(5)) {
        g->fname = PICK(g_fnames);
        g->fvalue = PICK(g_fvalues);
    }
    if (!rnd(5)) {
        g->qname = PICK(g_qnames);
        g->qvalue = PICK(g_qvalues);
    }
    if (!rnd(6)) {
        g->nsnis = 1 + rnd(2);
        for (unsigned i = 0; i < g->nsnis; i++)
            g->snis[i] = PICK(g_snis);
    }
    /* conf refuses a route after one that matches everything */
    bool everything = !g->nhosts && !g->path && !g->regex && !g->nmethods && !g->fname &&
                      !g->qname && !g->nsnis && (!g->prefix || strcmp(g->prefix, "/") == 0);
    if (everything && !last) {
        g->nmethods = 1;
        g->methods[0] = "GET";
    }
    if (g->regex)
        assert_int_equal(regcomp(&g->re, g->regex, REG_EXTENDED | REG_NOSUB), 0);
}

static void gen_req(struct gen_req *q)
{
    memset(q, 0, sizeof(*q));
    q->host = PICK(q_hosts);
    q->sni = rnd(2) ? PICK(q_snis) : NULL;
    q->method = PICK(q_methods);
    q->path = PICK(q_paths);
    q->query = PICK(q_queries);
    q->nfields = rnd(4);
    for (unsigned i = 0; i < q->nfields; i++)
        q->fields[i] = PICK(q_fields);
}

static void list_yaml(char *out, size_t cap, const char *key, const char *const *v, unsigned n)
{
    size_t len = strlen(out);
    snprintf(out + len, cap - len, "%s: [", key);
    for (unsigned i = 0; i < n; i++) {
        len = strlen(out);
        snprintf(out + len, cap - len, "%s\"%s\"", i ? ", " : "", v[i]);
    }
    len = strlen(out);
    snprintf(out + len, cap - len, "], ");
}

static void pair_yaml(char *out, size_t cap, const char *key, const char *name, const char *value)
{
    size_t len = strlen(out);
    if (value)
        snprintf(out + len, cap - len, "%s: {name: \"%s\", value: \"%s\"}, ", key, name, value);
    else
        snprintf(out + len, cap - len, "%s: {name: \"%s\"}, ", key, name);
}

static void route_yaml(const struct gen_route *g, char *out, size_t cap)
{
    snprintf(out, cap, "      - pool: app\n        match: {");
    size_t len;
    if (g->nhosts)
        list_yaml(out, cap, "host", g->hosts, g->nhosts);
    if (g->nsnis)
        list_yaml(out, cap, "sni", g->snis, g->nsnis);
    if (g->nmethods)
        list_yaml(out, cap, "method", g->methods, g->nmethods);
    const char *keys[] = {"path", "path_prefix", "path_regex"};
    const char *values[] = {g->path, g->prefix, g->regex};
    for (int i = 0; i < 3; i++) {
        len = strlen(out);
        if (values[i])
            snprintf(out + len, cap - len, "%s: \"%s\", ", keys[i], values[i]);
    }
    if (g->fname)
        pair_yaml(out, cap, "header", g->fname, g->fvalue);
    if (g->qname)
        pair_yaml(out, cap, "query", g->qname, g->qvalue);
    len = strlen(out);
    snprintf(out + len, cap - len, "}\n");
}

/* The naive matcher: the rules of route.h, on NUL-terminated copies. */
static void lower_copy(char *out, size_t cap, const char *in)
{
    snprintf(out, cap, "%s", in);
    for (; *out; out++)
        if (*out >= 'A' && *out <= 'Z')
            *out = (char)(*out - 'A' + 'a');
}

static bool all_digits(const char *s)
{
    return strspn(s, "0123456789") == strlen(s);
}

static void naive_host(char *out, size_t cap, const char *host)
{
    lower_copy(out, cap, host);
    if (out[0] == '[') {
        char *close = strchr(out, ']');
        if (close && (close[1] == '\0' || (close[1] == ':' && all_digits(close + 2))))
            close[1] = '\0';
        return;
    }
    char *colon = strrchr(out, ':');
    if (colon && all_digits(colon + 1))
        *colon = '\0';
    size_t n = strlen(out);
    if (n && out[n - 1] == '.')
        out[n - 1] = '\0';
}

static bool naive_covers(const char *pattern, const char *name)
{
    char p[64];
    lower_copy(p, sizeof(p), pattern);
    size_t n = strlen(p);
    if (n && p[n - 1] == '.')
        p[n - 1] = '\0';
    if (strncmp(p, "*.", 2) != 0)
        return p[0] && strcmp(p, name) == 0;
    const char *dot = strchr(name, '.');
    return p[2] && dot && dot != name && strcmp(dot + 1, p + 2) == 0;
}

static bool naive_names(const char *const *patterns, unsigned n, const char *name)
{
    for (unsigned i = 0; i < n; i++)
        if (naive_covers(patterns[i], name))
            return true;
    return false;
}

static bool naive_field(const struct gen_req *q, const char *name, const char *value)
{
    for (unsigned i = 0; i < q->nfields; i++) {
        char f[64];
        snprintf(f, sizeof(f), "%s", q->fields[i]);
        char *colon = strchr(f, ':'), *v = colon + 1;
        *colon = '\0';
        v += strspn(v, " \t");
        for (size_t n = strlen(v); n && (v[n - 1] == ' ' || v[n - 1] == '\t'); n--)
            v[n - 1] = '\0';
        if (strcasecmp(f, name) == 0 && (!value || strcmp(v, value) == 0))
            return true;
    }
    return false;
}

static bool naive_param(const struct gen_req *q, const char *name, const char *value)
{
    if (!q->query)
        return false;
    char copy[64], *rest = copy, *p;
    snprintf(copy, sizeof(copy), "%s", q->query);
    while ((p = strsep(&rest, "&"))) {
        char *eq = strchr(p, '=');
        if (eq)
            *eq = '\0';
        if (strcmp(p, name) == 0 && (!value || (eq && strcmp(eq + 1, value) == 0)))
            return true;
    }
    return false;
}

static bool naive_match(const struct gen_route *g, const struct gen_req *q)
{
    char host[64], sni[64];
    if (g->nhosts) {
        if (!q->host)
            return false;
        naive_host(host, sizeof(host), q->host);
        if (!naive_names(g->hosts, g->nhosts, host))
            return false;
    }
    if (g->nsnis) {
        if (!q->sni)
            return false;
        lower_copy(sni, sizeof(sni), q->sni);
        size_t n = strlen(sni);
        if (n && sni[n - 1] == '.')
            sni[n - 1] = '\0';
        if (!naive_names(g->snis, g->nsnis, sni))
            return false;
    }
    if (g->path && strcmp(q->path, g->path) != 0)
        return false;
    if (g->prefix && strncmp(q->path, g->prefix, strlen(g->prefix)) != 0)
        return false;
    if (g->regex && regexec(&g->re, q->path, 0, NULL, 0) != 0)
        return false;
    bool method = !g->nmethods;
    for (unsigned i = 0; i < g->nmethods; i++)
        method |= strcmp(q->method, g->methods[i]) == 0;
    if (!method)
        return false;
    if (g->fname && !naive_field(q, g->fname, g->fvalue))
        return false;
    return !g->qname || naive_param(q, g->qname, g->qvalue);
}

static void test_property(void **state)
{
    enum { SETS = 300, REQUESTS = 300, MAX_ROUTES = 40 };
    static struct gen_route routes[MAX_ROUTES];
    struct head *h = malloc(sizeof(*h));
    assert_non_null(h);
    rng_state = 0x9e3779b97f4a7c15ull;
    unsigned matched = 0, total = 0;
    for (int set = 0; set < SETS; set++) {
        unsigned n = 1 + rnd(MAX_ROUTES);
        size_t len = 0, cap = 0;
        char *yaml = append(NULL, &len, &cap, HEAD);
        for (unsigned i = 0; i < n; i++) {
            char line[512];
            gen_route(&routes[i], i + 1 == n);
            route_yaml(&routes[i], line, sizeof(line));
            yaml = append(yaml, &len, &cap, line);
        }
        yaml = append(yaml, &len, &cap, POOLS);
        struct conf *conf = load(yaml);
        struct route_table *t = route_table_new(&conf->listeners[0], NULL, 0);
        assert_non_null(t);
        for (int k = 0; k < REQUESTS; k++) {
            struct gen_req q;
            gen_req(&q);
            char fields[256] = "", target[128];
            for (unsigned i = 0; i < q.nfields; i++) {
                size_t fl = strlen(fields);
                snprintf(fields + fl, sizeof(fields) - fl, "%s\r\n", q.fields[i]);
            }
            snprintf(target, sizeof(target), "%s%s%s", q.path, q.query ? "?" : "",
                     q.query ? q.query : "");
            struct rq rq = {.host = q.host,
                            .sni = q.sni,
                            .method = q.method,
                            .target = target,
                            .fields = fields};
            struct route_request r = request_of(&rq, h);
            int want = -1;
            for (unsigned i = 0; i < n && want < 0; i++)
                if (naive_match(&routes[i], &q))
                    want = (int)i;
            int got = match_index(t, &r); /* also checks the linear scan */
            if (got != want)
                fail_msg("set %d: route %d, naive %d, for host %s sni %s %s %s fields %s in\n%s",
                         set, got, want, q.host ? q.host : "(none)", q.sni ? q.sni : "(none)",
                         q.method, target, fields, yaml);
            matched += got >= 0;
            total++;
        }
        for (unsigned i = 0; i < n; i++)
            if (routes[i].regex)
                regfree(&routes[i].re);
        route_table_free(t);
        conf_free(conf);
        free(yaml);
    }
    free(h);
    /* the generator must exercise both answers */
    assert_true(matched > total / 10 && matched < total - total / 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host),        cmocka_unit_test(test_wildcard),
        cmocka_unit_test(test_paths),       cmocka_unit_test(test_regex_long_path),
        cmocka_unit_test(test_methods),     cmocka_unit_test(test_header),
        cmocka_unit_test(test_query),       cmocka_unit_test(test_sni),
        cmocka_unit_test(test_first_match), cmocka_unit_test(test_table_access),
        cmocka_unit_test(test_bad_regex),   cmocka_unit_test(test_1000_routes),
        cmocka_unit_test(test_property),
    };
    return cmocka_run_group_tests_name("route", tests, NULL, NULL);
}
