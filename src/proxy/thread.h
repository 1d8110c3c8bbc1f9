/*
 * thread.h - the per-thread context of the request path: struct worker, what one worker thread
 * owns, as the modules that run in it (proxy, tcp, relay, upstream) see it.
 *
 * The request path reads and writes it without locks: only its own thread touches it. worker.c
 * creates it and runs the thread (listeners, start, stop, snapshots); proxy.c keeps its sessions
 * here and upstream.c its idle connection pools, without either knowing worker.c. What a worker
 * must do for them it offers as a hook (on_client_closed), so the request path never calls up.
 */
#ifndef FULCRUM_THREAD_H
#define FULCRUM_THREAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "core/buf.h"
#include "core/loop.h"
#include "http/http1.h"
#include "lb/snapshot.h"

struct listen_sock;
struct proxy_local;
struct upstream_local;
struct relay_local;
struct tcp_local;
struct h2front_local;
struct stats;
struct accesslog_buf;

struct worker {
    unsigned id;
    pthread_t thread;
    struct loop *loop;
    struct buf_pool bufs;
    struct snapshot *snap; /* the snapshot new connections start on */

    struct listen_sock **socks; /* by listener index of snap; each on its own, as epoll has it */
    unsigned nsocks;
    struct listen_sock *dead_socks;       /* closed by a reload; freed between epoll batches */
    _Atomic(struct snapshot *) next_snap; /* offered by the control thread (worker_offer) */

    struct stats *stats;        /* this thread's counters (stats.h) */
    struct accesslog_buf *alog; /* this thread's access log lines (accesslog.h) */

    /* Each module's own per-thread state, opaque here: sessions and their spares (proxy.c), idle
     * backend connections per server and their spares (upstream.c), the pipes of byte relays
     * (relay.c), TCP mode sessions and their spares (tcp.c), HTTP/2 client connections
     * (h2front.c). */
    struct proxy_local *proxy;
    struct upstream_local *upstream;
    struct relay_local *relay;
    struct tcp_local *tcp;
    struct h2front_local *h2front;

    char *scratch;              /* one buffer's worth: heads are rebuilt here */
    char *path_scratch;         /* one buffer's worth: the normalised path routing looks at */
    struct http1_field *fields; /* the parser's field array (limits.max_fields entries) */
    struct http1_limits limits;
    uint32_t rewrite_reserve; /* bytes a head may grow by when rewritten */

    bool stopping;
    bool accept_backoff;        /* out of file descriptors: listeners paused for a moment */
    _Atomic bool paused_at_max; /* listeners paused: the process is at max_connections */
    _Atomic int stop_request;   /* set by the main thread: 1 finish and stop, 2 stop now */
    _Atomic bool exited;        /* the thread left its loop */
    struct loop_timer housekeeping;
    struct loop_timer accept_retry;

    /* Set by worker.c: a client connection of this thread closed (frees a connection slot). */
    void (*on_client_closed)(struct worker *w);
};

/* The balancer state of pool for this thread. */
static inline void *worker_lb_state(struct worker *w, const struct pool *pool)
{
    return pool->lb_state[w->id];
}

#endif
