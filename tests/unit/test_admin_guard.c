/*
 * test_admin_guard.c - the admin listener's checks against cross-site requests and DNS
 * rebinding (ctl/admin_guard.h): which Host names pass, Origin against Host, Sec-Fetch-Site,
 * and the JSON content type required of changes. The machine's own addresses come from a stub
 * that knows one address per family, so the result does not depend on where the test runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "ctl/admin_guard.h"

static bool stub_local_ip(const struct sockaddr *sa)
{
    char text[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, text, sizeof(text));
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, text, sizeof(text));
    return strcmp(text, "192.0.2.10") == 0 || strcmp(text, "2001:db8::10") == 0;
}

static char *allowed[] = {"lb.example.com", "[2001:db8::99]", "203.0.113.7"};
static const struct admin_guard_policy policy = {allowed, 3, stub_local_ip};

static struct admin_field field(const char *s)
{
    return (struct admin_field){s, s ? strlen(s) : 0};
}

/* A GET with this Host (NULL: none) and nothing else. */
static unsigned get_with_host(const char *host)
{
    struct admin_guard_request req = {.host = field(host)};
    const char *why = NULL;
    unsigned status = admin_guard_check(&policy, &req, &why);
    if (status)
        assert_non_null(why);
    return status;
}

static void test_local_hosts_pass(void **state)
{
    const char *ok[] = {"localhost",           "localhost:9900",    "LocalHost:9900",
                        "localhost.",          "127.0.0.1",         "127.0.0.1:9900",
                        "127.8.9.10:1",        "[::1]:9900",        "[::1]",
                        "192.0.2.10:9900",     "[2001:db8::10]:80", "lb.example.com",
                        "LB.Example.COM:9900", "[2001:db8::99]:1",  "203.0.113.7:9900"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_int_equal(get_with_host(ok[i]), 0);
    assert_int_equal(get_with_host(NULL), 0); /* HTTP/1.0 without Host: no browser sends that */
}

static void test_foreign_hosts_refused(void **state)
{
    const char *bad[] = {"evil.example",
                         "evil.example:9900",
                         "localhost.evil.example",
                         "127.0.0.1.evil.example",
                         "192.0.2.11",
                         "[2001:db8::11]:9900",
                         "lb.example.com.evil",
                         "sub.lb.example.com",
                         "localhost:",
                         "localhost:x",
                         "localhost:123456",
                         "[::1",
                         "[localhost]",
                         "",
                         ":9900",
                         "0x7f.1",
                         "2130706433"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(get_with_host(bad[i]), 421);
}

static unsigned with_origin(const char *host, const char *origin, bool changes)
{
    struct admin_guard_request req = {.host = field(host),
                                      .origin = field(origin),
                                      .changes = changes,
                                      .content_type = field("application/json")};
    const char *why;
    return admin_guard_check(&policy, &req, &why);
}

static void test_origin_must_be_the_host(void **state)
{
    assert_int_equal(with_origin("127.0.0.1:9900", "http://127.0.0.1:9900", true), 0);
    assert_int_equal(with_origin("localhost:9900", "http://LOCALHOST:9900", true), 0);
    assert_int_equal(with_origin("localhost", "http://localhost:80", true), 0);
    assert_int_equal(with_origin("localhost:80", "http://localhost", false), 0);
    assert_int_equal(with_origin("lb.example.com", "https://lb.example.com", true), 0);
    assert_int_equal(with_origin("lb.example.com:443", "https://lb.example.com", true), 0);

    assert_int_equal(with_origin("127.0.0.1:9900", "http://evil.example", true), 403);
    assert_int_equal(with_origin("127.0.0.1:9900", "http://evil.example", false), 403);
    assert_int_equal(with_origin("127.0.0.1:9900", "http://127.0.0.1:9901", true), 403);
    assert_int_equal(with_origin("127.0.0.1:9900", "http://localhost:9900", true), 403);
    assert_int_equal(with_origin("localhost:80", "https://localhost", true), 403); /* 80, 443 */
    assert_int_equal(with_origin("127.0.0.1:9900", "null", true), 403);
    assert_int_equal(with_origin("127.0.0.1:9900", "", true), 403);
    assert_int_equal(with_origin("127.0.0.1:9900", "http://127.0.0.1:9900/x", true), 403);
    assert_int_equal(with_origin("127.0.0.1:9900", "file://", true), 403);
    assert_int_equal(with_origin(NULL, "http://127.0.0.1:9900", true), 403);
    /* a foreign Host fails first, whatever the Origin */
    assert_int_equal(with_origin("evil.example:9900", "http://evil.example:9900", true), 421);
}

static unsigned with_fetch(const char *site, const char *mode, bool changes)
{
    struct admin_guard_request req = {.host = field("127.0.0.1:9900"),
                                      .fetch_site = field(site),
                                      .fetch_mode = field(mode),
                                      .changes = changes,
                                      .content_type = field("application/json")};
    const char *why;
    return admin_guard_check(&policy, &req, &why);
}

static void test_sec_fetch_site(void **state)
{
    assert_int_equal(with_fetch("cross-site", "no-cors", true), 403);
    assert_int_equal(with_fetch("Cross-Site", "cors", false), 403);
    assert_int_equal(with_fetch("cross-site", NULL, false), 403);
    assert_int_equal(with_fetch("cross-site", "navigate", true), 403);
    assert_int_equal(with_fetch("cross-site", "navigate", false), 0); /* a link to the page */
    assert_int_equal(with_fetch("same-origin", "cors", true), 0);
    assert_int_equal(with_fetch("none", "navigate", false), 0);
}

static unsigned change_with_type(const char *type)
{
    struct admin_guard_request req = {
        .host = field("localhost:9900"), .changes = true, .content_type = field(type)};
    const char *why;
    return admin_guard_check(&policy, &req, &why);
}

static void test_changes_need_json(void **state)
{
    assert_int_equal(change_with_type("application/json"), 0);
    assert_int_equal(change_with_type("Application/JSON"), 0);
    assert_int_equal(change_with_type("application/json; charset=utf-8"), 0);
    assert_int_equal(change_with_type(" application/json ;charset=utf-8"), 0);
    assert_int_equal(change_with_type(NULL), 415);
    assert_int_equal(change_with_type(""), 415);
    assert_int_equal(change_with_type("text/plain"), 415);
    assert_int_equal(change_with_type("application/x-www-form-urlencoded"), 415);
    assert_int_equal(change_with_type("multipart/form-data; boundary=x"), 415);
    assert_int_equal(change_with_type("application/jsonx"), 415);
    assert_int_equal(change_with_type("text/plain; application/json"), 415);
    /* reading needs no type */
    struct admin_guard_request get = {.host = field("localhost")};
    const char *why;
    assert_int_equal(admin_guard_check(&policy, &get, &why), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_hosts_pass),
        cmocka_unit_test(test_foreign_hosts_refused),
        cmocka_unit_test(test_origin_must_be_the_host),
        cmocka_unit_test(test_sec_fetch_site),
        cmocka_unit_test(test_changes_need_json),
    };
    return cmocka_run_group_tests_name("admin_guard", tests, NULL, NULL);
}
