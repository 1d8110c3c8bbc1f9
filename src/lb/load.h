/*
 * load.h - what the load-aware balancers (least-conn, random, hash with bounded load, peak-ewma)
 * measure and share: each server's requests in flight, counted across every worker thread, and a
 * per-thread random generator for the algorithms that choose at random.
 *
 * The counts live in the server itself (servers/pool.h, struct server_load, on a cache line of
 * their own) and move in the algorithms' taken and released hooks, which the request path calls
 * in pairs; round-robin does not follow requests and never touches them.
 */
#ifndef FULCRUM_LB_LOAD_H
#define FULCRUM_LB_LOAD_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/hash.h"
#include "lb/lb.h"
#include "servers/pool.h"

static inline unsigned lb_inflight(const struct server *s)
{
    return atomic_load_explicit(&s->load.inflight, memory_order_relaxed);
}

static inline void lb_load_taken(struct server *s)
{
    atomic_fetch_add_explicit(&s->load.inflight, 1, memory_order_relaxed);
}

static inline void lb_load_released(struct server *s)
{
    atomic_fetch_sub_explicit(&s->load.inflight, 1, memory_order_relaxed);
}

/* Is a (load la, weight wa) less loaded than b, per unit of weight? The request about to be
 * placed counts: (la + 1) / wa < (lb + 1) / wb, compared without division. */
static inline bool lb_lighter(uint64_t la, uint64_t wa, uint64_t lb, uint64_t wb)
{
    return (la + 1) * wb < (lb + 1) * wa;
}

/* A per-thread generator (splitmix64: a counter through the hash's finaliser): fast, and good
 * enough to choose servers. */
static inline uint64_t lb_rand_next(uint64_t *state)
{
    return hash_mix64(*state += 0x9e3779b97f4a7c15ull);
}

/* Uniform in [0, n) for n > 0 (Lemire's multiply-shift; the bias is below 2^-32 for n < 2^32). */
static inline uint32_t lb_rand_below(uint64_t *state, uint32_t n)
{
    return (uint32_t)(((lb_rand_next(state) >> 32) * (uint64_t)n) >> 32);
}

/* The per-thread state of the algorithms that only need a generator (random, peak-ewma):
 * seeded apart per thread and per process (load.c). */
struct lb_rng_state {
    uint64_t rng;
};
void lb_rng_seed(struct lb_rng_state *st, unsigned seed); /* seed: the worker's id */
void *lb_rng_state_new(const struct pool *pool, unsigned seed);
void lb_rng_state_free(void *state);

/* The lb_ops taken and released hooks of an algorithm that only counts requests in flight
 * (least-conn, random, hash). */
void lb_count_taken(const struct pool *pool, void *state, struct server *s);
void lb_count_released(const struct pool *pool, void *state, struct server *s, uint64_t latency_us,
                       enum lb_outcome outcome);

#endif
