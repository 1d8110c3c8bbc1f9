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

struct ssl_st;

/* TLS for https endpoints, given by the control thread (this layer does not know the TLS layer's
 * contexts): connect() makes a client SSL for a connection to host (the name sent and checked),
 * from ctx; verify_error() says why a failed handshake's certificate was refused, or NULL;
 * release() drops the source's reference to a ctx. */
struct etcd_tls {
    struct ssl_st *(*connect)(void *ctx, const char *host);
    const char *(*verify_error)(const struct ssl_st *ssl);
    void (*release)(void *ctx);
};

/* As dns_source_new() (dns.h); with https endpoints (c->https), tls and tls_ctx are required and
 * the source owns tls_ctx (released with the source, even when this fails). */
struct etcd_source *etcd_source_new(struct loop *loop, const char *pool,
                                    const struct conf_etcd_discovery *c, unsigned max,
                                    const struct member_set *initial, const struct etcd_tls *tls,
                                    void *tls_ctx, discovery_update_fn *fn, void *arg);
void etcd_source_free(struct etcd_source *src);
/* The context for the next connections (a reload read the certificates again): the source
 * takes tls_ctx over and releases the one it had. Nothing for an http source. */
void etcd_source_set_tls(struct etcd_source *src, void *tls_ctx);
const struct discovery_status *etcd_source_status(const struct etcd_source *src);

#endif
