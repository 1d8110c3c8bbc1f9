/*
 * test_h2_response.c - HTTP/1.1 response heads as HTTP/2 header lists (h2/response.h): the
 * status, lowercase names, connection-specific fields left out, values untouched; the head fed
 * to the parser byte by byte first, as a stream's writes may cut it anywhere before it is whole.
 * And the client role's request heads as header lists (h2_request_fields): the pseudo-header
 * fields first and in order, "te: trailers" once, Host and the connection's fields left out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "h2/response.h"

static const struct http1_limits limits = {.max_head_bytes = 8192, .max_fields = 64};
static struct http1_field fields[64];

/* Parses raw, handed over one byte more at a time until the scan finds its end. */
static struct http1_msg parse_bytewise(const char *raw, uint8_t method)
{
    struct http1_scan scan = {0};
    uint16_t status;
    const char *why;
    size_t len = strlen(raw);
    int r = HTTP1_AGAIN;
    for (size_t n = 1; n <= len && r == HTTP1_AGAIN; n++)
        r = http1_scan_head(&scan, raw, n, &limits, false, &status, &why);
    assert_int_equal(r, HTTP1_DONE);
    struct http1_msg msg = {.fields = fields};
    assert_int_equal(http1_parse_response(&scan, raw, &limits, method, &msg), HTTP1_DONE);
    return msg;
}

static void assert_nv(const nghttp2_nv *nv, const char *name, const char *value)
{
    assert_int_equal(nv->namelen, strlen(name));
    assert_memory_equal(nv->name, name, nv->namelen);
    assert_int_equal(nv->valuelen, strlen(value));
    assert_memory_equal(nv->value, value, nv->valuelen);
}

static void test_fields(void **state)
{
    (void)state;
    const char *raw = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: One\r\n"
                      "Connection: close\r\nKeep-Alive: timeout=5\r\nContent-Length: 3\r\n"
                      "Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nabc";
    struct http1_msg msg = parse_bytewise(raw, HTTP1_METHOD_GET);
    nghttp2_nv nv[16];
    char status[H2_STATUS_TEXT], lower[256];
    int n = h2_response_fields(raw, &msg, nv, 16, status, lower, sizeof(lower));
    assert_int_equal(n, 6);
    assert_nv(&nv[0], ":status", "200");
    assert_nv(&nv[1], "content-type", "text/plain");
    assert_nv(&nv[2], "x-backend", "One");
    assert_nv(&nv[3], "content-length", "3");
    assert_nv(&nv[4], "set-cookie", "a=1");
    assert_nv(&nv[5], "set-cookie", "b=2");
}

/* Chunked framing is the stream's to undo: Transfer-Encoding and friends never go out. */
static void test_connection_specific(void **state)
{
    (void)state;
    const char *raw = "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n"
                      "Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nConnection: upgrade\r\n"
                      "Server: x\r\n\r\n";
    struct http1_msg msg = parse_bytewise(raw, HTTP1_METHOD_GET);
    assert_int_equal(msg.body, HTTP1_BODY_CHUNKED);
    nghttp2_nv nv[16];
    char status[H2_STATUS_TEXT], lower[256];
    int n = h2_response_fields(raw, &msg, nv, 16, status, lower, sizeof(lower));
    assert_int_equal(n, 2);
    assert_nv(&nv[0], ":status", "404");
    assert_nv(&nv[1], "server", "x");
}

static void test_interim_and_limits(void **state)
{
    (void)state;
    const char *raw = "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n";
    struct http1_msg msg = parse_bytewise(raw, HTTP1_METHOD_GET);
    nghttp2_nv nv[2];
    char status[H2_STATUS_TEXT], lower[8];
    int n = h2_response_fields(raw, &msg, nv, 2, status, lower, sizeof(lower));
    assert_int_equal(n, 2);
    assert_nv(&nv[0], ":status", "103");
    assert_nv(&nv[1], "link", "</s.css>; rel=preload");
    /* too few entries, or too little room for names */
    assert_int_equal(h2_response_fields(raw, &msg, nv, 1, status, lower, sizeof(lower)), -1);
    assert_int_equal(h2_response_fields(raw, &msg, nv, 2, status, lower, 3), -1);
}

/* A chunked body's trailer section: fields kept (lowercase names, trimmed values), framing and
 * connection fields dropped; the decoder, fed byte by byte, passes exactly the section. */
