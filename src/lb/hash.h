/*
 * hash.h - what `balance: hash` (lb_hash.c) tells the outside about a pool's table: its size and
 * memory, for the admin API, benches and tests. The algorithm itself is reached through
 * its lb_ops (lb.h, lb_hash).
 */
#ifndef FULCRUM_LB_HASH_H
#define FULCRUM_LB_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "servers/pool.h"

/* Slots of the pool's Maglev table; 0 if the pool balances otherwise, has no table yet, or no
 * server with a weight. */
uint32_t lb_hash_table_size(const struct pool *pool);
/* Bytes of the pool's Maglev table entries (maglev.h); 0 as above. */
size_t lb_hash_table_bytes(const struct pool *pool);

#endif
