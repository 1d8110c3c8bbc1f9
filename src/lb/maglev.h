/*
 * maglev.h - the Maglev lookup table (Eisenbud et al., NSDI 2016), weighted: a fixed array of M
 * slots (M prime), each naming one member, so that a key's member is one array read,
 * table[hash % M], and removing or adding a member moves about its own share of keys only.
 *
 * This is the pure part of `balance: hash` (lb_hash.c): no threads, no atomics, no servers. The
 * caller lists its members (name, address text, weight 0-256) and gets back a table whose entries
 * are indexes into that list.
 *
 * The table depends only on the SET of members and their weights: members are sorted by name,
 * then address, before they take their slots, and every hash is this file's own fixed 64-bit
 * function (FNV-1a, then a strong finaliser, seeded per use). Two instances of fulcrum with the
 * same servers therefore send the same key to the same server, whatever order the servers were
 * listed in and whatever process or machine built the table.
 *
 * A key also has a preference sequence over the slots (struct maglev_seq): slot k % M first,
 * then steps of a skip drawn from a second hash of the key, visiting every slot once in M steps.
 * Each slot it visits is owned by a member with a probability proportional to its weight, so a
 * balancer that must pass a member over (down, full) finds the next member the key prefers, the
 * keys of a down member spread over the others by weight, and keys of the others never move.
 *
 * Entries are uint16_t while the list has fewer than 65535 members (65537 slots take 128 KiB),
 * uint32_t beyond that; maglev_owner() reads either.
 */
#ifndef FULCRUM_LB_MAGLEV_H
#define FULCRUM_LB_MAGLEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/hash.h"

struct maglev_member {
    const char *name; /* NULL reads as "" */
    const char *addr; /* the address as text ("10.0.0.1:80"); NULL reads as "" */
    unsigned weight;  /* 0 takes no slot */
};

struct maglev {
    uint32_t size;     /* slots, a prime; 0: no member has a weight, every key finds nobody */
    uint32_t nmembers; /* the caller's list, weight-0 members included */
    uint64_t inputs;   /* fingerprint of the list (its order included), weights and size asked */
    uint16_t *narrow;  /* the entries, when nmembers < 65535 */
    uint32_t *wide;    /* the entries otherwise */
};

/* The smallest prime >= n (2 for n <= 2); n at most 4294967291, the largest 32-bit prime. */
uint32_t maglev_next_prime(uint32_t n);

/* The table size for n members when `configured` slots were asked for (0: the default):
 * max(configured, the smallest prime >= 100 x n), at most CONF_HASH_TABLE_MAX. */
uint32_t maglev_table_size(uint32_t configured, unsigned n);

/*
 * Builds t for members[0..n) at maglev_table_size(configured, n). prev (or NULL) is a table that
 * may be reused: if it was built from the same list (same order), weights and size, its entries
 * are copied instead of computed again, since health changes rebuild a balancer while its
 * configuration stays the same. Returns 0, or -1 if memory ran out (t then holds nothing).
 */
int maglev_build(struct maglev *t, const struct maglev_member *members, unsigned n,
                 uint32_t configured, const struct maglev *prev);
void maglev_free(struct maglev *t);

/* The memory of t's entries, in bytes. */
static inline size_t maglev_bytes(const struct maglev *t)
{
    return (size_t)t->size * (t->narrow ? sizeof(uint16_t) : sizeof(uint32_t));
}

/* The member (index into the builder's list) that owns slot (< t->size). */
static inline uint32_t maglev_owner(const struct maglev *t, uint32_t slot)
{
    return t->narrow ? t->narrow[slot] : t->wide[slot];
}

/*
 * Hashing. A key is read once (maglev_digest), and each use draws its own 64-bit value from the
 * digest with a seed of its own (maglev_mix): the slot, the skip, and whatever the balancer needs
 * besides (slow start draws one).
 */
uint64_t maglev_digest(const void *data, size_t len);

static inline uint64_t maglev_mix(uint64_t digest, uint64_t seed)
{
    return hash_mix64(digest ^ seed); /* every input bit reaches every output bit */
}

#define MAGLEV_SEED_KEY_SLOT 0x6a09e667f3bcc908ull
#define MAGLEV_SEED_KEY_SKIP 0xbb67ae8584caa73bull

/* A key's walk over the slots: s_0 = k % M, s_j = (s_0 + j x skip) % M. */
struct maglev_seq {
    uint32_t slot;
    uint32_t skip; /* in [1, M - 1]: M is prime, so M steps visit every slot once */
};

/* The start of the key whose digest is given; t->size must not be 0. */
static inline struct maglev_seq maglev_seq_start(const struct maglev *t, uint64_t digest)
{
    uint32_t m = t->size;
    struct maglev_seq q = {(uint32_t)(maglev_mix(digest, MAGLEV_SEED_KEY_SLOT) % m), 1};
    if (m > 2)
        q.skip = (uint32_t)(maglev_mix(digest, MAGLEV_SEED_KEY_SKIP) % (m - 1)) + 1;
    return q;
}

/* The member the walk stands on. */
static inline uint32_t maglev_seq_owner(const struct maglev *t, const struct maglev_seq *q)
{
    return maglev_owner(t, q->slot);
}

static inline void maglev_seq_next(const struct maglev *t, struct maglev_seq *q)
{
    /* both below M <= 2^24: no overflow */
    q->slot += q->skip;
    if (q->slot >= t->size)
        q->slot -= t->size;
}

#endif
