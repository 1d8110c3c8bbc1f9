/*
 * test_conf.c - unit tests for src/conf.c: the YAML schema, every kind of error message (exact
 * "file:line:col: path: message" prefixes), the quick-start flag helpers, and robustness against
 * mangled input (run under ASan/UBSan for the leak and bounds checks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "conf/conf.h"
#include "core/log.h"

#define POOLS     "pools:\n  - name: app\n    servers:\n      - address: 127.0.0.1:9001\n"
#define LISTENERS "listeners:\n  - bind: 127.0.0.1:8080\n    pool: app\n"
#define MINIMAL   LISTENERS POOLS

static struct conf *load(const char *yaml, char **errors)
{
    return conf_load_string(yaml, strlen(yaml), "t.yaml", errors);
}

static struct conf *load_ok(const char *yaml)
{
    char *errors = NULL;
    struct conf *conf = load(yaml, &errors);
    if (!conf)
        fail_msg("unexpected errors:\n%s", errors ? errors : "(none)");
    assert_null(errors);
    return conf;
}

/* Loads yaml expecting failure; returns the malloc'ed errors. */
static char *load_fail(const char *yaml)
{
    char *errors = NULL;
    struct conf *conf = load(yaml, &errors);
    assert_null(conf);
    assert_non_null(errors);
    return errors;
}

static bool has_line(const char *errors, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *line = errors; line; line = strchr(line, '\n')) {
        if (*line == '\n')
            line++;
        if (strncmp(line, prefix, n) == 0)
            return true;
    }
    return false;
}

static int count_lines(const char *s)
{
    int n = *s ? 1 : 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Expects loading yaml to fail with (at least) a line starting with prefix. */
#define assert_error(yaml, prefix)                                                                 \
    do {                                                                                           \
        char *errors_ = load_fail(yaml);                                                           \
        if (!has_line(errors_, prefix))                                                            \
            fail_msg("expected a line starting with\n  %s\ngot:\n%s", prefix, errors_);            \
        free(errors_);                                                                             \
    } while (0)

/* Exactly one error line, equal to expected. */
#define assert_only_error(yaml, expected)                                                          \
    do {                                                                                           \
        char *errors_ = load_fail(yaml);                                                           \
        assert_string_equal(errors_, expected);                                                    \
        free(errors_);                                                                             \
    } while (0)

static unsigned port_of(const struct net_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

/* set holds exactly low..high (every bit that conf_status_in can see is checked). */
static void assert_status_range(const struct conf_status_set *set, unsigned low, unsigned high)
{
    for (unsigned c = 0; c < 700; c++)
        if (conf_status_in(set, c) != (c >= low && c <= high))
            fail_msg("status %u: expected %s the set", c, c >= low && c <= high ? "in" : "not in");
}

static unsigned status_count(const struct conf_status_set *set)
{
    unsigned n = 0;
    for (unsigned c = 0; c < 700; c++)
        n += conf_status_in(set, c);
    return n;
}

static void check_pool_defaults(const struct conf_pool *p, bool enabled)
{
    const struct conf_health_check *h = &p->check;
    const struct conf_passive *v = &p->passive;

    assert_int_equal(p->retries, 2);
    assert_int_equal(p->slow_start_ms, 0);
    assert_int_equal(p->when_all_down, CONF_ALL_DOWN_REJECT);
    assert_int_equal(h->enabled, enabled);
    assert_int_equal(h->type, CONF_CHECK_HTTP);
    assert_string_equal(h->method, "GET");
    assert_string_equal(h->path, "/healthcheck");
    assert_null(h->host);
    assert_status_range(&h->expect_status, 200, 399);
    assert_null(h->expect_body);
    assert_int_equal(h->port, 0);
    assert_int_equal(h->interval_ms, 2000);
    assert_int_equal(h->fast_interval_ms, 2000);
    assert_int_equal(h->down_interval_ms, 2000);
    assert_int_equal(h->timeout_ms, 2000);
    assert_int_equal(h->rise, 2);
    assert_int_equal(h->fall, 3);
    assert_int_equal(v->consecutive_failures, 5);
    assert_status_range(&v->failure_status, 502, 504);
    assert_int_equal(v->ejection_time_ms, 30000);
    assert_int_equal(v->max_ejection_time_ms, 300000);
    assert_int_equal(v->max_ejected_percent, 50);
}

/* ---- valid files ---- */

static void test_full_file(void **state)
{
    (void)state;
    static const char yaml[] = "threads: 4\n"                                     /* 1 */
                               "log_level: debug\n"                               /* 2 */
                               "shutdown_timeout: 1500ms\n"                       /* 3 */
                               "listeners:\n"                                     /* 4 */
                               "  - name: web\n"                                  /* 5 */
                               "    bind: 127.0.0.1:8080\n"                       /* 6 */
                               "    pool: api\n"                                  /* 7 */
                               "  - bind: '[::1]:8081'\n"                         /* 8 */
                               "    pool: app\n"                                  /* 9 */
                               "pools:\n"                                         /* 10 */
                               "  - name: app\n"                                  /* 11 */
                               "    balance: round-robin\n"                       /* 12 */
                               "    servers:\n"                                   /* 13 */
                               "      - { name: s1, address: 127.0.0.1:9001 }\n"  /* 14 */
                               "      - { address: 127.0.0.1:9002, weight: 0 }\n" /* 15 */
                               "  - name: api\n"                                  /* 16 */
                               "    servers:\n"                                   /* 17 */
                               "      - name: a\n"                                /* 18 */
                               "        address: 127.0.0.1:9003\n"                /* 19 */
                               "        weight: 256\n"                            /* 20 */
                               "timeouts:\n"
                               "  client_header: 5s\n"
                               "  client_idle: 2m\n"
                               "  client: 1h\n"
                               "  connect: 250ms\n"
                               "  server: 45s\n"
                               "  server_idle: 0s\n"
                               "limits:\n"
                               "  max_connections: 500\n"
                               "  max_header_bytes: 32k\n"
                               "  max_headers: 64\n";
    /* server_idle: 0s is invalid (timeouts must be > 0); check that first, then fix it. */
    assert_only_error(yaml, "t.yaml:27:16: timeouts.server_idle: must be greater than 0");

    char *fixed = strdup(yaml);
    assert_non_null(fixed);
    char *p = strstr(fixed, "server_idle: 0s");
    assert_non_null(p);
    memcpy(p, "server_idle: 9s", 15);
    struct conf *c = load_ok(fixed);
    free(fixed);

    assert_string_equal(c->path, "t.yaml");
    assert_int_equal(c->threads, 4);
    assert_int_equal(c->log_level, LOG_DEBUG);
    assert_int_equal(c->shutdown_timeout_ms, 1500);

    assert_int_equal(c->nlisteners, 2);
    assert_string_equal(c->listeners[0].name, "web");
    assert_string_equal(c->listeners[0].bind, "127.0.0.1:8080");
    assert_int_equal(c->listeners[0].addr.ss.ss_family, AF_INET);
    assert_int_equal(port_of(&c->listeners[0].addr), 8080);
    assert_string_equal(c->listeners[0].pool_name, "api");
    assert_int_equal(c->listeners[0].pool, 1);
    assert_int_equal(c->listeners[0].line, 5);
    assert_int_equal(c->listeners[0].column, 5);
    assert_string_equal(c->listeners[1].name, "listener2");
    assert_string_equal(c->listeners[1].bind, "[::1]:8081");
    assert_int_equal(c->listeners[1].addr.ss.ss_family, AF_INET6);
    assert_int_equal(port_of(&c->listeners[1].addr), 8081);
    assert_int_equal(c->listeners[1].pool, 0);
    assert_int_equal(c->listeners[1].line, 8);

    assert_int_equal(c->npools, 2);
    const struct conf_pool *app = &c->pools[0], *api = &c->pools[1];
    assert_string_equal(app->name, "app");
    assert_int_equal(app->balance, CONF_BALANCE_ROUND_ROBIN);
    assert_int_equal(app->line, 11);
    assert_int_equal(app->column, 5);
    assert_int_equal(app->nservers, 2);
    assert_string_equal(app->servers[0].name, "s1");
    assert_string_equal(app->servers[0].address, "127.0.0.1:9001");
    assert_int_equal(port_of(&app->servers[0].addr), 9001);
    assert_int_equal(app->servers[0].weight, 1);
    assert_int_equal(app->servers[0].line, 14);
    assert_int_equal(app->servers[0].column, 9); /* the '{' */
    assert_string_equal(app->servers[1].name, "127.0.0.1:9002");
    assert_int_equal(app->servers[1].weight, 0);
    assert_int_equal(app->servers[1].line, 15);
    assert_string_equal(api->name, "api");
    assert_int_equal(api->line, 16);
    assert_int_equal(api->nservers, 1);
    assert_string_equal(api->servers[0].name, "a");
    assert_int_equal(api->servers[0].weight, 256);
    assert_int_equal(api->servers[0].line, 18);
    assert_int_equal(api->servers[0].column, 9);

    assert_int_equal(c->timeouts.client_header_ms, 5000);
    assert_int_equal(c->timeouts.client_idle_ms, 120000);
    assert_int_equal(c->timeouts.client_ms, 3600000);
    assert_int_equal(c->timeouts.connect_ms, 250);
    assert_int_equal(c->timeouts.server_ms, 45000);
    assert_int_equal(c->timeouts.server_idle_ms, 9000);
    assert_int_equal(c->limits.max_connections, 500);
    assert_int_equal(c->limits.max_header_bytes, 32768);
    assert_int_equal(c->limits.max_headers, 64);
    conf_free(c);
}

/* The defaults the example in the docs spells out. */
static void check_default_tuning(const struct conf *c)
{
    assert_int_equal(c->shutdown_timeout_ms, 10000);
    assert_int_equal(c->timeouts.client_header_ms, 10000);
    assert_int_equal(c->timeouts.client_idle_ms, 60000);
    assert_int_equal(c->timeouts.client_ms, 60000);
    assert_int_equal(c->timeouts.connect_ms, 3000);
    assert_int_equal(c->timeouts.server_ms, 30000);
    assert_int_equal(c->timeouts.server_idle_ms, 15000);
    assert_int_equal(c->limits.max_connections, 10000);
    assert_int_equal(c->limits.max_header_bytes, 16384);
    assert_int_equal(c->limits.max_headers, 100);
}

static void check_defaults(const struct conf *c)
{
    assert_int_equal(c->threads, 0);
    assert_int_equal(c->log_level, LOG_INFO);
    check_default_tuning(c);
}

static void test_minimal_file_defaults(void **state)
{
    (void)state;
    struct conf *c = load_ok(MINIMAL);
    check_defaults(c);
    assert_string_equal(c->listeners[0].name, "listener1");
    assert_string_equal(c->pools[0].servers[0].name, "127.0.0.1:9001");
    assert_int_equal(c->pools[0].servers[0].weight, 1);
    assert_int_equal(c->pools[0].balance, CONF_BALANCE_ROUND_ROBIN);
    conf_free(c);

    c = conf_new();
    assert_non_null(c);
    check_defaults(c);
    assert_null(c->path);
    assert_int_equal(c->nlisteners, 0);
    assert_int_equal(c->npools, 0);
    conf_free(c);
}

/* Issue 9's keys: the body idle timeout follows `server` unless given, the client-abort switch is
 * a boolean, and the access log backlog is a size. */
static void test_timeout_abort_backlog_keys(void **state)
{
    (void)state;
    struct conf *c = load_ok(MINIMAL "timeouts:\n  server: 7s\n");
    assert_int_equal(c->timeouts.server_ms, 7000);
    assert_int_equal(c->timeouts.server_body_idle_ms, 7000);
    assert_false(c->pools[0].ignore_client_abort);
    conf_free(c);

    c = load_ok(MINIMAL "timeouts:\n  server: 2s\n  server_body_idle: 90s\n"
                        "access_log:\n  path: stdout\n  max_backlog: 1m\n");
    assert_int_equal(c->timeouts.server_ms, 2000);
    assert_int_equal(c->timeouts.server_body_idle_ms, 90000);
    assert_int_equal(c->access_log.max_backlog, 1u << 20);
    conf_free(c);

    c = load_ok(LISTENERS POOLS "    ignore_client_abort: true\n");
    assert_true(c->pools[0].ignore_client_abort);
    conf_free(c);

    c = load_ok(MINIMAL "access_log:\n  path: stdout\n");
    assert_int_equal(c->access_log.max_backlog, 16u << 20);
    conf_free(c);

    char *e = load_fail(LISTENERS POOLS "    ignore_client_abort: yes\n");
    assert_true(has_line(e, "t.yaml:8:26: pools[0].ignore_client_abort: expected true or false, "
                            "found \"yes\""));
    free(e);
    e = load_fail(MINIMAL "timeouts:\n  server_body_idle: 0\n");
    assert_true(has_line(e, "t.yaml:9:21: timeouts.server_body_idle: "));
    free(e);
    e = load_fail(MINIMAL "access_log:\n  path: stdout\n  max_backlog: 1k\n");
    assert_true(has_line(e, "t.yaml:10:16: access_log.max_backlog: "));
    free(e);
}

static void test_example_schema(void **state)
{
    (void)state;
    static const char yaml[] =
        "threads: 2                    # integer 1..1024; absent = 0 (auto)\n"
        "log_level: info               # error|warn|info|debug\n"
        "shutdown_timeout: 10s         # duration; default 10s\n"
        "listeners:                    # REQUIRED, non-empty sequence of mappings\n"
        "  - name: web                 # optional; default \"listener<N>\"\n"
        "    bind: 127.0.0.1:8080      # REQUIRED\n"
        "    pool: app                 # REQUIRED\n"
        "pools:                        # REQUIRED, non-empty sequence of mappings\n"
        "  - name: app                 # REQUIRED; unique across pools\n"
        "    balance: round-robin      # only \"round-robin\" for now\n"
        "    servers:                  # REQUIRED non-empty sequence\n"
        "      - { name: s1, address: 127.0.0.1:9001 }\n"
        "      - { name: s2, address: 127.0.0.1:9002, weight: 2 }\n"
        "    retries: 2\n"
        "    slow_start: 0\n"
        "    when_all_down: reject\n"
        "    passive:\n"
        "      consecutive_failures: 5\n"
        "      failure_status: [502, 503, 504]\n"
        "      ejection_time: 30s\n"
        "      max_ejection_time: 300s\n"
        "      max_ejected_percent: 50\n"
        "timeouts:                     # mapping; each a duration > 0\n"
        "  client_header: 10s\n"
        "  client_idle: 60s\n"
        "  client: 60s\n"
        "  connect: 3s\n"
        "  server: 30s\n"
        "  server_idle: 15s\n"
        "limits:\n"
        "  max_connections: 10000      # integer 1..10000000\n"
        "  max_header_bytes: 16384     # size 1024..1048576\n"
        "  max_headers: 100            # integer 1..10000\n";
    struct conf *c = load_ok(yaml);
    assert_int_equal(c->threads, 2);
    assert_int_equal(c->log_level, LOG_INFO);
    assert_int_equal(c->nlisteners, 1);
    assert_string_equal(c->listeners[0].name, "web");
    assert_int_equal(c->listeners[0].pool, 0);
    assert_int_equal(c->npools, 1);
    assert_int_equal(c->pools[0].nservers, 2);
    assert_string_equal(c->pools[0].servers[1].name, "s2");
    assert_int_equal(c->pools[0].servers[1].weight, 2);
    assert_int_equal(c->pools[0].servers[1].line, 13);
    check_default_tuning(c); /* the example spells out these defaults */
    check_pool_defaults(&c->pools[0], false);
    conf_free(c);

    /* The health_check and passive examples from docs/configuration.md. */
    c = load_ok(LISTENERS "pools:\n"
                          "  - name: app\n"
                          "    servers:\n"
                          "      - address: 10.0.0.11:8000\n"
                          "      - address: 10.0.0.12:8000\n"
                          "    health_check:\n"
                          "      path: /healthz\n"
                          "      host: app.internal\n"
                          "      expect_status: [200, 204]\n"
                          "      expect_body: ok\n"
                          "      interval: 5s\n"
                          "      down_interval: 30s\n"
                          "      timeout: 1s\n"
                          "      rise: 2\n"
                          "      fall: 2\n"
                          "    passive:\n"
                          "      consecutive_failures: 3\n"
                          "      failure_status: [500, 502-504]\n"
                          "      ejection_time: 10s\n"
                          "      max_ejection_time: 2m\n"
                          "    retries: 1\n"
                          "    slow_start: 30s\n"
                          "    when_all_down: use-all\n");
    const struct conf_health_check *h = &c->pools[0].check;
    assert_true(h->enabled);
    assert_string_equal(h->path, "/healthz");
    assert_string_equal(h->host, "app.internal");
    assert_int_equal(status_count(&h->expect_status), 2);
    assert_int_equal(h->interval_ms, 5000);
    assert_int_equal(h->fast_interval_ms, 5000);
    assert_int_equal(h->down_interval_ms, 30000);
    assert_int_equal(h->timeout_ms, 1000);
    assert_int_equal(h->fall, 2);
    assert_int_equal(status_count(&c->pools[0].passive.failure_status), 4);
    assert_true(conf_status_in(&c->pools[0].passive.failure_status, 500));
    assert_false(conf_status_in(&c->pools[0].passive.failure_status, 501));
    assert_int_equal(c->pools[0].passive.max_ejection_time_ms, 120000);
    assert_int_equal(c->pools[0].passive.max_ejected_percent, 50);
    conf_free(c);
}

static void test_unused_pool_and_zero_weights(void **state)
{
    (void)state;
    struct conf *c = load_ok(LISTENERS POOLS "  - name: spare\n"
                                             "    servers:\n"
                                             "      - { address: 127.0.0.1:9005, weight: 0 }\n"
                                             "      - { address: 127.0.0.1:9006, weight: 0 }\n");
    assert_int_equal(c->npools, 2);
    assert_int_equal(c->pools[1].servers[0].weight, 0);
    conf_free(c);
}

static void test_empty_optional_values_keep_defaults(void **state)
{
    (void)state;
    struct conf *c = load_ok("threads:\ntimeouts:\nlimits: ~\n" MINIMAL);
    check_defaults(c);
    conf_free(c);
}

static void test_aliases(void **state)
{
    (void)state;
    struct conf *c = load_ok(LISTENERS "pools:\n"
                                       "  - name: app\n"
                                       "    servers: &s\n"
                                       "      - address: 127.0.0.1:9001\n"
                                       "  - name: copy\n"
                                       "    servers: *s\n");
    assert_int_equal(c->npools, 2);
    assert_string_equal(c->pools[1].servers[0].address, "127.0.0.1:9001");
    conf_free(c);
}

/* ---- durations, sizes, integers ---- */

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint32_t ms;
    } good[] = {{"500ms", 500},
                {"2s", 2000},
                {"1m", 60000},
                {"1h", 3600000},
                {"0", 0},
                {"0ms", 0},
                {"24h", 86400000},
                {"1440m", 86400000},
                {"007s", 7000},
                {"86400000ms", 86400000},
                {"86400s", 86400000}};
    static const char *const bad[] = {
        "5",          "-1s", "1.5s", "s",    "10x", "25h", "",   "99999999999999999999ms",
        "+1s",        " 1s", "1s ",  "1 s",  "1S",  "1sm", "ms", "00",
        "86400001ms", "1d",  "0x1s", "1e3ms"};
    uint32_t ms;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ms = 12345;
        if (conf_parse_duration(good[i].text, &ms) != 0)
            fail_msg("\"%s\" should parse", good[i].text);
        assert_int_equal(ms, good[i].ms);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (conf_parse_duration(bad[i], &ms) == 0)
            fail_msg("\"%s\" should not parse", bad[i]);
}

