/*
 * test_net.c - the address parser: host:port, [v6]:port, :port, and what it must refuse.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/net.h"

static void expect_text(const char *in, const char *formatted)
{
    struct net_addr a;
    const char *err = NULL;
    if (net_parse_addr(in, &a, &err) != 0)
        fail_msg("%s: %s", in, err);
    char out[NET_ADDR_TEXT];
    net_addr_format((const struct sockaddr *)&a.ss, out, sizeof(out));
    assert_string_equal(out, formatted);
}

static void expect_error(const char *in)
{
    struct net_addr a;
    const char *err = NULL;
    if (net_parse_addr(in, &a, &err) == 0)
        fail_msg("accepted %s", in);
    assert_non_null(err);
}

static void test_valid(void **state)
{
    expect_text("127.0.0.1:8080", "127.0.0.1:8080");
    expect_text("[::1]:9000", "[::1]:9000");
    expect_text("10.1.2.3:0", "10.1.2.3:0");
    expect_text("localhost:80", "127.0.0.1:80");
    struct net_addr a;
    const char *err;
    assert_int_equal(net_parse_addr(":8080", &a, &err), 0);
    assert_true(a.any);
    assert_int_equal(net_parse_addr("*:8080", &a, &err), 0);
    assert_true(a.any);
}

static void test_invalid(void **state)
{
    expect_error("127.0.0.1");
    expect_error("127.0.0.1:");
    expect_error("127.0.0.1:65536");
    expect_error("127.0.0.1:-1");
    expect_error("127.0.0.1:80x");
    expect_error("::1:80");
    expect_error("[::1]80");
    expect_error("[::1]:");
    expect_error("[zz]:80");
    expect_error("[]:80");
    expect_error("no-such-host.invalid:80");
}

static void test_ip_format(void **state)
{
    struct net_addr a;
    const char *err;
    char ip[64];
    assert_int_equal(net_parse_addr("[::ffff:10.0.0.1]:5", &a, &err), 0);
    net_ip_format((const struct sockaddr *)&a.ss, ip, sizeof(ip));
    assert_string_equal(ip, "10.0.0.1"); /* v4-mapped clients show as IPv4 */
    struct net_addr b;
    assert_int_equal(net_parse_addr("10.0.0.1:5", &b, &err), 0);
    assert_false(net_addr_equal(&a, &b));
    struct net_addr c;
    assert_int_equal(net_parse_addr("10.0.0.1:5", &c, &err), 0);
    assert_true(net_addr_equal(&b, &c));
    const char *v4[] = {"0.0.0.0", "255.255.255.255", "192.168.100.9", "1.20.255.0"};
    for (size_t i = 0; i < sizeof(v4) / sizeof(v4[0]); i++) {
        char text[32];
        snprintf(text, sizeof(text), "%s:1", v4[i]);
        assert_int_equal(net_parse_addr(text, &c, &err), 0);
        assert_int_equal(net_ip_format((const struct sockaddr *)&c.ss, ip, sizeof(ip)),
                         strlen(v4[i]));
        assert_string_equal(ip, v4[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_ip_format),
    };
    return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
