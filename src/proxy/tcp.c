/*
 * tcp.c - TCP mode (L4): the life of one client connection of a `mode: tcp` listener, whose
 * bytes go to one server of the listener's pool and back, whatever protocol they carry.
 *
 *   client --[PROXY header]--[TLS handshake]--> pick --connect--> relay (relay.c) <--> server
 *
 * Phases (s->phase), driven by one function, drive(), on every event of either connection:
 *   PROXY      the PROXY protocol header of a trusted balancer in front (proxy_protocol.accept),
 *              due within timeouts.client_header of accept (preamble.c)
 *   HANDSHAKE  TLS termination on a listener with tls (preamble.c), due within
 *              timeouts.tls_handshake; the bytes go on to the server in the clear
 *   CONNECT    a server the pool's balancer picked is being connected to (with the pool's TLS
 *              handshake, if it re-encrypts), due within timeouts.connect. A refused, failed or
 *              late connect is reported to passive detection and the next server is tried, up
 *              to the pool's retries; then the client is closed, nothing having been relayed.
 *   RELAY      relay.c moves bytes both ways, passing each end of stream on. It ends when both
 *              directions ended (closed with FINs), when either side fails (both are reset, so a
 *              server killed mid-stream is a reset for the client too), or when no byte moved
 *              either way for timeouts.tunnel.
 *
 * Client bytes that arrive before the server is connected wait in the client's socket: the relay
 * reads them once it starts, so they are never copied in the meantime.
 *
 * Accounting. A connection belongs to its pool from the moment the preamble is done (in_pool):
 * it counts in the pool's tcp_connections and tcp_active, its server's active gauge (and the
 * balancer's taken/released, as proxy.c does for requests), its bytes in tcp_bytes_in/out as
 * they move, and it gets one access log line when it closes. A connection that never got past its
 * PROXY header or TLS handshake is counted only there (TLS failure counters), as in HTTP mode.
 *
 * Ownership: a session owns its client connection, its timer, its relay (and what the relay
 * holds) and, from CONNECT on, one upstream, which never goes back to an idle pool. It holds a
 * reference to the snapshot it was accepted on until it closes, reloads notwithstanding.
 * close_session() is the only place that frees any of it.
 */
#include "proxy/tcp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/container.h"
#include "core/freelist.h"
#include "core/log.h"
#include "core/net.h"
#include "core/recycler.h"
#include "core/tls_conn.h"
#include "lb/lb.h"
#include "proxy/accesslog.h"
#include "proxy/preamble.h"
#include "proxy/relay.h"
#include "proxy/stats.h"
#include "proxy/thread.h"
#include "proxy/upstream.h"
#include "tls/client.h"
#include "tls/server.h"

/* Rounds of work one event may do before the session yields to others. */
#define MAX_ROUNDS         16
#define MAX_SPARE_SESSIONS 1024

enum phase { TP_PROXY, TP_HANDSHAKE, TP_CONNECT, TP_RELAY };
/* What a step tells drive(): wait for an event, go on, yield to others (the relay did a fair
 * share and could do more), or the session is gone (never touch it again). */
enum step { STEP_WAIT, STEP_PROGRESS, STEP_YIELD, STEP_GONE };

struct tcp_session {
    struct conn conn; /* the client connection; first, so the loop's pointer is the session's */
    struct loop_timer timer;
    struct loop_task task; /* resumes drive() after a yield */
    struct worker *w;
    struct snapshot *snap;           /* the snapshot this connection was accepted on */
    struct tcp_session *prev, *next; /* the thread's open sessions */
    struct freelist_node spare;      /* on the thread's spares */
    struct upstream *up;             /* CONNECT, RELAY */
    struct server *server;           /* the server of the current attempt */
    struct server *failed[4];        /* servers whose connect failed (most recent last) */
    struct relay relay;              /* RELAY */
    union preamble_peer peer;        /* the client, as a PROXY header may have named it */
    union preamble_peer dst;         /* where it connected to (preamble_destination) */

