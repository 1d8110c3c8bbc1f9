/*
 * tls_conn.h - TLS as a connection transport: OpenSSL's record layer over a socket, behind the
 * same struct conn and the same rules as plain TCP (conn.h).
 *
 * A TLS connection starts with a handshake, driven by its owner with conn_handshake() on each
 * event until it is done; after that, conn_read(), conn_write() and the rest work as for TCP.
 * Two things differ underneath, and are handled here so that the rules of conn.c still hold:
 *   - OpenSSL reads one record at a time, so a read that returns fewer bytes than asked has not
 *     necessarily drained the socket. tls_recv() therefore reads until the buffer is full or
 *     OpenSSL wants more from the socket: a short count means drained, as it does for TCP.
 *   - OpenSSL writes one record per call (partial writes are on), so tls_sendv() writes records
 *     until everything went or the socket is full: a short count means full.
 * The connection owns its SSL object from conn_init_tls() on, and conn_close() frees it.
 */
#ifndef FULCRUM_TLS_CONN_H
#define FULCRUM_TLS_CONN_H

#include "core/conn.h"

extern const struct conn_ops conn_tls_ops;

/* Makes c a TLS connection over fd (non-blocking) with ssl, whose role (accept or connect
 * state) the caller has set. c owns ssl from now on, even if this fails. Returns 0, or -1 if
 * OpenSSL could not take the descriptor. */
int conn_init_tls(struct conn *c, int fd, loop_io_fn handler, struct ssl_st *ssl);

/*
 * Advances the handshake: CONN_DONE once it is complete; CONN_BLOCKED while it waits for the
 * peer (without a system call when the readiness flag it needs is clear); CONN_EOF if the peer
 * closed first; CONN_ERROR if it failed, with *why a short label for logs and counters
 * ("http_request", "protocol_version", "no_shared_cipher", "unknown_name", "bad_certificate",
 * "no_certificate", "bad_message" or "other").
 */
enum conn_status conn_handshake(struct conn *c, const char **why);

/* After a handshake failed with "http_request": tells the client, in plain HTTP, that this port
 * speaks HTTPS (a 400 with a short text), as far as the socket takes it at once. */
void conn_tls_refuse_plain_http(struct conn *c);

/* c was copied to where it now lives (a connection handed to another owner): its socket BIO
 * follows it there. */
void conn_tls_moved(struct conn *c);

/* The protocol agreed: "TLSv1.3", "TLSv1.2". */
const char *conn_tls_version(const struct conn *c);

#endif
