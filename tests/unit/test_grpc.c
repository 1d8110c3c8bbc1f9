/*
 * test_grpc.c - what the proxy knows of gRPC (http/grpc.h) on request heads parsed by the real
 * parser: grpc-timeout in every unit, rounded up, and the malformed ones ignored; which
 * Content-Types make a gRPC call; the HTTP-to-gRPC status mapping; and fulcrum's own
 * trailers-only answer, byte for byte, with its percent-encoded grpc-message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/grpc.h"
#include "http/http1.h"

#define MAX_FIELDS 16

struct req {
    char head[1024];
    struct http1_msg msg;
    struct http1_field fields[MAX_FIELDS];
};

/* "POST /s/M HTTP/1.1", Host, then the extra lines (each ending in CRLF), parsed. */
static void parse(struct req *r, const char *extra)
{
    static const struct http1_limits limits = {.max_head_bytes = 1024, .max_fields = MAX_FIELDS};
    memset(r, 0, sizeof(*r));
    int len = snprintf(r->head, sizeof(r->head),
                       "POST /pkg.Svc/Method HTTP/1.1\r\nHost: h\r\n%s\r\n", extra);
    assert_true(len > 0 && (size_t)len < sizeof(r->head));
    struct http1_scan scan = {0};
    uint16_t status = 0;
    const char *why = NULL;
    assert_int_equal(http1_scan_head(&scan, r->head, (size_t)len, &limits, true, &status, &why),
                     HTTP1_DONE);
    r->msg.fields = r->fields;
    assert_int_equal(http1_parse_request(&scan, r->head, &limits, &r->msg), HTTP1_DONE);
}

/* The timeout a "grpc-timeout: value" line gives, or UINT64_MAX when it is ignored. */
static uint64_t timeout_of(const char *value)
{
    char line[128];
    snprintf(line, sizeof(line), "grpc-timeout: %s\r\n", value);
    struct req r;
    parse(&r, line);
    uint64_t ms = 12345;
    if (!grpc_timeout_ms(r.head, &r.msg, &ms)) {
        assert_int_equal(ms, 12345); /* untouched when false */
        return UINT64_MAX;
    }
    return ms;
}

static void test_timeout_units(void **state)
{
    (void)state;
    assert_int_equal(timeout_of("2H"), 2 * 3600000);
    assert_int_equal(timeout_of("3M"), 3 * 60000);
    assert_int_equal(timeout_of("5S"), 5000);
    assert_int_equal(timeout_of("250m"), 250);
    assert_int_equal(timeout_of("7000u"), 7);
    assert_int_equal(timeout_of("9000000n"), 9);
    assert_int_equal(timeout_of("0m"), 0); /* the proxy makes this its shortest deadline */
    /* 8 digits is the most, and the largest value of the largest unit does not overflow */
    assert_int_equal(timeout_of("99999999H"), UINT64_C(99999999) * 3600000);
    assert_int_equal(timeout_of("00000001S"), 1000);
}

/* Below a millisecond is rounded up: a deadline is never made shorter than the client's. */
static void test_timeout_rounding(void **state)
{
    (void)state;
    assert_int_equal(timeout_of("1u"), 1);
    assert_int_equal(timeout_of("999u"), 1);
    assert_int_equal(timeout_of("1000u"), 1);
    assert_int_equal(timeout_of("1001u"), 2);
    assert_int_equal(timeout_of("0u"), 0);
    assert_int_equal(timeout_of("1n"), 1);
    assert_int_equal(timeout_of("1000000n"), 1);
    assert_int_equal(timeout_of("1000001n"), 2);
    assert_int_equal(timeout_of("99999999n"), 100);
    assert_int_equal(timeout_of("0n"), 0);
}

static void test_timeout_malformed(void **state)
{
    (void)state;
    assert_int_equal(timeout_of("100"), UINT64_MAX);        /* no unit */
    assert_int_equal(timeout_of("S"), UINT64_MAX);          /* no digits */
    assert_int_equal(timeout_of("123456789m"), UINT64_MAX); /* 9 digits */
    assert_int_equal(timeout_of("1234567890S"), UINT64_MAX);
    assert_int_equal(timeout_of("10s"), UINT64_MAX); /* units are case-sensitive */
    assert_int_equal(timeout_of("10h"), UINT64_MAX);
    assert_int_equal(timeout_of("1x0S"), UINT64_MAX);
    assert_int_equal(timeout_of("-1S"), UINT64_MAX);
    assert_int_equal(timeout_of("+1S"), UINT64_MAX);
    assert_int_equal(timeout_of("1 S"), UINT64_MAX);
    assert_int_equal(timeout_of("1.5S"), UINT64_MAX);
    assert_int_equal(timeout_of("abc"), UINT64_MAX);
    assert_int_equal(timeout_of(""), UINT64_MAX); /* empty */

    /* no grpc-timeout at all; and the first of two counts */
    struct req r;
    uint64_t ms = 0;
    parse(&r, "content-type: application/grpc\r\n");
    assert_false(grpc_timeout_ms(r.head, &r.msg, &ms));
    parse(&r, "Grpc-Timeout: 1S\r\ngrpc-timeout: 2S\r\n");
    assert_true(grpc_timeout_ms(r.head, &r.msg, &ms));
    assert_int_equal(ms, 1000);
}

/* Is a request with this Content-Type line (or none: NULL) a gRPC call? */
static bool is_grpc(const char *content_type)
{
    char line[128] = "";
    if (content_type)
        snprintf(line, sizeof(line), "Content-Type: %s\r\n", content_type);
    struct req r;
    parse(&r, line);
    return grpc_request(r.head, &r.msg);
}