    uint64_t deadline; /* of the PROXY, HANDSHAKE and CONNECT phases (loop clock, ms) */
    uint64_t t_start_us, t_pool_us, t_pick_us, t_connect_us;
    uint64_t counted_in, counted_out; /* relayed bytes already added to the pool's counters */
    const char *term;                 /* how it ended, for the access log */
    struct server *active;            /* the server counting this connection as in flight */
    uint64_t active_us;               /* when it took it; kept only if the balancer follows */
    bool active_failed;               /* its connect failed: the balancer hears LB_FAILED */
    bool in_pool;                     /* handed to the pool: counted, and logged when it ends */
    int8_t client_state;              /* enum stats_client_state it is counted in */
    uint8_t phase, nfailed, attempts; /* attempts: servers tried after the first one */
    uint16_t listener;
};

/* What this module keeps per worker thread (thread.h: w->tcp). */
struct tcp_local {
    struct tcp_session *sessions; /* every open TCP connection, for stop */
    unsigned nsessions;
    struct recycler spares; /* closed sessions: reusable after the batch (tcp_recycle) */
};

static void drive(struct tcp_session *s);
static void client_event(struct loop *loop, struct loop_io *io);

static inline uint64_t now_ms(const struct tcp_session *s)
{
    return loop_now_ms(s->w->loop);
}

static inline const struct conf_timeouts *timeouts(const struct tcp_session *s)
{
    return &s->snap->conf->timeouts;
}

static const struct pool *session_pool(const struct tcp_session *s)
{
    return s->snap->listeners[s->listener].pool;
}

static void set_phase(struct tcp_session *s, uint8_t phase)
{
    int8_t to =
        phase == TP_PROXY || phase == TP_HANDSHAKE ? STATS_CLIENT_READING : STATS_CLIENT_ACTIVE;
    if (to != s->client_state) {
        stats_client_move(s->w->stats, s->client_state, to);
        s->client_state = to;
    }
    s->phase = phase;
}

/* The server this connection counts against as "in flight" (NULL: none), as proxy.c's
 * set_active() does for requests. */
static void set_active(struct tcp_session *s, struct server *srv)
{
    if (s->active == srv)
        return;
    const struct pool *pool = session_pool(s);
    bool follow = lb_follows_requests(pool);
    if (s->active) {
        stats_sub(&stats_server(s->w->stats, s->active->slot)->active, 1);
        if (follow) { /* a connection's latency is its connect time, not its whole life */
            uint64_t end = s->t_connect_us > s->active_us && srv == NULL ? s->t_connect_us
                                                                         : loop_now_us(s->w->loop);
            lb_released(pool, worker_lb_state(s->w, pool), s->active, end - s->active_us,
                        s->active_failed ? LB_FAILED : LB_OK);
        }
        s->active_failed = false;
    }
    if (srv) {
        stats_add(&stats_server(s->w->stats, srv->slot)->active, 1);
        if (follow) {
            s->active_us = loop_now_us(s->w->loop);
            lb_taken(pool, worker_lb_state(s->w, pool), srv);
        }
    }
    s->active = srv;
}

/* ---- session memory ---- */

struct tcp_local *tcp_local_new(void)
{
    struct tcp_local *tl = calloc(1, sizeof(*tl));
    if (tl)
        recycler_init(&tl->spares, MAX_SPARE_SESSIONS);
    return tl;
}

unsigned tcp_open_sessions(const struct worker *w)
{
    return w->tcp->nsessions;
}

static struct tcp_session *session_alloc(struct worker *w)
{
    return recycler_take(&w->tcp->spares, sizeof(struct tcp_session),
                         offsetof(struct tcp_session, spare));
}

/* Sessions closed during the batch may still have events queued: reuse only after it. */
static void session_bury(struct worker *w, struct tcp_session *s)
{
    recycler_bury(&w->tcp->spares, &s->spare);
}

void tcp_recycle(struct worker *w)
{
    recycler_flush(&w->tcp->spares, offsetof(struct tcp_session, spare));
}

void tcp_local_free(struct worker *w)
{
    struct tcp_local *tl = w->tcp;
    if (!tl)
        return;
    recycler_free_all(&tl->spares, offsetof(struct tcp_session, spare));
    free(tl);
    w->tcp = NULL;
}

/* ---- accounting ---- */

