/*
 * worker.c - worker threads: listening sockets, accept, adopting a new snapshot, housekeeping.
 *
 * Accept is level-triggered and bounded per event, so one busy listener cannot starve the
 * connections already open. Two conditions pause it:
 *   - the process has max_connections clients: the worker takes its listeners out of epoll, so
 *     new clients wait in the kernel's accept queue; the worker whose connection closes next
 *     wakes every paused worker;
 *   - accept() fails for lack of file descriptors or memory: listeners pause for 100 ms, then
 *     try again, instead of spinning on an error that will not go away by itself.
 *
 * Each accepted connection goes to proxy.c (HTTP) or tcp.c (`mode: tcp`) by its listener's mode;
 * both kinds count against max_connections, and a stop waits for both.
 *
 * A reload reaches a worker as a snapshot offered by the control thread (worker_offer) and a
 * wake-up. The worker adopts it in its own thread, between two events: listeners whose address
 * is unchanged keep their socket (no accept gap), new ones are opened, removed ones closed. Open
 * connections keep the snapshot they started on (proxy.c moves idle ones at their next request).
 */
#include "proxy/worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/container.h"
#include "core/log.h"
#include "proxy/accesslog.h"
#include "proxy/h2front.h"
#include "proxy/proxy.h"
#include "proxy/relay.h"
#include "proxy/tcp.h"
#include "proxy/stats.h"
#include "proxy/upstream.h"

#define ACCEPTS_PER_EVENT 64
#define ACCEPT_BACKOFF_MS 100
#define HOUSEKEEPING_MS   1000
#define LISTEN_BACKLOG    4096
/* Bytes a head may grow by when fulcrum rewrites it (X-Forwarded-* and friends). */
#define REWRITE_RESERVE   1024
#define MAX_SPARE_BUFFERS 256

static struct worker **all_workers;
static unsigned nall_workers;
static _Atomic unsigned max_connections = 10000;
static _Atomic unsigned open_connections;

void worker_set_all(struct worker **workers, unsigned n, unsigned max)
{
    all_workers = workers;
    nall_workers = n;
    atomic_store(&max_connections, max);
}

void worker_set_max_connections(unsigned max)
{
    atomic_store(&max_connections, max);
    for (unsigned i = 0; i < nall_workers; i++) /* a raised limit may unpause someone */
        loop_wake(all_workers[i]->loop);
}

static bool take_connection_slot(void)
{
    unsigned n = atomic_fetch_add(&open_connections, 1);
    if (n < atomic_load_explicit(&max_connections, memory_order_relaxed))
        return true;
    atomic_fetch_sub(&open_connections, 1);
    return false;
}

static bool below_max(void)
{
    return atomic_load(&open_connections) < atomic_load(&max_connections);
}

static void listeners_pause(struct worker *w)
{
    for (unsigned i = 0; i < w->nsocks; i++)
        if (w->socks[i] && w->socks[i]->in_epoll) {
            loop_del(w->loop, &w->socks[i]->io);
            w->socks[i]->in_epoll = false;
        }
}

static void listeners_resume(struct worker *w)
{
    if (w->stopping)
        return;
    for (unsigned i = 0; i < w->nsocks; i++) {
        struct listen_sock *ls = w->socks[i];
        if (ls && !ls->in_epoll && ls->io.fd >= 0) {
            if (loop_add(w->loop, &ls->io, LOOP_LEVEL_IN) == 0)
                ls->in_epoll = true;
            else
                log_error("worker %u: epoll_ctl: %s", w->id, strerror(errno));
        }
    }
}

static bool accepting_paused(const struct worker *w)
{
    return w->accept_backoff || atomic_load(&w->paused_at_max);
}

/* on_client_closed: frees a connection slot and wakes a worker that paused accepting. */
static void client_closed(struct worker *w)
{
    atomic_fetch_sub(&open_connections, 1);
    if (atomic_load_explicit(&w->paused_at_max, memory_order_relaxed)) {
        atomic_store(&w->paused_at_max, false);
        if (!w->accept_backoff)
            listeners_resume(w);
    }
    for (unsigned i = 0; i < nall_workers; i++) {
        struct worker *other = all_workers[i];
        if (other != w && atomic_load_explicit(&other->paused_at_max, memory_order_relaxed))
            loop_wake(other->loop);
    }
}

