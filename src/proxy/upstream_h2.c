/*
 * upstream_h2.c - HTTP/2 connections to the servers of `protocol: h2` pools ("links"), and the
 * streams on them that requests use as their backend connections (upstream.h).
 *
 * A link is one connection to one server on one worker. It starts as a struct upstream that
 * connects (TCP, then TLS offering only h2 through ALPN), and its connection then moves into an
 * HTTP/2 client session (h2/client.h). A request's upstream is a struct upstream of its own whose
 * conn is a stream of a link: one of the server's links that has room (the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS), or a new link when none has. So a server gets as few
 * connections as its concurrency allows, and a request never waits behind another's response.
 *
 * While its link connects, an upstream waits on the link's list, "connecting" as a TCP connect
 * would be; when the link is up (or failed) each one is given its stream (or the failure) and its
 * handler is called, and the proxy learns the outcome from upstream_finish_connect().
 *
 * Lifetimes: a link is listed under its server while new streams may go on it, and is held by
 * every upstream opened on it and by its session while it runs; it is freed when none of these is
 * left. A link without streams is closed by its session after idle_ms (GOAWAY), at once when the
 * worker stops or the server leaves the snapshot, and its session ends when the server closes
 * the connection or says GOAWAY (streams it did not take fail, and are tried again on a fresh
 * link: upstream_open_stream's fresh).
 */
#include <errno.h>
#include <stdlib.h>

#include "core/log.h"
#include "h2/client.h"
#include "h2/env.h"
#include "h2/session.h"
#include "proxy/thread.h"
#include "proxy/upstream.h"
#include "proxy/upstream_shared.h"
#include "tls/client.h"

/* Streams a link takes before the server's SETTINGS say how many it allows (RFC 9113 section
 * 6.5.2 recommends servers allow at least 100). */
#define STREAMS_BEFORE_SETTINGS 100u
/* The proxy's own timeouts rule a stream: the session's is only a backstop. */
#define STREAM_IDLE_MS (24u * 3600 * 1000)

struct h2_link {
    struct worker *w;
    struct server *server;       /* referenced */
    struct upstream *carrier;    /* the connection while it is set up; NULL after */
    struct h2_session *h2;       /* once it is up, until it ends */
    struct h2_link *prev, *next; /* the server's links on this worker, while listed */
    struct upstream *waiting;    /* upstreams waiting for the connection (their prev/next) */
    uint32_t idle_ms;
    unsigned users;    /* upstreams opened on it and not closed yet */
    unsigned nwaiting; /* of them, on the waiting list */
    int err;           /* the connection failed: errno, */
    const char *why;   /* and for TLS, why */
    bool listed, failed;
};

static void unlist(struct h2_link *link)
{
    if (!link->listed)
        return;
    struct h2_link **head = upstream_links(link->w, link->server);
    if (link->prev)
        link->prev->next = link->next;
    else
        *head = link->next;
    if (link->next)
        link->next->prev = link->prev;
    link->prev = link->next = NULL;
    link->listed = false;
}

static void free_if_unused(struct h2_link *link)
{
    if (link->users || link->h2 || link->carrier)
        return;
    unlist(link);
    server_unref(link->server);
    free(link);
}

/*
 * A link without users closes now if nothing will use it again: the worker stops, or the server
 * left. Returns true if it did: its session's closed() frees the link (at once, or once the
 * session's end, under way further up the stack, is done).
 */
static bool close_if_idle(struct h2_link *link)
{
    if (link->users)
        return false;
    if (link->carrier) { /* the requests that wanted it gave up (connect timeout) */
        unlist(link);
        upstream_close(link->w, link->carrier, false);
        link->carrier = NULL;
        return false;
    }
    if (!link->h2 || !(link->w->stopping || upstream_server_retired(link->w, link->server)))
        return false;
    h2_session_close(link->h2);
    return true;
}

/* Tells every waiting upstream that the link came up or failed (their handlers run now). */
static void wake_waiting(struct h2_link *link)
{
    struct loop *loop = link->w->loop;
    link->users++; /* a handler may close its upstream: the link stays until the loop is done */
    while (link->waiting) {
        struct upstream *u = link->waiting;
        link->waiting = u->next;
        if (link->waiting)
            link->waiting->prev = NULL;
        u->prev = u->next = NULL;
        u->on_wait_list = false;
        link->nwaiting--;
        if (link->h2) {
            if (h2_client_open_stream(link->h2, &u->conn) == 0)
                u->connecting = false;
            else
                u->stream_failed = true;
        }
        if (u->conn.io.handler)
            u->conn.io.handler(loop, &u->conn.io);
    }
    link->users--;
    if (!close_if_idle(link))
        free_if_unused(link);
}

static void link_failed(struct h2_link *link, int err, const char *why)
{
    link->failed = true;
    link->err = err ? err : ECONNRESET;
    link->why = why;
    unlist(link);
    if (link->carrier) {
        upstream_close(link->w, link->carrier, false);
        link->carrier = NULL;
    }
    wake_waiting(link);
}

/* The session ended (the server closed, GOAWAY, an error, or idle): no new stream goes on it. */
static void link_closed(void *ctx)
{
    struct h2_link *link = ctx;
    link->h2 = NULL;
    unlist(link);
    free_if_unused(link);
}

