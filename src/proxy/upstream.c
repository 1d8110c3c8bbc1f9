/*
 * upstream.c - backend connections and per-thread idle pools (see upstream.h).
 *
 * Idle lists are LIFO: the connection used most recently is reused first (its TCP state is the
 * warmest and its server the least likely to have timed it out), and expiry walks from the tail,
 * where the oldest ones are.
 */
#include "proxy/upstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/log.h"
#include "core/net.h"
#include "core/recycler.h"
#include "core/tls_conn.h"
#include "h2/session.h"
#include "lb/snapshot.h"
#include "proxy/stats.h"
#include "proxy/thread.h"
#include "proxy/upstream_shared.h"
#include "tls/client.h"

/* Idle connections kept per server per thread; more than this are closed when parked. */
#define MAX_IDLE_PER_SERVER 512
#define MAX_SPARE_UPSTREAMS 1024

/* Per-thread state of one server: its idle connections, most recently used first. */
struct server_local {
    struct upstream *idle_head;
    struct upstream *idle_tail;
    unsigned nidle;
    struct ssl_session_st *session; /* TLS: the last resumable session with the server */
    struct h2_link *links;          /* HTTP/2 connections to it (upstream_h2.c) */
    /* not in the thread's snapshot any more (upstream_close_idle_removed): a connection that
     * finishes its request there is closed, not parked where nothing would take it */
    bool retired;
};

/* What this module keeps per worker thread (thread.h: w->upstream). */
struct upstream_local {
    struct server_local *servers; /* indexed by server slot */
    unsigned nservers;
    struct recycler spares; /* closed ones: reusable after the batch (upstream_recycle) */
    struct h2_env *h2env;   /* for HTTP/2 connections to servers; NULL until the first */
};

static inline struct server_local *server_local(struct worker *w, const struct server *s)
{
    return &w->upstream->servers[s->slot];
}

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

struct upstream *upstream_alloc(struct worker *w)
{
    return recycler_take(&w->upstream->spares, sizeof(struct upstream),
                         offsetof(struct upstream, spare));
}

struct upstream *upstream_take_idle(struct worker *w, struct server *s)
{
    struct server_local *sl = server_local(w, s);
    struct upstream *u = sl->idle_head;
    if (!u)
        return NULL;
    idle_list_remove(sl, u);
    idle_gauge(w, u, -1);
    u->reused = true;
    if (u->server != s) {
        /* parked by a request of an older snapshot, whose server of this identity (same pool,
         * name and address: the same slot) left and came back as a new object */
        server_ref(s);
        server_unref(u->server);
        u->server = s;
    }
    return u;
}

static struct upstream *connect_to(struct worker *w, struct server *s, const struct tls_client *tls,
                                   loop_io_fn handler, bool h2, int *err)
{
    bool in_progress = false;
    int fd = net_connect(&s->addr, &in_progress);
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    struct upstream *u = upstream_alloc(w);
    if (!u) {
        close(fd);
        *err = ENOMEM;
        return NULL;
    }
    if (!tls) {
        conn_init_tcp(&u->conn, fd, handler);
    } else {
        struct ssl_session_st *session = server_local(w, s)->session;
        struct ssl_st *ssl = h2 ? tls_client_connect_h2(tls, s->host, session)
                                : tls_client_connect(tls, s->host, session);
        if (!ssl || conn_init_tls(&u->conn, fd, handler, ssl) < 0) {
            if (ssl)
                conn_close(&u->conn, false); /* frees ssl, closes fd */
            else
                close(fd);
            free(u);
            *err = ENOMEM;
            return NULL;
        }
        u->handshaking = true;
    }
    if (conn_watch(w->loop, &u->conn) < 0) {
        *err = errno;
        conn_close(&u->conn, false);
        recycler_bury(&w->upstream->spares, &u->spare);
        return NULL;
    }
    u->worker = w;
    u->server = s;
    server_ref(s);
    u->connecting = in_progress || u->handshaking;
    if (!in_progress) /* connected at once (loopback): no need to wait for the event */
        u->conn.io.ready |= LOOP_WRITABLE;
    return u;
}

struct upstream *upstream_connect(struct worker *w, struct server *s, const struct tls_client *tls,
                                  loop_io_fn handler, int *err)
{
    return connect_to(w, s, tls, handler, false, err);
}

struct upstream *upstream_connect_h2(struct worker *w, struct server *s,
                                     const struct tls_client *tls, loop_io_fn handler, int *err)
{
    return connect_to(w, s, tls, handler, true, err);
}

