/*
 * test_h2_request.c - HTTP/2 request fields written as the HTTP/1.1 head the proxy reads,
 * trailers as a chunked body's end, and (the client role) a server's response fields as an
 * HTTP/1.1 response head with the body's framing decided (h2/request.h), byte for byte; every
 * head written is also one the HTTP/1.1 parser accepts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "h2/request.h"
#include "http/http1.h"

static char head[4096], scratch[4096];

/* Feeds "name", "value" pairs (NULL ends them) and returns the head, or NULL on error. */
static const char *build_with(struct h2_request *r, uint32_t cap, bool end_stream,
                              const char *const *fields)
{
    h2_request_init(r, head, cap, scratch, sizeof(scratch));
    for (; *fields; fields += 2)
        h2_request_field(r, fields[0], strlen(fields[0]), fields[1], strlen(fields[1]));
    uint32_t len = h2_request_finish(r, end_stream);
    if (!len)
        return NULL;
    head[len] = '\0';
    return head;
}

static const char *build(bool end_stream, const char *const *fields)
{
    static struct h2_request r;
    return build_with(&r, sizeof(head) - 1, end_stream, fields);
}

static void assert_parses(const char *h)
{
    static const struct http1_limits limits = {.max_head_bytes = 4096, .max_fields = 64};
    static struct http1_field fields[64];
    struct http1_scan scan = {0};
    uint16_t status;
    const char *why;
    struct http1_msg msg = {.fields = fields};
    assert_int_equal(http1_scan_head(&scan, h, strlen(h), &limits, true, &status, &why),
                     HTTP1_DONE);
    assert_int_equal(http1_parse_request(&scan, h, &limits, &msg), HTTP1_DONE);
    assert_int_equal(msg.head_end, strlen(h));
}

static void test_get(void **state)
{
    (void)state;
    const char *f[] = {":method",    "GET",         ":scheme", "https",     ":path", "/a?b=1",
                       ":authority", "example.com", "accept",  "text/html", NULL};
    const char *h = build(true, f);
    assert_string_equal(h, "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\naccept: text/html\r\n"
                           "Connection: close\r\n\r\n");
    assert_parses(h);
}

/* Pseudo-header fields in any order; the request line waits for all of them. */
static void test_pseudo_order(void **state)
{
    (void)state;
    const char *f[] = {":authority", "h.test:8443", ":path", "/", ":method",
                       "HEAD",       ":scheme",     "http",  NULL};
    struct h2_request r;
    const char *h = build_with(&r, sizeof(head) - 1, true, f);
    assert_string_equal(h, "HEAD / HTTP/1.1\r\nHost: h.test:8443\r\nConnection: close\r\n\r\n");
    assert_int_equal(r.method, HTTP1_METHOD_HEAD);
    assert_parses(h);
}

/* RFC 9113 section 8.2.3: crumbs are joined with "; " into one field. */
static void test_cookies_joined(void **state)
{
    (void)state;
    const char *f[] = {":method", "GET", ":path",  "/",   ":authority", "a",   "cookie", "a=1",
                       "x",       "y",   "cookie", "b=2", "cookie",     "c=3", NULL};
    const char *h = build(true, f);
    assert_string_equal(h, "GET / HTTP/1.1\r\nHost: a\r\nx: y\r\ncookie: a=1; b=2; c=3\r\n"
                           "Connection: close\r\n\r\n");
    assert_parses(h);
}

