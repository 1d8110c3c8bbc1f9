/*
 * etcd.c - a pool's servers from an etcd registry (etcd.h): one HTTP/1.1 connection to one of the
 * configured endpoints at a time, on the control thread's loop.
 *
 * The life of the connection:
 *
 *             retry timer (0 at start, then backoff)
 *   IDLE ------------------------------------------> CONNECTING --writable--> SENDING
 *                                                         https: HANDSHAKE --done--^
 *    ^                                                                          |
 *    |                        registry empty: POST /v3/kv/range (the prefix)    |
 *    |                        otherwise:      POST /v3/watch from revision + 1  v
 *    |                                                                        HEAD
 *    |   range answer read: load the registry, publish, send the watch          |
 *    |   on the same connection (SENDING again) <------------------------- BODY / STREAM
 *    |                                                                          |
 *    +-- failure: connect error, timeout, bad answer, error message, --------- -+
 *        stream closed. The next endpoint is tried at once until each one
 *        failed since the last success; then after a backoff (0.5 s doubling
 *        to 10 s, +-20% jitter).
 *
 * STREAM reads the watch answer: chunked framing around newline-separated JSON messages (a
 * message may span chunks, a chunk may hold several). The events of everything one read brought
 * are applied to the registry (etcd_json.h) and published as one new set: at once after a quiet
 * spell, and at most once every PUBLISH_GAP_MS during a burst of changes. A watch that etcd
 * cancels empties the registry, so the next connection reads everything again (at once after a
 * compaction, after the usual backoff for any other reason); any other failure keeps it, and the
 * watch resumes after the last revision seen.
 *
 * Time limits: timeout_ms bounds the connect, the range answer and the watch's "created" answer.
 * An established watch is silent while nothing changes, so it has no time limit of its own; TCP
 * keep-alive probes (and TCP_USER_TIMEOUT for unacknowledged bytes) find a dead etcd host within
 * about 11 s instead.
 *
 * Health: STARTING until the first answer; OK while answers come and the watch stands (the last
 * good answer's time then moves on each second, as the registry is known to be current);
 * DEGRADED from the first failure on, keeping the set; FAILED once failures lasted hold_on_error
 * (if set) since the last good answer: the set is emptied and the registry read again when etcd
 * is back. Each change of health is logged once; each failure is counted in the status.
 *
 * Ownership: the source owns its copy of the configuration, the connection and its buffers, the
 * registry, and the set it published last (fn borrows it for the call).
 */
#include "discovery/etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "core/conn.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/net.h"
#include "core/tls_conn.h"
#include "discovery/etcd_json.h"
#include "http/http1.h"

#define BACKOFF_FIRST_MS 500u
#define BACKOFF_MAX_MS   10000u
#define ALIVE_MS         1000u
#define MAX_HEAD_BYTES   16384u
#define MAX_FIELDS       64u
/* A range answer or one watch message larger than this is refused (1,000 servers take about
 * 300 KiB). */
#define MAX_BODY_BYTES (64u << 20)
#define READ_CHUNK     16384u
/* TCP keep-alive of the connection: first probe after 5 s of silence, then every 2 s; 3 lost
 * probes end it (about 11 s). */
#define KEEPIDLE_S      5
#define KEEPINTVL_S     2
#define KEEPCNT         3
#define USER_TIMEOUT_MS 11000u
/* Watch events that come closer together than this are published as one set: the first change
 * after a quiet spell goes out at once, a burst at most this often. Each set costs the control
 * thread work over the whole pool (compare, merge, snapshot); 100 servers joining one by one
 * would otherwise cost 100 rebuilds of a 1,000-server pool in a second (bench/discovery). */
#define PUBLISH_GAP_MS 50u

enum phase { PH_IDLE, PH_CONNECTING, PH_HANDSHAKE, PH_SENDING, PH_HEAD, PH_BODY };
enum request { REQ_RANGE, REQ_WATCH };

struct etcd_source {
    struct conn conn; /* first: the loop's pointer is the source's */
    struct loop *loop;
    discovery_update_fn *fn;
    void *arg;

    /* configuration, copied */
    char *pool, *prefix;
    struct net_addr *addrs;
    char **hosts; /* "HOST:PORT" */
    char **names; /* "HOST": the name TLS sends and checks */
    unsigned nendpoints;
    const struct etcd_tls *tls; /* https endpoints; NULL: http */
    void *tls_ctx;              /* the context tls->connect() makes connections from (owned) */
    uint32_t timeout_ms, hold_ms;

