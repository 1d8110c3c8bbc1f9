/*
 * check.c - active health checks and passive ejections (see check.h), run by the control thread.
 *
 * The checker keeps one watch per server of the current snapshot. A watch has two timers: the next
 * active check (pools with a health_check) and the end of an ejection. An active check is a small
 * state machine on its own connection, never shared with client traffic and closed when done:
 *
 *   IDLE --timer--> CONNECTING --writable--> SENDING --sent--> READING --verdict--> IDLE
 *                       | tcp check: connected = pass                   |
 *                       +--- error, or timeout at any step: fail -------+
 *
 * A grpc check speaks HTTP/2 (check_grpc.h): h2c with prior knowledge, or TLS offering only h2
 * through ALPN on a pool with tls. SENDING writes the connection preface and the call; READING
 * feeds what comes to the call's session and writes back what it must acknowledge, until the
 * answer decides.
 *
 * A pool that sends the PROXY protocol to its servers sends it on its checks too, since its
 * servers expect it on every connection: once connected, before the TLS handshake or the request,
 * a header with no client in it (v1 "PROXY UNKNOWN", v2 LOCAL), as HAProxy's check-send-proxy
 * does. A TCP check passes once that header went out.
 *
 * A check reads at most CHECK_BUF bytes of the response: the head, and as much of the body as
 * fits when expect_body is set. Each verdict goes through health_record() (rise/fall), and a
 * change goes through server_update_state(), which logs it. Intervals are shortened by up to 10%
 * at random, so checks of many servers drift apart instead of firing together.
 *
 * Passive detection: a worker whose report makes a server reach its pool's consecutive_failures
 * sets eject_wanted and wakes this thread, which ejects the server unless the pool already has
 * max_ejected_percent of its servers out. An ejection ends when its time is over, or after `rise`
 * passing active checks in a row that began after the ejection (readmit_on_checks).
 */
#include "ctl/check.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/net.h"
#include "core/proxy_proto.h"
#include "core/tls_conn.h"
#include "ctl/check_grpc.h"
#include "http/http1.h"
#include "servers/pool.h"
#include "tls/client.h"

#define CHECK_BUF 16384

enum phase { CK_IDLE, CK_CONNECTING, CK_HANDSHAKE, CK_SENDING, CK_READING };

struct watch {
    struct conn conn; /* first: the loop's pointer is the watch's */
    struct watch *next;
    struct loop_grave grave;       /* freed after the batch (watch_free) */
    struct loop_timer check_timer; /* next check, or the running check's timeout */
    struct loop_timer eject_timer; /* end of the current ejection */
    struct server *server;
    const struct pool *pool;
    struct net_addr addr; /* where checks connect */
    char *request;
    size_t request_len, sent;
    char preamble[PP_WRITE_MAX]; /* the PROXY header of the running check, if its pool sends one */
    size_t preamble_len, preamble_sent;
    char *buf;
    size_t got;
    struct grpc_check *grpc; /* the running grpc check's call */
    enum phase phase;
    uint64_t started_ms; /* when the running (or last) check began */
    bool seen;           /* checker_sync: still in the new snapshot */
};

struct checker {
    struct loop *loop;
    struct watch *watches;
    uint64_t rng;
    /* the configuration whose checks were last described in the log: snapshots rebuilt from it
     * (balancers following a state change, servers added through the API) say nothing new */
    const struct conf *described;
};

/* The control thread's checker; the callbacks below reach it through this. */
static struct checker *ck;

static uint64_t next_random(void)
{
    /* xorshift64: only for jitter, so quality matters little and speed not at all */
    ck->rng ^= ck->rng << 13;
    ck->rng ^= ck->rng >> 7;
    ck->rng ^= ck->rng << 17;
    return ck->rng;
}

static uint64_t now_ms(void)
{
    return loop_now_ms(ck->loop);
}

/* ---- state changes ---- */

