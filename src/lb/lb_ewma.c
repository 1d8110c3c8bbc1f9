/*
 * lb_ewma.c - peak-EWMA (Finagle, Linkerd): send each request where it should be answered
 * soonest. Every server has a latency estimate (ewma.h, kept in the server so that all threads
 * share it, servers/pool.h struct server_load): the time to the response head, where a slow
 * answer raises the estimate at once and fast ones bring it down over ewma_decay. A server's cost
 * is its estimate x (requests in flight + 1); a pick draws `choices` servers by weight (2 by
 * default, rotation.h lb_best_of) and takes the cheaper.
 *
 * A server without an estimate (new, or back from down, ejected or maintenance: rebuild forgets
 * the estimate of every server that is not up) is costed at the pool's typical latency: each
 * thread keeps a running average of every answer of the pool it saw (in its own state, so no
 * other thread writes it), or ewma_default_latency before the first. Its cost still grows with
 * its requests in flight, so it is neither flooded nor starved before its first answer gives it
 * an estimate of its own. A request the server failed counts as at least twice its estimate, so
 * failing fast does not look like answering fast.
 */
#include <stdlib.h>

#include "core/loop.h"
#include "lb/ewma.h"
#include "lb/lb.h"
#include "lb/load.h"
#include "lb/rotation.h"

struct ewma_shared {
    struct lb_rotation rotation; /* first: it is aligned to a cache line */
    double tau_us;
};

/* One thread's: its generator, and the pool's typical latency as this thread saw it. */
struct ewma_state {
    struct lb_rng_state rng; /* first: load.h's generator state */
    double typical_ns;       /* running average of the pool's answers; 0: none seen yet */
    double default_ns;       /* ewma_default_latency, until then */
};

/* Each answer moves the running average by this much of the way. */
#define TYPICAL_WEIGHT (1.0 / 64)

/* The server's estimate now, in ns; 0 if it has none. */
static double estimate(const struct server *s, uint64_t now_us, double tau_us)
{
    double e = (double)atomic_load_explicit(&s->load.ewma_ns, memory_order_relaxed);
    uint64_t stamp = atomic_load_explicit(&s->load.ewma_stamp_us, memory_order_relaxed);
    return lb_ewma_worth(e, stamp, now_us, tau_us);
}

/* What a server without an estimate is costed at, on this thread. */
static double typical(const struct ewma_state *st)
{
    return st->typical_ns > 0 ? st->typical_ns : st->default_ns;
}

struct cost_args {
    const struct ewma_shared *sh;
    double typical_ns;
    uint64_t now_us;
};

static double ewma_cost(const struct pool *pool, const struct server *s, const void *arg)
{
    const struct cost_args *a = arg;
    double e = estimate(s, a->now_us, a->sh->tau_us);
    return (e > 0 ? e : a->typical_ns) * (double)(lb_inflight(s) + 1);
}

static struct server *ewma_pick(const struct pool *pool, void *state, struct lb_pick *ctx)
{
    struct ewma_state *st = state;
    const struct ewma_shared *sh = pool->lb_shared;
    const struct cost_args args = {sh, typical(st), ctx->now_ms * 1000u};
    return lb_best_of(&sh->rotation, pool, ctx, pool->conf ? pool->conf->choices : 2, &st->rng.rng,
                      ewma_cost, &args);
}

static void ewma_released(const struct pool *pool, void *state, struct server *s,
                          uint64_t latency_us, enum lb_outcome outcome)
{
    struct ewma_state *st = state;
    const struct ewma_shared *sh = pool->lb_shared;
    uint64_t now = loop_clock_us();
    double e = (double)atomic_load_explicit(&s->load.ewma_ns, memory_order_relaxed);
    uint64_t stamp = atomic_load_explicit(&s->load.ewma_stamp_us, memory_order_relaxed);
    double x = (double)latency_us * 1000.0;
    if (outcome == LB_FAILED) {
        double floor = 2 * (e > 0 ? lb_ewma_worth(e, stamp, now, sh->tau_us) : typical(st));
        x = x > floor ? x : floor;
    } else { /* the pool's typical answer, for servers without an estimate */
        st->typical_ns =
            st->typical_ns > 0 ? st->typical_ns + (x - st->typical_ns) * TYPICAL_WEIGHT : x;
    }
    double next = lb_ewma_update(e, stamp, now, sh->tau_us, x);
    /* two threads may race here: one of the two samples is lost, which an average can afford */
    atomic_store_explicit(&s->load.ewma_ns, next >= 1 ? (uint64_t)next : 1, memory_order_relaxed);
    atomic_store_explicit(&s->load.ewma_stamp_us, now, memory_order_relaxed);
    lb_load_released(s);
}

static void *ewma_rebuild(const struct pool *pool, const void *prev, uint64_t now_ms)
{
    const struct ewma_shared *old = prev;
    struct ewma_shared *sh = aligned_alloc(_Alignof(struct ewma_shared), sizeof(*sh));
    if (!sh)
        return NULL;
    if (lb_rotation_build(&sh->rotation, pool, old ? &old->rotation : NULL, now_ms) < 0) {
        free(sh);
        return NULL;
    }
    sh->tau_us = pool->conf ? (double)pool->conf->ewma_decay_ms * 1000.0 : 10e6;
    for (unsigned i = 0; i < pool->nservers; i++) /* when it is back, it starts afresh */
        if (server_state(pool->servers[i]) != SERVER_UP)
            atomic_store_explicit(&pool->servers[i]->load.ewma_ns, 0, memory_order_relaxed);
    return sh;
}

static void ewma_shared_free(void *shared)
{
    struct ewma_shared *sh = shared;
    lb_rotation_free(&sh->rotation);
    free(sh);
}

static bool ewma_ramping(const void *shared)
{
    return ((const struct ewma_shared *)shared)->rotation.ramping;
}

static void *ewma_state_new(const struct pool *pool, unsigned seed)
{
    struct ewma_state *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    lb_rng_seed(&st->rng, seed);
    st->default_ns = pool->conf ? (double)pool->conf->ewma_default_ms * 1e6 : 10e6;
    return st;
}

static void ewma_state_free(void *state)
{
    free(state);
}

/* Reads a server's estimate for the admin API and metrics (lb.h). */
double lb_latency_estimate_ms(const struct pool *pool, const struct server *s, uint64_t now_ms)
{
    if (pool->lb != &lb_peak_ewma || !pool->lb_shared)
        return -1;
    const struct ewma_shared *sh = pool->lb_shared;
    return estimate(s, now_ms * 1000u, sh->tau_us) / 1e6;
}

const struct lb_ops lb_peak_ewma = {
    .state_new = ewma_state_new,
    .state_free = ewma_state_free,
    .pick = ewma_pick,
    .taken = lb_count_taken,
    .released = ewma_released,
    .rebuild = ewma_rebuild,
    .shared_free = ewma_shared_free,
    .ramping = ewma_ramping,
};