static void test_duration_messages(void **state)
{
    (void)state;
    assert_only_error("timeouts:\n  connect: 5\n" MINIMAL,
                      "t.yaml:2:12: timeouts.connect: a duration needs a unit, e.g. 500ms, 2s, 1m");
    assert_only_error("timeouts:\n  connect: 25h\n" MINIMAL,
                      "t.yaml:2:12: timeouts.connect: must be at most 24h");
    assert_only_error("timeouts:\n  connect: 0\n" MINIMAL,
                      "t.yaml:2:12: timeouts.connect: must be greater than 0");
    assert_only_error("timeouts:\n  connect: 1.5s\n" MINIMAL,
                      "t.yaml:2:12: timeouts.connect: expected a duration such as 500ms, 2s, 1m "
                      "or 1h, found \"1.5s\"");
    assert_only_error("timeouts:\n  connect: \"\"\n" MINIMAL,
                      "t.yaml:2:12: timeouts.connect: expected a duration such as 500ms, 2s, 1m "
                      "or 1h, found \"\"");
    assert_only_error("timeouts:\n  connect: 99999999999999999999ms\n" MINIMAL,
                      "t.yaml:2:12: timeouts.connect: must be at most 24h");
    /* shutdown_timeout may be 0: stop without waiting */
    struct conf *c = load_ok("shutdown_timeout: 0\n" MINIMAL);
    assert_int_equal(c->shutdown_timeout_ms, 0);
    conf_free(c);
}

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint32_t bytes;
    } good[] = {{"0", 0},
                {"16384", 16384},
                {"16k", 16384},
                {"16K", 16384},
                {"1m", 1048576},
                {"1M", 1048576},
                {"4095m", 4293918720u},
                {"4294967295", 4294967295u},
                {"4194303k", 4294966272u}};
    static const char *const bad[] = {
        "",   "k",  "-1",   "1.5k", "1g", "1kb", "4096m", "4294967296", "99999999999999999999",
        " 1", "1 ", "0x10", "+1"};
    uint32_t v;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (conf_parse_size(good[i].text, &v) != 0)
            fail_msg("\"%s\" should parse", good[i].text);
        assert_int_equal(v, good[i].bytes);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (conf_parse_size(bad[i], &v) == 0)
            fail_msg("\"%s\" should not parse", bad[i]);

    assert_only_error("limits:\n  max_header_bytes: 512\n" MINIMAL,
                      "t.yaml:2:21: limits.max_header_bytes: must be between 1024 and 1048576 "
                      "bytes");
    assert_only_error("limits:\n  max_header_bytes: 2m\n" MINIMAL,
                      "t.yaml:2:21: limits.max_header_bytes: must be between 1024 and 1048576 "
                      "bytes");
    assert_only_error("limits:\n  max_header_bytes: 16kb\n" MINIMAL,
                      "t.yaml:2:21: limits.max_header_bytes: expected a size such as 16384, 16k "
                      "or 1m, found \"16kb\"");
    struct conf *c = load_ok("limits:\n  max_header_bytes: 1m\n" MINIMAL);
    assert_int_equal(c->limits.max_header_bytes, 1048576);
    conf_free(c);
}

static void test_integers(void **state)
{
    (void)state;
    static const char *const bad[] = {"+5", "0x10", "1.5", "\"\"", "-1", "1e3", "5 apples"};
    char yaml[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(yaml, sizeof(yaml), "threads: %s\n" MINIMAL, bad[i]);
        assert_error(yaml, "t.yaml:1:10: threads: expected an integer, found \"");
    }
    assert_only_error("threads: 0\n" MINIMAL, "t.yaml:1:10: threads: must be between 1 and 1024");
    assert_only_error("threads: 1025\n" MINIMAL,
                      "t.yaml:1:10: threads: must be between 1 and 1024");
    assert_only_error("threads: 99999999999999999999999\n" MINIMAL,
                      "t.yaml:1:10: threads: must be between 1 and 1024");
    assert_only_error("limits: {max_connections: 0}\n" MINIMAL,
                      "t.yaml:1:27: limits.max_connections: must be between 1 and 10000000");
    assert_only_error("limits: {max_headers: 10001}\n" MINIMAL,
                      "t.yaml:1:23: limits.max_headers: must be between 1 and 10000");
    assert_only_error(LISTENERS "pools:\n  - name: app\n    servers:\n"
                                "      - { address: 127.0.0.1:9001, weight: 257 }\n",
                      "t.yaml:7:44: pools[0].servers[0].weight: must be between 0 and 256");
    struct conf *c = load_ok("threads: 1024\nlimits: {max_connections: 10000000}\n" MINIMAL);
    assert_int_equal(c->threads, 1024);
    assert_int_equal(c->limits.max_connections, 10000000);
    conf_free(c);
}

/* ---- schema errors ---- */

static void test_unknown_keys(void **state)
{
    (void)state;
    assert_only_error("listeners:\n  - name: web\n    bnd: 127.0.0.1:8080\n    pool: app\n" POOLS,
                      "t.yaml:2:5: listeners[0].bind: required key is missing\n"
                      "t.yaml:3:5: listeners[0].bnd: unknown key (expected one of: name, bind, "
                      "mode, pool, routes, request_headers, response_headers, merge_slashes, "
                      "forward_normalized_path, tls, proxy_protocol, h2c, http2)");
}

static void test_unknown_keys_every_level(void **state)
{
    (void)state;
    char *e = load_fail("treads: 2\n"
                        "timeouts: {conect: 1s}\n"
                        "limits: {max_conns: 1}\n" LISTENERS "pools:\n"
                        "  - name: app\n"
                        "    balanse: round-robin\n"
                        "    servers:\n"
                        "      - { address: 127.0.0.1:9001, wieght: 2 }\n");
    assert_int_equal(count_lines(e), 5);
    assert_true(has_line(e, "t.yaml:1:1: treads: unknown key (expected one of: threads, log_level, "
                            "shutdown_timeout, listeners, pools, timeouts, limits, http, admin, "
                            "access_log, error_log)"));
    assert_true(has_line(e, "t.yaml:2:12: timeouts.conect: unknown key (expected one of: "
                            "client_header, client_idle, client, connect, server, server_idle, "
                            "server_body_idle, tls_handshake, tunnel)"));
    assert_true(has_line(e, "t.yaml:3:10: limits.max_conns: unknown key (expected one of: "
                            "max_connections, max_header_bytes, max_headers)"));
    assert_true(has_line(
        e, "t.yaml:9:5: pools[0].balanse: unknown key (expected one of: name, "
           "balance, protocol, servers, discovery, max_servers, retries, retry_on_timeout, "
           "slow_start, when_all_down, "
           "ignore_client_abort, health_check, passive, tls, proxy_protocol, "
           "choices, hash_key, hash_key_required, hash_table_size, "
           "hash_balance_factor, ewma_decay, ewma_default_latency, sticky)"));
    assert_true(has_line(e, "t.yaml:11:36: pools[0].servers[0].wieght: unknown key (expected one "
                            "of: name, address, weight)"));
    free(e);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    assert_only_error("threads: 2\nthreads: 3\n" MINIMAL,
                      "t.yaml:2:1: threads: duplicate key (first given at line 1)");
    assert_only_error(LISTENERS "pools:\n  - name: app\n    name: other\n    servers:\n"
                                "      - address: 127.0.0.1:9001\n",
                      "t.yaml:6:5: pools[0].name: duplicate key (first given at line 5)");
}

static void test_missing_required(void **state)
{
    (void)state;
    assert_only_error(POOLS, "t.yaml:1:1: listeners: required key is missing");
    assert_only_error(LISTENERS, "t.yaml:1:1: pools: required key is missing");
    assert_only_error("listeners:\n  - pool: app\n" POOLS,
                      "t.yaml:2:5: listeners[0].bind: required key is missing");
    assert_only_error("listeners:\n  - bind: 127.0.0.1:8080\n" POOLS,
                      "t.yaml:2:5: listeners[0].pool: required key is missing (a listener "
                      "without routes sends everything to its pool)");
    assert_only_error(LISTENERS "pools:\n  - servers:\n      - address: 127.0.0.1:9001\n",
                      "t.yaml:5:5: pools[0].name: required key is missing");
    assert_only_error(LISTENERS "pools:\n  - name: app\n",
                      "t.yaml:5:5: pools[0].servers: required key is missing (unless "
                      "discovery finds the servers)");
    assert_only_error(LISTENERS "pools:\n  - name: app\n    servers:\n      - name: x\n",
                      "t.yaml:7:9: pools[0].servers[0].address: required key is missing");
    char *e = load_fail("");
    assert_string_equal(e, "t.yaml:1:1: listeners: required key is missing\n"
                           "t.yaml:1:1: pools: required key is missing");
    free(e);
    e = load_fail("# only a comment\n");
    assert_int_equal(count_lines(e), 2);
    free(e);
}

static void test_null_and_empty_values(void **state)
{
    (void)state;
    assert_only_error("listeners:\n" POOLS, "t.yaml:1:1: listeners: a value is required");
    assert_only_error("listeners:\n  - bind:\n    pool: app\n" POOLS,
                      "t.yaml:2:5: listeners[0].bind: a value is required");
    assert_only_error("listeners:\n  - bind: ~\n    pool: null\n" POOLS,
                      "t.yaml:2:5: listeners[0].bind: a value is required\n"
                      "t.yaml:3:11: listeners[0].pool: required key is missing (a listener "
                      "without routes sends everything to its pool)");
    assert_only_error("listeners: []\n" POOLS, "t.yaml:1:12: listeners: must not be empty");
    assert_only_error(LISTENERS "pools:\n  - name: app\n    servers: []\n",
                      "t.yaml:6:14: pools[0].servers: must not be empty without discovery");
    assert_only_error(LISTENERS "pools:\n  - name: \"\"\n    servers: [{address: 127.0.0.1:1}]\n",
                      "t.yaml:5:11: pools[0].name: must not be empty");
    assert_only_error("listeners:\n  - bind: ''\n    pool: app\n" POOLS,
                      "t.yaml:2:11: listeners[0].bind: \"\": expected host:port");
    /* A quoted "null" is a string, not a null. */
    assert_only_error("listeners:\n  - bind: 127.0.0.1:8080\n    pool: 'null'\n" POOLS,
                      "t.yaml:3:11: listeners[0].pool: pool \"null\" is not defined (pools: app)");
}

static void test_wrong_node_types(void **state)
{
    (void)state;
    assert_only_error("threads: {a: 1}\n" MINIMAL,
                      "t.yaml:1:10: threads: expected an integer, found a mapping");
    assert_only_error("log_level: [info]\n" MINIMAL,
                      "t.yaml:1:12: log_level: expected a log level, found a sequence");
    assert_only_error("timeouts: 5s\n" MINIMAL,
                      "t.yaml:1:11: timeouts: expected a mapping, found a scalar");
    assert_only_error("limits: []\n" MINIMAL,
                      "t.yaml:1:9: limits: expected a mapping, found a sequence");
    assert_only_error("listeners: {bind: 127.0.0.1:8080, pool: app}\n" POOLS,
                      "t.yaml:1:12: listeners: expected a sequence, found a mapping");
    assert_only_error("listeners: 127.0.0.1:8080\n" POOLS,
                      "t.yaml:1:12: listeners: expected a sequence, found a scalar");
    assert_only_error(LISTENERS "pools:\n  - name: app\n    servers:\n      - 127.0.0.1:9001\n",
                      "t.yaml:7:9: pools[0].servers[0]: expected a mapping, found a scalar");
    assert_only_error(LISTENERS "pools:\n  - name: app\n    servers:\n      -\n",
                      "t.yaml:7:8: pools[0].servers[0]: expected a mapping, found an empty value");
    assert_only_error(LISTENERS "pools:\n  - name: [app]\n    servers: [{address: 127.0.0.1:1}]\n",
                      "t.yaml:5:11: pools[0].name: expected a string, found a sequence");
    assert_only_error("listeners:\n  - bind: {host: x}\n    pool: app\n" POOLS,
                      "t.yaml:2:11: listeners[0].bind: expected an address (host:port), found a "
                      "mapping");
    assert_only_error("? [a, b]\n: 1\n" MINIMAL,
                      "t.yaml:1:3: a key must be a name, found a sequence");
    assert_only_error("- a\n- b\n", "t.yaml:1:1: expected a mapping, found a sequence");
    assert_only_error("just text\n", "t.yaml:1:1: expected a mapping, found a scalar");
}

static void test_enums(void **state)
{
    (void)state;
    assert_only_error("log_level: verbose\n" MINIMAL,
                      "t.yaml:1:12: log_level: expected one of: error, warn, info, debug, found "
                      "\"verbose\"");
    assert_only_error(LISTENERS "pools:\n  - name: app\n    balance: fastest\n"
                                "    servers: [{address: 127.0.0.1:1}]\n",
                      "t.yaml:6:14: pools[0].balance: expected one of: round-robin, least-conn, "
                      "random, hash, peak-ewma, found \"fastest\"");
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    char yaml[256];
    for (int i = 0; i < 4; i++) {
        snprintf(yaml, sizeof(yaml), "log_level: %s\n" MINIMAL, levels[i]);
        struct conf *c = load_ok(yaml);
        assert_int_equal(c->log_level, i);
        conf_free(c);
    }
}

/* The balancing keys: defaults, each form of hash_key, sticky, and every mistake with its
 * position. */
#define ONE_SERVER       "    servers: [{address: 127.0.0.1:1}]\n"
#define POOL_WITH(lines) LISTENERS "pools:\n  - name: app\n" lines ONE_SERVER

static void test_balance_keys(void **state)
{
    (void)state;
    struct conf *c = load_ok(MINIMAL);
    const struct conf_pool *p = &c->pools[0];
    assert_int_equal(p->balance, CONF_BALANCE_ROUND_ROBIN);
    assert_int_equal(p->choices, 2);
    assert_int_equal(p->hash_key, CONF_HASH_CLIENT_IP);
    assert_null(p->hash_key_name);
    assert_false(p->hash_key_required);
    assert_int_equal(p->hash_table_size, 65537);
    assert_int_equal(p->hash_balance_factor, 0);
    assert_int_equal(p->ewma_decay_ms, 10000);
    assert_int_equal(p->ewma_default_ms, 10);
    assert_false(p->sticky.enabled);
    conf_free(c);

    static const struct {
        const char *text;
        enum conf_hash_key kind;
        const char *name;
    } keys[] = {
        {"client_ip", CONF_HASH_CLIENT_IP, NULL},
        {"path", CONF_HASH_PATH, NULL},
        {"uri", CONF_HASH_URI, NULL},
        {"header:X-User", CONF_HASH_HEADER, "X-User"},
        {"cookie:session", CONF_HASH_COOKIE, "session"},
        {"query:id", CONF_HASH_QUERY, "id"},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char yaml[512];
        snprintf(yaml, sizeof(yaml),
                 POOL_WITH("    balance: hash\n    hash_key: \"%s\"\n"
                           "    hash_key_required: true\n    hash_table_size: 655373\n"
                           "    hash_balance_factor: 150\n"),
                 keys[i].text);
        c = load_ok(yaml);
        p = &c->pools[0];
        assert_int_equal(p->balance, CONF_BALANCE_HASH);
        assert_int_equal(p->hash_key, keys[i].kind);
        if (keys[i].name)
            assert_string_equal(p->hash_key_name, keys[i].name);
        else
            assert_null(p->hash_key_name);
        assert_true(p->hash_key_required);
        assert_int_equal(p->hash_table_size, 655373);
        assert_int_equal(p->hash_balance_factor, 150);
        conf_free(c);
    }

    c = load_ok(POOL_WITH("    balance: peak-ewma\n    choices: 3\n    ewma_decay: 2s\n"
                          "    ewma_default_latency: 50ms\n"
                          "    sticky: {cookie: SRV, max_age: 3600, secure: true, "
                          "samesite: none, path: /app}\n"));
    p = &c->pools[0];
    assert_int_equal(p->balance, CONF_BALANCE_PEAK_EWMA);
    assert_int_equal(p->choices, 3);
    assert_int_equal(p->ewma_decay_ms, 2000);
    assert_int_equal(p->ewma_default_ms, 50);
    assert_true(p->sticky.enabled);
    assert_string_equal(p->sticky.cookie, "SRV");
    assert_int_equal(p->sticky.max_age, 3600);
    assert_true(p->sticky.secure);
    assert_true(p->sticky.httponly); /* the default */
    assert_int_equal(p->sticky.samesite, CONF_SAMESITE_NONE);
    assert_string_equal(p->sticky.path, "/app");
    conf_free(c);
}

static void test_balance_key_errors(void **state)
{
    (void)state;
    assert_only_error(POOL_WITH("    hash_key: path\n"),
                      "t.yaml:6:15: pools[0].hash_key: applies only to balance: hash (this pool "
                      "balances with round-robin)");
    assert_only_error(POOL_WITH("    balance: least-conn\n    choices: 3\n"),
                      "t.yaml:7:14: pools[0].choices: applies only to balance: random or "
                      "peak-ewma (this pool balances with least-conn)");
    assert_only_error(POOL_WITH("    balance: random\n    ewma_decay: 1s\n"),
                      "t.yaml:7:17: pools[0].ewma_decay: applies only to balance: peak-ewma "
                      "(this pool balances with random)");
    assert_only_error(POOL_WITH("    balance: hash\n    hash_key: header\n"),
                      "t.yaml:7:15: pools[0].hash_key: header needs a name: header:NAME");
    assert_only_error(POOL_WITH("    balance: hash\n    hash_key: \"path:x\"\n"),
                      "t.yaml:7:15: pools[0].hash_key: path takes no name");
    assert_only_error(POOL_WITH("    balance: hash\n    hash_key: \"header:a b\"\n"),
                      "t.yaml:7:15: pools[0].hash_key: the name must be a token (letters, "
                      "digits and !#$%&'*+-.^_`|~)");
    assert_only_error(POOL_WITH("    balance: hash\n    hash_key: ip\n"),
                      "t.yaml:7:15: pools[0].hash_key: expected client_ip, path, uri, "
                      "header:NAME, cookie:NAME or query:NAME, found \"ip\"");
    assert_only_error(POOL_WITH("    balance: hash\n    hash_table_size: 65536\n"),
                      "t.yaml:7:22: pools[0].hash_table_size: must be a prime number, such as "
                      "65537 or 655373");
    assert_only_error(POOL_WITH("    balance: hash\n    hash_balance_factor: 90\n"),
                      "t.yaml:7:26: pools[0].hash_balance_factor: must be 0 (off) or above 100: "
                      "it is the percent of the average load a server may take, such as 125 or "
                      "150");
    assert_only_error(POOL_WITH("    balance: random\n    choices: 0\n"),
                      "t.yaml:7:14: pools[0].choices: must be between 1 and 10");
    assert_only_error(POOL_WITH("    sticky: {max_age: 60}\n"),
                      "t.yaml:6:13: pools[0].sticky.cookie: required key is missing");
    assert_only_error(POOL_WITH("    sticky: {cookie: SRV, samesite: none}\n"),
                      "t.yaml:6:37: pools[0].sticky.samesite: none needs secure: true (browsers "
                      "refuse SameSite=None cookies without Secure)");
    assert_only_error(POOL_WITH("    sticky: {cookie: \"a;b\"}\n"),
                      "t.yaml:6:22: pools[0].sticky.cookie: must be a token (letters, digits and "
                      "!#$%&'*+-.^_`|~), found \"a;b\"");
}

