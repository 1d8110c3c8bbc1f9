/*
 * set.h - every TLS context of one configuration: the listeners' (server.h), the pools' and
 * their etcd registries' (client.h), built together when a configuration is loaded so that any
 * problem in any of them fails the start or the reload as a whole, and freed together with the last
 * snapshot of it.
 */
#ifndef FULCRUM_TLS_SET_H
#define FULCRUM_TLS_SET_H

#include "conf/conf.h"

struct tls_server;
struct tls_client;

struct tls_set {
    struct tls_server **servers; /* one per conf->listeners entry; NULL: plain HTTP */
    unsigned nservers;
    struct tls_client **clients; /* one per conf->pools entry; NULL: plain to the servers */
    unsigned nclients;
    struct tls_client **etcd; /* one per conf->pools entry; NULL: no etcd registry on https */
};

/* Once per process, before the first configuration: OpenSSL and the ticket keys. 0 or -1. */
int tls_global_init(void);

/*
 * Reads every certificate, key and CA file that conf names and builds the contexts. Relative
 * paths are taken from the configuration file's folder (the working directory for flags).
 * Certificates that have expired or expire within 14 days are logged as warnings. Returns NULL
 * on failure, with *errors one line per problem ("FILE:LINE:COL: listeners[0].tls...: why").
 */
struct tls_set *tls_set_new(const struct conf *conf, char **errors);
void tls_set_free(struct tls_set *set);

#endif