static void set_last_result(struct server *s, const char *text)
{
    snprintf(s->h.last_result, sizeof(s->h.last_result), "%s", text);
}

/* Ends an ejection; the caller publishes the new state. */
static void end_ejection(struct watch *w)
{
    w->server->h.ejected = false;
    w->server->h.last_ejection_ms = now_ms();
    loop_timer_stop(ck->loop, &w->eject_timer);
}

/* Ends an ejection; reason says why (time over, or checks passed). */
static void uneject(struct watch *w, const char *reason)
{
    end_ejection(w);
    server_update_state(w->server, now_ms(), reason);
}

static void on_eject_timer(struct loop *loop, struct loop_timer *t)
{
    uneject(container_of(t, struct watch, eject_timer), "ejection time over");
}

static unsigned ejected_in_pool(const struct pool *p)
{
    unsigned n = 0;
    for (unsigned i = 0; i < p->nservers; i++)
        n += p->servers[i]->h.ejected;
    return n;
}

static void try_eject(struct watch *w)
{
    struct server *s = w->server;
    const struct conf_passive *pc = &w->pool->conf->passive;
    unsigned failures = atomic_exchange(&s->consecutive_failures, 0);
    unsigned failure = atomic_load(&s->last_failure);

    if (s->h.ejected || s->h.check_down || s->h.admin != SERVER_ADMIN_READY)
        return; /* already out of rotation for another reason */
    char what[40];
    server_failure_text(failure, what, sizeof(what));
    unsigned limit = health_max_ejected(w->pool->nservers, pc->max_ejected_percent);
    if (ejected_in_pool(w->pool) >= limit) {
        log_warn("pool %s server %s: %u consecutive failures, last: %s, but %u of %u servers are "
                 "already ejected (max_ejected_percent %u): kept in rotation",
                 w->pool->name, s->name, failures, what, ejected_in_pool(w->pool),
                 w->pool->nservers, pc->max_ejected_percent);
        return;
    }
    /* An ejection long forgotten does not make the next one longer. */
    if (s->h.ejections && now_ms() >= s->h.last_ejection_ms + pc->max_ejection_time_ms)
        s->h.ejections = 0;
    s->h.ejections++;
    s->h.ejections_total++;
    uint32_t ms = health_ejection_ms(pc, s->h.ejections);
    s->h.ejected = true;
    s->h.ejected_at_ms = now_ms();
    s->h.ejected_until_ms = now_ms() + ms;
    s->h.passes_since_ejection = 0;
    loop_timer_set(ck->loop, &w->eject_timer, ms);

    char reason[160];
    snprintf(reason, sizeof(reason), "%u consecutive failures, last: %s; ejected for %u.%03us",
             failures, what, ms / 1000, ms % 1000);
    server_update_state(s, now_ms(), reason);
}

void checker_eject_requests(struct checker *c)
{
    for (struct watch *w = c->watches; w; w = w->next)
        if (atomic_exchange(&w->server->eject_wanted, false))
            try_eject(w);
}

/* ---- active checks ---- */

/*
 * An ejected server comes back early only after `rise` passing checks in a row that all began
 * after the ejection (strictly after: the loop clock counts milliseconds, and a check begun in the
 * same millisecond may have begun before it): a check can pass while real requests fail (a server
 * that answers its health path but hangs on everything else), so one pass proves little, and a
 * check already running when the server was ejected proves nothing about what came after. Returns
 * true when this check ended the ejection.
 */
static bool readmit_on_checks(struct watch *w, bool passed, unsigned rise)
{
    struct server *s = w->server;
    if (!passed) {
        s->h.passes_since_ejection = 0;
        return false;
    }
    if (w->started_ms <= s->h.ejected_at_ms || ++s->h.passes_since_ejection < rise)
        return false;
    end_ejection(w);
    return true;
}