/* A body without Content-Length goes chunked (trailers may follow); with one, as it is. */
static void test_body_framing(void **state)
{
    (void)state;
    struct h2_request r;
    const char *f[] = {":method", "POST", ":path", "/up", ":authority", "a", NULL};
    const char *h = build_with(&r, sizeof(head) - 1, false, f);
    assert_string_equal(h, "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                           "Connection: close\r\n\r\n");
    assert_true(r.chunked);
    assert_parses(h);
    const char *g[] = {":method", "POST",           ":path", "/up", ":authority",
                       "a",       "content-length", "5",     NULL};
    h = build_with(&r, sizeof(head) - 1, false, g);
    assert_string_equal(h, "POST /up HTTP/1.1\r\nHost: a\r\ncontent-length: 5\r\n"
                           "Connection: close\r\n\r\n");
    assert_false(r.chunked);
    assert_parses(h);
}

/* Host beside :authority: the same host is written once, another one is malformed. */
static void test_host_and_authority(void **state)
{
    (void)state;
    struct h2_request r;
    const char *same[] = {":method",     "GET",  ":path",       "/", ":authority",
                          "Example.com", "host", "example.COM", NULL};
    assert_string_equal(build_with(&r, sizeof(head) - 1, true, same),
                        "GET / HTTP/1.1\r\nHost: Example.com\r\nConnection: close\r\n\r\n");
    const char *other[] = {":method", "GET",  ":path",  "/", ":authority",
                           "a.test",  "host", "b.test", NULL};
    assert_null(build_with(&r, sizeof(head) - 1, true, other));
    assert_int_equal(r.error_status, 400);
    /* no :authority: the Host field is the host */
    const char *host_only[] = {":method", "GET", ":path", "/", "host", "h.test", NULL};
    const char *h = build_with(&r, sizeof(head) - 1, true, host_only);
    assert_string_equal(h, "GET / HTTP/1.1\r\nhost: h.test\r\nConnection: close\r\n\r\n");
    assert_parses(h);
}

static void test_connect_and_errors(void **state)
{
    (void)state;
    struct h2_request r;
    const char *connect[] = {":method", "CONNECT", ":authority", "db.test:5432", NULL};
    assert_string_equal(build_with(&r, sizeof(head) - 1, false, connect),
                        "CONNECT db.test:5432 HTTP/1.1\r\nHost: db.test:5432\r\n"
                        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    const char *no_path[] = {":method", "GET", ":authority", "a", NULL};
    assert_null(build_with(&r, sizeof(head) - 1, true, no_path));
    assert_int_equal(r.error_status, 400);
    const char *late_pseudo[] = {":method", "GET", ":path", "/", "x", "1", ":authority", "a", NULL};
    assert_null(build_with(&r, sizeof(head) - 1, true, late_pseudo));
    assert_int_equal(r.error_status, 400);
    const char *unknown[] = {":method", "GET", ":path", "/", ":protocol", "websocket", NULL};
    assert_null(build_with(&r, sizeof(head) - 1, true, unknown));
    assert_int_equal(r.error_status, 400);
}

/* A head that does not fit is 431, at every size up to the one that fits. */
static void test_too_large(void **state)
{
    (void)state;
    struct h2_request r;
    const char *f[] = {":method",    "GET", ":path",  "/",
                       ":authority", "a",   "x-long", "0123456789012345678901234567890123456789",
                       NULL};
    const char *full = build(true, f);
    size_t need = strlen(full);
    for (uint32_t cap = 0; cap < need; cap++) {
        assert_null(build_with(&r, cap, true, f));
        assert_int_equal(r.error_status, 431);
    }
    assert_non_null(build_with(&r, (uint32_t)need, true, f));
}

static void test_trailers(void **state)
{
    (void)state;
    struct h2_request r;
    char buf[128];
    h2_trailers_init(&r, buf, sizeof(buf));
    assert_int_equal(h2_trailers_field(&r, "x-sum", 5, "abc", 3), 0);
    assert_int_equal(h2_trailers_field(&r, "grpc-status", 11, "0", 1), 0);
    uint32_t len = h2_trailers_finish(&r);
    assert_int_equal(len, strlen("0\r\nx-sum: abc\r\ngrpc-status: 0\r\n\r\n"));
    assert_memory_equal(buf, "0\r\nx-sum: abc\r\ngrpc-status: 0\r\n\r\n", len);
    /* the chunked decoder takes it as the body's end */
    struct http1_chunked c = {0};
    size_t used, out;
    assert_int_equal(http1_chunked_parse(&c, buf, len, false, &used, &out), HTTP1_DONE);
    assert_int_equal(used, len);

    h2_trailers_init(&r, buf, 10);
    assert_int_equal(h2_trailers_field(&r, "x-sum", 5, "abc", 3), -1);
    assert_int_equal(r.error_status, 431);
    assert_int_equal(h2_trailers_finish(&r), 0);
}

/* ---- the client role: a server's response header block (h2_reply_*) ---- */

/* Feeds a response's "name", "value" pairs (NULL ends them) and returns the head, or NULL. */
static const char *reply_with(struct h2_request *r, uint32_t cap, uint8_t method, bool end_stream,
                              bool *chunked, const char *const *fields)
{
    h2_reply_init(r, head, cap, method);
    for (; *fields; fields += 2)
        h2_reply_field(r, fields[0], strlen(fields[0]), fields[1], strlen(fields[1]));
    *chunked = true; /* finish must say */
    uint32_t len = h2_reply_finish(r, end_stream, chunked);
    if (!len)
        return NULL;
    head[len] = '\0';
    return head;
}

/* The head parses as a response to method, with the framing given. */
static void assert_reply_parses(const char *h, uint8_t method, uint8_t body)
{
    static const struct http1_limits limits = {.max_head_bytes = 4096, .max_fields = 64};
    static struct http1_field fields[64];
    struct http1_scan scan = {0};
    uint16_t status;
    const char *why;
    struct http1_msg msg = {.fields = fields};
    assert_int_equal(http1_scan_head(&scan, h, strlen(h), &limits, false, &status, &why),
                     HTTP1_DONE);
    assert_int_equal(http1_parse_response(&scan, h, &limits, method, &msg), HTTP1_DONE);
    assert_int_equal(msg.head_end, strlen(h));
    assert_int_equal(msg.body, body);
}

static void test_reply_fields(void **state)
{
    (void)state;
    struct h2_request r;
    bool chunked;
    const char *f[] = {
        ":status", "200", "content-type", "application/grpc", "content-length", "12", "x-a",
        "b c",     NULL};
    const char *h = reply_with(&r, sizeof(head) - 1, HTTP1_METHOD_POST, false, &chunked, f);
    assert_string_equal(h, "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\n"
                           "content-length: 12\r\nx-a: b c\r\n\r\n");
    assert_false(chunked);
    assert_int_equal(r.status, 200);
    assert_reply_parses(h, HTTP1_METHOD_POST, HTTP1_BODY_LENGTH);
    /* an empty body's length is the server's framing too (names come lowercase: nghttp2 has
     * refused any other) */
    const char *zero[] = {":status", "404", "content-length", "0", NULL};
    h = reply_with(&r, sizeof(head) - 1, HTTP1_METHOD_GET, false, &chunked, zero);
    assert_string_equal(h, "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
    assert_false(chunked);
    /* a status without a reason phrase of its own still makes a valid status line */
    const char *odd[] = {":status", "299", NULL};
    h = reply_with(&r, sizeof(head) - 1, HTTP1_METHOD_GET, true, &chunked, odd);
    assert_string_equal(h, "HTTP/1.1 299 \r\ncontent-length: 0\r\n\r\n");
    assert_reply_parses(h, HTTP1_METHOD_GET, HTTP1_BODY_NONE);
}

/* Without a Content-Length the body goes chunked (trailers may follow), unless it already
 * ended with the HEADERS: then it is empty. */
static void test_reply_framing(void **state)
{
    (void)state;
    struct h2_request r;
    bool chunked;
    const char *f[] = {":status", "200", "content-type", "application/grpc", NULL};
    const char *h = reply_with(&r, sizeof(head) - 1, HTTP1_METHOD_POST, false, &chunked, f);
    assert_string_equal(h, "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\n"
                           "transfer-encoding: chunked\r\n\r\n");
    assert_true(chunked);
    assert_reply_parses(h, HTTP1_METHOD_POST, HTTP1_BODY_CHUNKED);
    /* gRPC's trailers-only response: one HEADERS with END_STREAM */
    const char *only[] = {":status", "200", "grpc-status", "14", NULL};
    h = reply_with(&r, sizeof(head) - 1, HTTP1_METHOD_POST, true, &chunked, only);
    assert_string_equal(h, "HTTP/1.1 200 OK\r\ngrpc-status: 14\r\ncontent-length: 0\r\n\r\n");
    assert_false(chunked);
    assert_reply_parses(h, HTTP1_METHOD_POST, HTTP1_BODY_NONE);
}

/* 1xx, 204, 304 and any answer to HEAD have no body: no framing is added, and none is chunked. */
static void test_reply_bodiless(void **state)
{
    (void)state;
    static const struct {
        const char *status;
        uint8_t method;
        const char *want;
    } cases[] = {
        {"204", HTTP1_METHOD_DELETE, "HTTP/1.1 204 No Content\r\nx: y\r\n\r\n"},
        {"304", HTTP1_METHOD_GET, "HTTP/1.1 304 Not Modified\r\nx: y\r\n\r\n"},
        {"200", HTTP1_METHOD_HEAD, "HTTP/1.1 200 OK\r\nx: y\r\n\r\n"},
        {"100", HTTP1_METHOD_POST, "HTTP/1.1 100 Continue\r\nx: y\r\n\r\n"},
        {"103", HTTP1_METHOD_GET, "HTTP/1.1 103 Early Hints\r\nx: y\r\n\r\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int end_stream = 0; end_stream < 2; end_stream++) {
            struct h2_request r;
            bool chunked;
            const char *f[] = {":status", cases[i].status, "x", "y", NULL};
            const char *h =
                reply_with(&r, sizeof(head) - 1, cases[i].method, end_stream, &chunked, f);
            assert_non_null(h);
            assert_string_equal(h, cases[i].want);
            assert_false(chunked);
        }
    }
    /* a HEAD response keeps the Content-Length of the body it would have had */
    struct h2_request r;
    bool chunked;
    const char *f[] = {":status", "200", "content-length", "1234", NULL};
    const char *h = reply_with(&r, sizeof(head) - 1, HTTP1_METHOD_HEAD, false, &chunked, f);
    assert_string_equal(h, "HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n");
    assert_reply_parses(h, HTTP1_METHOD_HEAD, HTTP1_BODY_NONE);
}

/* A block the head cannot be made of fails (0), and every call after the first error does
 * nothing. */
static void test_reply_errors(void **state)
{
    (void)state;
    struct h2_request r;
    bool chunked;
    const char *none[] = {"content-type", "text/plain", NULL};
    assert_null(reply_with(&r, sizeof(head) - 1, HTTP1_METHOD_GET, false, &chunked, none));
    assert_int_equal(r.error_status, 502);
    assert_false(chunked);
    const char *empty[] = {NULL};
    assert_null(reply_with(&r, sizeof(head) - 1, HTTP1_METHOD_GET, true, &chunked, empty));
    assert_int_equal(r.error_status, 502);
    static const char *const bad[] = {"20", "2000", "20x", "099", "000", " 200", "", "-20"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *f[] = {":status", bad[i], NULL};
        assert_null(reply_with(&r, sizeof(head) - 1, HTTP1_METHOD_GET, true, &chunked, f));
        assert_int_equal(r.error_status, 502);
    }
    const char *twice[] = {":status", "200", ":status", "204", NULL};
    assert_null(reply_with(&r, sizeof(head) - 1, HTTP1_METHOD_GET, true, &chunked, twice));
    assert_int_equal(r.error_status, 502);
    const char *unknown[] = {":status", "200", ":path", "/", NULL};
    assert_null(reply_with(&r, sizeof(head) - 1, HTTP1_METHOD_GET, true, &chunked, unknown));
    assert_int_equal(r.error_status, 502);
    const char *late[] = {"x", "y", ":status", "200", NULL};
    assert_null(reply_with(&r, sizeof(head) - 1, HTTP1_METHOD_GET, true, &chunked, late));
    assert_int_equal(r.error_status, 502);
    assert_string_equal(r.error, "no :status");
    /* h2_reply_field says so at once */
    h2_reply_init(&r, head, sizeof(head), HTTP1_METHOD_GET);
    assert_int_equal(h2_reply_field(&r, ":method", 7, "GET", 3), -1);
    assert_int_equal(h2_reply_field(&r, ":status", 7, "200", 3), -1);
    assert_int_equal(h2_reply_finish(&r, true, &chunked), 0);
}

/* A head that does not fit fails at every size below the one it needs, whatever it ends with. */
static void test_reply_too_large(void **state)
{
    (void)state;
    struct h2_request r;
    bool chunked;
    const char *f[] = {":status", "200", "x-long", "0123456789012345678901234567890123456789",
                       NULL};
    for (int end_stream = 0; end_stream < 2; end_stream++) {
        const char *full =
            reply_with(&r, sizeof(head) - 1, HTTP1_METHOD_GET, end_stream, &chunked, f);
        assert_non_null(full);
        size_t need = strlen(full);
        for (uint32_t cap = 0; cap < need; cap++) {
            assert_null(reply_with(&r, cap, HTTP1_METHOD_GET, end_stream, &chunked, f));
            assert_int_not_equal(r.error_status, 0);
        }
        assert_non_null(reply_with(&r, (uint32_t)need, HTTP1_METHOD_GET, end_stream, &chunked, f));
        assert_int_equal(chunked, !end_stream);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_pseudo_order),
        cmocka_unit_test(test_cookies_joined),
        cmocka_unit_test(test_body_framing),
        cmocka_unit_test(test_host_and_authority),
        cmocka_unit_test(test_connect_and_errors),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_trailers),
        cmocka_unit_test(test_reply_fields),
        cmocka_unit_test(test_reply_framing),
        cmocka_unit_test(test_reply_bodiless),
        cmocka_unit_test(test_reply_errors),
        cmocka_unit_test(test_reply_too_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