static void on_accept(struct loop *loop, struct loop_io *io)
{
    struct listen_sock *ls = (struct listen_sock *)io;
    struct worker *w = ls->w;

    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        if (!take_connection_slot()) {
            atomic_store(&w->paused_at_max, true);
            listeners_pause(w);
            /* A connection may have closed between the check and the flag: look again. */
            if (below_max()) {
                atomic_store(&w->paused_at_max, false);
                if (!w->accept_backoff)
                    listeners_resume(w);
            }
            return;
        }
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            if (w->snap->listeners[ls->listener].conf->mode == CONF_MODE_TCP)
                tcp_accept(w, ls->listener, fd, (struct sockaddr *)&peer, len);
            else
                proxy_accept(w, ls->listener, fd, (struct sockaddr *)&peer, len);
            continue;
        }
        atomic_fetch_sub(&open_connections, 1);
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            if (!w->accept_backoff)
                log_warn("worker %u: accept: %s; pausing accepts for %d ms", w->id, strerror(errno),
                         ACCEPT_BACKOFF_MS);
            w->accept_backoff = true;
            listeners_pause(w);
            loop_timer_set(loop, &w->accept_retry, ACCEPT_BACKOFF_MS);
            return;
        }
        log_error("worker %u: accept: %s", w->id, strerror(errno));
        return;
    }
}

static void on_accept_retry(struct loop *loop, struct loop_timer *t)
{
    struct worker *w = container_of(t, struct worker, accept_retry);
    w->accept_backoff = false;
    if (!atomic_load(&w->paused_at_max))
        listeners_resume(w);
}

static void on_housekeeping(struct loop *loop, struct loop_timer *t)
{
    struct worker *w = container_of(t, struct worker, housekeeping);
    upstream_expire_idle(w, w->snap->conf->timeouts.server_idle_ms);
    accesslog_flush(w->alog);
    loop_timer_set(loop, t, HOUSEKEEPING_MS);
}

/* ---- listeners ---- */

static struct listen_sock *open_listener(struct worker *w, const struct conf_listener *cl,
                                         unsigned index)
{
    struct listen_sock *ls = calloc(1, sizeof(*ls));
    if (!ls) {
        log_error("listener %s: out of memory", cl->name);
        return NULL;
    }
    ls->w = w;
    ls->listener = index;
    ls->io.handler = on_accept;
    ls->io.fd = net_listen(&cl->addr, LISTEN_BACKLOG, true);
    if (ls->io.fd < 0) {
        log_error("listener %s: cannot listen on %s: %s", cl->name, cl->bind, strerror(errno));
        free(ls);
        return NULL;
    }
    if (!accepting_paused(w) && !w->stopping) {
        if (loop_add(w->loop, &ls->io, LOOP_LEVEL_IN) < 0) {
            log_error("listener %s: epoll_ctl: %s", cl->name, strerror(errno));
            close(ls->io.fd);
            free(ls);
            return NULL;
        }
        ls->in_epoll = true;
    }
    return ls;
}

/* Closes a listener; its memory waits for the end of the epoll batch (it may have events). */
static void close_listener(struct worker *w, struct listen_sock *ls)
{
    if (ls->io.fd >= 0)
        close(ls->io.fd);
    ls->io.fd = -1;
    ls->io.handler = NULL;
    ls->in_epoll = false;
    ls->next_dead = w->dead_socks;
    w->dead_socks = ls;
}

static void close_listeners(struct worker *w)
{
    for (unsigned i = 0; i < w->nsocks; i++)
        if (w->socks[i]) {
            close_listener(w, w->socks[i]);
            w->socks[i] = NULL;
        }
}

static void free_dead_listeners(struct worker *w)
{
    while (w->dead_socks) {
        struct listen_sock *ls = w->dead_socks;
        w->dead_socks = ls->next_dead;
        free(ls);
    }
}

/*
 * Gives w one listening socket per listener of snap. A socket whose address appears in both the
 * old and the new snapshot is kept as it is, so the kernel never refuses a connection during a
 * reload. Returns -1 if an array could not be allocated (the old sockets are then left alone).
 */