    /* the connection */
    enum phase phase;
    enum request req;
    unsigned endpoint;        /* index of the one in use or next */
    unsigned failed_in_round; /* endpoints failed since the last success */
    uint32_t backoff_ms;
    char *out; /* the request being sent */
    size_t out_len, out_sent;
    char *in; /* bytes received and not consumed: a head, raw body bytes */
    size_t in_len, in_cap;
    struct http1_scan scan;
    unsigned http_status; /* of the answer being read */
    uint8_t body_kind;    /* enum http1_body */
    uint64_t body_left;   /* HTTP1_BODY_LENGTH */
    bool reusable;        /* the answer allows another request on the connection */
    struct http1_chunked chunked;
    char *body; /* decoded body bytes: a whole answer, or the watch's unfinished message */
    size_t body_len, body_cap;
    bool watching; /* the watch was created: the connection is the live stream */

    struct loop_timer retry_timer;    /* next connection attempt */
    struct loop_timer deadline_timer; /* connect, range answer, watch creation */
    struct loop_timer hold_timer;     /* hold_on_error since the last good answer */
    struct loop_timer alive_timer;    /* the standing watch keeps the status current */
    struct loop_timer publish_timer;  /* the end of a burst's gap: publish what came */
    uint64_t last_rebuild_ms;         /* loop clock of the last rebuild (0: none yet) */
    uint64_t last_good_ms;            /* loop clock of the last good answer (or the start) */
    uint64_t rng;

    struct etcd_registry reg;
    struct member_set published, next;
    struct member_log log;
    struct discovery_status status;
};

static void on_io(struct loop *loop, struct loop_io *io);

/* ---- small helpers ---- */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t next_random(struct etcd_source *src)
{
    /* xorshift64: jitter only */
    src->rng ^= src->rng << 13;
    src->rng ^= src->rng >> 7;
    src->rng ^= src->rng << 17;
    return src->rng;
}

/* strerror() as the middle of a sentence: "connection refused". */
static const char *error_text(int err, char *buf, size_t size)
{
    snprintf(buf, size, "%s", strerror(err ? err : ECONNRESET));
    if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
        buf[0] = (char)(buf[0] - 'A' + 'a');
    return buf;
}

static const char *endpoint_host(const struct etcd_source *src)
{
    return src->hosts[src->endpoint];
}

/* "HOST" of "HOST:PORT" or "[IPv6]:PORT", in new memory (NULL if it ran out). */
static char *host_of(const char *hostport)
{
    if (hostport[0] == '[') {
        const char *end = strchr(hostport, ']');
        return end ? strndup(hostport + 1, (size_t)(end - hostport - 1)) : strdup(hostport);
    }
    const char *colon = strrchr(hostport, ':');
    return colon ? strndup(hostport, (size_t)(colon - hostport)) : strdup(hostport);
}

/* Grows a byte buffer to hold at least need bytes. 0, or -1 (no memory). */
static int reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap : READ_CHUNK;
    while (cap2 < need)
        cap2 *= 2;
    char *grown = realloc(*buf, cap2);
    if (!grown)
        return -1;
    *buf = grown;
    *cap = cap2;
    return 0;
}

/* ---- health and the published set ---- */

static void set_health(struct etcd_source *src, enum discovery_health h)
{
    enum discovery_health was = src->status.health;
    if (h == was)
        return;
    src->status.health = h;
    switch (h) {
    case DISCOVERY_OK:
        log_info("pool %s: etcd: ok, %u servers under %s (revision %" PRId64 ", %s)", src->pool,
                 src->published.n, src->prefix, src->reg.revision, endpoint_host(src));
        break;
    case DISCOVERY_DEGRADED:
        if (src->hold_ms)
            log_warn("pool %s: etcd: degraded: %s; keeping the last %u servers for up to %ums",
                     src->pool, src->status.last_error, src->published.n, src->hold_ms);
        else
            log_warn("pool %s: etcd: degraded: %s; keeping the last %u servers", src->pool,
                     src->status.last_error, src->published.n);
        break;
    case DISCOVERY_FAILED:
        log_error("pool %s: etcd: failed for %ums (hold_on_error): %s; its servers are removed "
                  "until etcd answers",
                  src->pool, src->hold_ms, src->status.last_error);
        break;
    case DISCOVERY_STARTING:
        break;
    }
}

