/*
 * test_proxy_proto.c - unit tests for the PROXY protocol parser and writer (core/proxy_proto).
 *
 * Every input is parsed from a copy whose last byte is followed by an unreadable page, so a parser
 * that reads one byte too far crashes the test instead of passing by luck. Every input is also fed
 * one byte at a time: a valid header must be PP_AGAIN at each proper prefix and DONE with the same
 * result at its end; an invalid one must be AGAIN until some byte proves it wrong and ERROR, with
 * the same reason, from then on. Where the spec makes a byte decisive, the test says which one.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/proxy_proto.h"

/* ---- guarded input ---- */

/* Parses bytes[0, len) placed right before a PROT_NONE page. */
static enum pp_status parse(const void *bytes, size_t len, struct pp_result *r)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (len + page - 1) / page;
    size_t map_len = (data_pages + 1) * page;
    char *map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + data_pages * page, page, PROT_NONE), 0);
    char *data = map + data_pages * page - len;
    if (len)
        memcpy(data, bytes, len);
    enum pp_status s = pp_parse(data, len, r);
    munmap(map, map_len);
    return s;
}

static void assert_same_result(const struct pp_result *a, const struct pp_result *b)
{
    assert_int_equal(a->version, b->version);
    assert_int_equal(a->local, b->local);
    assert_int_equal(a->header_len, b->header_len);
    assert_int_equal(a->src_len, b->src_len);
    assert_int_equal(a->dst_len, b->dst_len);
    assert_memory_equal(&a->src, &b->src, sizeof(a->src));
    assert_memory_equal(&a->dst, &b->dst, sizeof(a->dst));
}

/* What follows a header on the wire; longer than PP_MAX_V1 so that a v1 line is also parsed with
 * more bytes available than the line limit. */
static const char payload[] =
    "GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test/1.0\r\n"
    "Accept: */*\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
    "\r\n";

/*
 * bytes[0, len) is one valid header: every proper prefix is AGAIN, the whole is DONE with
 * header_len == len, and the header followed by a payload gives the identical result.
 */
static struct pp_result done(const void *bytes, size_t len)
{
    struct pp_result r, whole;
    for (size_t k = 0; k < len; k++) {
        enum pp_status s = parse(bytes, k, &r);
        if (s != PP_AGAIN)
            fail_msg("prefix of %zu bytes (of %zu): status %d, %s", k, len, s,
                     r.error ? r.error : "-");
        assert_null(r.error);
    }
    enum pp_status s = parse(bytes, len, &whole);
    if (s != PP_DONE)
        fail_msg("header of %zu bytes: status %d, %s", len, s, whole.error ? whole.error : "-");
    assert_int_equal(whole.header_len, len);
    assert_null(whole.error);

    char *more = malloc(len + sizeof(payload));
    assert_non_null(more);
    memcpy(more, bytes, len);
    memcpy(more + len, payload, sizeof(payload));
    for (size_t extra = 1; extra <= sizeof(payload); extra++) {
        assert_int_equal(parse(more, len + extra, &r), PP_DONE);
        assert_same_result(&whole, &r);
    }
    free(more);
    return whole;
}

static struct pp_result done_text(const char *text)
{
    return done(text, strlen(text));
}

/*
 * bytes[0, len) is not a header: prefixes are AGAIN up to some length, ERROR with reason `why`
 * from there to len and beyond (appended bytes cannot repair it). When at is not 0, the first
 * error must come at exactly `at` bytes: that byte made the failure certain.
 */
static void error_at(const void *bytes, size_t len, size_t at, const char *why)
{
    struct pp_result r;
    size_t first = 0;
    char *more = malloc(len + 16);
    assert_non_null(more);
    memcpy(more, bytes, len);
    memset(more + len, 'x', 16);
    for (size_t k = 0; k <= len + 16; k++) {
        enum pp_status s = parse(more, k, &r);
        if (!first && s == PP_AGAIN)
            continue;
        if (s != PP_ERROR)
            fail_msg("%zu bytes (of %zu): status %d, expected an error (%s)", k, len, s, why);
        if (!first)
            first = k;
        assert_non_null(r.error);
        if (strcmp(r.error, why) != 0)
            fail_msg("%zu bytes (of %zu): \"%s\", expected \"%s\"", k, len, r.error, why);
    }
    free(more);
    if (!first || first > len)
        fail_msg("no error within the %zu bytes (%s)", len, why);
    if (at && first != at)
        fail_msg("first error after %zu bytes, expected after %zu (%s)", first, at, why);
}

