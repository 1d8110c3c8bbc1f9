/*
 * dns_answer.h - one DNS reply (the raw bytes c-ares hands to a query's callback) turned into a
 * pool's servers: the part of discovery.dns that reads what a resolver sent, with no I/O, so it
 * is unit-tested (tests/unit/test_dns_answer.c) and fuzzed (fuzz/fuzz_dns_answer.c) directly.
 *
 * How dns.c uses it, for one resolution:
 *
 *   A, AAAA, A+AAAA:  dns_answer_addresses() for each reply -> members "IP:port" (the union)
 *
 *   SRV:  dns_answer_srv() -> targets of the lowest priority, weights scaled, and each target's
 *           |                  address when the additional section carries it
 *           +-- targets without one: dns.c asks A and AAAA for each, and hands each reply to
 *           |   dns_answer_target()
 *           v
 *         dns_answer_srv_members() -> members "target:port", once every follow-up returned
 *
 * Rules:
 *   - An SRV target is one server, named "target:port" (without the name's final dot), whose
 *     host (for TLS SNI) is the target. A target with several addresses uses its lowest IPv4
 *     address, or its lowest IPv6 address when it has no IPv4 one, so that a resolver that
 *     shuffles its records changes nothing. The target "." means "no service here" (RFC 2782)
 *     and is skipped silently.
 *   - SRV weights (0-65535) become server weights with members_scale_weight(), the largest
 *     weight among the records used deciding the scale.
 *   - An A or AAAA record is one server "IP:port" ("[v6]:port"), weight 1, whose host is the
 *     name queried. CNAME records in front of the addresses are fine: every address record of
 *     the answer section counts.
 *   - A record that cannot be used (wrong length, a port of 0, a target that is not a host
 *     name, a duplicate, one server more than max_servers) is skipped and reported once through
 *     members_reject(); the rest of the answer stands.
 *   - A reply whose framing is broken (cut short, a record running past its end, a name that
 *     does not decompress) is refused whole: the functions return -1 with *why set, and dns.c
 *     treats it as a failure of the resolver (the last good set is kept), never as an answer.
 *   - min_ttl: the smallest TTL of the records used, in seconds (RFC 2181: a TTL with its top
 *     bit set counts as 0). dns.c re-resolves no later than that.
 *
 * Ownership: the caller owns every struct here; the functions borrow the reply for the call.
 */
#ifndef FULCRUM_DNS_ANSWER_H
#define FULCRUM_DNS_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/net.h"
#include "discovery/members.h"

/* Record types as they appear on the wire. */
enum dns_rr_type {
    DNS_RR_A = 1,
    DNS_RR_CNAME = 5,
    DNS_RR_AAAA = 28,
    DNS_RR_SRV = 33,
};

/* One resolution's context: where bad records are reported, and what the replies taught. */
struct dns_answer_ctx {
    struct member_log *log; /* members_reject()'s memory of what was already logged */
    const char *pool;       /* for log lines: "pool POOL: SOURCE: ..." */
    const char *source;     /* "dns NAME" */
    uint32_t min_ttl;       /* smallest TTL of the records used; UINT32_MAX: none */
    bool full;              /* a server was refused because max_servers was reached */
};

void dns_answer_ctx_init(struct dns_answer_ctx *cx, struct member_log *log, const char *pool,
                         const char *source);

/* Logs "servers beyond max_servers" (once while it lasts) if cx->full; call when the answer is
 * done. */
void dns_answer_report_full(struct dns_answer_ctx *cx);

/*
 * A reply to an A (rr_type DNS_RR_A) or AAAA (DNS_RR_AAAA) query for host: each address of that
 * type in the answer section is added to set as "IP:port", weight 1, host as its host.
 * 0, or -1 with *why (a static text) when the reply is malformed; set may then hold part of it.
 */
int dns_answer_addresses(struct dns_answer_ctx *cx, const unsigned char *reply, size_t len,
                         enum dns_rr_type rr_type, const char *host, unsigned port,
                         struct member_set *set, const char **why);

/* An SRV target of the lowest priority. */
struct dns_srv_target {
    char name[MEMBER_NAME_MAX]; /* the target, without its final dot */
    unsigned port;
    unsigned weight; /* already scaled: 1-256 */
    bool has_addr;   /* addr is known (additional section, or a follow-up answered) */
    struct net_addr addr;
};

struct dns_srv_targets {
    struct dns_srv_target *v;
    unsigned n, cap;
};

void dns_srv_targets_free(struct dns_srv_targets *t);

/*
 * A reply to an SRV query: the records of the lowest priority, as targets (replacing what
 * targets held), at most max of them (the rest: cx->full). Targets whose addresses the additional
 * section carries come back with has_addr; the others need follow-up queries.
 * 0, or -1 with *why when the reply is malformed.
 */
int dns_answer_srv(struct dns_answer_ctx *cx, const unsigned char *reply, size_t len, unsigned max,
                   struct dns_srv_targets *targets, const char **why);

/*
 * A reply to a follow-up A or AAAA query (rr_type) for target t: the addresses of that type in
 * the answer section, merged into t by the rule above (lowest IPv4 first). 0, or -1 with *why.
 */
int dns_answer_target(struct dns_answer_ctx *cx, const unsigned char *reply, size_t len,
                      enum dns_rr_type rr_type, struct dns_srv_target *t, const char **why);

/* Adds a member to set for each target with an address; reports those without one. */
void dns_answer_srv_members(struct dns_answer_ctx *cx, const struct dns_srv_targets *targets,
                            struct member_set *set);

#endif