/* Ends the check in progress, if any, without a verdict. */
static void abandon_check(struct watch *w)
{
    if (w->phase != CK_IDLE)
        conn_close(&w->conn, false); /* sets fd to -1 */
    free(w->buf);
    w->buf = NULL;
    grpc_check_free(w->grpc);
    w->grpc = NULL;
    w->phase = CK_IDLE;
}

static void schedule(struct watch *w)
{
    const struct conf_health_check *c = &w->pool->conf->check;
    struct server *s = w->server;
    uint32_t ms = health_next_interval(&s->h.checks, !s->h.check_down, c);
    uint32_t jitter = ms / 10;
    if (jitter)
        ms -= (uint32_t)(next_random() % jitter);
    loop_timer_set(ck->loop, &w->check_timer, ms);
}

static void check_done(struct watch *w, bool passed, const char *why)
{
    const struct conf_health_check *c = &w->pool->conf->check;
    struct server *s = w->server;
    char reason[192];

    abandon_check(w);
    set_last_result(s, why);
    if (passed)
        s->h.checks_passed++;
    else
        s->h.checks_failed++;

    bool first = !s->h.checks.checked;
    /* Decided before the state is published, so that a down server whose checks also end its
     * ejection goes DOWN -> UP in one step. */
    bool readmitted = s->h.ejected && readmit_on_checks(w, passed, c->rise);
    switch (health_record(&s->h.checks, !s->h.check_down, passed, c->rise, c->fall)) {
    case HEALTH_GOES_DOWN:
        s->h.check_down = true;
        if (first)
            snprintf(reason, sizeof(reason), "first check failed: %s", why);
        else
            snprintf(reason, sizeof(reason), "%u/%u checks failed: %s", s->h.checks.fails, c->fall,
                     why);
        server_update_state(s, now_ms(), reason);
        break;
    case HEALTH_GOES_UP:
        s->h.check_down = false;
        if (first)
            snprintf(reason, sizeof(reason), "first check passed");
        else
            snprintf(reason, sizeof(reason), "%u/%u checks passed", s->h.checks.passes, c->rise);
        server_update_state(s, now_ms(), reason);
        break;
    default:
        break;
    }
    if (readmitted) {
        snprintf(reason, sizeof(reason), "%u/%u health checks passed", s->h.passes_since_ejection,
                 c->rise);
        server_update_state(s, now_ms(), reason); /* no change if already published above */
    }
    schedule(w);
}

static void fail_errno(struct watch *w, int err)
{
    check_done(w, false, strerror(err ? err : ECONNRESET));
}

