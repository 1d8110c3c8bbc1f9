/*
 * lb.h - the interface every balancing algorithm implements.
 *
 * An algorithm is a small table of operations. Its state is per worker thread and per pool
 * (created by state_new), so pick() needs no lock and no atomic read-modify-write: it reads the
 * servers' shared state (usable? weight?) and updates only its own thread's state.
 *
 * pick() skips servers that are not usable and the one in `avoid` (a server that just failed this
 * request); it returns NULL when no server qualifies.
 */
#ifndef FULCRUM_LB_H
#define FULCRUM_LB_H

#include "pool.h"

struct lb_ops {
    const char *name;
    /* seed differs per thread, so threads do not all start on the same server */
    void *(*state_new)(const struct pool *pool, unsigned seed);
    void (*state_free)(void *state);
    struct server *(*pick)(const struct pool *pool, void *state, const struct server *avoid);
};

extern const struct lb_ops lb_round_robin;

/* The algorithm registered under name ("round-robin"), or NULL. */
const struct lb_ops *lb_find(const char *name);

#endif
