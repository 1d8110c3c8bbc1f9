/*
 * test_check_grpc.c - the gRPC health check's conversation (ctl/check_grpc.h) against an
 * nghttp2 server session in memory: the request it makes, and the verdict on each kind of
 * answer, with the server's bytes fed one at a time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <nghttp2/nghttp2.h>

#include "ctl/check_grpc.h"

/* What the server answers. */
enum answer { SERVING, NOT_SERVING, NOT_FOUND, HTTP_404, RESET, NO_STATUS };

struct server {
    nghttp2_session *session;
    enum answer answer;
    char path[64], content_type[64], te[16], authority[64];
    uint8_t body[64];
    size_t body_len;
    const uint8_t *reply;
    size_t reply_len, reply_sent;
};

static void copy_field(char *to, size_t size, const uint8_t *v, size_t len)
{
    snprintf(to, size, "%.*s", (int)len, (const char *)v);
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *arg)
{
    (void)s;
    (void)f;
    (void)flags;
    struct server *sv = arg;
    if (nlen == 5 && memcmp(name, ":path", 5) == 0)
        copy_field(sv->path, sizeof(sv->path), value, vlen);
    else if (nlen == 12 && memcmp(name, "content-type", 12) == 0)
        copy_field(sv->content_type, sizeof(sv->content_type), value, vlen);
    else if (nlen == 2 && memcmp(name, "te", 2) == 0)
        copy_field(sv->te, sizeof(sv->te), value, vlen);
    else if (nlen == 10 && memcmp(name, ":authority", 10) == 0)
        copy_field(sv->authority, sizeof(sv->authority), value, vlen);
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *arg)
{
    (void)s;
    (void)flags;
    (void)id;
    struct server *sv = arg;
    assert_true(sv->body_len + len <= sizeof(sv->body));
    memcpy(sv->body + sv->body_len, data, len);
    sv->body_len += len;
    return 0;
}

