/*
 * members.h - the servers one discovery source found for a pool: a small set of (name, address,
 * weight) built from one answer, checked as it is filled.
 *
 * A source (dns.c, etcd.c) parses an answer into a fresh set, adding each record with
 * members_add(), which refuses what a pool cannot take: a duplicate name or address, or one more
 * server than the pool's max_servers allows. The control thread (ctl/discovery.c) compares the new
 * set with the last one and rebuilds the pool's snapshot only when they differ.
 *
 * Bad records are reported through members_reject(), which logs each distinct problem once while
 * it lasts: a record that stays bad in every answer is logged when it first appears, not every
 * few seconds. The set remembers the problems of the answer before for that (struct member_log).
 *
 * No I/O, no threads: unit-tested and fuzzed directly.
 */
#ifndef FULCRUM_MEMBERS_H
#define FULCRUM_MEMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/net.h"

#define MEMBER_NAME_MAX 256

struct member {
    char name[MEMBER_NAME_MAX]; /* the server's name in the pool */
    char host[MEMBER_NAME_MAX]; /* host part for TLS (an SRV target, the etcd address's host) */
    struct net_addr addr;
    unsigned weight; /* 0-256 */
};

struct member_set {
    struct member *v;
    unsigned n, cap;
    unsigned max; /* members_add() refuses more than this (the pool's room for discovered ones) */
    /* v by name and by address: open addressing, index + 1 (0: empty), ix_cap a power of two
     * at least twice n, so that an answer of 1,000 servers is checked in 1,000 steps */
    unsigned *by_name, *by_addr;
    unsigned ix_cap;
};

/* Problems already logged: the hashes of the last answer's and this answer's messages. */
struct member_log {
    uint64_t *seen, *now;
    unsigned nseen, nnow, capnow;
};

void members_init(struct member_set *set, unsigned max);
void members_free(struct member_set *set);
void members_clear(struct member_set *set);
/* A deep copy of from into to (to is cleared first). 0, or -1: out of memory. */
int members_copy(struct member_set *to, const struct member_set *from);

enum members_add_result {
    MEMBERS_ADDED = 0,
    MEMBERS_DUPLICATE_NAME,
    MEMBERS_DUPLICATE_ADDRESS,
    MEMBERS_FULL,     /* max reached */
    MEMBERS_BAD_NAME, /* empty or too long */
    MEMBERS_NO_MEMORY,
};

/* Adds one member. host may be NULL (the address's IP is used). */
enum members_add_result members_add(struct member_set *set, const char *name, const char *host,
                                    const struct net_addr *addr, unsigned weight);
/* "duplicate address", ... for log lines. */
const char *members_add_text(enum members_add_result r);

/* The index of the member with this name, or -1. */
int members_find(const struct member_set *set, const char *name);

/* Same members (name, address, weight, host), in any order? */
bool members_equal(const struct member_set *a, const struct member_set *b);

/*
 * Reports a bad record of an answer: logs "pool P: SOURCE: WHAT" at warning level, unless the
 * same text was reported for the answer before. Call members_log_answer_done() after each
 * complete answer (good or bad) to forget the problems that went away.
 */
void members_reject(struct member_log *log, const char *pool, const char *source, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));
void members_log_answer_done(struct member_log *log);
void members_log_free(struct member_log *log);

/* SRV weights (0-65535) as server weights (1-256): kept as they are when all fit, otherwise
 * scaled so the largest becomes 256; never below 1. */
unsigned members_scale_weight(unsigned weight, unsigned max_weight);

#endif