static void link_up(struct h2_link *link)
{
    struct worker *w = link->w;
    struct upstream *c = link->carrier;
    const struct h2_env *env = upstream_h2_env(w);
    struct h2_limits lim = {.max_concurrent_streams = STREAMS_BEFORE_SETTINGS,
                            .max_header_list_size = w->bufs.size,
                            .stream_idle_ms = STREAM_IDLE_MS,
                            .idle_ms = link->idle_ms};
    struct h2_host host = {.ctx = link, .closed = link_closed};
    link->h2 = env ? h2_client_start(env, &c->conn, &lim, &host) : NULL;
    if (!link->h2) {
        log_warn("pool %s server %s: cannot start HTTP/2: out of memory", link->server->pool_name,
                 link->server->name);
        link_failed(link, ENOMEM, NULL);
        return;
    }
    link->carrier = NULL;
    upstream_forget(w, c); /* its connection is the session's now */
    wake_waiting(link);
}

static void carrier_event(struct loop *loop, struct loop_io *io)
{
    struct upstream *c = (struct upstream *)io;
    struct h2_link *link = c->owner;
    int err = 0;
    const char *why = NULL;
    enum conn_status r = upstream_finish_connect(c, &err, &why);
    if (r == CONN_BLOCKED)
        return;
    if (r == CONN_DONE && c->conn.ssl && !tls_client_chose_h2(c->conn.ssl)) {
        r = CONN_ERROR;
        err = EPROTO;
        why = "the server did not choose h2 (ALPN)";
    }
    if (r == CONN_DONE)
        link_up(link);
    else
        link_failed(link, err, why);
}

static struct h2_link *link_connect(struct worker *w, struct server *s,
                                    const struct tls_client *tls, uint32_t idle_ms, int *err)
{
    struct h2_link *link = calloc(1, sizeof(*link));
    if (!link) {
        *err = ENOMEM;
        return NULL;
    }
    link->carrier = upstream_connect_h2(w, s, tls, carrier_event, err);
    if (!link->carrier) {
        free(link);
        return NULL;
    }
    link->carrier->owner = link;
    link->w = w;
    link->server = s;
    server_ref(s);
    link->idle_ms = idle_ms;
    struct h2_link **head = upstream_links(w, s);
    link->next = *head;
    if (*head)
        (*head)->prev = link;
    *head = link;
    link->listed = true;
    if (!link->carrier->connecting) { /* connected at once, and no TLS: up now */
        link->users++;                /* held: a failure would free it under us */
        link_up(link);
        link->users--;
        if (link->failed) {
            *err = link->err;
            free_if_unused(link);
            return NULL;
        }
    }
    return link;
}

/* A listed link that takes one more stream now, or NULL. */
static struct h2_link *link_with_room(struct worker *w, struct server *s)
{
    for (struct h2_link *link = *upstream_links(w, s); link; link = link->next) {
        if (link->h2 ? h2_client_room(link->h2) > 0 : link->nwaiting < STREAMS_BEFORE_SETTINGS)
            return link;
    }
    return NULL;
}

struct upstream *upstream_open_stream(struct worker *w, struct server *s,
                                      const struct tls_client *tls, loop_io_fn handler, bool fresh,
                                      uint32_t idle_ms, int *err)
{
    struct h2_link *link = fresh ? NULL : link_with_room(w, s);
    if (!link && !(link = link_connect(w, s, tls, idle_ms, err)))
        return NULL;
    struct upstream *u = upstream_alloc(w);
    if (!u) {
        *err = ENOMEM;
        if (!close_if_idle(link))
            free_if_unused(link);
        return NULL;
    }
    u->worker = w;
    u->server = s;
    server_ref(s);
    u->link = link;
    link->users++;
    u->conn.io.fd = -1; /* no transport until it has a stream */
    u->conn.io.handler = handler;
    if (!link->h2) {
        u->connecting = true;
        u->on_wait_list = true;
        u->next = link->waiting;
        if (link->waiting)
            link->waiting->prev = u;
        link->waiting = u;
        link->nwaiting++;
        return u;
    }
    u->reused = h2_client_used(link->h2);
    if (h2_client_open_stream(link->h2, &u->conn) < 0) {
        upstream_close(w, u, false);
        *err = ENOMEM;
        return NULL;
    }
    return u;
}

enum conn_status upstream_stream_finish_connect(struct upstream *u, int *err, const char **why)
{
    if (u->stream_failed) {
        *err = ENOMEM;
        return CONN_ERROR;
    }
    if (u->connecting && u->link->failed) {
        *err = u->link->err;
        *why = u->link->why;
        return CONN_ERROR;
    }
    return u->connecting ? CONN_BLOCKED : CONN_DONE;
}

void upstream_stream_close(struct worker *w, struct upstream *u, bool reset)
{
    struct h2_link *link = u->link;
    if (u->on_wait_list) {
        if (u->prev)
            u->prev->next = u->next;
        else
            link->waiting = u->next;
        if (u->next)
            u->next->prev = u->prev;
        u->prev = u->next = NULL;
        u->on_wait_list = false;
        link->nwaiting--;
    }
    conn_close(&u->conn, reset); /* a stream's: RST_STREAM if it did not end (client.h) */
    u->link = NULL;
    link->users--;
    if (!close_if_idle(link))
        free_if_unused(link);
}

void upstream_close_idle_links(struct h2_link **head)
{
    for (struct h2_link *link = *head, *next; link; link = next) {
        next = link->next;
        if (!link->users && link->h2)
            h2_session_close(link->h2);
    }
}
