/*
 * test_rewrite.c - the heads fulcrum forwards, byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/http1.h"
#include "http/rewrite.h"

static const struct http1_limits limits = {.max_head_bytes = 8192, .max_fields = 64};
static struct http1_field fields[64];

static struct http1_msg parse(const char *raw, bool request)
{
    struct http1_scan scan = {0};
    uint16_t status;
    const char *why;
    struct http1_msg msg = {.fields = fields};
    assert_int_equal(http1_scan_head(&scan, raw, strlen(raw), &limits, request, &status, &why),
                     HTTP1_DONE);
    int r = request ? http1_parse_request(&scan, raw, &limits, &msg)
                    : http1_parse_response(&scan, raw, &limits, HTTP1_METHOD_GET, &msg);
    assert_int_equal(r, HTTP1_DONE);
    return msg;
}

static void expect_request(const char *raw, const char *expected)
{
    struct http1_msg msg = parse(raw, true);
    char out[4096];
    size_t n = rewrite_request(raw, &msg, &(struct rewrite_client){.ip = "192.0.2.7", .ip_len = 9},
                               NULL, out, sizeof(out));
    assert_int_equal(n, strlen(expected));
    assert_memory_equal(out, expected, n);
}

static void expect_response(const char *raw, unsigned flags, const char *expected)
{
    struct http1_msg msg = parse(raw, false);
    char out[4096];
    size_t n = rewrite_response(raw, &msg, flags, NULL, out, sizeof(out));
    assert_int_equal(n, strlen(expected));
    assert_memory_equal(out, expected, n);
}

static void test_request_basic(void **state)
{
    expect_request("GET /a?b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
                   "GET /a?b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n"
                   "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
                   "X-Forwarded-Host: example.com\r\n\r\n");
}

/* Over TLS: https, and the client certificate's subject in the configured field; a client's own
 * copies of that field, in any case, never reach the backend. */
static void test_request_tls_client(void **state)
{
    const char *raw = "GET / HTTP/1.1\r\nHost: a\r\nX-Client-Subject: CN=admin\r\n"
                      "x-client-SUBJECT: CN=root\r\nX-Client-Subjects: kept\r\n\r\n";
    struct http1_msg msg = parse(raw, true);
    char out[4096];
    struct rewrite_client client = {.ip = "192.0.2.7",
                                    .ip_len = 9,
                                    .tls = true,
                                    .subject_header = "X-Client-Subject",
                                    .subject = "CN=client-1,O=Example"};
    static const char with_subject[] =
        "GET / HTTP/1.1\r\nHost: a\r\nX-Client-Subjects: kept\r\n"
        "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n"
        "X-Client-Subject: CN=client-1,O=Example\r\nX-Forwarded-Host: a\r\n\r\n";
    size_t n = rewrite_request(raw, &msg, &client, NULL, out, sizeof(out));
    assert_int_equal(n, strlen(with_subject));
    assert_memory_equal(out, with_subject, n);

    client.subject = NULL; /* no verified certificate: the spoofs still go */
    static const char without[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Client-Subjects: kept\r\n"
                                  "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n"
                                  "X-Forwarded-Host: a\r\n\r\n";
    n = rewrite_request(raw, &msg, &client, NULL, out, sizeof(out));
    assert_int_equal(n, strlen(without));
    assert_memory_equal(out, without, n);
}

static void test_request_hop_by_hop_removed(void **state)
{
    expect_request("POST /u HTTP/1.1\r\nConnection: keep-alive, X-Hop\r\nHost: h\r\n"
                   "Keep-Alive: timeout=5\r\nX-Hop: 1\r\nTE: trailers\r\nTrailer: X\r\n"
                   "Upgrade: h2c\r\nProxy-Connection: x\r\nContent-Length:  5\r\n"
                   "Content-Length: 5\r\nX-End: e\r\n\r\n",
                   "POST /u HTTP/1.1\r\nHost: h\r\nX-End: e\r\nContent-Length: 5\r\n"
                   "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
                   "X-Forwarded-Host: h\r\n\r\n");
}

static void test_request_forwarded_headers(void **state)
{
    /* existing X-Forwarded-For values are kept in order; Proto and Host are replaced */
    expect_request("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\n"
                   "X-Forwarded-Proto: https\r\nX-Forwarded-For: 10.0.0.2, 10.0.0.3\r\n"
                   "X-Forwarded-Host: evil\r\n\r\n",
                   "GET / HTTP/1.1\r\nHost: h\r\n"
                   "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 10.0.0.3, 192.0.2.7\r\n"
                   "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n");
}

static void test_request_version_and_forms(void **state)
{
    /* HTTP/1.0 without Host: sent as HTTP/1.1 with an empty Host; Expect is dropped */
    expect_request("GET /x HTTP/1.0\r\nExpect: 100-continue\r\n\r\n",
                   "GET /x HTTP/1.1\r\nHost: \r\nX-Forwarded-For: 192.0.2.7\r\n"
                   "X-Forwarded-Proto: http\r\n\r\n");
    /* absolute-form: origin-form target, the authority becomes Host */
    expect_request("GET http://t.example/abs HTTP/1.1\r\nHost: other\r\n\r\n",
                   "GET /abs HTTP/1.1\r\nHost: t.example\r\nX-Forwarded-For: 192.0.2.7\r\n"
                   "X-Forwarded-Proto: http\r\nX-Forwarded-Host: t.example\r\n\r\n");
    expect_request("GET http://t.example?q HTTP/1.1\r\nHost: t.example\r\n\r\n",
                   "GET /?q HTTP/1.1\r\nHost: t.example\r\nX-Forwarded-For: 192.0.2.7\r\n"
                   "X-Forwarded-Proto: http\r\nX-Forwarded-Host: t.example\r\n\r\n");
    /* chunked stays chunked, framing field untouched */
    expect_request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
                   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                   "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
                   "X-Forwarded-Host: h\r\n\r\n");
}