void upstream_forget(struct worker *w, struct upstream *u)
{
    server_unref(u->server);
    u->server = NULL;
    u->owner = NULL;
    recycler_bury(&w->upstream->spares, &u->spare);
}

struct h2_link **upstream_links(struct worker *w, const struct server *s)
{
    return &server_local(w, s)->links;
}

bool upstream_server_retired(struct worker *w, const struct server *s)
{
    return server_local(w, s)->retired;
}

const struct h2_env *upstream_h2_env(struct worker *w)
{
    struct upstream_local *ul = w->upstream;
    if (ul->h2env)
        return ul->h2env;
    struct h2_env *env = calloc(1, sizeof(*env));
    if (!env)
        return NULL;
    *env = (struct h2_env){.loop = w->loop,
                           .bufs = &w->bufs,
                           .limits = &w->limits,
                           .fields = &w->fields,
                           .local = h2_local_new()};
    if (!env->local) {
        free(env);
        return NULL;
    }
    ul->h2env = env;
    return env;
}

int upstream_send_proxy_header(struct upstream *u, int version, const struct sockaddr *src,
                               const struct sockaddr *dst)
{
    /* Only a connection nothing went out on yet: the header must be its first byte. */
    if (u->reused || u->requests || u->preamble_len) {
        errno = EINVAL;
        return -1;
    }
    size_t n = pp_write(version, src, dst, u->preamble, sizeof(u->preamble));
    if (n == 0) {
        errno = EINVAL;
        return -1;
    }
    u->preamble_len = (uint8_t)n;
    u->preamble_sent = 0;
    u->private_conn = true;
    /* Even a connect that completed at once waits for upstream_finish_connect(), which writes the
     * header before the request (or the TLS handshake) may go. */
    u->connecting = true;
    return 0;
}

/* Writes what is left of the PROXY header, in the clear even over TLS: CONN_DONE once all of it
 * went, CONN_BLOCKED while the socket is not connected yet or is full, CONN_ERROR with *err. */
static enum conn_status send_preamble(struct upstream *u, int *err)
{
    while (u->preamble_sent < u->preamble_len) {
        size_t n;
        enum conn_status r = conn_write_plain(&u->conn, u->preamble + u->preamble_sent,
                                              u->preamble_len - u->preamble_sent, &n);
        if (r == CONN_BLOCKED)
            return CONN_BLOCKED;
        if (r == CONN_ERROR) {
            *err = errno;
            return CONN_ERROR;
        }
        u->preamble_sent += (uint8_t)n;
    }
    return CONN_DONE;
}

enum conn_status upstream_finish_connect(struct upstream *u, int *err, const char **why)
{
    *why = NULL;
    if (u->link)
        return upstream_stream_finish_connect(u, err, why);
    if (u->conn.io.ready & (LOOP_ERR | LOOP_HUP)) {
        *err = net_socket_error(u->conn.io.fd);
        if (!*err)
            *err = ECONNRESET;
        return CONN_ERROR;
    }
    /* The socket is writable once the connect completed: the header goes first. */
    if (u->preamble_sent < u->preamble_len) {
        enum conn_status r = send_preamble(u, err);
        if (r != CONN_DONE)
            return r;
    }
    if (!u->handshaking) { /* plain TCP: connected once writable */
        if (!(u->conn.io.ready & LOOP_WRITABLE))
            return CONN_BLOCKED;
        u->connecting = false;
        return CONN_DONE;
    }
    const char *failure = NULL;
    enum conn_status r = conn_handshake(&u->conn, &failure);
    if (r == CONN_BLOCKED)
        return CONN_BLOCKED;
    if (r == CONN_DONE) {
        u->handshaking = u->connecting = false;
        return CONN_DONE;
    }
    *err = EPROTO;
    *why = tls_client_verify_error(u->conn.ssl);
    if (!*why)
        *why = failure ? failure : "TLS handshake failed";
    return CONN_ERROR;
}

/* Reads once to find out whether a connection that may still be readable is really quiet. */
static bool quiet(struct worker *w, struct upstream *u)
{
    if (u->conn.io.ready & (LOOP_RDHUP | LOOP_HUP | LOOP_ERR))
        return false;
    size_t got;
    return conn_read(&u->conn, w->scratch, 1, &got) == CONN_BLOCKED;
}

/* Keeps the connection's TLS session, so the next connection to its server resumes it. */
static void keep_session(struct server_local *sl, const struct upstream *u)
{
    struct ssl_session_st *session = tls_client_session(u->conn.ssl);
    if (!session)
        return;
    tls_session_free(sl->session); /* may be the same session: it had a reference of its own */
    sl->session = session;
}