static int sync_listeners(struct worker *w, const struct snapshot *old, struct snapshot *snap)
{
    struct listen_sock **socks = calloc(snap->nlisteners ? snap->nlisteners : 1, sizeof(*socks));
    if (!socks)
        return -1;
    for (unsigned i = 0; i < snap->nlisteners; i++) {
        const struct conf_listener *cl = snap->listeners[i].conf;
        for (unsigned k = 0; old && k < w->nsocks; k++) {
            struct listen_sock *ls = w->socks[k];
            if (ls && net_addr_equal(&old->listeners[k].conf->addr, &cl->addr)) {
                socks[i] = ls;
                ls->listener = i;
                w->socks[k] = NULL;
                break;
            }
        }
        if (!socks[i] && !w->stopping)
            socks[i] = open_listener(w, cl, i);
    }
    close_listeners(w); /* whatever the new snapshot did not take */
    free(w->socks);
    w->socks = socks;
    w->nsocks = snap->nlisteners;
    return 0;
}

/* ---- snapshots ---- */

/* Per-server state (idle pools) for every server created so far, new ones included. */
static int grow_server_table(struct worker *w)
{
    return upstream_local_grow(w, server_slot_limit());
}

/* The parser's rule for request field names with '_', from the configuration. */
static uint8_t underscore_rule(const struct conf *conf)
{
    switch (conf->http.underscores_in_headers) {
    case CONF_UNDERSCORES_ALLOW:
        return HTTP1_UNDERSCORES_ALLOW;
    case CONF_UNDERSCORES_REJECT:
        return HTTP1_UNDERSCORES_REJECT;
    default:
        return HTTP1_UNDERSCORES_DROP;
    }
}

bool worker_can_adopt(const struct worker *w, const struct conf *conf, char *why, size_t len)
{
    const struct conf_limits *lim = &conf->limits;
    if (lim->max_header_bytes + 2 * REWRITE_RESERVE > w->bufs.size) {
        snprintf(why, len,
                 "limits.max_header_bytes %u needs larger buffers than the running process has "
                 "(at most %u without a restart)",
                 lim->max_header_bytes, w->bufs.size - 2 * REWRITE_RESERVE);
        return false;
    }
    return true;
}

static void adopt(struct worker *w, struct snapshot *snap)
{
    const struct conf_limits *lim = &snap->conf->limits;
    struct snapshot *old = w->snap;

    if (grow_server_table(w) < 0 || sync_listeners(w, old, snap) < 0) {
        log_error("worker %u: out of memory: keeping the previous configuration", w->id);
        snapshot_unref(snap);
        return;
    }
    if (lim->max_headers != w->limits.max_fields) {
        struct http1_field *fields = calloc(lim->max_headers, sizeof(*fields));
        if (fields) {
            free(w->fields);
            w->fields = fields;
            w->limits.max_fields = lim->max_headers;
        }
    }
    w->limits.max_head_bytes = lim->max_header_bytes;
    w->limits.underscores = underscore_rule(snap->conf);
    w->snap = snap; /* the offer's reference becomes the worker's */
    upstream_close_idle_removed(w, snap);
    /* After a reload, HTTP/2 clients reconnect to the new configuration (their open streams
     * finish first). A rebuild of the same configuration (servers added through the API or
     * discovered) changes nothing they were told. */
    if (old && old->conf != snap->conf)
        h2front_goaway_all(w, snap->conf->shutdown_timeout_ms);
    snapshot_unref(old);
}

void worker_offer(struct worker *w, struct snapshot *snap)
{
    snapshot_ref(snap);
    struct snapshot *previous = atomic_exchange(&w->next_snap, snap);
    if (previous) /* never taken: the newer one replaces it */
        snapshot_unref(previous);
    loop_wake(w->loop);
}

/* ---- the thread ---- */

static void on_wake(struct loop *loop, void *arg)
{
    struct worker *w = arg;
    struct snapshot *next = atomic_exchange(&w->next_snap, NULL);
    if (next)
        adopt(w, next);
    int stop = atomic_load(&w->stop_request);
    if (stop && !w->stopping) {
        w->stopping = true;
        close_listeners(w);
        upstream_close_all_idle(w);
        proxy_stop(w);
        tcp_stop(w);
    }
    if (stop == 2) {
        proxy_close_all(w);
        tcp_close_all(w);
    }
    if (!w->stopping && atomic_load(&w->paused_at_max) && below_max()) {
        atomic_store(&w->paused_at_max, false);
        if (!w->accept_backoff)
            listeners_resume(w);
    }
}