static void error_text(const char *text, const char *why)
{
    error_at(text, strlen(text), 0, why);
}

static void assert_addr(const struct sockaddr_storage *ss, socklen_t len, const char *ip,
                        unsigned port)
{
    char text[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        assert_int_equal(len, sizeof(*sin));
        assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)));
        assert_int_equal(ntohs(sin->sin_port), port);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        assert_int_equal(ss->ss_family, AF_INET6);
        assert_int_equal(len, sizeof(*sin6));
        assert_non_null(inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text)));
        assert_int_equal(ntohs(sin6->sin6_port), port);
    }
    assert_string_equal(text, ip);
}

/* ---- v2 inputs ---- */

static const unsigned char sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                      0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* Big enough for the largest accepted header and a few bytes past it. */
static unsigned char v2buf[PP_MAX + 64];

/* Writes signature, version/command, family, the length field and body into v2buf. */
static size_t v2(uint8_t ver_cmd, uint8_t fam, size_t len_field, const void *body, size_t body_len)
{
    memcpy(v2buf, sig, 12);
    v2buf[12] = ver_cmd;
    v2buf[13] = fam;
    v2buf[14] = (unsigned char)(len_field >> 8);
    v2buf[15] = (unsigned char)len_field;
    assert_true(16 + body_len <= sizeof(v2buf));
    if (body_len)
        memcpy(v2buf + 16, body, body_len);
    return 16 + body_len;
}

/* 192.0.2.1:56324 -> 198.51.100.2:443 */
static const unsigned char addr4[12] = {192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb};
/* [2001:db8::1]:1 -> [2001:db8::2]:65535 */
static const unsigned char addr6[36] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                                        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
                                        0,    1,    0xff, 0xff};
/* ALPN "h2", a NOOP with an empty value, a 5-byte unique id. */
static const unsigned char tlvs[] = {0x01, 0x00, 0x02, 'h', '2', 0x04, 0x00, 0x00,
                                     0x05, 0x00, 0x05, 'a', 'b', 'c',  'd',  'e'};

/* Address block followed by extra bytes, for the length field tests. */
static size_t v2_with(uint8_t fam, const void *addrs, size_t addr_len, const void *rest,
                      size_t rest_len)
{
    unsigned char body[64 + 256];
    assert_true(addr_len + rest_len <= sizeof(body));
    memcpy(body, addrs, addr_len);
    if (rest_len)
        memcpy(body + addr_len, rest, rest_len);
    return v2(0x21, fam, addr_len + rest_len, body, addr_len + rest_len);
}

/* ---- version 1: valid ---- */

static void test_v1_tcp4(void **state)
{
    struct pp_result r = done_text("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n");
    assert_int_equal(r.version, 1);
    assert_false(r.local);
    assert_addr(&r.src, r.src_len, "192.0.2.1", 56324);
    assert_addr(&r.dst, r.dst_len, "198.51.100.2", 443);

    r = done_text("PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n");
    assert_addr(&r.src, r.src_len, "255.255.255.255", 65535);
    assert_addr(&r.dst, r.dst_len, "0.0.0.0", 0);
}

static void test_v1_tcp6(void **state)
{
    struct pp_result r = done_text("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n");
    assert_int_equal(r.version, 1);
    assert_false(r.local);
    assert_addr(&r.src, r.src_len, "2001:db8::1", 1);
    assert_addr(&r.dst, r.dst_len, "2001:db8::2", 65535);

    /* a dotted IPv4 tail is IPv6 text too */
    r = done_text("PROXY TCP6 ::ffff:192.0.2.1 ::1 10 20\r\n");
    assert_addr(&r.src, r.src_len, "::ffff:192.0.2.1", 10);
    assert_addr(&r.dst, r.dst_len, "::1", 20);

    /* the longest plain form: 104 bytes */
    const char *longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(longest), 104);
    r = done_text(longest);
    assert_addr(&r.src, r.src_len, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
}

