/*
 * members.c - a discovery source's set of servers, and the log of its bad records (members.h).
 *
 * A set is rebuilt from each answer (a watch event in etcd rebuilds it too), so lookups go
 * through two hash indexes, by name and by address, kept beside the array: an answer of 1,000
 * servers is checked for duplicates in 1,000 steps, and two sets are compared in as many.
 */
#include "discovery/members.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "core/hash.h"
#include "core/log.h"

void members_init(struct member_set *set, unsigned max)
{
    memset(set, 0, sizeof(*set));
    set->max = max;
}

void members_free(struct member_set *set)
{
    free(set->v);
    free(set->by_name);
    free(set->by_addr);
    set->v = NULL;
    set->by_name = set->by_addr = NULL;
    set->n = set->cap = set->ix_cap = 0;
}

void members_clear(struct member_set *set)
{
    set->n = 0;
    if (set->ix_cap) {
        memset(set->by_name, 0, set->ix_cap * sizeof(*set->by_name));
        memset(set->by_addr, 0, set->ix_cap * sizeof(*set->by_addr));
    }
}

static int reserve(struct member_set *set, unsigned n)
{
    if (n <= set->cap)
        return 0;
    unsigned cap = set->cap ? set->cap : 8;
    while (cap < n)
        cap *= 2;
    struct member *v = realloc(set->v, cap * sizeof(*v));
    if (!v)
        return -1;
    set->v = v;
    set->cap = cap;
    return 0;
}

/* ---- the indexes ---- */

static uint64_t name_hash(const char *name)
{
    return hash_bytes(name, strlen(name), 0x6e616d65);
}

/* An address's family, port and IP, the parts net_addr_equal() compares. */
static uint64_t addr_hash(const struct net_addr *a)
{
    unsigned char key[2 + 2 + 16];
    size_t len = 0;
    const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
    memcpy(key, &sa->sa_family, 2);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(key + 2, &in->sin_port, 2);
        memcpy(key + 4, &in->sin_addr, 4);
        len = 8;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(key + 2, &in6->sin6_port, 2);
        memcpy(key + 4, &in6->sin6_addr, 16);
        len = 20;
    } else {
        len = 2;
    }
    return hash_bytes(key, len, 0x61646472);
}

static void ix_insert(unsigned *table, unsigned mask, uint64_t h, unsigned index)
{
    size_t k = h & mask;
    while (table[k])
        k = (k + 1) & mask;
    table[k] = index + 1;
}

/* Indexes of room for at least 2 x want members, rebuilt from v. */
static int ix_grow(struct member_set *set, unsigned want)
{
    unsigned cap = set->ix_cap ? set->ix_cap : 16;
    while (cap < want * 2)
        cap *= 2;
    unsigned *by_name = calloc(cap, sizeof(*by_name)), *by_addr = calloc(cap, sizeof(*by_addr));
    if (!by_name || !by_addr) {
        free(by_name);
        free(by_addr);
        return -1;
    }
    free(set->by_name);
    free(set->by_addr);
    set->by_name = by_name;
    set->by_addr = by_addr;
    set->ix_cap = cap;
    for (unsigned i = 0; i < set->n; i++) {
        ix_insert(by_name, cap - 1, name_hash(set->v[i].name), i);
        ix_insert(by_addr, cap - 1, addr_hash(&set->v[i].addr), i);
    }
    return 0;
}

int members_find(const struct member_set *set, const char *name)
{
    if (!set->ix_cap)
        return -1; /* nothing was ever added */
    unsigned mask = set->ix_cap - 1;
    for (size_t k = name_hash(name) & mask; set->by_name[k]; k = (k + 1) & mask)
        if (strcmp(set->v[set->by_name[k] - 1].name, name) == 0)
            return (int)set->by_name[k] - 1;
    return -1;
}

static bool has_addr(const struct member_set *set, const struct net_addr *addr)
{
    if (!set->ix_cap)
        return false;
    unsigned mask = set->ix_cap - 1;
    for (size_t k = addr_hash(addr) & mask; set->by_addr[k]; k = (k + 1) & mask)
        if (net_addr_equal(&set->v[set->by_addr[k] - 1].addr, addr))
            return true;
    return false;
}

int members_copy(struct member_set *to, const struct member_set *from)
{
    to->n = 0;
    if (reserve(to, from->n) < 0)
        return -1;
    if (from->n)
        memcpy(to->v, from->v, from->n * sizeof(*from->v));
    to->n = from->n;
    if (ix_grow(to, to->n) < 0) {
        to->n = 0;
        members_clear(to);
        return -1;
    }
    return 0;
}