static void before_poll(struct loop *loop, void *arg)
{
    struct worker *w = arg;
    proxy_recycle(w);
    tcp_recycle(w);
    upstream_recycle(w);
    free_dead_listeners(w);
    if (w->stopping && proxy_open_sessions(w) == 0 && tcp_open_sessions(w) == 0)
        loop_stop(loop);
}

struct worker *worker_new(unsigned id, struct snapshot *snap)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (!w) {
        log_error("worker %u: out of memory", id);
        return NULL;
    }
    const struct conf_limits *lim = &snap->conf->limits;
    /* Room for the largest head allowed, plus what rewriting may add, in whole pages. */
    uint32_t bufsize = (lim->max_header_bytes + 2 * REWRITE_RESERVE + 4095) & ~4095u;

    w->id = id;
    w->on_client_closed = client_closed;
    w->limits.max_head_bytes = lim->max_header_bytes;
    w->limits.max_fields = lim->max_headers;
    w->limits.underscores = underscore_rule(snap->conf);
    w->rewrite_reserve = REWRITE_RESERVE;
    buf_pool_init(&w->bufs, bufsize, MAX_SPARE_BUFFERS);
    w->loop = loop_new();
    w->scratch = malloc(bufsize);
    w->path_scratch = malloc(bufsize);
    w->fields = calloc(lim->max_headers, sizeof(*w->fields));
    w->stats = stats_new();
    w->alog = accesslog_buf_new();
    w->proxy = proxy_local_new();
    w->upstream = upstream_local_new();
    w->relay = relay_local_new();
    w->tcp = tcp_local_new();
    if (w->loop)
        w->h2front = h2front_local_new(w);
    if (!w->loop || !w->scratch || !w->path_scratch || !w->fields || !w->stats || !w->alog ||
        !w->proxy || !w->upstream || !w->relay || !w->tcp || !w->h2front ||
        grow_server_table(w) < 0) {
        log_error("worker %u: out of memory", id);
        worker_free(w);
        return NULL;
    }
    w->limits.underscore_drops = &w->stats->underscore_fields_dropped;
    if (sync_listeners(w, NULL, snap) < 0) {
        worker_free(w);
        return NULL;
    }
    for (unsigned i = 0; i < w->nsocks; i++)
        if (!w->socks[i]) { /* logged by open_listener */
            worker_free(w);
            return NULL;
        }
    w->snap = snap;
    snapshot_ref(snap);
    w->housekeeping.fn = on_housekeeping;
    w->accept_retry.fn = on_accept_retry;
    loop_timer_set(w->loop, &w->housekeeping, HOUSEKEEPING_MS);
    loop_set_before_poll(w->loop, before_poll, w);
    loop_set_wake_handler(w->loop, on_wake, w);
    return w;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char name[16]; /* what top -H and /proc/PID/task/TID/comm show */
    snprintf(name, sizeof(name), "fulcrum-w%u", w->id);
    pthread_setname_np(pthread_self(), name);
    loop_run(w->loop);
    proxy_close_all(w);
    tcp_close_all(w);
    upstream_close_all_idle(w);
    close_listeners(w);
    accesslog_flush(w->alog);
    atomic_store(&w->exited, true);
    return NULL;
}

int worker_start(struct worker *w)
{
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0) {
        log_error("worker %u: pthread_create: %s", w->id, strerror(rc));
        return -1;
    }
    return 0;
}

void worker_request_stop(struct worker *w)
{
    int expected = 0;
    atomic_compare_exchange_strong(&w->stop_request, &expected, 1);
    loop_wake(w->loop);
}

void worker_request_halt(struct worker *w)
{
    atomic_store(&w->stop_request, 2);
    loop_wake(w->loop);
}

void worker_join(struct worker *w)
{
    pthread_join(w->thread, NULL);
}

void worker_free(struct worker *w)
{
    if (!w)
        return;
    close_listeners(w);
    free_dead_listeners(w);
    proxy_local_free(w);
    tcp_local_free(w);
    h2front_local_free(w);
    upstream_local_free(w);
    relay_local_free(w);
    struct snapshot *pending = atomic_exchange(&w->next_snap, NULL);
    if (pending)
        snapshot_unref(pending);
    free(w->socks);
    free(w->scratch);
    free(w->path_scratch);
    free(w->fields);
    stats_free(w->stats);
    accesslog_buf_free(w->alog);
    buf_pool_destroy(&w->bufs);
    loop_free(w->loop);
    if (w->snap)
        snapshot_unref(w->snap);
    free(w);
}
