/*
 * test_dns_answer.c - DNS replies turned into servers (discovery/dns_answer.h): SRV records of
 * the lowest priority only, their weights scaled, target addresses from the additional section
 * or from follow-up replies, A and AAAA replies, duplicates, max_servers, the smallest TTL, the
 * servers' names and hosts, and replies cut short or made of garbage, which must be refused
 * whole and never read out of bounds.
 *
 * The replies are built here in wire format (RFC 1035 4.1) by a small writer: a header, one
 * question, then records section by section, with the counts filled in at the end. Names are
 * written uncompressed unless a test points back at the question on purpose. Each reply is
 * handed to the code under test in an allocation of its exact size, so that ASan catches a read
 * past its end.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/log.h"
#include "discovery/dns_answer.h"
#include "discovery/members.h"

/* ---- a DNS message writer ---- */

enum { ANSWER, AUTHORITY, ADDITIONAL };

struct wire {
    unsigned char b[16384];
    size_t len;
    unsigned count[3];
    int section; /* sections must be written in order */
};

static void put8(struct wire *w, unsigned v)
{
    assert_true(w->len < sizeof(w->b));
    w->b[w->len++] = (unsigned char)v;
}

static void put16(struct wire *w, unsigned v)
{
    put8(w, v >> 8 & 0xff);
    put8(w, v & 0xff);
}

static void put32(struct wire *w, uint32_t v)
{
    put16(w, v >> 16);
    put16(w, v & 0xffff);
}

/* "a.example" as labels, ending with the root; "" or "." is the root alone. */
static void put_name(struct wire *w, const char *name)
{
    while (*name && strcmp(name, ".") != 0) {
        const char *dot = strchr(name, '.');
        size_t n = dot ? (size_t)(dot - name) : strlen(name);
        put8(w, (unsigned)n);
        for (size_t i = 0; i < n; i++)
            put8(w, (unsigned char)name[i]);
        name += n + (dot ? 1 : 0);
    }
    put8(w, 0);
}

/* A response header (id 1, QR, RD, RA, NOERROR) and one question for name, type. */
static void wire_start(struct wire *w, const char *name, unsigned type)
{
    memset(w, 0, sizeof(*w));
    put16(w, 1);
    put16(w, 0x8180);
    put16(w, 1);
    put16(w, 0);
    put16(w, 0);
    put16(w, 0);
    put_name(w, name);
    put16(w, type);
    put16(w, 1);
}

/* A record's owner, type, class IN and TTL; returns where its data length goes. */
static size_t rr_start(struct wire *w, int section, const char *owner, unsigned type, uint32_t ttl)
{
    assert_true(section >= w->section);
    w->section = section;
    w->count[section]++;
    put_name(w, owner);
    put16(w, type);
    put16(w, 1);
    put32(w, ttl);
    size_t at = w->len;
    put16(w, 0);
    return at;
}

static void rr_end(struct wire *w, size_t at)
{
    size_t n = w->len - at - 2;
    w->b[at] = (unsigned char)(n >> 8);
    w->b[at + 1] = (unsigned char)n;
}

static void add_srv(struct wire *w, int section, const char *owner, uint32_t ttl, unsigned priority,
                    unsigned weight, unsigned port, const char *target)
{
    size_t at = rr_start(w, section, owner, DNS_RR_SRV, ttl);
    put16(w, priority);
    put16(w, weight);
    put16(w, port);
    put_name(w, target);
    rr_end(w, at);
}

static void add_a(struct wire *w, int section, const char *owner, uint32_t ttl, const char *ip)
{
    unsigned char a[4];
    assert_int_equal(inet_pton(AF_INET, ip, a), 1);
    size_t at = rr_start(w, section, owner, DNS_RR_A, ttl);
    for (int i = 0; i < 4; i++)
        put8(w, a[i]);
    rr_end(w, at);
}

static void add_aaaa(struct wire *w, int section, const char *owner, uint32_t ttl, const char *ip)
{
    unsigned char a[16];
    assert_int_equal(inet_pton(AF_INET6, ip, a), 1);
    size_t at = rr_start(w, section, owner, DNS_RR_AAAA, ttl);
    for (int i = 0; i < 16; i++)
        put8(w, a[i]);
    rr_end(w, at);
}