static void test_request(void **state)
{
    (void)state;
    assert_true(is_grpc("application/grpc"));
    assert_true(is_grpc("application/grpc+proto"));
    assert_true(is_grpc("application/grpc+json"));
    assert_true(is_grpc("Application/GRPC;x"));
    assert_true(is_grpc("APPLICATION/GRPC"));
    assert_false(is_grpc("application/grpcx"));
    assert_false(is_grpc("application/grpc-web"));
    assert_false(is_grpc("application/grp"));
    assert_false(is_grpc("application/json"));
    assert_false(is_grpc("text/plain"));
    assert_false(is_grpc(""));
    assert_false(is_grpc(NULL));
}

static void test_status_mapping(void **state)
{
    (void)state;
    static const struct {
        unsigned http;
        enum grpc_status grpc;
    } table[] = {
        {400, GRPC_INTERNAL},      {401, GRPC_UNAUTHENTICATED}, {403, GRPC_PERMISSION_DENIED},
        {404, GRPC_UNIMPLEMENTED}, {429, GRPC_UNAVAILABLE},     {502, GRPC_UNAVAILABLE},
        {503, GRPC_UNAVAILABLE},   {504, GRPC_UNAVAILABLE},     {500, GRPC_UNKNOWN},
        {408, GRPC_UNKNOWN},       {431, GRPC_UNKNOWN},         {200, GRPC_UNKNOWN},
        {0, GRPC_UNKNOWN},         {999, GRPC_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (grpc_status_of_http(table[i].http) != table[i].grpc)
            fail_msg("HTTP %u: gRPC %d, expected %d", table[i].http,
                     (int)grpc_status_of_http(table[i].http), (int)table[i].grpc);
    }
    /* the numbers are the protocol's */
    assert_int_equal(GRPC_DEADLINE_EXCEEDED, 4);
    assert_int_equal(GRPC_UNAVAILABLE, 14);
    assert_int_equal(GRPC_UNAUTHENTICATED, 16);
}

static void test_reply(void **state)
{
    (void)state;
    char out[1024];
    size_t n = grpc_reply(out, sizeof(out), GRPC_UNAVAILABLE, "no server available", "");
    const char *want = "HTTP/1.1 200 OK\r\n"
                       "Content-Type: application/grpc\r\n"
                       "grpc-status: 14\r\n"
                       "grpc-message: no server available\r\n"
                       "Content-Length: 0\r\n"
                       "\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);

    n = grpc_reply(out, sizeof(out), GRPC_DEADLINE_EXCEEDED, "", "Connection: close\r\n");
    want = "HTTP/1.1 200 OK\r\n"
           "Content-Type: application/grpc\r\n"
           "grpc-status: 4\r\n"
           "grpc-message: \r\n"
           "Content-Length: 0\r\n"
           "Connection: close\r\n"
           "\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

/* '%', control bytes (CR LF: no header injection) and non-ASCII are %XX; the rest is as is. */
static void test_reply_encoding(void **state)
{
    (void)state;
    char out[1024];
    size_t n =
        grpc_reply(out, sizeof(out), GRPC_INTERNAL, "100% sure\r\nX: y caf\xc3\xa9 \x7f~", "");
    const char *want = "HTTP/1.1 200 OK\r\n"
                       "Content-Type: application/grpc\r\n"
                       "grpc-status: 13\r\n"
                       "grpc-message: 100%25 sure%0D%0AX: y caf%C3%A9 %7F~\r\n"
                       "Content-Length: 0\r\n"
                       "\r\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

/* A message longer than the encoding's room goes empty; a buffer too small gives 0. */
static void test_reply_limits(void **state)
{
    (void)state;
    char msg[300], out[1024], want[1024];
    /* 256 plain bytes fit exactly */
    memset(msg, 'a', 256);
    msg[256] = '\0';
    size_t n = grpc_reply(out, sizeof(out), GRPC_UNKNOWN, msg, "");
    snprintf(want, sizeof(want),
             "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\ngrpc-status: 2\r\n"
             "grpc-message: %s\r\nContent-Length: 0\r\n\r\n",
             msg);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);

    /* one more, or an escape that no longer fits: no message at all (never half of one) */
    const char *empty = "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\ngrpc-status: 2\r\n"
                        "grpc-message: \r\nContent-Length: 0\r\n\r\n";
    msg[256] = 'a';
    msg[257] = '\0';
    n = grpc_reply(out, sizeof(out), GRPC_UNKNOWN, msg, "");
    assert_int_equal(n, strlen(empty));
    assert_memory_equal(out, empty, n);
    memset(msg, 'a', 254);
    msg[254] = '%';
    msg[255] = '\0';
    n = grpc_reply(out, sizeof(out), GRPC_UNKNOWN, msg, "");
    assert_int_equal(n, strlen(empty));
    assert_memory_equal(out, empty, n);

    /* the whole answer must fit, with room for snprintf's NUL */
    size_t len = strlen(empty);
    assert_int_equal(grpc_reply(out, len + 1, GRPC_UNKNOWN, "", ""), len);
    assert_int_equal(grpc_reply(out, len, GRPC_UNKNOWN, "", ""), 0);
    assert_int_equal(grpc_reply(out, 10, GRPC_UNKNOWN, "", ""), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timeout_units),     cmocka_unit_test(test_timeout_rounding),
        cmocka_unit_test(test_timeout_malformed), cmocka_unit_test(test_request),
        cmocka_unit_test(test_status_mapping),    cmocka_unit_test(test_reply),
        cmocka_unit_test(test_reply_encoding),    cmocka_unit_test(test_reply_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
