/*
 * session.h - HTTP/2 to clients: one client connection served by an nghttp2 server session, each
 * of whose streams presents itself to the request path as a connection of its own.
 *
 *   client conn (TCP or TLS) --frames--> nghttp2 session --> stream 1: struct conn --> session
 *                            <--frames--                 --> stream 3: struct conn --> session
 *
 * nghttp2 does the framing, HPACK and the stream state machine. This layer moves bytes between
 * the client connection and the session (session.c), and gives each stream a transport
 * (struct conn_ops, stream.c) whose recv() yields the request as an HTTP/1.1 head and body
 * (request.h) and whose sendv() takes the HTTP/1.1 response the proxy writes and turns it into
 * HEADERS and DATA (response.h). So a stream goes through exactly what an HTTP/1.1 request goes
 * through, above this layer.
 *
 * Flow control is backpressure, both ways:
 *   - A stream's window (65535 bytes, the protocol's default) is reopened only as the proxy reads
 *     body bytes out of the stream (nghttp2_session_consume with automatic window updates off),
 *     so a client can never have more than one window of body buffered per stream.
 *   - DATA is produced only as the client's windows allow; what the proxy wrote waits in one
 *     buffer per stream, and a full buffer makes the stream unwritable (CONN_BLOCKED), so the
 *     proxy stops reading the server.
 *
 * Ownership: the session owns the client connection from h2_session_start() on, and its streams.
 * A stream's struct conn belongs to its user (the proxy's session); closing that conn lets go of
 * the stream, which the session frees once nghttp2 is done with it too. When the client
 * connection ends, every stream still in use is told (LOOP_HUP | LOOP_ERR) and its user closes it.
 */
#ifndef FULCRUM_H2_SESSION_H
#define FULCRUM_H2_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/conn.h"
#include "h2/env.h"

/* The thread's share: spare streams, request body buffers, nghttp2's callbacks. */
struct h2_local *h2_local_new(void);
void h2_local_free(struct h2_local *local);

/*
 * Takes over c, which has just agreed on HTTP/2 (ALPN h2, or the h2c preface), with early bytes
 * already read from it (the start of the preface, for h2c). On success c has been moved into the
 * session, which watches it in env->loop: the caller forgets c (no close). On NULL (out of
 * memory, logged) the caller still owns c and closes it.
 */
struct h2_session *h2_session_start(const struct h2_env *env, struct conn *c, const char *early,
                                    size_t early_len, const struct h2_limits *lim,
                                    const struct h2_host *host);

/* A reload or a graceful stop: GOAWAY now (open streams finish), and the connection closes when
 * none is left, or at the latest grace_ms from now. */
void h2_session_goaway(struct h2_session *h2, uint32_t grace_ms);

/* Closes at once: streams in use are reset and told. */
void h2_session_close(struct h2_session *h2);

/* Streams opened so far (for tests and counters). */
uint64_t h2_session_streams(const struct h2_session *h2);

#endif