/* A tcp listener's connections carry no request: its pool can hash only the client's address,
 * and has no sticky cookie. */
static void test_balance_keys_tcp(void **state)
{
    (void)state;
    char *e =
        load_fail("listeners:\n"
                  "  - { bind: 127.0.0.1:6380, mode: tcp, pool: h }\n"
                  "  - { bind: 127.0.0.1:6381, mode: tcp, pool: s }\n"
                  "  - { bind: 127.0.0.1:6382, mode: tcp, pool: ok }\n"
                  "  - { bind: 127.0.0.1:8080, pool: h }\n"
                  "pools:\n"
                  "  - { name: h, balance: hash, hash_key: \"header:X\", "
                  "servers: [{address: 127.0.0.1:1}] }\n"
                  "  - { name: s, sticky: {cookie: SRV}, servers: [{address: 127.0.0.1:2}] }\n"
                  "  - { name: ok, balance: hash, servers: [{address: 127.0.0.1:3}] }\n");
    assert_int_equal(count_lines(e), 2);
    assert_true(has_line(e, "t.yaml:2:46: listeners[0].pool: pool h hashes hash_key: header:X, "
                            "which a tcp listener's connections do not have (only client_ip can "
                            "be hashed in TCP mode)"));
    assert_true(has_line(e, "t.yaml:3:46: listeners[1].pool: pool s has sticky cookies, which a "
                            "tcp listener's connections do not carry"));
    free(e);
}

static void test_bad_addresses(void **state)
{
    (void)state;
    assert_only_error("listeners:\n  - bind: 127.0.0.1:x\n    pool: app\n" POOLS,
                      "t.yaml:2:11: listeners[0].bind: \"127.0.0.1:x\": invalid port (expected "
                      "0-65535)");
    assert_only_error("listeners:\n  - bind: 127.0.0.1\n    pool: app\n" POOLS,
                      "t.yaml:2:11: listeners[0].bind: \"127.0.0.1\": expected host:port");
    assert_only_error(LISTENERS "pools:\n  - name: app\n    servers:\n"
                                "      - address: ::1:80\n",
                      "t.yaml:7:18: pools[0].servers[0].address: \"::1:80\": an IPv6 address "
                      "must be written in brackets: [::1]:8080");
    struct conf *c = load_ok("listeners:\n  - bind: :8080\n    pool: app\n" POOLS);
    assert_true(c->listeners[0].addr.any);
    conf_free(c);
}

/* ---- checks across entries ---- */

static void test_pool_reference(void **state)
{
    (void)state;
    assert_only_error("listeners:\n  - bind: 127.0.0.1:8080\n    pool: nope\n" POOLS
                      "  - name: other\n    servers: [{address: 127.0.0.1:9009}]\n",
                      "t.yaml:3:11: listeners[0].pool: pool \"nope\" is not defined (pools: app, "
                      "other)");
}

static void test_duplicate_names_and_addresses(void **state)
{
    (void)state;
    char *e = load_fail("listeners:\n"                                /* 1 */
                        "  - name: web\n"                             /* 2 */
                        "    bind: 127.0.0.1:8080\n"                  /* 3 */
                        "    pool: app\n"                             /* 4 */
                        "  - name: web\n"                             /* 5 */
                        "    bind: 127.0.0.1:8080\n"                  /* 6 */
                        "    pool: app\n"                             /* 7 */
                        "  - name: listener1\n"                       /* 8 */
                        "    bind: 127.0.0.1:8081\n"                  /* 9 */
                        "    pool: app\n"                             /* 10 */
                        "pools:\n"                                    /* 11 */
                        "  - name: app\n"                             /* 12 */
                        "    servers:\n"                              /* 13 */
                        "      - { name: a, address: 127.0.0.1:1 }\n" /* 14 */
                        "      - { name: a, address: 127.0.0.1:2 }\n" /* 15 */
                        "      - { address: 127.0.0.1:1 }\n"          /* 16: same address is fine */
                        "  - name: app\n"                             /* 17 */
                        "    servers: [{address: 127.0.0.1:3}]\n");
    assert_string_equal(e, "t.yaml:5:11: listeners[1].name: duplicate listener name \"web\" "
                           "(first used at line 2)\n"
                           "t.yaml:6:11: listeners[1].bind: address already used by another "
                           "listener (first used at line 3)\n"
                           "t.yaml:15:17: pools[0].servers[1].name: duplicate server name \"a\" "
                           "(first used at line 14)\n"
                           "t.yaml:17:11: pools[1].name: duplicate pool name \"app\" (first used "
                           "at line 12)");
    free(e);

    /* A default name can collide with an explicit one; the error points at the entry. */
    assert_only_error("listeners:\n"
                      "  - bind: 127.0.0.1:8080\n"
                      "    pool: app\n"
                      "  - name: listener1\n"
                      "    bind: 127.0.0.1:8081\n"
                      "    pool: app\n" POOLS,
                      "t.yaml:4:11: listeners[1].name: duplicate listener name \"listener1\" "
                      "(first used at line 2)");
    /* Default server names are the address: the same address twice without names collides. */
    assert_only_error(LISTENERS "pools:\n  - name: app\n    servers:\n"
                                "      - address: 127.0.0.1:1\n"
                                "      - address: 127.0.0.1:1\n",
                      "t.yaml:8:9: pools[0].servers[1].name: duplicate server name "
                      "\"127.0.0.1:1\" (first used at line 7)");
    /* Same pool name in different pools' servers is fine: names are per pool. */
    struct conf *c = load_ok(LISTENERS POOLS "  - name: b\n    servers:\n"
                                             "      - address: 127.0.0.1:9001\n");
    conf_free(c);
}

static void test_many_errors_in_document_order(void **state)
{
    (void)state;
    char *e = load_fail("threads: 0\n"
                        "log_level: loud\n"
                        "listeners:\n"
                        "  - bind: 127.0.0.1:99999\n"
                        "    pool: missing\n"
                        "  - bnd: x\n"
                        "pools:\n"
                        "  - name: app\n"
                        "    servers:\n"
                        "      - { address: 127.0.0.1:1, weight: -1 }\n"
                        "timeouts:\n"
                        "  connect: 3\n"
                        "limits:\n"
                        "  max_headers: lots\n");
    static const char *const expected[] = {
        "t.yaml:1:10: threads: ",
        "t.yaml:2:12: log_level: ",
        "t.yaml:4:11: listeners[0].bind: ",
        "t.yaml:5:11: listeners[0].pool: pool \"missing\" is not defined",
        "t.yaml:6:5: listeners[1].bnd: unknown key",
        "t.yaml:6:5: listeners[1].bind: required key is missing",
        "t.yaml:6:5: listeners[1].pool: required key is missing",
        "t.yaml:10:41: pools[0].servers[0].weight: expected an integer, found \"-1\"",
        "t.yaml:12:12: timeouts.connect: a duration needs a unit",
        "t.yaml:14:16: limits.max_headers: expected an integer",
    };
    size_t n = sizeof(expected) / sizeof(expected[0]);
    assert_int_equal(count_lines(e), (int)n);
    const char *line = e;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(line, expected[i], strlen(expected[i])) != 0)
            fail_msg("line %zu: expected prefix\n  %s\ngot:\n%s", i + 1, expected[i], e);
        line = strchr(line, '\n');
        line = line ? line + 1 : "";
    }
    free(e);
}

/* ---- health checks, passive detection, retries ---- */

/* A pool key, or a key of its health_check or passive mapping, after MINIMAL (lines 1-7): the
 * first line of body is line 9 (line 8 for POOL_KEY). */
#define POOL_KEY(body) MINIMAL body
#define HC(body)       MINIMAL "    health_check:\n" body
#define PASSIVE(body)  MINIMAL "    passive:\n" body

static void test_health_full(void **state)
{
    (void)state;
    struct conf *c = load_ok(MINIMAL /* lines 1-7 */
                             "    retries: 5\n"
                             "    slow_start: 10s\n"
                             "    when_all_down: use-all\n"
                             "    health_check:\n"
                             "      type: tcp\n"
                             "      method: OPTIONS\n"
                             "      path: /status?full=1&x=%20\n"
                             "      host: app.internal:8080\n"
                             "      expect_status: [200, 204, \"300-302\"]\n"
                             "      expect_body: \"ok\"\n"
                             "      port: 9101\n"
                             "      interval: 3s\n"
                             "      fast_interval: 500ms\n"
                             "      down_interval: 1m\n"
                             "      timeout: 750ms\n"
                             "      rise: 4\n"
                             "      fall: 7\n"
                             "    passive:\n"
                             "      consecutive_failures: 0\n"
                             "      failure_status: 500-599\n"
                             "      ejection_time: 10s\n"
                             "      max_ejection_time: 24h\n"
                             "      max_ejected_percent: 100\n"
                             "  - name: other\n"
                             "    servers: [{address: 127.0.0.1:9002}]\n");
    assert_int_equal(c->npools, 2);
    const struct conf_pool *p = &c->pools[0];
    const struct conf_health_check *h = &p->check;
    assert_int_equal(p->retries, 5);
    assert_int_equal(p->slow_start_ms, 10000);
    assert_int_equal(p->when_all_down, CONF_ALL_DOWN_USE_ALL);
    assert_true(h->enabled);
    assert_int_equal(h->type, CONF_CHECK_TCP);
    assert_string_equal(h->method, "OPTIONS");
    assert_string_equal(h->path, "/status?full=1&x=%20");
    assert_string_equal(h->host, "app.internal:8080");
    assert_int_equal(status_count(&h->expect_status), 5);
    assert_true(conf_status_in(&h->expect_status, 200));
    assert_true(conf_status_in(&h->expect_status, 204));
    assert_true(conf_status_in(&h->expect_status, 300));
    assert_true(conf_status_in(&h->expect_status, 301));
    assert_true(conf_status_in(&h->expect_status, 302));
    assert_false(conf_status_in(&h->expect_status, 201));
    assert_false(conf_status_in(&h->expect_status, 303));
    assert_string_equal(h->expect_body, "ok");
    assert_int_equal(h->port, 9101);
    assert_int_equal(h->interval_ms, 3000);
    assert_int_equal(h->fast_interval_ms, 500);
    assert_int_equal(h->down_interval_ms, 60000);
    assert_int_equal(h->timeout_ms, 750);
    assert_int_equal(h->rise, 4);
    assert_int_equal(h->fall, 7);
    assert_int_equal(p->passive.consecutive_failures, 0);
    assert_status_range(&p->passive.failure_status, 500, 599);
    assert_int_equal(p->passive.ejection_time_ms, 10000);
    assert_int_equal(p->passive.max_ejection_time_ms, 86400000);
    assert_int_equal(p->passive.max_ejected_percent, 100);
    /* The next pool is untouched by the first one's settings. */
    check_pool_defaults(&c->pools[1], false);
    conf_free(c);

    /* Every tchar in a method; every allowed character in a host; the other ends of the ranges. */
    c = load_ok(HC("      method: \"X!#$%&'*+-.^_`|~9z\"\n"
                   "      host: \"[::1]:80-._~%41!$&'()*+,;=Zz\"\n"
                   "      path: \"/!~\"\n"
                   "      port: 1\n"
                   "      interval: 1h\n"
                   "      fast_interval: 10ms\n"
                   "      down_interval: 1h\n"
                   "      timeout: 10ms\n"
                   "      rise: 100\n"
                   "      fall: 1\n") "    retries: 0\n    slow_start: 1h\n"
                                      "    when_all_down: reject\n"
                                      "    passive:\n"
                                      "      consecutive_failures: 1000\n"
                                      "      ejection_time: 1ms\n"
                                      "      max_ejection_time: 1ms\n"
                                      "      max_ejected_percent: 0\n");
    p = &c->pools[0];
    h = &p->check;
    assert_string_equal(h->method, "X!#$%&'*+-.^_`|~9z");
    assert_string_equal(h->host, "[::1]:80-._~%41!$&'()*+,;=Zz");
    assert_string_equal(h->path, "/!~");
    assert_int_equal(h->type, CONF_CHECK_HTTP);
    assert_int_equal(h->port, 1);
    assert_int_equal(h->interval_ms, 3600000);
    assert_int_equal(h->fast_interval_ms, 10);
    assert_int_equal(h->down_interval_ms, 3600000);
    assert_int_equal(h->timeout_ms, 10);
    assert_int_equal(h->rise, 100);
    assert_int_equal(h->fall, 1);
    assert_int_equal(p->retries, 0);
    assert_int_equal(p->slow_start_ms, 3600000);
    assert_int_equal(p->when_all_down, CONF_ALL_DOWN_REJECT);
    assert_int_equal(p->passive.consecutive_failures, 1000);
    assert_int_equal(p->passive.ejection_time_ms, 1);
    assert_int_equal(p->passive.max_ejection_time_ms, 1);
    assert_int_equal(p->passive.max_ejected_percent, 0);
    assert_status_range(&p->passive.failure_status, 502, 504);
    conf_free(c);

    /* tcp checks accept the http-only keys without complaint; port 65535; retries 10. */
    c = load_ok(HC("      type: tcp\n"
                   "      port: 65535\n"
                   "      expect_status: 204\n") "    retries: 10\n");
    assert_int_equal(c->pools[0].check.type, CONF_CHECK_TCP);
    assert_int_equal(c->pools[0].check.port, 65535);
    assert_status_range(&c->pools[0].check.expect_status, 204, 204);
    assert_int_equal(c->pools[0].retries, 10);
    conf_free(c);

    /* grpc: service, host and port; the http checks' request keys are refused, and service
     * belongs to grpc checks only */
    c = load_ok(HC("      type: grpc\n"
                   "      service: pkg.Echo\n"
                   "      host: api.internal\n"
                   "      port: 9090\n"));
    assert_int_equal(c->pools[0].check.type, CONF_CHECK_GRPC);
    assert_string_equal(c->pools[0].check.service, "pkg.Echo");
    assert_string_equal(c->pools[0].check.host, "api.internal");
    conf_free(c);
    c = load_ok(HC("      type: grpc\n"));
    assert_null(c->pools[0].check.service); /* the server as a whole */
    conf_free(c);
    char *e = load_fail(HC("      type: grpc\n      path: /health\n"));
    assert_string_equal(e, "t.yaml:10:13: pools[0].health_check.path: is for http checks (a grpc "
                           "check asks grpc.health.v1.Health/Check)");
    free(e);
    e = load_fail(HC("      service: pkg.Echo\n"));
    assert_string_equal(e, "t.yaml:9:16: pools[0].health_check.service: is for grpc checks "
                           "(type: grpc)");
    free(e);
    e = load_fail(HC("      type: grpc\n      service: \"a b\"\n"));
    assert_string_equal(e, "t.yaml:10:16: pools[0].health_check.service: must be visible ASCII "
                           "characters (a gRPC service name, e.g. pkg.Service), found \"a b\"");
    free(e);
}

static void test_health_defaults(void **state)
{
    (void)state;
    /* Without the mappings, with empty ones, and with empty values (which keep checks off). */
    struct conf *c = load_ok(MINIMAL "  - name: b\n    servers: [{address: 127.0.0.1:9002}]\n");
    check_pool_defaults(&c->pools[0], false);
    check_pool_defaults(&c->pools[1], false);
    assert_ptr_not_equal(c->pools[0].check.path, c->pools[1].check.path); /* each its own copy */
    conf_free(c);
    c = load_ok(MINIMAL "    health_check: {}\n    passive: {}\n");
    check_pool_defaults(&c->pools[0], true);
    conf_free(c);
    c = load_ok(MINIMAL "    health_check:\n    passive: ~\n    retries:\n    slow_start:\n"
                        "    when_all_down:\n");
    check_pool_defaults(&c->pools[0], false);
    conf_free(c);
    c = load_ok(HC("      expect_status:\n      port: ~\n      interval:\n") "    passive:\n      "
                                                                             "ejection_time:\n");
    check_pool_defaults(&c->pools[0], true);
    conf_free(c);

    /* fast_interval, down_interval and timeout follow the interval unless given. */
    static const struct {
        const char *keys;
        uint32_t interval, fast, down, timeout;
    } derived[] = {
        {"interval: 1s", 1000, 1000, 1000, 1000},
        {"interval: 5s", 5000, 5000, 5000, 2000},
        {"interval: 2s", 2000, 2000, 2000, 2000},
        {"interval: 1999ms", 1999, 1999, 1999, 1999},
        {"interval: 10ms", 10, 10, 10, 10},
        {"interval: 1h", 3600000, 3600000, 3600000, 2000},
        {"interval: 5s, fast_interval: 1s", 5000, 1000, 5000, 2000},
        {"interval: 1s, down_interval: 30s, timeout: 5s", 1000, 1000, 30000, 5000},
        {"fast_interval: 100ms", 2000, 100, 2000, 2000},
        {"timeout: 3s", 2000, 2000, 2000, 3000},
    };
    char yaml[512];
    for (size_t i = 0; i < sizeof(derived) / sizeof(derived[0]); i++) {
        snprintf(yaml, sizeof(yaml), MINIMAL "    health_check: {%s}\n", derived[i].keys);
        c = load_ok(yaml);
        const struct conf_health_check *h = &c->pools[0].check;
        if (h->interval_ms != derived[i].interval || h->fast_interval_ms != derived[i].fast ||
            h->down_interval_ms != derived[i].down || h->timeout_ms != derived[i].timeout)
            fail_msg("{%s}: got %u %u %u %u", derived[i].keys, h->interval_ms, h->fast_interval_ms,
                     h->down_interval_ms, h->timeout_ms);
        conf_free(c);
    }

    /* The quick-start pool gets the same defaults. */
    char *err = NULL;
    c = conf_new();
    assert_non_null(c);
    assert_int_equal(conf_add_listen_flag(c, "127.0.0.1:8080", &err), 0);
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9001", &err), 0);
    assert_int_equal(conf_finish(c, &err), 0);
    check_pool_defaults(&c->pools[0], false);
    conf_free(c);
}

static void test_status_sets(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        unsigned count, in[3], out[3];
    } forms[] = {
        {"200", 1, {200, 200, 200}, {199, 201, 0}},
        {"\"200-299\"", 100, {200, 250, 299}, {199, 300, 0}},
        {"200-299", 100, {200, 250, 299}, {199, 300, 0}},
        {"'404'", 1, {404, 404, 404}, {403, 405, 0}},
        {"[200, 204, \"300-399\"]", 102, {204, 300, 399}, {201, 299, 400}},
        {"[500-599, 550-560, 503]", 100, {500, 555, 599}, {499, 600, 0}}, /* overlaps: a union */
        {"100", 1, {100, 100, 100}, {99, 101, 0}},
        {"599", 1, {599, 599, 599}, {598, 600, 0}},
        {"100-599", 500, {100, 350, 599}, {99, 600, 639}},
        {"100-100", 1, {100, 100, 100}, {99, 101, 0}},
        {"[599]", 1, {599, 599, 599}, {598, 600, 0}},
        {"- 301\n        - 302", 2, {301, 302, 302}, {300, 303, 0}}, /* block sequence */
        {"0200", 1, {200, 200, 200}, {199, 201, 0}},
    };
    char yaml[512];
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        for (int which = 0; which < 2; which++) {
            snprintf(yaml, sizeof(yaml),
                     which ? MINIMAL "    passive:\n      failure_status:\n        %s\n"
                           : MINIMAL "    health_check:\n      expect_status:\n        %s\n",
                     forms[i].value);
            struct conf *c = load_ok(yaml);
            const struct conf_status_set *set =
                which ? &c->pools[0].passive.failure_status : &c->pools[0].check.expect_status;
            if (status_count(set) != forms[i].count)
                fail_msg("%s: %u codes, expected %u", forms[i].value, status_count(set),
                         forms[i].count);
            for (int j = 0; j < 3; j++) {
                if (!conf_status_in(set, forms[i].in[j]))
                    fail_msg("%s: %u should be in the set", forms[i].value, forms[i].in[j]);
                if (conf_status_in(set, forms[i].out[j]))
                    fail_msg("%s: %u should not be in the set", forms[i].value, forms[i].out[j]);
            }
            conf_free(c);
        }
    }

    /* conf_status_in never looks past the bitmap, whatever the bits say. */
    struct conf_status_set all;
    memset(&all, 0xff, sizeof(all));
    assert_true(conf_status_in(&all, 0));
    assert_true(conf_status_in(&all, 639));
    assert_false(conf_status_in(&all, 640));
    assert_false(conf_status_in(&all, 1000));
    assert_false(conf_status_in(&all, 65535));
    assert_false(conf_status_in(&all, UINT32_MAX));
    struct conf_status_set none = {{0}};
    assert_int_equal(status_count(&none), 0);
}