static void test_trailers(void **state)
{
    (void)state;
    char body[] = "5\r\nhello\r\n0\r\nX-Sum:  abc \r\nContent-Length: 3\r\n"
                  "grpc-status:0\r\n\r\n";
    size_t len = strlen(body), section = strlen("X-Sum:  abc \r\nContent-Length: 3\r\n"
                                                "grpc-status:0\r\n\r\n");
    struct http1_chunked c = {0};
    size_t used, out, total_out = 0;
    int r = HTTP1_AGAIN;
    for (size_t i = 0; i < len && r == HTTP1_AGAIN; i++) {
        char byte = body[i];
        r = http1_chunked_parse(&c, &byte, 1, true, &used, &out);
        assert_int_equal(used, 1);
        total_out += out;
    }
    assert_int_equal(r, HTTP1_DONE);
    assert_int_equal(total_out, 5);
    assert_int_equal(c.trailer_len, section); /* what stream.c keeps of the consumed bytes */

    nghttp2_nv nv[4];
    char lower[64];
    const char *sec = body + len - section;
    int n = h2_trailer_fields(sec, section, nv, 4, lower, sizeof(lower));
    assert_int_equal(n, 2);
    assert_nv(&nv[0], "x-sum", "abc");
    assert_nv(&nv[1], "grpc-status", "0");
    assert_int_equal(h2_trailer_fields("\r\n", 2, nv, 4, lower, sizeof(lower)), 0);
    assert_int_equal(h2_trailer_fields(sec, section, nv, 1, lower, sizeof(lower)), -1);
}

/* ---- the client role: a request head as the header list of HEADERS (h2_request_fields) ---- */

static struct http1_msg parse_request(const char *raw)
{
    struct http1_scan scan = {0};
    uint16_t status;
    const char *why;
    assert_int_equal(http1_scan_head(&scan, raw, strlen(raw), &limits, true, &status, &why),
                     HTTP1_DONE);
    struct http1_msg msg = {.fields = fields};
    assert_int_equal(http1_parse_request(&scan, raw, &limits, &msg), HTTP1_DONE);
    return msg;
}

/* Asserts the list is exactly want's "name", "value" pairs (NULL ends them). */
static void assert_list(const nghttp2_nv *nv, int n, const char *const *want)
{
    int i = 0;
    for (; want[2 * i]; i++) {
        if (i >= n)
            fail_msg("%d entries, expected more (%s)", n, want[2 * i]);
        assert_nv(&nv[i], want[2 * i], want[2 * i + 1]);
    }
    assert_int_equal(n, i);
}

static void test_request_fields(void **state)
{
    (void)state;
    const char *raw = "POST /pkg.Svc/Call?x=1 HTTP/1.1\r\nContent-Type: application/grpc\r\n"
                      "Host: api.test:8443\r\nX-Forwarded-For: 10.0.0.1\r\nGrpc-Timeout: 1S\r\n"
                      "Content-Length: 5\r\n\r\n";
    struct http1_msg msg = parse_request(raw);
    nghttp2_nv nv[16];
    char lower[256];
    int n = h2_request_fields(raw, &msg, "https", nv, 16, lower, sizeof(lower));
    const char *want[] = {":method",
                          "POST",
                          ":scheme",
                          "https",
                          ":path",
                          "/pkg.Svc/Call?x=1",
                          ":authority",
                          "api.test:8443",
                          "te",
                          "trailers",
                          "content-type",
                          "application/grpc",
                          "x-forwarded-for",
                          "10.0.0.1",
                          "grpc-timeout",
                          "1S",
                          "content-length",
                          "5",
                          NULL};
    assert_list(nv, n, want);
    /* values point into the head as it is: nghttp2 copies them when the list is submitted */
    assert_ptr_equal(nv[2].value, raw + strlen("POST "));
}

/* Host becomes :authority; the fields of one HTTP/1.1 connection, and the client's own TE, are
 * not sent; "te: trailers" is, once, whatever the request said. */
static void test_request_connection_specific(void **state)
{
    (void)state;
    const char *raw = "GET / HTTP/1.1\r\nhost: h.test\r\nConnection: keep-alive, Upgrade\r\n"
                      "Keep-Alive: timeout=5\r\nUpgrade: websocket\r\nTE: trailers, gzip\r\n"
                      "Proxy-Connection: keep-alive\r\nACCEPT: */*\r\nX-Mixed-Case: AbC\r\n\r\n";
    struct http1_msg msg = parse_request(raw);
    nghttp2_nv nv[16];
    char lower[256];
    int n = h2_request_fields(raw, &msg, "http", nv, 16, lower, sizeof(lower));
    const char *want[] = {":method", "GET",        ":scheme",      "http", ":path",
                          "/",       ":authority", "h.test",       "te",   "trailers",
                          "accept",  "*/*",        "x-mixed-case", "AbC",  NULL};
    assert_list(nv, n, want);

    /* a chunked body's Transfer-Encoding goes too: DATA frames carry it */
    raw = "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n";
    msg = parse_request(raw);
    assert_int_equal(msg.body, HTTP1_BODY_CHUNKED);
    n = h2_request_fields(raw, &msg, "http", nv, 16, lower, sizeof(lower));
    const char *chunked[] = {":method", "POST", ":scheme",  "http",    ":path", "/up", ":authority",
                             "h",       "te",   "trailers", "trailer", "x-sum", NULL};
    assert_list(nv, n, chunked);
}