static void add_cname(struct wire *w, const char *owner, uint32_t ttl, const char *target)
{
    size_t at = rr_start(w, ANSWER, owner, DNS_RR_CNAME, ttl);
    put_name(w, target);
    rr_end(w, at);
}

/* The reply in an allocation of its exact size (the counts filled in); free() it. */
static unsigned char *wire_done(struct wire *w, size_t *len)
{
    for (int s = 0; s < 3; s++) {
        w->b[6 + 2 * s] = (unsigned char)(w->count[s] >> 8);
        w->b[7 + 2 * s] = (unsigned char)w->count[s];
    }
    unsigned char *copy = malloc(w->len);
    assert_non_null(copy);
    memcpy(copy, w->b, w->len);
    *len = w->len;
    return copy;
}

/* ---- what the log said ---- */

static char log_path[] = "/tmp/test_dns_answer_log_XXXXXX";

static int log_setup(void **state)
{
    int fd = mkstemp(log_path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(log_open(log_path), 0);
    return 0;
}

static int log_teardown(void **state)
{
    assert_int_equal(log_open(NULL), 0);
    unlink(log_path);
    return 0;
}

/* Lines logged since the last call, into text. */
static unsigned new_log_lines(char *text, size_t size)
{
    static long seen;
    FILE *f = fopen(log_path, "r");
    assert_non_null(f);
    assert_int_equal(fseek(f, seen, SEEK_SET), 0);
    size_t n = fread(text, 1, size - 1, f);
    text[n] = '\0';
    seen += (long)n;
    fclose(f);
    unsigned lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += text[i] == '\n';
    return lines;
}

/* ---- fixtures ---- */

struct fixture {
    struct member_log log;
    struct dns_answer_ctx cx;
    struct member_set set;
    struct dns_srv_targets targets;
    char logged[8192];
};

static void fixture_init(struct fixture *f, unsigned max)
{
    memset(f, 0, sizeof(*f));
    dns_answer_ctx_init(&f->cx, &f->log, "api", "dns test.example");
    members_init(&f->set, max);
    new_log_lines(f->logged, sizeof(f->logged)); /* forget earlier tests' lines */
}

static void fixture_free(struct fixture *f)
{
    members_free(&f->set);
    dns_srv_targets_free(&f->targets);
    members_log_free(&f->log);
}

static int srv(struct fixture *f, struct wire *w, unsigned max)
{
    size_t len;
    unsigned char *reply = wire_done(w, &len);
    const char *why = NULL;
    int rc = dns_answer_srv(&f->cx, reply, len, max, &f->targets, &why);
    free(reply);
    return rc;
}

static int addresses(struct fixture *f, struct wire *w, enum dns_rr_type type, const char *host,
                     unsigned port)
{
    size_t len;
    unsigned char *reply = wire_done(w, &len);
    const char *why = NULL;
    int rc = dns_answer_addresses(&f->cx, reply, len, type, host, port, &f->set, &why);
    if (rc < 0)
        assert_non_null(why);
    free(reply);
    return rc;
}

static const struct member *member(const struct fixture *f, const char *name)
{
    int i = members_find(&f->set, name);
    if (i < 0)
        fail_msg("no server %s", name);
    return &f->set.v[i];
}

static void assert_member_ip(const struct member *m, const char *ip_port)
{
    char text[NET_ADDR_TEXT];
    net_addr_format((const struct sockaddr *)&m->addr.ss, text, sizeof(text));
    assert_string_equal(text, ip_port);
}

/* ---- SRV ---- */

static void srv_uses_the_lowest_priority_only(void **state)
{
    struct fixture f;
    fixture_init(&f, 100);
    struct wire w;
    wire_start(&w, "_http._tcp.api.example", DNS_RR_SRV);
    add_srv(&w, ANSWER, "_http._tcp.api.example", 60, 20, 5, 8003, "c.example");
    add_srv(&w, ANSWER, "_http._tcp.api.example", 60, 10, 5, 8001, "a.example");
    add_srv(&w, ANSWER, "_http._tcp.api.example", 60, 10, 5, 8002, "b.example");
    add_a(&w, ADDITIONAL, "a.example", 60, "10.0.0.1");
    add_a(&w, ADDITIONAL, "b.example", 60, "10.0.0.2");
    add_a(&w, ADDITIONAL, "c.example", 60, "10.0.0.3");
    assert_int_equal(srv(&f, &w, 100), 0);
    assert_int_equal(f.targets.n, 2);
    dns_answer_srv_members(&f.cx, &f.targets, &f.set);
    assert_int_equal(f.set.n, 2);
    const struct member *a = member(&f, "a.example:8001");
    assert_string_equal(a->host, "a.example");
    assert_member_ip(a, "10.0.0.1:8001");
    assert_int_equal(a->weight, 5);
    const struct member *b = member(&f, "b.example:8002");
    assert_string_equal(b->host, "b.example");
    assert_member_ip(b, "10.0.0.2:8002");
    assert_int_equal(members_find(&f.set, "c.example:8003"), -1);
    assert_int_equal(new_log_lines(f.logged, sizeof(f.logged)), 0);
    assert_false(f.cx.full);
    fixture_free(&f);
}

static unsigned weight_of(struct fixture *f, const char *name)
{
    return member(f, name)->weight;
}

static void srv_weights_are_scaled_by_the_largest(void **state)
{
    struct fixture f;
    fixture_init(&f, 100);
    struct wire w;
    wire_start(&w, "_x._tcp.example", DNS_RR_SRV);
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 1, 0, 80, "zero.example");
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 1, 1, 80, "one.example");
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 1, 65535, 80, "max.example");
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 1, 32768, 80, "half.example");
    /* a heavier record of a higher priority value decides nothing */
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 2, 65535, 80, "backup.example");
    add_a(&w, ADDITIONAL, "zero.example", 60, "10.0.0.1");
    add_a(&w, ADDITIONAL, "one.example", 60, "10.0.0.2");
    add_a(&w, ADDITIONAL, "max.example", 60, "10.0.0.3");
    add_a(&w, ADDITIONAL, "half.example", 60, "10.0.0.4");
    assert_int_equal(srv(&f, &w, 100), 0);
    dns_answer_srv_members(&f.cx, &f.targets, &f.set);
    assert_int_equal(f.set.n, 4);
    assert_int_equal(weight_of(&f, "zero.example:80"), 1);
    assert_int_equal(weight_of(&f, "one.example:80"), 1);
    assert_int_equal(weight_of(&f, "max.example:80"), 256);
    assert_int_equal(weight_of(&f, "half.example:80"), 128);
    fixture_free(&f);

    /* weights that fit stay as they are; a 0 among them becomes 1 */
    fixture_init(&f, 100);
    wire_start(&w, "_x._tcp.example", DNS_RR_SRV);
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 1, 0, 80, "zero.example");
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 1, 3, 80, "three.example");
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 1, 200, 80, "two-hundred.example");
    add_a(&w, ADDITIONAL, "zero.example", 60, "10.0.0.1");
    add_a(&w, ADDITIONAL, "three.example", 60, "10.0.0.2");
    add_a(&w, ADDITIONAL, "two-hundred.example", 60, "10.0.0.3");
    assert_int_equal(srv(&f, &w, 100), 0);
    dns_answer_srv_members(&f.cx, &f.targets, &f.set);
    assert_int_equal(weight_of(&f, "zero.example:80"), 1);
    assert_int_equal(weight_of(&f, "three.example:80"), 3);
    assert_int_equal(weight_of(&f, "two-hundred.example:80"), 200);
    fixture_free(&f);
}

