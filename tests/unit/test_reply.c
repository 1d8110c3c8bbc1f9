/*
 * test_reply.c - redirects and fixed responses a route gives, byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "route/reply.h"

static void expect(size_t n, const char *out, const char *expected)
{
    assert_int_equal(n, strlen(expected));
    assert_memory_equal(out, expected, n);
}

static struct reply_request request(const char *host, const char *target)
{
    return (struct reply_request){.host = host,
                                  .host_len = host ? strlen(host) : 0,
                                  .target = target,
                                  .target_len = strlen(target),
                                  .keep_alive = true};
}

static void test_redirect_location(void **state)
{
    char out[512];
    struct conf_redirect r = {.location = "https://example.com/new/", .status = 301};
    struct reply_request req = request("a:8080", "/old/x?y");
    expect(route_reply_redirect(&r, &req, NULL, out, sizeof(out)), out,
           "HTTP/1.1 301 Moved Permanently\r\nLocation: https://example.com/new/\r\n"
           "Content-Length: 0\r\nConnection: keep-alive\r\n\r\n");
}

/* Scheme only: the host without its port, then the target as sent. */
static void test_redirect_scheme_keeps_host_path_query(void **state)
{
    char out[512];
    struct conf_redirect r = {.scheme = "https", .status = 308};
    struct reply_request req = request("www.example.com:8080", "/a/../b?q=1");
    expect(route_reply_redirect(&r, &req, NULL, out, sizeof(out)), out,
           "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://www.example.com/a/../b?q=1\r\n"
           "Content-Length: 0\r\nConnection: keep-alive\r\n\r\n");
    req = request("[::1]:8080", "/");
    expect(route_reply_redirect(&r, &req, NULL, out, sizeof(out)), out,
           "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://[::1]/\r\n"
           "Content-Length: 0\r\nConnection: keep-alive\r\n\r\n");
    req = request("[::1]", "/");
    req.keep_alive = false;
    expect(route_reply_redirect(&r, &req, NULL, out, sizeof(out)), out,
           "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://[::1]/\r\n"
           "Content-Length: 0\r\nConnection: close\r\n\r\n");
    req = request(NULL, "/"); /* nothing to build the URL from */
    assert_int_equal(route_reply_redirect(&r, &req, NULL, out, sizeof(out)), 0);
}

static void test_redirect_host_and_port(void **state)
{
    char out[512];
    struct conf_redirect r = {.host = "new.example", .port = 8443, .status = 302};
    struct reply_request req = request("old.example", "/p");
    req.tls = true;
    expect(route_reply_redirect(&r, &req, NULL, out, sizeof(out)), out,
           "HTTP/1.1 302 Found\r\nLocation: https://new.example:8443/p\r\n"
           "Content-Length: 0\r\nConnection: keep-alive\r\n\r\n");
    r.port = 443; /* the scheme's default is not written */
    expect(route_reply_redirect(&r, &req, NULL, out, sizeof(out)), out,
           "HTTP/1.1 302 Found\r\nLocation: https://new.example/p\r\n"
           "Content-Length: 0\r\nConnection: keep-alive\r\n\r\n");
}

static void test_respond_with_rules_and_head(void **state)
{
    char out[512];
    struct conf_respond r = {.status = 200, .body = "ok\n", .content_type = "text/plain"};
    static const struct rewrite_field set[] = {
        {.name = "X-A", .name_len = 3, .value = "1", .value_len = 1}};
    const struct rewrite_rules rs = {.set = set, .nset = 1};
    const struct rewrite_rule_list rules = {.sets = {&rs}, .n = 1};
    struct reply_request req = request("h", "/healthz");
    expect(route_reply_respond(&r, &req, &rules, out, sizeof(out)), out,
           "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
           "Connection: keep-alive\r\n\r\nok\n");
    req.head = true;
    expect(route_reply_respond(&r, &req, &rules, out, sizeof(out)), out,
           "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
           "Connection: keep-alive\r\n\r\n");
    struct conf_respond empty = {.status = 204};
    req.head = false;
    expect(route_reply_respond(&empty, &req, NULL, out, sizeof(out)), out,
           "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(route_reply_respond(&r, &req, &rules, out, 20), 0); /* does not fit */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redirect_location),
        cmocka_unit_test(test_redirect_scheme_keeps_host_path_query),
        cmocka_unit_test(test_redirect_host_and_port),
        cmocka_unit_test(test_respond_with_rules_and_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