enum members_add_result members_add(struct member_set *set, const char *name, const char *host,
                                    const struct net_addr *addr, unsigned weight)
{
    size_t len = strlen(name);
    if (len == 0 || len >= MEMBER_NAME_MAX || (host && strlen(host) >= MEMBER_NAME_MAX))
        return MEMBERS_BAD_NAME;
    if (members_find(set, name) >= 0)
        return MEMBERS_DUPLICATE_NAME;
    if (has_addr(set, addr))
        return MEMBERS_DUPLICATE_ADDRESS;
    if (set->n >= set->max)
        return MEMBERS_FULL;
    if (reserve(set, set->n + 1) < 0 ||
        (set->ix_cap < (set->n + 1) * 2 && ix_grow(set, set->n + 1) < 0))
        return MEMBERS_NO_MEMORY;
    struct member *m = &set->v[set->n];
    memset(m, 0, sizeof(*m));
    memcpy(m->name, name, len + 1);
    if (host)
        snprintf(m->host, sizeof(m->host), "%s", host);
    else
        net_ip_format((const struct sockaddr *)&addr->ss, m->host, sizeof(m->host));
    m->addr = *addr;
    m->weight = weight;
    ix_insert(set->by_name, set->ix_cap - 1, name_hash(m->name), set->n);
    ix_insert(set->by_addr, set->ix_cap - 1, addr_hash(&m->addr), set->n);
    set->n++;
    return MEMBERS_ADDED;
}

const char *members_add_text(enum members_add_result r)
{
    switch (r) {
    case MEMBERS_ADDED:
        return "added";
    case MEMBERS_DUPLICATE_NAME:
        return "duplicate name";
    case MEMBERS_DUPLICATE_ADDRESS:
        return "duplicate address";
    case MEMBERS_FULL:
        return "more servers than max_servers allows";
    case MEMBERS_BAD_NAME:
        return "name empty or too long";
    case MEMBERS_NO_MEMORY:
        return "out of memory";
    }
    return "?";
}

static bool same_member(const struct member *a, const struct member *b)
{
    return strcmp(a->name, b->name) == 0 && net_addr_equal(&a->addr, &b->addr) &&
           a->weight == b->weight && strcmp(a->host, b->host) == 0;
}

bool members_equal(const struct member_set *a, const struct member_set *b)
{
    if (a->n != b->n)
        return false;
    for (unsigned i = 0; i < a->n; i++) {
        /* answers usually come in the same order: try the same place first */
        if (i < b->n && same_member(&a->v[i], &b->v[i]))
            continue;
        int k = members_find(b, a->v[i].name);
        if (k < 0 || !same_member(&a->v[i], &b->v[k]))
            return false;
    }
    return true;
}

static bool contains(const uint64_t *v, unsigned n, uint64_t h)
{
    for (unsigned i = 0; i < n; i++)
        if (v[i] == h)
            return true;
    return false;
}

void members_reject(struct member_log *log, const char *pool, const char *source, const char *fmt,
                    ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    uint64_t h = hash_bytes(what, strlen(what), 0x6d656d62);
    bool known = contains(log->seen, log->nseen, h);
    if (!contains(log->now, log->nnow, h)) {
        if (log->nnow == log->capnow) {
            unsigned cap = log->capnow ? log->capnow * 2 : 8;
            uint64_t *grown = realloc(log->now, cap * sizeof(*grown));
            if (grown) {
                log->now = grown;
                log->capnow = cap;
            }
        }
        if (log->nnow < log->capnow)
            log->now[log->nnow++] = h;
        if (!known)
            log_warn("pool %s: %s: %s (ignored)", pool, source, what);
    }
}

void members_log_answer_done(struct member_log *log)
{
    /* this answer's problems become the ones not to repeat; the arrays swap roles */
    free(log->seen);
    log->seen = log->now;
    log->nseen = log->nnow;
    log->now = NULL;
    log->nnow = log->capnow = 0;
}

void members_log_free(struct member_log *log)
{
    free(log->seen);
    free(log->now);
    memset(log, 0, sizeof(*log));
}

unsigned members_scale_weight(unsigned weight, unsigned max_weight)
{
    if (max_weight <= 256)
        return weight ? weight : 1;
    uint64_t w = ((uint64_t)weight * 256 + max_weight / 2) / max_weight;
    return w ? (unsigned)w : 1;
}
