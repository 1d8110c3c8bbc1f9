/*
 * proxy.c - the life of a request: one client connection (a session) and the backend connection
 * it borrows for each request.
 *
 *            client socket                                   backend socket
 *   client ---------------> [ in buffer ] -----------------> server
 *          <--------------- [ out buffer ] <-----------------
 *
 * A session owns two buffers, both taken from the thread's pool only while bytes are in flight:
 *   in   request bytes. The head is parsed where it lies and rewritten in place; body bytes are
 *        validated (Content-Length count or chunked framing) and written to the server as they
 *        come. Bytes already sent are kept until the response starts, so that a request whose
 *        idle backend connection turns out to be dead can be sent again on a fresh one.
 *        Pipelined requests wait behind the current one, unread or unparsed.
 *   out  response bytes (or an error fulcrum generates). Interim 1xx heads and the final head
 *        are rewritten in place; body bytes are validated and written to the client as they come.
 * Neither direction ever holds more than one buffer: when a buffer is full, reading from that
 * side stops until the other side has taken the bytes (backpressure).
 *
 * Phases of a session (s->phase), driven by one function, drive(), which is called on every
 * event of either socket and loops until nothing more can be done. A TLS listener's session
 * starts in HANDSHAKE, which ends in IDLE or, failed or late (timeouts.tls_handshake), closed.
 * On a listener that accepts the PROXY protocol, PROXY comes first: the header is read (and
 * names the client) before the handshake or the first request.
 *
 *   IDLE ----first byte----> HEAD ----head parsed----> EXCHANGE ----response sent----> IDLE
 *     |                        | bad head / timeout       |  (keep-alive; next pipelined
 *     | idle timeout           v                          |   request is parsed at once)
 *     v                   error response ------------>    | not keep-alive
 *   closed                                                v
 *                                                       LINGER (half-closed, discarding input
 *                                                       so the client reads our answer) -> closed
 *
 * Within EXCHANGE, the request side is "complete" once all its bytes were validated and the
 * response side moves WAIT (head) -> BODY -> DONE. The backend connection goes back to its idle
 * pool as soon as both are finished; the transaction ends when the client has taken every byte.
 *
 * Failures are answered by status (400, 408, 414, 431, 501, 505 for requests; 502, 503, 504 for
 * backends) as long as no byte of the final response head went to the client. After that the
 * client connection is reset instead, so a cut-short response never looks complete. Every backend
 * failure is reported to passive detection with its kind (server_failed, enum server_failure).
 *
 * HTTP/2 (h2front.h): a connection that agrees on h2 (ALPN, in HANDSHAKE) or starts with the
 * h2c preface (IDLE, on a listener with h2c: true) leaves its session for h2front.c; each of its
 * streams comes back as a session of its own (proxy_open_stream, s->stream), whose connection
 * is the stream: it reads one request as HTTP/1.1 and writes the response as HTTP/1.1, and the
 * phases above apply unchanged, except that it never lingers and holds no connection slot.
 *
 * Timers (arm_timer): the response head has a deadline, timeouts.server from the request's last
 * byte sent (resp_deadline); a server that stalls while taking the request body or sending the
 * response body is cut after timeouts.server_body_idle of silence. A client that leaves while the
 * exchange is in progress (client_left) aborts the backend request, unless the pool says
 * ignore_client_abort; the request is logged with status 499.
 */
#include "proxy/proxy.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/container.h"
#include "core/freelist.h"
#include "core/log.h"
#include "core/net.h"
#include "core/recycler.h"
#include "core/tls_conn.h"
#include "http/grpc.h"
#include "http/path.h"
#include "http/rewrite.h"
#include "lb/keys.h"
#include "lb/lb.h"
#include "lb/routing.h"
#include "proxy/accesslog.h"
#include "proxy/h2front.h"
#include "proxy/preamble.h"
#include "proxy/relay.h"
#include "proxy/stats.h"
#include "proxy/thread.h"
#include "proxy/upstream.h"
#include "route/reply.h"
#include "route/route.h"
#include "tls/server.h"

/* Rounds of work one event may do before the session yields to others. */
#define MAX_ROUNDS 16
/* Lingering close: how long, and how much, we read and discard after our last response. */
#define LINGER_MS          5000
#define LINGER_MAX_BYTES   (1u << 20)
#define MAX_SPARE_SESSIONS 1024
#define MAX_SPARE_REQLOGS  1024

enum phase { PH_PROXY, PH_HANDSHAKE, PH_IDLE, PH_HEAD, PH_EXCHANGE, PH_LINGER, PH_TUNNEL };
enum resp_state { RS_WAIT, RS_BODY, RS_DONE };
enum step { STEP_WAIT, STEP_PROGRESS, STEP_GONE };

struct session {
    struct conn conn; /* the client connection; first, so the loop's pointer is the session's */
    struct loop_timer timer;
    struct loop_task task; /* resumes drive() after a yield */
    struct worker *w;
    struct snapshot *snap;       /* the snapshot this connection started on */
    struct pool *pool;           /* the current request's pool (its route's, or the listener's);
                                  * NULL: none (answered by fulcrum itself) */
    const struct route *route;   /* the route the current request matched, or NULL */
    struct session *prev, *next; /* the thread's open sessions */
    struct freelist_node spare;  /* on the thread's spares */
    struct upstream *up;
    struct server *server;    /* the server of the current attempt */
    struct server *failed[4]; /* servers that already failed this request (most recent last) */
    struct buf in, out;
    struct relay *relay; /* PH_TUNNEL: client <-> server bytes after a 101 (owns the buffers);
                          * allocated for the tunnel, so other connections do not carry it */

    struct http1_scan scan; /* the request head, then each response head */
    struct http1_chunked req_chunk, resp_chunk;
    uint64_t req_left, resp_left; /* Content-Length bytes not yet seen */
    uint64_t resp_bytes;          /* bytes received from the server for this request */
    uint32_t req_fwd;             /* in: request bytes (from in.start) validated for the server */
    uint32_t req_sent;            /* in: of those, bytes written to the server */
    uint32_t resp_fwd;            /* out: bytes (from out.start) ready for the client */
    uint32_t interim_len;         /* out: of those, interim (1xx) bytes ahead of the final head */
    uint32_t linger_bytes;

    uint64_t idle_deadline, head_deadline, connect_deadline, linger_deadline;
    uint64_t resp_deadline; /* the response head is due (timeouts.server); 0: request not sent */
    uint64_t grpc_deadline; /* a gRPC call's grpc-timeout runs out (its head is due); 0: none */
    uint64_t client_io_ms, server_io_ms; /* last progress on each side */

    /* the request in progress, for counters and the access log */
    uint64_t t_start_us, t_head_us, t_pick_us, t_connect_us, t_resp_us;
    uint64_t bytes_in, bytes_out;
    const char *term;      /* how it ended, if not normally ("ok") */
    struct reqlog *reqlog; /* method, target and agents, copied for the access log */
    char *client_subject;  /* the verified client certificate's subject, if it is passed on */
    struct server *active; /* the server counting this request as in flight */
    /* what the balancer gets of the current request (lb/keys.h), read before its head is
     * rewritten and kept for its retries */
    uint64_t key_digest;        /* hash_key's digest, when key_kind is KEY_DIGEST */
    struct server *sticky_from; /* the server the request's sticky cookie named; NULL: none */
    uint8_t key_kind;           /* enum key_kind */
    bool spilled;               /* hash with bounded load passed the key's own server over */
    uint64_t active_us;  /* when active took it; kept only if the balancer follows requests */
    bool active_failed;  /* report_failure() blamed active: the balancer hears LB_FAILED */
    int8_t client_state; /* enum stats_client_state this session is counted in */
    bool in_request;     /* a request began and has not been accounted yet */

    uint32_t requests; /* requests finished on this connection */
    uint16_t status;
    uint8_t phase, resp_state, req_body, resp_body, method, version;
    uint16_t listener;
    uint8_t nfailed, attempts; /* attempts: servers tried after the first one */
    bool req_complete;         /* every request byte has been validated */
    bool idempotent;           /* the method may be sent twice (RFC 9110 section 9.2.2) */
    bool sent_any;             /* some request byte reached a server */
    bool replayable;           /* every request byte is still in `in` */
    bool keep_alive;           /* the client connection stays open after this response */
    bool server_keep_alive;    /* the backend connection may carry another request */
    bool dechunk;              /* strip chunked framing (HTTP/1.0 client) */
    bool final_started; /* a byte of the final response reached the client: no error answer now */
    bool client_eof, server_eof;
    bool websocket;          /* the request is a WebSocket opening handshake */
    bool grpc;               /* the request is a gRPC call: fulcrum's own answers are gRPC's */
    bool grpc_expired;       /* its grpc-timeout ran out before the response head came */
    bool client_fin_checked; /* the client's FIN came behind pipelined bytes: a half-close */
    bool status_failure;     /* the response's status counts against the server */
    bool stream;             /* the client is one stream of an HTTP/2 connection (h2front.h):
                              * one request, no socket or connection slot of its own */
    int up_errno;

    union preamble_peer peer;
    /* The address the client connected to, for a PROXY header to servers: what the client's own
     * PROXY header said, else the socket's local address, looked up when first needed
     * (AF_UNSPEC until then). */
    union preamble_peer dst;
};

/* What the access log needs of a request head, copied: the head itself may be gone by the end. */
#define REQLOG_TARGET 1024
#define REQLOG_AGENT  256
struct reqlog {
    struct freelist_node spare;
    uint16_t method_len, target_len, ua_len, referer_len;
    char method[24];
    char target[REQLOG_TARGET];
    char ua[REQLOG_AGENT];
    char referer[REQLOG_AGENT];
};

enum key_kind {
    KEY_NONE = 0, /* no hash key: the algorithm's fallback */
    KEY_CLIENT,   /* the client's address */
    KEY_DIGEST,   /* key_digest */
};

static void drive(struct session *s);
static void client_event(struct loop *loop, struct loop_io *io);
static void on_timer(struct loop *loop, struct loop_timer *timer);
static void on_task(struct loop *loop, struct loop_task *task);
static void arm_timer(struct session *s);

static inline uint64_t now_ms(const struct session *s)
{
    return loop_now_ms(s->w->loop);
}

static inline const struct conf_timeouts *timeouts(const struct session *s)
{
    return &s->snap->conf->timeouts;
}

static const struct pool *session_pool(const struct session *s)
{
    return s->pool;
}

