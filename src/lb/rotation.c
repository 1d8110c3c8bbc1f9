/*
 * rotation.c - lays out a pool's shared weighted rotation and takes turns in it (rotation.h).
 *
 * The order is smooth weighted round-robin (each turn adds every server's weight to its score,
 * the highest score wins and gives back the sum), computed once per rebuild instead of per
 * request. For a very large pool with uneven weights that costs len x n steps, so past a budget
 * the order is made by stride instead: server i of n, of weight w, has its k-th turn at
 * (k + (i + 1/2) / n) / w, and the turns are sorted by that time; both spread each server's turns
 * evenly, and interleave light servers with heavy ones.
 */
#include "lb/rotation.h"

#include <stdlib.h>
#include <string.h>

#include "lb/load.h"

/* Above this many score updates (turns x servers), the stride order is used: a pool of 1,000
 * discovered servers is rebuilt on every membership change, and 1.5 M updates there cost the
 * control thread about 2 ms a change (a quarter of a core at 150 changes a second). */
#define SMOOTH_BUDGET (1u << 18)
/* How many turns a pick looks at past its own for a server ctx allows. */
#define WALK_LIMIT 64u

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static void smooth_order(uint32_t *order, uint32_t len, const uint64_t *w, unsigned n,
                         int64_t *score)
{
    int64_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += (int64_t)w[i];
    for (uint32_t t = 0; t < len; t++) {
        int best = -1;
        for (unsigned i = 0; i < n; i++) {
            if (!w[i])
                continue;
            score[i] += (int64_t)w[i];
            if (best < 0 || score[i] > score[best])
                best = (int)i;
        }
        score[best] -= total;
        order[t] = (uint32_t)best;
    }
}

struct stride_turn {
    double at;
    uint32_t server;
};

static int by_time(const void *a, const void *b)
{
    const struct stride_turn *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    return x->server < y->server ? -1 : x->server > y->server;
}

static int stride_order(uint32_t *order, uint32_t len, const uint64_t *w, unsigned n)
{
    struct stride_turn *turns = malloc(len * sizeof(*turns));
    if (!turns)
        return -1;
    uint32_t t = 0;
    for (unsigned i = 0; i < n; i++) {
        /* Each server's turns are 1/w apart, from a phase of its own: with one phase for all,
         * the 1,000 servers of weight 1 of a pool would take their turns in one run of 1,000
         * at time 1/2, and a heavy server would wait through all of them. */
        double phase = ((double)i + 0.5) / (double)n;
        for (uint64_t k = 0; k < w[i]; k++)
            turns[t++] = (struct stride_turn){((double)k + phase) / (double)w[i], i};
    }
    qsort(turns, len, sizeof(*turns), by_time);
    for (t = 0; t < len; t++)
        order[t] = turns[t].server;
    free(turns);
    return 0;
}

int lb_rotation_build(struct lb_rotation *r, const struct pool *pool,
                      const struct lb_rotation *prev, uint64_t now_ms)
{
    unsigned n = pool->nservers;
    uint64_t *w = calloc(n ? n : 1, sizeof(*w));
    int64_t *score = calloc(n ? n : 1, sizeof(*score));
    uint32_t slow_start = pool->conf ? pool->conf->slow_start_ms : 0;
    uint64_t g = 0, sum = 0;

    memset(r, 0, sizeof(*r));
    atomic_init(&r->next, prev ? atomic_load_explicit(&prev->next, memory_order_relaxed) : 0);
    if (!w || !score)
        goto fail;
    for (unsigned i = 0; i < n; i++) {
        const struct server *s = pool->servers[i];
        if (server_state(s) != SERVER_UP)
            continue;
        uint64_t up_since = atomic_load_explicit(&s->up_since_ms, memory_order_relaxed);
        w[i] = health_effective_weight(server_weight(s), up_since, now_ms, slow_start);
        if (w[i] < (uint64_t)server_weight(s) * HEALTH_WEIGHT_SCALE)
            r->ramping = true;
        g = gcd(w[i], g);
    }
    for (unsigned i = 0; g && i < n; i++)
        sum += (w[i] /= g);
    if (sum > LB_ROTATION_MAX_TURNS) {
        /* Keep the proportions and give every server a turn. A server scaled below one turn is
         * given one, so the others are scaled to what is left once each has its one: scaling to
         * the whole bound went past it by a turn per such server. */
        uint64_t turned = 0, scaled = 0;
        for (unsigned i = 0; i < n; i++)
            turned += w[i] != 0;
        uint64_t room = turned < LB_ROTATION_MAX_TURNS ? LB_ROTATION_MAX_TURNS - turned : 0;
        for (unsigned i = 0; i < n; i++) {
            if (w[i])
                w[i] = w[i] * room / sum ? w[i] * room / sum : 1;
            scaled += w[i];
        }
        sum = scaled;
    }
    r->len = (uint32_t)sum;
    if (sum) {
        if (!(r->order = malloc(sum * sizeof(*r->order))))
            goto fail;
        if (sum * n <= SMOOTH_BUDGET)
            smooth_order(r->order, r->len, w, n, score);
        else if (stride_order(r->order, r->len, w, n) < 0)
            goto fail;
    }
    free(w);
    free(score);
    return 0;
fail:
    free(r->order);
    r->order = NULL;
    free(w);
    free(score);
    return -1;
}