/* Decides from what was read so far: 1 pass, 0 fail, -1 need more. */
static int verdict(struct watch *w, bool eof, char *why, size_t whylen)
{
    const struct conf_health_check *c = &w->pool->conf->check;
    const struct http1_limits limits = {.max_head_bytes = CHECK_BUF, .max_fields = 100};
    struct http1_field fields[100];
    size_t start = 0;

    for (;;) {
        struct http1_scan scan = {0};
        uint16_t status;
        const char *err;
        int r =
            http1_scan_head(&scan, w->buf + start, w->got - start, &limits, false, &status, &err);
        if (r == HTTP1_AGAIN) {
            if (!eof && w->got < CHECK_BUF)
                return -1;
            snprintf(why, whylen, "%s",
                     eof ? "connection closed before a response" : "response head too large");
            return 0;
        }
        struct http1_msg msg = {.fields = fields};
        uint8_t method = strcmp(c->method, "HEAD") == 0 ? HTTP1_METHOD_HEAD : HTTP1_METHOD_GET;
        if (r == HTTP1_ERROR ||
            http1_parse_response(&scan, w->buf + start, &limits, method, &msg) != HTTP1_DONE) {
            snprintf(why, whylen, "invalid response: %s", r == HTTP1_ERROR ? err : msg.error);
            return 0;
        }
        if (msg.status < 200) { /* interim: the final response follows */
            start += msg.head_end;
            continue;
        }
        if (!conf_status_in(&c->expect_status, msg.status)) {
            snprintf(why, whylen, "status %u", msg.status);
            return 0;
        }
        if (!c->expect_body) {
            snprintf(why, whylen, "status %u", msg.status);
            return 1;
        }
        char *body = w->buf + start + msg.head_end;
        size_t have = w->got - start - msg.head_end;
        bool full = w->got >= CHECK_BUF;
        if (msg.body == HTTP1_BODY_LENGTH) {
            if (have < msg.content_length && !eof && !full)
                return -1;
            if (have > msg.content_length)
                have = (size_t)msg.content_length;
        } else if (msg.body == HTTP1_BODY_CHUNKED) {
            char copy[CHECK_BUF];
            struct http1_chunked ch = {0};
            size_t used, produced;
            memcpy(copy, body, have);
            int cr = http1_chunked_parse(&ch, copy, have, true, &used, &produced);
            if (cr == HTTP1_AGAIN && !eof && !full)
                return -1;
            memcpy(body, copy, produced);
            have = produced;
        } else if (msg.body == HTTP1_BODY_CLOSE && !eof && !full) {
            return -1;
        } else if (msg.body == HTTP1_BODY_NONE) {
            have = 0;
        }
        if (!memmem(body, have, c->expect_body, strlen(c->expect_body))) {
            snprintf(why, whylen, "status %u, body without \"%.40s\"", msg.status, c->expect_body);
            return 0;
        }
        snprintf(why, whylen, "status %u, body matched", msg.status);
        return 1;
    }
}

/* Writes what the grpc check's session has to send, as far as the socket takes it; READING
 * once everything went. false if the check ended (failed). */
static bool send_grpc(struct watch *w)
{
    const uint8_t *data;
    size_t len;
    while ((len = grpc_check_pending(w->grpc, &data)) > 0) {
        size_t n;
        enum conn_status r = conn_write(&w->conn, (const char *)data, len, &n);
        if (r == CONN_BLOCKED)
            return true;
        if (r == CONN_ERROR) {
            fail_errno(w, errno);
            return false;
        }
        grpc_check_sent(w->grpc, n);
    }
    if (w->phase == CK_SENDING) {
        w->phase = CK_READING;
        if (!(w->buf = malloc(CHECK_BUF))) {
            check_done(w, false, "out of memory");
            return false;
        }
    }
    return true;
}

