/*
 * recycler.h - objects of one kind (sessions, backend connections) reused across an event loop's
 * batches: closed ones are buried first and become spares only once the batch is over, since an
 * event for them may still be queued in it; spares beyond the cap are freed.
 *
 * The object embeds a struct freelist_node (freelist.h) at `offset`; it links the object while it
 * is buried and while it is a spare, never while it is in use, so one node serves both.
 *
 *   struct session { ...; struct freelist_node spare; ... };
 *   struct recycler r;  recycler_init(&r, 1024);
 *   struct session *s = recycler_take(&r, sizeof(*s), offsetof(struct session, spare));
 *   ...  recycler_bury(&r, &s->spare);          (closed during the batch)
 *   recycler_flush(&r, offsetof(struct session, spare));       (after the batch)
 *   recycler_free_all(&r, offsetof(struct session, spare));    (at exit)
 *
 * One thread owns a recycler; nothing in it is thread-safe.
 */
#ifndef FULCRUM_RECYCLER_H
#define FULCRUM_RECYCLER_H

#include <stdlib.h>
#include <string.h>

#include "core/freelist.h"

struct recycler {
    struct freelist spares;     /* reusable now */
    struct freelist_node *dead; /* closed during this batch */
};

static inline void recycler_init(struct recycler *r, unsigned cap)
{
    freelist_init(&r->spares, cap);
    r->dead = NULL;
}

/* A zeroed object of size bytes: a spare, or a new one; NULL if memory ran out. */
static inline void *recycler_take(struct recycler *r, size_t size, size_t offset)
{
    void *obj = freelist_take_at(&r->spares, offset);
    if (!obj && !(obj = malloc(size)))
        return NULL;
    memset(obj, 0, size);
    return obj;
}

static inline void recycler_bury(struct recycler *r, struct freelist_node *n)
{
    n->next = r->dead;
    r->dead = n;
}

/* The batch is over: the buried objects become spares, or are freed past the cap. */
static inline void recycler_flush(struct recycler *r, size_t offset)
{
    while (r->dead) {
        struct freelist_node *n = r->dead;
        r->dead = n->next;
        if (!freelist_put(&r->spares, n))
            free((char *)n - offset);
    }
}

static inline void recycler_free_all(struct recycler *r, size_t offset)
{
    recycler_flush(r, offset);
    struct freelist_node *n;
    while ((n = freelist_take(&r->spares)))
        free((char *)n - offset);
}

#endif