void upstream_park(struct worker *w, struct upstream *u)
{
    if (u->link) { /* the stream ends; its connection stays with the others' */
        upstream_close(w, u, false);
        return;
    }
    struct server_local *sl = server_local(w, u->server);
    if (u->conn.ssl)
        keep_session(sl, u);
    /* A private connection told its server who the client is: another client's request on it
     * would be attributed to the wrong address. */
    if (u->private_conn || w->stopping || sl->retired || sl->nidle >= MAX_IDLE_PER_SERVER ||
        !quiet(w, u)) {
        upstream_close(w, u, false);
        return;
    }
    u->owner = NULL;
    u->reused = false;
    u->conn.io.handler = idle_event;
    u->idle_since_ms = loop_now_ms(w->loop);
    idle_list_push(sl, u);
    idle_gauge(w, u, +1);
}

void upstream_close(struct worker *w, struct upstream *u, bool reset)
{
    if (u->link) {
        upstream_stream_close(w, u, reset);
        upstream_forget(w, u);
        return;
    }
    if (!u->owner && u->conn.io.handler == idle_event) {
        idle_list_remove(server_local(w, u->server), u);
        idle_gauge(w, u, -1);
    }
    if (u->conn.ssl && !reset && !u->handshaking)
        keep_session(server_local(w, u->server), u); /* e.g. after "Connection: close" */
    conn_close(&u->conn, reset); /* events still queued in this batch are ignored */
    server_unref(u->server);
    u->server = NULL;
    u->owner = NULL;
    recycler_bury(&w->upstream->spares, &u->spare);
}

void upstream_expire_idle(struct worker *w, uint32_t max_idle_ms)
{
    uint64_t now = loop_now_ms(w->loop);
    for (unsigned i = 0; i < w->upstream->nservers; i++) {
        struct server_local *sl = &w->upstream->servers[i];
        while (sl->idle_tail && sl->idle_tail->idle_since_ms + max_idle_ms <= now)
            upstream_close(w, sl->idle_tail, false);
    }
}

void upstream_close_idle_removed(struct worker *w, const struct snapshot *snap)
{
    struct upstream_local *ul = w->upstream;
    bool *kept = calloc(ul->nservers ? ul->nservers : 1, sizeof(*kept));
    if (!kept) /* they expire after timeouts.server_idle anyway */
        return;
    for (unsigned p = 0; p < snap->npools; p++)
        for (unsigned k = 0; k < snap->pools[p].nservers; k++)
            if (snap->pools[p].servers[k]->slot < ul->nservers)
                kept[snap->pools[p].servers[k]->slot] = true;
    for (unsigned i = 0; i < ul->nservers; i++) {
        ul->servers[i].retired = !kept[i];
        while (!kept[i] && ul->servers[i].idle_head)
            upstream_close(w, ul->servers[i].idle_head, false);
        if (!kept[i])
            upstream_close_idle_links(&ul->servers[i].links);
    }
    free(kept);
}

void upstream_close_all_idle(struct worker *w)
{
    struct upstream_local *ul = w->upstream;
    for (unsigned i = 0; i < ul->nservers; i++) {
        while (ul->servers[i].idle_head)
            upstream_close(w, ul->servers[i].idle_head, false);
        upstream_close_idle_links(&ul->servers[i].links);
    }
}

void upstream_recycle(struct worker *w)
{
    recycler_flush(&w->upstream->spares, offsetof(struct upstream, spare));
}

struct upstream_local *upstream_local_new(void)
{
    struct upstream_local *ul = calloc(1, sizeof(*ul));
    if (ul)
        recycler_init(&ul->spares, MAX_SPARE_UPSTREAMS);
    return ul;
}

int upstream_local_grow(struct worker *w, unsigned nslots)
{
    struct upstream_local *ul = w->upstream;
    if (nslots <= ul->nservers)
        return 0;
    struct server_local *grown = realloc(ul->servers, nslots * sizeof(*grown));
    if (!grown)
        return -1;
    memset(grown + ul->nservers, 0, (nslots - ul->nservers) * sizeof(*grown));
    ul->servers = grown;
    ul->nservers = nslots;
    return 0;
}

void upstream_local_free(struct worker *w)
{
    struct upstream_local *ul = w->upstream;
    if (!ul)
        return;
    recycler_free_all(&ul->spares, offsetof(struct upstream, spare));
    if (ul->h2env) {
        h2_local_free(ul->h2env->local);
        free(ul->h2env);
    }
    for (unsigned i = 0; i < ul->nservers; i++)
        tls_session_free(ul->servers[i].session);
    free(ul->servers);
    free(ul);
    w->upstream = NULL;
}
