/*
 * rotation.h - one weighted rotation per pool, shared by every worker thread.
 *
 * rebuild() (control thread) lays out the turns: the smooth weighted round-robin order of the
 * servers that are up, with their effective weights (slow start included), so that each server
 * has as many turns as its weight and a heavy server's turns are spread out (weights 5, 1, 1
 * give a a b a c a a). Threads take turns with one atomic counter, so consecutive requests follow
 * the order whichever thread serves them: 1, 2, 3, 1, 2, 3 with two threads as with one.
 *
 * The same turns serve as a weighted sample: a turn chosen at random names each server with a
 * probability proportional to its weight (random and peak-ewma choose that way).
 *
 * A server whose state changed after the build is skipped (the next turn that qualifies is
 * taken) until the control thread publishes a refreshed rotation; a pick that finds nobody in
 * the turns (every server down, panic mode, all failed this request) returns NULL and the
 * algorithm falls back to a scan of the pool.
 */
#ifndef FULCRUM_LB_ROTATION_H
#define FULCRUM_LB_ROTATION_H

#include <stdatomic.h>
#include <stdint.h>

#include "lb/lb.h"

/* A rotation never holds more turns than this: heavier weight sums are scaled down (only a pool
 * of more servers up than this has more: one turn each). */
#define LB_ROTATION_MAX_TURNS 65536u

struct lb_rotation {
    _Atomic uint64_t next __attribute__((aligned(64))); /* the next turn, for every thread */
    uint32_t len;                                       /* turns; 0: no server was up */
    uint32_t *order; /* the server (index into pool->servers) of each turn */
    bool ramping;    /* a server was in slow start: its share grows, rebuild again soon */
};

/* Lays out the turns of pool's servers at now_ms, continuing prev's count (NULL: from 0).
 * Returns 0, or -1 if memory ran out. */
int lb_rotation_build(struct lb_rotation *r, const struct pool *pool,
                      const struct lb_rotation *prev, uint64_t now_ms);
void lb_rotation_free(struct lb_rotation *r);

/* The lb_ops hooks of an algorithm whose shared data is just the rotation (round-robin, random):
 * a rotation built on the heap, freed, and asked whether it was built during a ramp. */
void *lb_rotation_rebuild(const struct pool *pool, const void *prev, uint64_t now_ms);
void lb_rotation_shared_free(void *shared);
bool lb_rotation_ramping(const void *shared);

/* The next turn's server, or the first after it that ctx allows (a few turns at most); NULL if
 * none did. */
struct server *lb_rotation_next(struct lb_rotation *r, const struct pool *pool,
                                const struct lb_pick *ctx);

/* A server drawn with probability proportional to its weight, from a random number; NULL if no
 * server was up. The caller checks lb_candidate(). */
static inline struct server *lb_rotation_sample(const struct lb_rotation *r,
                                                const struct pool *pool, uint32_t random)
{
    if (!r->len)
        return NULL;
    uint32_t i = r->order[(uint32_t)(((uint64_t)random * r->len) >> 32)];
    return i < pool->nservers ? pool->servers[i] : NULL;
}

/*
 * The best of `choices` servers drawn from r by weight (lb_rotation_sample()), by cost (lower is
 * better; the first of equals wins), among those ctx allows. If none of the draws qualifies (the
 * rotation is stale, or empty in panic mode), every server ctx allows is considered instead, and
 * equals are drawn by weight. NULL: no server qualifies.
 */
#define LB_MAX_CHOICES 10 /* as the configuration allows (choices) */
typedef double lb_cost_fn(const struct pool *pool, const struct server *s, const void *arg);
struct server *lb_best_of(const struct lb_rotation *r, const struct pool *pool,
                          const struct lb_pick *ctx, unsigned choices, uint64_t *rng,
                          lb_cost_fn *cost, const void *arg);

#endif
