/*
 * buf.c - per-thread buffer pool (see buf.h).
 */
#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

void buf_pool_init(struct buf_pool *pool, uint32_t size, uint32_t max_free)
{
    memset(pool, 0, sizeof(*pool));
    freelist_init(&pool->spares, max_free);
    pool->size = size;
}

void buf_pool_destroy(struct buf_pool *pool)
{
    struct freelist_node *n;
    while ((n = freelist_take(&pool->spares)))
        free(n);
}

int buf_get(struct buf_pool *pool, struct buf *b)
{
    /* a spare buffer's node is its first bytes: the buffer starts where the node is */
    char *mem = (char *)freelist_take(&pool->spares);
    if (!mem) {
        mem = malloc(pool->size);
        if (!mem)
            return -1;
    }
    pool->inuse++;
    b->data = mem;
    b->start = b->end = 0;
    return 0;
}

void buf_put(struct buf_pool *pool, struct buf *b)
{
    if (!b->data)
        return;
    pool->inuse--;
    if (!freelist_put(&pool->spares, (struct freelist_node *)(void *)b->data))
        free(b->data);
    b->data = NULL;
    b->start = b->end = 0;
}

void buf_compact(struct buf *b)
{
    if (b->start == 0)
        return;
    uint32_t len = b->end - b->start;
    if (len)
        memmove(b->data, b->data + b->start, len);
    b->start = 0;
    b->end = len;
}