static void srv_reports_targets_without_addresses(void **state)
{
    struct fixture f;
    fixture_init(&f, 100);
    struct wire w;
    wire_start(&w, "_x._tcp.example", DNS_RR_SRV);
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 8001, "known.example");
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 8002, "Unknown.Example");
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 8003, "v6.example");
    /* owner names compare without regard to case */
    add_a(&w, ADDITIONAL, "KNOWN.example", 60, "10.0.0.1");
    add_aaaa(&w, ADDITIONAL, "v6.example", 60, "2001:db8::3");
    add_a(&w, ADDITIONAL, "stranger.example", 60, "10.9.9.9");
    assert_int_equal(srv(&f, &w, 100), 0);
    assert_int_equal(f.targets.n, 3);
    assert_true(f.targets.v[0].has_addr);
    assert_false(f.targets.v[1].has_addr);
    assert_string_equal(f.targets.v[1].name, "Unknown.Example");
    assert_true(f.targets.v[2].has_addr);

    /* the follow-ups for the unresolved one: an AAAA reply, then an A reply */
    wire_start(&w, "Unknown.Example", DNS_RR_AAAA);
    add_aaaa(&w, ANSWER, "Unknown.Example", 30, "2001:db8::2");
    size_t len;
    unsigned char *reply = wire_done(&w, &len);
    const char *why = NULL;
    assert_int_equal(dns_answer_target(&f.cx, reply, len, DNS_RR_AAAA, &f.targets.v[1], &why), 0);
    free(reply);
    assert_true(f.targets.v[1].has_addr);
    wire_start(&w, "Unknown.Example", DNS_RR_A);
    add_a(&w, ANSWER, "Unknown.Example", 20, "10.0.0.2");
    reply = wire_done(&w, &len);
    assert_int_equal(dns_answer_target(&f.cx, reply, len, DNS_RR_A, &f.targets.v[1], &why), 0);
    free(reply);

    dns_answer_srv_members(&f.cx, &f.targets, &f.set);
    assert_int_equal(f.set.n, 3);
    assert_member_ip(member(&f, "known.example:8001"), "10.0.0.1:8001");
    /* IPv4 preferred over the IPv6 address that came first */
    assert_member_ip(member(&f, "Unknown.Example:8002"), "10.0.0.2:8002");
    assert_string_equal(member(&f, "Unknown.Example:8002")->host, "Unknown.Example");
    assert_member_ip(member(&f, "v6.example:8003"), "[2001:db8::3]:8003");
    assert_int_equal(f.cx.min_ttl, 20);
    fixture_free(&f);

    /* a target that no follow-up resolved is left out, with one line */
    fixture_init(&f, 100);
    wire_start(&w, "_x._tcp.example", DNS_RR_SRV);
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 8001, "gone.example");
    assert_int_equal(srv(&f, &w, 100), 0);
    assert_int_equal(f.targets.n, 1);
    assert_false(f.targets.v[0].has_addr);
    dns_answer_srv_members(&f.cx, &f.targets, &f.set);
    assert_int_equal(f.set.n, 0);
    assert_int_equal(new_log_lines(f.logged, sizeof(f.logged)), 1);
    assert_non_null(strstr(f.logged, "pool api: dns test.example: SRV target gone.example has no "
                                     "address (ignored)"));
    fixture_free(&f);
}

