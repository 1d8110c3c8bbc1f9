/*
 * upstream.h - connections to backend servers, and each thread's pool of idle ones.
 *
 * An upstream belongs either to one session (owner != NULL: it carries that session's request,
 * or a TCP mode session's byte stream, which never goes back to a pool) or to its server's idle
 * list on the worker that created it; never to two things at once, and
 * never to another thread. While idle it holds no buffer. Any event on an idle connection (the
 * server closed it, or sent bytes nobody asked for) closes it, so a connection the server closed
 * is not handed out again. The race that remains, a close that crosses our next request on the
 * wire, is handled by the proxy retrying on a fresh connection.
 */
#ifndef FULCRUM_UPSTREAM_H
#define FULCRUM_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/conn.h"
#include "core/freelist.h"
#include "core/loop.h"
#include "servers/pool.h"

struct tls_client;

struct worker;

struct upstream {
    struct conn conn;             /* first: the loop's pointer is the upstream's */
    struct worker *worker;        /* the thread that created it, and the only one that touches it */
    struct server *server;        /* referenced for the connection's lifetime */
    void *owner;                  /* the session using it (proxy.c's or tcp.c's); NULL while idle */
    struct upstream *prev, *next; /* idle list, or the thread's list of closed ones */
    struct freelist_node spare;   /* on the thread's spares */
    uint64_t idle_since_ms;
    uint32_t requests; /* requests carried so far */
    bool connecting;   /* TCP connect, then (for a TLS pool) the handshake, under way */
    bool handshaking;  /* TCP is up; the TLS handshake is not done yet */
    bool reused;       /* taken from the idle pool for the current request */
};

/* Most recently used idle connection to s on this thread, or NULL. */
struct upstream *upstream_take_idle(struct worker *w, struct server *s);

/*
 * Starts a connection to s, calling handler on its events; over TLS if tls is not NULL (the
 * pool's tls/client.h context), resuming this thread's last session with s. Returns NULL with
 * *err set (errno) when the connection failed at once.
 */
struct upstream *upstream_connect(struct worker *w, struct server *s, const struct tls_client *tls,
                                  loop_io_fn handler, int *err);

/*
 * Advances a connection that is connecting: CONN_DONE once it can carry a request (connected,
 * and for TLS, handshake done); CONN_BLOCKED while waiting; CONN_ERROR with *err (errno) and,
 * for a TLS failure, *why (the certificate's problem, or the handshake's) set.
 */
enum conn_status upstream_finish_connect(struct upstream *u, int *err, const char **why);

/* Puts a connection that finished a response cleanly back in its server's idle pool. */
void upstream_park(struct worker *w, struct upstream *u);

/* Closes; reset = true sends an RST (the exchange was cut short). */
void upstream_close(struct worker *w, struct upstream *u, bool reset);

/* Closes idle connections older than max_idle_ms; called periodically. */
void upstream_expire_idle(struct worker *w, uint32_t max_idle_ms);

/* Closes every idle connection of this thread (stop). */
void upstream_close_all_idle(struct worker *w);

/* Returns connections closed during the batch to the spares; called between epoll batches. */
void upstream_recycle(struct worker *w);

/* This module's per-thread state (w->upstream): created with the worker, grown when servers are
 * added (nslots: server_slot_limit()), freed with the worker. */
struct upstream_local *upstream_local_new(void);
int upstream_local_grow(struct worker *w, unsigned nslots);
void upstream_local_free(struct worker *w);

#endif
