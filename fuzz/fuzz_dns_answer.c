/*
 * fuzz_dns_answer.c - libFuzzer target: a DNS reply turned into servers (discovery/dns_answer.h),
 * the part of discovery.dns that reads bytes a resolver (or anyone who can spoof one) sent.
 *
 * The input is the reply, copied to an allocation of its exact size so that a read past its end
 * is caught. It is read as each kind of reply dns.c hands over: an A and an AAAA answer (into
 * one set, as A+AAAA does), an SRV answer, and, for each SRV target left without an address, an
 * A and an AAAA follow-up (the same bytes again), then the SRV set. Whatever the bytes:
 *   - a refused reply says why;
 *   - no set holds more servers than its max, and every server has a name, a host, a weight
 *     of 1-256 and an IPv4 or IPv6 address with a port (A/AAAA: the port asked for);
 *   - SRV targets are at most max, each with a port and a weight of 1-256;
 *   - min_ttl is UINT32_MAX (no record used) or at most 2^31 - 1 (RFC 2181).
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "discovery/dns_answer.h"
#include "discovery/members.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SERVERS 8
#define PORT        8080

static void check_set(const struct member_set *set, bool port_given)
{
    if (set->n > set->max)
        abort();
    for (unsigned i = 0; i < set->n; i++) {
        const struct member *m = &set->v[i];
        int family = m->addr.ss.ss_family;
        if (!m->name[0] || !m->host[0] || m->weight < 1 || m->weight > 256 ||
            (family != AF_INET && family != AF_INET6))
            abort();
        unsigned port = family == AF_INET
                            ? ntohs(((const struct sockaddr_in *)&m->addr.ss)->sin_port)
                            : ntohs(((const struct sockaddr_in6 *)&m->addr.ss)->sin6_port);
        if (port == 0 || (port_given && port != PORT))
            abort();
    }
}

static void check_ttl(const struct dns_answer_ctx *cx)
{
    if (cx->min_ttl != UINT32_MAX && cx->min_ttl > INT32_MAX)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* kept for the process's life: reachable, so not a leak */
    static struct member_log log;
    log_max_level = -1;
    unsigned char *reply = malloc(size ? size : 1);
    if (!reply)
        abort();
    memcpy(reply, data, size);

    struct dns_answer_ctx cx;
    struct member_set set;
    const char *why;

    /* A+AAAA: both answers into one set */
    dns_answer_ctx_init(&cx, &log, "p", "dns fuzz.example");
    members_init(&set, MAX_SERVERS);
    why = NULL;
    if (dns_answer_addresses(&cx, reply, size, DNS_RR_A, "fuzz.example", PORT, &set, &why) < 0 &&
        !why)
        abort();
    why = NULL;
    if (dns_answer_addresses(&cx, reply, size, DNS_RR_AAAA, "fuzz.example", PORT, &set, &why) < 0 &&
        !why)
        abort();
    dns_answer_report_full(&cx);
    check_set(&set, true);
    check_ttl(&cx);
    members_log_answer_done(&log);

    /* SRV, its follow-ups, its set */
    struct dns_srv_targets targets = {0};
    dns_answer_ctx_init(&cx, &log, "p", "dns _x._tcp.fuzz.example");
    members_clear(&set);
    why = NULL;
    if (dns_answer_srv(&cx, reply, size, MAX_SERVERS, &targets, &why) < 0) {
        if (!why)
            abort();
    } else {
        if (targets.n > MAX_SERVERS)
            abort();
        for (unsigned i = 0; i < targets.n; i++) {
            struct dns_srv_target *t = &targets.v[i];
            if (!t->name[0] || t->port == 0 || t->weight < 1 || t->weight > 256)
                abort();
            if (t->has_addr)
                continue;
            dns_answer_target(&cx, reply, size, DNS_RR_A, t, &why);
            dns_answer_target(&cx, reply, size, DNS_RR_AAAA, t, &why);
        }
        dns_answer_srv_members(&cx, &targets, &set);
        dns_answer_report_full(&cx);
        check_set(&set, false);
        check_ttl(&cx);
    }
    members_log_answer_done(&log);

    dns_srv_targets_free(&targets);
    members_free(&set);
    free(reply);
    return 0;
}