/* Adds the bytes relayed since the last call to the pool's counters, so that a long connection
 * shows in rates while it lasts. */
static void count_bytes(struct tcp_session *s)
{
    struct stats_pool *ps = stats_pool(s->w->stats, session_pool(s)->slot);
    uint64_t in = relay_bytes_a_to_b(&s->relay), out = relay_bytes_b_to_a(&s->relay);
    if (in != s->counted_in) {
        stats_add(&ps->tcp_bytes_in, in - s->counted_in);
        s->counted_in = in;
    }
    if (out != s->counted_out) {
        stats_add(&ps->tcp_bytes_out, out - s->counted_out);
        s->counted_out = out;
    }
}

static double ms_between(uint64_t from_us, uint64_t to_us)
{
    return from_us && to_us >= from_us ? (double)(to_us - from_us) / 1000.0 : -1;
}

/* The connection enters its pool: counted from now on. */
static void enter_pool(struct tcp_session *s)
{
    struct stats_pool *ps = stats_pool(s->w->stats, session_pool(s)->slot);
    stats_add(&ps->tcp_connections, 1);
    stats_add(&ps->tcp_active, 1);
    s->in_pool = true;
    s->term = "ok";
    s->t_pool_us = loop_now_us(s->w->loop);
}

/* The connection leaves its pool: the counters it held, and its access log line. */
static void leave_pool(struct tcp_session *s)
{
    struct worker *w = s->w;
    const struct pool *pool = session_pool(s);
    s->in_pool = false;
    set_active(s, NULL);
    count_bytes(s);
    stats_sub(&stats_pool(w->stats, pool->slot)->tcp_active, 1);
    if (!accesslog_enabled())
        return;
    uint64_t total = loop_now_us(w->loop) - s->t_start_us;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t wall = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    struct accesslog_entry e = {
        .start_wall_us = wall - total,
        .client = &s->peer.sa,
        .version = 0, /* not HTTP: the line says TCP, with no method, target or status */
        .status = 0,
        .bytes_in = s->counted_in,
        .bytes_out = s->counted_out,
        .pool = pool->name,
        .server = s->server ? s->server->name : NULL,
        .queue_ms = ms_between(s->t_pool_us, s->t_pick_us),
        .connect_ms = ms_between(s->t_pick_us, s->t_connect_us),
        .response_ms = -1,
        .total_ms = (double)total / 1000.0,
        .retries = s->attempts,
        .termination = s->term,
    };
    accesslog_add(w->alog, &e, s->snap->conf->access_log.format);
}

/* ---- closing ---- */

/* Closes the session; reset = true ends both connections with an RST (the stream was cut). */
static int close_session(struct tcp_session *s, bool reset)
{
    struct worker *w = s->w;
    if (s->in_pool)
        leave_pool(s);
    stats_client_move(w->stats, s->client_state, -1);
    loop_timer_stop(w->loop, &s->timer);
    loop_cancel(w->loop, &s->task);
    relay_stop(&s->relay); /* before the connections it points at go */
    if (s->up) {
        upstream_close(w, s->up, reset);
        s->up = NULL;
    }
    conn_close(&s->conn, reset);
    if (s->prev)
        s->prev->next = s->next;
    else
        w->tcp->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    w->tcp->nsessions--;
    snapshot_unref(s->snap);
    w->on_client_closed(w);
    session_bury(w, s);
    return STEP_GONE;
}

/* ---- the server ---- */

static void upstream_event(struct loop *loop, struct loop_io *io)
{
    drive(((struct upstream *)io)->owner);
}

/* Counts a failure of srv for passive detection, as proxy.c's report_failure() does. */
static void report_failure(struct tcp_session *s, struct server *srv, unsigned failure)
{
    const struct conf_passive *p = &session_pool(s)->conf->passive;
    if (srv == s->active)
        s->active_failed = true;
    if (p->consecutive_failures)
        server_report_failure(srv, p->consecutive_failures, failure);
}

/* A server for the current attempt among those that have not failed it; NULL if none. As
 * proxy.c's pick_server(): the balancer skips servers that are down, draining, in maintenance or
 * ejected, and when_all_down: use-all tries the failing ones when nothing is up. */
