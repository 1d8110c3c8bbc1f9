/*
 * lb_rr.c - smooth weighted round-robin, the interleaving nginx made familiar.
 *
 * Each pick adds every candidate's weight to its running score, takes the highest score, and
 * subtracts the sum of the candidates' weights from the winner. The sequence repeats every W picks
 * (W = sum of weights), so any W consecutive picks hold each server exactly weight times, and a
 * heavy server's turns are spread out rather than bunched: weights 5, 1, 1 give a a b a c a a,
 * not a a a a a b c.
 *
 * Servers that are not usable simply do not take part, so the others keep their proportions.
 */
#include <stdlib.h>

#include "lb/lb.h"

struct rr_state {
    unsigned n;
    int64_t score[];
};

static struct server *rr_pick(const struct pool *pool, void *state, const struct lb_pick *ctx)
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

static void *rr_state_new(const struct pool *pool, unsigned seed)
{
    struct rr_state *st = calloc(1, sizeof(*st) + pool->nservers * sizeof(st->score[0]));
    if (!st)
        return NULL;
    st->n = pool->nservers;
    /* Start each thread a few turns into the cycle, so that N threads serving their first
     * requests do not all send them to the same server. */
    const struct lb_pick ctx = {0};
    for (unsigned i = 0; i < seed % (pool->nservers ? pool->nservers : 1); i++)
        rr_pick(pool, st, &ctx);
    return st;
}

static void rr_state_free(void *state)
{
    free(state);
}

/* The helpers every algorithm uses (lb.h). They live here, beside round-robin's pick, which the
 * compiler builds with fewer spills when their code is in the same file. */
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
    /* Nothing to follow per request and nothing to share: the scores are the whole state, and a
     * change of membership gives every thread a new one (the snapshot is rebuilt). */
    .state_new = rr_state_new,
    .state_free = rr_state_free,
    .pick = rr_pick,
};