static void srv_target_uses_its_lowest_ipv4_address_in_any_order(void **state)
{
    const char *orders[2][3] = {{"10.0.0.9", "10.0.0.2", "10.0.0.5"},
                                {"10.0.0.5", "10.0.0.2", "10.0.0.9"}};
    for (int o = 0; o < 2; o++) {
        struct fixture f;
        fixture_init(&f, 100);
        struct wire w;
        wire_start(&w, "_x._tcp.example", DNS_RR_SRV);
        add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 443, "multi.example");
        add_aaaa(&w, ADDITIONAL, "multi.example", 60, "::1");
        for (int i = 0; i < 3; i++)
            add_a(&w, ADDITIONAL, "multi.example", 60, orders[o][i]);
        assert_int_equal(srv(&f, &w, 100), 0);
        dns_answer_srv_members(&f.cx, &f.targets, &f.set);
        assert_int_equal(f.set.n, 1);
        assert_member_ip(member(&f, "multi.example:443"), "10.0.0.2:443");
        fixture_free(&f);
    }
    /* only IPv6: the lowest of those */
    struct fixture f;
    fixture_init(&f, 100);
    struct wire w;
    wire_start(&w, "_x._tcp.example", DNS_RR_SRV);
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 443, "six.example");
    add_aaaa(&w, ADDITIONAL, "six.example", 60, "2001:db8::9");
    add_aaaa(&w, ADDITIONAL, "six.example", 60, "2001:db8::4");
    assert_int_equal(srv(&f, &w, 100), 0);
    dns_answer_srv_members(&f.cx, &f.targets, &f.set);
    assert_member_ip(member(&f, "six.example:443"), "[2001:db8::4]:443");
    fixture_free(&f);
}

