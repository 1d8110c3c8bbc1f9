/*
 * buf.h - fixed-size I/O buffers recycled through a per-thread pool.
 *
 * A connection holds a buffer only while bytes are in flight: it takes one when it has something
 * to read or write and gives it back as soon as the buffer is empty. An idle keep-alive connection
 * therefore costs its struct and nothing else. The pool keeps a bounded number of spare buffers so
 * that a steady load never reaches malloc; past the bound, buffers are freed.
 *
 * Layout of a buffer in use: data[0 .. start) has been consumed, data[start .. end) is pending,
 * data[end .. size) is free. All buffers of a pool have the same size (buf_pool_init), which
 * the workers derive from the largest allowed message head.
 */
#ifndef FULCRUM_BUF_H
#define FULCRUM_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/freelist.h"

struct buf {
    char *data; /* NULL: no memory attached */
    uint32_t start;
    uint32_t end;
};

struct buf_pool {
    struct freelist spares; /* spare buffers, linked through their first bytes; cap: max_free */
    uint32_t size;          /* bytes per buffer */
    uint64_t inuse;         /* buffers handed out and not returned, for leak checks and stats */
};

void buf_pool_init(struct buf_pool *pool, uint32_t size, uint32_t max_free);
void buf_pool_destroy(struct buf_pool *pool);

/* Attaches memory to b (start = end = 0). Returns 0, or -1 when memory is exhausted. */
int buf_get(struct buf_pool *pool, struct buf *b);
/* Returns b's memory to the pool; b becomes empty and detached. Safe on a detached buffer. */
void buf_put(struct buf_pool *pool, struct buf *b);

static inline uint32_t buf_len(const struct buf *b)
{
    return b->end - b->start;
}

static inline bool buf_empty(const struct buf *b)
{
    return b->end == b->start;
}

/* Moves pending bytes to the front so that all free space is at the end. */
void buf_compact(struct buf *b);

/* Gives the memory back if nothing is pending. */
static inline void buf_release_if_empty(struct buf_pool *pool, struct buf *b)
{
    if (b->data && b->start == b->end)
        buf_put(pool, b);
}

#endif
