/*
 * lb_hash.c - `balance: hash`: consistent hashing of the request's key (the pool's hash_key)
 * over a weighted Maglev table (maglev.h), with slow start and, when hash_balance_factor is set,
 * bounded load.
 *
 * rebuild (control thread) builds the table from every server of the pool, whatever its state,
 * with its configured weight. A server going down, up or into maintenance therefore changes no
 * slot: pick passes it over instead, and when it comes back its keys come back to it. rebuild
 * also lays out a rotation (rotation.h) for requests without a key. Health changes rebuild with
 * the same servers and weights, so the table is copied from the previous one, not computed again.
 *
 * pick hashes the key once and walks its preference sequence (maglev_seq), taking the first
 * server that
 *   - is a candidate (usable, not avoided; failing servers too in panic mode) with a weight;
 *   - accepts the key if it is in slow start: a third hash of the key, mod 1000, must be below
 *     its effective weight's share of its full weight, per mille. The test depends on the key
 *     only, so a recovering server takes a growing set of its keys, and those stay;
 *   - has room, if the load is bounded (Mirrokni, Thorup and Zadimoghaddam, "Consistent hashing
 *     with bounded loads"; HAProxy's hash-balance-factor): with c = hash_balance_factor percent,
 *     T the requests in flight over the usable servers and W the sum of their weights, a server
 *     of weight w takes one more only while in flight + 1 <= ceil(c/100 x (T + 1) x w / W).
 *     A hot key thus spills along its own sequence to the servers it prefers next, and
 *     ctx->spilled tells the access log so.
 * The walk is bounded (WALK_LIMIT slots). A key that finds nobody in it goes, under bounded
 * load, to the server with the most room, and otherwise to the fallback scan (lb_scan_pick),
 * which also serves panic mode and requests whose servers have all failed them.
 */
#include <stdlib.h>

#include "lb/hash.h"
#include "lb/lb.h"
#include "lb/load.h"
#include "lb/maglev.h"
#include "lb/rotation.h"

/* Slots of a key's sequence a pick looks at. Each is owned by a server with a probability
 * proportional to its weight: with 90% of the weight down, 256 slots miss the rest with a
 * probability of 2e-12. */
#define WALK_LIMIT 256u

/* The seed of the slow-start hash, apart from the slot's and the skip's (maglev.h). */
#define SEED_RAMP 0x9b05688c2b3e6c1full

struct hash_shared {
    struct lb_rotation rotation; /* first: it is aligned to a cache line */
    struct maglev table;
};

/* The bound on a server's load for one pick. */
struct bound {
    uint64_t factor; /* c, percent */
    uint64_t total;  /* T + 1: requests in flight over the usable servers, and this one */
    uint64_t weight; /* W, effective (scaled) */
};

/* Fills b if the pool bounds its load: a scan of the pool, made only then. */
static bool measure_load(const struct pool *pool, const struct lb_pick *ctx, struct bound *b)
{
    if (!pool->conf || !pool->conf->hash_balance_factor)
        return false;
    uint64_t t = 0, w = 0;
    for (unsigned i = 0; i < pool->nservers; i++) {
        const struct server *s = pool->servers[i];
        if (!server_usable(s, ctx->panic))
            continue;
        uint64_t ws = lb_weight(pool, s, ctx);
        if (!ws)
            continue;
        t += lb_inflight(s);
        w += ws;
    }
    if (!w)
        return false;
    *b = (struct bound){pool->conf->hash_balance_factor, t + 1, w};
    return true;
}

/* May a server of effective weight w with `inflight` requests take one more? The product stays
 * within 64 bits: c <= 10000 (conf.c), w <= 256 x HEALTH_WEIGHT_SCALE, T + 1 <= 2^32. */
static bool has_room(const struct bound *b, uint64_t inflight, uint64_t w)
{
    uint64_t num = b->factor * b->total * w, den = 100 * b->weight;
    uint64_t cap = num / den + (num % den != 0);
    return inflight + 1 <= cap;
}

/* Does s, of effective weight w, take this key during its slow start? */
static bool ramp_accepts(const struct server *s, uint64_t w, uint64_t digest)
{
    uint64_t full = (uint64_t)server_weight(s) * HEALTH_WEIGHT_SCALE;
    if (w >= full)
        return true;
    return maglev_mix(digest, SEED_RAMP) % 1000 * full < w * 1000;
}

/* Under bounded load, when the walk found nobody: the candidate with room that is the least
 * loaded per unit of weight; NULL if none has room. */