static void srv_bad_records_are_skipped_with_one_line_each(void **state)
{
    struct fixture f;
    fixture_init(&f, 100);
    struct wire w;
    wire_start(&w, "_x._tcp.example", DNS_RR_SRV);
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 8001, "good.example");
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 0, "portless.example");
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 8001, "good.example"); /* duplicate */
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 8002, "bad name.example");
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 8003, "."); /* no service: silent */
    /* an SRV record whose data is too short for one */
    size_t at = rr_start(&w, ANSWER, "_x._tcp.example", DNS_RR_SRV, 60);
    put16(&w, 0);
    put16(&w, 1);
    rr_end(&w, at);
    /* an SRV record whose target runs past its data */
    at = rr_start(&w, ANSWER, "_x._tcp.example", DNS_RR_SRV, 60);
    put16(&w, 0);
    put16(&w, 1);
    put16(&w, 8004);
    put8(&w, 5);
    put8(&w, 'a');
    rr_end(&w, at); /* the label's other 4 bytes would be the next record's */
    /* a second server on the same address as good.example */
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 8001, "alias.example");
    add_a(&w, ADDITIONAL, "good.example", 60, "10.0.0.1");
    add_a(&w, ADDITIONAL, "alias.example", 60, "10.0.0.1");
    /* an A record with a 3-byte address */
    at = rr_start(&w, ADDITIONAL, "good.example", DNS_RR_A, 60);
    put8(&w, 10);
    put8(&w, 0);
    put8(&w, 0);
    rr_end(&w, at);
    assert_int_equal(srv(&f, &w, 100), 0);
    dns_answer_srv_members(&f.cx, &f.targets, &f.set);
    assert_int_equal(f.set.n, 1);
    assert_member_ip(member(&f, "good.example:8001"), "10.0.0.1:8001");
    unsigned lines = new_log_lines(f.logged, sizeof(f.logged));
    assert_non_null(strstr(f.logged, "target portless.example with port 0"));
    assert_non_null(strstr(f.logged, "duplicate SRV record for good.example:8001"));
    assert_non_null(strstr(f.logged, "target is not a host name"));
    assert_non_null(strstr(f.logged, "SRV record for _x._tcp.example with 4 bytes of data"));
    assert_non_null(strstr(f.logged, "with a malformed target"));
    assert_non_null(strstr(f.logged, "server alias.example:8001: duplicate address"));
    assert_non_null(strstr(f.logged, "A record for good.example with 3 bytes of data"));
    assert_int_equal(lines, 7);
    members_log_answer_done(&f.log);

    /* the same answer again: nothing new to say */
    members_clear(&f.set);
    assert_int_equal(srv(&f, &w, 100), 0);
    dns_answer_srv_members(&f.cx, &f.targets, &f.set);
    assert_int_equal(f.set.n, 1);
    assert_int_equal(new_log_lines(f.logged, sizeof(f.logged)), 0);
    fixture_free(&f);
}

static void srv_compressed_target_names(void **state)
{
    struct fixture f;
    fixture_init(&f, 100);
    struct wire w;
    wire_start(&w, "web.example", DNS_RR_SRV);
    /* owner and target both point at the question's name (offset 12) */
    w.count[ANSWER]++;
    w.section = ANSWER;
    put16(&w, 0xc000 | 12);
    put16(&w, DNS_RR_SRV);
    put16(&w, 1);
    put32(&w, 60);
    size_t at = w.len;
    put16(&w, 0);
    put16(&w, 0);
    put16(&w, 1);
    put16(&w, 9000);
    put16(&w, 0xc000 | 12);
    rr_end(&w, at);
    add_a(&w, ADDITIONAL, "web.example", 60, "192.0.2.7");
    assert_int_equal(srv(&f, &w, 100), 0);
    dns_answer_srv_members(&f.cx, &f.targets, &f.set);
    assert_int_equal(f.set.n, 1);
    assert_member_ip(member(&f, "web.example:9000"), "192.0.2.7:9000");
    fixture_free(&f);
}

