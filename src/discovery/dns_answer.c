/*
 * dns_answer.c - a DNS reply's records turned into servers (see dns_answer.h for the rules).
 *
 * A reply is read in two steps. message_read() walks the whole message once (RFC 1035 4.1):
 * header, questions, then every resource record of the answer, authority and additional
 * sections, checking that each one fits, and keeps where each record's data lies. A reply that
 * does not walk to its end cleanly is refused whole. Then the functions below look only at the
 * records they want. Names go through c-ares's ares_expand_name(), which follows compression
 * pointers within the message's bounds; nothing here reads past `len`.
 */
#include "discovery/dns_answer.h"

#include <ares.h>
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DNS_HEADER_SIZE 12
#define DNS_CLASS_IN    1
#define DNS_RR_FIXED    10 /* type, class, TTL, data length: after the owner name */
#define DNS_MIN_RR      11 /* the smallest record: a root owner name and the fixed part */
#define DNS_MAX_MESSAGE 65535

enum section { SECTION_ANSWER, SECTION_AUTHORITY, SECTION_ADDITIONAL };

/* One resource record: its owner name decompressed, its data left where it is. */
struct record {
    enum section section;
    char *owner; /* ares_expand_name()'s allocation: freed with ares_free_string() */
    unsigned type, rclass;
    uint32_t ttl;
    size_t data; /* offset of the data in the message */
    unsigned data_len;
};

struct message {
    const unsigned char *bytes;
    size_t len;
    struct record *rr;
    unsigned n;
};

void dns_answer_ctx_init(struct dns_answer_ctx *cx, struct member_log *log, const char *pool,
                         const char *source)
{
    cx->log = log;
    cx->pool = pool;
    cx->source = source;
    cx->min_ttl = UINT32_MAX;
    cx->full = false;
}

void dns_answer_report_full(struct dns_answer_ctx *cx)
{
    if (cx->full)
        members_reject(cx->log, cx->pool, cx->source, "servers beyond max_servers");
}

static unsigned get16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void note_ttl(struct dns_answer_ctx *cx, uint32_t ttl)
{
    if (ttl < cx->min_ttl)
        cx->min_ttl = ttl;
}

/* The name at *pos, decompressed into *out (NULL: only checked); *pos moves past it. */
static int read_name(const struct message *m, size_t *pos, char **out)
{
    char *name;
    long used;
    if (*pos >= m->len ||
        ares_expand_name(m->bytes + *pos, m->bytes, (int)m->len, &name, &used) != ARES_SUCCESS)
        return -1;
    if (used <= 0 || (size_t)used > m->len - *pos) { /* c-ares checks this; so do we */
        ares_free_string(name);
        return -1;
    }
    *pos += (size_t)used;
    if (out)
        *out = name;
    else
        ares_free_string(name);
    return 0;
}

static void message_free(struct message *m)
{
    for (unsigned i = 0; i < m->n; i++)
        ares_free_string(m->rr[i].owner);
    free(m->rr);
    m->rr = NULL;
    m->n = 0;
}

