/*
 * members.c - a discovery source's set of servers, and the log of its bad records (members.h).
 *
 * Sets are small (at most a pool's max_servers) and rebuilt from each answer, so lookups are
 * linear scans: an answer of 1,000 servers costs 500,000 comparisons of a few bytes, once per
 * answer, on the control thread.
 */
#include "discovery/members.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    set->v = NULL;
    set->n = set->cap = 0;
}

void members_clear(struct member_set *set)
{
    set->n = 0;
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

int members_copy(struct member_set *to, const struct member_set *from)
{
    to->n = 0;
    if (reserve(to, from->n) < 0)
        return -1;
    if (from->n)
        memcpy(to->v, from->v, from->n * sizeof(*from->v));
    to->n = from->n;
    return 0;
}

int members_find(const struct member_set *set, const char *name)
{
    for (unsigned i = 0; i < set->n; i++)
        if (strcmp(set->v[i].name, name) == 0)
            return (int)i;
    return -1;
}

enum members_add_result members_add(struct member_set *set, const char *name, const char *host,
                                    const struct net_addr *addr, unsigned weight)
{
    size_t len = strlen(name);
    if (len == 0 || len >= MEMBER_NAME_MAX || (host && strlen(host) >= MEMBER_NAME_MAX))
        return MEMBERS_BAD_NAME;
    for (unsigned i = 0; i < set->n; i++) {
        if (strcmp(set->v[i].name, name) == 0)
            return MEMBERS_DUPLICATE_NAME;
        if (net_addr_equal(&set->v[i].addr, addr))
            return MEMBERS_DUPLICATE_ADDRESS;
    }
    if (set->n >= set->max)
        return MEMBERS_FULL;
    if (reserve(set, set->n + 1) < 0)
        return MEMBERS_NO_MEMORY;
    struct member *m = &set->v[set->n++];
    memset(m, 0, sizeof(*m));
    memcpy(m->name, name, len + 1);
    if (host)
        snprintf(m->host, sizeof(m->host), "%s", host);
    else
        net_ip_format((const struct sockaddr *)&addr->ss, m->host, sizeof(m->host));
    m->addr = *addr;
    m->weight = weight;
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
