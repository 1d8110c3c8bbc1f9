/*
 * container.h - from a pointer to a member back to the struct that embeds it.
 *
 * Loop callbacks receive the struct loop_timer, loop_io or loop_task they were registered with,
 * and free lists hand back a struct freelist_node. The owner embeds that member in its own struct
 * and recovers itself with container_of:
 *
 *   struct watch { ...; struct loop_timer check_timer; ... };
 *
 *   static void on_check_timer(struct loop *loop, struct loop_timer *t)
 *   {
 *       struct watch *w = container_of(t, struct watch, check_timer);
 *
 * ptr must point at that member of a live object: container_of(NULL, ...) is not NULL.
 */
#ifndef FULCRUM_CONTAINER_H
#define FULCRUM_CONTAINER_H

#include <stddef.h>

/*
 * With GNU C (gcc and clang, even under -std=c11) a pointer of the wrong type fails to compile:
 * the _Static_assert compares ptr's type with the member's. Without __typeof__ the cast is
 * unchecked.
 */
#if defined(__GNUC__)
#define container_of(ptr, type, member)                                                            \
    __extension__({                                                                                \
        __typeof__(ptr) container_of_ptr_ = (ptr);                                                 \
        _Static_assert(__builtin_types_compatible_p(__typeof__(*container_of_ptr_),                \
                                                    __typeof__(((type *)0)->member)),              \
                       "container_of: ptr does not point to " #type "." #member);                  \
        (type *)(void *)((char *)container_of_ptr_ - offsetof(type, member));                      \
    })
#else
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#endif

#endif
