/*
 * lb_leastconn.c - least connections: the server with the fewest requests in flight per unit of
 * weight, counted across every worker thread (lb/load.h).
 *
 * A pick compares (in flight + 1) / weight over the servers ctx allows, slow start included in
 * the weight. Servers that tie are taken in turn: each pick starts its scan just after the
 * server the previous one chose (per thread), and only a strictly lighter server displaces the
 * first one found, so an idle pool is served in rotation rather than always by its first server.
 * Starting after the last choice, not merely one place further each time, keeps the turns even
 * when some servers are out: with s3 of three down, starts at s1, s2, s3 would give s1 two turns
 * in three (the scan from s3 wraps to s1).
 *
 * The scan is linear in the pool's size: a few nanoseconds per server, no lock, and nothing to
 * rebuild when a server's state or weight changes.
 */
#include <stdlib.h>

#include "lb/lb.h"
#include "lb/load.h"

struct lc_state {
    unsigned next; /* where the next scan starts: just after the last server chosen */
};

static struct server *lc_pick(const struct pool *pool, void *state, struct lb_pick *ctx)
{
    struct lc_state *st = state;
    unsigned n = pool->nservers;
    struct server *best = NULL;
    uint64_t best_load = 0, best_weight = 0;
    unsigned best_at = 0;

    if (!n)
        return NULL;
    unsigned start = st->next % n;
    for (unsigned k = 0; k < n; k++) {
        unsigned at = (start + k) % n;
        struct server *s = pool->servers[at];
        if (!lb_candidate(s, ctx))
            continue;
        uint64_t w = lb_weight(pool, s, ctx);
        if (!w)
            continue;
        uint64_t load = lb_inflight(s);
        if (!best || lb_lighter(load, w, best_load, best_weight)) {
            best = s;
            best_load = load;
            best_weight = w;
            best_at = at;
        }
    }
    if (best)
        st->next = best_at + 1;
    return best;
}

static void *lc_state_new(const struct pool *pool, unsigned seed)
{
    struct lc_state *st = calloc(1, sizeof(*st));
    if (st)
        st->next = seed; /* threads start their scans apart */
    return st;
}

static void lc_state_free(void *state)
{
    free(state);
}

const struct lb_ops lb_least_conn = {
    .state_new = lc_state_new,
    .state_free = lc_state_free,
    .pick = lc_pick,
    .taken = lb_count_taken,
    .released = lb_count_released,
};
