/*
 * freelist.h - an intrusive free list with a cap: spare objects kept for reuse instead of freed.
 *
 * The object embeds a struct freelist_node; the list links objects through it and allocates
 * nothing. The list never allocates or frees an object either, so ownership stays with the caller
 * at every step:
 *   - freelist_take() gives back the most recently put spare (LIFO: the one most likely still in
 *     cache), or NULL when the list is empty; the caller then allocates a new object itself. A
 *     spare comes back exactly as it was put: reset what must start fresh.
 *   - freelist_put() keeps the object and returns true, or returns false when the list already
 *     holds cap objects: the caller still owns the object and frees it.
 *   - To release everything (at exit), take until NULL and free each object.
 *
 *   struct chunk { struct freelist_node spare; ... };
 *   static struct freelist spares = FREELIST_INIT(32);
 *
 *   struct chunk *c = freelist_take_entry(&spares, struct chunk, spare);
 *   if (!c)
 *       c = malloc(sizeof(*c));
 *   ...
 *   if (!freelist_put(&spares, &c->spare))
 *       free(c);
 *
 * A free list is not thread-safe: it belongs to one thread, or the caller holds a lock.
 */
#ifndef FULCRUM_FREELIST_H
#define FULCRUM_FREELIST_H

#include <stdbool.h>
#include <stddef.h>

struct freelist_node {
    struct freelist_node *next;
};

struct freelist {
    struct freelist_node *head; /* the most recently put spare; NULL: empty */
    unsigned count;             /* spares held */
    unsigned cap;               /* the most it holds; 0: it never holds any */
};

#define FREELIST_INIT(cap_)                                                                        \
    {                                                                                              \
        .head = NULL, .count = 0, .cap = (cap_)                                                    \
    }

static inline void freelist_init(struct freelist *fl, unsigned cap)
{
    fl->head = NULL;
    fl->count = 0;
    fl->cap = cap;
}

/* A spare, or NULL when there is none. */
static inline struct freelist_node *freelist_take(struct freelist *fl)
{
    struct freelist_node *n = fl->head;
    if (n) {
        fl->head = n->next;
        fl->count--;
        n->next = NULL;
    }
    return n;
}

/* Keeps n as a spare and returns true; false when the list is full (the caller frees it). */
static inline bool freelist_put(struct freelist *fl, struct freelist_node *n)
{
    if (fl->count >= fl->cap)
        return false;
    n->next = fl->head;
    fl->head = n;
    fl->count++;
    return true;
}

/* freelist_take() as a pointer to the object embedding the node (member), or NULL. */
static inline void *freelist_take_at(struct freelist *fl, size_t member_offset)
{
    struct freelist_node *n = freelist_take(fl);
    return n ? (void *)((char *)n - member_offset) : NULL;
}
/* With GNU C (gcc, clang) it fails to compile when type.member is not a struct freelist_node. */
#if defined(__GNUC__)
#define freelist_take_entry(fl, type, member)                                                      \
    __extension__({                                                                                \
        _Static_assert(                                                                            \
            __builtin_types_compatible_p(__typeof__(((type *)0)->member), struct freelist_node),   \
            "freelist_take_entry: " #type "." #member " is not a freelist_node");                  \
        (type *)freelist_take_at((fl), offsetof(type, member));                                    \
    })
#else
#define freelist_take_entry(fl, type, member)                                                      \
    ((type *)freelist_take_at((fl), offsetof(type, member)))
#endif

#endif
