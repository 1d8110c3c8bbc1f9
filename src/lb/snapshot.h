/*
 * snapshot.h - the running configuration: a validated conf plus the pools and servers built from
 * it, immutable once published.
 *
 * Every connection keeps a reference to the snapshot it started on and finishes on it; a reload
 * builds a new snapshot and publishes it, and the old one is freed when its last user lets go.
 * Servers are shared between snapshots when a server stays the same (same pool, name and address),
 * which is how a reload keeps health state. Each pool also carries its balancer's data (lb.h): one
 * state per worker thread, and what the algorithm's rebuild() made from the servers; both live
 * and die with the snapshots that hold them, so a thread never picks with freed data.
 */
#ifndef FULCRUM_SNAPSHOT_H
#define FULCRUM_SNAPSHOT_H

#include <stdatomic.h>

#include "conf/conf.h"
#include "servers/pool.h"

struct tls_server;
struct tls_set;

struct listener_routing;

struct snapshot_listener {
    const struct conf_listener *conf;
    struct pool *pool;                      /* NULL: none (routes only) */
    const struct tls_server *tls;           /* NULL for plain HTTP */
    const struct listener_routing *routing; /* lb/routing.h */
};

struct conf_box;  /* a conf with a reference count: rebuilt snapshots share it */
struct lb_states; /* a pool's per-thread balancer states: refreshed snapshots share them */

struct snapshot {
    struct conf *conf; /* shared with snapshots rebuilt from this one */
    struct conf_box *box;
    struct pool *pools;
    struct lb_states **lb_states; /* per pool */
    unsigned npools;
    struct snapshot_listener *listeners;
    unsigned nlisteners;
    _Atomic unsigned refs;
};

/* Servers added or removed through the admin API, on top of the file's (until the next reload
 * from the file, which wins), and the servers discovery found (which outlive reloads). */
struct snapshot_change {
    char *pool, *name;    /* owned by whoever keeps the overlay (ctl/) */
    struct net_addr addr; /* additions only */
    unsigned weight;
    const char *host;          /* host part for TLS; NULL: the address's IP */
    enum server_source source; /* SERVER_FROM_API, _DNS or _ETCD */
};

struct snapshot_overlay {
    struct snapshot_change *add;
    unsigned nadd;
    struct snapshot_change *remove;
    unsigned nremove;
    /* discovered servers; one whose name a pool already has (file or API) is skipped */
    const struct snapshot_change *discovered;
    unsigned ndiscovered;
};

/*
 * Builds a snapshot from conf (and overlay, if any), taking ownership of conf and of tls (its
 * listeners' TLS contexts, tls/server.h; NULL if it has no TLS listener) on success.
 * Servers found in prev (same pool, name and address) are shared instead of created; they keep a
 * weight set through the API. A server created while running (prev is not NULL) in a pool with
 * active checks awaits its first check (server_await_first_check()). Returns NULL if memory ran
 * out; conf and tls are then still the caller's.
 */
struct snapshot *snapshot_new(struct conf *conf, struct tls_set *tls, const struct snapshot *prev,
                              const struct snapshot_overlay *overlay);
/* The TLS contexts snap was built with (NULL if none). */
const struct tls_set *snapshot_tls(const struct snapshot *snap);

/* How many worker threads run: each pool gets one balancer state per worker. Set once, before
 * the first snapshot is built. */
void snapshot_set_workers(unsigned n);
/* A snapshot with the same configuration as cur and another overlay (runtime server changes). */
struct snapshot *snapshot_rebuild(const struct snapshot *cur,
                                  const struct snapshot_overlay *overlay);

/*
 * A snapshot like cur, in which every pool whose balancer has a rebuild hook rebuilt its shared
 * data from the servers' current states and weights. Everything else is shared with cur,
 * per-thread balancer states included, so requests in flight keep being followed where they
 * started. NULL if memory ran out. Control thread.
 *
 * When: after a server's state or weight changed (server_update_state(), a weight set through the
 * admin API) in a pool where lb_rebuilds(pool) holds, the control thread publishes
 * snapshot_refresh(running) as it publishes any snapshot (control.c publish()), from a task of
 * its loop rather than inside a health check's callback (publishing resyncs the checker), so that
 * changes made together cost one refresh. For a pool that does not rebuild (round-robin) it does
 * nothing at all. Membership changes need no call: they build a new snapshot (snapshot_new(),
 * snapshot_rebuild()), which runs rebuild itself.
 */
struct snapshot *snapshot_refresh(const struct snapshot *cur);

void snapshot_ref(struct snapshot *snap);
void snapshot_unref(struct snapshot *snap);

/* The pool named name, or NULL. */
struct pool *snapshot_find_pool(const struct snapshot *snap, const char *name);

#endif
