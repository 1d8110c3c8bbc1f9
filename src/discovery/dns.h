/*
 * dns.h - a pool's servers from DNS (discovery.dns): SRV, A, AAAA or both, resolved with c-ares
 * on the control thread's loop, never on the request path.
 *
 * The source queries at once, then again at min(interval, the answer's smallest TTL), never more
 * often than once a second. A good answer (NXDOMAIN and an empty answer included: they empty the
 * set) replaces the set; a failure (SERVFAIL, timeout, refused, a malformed reply) keeps the last
 * good set for hold_on_error, then empties it. dns_answer.h turns a reply into servers.
 */
#ifndef FULCRUM_DNS_H
#define FULCRUM_DNS_H

#include "discovery/source.h"

struct loop;
struct conf_dns_discovery;
struct dns_source;

/*
 * Starts resolving for pool (its name, for log lines) on loop. The source copies what it needs
 * from c, which may be freed once this returns. max: how many servers the source may find.
 * initial: the set to start from (the previous source's, across a reload), or NULL. fn is called
 * with each new set. NULL if memory ran out or c-ares failed to start (logged).
 */
struct dns_source *dns_source_new(struct loop *loop, const char *pool,
                                  const struct conf_dns_discovery *c, unsigned max,
                                  const struct member_set *initial, discovery_update_fn *fn,
                                  void *arg);
void dns_source_free(struct dns_source *src);
const struct discovery_status *dns_source_status(const struct dns_source *src);

#endif