static void test_status_set_errors(void **state)
{
    (void)state;
    /* The example from the documentation. */
    assert_only_error(HC("      expect_status: 300-200\n"),
                      "t.yaml:9:22: pools[0].health_check.expect_status: invalid status range "
                      "\"300-200\"");
    assert_only_error(HC("      expect_status: \"300-200\"\n"),
                      "t.yaml:9:22: pools[0].health_check.expect_status: invalid status range "
                      "\"300-200\"");
    assert_only_error(HC("      expect_status: 201-200\n"),
                      "t.yaml:9:22: pools[0].health_check.expect_status: invalid status range "
                      "\"201-200\"");
    assert_only_error(HC("      expect_status: 600\n"),
                      "t.yaml:9:22: pools[0].health_check.expect_status: invalid status code "
                      "\"600\" (codes are 100-599)");
    assert_only_error(HC("      expect_status: 99\n"),
                      "t.yaml:9:22: pools[0].health_check.expect_status: invalid status code "
                      "\"99\" (codes are 100-599)");
    assert_only_error(HC("      expect_status: 99999999999999999999\n"),
                      "t.yaml:9:22: pools[0].health_check.expect_status: invalid status code "
                      "\"99999999999999999999\" (codes are 100-599)");
    assert_only_error(HC("      expect_status: 50-700\n"),
                      "t.yaml:9:22: pools[0].health_check.expect_status: invalid status range "
                      "\"50-700\" (codes are 100-599)");
    assert_only_error(HC("      expect_status: 200-600\n"),
                      "t.yaml:9:22: pools[0].health_check.expect_status: invalid status range "
                      "\"200-600\" (codes are 100-599)");
    static const char *const bad[] = {"ok",       "2xx",  "200-", "-200",        "\"200 - 299\"",
                                      "\" 200\"", "2e2",  "+200", "200-299-399", "\"\"",
                                      "200.0",    "0x100"};
    char yaml[512], expected[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(yaml, sizeof(yaml), HC("      expect_status: %s\n"), bad[i]);
        char *e = load_fail(yaml);
        assert_int_equal(count_lines(e), 1);
        snprintf(expected, sizeof(expected),
                 "t.yaml:9:22: pools[0].health_check.expect_status: expected a status code such "
                 "as 200 or a range such as 200-399, found \"");
        if (strncmp(e, expected, strlen(expected)) != 0)
            fail_msg("%s: got\n%s", bad[i], e);
        free(e);
    }
    /* In a list each entry has its own path and position, and every bad one is reported. */
    assert_only_error(HC("      expect_status: [200, x, \"300-200\", 204]\n"),
                      "t.yaml:9:28: pools[0].health_check.expect_status[1]: expected a status "
                      "code such as 200 or a range such as 200-399, found \"x\"\n"
                      "t.yaml:9:31: pools[0].health_check.expect_status[2]: invalid status range "
                      "\"300-200\"");
    assert_only_error(HC("      expect_status:\n        - 200\n        - 700\n"),
                      "t.yaml:11:11: pools[0].health_check.expect_status[1]: invalid status code "
                      "\"700\" (codes are 100-599)");
    assert_only_error(HC("      expect_status: []\n"),
                      "t.yaml:9:22: pools[0].health_check.expect_status: must not be empty");
    assert_only_error(HC("      expect_status: {200: ok}\n"),
                      "t.yaml:9:22: pools[0].health_check.expect_status: expected a status code, "
                      "a range such as 200-399, or a list of them, found a mapping");
    assert_only_error(HC("      expect_status: [[200]]\n"),
                      "t.yaml:9:23: pools[0].health_check.expect_status[0]: expected a status "
                      "code or a range such as 200-399, found a sequence");
    assert_only_error(HC("      expect_status: [200, ~]\n"),
                      "t.yaml:9:28: pools[0].health_check.expect_status[1]: expected a status "
                      "code or a range such as 200-399, found an empty value");
    assert_only_error(PASSIVE("      failure_status: [502, 503-501]\n"),
                      "t.yaml:9:29: pools[0].passive.failure_status[1]: invalid status range "
                      "\"503-501\"");
    assert_only_error(PASSIVE("      failure_status: 0\n"),
                      "t.yaml:9:23: pools[0].passive.failure_status: invalid status code \"0\" "
                      "(codes are 100-599)");
}

static void test_health_errors(void **state)
{
    (void)state;
    static const struct {
        const char *yaml, *expected;
    } cases[] = {
        /* the pool's own keys */
        {POOL_KEY("    retries: 11\n"), "t.yaml:8:14: pools[0].retries: must be between 0 and 10"},
        {POOL_KEY("    retries: -1\n"),
         "t.yaml:8:14: pools[0].retries: expected an integer, found \"-1\""},
        {POOL_KEY("    slow_start: 2h\n"), "t.yaml:8:17: pools[0].slow_start: must be at most 1h"},
        {POOL_KEY("    slow_start: 61m\n"), "t.yaml:8:17: pools[0].slow_start: must be at most 1h"},
        {POOL_KEY("    slow_start: 10\n"),
         "t.yaml:8:17: pools[0].slow_start: a duration needs a unit, e.g. 500ms, 2s, 1m"},
        {POOL_KEY("    when_all_down: panic\n"),
         "t.yaml:8:20: pools[0].when_all_down: expected one of: reject, use-all, found \"panic\""},
        {POOL_KEY("    when_all_down: [reject]\n"),
         "t.yaml:8:20: pools[0].when_all_down: expected reject or use-all, found a sequence"},
        {POOL_KEY("    health_check: yes\n"),
         "t.yaml:8:19: pools[0].health_check: expected a mapping, found a scalar"},
        {POOL_KEY("    passive: []\n"),
         "t.yaml:8:14: pools[0].passive: expected a mapping, found a sequence"},
        /* health_check */
        {HC("      intervl: 2s\n"),
         "t.yaml:9:7: pools[0].health_check.intervl: unknown key (expected one of: type, method, "
         "path, host, expect_status, expect_body, port, service, interval, fast_interval, "
         "down_interval, timeout, rise, fall)"},
        {HC("      rise: 2\n      rise: 3\n"),
         "t.yaml:10:7: pools[0].health_check.rise: duplicate key (first given at line 9)"},
        {HC("      type: udp\n"),
         "t.yaml:9:13: pools[0].health_check.type: expected one of: http, tcp, grpc, found "
         "\"udp\""},
        {HC("      type: {}\n"),
         "t.yaml:9:13: pools[0].health_check.type: expected a check type, found a mapping"},
        {HC("      method: \"GE T\"\n"),
         "t.yaml:9:15: pools[0].health_check.method: must be a token (letters, digits and "
         "!#$%&'*+-.^_`|~), found \"GE T\""},
        {HC("      method: GET/1\n"),
         "t.yaml:9:15: pools[0].health_check.method: must be a token (letters, digits and "
         "!#$%&'*+-.^_`|~), found \"GET/1\""},
        {HC("      method: \"\"\n"),
         "t.yaml:9:15: pools[0].health_check.method: must not be empty"},
        {HC("      path: healthz\n"),
         "t.yaml:9:13: pools[0].health_check.path: must start with '/', found \"healthz\""},
        {HC("      path: \"/a b\"\n"),
         "t.yaml:9:13: pools[0].health_check.path: must contain only visible ASCII characters (no "
         "spaces), found \"/a b\""},
        {HC("      path: \"/a\\tb\"\n"),
         "t.yaml:9:13: pools[0].health_check.path: must contain only visible ASCII characters (no "
         "spaces), found \"/a\\x09b\""},
        {HC("      path: \"/caf\xc3\xa9\"\n"),
         "t.yaml:9:13: pools[0].health_check.path: must contain only visible ASCII characters (no "
         "spaces), found \"/caf\xc3\xa9\""},
        {HC("      path: \"/\\x7f\"\n"),
         "t.yaml:9:13: pools[0].health_check.path: must contain only visible ASCII characters (no "
         "spaces), found \"/\\x7f\""},
        {HC("      path: [/]\n"),
         "t.yaml:9:13: pools[0].health_check.path: expected a string, found a sequence"},
        {HC("      path: \"\"\n"), "t.yaml:9:13: pools[0].health_check.path: must not be empty"},
        {HC("      host: \"a b\"\n"),
         "t.yaml:9:13: pools[0].health_check.host: must contain only letters, digits and "
         "-._~%!$&'()*+,;=:[], found \"a b\""},
        {HC("      host: a/b\n"),
         "t.yaml:9:13: pools[0].health_check.host: must contain only letters, digits and "
         "-._~%!$&'()*+,;=:[], found \"a/b\""},
        {HC("      host: \"\"\n"), "t.yaml:9:13: pools[0].health_check.host: must not be empty"},
        {HC("      expect_body: \"\"\n"),
         "t.yaml:9:20: pools[0].health_check.expect_body: must not be empty"},
        {HC("      port: 0\n"),
         "t.yaml:9:13: pools[0].health_check.port: must be between 1 and 65535"},
        {HC("      port: 65536\n"),
         "t.yaml:9:13: pools[0].health_check.port: must be between 1 and 65535"},
        {HC("      interval: 5ms\n"),
         "t.yaml:9:17: pools[0].health_check.interval: must be at least 10ms"},
        {HC("      interval: 0\n"),
         "t.yaml:9:17: pools[0].health_check.interval: must be at least 10ms"},
        {HC("      interval: 2h\n"),
         "t.yaml:9:17: pools[0].health_check.interval: must be at most 1h"},
        {HC("      interval: 25h\n"),
         "t.yaml:9:17: pools[0].health_check.interval: must be at most 1h"},
        {HC("      interval: 3600001ms\n"),
         "t.yaml:9:17: pools[0].health_check.interval: must be at most 1h"},
        {HC("      interval: 5\n"),
         "t.yaml:9:17: pools[0].health_check.interval: a duration needs a unit, e.g. 500ms, 2s, "
         "1m"},
        {HC("      interval: 1.5s\n"),
         "t.yaml:9:17: pools[0].health_check.interval: expected a duration such as 500ms, 2s, 1m "
         "or 1h, found \"1.5s\""},
        {HC("      fast_interval: 9ms\n"),
         "t.yaml:9:22: pools[0].health_check.fast_interval: must be at least 10ms"},
        {HC("      down_interval: 2h\n"),
         "t.yaml:9:22: pools[0].health_check.down_interval: must be at most 1h"},
        {HC("      timeout: 0\n"),
         "t.yaml:9:16: pools[0].health_check.timeout: must be at least 10ms"},
        {HC("      timeout: 90m\n"),
         "t.yaml:9:16: pools[0].health_check.timeout: must be at most 1h"},
        {HC("      rise: 0\n"),
         "t.yaml:9:13: pools[0].health_check.rise: must be between 1 and 100"},
        {HC("      fall: 101\n"),
         "t.yaml:9:13: pools[0].health_check.fall: must be between 1 and 100"},
        /* passive */
        {PASSIVE("      ejection: 1s\n"),
         "t.yaml:9:7: pools[0].passive.ejection: unknown key (expected one of: "
         "consecutive_failures, failure_status, ejection_time, max_ejection_time, "
         "max_ejected_percent)"},
        {PASSIVE("      consecutive_failures: 1001\n"),
         "t.yaml:9:29: pools[0].passive.consecutive_failures: must be between 0 and 1000"},
        {PASSIVE("      max_ejected_percent: 101\n"),
         "t.yaml:9:28: pools[0].passive.max_ejected_percent: must be between 0 and 100"},
        {PASSIVE("      ejection_time: 0\n"),
         "t.yaml:9:22: pools[0].passive.ejection_time: must be greater than 0"},
        {PASSIVE("      ejection_time: 2h\n"),
         "t.yaml:9:22: pools[0].passive.ejection_time: must be at most 1h"},
        {PASSIVE("      max_ejection_time: 0ms\n"),
         "t.yaml:9:26: pools[0].passive.max_ejection_time: must be greater than 0"},
        {PASSIVE("      max_ejection_time: 25h\n"),
         "t.yaml:9:26: pools[0].passive.max_ejection_time: must be at most 24h"},
        /* the one check across keys: the maximum is at least the ejection time */
        {PASSIVE("      max_ejection_time: 10s\n"),
         "t.yaml:9:26: pools[0].passive.max_ejection_time: must be at least ejection_time (30s)"},
        {PASSIVE("      ejection_time: 1m\n      max_ejection_time: 59999ms\n"),
         "t.yaml:10:26: pools[0].passive.max_ejection_time: must be at least ejection_time (1m)"},
        {PASSIVE("      ejection_time: 301s\n"),
         "t.yaml:9:22: pools[0].passive.ejection_time: must be at most max_ejection_time (5m, the "
         "default)"},
        /* a value already refused is not compared again */
        {PASSIVE("      ejection_time: 400s\n      max_ejection_time: 25h\n"),
         "t.yaml:10:26: pools[0].passive.max_ejection_time: must be at most 24h"},
        {PASSIVE("      ejection_time: 2h\n      max_ejection_time: 1m\n"),
         "t.yaml:9:22: pools[0].passive.ejection_time: must be at most 1h"},
        /* the second pool's path */
        {MINIMAL "  - name: b\n    servers: [{address: 127.0.0.1:9002}]\n"
                 "    health_check: {rise: 0}\n",
         "t.yaml:10:26: pools[1].health_check.rise: must be between 1 and 100"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *e = load_fail(cases[i].yaml);
        if (strcmp(e, cases[i].expected) != 0)
            fail_msg("case %zu: expected\n  %s\ngot:\n  %s", i, cases[i].expected, e);
        free(e);
    }

    /* Equal ejection times are fine; errors in several keys are all reported, in order. */
    struct conf *c = load_ok(PASSIVE("      ejection_time: 1m\n      max_ejection_time: 60s\n"));
    conf_free(c);
    char *e = load_fail(HC("      type: x\n      rise: 0\n      path: y\n") "    retries: 99\n");
    assert_string_equal(e, "t.yaml:9:13: pools[0].health_check.type: expected one of: http, tcp, "
                           "grpc, found \"x\"\n"
                           "t.yaml:10:13: pools[0].health_check.rise: must be between 1 and 100\n"
                           "t.yaml:11:13: pools[0].health_check.path: must start with '/', found "
                           "\"y\"\n"
                           "t.yaml:12:14: pools[0].retries: must be between 0 and 10");
    free(e);
}

/* ---- admin listener, access log, error log ---- */

/* These keys after MINIMAL (lines 1-7): the first line of body is line 8. */
#define OPS(body) MINIMAL body

static void check_ops_defaults(const struct conf *c)
{
    assert_false(c->admin.enabled);
    assert_null(c->admin.bind);
    assert_int_equal(c->admin.addr.len, 0);
    assert_null(c->admin.token);
    assert_false(c->access_log.enabled);
    assert_null(c->access_log.path);
    assert_int_equal(c->access_log.format, CONF_LOG_JSON);
    assert_null(c->error_log);
}

static void test_ops_full(void **state)
{
    (void)state;
    struct conf *c = load_ok(OPS("admin:\n"
                                 "  bind: 127.0.0.1:9901\n"
                                 "  token: \"s3cret-T0ken_.~+/=:\"\n"
                                 "access_log:\n"
                                 "  path: /var/log/fulcrum/access.log\n"
                                 "  format: combined\n"
                                 "error_log: /var/log/fulcrum/error.log\n"));
    assert_true(c->admin.enabled);
    assert_string_equal(c->admin.bind, "127.0.0.1:9901");
    assert_int_equal(c->admin.addr.ss.ss_family, AF_INET);
    assert_int_equal(port_of(&c->admin.addr), 9901);
    assert_string_equal(c->admin.token, "s3cret-T0ken_.~+/=:");
    assert_int_equal(c->admin.nallowed_hosts, 0);
    assert_true(c->access_log.enabled);
    assert_string_equal(c->access_log.path, "/var/log/fulcrum/access.log");
    assert_int_equal(c->access_log.format, CONF_LOG_COMBINED);
    assert_string_equal(c->error_log, "/var/log/fulcrum/error.log");
    check_defaults(c);
    conf_free(c);

    /* The special names, IPv6, and a relative path into a directory that need not exist yet. */
    c = load_ok(OPS("admin: {bind: '[::1]:9902'}\n"
                    "access_log: {path: stdout, format: json}\n"
                    "error_log: stderr\n"));
    assert_true(c->admin.enabled);
    assert_int_equal(c->admin.addr.ss.ss_family, AF_INET6);
    assert_int_equal(port_of(&c->admin.addr), 9902);
    assert_null(c->admin.token);
    assert_string_equal(c->access_log.path, "stdout");
    assert_int_equal(c->access_log.format, CONF_LOG_JSON);
    assert_string_equal(c->error_log, "stderr");
    conf_free(c);

    c = load_ok(OPS("access_log: {path: stderr}\nerror_log: no/such/dir/e.log\n"));
    assert_false(c->admin.enabled);
    assert_true(c->access_log.enabled);
    assert_string_equal(c->access_log.path, "stderr");
    assert_int_equal(c->access_log.format, CONF_LOG_JSON); /* the default */
    assert_string_equal(c->error_log, "no/such/dir/e.log");
    conf_free(c);

    c = load_ok(OPS("admin:\n  allowed_hosts: [lb.example.com, 10.0.0.5, '[2001:db8::1]']\n"));
    assert_int_equal(c->admin.nallowed_hosts, 3);
    assert_string_equal(c->admin.allowed_hosts[0], "lb.example.com");
    assert_string_equal(c->admin.allowed_hosts[1], "10.0.0.5");
    assert_string_equal(c->admin.allowed_hosts[2], "[2001:db8::1]");
    conf_free(c);

    /* The example in docs/configuration.md. */
    c = load_ok(OPS("admin:\n"
                    "  bind: 127.0.0.1:9900\n"
                    "  token: \"s3cret\"\n"
                    "access_log:\n"
                    "  path: /var/log/fulcrum/access.log\n"
                    "  format: json\n"
                    "error_log: /var/log/fulcrum/error.log\n"));
    assert_string_equal(c->admin.bind, "127.0.0.1:9900");
    assert_string_equal(c->admin.token, "s3cret");
    assert_int_equal(c->access_log.format, CONF_LOG_JSON);
    conf_free(c);
}

static void test_ops_defaults(void **state)
{
    (void)state;
    struct conf *c = load_ok(MINIMAL);
    check_ops_defaults(c);
    conf_free(c);
    c = conf_new();
    assert_non_null(c);
    check_ops_defaults(c);
    conf_free(c);

    /* Empty values leave everything off, as for health_check. */
    c = load_ok(OPS("admin:\naccess_log: ~\nerror_log:\n"));
    check_ops_defaults(c);
    conf_free(c);
    c = load_ok(OPS("admin: null\naccess_log:\nerror_log: ~\n"));
    check_ops_defaults(c);
    conf_free(c);

    /* A mapping turns the admin listener on; a missing or empty bind is the default address. */
    static const char *const on[] = {
        OPS("admin: {}\n"),
        OPS("admin: {bind: ~}\n"),
        OPS("admin:\n  bind:\n"),
        OPS("admin:\n  token: abc\n"),
    };
    for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
        c = load_ok(on[i]);
        assert_true(c->admin.enabled);
        assert_string_equal(c->admin.bind, "127.0.0.1:9900");
        assert_int_equal(c->admin.addr.ss.ss_family, AF_INET);
        assert_false(c->admin.addr.any);
        assert_int_equal(port_of(&c->admin.addr), 9900);
        if (i == 3)
            assert_string_equal(c->admin.token, "abc");
        else
            assert_null(c->admin.token);
        assert_false(c->access_log.enabled);
        conf_free(c);
    }

    /* format is optional; a quoted "null" is a file name, not an empty value. */
    c = load_ok(OPS("access_log:\n  path: a.log\n  format:\nerror_log: 'null'\n"));
    assert_true(c->access_log.enabled);
    assert_string_equal(c->access_log.path, "a.log");
    assert_int_equal(c->access_log.format, CONF_LOG_JSON);
    assert_string_equal(c->error_log, "null");
    conf_free(c);
}

