/*
 * h2front.c - HTTP/2 client connections of a worker (h2front.h): start, GOAWAY, close.
 */
#include "proxy/h2front.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "h2/session.h"
#include "lb/snapshot.h"
#include "proxy/accesslog.h"
#include "proxy/stats.h"
#include "proxy/thread.h"

struct h2front {
    struct worker *w;
    struct h2_session *h2;
    struct snapshot *snap; /* the one the connection was accepted on (its streams follow
                            * reloads as HTTP/1.1 requests do) */
    unsigned listener;
    union preamble_peer peer, dst;
    char *client_subject;
    h2front_open_fn open;
    struct h2front *prev, *next;
};

struct h2front_local {
    struct h2_env env;
    struct h2front *fronts;
    unsigned count;
};

struct h2front_local *h2front_local_new(struct worker *w)
{
    struct h2front_local *hl = calloc(1, sizeof(*hl));
    if (!hl)
        return NULL;
    hl->env = (struct h2_env){
        .loop = w->loop,
        .bufs = &w->bufs,
        .limits = &w->limits,
        .fields = &w->fields,
        .local = h2_local_new(),
    };
    if (!hl->env.local) {
        free(hl);
        return NULL;
    }
    return hl;
}

void h2front_local_free(struct worker *w)
{
    struct h2front_local *hl = w->h2front;
    if (!hl)
        return;
    h2_local_free(hl->env.local);
    free(hl);
    w->h2front = NULL;
}

static struct conn *open_stream(void *ctx)
{
    struct h2front *f = ctx;
    struct conn *c = f->open(f->w, f->snap, f->listener, &f->peer, &f->dst, f->client_subject);
    if (c)
        stats_add(&f->w->stats->h2_streams, 1);
    return c;
}

/* A request the HTTP/2 layer answered itself (400, 431) is counted and logged as proxy.c
 * counts and logs such an answer to an HTTP/1.1 request: against the listener's pool. */
static void answered(void *ctx, unsigned status, const char *method, size_t method_len,
                     const char *target, size_t target_len)
{
    struct h2front *f = ctx;
    struct worker *w = f->w;
    const struct pool *pool = f->snap->listeners[f->listener].pool;
    stats_add(&w->stats->bad_requests, 1);
    if (pool)
        stats_add(&stats_pool(w->stats, pool->slot)->requests[status / 100], 1);
    if (!accesslog_enabled())
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct accesslog_entry e = {
        .start_wall_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u,
        .client = &f->peer.sa,
        .method = method,
        .method_len = method_len,
        .target = target,
        .target_len = target_len,
        .version = 20,
        .status = (uint16_t)status,
        .pool = pool ? pool->name : NULL,
        .balance = pool ? conf_balance_name(pool->conf->balance) : NULL,
        .queue_ms = -1,
        .connect_ms = -1,
        .response_ms = -1,
        .termination = "bad_request",
    };
    accesslog_add(w->alog, &e, f->snap->conf->access_log.format);
}

static void closed(void *ctx)
{
    struct h2front *f = ctx;
    struct h2front_local *hl = f->w->h2front;
    if (f->prev)
        f->prev->next = f->next;
    else
        hl->fronts = f->next;
    if (f->next)
        f->next->prev = f->prev;
    hl->count--;
    stats_client_move(f->w->stats, STATS_CLIENT_HTTP2, -1);
    snapshot_unref(f->snap);
    free(f->client_subject);
    f->w->on_client_closed(f->w);
    free(f);
}

int h2front_start(struct worker *w, struct snapshot *snap, unsigned listener, struct conn *c,
                  const char *early, size_t early_len, const union preamble_peer *peer,
                  const union preamble_peer *dst, const char *client_subject, h2front_open_fn open)
{
    struct h2front_local *hl = w->h2front;
    struct h2front *f = calloc(1, sizeof(*f));
    if (!f || (client_subject && !(f->client_subject = strdup(client_subject)))) {
        log_error("h2: out of memory");
        free(f);
        return -1;
    }
    f->w = w;
    f->snap = snap;
    f->listener = listener;
    f->peer = *peer;
    f->dst = *dst;
    f->open = open;
    const struct conf_http2 *conf = &snap->listeners[listener].conf->http2;
    struct h2_limits lim = {
        .max_concurrent_streams = conf->max_concurrent_streams,
        .max_header_list_size = conf->max_header_list_size,
        .stream_idle_ms = conf->stream_idle_ms,
        .idle_ms = conf->idle_ms,
    };
    struct h2_host host = {
        .ctx = f, .open_stream = open_stream, .answered = answered, .closed = closed};
    f->h2 = h2_session_start(&hl->env, c, early, early_len, &lim, &host);
    if (!f->h2) {
        log_error("h2: cannot start a session: out of memory");
        free(f->client_subject);
        free(f);
        return -1;
    }
    snapshot_ref(snap);
    stats_add(&w->stats->h2_connections, 1);
    stats_client_move(w->stats, -1, STATS_CLIENT_HTTP2);
    f->next = hl->fronts;
    if (hl->fronts)
        hl->fronts->prev = f;
    hl->fronts = f;
    hl->count++;
    return 0;
}

void h2front_goaway_all(struct worker *w, uint32_t grace_ms)
{
    for (struct h2front *f = w->h2front->fronts; f; f = f->next)
        h2_session_goaway(f->h2, grace_ms);
}

void h2front_close_all(struct worker *w)
{
    while (w->h2front->fronts)
        h2_session_close(w->h2front->fronts->h2); /* closed() unlinks it */
}

unsigned h2front_open_count(const struct worker *w)
{
    return w->h2front->count;
}