/* Hands set over as the new one if it differs from the last published (the sets swap). */
static void publish(struct etcd_source *src, struct member_set *set)
{
    if (members_equal(set, &src->published))
        return;
    struct member_set t = src->published;
    src->published = *set;
    *set = t;
    src->status.members = src->published.n;
    src->status.changes++;
    src->status.last_change_unix_ms = wall_ms();
    src->fn(src->arg, &src->published);
}

/* Builds the set from the registry and publishes it. */
static void rebuild(struct etcd_source *src)
{
    loop_timer_stop(src->loop, &src->publish_timer);
    src->last_rebuild_ms = loop_now_ms(src->loop);
    if (etcd_registry_members(&src->reg, src->prefix, src->pool, &src->log, &src->next) < 0) {
        /* a partial set would drop servers that are there: keep the last one */
        log_error("pool %s: etcd: out of memory building the server set", src->pool);
        return;
    }
    publish(src, &src->next);
}

/* The registry changed: publish now, or at the end of the gap after the last rebuild. */
static void rebuild_soon(struct etcd_source *src)
{
    if (loop_timer_armed(&src->publish_timer))
        return; /* this change goes out with the others of the burst */
    uint64_t due = src->last_rebuild_ms + PUBLISH_GAP_MS;
    if (!src->last_rebuild_ms || loop_now_ms(src->loop) >= due)
        rebuild(src);
    else
        loop_timer_set_at(src->loop, &src->publish_timer, due);
}

static void on_publish_timer(struct loop *loop, struct loop_timer *t)
{
    (void)loop;
    struct etcd_source *src = container_of(t, struct etcd_source, publish_timer);
    /* A registry emptied since (a cancelled watch) is read again whole, and published then: an
     * empty set now would take every server away meanwhile. */
    if (src->reg.revision > 0)
        rebuild(src);
}

/* An answer came: etcd is reachable and the registry is current. */
static void good_answer(struct etcd_source *src)
{
    src->status.answers++;
    src->status.last_ok_unix_ms = wall_ms();
    src->last_good_ms = loop_now_ms(src->loop);
    loop_timer_stop(src->loop, &src->hold_timer);
}

static void on_hold_timer(struct loop *loop, struct loop_timer *t)
{
    struct etcd_source *src = container_of(t, struct etcd_source, hold_timer);
    /* The registry is given up: when etcd is back, it is read whole again. */
    etcd_registry_clear(&src->reg);
    set_health(src, DISCOVERY_FAILED);
    members_clear(&src->next);
    publish(src, &src->next);
}

static void on_alive_timer(struct loop *loop, struct loop_timer *t)
{
    struct etcd_source *src = container_of(t, struct etcd_source, alive_timer);
    if (!src->watching)
        return;
    src->status.last_ok_unix_ms = wall_ms();
    src->last_good_ms = loop_now_ms(loop);
    loop_timer_set(loop, t, ALIVE_MS);
}

/* ---- the connection ---- */

static void reset_answer(struct etcd_source *src)
{
    memset(&src->scan, 0, sizeof(src->scan));
    memset(&src->chunked, 0, sizeof(src->chunked));
    src->http_status = 0;
    src->body_len = 0;
}

/* Closes the connection and forgets its buffers; the registry stays. */
static void drop_connection(struct etcd_source *src)
{
    if (src->phase != PH_IDLE)
        conn_close(&src->conn, false); /* handler NULL: later events of this batch are ignored */
    src->phase = PH_IDLE;
    src->watching = false;
    loop_timer_stop(src->loop, &src->deadline_timer);
    loop_timer_stop(src->loop, &src->alive_timer);
    free(src->out);
    src->out = NULL;
    src->out_len = src->out_sent = 0;
    free(src->in);
    src->in = NULL;
    src->in_len = src->in_cap = 0;
    free(src->body);
    src->body = NULL;
    src->body_len = src->body_cap = 0;
    reset_answer(src);
}

/*
 * The connection failed: records why, moves to the next endpoint and schedules the next attempt
 * (always through the timer, never at once, so that no event of this batch meets a new socket).
 */
