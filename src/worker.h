/*
 * worker.h - a worker thread and everything it owns.
 *
 * fulcrum runs N identical workers. Each has its own event loop, its own SO_REUSEPORT listening
 * socket per listener (the kernel spreads new connections over them), its own client connections,
 * backend connection pools, buffer pool and balancer state. Workers share only the snapshot
 * (immutable), the servers' atomic state, and the process-wide connection count.
 *
 *     main thread: signals, start/stop
 *          |  loop_wake()
 *     +----v-----+   +----------+
 *     | worker 0 |   | worker 1 |  ...   each: loop + listeners + sessions + upstream pools
 *     +----------+   +----------+
 *
 * A worker stops by closing its listeners, letting its connections finish their current request,
 * and leaving its loop when none are left (or when the main thread says time is up).
 */
#ifndef FULCRUM_WORKER_H
#define FULCRUM_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "buf.h"
#include "http1.h"
#include "loop.h"
#include "snapshot.h"

struct session;
struct upstream;
struct reqlog;
struct stats;
struct accesslog_buf;

/* Per-thread state of one server. */
struct server_local {
    struct upstream *idle_head; /* idle connections, most recently used first */
    struct upstream *idle_tail;
    unsigned nidle;
};

struct listen_sock {
    struct loop_io io;
    struct worker *w;
    unsigned listener; /* index in the snapshot */
    bool in_epoll;
    struct listen_sock *next_dead;
};

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

    /* object recycling: freed objects wait in dead_* until the epoll batch is over */
    struct session *spare_sessions, *dead_sessions;
    unsigned nspare_sessions;
    struct upstream *spare_upstreams, *dead_upstreams;
    unsigned nspare_upstreams;

    struct reqlog *spare_reqlogs; /* access log copies of request heads, recycled */
    struct stats *stats;          /* this thread's counters (stats.h) */
    struct accesslog_buf *alog;   /* this thread's access log lines (accesslog.h) */

    struct session *sessions; /* every open client connection, for stop */
    unsigned nsessions;

    struct server_local *servers; /* indexed by server slot */
    unsigned nservers;

    char *scratch;              /* one buffer's worth: heads are rebuilt here */
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
};

/* Creates worker id for snap: loop, listening sockets, per-thread state. Returns NULL on error
 * (logged). */
struct worker *worker_new(unsigned id, struct snapshot *snap);
void worker_free(struct worker *w);
int worker_start(struct worker *w);

/* From the main thread: stop accepting and finish (graceful), or close everything now. */
void worker_request_stop(struct worker *w);
void worker_request_halt(struct worker *w);
void worker_join(struct worker *w);

/* Process-wide: every worker (for wake-ups) and the client connection limit. */
void worker_set_all(struct worker **workers, unsigned n, unsigned max_connections);
/* A reload changed limits.max_connections. */
void worker_set_max_connections(unsigned max);
/* A client connection closed on w: frees a slot and wakes a worker that paused accepting. */
void worker_connection_closed(struct worker *w);

/* The balancer state of pool for this thread. */
static inline void *worker_lb_state(struct worker *w, const struct pool *pool)
{
    return pool->lb_state[w->id];
}

/*
 * From the control thread: makes snap the snapshot that new connections of w use, at w's next
 * loop iteration (the worker takes its own reference). A snapshot offered before and not yet
 * taken is replaced.
 */
void worker_offer(struct worker *w, struct snapshot *snap);

/* Can a worker take conf without a restart (its buffers are sized for the old limits)? */
bool worker_can_adopt(const struct worker *w, const struct conf *conf, char *why, size_t len);
static inline struct server_local *worker_server(struct worker *w, const struct server *s)
{
    return &w->servers[s->slot];
}

#endif
