/*
 * grpc.h - what the proxy needs to know of gRPC (over HTTP/2, "application/grpc" requests): the
 * client's deadline (grpc-timeout), and how to answer with a gRPC status when fulcrum itself
 * fails a call, since a gRPC client reads the status from grpc-status, not from the HTTP status
 * (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md and http-grpc-status-mapping).
 */
#ifndef FULCRUM_HTTP_GRPC_H
#define FULCRUM_HTTP_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http1.h"

enum grpc_status {
    GRPC_OK = 0,
    GRPC_UNKNOWN = 2,
    GRPC_DEADLINE_EXCEEDED = 4,
    GRPC_PERMISSION_DENIED = 7,
    GRPC_RESOURCE_EXHAUSTED = 8,
    GRPC_UNIMPLEMENTED = 12,
    GRPC_INTERNAL = 13,
    GRPC_UNAVAILABLE = 14,
    GRPC_UNAUTHENTICATED = 16,
};

/* Is the request a gRPC call? (Content-Type application/grpc, or application/grpc+proto etc.) */
bool grpc_request(const char *head, const struct http1_msg *msg);

/*
 * The request's grpc-timeout in milliseconds, rounded up (1 to 8 digits and a unit: H, M, S, m,
 * u or n). false when there is none, or it is malformed (then it is ignored, as a server would
 * treat it as no deadline).
 */
bool grpc_timeout_ms(const char *head, const struct http1_msg *msg, uint64_t *ms);

/* The gRPC status a client would infer from an HTTP status (gRPC's own mapping). */
enum grpc_status grpc_status_of_http(unsigned http_status);

/*
 * A gRPC "trailers-only" answer as an HTTP/1.1 response head: 200, application/grpc, grpc-status
 * and grpc-message (percent-encoded as the protocol says), no body. extra is more header lines
 * ("Connection: close\r\n"), or "". Returns its length, or 0 if cap is too small.
 */
size_t grpc_reply(char *out, size_t cap, enum grpc_status status, const char *message,
                  const char *extra);

#endif
