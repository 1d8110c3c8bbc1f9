/*
 * worker.c - worker threads: listening sockets, accept, and the thread's housekeeping.
 *
 * Accept is level-triggered and bounded per event, so one busy listener cannot starve the
 * connections already open. Two conditions pause it:
 *   - the process has max_connections clients: the worker takes its listeners out of epoll, so
 *     new clients wait in the kernel's accept queue; the worker whose connection closes next
 *     wakes every paused worker;
 *   - accept() fails for lack of file descriptors or memory: listeners pause for 100 ms, then
 *     try again, instead of spinning on an error that will not go away by itself.
 */
#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lb.h"
#include "log.h"
#include "proxy.h"
#include "upstream.h"

#define ACCEPTS_PER_EVENT 64
#define ACCEPT_BACKOFF_MS 100
#define HOUSEKEEPING_MS   1000
#define LISTEN_BACKLOG    4096
/* Bytes a head may grow by when fulcrum rewrites it (X-Forwarded-* and friends). */
#define REWRITE_RESERVE   1024
#define MAX_SPARE_BUFFERS 256

static struct worker **all_workers;
static unsigned nall_workers;
static unsigned max_connections = 10000;
static _Atomic unsigned open_connections;

void worker_set_all(struct worker **workers, unsigned n, unsigned max)
{
    all_workers = workers;
    nall_workers = n;
    max_connections = max;
}

static bool take_connection_slot(void)
{
    unsigned n = atomic_fetch_add(&open_connections, 1);
    if (n < max_connections)
        return true;
    atomic_fetch_sub(&open_connections, 1);
    return false;
}

static void listeners_pause(struct worker *w)
{
    for (unsigned i = 0; i < w->nsocks; i++)
        if (w->socks[i].in_epoll) {
            loop_del(w->loop, &w->socks[i].io);
            w->socks[i].in_epoll = false;
        }
}

static void listeners_resume(struct worker *w)
{
    if (w->stopping)
        return;
    for (unsigned i = 0; i < w->nsocks; i++)
        if (!w->socks[i].in_epoll && w->socks[i].io.fd >= 0) {
            if (loop_add(w->loop, &w->socks[i].io, LOOP_LEVEL_IN) == 0)
                w->socks[i].in_epoll = true;
            else
                log_error("worker %u: epoll_ctl: %s", w->id, strerror(errno));
        }
}

void worker_connection_closed(struct worker *w)
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
            if (atomic_load(&open_connections) < max_connections) {
                atomic_store(&w->paused_at_max, false);
                listeners_resume(w);
            }
            return;
        }
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(io->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
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
    struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, accept_retry));
    w->accept_backoff = false;
    if (!atomic_load(&w->paused_at_max))
        listeners_resume(w);
}

static void on_housekeeping(struct loop *loop, struct loop_timer *t)
{
    struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, housekeeping));
    upstream_expire_idle(w, w->snap->conf->timeouts.server_idle_ms);
    loop_timer_set(loop, t, HOUSEKEEPING_MS);
}

static void close_listeners(struct worker *w)
{
    for (unsigned i = 0; i < w->nsocks; i++)
        if (w->socks[i].io.fd >= 0) {
            close(w->socks[i].io.fd);
            w->socks[i].io.fd = -1;
            w->socks[i].in_epoll = false;
        }
}

static void on_wake(struct loop *loop, void *arg)
{
    struct worker *w = arg;
    int stop = atomic_load(&w->stop_request);
    if (stop && !w->stopping) {
        w->stopping = true;
        close_listeners(w);
        upstream_close_all_idle(w);
        proxy_stop(w);
    }
    if (stop == 2)
        proxy_close_all(w);
    if (!w->stopping && atomic_load(&w->paused_at_max) &&
        atomic_load(&open_connections) < max_connections) {
        atomic_store(&w->paused_at_max, false);
        if (!w->accept_backoff)
            listeners_resume(w);
    }
}

static void before_poll(struct loop *loop, void *arg)
{
    struct worker *w = arg;
    proxy_recycle(w);
    upstream_recycle(w);
    if (w->stopping && w->nsessions == 0)
        loop_stop(loop);
}

void *worker_lb_state(struct worker *w, const struct pool *pool)
{
    return w->lb_state[pool->slot];
}

static int init_pool_state(struct worker *w, struct snapshot *snap)
{
    w->nservers = server_slot_limit();
    w->servers = calloc(w->nservers ? w->nservers : 1, sizeof(*w->servers));
    w->nlb_state = pool_slot_limit();
    w->lb_state = calloc(w->nlb_state ? w->nlb_state : 1, sizeof(*w->lb_state));
    if (!w->servers || !w->lb_state)
        return -1;
    for (unsigned i = 0; i < snap->npools; i++) {
        struct pool *p = &snap->pools[i];
        w->lb_state[p->slot] = p->lb->state_new(p, w->id);
        if (!w->lb_state[p->slot])
            return -1;
    }
    return 0;
}

static int open_listeners(struct worker *w, struct snapshot *snap)
{
    w->socks = calloc(snap->nlisteners, sizeof(*w->socks));
    if (!w->socks)
        return -1;
    for (unsigned i = 0; i < snap->nlisteners; i++) {
        struct listen_sock *ls = &w->socks[i];
        const struct conf_listener *cl = snap->listeners[i].conf;
        ls->w = w;
        ls->listener = i;
        ls->io.handler = on_accept;
        ls->io.fd = net_listen(&cl->addr, LISTEN_BACKLOG, true);
        w->nsocks++;
        if (ls->io.fd < 0) {
            log_error("listener %s: cannot listen on %s: %s", cl->name, cl->bind, strerror(errno));
            return -1;
        }
        if (loop_add(w->loop, &ls->io, LOOP_LEVEL_IN) < 0) {
            log_error("listener %s: epoll_ctl: %s", cl->name, strerror(errno));
            return -1;
        }
        ls->in_epoll = true;
    }
    return 0;
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
    w->snap = snap;
    snapshot_ref(snap);
    w->limits.max_head_bytes = lim->max_header_bytes;
    w->limits.max_fields = lim->max_headers;
    w->rewrite_reserve = REWRITE_RESERVE;
    buf_pool_init(&w->bufs, bufsize, MAX_SPARE_BUFFERS);
    w->loop = loop_new();
    w->scratch = malloc(bufsize);
    w->fields = calloc(lim->max_headers, sizeof(*w->fields));
    if (!w->loop || !w->scratch || !w->fields || init_pool_state(w, snap) < 0) {
        log_error("worker %u: out of memory", id);
        worker_free(w);
        return NULL;
    }
    if (open_listeners(w, snap) < 0) {
        worker_free(w);
        return NULL;
    }
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
    loop_run(w->loop);
    proxy_close_all(w);
    upstream_close_all_idle(w);
    close_listeners(w);
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
    proxy_free_spares(w);
    upstream_free_spares(w);
    if (w->lb_state && w->snap)
        for (unsigned i = 0; i < w->snap->npools; i++) {
            struct pool *p = &w->snap->pools[i];
            if (p->slot < w->nlb_state && w->lb_state[p->slot])
                p->lb->state_free(w->lb_state[p->slot]);
        }
    free(w->lb_state);
    free(w->servers);
    free(w->socks);
    free(w->scratch);
    free(w->fields);
    buf_pool_destroy(&w->bufs);
    loop_free(w->loop);
    snapshot_unref(w->snap);
    free(w);
}