static void test_ops_errors(void **state)
{
    (void)state;
    static const char token_why[] = "must contain only visible ASCII characters, no spaces or "
                                    "control characters (it is sent in an HTTP header)";
    static const struct {
        const char *yaml, *expected;
    } cases[] = {
        /* admin */
        {OPS("admin: yes\n"), "t.yaml:8:8: admin: expected a mapping, found a scalar"},
        {OPS("admin: [127.0.0.1:9900]\n"),
         "t.yaml:8:8: admin: expected a mapping, found a sequence"},
        {OPS("admin:\n  bnd: 127.0.0.1:9900\n"),
         "t.yaml:9:3: admin.bnd: unknown key (expected one of: bind, token, allowed_hosts)"},
        {OPS("admin:\n  allowed_hosts: lb.example.com\n"),
         "t.yaml:9:18: admin.allowed_hosts: expected a sequence of strings, found a scalar"},
        {OPS("admin:\n  allowed_hosts: [lb.example.com:9900]\n"),
         "t.yaml:9:19: admin.allowed_hosts[0]: must be a host name or IP address without a port, "
         "found \"lb.example.com:9900\""},
        {OPS("admin:\n  allowed_hosts: [ok.example, 'a b']\n"),
         "t.yaml:9:31: admin.allowed_hosts[1]: must be a host name (letters, digits, '-', '_' and "
         "'.') or an IP address, found \"a b\""},
        {OPS("admin:\n  allowed_hosts: ['[::1]:9900']\n"),
         "t.yaml:9:19: admin.allowed_hosts[0]: must be a host name or IP address without a port, "
         "found \"[::1]:9900\""},
        {OPS("admin:\n  allowed_hosts: ['']\n"),
         "t.yaml:9:19: admin.allowed_hosts[0]: must not be empty"},
        {OPS("admin:\n  allowed_hosts: [{a: b}]\n"),
         "t.yaml:9:19: admin.allowed_hosts[0]: expected a string, found a mapping"},
        {OPS("admin:\n  bind: 127.0.0.1:9900\n  bind: 127.0.0.1:9901\n"),
         "t.yaml:10:3: admin.bind: duplicate key (first given at line 9)"},
        {OPS("admin:\n  bind: 127.0.0.1\n"),
         "t.yaml:9:9: admin.bind: \"127.0.0.1\": expected host:port"},
        {OPS("admin:\n  bind: 127.0.0.1:x\n"),
         "t.yaml:9:9: admin.bind: \"127.0.0.1:x\": invalid port (expected 0-65535)"},
        {OPS("admin:\n  bind: ''\n"), "t.yaml:9:9: admin.bind: \"\": expected host:port"},
        {OPS("admin:\n  bind: {host: x}\n"),
         "t.yaml:9:9: admin.bind: expected an address (host:port), found a mapping"},
        {OPS("admin:\n  token: \"\"\n"), "t.yaml:9:10: admin.token: must not be empty"},
        {OPS("admin:\n  token: [a]\n"),
         "t.yaml:9:10: admin.token: expected a string, found a sequence"},
        {OPS("admin:\n  token: \"a\\0b\"\n"),
         "t.yaml:9:10: admin.token: must not contain a NUL character"},
        {OPS("admin:\n  token: a\n  token: b\n"),
         "t.yaml:10:3: admin.token: duplicate key (first given at line 9)"},
        /* access_log */
        {OPS("access_log: stdout\n"),
         "t.yaml:8:13: access_log: expected a mapping, found a scalar"},
        {OPS("access_log: {}\n"), "t.yaml:8:13: access_log.path: required key is missing"},
        {OPS("access_log:\n  format: json\n"),
         "t.yaml:9:3: access_log.path: required key is missing"},
        {OPS("access_log:\n  path:\n"), "t.yaml:9:3: access_log.path: a value is required"},
        {OPS("access_log:\n  path: ~\n"), "t.yaml:9:3: access_log.path: a value is required"},
        {OPS("access_log:\n  path: \"\"\n"), "t.yaml:9:9: access_log.path: must not be empty"},
        {OPS("access_log:\n  path: \"a\\0b\"\n"),
         "t.yaml:9:9: access_log.path: must not contain a NUL character"},
        {OPS("access_log:\n  path: [a.log]\n"),
         "t.yaml:9:9: access_log.path: expected a string, found a sequence"},
        {OPS("access_log:\n  path: stdout\n  format: xml\n"),
         "t.yaml:10:11: access_log.format: expected one of: json, combined, found \"xml\""},
        {OPS("access_log:\n  path: stdout\n  format: JSON\n"),
         "t.yaml:10:11: access_log.format: expected one of: json, combined, found \"JSON\""},
        {OPS("access_log:\n  path: stdout\n  format: {a: 1}\n"),
         "t.yaml:10:11: access_log.format: expected a log format, found a mapping"},
        {OPS("access_log:\n  path: stdout\n  level: info\n"),
         "t.yaml:10:3: access_log.level: unknown key (expected one of: path, format, "
         "max_backlog)"},
        {OPS("access_log:\n  path: a\n  path: b\n"),
         "t.yaml:10:3: access_log.path: duplicate key (first given at line 9)"},
        /* error_log */
        {OPS("error_log: \"\"\n"), "t.yaml:8:12: error_log: must not be empty"},
        {OPS("error_log: {path: x}\n"),
         "t.yaml:8:12: error_log: expected a string, found a mapping"},
        {OPS("error_log: \"a\\0b\"\n"), "t.yaml:8:12: error_log: must not contain a NUL character"},
        {OPS("error_log: stdout\n"),
         "t.yaml:8:12: error_log: must be a file or stderr (write ./stdout for a file of that "
         "name), found \"stdout\""},
        {OPS("error_log: a\nerror_log: b\n"),
         "t.yaml:9:1: error_log: duplicate key (first given at line 8)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *e = load_fail(cases[i].yaml);
        if (strcmp(e, cases[i].expected) != 0)
            fail_msg("case %zu: expected\n  %s\ngot:\n  %s", i, cases[i].expected, e);
        free(e);
    }

    /* A token with a space, a control character or a non-ASCII letter: why, but never the value
     * itself (the message may end up in a log). */
    static const char *const tokens[] = {
        "\"s3cret token\"", "\"s3cret\\ntoken\"", "\"s3cret\\ttoken\"", "\"s3cret\\rtoken\"",
        "\" s3cret\"",      "\"s3cret\\x7f\"",    "\"s3cr\\u00e9t\"",   "\"s3cret\\e[0m\"",
    };
    char yaml[512], expected[1024];
    for (size_t i = 0; i < sizeof(tokens) / sizeof(tokens[0]); i++) {
        snprintf(yaml, sizeof(yaml), OPS("admin:\n  token: %s\n"), tokens[i]);
        snprintf(expected, sizeof(expected), "t.yaml:9:10: admin.token: %s", token_why);
        char *e = load_fail(yaml);
        if (strcmp(e, expected) != 0)
            fail_msg("token %s: expected\n  %s\ngot:\n  %s", tokens[i], expected, e);
        assert_null(strstr(e, "s3cr"));
        free(e);
    }

    /* Several problems at once, in document order; the default address is not filled in for a
     * mapping with errors. */
    char *e = load_fail(OPS("admin:\n  token: \"a b\"\n  port: 1\n"
                            "access_log:\n  format: xml\n"
                            "error_log: \"\"\n"));
    snprintf(expected, sizeof(expected),
             "t.yaml:9:10: admin.token: %s\n"
             "t.yaml:10:3: admin.port: unknown key (expected one of: bind, token, allowed_hosts)\n"
             "t.yaml:12:3: access_log.path: required key is missing\n"
             "t.yaml:12:11: access_log.format: expected one of: json, combined, found \"xml\"\n"
             "t.yaml:13:12: error_log: must not be empty",
             token_why);
    assert_string_equal(e, expected);
    free(e);
}

/* The admin listener cannot take a traffic listener's address. */
/* ---- listener TLS ---- */

#define TLS_LISTENER(body)                                                                         \
    "listeners:\n  - bind: 127.0.0.1:8443\n    pool: app\n    tls:\n" body POOLS

static void test_listener_tls(void **state)
{
    (void)state;
    struct conf *c = load_ok(MINIMAL);
    assert_false(c->listeners[0].tls.enabled);
    assert_int_equal(c->timeouts.tls_handshake_ms, 10000);
    conf_free(c);

    /* The example in the issue and docs/tls.md, every key. */
    c = load_ok(
        TLS_LISTENER("      certificates:\n"
                     "        - { cert: certs/site.pem, key: certs/site.key }\n"
                     "        - { cert: certs/site-rsa.pem, key: certs/site-rsa.key }\n"
                     "      default_certificate: certs/site-rsa.pem\n"
                     "      sni_strict: true\n"
                     "      min_version: tls1.3\n"
                     "      ciphers: ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256\n"
                     "      alpn: [http/1.1]\n"
                     "      client_ca: certs/clients-ca.pem\n"
                     "      client_subject_header: X-Client-Subject\n"
                     "      session_tickets: false\n") "timeouts: {tls_handshake: 3s}\n");
    const struct conf_listener_tls *t = &c->listeners[0].tls;
    assert_true(t->enabled);
    assert_int_equal(t->ncertificates, 2);
    assert_string_equal(t->certificates[1].cert, "certs/site-rsa.pem");
    assert_string_equal(t->certificates[1].key, "certs/site-rsa.key");
    assert_int_equal(t->certificates[1].line, 7);
    assert_string_equal(t->default_certificate, "certs/site-rsa.pem");
    assert_true(t->sni_strict);
    assert_int_equal(t->min_version, CONF_TLS_1_3);
    assert_string_equal(t->ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256");
    assert_int_equal(t->nalpn, 1);
    assert_string_equal(t->alpn[0], "http/1.1");
    assert_string_equal(t->client_ca, "certs/clients-ca.pem");
    assert_string_equal(t->client_subject_header, "X-Client-Subject");
    assert_false(t->session_tickets);
    assert_int_equal(c->timeouts.tls_handshake_ms, 3000);
    conf_free(c);

    /* Defaults. */
    c = load_ok(TLS_LISTENER("      certificates: [{cert: a.pem, key: a.key}]\n"));
    t = &c->listeners[0].tls;
    assert_true(t->enabled);
    assert_null(t->default_certificate);
    assert_false(t->sni_strict);
    assert_int_equal(t->min_version, CONF_TLS_1_2);
    assert_null(t->ciphers);
    assert_int_equal(t->nalpn, 0);
    assert_null(t->client_ca);
    assert_true(t->session_tickets);
    conf_free(c);
}

/* HTTP/2 to clients: h2c on plain listeners, the http2 limits with their defaults, and h2 in the
 * default ALPN list of HTTP listeners only. */
static void test_listener_http2(void **state)
{
    (void)state;
    struct conf *c = load_ok(MINIMAL);
    const struct conf_http2 *h = &c->listeners[0].http2;
    assert_false(c->listeners[0].h2c);
    assert_int_equal(h->max_concurrent_streams, 100);
    assert_int_equal(h->max_header_list_size, 16384);
    assert_int_equal(h->stream_idle_ms, 300000);
    assert_int_equal(h->idle_ms, 60000);
    assert_false(conf_listener_offers_h2(&c->listeners[0])); /* plain: no ALPN at all */
    conf_free(c);

    c = load_ok("listeners:\n  - bind: 127.0.0.1:8080\n    pool: app\n    h2c: true\n"
                "    http2: {max_concurrent_streams: 8, max_header_list_size: 32k,\n"
                "            stream_idle_timeout: 30s, idle_timeout: 2m}\n" POOLS);
    h = &c->listeners[0].http2;
    assert_true(c->listeners[0].h2c);
    assert_int_equal(h->max_concurrent_streams, 8);
    assert_int_equal(h->max_header_list_size, 32768);
    assert_int_equal(h->stream_idle_ms, 30000);
    assert_int_equal(h->idle_ms, 120000);
    conf_free(c);

    c = load_ok(TLS_LISTENER("      certificates: [{cert: a.pem, key: a.key}]\n"));
    assert_true(conf_listener_offers_h2(&c->listeners[0]));
    conf_free(c);
    c = load_ok(TLS_LISTENER("      certificates: [{cert: a.pem, key: a.key}]\n"
                             "      alpn: [http/1.1]\n"));
    assert_false(conf_listener_offers_h2(&c->listeners[0]));
    conf_free(c);
    c = load_ok("listeners:\n  - bind: 127.0.0.1:8443\n    pool: app\n    mode: tcp\n"
                "    tls: {certificates: [{cert: a.pem, key: a.key}]}\n" POOLS);
    assert_false(conf_listener_offers_h2(&c->listeners[0])); /* a relay does not read HTTP/2 */
    conf_free(c);
}

static void test_listener_http2_errors(void **state)
{
    (void)state;
    assert_only_error(LISTENERS "    http2: {max_concurrent_streams: 0}\n" POOLS,
                      "t.yaml:4:37: listeners[0].http2.max_concurrent_streams: must be between 1 "
                      "and 10000");
    assert_only_error(LISTENERS "    http2: {max_header_list_size: 100}\n" POOLS,
                      "t.yaml:4:35: listeners[0].http2.max_header_list_size: must be between "
                      "1024 and 1048576 bytes");
    assert_only_error(LISTENERS "    http2: {stream_idle_timeout: soon}\n" POOLS,
                      "t.yaml:4:34: listeners[0].http2.stream_idle_timeout: expected a duration "
                      "such as 500ms, 2s, 1m or 1h, found \"soon\"");
    assert_only_error(LISTENERS "    http2: {idle: 5s}\n" POOLS,
                      "t.yaml:4:13: listeners[0].http2.idle: unknown key (expected one of: "
                      "max_concurrent_streams, max_header_list_size, stream_idle_timeout, "
                      "idle_timeout)");
    assert_only_error(LISTENERS "    h2c: maybe\n" POOLS,
                      "t.yaml:4:10: listeners[0].h2c: expected true or false, found \"maybe\"");
    assert_only_error("listeners:\n  - bind: 127.0.0.1:8443\n    pool: app\n    h2c: true\n"
                      "    tls: {certificates: [{cert: a.pem, key: a.key}]}\n" POOLS,
                      "t.yaml:4:10: listeners[0].h2c: is for plain listeners: a TLS listener "
                      "offers h2 through tls.alpn");
    assert_only_error("listeners:\n  - bind: 127.0.0.1:8443\n    pool: app\n    mode: tcp\n"
                      "    h2c: true\n    http2: {idle_timeout: 1s}\n" POOLS,
                      "t.yaml:5:10: listeners[0].h2c: is for HTTP listeners: a tcp listener "
                      "relays bytes to its pool\n"
                      "t.yaml:6:12: listeners[0].http2: is for HTTP listeners: a tcp listener "
                      "relays bytes to its pool");
}

static void test_listener_tls_errors(void **state)
{
    (void)state;
    assert_only_error(TLS_LISTENER("      sni_strict: true\n"),
                      "t.yaml:5:7: listeners[0].tls.certificates: required key is missing");
    assert_only_error(TLS_LISTENER("      certificates: []\n"),
                      "t.yaml:5:21: listeners[0].tls.certificates: must not be empty");
    assert_only_error(TLS_LISTENER("      certificates: [{cert: a.pem}]\n"),
                      "t.yaml:5:22: listeners[0].tls.certificates[0].key: required key is missing");
    assert_only_error(TLS_LISTENER("      certificates: [{cert: a.pem, key: a.key}]\n"
                                   "      min_version: tls1.1\n"),
                      "t.yaml:6:20: listeners[0].tls.min_version: expected one of: tls1.2, "
                      "tls1.3, found \"tls1.1\"");
    assert_only_error(TLS_LISTENER("      certificates: [{cert: a.pem, key: a.key}]\n"
                                   "      default_certificate: b.pem\n"),
                      "t.yaml:6:28: listeners[0].tls.default_certificate: \"b.pem\" is not the "
                      "cert of one of the certificates");
    assert_only_error(TLS_LISTENER("      certificates: [{cert: a.pem, key: a.key}]\n"
                                   "      alpn: [h2, 'http 1.1']\n"),
                      "t.yaml:6:18: listeners[0].tls.alpn[1]: must contain only visible ASCII "
                      "characters, such as http/1.1, found \"http 1.1\"");
    assert_only_error(TLS_LISTENER("      certificates: [{cert: a.pem, key: a.key}]\n"
                                   "      ciphers: \"AES;rm -rf\"\n"),
                      "t.yaml:6:16: listeners[0].tls.ciphers: must be an OpenSSL cipher list such "
                      "as ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256, found "
                      "\"AES;rm -rf\"");
    assert_only_error(TLS_LISTENER("      certificates: [{cert: a.pem, key: a.key}]\n"
                                   "      client_subject_header: X-Client-Subject\n"),
                      "t.yaml:6:30: listeners[0].tls.client_subject_header: needs client_ca: "
                      "without verified client certificates there is no subject to pass on");
    assert_only_error(TLS_LISTENER("      certificates: [{cert: a.pem, key: a.key}]\n"
                                   "      client_ca: ca.pem\n"
                                   "      client_subject_header: 'X Subject'\n"),
                      "t.yaml:7:30: listeners[0].tls.client_subject_header: must be a token "
                      "(letters, digits and !#$%&'*+-.^_`|~), found \"X Subject\"");
    assert_only_error(TLS_LISTENER("      certificates: [{cert: a.pem, key: a.key}]\n"
                                   "      session_tickets: maybe\n"),
                      "t.yaml:6:24: listeners[0].tls.session_tickets: expected true or false, "
                      "found \"maybe\"");
}

static void test_pool_tls(void **state)
{
    (void)state;
    struct conf *c = load_ok(MINIMAL);
    assert_false(c->pools[0].tls.enabled);
    conf_free(c);
    c = load_ok(LISTENERS "pools:\n  - name: app\n    servers: [{address: 127.0.0.1:9001}]\n"
                          "    tls:\n      verify: false\n      ca: certs/internal-ca.pem\n"
                          "      sni: app.internal\n      cert: certs/lb-client.pem\n"
                          "      key: certs/lb-client.key\n");
    const struct conf_pool_tls *t = &c->pools[0].tls;
    assert_true(t->enabled);
    assert_false(t->verify);
    assert_string_equal(t->ca, "certs/internal-ca.pem");
    assert_string_equal(t->sni, "app.internal");
    assert_string_equal(t->cert, "certs/lb-client.pem");
    assert_string_equal(t->key, "certs/lb-client.key");
    conf_free(c);
    c = load_ok(LISTENERS "pools:\n  - name: app\n    servers: [{address: 127.0.0.1:9001}]\n"
                          "    tls: {}\n");
    t = &c->pools[0].tls;
    assert_true(t->enabled);
    assert_true(t->verify); /* the default */
    assert_null(t->ca);
    assert_null(t->sni);
    conf_free(c);
    assert_only_error(LISTENERS "pools:\n  - name: app\n    servers: [{address: 127.0.0.1:9001}]\n"
                                "    tls: {cert: a.pem}\n",
                      "t.yaml:7:10: pools[0].tls.key: key is needed with cert");
    assert_only_error(LISTENERS "pools:\n  - name: app\n    servers: [{address: 127.0.0.1:9001}]\n"
                                "    tls: {verify: sometimes}\n",
                      "t.yaml:7:19: pools[0].tls.verify: expected true or false, found "
                      "\"sometimes\"");
}

static void test_proxy_protocol_accept(void **state)
{
    (void)state;
    struct conf *c = load_ok(MINIMAL);
    assert_false(c->listeners[0].proxy_protocol.accept);
    conf_free(c);
    c = load_ok("listeners:\n  - bind: 127.0.0.1:8080\n    pool: app\n"
                "    proxy_protocol: { accept: true, trusted: [127.0.0.0/8, 10.0.0.0/8, "
                "'2001:db8::/32', 192.0.2.1] }\n" POOLS);
    const struct conf_proxy_accept *p = &c->listeners[0].proxy_protocol;
    assert_true(p->accept);
    assert_int_equal(p->ntrusted, 4);
    assert_int_equal(p->trusted[0].bits, 8);
    assert_int_equal(p->trusted[2].bits, 32);
    assert_int_equal(p->trusted[3].bits, 32);
    conf_free(c);
    assert_only_error("listeners:\n  - bind: 127.0.0.1:8080\n    pool: app\n"
                      "    proxy_protocol: { accept: true }\n" POOLS,
                      "t.yaml:4:21: listeners[0].proxy_protocol.trusted: required with accept: "
                      "true: the header is believed only from these addresses");
    assert_only_error("listeners:\n  - bind: 127.0.0.1:8080\n    pool: app\n"
                      "    proxy_protocol: { trusted: [10.0.0.0/8] }\n" POOLS,
                      "t.yaml:4:21: listeners[0].proxy_protocol.accept: must be true for trusted "
                      "to mean anything");
    assert_only_error("listeners:\n  - bind: 127.0.0.1:8080\n    pool: app\n"
                      "    proxy_protocol: { accept: true, trusted: [10.0.0.1/8] }\n" POOLS,
                      "t.yaml:4:47: listeners[0].proxy_protocol.trusted[0]: the address has bits "
                      "set past the prefix length (e.g. write 10.0.0.0/8), found \"10.0.0.1/8\"");
    assert_only_error("listeners:\n  - bind: 127.0.0.1:8080\n    pool: app\n"
                      "    proxy_protocol: { accept: true, trusted: 10.0.0.0/8 }\n" POOLS,
                      "t.yaml:4:46: listeners[0].proxy_protocol.trusted: expected a sequence of "
                      "addresses or ranges, found a scalar");
}

static void test_tls_flags(void **state)
{
    (void)state;
    char *err = NULL;
    struct conf *c = conf_new();
    assert_int_equal(conf_add_listen_flag(c, "127.0.0.1:8443", &err), 0);
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9001", &err), 0);
    assert_int_equal(conf_set_tls_flag(c, false, "site.pem", &err), 0);
    assert_int_equal(conf_set_tls_flag(c, true, "site.key", &err), 0);
    assert_int_equal(conf_finish(c, &err), 0);
    assert_true(c->listeners[0].tls.enabled);
    assert_string_equal(c->listeners[0].tls.certificates[0].cert, "site.pem");
    assert_string_equal(c->listeners[0].tls.certificates[0].key, "site.key");
    assert_true(c->listeners[0].tls.session_tickets);
    conf_free(c);

    c = conf_new();
    assert_int_equal(conf_add_listen_flag(c, "127.0.0.1:8443", &err), 0);
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9001", &err), 0);
    assert_int_equal(conf_set_tls_flag(c, true, "site.key", &err), 0);
    assert_int_equal(conf_finish(c, &err), -1);
    assert_string_equal(err, "--tls-key needs --tls-cert FILE as well");
    free(err);
    conf_free(c);

    c = conf_new();
    assert_int_equal(conf_set_tls_flag(c, false, "", &err), -1);
    assert_string_equal(err, "--tls-cert: expected a file name");
    free(err);
    conf_free(c);
}

static void test_ops_admin_address_clash(void **state)
{
    (void)state;
#define TWO_LISTENERS                                                                              \
    "listeners:\n"                                                                                 \
    "  - name: web\n"                                                                              \
    "    bind: 127.0.0.1:8080\n"                                                                   \
    "    pool: app\n"                                                                              \
    "  - bind: 127.0.0.1:9900\n"                                                                   \
    "    pool: app\n" POOLS /* lines 1-10 */
    assert_only_error(TWO_LISTENERS "admin:\n  bind: 127.0.0.1:8080\n",
                      "t.yaml:12:9: admin.bind: 127.0.0.1:8080 is already the address of "
                      "listener web");
    /* The default address: at the admin mapping, since there is no bind to point at. */
    assert_only_error(TWO_LISTENERS "admin: {}\n",
                      "t.yaml:11:8: admin.bind: 127.0.0.1:9900 (the default) is already the "
                      "address of listener listener2");
    assert_only_error(TWO_LISTENERS "admin:\n  token: abc\n",
                      "t.yaml:12:3: admin.bind: 127.0.0.1:9900 (the default) is already the "
                      "address of listener listener2");
    /* Written before the listeners: still at admin.bind, reported once. */
    assert_only_error("admin: {bind: '[::1]:8081'}\n"
                      "listeners:\n"
                      "  - {bind: '[::1]:8081', pool: app}\n"
                      "  - {bind: '[::1]:8081', pool: app}\n" POOLS,
                      "t.yaml:1:15: admin.bind: [::1]:8081 is already the address of listener "
                      "listener1\n"
                      "t.yaml:4:12: listeners[1].bind: address already used by another listener "
                      "(first used at line 3)");
    /* Along with other errors. */
    char *e = load_fail(TWO_LISTENERS "admin:\n  bind: 127.0.0.1:8080\n  token: \"\"\n");
    assert_string_equal(e, "t.yaml:12:9: admin.bind: 127.0.0.1:8080 is already the address of "
                           "listener web\n"
                           "t.yaml:13:10: admin.token: must not be empty");
    free(e);

    /* Other ports, or a disabled admin listener, are fine. */
    struct conf *c = load_ok(TWO_LISTENERS "admin:\n  bind: 127.0.0.1:9901\n");
    assert_int_equal(port_of(&c->admin.addr), 9901);
    conf_free(c);
    c = load_ok(TWO_LISTENERS "admin:\n");
    assert_false(c->admin.enabled);
    conf_free(c);
#undef TWO_LISTENERS
}

/* ---- YAML level problems ---- */

static void test_syntax_error(void **state)
{
    (void)state;
    assert_only_error("threads: 2\nlisteners: [\n",
                      "t.yaml:3:1: YAML syntax error: did not find expected node content (while "
                      "parsing a flow node at line 3, column 1)");
    assert_only_error("a: b: c\n", "t.yaml:1:5: YAML syntax error: mapping values are not "
                                   "allowed in this context");
    char *e = load_fail("threads: 2\n  bad indent: [\n");
    assert_int_equal(count_lines(e), 1);
    assert_true(has_line(e, "t.yaml:"));
    assert_non_null(strstr(e, "YAML syntax error: "));
    free(e);
    assert_only_error("listeners: *nowhere\n",
                      "t.yaml:1:12: YAML syntax error: found undefined alias");
}

static void test_encoding_errors(void **state)
{
    (void)state;
    static const char nul[] = "threads: 2\nlog\0_level: info\n";
    char *errors = NULL;
    struct conf *c = conf_load_string(nul, sizeof(nul) - 1, "t.yaml", &errors);
    assert_null(c);
    assert_non_null(errors);
    assert_string_equal(errors, "t.yaml:2:4: invalid input: control characters are not allowed "
                                "(0x0)");
    free(errors);

    static const char utf8[] = "threads: 2\nlog_level: \xff\xfe\n";
    c = conf_load_string(utf8, sizeof(utf8) - 1, "t.yaml", &errors);
    assert_null(c);
    assert_string_equal(errors, "t.yaml:2:12: invalid input: invalid leading UTF-8 octet (0xff)");
    free(errors);

    /* A NUL written as an escape reaches the scalar: refused rather than cut short. */
    assert_only_error(LISTENERS
                      "pools:\n  - name: \"a\\0b\"\n    servers: [{address: 127.0.0.1:1}]\n",
                      "t.yaml:5:11: pools[0].name: must not contain a NUL character");
    /* Control characters in keys are shown escaped, so each error stays one line. */
    assert_only_error("\"thr\\neads\": 1\n" MINIMAL,
                      "t.yaml:1:1: thr\\x0aeads: unknown key (expected one of: threads, "
                      "log_level, shutdown_timeout, listeners, pools, timeouts, limits, http, "
                      "admin, access_log, error_log)");
}

static void test_second_document(void **state)
{
    (void)state;
    assert_only_error(MINIMAL "---\nthreads: 2\n", "t.yaml:9:1: only one YAML document is allowed");
    struct conf *c = load_ok("---\n" MINIMAL "...\n");
    conf_free(c);
}

static void test_too_many_entries(void **state)
{
    (void)state;
    /* Aliases repeat a long list cheaply; the total number of entries is capped. */
    size_t cap = 300000, n;
    char *yaml = malloc(cap), *errors = NULL;
    struct conf *c;
    assert_non_null(yaml);

    /* pools: a list of 300 aliases to one pool of 300 servers = 90,300 entries. */
    n = (size_t)snprintf(yaml, cap, "%s", LISTENERS "pools: [&p {name: a, servers: [");
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(yaml + n, cap - n, "%s{address: 127.0.0.1:%d}", i ? "," : "", i + 1);
    n += (size_t)snprintf(yaml + n, cap - n, "]}");
    for (int i = 1; i < 300; i++)
        n += (size_t)snprintf(yaml + n, cap - n, ",*p");
    n += (size_t)snprintf(yaml + n, cap - n, "]\n");
    c = conf_load_string(yaml, n, "t.yaml", &errors);
    assert_null(c);
    assert_true(has_line(errors, "t.yaml:"));
    assert_non_null(strstr(errors, ": too many entries (at most 65536 in all)"));
    free(errors);
    free(yaml);
}

/* Mangled versions of a valid file: must never crash or leak (ASan checks), and must either load
 * or report at least one error. */
static int load_mangled(const char *base, int rounds)
{
    static const char bytes[] = {'\0', '\n', ':', '-', '{', '}', '[',  ']',    '&',    '*', '!',
                                 '"',  '\'', ' ', '#', '|', '>', '\t', '\xff', '\xc3', 'x', '0'};
    size_t len = strlen(base);
    char *buf = malloc(len + 1);
    uint32_t seed = 12345;
    int loaded = 0;

    assert_non_null(buf);
    for (int round = 0; round < rounds; round++) {
        memcpy(buf, base, len);
        int edits = 1 + round % 4;
        for (int j = 0; j < edits; j++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % len;
            /* Lines with addresses stay intact: a mangled host would mean a DNS lookup. */
            const char *line = pos ? memrchr(base, '\n', pos) : NULL;
            line = line ? line + 1 : base;
            const char *eol = strchr(line, '\n');
            if (memmem(line, (size_t)(eol - line), "127.", 4))
                continue;
            buf[pos] = bytes[(seed >> 20) % sizeof(bytes)];
        }
        size_t n = round % 5 == 0 ? (seed >> 4) % (len + 1) : len;
        char *errors = NULL;
        struct conf *c = conf_load_string(buf, n, "fuzz", &errors);
        if (c) {
            assert_null(errors);
            loaded++;
            conf_free(c);
        } else {
            assert_non_null(errors);
            assert_true(strncmp(errors, "fuzz:", 5) == 0);
            free(errors);
        }
    }
    free(buf);
    return loaded;
}

static void test_mangled_input(void **state)
{
    (void)state;
    static const char base[] = "threads: 2\nlog_level: info\nlisteners:\n"
                               "  - { name: web, bind: '127.0.0.1:8080', pool: app }\n"
                               "pools:\n  - name: app\n    servers:\n"
                               "      - { name: s1, address: 127.0.0.1:9001, weight: 2 }\n"
                               "timeouts: { connect: 3s }\nlimits: { max_header_bytes: 16k }\n";
    int loaded = load_mangled(base, 3000);
    assert_true(loaded > 0 && loaded < 3000);
}

/* The same for the health keys: status lists, enums, checked strings, the passive cross-check. */
static void test_mangled_health_input(void **state)
{
    (void)state;
    static const char base[] =
        "listeners: [{bind: '127.0.0.1:8080', pool: app}]\n"
        "pools:\n  - name: app\n    servers: [{address: 127.0.0.1:9001}]\n"
        "    retries: 3\n    slow_start: 5s\n    when_all_down: use-all\n"
        "    health_check: {type: http, method: GET, path: /h, host: a.b, "
        "expect_status: [200, \"300-399\"], expect_body: ok, port: 81, interval: 1s, "
        "fast_interval: 100ms, down_interval: 9s, timeout: 500ms, rise: 2, fall: 3}\n"
        "    passive: {consecutive_failures: 5, failure_status: 500-504, ejection_time: 10s, "
        "max_ejection_time: 1m, max_ejected_percent: 10}\n";
    int loaded = load_mangled(base, 3000);
    assert_true(loaded > 0 && loaded < 3000);
}

/* And for the admin listener and the logs: the switch mappings, the token check, the address
 * clash and the defaults filled in by a finish hook. */
static void test_mangled_ops_input(void **state)
{
    (void)state;
    static const char base[] = "listeners: [{name: web, bind: '127.0.0.1:8080', pool: app}]\n"
                               "pools:\n  - name: app\n    servers: [{address: 127.0.0.1:9001}]\n"
                               "admin:\n  bind: '127.0.0.1:9900'\n  token: s3cret\n"
                               "access_log: {path: /var/log/a.log, format: combined}\n"
                               "error_log: stderr\n";
    int loaded = load_mangled(base, 3000);
    assert_true(loaded > 0 && loaded < 3000);
}

/* ---- files ---- */

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/test_conf_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    assert_true(fputs(MINIMAL "threads: 3\n", f) >= 0);
    assert_int_equal(fclose(f), 0);

    char *errors = NULL;
    struct conf *c = conf_load_file(path, &errors);
    assert_non_null(c);
    assert_null(errors);
    assert_string_equal(c->path, path);
    assert_int_equal(c->threads, 3);
    conf_free(c);

    /* Messages name the file. */
    f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(MINIMAL "threads: lots\n", f) >= 0);
    assert_int_equal(fclose(f), 0);
    c = conf_load_file(path, &errors);
    assert_null(c);
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "%s:8:10: threads: expected an integer", path);
    assert_true(has_line(errors, prefix));
    free(errors);
    assert_int_equal(unlink(path), 0);

    c = conf_load_file(path, &errors);
    assert_null(c);
    snprintf(prefix, sizeof(prefix), "%s: cannot open: No such file or directory", path);
    assert_string_equal(errors, prefix);
    free(errors);

    c = conf_load_file("/tmp", &errors);
    assert_null(c);
    assert_string_equal(errors, "/tmp: cannot read: Is a directory");
    free(errors);
}