static void fail(struct etcd_source *src, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void fail(struct etcd_source *src, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(src->status.last_error, sizeof(src->status.last_error), fmt, ap);
    va_end(ap);
    log_debug("pool %s: etcd: %s", src->pool, src->status.last_error);
    drop_connection(src);
    src->status.errors++;
    src->endpoint = (src->endpoint + 1) % src->nendpoints;
    uint64_t delay = 0;
    if (++src->failed_in_round >= src->nendpoints) {
        /* Every endpoint failed once since the last success: etcd is unreachable (one endpoint
         * down while another answers is not worth a warning). Wait, longer each round. */
        src->failed_in_round = 0;
        if (src->status.health == DISCOVERY_OK || src->status.health == DISCOVERY_STARTING) {
            set_health(src, DISCOVERY_DEGRADED);
            if (src->hold_ms)
                loop_timer_set_at(src->loop, &src->hold_timer, src->last_good_ms + src->hold_ms);
        }
        uint32_t jitter = src->backoff_ms / 5;
        delay = src->backoff_ms - jitter + next_random(src) % (2u * jitter + 1);
        src->backoff_ms =
            src->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : src->backoff_ms * 2;
    }
    loop_timer_set(src->loop, &src->retry_timer, delay);
}

/* "connection refused by 127.0.0.1:2379", "cannot connect to 127.0.0.1:2379: no route to host" */
static void connect_failed(struct etcd_source *src, int err)
{
    char text[96];
    if (err == ECONNREFUSED)
        fail(src, "connection refused by %s", endpoint_host(src));
    else
        fail(src, "cannot connect to %s: %s", endpoint_host(src),
             error_text(err, text, sizeof(text)));
}

/* Ends the connection without a failure, and connects again at once (same endpoint). */
static void restart(struct etcd_source *src)
{
    drop_connection(src);
    loop_timer_set(src->loop, &src->retry_timer, 0);
}

/* Short keep-alive probes: an idle watch must notice a dead host. Best effort: a failure only
 * means the host's death is noticed later. */
static void set_keepalive(int fd)
{
    int one = 1, idle = KEEPIDLE_S, intvl = KEEPINTVL_S, cnt = KEEPCNT;
    unsigned user_timeout = USER_TIMEOUT_MS;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout)) < 0)
        log_debug("etcd: TCP keep-alive: %s", strerror(errno));
}

/* Queues a POST of body (taken over) to path and starts sending it. false if the connection
 * is gone. */