static struct server *pick_server(struct tcp_session *s)
{
    const struct pool *pool = session_pool(s);
    struct lb_pick ctx = {.avoid = s->failed, .navoid = s->nfailed, .now_ms = now_ms(s)};
    /* A TCP connection has no request to hash: an algorithm that maps keys to servers gets the
     * client's address (the one a PROXY header named, if any). */
    ctx.key = preamble_peer_ip(&s->peer, &ctx.key_len);
    return lb_pick_server(pool, worker_lb_state(s->w, pool), &ctx);
}

static int connect_failed(struct tcp_session *s, struct server *srv, int err, const char *term);

/* Starts connecting to srv. */
static int use_server(struct tcp_session *s, struct server *srv)
{
    struct worker *w = s->w;
    s->server = srv;
    if (!s->t_pick_us)
        s->t_pick_us = loop_now_us(w->loop);
    set_active(s, srv);
    int err = 0;
    struct upstream *u = upstream_connect(w, srv, session_pool(s)->tls, upstream_event, &err);
    if (!u)
        return connect_failed(s, srv, err, NULL);
    enum conf_proxy_send pp = session_pool(s)->conf->proxy_protocol;
    if (pp && upstream_send_proxy_header(u, pp == CONF_PROXY_SEND_V1 ? 1 : 2, &s->peer.sa,
                                         preamble_destination(&s->conn, &s->dst)) < 0) {
        log_error("pool %s: cannot write a PROXY protocol header", session_pool(s)->name);
        upstream_close(w, u, true);
        return close_session(s, true);
    }
    u->owner = s;
    s->up = u;
    s->deadline = now_ms(s) + timeouts(s)->connect_ms;
    set_phase(s, TP_CONNECT);
    return STEP_PROGRESS;
}

/*
 * Connecting to srv failed (refused, unreachable, timed out, or its TLS handshake failed: term
 * "tls_error"): nothing was sent to it, so another server may have the connection, up to the
 * pool's retries. When none is left, the client is closed.
 */
static int connect_failed(struct tcp_session *s, struct server *srv, int err, const char *term)
{
    log_debug("pool %s server %s: connect: %s", srv->pool_name, srv->name,
              term ? term : strerror(err));
    if (net_local_shortage(err)) { /* not the server's fault: do not count it, nor try others */
        s->term = "local_shortage";
        return close_session(s, false);
    }
    report_failure(s, srv, SERVER_FAIL_CONNECT);
    struct server *next = NULL;
    if (s->attempts < session_pool(s)->conf->retries) {
        if (s->nfailed == sizeof(s->failed) / sizeof(s->failed[0])) {
            memmove(s->failed, s->failed + 1, sizeof(s->failed) - sizeof(s->failed[0]));
            s->nfailed--;
        }
        s->failed[s->nfailed++] = srv;
        next = pick_server(s);
    }
    if (!next) { /* this failure is how the connection ends */
        s->term = term ? term : err == ETIMEDOUT ? "connect_timeout" : "connect_error";
        return close_session(s, false);
    }
    s->attempts++;
    stats_add(&stats_pool(s->w->stats, session_pool(s)->slot)->retries, 1);
    log_debug("pool %s: retrying on %s after %s failed (attempt %u)", session_pool(s)->name,
              next->name, srv->name, s->attempts + 1);
    return use_server(s, next);
}

/* The preamble is done: the connection goes to its pool. */
static int start_pool(struct tcp_session *s)
{
    enter_pool(s);
    struct server *srv = pick_server(s);
    if (!srv) {
        log_debug("pool %s: no server available for a TCP connection", session_pool(s)->name);
        s->term = "no_server";
        return close_session(s, false);
    }
    return use_server(s, srv);
}

/* ---- phases ---- */