/* ---- quick-start flags ---- */

static void test_flags_valid(void **state)
{
    (void)state;
    struct conf *c = conf_new();
    char *err = (char *)"untouched";
    assert_non_null(c);
    assert_int_equal(conf_add_listen_flag(c, "127.0.0.1:8080", &err), 0);
    assert_null(err);
    assert_int_equal(conf_add_listen_flag(c, ":8081", &err), 0);
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9001,weight=2,name=a", &err), 0);
    assert_null(err);
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9002", &err), 0);
    assert_int_equal(conf_add_server_flag(c, "[::1]:9003,name=b,weight=0", &err), 0);
    assert_int_equal(conf_finish(c, &err), 0);
    assert_null(err);

    assert_null(c->path);
    assert_int_equal(c->nlisteners, 2);
    assert_string_equal(c->listeners[0].name, "listener1");
    assert_string_equal(c->listeners[1].name, "listener2");
    assert_string_equal(c->listeners[0].bind, "127.0.0.1:8080");
    assert_true(c->listeners[1].addr.any);
    assert_string_equal(c->listeners[0].pool_name, "default");
    assert_int_equal(c->listeners[0].pool, 0);
    assert_int_equal(c->npools, 1);
    assert_string_equal(c->pools[0].name, "default");
    assert_int_equal(c->pools[0].balance, CONF_BALANCE_ROUND_ROBIN);
    assert_int_equal(c->pools[0].nservers, 3);
    assert_string_equal(c->pools[0].servers[0].name, "a");
    assert_string_equal(c->pools[0].servers[0].address, "127.0.0.1:9001");
    assert_int_equal(c->pools[0].servers[0].weight, 2);
    assert_string_equal(c->pools[0].servers[1].name, "127.0.0.1:9002");
    assert_int_equal(c->pools[0].servers[1].weight, 1);
    assert_string_equal(c->pools[0].servers[2].name, "b");
    assert_int_equal(c->pools[0].servers[2].weight, 0);
    check_defaults(c);
    conf_free(c);
}

static void expect_server_flag_error(const char *spec, const char *expected)
{
    struct conf *c = conf_new();
    char *err = NULL;
    assert_non_null(c);
    assert_int_equal(conf_add_server_flag(c, spec, &err), -1);
    assert_non_null(err);
    assert_string_equal(err, expected);
    free(err);
    assert_int_equal(c->npools, 0); /* nothing half-added */
    conf_free(c);
}

static void test_flags_invalid(void **state)
{
    (void)state;
    expect_server_flag_error("127.0.0.1:9001,weight=300",
                             "--server 127.0.0.1:9001,weight=300: weight must be an integer from "
                             "0 to 256");
    expect_server_flag_error("127.0.0.1:9001,weight=-1",
                             "--server 127.0.0.1:9001,weight=-1: weight must be an integer from 0 "
                             "to 256");
    expect_server_flag_error("127.0.0.1:9001,weight=",
                             "--server 127.0.0.1:9001,weight=: weight must be an integer from 0 "
                             "to 256");
    expect_server_flag_error("127.0.0.1:9001,colour=red",
                             "--server 127.0.0.1:9001,colour=red: unknown option \"colour=red\" "
                             "(expected weight=N or name=NAME)");
    expect_server_flag_error("127.0.0.1:9001,name=a,",
                             "--server 127.0.0.1:9001,name=a,: unknown option \"\" (expected "
                             "weight=N or name=NAME)");
    expect_server_flag_error("127.0.0.1:9001,name=",
                             "--server 127.0.0.1:9001,name=: name must not be empty");
    expect_server_flag_error("127.0.0.1:x",
                             "--server 127.0.0.1:x: invalid port (expected 0-65535)");
    expect_server_flag_error("", "--server : expected host:port");

    struct conf *c = conf_new();
    char *err = NULL;
    assert_non_null(c);
    assert_int_equal(conf_add_listen_flag(c, "localhost", &err), -1);
    assert_string_equal(err, "--listen localhost: expected host:port");
    free(err);
    assert_int_equal(c->nlisteners, 0);

    /* Nothing given at all. */
    assert_int_equal(conf_finish(c, &err), -1);
    assert_string_equal(err, "no address to listen on: give at least one --listen ADDR\n"
                             "no backend server: give at least one --server ADDR");
    free(err);

    /* The same address twice, and two servers with one name. */
    assert_int_equal(conf_add_listen_flag(c, "127.0.0.1:8080", &err), 0);
    assert_int_equal(conf_add_listen_flag(c, "127.0.0.1:8080", &err), 0);
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:1,name=a", &err), 0);
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:2,name=a", &err), 0);
    assert_int_equal(conf_finish(c, &err), -1);
    assert_string_equal(err, "--listen 127.0.0.1:8080: address already used by another listener\n"
                             "--server 127.0.0.1:2: duplicate server name \"a\"");
    free(err);
    conf_free(c);
}