static void check_io(struct loop *loop, struct loop_io *io)
{
    struct watch *w = (struct watch *)io;

    if (w->phase == CK_CONNECTING) {
        if (io->ready & (LOOP_ERR | LOOP_HUP)) {
            fail_errno(w, net_socket_error(io->fd));
            return;
        }
        if (!(io->ready & LOOP_WRITABLE))
            return;
        /* Connected: the PROXY header, if any, is the first thing on the wire (in the clear). */
        while (w->preamble_sent < w->preamble_len) {
            size_t n;
            enum conn_status r = conn_write_plain(&w->conn, w->preamble + w->preamble_sent,
                                                  w->preamble_len - w->preamble_sent, &n);
            if (r == CONN_BLOCKED)
                return;
            if (r == CONN_ERROR) {
                fail_errno(w, errno);
                return;
            }
            w->preamble_sent += n;
        }
        w->phase = w->conn.ssl ? CK_HANDSHAKE : CK_SENDING;
        if (w->phase == CK_SENDING && w->pool->conf->check.type == CONF_CHECK_TCP) {
            check_done(w, true, w->preamble_len ? "connected, PROXY header sent" : "connected");
            return;
        }
    }
    if (w->phase == CK_HANDSHAKE) { /* a TLS pool's checks use TLS, with the same settings */
        const char *why = "TLS handshake failed";
        enum conn_status r = conn_handshake(&w->conn, &why);
        if (r == CONN_BLOCKED)
            return;
        if (r != CONN_DONE) {
            const char *cert = tls_client_verify_error(w->conn.ssl);
            char text[160];
            snprintf(text, sizeof(text), "TLS: %s", cert ? cert : why);
            check_done(w, false, text);
            return;
        }
        if (w->pool->conf->check.type == CONF_CHECK_TCP) {
            check_done(w, true, "TLS handshake done");
            return;
        }
        if (w->grpc && !tls_client_chose_h2(w->conn.ssl)) {
            check_done(w, false, "TLS: the server did not choose h2 (ALPN)");
            return;
        }
        w->phase = CK_SENDING;
    }
    if (w->phase == CK_SENDING && w->grpc) {
        if (!send_grpc(w))
            return;
        if (w->phase == CK_SENDING)
            return; /* the rest when the socket takes it */
    }
    if (w->phase == CK_SENDING) {
        while (w->sent < w->request_len) {
            size_t n;
            enum conn_status r =
                conn_write(&w->conn, w->request + w->sent, w->request_len - w->sent, &n);
            if (r == CONN_BLOCKED)
                return;
            if (r == CONN_ERROR) {
                fail_errno(w, errno);
                return;
            }
            w->sent += n;
        }
        w->phase = CK_READING;
        if (!(w->buf = malloc(CHECK_BUF))) {
            check_done(w, false, "out of memory");
            return;
        }
        w->got = 0;
    }
    /* CK_READING: read what is there, then decide if we can */
    for (;;) {
        size_t n;
        enum conn_status r = conn_read(&w->conn, w->buf + w->got, CHECK_BUF - w->got, &n);
        if (r == CONN_BLOCKED)
            return;
        if (r == CONN_ERROR) {
            fail_errno(w, errno);
            return;
        }
        bool eof = r == CONN_EOF;
        char why[128];
        if (w->grpc) {
            enum grpc_check_verdict v =
                grpc_check_feed(w->grpc, (const uint8_t *)w->buf, n, why, sizeof(why));
            if (v != GRPC_CHECK_MORE) {
                check_done(w, v == GRPC_CHECK_PASS, why);
                return;
            }
            if (!send_grpc(w)) /* acknowledgements the server waits for */
                return;
            continue;
        }
        w->got += n;
        int v = verdict(w, eof, why, sizeof(why));
        if (v >= 0) {
            check_done(w, v == 1, why);
            return;
        }
        if (eof)
            return; /* not reached: verdict decides at EOF */
    }
}