static void srv_max_servers(void **state)
{
    struct fixture f;
    fixture_init(&f, 2);
    struct wire w;
    wire_start(&w, "_x._tcp.example", DNS_RR_SRV);
    char target[32], ip[32];
    for (int i = 0; i < 5; i++) {
        snprintf(target, sizeof(target), "t%d.example", i);
        add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 80, target);
    }
    for (int i = 0; i < 5; i++) {
        snprintf(target, sizeof(target), "t%d.example", i);
        snprintf(ip, sizeof(ip), "10.0.0.%d", i + 1);
        add_a(&w, ADDITIONAL, target, 60, ip);
    }
    assert_int_equal(srv(&f, &w, 2), 0);
    assert_int_equal(f.targets.n, 2);
    assert_true(f.cx.full);
    dns_answer_srv_members(&f.cx, &f.targets, &f.set);
    assert_int_equal(f.set.n, 2);
    dns_answer_report_full(&f.cx);
    assert_int_equal(new_log_lines(f.logged, sizeof(f.logged)), 1);
    assert_non_null(strstr(f.logged, "servers beyond max_servers (ignored)"));
    fixture_free(&f);
}

/* ---- A and AAAA ---- */

static void a_and_aaaa_make_one_set(void **state)
{
    struct fixture f;
    fixture_init(&f, 100);
    struct wire w;
    wire_start(&w, "api.example", DNS_RR_A);
    add_a(&w, ANSWER, "api.example", 60, "10.0.0.1");
    add_a(&w, ANSWER, "api.example", 60, "10.0.0.2");
    add_aaaa(&w, ANSWER, "api.example", 60, "2001:db8::9"); /* not what was asked: unused */
    assert_int_equal(addresses(&f, &w, DNS_RR_A, "api.example", 8080), 0);
    wire_start(&w, "api.example", DNS_RR_AAAA);
    add_aaaa(&w, ANSWER, "api.example", 60, "2001:db8::1");
    assert_int_equal(addresses(&f, &w, DNS_RR_AAAA, "api.example", 8080), 0);
    assert_int_equal(f.set.n, 3);
    const struct member *m = member(&f, "10.0.0.1:8080");
    assert_string_equal(m->host, "api.example");
    assert_int_equal(m->weight, 1);
    assert_member_ip(m, "10.0.0.1:8080");
    member(&f, "10.0.0.2:8080");
    m = member(&f, "[2001:db8::1]:8080");
    assert_string_equal(m->host, "api.example");
    assert_member_ip(m, "[2001:db8::1]:8080");
    assert_int_equal(members_find(&f.set, "[2001:db8::9]:8080"), -1);
    assert_int_equal(new_log_lines(f.logged, sizeof(f.logged)), 0);
    fixture_free(&f);
}

static void a_duplicates_and_max(void **state)
{
    struct fixture f;
    fixture_init(&f, 3);
    struct wire w;
    wire_start(&w, "api.example", DNS_RR_A);
    add_a(&w, ANSWER, "api.example", 60, "10.0.0.1");
    add_a(&w, ANSWER, "api.example", 60, "10.0.0.1");
    for (int i = 2; i <= 6; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "10.0.0.%d", i);
        add_a(&w, ANSWER, "api.example", 60, ip);
    }
    assert_int_equal(addresses(&f, &w, DNS_RR_A, "api.example", 80), 0);
    assert_int_equal(f.set.n, 3);
    assert_true(f.cx.full);
    member(&f, "10.0.0.1:80");
    member(&f, "10.0.0.2:80");
    member(&f, "10.0.0.3:80");
    dns_answer_report_full(&f.cx);
    assert_int_equal(new_log_lines(f.logged, sizeof(f.logged)), 2);
    assert_non_null(strstr(f.logged, "server 10.0.0.1:80: duplicate name"));
    fixture_free(&f);
}

