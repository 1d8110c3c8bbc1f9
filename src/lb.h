/*
 * lb.h - the interface every balancing algorithm implements.
 *
 * An algorithm is a small table of operations. Its state is per worker thread and per pool
 * (created by state_new), so pick() needs no lock and no atomic read-modify-write: it reads the
 * servers' shared state (usable? weight?) and updates only its own thread's state.
 *
 * pick() skips servers that are not usable and those in ctx->avoid (servers that already failed
 * this request); it returns NULL when no server qualifies. Weights are effective weights: the
 * configured weight scaled by HEALTH_WEIGHT_SCALE, reduced while a server is in slow start.
 */
#ifndef FULCRUM_LB_H
#define FULCRUM_LB_H

#include "pool.h"

struct lb_pick {
    struct server *const *avoid; /* servers that already failed this request */
    unsigned navoid;
    bool panic;      /* no server is up and the pool says use-all: failing ones qualify */
    uint64_t now_ms; /* for slow start */
};

struct lb_ops {
    const char *name;
    /* seed differs per thread, so threads do not all start on the same server */
    void *(*state_new)(const struct pool *pool, unsigned seed);
    void (*state_free)(void *state);
    struct server *(*pick)(const struct pool *pool, void *state, const struct lb_pick *ctx);
};

/* Is s a candidate for this pick? */
bool lb_candidate(const struct server *s, const struct lb_pick *ctx);
/* s's weight for this pick (scaled; see health.h). */
uint64_t lb_weight(const struct pool *pool, const struct server *s, const struct lb_pick *ctx);

extern const struct lb_ops lb_round_robin;

/* The algorithm registered under name ("round-robin"), or NULL. */
const struct lb_ops *lb_find(const char *name);

#endif
