/*
 * load.c - what the load-aware algorithms share (load.h): the taken and released hooks that
 * count a server's requests in flight, and the per-thread generator's state.
 */
#include "lb/load.h"

#include <stdlib.h>
#include <time.h>

#include "lb/lb.h"

void lb_count_taken(const struct pool *pool, void *state, struct server *s)
{
    lb_load_taken(s);
}

void lb_count_released(const struct pool *pool, void *state, struct server *s, uint64_t latency_us,
                       enum lb_outcome outcome)
{
    lb_load_released(s);
}

void lb_rng_seed(struct lb_rng_state *st, unsigned seed)
{
    /* every thread, and every process, draws its own sequence */
    st->rng = (uint64_t)time(NULL) ^ ((uint64_t)seed << 32) ^ (uint64_t)(uintptr_t)st;
}

void *lb_rng_state_new(const struct pool *pool, unsigned seed)
{
    struct lb_rng_state *st = calloc(1, sizeof(*st));
    if (st)
        lb_rng_seed(st, seed);
    return st;
}

void lb_rng_state_free(void *state)
{
    free(state);
}