static int step_proxy_header(struct tcp_session *s)
{
    const struct snapshot_listener *sl = &s->snap->listeners[s->listener];
    switch (preamble_proxy_header(&s->conn, &s->peer, &s->dst, sl->conf->name)) {
    case PREAMBLE_WAIT:
        return STEP_WAIT;
    case PREAMBLE_CLOSE:
        return close_session(s, false);
    case PREAMBLE_REFUSED:
        return close_session(s, true);
    default:
        break;
    }
    if (!sl->tls)
        return start_pool(s);
    if (preamble_start_tls(&s->conn, sl->tls, client_event) < 0)
        return close_session(s, true);
    set_phase(s, TP_HANDSHAKE);
    s->deadline = now_ms(s) + timeouts(s)->tls_handshake_ms;
    return STEP_PROGRESS;
}

static int step_handshake(struct tcp_session *s)
{
    enum preamble_status r = preamble_handshake(&s->conn, s->w->stats);
    if (r == PREAMBLE_WAIT)
        return STEP_WAIT;
    if (r != PREAMBLE_DONE)
        return close_session(s, false);
    return start_pool(s);
}

static int step_connect(struct tcp_session *s)
{
    struct upstream *u = s->up;
    int err = 0;
    const char *why = NULL;
    enum conn_status r = upstream_finish_connect(u, &err, &why);
    if (r == CONN_BLOCKED)
        return STEP_WAIT;
    struct server *srv = u->server;
    if (r == CONN_ERROR) {
        upstream_close(s->w, u, false);
        s->up = NULL;
        if (why && atomic_exchange(&srv->tls_failure, why) != why) /* once per kind */
            log_warn("pool %s server %s: TLS handshake failed: %s", srv->pool_name, srv->name, why);
        return connect_failed(s, srv, err, why ? "tls_error" : NULL);
    }
    if (u->conn.ssl && atomic_load_explicit(&srv->tls_failure, memory_order_relaxed))
        atomic_store(&srv->tls_failure, NULL); /* the next failure is news again */
    server_report_success(srv);
    s->t_connect_us = loop_now_us(s->w->loop);
    relay_start(&s->relay, s->w, &s->conn, &u->conn, NULL, NULL);
    set_phase(s, TP_RELAY);
    return STEP_PROGRESS;
}

static int step_relay(struct tcp_session *s)
{
    enum relay_status r = relay_pump(&s->relay);
    count_bytes(s);
    switch (r) {
    case RELAY_PROGRESS:
        return STEP_YIELD;
    case RELAY_WAIT:
        return STEP_WAIT;
    case RELAY_DONE:
        return close_session(s, false);
    case RELAY_ERROR_A:
        log_debug("TCP connection: client: %s", strerror(s->relay.error));
        s->term = "client_abort";
        return close_session(s, true);
    default:
        log_debug("TCP connection: pool %s server %s: %s", session_pool(s)->name, s->server->name,
                  strerror(s->relay.error));
        s->term = "server_error";
        return close_session(s, true);
    }
}

/* ---- timers ---- */

static void arm_timer(struct tcp_session *s)
{
    if (s->phase == TP_RELAY)
        loop_timer_set_lazy(s->w->loop, &s->timer,
                            relay_last_io_ms(&s->relay) + timeouts(s)->tunnel_ms);
    else
        loop_timer_set_at(s->w->loop, &s->timer, s->deadline);
}

static void on_timer(struct loop *loop, struct loop_timer *timer)
{
    struct tcp_session *s = container_of(timer, struct tcp_session, timer);
    uint64_t now = loop_now_ms(loop);
    switch (s->phase) {
    case TP_PROXY:
        close_session(s, false);
        return;
    case TP_HANDSHAKE:
        stats_add(&s->w->stats->tls_failures[stats_tls_failure_index("timeout")], 1);
        close_session(s, false);
        return;
    case TP_CONNECT: {
        if (now < s->deadline)
            break;
        struct server *srv = s->up->server;
        upstream_close(s->w, s->up, false);
        s->up = NULL;
        if (connect_failed(s, srv, ETIMEDOUT, NULL) == STEP_GONE)
            return;
        break;
    }
    default:
        if (now < relay_last_io_ms(&s->relay) + timeouts(s)->tunnel_ms)
            break;
        /* Silent both ways for timeouts.tunnel. Bytes still held (a side that stopped reading)
         * would be lost: then the close is a reset, else an ordinary one. */
        s->term = "idle_timeout";
        close_session(s, relay_pending(&s->relay));
        return;
    }
    drive(s);
}