static void ttl_is_the_smallest_used(void **state)
{
    struct fixture f;
    fixture_init(&f, 100);
    assert_int_equal(f.cx.min_ttl, UINT32_MAX);
    struct wire w;
    wire_start(&w, "www.example", DNS_RR_A);
    add_cname(&w, "www.example", 45, "api.example");
    add_a(&w, ANSWER, "api.example", 300, "10.0.0.1");
    add_a(&w, ANSWER, "api.example", 120, "10.0.0.2");
    add_a(&w, ADDITIONAL, "other.example", 5, "10.0.0.3"); /* not used: not counted */
    assert_int_equal(addresses(&f, &w, DNS_RR_A, "www.example", 80), 0);
    assert_int_equal(f.set.n, 2);
    assert_int_equal(f.cx.min_ttl, 45);
    wire_start(&w, "www.example", DNS_RR_A);
    add_a(&w, ANSWER, "www.example", 0x80000001u, "10.0.0.4"); /* top bit: 0 (RFC 2181) */
    assert_int_equal(addresses(&f, &w, DNS_RR_A, "www.example", 80), 0);
    assert_int_equal(f.cx.min_ttl, 0);
    fixture_free(&f);

    fixture_init(&f, 100);
    wire_start(&w, "_x._tcp.example", DNS_RR_SRV);
    add_srv(&w, ANSWER, "_x._tcp.example", 90, 0, 1, 80, "a.example");
    add_srv(&w, ANSWER, "_x._tcp.example", 600, 0, 1, 80, "b.example");
    add_a(&w, ADDITIONAL, "a.example", 70, "10.0.0.1");
    add_a(&w, ADDITIONAL, "unrelated.example", 1, "10.0.0.2");
    assert_int_equal(srv(&f, &w, 100), 0);
    assert_int_equal(f.cx.min_ttl, 70);
    fixture_free(&f);
}

static void empty_answers(void **state)
{
    struct fixture f;
    fixture_init(&f, 100);
    struct wire w;
    wire_start(&w, "api.example", DNS_RR_A);
    assert_int_equal(addresses(&f, &w, DNS_RR_A, "api.example", 80), 0);
    assert_int_equal(f.set.n, 0);
    wire_start(&w, "_x._tcp.example", DNS_RR_SRV);
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 0, 0, ".");
    assert_int_equal(srv(&f, &w, 100), 0);
    assert_int_equal(f.targets.n, 0);
    assert_int_equal(new_log_lines(f.logged, sizeof(f.logged)), 0);
    fixture_free(&f);
}

/* ---- malformed replies ---- */

static void refused(struct fixture *f, const unsigned char *bytes, size_t len)
{
    unsigned char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, bytes, len);
    const char *why = NULL;
    assert_int_equal(dns_answer_addresses(&f->cx, copy, len, DNS_RR_A, "x", 80, &f->set, &why), -1);
    assert_non_null(why);
    why = NULL;
    assert_int_equal(dns_answer_srv(&f->cx, copy, len, 100, &f->targets, &why), -1);
    assert_non_null(why);
    free(copy);
}

static void replies_cut_short_are_refused_whole(void **state)
{
    struct fixture f;
    fixture_init(&f, 100);
    struct wire w;
    wire_start(&w, "_x._tcp.example", DNS_RR_SRV);
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 8001, "a.example");
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 8002, "b.example");
    add_a(&w, ADDITIONAL, "a.example", 60, "10.0.0.1");
    add_aaaa(&w, ADDITIONAL, "b.example", 60, "2001:db8::2");
    size_t len;
    unsigned char *full = wire_done(&w, &len);
    /* every shorter prefix: the counts promise records that are not all there */
    for (size_t cut = 0; cut < len; cut++)
        refused(&f, full, cut);
    assert_int_equal(f.set.n, 0);
    /* the whole reply is fine */
    const char *why = NULL;
    assert_int_equal(dns_answer_srv(&f.cx, full, len, 100, &f.targets, &why), 0);
    assert_int_equal(f.targets.n, 2);
    free(full);
    fixture_free(&f);
}

