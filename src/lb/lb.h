/*
 * lb.h - the interface every balancing algorithm implements, and the registry of algorithms.
 *
 * An algorithm is a table of operations (struct lb_ops). Its data comes in two kinds, told apart
 * by who writes them, so that nothing on the request path takes a lock or an atomic
 * read-modify-write:
 *   - per-thread state (state_new): one per worker thread and pool, written only by that thread,
 *     in pick, taken and released;
 *   - shared data (rebuild): one per pool, built by the control thread off the request path and
 *     immutable once published with the snapshot (pool->lb_shared); pick may read it on any
 *     thread. It is freed with the last snapshot that holds it.
 * Both also read the servers' own published state (usable? weight?) through lb_candidate() and
 * lb_weight().
 *
 * Per request, on its worker thread: pick chooses a server; taken says the request was given to
 * it; released says the request ended there (or that the server failed it and the request moves
 * on to another, which is then taken in turn). taken and released come in pairs, with the same
 * pool and state. A hook an algorithm does not need is NULL, and callers skip it: round-robin has
 * no taken or released, so following requests costs it nothing.
 *
 * pick() skips servers that are not usable and those in ctx->avoid (servers that already failed
 * this request); it returns NULL when no server qualifies. Weights are effective weights: the
 * configured weight scaled by HEALTH_WEIGHT_SCALE, reduced while a server is in slow start.
 */
#ifndef FULCRUM_LB_H
#define FULCRUM_LB_H

#include "conf/conf.h"
#include "servers/pool.h"

struct lb_pick {
    struct server *const *avoid; /* servers that already failed this request */
    unsigned navoid;
    bool panic;      /* no server is up and the pool says use-all: failing ones qualify */
    uint64_t now_ms; /* for slow start */
    const void *key; /* hash key for algorithms that map requests to servers (client address,
                      * a header...); NULL: none. Round-robin ignores it. */
    size_t key_len;
    bool spilled; /* out: hash with bounded load passed the key's own server over (it was full) */
};

/* How a request ended for the server that had it (released). */
enum lb_outcome {
    LB_OK,     /* the server answered, or the request ended for a reason not the server's */
    LB_FAILED, /* the server failed it, as passive detection counts failures: no connection, a
                * reset or timeout, an invalid response, a status in failure_status */
};

struct lb_ops {
    /* Per worker thread and pool; control thread, while a snapshot is built (after rebuild, so
     * pool->lb_shared is set). seed differs per thread, so threads do not all start on the same
     * server. Returns NULL if memory ran out. */
    void *(*state_new)(const struct pool *pool, unsigned seed);
    void (*state_free)(void *state);

    /* Worker thread, for each attempt of a request. */
    struct server *(*pick)(const struct pool *pool, void *state, struct lb_pick *ctx);

    /* Worker thread (optional): the request was given to s, which pick returned. */
    void (*taken)(const struct pool *pool, void *state, struct server *s);
    /* Worker thread (optional): the request taken by s ended there, latency_us after taken. */
    void (*released)(const struct pool *pool, void *state, struct server *s, uint64_t latency_us,
                     enum lb_outcome outcome);

    /* Control thread, off the request path (optional): builds the pool's shared data from its
     * servers, their weights and states. Runs when a snapshot is built (start, reload, servers
     * added or removed through the API) and when a server's health or weight changes
     * (snapshot_refresh()). prev is this pool's shared data in the snapshot being replaced, if it
     * had one from the same algorithm, else NULL; it stays valid and must not be changed.
     * Returns the new data (never NULL for success), or NULL if memory ran out. */
    void *(*rebuild)(const struct pool *pool, const void *prev, uint64_t now_ms);
    void (*shared_free)(void *shared); /* required with rebuild */
    /* Control thread (optional): was shared built while a server's slow-start weight was still
     * growing? The control thread then rebuilds it again a little later (lb_ramping()). */
    bool (*ramping)(const void *shared);