static void test_request_te_canonical(void **state)
{
    /* whatever the client wrote, the backend gets one canonical line */
    expect_request("POST / HTTP/1.1\r\nTransfer-Encoding:  CHUNKED \r\nHost: h\r\nX-A: b\r\n\r\n",
                   "POST / HTTP/1.1\r\nHost: h\r\nX-A: b\r\nTransfer-Encoding: chunked\r\n"
                   "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
                   "X-Forwarded-Host: h\r\n\r\n");
}

static void test_request_underscore_names_dropped(void **state)
{
    /* the default rule: names with '_' are not forwarded, values with '_' are */
    expect_request("GET / HTTP/1.1\r\nHost: h\r\nTransfer_Encoding: chunked\r\n"
                   "X-Forwarded_For: 10.9.9.9\r\nX-Ok: a_b\r\nContent_Length: 5\r\n\r\n",
                   "GET / HTTP/1.1\r\nHost: h\r\nX-Ok: a_b\r\n"
                   "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
                   "X-Forwarded-Host: h\r\n\r\n");
}

#define F(n, v)                                                                                    \
    {                                                                                              \
        .name = (n), .name_len = sizeof(n) - 1, .value = (v), .value_len = sizeof(v) - 1           \
    }

/* Rules apply in order: the listener's, then the route's; a later set sees an earlier one's work.
 */
static void test_request_rules(void **state)
{
    const char *raw = "GET /a HTTP/1.1\r\nHost: h\r\nX-Debug: 1\r\nx-env: dev\r\n"
                      "X-Keep: k\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n";
    struct http1_msg msg = parse(raw, true);
    static const struct rewrite_field l_remove[] = {F("X-Debug", "")};
    static const struct rewrite_field l_set[] = {F("X-Env", "prod"), F("X-Tier", "web")};
    static const struct rewrite_field l_add[] = {F("X-Keep", "k2")};
    static const struct rewrite_field r_remove[] = {F("X-Tier", "")};
    static const struct rewrite_field r_set[] = {F("Host", "backend.internal"),
                                                 F("X-Forwarded-Proto", "https")};
    const struct rewrite_rules listener = {
        .remove = l_remove, .nremove = 1, .set = l_set, .nset = 2, .add = l_add, .nadd = 1};
    const struct rewrite_rules route = {.remove = r_remove, .nremove = 1, .set = r_set, .nset = 2};
    const struct rewrite_rule_list rules = {.sets = {&listener, &route}, .n = 2};
    char out[4096];
    size_t n = rewrite_request(
        raw, &msg,
        &(struct rewrite_client){.ip = "192.0.2.7", .ip_len = 9, .path = "/b?q", .path_len = 4},
        &rules, out, sizeof(out));
    static const char expected[] = "GET /b?q HTTP/1.1\r\nHost: backend.internal\r\nX-Keep: k\r\n"
                                   "X-Forwarded-For: 10.0.0.1, 192.0.2.7\r\n"
                                   "X-Forwarded-Host: h\r\nX-Env: prod\r\nX-Keep: k2\r\n"
                                   "X-Forwarded-Proto: https\r\n\r\n";
    assert_int_equal(n, strlen(expected));
    assert_memory_equal(out, expected, n);
}

