/*
 * pool.h - backend pools and servers as every worker thread sees them.
 *
 * A struct server is shared by all threads. Its address and name never change; its state and
 * weight are atomics that any thread reads without locks on the request path. A server's state
 * changes in exactly one function, server_set_state(), which also logs the change once.
 *
 * A struct pool is part of an immutable snapshot (snapshot.h): a name, a balancing algorithm and
 * an array of servers. Each worker keeps its own balancer state per pool (see lb.h), so picking a
 * server touches no shared cache line beyond the servers' read-mostly state.
 *
 * Each server and pool has a slot: a small integer, unique while the object lives, that indexes the
 * per-thread arrays (idle connection pools, balancer state, counters).
 */
#ifndef FULCRUM_POOL_H
#define FULCRUM_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "net.h"

struct lb_ops;

enum server_state {
    SERVER_UP = 0,   /* in rotation */
    SERVER_DOWN,     /* active checks failing */
    SERVER_EJECTED,  /* passive detection took it out for a while */
    SERVER_DRAINING, /* no new requests; in-flight ones finish */
    SERVER_MAINT,    /* out of rotation, checks stopped */
};

struct server {
    char *name;
    char *pool_name; /* for log lines */
    struct net_addr addr;
    char addr_text[NET_ADDR_TEXT];
    unsigned slot;
    _Atomic unsigned state;  /* enum server_state */
    _Atomic unsigned weight; /* configured weight, 0-256 */
    _Atomic unsigned refs;   /* snapshots holding it */
};

struct pool {
    char *name;
    const struct lb_ops *lb;
    struct server **servers;
    unsigned nservers;
    unsigned slot;
};

struct server *server_new(const char *pool_name, const char *name, const struct net_addr *addr,
                          unsigned weight);
void server_ref(struct server *s);
void server_unref(struct server *s);

/* The single place where a server changes state; logs "pool P server S: OLD -> NEW (reason)". */
void server_set_state(struct server *s, enum server_state state, const char *reason);

static inline enum server_state server_state(const struct server *s)
{
    return (enum server_state)atomic_load_explicit(&s->state, memory_order_relaxed);
}

/* May the balancer give this server a new request? */
static inline bool server_usable(const struct server *s)
{
    return server_state(s) == SERVER_UP;
}

static inline unsigned server_weight(const struct server *s)
{
    return atomic_load_explicit(&s->weight, memory_order_relaxed);
}

const char *server_state_name(enum server_state state);

/* Highest slot handed out so far + 1: the size per-thread arrays must have. */
unsigned server_slot_limit(void);
unsigned pool_slot_new(void);
unsigned pool_slot_limit(void);

#endif