void *lb_rotation_rebuild(const struct pool *pool, const void *prev, uint64_t now_ms)
{
    struct lb_rotation *r = aligned_alloc(_Alignof(struct lb_rotation), sizeof(*r));
    if (r && lb_rotation_build(r, pool, prev, now_ms) < 0) {
        free(r);
        return NULL;
    }
    return r;
}

void lb_rotation_shared_free(void *shared)
{
    lb_rotation_free(shared);
    free(shared);
}

bool lb_rotation_ramping(const void *shared)
{
    return ((const struct lb_rotation *)shared)->ramping;
}

void lb_rotation_free(struct lb_rotation *r)
{
    free(r->order);
    r->order = NULL;
    r->len = 0;
}

struct server *lb_rotation_next(struct lb_rotation *r, const struct pool *pool,
                                const struct lb_pick *ctx)
{
    if (!r->len)
        return NULL;
    uint64_t turn = atomic_fetch_add_explicit(&r->next, 1, memory_order_relaxed);
    uint32_t at = (uint32_t)(turn % r->len);
    uint32_t steps = r->len < WALK_LIMIT ? r->len : WALK_LIMIT;
    for (uint32_t k = 0; k < steps; k++) {
        uint32_t i = r->order[at];
        if (i < pool->nservers && lb_candidate(pool->servers[i], ctx))
            return pool->servers[i];
        if (++at == r->len)
            at = 0;
    }
    return NULL;
}

struct server *lb_best_of(const struct lb_rotation *r, const struct pool *pool,
                          const struct lb_pick *ctx, unsigned choices, uint64_t *rng,
                          lb_cost_fn *cost, const void *arg)
{
    struct server *best = NULL, *drawn[LB_MAX_CHOICES];
    double best_cost = 0;
    unsigned found = 0;
    if (choices > LB_MAX_CHOICES)
        choices = LB_MAX_CHOICES;
    /* Distinct servers: with two choices among three, drawing the same one twice would force a
     * pick one time in nine, however loaded that server is. A few more draws than choices, so
     * that repeats and a server that just went down cost nothing. */
    for (unsigned draw = 0; draw < 2 * choices + 4 && found < choices && r->len; draw++) {
        struct server *s = lb_rotation_sample(r, pool, (uint32_t)(lb_rand_next(rng) >> 32));
        bool again = false;
        for (unsigned k = 0; k < found && !again; k++)
            again = drawn[k] == s;
        if (!s || again || !lb_candidate(s, ctx))
            continue;
        drawn[found++] = s;
        double c = cost(pool, s, arg);
        if (!best || c < best_cost) {
            best = s;
            best_cost = c;
        }
    }
    if (best)
        return best;
    /* Equals share the pick in proportion to their weights: each replaces the one kept with
     * probability its weight / the weights of the equals so far. (A scan from a random start
     * that kept the first of equals gave the server after a run of excluded ones all of their
     * starts: two picks in three for s1 when s3 of three is out.) */
    uint64_t tied = 0;
    for (unsigned k = 0; k < pool->nservers; k++) {
        struct server *s = pool->servers[k];
        uint64_t w;
        if (!lb_candidate(s, ctx) || !(w = lb_weight(pool, s, ctx)))
            continue;
        double c = cost(pool, s, arg);
        if (!best || c < best_cost) {
            best = s;
            best_cost = c;
            tied = w;
        } else if (c == best_cost) {
            tied += w;
            if (lb_rand_next(rng) % tied < w)
                best = s;
        }
    }
    return best;
}