static struct server *roomiest(const struct pool *pool, const struct lb_pick *ctx,
                               const struct bound *b)
{
    struct server *best = NULL;
    uint64_t best_load = 0, best_weight = 0;
    for (unsigned i = 0; i < pool->nservers; i++) {
        struct server *s = pool->servers[i];
        if (!lb_candidate(s, ctx))
            continue;
        uint64_t w = lb_weight(pool, s, ctx), load = lb_inflight(s);
        if (!w || !has_room(b, load, w))
            continue;
        if (!best || lb_lighter(load, w, best_load, best_weight)) {
            best = s;
            best_load = load;
            best_weight = w;
        }
    }
    return best;
}

static struct server *hash_pick(const struct pool *pool, void *state, struct lb_pick *ctx)
{
    struct hash_shared *sh = pool->lb_shared;
    const struct maglev *t = &sh->table;
    ctx->spilled = false;
    if (!ctx->key || !t->size) {
        struct server *s = lb_rotation_next(&sh->rotation, pool, ctx);
        return s ? s : lb_scan_pick(pool, state, ctx);
    }

    uint64_t digest = maglev_digest(ctx->key, ctx->key_len);
    struct bound b;
    bool bounded = measure_load(pool, ctx, &b);
    struct maglev_seq q = maglev_seq_start(t, digest);
    uint32_t steps = t->size < WALK_LIMIT ? t->size : WALK_LIMIT;
    for (uint32_t k = 0; k < steps; k++, maglev_seq_next(t, &q)) {
        uint32_t i = maglev_seq_owner(t, &q);
        if (i >= pool->nservers)
            continue;
        struct server *s = pool->servers[i];
        if (!lb_candidate(s, ctx))
            continue;
        uint64_t w = lb_weight(pool, s, ctx);
        if (!w || !ramp_accepts(s, w, digest))
            continue;
        if (bounded && !has_room(&b, lb_inflight(s), w)) {
            /* the first server that qualifies is the key's own: every later one is a spill */
            ctx->spilled = true;
            continue;
        }
        return s;
    }
    struct server *s = bounded ? roomiest(pool, ctx, &b) : NULL;
    return s ? s : lb_scan_pick(pool, state, ctx);
}

static void *hash_rebuild(const struct pool *pool, const void *prev, uint64_t now_ms)
{
    const struct hash_shared *old = prev;
    unsigned n = pool->nservers;
    struct hash_shared *sh = aligned_alloc(_Alignof(struct hash_shared), sizeof(*sh));
    struct maglev_member *members = malloc((n ? n : 1) * sizeof(*members));
    if (!sh || !members)
        goto fail;
    if (lb_rotation_build(&sh->rotation, pool, old ? &old->rotation : NULL, now_ms) < 0)
        goto fail;
    /* every server, whatever its state: states change nothing in the table */
    for (unsigned i = 0; i < n; i++) {
        const struct server *s = pool->servers[i];
        members[i] = (struct maglev_member){s->name, s->addr_text, server_weight(s)};
    }
    uint32_t size = pool->conf ? pool->conf->hash_table_size : 0;
    if (maglev_build(&sh->table, members, n, size, old ? &old->table : NULL) < 0) {
        lb_rotation_free(&sh->rotation);
        goto fail;
    }
    free(members);
    return sh;
fail:
    free(members);
    free(sh);
    return NULL;
}

static void hash_shared_free(void *shared)
{
    struct hash_shared *sh = shared;
    lb_rotation_free(&sh->rotation);
    maglev_free(&sh->table);
    free(sh);
}

static bool hash_ramping(const void *shared)
{
    /* the table ignores slow start (pick reads it); only the rotation follows the ramp */
    return ((const struct hash_shared *)shared)->rotation.ramping;
}

static const struct maglev *table_of(const struct pool *pool)
{
    if (pool->lb != &lb_hash || !pool->lb_shared)
        return NULL;
    return &((const struct hash_shared *)pool->lb_shared)->table;
}

uint32_t lb_hash_table_size(const struct pool *pool)
{
    const struct maglev *t = table_of(pool);
    return t ? t->size : 0;
}

size_t lb_hash_table_bytes(const struct pool *pool)
{
    const struct maglev *t = table_of(pool);
    return t ? maglev_bytes(t) : 0;
}

const struct lb_ops lb_hash = {
    .state_new = lb_scan_state_new,
    .state_free = lb_scan_state_free,
    .pick = hash_pick,
    .taken = lb_count_taken,
    .released = lb_count_released,
    .rebuild = hash_rebuild,
    .shared_free = hash_shared_free,
    .ramping = hash_ramping,
};
