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
 *
 * PROXY protocol: for a pool that sends it, the user of a new connection calls
 * upstream_send_proxy_header() right after upstream_connect(). The header is written by
 * upstream_finish_connect() as soon as the TCP connect completes, before any other byte and
 * before a TLS handshake starts, so the connection stays "connecting" until the header is out.
 * Such a connection names one client to its server for its whole life, so it is private to the
 * session that opened it: upstream_park() closes it instead of putting it in the shared idle pool
 * (docs/tcp.md says what that costs).
 *
 * HTTP/2 (a `protocol: h2` pool): the upstream of a request is a stream on a shared connection to
 * its server, opened with upstream_open_stream() (upstream_h2.c has the connections). The proxy
 * drives it like any other: upstream_finish_connect() while its connection is being set up, then
 * an HTTP/1.1 request written and an HTTP/1.1 response read (h2/client.h); parking or closing it
 * ends the stream and leaves the connection to other streams.
 */
#ifndef FULCRUM_UPSTREAM_H
#define FULCRUM_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/conn.h"
#include "core/freelist.h"
#include "core/loop.h"
#include "core/proxy_proto.h"
#include "servers/pool.h"

struct tls_client;
struct h2_link;

struct worker;

struct upstream {
    struct conn conn;             /* first: the loop's pointer is the upstream's */
    struct worker *worker;        /* the thread that created it, and the only one that touches it */
    struct server *server;        /* referenced for the connection's lifetime */
    void *owner;                  /* the session using it (proxy.c's or tcp.c's); NULL while idle */
    struct upstream *prev, *next; /* idle list */
    struct freelist_node spare;   /* on the thread's spares */
    uint64_t idle_since_ms;
    struct h2_link *link; /* an HTTP/2 stream's connection (upstream_h2.c); NULL for the others */
    uint32_t requests;    /* requests carried so far */
    bool connecting;      /* TCP connect, then (for a TLS pool) the handshake, under way */
    bool handshaking;     /* TCP is up; the TLS handshake is not done yet */
    bool reused;          /* taken from the idle pool for the current request */
    bool private_conn;    /* carries one client's PROXY header: never parked for others */
    bool on_wait_list;    /* an HTTP/2 stream waiting for its connection (prev, next) */
    bool stream_failed;   /* ... which could not be opened on it when it came up */
    uint8_t preamble_len, preamble_sent; /* the PROXY header, and how much of it went */
    char preamble[PP_WRITE_MAX];
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
 * A stream to s (a server of a `protocol: h2` pool) for one request: on a connection of this
 * thread to s that has room for it, or on a new one (always when fresh is set: the request is
 * being tried again after a stream on a used connection failed). idle_ms is how long a
 * connection without streams stays open. The upstream is "connecting" until its connection is up;
 * handler is called then, and whenever the stream may be read or written. Returns NULL with *err
 * set (errno) when no connection could be started.
 */
struct upstream *upstream_open_stream(struct worker *w, struct server *s,
                                      const struct tls_client *tls, loop_io_fn handler, bool fresh,
                                      uint32_t idle_ms, int *err);

/*
 * Makes u, just returned by upstream_connect() and before anything else was done with it, start
 * with a PROXY protocol header (version 1 or 2) saying the connection came from src to dst (the
 * client's address, and the address it connected to). When either is NULL or their families
 * differ or are not IP, the header says "no addresses" (v1 UNKNOWN, v2 LOCAL). The header is
 * copied: src and dst are only borrowed for the call. u becomes private (see above) and is
 * "connecting" until the header is written. Returns 0, or -1 with errno EINVAL if version is not
 * 1 or 2 or u already carried bytes (then nothing changed).
 */
int upstream_send_proxy_header(struct upstream *u, int version, const struct sockaddr *src,
                               const struct sockaddr *dst);

/*
 * Advances a connection that is connecting (TCP connect, then the PROXY header if any, then for a
 * TLS pool the handshake): CONN_DONE once it can carry a request (connected,
 * and for TLS, handshake done); CONN_BLOCKED while waiting; CONN_ERROR with *err (errno) and,
 * for a TLS failure, *why (the certificate's problem, or the handshake's) set.
 */
enum conn_status upstream_finish_connect(struct upstream *u, int *err, const char **why);

/* Puts a connection that finished a response cleanly back in its server's idle pool; a private
 * one (PROXY header sent) is closed instead. */
void upstream_park(struct worker *w, struct upstream *u);

/* Closes; reset = true sends an RST (the exchange was cut short). */
void upstream_close(struct worker *w, struct upstream *u, bool reset);

/* Closes idle connections older than max_idle_ms; called periodically. */
void upstream_expire_idle(struct worker *w, uint32_t max_idle_ms);

struct snapshot;
/* Closes this thread's idle connections to servers snap no longer has (a reload, the admin API
 * or discovery removed them): nothing would take them again before they expire. Connections to
 * them still busy with a request are closed when it ends, instead of being parked. */
void upstream_close_idle_removed(struct worker *w, const struct snapshot *snap);

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