static void test_flags_repeated_option_overrides(void **state)
{
    (void)state;
    struct conf *c = conf_new();
    char *err = NULL;
    assert_non_null(c);
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:1,weight=3,name=x,weight=5,name=y", &err),
                     0);
    assert_int_equal(c->pools[0].servers[0].weight, 5);
    assert_string_equal(c->pools[0].servers[0].name, "y");
    conf_free(c);
}

static struct conf *flags_conf(void)
{
    struct conf *c = conf_new();
    char *err = NULL;
    assert_non_null(c);
    assert_int_equal(conf_add_listen_flag(c, "127.0.0.1:8080", &err), 0);
    return c;
}

static void test_health_flags(void **state)
{
    (void)state;
    char *err = (char *)"untouched";

    /* Before --server: the pool is there for it to join. */
    struct conf *c = flags_conf();
    assert_int_equal(conf_set_health_check_flag(c, "/ready", &err), 0);
    assert_null(err);
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9001", &err), 0);
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9002", &err), 0);
    assert_int_equal(conf_finish(c, &err), 0);
    assert_null(err);
    assert_int_equal(c->npools, 1);
    const struct conf_pool *p = &c->pools[0];
    assert_string_equal(p->name, "default");
    assert_int_equal(p->nservers, 2);
    assert_true(p->check.enabled);
    assert_string_equal(p->check.path, "/ready");
    assert_string_equal(p->check.method, "GET");
    assert_int_equal(p->check.interval_ms, 2000);
    assert_int_equal(p->check.fast_interval_ms, 2000);
    assert_int_equal(p->check.down_interval_ms, 2000);
    assert_int_equal(p->check.timeout_ms, 2000);
    assert_status_range(&p->check.expect_status, 200, 399);
    assert_int_equal(p->passive.consecutive_failures, 5);
    assert_int_equal(p->retries, 2);
    conf_free(c);

    /* After --server, interval first; the derived times follow the interval. */
    c = flags_conf();
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9001", &err), 0);
    assert_int_equal(conf_set_health_interval_flag(c, "1s", &err), 0);
    assert_null(err);
    assert_int_equal(conf_set_health_check_flag(c, "/h?x=1", &err), 0);
    assert_int_equal(conf_finish(c, &err), 0);
    assert_int_equal(c->npools, 1);
    p = &c->pools[0];
    assert_int_equal(p->nservers, 1);
    assert_true(p->check.enabled);
    assert_string_equal(p->check.path, "/h?x=1");
    assert_int_equal(p->check.interval_ms, 1000);
    assert_int_equal(p->check.fast_interval_ms, 1000);
    assert_int_equal(p->check.down_interval_ms, 1000);
    assert_int_equal(p->check.timeout_ms, 1000);
    conf_free(c);

    /* --health-interval alone checks the default path; given twice, the last counts. */
    c = flags_conf();
    assert_int_equal(conf_set_health_interval_flag(c, "1s", &err), 0);
    assert_int_equal(conf_set_health_interval_flag(c, "5s", &err), 0);
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9001", &err), 0);
    assert_int_equal(conf_finish(c, &err), 0);
    p = &c->pools[0];
    assert_true(p->check.enabled);
    assert_string_equal(p->check.path, "/healthcheck");
    assert_int_equal(p->check.interval_ms, 5000);
    assert_int_equal(p->check.fast_interval_ms, 5000);
    assert_int_equal(p->check.down_interval_ms, 5000);
    assert_int_equal(p->check.timeout_ms, 2000);
    conf_free(c);

    c = flags_conf();
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9001", &err), 0);
    assert_int_equal(conf_set_health_check_flag(c, "/a", &err), 0);
    assert_int_equal(conf_set_health_check_flag(c, "/b", &err), 0);
    assert_int_equal(conf_set_health_interval_flag(c, "10ms", &err), 0);
    assert_int_equal(conf_finish(c, &err), 0);
    assert_string_equal(c->pools[0].check.path, "/b");
    assert_int_equal(c->pools[0].check.interval_ms, 10);
    assert_int_equal(c->pools[0].check.timeout_ms, 10);
    conf_free(c);

    c = flags_conf();
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9001", &err), 0);
    assert_int_equal(conf_set_health_interval_flag(c, "1h", &err), 0);
    assert_int_equal(conf_finish(c, &err), 0);
    assert_int_equal(c->pools[0].check.interval_ms, 3600000);
    assert_int_equal(c->pools[0].check.timeout_ms, 2000);
    conf_free(c);

    /* Health flags without --server: the usual message, not one about an empty pool. */
    c = conf_new();
    assert_non_null(c);
    assert_int_equal(conf_set_health_check_flag(c, "/h", &err), 0);
    assert_int_equal(conf_finish(c, &err), -1);
    assert_string_equal(err, "no address to listen on: give at least one --listen ADDR\n"
                             "no backend server: give at least one --server ADDR");
    free(err);
    conf_free(c);
}

static void expect_health_flag_error(bool interval, const char *value, const char *expected)
{
    struct conf *c = conf_new();
    char *err = NULL;
    assert_non_null(c);
    int rc = interval ? conf_set_health_interval_flag(c, value, &err)
                      : conf_set_health_check_flag(c, value, &err);
    assert_int_equal(rc, -1);
    assert_non_null(err);
    if (strcmp(err, expected) != 0)
        fail_msg("expected\n  %s\ngot\n  %s", expected, err);
    free(err);
    assert_int_equal(c->npools, 0); /* nothing half-added */
    conf_free(c);
}

static void test_health_flags_invalid(void **state)
{
    (void)state;
    expect_health_flag_error(false, "x", "--health-check x: the path must start with '/'");
    expect_health_flag_error(false, "", "--health-check : the path must start with '/'");
    expect_health_flag_error(false, NULL, "--health-check : the path must start with '/'");
    expect_health_flag_error(false, "/a b",
                             "--health-check /a b: the path must contain only visible ASCII "
                             "characters (no spaces)");
    expect_health_flag_error(false, "/a\nb",
                             "--health-check /a\\x0ab: the path must contain only visible ASCII "
                             "characters (no spaces)");
    expect_health_flag_error(true, "5",
                             "--health-interval 5: a duration needs a unit, e.g. 500ms, 2s, 1m");
    expect_health_flag_error(true, "5ms", "--health-interval 5ms: must be at least 10ms");
    expect_health_flag_error(true, "0", "--health-interval 0: must be at least 10ms");
    expect_health_flag_error(true, "2h", "--health-interval 2h: must be at most 1h");
    expect_health_flag_error(true, "25h", "--health-interval 25h: must be at most 1h");
    expect_health_flag_error(true, "fast",
                             "--health-interval fast: expected a duration such as 500ms, 2s, 1m "
                             "or 1h");
    expect_health_flag_error(true, "",
                             "--health-interval : expected a duration such as 500ms, 2s, 1m or "
                             "1h");
    expect_health_flag_error(true, NULL,
                             "--health-interval : expected a duration such as 500ms, 2s, 1m or "
                             "1h");

    /* A failed flag leaves an existing pool as it was; a NULL error pointer is allowed. */
    struct conf *c = flags_conf();
    char *err = NULL;
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9001", &err), 0);
    assert_int_equal(conf_set_health_check_flag(c, "nope", NULL), -1);
    assert_int_equal(conf_set_health_interval_flag(c, "nope", NULL), -1);
    assert_int_equal(conf_finish(c, &err), 0);
    check_pool_defaults(&c->pools[0], false);
    conf_free(c);
}

static void test_ops_flags(void **state)
{
    (void)state;
    char *err = (char *)"untouched";

    /* Before --listen and --server. */
    struct conf *c = conf_new();
    assert_non_null(c);
    assert_int_equal(conf_set_admin_flag(c, "127.0.0.1:9901", &err), 0);
    assert_null(err);
    err = (char *)"untouched";
    assert_int_equal(conf_set_access_log_flag(c, "stdout", &err), 0);
    assert_null(err);
    assert_int_equal(conf_add_listen_flag(c, "127.0.0.1:8080", &err), 0);
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9001", &err), 0);
    assert_int_equal(conf_finish(c, &err), 0);
    assert_null(err);
    assert_true(c->admin.enabled);
    assert_string_equal(c->admin.bind, "127.0.0.1:9901");
    assert_int_equal(port_of(&c->admin.addr), 9901);
    assert_null(c->admin.token);
    assert_true(c->access_log.enabled);
    assert_string_equal(c->access_log.path, "stdout");
    assert_int_equal(c->access_log.format, CONF_LOG_JSON);
    assert_null(c->error_log);
    check_defaults(c);
    conf_free(c);

    /* After them; given twice, the last counts. */
    c = flags_conf();
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9001", &err), 0);
    assert_int_equal(conf_set_admin_flag(c, "127.0.0.1:9901", &err), 0);
    assert_int_equal(conf_set_admin_flag(c, "[::1]:9902", &err), 0);
    assert_int_equal(conf_set_access_log_flag(c, "stderr", &err), 0);
    assert_int_equal(conf_set_access_log_flag(c, "/tmp/no/such/dir/access.log", &err), 0);
    assert_int_equal(conf_finish(c, &err), 0);
    assert_string_equal(c->admin.bind, "[::1]:9902");
    assert_int_equal(c->admin.addr.ss.ss_family, AF_INET6);
    assert_int_equal(port_of(&c->admin.addr), 9902);
    assert_string_equal(c->access_log.path, "/tmp/no/such/dir/access.log");
    assert_int_equal(c->access_log.format, CONF_LOG_JSON);
    conf_free(c);

    /* Without them, both stay off. */
    c = flags_conf();
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9001", &err), 0);
    assert_int_equal(conf_finish(c, &err), 0);
    check_ops_defaults(c);
    conf_free(c);

    /* An enabled admin listener without an address gets the default one from conf_finish(). */
    c = flags_conf();
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9001", &err), 0);
    c->admin.enabled = true;
    assert_int_equal(conf_finish(c, &err), 0);
    assert_string_equal(c->admin.bind, "127.0.0.1:9900");
    assert_int_equal(port_of(&c->admin.addr), 9900);
    conf_free(c);
}

static void expect_ops_flag_error(bool admin, const char *value, const char *expected)
{
    struct conf *c = conf_new();
    char *err = NULL;
    assert_non_null(c);
    int rc = admin ? conf_set_admin_flag(c, value, &err) : conf_set_access_log_flag(c, value, &err);
    assert_int_equal(rc, -1);
    assert_non_null(err);
    if (strcmp(err, expected) != 0)
        fail_msg("expected\n  %s\ngot\n  %s", expected, err);
    free(err);
    check_ops_defaults(c); /* nothing half-set */
    conf_free(c);
}

static void test_ops_flags_invalid(void **state)
{
    (void)state;
    expect_ops_flag_error(true, "nope", "--admin nope: expected host:port");
    expect_ops_flag_error(true, "9900", "--admin 9900: expected host:port");
    expect_ops_flag_error(true, "127.0.0.1:x",
                          "--admin 127.0.0.1:x: invalid port (expected 0-65535)");
    expect_ops_flag_error(true, "::1:9900",
                          "--admin ::1:9900: an IPv6 address must be written in brackets: "
                          "[::1]:8080");
    expect_ops_flag_error(true, "127.0.0.1:\n",
                          "--admin 127.0.0.1:\\x0a: invalid port (expected 0-65535)");
    expect_ops_flag_error(true, "", "--admin : expected host:port");
    expect_ops_flag_error(true, NULL, "--admin : expected host:port");
    expect_ops_flag_error(false, "", "--access-log : the path must not be empty");
    expect_ops_flag_error(false, NULL, "--access-log : the path must not be empty");

    /* A failed flag keeps the earlier value; a NULL error pointer is allowed. */
    struct conf *c = flags_conf();
    char *err = NULL;
    assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9001", &err), 0);
    assert_int_equal(conf_set_admin_flag(c, "127.0.0.1:9901", &err), 0);
    assert_int_equal(conf_set_access_log_flag(c, "a.log", &err), 0);
    assert_int_equal(conf_set_admin_flag(c, "nope", NULL), -1);
    assert_int_equal(conf_set_access_log_flag(c, "", NULL), -1);
    assert_int_equal(conf_finish(c, &err), 0);
    assert_string_equal(c->admin.bind, "127.0.0.1:9901");
    assert_string_equal(c->access_log.path, "a.log");
    conf_free(c);

    /* The admin address is a listener's: found by conf_finish() whichever flag came first. */
    for (int admin_first = 0; admin_first < 2; admin_first++) {
        c = conf_new();
        assert_non_null(c);
        if (admin_first)
            assert_int_equal(conf_set_admin_flag(c, "127.0.0.1:8080", &err), 0);
        assert_int_equal(conf_add_listen_flag(c, "127.0.0.1:8081", &err), 0);
        assert_int_equal(conf_add_listen_flag(c, "127.0.0.1:8080", &err), 0);
        assert_int_equal(conf_add_server_flag(c, "127.0.0.1:9001", &err), 0);
        if (!admin_first)
            assert_int_equal(conf_set_admin_flag(c, "127.0.0.1:8080", &err), 0);
        assert_int_equal(conf_finish(c, &err), -1);
        assert_string_equal(err, "--admin 127.0.0.1:8080: address already used by --listen "
                                 "127.0.0.1:8080");
        free(err);
        conf_free(c);
    }

    /* The default admin address too, along with the other flag errors. */
    c = flags_conf();
    assert_int_equal(conf_add_listen_flag(c, "127.0.0.1:9900", &err), 0);
    assert_int_equal(conf_add_listen_flag(c, "127.0.0.1:9900", &err), 0);
    c->admin.enabled = true;
    assert_int_equal(conf_finish(c, &err), -1);
    assert_string_equal(err, "no backend server: give at least one --server ADDR\n"
                             "--admin 127.0.0.1:9900: address already used by --listen "
                             "127.0.0.1:9900\n"
                             "--listen 127.0.0.1:9900: address already used by another listener");
    free(err);
    conf_free(c);
}

/* http.underscores_in_headers: drop by default (file and flags), each word, and its errors. */
static void test_http_underscores(void **state)
{
    (void)state;
    struct conf *c = load_ok(MINIMAL);
    assert_int_equal(c->http.underscores_in_headers, CONF_UNDERSCORES_DROP);
    conf_free(c);
    c = conf_new();
    assert_non_null(c);
    assert_int_equal(c->http.underscores_in_headers, CONF_UNDERSCORES_DROP);
    conf_free(c);
    c = load_ok(MINIMAL "http:\n"); /* an empty mapping keeps the default */
    assert_int_equal(c->http.underscores_in_headers, CONF_UNDERSCORES_DROP);
    conf_free(c);

    static const struct {
        const char *word;
        enum conf_underscores value;
    } words[] = {{"drop", CONF_UNDERSCORES_DROP},
                 {"allow", CONF_UNDERSCORES_ALLOW},
                 {"reject", CONF_UNDERSCORES_REJECT}};
    char yaml[512];
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        snprintf(yaml, sizeof(yaml), MINIMAL "http:\n  underscores_in_headers: %s\n",
                 words[i].word);
        c = load_ok(yaml);
        assert_int_equal(c->http.underscores_in_headers, words[i].value);
        conf_free(c);
    }

    assert_only_error(MINIMAL "http:\n  underscores_in_headers: yes\n",
                      "t.yaml:9:27: http.underscores_in_headers: expected one of: drop, allow, "
                      "reject, found \"yes\"");
    assert_only_error(MINIMAL "http:\n  underscores_in_headers: Allow\n",
                      "t.yaml:9:27: http.underscores_in_headers: expected one of: drop, allow, "
                      "reject, found \"Allow\"");
    assert_only_error(MINIMAL "http:\n  underscores_in_headers: [drop]\n",
                      "t.yaml:9:27: http.underscores_in_headers: expected drop, allow or reject, "
                      "found a sequence");
    assert_only_error(MINIMAL "http:\n  underscores: allow\n",
                      "t.yaml:9:3: http.underscores: unknown key (expected one of: "
                      "underscores_in_headers)");
    assert_only_error(MINIMAL "http: allow\n",
                      "t.yaml:8:7: http: expected a mapping, found a scalar");
    assert_only_error(MINIMAL "http:\n  underscores_in_headers: drop\n"
                              "  underscores_in_headers: allow\n",
                      "t.yaml:10:3: http.underscores_in_headers: duplicate key (first given at "
                      "line 9)");
}

static void test_conf_free_null(void **state)
{
    (void)state;
    conf_free(NULL);
}

/* ---- routes, header rules, modes ---- */

#define ROUTE_POOLS                                                                                \
    "pools:\n"                                                                                     \
    "  - { name: web, servers: [{address: 127.0.0.1:9001}] }\n"                                    \
    "  - { name: api, servers: [{address: 127.0.0.1:9002}] }\n"

static void test_routes_parsed(void **state)
{
    struct conf *c =
        load_ok("listeners:\n"
                "  - name: web\n"
                "    bind: 127.0.0.1:8080\n"
                "    routes:\n"
                "      - match: { host: [API.example.com, \"*.Example.com\"], path_prefix: /v1/,\n"
                "                 method: [GET, POST], header: { name: X-Canary },\n"
                "                 query: { name: debug, value: \"1\" }, sni: api.example.com }\n"
                "        pool: api\n"
                "        request_headers: { set: { X-Route: api }, remove: [X-Debug] }\n"
                "      - name: moved\n"
                "        match: { path: /old }\n"
                "        redirect: { scheme: https, port: 8443, status: 308 }\n"
                "      - match: { path_regex: \"^/item/[0-9]+$\" }\n"
                "        respond: { status: 200, body: \"ok\\n\" }\n"
                "    pool: web\n"
                "    merge_slashes: false\n"
                "    forward_normalized_path: true\n"
                "    response_headers: { set: { Strict-Transport-Security: \"max-age=1\" },\n"
                "                        add: { X-A: b }, remove: [Server] }\n"
                "timeouts: { tunnel: 30s }\n" ROUTE_POOLS);
    const struct conf_listener *l = &c->listeners[0];
    assert_int_equal(l->nroutes, 3);
    assert_int_equal(l->pool, 0);
    assert_false(l->merge_slashes);
    assert_true(l->forward_normalized_path);
    const struct conf_route *r = &l->routes[0];
    assert_string_equal(r->name, "route1");
    assert_int_equal(r->action, CONF_ROUTE_POOL);
    assert_int_equal(r->pool, 1);
    assert_int_equal(r->match.nhosts, 2);
    assert_string_equal(r->match.hosts[0], "api.example.com"); /* lower-cased */
    assert_string_equal(r->match.hosts[1], "*.example.com");
    assert_int_equal(r->match.nmethods, 2);
    assert_string_equal(r->match.header.name, "X-Canary");
    assert_null(r->match.header.value);
    assert_string_equal(r->match.query.value, "1");
    assert_int_equal(r->request_headers.nset, 1);
    assert_string_equal(r->request_headers.set[0].value, "api");
    assert_string_equal(l->routes[1].name, "moved");
    assert_int_equal(l->routes[1].action, CONF_ROUTE_REDIRECT);
    assert_int_equal(l->routes[1].redirect.port, 8443);
    assert_int_equal(l->routes[2].action, CONF_ROUTE_RESPOND);
    assert_string_equal(l->routes[2].respond.content_type, "text/plain");
    assert_int_equal(l->response_headers.nadd, 1);
    assert_int_equal(c->timeouts.tunnel_ms, 30000);
    conf_free(c);
}

