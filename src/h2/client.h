/*
 * client.h - HTTP/2 to servers: one connection to a server carries many requests at once, each
 * on a stream that its user (the proxy, for a `protocol: h2` pool) drives like any backend
 * connection: it writes an HTTP/1.1 request and reads an HTTP/1.1 response.
 *
 *   proxy session A: struct conn --HTTP/1.1 request--> stream 1 --\
 *   proxy session B: struct conn --HTTP/1.1 request--> stream 3 ----> nghttp2 client --> server
 *                                <--HTTP/1.1 response--         --/   session (TCP or TLS)
 *
 * It is the server role of session.h turned around, on the same session, streams and
 * transport: the request head the user writes becomes HEADERS (response.h's
 * h2_request_fields), its body DATA as the server's windows allow, chunked trailers a trailing
 * HEADERS; the response's header block becomes an HTTP/1.1 head (request.h's h2_reply_*), its
 * DATA the body, with chunked framing unless the server gave a Content-Length, so that the
 * trailers (gRPC's grpc-status and grpc-message) reach the user as a chunked body's trailers.
 * Flow control is backpressure as in session.h: a stream's window reopens only as the user reads
 * the response.
 *
 * Interim (1xx) responses are not passed on: the final one follows on the same stream.
 */
#ifndef FULCRUM_H2_CLIENT_H
#define FULCRUM_H2_CLIENT_H

#include <stdbool.h>

#include "core/conn.h"
#include "h2/env.h"

struct h2_session;

/*
 * Takes over c, connected to a server that agreed on HTTP/2 (ALPN h2 over TLS, or by prior
 * knowledge): the preface and our SETTINGS go at once. lim->max_header_list_size bounds a
 * response's header list, lim->idle_ms how long the connection stays open without a stream
 * (then GOAWAY, and host->closed); lim->stream_idle_ms resets a stream silent that long. As with
 * h2_session_start(), c is moved into the session on success; on NULL the caller still owns it.
 */
struct h2_session *h2_client_start(const struct h2_env *env, struct conn *c,
                                   const struct h2_limits *lim, const struct h2_host *host);

/* How many more streams the server takes now (its SETTINGS_MAX_CONCURRENT_STREAMS, less the
 * streams open); 0 once either side sent GOAWAY or the connection ended. */
unsigned h2_client_room(const struct h2_session *h2);

/* Has the connection carried a stream before? (a failure on it may be its server closing it) */
bool h2_client_used(const struct h2_session *h2);

/*
 * Opens a stream for conn, its user's connection, which becomes the stream's transport (like
 * h2_stream_attach: the user keeps io.handler, and is called when it may read or write). Its
 * first write must be a whole HTTP/1.1 request head. Returns 0, or -1 (out of memory).
 */
int h2_client_open_stream(struct h2_session *h2, struct conn *conn);

#endif