/* Walks the whole reply; 0, or -1 with *why (and nothing to free). */
static int message_read(struct message *m, const unsigned char *bytes, size_t len, const char **why)
{
    memset(m, 0, sizeof(*m));
    m->bytes = bytes;
    m->len = len;
    if (len < DNS_HEADER_SIZE) {
        *why = "reply shorter than a DNS header";
        return -1;
    }
    if (len > DNS_MAX_MESSAGE) {
        *why = "reply longer than a DNS message can be";
        return -1;
    }
    unsigned questions = get16(bytes + 4);
    unsigned counts[3] = {get16(bytes + 6), get16(bytes + 8), get16(bytes + 10)};
    size_t pos = DNS_HEADER_SIZE;
    for (unsigned i = 0; i < questions; i++) {
        if (read_name(m, &pos, NULL) < 0 || len - pos < 4) {
            *why = "malformed question section";
            return -1;
        }
        pos += 4;
    }
    /* no allocation larger than the records the bytes can hold, whatever the counts say */
    size_t total = (size_t)counts[0] + counts[1] + counts[2];
    size_t room = (len - pos) / DNS_MIN_RR;
    if (total > room) {
        *why = "reply cut short (fewer records than its header counts)";
        return -1;
    }
    if (total) {
        m->rr = calloc(total, sizeof(*m->rr));
        if (!m->rr) {
            *why = "out of memory";
            return -1;
        }
    }
    for (unsigned s = SECTION_ANSWER; s <= SECTION_ADDITIONAL; s++) {
        for (unsigned i = 0; i < counts[s]; i++) {
            struct record *r = &m->rr[m->n];
            if (read_name(m, &pos, &r->owner) < 0) {
                *why = "malformed record name";
                goto malformed;
            }
            m->n++; /* from here on, message_free() frees the owner */
            if (len - pos < DNS_RR_FIXED) {
                *why = "reply cut short in a record";
                goto malformed;
            }
            r->section = (enum section)s;
            r->type = get16(bytes + pos);
            r->rclass = get16(bytes + pos + 2);
            r->ttl = get32(bytes + pos + 4);
            if (r->ttl > INT32_MAX) /* RFC 2181 8: the top bit set means 0 */
                r->ttl = 0;
            r->data_len = get16(bytes + pos + 8);
            pos += DNS_RR_FIXED;
            if (len - pos < r->data_len) {
                *why = "a record's data runs past the end of the reply";
                goto malformed;
            }
            r->data = pos;
            pos += r->data_len;
        }
    }
    return 0;
malformed:
    message_free(m);
    return -1;
}

/* An A or AAAA record's data as an address with port; -1 if its length is wrong. */
static int record_addr(const struct message *m, const struct record *r, unsigned port,
                       struct net_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (r->type == DNS_RR_A && r->data_len == 4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        memcpy(&sin->sin_addr, m->bytes + r->data, 4);
        out->len = sizeof(*sin);
        return 0;
    }
    if (r->type == DNS_RR_AAAA && r->data_len == 16) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        memcpy(&sin6->sin6_addr, m->bytes + r->data, 16);
        out->len = sizeof(*sin6);
        return 0;
    }
    return -1;
}

static bool is_address_record(const struct record *r)
{
    return r->rclass == DNS_CLASS_IN && (r->type == DNS_RR_A || r->type == DNS_RR_AAAA);
}

static const char *type_name(unsigned type)
{
    return type == DNS_RR_A ? "A" : type == DNS_RR_AAAA ? "AAAA" : "SRV";
}

static void reject_address_record(struct dns_answer_ctx *cx, const struct record *r)
{
    members_reject(cx->log, cx->pool, cx->source, "%s record for %s with %u bytes of data",
                   type_name(r->type), r->owner[0] ? r->owner : ".", r->data_len);
}

/* Adds one server; a full set is counted, the other refusals reported. */
static void add_member(struct dns_answer_ctx *cx, struct member_set *set, const char *name,
                       const char *host, const struct net_addr *addr, unsigned weight)
{
    enum members_add_result r = members_add(set, name, host, addr, weight);
    if (r == MEMBERS_FULL)
        cx->full = true;
    else if (r != MEMBERS_ADDED)
        members_reject(cx->log, cx->pool, cx->source, "server %s: %s", name, members_add_text(r));
}

int dns_answer_addresses(struct dns_answer_ctx *cx, const unsigned char *reply, size_t len,
                         enum dns_rr_type rr_type, const char *host, unsigned port,
                         struct member_set *set, const char **why)
{
    struct message m;
    if (message_read(&m, reply, len, why) < 0)
        return -1;
    for (unsigned i = 0; i < m.n; i++) {
        const struct record *r = &m.rr[i];
        if (r->section != SECTION_ANSWER || r->rclass != DNS_CLASS_IN)
            continue;
        if (r->type == DNS_RR_CNAME) /* the alias is part of what the answer stands on */
            note_ttl(cx, r->ttl);
        if (r->type != (unsigned)rr_type)
            continue;
        struct net_addr addr;
        if (record_addr(&m, r, port, &addr) < 0) {
            reject_address_record(cx, r);
            continue;
        }
        note_ttl(cx, r->ttl);
        char name[NET_ADDR_TEXT];
        net_addr_format((const struct sockaddr *)&addr.ss, name, sizeof(name));
        add_member(cx, set, name, host, &addr, 1);
    }
    message_free(&m);
    return 0;
}

