/*
 * server.h - TLS termination for listeners: the OpenSSL contexts built from a listener's tls
 * mapping, the choice of certificate by SNI, and what the admin API shows of each certificate.
 *
 * Certificates covering the same names (an ECDSA and an RSA one, say) form a group, and each
 * group is one SSL_CTX holding all of them: OpenSSL then gives an ECDSA-capable client the ECDSA
 * certificate and others the RSA one. A ClientHello's server name picks the group (sni.h); no
 * name, or an unknown one, gets the default certificate's group, unless sni_strict refuses it.
 *
 * Everything is built on the control thread when a configuration is loaded, and read-only after:
 * worker threads only create SSL objects from the contexts. The contexts live as long as the
 * snapshots of that configuration; an SSL object holds its own reference to its context, so a
 * reload never disturbs a connection that is open.
 */
#ifndef FULCRUM_TLS_SERVER_H
#define FULCRUM_TLS_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "tls/certinfo.h"
#include "tls/report.h"

struct ssl_st;
struct tls_server;

/* One configured certificate, for the admin API, metrics and dashboard. */
struct tls_certificate_view {
    const char *cert, *key; /* as written in the configuration */
    const struct certinfo *info;
    bool is_default;
};

/* Builds listener li's contexts (set.h calls it for each TLS listener). NULL on failure, with
 * every problem added to r. */
struct tls_server *tls_server_new(const struct conf *conf, unsigned li, struct tls_report *r);
void tls_server_free(struct tls_server *ts);

/* A new server-side SSL for one accepted connection, or NULL if memory ran out. */
struct ssl_st *tls_server_accept(const struct tls_server *ts);

/* The listener's certificates, in configuration order. */
unsigned tls_server_certificates(const struct tls_server *ts);
struct tls_certificate_view tls_server_certificate(const struct tls_server *ts, unsigned i);

/* Is client certificate verification on (client_ca), and where does its subject go? NULL: the
 * subject is not passed on. */
const char *tls_server_subject_header(const struct tls_server *ts);

/* After a handshake: was the session resumed, was it TLS 1.3? */
bool tls_session_resumed(const struct ssl_st *ssl);
bool tls_is_v13(const struct ssl_st *ssl);

/* The verified client certificate's subject (RFC 2253, like "CN=client-1,O=Example"), as a
 * malloc'ed string for the caller to free; NULL if there is none or memory ran out. */
char *tls_peer_subject(const struct ssl_st *ssl);

/* Did the handshake agree on HTTP/2 through ALPN? */
bool tls_alpn_is_h2(const struct ssl_st *ssl);

/* The server name the client asked for (SNI), or NULL; valid while the connection lives. */
const char *tls_server_name(const struct ssl_st *ssl);

#endif