/* ---- the driver ---- */

static void drive(struct tcp_session *s)
{
    for (unsigned round = 0; round < MAX_ROUNDS; round++) {
        int r;
        /* Before the relay, a client that reset (or closed both ways) has nothing left to say;
         * the relay watches for resets itself, and a half-closed client is ordinary for it. */
        if (s->phase != TP_RELAY && (s->conn.io.ready & (LOOP_HUP | LOOP_ERR))) {
            if (s->in_pool)
                s->term = "client_abort";
            close_session(s, s->phase == TP_CONNECT);
            return;
        }
        switch (s->phase) {
        case TP_PROXY:
            r = step_proxy_header(s);
            break;
        case TP_HANDSHAKE:
            r = step_handshake(s);
            break;
        case TP_CONNECT:
            r = step_connect(s);
            break;
        default:
            r = step_relay(s);
            break;
        }
        if (r == STEP_GONE)
            return;
        if (r == STEP_WAIT) {
            arm_timer(s);
            return;
        }
        if (r == STEP_YIELD)
            break;
    }
    /* Still busy after a fair share: let other connections run, continue next iteration. */
    loop_defer(s->w->loop, &s->task);
    arm_timer(s);
}

static void on_task(struct loop *loop, struct loop_task *task)
{
    drive(container_of(task, struct tcp_session, task));
}

static void client_event(struct loop *loop, struct loop_io *io)
{
    drive((struct tcp_session *)io);
}

/* ---- public ---- */

void tcp_accept(struct worker *w, unsigned listener, int fd, const struct sockaddr *peer,
                socklen_t peer_len)
{
    struct tcp_session *s = session_alloc(w);
    if (!s) {
        close(fd);
        w->on_client_closed(w);
        return;
    }
    const struct snapshot_listener *sl = &w->snap->listeners[listener];
    const struct tls_server *tls = sl->tls;
    bool proxy_header = sl->conf->proxy_protocol.accept;
    if (preamble_accept(&s->conn, fd, sl, peer, client_event) < 0) {
        w->on_client_closed(w);
        session_bury(w, s);
        return;
    }
    s->timer.fn = on_timer;
    s->task.fn = on_task;
    s->w = w;
    s->listener = (uint16_t)listener;
    s->client_state = -1;
    s->t_start_us = loop_now_us(w->loop);
    stats_add(&w->stats->accepted, 1);
    if (peer_len > sizeof(s->peer))
        peer_len = sizeof(s->peer);
    memcpy(&s->peer, peer, peer_len);
    if (conn_watch(w->loop, &s->conn) < 0) {
        log_error("epoll_ctl: %s", strerror(errno));
        conn_close(&s->conn, false);
        w->on_client_closed(w);
        session_bury(w, s);
        return;
    }
    s->snap = w->snap;
    snapshot_ref(s->snap);
    struct tcp_local *tl = w->tcp;
    s->next = tl->sessions;
    if (tl->sessions)
        tl->sessions->prev = s;
    tl->sessions = s;
    tl->nsessions++;
    if (proxy_header) {
        set_phase(s, TP_PROXY);
        s->deadline = loop_now_ms(w->loop) + timeouts(s)->client_header_ms;
    } else if (tls) {
        set_phase(s, TP_HANDSHAKE);
        s->deadline = loop_now_ms(w->loop) + timeouts(s)->tls_handshake_ms;
    } else {
        set_phase(s, TP_CONNECT); /* counted as active from the start, as it is */
        if (start_pool(s) != STEP_GONE)
            drive(s); /* a loopback connect may be done already: no event would say so */
        return;
    }
    arm_timer(s);
}

void tcp_stop(struct worker *w)
{
    struct tcp_session *s = w->tcp->sessions;
    while (s) {
        struct tcp_session *next = s->next;
        if (s->phase == TP_PROXY || s->phase == TP_HANDSHAKE)
            close_session(s, false);
        s = next;
    }
}

void tcp_close_all(struct worker *w)
{
    while (w->tcp->sessions) {
        w->tcp->sessions->term = "shutdown";
        close_session(w->tcp->sessions, true);
    }
}
