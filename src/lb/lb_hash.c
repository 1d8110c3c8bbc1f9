/*
 * lb_hash.c - placeholder: consistent hashing is being written; until then hash balances like
 * round-robin.
 */
#include "lb/lb.h"
#include "lb/rotation.h"

static struct server *hash_pick(const struct pool *pool, void *state, struct lb_pick *ctx)
{
    struct server *s = lb_rotation_next(pool->lb_shared, pool, ctx);
    return s ? s : lb_scan_pick(pool, state, ctx);
}

const struct lb_ops lb_hash = {
    .state_new = lb_scan_state_new,
    .state_free = lb_scan_state_free,
    .pick = hash_pick,
    .rebuild = lb_rotation_rebuild,
    .shared_free = lb_rotation_shared_free,
    .ramping = lb_rotation_ramping,
};
