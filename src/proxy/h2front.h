/*
 * h2front.h - the proxy's HTTP/2 client connections: a client connection that agreed on HTTP/2
 * (ALPN h2 on a TLS listener, or the h2c preface on a plain one with h2c: true) is handed here by
 * its session (proxy.c), becomes an h2 session (h2/session.h), and each of its streams becomes a
 * session of proxy.c of its own, which carries one request through the same routes, balancing,
 * retries, header rules, access log and counters as an HTTP/1.1 request.
 *
 *   proxy.c session --ALPN h2 / preface--> h2front --stream--> proxy.c session (one request)
 *                                                   --stream--> proxy.c session
 *
 * An h2front keeps what its streams' sessions start from: the snapshot and listener it was
 * accepted on, the client's address (or the one its PROXY header named) and its certificate's
 * subject. It holds the connection's slot of max_connections until it closes.
 */
#ifndef FULCRUM_H2FRONT_H
#define FULCRUM_H2FRONT_H

#include <stddef.h>
#include <stdint.h>

#include "core/conn.h"
#include "proxy/preamble.h"

struct worker;
struct snapshot;
struct h2front_local;

/* proxy.c's: a new session for one stream, with what it starts from; NULL if memory ran out. */
typedef struct conn *(*h2front_open_fn)(struct worker *w, struct snapshot *snap, unsigned listener,
                                        const union preamble_peer *peer,
                                        const union preamble_peer *dst, const char *client_subject);

/*
 * Takes over c (listener's, in snap) as an HTTP/2 connection; early: bytes already read from it.
 * Returns 0 (c has moved: the caller forgets it, without closing it or freeing its slot), or -1
 * (out of memory, logged: the caller still owns c).
 */
int h2front_start(struct worker *w, struct snapshot *snap, unsigned listener, struct conn *c,
                  const char *early, size_t early_len, const union preamble_peer *peer,
                  const union preamble_peer *dst, const char *client_subject, h2front_open_fn open);

/* GOAWAY to every HTTP/2 client of w (a reload, a graceful stop); each closes once its open
 * streams are done, or grace_ms from now at the latest. */
void h2front_goaway_all(struct worker *w, uint32_t grace_ms);
/* Closes every HTTP/2 client connection of w now. */
void h2front_close_all(struct worker *w);
/* HTTP/2 client connections open on w. */
unsigned h2front_open_count(const struct worker *w);

/* This module's per-thread state (w->h2front), made once the worker's loop, buffers and field
 * array exist. */
struct h2front_local *h2front_local_new(struct worker *w);
void h2front_local_free(struct worker *w);

#endif
