/*
 * env.h - the types an HTTP/2 session is made from (session.h): its limits, what it borrows from
 * its thread, and what it asks of its owner. Apart so that the session's inner modules
 * (stream.h) and its public face share them without including each other.
 */
#ifndef FULCRUM_H2_ENV_H
#define FULCRUM_H2_ENV_H

#include <stdint.h>

#include "core/buf.h"
#include "core/conn.h"
#include "core/loop.h"
#include "http/http1.h"

struct h2_session;
struct h2_local;

/* The limits of one connection (the listener's http2 mapping). */
struct h2_limits {
    uint32_t max_concurrent_streams;
    uint32_t max_header_list_size; /* RFC 9113 counting: name + value + 32 per field */
    uint32_t stream_idle_ms;       /* no frame either way on an open stream */
    uint32_t idle_ms;              /* no open stream */
};

/* What a session borrows from the thread it runs in; all of it outlives the session. */
struct h2_env {
    struct loop *loop;
    struct buf_pool *bufs;             /* heads, response bodies, reads and writes */
    const struct http1_limits *limits; /* for the response heads the proxy writes */
    struct http1_field *const *fields; /* the thread's field array (it may be replaced) */
    struct h2_local *local;            /* h2_local_new() */
};

/* What the session asks of its owner (the proxy). */
struct h2_host {
    void *ctx;
    /* A stream's request is ready to be read: returns the connection its user drives (with
     * io.handler set; the session sets everything else), or NULL to refuse the stream. */
    struct conn *(*open_stream)(void *ctx);
    /* A request was answered here, without a user (400: malformed; 431: its header list is
     * larger than allowed); method and target as far as they are known (NULL otherwise). */
    void (*answered)(void *ctx, unsigned status, const char *method, size_t method_len,
                     const char *target, size_t target_len);
    /* The client connection has ended and no stream is in use any more: the last call. */
    void (*closed)(void *ctx);
};

#endif
