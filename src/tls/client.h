/*
 * client.h - TLS from fulcrum to a pool's servers (re-encryption): one OpenSSL client context
 * per pool with a tls mapping, and the per-connection settings that depend on the server. The
 * same for a pool's etcd registry on https (its discovery.etcd.tls settings).
 *
 * Verification (on unless verify: false) checks the server's chain against the pool's ca, or the
 * system's store, and its name: the pool's sni if set, else the host part of the server's
 * address when it is a name, else its IP address against the certificate's IP entries. The
 * same name goes out as SNI (never an IP address, which SNI cannot carry).
 *
 * Built with the listeners' contexts (set.h) when a configuration is loaded,
 * read-only after. Sessions for resumption are kept by the caller, per thread and per server.
 */
#ifndef FULCRUM_TLS_CLIENT_H
#define FULCRUM_TLS_CLIENT_H

#include <stdbool.h>

#include "conf/conf.h"
#include "tls/report.h"

struct ssl_st;
struct ssl_session_st;
struct tls_client;

/* Builds pool number pool's context (set.h calls it for each pool with tls). NULL on failure,
 * with every problem added to r. */
struct tls_client *tls_client_new(const struct conf *conf, unsigned pool, struct tls_report *r);
/* The same for the pool's etcd registry (discovery.etcd on https, with its tls settings). */
struct tls_client *tls_client_new_etcd(const struct conf *conf, unsigned pool,
                                       struct tls_report *r);
/* Another owner: each tls_client_free() releases one; the last frees the context. Safe from
 * any thread. Returns tc. */
struct tls_client *tls_client_ref(struct tls_client *tc);
void tls_client_free(struct tls_client *tc);

/* A new client-side SSL for a connection to the server whose address has host as its host part
 * (a name or an IP address, as configured), resuming session if it is not NULL. NULL if memory
 * ran out. */
struct ssl_st *tls_client_connect(const struct tls_client *tc, const char *host,
                                  struct ssl_session_st *session);

/* The same, offering only h2 through ALPN (HTTP/2: gRPC health checks, `protocol: h2` pools). */
struct ssl_st *tls_client_connect_h2(const struct tls_client *tc, const char *host,
                                     struct ssl_session_st *session);
/* After the handshake: did the server choose h2? */
bool tls_client_chose_h2(const struct ssl_st *ssl);

/* After a failed handshake: why the server's certificate was refused ("certificate has expired",
 * "hostname mismatch", ...), or NULL if verification was not the problem. */
const char *tls_client_verify_error(const struct ssl_st *ssl);

/* The session to resume the next connection with, if this one has a resumable one (a reference
 * for the caller to release with tls_session_free), else NULL. */
struct ssl_session_st *tls_client_session(const struct ssl_st *ssl);
void tls_session_free(struct ssl_session_st *session);

#endif
