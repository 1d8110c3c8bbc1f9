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

#include <stdbool.h>
#include <stddef.h>

#include "proxy/thread.h"

struct listen_sock {
    struct loop_io io;
    struct worker *w;
    unsigned listener; /* index in the snapshot */
    bool in_epoll;
    struct listen_sock *next_dead;
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

/*
 * From the control thread: makes snap the snapshot that new connections of w use, at w's next
 * loop iteration (the worker takes its own reference). A snapshot offered before and not yet
 * taken is replaced.
 */
void worker_offer(struct worker *w, struct snapshot *snap);

/* Can a worker take conf without a restart (its buffers are sized for the old limits)? */
bool worker_can_adopt(const struct worker *w, const struct conf *conf, char *why, size_t len);

#endif
