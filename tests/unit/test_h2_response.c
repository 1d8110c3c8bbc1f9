/*
 * test_h2_response.c - HTTP/1.1 response heads as HTTP/2 header lists (h2/response.h): the
 * status, lowercase names, connection-specific fields left out, values untouched; the head fed
 * to the parser byte by byte first, as a stream's writes may cut it anywhere before it is whole.
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_connection_specific),
        cmocka_unit_test(test_interim_and_limits),
        cmocka_unit_test(test_trailers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