void dns_srv_targets_free(struct dns_srv_targets *t)
{
    free(t->v);
    memset(t, 0, sizeof(*t));
}

/* Is a (decompressed) target a host name we can connect to and send as SNI? ares_expand_name()
 * writes odd bytes as escapes ("\." "\032"), which this refuses with the rest. */
static bool is_host_name(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 253)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

/* Is a preferred over b as a target's one address? IPv4 first, then the lowest. */
static bool addr_preferred(const struct net_addr *a, const struct net_addr *b)
{
    int fa = a->ss.ss_family, fb = b->ss.ss_family;
    if (fa != fb)
        return fa == AF_INET;
    if (fa == AF_INET)
        return memcmp(&((const struct sockaddr_in *)&a->ss)->sin_addr,
                      &((const struct sockaddr_in *)&b->ss)->sin_addr, 4) < 0;
    return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                  &((const struct sockaddr_in6 *)&b->ss)->sin6_addr, 16) < 0;
}

static void target_offer(struct dns_srv_target *t, const struct net_addr *addr)
{
    if (!t->has_addr || addr_preferred(addr, &t->addr)) {
        t->addr = *addr;
        t->has_addr = true;
    }
}

/* An SRV record read from its data. target is ares_expand_name()'s allocation. */
struct srv_record {
    unsigned priority, weight, port;
    uint32_t ttl;
    char *target;
};

/* Reads r's data; NULL target and a report when it is not usable. "." yields an empty target. */
static void srv_read(struct dns_answer_ctx *cx, const struct message *m, const struct record *r,
                     struct srv_record *out)
{
    memset(out, 0, sizeof(*out));
    const char *owner = r->owner[0] ? r->owner : ".";
    if (r->data_len < 7) {
        members_reject(cx->log, cx->pool, cx->source, "SRV record for %s with %u bytes of data",
                       owner, r->data_len);
        return;
    }
    const unsigned char *d = m->bytes + r->data;
    out->priority = get16(d);
    out->weight = get16(d + 2);
    out->port = get16(d + 4);
    out->ttl = r->ttl;
    size_t pos = r->data + 6;
    char *target = NULL;
    /* the target's bytes must end where the record's data ends */
    if (read_name(m, &pos, &target) < 0 || pos != r->data + r->data_len) {
        if (target)
            ares_free_string(target);
        members_reject(cx->log, cx->pool, cx->source, "SRV record for %s with a malformed target",
                       owner);
        return;
    }
    if (target[0] == '\0') { /* "." : decidedly no service here (RFC 2782) */
        out->target = target;
        return;
    }
    if (!is_host_name(target)) {
        members_reject(cx->log, cx->pool, cx->source,
                       "SRV record for %s: target is not a host name", owner);
        ares_free_string(target);
        return;
    }
    if (out->port == 0) {
        members_reject(cx->log, cx->pool, cx->source, "SRV record for %s: target %s with port 0",
                       owner, target);
        ares_free_string(target);
        return;
    }
    out->target = target;
}

static int targets_reserve(struct dns_srv_targets *t, unsigned n)
{
    if (n <= t->cap)
        return 0;
    unsigned cap = t->cap ? t->cap * 2 : 8;
    while (cap < n)
        cap *= 2;
    struct dns_srv_target *v = realloc(t->v, cap * sizeof(*v));
    if (!v)
        return -1;
    t->v = v;
    t->cap = cap;
    return 0;
}

static int target_find(const struct dns_srv_targets *t, const char *name, unsigned port)
{
    for (unsigned i = 0; i < t->n; i++)
        if (t->v[i].port == port && strcasecmp(t->v[i].name, name) == 0)
            return (int)i;
    return -1;
}