    /*
     * Control thread (optional): s was added through the admin API. control.c adds a server by
     * building a new snapshot (snapshot_rebuild()), so rebuild already sees the new membership and
     * covers what a table-based algorithm (Maglev) needs; this hook only names the newcomer, for
     * an algorithm that treats it specially (say, starts it cold). Called once, while the first
     * snapshot that holds s is built: after rebuild (shared, passed here, may still be changed)
     * and before state_new and any thread sees the snapshot.
     */
    void (*server_added)(const struct pool *pool, void *shared, struct server *s);
};

/*
 * The fallback every algorithm may use when its own way finds nobody (panic mode, every server up
 * has failed this request, a request without a hash key): this thread's smooth weighted
 * round-robin over the servers ctx allows (lb_rr.c). Its state is one score per server.
 */
void *lb_scan_state_new(const struct pool *pool, unsigned seed);
void lb_scan_state_free(void *state);
struct server *lb_scan_pick(const struct pool *pool, void *state, const struct lb_pick *ctx);

/* peak-ewma's latency estimate of s, in ms, as a pick would use it now; 0 for a server that has
 * none yet; -1 if the pool balances otherwise. For the admin API and metrics. */
double lb_latency_estimate_ms(const struct pool *pool, const struct server *s, uint64_t now_ms);

/* Is s a candidate for this pick? (lb_rr.c, as is lb_weight) */
bool lb_candidate(const struct server *s, const struct lb_pick *ctx);
/* s's weight for this pick (scaled; see health.h). */
uint64_t lb_weight(const struct pool *pool, const struct server *s, const struct lb_pick *ctx);

/* A server for one attempt, among those ctx does not avoid: the algorithm skips servers that are
 * down, draining, in maintenance or ejected; if it finds none and the pool says when_all_down:
 * use-all, it is asked again with ctx->panic set, so failing servers qualify. NULL: none. */
static inline struct server *lb_pick_server(const struct pool *pool, void *state,
                                            struct lb_pick *ctx)
{
    struct server *srv = pool->lb->pick(pool, state, ctx);
    if (!srv && pool->conf->when_all_down == CONF_ALL_DOWN_USE_ALL) {
        ctx->panic = true;
        srv = pool->lb->pick(pool, state, ctx);
    }
    return srv;
}

/* For the request path: does the pool's algorithm follow requests (taken, released)? If not,
 * the caller skips the calls and whatever it would compute for them (the clock). */
static inline bool lb_follows_requests(const struct pool *pool)
{
    return pool->lb->taken || pool->lb->released;
}

static inline void lb_taken(const struct pool *pool, void *state, struct server *s)
{
    if (pool->lb->taken)
        pool->lb->taken(pool, state, s);
}

static inline void lb_released(const struct pool *pool, void *state, struct server *s,
                               uint64_t latency_us, enum lb_outcome outcome)
{
    if (pool->lb->released)
        pool->lb->released(pool, state, s, latency_us, outcome);
}

/* Does the pool's algorithm keep shared data that health and weight changes must rebuild? */
static inline bool lb_rebuilds(const struct pool *pool)
{
    return pool->lb->rebuild != NULL;
}

/* Was the pool's shared data built during a slow-start ramp (rebuild again soon)? */
static inline bool lb_ramping(const struct pool *pool)
{
    return pool->lb->ramping && pool->lb_shared && pool->lb->ramping(pool->lb_shared);
}

extern const struct lb_ops lb_round_robin; /* lb_rr.c */
extern const struct lb_ops lb_least_conn;  /* lb_leastconn.c */
extern const struct lb_ops lb_random;      /* lb_random.c */
extern const struct lb_ops lb_hash;        /* lb_hash.c */
extern const struct lb_ops lb_peak_ewma;   /* lb_ewma.c */

/*
 * The registry (lb.c): the implementation behind each `balance` of the configuration. The names
 * themselves are the configuration's (conf_balance_name()), so config validation, snapshot
 * building and the tests all go through the same table.
 */
/* The algorithm for balance, or NULL. */
const struct lb_ops *lb_get(enum conf_balance balance);
/* The algorithm the configuration calls name ("round-robin"), or NULL. */
const struct lb_ops *lb_find(const char *name);
/* Puts ops in balance's place and returns the one it replaces. For tests (a fake algorithm);
 * snapshots built before keep what they were built with. */
const struct lb_ops *lb_register(enum conf_balance balance, const struct lb_ops *ops);

#endif