static void on_check_timer(struct loop *loop, struct loop_timer *t)
{
    struct watch *w = container_of(t, struct watch, check_timer);
    const struct conf_health_check *c = &w->pool->conf->check;

    if (w->phase != CK_IDLE) { /* the running check's time is up */
        check_done(w, false, "timeout");
        return;
    }
    if (w->server->h.admin == SERVER_ADMIN_MAINT) { /* maintenance: checks stop */
        schedule(w);
        return;
    }
    w->preamble_sent = w->preamble_len = 0;
    enum conf_proxy_send pp = w->pool->conf->proxy_protocol;
    if (pp != CONF_PROXY_SEND_NONE) { /* no client: "unknown" / LOCAL */
        w->preamble_len = pp_write(pp == CONF_PROXY_SEND_V1 ? 1 : 2, NULL, NULL, w->preamble,
                                   sizeof(w->preamble));
        if (!w->preamble_len) { /* cannot happen (it always fits), but never check without it */
            check_done(w, false, "cannot write a PROXY protocol header");
            return;
        }
    }
    bool in_progress;
    int fd = net_connect(&w->addr, &in_progress);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) {
        /* Our own shortage says nothing about the server: skip this check, keep its state. */
        log_warn("pool %s server %s: health check skipped: %s", w->pool->name, w->server->name,
                 strerror(errno));
        schedule(w);
        return;
    }
    if (fd < 0) {
        w->phase = CK_IDLE;
        check_done(w, false, strerror(errno));
        return;
    }
    bool grpc = w->pool->conf->check.type == CONF_CHECK_GRPC;
    if (!w->pool->tls) {
        conn_init_tcp(&w->conn, fd, check_io);
    } else {
        struct ssl_st *ssl = grpc ? tls_client_connect_h2(w->pool->tls, w->server->host, NULL)
                                  : tls_client_connect(w->pool->tls, w->server->host, NULL);
        if (!ssl || conn_init_tls(&w->conn, fd, check_io, ssl) < 0) {
            log_warn("pool %s server %s: health check skipped: out of memory", w->pool->name,
                     w->server->name);
            if (ssl)
                conn_close(&w->conn, false);
            else
                close(fd);
            schedule(w);
            return;
        }
    }
    if (grpc && !(w->grpc = grpc_check_new(c->host ? c->host : w->server->addr_text,
                                           c->service ? c->service : ""))) {
        conn_close(&w->conn, false);
        log_warn("pool %s server %s: health check skipped: out of memory", w->pool->name,
                 w->server->name);
        schedule(w);
        return;
    }
    w->sent = 0;
    w->started_ms = now_ms();
    w->phase = CK_CONNECTING;
    if (conn_watch(loop, &w->conn) < 0) {
        int err = errno;
        fail_errno(w, err);
        return;
    }
    if (!in_progress)
        w->conn.io.ready |= LOOP_WRITABLE;
    loop_timer_set(loop, &w->check_timer, c->timeout_ms);
    if (!in_progress)
        check_io(loop, &w->conn.io);
}

/* ---- the set of watches ---- */

/* Builds the check request and address of w from its pool's configuration. */
static int watch_configure(struct watch *w)
{
    const struct conf_health_check *c = &w->pool->conf->check;
    struct server *s = w->server;
    w->addr = s->addr;
    if (c->port) {
        if (w->addr.ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&w->addr.ss)->sin_port = htons((uint16_t)c->port);
        else
            ((struct sockaddr_in6 *)&w->addr.ss)->sin6_port = htons((uint16_t)c->port);
    }
    free(w->request);
    w->request = NULL;
    w->request_len = 0;
    if (!c->enabled || c->type != CONF_CHECK_HTTP)
        return 0;
    int n = asprintf(&w->request,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: fulcrum-health-check\r\n"
                     "Accept: */*\r\nConnection: close\r\n\r\n",
                     c->method, c->path, c->host ? c->host : s->addr_text);
    if (n < 0) {
        w->request = NULL;
        return -1;
    }
    w->request_len = (size_t)n;
    return 0;
}

static void bury_watch(struct loop_grave *grave)
{
    free(container_of(grave, struct watch, grave));
}

/* Stops w at once; its memory goes after the batch, in which a later event of its check's
 * connection may still point at it (a reload from the admin API runs inside an event). */
static void watch_free(struct checker *c, struct watch *w)
{
    w->server->watch = NULL; /* the server may live on in a snapshot a connection still holds */
    abandon_check(w);
    loop_timer_stop(c->loop, &w->check_timer);
    loop_timer_stop(c->loop, &w->eject_timer);
    free(w->request);
    w->request = NULL;
    w->grave.bury = bury_watch;
    loop_bury(c->loop, &w->grave);
}

static void describe(const struct pool *p)
{
    const struct conf_health_check *c = &p->conf->check;
    if (!c->enabled)
        return;
    if (c->type == CONF_CHECK_TCP)
        log_info("pool %s: TCP health checks every %ums (rise %u, fall %u)", p->name,
                 c->interval_ms, c->rise, c->fall);
    else if (c->type == CONF_CHECK_GRPC)
        log_info("pool %s: gRPC health checks of service \"%s\" every %ums (rise %u, fall %u, "
                 "timeout %ums)",
                 p->name, c->service ? c->service : "", c->interval_ms, c->rise, c->fall,
                 c->timeout_ms);
    else
        log_info("pool %s: health checks %s %s every %ums (rise %u, fall %u, timeout %ums)",
                 p->name, c->method, c->path, c->interval_ms, c->rise, c->fall, c->timeout_ms);
}