/* The other request-target forms: asterisk, and absolute (its authority wins over Host). */
static void test_request_targets(void **state)
{
    (void)state;
    nghttp2_nv nv[16];
    char lower[256];
    const char *raw = "OPTIONS * HTTP/1.1\r\nHost: h.test\r\n\r\n";
    struct http1_msg msg = parse_request(raw);
    int n = h2_request_fields(raw, &msg, "https", nv, 16, lower, sizeof(lower));
    const char *options[] = {":method",    "OPTIONS", ":scheme", "https",    ":path", "*",
                             ":authority", "h.test",  "te",      "trailers", NULL};
    assert_list(nv, n, options);

    raw = "GET http://origin.test:81/a/b?c HTTP/1.1\r\nHost: other.test\r\nX: 1\r\n\r\n";
    msg = parse_request(raw);
    n = h2_request_fields(raw, &msg, "http", nv, 16, lower, sizeof(lower));
    const char *absolute[] = {
        ":method",        "GET", ":scheme",  "http", ":path", "/a/b?c", ":authority",
        "origin.test:81", "te",  "trailers", "x",    "1",     NULL};
    assert_list(nv, n, absolute);

    raw = "GET https://origin.test HTTP/1.1\r\nHost: origin.test\r\n\r\n";
    msg = parse_request(raw);
    n = h2_request_fields(raw, &msg, "https", nv, 16, lower, sizeof(lower));
    const char *empty_path[] = {":method",    "GET",         ":scheme", "https",    ":path", "/",
                                ":authority", "origin.test", "te",      "trailers", NULL};
    assert_list(nv, n, empty_path);

    /* HTTP/1.0 without Host: no authority to give */
    raw = "GET /x HTTP/1.0\r\nAccept: */*\r\n\r\n";
    msg = parse_request(raw);
    n = h2_request_fields(raw, &msg, "http", nv, 16, lower, sizeof(lower));
    const char *no_host[] = {":method", "GET",      ":scheme", "http", ":path", "/x",
                             "te",      "trailers", "accept",  "*/*",  NULL};
    assert_list(nv, n, no_host);
}

/* CONNECT cannot go as a request of its own; a list or names that do not fit are -1. */
static void test_request_refused(void **state)
{
    (void)state;
    nghttp2_nv nv[16];
    char lower[256];
    /* the parser refuses CONNECT itself (fulcrum is not a forward proxy): the method is set on a
     * parsed head, as a caller's head could carry it */
    const char *raw = "GET / HTTP/1.1\r\nHost: db.test:5432\r\n\r\n";
    struct http1_msg msg = parse_request(raw);
    msg.method = HTTP1_METHOD_CONNECT;
    assert_int_equal(h2_request_fields(raw, &msg, "http", nv, 16, lower, sizeof(lower)), -1);

    /* 4 pseudo-header fields, te and 3 fields: 8 entries, no fewer */
    raw = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nConnection: close\r\nBb: 2\r\nCcc: 3\r\n\r\n";
    msg = parse_request(raw);
    assert_int_equal(h2_request_fields(raw, &msg, "http", nv, 8, lower, sizeof(lower)), 8);
    for (size_t max = 0; max < 8; max++)
        assert_int_equal(h2_request_fields(raw, &msg, "http", nv, max, lower, sizeof(lower)), -1);
    /* the names take 1 + 2 + 3 bytes of lowercase room */
    assert_int_equal(h2_request_fields(raw, &msg, "http", nv, 16, lower, 6), 8);
    for (size_t cap = 0; cap < 6; cap++)
        assert_int_equal(h2_request_fields(raw, &msg, "http", nv, 16, lower, cap), -1);
    /* without an authority, te still needs its entry */
    raw = "GET / HTTP/1.0\r\n\r\n";
    msg = parse_request(raw);
    assert_int_equal(h2_request_fields(raw, &msg, "http", nv, 4, lower, 0), 4);
    assert_int_equal(h2_request_fields(raw, &msg, "http", nv, 3, lower, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_connection_specific),
        cmocka_unit_test(test_interim_and_limits),
        cmocka_unit_test(test_trailers),
        cmocka_unit_test(test_request_fields),
        cmocka_unit_test(test_request_connection_specific),
        cmocka_unit_test(test_request_targets),
        cmocka_unit_test(test_request_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
