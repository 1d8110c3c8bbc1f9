/*
 * tcp.h - TCP mode (L4): client connections of `mode: tcp` listeners, relayed byte for byte to a
 * server of the listener's pool (the session's phases are in tcp.c).
 *
 * worker.c hands each accepted connection to tcp_accept() or proxy_accept() by its listener's
 * mode, and stops, closes and recycles TCP sessions next to HTTP ones.
 */
#ifndef FULCRUM_TCP_H
#define FULCRUM_TCP_H

#include <sys/socket.h>

struct worker;

/* Takes over an accepted client socket on a tcp listener (index in the worker's snapshot). */
void tcp_accept(struct worker *w, unsigned listener, int fd, const struct sockaddr *peer,
                socklen_t peer_len);

/* Graceful stop: connections still in their PROXY header or TLS handshake close now (nothing was
 * relayed yet); the others go on until they end by themselves or tcp_close_all(). */
void tcp_stop(struct worker *w);
/* Closes every TCP connection now, with a reset on both sides (stop deadline reached). */
void tcp_close_all(struct worker *w);

/* Between epoll batches: makes sessions closed during the batch reusable. */
void tcp_recycle(struct worker *w);

/* This module's per-thread state (w->tcp): created with the worker, freed with it. */
struct tcp_local *tcp_local_new(void);
void tcp_local_free(struct worker *w);
/* TCP connections open on w (a stopping worker leaves when none is left). */
unsigned tcp_open_sessions(const struct worker *w);

#endif