static ssize_t read_reply(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                          uint32_t *flags, nghttp2_data_source *src, void *arg)
{
    (void)s;
    (void)src;
    struct server *sv = arg;
    size_t n = sv->reply_len - sv->reply_sent;
    n = n < length ? n : length;
    memcpy(buf, sv->reply + sv->reply_sent, n);
    sv->reply_sent += n;
    if (sv->reply_sent == sv->reply_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv trailers[] = {{(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, 0}};
        assert_int_equal(nghttp2_submit_trailer(s, id, trailers, 1), 0);
    }
    return (ssize_t)n;
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE                 \
    }

/* The request is complete: answer it as sv->answer says. */
static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct server *sv = arg;
    if (f->hd.type != NGHTTP2_DATA || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    static const uint8_t serving[] = {0, 0, 0, 0, 2, 0x08, 1};
    static const uint8_t not_serving[] = {0, 0, 0, 0, 2, 0x08, 2};
    nghttp2_nv ok[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
    nghttp2_nv only[] = {NV(":status", "200"), NV("content-type", "application/grpc"),
                         NV("grpc-status", "5"), NV("grpc-message", "unknown service")};
    nghttp2_nv missing[] = {NV(":status", "404"), NV("content-type", "text/plain")};
    nghttp2_nv no_status[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
    nghttp2_data_provider provider = {.read_callback = read_reply};
    switch (sv->answer) {
    case SERVING:
    case NOT_SERVING:
        sv->reply = sv->answer == SERVING ? serving : not_serving;
        sv->reply_len = sizeof(serving);
        return nghttp2_submit_response(s, f->hd.stream_id, ok, 2, &provider);
    case NOT_FOUND: /* trailers only: one HEADERS frame with END_STREAM */
        return nghttp2_submit_response(s, f->hd.stream_id, only, 4, NULL);
    case HTTP_404:
        return nghttp2_submit_response(s, f->hd.stream_id, missing, 2, NULL);
    case RESET:
        return nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id,
                                         NGHTTP2_REFUSED_STREAM);
    case NO_STATUS:
        return nghttp2_submit_response(s, f->hd.stream_id, no_status, 2, NULL);
    }
    return 0;
}

static void server_init(struct server *sv, enum answer answer)
{
    memset(sv, 0, sizeof(*sv));
    sv->answer = answer;
    nghttp2_session_callbacks *cbs;
    assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
    assert_int_equal(nghttp2_session_server_new(&sv->session, cbs, sv), 0);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_settings_entry none[1];
    assert_int_equal(nghttp2_submit_settings(sv->session, NGHTTP2_FLAG_NONE, none, 0), 0);
}

/* Runs the conversation until a verdict: the client's bytes to the server whole, the server's
 * to the client one at a time. */
static enum grpc_check_verdict converse(struct grpc_check *g, struct server *sv, char *why,
                                        size_t whylen)
{
    for (int round = 0; round < 20; round++) {
        const uint8_t *out;
        size_t n;
        while ((n = grpc_check_pending(g, &out)) > 0) {
            assert_int_equal(nghttp2_session_mem_recv(sv->session, out, n), (ssize_t)n);
            grpc_check_sent(g, n);
        }
        const uint8_t *data;
        ssize_t len;
        bool any = false;
        while ((len = nghttp2_session_mem_send(sv->session, &data)) > 0) {
            any = true;
            for (ssize_t i = 0; i < len; i++) {
                enum grpc_check_verdict v = grpc_check_feed(g, data + i, 1, why, whylen);
                if (v != GRPC_CHECK_MORE)
                    return v;
            }
        }
        if (!any && !grpc_check_pending(g, &out))
            break;
    }
    return GRPC_CHECK_MORE;
}

static enum grpc_check_verdict run(enum answer answer, const char *service, char *why,
                                   size_t whylen, struct server *sv)
{
    struct grpc_check *g = grpc_check_new("10.0.0.1:9090", service);
    assert_non_null(g);
    server_init(sv, answer);
    enum grpc_check_verdict v = converse(g, sv, why, whylen);
    grpc_check_free(g);
    nghttp2_session_del(sv->session);
    return v;
}

static void test_the_request(void **state)
{
    (void)state;
    struct server sv;
    char why[128];
    assert_int_equal(run(SERVING, "pkg.Echo", why, sizeof(why), &sv), GRPC_CHECK_PASS);
    assert_string_equal(why, "SERVING");
    assert_string_equal(sv.path, "/grpc.health.v1.Health/Check");
    assert_string_equal(sv.content_type, "application/grpc");
    assert_string_equal(sv.te, "trailers");
    assert_string_equal(sv.authority, "10.0.0.1:9090");
    /* one uncompressed message: HealthCheckRequest {service: "pkg.Echo"} */
    static const uint8_t want[] = {0, 0, 0, 0, 10, 0x0a, 8, 'p', 'k', 'g', '.', 'E', 'c', 'h', 'o'};
    assert_int_equal(sv.body_len, sizeof(want));
    assert_memory_equal(sv.body, want, sizeof(want));
    /* no service: an empty message */
    assert_int_equal(run(SERVING, "", why, sizeof(why), &sv), GRPC_CHECK_PASS);
    static const uint8_t empty[] = {0, 0, 0, 0, 0};
    assert_int_equal(sv.body_len, sizeof(empty));
    assert_memory_equal(sv.body, empty, sizeof(empty));
}

static void test_verdicts(void **state)
{
    (void)state;
    struct server sv;
    char why[128];
    assert_int_equal(run(NOT_SERVING, "x", why, sizeof(why), &sv), GRPC_CHECK_FAIL);
    assert_string_equal(why, "NOT_SERVING");
    assert_int_equal(run(NOT_FOUND, "x", why, sizeof(why), &sv), GRPC_CHECK_FAIL);
    assert_string_equal(why, "grpc-status 5 (NOT_FOUND): unknown service");
    assert_int_equal(run(HTTP_404, "x", why, sizeof(why), &sv), GRPC_CHECK_FAIL);
    assert_string_equal(why, "HTTP status 404");
    assert_int_equal(run(RESET, "x", why, sizeof(why), &sv), GRPC_CHECK_FAIL);
    assert_string_equal(why, "stream reset by the server (REFUSED_STREAM)");
    assert_int_equal(run(NO_STATUS, "x", why, sizeof(why), &sv), GRPC_CHECK_FAIL);
    assert_string_equal(why, "no grpc-status in the answer");
}

static void test_not_http2_and_closed(void **state)
{
    (void)state;
    char why[128];
    struct grpc_check *g = grpc_check_new("h", "");
    assert_non_null(g);
    static const char http1[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
    assert_int_equal(
        grpc_check_feed(g, (const uint8_t *)http1, sizeof(http1) - 1, why, sizeof(why)),
        GRPC_CHECK_FAIL);
    assert_true(strncmp(why, "bad HTTP/2 from the server: ", 28) == 0);
    /* the verdict stays */
    assert_int_equal(grpc_check_feed(g, NULL, 0, why, sizeof(why)), GRPC_CHECK_FAIL);
    assert_true(strncmp(why, "bad HTTP/2 from the server: ", 28) == 0);
    grpc_check_free(g);

    g = grpc_check_new("h", "");
    assert_int_equal(grpc_check_feed(g, NULL, 0, why, sizeof(why)), GRPC_CHECK_FAIL);
    assert_string_equal(why, "connection closed before the answer");
    grpc_check_free(g);

    /* a service name longer than the health protocol's limit here is refused */
    char longer[202];
    memset(longer, 'a', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    assert_null(grpc_check_new("h", longer));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_request),
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_not_http2_and_closed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
