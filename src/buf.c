/*
 * buf.c - per-thread buffer pool (see buf.h).
 */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

void buf_pool_init(struct buf_pool *pool, uint32_t size, uint32_t max_free)
{
    memset(pool, 0, sizeof(*pool));
    pool->size = size;
    pool->max_free = max_free;
}

void buf_pool_destroy(struct buf_pool *pool)
{
    while (pool->free_list) {
        void *next = *(void **)pool->free_list;
        free(pool->free_list);
        pool->free_list = next;
    }
    pool->nfree = 0;
}

int buf_get(struct buf_pool *pool, struct buf *b)
{
    char *mem = pool->free_list;
    if (mem) {
        pool->free_list = *(void **)mem;
        pool->nfree--;
    } else {
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
    if (pool->nfree < pool->max_free) {
        *(void **)b->data = pool->free_list;
        pool->free_list = b->data;
        pool->nfree++;
    } else {
        free(b->data);
    }
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