static void test_v1_unknown(void **state)
{
    struct pp_result r = done_text("PROXY UNKNOWN\r\n");
    assert_int_equal(r.version, 1);
    assert_true(r.local);
    assert_int_equal(r.src_len, 0);
    assert_int_equal(r.dst_len, 0);

    /* whatever follows UNKNOWN is skipped unread, up to the limit of 107 bytes */
    r = done_text("PROXY UNKNOWN 192.0.2.1 198.51.100.2 56324 443\r\n");
    assert_true(r.local);
    r = done_text("PROXY UNKNOWN not even addresses \x80\xff\r\n");
    assert_true(r.local);
    const char *longest = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(longest), PP_MAX_V1);
    r = done_text(longest);
    assert_true(r.local);
    assert_int_equal(r.header_len, PP_MAX_V1);
}

/* ---- version 1: rejected ---- */

static void test_v1_too_long(void **state)
{
    /* 108 bytes: the 107th byte is not the LF, and no more are looked at */
    char line[200] = "PROXY UNKNOWN ";
    memset(line + 14, 'a', 92);
    memcpy(line + 106, "\r\n", 3);
    assert_int_equal(strlen(line), 108);
    error_at(line, 108, PP_MAX_V1, "v1 line too long");

    /* no CRLF at all */
    memset(line + 14, 'a', sizeof(line) - 15);
    line[sizeof(line) - 1] = '\0';
    error_at(line, strlen(line), PP_MAX_V1, "v1 line too long");

    /* two IPv6 addresses with IPv4 tails are each valid, but not together on one line */
    error_text("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
               "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535\r\n",
               "v1 line too long");
}

static void test_v1_crlf(void **state)
{
    error_text("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n", "v1 missing crlf");
    error_text("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rX", "v1 missing crlf");
    error_text("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\r\n", "v1 missing crlf");
    error_text("PROXY UNKNOWN\n", "v1 missing crlf");
    error_text("PROXY UNKNOWN\r\r\n", "v1 missing crlf");
    error_text("PROXY UNKNOWN abc\rd\r\n", "v1 missing crlf");
    /* the line is text: no control byte may hide in the part that is skipped */
    error_at("PROXY UNKNOWN a\nb\r\n", 19, 16, "v1 control byte");
    error_at("PROXY UNKNOWN a\0b\r\n", 19, 16, "v1 control byte");
    error_text("PROXY UNKNOWN a\tb\r\n", "v1 control byte");
}

