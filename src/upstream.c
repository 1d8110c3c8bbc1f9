/*
 * upstream.c - backend connections and per-thread idle pools (see upstream.h).
 *
 * Idle lists are LIFO: the connection used most recently is reused first (its TCP state is the
 * warmest and its server the least likely to have timed it out), and expiry walks from the tail,
 * where the oldest ones are.
 */
#include "upstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "stats.h"
#include "worker.h"

/* Idle connections kept per server per thread; more than this are closed when parked. */
#define MAX_IDLE_PER_SERVER 512
#define MAX_SPARE_UPSTREAMS 1024

/* The idle lists also feed the idle-connections gauge of each server. */
static void idle_gauge(struct worker *w, const struct upstream *u, int delta)
{
    struct stats_server *ss = stats_server(w->stats, u->server->slot);
    if (delta > 0)
        stats_add(&ss->idle, 1);
    else
        stats_sub(&ss->idle, 1);
}

static void idle_list_remove(struct server_local *sl, struct upstream *u)
{
    if (u->prev)
        u->prev->next = u->next;
    else
        sl->idle_head = u->next;
    if (u->next)
        u->next->prev = u->prev;
    else
        sl->idle_tail = u->prev;
    u->prev = u->next = NULL;
    sl->nidle--;
}

static void idle_list_push(struct server_local *sl, struct upstream *u)
{
    u->prev = NULL;
    u->next = sl->idle_head;
    if (sl->idle_head)
        sl->idle_head->prev = u;
    else
        sl->idle_tail = u;
    sl->idle_head = u;
    sl->nidle++;
}

static void idle_event(struct loop *loop, struct loop_io *io)
{
    struct upstream *u = (struct upstream *)io;
    /* Only "the send buffer has room" is harmless on an idle connection: anything else means the
     * server closed it or sent bytes no request asked for. Either way it cannot carry a request. */
    if (io->ready & (LOOP_READABLE | LOOP_RDHUP | LOOP_HUP | LOOP_ERR))
        upstream_close(u->worker, u, false);
}

static struct upstream *alloc_upstream(struct worker *w)
{
    struct upstream *u = w->spare_upstreams;
    if (u) {
        w->spare_upstreams = u->next;
        w->nspare_upstreams--;
    } else {
        u = malloc(sizeof(*u));
        if (!u)
            return NULL;
    }
    memset(u, 0, sizeof(*u));
    return u;
}

struct upstream *upstream_take_idle(struct worker *w, struct server *s)
{
    struct server_local *sl = worker_server(w, s);
    struct upstream *u = sl->idle_head;
    if (!u)
        return NULL;
    idle_list_remove(sl, u);
    idle_gauge(w, u, -1);
    u->reused = true;
    return u;
}

struct upstream *upstream_connect(struct worker *w, struct server *s, loop_io_fn handler, int *err)
{
    bool in_progress = false;
    int fd = net_connect(&s->addr, &in_progress);
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    struct upstream *u = alloc_upstream(w);
    if (!u) {
        close(fd);
        *err = ENOMEM;
        return NULL;
    }
    u->io.fd = fd;
    u->io.handler = handler;
    if (loop_add(w->loop, &u->io, LOOP_EDGE_RW) < 0) {
        *err = errno;
        close(fd);
        u->next = w->dead_upstreams;
        w->dead_upstreams = u;
        return NULL;
    }
    u->worker = w;
    u->server = s;
    server_ref(s);
    u->connecting = in_progress;
    if (!in_progress) /* connected at once (loopback): no need to wait for the event */
        u->io.ready |= LOOP_WRITABLE;
    return u;
}

/* Reads once to find out whether a connection that may still be readable is really quiet. */
static bool quiet(struct worker *w, struct upstream *u)
{
    if (u->io.ready & (LOOP_RDHUP | LOOP_HUP | LOOP_ERR))
        return false;
    if (!(u->io.ready & LOOP_READABLE))
        return true;
    ssize_t n = read(u->io.fd, w->scratch, 1);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        u->io.ready &= ~LOOP_READABLE;
        return true;
    }
    return false;
}

void upstream_park(struct worker *w, struct upstream *u)
{
    struct server_local *sl = worker_server(w, u->server);
    if (w->stopping || sl->nidle >= MAX_IDLE_PER_SERVER || !quiet(w, u)) {
        upstream_close(w, u, false);
        return;
    }
    u->owner = NULL;
    u->reused = false;
    u->io.handler = idle_event;
    u->idle_since_ms = loop_now_ms(w->loop);
    idle_list_push(sl, u);
    idle_gauge(w, u, +1);
}

void upstream_close(struct worker *w, struct upstream *u, bool reset)
{
    if (!u->owner && u->io.handler == idle_event) {
        idle_list_remove(worker_server(w, u->server), u);
        idle_gauge(w, u, -1);
    }
    u->io.handler = NULL; /* events still queued in this batch are ignored */
    if (reset)
        net_close_reset(u->io.fd);
    else
        close(u->io.fd);
    u->io.fd = -1;
    server_unref(u->server);
    u->server = NULL;
    u->owner = NULL;
    u->next = w->dead_upstreams;
    w->dead_upstreams = u;
}

void upstream_expire_idle(struct worker *w, uint32_t max_idle_ms)
{
    uint64_t now = loop_now_ms(w->loop);
    for (unsigned i = 0; i < w->nservers; i++) {
        struct server_local *sl = &w->servers[i];
        while (sl->idle_tail && sl->idle_tail->idle_since_ms + max_idle_ms <= now)
            upstream_close(w, sl->idle_tail, false);
    }
}

void upstream_close_all_idle(struct worker *w)
{
    for (unsigned i = 0; i < w->nservers; i++)
        while (w->servers[i].idle_head)
            upstream_close(w, w->servers[i].idle_head, false);
}

void upstream_recycle(struct worker *w)
{
    while (w->dead_upstreams) {
        struct upstream *u = w->dead_upstreams;
        w->dead_upstreams = u->next;
        if (w->nspare_upstreams < MAX_SPARE_UPSTREAMS) {
            u->next = w->spare_upstreams;
            w->spare_upstreams = u;
            w->nspare_upstreams++;
        } else {
            free(u);
        }
    }
}

void upstream_free_spares(struct worker *w)
{
    upstream_recycle(w);
    while (w->spare_upstreams) {
        struct upstream *u = w->spare_upstreams;
        w->spare_upstreams = u->next;
        free(u);
    }
    w->nspare_upstreams = 0;
}