static void test_routes_errors(void **state)
{
    char *e =
        load_fail("listeners:\n"
                  "  - bind: 127.0.0.1:8080\n"
                  "    routes:\n"
                  "      - { match: { path: /a }, pool: nope }\n"
                  "      - { match: { path_regex: \"[\" }, pool: web }\n"
                  "      - { match: { path_prefix: / }, pool: web }\n"
                  "      - { match: { path: /late }, pool: web }\n"
                  "      - { match: { path: /r }, redirect: { status: 301 } }\n"
                  "      - { match: { path: /x/../y }, pool: web, respond: { status: 200 } }\n"
                  "      - { pool: web }\n"
                  "    request_headers: { set: { Content-Length: \"1\" }, remove: [Host] }\n"
                  "  - bind: 127.0.0.1:8081\n"
                  "    mode: tcp\n"
                  "    routes: [{ match: {}, pool: web }]\n" ROUTE_POOLS);
    assert_true(has_line(e, "t.yaml:4:38: listeners[0].routes[0].pool: pool \"nope\" is not "
                            "defined (pools: api, web)"));
    assert_true(has_line(e, "t.yaml:5:32: listeners[0].routes[1].match.path_regex: not a valid "
                            "POSIX extended regular expression"));
    assert_true(has_line(e, "t.yaml:7:18: listeners[0].routes[3].match: unreachable: routes[2] "
                            "(route3) before it matches every request"));
    assert_true(has_line(e, "t.yaml:8:18: listeners[0].routes[4].match: unreachable"));
    assert_true(has_line(e, "t.yaml:8:42: listeners[0].routes[4].redirect: a redirect needs a "
                            "target"));
    assert_true(has_line(e, "t.yaml:9:26: listeners[0].routes[5].match.path: must not contain "
                            "\".\" or \"..\" segments"));
    assert_true(has_line(e, "t.yaml:9:9: listeners[0].routes[5]: a route takes only one of pool, "
                            "redirect and respond"));
    assert_true(has_line(e, "t.yaml:10:9: listeners[0].routes[6].match: required key is missing"));
    assert_true(has_line(e, "t.yaml:11:31: listeners[0].request_headers.set.Content-Length: "
                            "\"Content-Length\" is a field fulcrum frames"));
    assert_true(has_line(e, "t.yaml:11:63: listeners[0].request_headers.remove[0]: cannot be "
                            "removed"));
    assert_true(has_line(e, "t.yaml:12:5: listeners[1].pool: required: a tcp listener relays to "
                            "one pool"));
    assert_true(has_line(e, "t.yaml:14:13: listeners[1].routes: is for HTTP listeners"));
    free(e);
}

/* A pool only tcp listeners use checks with a TCP connect unless health_check.type says
 * otherwise; a pool an HTTP listener also uses keeps HTTP checks. */
static void test_tcp_listener_check_default(void **state)
{
    struct conf *c = load_ok("listeners:\n"
                             "  - { bind: 127.0.0.1:6380, mode: tcp, pool: api }\n"
                             "  - { bind: 127.0.0.1:6381, mode: tcp, pool: web }\n"
                             "  - { bind: 127.0.0.1:8080, pool: web }\n" ROUTE_POOLS);
    assert_int_equal(c->listeners[0].mode, CONF_MODE_TCP);
    assert_int_equal(c->pools[1].check.type, CONF_CHECK_TCP);  /* api */
    assert_int_equal(c->pools[0].check.type, CONF_CHECK_HTTP); /* web */
    conf_free(c);
}

/* discovery: every key with its defaults and values, and servers: [] beside it. */
static void test_discovery_keys(void **state)
{
    (void)state;
    struct conf *c = load_ok(LISTENERS "pools:\n"
                                       "  - name: app\n"
                                       "    discovery:\n"
                                       "      dns:\n"
                                       "        name: _http._tcp.api.service.consul\n"
                                       "        type: SRV\n"
                                       "        port: 8080\n"
                                       "        resolvers: [127.0.0.1:8600, \"::1\", 10.0.0.1]\n"
                                       "        interval: 5s\n"
                                       "        hold_on_error: 5m\n"
                                       "      etcd:\n"
                                       "        endpoints: [http://127.0.0.1:2379, "
                                       "http://127.0.0.2]\n"
                                       "        prefix: /services/api/\n"
                                       "        timeout: 1s\n"
                                       "        hold_on_error: 1h\n"
                                       "    max_servers: 256\n"
                                       "    servers: []\n"
                                       "  - name: other\n"
                                       "    discovery: {dns: {name: api.example, type: A+AAAA, "
                                       "port: 80}}\n"
                                       "  - name: secure\n"
                                       "    discovery:\n"
                                       "      etcd:\n"
                                       "        endpoints: [https://127.0.0.1, \"https://[::1]\"]\n"
                                       "        prefix: /s/\n"
                                       "        tls: {ca: ca.pem, cert: client.pem, key: "
                                       "client.key, sni: etcd.internal}\n");
    const struct conf_pool *p = &c->pools[0];
    assert_int_equal(p->nservers, 0);
    assert_int_equal(p->max_servers, 256);
    const struct conf_dns_discovery *d = &p->discovery.dns;
    assert_true(d->enabled);
    assert_string_equal(d->name, "_http._tcp.api.service.consul");
    assert_int_equal(d->type, CONF_DNS_SRV);
    assert_int_equal(d->port, 8080);
    assert_int_equal(d->nresolvers, 3);
    char text[NET_ADDR_TEXT];
    net_addr_format((const struct sockaddr *)&d->resolvers[0].ss, text, sizeof(text));
    assert_string_equal(text, "127.0.0.1:8600");
    net_addr_format((const struct sockaddr *)&d->resolvers[1].ss, text, sizeof(text));
    assert_string_equal(text, "[::1]:53");
    net_addr_format((const struct sockaddr *)&d->resolvers[2].ss, text, sizeof(text));
    assert_string_equal(text, "10.0.0.1:53");
    assert_int_equal(d->interval_ms, 5000);
    assert_int_equal(d->hold_on_error_ms, 300000);
    assert_int_equal(d->timeout_ms, 2000);
    const struct conf_etcd_discovery *e = &p->discovery.etcd;
    assert_true(e->enabled);
    assert_int_equal(e->nendpoints, 2);
    assert_string_equal(e->endpoints[1], "http://127.0.0.2");
    assert_string_equal(e->endpoint_hosts[0], "127.0.0.1:2379");
    assert_string_equal(e->endpoint_hosts[1], "127.0.0.2:2379"); /* etcd's port by default */
    net_addr_format((const struct sockaddr *)&e->endpoint_addrs[1].ss, text, sizeof(text));
    assert_string_equal(text, "127.0.0.2:2379");
    assert_string_equal(e->prefix, "/services/api/");
    assert_int_equal(e->timeout_ms, 1000);
    assert_int_equal(e->hold_on_error_ms, 3600000);
    assert_false(e->https);
    assert_false(e->tls.enabled);
    assert_true(e->tls.verify); /* verification is on unless written off */
    const struct conf_pool *o = &c->pools[1];
    assert_int_equal(o->discovery.dns.type, CONF_DNS_A_AAAA);
    assert_false(o->discovery.etcd.enabled);
    assert_int_equal(o->discovery.dns.nresolvers, 0);
    assert_int_equal(o->discovery.etcd.hold_on_error_ms, 0);
    assert_int_equal(o->max_servers, CONF_MAX_SERVERS_DEFAULT);
    const struct conf_etcd_discovery *s = &c->pools[2].discovery.etcd;
    assert_true(s->https);
    assert_true(s->tls.enabled);
    assert_string_equal(s->endpoint_hosts[0], "127.0.0.1:2379");
    assert_string_equal(s->endpoint_hosts[1], "[::1]:2379");
    assert_string_equal(s->tls.ca, "ca.pem");
    assert_string_equal(s->tls.cert, "client.pem");
    assert_string_equal(s->tls.key, "client.key");
    assert_string_equal(s->tls.sni, "etcd.internal");
    assert_true(s->tls.verify);
    assert_int_equal(c->pools[1].nservers, 0); /* no servers key at all */
    conf_free(c);
}

/* protocol: h2 speaks HTTP/2 to the servers: checked with a connect unless the type is written,
 * and refused where a connection would carry one client only (PROXY header, tcp listener). */
static void test_pool_protocol(void **state)
{
    (void)state;
    struct conf *c = load_ok(LISTENERS "pools:\n  - name: app\n    protocol: h2\n"
                                       "    servers: [{address: 127.0.0.1:9000}]\n"
                                       "    health_check: {interval: 1s}\n");
    assert_int_equal(c->pools[0].protocol, CONF_POOL_H2);
    assert_int_equal(c->pools[0].check.type, CONF_CHECK_TCP);
    conf_free(c);
    c = load_ok(LISTENERS "pools:\n  - name: app\n    protocol: h2\n"
                          "    servers: [{address: 127.0.0.1:9000}]\n"
                          "    health_check: {type: grpc, service: x}\n");
    assert_int_equal(c->pools[0].check.type, CONF_CHECK_GRPC);
    conf_free(c);
    c = load_ok(MINIMAL);
    assert_int_equal(c->pools[0].protocol, CONF_POOL_HTTP1);
    conf_free(c);
    assert_only_error(LISTENERS "pools:\n  - name: app\n    protocol: h3\n"
                                "    servers: [{address: 127.0.0.1:9000}]\n",
                      "t.yaml:6:15: pools[0].protocol: expected one of: http1, h2, found \"h3\"");
    assert_only_error(LISTENERS "pools:\n  - name: app\n    protocol: h2\n"
                                "    proxy_protocol: v2\n"
                                "    servers: [{address: 127.0.0.1:9000}]\n",
                      "t.yaml:7:21: pools[0].proxy_protocol: cannot go with protocol: h2: a PROXY "
                      "header names one client, and an HTTP/2 connection carries the requests of "
                      "many");
    assert_only_error("listeners:\n  - bind: 127.0.0.1:8080\n    mode: tcp\n    pool: app\n"
                      "pools:\n  - name: app\n    protocol: h2\n"
                      "    servers: [{address: 127.0.0.1:9000}]\n",
                      "t.yaml:4:11: listeners[0].pool: pool app has protocol: h2, which is for "
                      "HTTP listeners: a tcp listener relays bytes, it has no requests to put on "
                      "streams");
}

static void test_discovery_errors(void **state)
{
    (void)state;
    const char *head = LISTENERS "pools:\n  - name: app\n    servers: []\n    discovery:\n";
    char yaml[1024];
#define DISCOVERY_ERROR(body, message)                                                             \
    do {                                                                                           \
        snprintf(yaml, sizeof(yaml), "%s%s", head, body);                                          \
        assert_only_error(yaml, message);                                                          \
    } while (0)
    DISCOVERY_ERROR("      dns: {type: A, port: 80}\n",
                    "t.yaml:8:12: pools[0].discovery.dns.name: required key is missing");
    DISCOVERY_ERROR("      dns: {name: a..b, port: 1}\n",
                    "t.yaml:8:19: pools[0].discovery.dns.name: must not have an empty label (two "
                    "dots, or a leading dot), found \"a..b\"");
    DISCOVERY_ERROR("      dns: {name: \"a b\"}\n",
                    "t.yaml:8:19: pools[0].discovery.dns.name: must be a DNS name (letters, "
                    "digits, '-', '_' and '.'), found \"a b\"");
    DISCOVERY_ERROR("      dns: {name: api.example, type: A}\n",
                    "t.yaml:8:12: pools[0].discovery.dns.port: is needed with type A (A and AAAA "
                    "records carry no port)");
    DISCOVERY_ERROR("      dns: {name: api.example, type: MX}\n",
                    "t.yaml:8:38: pools[0].discovery.dns.type: expected one of: SRV, A, AAAA, "
                    "A+AAAA, found \"MX\"");
    DISCOVERY_ERROR("      dns: {name: api.example, interval: 500ms}\n",
                    "t.yaml:8:42: pools[0].discovery.dns.interval: must be at least 1s");
    DISCOVERY_ERROR("      dns: {name: api.example, resolvers: [dns.google]}\n",
                    "t.yaml:8:44: pools[0].discovery.dns.resolvers[0]: must be an IP address, or "
                    "IP:PORT ([IPv6]:PORT): a resolver cannot be a name, found \"dns.google\"");
    DISCOVERY_ERROR("      dns: {name: api.example, resolvers: []}\n",
                    "t.yaml:8:43: pools[0].discovery.dns.resolvers: must not be empty");
    DISCOVERY_ERROR("      etcd: {prefix: /a/}\n",
                    "t.yaml:8:13: pools[0].discovery.etcd.endpoints: required key is missing");
    DISCOVERY_ERROR("      etcd: {endpoints: [\"ftp://127.0.0.1:2379\"], prefix: /a/}\n",
                    "t.yaml:8:26: pools[0].discovery.etcd.endpoints[0]: must be http://HOST:PORT "
                    "or https://HOST:PORT, found \"ftp://127.0.0.1:2379\"");
    DISCOVERY_ERROR(
        "      etcd: {endpoints: [\"http://127.0.0.1:2379/v3\"], prefix: /a/}\n",
        "t.yaml:8:26: pools[0].discovery.etcd.endpoints[0]: must be http(s)://HOST:PORT, "
        "with no path or user, found \"http://127.0.0.1:2379/v3\"");
    DISCOVERY_ERROR("      etcd: {endpoints: [\"https://127.0.0.1\", \"http://127.0.0.2\"], "
                    "prefix: /a/}\n",
                    "t.yaml:8:25: pools[0].discovery.etcd.endpoints: mixes http:// and https:// "
                    "endpoints: one cluster speaks one of them");
    DISCOVERY_ERROR(
        "      etcd: {endpoints: [\"http://127.0.0.1\"], prefix: /a/, tls: {ca: c.pem}}\n",
        "t.yaml:8:65: pools[0].discovery.etcd.tls: needs https:// endpoints");
    DISCOVERY_ERROR(
        "      etcd: {endpoints: [\"https://127.0.0.1\"], prefix: /a/, tls: {cert: c}}\n",
        "t.yaml:8:66: pools[0].discovery.etcd.tls.key: key is needed with cert");
    DISCOVERY_ERROR(
        "      etcd: {endpoints: [\"http://127.0.0.1:99999\"], prefix: /a/}\n",
        "t.yaml:8:26: pools[0].discovery.etcd.endpoints[0]: \"http://127.0.0.1:99999\": "
        "invalid port (expected 0-65535)");
    DISCOVERY_ERROR("      etcd: {endpoints: [\"http://127.0.0.1\"], prefix: \"\"}\n",
                    "t.yaml:8:55: pools[0].discovery.etcd.prefix: must not be empty");
    DISCOVERY_ERROR("      etcd: {endpoints: [\"http://127.0.0.1\"]}\n",
                    "t.yaml:8:13: pools[0].discovery.etcd.prefix: required key is missing");
    DISCOVERY_ERROR("      consul: {}\n",
                    "t.yaml:6:14: pools[0].servers: must not be empty without discovery\n"
                    "t.yaml:8:7: pools[0].discovery.consul: unknown key (expected one of: dns, "
                    "etcd)");
#undef DISCOVERY_ERROR
    /* a pool needs servers or discovery; written servers must fit max_servers */
    assert_only_error(LISTENERS "pools:\n  - name: app\n    discovery: {}\n",
                      "t.yaml:5:5: pools[0].servers: required key is missing (unless discovery "
                      "finds the servers)");
    assert_only_error(LISTENERS "pools:\n  - name: app\n    max_servers: 1\n    servers:\n"
                                "      - address: 127.0.0.1:1\n      - address: 127.0.0.1:2\n",
                      "t.yaml:6:18: pools[0].max_servers: is 1, but the pool lists 2 servers");
    assert_only_error(LISTENERS "pools:\n  - name: app\n    max_servers: 0\n    servers:\n"
                                "      - address: 127.0.0.1:1\n",
                      "t.yaml:6:18: pools[0].max_servers: must be between 1 and 100000");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_minimal_file_defaults),
        cmocka_unit_test(test_timeout_abort_backlog_keys),
        cmocka_unit_test(test_example_schema),
        cmocka_unit_test(test_unused_pool_and_zero_weights),
        cmocka_unit_test(test_empty_optional_values_keep_defaults),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_duration_messages),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_unknown_keys_every_level),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_null_and_empty_values),
        cmocka_unit_test(test_wrong_node_types),
        cmocka_unit_test(test_enums),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_pool_reference),
        cmocka_unit_test(test_duplicate_names_and_addresses),
        cmocka_unit_test(test_many_errors_in_document_order),
        cmocka_unit_test(test_health_full),
        cmocka_unit_test(test_health_defaults),
        cmocka_unit_test(test_status_sets),
        cmocka_unit_test(test_status_set_errors),
        cmocka_unit_test(test_health_errors),
        cmocka_unit_test(test_ops_full),
        cmocka_unit_test(test_ops_defaults),
        cmocka_unit_test(test_ops_errors),
        cmocka_unit_test(test_listener_tls),
        cmocka_unit_test(test_listener_tls_errors),
        cmocka_unit_test(test_listener_http2),
        cmocka_unit_test(test_listener_http2_errors),
        cmocka_unit_test(test_tls_flags),
        cmocka_unit_test(test_proxy_protocol_accept),
        cmocka_unit_test(test_pool_tls),
        cmocka_unit_test(test_ops_admin_address_clash),
        cmocka_unit_test(test_http_underscores),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_encoding_errors),
        cmocka_unit_test(test_second_document),
        cmocka_unit_test(test_too_many_entries),
        cmocka_unit_test(test_mangled_input),
        cmocka_unit_test(test_mangled_health_input),
        cmocka_unit_test(test_mangled_ops_input),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_flags_valid),
        cmocka_unit_test(test_flags_invalid),
        cmocka_unit_test(test_flags_repeated_option_overrides),
        cmocka_unit_test(test_health_flags),
        cmocka_unit_test(test_health_flags_invalid),
        cmocka_unit_test(test_ops_flags),
        cmocka_unit_test(test_ops_flags_invalid),
        cmocka_unit_test(test_conf_free_null),
        cmocka_unit_test(test_routes_parsed),
        cmocka_unit_test(test_routes_errors),
        cmocka_unit_test(test_tcp_listener_check_default),
        cmocka_unit_test(test_balance_keys),
        cmocka_unit_test(test_balance_key_errors),
        cmocka_unit_test(test_balance_keys_tcp),
        cmocka_unit_test(test_discovery_keys),
        cmocka_unit_test(test_discovery_errors),
        cmocka_unit_test(test_pool_protocol),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
