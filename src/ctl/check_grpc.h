/*
 * check_grpc.h - the gRPC health check's conversation (health_check: {type: grpc}): one call of
 * grpc.health.v1.Health/Check over HTTP/2, as bytes to send and bytes received, with no I/O of
 * its own. check.c moves the bytes over the check's connection (h2c with prior knowledge, or TLS
 * with ALPN h2) and asks for a verdict as they come.
 *
 *   grpc_check_new() --> pending(): preface, SETTINGS, HEADERS and DATA of the call --> server
 *   server bytes ------> feed() --> MORE (keep reading), PASS (SERVING) or FAIL (why)
 *                        (and pending() again: SETTINGS and PING acknowledgements)
 *
 * nghttp2 does the framing, HPACK and stream states; this file builds the request (a
 * HealthCheckRequest {service}) and reads the answer: HTTP status 200, then grpc-status 0 in the
 * trailers and a HealthCheckResponse whose status is SERVING (1). Anything else fails, with the
 * reason: "NOT_SERVING", "grpc-status 5 (NOT_FOUND): unknown service", "HTTP status 404", ...
 */
#ifndef FULCRUM_CHECK_GRPC_H
#define FULCRUM_CHECK_GRPC_H

#include <stddef.h>
#include <stdint.h>

struct grpc_check;

enum grpc_check_verdict {
    GRPC_CHECK_MORE, /* no verdict yet: feed more bytes */
    GRPC_CHECK_PASS,
    GRPC_CHECK_FAIL,
};

/* A call asking about service ("" for the server as a whole), with :authority authority. NULL
 * if memory ran out. */
struct grpc_check *grpc_check_new(const char *authority, const char *service);
void grpc_check_free(struct grpc_check *g);

/* The bytes to send now (valid until the next call on g); 0 when there are none. */
size_t grpc_check_pending(struct grpc_check *g, const uint8_t **out);
/* n of the pending bytes went out. */
void grpc_check_sent(struct grpc_check *g, size_t n);

/* Bytes the server sent (len 0: it closed the connection). Once the answer is PASS or FAIL it
 * stays so; why then says what decided it. */
enum grpc_check_verdict grpc_check_feed(struct grpc_check *g, const uint8_t *data, size_t len,
                                        char *why, size_t whylen);

#endif