static void broken_framing_is_refused(void **state)
{
    struct fixture f;
    fixture_init(&f, 100);
    struct wire w;

    /* a compression pointer to itself */
    wire_start(&w, "a.example", DNS_RR_A);
    w.count[ANSWER]++;
    w.section = ANSWER;
    put16(&w, 0xc000 | (unsigned)w.len);
    put16(&w, DNS_RR_A);
    put16(&w, 1);
    put32(&w, 60);
    put16(&w, 4);
    put32(&w, 0x0a000001);
    size_t len;
    unsigned char *reply = wire_done(&w, &len);
    refused(&f, reply, len);
    free(reply);

    /* a record's data length past the end */
    wire_start(&w, "a.example", DNS_RR_A);
    size_t at = rr_start(&w, ANSWER, "a.example", DNS_RR_A, 60);
    put32(&w, 0x0a000001);
    rr_end(&w, at);
    w.b[at + 1] = 200;
    reply = wire_done(&w, &len);
    refused(&f, reply, len);
    free(reply);

    /* counts far beyond what the bytes hold */
    wire_start(&w, "a.example", DNS_RR_A);
    add_a(&w, ANSWER, "a.example", 60, "10.0.0.1");
    w.count[ANSWER] = 65535;
    w.count[ADDITIONAL] = 65535;
    reply = wire_done(&w, &len);
    refused(&f, reply, len);
    free(reply);

    /* a question that is not there */
    wire_start(&w, "a.example", DNS_RR_A);
    reply = wire_done(&w, &len);
    reply[5] = 3; /* three questions */
    refused(&f, reply, len);
    free(reply);
    assert_int_equal(f.set.n, 0);
    fixture_free(&f);
}

/* A small deterministic generator, so that a failure can be replayed. */
static uint32_t next_random(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

static void garbage_never_crashes(void **state)
{
    struct fixture f;
    fixture_init(&f, 16);
    struct wire w;
    wire_start(&w, "_x._tcp.example", DNS_RR_SRV);
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 8001, "a.example");
    add_srv(&w, ANSWER, "_x._tcp.example", 60, 0, 1, 8002, "b.example");
    add_a(&w, ADDITIONAL, "a.example", 60, "10.0.0.1");
    size_t len;
    unsigned char *good = wire_done(&w, &len);
    uint64_t seed = 14;
    log_max_level = -1; /* thousands of bad records: keep the log quiet */
    for (int round = 0; round < 20000; round++) {
        /* a valid reply with a few bytes flipped, or pure noise */
        size_t n = round % 2 ? len : next_random(&seed) % 600;
        unsigned char *bytes = malloc(n ? n : 1);
        assert_non_null(bytes);
        if (round % 2) {
            memcpy(bytes, good, len);
            for (int k = next_random(&seed) % 4; k >= 0; k--)
                bytes[next_random(&seed) % len] = (unsigned char)next_random(&seed);
        } else {
            for (size_t i = 0; i < n; i++)
                bytes[i] = (unsigned char)next_random(&seed);
        }
        const char *why = NULL;
        members_clear(&f.set);
        if (dns_answer_srv(&f.cx, bytes, n, 16, &f.targets, &why) == 0) {
            for (unsigned t = 0; t < f.targets.n; t++)
                dns_answer_target(&f.cx, bytes, n, DNS_RR_A, &f.targets.v[t], &why);
            dns_answer_srv_members(&f.cx, &f.targets, &f.set);
        } else {
            assert_non_null(why);
        }
        assert_true(f.set.n <= 16 && f.targets.n <= 16);
        dns_answer_addresses(&f.cx, bytes, n, DNS_RR_AAAA, "x", 1, &f.set, &why);
        members_log_answer_done(&f.log);
        free(bytes);
    }
    log_max_level = LOG_INFO;
    free(good);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(srv_uses_the_lowest_priority_only),
        cmocka_unit_test(srv_weights_are_scaled_by_the_largest),
        cmocka_unit_test(srv_reports_targets_without_addresses),
        cmocka_unit_test(srv_target_uses_its_lowest_ipv4_address_in_any_order),
        cmocka_unit_test(srv_bad_records_are_skipped_with_one_line_each),
        cmocka_unit_test(srv_compressed_target_names),
        cmocka_unit_test(srv_max_servers),
        cmocka_unit_test(a_and_aaaa_make_one_set),
        cmocka_unit_test(a_duplicates_and_max),
        cmocka_unit_test(ttl_is_the_smallest_used),
        cmocka_unit_test(empty_answers),
        cmocka_unit_test(replies_cut_short_are_refused_whole),
        cmocka_unit_test(broken_framing_is_refused),
        cmocka_unit_test(garbage_never_crashes),
    };
    return cmocka_run_group_tests(tests, log_setup, log_teardown);
}