/* The header rules for the current request's messages: the listener's, then its route's. */
static struct rewrite_rule_list session_rules(const struct session *s, bool response)
{
    const struct listener_routing *rt = s->snap->listeners[s->listener].routing;
    struct rewrite_rule_list list = {.n = 0};
    const struct rewrite_rules *own = response ? &rt->response_rules : &rt->request_rules;
    if (own->nremove || own->nset || own->nadd)
        list.sets[list.n++] = own;
    if (s->route) {
        const struct rewrite_rules *r =
            response ? &rt->route_response[s->route->index] : &rt->route_request[s->route->index];
        if (r->nremove || r->nset || r->nadd)
            list.sets[list.n++] = r;
    }
    return list;
}

static int8_t phase_client_state(uint8_t phase)
{
    switch (phase) {
    case PH_IDLE:
        return STATS_CLIENT_IDLE;
    case PH_PROXY:
    case PH_HANDSHAKE:
    case PH_HEAD:
        return STATS_CLIENT_READING;
    case PH_EXCHANGE:
        return STATS_CLIENT_ACTIVE;
    case PH_TUNNEL:
        return STATS_CLIENT_TUNNEL;
    default:
        return STATS_CLIENT_CLOSING;
    }
}

static void set_phase(struct session *s, uint8_t phase)
{
    /* an HTTP/2 stream is not a connection: its connection counts as one (h2front.c) */
    int8_t to = s->stream ? -1 : phase_client_state(phase);
    if (to != s->client_state) {
        stats_client_move(s->w->stats, s->client_state, to);
        s->client_state = to;
    }
    s->phase = phase;
}

/* The server this request counts against as "in flight" (NULL: none). The balancer hears of it
 * too (lb.h taken, released) if its algorithm follows requests; round-robin does not. */