static void test_v1_protocol(void **state)
{
    /* refused at the first byte that no protocol name allows */
    error_at("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 32, 10, "v1 bad protocol");
    error_at("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", 32, 7, "v1 bad protocol");
    error_at("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", 32, 8, "v1 bad protocol");
    error_at("PROXY TCP46 1.2.3.4 5.6.7.8 1 2\r\n", 33, 11, "v1 bad protocol");
    error_at("PROXY UNKNOWNX\r\n", 16, 14, "v1 bad protocol");
    error_text("PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n", "v1 bad protocol");
    error_text("PROXY UNKN\r\n", "v1 bad protocol");
    error_text("PROXY UNKNOWN4 1.2.3.4 5.6.7.8 1 2\r\n", "v1 bad protocol");
    error_text("PROXY TCP4\r\n", "v1 wrong field count");
    error_text("PROXY \r\n", "v1 wrong field count");
}

static void test_v1_addresses(void **state)
{
    /* TCP4 carries IPv4 text, TCP6 IPv6 text */
    error_at("PROXY TCP4 ::1 ::1 1 2\r\n", 24, 12, "v1 bad source address");
    error_text("PROXY TCP6 192.0.2.1 198.51.100.2 1 2\r\n", "v1 bad source address");
    error_text("PROXY TCP4 192.0.2.1 ::1 1 2\r\n", "v1 bad destination address");
    error_text("PROXY TCP6 ::1 192.0.2.1 1 2\r\n", "v1 bad destination address");

    static const char *bad4[] = {
        "256.1.1.1", "1.2.3",     "1.2.3.4.5",        "01.2.3.4",  "1.2.3.",
        "1..2.3",    "1.2.3.4a",  "1.2.3.1234567890", "0x1.2.3.4", "-1.2.3.4",
        "+1.2.3.4",  "1.2.3.256", "1.2.3.4/8",
    };
    for (size_t i = 0; i < sizeof(bad4) / sizeof(bad4[0]); i++) {
        char line[128];
        snprintf(line, sizeof(line), "PROXY TCP4 %s 198.51.100.2 1 2\r\n", bad4[i]);
        error_text(line, "v1 bad source address");
        snprintf(line, sizeof(line), "PROXY TCP4 192.0.2.1 %s 1 2\r\n", bad4[i]);
        error_text(line, "v1 bad destination address");
    }
    static const char *bad6[] = {
        "2001:db8::1::2",
        "1:2:3:4:5:6:7:8:9",
        "fe80::1%eth0",
        "12345::1",
        ":1",
        "1:2:3:4:5:6:7",
        "[::1]",
        "::1.2.3",
        "g::1",
        "::ffff:1.2.3.256",
    };
    for (size_t i = 0; i < sizeof(bad6) / sizeof(bad6[0]); i++) {
        char line[128];
        snprintf(line, sizeof(line), "PROXY TCP6 %s ::2 1 2\r\n", bad6[i]);
        error_text(line, "v1 bad source address");
        snprintf(line, sizeof(line), "PROXY TCP6 ::2 %s 1 2\r\n", bad6[i]);
        error_text(line, "v1 bad destination address");
    }
}

static void test_v1_ports(void **state)
{
    static const char *bad[] = {"65536", "99999", "123456", "-1",  "+1",      "01",
                                "00",    "0x10",  "1a",     "1.5", "\xd9\xa3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char line[128];
        snprintf(line, sizeof(line), "PROXY TCP4 192.0.2.1 198.51.100.2 %s 2\r\n", bad[i]);
        error_text(line, "v1 bad source port");
        snprintf(line, sizeof(line), "PROXY TCP4 192.0.2.1 198.51.100.2 1 %s\r\n", bad[i]);
        error_text(line, "v1 bad destination port");
    }
    /* refused at the digit that makes it too large, and at the digit after a leading zero */
    error_at("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", 36, 32, "v1 bad source port");
    error_at("PROXY TCP4 1.2.3.4 5.6.7.8 1 01\r\n", 33, 31, "v1 bad destination port");
}

static void test_v1_spacing(void **state)
{
    error_text("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1 bad spacing");
    error_text("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "v1 bad spacing");
    error_text("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "v1 bad spacing");
    error_text("PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", "v1 bad spacing");
    error_text("PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", "v1 bad spacing");
    error_text("PROXY  UNKNOWN\r\n", "v1 bad spacing");
    error_text("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", "v1 bad source address");
    error_text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "v1 wrong field count");
    error_text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "v1 wrong field count");
    error_text("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "v1 wrong field count");
    error_text("PROXY TCP4 1.2.3.4 5.6.7.8\r\n", "v1 wrong field count");
    error_text("PROXY TCP4 1.2.3.4\r\n", "v1 wrong field count");
    error_text("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r\n", "v1 missing crlf");
}

/* ---- neither signature ---- */

static void test_not_a_header(void **state)
{
    /* decided by the first byte that differs from both signatures, without waiting */
    error_at("GET / HTTP/1.1\r\n\r\n", 18, 1, "not a proxy protocol header");
    error_at("\x16\x03\x01\x02\x00", 5, 1, "not a proxy protocol header");
    error_at("\0", 1, 1, "not a proxy protocol header");
    error_at("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 32, 1, "not a proxy protocol header");
    error_at("PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n", 32, 6, "not a proxy protocol header");
    error_at("PROXYTCP4", 9, 6, "not a proxy protocol header");
    error_at("POST / HTTP/1.1\r\n", 17, 2, "not a proxy protocol header");
    error_at("\r\n\r\nGET / HTTP/1.1\r\n", 20, 5, "not a proxy protocol header");
    /* each signature byte matters */
    for (size_t i = 0; i < sizeof(sig); i++) {
        size_t n = v2(0x21, 0x11, 12, addr4, sizeof(addr4));
        v2buf[i] ^= 0x80;
        error_at(v2buf, n, i + 1, "not a proxy protocol header");
    }

    struct pp_result r;
    assert_int_equal(pp_parse(NULL, 0, &r), PP_AGAIN);
    assert_int_equal(r.version, 0);
    assert_int_equal(parse("PROX", 4, &r), PP_AGAIN);
    assert_int_equal(r.version, 1);
    assert_int_equal(parse(sig, 1, &r), PP_AGAIN);
    assert_int_equal(r.version, 2); /* the first byte already picks the signature to match */
    assert_int_equal(parse(sig, 12, &r), PP_AGAIN);
    assert_int_equal(r.version, 2);
}

/* ---- version 2: valid ---- */

static void test_v2_tcp4(void **state)
{
    struct pp_result r = done(v2buf, v2(0x21, 0x11, 12, addr4, sizeof(addr4)));
    assert_int_equal(r.version, 2);
    assert_false(r.local);
    assert_int_equal(r.header_len, 28);
    assert_addr(&r.src, r.src_len, "192.0.2.1", 56324);
    assert_addr(&r.dst, r.dst_len, "198.51.100.2", 443);

    struct pp_result t = done(v2buf, v2_with(0x11, addr4, sizeof(addr4), tlvs, sizeof(tlvs)));
    assert_int_equal(t.header_len, 28 + sizeof(tlvs));
    assert_false(t.local);
    assert_addr(&t.src, t.src_len, "192.0.2.1", 56324);
    assert_addr(&t.dst, t.dst_len, "198.51.100.2", 443);
}

static void test_v2_tcp6(void **state)
{
    struct pp_result r = done(v2buf, v2(0x21, 0x21, 36, addr6, sizeof(addr6)));
    assert_int_equal(r.version, 2);
    assert_false(r.local);
    assert_int_equal(r.header_len, 52);
    assert_addr(&r.src, r.src_len, "2001:db8::1", 1);
    assert_addr(&r.dst, r.dst_len, "2001:db8::2", 65535);

    struct pp_result t = done(v2buf, v2_with(0x21, addr6, sizeof(addr6), tlvs, sizeof(tlvs)));
    assert_int_equal(t.header_len, 52 + sizeof(tlvs));
    assert_addr(&t.src, t.src_len, "2001:db8::1", 1);
    assert_addr(&t.dst, t.dst_len, "2001:db8::2", 65535);
}

static void test_v2_local_and_skipped(void **state)
{
    /* LOCAL: the proxy's own connection (a health check) */
    struct pp_result r = done(v2buf, v2(0x20, 0x00, 0, NULL, 0));
    assert_int_equal(r.version, 2);
    assert_true(r.local);
    assert_int_equal(r.header_len, 16);
    assert_int_equal(r.src_len, 0);

    /* LOCAL ignores the family and the block, which is consumed unread */
    static const unsigned char junk[5] = {1, 2, 3, 4, 5};
    r = done(v2buf, v2(0x20, 0xff, sizeof(junk), junk, sizeof(junk)));
    assert_true(r.local);
    assert_int_equal(r.header_len, 21);
    r = done(v2buf, v2(0x20, 0x11, 12, addr4, sizeof(addr4)));
    assert_true(r.local);
    assert_int_equal(r.src_len, 0);

    /* PROXY over UNSPEC: the block has no defined layout, so it is consumed unread */
    r = done(v2buf, v2(0x21, 0x00, 0, NULL, 0));
    assert_true(r.local);
    r = done(v2buf, v2(0x21, 0x00, sizeof(junk), junk, sizeof(junk)));
    assert_true(r.local);
    assert_int_equal(r.header_len, 21);

    /* AF_UNIX: 216 bytes of paths, then TLVs, all skipped */
    static unsigned char unix_block[216 + sizeof(tlvs)];
    memset(unix_block, 0, 216);
    memcpy(unix_block, "/run/a.sock", 11);
    memcpy(unix_block + 108, "/run/b.sock", 11);
    memcpy(unix_block + 216, tlvs, sizeof(tlvs));
    for (uint8_t fam = 0x31; fam <= 0x32; fam++) {
        r = done(v2buf, v2(0x21, fam, 216, unix_block, 216));
        assert_true(r.local);
        assert_int_equal(r.header_len, 232);
        r = done(v2buf, v2(0x21, fam, sizeof(unix_block), unix_block, sizeof(unix_block)));
        assert_true(r.local);
    }
}

static void test_v2_size_cap(void **state)
{
    /* one NOOP TLV filling the header up to exactly PP_MAX_V2 bytes */
    static unsigned char block[PP_MAX_V2];
    size_t block_len = PP_MAX_V2 - 16;
    memcpy(block, addr4, 12);
    size_t tlv = block_len - 12 - 3;
    block[12] = 0x04;
    block[13] = (unsigned char)(tlv >> 8);
    block[14] = (unsigned char)tlv;
    memset(block + 15, 0, tlv);
    struct pp_result r = done(v2buf, v2(0x21, 0x11, block_len, block, block_len));
    assert_int_equal(r.header_len, PP_MAX_V2);
    assert_addr(&r.src, r.src_len, "192.0.2.1", 56324);

    /* one byte more is refused as soon as the length field arrives */
    block[14]++;
    size_t n = v2(0x21, 0x11, block_len + 1, block, block_len + 1);
    error_at(v2buf, n, 16, "v2 header too long");
    n = v2(0x21, 0x11, 0xffff, addr4, sizeof(addr4));
    error_at(v2buf, n, 16, "v2 header too long");
    n = v2(0x20, 0x00, 0xffff, NULL, 0);
    error_at(v2buf, n, 16, "v2 header too long");

    /* while waiting, the caller learns the total length from the fixed part */
    n = v2(0x21, 0x11, 12 + sizeof(tlvs), NULL, 0);
    assert_int_equal(parse(v2buf, 15, &r), PP_AGAIN);
    assert_int_equal(r.header_len, 0);
    assert_int_equal(parse(v2buf, 16, &r), PP_AGAIN);
    assert_int_equal(r.header_len, 28 + sizeof(tlvs));
}

/* ---- version 2: rejected ---- */

static void test_v2_version_command(void **state)
{
    static const uint8_t bad_version[] = {0x01, 0x11, 0x31, 0xf1, 0x00};
    for (size_t i = 0; i < sizeof(bad_version); i++) {
        size_t n = v2(bad_version[i], 0x11, 12, addr4, sizeof(addr4));
        error_at(v2buf, n, 13, "v2 bad version");
    }
    for (uint8_t cmd = 2; cmd <= 15; cmd++) {
        size_t n = v2((uint8_t)(0x20 | cmd), 0x11, 12, addr4, sizeof(addr4));
        error_at(v2buf, n, 13, "v2 bad command");
    }
}

static void test_v2_family(void **state)
{
    static const uint8_t bad[] = {0x01, 0x02, 0x10, 0x13, 0x20, 0x23, 0x30,
                                  0x33, 0x41, 0x42, 0x0f, 0xf1, 0xff};
    for (size_t i = 0; i < sizeof(bad); i++) {
        size_t n = v2(0x21, bad[i], 12, addr4, sizeof(addr4));
        error_at(v2buf, n, 14, "v2 bad family");
    }
    size_t n = v2(0x21, 0x12, 12, addr4, sizeof(addr4));
    error_at(v2buf, n, 14, "v2 udp on a stream connection");
    n = v2(0x21, 0x22, 36, addr6, sizeof(addr6));
    error_at(v2buf, n, 14, "v2 udp on a stream connection");
}

static void test_v2_length(void **state)
{
    /* an address block shorter than its family needs: refused when the length arrives */
    size_t n = v2(0x21, 0x11, 11, addr4, 11);
    error_at(v2buf, n, 16, "v2 address block too short");
    n = v2(0x21, 0x11, 0, NULL, 0);
    error_at(v2buf, n, 16, "v2 address block too short");
    n = v2(0x21, 0x21, 35, addr6, 35);
    error_at(v2buf, n, 16, "v2 address block too short");
    n = v2(0x21, 0x21, 12, addr4, 12); /* IPv4-sized block for IPv6 */
    error_at(v2buf, n, 16, "v2 address block too short");
    static unsigned char unix_block[216];
    n = v2(0x21, 0x31, 215, unix_block, 215);
    error_at(v2buf, n, 16, "v2 address block too short");
}

static void test_v2_tlvs(void **state)
{
    /* one or two bytes after the addresses cannot be a TLV: certain from the length field */
    static const unsigned char two[2] = {0x01, 0x00};
    size_t n = v2_with(0x11, addr4, sizeof(addr4), two, 1);
    error_at(v2buf, n, 16, "v2 truncated tlv");
    n = v2_with(0x11, addr4, sizeof(addr4), two, 2);
    error_at(v2buf, n, 16, "v2 truncated tlv");
    /* a TLV 2 bytes long followed by 2 stray bytes */
    static const unsigned char stray[] = {0x01, 0x00, 0x02, 'h', '2', 0x00, 0x00};
    n = v2_with(0x21, addr6, sizeof(addr6), stray, sizeof(stray));
    error_at(v2buf, n, 16 + 36 + 3, "v2 truncated tlv");

    /* a TLV longer than what is left: refused when its own header arrives */
    static const unsigned char over[] = {0x01, 0x00, 0x03, 'h', '2'};
    n = v2_with(0x11, addr4, sizeof(addr4), over, sizeof(over));
    error_at(v2buf, n, 16 + 12 + 3, "v2 tlv overflows header");
    static const unsigned char second[] = {0x01, 0x00, 0x02, 'h', '2', 0x05, 0xff, 0xff, 'x'};
    n = v2_with(0x11, addr4, sizeof(addr4), second, sizeof(second));
    error_at(v2buf, n, 16 + 12 + 5 + 3, "v2 tlv overflows header");
    /* a TLV's length never counts bytes past the header, even when they have arrived */
    static const unsigned char past[] = {0x04, 0x00, 0x10};
    n = v2_with(0x11, addr4, sizeof(addr4), past, sizeof(past));
    error_at(v2buf, n, 16 + 12 + 3, "v2 tlv overflows header");
    /* the same checks for the TLVs after AF_UNIX paths */
    static unsigned char unix_tlv[216 + 5];
    memcpy(unix_tlv + 216, over, sizeof(over));
    n = v2(0x21, 0x31, sizeof(unix_tlv), unix_tlv, sizeof(unix_tlv));
    error_at(v2buf, n, 16 + 216 + 3, "v2 tlv overflows header");
}

/* ---- writer ---- */

static struct sockaddr_in sin4(const char *ip, unsigned port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    return a;
}

static struct sockaddr_in6 sin6(const char *ip, unsigned port)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    assert_int_equal(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
    return a;
}

/* Writes src -> dst in `version`, parses it back (every prefix too) and checks the addresses. */
static void round_trip(int version, const struct sockaddr *src, const struct sockaddr *dst,
                       const char *src_ip, unsigned sport, const char *dst_ip, unsigned dport)
{
    char out[PP_WRITE_MAX];
    size_t n = pp_write(version, src, dst, out, sizeof(out));
    assert_true(n > 0);
    struct pp_result r = done(out, n);
    assert_int_equal(r.version, version);
    assert_false(r.local);
    assert_addr(&r.src, r.src_len, src_ip, sport);
    assert_addr(&r.dst, r.dst_len, dst_ip, dport);
    /* the header is exactly as long as it has to be: one byte less of room fails */
    for (size_t cap = 0; cap < n; cap++)
        assert_int_equal(pp_write(version, src, dst, out, cap), 0);
    assert_int_equal(pp_write(version, src, dst, out, n), n);
}

static void test_write_round_trip(void **state)
{
    struct sockaddr_in a = sin4("192.0.2.1", 56324), b = sin4("198.51.100.2", 443);
    struct sockaddr_in6 c = sin6("2001:db8::1", 1), d = sin6("2001:db8::2", 65535);
    struct sockaddr_in6 e = sin6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    struct sockaddr_in6 m = sin6("::ffff:192.0.2.1", 0);
    struct sockaddr_in z = sin4("0.0.0.0", 0);
    for (int v = 1; v <= 2; v++) {
        round_trip(v, (struct sockaddr *)&a, (struct sockaddr *)&b, "192.0.2.1", 56324,
                   "198.51.100.2", 443);
        round_trip(v, (struct sockaddr *)&z, (struct sockaddr *)&a, "0.0.0.0", 0, "192.0.2.1",
                   56324);
        round_trip(v, (struct sockaddr *)&c, (struct sockaddr *)&d, "2001:db8::1", 1, "2001:db8::2",
                   65535);
        round_trip(v, (struct sockaddr *)&e, (struct sockaddr *)&e,
                   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
                   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
        /* written as given: a mapped address stays IPv6 */
        round_trip(v, (struct sockaddr *)&m, (struct sockaddr *)&c, "::ffff:192.0.2.1", 0,
                   "2001:db8::1", 1);
    }
}

static void test_write_exact(void **state)
{
    struct sockaddr_in a = sin4("192.0.2.1", 56324), b = sin4("198.51.100.2", 443);
    struct sockaddr_in6 c = sin6("2001:db8::1", 1), d = sin6("2001:db8::2", 65535);
    char out[PP_WRITE_MAX];

    size_t n = pp_write(1, (struct sockaddr *)&a, (struct sockaddr *)&b, out, sizeof(out));
    const char *v1 = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
    assert_int_equal(n, strlen(v1));
    assert_memory_equal(out, v1, n);
    n = pp_write(1, (struct sockaddr *)&c, (struct sockaddr *)&d, out, sizeof(out));
    const char *v1_6 = "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
    assert_int_equal(n, strlen(v1_6));
    assert_memory_equal(out, v1_6, n);

    n = pp_write(2, (struct sockaddr *)&a, (struct sockaddr *)&b, out, sizeof(out));
    size_t want = v2(0x21, 0x11, 12, addr4, sizeof(addr4));
    assert_int_equal(n, want);
    assert_memory_equal(out, v2buf, n);
    n = pp_write(2, (struct sockaddr *)&c, (struct sockaddr *)&d, out, sizeof(out));
    want = v2(0x21, 0x21, 36, addr6, sizeof(addr6));
    assert_int_equal(n, want);
    assert_memory_equal(out, v2buf, n);
}

static void test_write_local(void **state)
{
    struct sockaddr_in a = sin4("192.0.2.1", 1);
    struct sockaddr_in6 c = sin6("2001:db8::1", 1);
    struct sockaddr_storage unspec = {.ss_family = AF_UNSPEC};
    const struct sockaddr *pairs[][2] = {
        {NULL, NULL},
        {(struct sockaddr *)&a, NULL},
        {NULL, (struct sockaddr *)&a},
        {(struct sockaddr *)&a, (struct sockaddr *)&c}, /* families differ */
        {(struct sockaddr *)&unspec, (struct sockaddr *)&unspec},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        char out[PP_WRITE_MAX];
        size_t n = pp_write(1, pairs[i][0], pairs[i][1], out, sizeof(out));
        assert_int_equal(n, 15);
        assert_memory_equal(out, "PROXY UNKNOWN\r\n", 15);
        assert_true(done(out, n).local);

        n = pp_write(2, pairs[i][0], pairs[i][1], out, sizeof(out));
        size_t want = v2(0x20, 0x00, 0, NULL, 0);
        assert_int_equal(n, want);
        assert_memory_equal(out, v2buf, n);
        assert_true(done(out, n).local);
        assert_int_equal(pp_write(2, pairs[i][0], pairs[i][1], out, 15), 0);
    }
    char out[PP_WRITE_MAX];
    assert_int_equal(pp_write(0, NULL, NULL, out, sizeof(out)), 0);
    assert_int_equal(pp_write(3, (struct sockaddr *)&a, (struct sockaddr *)&a, out, sizeof(out)),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_unknown),
        cmocka_unit_test(test_v1_too_long),
        cmocka_unit_test(test_v1_crlf),
        cmocka_unit_test(test_v1_protocol),
        cmocka_unit_test(test_v1_addresses),
        cmocka_unit_test(test_v1_ports),
        cmocka_unit_test(test_v1_spacing),
        cmocka_unit_test(test_not_a_header),
        cmocka_unit_test(test_v2_tcp4),
        cmocka_unit_test(test_v2_tcp6),
        cmocka_unit_test(test_v2_local_and_skipped),
        cmocka_unit_test(test_v2_size_cap),
        cmocka_unit_test(test_v2_version_command),
        cmocka_unit_test(test_v2_family),
        cmocka_unit_test(test_v2_length),
        cmocka_unit_test(test_v2_tlvs),
        cmocka_unit_test(test_write_round_trip),
        cmocka_unit_test(test_write_exact),
        cmocka_unit_test(test_write_local),
    };
    return cmocka_run_group_tests_name("proxy_proto", tests, NULL, NULL);
}