static bool start_request(struct etcd_source *src, enum request req, char *body)
{
    const char *path = req == REQ_RANGE ? "/v3/kv/range" : "/v3/watch";
    free(src->out);
    src->out = NULL;
    int n = body ? asprintf(&src->out,
                            "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: fulcrum\r\n"
                            "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                            path, endpoint_host(src), strlen(body), body)
                 : -1;
    free(body);
    if (n < 0) {
        src->out = NULL;
        fail(src, "out of memory");
        return false;
    }
    src->req = req;
    src->out_len = (size_t)n;
    src->out_sent = 0;
    src->in_len = 0;
    reset_answer(src);
    src->phase = PH_SENDING;
    loop_timer_set(src->loop, &src->deadline_timer, src->timeout_ms);
    return true;
}

/* The request for where the registry stands: everything, or the watch from the next revision. */
static bool start_next_request(struct etcd_source *src)
{
    if (src->reg.revision == 0)
        return start_request(src, REQ_RANGE, etcd_range_request(src->prefix));
    return start_request(src, REQ_WATCH, etcd_watch_request(src->prefix, src->reg.revision + 1));
}

static void on_retry_timer(struct loop *loop, struct loop_timer *t)
{
    struct etcd_source *src = container_of(t, struct etcd_source, retry_timer);
    bool in_progress;
    int fd = net_connect(&src->addrs[src->endpoint], &in_progress);
    if (fd < 0) {
        connect_failed(src, errno);
        return;
    }
    set_keepalive(fd);
    if (!src->tls) {
        conn_init_tcp(&src->conn, fd, on_io);
    } else {
        struct ssl_st *ssl = src->tls->connect(src->tls_ctx, src->names[src->endpoint]);
        if (!ssl || conn_init_tls(&src->conn, fd, on_io, ssl) < 0) {
            if (ssl)
                conn_close(&src->conn, false);
            else
                close(fd);
            fail(src, "out of memory for a TLS connection");
            return;
        }
    }
    src->phase = PH_CONNECTING;
    if (conn_watch(loop, &src->conn) < 0) {
        char text[96];
        fail(src, "epoll: %s", error_text(errno, text, sizeof(text)));
        return;
    }
    loop_timer_set(loop, &src->deadline_timer, src->timeout_ms);
    if (!in_progress)
        src->conn.io.ready |= LOOP_WRITABLE; /* the first event reports it */
}

static void on_deadline_timer(struct loop *loop, struct loop_timer *t)
{
    struct etcd_source *src = container_of(t, struct etcd_source, deadline_timer);
    const char *what = src->phase == PH_CONNECTING  ? "connecting to"
                       : src->phase == PH_HANDSHAKE ? "in the TLS handshake with"
                       : src->req == REQ_RANGE      ? "reading the registry from"
                                                    : "starting the watch on";
    if (src->timeout_ms % 1000 == 0)
        fail(src, "timeout after %us %s %s", src->timeout_ms / 1000, what, endpoint_host(src));
    else
        fail(src, "timeout after %ums %s %s", src->timeout_ms, what, endpoint_host(src));
}

/* ---- answers ---- */

/* The range answer is complete (status 200): the registry is replaced. */
static bool range_done(struct etcd_source *src)
{
    struct etcd_range r;
    char why[160];
    if (etcd_parse_range(src->body, src->body_len, &r, why, sizeof(why)) < 0) {
        etcd_range_free(&r);
        fail(src, "bad range answer from %s: %s", endpoint_host(src), why);
        return false;
    }
    if (r.more)
        /* never with a request without limit; the keys that came are all there is to use */
        log_warn("pool %s: etcd: the range answer of %s was cut short", src->pool,
                 endpoint_host(src));
    etcd_registry_load(&src->reg, &r);
    etcd_range_free(&r);
    if (src->reg.revision <= 0) {
        etcd_registry_clear(&src->reg);
        fail(src, "range answer from %s without a revision", endpoint_host(src));
        return false;
    }
    good_answer(src);
    rebuild(src);
    set_health(src, DISCOVERY_OK);
    if (!src->reusable) {
        restart(src); /* the watch goes on a new connection */
        return false;
    }
    return start_next_request(src);
}

/*
 * One watch message. *dirty is set when the registry changed. false if the connection ended (a
 * failure, or a compaction: the registry was emptied and everything is read again).
 */
static bool watch_message(struct etcd_source *src, const char *text, size_t len, bool *dirty)
{
    struct etcd_watch_msg m;
    char why[160];
    if (etcd_parse_watch(text, len, &m, why, sizeof(why)) < 0) {
        etcd_watch_msg_free(&m);
        fail(src, "watch on %s: %s", endpoint_host(src), why);
        return false;
    }
    if (m.compact_revision > 0) {
        log_info("pool %s: etcd: revision %" PRId64 " was compacted (now %" PRId64
                 "): reading the registry again",
                 src->pool, src->reg.revision + 1, m.compact_revision);
        etcd_watch_msg_free(&m);
        etcd_registry_clear(&src->reg);
        *dirty = false; /* nothing to publish until the range read */
        restart(src);
        return false;
    }
    if (m.canceled) {
        /* etcd ended the watch for a reason of its own: whatever happened since is unknown, so
         * the next connection reads everything again (the set is kept until then) */
        etcd_registry_clear(&src->reg);
        *dirty = false;
        fail(src, "watch on %s canceled%s%s", endpoint_host(src), m.reason[0] ? ": " : "",
             m.reason);
        etcd_watch_msg_free(&m);
        return false;
    }
    int changed = etcd_registry_apply(&src->reg, &m);
    etcd_watch_msg_free(&m);
    if (changed < 0) {
        log_error("pool %s: etcd: out of memory applying a change: reading the registry again",
                  src->pool);
        etcd_registry_clear(&src->reg);
        *dirty = false;
        restart(src);
        return false;
    }
    if (changed)
        *dirty = true;
    if (!src->watching) { /* the "created" answer, or an event before it */
        src->watching = true;
        src->failed_in_round = 0;
        src->backoff_ms = BACKOFF_FIRST_MS;
        loop_timer_stop(src->loop, &src->deadline_timer);
        loop_timer_set(src->loop, &src->alive_timer, ALIVE_MS);
    }
    good_answer(src);
    set_health(src, DISCOVERY_OK);
    return true;
}

/* Splits the decoded watch bytes into messages (one per line) and handles the complete ones. */
static bool watch_messages(struct etcd_source *src, bool *dirty)
{
    size_t start = 0;
    for (;;) {
        char *nl = memchr(src->body + start, '\n', src->body_len - start);
        if (!nl)
            break;
        size_t len = (size_t)(nl - (src->body + start));
        if (len > 0 && !watch_message(src, src->body + start, len, dirty))
            return false;
        start += len + 1;
    }
    memmove(src->body, src->body + start, src->body_len - start);
    src->body_len -= start;
    if (src->body_len > MAX_BODY_BYTES) {
        fail(src, "watch message from %s over %u bytes", endpoint_host(src), MAX_BODY_BYTES);
        return false;
    }
    return true;
}

/* Appends decoded body bytes. false (after fail()) if there is no room. */
static bool body_append(struct etcd_source *src, const char *p, size_t n)
{
    if (src->body_len + n > MAX_BODY_BYTES + (size_t)READ_CHUNK ||
        reserve(&src->body, &src->body_cap, src->body_len + n) < 0) {
        fail(src, "answer from %s too large", endpoint_host(src));
        return false;
    }
    memcpy(src->body + src->body_len, p, n);
    src->body_len += n;
    return true;
}

/* A complete answer that is not a standing watch: a range, or an error. */
static bool answer_done(struct etcd_source *src)
{
    if (src->http_status != 200) {
        char why[160];
        if (!etcd_parse_error(src->body, src->body_len, why, sizeof(why)))
            why[0] = '\0';
        fail(src, "%s answered %u%s%s", endpoint_host(src), src->http_status, why[0] ? ": " : "",
             why);
        return false;
    }
    if (src->req == REQ_RANGE)
        return range_done(src);
    fail(src, "watch stream closed by %s", endpoint_host(src));
    return false;
}

/* Reads the head of an answer from in. false if the connection ended; *more if it needs bytes. */
static bool read_head(struct etcd_source *src, bool *more)
{
    const struct http1_limits limits = {.max_head_bytes = MAX_HEAD_BYTES, .max_fields = MAX_FIELDS};
    struct http1_field fields[MAX_FIELDS];
    uint16_t error_status;
    const char *error;
    int r =
        http1_scan_head(&src->scan, src->in, src->in_len, &limits, false, &error_status, &error);
    if (r == HTTP1_AGAIN) {
        *more = true;
        return true;
    }
    struct http1_msg msg = {.fields = fields};
    if (r == HTTP1_ERROR ||
        http1_parse_response(&src->scan, src->in, &limits, HTTP1_METHOD_POST, &msg) != HTTP1_DONE) {
        fail(src, "invalid HTTP answer from %s: %s", endpoint_host(src),
             r == HTTP1_ERROR ? error : msg.error);
        return false;
    }
    if (msg.status < 200) { /* 100 Continue and the like: the real answer follows */
        memmove(src->in, src->in + msg.head_end, src->in_len - msg.head_end);
        src->in_len -= msg.head_end;
        memset(&src->scan, 0, sizeof(src->scan));
        return true;
    }
    src->http_status = msg.status;
    src->body_kind = msg.body;
    src->body_left = msg.content_length;
    src->reusable =
        msg.version == 11 && !(msg.flags & HTTP1_F_CONN_CLOSE) && msg.body != HTTP1_BODY_CLOSE;
    memmove(src->in, src->in + msg.head_end, src->in_len - msg.head_end);
    src->in_len -= msg.head_end;
    src->phase = PH_BODY;
    return true;
}

/*
 * Moves body bytes from in to body (decoding chunks), and handles what is complete. false if the
 * connection ended.
 */
static bool read_body(struct etcd_source *src, bool eof, bool *dirty)
{
    bool complete = false;
    switch (src->body_kind) {
    case HTTP1_BODY_NONE:
        complete = true;
        break;
    case HTTP1_BODY_LENGTH: {
        size_t n = src->in_len < src->body_left ? src->in_len : (size_t)src->body_left;
        if (!body_append(src, src->in, n))
            return false;
        src->body_left -= n;
        src->in_len = 0; /* nothing may follow an answer before the next request */
        complete = src->body_left == 0;
        break;
    }
    case HTTP1_BODY_CHUNKED: {
        size_t used, produced;
        int r = http1_chunked_parse(&src->chunked, src->in, src->in_len, true, &used, &produced);
        if (r == HTTP1_ERROR) {
            fail(src, "bad chunked framing from %s", endpoint_host(src));
            return false;
        }
        if (!body_append(src, src->in, produced))
            return false;
        memmove(src->in, src->in + used, src->in_len - used);
        src->in_len -= used;
        complete = r == HTTP1_DONE;
        break;
    }
    case HTTP1_BODY_CLOSE:
        if (!body_append(src, src->in, src->in_len))
            return false;
        src->in_len = 0;
        complete = eof;
        break;
    }
    if (src->req == REQ_WATCH && src->http_status == 200 && !watch_messages(src, dirty))
        return false;
    if (complete)
        return answer_done(src);
    if (eof) {
        fail(src, "%s closed the connection", endpoint_host(src));
        return false;
    }
    return true;
}

/* Reads what there is and handles it. false if the connection ended. */
static bool read_answers(struct etcd_source *src, bool *dirty)
{
    for (;;) {
        if (reserve(&src->in, &src->in_cap, src->in_len + READ_CHUNK) < 0) {
            fail(src, "out of memory");
            return false;
        }
        size_t got;
        enum conn_status r =
            conn_read(&src->conn, src->in + src->in_len, src->in_cap - src->in_len, &got);
        if (r == CONN_BLOCKED)
            return true;
        if (r == CONN_ERROR) {
            char text[96];
            fail(src, "%s: %s", endpoint_host(src), error_text(errno, text, sizeof(text)));
            return false;
        }
        bool eof = r == CONN_EOF;
        src->in_len += got;
        for (;;) { /* as far as the bytes go */
            enum phase before = src->phase;
            size_t had = src->in_len;
            bool more = false;
            if (src->phase == PH_HEAD && !read_head(src, &more))
                return false;
            if (src->phase == PH_HEAD && (more || eof)) {
                if (eof) {
                    fail(src, "%s closed the connection", endpoint_host(src));
                    return false;
                }
                break;
            }
            if (src->phase == PH_BODY && !read_body(src, eof, dirty))
                return false;
            if (src->phase == PH_SENDING)
                return true; /* the range answer was read; the watch request goes out */
            if (src->phase == before && src->in_len == had)
                break;
        }
        if (src->in_len > MAX_HEAD_BYTES + (size_t)MAX_BODY_BYTES) {
            fail(src, "answer from %s too large", endpoint_host(src));
            return false;
        }
    }
}

/* Sends what is left of the request. false if the connection ended. */
static bool send_request(struct etcd_source *src)
{
    while (src->out_sent < src->out_len) {
        size_t n;
        enum conn_status r =
            conn_write(&src->conn, src->out + src->out_sent, src->out_len - src->out_sent, &n);
        if (r == CONN_BLOCKED)
            return true;
        if (r == CONN_ERROR) {
            char text[96];
            fail(src, "%s: %s", endpoint_host(src), error_text(errno, text, sizeof(text)));
            return false;
        }
        src->out_sent += n;
    }
    src->phase = PH_HEAD;
    return true;
}

static void on_io(struct loop *loop, struct loop_io *io)
{
    struct etcd_source *src = (struct etcd_source *)io;
    bool dirty = false;

    if (src->phase == PH_CONNECTING) {
        if (io->ready & (LOOP_ERR | LOOP_HUP)) {
            connect_failed(src, net_socket_error(io->fd));
            return;
        }
        if (!(io->ready & LOOP_WRITABLE))
            return;
        if (src->tls) {
            src->phase = PH_HANDSHAKE;
        } else if (!start_next_request(src)) {
            return;
        }
    }
    if (src->phase == PH_HANDSHAKE) {
        const char *why = "failed";
        enum conn_status r = conn_handshake(&src->conn, &why);
        if (r == CONN_BLOCKED)
            return;
        if (r != CONN_DONE) {
            const char *cert = src->tls->verify_error(src->conn.ssl);
            fail(src, "TLS handshake with %s: %s", endpoint_host(src),
                 cert            ? cert
                 : r == CONN_EOF ? "connection closed"
                                 : why);
            return;
        }
        if (!start_next_request(src))
            return;
    }
    /* Sending and reading alternate: the range answer leads to the watch request. */
    for (;;) {
        if (src->phase == PH_SENDING && (!send_request(src) || src->phase == PH_SENDING))
            break;
        if (!read_answers(src, &dirty) || src->phase != PH_SENDING)
            break;
    }
    if (dirty && src->reg.revision > 0)
        rebuild_soon(src); /* every event of this read, as one new set */
}

/* ---- the source ---- */

void etcd_source_free(struct etcd_source *src)
{
    if (!src)
        return;
    drop_connection(src);
    loop_timer_stop(src->loop, &src->retry_timer);
    loop_timer_stop(src->loop, &src->hold_timer);
    loop_timer_stop(src->loop, &src->publish_timer);
    etcd_registry_free(&src->reg);
    members_free(&src->published);
    members_free(&src->next);
    members_log_free(&src->log);
    for (unsigned i = 0; i < src->nendpoints && src->hosts; i++)
        free(src->hosts[i]);
    for (unsigned i = 0; i < src->nendpoints && src->names; i++)
        free(src->names[i]);
    free(src->hosts);
    free(src->names);
    if (src->tls && src->tls_ctx)
        src->tls->release(src->tls_ctx);
    free(src->addrs);
    free(src->pool);
    free(src->prefix);
    free(src);
}

struct etcd_source *etcd_source_new(struct loop *loop, const char *pool,
                                    const struct conf_etcd_discovery *c, unsigned max,
                                    const struct member_set *initial, const struct etcd_tls *tls,
                                    void *tls_ctx, discovery_update_fn *fn, void *arg)
{
    struct etcd_source *src = calloc(1, sizeof(*src));
    if (!src) {
        if (c->https && tls && tls_ctx)
            tls->release(tls_ctx);
        goto no_memory;
    }
    src->loop = loop;
    src->fn = fn;
    src->arg = arg;
    src->tls = c->https ? tls : NULL;
    src->tls_ctx = src->tls ? tls_ctx : NULL;
    if (c->https && (!tls || !tls_ctx)) {
        log_error("pool %s: etcd: https endpoints without a TLS context", pool);
        etcd_source_free(src);
        return NULL;
    }
    src->conn.io.fd = -1;
    src->timeout_ms = c->timeout_ms ? c->timeout_ms : 2000;
    src->hold_ms = c->hold_on_error_ms;
    src->backoff_ms = BACKOFF_FIRST_MS;
    src->rng = (uint64_t)wall_ms() ^ (uint64_t)(uintptr_t)src ^ 0x9e3779b97f4a7c15u;
    src->retry_timer.fn = on_retry_timer;
    src->deadline_timer.fn = on_deadline_timer;
    src->hold_timer.fn = on_hold_timer;
    src->alive_timer.fn = on_alive_timer;
    src->publish_timer.fn = on_publish_timer;
    src->last_good_ms = loop_now_ms(loop);
    etcd_registry_init(&src->reg);
    members_init(&src->published, max);
    members_init(&src->next, max);
    src->nendpoints = c->nendpoints;
    if (!(src->pool = strdup(pool)) || !(src->prefix = strdup(c->prefix)) ||
        !(src->addrs = calloc(c->nendpoints, sizeof(*src->addrs))) ||
        !(src->hosts = calloc(c->nendpoints, sizeof(*src->hosts))) ||
        !(src->names = calloc(c->nendpoints, sizeof(*src->names))))
        goto no_memory;
    for (unsigned i = 0; i < c->nendpoints; i++) {
        src->addrs[i] = c->endpoint_addrs[i];
        if (!(src->hosts[i] = strdup(c->endpoint_hosts[i])) ||
            !(src->names[i] = host_of(c->endpoint_hosts[i])))
            goto no_memory;
    }
    if (initial && members_copy(&src->published, initial) < 0)
        goto no_memory;
    src->status.members = src->published.n;
    if (c->nendpoints == 0) { /* conf.c refuses it; never divide by it here */
        log_error("pool %s: etcd: no endpoint", pool);
        etcd_source_free(src);
        return NULL;
    }
    loop_timer_set(loop, &src->retry_timer, 0);
    return src;

no_memory:
    log_error("pool %s: etcd: out of memory", pool);
    etcd_source_free(src);
    return NULL;
}

void etcd_source_set_tls(struct etcd_source *src, void *tls_ctx)
{
    if (!src->tls)
        return;
    src->tls->release(src->tls_ctx);
    src->tls_ctx = tls_ctx;
}

const struct discovery_status *etcd_source_status(const struct etcd_source *src)
{
    return &src->status;
}