static void test_response_rules(void **state)
{
    const char *raw = "HTTP/1.1 200 OK\r\nServer: app/1.0\r\nContent-Length: 0\r\n\r\n";
    struct http1_msg msg = parse(raw, false);
    static const struct rewrite_field remove[] = {F("server", "")};
    static const struct rewrite_field set[] = {F("Strict-Transport-Security", "max-age=31536000")};
    const struct rewrite_rules r = {.remove = remove, .nremove = 1, .set = set, .nset = 1};
    const struct rewrite_rule_list rules = {.sets = {&r}, .n = 1};
    char out[4096];
    size_t n = rewrite_response(raw, &msg, REWRITE_CONN_CLOSE, &rules, out, sizeof(out));
    static const char expected[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                                   "Strict-Transport-Security: max-age=31536000\r\n"
                                   "Connection: close\r\n\r\n";
    assert_int_equal(n, strlen(expected));
    assert_memory_equal(out, expected, n);
    struct wbuf w = wbuf_init(out, sizeof(out));
    rewrite_put_rule_fields(&w, &rules);
    assert_int_equal(wbuf_len(&w), strlen("Strict-Transport-Security: max-age=31536000\r\n"));
}

/* A WebSocket handshake keeps exactly Connection: Upgrade and Upgrade: websocket; its 101 too. */
static void test_websocket_fields(void **state)
{
    const char *raw = "GET /chat HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
                      "Upgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n";
    struct http1_msg msg = parse(raw, true);
    char out[4096];
    size_t n = rewrite_request(
        raw, &msg, &(struct rewrite_client){.ip = "192.0.2.7", .ip_len = 9, .websocket = true},
        NULL, out, sizeof(out));
    static const char expected[] = "GET /chat HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k\r\n"
                                   "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
                                   "X-Forwarded-Host: h\r\nConnection: Upgrade\r\n"
                                   "Upgrade: websocket\r\n\r\n";
    assert_int_equal(n, strlen(expected));
    assert_memory_equal(out, expected, n);
    expect_response("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: a\r\n\r\n",
                    REWRITE_UPGRADE_WEBSOCKET,
                    "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: a\r\n"
                    "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
}

static void test_request_does_not_fit(void **state)
{
    const char *raw = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    struct http1_msg msg = parse(raw, true);
    char out[64];
    assert_int_equal(rewrite_request(raw, &msg,
                                     &(struct rewrite_client){.ip = "192.0.2.7", .ip_len = 9}, NULL,
                                     out, sizeof(out)),
                     0);
}

static void test_response(void **state)
{
    expect_response("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
                    "Content-Length: 2\r\nX-A: b\r\n\r\n",
                    0, "HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 2\r\n\r\n");
    expect_response("HTTP/1.0 200 Fine\r\nContent-Length: 2\r\n\r\n", REWRITE_CONN_CLOSE,
                    "HTTP/1.1 200 Fine\r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
    expect_response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", REWRITE_CONN_KEEP_ALIVE,
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n");
    expect_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n",
                    REWRITE_DECHUNK | REWRITE_CONN_CLOSE,
                    "HTTP/1.1 200 OK\r\nX: y\r\nConnection: close\r\n\r\n");
    expect_response("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", 0,
                    "HTTP/1.1 204 No Content\r\n\r\n");
    expect_response("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 0,
                    "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_basic),
        cmocka_unit_test(test_request_tls_client),
        cmocka_unit_test(test_request_hop_by_hop_removed),
        cmocka_unit_test(test_request_forwarded_headers),
        cmocka_unit_test(test_request_version_and_forms),
        cmocka_unit_test(test_request_te_canonical),
        cmocka_unit_test(test_request_underscore_names_dropped),
        cmocka_unit_test(test_request_does_not_fit),
        cmocka_unit_test(test_request_rules),
        cmocka_unit_test(test_websocket_fields),
        cmocka_unit_test(test_response_rules),
        cmocka_unit_test(test_response),
    };
    return cmocka_run_group_tests_name("rewrite", tests, NULL, NULL);
}