int dns_answer_srv(struct dns_answer_ctx *cx, const unsigned char *reply, size_t len, unsigned max,
                   struct dns_srv_targets *targets, const char **why)
{
    struct message m;
    targets->n = 0;
    if (message_read(&m, reply, len, why) < 0)
        return -1;
    struct srv_record *srv = m.n ? calloc(m.n, sizeof(*srv)) : NULL;
    if (m.n && !srv) {
        message_free(&m);
        *why = "out of memory";
        return -1;
    }
    /* the usable records, then the lowest priority among them and its largest weight */
    unsigned nsrv = 0, lowest = UINT_MAX, max_weight = 0;
    for (unsigned i = 0; i < m.n; i++) {
        const struct record *r = &m.rr[i];
        if (r->section != SECTION_ANSWER || r->rclass != DNS_CLASS_IN)
            continue;
        if (r->type == DNS_RR_CNAME)
            note_ttl(cx, r->ttl);
        if (r->type != DNS_RR_SRV)
            continue;
        srv_read(cx, &m, r, &srv[nsrv]);
        if (!srv[nsrv].target)
            continue;
        note_ttl(cx, r->ttl);
        if (srv[nsrv].target[0] && srv[nsrv].priority < lowest)
            lowest = srv[nsrv].priority;
        nsrv++;
    }
    for (unsigned i = 0; i < nsrv; i++)
        if (srv[i].target[0] && srv[i].priority == lowest && srv[i].weight > max_weight)
            max_weight = srv[i].weight;
    int rc = 0;
    for (unsigned i = 0; i < nsrv && rc == 0; i++) {
        const struct srv_record *s = &srv[i];
        if (!s->target[0] || s->priority != lowest)
            continue;
        if (target_find(targets, s->target, s->port) >= 0) {
            members_reject(cx->log, cx->pool, cx->source, "duplicate SRV record for %s:%u",
                           s->target, s->port);
            continue;
        }
        if (targets->n >= max) {
            cx->full = true;
            continue;
        }
        if (targets_reserve(targets, targets->n + 1) < 0) {
            *why = "out of memory";
            rc = -1;
            break;
        }
        struct dns_srv_target *t = &targets->v[targets->n++];
        memset(t, 0, sizeof(*t));
        snprintf(t->name, sizeof(t->name), "%s", s->target); /* at most 253 bytes: fits */
        t->port = s->port;
        t->weight = members_scale_weight(s->weight, max_weight);
    }
    /* addresses for the targets, from the additional section (or the answer's, some servers
     * put them there) */
    for (unsigned i = 0; i < m.n && rc == 0; i++) {
        const struct record *r = &m.rr[i];
        if (r->section == SECTION_AUTHORITY || !is_address_record(r))
            continue;
        bool used = false;
        for (unsigned k = 0; k < targets->n; k++) {
            struct dns_srv_target *t = &targets->v[k];
            if (strcasecmp(t->name, r->owner) != 0)
                continue;
            struct net_addr addr;
            if (record_addr(&m, r, t->port, &addr) < 0) {
                reject_address_record(cx, r);
                break;
            }
            target_offer(t, &addr);
            used = true;
        }
        if (used)
            note_ttl(cx, r->ttl);
    }
    for (unsigned i = 0; i < nsrv; i++)
        ares_free_string(srv[i].target);
    free(srv);
    message_free(&m);
    return rc;
}

int dns_answer_target(struct dns_answer_ctx *cx, const unsigned char *reply, size_t len,
                      enum dns_rr_type rr_type, struct dns_srv_target *t, const char **why)
{
    struct message m;
    if (message_read(&m, reply, len, why) < 0)
        return -1;
    for (unsigned i = 0; i < m.n; i++) {
        const struct record *r = &m.rr[i];
        if (r->section != SECTION_ANSWER || r->rclass != DNS_CLASS_IN)
            continue;
        if (r->type == DNS_RR_CNAME)
            note_ttl(cx, r->ttl);
        if (r->type != (unsigned)rr_type)
            continue;
        struct net_addr addr;
        if (record_addr(&m, r, t->port, &addr) < 0) {
            reject_address_record(cx, r);
            continue;
        }
        note_ttl(cx, r->ttl);
        target_offer(t, &addr);
    }
    message_free(&m);
    return 0;
}

void dns_answer_srv_members(struct dns_answer_ctx *cx, const struct dns_srv_targets *targets,
                            struct member_set *set)
{
    for (unsigned i = 0; i < targets->n; i++) {
        const struct dns_srv_target *t = &targets->v[i];
        if (!t->has_addr) {
            members_reject(cx->log, cx->pool, cx->source, "SRV target %s has no address", t->name);
            continue;
        }
        char name[MEMBER_NAME_MAX + 8];
        snprintf(name, sizeof(name), "%s:%u", t->name, t->port);
        add_member(cx, set, name, t->name, &t->addr, t->weight);
    }
}