static bool same_check(const struct conf_health_check *a, const struct conf_health_check *b)
{
    return a->enabled == b->enabled && a->type == b->type && a->port == b->port &&
           strcmp(a->method, b->method) == 0 && strcmp(a->path, b->path) == 0 &&
           (a->host ? b->host && strcmp(a->host, b->host) == 0 : !b->host) &&
           strcmp(a->service ? a->service : "", b->service ? b->service : "") == 0;
}

/* Moves an existing watch to its server's pool in the new snapshot. */
static void watch_update(struct checker *c, struct watch *w, const struct pool *p)
{
    const struct conf_health_check *was = &w->pool->conf->check, *now = &p->conf->check;
    bool changed = !same_check(was, now);
    bool was_on = was->enabled;
    w->pool = p;
    if (!changed)
        return;
    abandon_check(w);
    if (watch_configure(w) < 0)
        log_error("pool %s server %s: out of memory for its health check", p->name,
                  w->server->name);
    if (now->enabled) {
        loop_timer_set(c->loop, &w->check_timer, 0); /* a new kind of check starts at once */
        return;
    }
    loop_timer_stop(c->loop, &w->check_timer);
    if (was_on) { /* no more checks: what they said no longer holds */
        memset(&w->server->h.checks, 0, sizeof(w->server->h.checks));
        w->server->h.check_down = false;
        server_update_state(w->server, now_ms(), "health checks turned off");
    }
}

static struct watch *watch_new(struct checker *c, const struct pool *p, struct server *s)
{
    struct watch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->server = s;
    w->pool = p;
    w->conn.io.fd = -1;
    w->check_timer.fn = on_check_timer;
    w->eject_timer.fn = on_eject_timer;
    if (watch_configure(w) < 0) {
        free(w);
        return NULL;
    }
    if (p->conf->check.enabled) /* the first check runs at once */
        loop_timer_set(c->loop, &w->check_timer, 0);
    return w;
}

struct checker *checker_new(struct loop *loop)
{
    struct checker *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->loop = loop;
    c->rng = (uint64_t)time(NULL) * 2654435761u | 1;
    ck = c;
    return c;
}

int checker_sync(struct checker *c, const struct snapshot *snap)
{
    int rc = 0;
    for (struct watch *w = c->watches; w; w = w->next)
        w->seen = false;
    for (unsigned i = 0; i < snap->npools; i++) {
        const struct pool *p = &snap->pools[i];
        if (snap->conf != c->described)
            describe(p);
        for (unsigned k = 0; k < p->nservers; k++) {
            /* each server points at its watch: a sync of 1,000 servers is 1,000 steps */
            struct watch *w = p->servers[k]->watch;
            if (w) {
                watch_update(c, w, p);
            } else if ((w = watch_new(c, p, p->servers[k]))) {
                w->next = c->watches;
                c->watches = w;
                p->servers[k]->watch = w;
            } else {
                log_error("pool %s server %s: out of memory for its health check", p->name,
                          p->servers[k]->name);
                rc = -1;
                continue;
            }
            w->seen = true;
        }
    }
    c->described = snap->conf;
    /* servers no longer in the configuration: stop watching them */
    for (struct watch **pp = &c->watches; *pp;) {
        struct watch *w = *pp;
        if (w->seen) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        watch_free(c, w);
    }
    return rc;
}

void checker_free(struct checker *c)
{
    if (!c)
        return;
    while (c->watches) {
        struct watch *w = c->watches;
        c->watches = w->next;
        watch_free(c, w);
    }
    if (ck == c)
        ck = NULL;
    free(c);
}
