/*
 * test_net.c - the address parser: host:port, [v6]:port, :port, and what it must refuse; and
 * address ranges (CIDR) with their matching, IPv4-mapped IPv6 addresses included.
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

static bool in_range(const char *range, const char *ip)
{
    struct net_cidr c;
    const char *err;
    if (net_parse_cidr(range, &c, &err) != 0)
        fail_msg("%s: %s", range, err);
    struct sockaddr_storage ss = {0};
    if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    else
        fail_msg("bad test address %s", ip);
    return net_cidr_match(&c, (struct sockaddr *)&ss);
}

static void test_cidr(void **state)
{
    assert_true(in_range("127.0.0.0/8", "127.1.2.3"));
    assert_false(in_range("127.0.0.0/8", "128.0.0.1"));
    assert_true(in_range("10.0.0.0/8", "::ffff:10.9.8.7")); /* IPv4-mapped */
    assert_false(in_range("10.0.0.0/8", "::1"));
    assert_true(in_range("192.168.1.7", "192.168.1.7")); /* a single address is /32 */
    assert_false(in_range("192.168.1.7", "192.168.1.8"));
    assert_true(in_range("192.168.1.4/30", "192.168.1.7"));
    assert_false(in_range("192.168.1.4/30", "192.168.1.8"));
    assert_true(in_range("0.0.0.0/0", "203.0.113.1"));
    assert_true(in_range("2001:db8::/32", "2001:db8:1::5"));
    assert_false(in_range("2001:db8::/32", "2001:db9::5"));
    assert_false(in_range("2001:db8::/32", "10.0.0.1"));
    assert_true(in_range("::/0", "::1"));
    assert_true(in_range("fe80::/10", "febf::1"));
    assert_false(in_range("fe80::/10", "fec0::1"));

    static const char *const bad[] = {"",           "10.0.0.0/",    "10.0.0.0/33", "10.0.0.1/8",
                                      "10.0.0.0/x", "10.0.0/8",     "::/129",      "2001:db8::1/32",
                                      "host/8",     "10.0.0.0/08x", "/8"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct net_cidr c;
        const char *err = NULL;
        if (net_parse_cidr(bad[i], &c, &err) == 0)
            fail_msg("accepted %s", bad[i]);
        assert_non_null(err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_ip_format),
        cmocka_unit_test(test_cidr),
    };
    return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