static void set_active(struct session *s, struct server *srv)
{
    if (s->active == srv)
        return;
    const struct pool *pool = session_pool(s);
    bool follow = lb_follows_requests(pool);
    if (s->active) {
        stats_sub(&stats_server(s->w->stats, s->active->slot)->active, 1);
        if (follow) { /* the latency a balancer learns is the time to the response head */
            uint64_t end =
                s->t_resp_us > s->active_us && srv == NULL ? s->t_resp_us : loop_now_us(s->w->loop);
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

/* What this module keeps per worker thread (thread.h: w->proxy). */
struct proxy_local {
    struct session *sessions; /* every open client connection, for stop */
    unsigned nsessions;
    struct recycler spares;  /* closed sessions: reusable after the batch (proxy_recycle) */
    struct freelist reqlogs; /* access log copies of request heads, kept for reuse */
};

struct proxy_local *proxy_local_new(void)
{
    struct proxy_local *pl = calloc(1, sizeof(*pl));
    if (pl) {
        recycler_init(&pl->spares, MAX_SPARE_SESSIONS);
        freelist_init(&pl->reqlogs, MAX_SPARE_REQLOGS);
    }
    return pl;
}

unsigned proxy_open_sessions(const struct worker *w)
{
    return w->proxy->nsessions + h2front_open_count(w);
}

static struct session *session_alloc(struct worker *w)
{
    return recycler_take(&w->proxy->spares, sizeof(struct session),
                         offsetof(struct session, spare));
}

/* Puts a new session (a client connection or an HTTP/2 stream) on the worker's list. */
static void session_link(struct proxy_local *pl, struct session *s)
{
    s->next = pl->sessions;
    if (pl->sessions)
        pl->sessions->prev = s;
    pl->sessions = s;
    pl->nsessions++;
}

/* Sessions closed during the batch may still have events queued: reuse only after it. */
static void session_bury(struct worker *w, struct session *s)
{
    recycler_bury(&w->proxy->spares, &s->spare);
}

void proxy_recycle(struct worker *w)
{
    recycler_flush(&w->proxy->spares, offsetof(struct session, spare));
}

void proxy_local_free(struct worker *w)
{
    struct proxy_local *pl = w->proxy;
    if (!pl)
        return;
    struct reqlog *r;
    while ((r = freelist_take_entry(&pl->reqlogs, struct reqlog, spare)))
        free(r);
    recycler_free_all(&pl->spares, offsetof(struct session, spare));
    free(pl);
    w->proxy = NULL;
}

/* ---- accounting: counters and the access log, once per request ---- */

static void reqlog_release(struct session *s)
{
    if (s->reqlog) {
        if (!freelist_put(&s->w->proxy->reqlogs, &s->reqlog->spare))
            free(s->reqlog);
        s->reqlog = NULL;
    }
}

static size_t copy_cut(char *dst, size_t cap, const char *src, size_t len)
{
    size_t n = len < cap ? len : cap;
    memcpy(dst, src, n);
    return n;
}

/* Keeps what the access log will need of a parsed head (cut to bounded sizes). */
static void reqlog_capture(struct session *s, const char *buf, const struct http1_msg *msg)
{
    struct worker *w = s->w;
    if (!accesslog_enabled())
        return;
    struct reqlog *r = s->reqlog;
    if (!r)
        r = freelist_take_entry(&w->proxy->reqlogs, struct reqlog, spare);
    if (!r && !(r = malloc(sizeof(*r))))
        return;
    r->method_len =
        (uint16_t)copy_cut(r->method, sizeof(r->method), buf + msg->method_off, msg->method_len);
    r->target_len =
        (uint16_t)copy_cut(r->target, sizeof(r->target), buf + msg->target_off, msg->target_len);
    r->ua_len = r->referer_len = 0;
    for (uint32_t i = 0; i < msg->nfields; i++) {
        const struct http1_field *f = &msg->fields[i];
        const char *name = buf + f->name_off;
        if (f->name_len == 10 && http1_token_eq(name, 10, "user-agent"))
            r->ua_len = (uint16_t)copy_cut(r->ua, sizeof(r->ua), buf + f->value_off, f->value_len);
        else if (f->name_len == 7 && http1_token_eq(name, 7, "referer"))
            r->referer_len = (uint16_t)copy_cut(r->referer, sizeof(r->referer), buf + f->value_off,
                                                f->value_len);
    }
    s->reqlog = r;
}

static double ms_between(uint64_t from_us, uint64_t to_us)
{
    return from_us && to_us >= from_us ? (double)(to_us - from_us) / 1000.0 : -1;
}

static void begin_request(struct session *s)
{
    s->in_request = true;
    s->t_start_us = loop_now_us(s->w->loop);
    s->t_head_us = s->t_pick_us = s->t_connect_us = s->t_resp_us = 0;
    s->bytes_in = s->bytes_out = 0;
    s->term = "ok";
    s->server = NULL;
    s->nfailed = s->attempts = 0;
}

/* Counts the request that just ended (status 0: nothing was sent) and logs it. */
static void account_request(struct session *s, unsigned status)
{
    struct worker *w = s->w;
    if (!s->in_request)
        return;
    s->in_request = false;
    set_active(s, NULL);
    uint64_t now = loop_now_us(w->loop);
    uint64_t total = now - s->t_start_us;
    unsigned cls = status >= 100 && status < 600 ? status / 100 : 0;
    const struct pool *pool = session_pool(s);
    if (pool) {
        struct stats_pool *ps = stats_pool(w->stats, pool->slot);
        stats_add(&ps->requests[cls], 1);
        stats_observe(&ps->latency, total);
        if (s->spilled)
            stats_add(&ps->spilled, 1);
    }
    if (s->route) {
        unsigned slot = s->snap->listeners[s->listener].routing->slots[s->route->index];
        struct stats_pool *rs = stats_route(w->stats, slot);
        stats_add(&rs->requests[cls], 1);
        stats_observe(&rs->latency, total);
    }
    if (s->server) {
        struct stats_server *ss = stats_server(w->stats, s->server->slot);
        stats_add(&ss->requests[cls], 1);
        stats_observe(&ss->latency, total);
    }
    if (!s->t_head_us && status >= 400 && status < 500)
        stats_add(&w->stats->bad_requests, 1);
    if (accesslog_enabled()) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t wall = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
        const struct reqlog *r = s->reqlog;
        struct accesslog_entry e = {
            .start_wall_us = wall - total,
            .client = &s->peer.sa,
            .method = r ? r->method : NULL,
            .method_len = r ? r->method_len : 0,
            .target = r ? r->target : NULL,
            .target_len = r ? r->target_len : 0,
            .user_agent = r ? r->ua : NULL,
            .user_agent_len = r ? r->ua_len : 0,
            .referer = r ? r->referer : NULL,
            .referer_len = r ? r->referer_len : 0,
            .version = s->stream    ? 20
                       : s->version ? s->version
                                    : 11,
            .status = (uint16_t)status,
            .bytes_in = s->bytes_in,
            .bytes_out = s->bytes_out,
            .pool = pool ? pool->name : NULL,
            .route = s->route ? s->route->conf->name : NULL,
            .balance = pool ? conf_balance_name(pool->conf->balance) : NULL,
            .spilled = s->spilled,
            .server = s->server ? s->server->name : NULL,
            .queue_ms = ms_between(s->t_head_us, s->t_pick_us),
            .connect_ms = ms_between(s->t_pick_us, s->t_connect_us),
            .response_ms = ms_between(s->t_connect_us, s->t_resp_us),
            .total_ms = (double)total / 1000.0,
            .retries = s->attempts,
            .termination = s->term,
        };
        accesslog_add(w->alog, &e, s->snap->conf->access_log.format);
    }
    reqlog_release(s);
}

/* Records how a request ended, unless an earlier, more precise cause was recorded. */
static void set_term(struct session *s, const char *term)
{
    if (!s->term || strcmp(s->term, "ok") == 0)
        s->term = term;
}

/* ---- closing ---- */

/* The session's memory and what it holds goes; its client connection was closed or handed over. */
static int forget_session(struct session *s)
{
    struct worker *w = s->w;
    stats_client_move(w->stats, s->client_state, -1);
    loop_timer_stop(w->loop, &s->timer);
    loop_cancel(w->loop, &s->task);
    buf_put(&w->bufs, &s->in);
    buf_put(&w->bufs, &s->out);
    free(s->client_subject);
    s->client_subject = NULL;
    if (s->prev)
        s->prev->next = s->next;
    else
        w->proxy->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    w->proxy->nsessions--;
    snapshot_unref(s->snap);
    session_bury(w, s);
    return STEP_GONE;
}

static int close_session(struct session *s, bool reset)
{
    struct worker *w = s->w;
    if (s->relay && s->in_request) { /* closed by the stop, not by end_tunnel() */
        s->bytes_in += relay_bytes_a_to_b(s->relay);
        s->bytes_out += relay_bytes_b_to_a(s->relay);
        set_term(s, w->stopping ? "shutdown" : "client_abort");
        account_request(s, 101);
    }
    if (s->in_request) {
        set_term(s, w->stopping ? "shutdown" : "client_abort");
        /* 499 (nginx's "client closed request"): the client left before any response. */
        bool client_left_first = strcmp(s->term, "client_abort") == 0;
        account_request(s, s->final_started ? s->status : client_left_first ? 499 : 0);
    }
    if (s->relay) { /* its buffers and pipes go back before the connections close */
        relay_stop(s->relay);
        free(s->relay);
        s->relay = NULL;
    }
    if (s->up) {
        upstream_close(w, s->up, reset);
        s->up = NULL;
    }
    conn_close(&s->conn, reset);
    if (!s->stream) /* a stream's connection holds the slot (h2front.c) */
        w->on_client_closed(w);
    return forget_session(s);
}

/* The exchange cannot end cleanly: reset both sides so neither mistakes it for a complete one. */
static int abort_session(struct session *s)
{
    return close_session(s, true);
}

/* Closes now, or half-closes and discards input first if the client may still be sending, so
 * that our last response is not destroyed by the RST a close with unread data would cause. */
static int close_or_linger(struct session *s)
{
    if (s->stream) /* the stream ends our side; what the client still sends is refused there */
        return close_session(s, false);
    bool unread = !s->client_eof &&
                  (!s->req_complete || (s->in.data && s->in.end > s->in.start + s->req_fwd) ||
                   (s->conn.io.ready & LOOP_READABLE));
    if (!unread)
        return close_session(s, false);
    if (s->up) {
        upstream_close(s->w, s->up, true);
        s->up = NULL;
    }
    buf_put(&s->w->bufs, &s->out);
    conn_shutdown(&s->conn);
    set_phase(s, PH_LINGER);
    s->linger_deadline = now_ms(s) + LINGER_MS;
    s->linger_bytes = 0;
    return STEP_PROGRESS;
}

/* ---- connection I/O: one read or write per call (core/conn.h has the rules) ---- */

/* One read into b, up to limit, making room first if the buffer's front was consumed. */
static enum conn_status read_into(struct conn *c, struct buf *b, uint32_t limit, size_t *got)
{
    *got = 0;
    if (!(c->io.ready & LOOP_READABLE))
        return CONN_BLOCKED;
    if (b->end >= limit && b->start > 0)
        buf_compact(b);
    if (b->end >= limit)
        return CONN_BLOCKED;
    enum conn_status r = conn_read(c, b->data + b->end, limit - b->end, got);
    b->end += (uint32_t)*got;
    return r;
}

static enum conn_status client_read(struct session *s, uint32_t limit)
{
    if (!s->in.data && (s->conn.io.ready & LOOP_READABLE) && buf_get(&s->w->bufs, &s->in) < 0)
        return CONN_ERROR;
    size_t n;
    enum conn_status r = read_into(&s->conn, &s->in, limit, &n);
    if (r == CONN_DONE)
        s->client_io_ms = now_ms(s);
    else if (r == CONN_EOF)
        s->client_eof = true;
    return r;
}

static enum conn_status client_write(struct session *s)
{
    size_t n;
    enum conn_status r = conn_write(&s->conn, s->out.data + s->out.start, s->resp_fwd, &n);
    if (!n)
        return r;
    if (n > s->interim_len) {
        s->interim_len = 0;
        s->final_started = s->resp_state != RS_WAIT;
    } else {
        s->interim_len -= (uint32_t)n;
    }
    s->out.start += (uint32_t)n;
    s->resp_fwd -= (uint32_t)n;
    s->bytes_out += n;
    if (s->out.start == s->out.end)
        s->out.start = s->out.end = 0;
    s->client_io_ms = now_ms(s);
    return r;
}

static enum conn_status server_write(struct session *s)
{
    struct upstream *u = s->up;
    if (u->connecting)
        return CONN_BLOCKED;
    size_t n;
    enum conn_status r =
        conn_write(&u->conn, s->in.data + s->in.start + s->req_sent, s->req_fwd - s->req_sent, &n);
    if (r == CONN_ERROR)
        s->up_errno = errno;
    if (n) {
        s->req_sent += (uint32_t)n;
        s->sent_any = true;
        s->server_io_ms = now_ms(s);
    }
    return r;
}

static enum conn_status server_read(struct session *s)
{
    struct worker *w = s->w;
    struct upstream *u = s->up;
    if (u->connecting || !(u->conn.io.ready & LOOP_READABLE))
        return CONN_BLOCKED;
    if (!s->out.data && buf_get(&w->bufs, &s->out) < 0) {
        s->up_errno = ENOMEM;
        return CONN_ERROR;
    }
    /* While a head is awaited, leave room for rewriting it in place. */
    uint32_t limit = s->resp_state == RS_WAIT ? w->bufs.size - w->rewrite_reserve : w->bufs.size;
    size_t n;
    enum conn_status r = read_into(&u->conn, &s->out, limit, &n);
    if (r == CONN_DONE) {
        s->resp_bytes += n;
        s->server_io_ms = now_ms(s);
    } else if (r == CONN_EOF) {
        s->server_eof = true;
    } else if (r == CONN_ERROR) {
        s->up_errno = errno;
    }
    return r;
}

/* ---- responses fulcrum writes itself ---- */

static size_t canned_response(char *out, size_t cap, unsigned status, bool head_request,
                              bool keep_alive)
{
    const char *reason = http1_reason(status);
    char body[80];
    int body_len = snprintf(body, sizeof(body), "%u %s\n", status, reason);
    int n = snprintf(out, cap,
                     "HTTP/1.1 %u %s\r\n"
                     "Content-Type: text/plain\r\n"
                     "Content-Length: %d\r\n"
                     "%s"
                     "Connection: %s\r\n"
                     "\r\n"
                     "%s",
                     status, reason, body_len,
                     status == 503   ? "Retry-After: 1\r\n"
                     : status == 405 ? "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n"
                                     : "",
                     keep_alive ? "keep-alive" : "close", head_request ? "" : body);
    return (n > 0 && (size_t)n < cap) ? (size_t)n : 0;
}

/*
 * Answers the current request with an error, if the client has not seen a final response head
 * yet; otherwise the only honest thing left is to abort the connection.
 */
static int respond_error(struct session *s, unsigned status, const char *why)
{
    struct worker *w = s->w;
    char peer[NET_ADDR_TEXT];

    if (log_max_level >= LOG_DEBUG) {
        net_addr_format(&s->peer.sa, peer, sizeof(peer));
        log_debug("client %s: %u (%s)", peer, status, why);
    }
    set_term(s, status == 408                                     ? "client_timeout"
                : status == 503                                   ? "no_server"
                : status == 504                                   ? "server_timeout"
                : status >= 500 && status != 501 && status != 505 ? "server_error"
                                                                  : "bad_request");
    if (s->final_started)
        return abort_session(s);
    if (s->up) {
        upstream_close(w, s->up, true);
        s->up = NULL;
    }
    if (!s->out.data && buf_get(&w->bufs, &s->out) < 0)
        return abort_session(s);
    /* Keep interim responses not yet sent; drop the rest of what the server sent (a final head
     * that was accepted but not sent yet included). */
    if (s->resp_state != RS_WAIT)
        s->resp_fwd = s->interim_len;
    s->out.end = s->out.start + s->resp_fwd;
    /* A backend error keeps a client in step only if its request was complete and the backend
     * had not begun a response: a half-received response makes the whole exchange suspect. So
     * does a 404 for a well-formed request no route takes; other 4xx answer a broken request. */
    bool keep = s->keep_alive && s->req_complete && (status >= 500 || status == 404) &&
                !w->stopping && s->resp_state == RS_WAIT;
    size_t n;
    if (s->grpc) /* the client reads grpc-status; the status logged stays fulcrum's */
        n = grpc_reply(s->out.data + s->out.end, w->bufs.size - s->out.end,
                       s->grpc_expired ? GRPC_DEADLINE_EXCEEDED : grpc_status_of_http(status), why,
                       keep ? "" : "Connection: close\r\n");
    else
        n = canned_response(s->out.data + s->out.end, w->bufs.size - s->out.end, status,
                            s->method == HTTP1_METHOD_HEAD, keep);
    if (n == 0)
        return abort_session(s);
    s->out.end += (uint32_t)n;
    s->resp_fwd += (uint32_t)n;
    s->resp_state = RS_DONE;
    s->status = (uint16_t)status;
    s->keep_alive = keep;
    set_phase(s, PH_EXCHANGE);
    return STEP_PROGRESS;
}

/* ---- backend connection ---- */

static void upstream_event(struct loop *loop, struct loop_io *io)
{
    drive(((struct upstream *)io)->owner);
}

static int attach_upstream(struct session *s, struct server *srv, bool allow_idle);

/* Counts a failure of srv for passive detection (pool.h, check.c); failure is an
 * enum server_failure or a status. */
static void report_failure(struct session *s, struct server *srv, unsigned failure)
{
    const struct conf_passive *p = &session_pool(s)->conf->passive;
    if (srv == s->active) /* the balancer hears it when the server lets the request go */
        s->active_failed = true;
    if (p->consecutive_failures) /* reaching the threshold wakes the control thread */
        server_report_failure(srv, p->consecutive_failures, failure);
}

/* Picks a server for the current attempt among those that have not failed it yet; NULL if none.
 * The server a sticky cookie named comes first, while it may take the request. */
static struct server *pick_server(struct session *s)
{
    const struct pool *pool = session_pool(s);
    struct lb_pick ctx = {.avoid = s->failed, .navoid = s->nfailed, .now_ms = now_ms(s)};
    if (s->sticky_from && lb_candidate(s->sticky_from, &ctx) && server_weight(s->sticky_from))
        return s->sticky_from;
    if (s->key_kind == KEY_DIGEST) {
        ctx.key = &s->key_digest;
        ctx.key_len = sizeof(s->key_digest);
    } else if (s->key_kind == KEY_CLIENT) {
        ctx.key = preamble_peer_ip(&s->peer, &ctx.key_len);
    }
    struct server *srv = lb_pick_server(pool, worker_lb_state(s->w, pool), &ctx);
    s->spilled |= ctx.spilled;
    return srv;
}

/* Reads what the pool's balancer wants of the request (lb/keys.h) from its head, which is about
 * to be rewritten. A pool that requires a hash key answers a request without one with 503. */
static int read_balance_keys(struct session *s, const struct http1_msg *msg)
{
    const struct pool *pool = session_pool(s);
    s->key_kind = KEY_NONE;
    s->sticky_from = NULL;
    s->spilled = false;
    if (!pool)
        return STEP_PROGRESS;
    const struct conf_pool *pc = pool->conf;
    const char *head = s->in.data + s->in.start;
    if (pc->balance == CONF_BALANCE_HASH) {
        if (pc->hash_key == CONF_HASH_CLIENT_IP)
            s->key_kind = KEY_CLIENT;
        else if (lb_request_key(pc, head, msg, head + msg->path_off, msg->path_len, &s->key_digest))
            s->key_kind = KEY_DIGEST;
        else if (pc->hash_key_required) {
            set_term(s, "no_hash_key");
            s->req_fwd = msg->head_end; /* the head is consumed as it is */
            return respond_error(s, 503, "the request has no hash key");
        }
    }
    if (pc->sticky.enabled)
        s->sticky_from = lb_sticky_find(pool, head, msg);
    return STEP_PROGRESS;
}

static int use_server(struct session *s, struct server *srv)
{
    s->server = srv;
    if (!s->t_pick_us)
        s->t_pick_us = loop_now_us(s->w->loop);
    set_active(s, srv);
    return attach_upstream(s, srv, true);
}

static int try_server(struct session *s)
{
    struct server *srv = pick_server(s);
    if (!srv)
        return respond_error(s, 503, "no server available");
    return use_server(s, srv);
}

/*
 * May the request go to another server after its current one failed? Only while the pool's
 * retries last and we still hold every byte of it, and only if sending it again cannot do harm:
 * when the failure was a connect (nothing was sent) for any request whose bytes never reached a
 * server before, or, for an idempotent request, when no response byte came back, or only bytes
 * that were not a response at all (junk_only: nothing of them is on its way to the client).
 */
static bool may_retry(const struct session *s, bool connect_failure, bool junk_only)
{
    if (s->attempts >= session_pool(s)->conf->retries || !s->replayable ||
        (s->resp_bytes && !junk_only))
        return false;
    if (connect_failure)
        return s->idempotent || !s->sent_any;
    return s->idempotent;
}

/*
 * The current server failed the request in a way that allows another try (may_retry). Another
 * server gets it if there is one left; otherwise the client gets this failure.
 */
static int retry_elsewhere(struct session *s, struct server *failed, unsigned status,
                           const char *why, const char *term)
{
    if (s->nfailed == sizeof(s->failed) / sizeof(s->failed[0])) {
        memmove(s->failed, s->failed + 1, sizeof(s->failed) - sizeof(s->failed[0]));
        s->nfailed--;
    }
    s->failed[s->nfailed++] = failed;
    struct server *next = pick_server(s);
    if (!next) {
        set_term(s, term);
        return respond_error(s, status, why);
    }
    s->attempts++;
    stats_add(&stats_pool(s->w->stats, session_pool(s)->slot)->retries, 1);
    s->req_sent = 0;
    if (s->out.data) /* whatever the failed server sent and the client was not given */
        s->out.end = s->out.start + s->resp_fwd;
    s->resp_bytes = 0;
    memset(&s->scan, 0, sizeof(s->scan));
    log_debug("pool %s: retrying on %s after %s failed (attempt %u)", session_pool(s)->name,
              next->name, failed->name, s->attempts + 1);
    return use_server(s, next);
}

/* Connecting to srv failed (refused, unreachable, timed out): nothing was sent on it. */
static int connect_failed(struct session *s, struct server *srv, int err)
{
    log_debug("pool %s server %s: connect: %s", srv->pool_name, srv->name, strerror(err));
    if (net_local_shortage(err)) { /* not the server's fault: do not count it, nor try others */
        set_term(s, "local_shortage");
        return respond_error(s, 503, "out of local resources");
    }
    report_failure(s, srv, SERVER_FAIL_CONNECT);
    unsigned status = err == ETIMEDOUT ? 504 : 502;
    const char *why = err == ETIMEDOUT ? "connect timeout" : "cannot connect to server";
    const char *term = err == ETIMEDOUT ? "connect_timeout" : "connect_error";
    if (may_retry(s, true, false))
        return retry_elsewhere(s, srv, status, why, term);
    set_term(s, term);
    return respond_error(s, status, why);
}

/* The destination of the client's connection (see dst), or NULL if it cannot be known. */
static int attach_upstream(struct session *s, struct server *srv, bool allow_idle)
{
    struct worker *w = s->w;
    const struct pool *pool = session_pool(s);
    enum conf_proxy_send pp = pool->conf->proxy_protocol;
    /* With the PROXY protocol a connection names its client: none is shared (upstream.h). */
    bool h2 = pool->conf->protocol == CONF_POOL_H2;
    struct upstream *u = allow_idle && !pp && !h2 ? upstream_take_idle(w, srv) : NULL;
    if (h2) {
        int err = 0;
        u = upstream_open_stream(w, srv, pool->tls, upstream_event, !allow_idle,
                                 timeouts(s)->server_idle_ms, &err);
        if (!u)
            return connect_failed(s, srv, err);
        s->connect_deadline = now_ms(s) + timeouts(s)->connect_ms;
    } else if (!u) {
        int err = 0;
        u = upstream_connect(w, srv, session_pool(s)->tls, upstream_event, &err);
        if (!u)
            return connect_failed(s, srv, err);
        if (pp && upstream_send_proxy_header(u, pp == CONF_PROXY_SEND_V1 ? 1 : 2, &s->peer.sa,
                                             preamble_destination(&s->conn, &s->dst)) < 0) {
            upstream_close(w, u, true);
            set_term(s, "proxy_header");
            return respond_error(s, 500, "cannot write a PROXY protocol header");
        }
        s->connect_deadline = now_ms(s) + timeouts(s)->connect_ms;
    }
    u->owner = s;
    u->conn.io.handler = upstream_event;
    s->up = u;
    s->resp_deadline = 0; /* a new attempt: the head is due once this connection has the request */
    s->server_io_ms = now_ms(s);
    s->server_eof = false;
    if (!u->connecting)
        s->t_connect_us = loop_now_us(w->loop);
    return STEP_PROGRESS;
}

/*
 * The backend connection failed; failure says how (enum server_failure). A connection reused
 * from the idle pool that dies before answering was most likely closed by the server while idle,
 * so the request goes again on a fresh connection to the same server, provided we still hold
 * every byte of it; that is not the server's fault and is not counted. Every other failure counts
 * against the server (a connection lost mid-body as a response cut short). One before the
 * response may send the request to another server (may_retry). Otherwise the client gets
 * `status` (502 or 504), or an abort if the response had already begun.
 */
static int server_failed(struct session *s, unsigned status, const char *why, unsigned failure,
                         bool maybe_stale)
{
    struct worker *w = s->w;
    struct upstream *u = s->up;
    struct server *srv = u->server;

    if (maybe_stale && u->reused && s->resp_bytes == 0 && s->replayable) {
        upstream_close(w, u, false);
        s->up = NULL;
        s->req_sent = 0;
        memset(&s->scan, 0, sizeof(s->scan));
        return attach_upstream(s, srv, false);
    }
    log_debug("pool %s server %s: %s", srv->pool_name, srv->name, why);
    upstream_close(w, u, true);
    s->up = NULL;
    if (s->resp_state == RS_BODY && failure == SERVER_FAIL_CLOSED)
        failure = SERVER_FAIL_CUT_SHORT;
    if (s->resp_state != RS_DONE)
        report_failure(s, srv, failure);
    bool junk_only = failure == SERVER_FAIL_INVALID && s->resp_fwd == 0;
    /* a timeout only where the pool says so: the server may still be working on the request */
    bool retryable = status == 502 || (status == 504 && session_pool(s)->conf->retry_on_timeout);
    if (retryable && s->resp_state == RS_WAIT && !s->final_started &&
        may_retry(s, false, junk_only))
        return retry_elsewhere(s, srv, status, why,
                               status == 504 ? "server_timeout" : "server_error");
    set_term(s, status == 504 ? "server_timeout" : "server_error");
    if (s->final_started)
        return abort_session(s);
    return respond_error(s, status, why);
}

/* A TLS handshake with srv failed: the server or its certificate is at fault (why says how),
 * and nothing of the request was sent. Counted, logged once per kind of failure per server. */
static int tls_failed(struct session *s, struct server *srv, const char *why)
{
    /* why is a static text: the same problem, the same pointer */
    if (atomic_exchange(&srv->tls_failure, why) != why)
        log_warn("pool %s server %s: TLS handshake failed: %s", srv->pool_name, srv->name, why);
    report_failure(s, srv, SERVER_FAIL_CONNECT);
    if (may_retry(s, true, false))
        return retry_elsewhere(s, srv, 502, "TLS handshake with server failed", "tls_error");
    set_term(s, "tls_error");
    return respond_error(s, 502, "TLS handshake with server failed");
}

static int check_connect(struct session *s)
{
    struct upstream *u = s->up;
    int err = 0;
    const char *why = NULL;
    enum conn_status r = upstream_finish_connect(u, &err, &why);
    if (r == CONN_BLOCKED)
        return STEP_WAIT;
    if (r == CONN_ERROR) {
        struct server *srv = u->server;
        upstream_close(s->w, u, false);
        s->up = NULL;
        return why ? tls_failed(s, srv, why) : connect_failed(s, srv, err);
    }
    if (u->conn.ssl && atomic_load_explicit(&u->server->tls_failure, memory_order_relaxed))
        atomic_store(&u->server->tls_failure, NULL); /* the next failure is news again */
    s->server_io_ms = now_ms(s);
    s->t_connect_us = loop_now_us(s->w->loop);
    return STEP_PROGRESS;
}

/* Gives the backend connection back to its pool if it can carry another request. */
static void release_upstream(struct session *s)
{
    struct upstream *u = s->up;
    bool reusable = s->server_keep_alive && s->req_complete && s->req_sent == s->req_fwd;
    s->up = NULL;
    u->requests++;
    if (reusable)
        upstream_park(s->w, u);
    else
        upstream_close(s->w, u, false);
}

/* ---- request ---- */

/* The request's host: an absolute-form target's authority, else the Host field; NULL if none. */
static const char *request_host(const char *head, const struct http1_msg *msg, size_t *len)
{
    if (msg->flags & HTTP1_F_ABSOLUTE_FORM) {
        *len = msg->authority_len;
        return head + msg->authority_off;
    }
    if (msg->host_field < 0) {
        *len = 0;
        return NULL;
    }
    *len = msg->fields[msg->host_field].value_len;
    return head + msg->fields[msg->host_field].value_off;
}

/*
 * A route answers the request itself (redirect or respond). The request head is consumed as it
 * is; a request with a body ends the connection after the answer (its body is not read).
 */
static int answer_locally(struct session *s, const struct http1_msg *msg)
{
    struct worker *w = s->w;
    const struct conf_route *r = s->route->conf;
    const char *head = s->in.data + s->in.start;
    bool keep = s->keep_alive && s->req_complete && !w->stopping;
    size_t host_len;
    const char *host = request_host(head, msg, &host_len);
    struct reply_request rq = {
        .host = host,
        .host_len = host_len,
        .target = msg->flags & HTTP1_F_TARGET_NO_SLASH ? "/" : head + msg->path_off,
        .target_len = msg->flags & HTTP1_F_TARGET_NO_SLASH ? 1 : msg->path_len,
        .tls = s->snap->listeners[s->listener].tls != NULL,
        .head = msg->method == HTTP1_METHOD_HEAD,
        .keep_alive = keep,
    };
    if (!s->out.data && buf_get(&w->bufs, &s->out) < 0)
        return abort_session(s);
    struct rewrite_rule_list rules = session_rules(s, true);
    char *out = s->out.data + s->out.end;
    size_t cap = w->bufs.size - s->out.end;
    unsigned status = r->action == CONF_ROUTE_REDIRECT ? r->redirect.status : r->respond.status;
    size_t n = r->action == CONF_ROUTE_REDIRECT
                   ? route_reply_redirect(&r->redirect, &rq, &rules, out, cap)
                   : route_reply_respond(&r->respond, &rq, &rules, out, cap);
    bool no_host =
        r->action == CONF_ROUTE_REDIRECT && !r->redirect.location && !r->redirect.host && !rq.host;
    if (n == 0)
        return respond_error(s, no_host ? 400 : 500,
                             no_host ? "no Host to redirect to" : "route answer too large");
    s->out.end += (uint32_t)n;
    s->resp_fwd += (uint32_t)n;
    s->req_fwd = msg->head_end;
    s->resp_state = RS_DONE;
    s->status = (uint16_t)status;
    s->keep_alive = keep;
    return STEP_PROGRESS;
}

/*
 * Picks the route of a request (listener.routes, first match wins) on its normalised path. Sets
 * s->route and s->pool; *path and *path_len get the normalised path and query to forward when
 * the listener says so (else NULL). Returns STEP_PROGRESS to go on to a server, or what
 * answering instead returned (a 400 for a path that cannot be normalised, a 404 when nothing
 * matches and the listener has no pool, or the route's own answer).
 */
static int route_request(struct session *s, const struct http1_msg *msg, const char **path,
                         size_t *path_len)
{
    struct worker *w = s->w;
    const struct snapshot_listener *sl = &s->snap->listeners[s->listener];
    const struct listener_routing *rt = sl->routing;
    const char *head = s->in.data + s->in.start;
    const char *target = head + msg->path_off;
    size_t target_len = msg->path_len;
    const char *query = memchr(target, '?', target_len);
    size_t raw_len = query ? (size_t)(query - target) : target_len;
    const char *norm = target;
    size_t norm_len = raw_len;

    *path = NULL;
    if (msg->flags & HTTP1_F_TARGET_NO_SLASH) {
        norm = "/";
        norm_len = 1;
    } else if (raw_len && target[0] == '/') { /* not "*" (OPTIONS): that is matched as it is */
        enum path_status st = path_normalize(target, raw_len, sl->conf->merge_slashes,
                                             w->path_scratch, w->bufs.size, &norm_len);
        if (st != PATH_OK)
            return respond_error(s, 400, path_status_text(st));
        norm = w->path_scratch;
    }
    if (sl->conf->forward_normalized_path && norm == w->path_scratch) {
        size_t qlen = query ? target_len - raw_len : 0; /* '?' and the query, kept as sent */
        if (qlen)
            memcpy(w->path_scratch + norm_len, query, qlen);
        *path = w->path_scratch;
        *path_len = norm_len + qlen;
    }
    if (!rt->table)
        return STEP_PROGRESS;

    const char *sni = s->conn.ssl ? tls_server_name(s->conn.ssl) : NULL;
    size_t host_len;
    const char *host = request_host(head, msg, &host_len);
    struct route_request rq = {
        .host = host,
        .host_len = host_len,
        .sni = sni,
        .sni_len = sni ? strlen(sni) : 0,
        .method = head + msg->method_off,
        .method_len = msg->method_len,
        .path = norm,
        .path_len = norm_len,
        .query = query ? query + 1 : NULL,
        .query_len = query ? target_len - raw_len - 1 : 0,
        .head = head,
        .msg = msg,
    };
    s->route = route_match(rt->table, &rq);
    if (!s->route) {
        if (s->pool)
            return STEP_PROGRESS;
        set_term(s, "no_route");
        s->req_fwd = msg->head_end; /* the head is consumed as it is (the connection goes on) */
        return respond_error(s, 404, "no route matches the request");
    }
    switch (s->route->conf->action) {
    case CONF_ROUTE_POOL:
        s->pool = &s->snap->pools[s->route->conf->pool];
        return STEP_PROGRESS;
    default:
        s->pool = NULL;
        return answer_locally(s, msg);
    }
}

static int start_exchange(struct session *s, const struct http1_msg *msg)
{
    struct worker *w = s->w;

    s->method = msg->method;
    s->version = msg->version;
    s->idempotent = msg->method == HTTP1_METHOD_GET || msg->method == HTTP1_METHOD_HEAD ||
                    msg->method == HTTP1_METHOD_OPTIONS || msg->method == HTTP1_METHOD_PUT ||
                    msg->method == HTTP1_METHOD_DELETE || msg->method == HTTP1_METHOD_TRACE;
    s->sent_any = false;
    s->t_head_us = loop_now_us(w->loop);
    s->bytes_in += msg->head_end;
    reqlog_capture(s, s->in.data + s->in.start, msg);
    s->grpc = grpc_request(s->in.data + s->in.start, msg);
    s->grpc_expired = false;
    uint64_t grpc_ms;
    s->grpc_deadline = s->grpc && grpc_timeout_ms(s->in.data + s->in.start, msg, &grpc_ms)
                           ? now_ms(s) + (grpc_ms ? grpc_ms : 1)
                           : 0;
    if (msg->version == 11)
        s->keep_alive = !(msg->flags & HTTP1_F_CONN_CLOSE);
    else
        s->keep_alive =
            (msg->flags & HTTP1_F_CONN_KEEP_ALIVE) && !(msg->flags & HTTP1_F_CONN_CLOSE);
    if (w->stopping)
        s->keep_alive = false;
    s->websocket = (msg->flags & HTTP1_F_CONN_UPGRADE) &&
                   (msg->flags & HTTP1_F_UPGRADE_WEBSOCKET) && msg->method == HTTP1_METHOD_GET &&
                   msg->version == 11;
    s->req_body = msg->body;
    s->req_left = msg->content_length;
    s->req_complete = msg->body == HTTP1_BODY_NONE;
    memset(&s->req_chunk, 0, sizeof(s->req_chunk));
    s->req_chunk.max_trailer = w->limits.max_head_bytes;
    set_phase(s, PH_EXCHANGE);
    s->resp_state = RS_WAIT;
    memset(&s->scan, 0, sizeof(s->scan));

    const char *fwd_path = NULL;
    size_t fwd_path_len = 0;
    if (s->snap->listeners[s->listener].routing->normalize) {
        int r = route_request(s, msg, &fwd_path, &fwd_path_len);
        if (r != STEP_PROGRESS || s->resp_state == RS_DONE)
            return r;
    }
    int r = read_balance_keys(s, msg);
    if (r != STEP_PROGRESS || s->resp_state == RS_DONE)
        return r;

    /* Rewrite the head in place: the new head replaces the old one, the bytes after it move. */
    char ip[64];
    const struct tls_server *tls = s->snap->listeners[s->listener].tls;
    struct rewrite_client client = {
        .ip = ip,
        .ip_len = net_ip_format(&s->peer.sa, ip, sizeof(ip)),
        .tls = tls != NULL,
        .subject_header = tls ? tls_server_subject_header(tls) : NULL,
        .subject = s->client_subject,
        .path = fwd_path,
        .path_len = fwd_path_len,
        .websocket = s->websocket,
    };
    struct rewrite_rule_list rules = session_rules(s, false);
    char *head = s->in.data + s->in.start;
    uint32_t old_len = msg->head_end;
    uint32_t rest = s->in.end - s->in.start - old_len;
    size_t cap = old_len + (w->bufs.size - s->in.end);
    size_t new_len = rewrite_request(head, msg, &client, &rules, w->scratch, cap);
    if (new_len == 0)
        return respond_error(s, 431, "request head too large once rewritten");
    memmove(head + new_len, head + old_len, rest);
    memcpy(head, w->scratch, new_len);
    s->in.end = s->in.start + (uint32_t)new_len + rest;
    s->req_fwd = (uint32_t)new_len;
    s->req_sent = 0;
    s->replayable = true;
    s->client_io_ms = now_ms(s);

    return try_server(s);
}

/* Extends req_fwd over newly received body bytes, once their framing checks out. */
static int scan_request_body(struct session *s)
{
    uint32_t base = s->in.start + s->req_fwd;
    uint32_t avail = s->in.end - base;
    if (s->req_complete || avail == 0)
        return 0;
    if (s->req_body == HTTP1_BODY_LENGTH) {
        uint32_t n = avail < s->req_left ? avail : (uint32_t)s->req_left;
        s->bytes_in += n;
        s->req_fwd += n;
        s->req_left -= n;
        s->req_complete = s->req_left == 0;
        return 0;
    }
    size_t used, out_len;
    int r = http1_chunked_parse(&s->req_chunk, s->in.data + base, avail, false, &used, &out_len);
    s->req_fwd += (uint32_t)used;
    s->bytes_in += used;
    if (r == HTTP1_ERROR)
        return -1;
    s->req_complete = r == HTTP1_DONE;
    return 0;
}

/* The client left: the backend request ends with an RST, so that the server neither works on
 * for nobody nor takes a cut-short upload for a complete one, and the client connection closes
 * (logged 499 if no response had begun). */
static int abort_for_client(struct session *s)
{
    if (s->up) {
        upstream_close(s->w, s->up, true);
        s->up = NULL;
    }
    set_term(s, "client_abort");
    return close_session(s, false);
}

/* ---- response ---- */

/* Replaces the head at out[base, base+old_len) by its rewritten form. Returns the new length. */
static uint32_t replace_response_head(struct session *s, uint32_t base, const struct http1_msg *msg,
                                      unsigned flags)
{
    struct worker *w = s->w;
    char *head = s->out.data + base;
    uint32_t old_len = msg->head_end;
    uint32_t rest = s->out.end - base - old_len;
    size_t cap = old_len + (w->bufs.size - s->out.end);
    /* interim (1xx) heads pass as they are: the rules are for the response */
    struct rewrite_rule_list rules =
        msg->status >= 200 ? session_rules(s, true) : (struct rewrite_rule_list){.n = 0};
    /* a sticky pool pins the client to the server that answered, unless its cookie already did */
    const struct pool *pool = session_pool(s);
    char cookie[256];
    struct rewrite_field set_cookie = {.name = "Set-Cookie", .name_len = 10, .value = cookie};
    struct rewrite_rules sticky = {.add = &set_cookie, .nadd = 1};
    if (msg->status >= 200 && pool && pool->conf->sticky.enabled && s->server &&
        s->server != s->sticky_from &&
        (set_cookie.value_len =
             lb_sticky_cookie(&pool->conf->sticky, s->server, cookie, sizeof(cookie))))
        rules.sets[rules.n++] = &sticky;
    size_t new_len = rewrite_response(head, msg, flags, &rules, w->scratch, cap);
    if (new_len == 0)
        return 0;
    memmove(head + new_len, head + old_len, rest);
    memcpy(head, w->scratch, new_len);
    s->out.end = base + (uint32_t)new_len + rest;
    return (uint32_t)new_len;
}

/* ---- WebSocket tunnels ---- */

/*
 * The server accepted a WebSocket handshake: its 101 goes to the client, and from then on the two
 * connections are a byte tunnel (relay.h) until either side ends it, timeouts.tunnel passes
 * without a byte either way, or the graceful stop's deadline. The request is logged once, when
 * the tunnel ends, with its duration and the bytes each way.
 */
static int start_tunnel(struct session *s, uint32_t base, const struct http1_msg *msg)
{
    struct worker *w = s->w;
    uint32_t n = replace_response_head(s, base, msg, REWRITE_UPGRADE_WEBSOCKET);
    if (!n)
        return server_failed(s, 502, "response head too large once rewritten", SERVER_FAIL_INVALID,
                             false);
    s->status = 101;
    s->t_resp_us = loop_now_us(w->loop);
    s->resp_fwd += n;
    s->resp_state = RS_DONE;
    server_report_success(s->up->server);
    /* What the client sent after its request (early frames) goes first; so do the 101 and what
     * followed it from the server. Bytes already counted stay counted; the relay adds the rest. */
    s->in.start += s->req_sent;
    s->resp_fwd = s->interim_len = 0;
    struct buf *early_in = s->in.data && !buf_empty(&s->in) ? &s->in : NULL;
    struct buf *early_out = s->out.data && !buf_empty(&s->out) ? &s->out : NULL;
    if (!early_in)
        buf_put(&w->bufs, &s->in);
    if (!early_out)
        buf_put(&w->bufs, &s->out);
    if (!(s->relay = malloc(sizeof(*s->relay)))) {
        set_term(s, "local_shortage");
        return abort_session(s); /* the 101 cannot be honoured: both sides are reset */
    }
    relay_start(s->relay, w, &s->conn, &s->up->conn, early_in, early_out);
    stats_add(&w->stats->tunnels, 1);
    set_phase(s, PH_TUNNEL);
    return STEP_PROGRESS;
}

/* The tunnel is over: reset says one side failed (both are reset), else both ended cleanly, or
 * the idle timeout or the stop closed it. */
static int end_tunnel(struct session *s, bool reset, const char *term)
{
    struct worker *w = s->w;
    s->bytes_in += relay_bytes_a_to_b(s->relay);
    s->bytes_out += relay_bytes_b_to_a(s->relay);
    relay_stop(s->relay);
    set_term(s, term);
    account_request(s, 101);
    if (s->up) {
        upstream_close(w, s->up, reset);
        s->up = NULL;
    }
    return close_session(s, reset);
}

static int step_tunnel(struct session *s)
{
    switch (relay_pump(s->relay)) {
    case RELAY_PROGRESS:
        return STEP_PROGRESS;
    case RELAY_WAIT:
        return STEP_WAIT;
    case RELAY_DONE:
        return end_tunnel(s, false, "ok");
    case RELAY_ERROR_A:
        return end_tunnel(s, true, "client_abort");
    default:
        return end_tunnel(s, true, "server_error");
    }
}

static int process_response_head(struct session *s)
{
    struct worker *w = s->w;
    while (s->resp_state == RS_WAIT) {
        uint32_t base = s->out.start + s->resp_fwd;
        uint32_t avail = s->out.end - base;
        uint16_t status;
        const char *why;
        int r = avail ? http1_scan_head(&s->scan, s->out.data + base, avail, &w->limits, false,
                                        &status, &why)
                      : HTTP1_AGAIN;
        if (r == HTTP1_AGAIN) {
            if (s->server_eof)
                return avail ? server_failed(s, 502,
                                             "server closed in the middle of the response head",
                                             SERVER_FAIL_INVALID, false)
                             : server_failed(s, 502, "server closed without responding",
                                             SERVER_FAIL_CLOSED, true);
            return STEP_PROGRESS;
        }
        if (r == HTTP1_ERROR)
            return server_failed(s, 502, why, SERVER_FAIL_INVALID, false);
        struct http1_msg msg = {.fields = w->fields};
        if (http1_parse_response(&s->scan, s->out.data + base, &w->limits, s->method, &msg) !=
            HTTP1_DONE)
            return server_failed(s, 502, msg.error, SERVER_FAIL_INVALID, false);

        memset(&s->scan, 0, sizeof(s->scan));
        if (msg.status == 101 && s->websocket && (msg.flags & HTTP1_F_CONN_UPGRADE) &&
            (msg.flags & HTTP1_F_UPGRADE_WEBSOCKET))
            return start_tunnel(s, base, &msg);
        if (msg.status < 200) {
            if (msg.status == 101) /* not asked for, or not to WebSocket: never tunnelled */
                return server_failed(s, 502, "unexpected 101 Switching Protocols",
                                     SERVER_FAIL_INVALID, false);
            if (s->version == 10) { /* an HTTP/1.0 client must never see a 1xx */
                memmove(s->out.data + base, s->out.data + base + msg.head_end,
                        avail - msg.head_end);
                s->out.end -= msg.head_end;
                continue;
            }
            uint32_t n = replace_response_head(s, base, &msg, 0);
            if (!n)
                return server_failed(s, 502, "interim response head too large", SERVER_FAIL_INVALID,
                                     false);
            s->resp_fwd += n;
            continue;
        }

        s->status = msg.status;
        s->t_resp_us = loop_now_us(w->loop);
        /* A good status counts as a success only once the whole response arrived
         * (process_response): a body cut short is a failure. */
        s->status_failure =
            conf_status_in(&session_pool(s)->conf->passive.failure_status, msg.status);
        if (s->status_failure)
            report_failure(s, s->up->server, msg.status);
        s->resp_body = msg.body;
        s->resp_left = msg.content_length;
        memset(&s->resp_chunk, 0, sizeof(s->resp_chunk));
        s->resp_chunk.max_trailer = w->limits.max_head_bytes;
        s->dechunk = s->version == 10 && msg.body == HTTP1_BODY_CHUNKED;
        if (msg.version == 11)
            s->server_keep_alive = !(msg.flags & HTTP1_F_CONN_CLOSE);
        else
            s->server_keep_alive =
                (msg.flags & HTTP1_F_CONN_KEEP_ALIVE) && !(msg.flags & HTTP1_F_CONN_CLOSE);
        if (msg.body == HTTP1_BODY_CLOSE)
            s->server_keep_alive = false;
        s->keep_alive = s->keep_alive && s->req_complete && !s->client_eof && !w->stopping &&
                        msg.body != HTTP1_BODY_CLOSE && !s->dechunk;
        unsigned flags = s->dechunk ? REWRITE_DECHUNK : 0;
        if (!s->keep_alive)
            flags |= REWRITE_CONN_CLOSE;
        else if (s->version == 10)
            flags |= REWRITE_CONN_KEEP_ALIVE;
        uint32_t n = replace_response_head(s, base, &msg, flags);
        if (!n)
            return server_failed(s, 502, "response head too large once rewritten",
                                 SERVER_FAIL_INVALID, false);
        s->interim_len = s->resp_fwd; /* interim bytes not sent yet, ahead of the final head */
        s->resp_fwd += n;
        s->resp_state = msg.body == HTTP1_BODY_NONE ? RS_DONE : RS_BODY;
    }
    return STEP_PROGRESS;
}

static int process_response_body(struct session *s)
{
    uint32_t base = s->out.start + s->resp_fwd;
    uint32_t avail = s->out.end - base;

    switch (s->resp_body) {
    case HTTP1_BODY_LENGTH: {
        uint32_t n = avail < s->resp_left ? avail : (uint32_t)s->resp_left;
        s->resp_fwd += n;
        s->resp_left -= n;
        if (s->resp_left == 0)
            s->resp_state = RS_DONE;
        break;
    }
    case HTTP1_BODY_CHUNKED: {
        size_t used, produced;
        int r = http1_chunked_parse(&s->resp_chunk, s->out.data + base, avail, s->dechunk, &used,
                                    &produced);
        if (produced != used) {
            memmove(s->out.data + base + produced, s->out.data + base + used, avail - used);
            s->out.end -= (uint32_t)(used - produced);
        }
        s->resp_fwd += (uint32_t)produced;
        if (r == HTTP1_ERROR)
            return server_failed(s, 502, "invalid chunked framing in response", SERVER_FAIL_INVALID,
                                 false);
        if (r == HTTP1_DONE)
            s->resp_state = RS_DONE;
        break;
    }
    default: /* until the server closes */
        s->resp_fwd += avail;
        if (s->server_eof)
            s->resp_state = RS_DONE;
        break;
    }
    if (s->resp_state == RS_BODY && s->server_eof)
        return server_failed(s, 502, "server closed before the end of the response",
                             SERVER_FAIL_CUT_SHORT, false);
    return STEP_PROGRESS;
}

static int process_response(struct session *s)
{
    if (s->resp_state == RS_WAIT && process_response_head(s) == STEP_GONE)
        return STEP_GONE;
    if (s->phase == PH_TUNNEL) /* a 101: the relay has both sides now */
        return STEP_PROGRESS;
    if (s->resp_state == RS_BODY && process_response_body(s) == STEP_GONE)
        return STEP_GONE;
    if (s->resp_state == RS_DONE && s->up && !s->status_failure)
        server_report_success(s->up->server);
    if (s->resp_state == RS_DONE && s->up) {
        /* Bytes after the end of the response: the server is out of step; never reuse it. */
        uint32_t end = s->out.start + s->resp_fwd;
        if (s->out.end > end) {
            s->server_keep_alive = false;
            s->out.end = end;
        }
    }
    return STEP_PROGRESS;
}

/* ---- the end of a request ---- */

static int finish_transaction(struct session *s)
{
    struct worker *w = s->w;
    account_request(s, s->status);
    s->requests++;
    buf_put(&w->bufs, &s->out);
    if (!s->keep_alive || s->client_eof || w->stopping)
        return close_or_linger(s);

    s->in.start += s->req_fwd;
    if (buf_empty(&s->in))
        buf_put(&w->bufs, &s->in);
    s->req_fwd = s->req_sent = s->resp_fwd = s->interim_len = 0;
    s->final_started = false;
    s->req_complete = false;
    s->resp_bytes = 0;
    s->resp_deadline = 0;
    s->client_fin_checked = false;
    s->resp_state = RS_WAIT;
    s->status = 0;
    s->dechunk = false;
    memset(&s->scan, 0, sizeof(s->scan));
    set_phase(s, PH_IDLE);
    s->idle_deadline = now_ms(s) + timeouts(s)->client_idle_ms;
    s->head_deadline = 0; /* starts with the next request's first byte */
    return STEP_PROGRESS;
}

/* ---- phases ---- */

/*
 * A reload happened since this connection's last request: the next one uses the new snapshot,
 * if its listener is still there (same address). Otherwise the connection stays on the old one
 * until it closes.
 */
static void follow_reload(struct session *s)
{
    struct snapshot *now = s->w->snap;
    const struct net_addr *addr = &s->snap->listeners[s->listener].conf->addr;
    for (unsigned i = 0; i < now->nlisteners; i++) {
        if (net_addr_equal(&now->listeners[i].conf->addr, addr)) {
            snapshot_ref(now);
            snapshot_unref(s->snap);
            s->snap = now;
            s->listener = (uint16_t)i;
            return;
        }
    }
}

/* The PROXY protocol header of a trusted load balancer in front (preamble.c); the client it
 * names becomes this connection's client. */
static int step_proxy_header(struct session *s)
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
    if (!sl->tls) {
        set_phase(s, PH_IDLE);
        return STEP_PROGRESS;
    }
    if (preamble_start_tls(&s->conn, sl->tls, client_event) < 0)
        return close_session(s, true);
    set_phase(s, PH_HANDSHAKE);
    s->head_deadline = now_ms(s) + timeouts(s)->tls_handshake_ms;
    return STEP_PROGRESS;
}

/* ---- HTTP/2 clients ---- */

/* The connection speaks HTTP/2: h2front.c takes it over (early: bytes of it already read), and
 * this session goes without closing it. Each of its streams comes back as a session of its own
 * (proxy_open_stream). */
static int start_h2(struct session *s, const char *early, size_t early_len)
{
    if (h2front_start(s->w, s->snap, s->listener, &s->conn, early, early_len, &s->peer, &s->dst,
                      s->client_subject, proxy_open_stream) < 0)
        return close_session(s, true);
    s->in_request = false; /* nothing was a request of its own */
    return forget_session(s);
}

/* The h2c connection preface (RFC 9113 section 3.4): what a plain connection with prior
 * knowledge of HTTP/2 starts with. */
static const char h2c_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2C_PREFACE_LEN (sizeof(h2c_preface) - 1)

/* On a listener with h2c: true, is the first request the HTTP/2 preface? 1: yes, whole; 0: no;
 * -1: its start so far (read more). */
static int h2c_preface_seen(const struct session *s, uint32_t len)
{
    if (s->requests || s->stream || !s->snap->listeners[s->listener].conf->h2c || !len)
        return 0;
    uint32_t n = len < H2C_PREFACE_LEN ? len : (uint32_t)H2C_PREFACE_LEN;
    if (memcmp(s->in.data + s->in.start, h2c_preface, n) != 0)
        return 0;
    return len >= H2C_PREFACE_LEN ? 1 : -1;
}

struct conn *proxy_open_stream(struct worker *w, struct snapshot *snap, unsigned listener,
                               const union preamble_peer *peer, const union preamble_peer *dst,
                               const char *client_subject)
{
    struct session *s = session_alloc(w);
    if (!s)
        return NULL;
    if (client_subject && !(s->client_subject = strdup(client_subject))) {
        session_bury(w, s);
        return NULL;
    }
    s->timer.fn = on_timer;
    s->task.fn = on_task;
    s->w = w;
    s->listener = (uint16_t)listener;
    s->client_state = -1;
    s->stream = true;
    s->peer = *peer;
    s->dst = *dst;
    s->conn.io.handler = client_event;
    s->conn.io.fd = -1;
    s->snap = snap;
    snapshot_ref(snap);
    session_link(w->proxy, s);
    set_phase(s, PH_IDLE);
    s->head_deadline = loop_now_ms(w->loop) + timeouts(s)->client_header_ms;
    s->idle_deadline = s->head_deadline;
    s->client_io_ms = loop_now_ms(w->loop);
    arm_timer(s);
    return &s->conn;
}

/* A TLS client's handshake; once done, the connection waits for its first request head, or
 * becomes an HTTP/2 connection if ALPN agreed on h2. */
static int step_handshake(struct session *s)
{
    enum preamble_status r = preamble_handshake(&s->conn, s->w->stats);
    if (r == PREAMBLE_WAIT)
        return STEP_WAIT;
    if (r != PREAMBLE_DONE)
        return close_session(s, false);
    const struct tls_server *tls = s->snap->listeners[s->listener].tls;
    if (tls_server_subject_header(tls))
        s->client_subject = tls_peer_subject(s->conn.ssl);
    if (tls_alpn_is_h2(s->conn.ssl))
        return start_h2(s, NULL, 0);
    set_phase(s, PH_IDLE);
    s->client_io_ms = now_ms(s);
    /* The first request head is due within client_header of the handshake's end. */
    s->head_deadline = now_ms(s) + timeouts(s)->client_header_ms;
    s->idle_deadline = s->head_deadline;
    return STEP_PROGRESS;
}

static int step_head(struct session *s)
{
    struct worker *w = s->w;
    uint32_t limit = w->bufs.size - w->rewrite_reserve;
    uint32_t len = s->in.data ? buf_len(&s->in) : 0;

    if (s->scan.pos >= len) { /* nothing new to look at: read */
        int r = client_read(s, limit);
        if (r == CONN_BLOCKED) {
            buf_release_if_empty(&w->bufs, &s->in);
            return STEP_WAIT;
        }
        if (r == CONN_ERROR || (r == CONN_EOF && len == 0))
            return close_session(s, false);
        if (r == CONN_EOF)
            return respond_error(s, 400, "client closed in the middle of a request head");
        len = buf_len(&s->in);
    }
    switch (h2c_preface_seen(s, len)) {
    case 1:
        return start_h2(s, s->in.data + s->in.start, len);
    case -1: { /* the rest of the preface must come */
        int r = client_read(s, limit);
        if (r == CONN_BLOCKED)
            return STEP_WAIT;
        if (r != CONN_DONE)
            return close_session(s, false);
        return STEP_PROGRESS;
    }
    default:
        break;
    }
    if (s->phase == PH_IDLE) {
        set_phase(s, PH_HEAD);
        begin_request(s);
        if (s->snap != w->snap)
            follow_reload(s);
        s->pool = s->snap->listeners[s->listener].pool;
        s->route = NULL;
        if (!s->head_deadline)
            s->head_deadline = now_ms(s) + timeouts(s)->client_header_ms;
    }

    uint16_t status;
    const char *why;
    int r =
        http1_scan_head(&s->scan, s->in.data + s->in.start, len, &w->limits, true, &status, &why);
    if (r == HTTP1_AGAIN)
        return STEP_PROGRESS;
    if (r == HTTP1_ERROR)
        return respond_error(s, status, why);
    struct http1_msg msg = {.fields = w->fields};
    if (http1_parse_request(&s->scan, s->in.data + s->in.start, &w->limits, &msg) != HTTP1_DONE) {
        s->method = msg.method;
        return respond_error(s, msg.error_status, msg.error);
    }
    return start_exchange(s, &msg);
}

/*
 * Has the client left while we wait on the server? Once its request is complete fulcrum does not
 * read from the client (what it sends next waits behind the response), so its FIN shows only as
 * RDHUP. A FIN with no byte before it means the client is gone, or at least sent all it ever
 * will; one behind pipelined requests is a half-close that still wants the answers.
 */
static bool client_left(struct session *s)
{
    if (!(s->conn.io.ready & LOOP_RDHUP) || s->client_fin_checked || !s->req_complete ||
        s->resp_state == RS_DONE)
        return false;
    if (!s->client_eof) {
        bool pipelined = s->in.data && s->in.end > s->in.start + s->req_fwd;
        if (pipelined || !conn_peer_gone(&s->conn)) {
            s->client_fin_checked = true;
            return false;
        }
        s->client_eof = true;
    }
    s->client_fin_checked = true; /* decided once per request */
    return true;
}

/* The client left before its response was complete: the backend request ends too, unless the
 * pool says to let it finish (ignore_client_abort). */
static int client_aborted(struct session *s)
{
    if (session_pool(s) && session_pool(s)->conf->ignore_client_abort)
        return STEP_PROGRESS;
    return abort_for_client(s);
}

static int step_exchange(struct session *s)
{
    bool progress = false;
    int r;

    if (client_left(s) && client_aborted(s) == STEP_GONE)
        return STEP_GONE;

    if (s->up && s->up->connecting) {
        r = check_connect(s);
        if (r != STEP_WAIT)
            return r;
    }

    /* request: client -> server, until the response is final (after that, whatever the client
     * still sends is discarded by the lingering close) */
    bool want_body = !s->req_complete && s->resp_state != RS_DONE;
    if (want_body && scan_request_body(s) < 0)
        return respond_error(s, 400, "invalid chunked framing in request body");
    if (s->up) {
        r = server_write(s);
        if (r == CONN_ERROR)
            return server_failed(s, 502, strerror(s->up_errno), SERVER_FAIL_CLOSED, true);
        progress |= r == CONN_DONE;
    }
    if (want_body && !s->req_complete) {
        if (s->in.end == s->w->bufs.size && s->req_sent > 0) {
            /* Make room for more body: what the server already has can go. From here on the
             * request could not be sent again. */
            s->in.start += s->req_sent;
            s->req_fwd -= s->req_sent;
            s->req_sent = 0;
            s->replayable = false;
            buf_compact(&s->in);
        }
        r = client_read(s, s->w->bufs.size);
        if (r == CONN_EOF)
            return abort_for_client(s); /* it stopped in the middle of its body */
        if (r == CONN_ERROR)
            return abort_session(s);
        progress |= r == CONN_DONE;
    }

    /* response: server -> client */
    if (s->up && s->resp_state != RS_DONE) {
        r = server_read(s);
        if (r == CONN_ERROR)
            return server_failed(s, 502, strerror(s->up_errno), SERVER_FAIL_CLOSED, true);
        if (r != CONN_BLOCKED) {
            progress = true;
            if (process_response(s) == STEP_GONE)
                return STEP_GONE;
            if (s->phase == PH_TUNNEL)
                return STEP_PROGRESS;
        }
    }
    r = client_write(s);
    if (r == CONN_ERROR)
        return abort_session(s);
    progress |= r == CONN_DONE;

    if (s->up && s->resp_state == RS_DONE)
        release_upstream(s);
    if (s->resp_state == RS_DONE && !s->up && s->resp_fwd == 0)
        return finish_transaction(s);
    if (!s->resp_deadline && s->up && !s->up->connecting && s->resp_state == RS_WAIT &&
        s->req_complete && s->req_sent == s->req_fwd)
        s->resp_deadline = now_ms(s) + timeouts(s)->server_ms;
    return progress ? STEP_PROGRESS : STEP_WAIT;
}

static int step_linger(struct session *s)
{
    for (;;) {
        if (s->in.data)
            s->in.start = s->in.end = 0;
        int r = client_read(s, s->w->bufs.size);
        if (r == CONN_BLOCKED)
            return STEP_WAIT;
        if (r != CONN_DONE)
            return close_session(s, false);
        s->linger_bytes += s->in.end;
        if (s->linger_bytes > LINGER_MAX_BYTES)
            return close_session(s, false);
    }
}

/* ---- timers ---- */

/* Is the client holding things up by not taking the response bytes we have for it? */
static bool client_blocked(const struct session *s)
{
    return s->resp_fwd && !(s->conn.io.ready & LOOP_WRITABLE);
}

/* When a gRPC call's response head is overdue by the client's own deadline (grpc-timeout):
 * it bounds the server's time, the connect included. UINT64_MAX when there is none. */
static uint64_t grpc_deadline(const struct session *s)
{
    return s->grpc_deadline && s->resp_state == RS_WAIT && !s->final_started ? s->grpc_deadline
                                                                             : UINT64_MAX;
}

/*
 * When the server's time is up, if the exchange is waiting for it. The final response head is due
 * timeouts.server after the request's last byte went out, however slowly it trickles in; taking
 * request bytes and sending body bytes may each stall for timeouts.server_body_idle.
 */
static uint64_t server_deadline(const struct session *s)
{
    uint64_t when = s->resp_state == RS_WAIT && s->resp_deadline
                        ? s->resp_deadline
                        : s->server_io_ms + timeouts(s)->server_body_idle_ms;
    return grpc_deadline(s) < when ? grpc_deadline(s) : when;
}

/* Is the exchange waiting for the server to do something? */
static bool waiting_on_server(const struct session *s)
{
    if (!s->up || s->up->connecting || s->resp_state == RS_DONE || client_blocked(s))
        return false;
    if (s->req_sent < s->req_fwd) /* we have request bytes it does not take */
        return !(s->up->conn.io.ready & LOOP_WRITABLE);
    /* It has everything we have. If that is the whole request, or it has started to answer,
     * the next move is its own; otherwise it is waiting for the client's body, as are we. */
    return s->req_complete || s->resp_state != RS_WAIT;
}

static bool waiting_on_client(const struct session *s)
{
    if (client_blocked(s))
        return true;
    return !s->req_complete && s->req_sent == s->req_fwd && s->resp_state != RS_DONE;
}

static void arm_timer(struct session *s)
{
    const struct conf_timeouts *t = timeouts(s);
    uint64_t when = UINT64_MAX;

    switch (s->phase) {
    case PH_IDLE:
        when = s->idle_deadline;
        break;
    case PH_PROXY:
    case PH_HANDSHAKE:
    case PH_HEAD:
        when = s->head_deadline;
        break;
    case PH_LINGER:
        when = s->linger_deadline;
        break;
    case PH_TUNNEL:
        loop_timer_set_lazy(s->w->loop, &s->timer, relay_last_io_ms(s->relay) + t->tunnel_ms);
        return;
    default:
        if (s->up && s->up->connecting)
            when = s->connect_deadline < grpc_deadline(s) ? s->connect_deadline : grpc_deadline(s);
        else if (waiting_on_server(s))
            when = server_deadline(s);
        if (waiting_on_client(s) && s->client_io_ms + t->client_ms < when)
            when = s->client_io_ms + t->client_ms;
        break;
    }
    if (when == UINT64_MAX)
        loop_timer_stop(s->w->loop, &s->timer);
    else
        loop_timer_set_at(s->w->loop, &s->timer, when);
}

static void on_timer(struct loop *loop, struct loop_timer *timer)
{
    struct session *s = container_of(timer, struct session, timer);
    const struct conf_timeouts *t = timeouts(s);
    uint64_t now = loop_now_ms(loop);
    int r = STEP_PROGRESS;

    switch (s->phase) {
    case PH_PROXY:
        close_session(s, false);
        return;
    case PH_HANDSHAKE:
        stats_add(&s->w->stats->tls_failures[stats_tls_failure_index("timeout")], 1);
        close_session(s, false);
        return;
    case PH_IDLE:
    case PH_LINGER:
        close_session(s, false);
        return;
    case PH_TUNNEL:
        if (now >= relay_last_io_ms(s->relay) + t->tunnel_ms) {
            end_tunnel(s, false, "tunnel_timeout");
            return;
        }
        break;
    case PH_HEAD:
        r = respond_error(s, 408, "request head timeout");
        break;
    default:
        if (s->up && now >= grpc_deadline(s)) {
            /* the client gives up now: so does the server's stream (respond_error resets it);
             * the server is not blamed for a deadline it may never have been able to meet */
            s->grpc_expired = true;
            set_term(s, "grpc_deadline");
            r = respond_error(s, 504, "deadline exceeded (grpc-timeout)");
        } else if (s->up && s->up->connecting && now >= s->connect_deadline) {
            struct server *srv = s->up->server;
            upstream_close(s->w, s->up, false);
            s->up = NULL;
            r = connect_failed(s, srv, ETIMEDOUT);
        } else if (waiting_on_server(s) && now >= server_deadline(s)) {
            r = server_failed(s, 504, "response timeout", SERVER_FAIL_TIMEOUT, false);
        } else if (waiting_on_client(s) && now >= s->client_io_ms + t->client_ms) {
            set_term(s, "client_timeout");
            r = s->resp_state == RS_WAIT ? respond_error(s, 408, "client timeout")
                                         : abort_session(s);
        }
        break;
    }
    if (r != STEP_GONE)
        drive(s);
}

/* ---- the driver ---- */

/* An HTTP/2 stream ends under its session (its client reset it, its connection ended, or it
 * was idle for stream_idle_timeout) while the request is with a server: close_session() cancels
 * that server's work (its connection is reset, never pooled), and operators see how often
 * (fulcrum_http2_streams_cancelled_total: a rapid reset that got as far as the servers shows
 * there). */
static void count_cancelled_stream(const struct session *s)
{
    if (s->stream && s->up)
        stats_add(&s->w->stats->h2_streams_cancelled, 1);
}

static void drive(struct session *s)
{
    for (unsigned round = 0; round < MAX_ROUNDS; round++) {
        int r;
        /* In a tunnel, the relay sees a gone client itself, and still delivers what it read. */
        if (s->phase != PH_TUNNEL && (s->conn.io.ready & (LOOP_HUP | LOOP_ERR))) {
            /* The client is gone (reset, or both directions closed): nobody to answer. */
            count_cancelled_stream(s);
            close_session(s, s->phase == PH_EXCHANGE);
            return;
        }
        switch (s->phase) {
        case PH_PROXY:
            r = step_proxy_header(s);
            break;
        case PH_HANDSHAKE:
            r = step_handshake(s);
            break;
        case PH_IDLE:
        case PH_HEAD:
            r = step_head(s);
            break;
        case PH_EXCHANGE:
            r = step_exchange(s);
            break;
        case PH_TUNNEL:
            r = step_tunnel(s);
            break;
        default:
            r = step_linger(s);
            break;
        }
        if (r == STEP_GONE)
            return;
        if (r == STEP_WAIT) {
            arm_timer(s);
            return;
        }
    }
    /* Still busy after a fair share: let other connections run, continue next iteration. */
    loop_defer(s->w->loop, &s->task);
    arm_timer(s);
}

static void on_task(struct loop *loop, struct loop_task *task)
{
    drive(container_of(task, struct session, task));
}

static void client_event(struct loop *loop, struct loop_io *io)
{
    drive((struct session *)io);
}

/* ---- public ---- */

void proxy_accept(struct worker *w, unsigned listener, int fd, const struct sockaddr *peer,
                  socklen_t peer_len)
{
    struct session *s = session_alloc(w);
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
    session_link(w->proxy, s);
    /* A new connection must deliver its first head within client_header, counted from now;
     * over TLS, its handshake must end within tls_handshake first. A PROXY header must come
     * within client_header. */
    set_phase(s, proxy_header ? PH_PROXY : tls ? PH_HANDSHAKE : PH_IDLE);
    s->head_deadline =
        loop_now_ms(w->loop) +
        (tls && !proxy_header ? timeouts(s)->tls_handshake_ms : timeouts(s)->client_header_ms);
    s->idle_deadline = s->head_deadline;
    s->client_io_ms = loop_now_ms(w->loop);
    arm_timer(s);
}

void proxy_stop(struct worker *w)
{
    struct session *s = w->proxy->sessions;
    while (s) {
        struct session *next = s->next;
        if ((s->phase == PH_IDLE && !s->stream && (!s->in.data || buf_empty(&s->in))) ||
            s->phase == PH_HANDSHAKE || s->phase == PH_PROXY)
            close_session(s, false);
        else
            s->keep_alive = false;
        s = next;
    }
    h2front_goaway_all(w, w->snap->conf->shutdown_timeout_ms);
}

void proxy_close_all(struct worker *w)
{
    while (w->proxy->sessions)
        close_session(w->proxy->sessions, true);
    h2front_close_all(w);
}
