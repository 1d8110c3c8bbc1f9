/*
 * etcd.h - a pool's servers from an etcd registry (discovery.etcd), over etcd's v3 JSON API on
 * HTTP/1.1, with fulcrum's own loop and connections (no gRPC): a range read of the prefix, then a
 * watch from the revision after it. Each key under the prefix is one server; its value is JSON
 * {"address": "10.0.0.5:8080", "name": "api-5", "weight": 2} (etcd_json.h reads it).
 *
 * On a compacted revision the source reads everything again; when an endpoint fails it tries the
 * next one, with a growing backoff. While etcd is unreachable the last set is kept (for
 * hold_on_error, if set). Runs on the control thread's loop.
 */
#ifndef FULCRUM_ETCD_H
#define FULCRUM_ETCD_H

#include "discovery/source.h"

struct loop;
struct conf_etcd_discovery;
struct etcd_source;

/* As dns_source_new() (dns.h). */
struct etcd_source *etcd_source_new(struct loop *loop, const char *pool,
                                    const struct conf_etcd_discovery *c, unsigned max,
                                    const struct member_set *initial, discovery_update_fn *fn,
                                    void *arg);
void etcd_source_free(struct etcd_source *src);
const struct discovery_status *etcd_source_status(const struct etcd_source *src);

#endif
