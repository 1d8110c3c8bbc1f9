/*
 * fuzz_route.c - libFuzzer target: the route lookup (route/route.h) on a fixed table.
 *
 * The table is built once from the YAML below: exact, wildcard and IPv6 hosts, exact paths and
 * prefixes of several lengths in several host groups, regular expressions, methods, a header, a
 * query parameter and server names. The input is a request: byte 0 says which of Host, server
 * name and query are present, and the rest is split at '\n' into Host, server name, method,
 * path, query and header lines (each line "Name: value"; a head the parser refuses gives no
 * fields). The path is fed as it is, not normalised: whatever the bytes, route_match() must
 * answer what a linear scan of route_check() answers, and give a route of the table.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "core/log.h"
#include "http/http1.h"
#include "route/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char config[] =
    "listeners:\n"
    "  - bind: 127.0.0.1:8080\n"
    "    routes:\n"
    "      - {pool: app, match: {host: [a.example.com, '*.example.com'], path: /admin}}\n"
    "      - {pool: app, match: {host: a.example.com, path_prefix: /api/v1/}}\n"
    "      - {pool: app, match: {host: '*.example.com', path_prefix: /api/}}\n"
    "      - {pool: app, match: {host: ['[::1]', example.com.], method: [POST, PUT]}}\n"
    "      - {pool: app, match: {host: '*.b.example.org', path_regex: '^/[a-z]+/[0-9]{2,}$'}}\n"
    "      - {pool: app, match: {path_prefix: /static/, method: GET}}\n"
    "      - {pool: app, match: {path_prefix: /s, header: {name: X-Canary, value: '1'}}}\n"
    "      - {pool: app, match: {path: /health, query: {name: full}}}\n"
    "      - {pool: app, match: {path: /q, query: {name: k, value: v}}}\n"
    "      - {pool: app, match: {sni: ['*.tls.test', tls.test], path_prefix: /t}}\n"
    "      - {pool: app, match: {path_regex: '(a|b)+c$'}}\n"
    "      - {pool: app, match: {host: a.example.com, header: {name: x-debug}}}\n"
    "      - {pool: app, match: {host: '*.a.example.com', path_prefix: /}}\n"
    "      - {pool: app, match: {path_prefix: /api}}\n"
    "pools:\n"
    "  - name: app\n"
    "    servers:\n"
    "      - address: 127.0.0.1:9001\n";

/* Built on the first input and kept (both reachable, so not a leak) for the process's life. */
static struct conf *conf;
static struct route_table *t;

static struct route_table *table(void)
{
    if (!t) {
        char *errors = NULL;
        log_max_level = -1;
        conf = conf_load_string(config, strlen(config), "fuzz.yaml", &errors);
        if (!conf)
            abort();
        t = route_table_new(&conf->listeners[0], NULL, 0);
        if (!t)
            abort();
    }
    return t;
}

/* The next '\n'-terminated piece of [*p, end), or all that is left. */
static const char *piece(const char **p, const char *end, size_t *len)
{
    const char *start = *p;
    const char *nl = memchr(start, '\n', (size_t)(end - start));
    *len = (size_t)((nl ? nl : end) - start);
    *p = nl ? nl + 1 : end;
    return start;
}

static char head[8192];
static struct http1_field fields[32];

/* Parses "GET / HTTP/1.1", a Host and the header lines; false if the parser refuses them. */
static bool parse_fields(const char *lines, size_t len, struct http1_msg *msg)
{
    static const char start[] = "GET / HTTP/1.1\r\nHost: x\r\n";
    size_t n = sizeof(start) - 1, limit = sizeof(head) - 4;
    memcpy(head, start, n);
    for (size_t i = 0; i < len && n < limit; i++) {
        if (lines[i] == '\n')
            head[n++] = '\r';
        head[n++] = lines[i];
    }
    memcpy(head + n, "\r\n\r\n", 4);
    n += 4;
    static const struct http1_limits limits = {.max_head_bytes = sizeof(head), .max_fields = 32};
    struct http1_scan scan = {0};
    uint16_t status;
    const char *why;
    if (http1_scan_head(&scan, head, n, &limits, true, &status, &why) != HTTP1_DONE)
        return false;
    memset(msg, 0, sizeof(*msg));
    msg->fields = fields;
    return http1_parse_request(&scan, head, &limits, msg) == HTTP1_DONE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    table();
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    uint8_t flags = data[0];
    struct route_request r = {0};
    size_t len;
    const char *s = piece(&p, end, &len);
    if (flags & 1) {
        r.host = s;
        r.host_len = len;
    }
    s = piece(&p, end, &len);
    if (flags & 2) {
        r.sni = s;
        r.sni_len = len;
    }
    r.method = piece(&p, end, &r.method_len);
    r.path = piece(&p, end, &r.path_len);
    s = piece(&p, end, &len);
    if (flags & 4) {
        r.query = s;
        r.query_len = len;
    }
    struct http1_msg msg;
    if (parse_fields(p, (size_t)(end - p), &msg)) {
        r.head = head;
        r.msg = &msg;
    }

    const struct route *hit = route_match(t, &r);
    const struct route *want = NULL;
    for (unsigned i = 0; i < route_table_count(t) && !want; i++)
        if (route_check(route_table_get(t, i), &r))
            want = route_table_get(t, i);
    if (hit != want)
        abort();
    if (hit && (hit->index >= route_table_count(t) || route_table_get(t, hit->index) != hit))
        abort();
    return 0;
}
