/*
 * discovery.h - the control thread's discovery sources: which pools find servers in DNS or etcd,
 * the servers each source found, and what the running snapshot gets from them.
 *
 *   conf (start, reload) --discovery_sync()--> one source per pool and kind (discovery/dns.h,
 *                                              discovery/etcd.h), kept across reloads that do not
 *                                              change it
 *   source answers -----------------------> its set of servers; `changed` is called
 *   control.c --discovery_servers()------> the discovered servers of every pool, as snapshot
 *                                          changes (lb/snapshot.h), built into the next snapshot
 *
 * A source's set survives a reload: a source whose settings changed starts from its predecessor's
 * set, so a reload never drops discovered servers. Across sources and the file, a name or an
 * address a pool already has is skipped, as is any server beyond max_servers, each logged once.
 */
#ifndef FULCRUM_CTL_DISCOVERY_H
#define FULCRUM_CTL_DISCOVERY_H

#include "discovery/source.h"
#include "lb/snapshot.h"

struct conf;
struct loop;
struct discovery;
struct tls_set;

/* changed(arg) is called (on the control thread) each time a source's set changed. */
struct discovery *discovery_new(struct loop *loop, void (*changed)(void *arg), void *arg);
void discovery_free(struct discovery *d);

/* Starts, keeps or stops sources to match conf, whose TLS contexts are tls (an etcd registry on
 * https uses its tls->etcd entry; a source kept gets the new one for its next connections).
 * Returns 0, or -1 if a source could not start (logged; the others run). */
int discovery_sync(struct discovery *d, const struct conf *conf, const struct tls_set *tls);

/*
 * The discovered servers of every pool of conf, ready for struct snapshot_overlay: owned by d,
 * valid until the next call or discovery_sync().
 */
const struct snapshot_change *discovery_servers(struct discovery *d, const struct conf *conf,
                                                unsigned *n);

/* One source, as the admin API, metrics and dashboard show it. */
struct discovery_view {
    const char *type;   /* "dns" or "etcd" */
    const char *target; /* the DNS name, or the etcd prefix */
    const struct discovery_status *status;
};

/* The sources of pool, at most max of them into out; returns how many. */
unsigned discovery_views(const struct discovery *d, const char *pool, struct discovery_view *out,
                         unsigned max);

#endif
