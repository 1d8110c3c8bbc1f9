/*
 * lb_random.c - the power of two choices: draw `choices` servers at random (2 by default), each
 * with a probability proportional to its weight, and send the request to the one with fewer
 * requests in flight (lb/load.h).
 *
 * The draws read the pool's weighted rotation (rotation.h), which the control thread rebuilds
 * when a state, weight or slow-start ramp changes; each thread has its own generator. With two
 * choices the busiest server is hardly ever picked, at the cost of two reads, and unlike
 * least-conn no scan of the pool.
 */
#include "lb/lb.h"
#include "lb/load.h"
#include "lb/rotation.h"

static double in_flight(const struct pool *pool, const struct server *s, const void *arg)
{
    return (double)lb_inflight(s);
}

static struct server *rnd_pick(const struct pool *pool, void *state, struct lb_pick *ctx)
{
    struct lb_rng_state *st = state;
    return lb_best_of(pool->lb_shared, pool, ctx, pool->conf ? pool->conf->choices : 2, &st->rng,
                      in_flight, NULL);
}

const struct lb_ops lb_random = {
    .state_new = lb_rng_state_new,
    .state_free = lb_rng_state_free,
    .pick = rnd_pick,
    .taken = lb_count_taken,
    .released = lb_count_released,
    .rebuild = lb_rotation_rebuild,
    .shared_free = lb_rotation_shared_free,
    .ramping = lb_rotation_ramping,
};
