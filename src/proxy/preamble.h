/*
 * preamble.h - what a client connection goes through before its own protocol starts, the same
 * for an HTTP session (proxy.c) and a TCP mode session (tcp.c): a PROXY protocol header from a
 * trusted load balancer in front, then, on a TLS listener, the TLS handshake.
 *
 *   accept --(proxy_protocol.accept)--> PROXY header --(tls)--> handshake --> HTTP or relay
 *
 * Each step is driven by its owner on every event of the connection, and answers like a session
 * step: done, wait for the next event, or close. Nothing here closes the connection or keeps
 * state of its own; the owner does both (timeouts included).
 */
#ifndef FULCRUM_PREAMBLE_H
#define FULCRUM_PREAMBLE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "conf/conf.h"
#include "core/conn.h"

struct tls_server;
struct stats;

/* A client's address: the socket's peer, or the one a PROXY header named. */
union preamble_peer {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
};

enum preamble_status {
    PREAMBLE_DONE,    /* this step is complete */
    PREAMBLE_WAIT,    /* more bytes (or room) must come first */
    PREAMBLE_CLOSE,   /* the client left, or failed in a way already counted: close */
    PREAMBLE_REFUSED, /* the client sent something unacceptable (logged): close with a reset */
};

struct snapshot_listener;

/*
 * Sets up c for fd, just accepted on listener sl from peer: plain, or TLS at once unless a PROXY
 * header must come first (the handshake follows it). Returns 0, or -1 when the connection is
 * refused (a peer not trusted to send the PROXY header the listener expects, or no memory for
 * TLS): fd is then closed and the reason logged.
 */
int preamble_accept(struct conn *c, int fd, const struct snapshot_listener *sl,
                    const struct sockaddr *peer, loop_io_fn handler);

/* May sa send a PROXY header on a listener with this configuration? */
bool preamble_trusted(const struct conf_proxy_accept *pp, const struct sockaddr *sa);

/*
 * Reads the PROXY protocol header at the start of c: looked at where it lies (peek), taken once
 * whole, nothing behind it touched. On DONE, *peer is the client the header names and *dst (if
 * dst is not NULL) the address it connected to (both left as they were for a LOCAL or UNKNOWN
 * header). listener names the listener in the log line of a refused header.
 */
/* The bytes of the client's IP address (4 or 16), the key of `hash_key: client_ip` in both modes;
 * NULL (and 0) for any other family. */
static inline const void *preamble_peer_ip(const union preamble_peer *peer, size_t *len)
{
    if (peer->sa.sa_family == AF_INET) {
        *len = sizeof(peer->v4.sin_addr);
        return &peer->v4.sin_addr;
    }
    if (peer->sa.sa_family == AF_INET6) {
        *len = sizeof(peer->v6.sin6_addr);
        return &peer->v6.sin6_addr;
    }
    *len = 0;
    return NULL;
}

enum preamble_status preamble_proxy_header(struct conn *c, union preamble_peer *peer,
                                           union preamble_peer *dst, const char *listener);

/* The address the client connected to, for a PROXY header to servers: *dst if a received header
 * set it, else c's local address, looked up once and kept in *dst (AF_UNSPEC until then). NULL
 * if it cannot be known (the header then says UNKNOWN). */
const struct sockaddr *preamble_destination(const struct conn *c, union preamble_peer *dst);

/* Turns c, plain so far (it carried a PROXY header), into a TLS server connection of tls,
 * keeping what the loop knows of its readiness. Returns -1 if memory ran out (logged); the
 * caller closes c. */
int preamble_start_tls(struct conn *c, const struct tls_server *tls, loop_io_fn handler);

/*
 * Advances c's TLS handshake (c from conn_init_tls() or preamble_start_tls()). Completed and
 * failed handshakes are counted in st (TLS versions, resumptions, failures by reason); a client
 * that spoke plain HTTP to the TLS port is told so. DONE, WAIT or CLOSE.
 */
enum preamble_status preamble_handshake(struct conn *c, struct stats *st);

#endif
