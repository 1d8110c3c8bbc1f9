/*
 * proxy.h - client connections and the life of a request (the state machine is in proxy.c).
 */
#ifndef FULCRUM_PROXY_H
#define FULCRUM_PROXY_H

#include <sys/socket.h>

#include "proxy/preamble.h"

struct worker;
struct snapshot;

/* Takes over an accepted client socket on listener (index in the worker's snapshot). */
void proxy_accept(struct worker *w, unsigned listener, int fd, const struct sockaddr *peer,
                  socklen_t peer_len);

/* A session for one stream of an HTTP/2 client connection (h2front.h's h2front_open_fn). */
struct conn *proxy_open_stream(struct worker *w, struct snapshot *snap, unsigned listener,
                               const union preamble_peer *peer, const union preamble_peer *dst,
                               const char *client_subject);

/* Graceful stop: idle connections close now, busy ones after their current response. */
void proxy_stop(struct worker *w);
/* Closes every client connection now (stop deadline reached). */
void proxy_close_all(struct worker *w);

/* Between epoll batches: makes sessions closed during the batch reusable. */
void proxy_recycle(struct worker *w);

/* This module's per-thread state (w->proxy): created with the worker, freed with it. */
struct proxy_local *proxy_local_new(void);
void proxy_local_free(struct worker *w);
/* Client connections open on w (a stopping worker leaves when none is left). */
unsigned proxy_open_sessions(const struct worker *w);

#endif
