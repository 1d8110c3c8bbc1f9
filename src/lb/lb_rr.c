/*
 * lb_rr.c - smooth weighted round-robin, the interleaving nginx made familiar, in one rotation per
 * pool that every worker thread shares (rotation.h): with two threads and a new connection per
 * request, three servers still answer 1, 2, 3, 1, 2, 3.
 *
 * Each pick takes the pool's next turn, an atomic increment and an array read. When no turn
 * qualifies (every server down and the pool in panic mode, or every server up has already failed
 * this request), the pick falls back to this thread's own smooth weighted round-robin over the
 * servers ctx allows: each pick adds every candidate's weight to its running score, takes the
 * highest score, and subtracts the sum of the candidates' weights from the winner.
 *
 * This file also holds lb_candidate() and lb_weight(), which every algorithm uses.
 */
#include <stdlib.h>

#include "lb/lb.h"
#include "lb/rotation.h"

struct rr_state {
    unsigned n;
    int64_t score[];
};

struct server *lb_scan_pick(const struct pool *pool, void *state, const struct lb_pick *ctx)
{
    struct rr_state *st = state;
    int64_t total = 0;
    int best = -1;

    for (unsigned i = 0; i < pool->nservers && i < st->n; i++) {
        const struct server *s = pool->servers[i];
        if (!lb_candidate(s, ctx))
            continue;
        int64_t w = (int64_t)lb_weight(pool, s, ctx);
        if (w == 0)
            continue;
        st->score[i] += w;
        total += w;
        if (best < 0 || st->score[i] > st->score[best])
            best = (int)i;
    }
    if (best < 0)
        return NULL;
    st->score[best] -= total;
    return pool->servers[best];
}

void *lb_scan_state_new(const struct pool *pool, unsigned seed)
{
    struct rr_state *st = calloc(1, sizeof(*st) + pool->nservers * sizeof(st->score[0]));
    if (!st)
        return NULL;
    st->n = pool->nservers;
    /* Start each thread a few turns into its cycle, so that N threads falling back at once do
     * not all send their requests to the same server. */
    const struct lb_pick ctx = {.panic = true}; /* the seed counts failing servers too */
    for (unsigned i = 0; i < seed % (pool->nservers ? pool->nservers : 1); i++)
        lb_scan_pick(pool, st, &ctx);
    return st;
}

void lb_scan_state_free(void *state)
{
    free(state);
}

static struct server *rr_pick(const struct pool *pool, void *state, struct lb_pick *ctx)
{
    struct server *s = lb_rotation_next(pool->lb_shared, pool, ctx);
    return s ? s : lb_scan_pick(pool, state, ctx);
}

/* The helpers every algorithm uses (lb.h). */
bool lb_candidate(const struct server *s, const struct lb_pick *ctx)
{
    if (!server_usable(s, ctx->panic))
        return false;
    for (unsigned i = 0; i < ctx->navoid; i++)
        if (ctx->avoid[i] == s)
            return false;
    return true;
}

uint64_t lb_weight(const struct pool *pool, const struct server *s, const struct lb_pick *ctx)
{
    uint32_t slow_start = pool->conf ? pool->conf->slow_start_ms : 0;
    uint64_t up_since =
        slow_start ? atomic_load_explicit(&s->up_since_ms, memory_order_relaxed) : 0;
    return health_effective_weight(server_weight(s), up_since, ctx->now_ms, slow_start);
}

const struct lb_ops lb_round_robin = {
    /* Nothing to follow per request: the rotation is the shared data, and the per-thread state is
     * only the fallback's scores. */
    .state_new = lb_scan_state_new,
    .state_free = lb_scan_state_free,
    .pick = rr_pick,
    .rebuild = lb_rotation_rebuild,
    .shared_free = lb_rotation_shared_free,
    .ramping = lb_rotation_ramping,
};
