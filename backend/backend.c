/*
 * backend.c - fulcrum-backend: a small, fast HTTP/1.1 server on fulcrum's own event loop.
 *
 * It serves `make run` and the end-to-end tests, so it must be both quick on the plain path and
 * able to misbehave on request (see controls.c and --help for the test controls). One thread, one
 * loop, one listening socket; everything is non-blocking.
 *
 * A connection owns at most two pooled buffers, held only while bytes are in flight:
 *   in   request bytes (one head of up to 64 KiB fits, hence a pool of its own); the head is
 *        parsed where it lies, body bytes are checksummed and dropped as they arrive, and bytes of
 *        a pipelined next request simply stay behind the current one.
 *   out  16 KiB of response bytes: 1xx heads, the final head, and the body, which is generated
 *        into the buffer as room appears (backpressure: nothing is generated that cannot be
 *        written soon, so a 1 GiB body costs one buffer).
 *
 * States of a connection (c->state), all driven by client_drive(), which runs the step of the
 * current state until one reports that it must wait for the socket or a timer:
 *
 *   HEAD --head parsed--> BODY --body read--> [interim] --> WAIT (delay) --> SEND --> HEAD
 *     ^                                                                      | ^      (next,
 *     |                                                                      v |    pipelined
 *     |                                                                     DRIP    or new)
 *     |    reset=1 / garbage=1 / close / error / EOF        hang=1
 *     +---------------------------------> DRAIN --FIN--> LINGER --> closed   HANG --EOF--> closed
 *                                            \--RST--> closed
 *
 *   HEAD    waits for and parses a request head; responses already generated are flushed first
 *   BODY    reads the body (Content-Length or chunked), counting bytes and updating the CRC
 *   WAIT    the delay=MS timer runs; output already queued keeps flushing
 *   SEND    generates the body into out and writes it; GEN_PAUSE leads to DRIP (drip=MS)
 *   HANG    reads and discards until the peer closes (hang=1)
 *   DRAIN   writes what is queued, then resets (reset=1, reset_after) or shuts down writing
 *   LINGER  after our FIN: reads and discards until the peer's FIN, so that unread request bytes
 *           do not turn our close into an RST that would destroy the response in flight
 *
 * Closing follows loop.h: the fd is closed and io.handler cleared at once, the struct goes on a
 * dead list and is recycled only in the before_poll hook, once the epoll batch is over.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backend.h"
#include "register.h"
#include "core/buf.h"
#include "core/conn.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/net.h"
#include "core/version.h"
#include "http/http1.h"

#define MAX_HEAD_BYTES (64u * 1024)
#define MAX_FIELDS     200
/* Room for the largest head plus the few empty lines the scanner skips before it. */
#define IN_BUF_SIZE  (MAX_HEAD_BYTES + 4096)
#define OUT_BUF_SIZE (16u * 1024)
/* Free out space required before a request is parsed: its 100 Continue, interim and final
 * heads must fit, whatever earlier pipelined responses still wait to be written. */
#define HEAD_ROOM        2048
#define IDLE_MS          60000
#define LINGER_MS        5000
#define LINGER_MAX_BYTES (1u << 20)
#define ECHO_MAX_BODY    (1u << 20)
/* Steps one event may run before the connection yields to others (loop.h, fairness). */
#define MAX_ROUNDS      64
#define ACCEPT_BATCH    64
#define ACCEPT_RETRY_MS 100
#define MAX_SPARE_CONNS 256
#define MAX_SPARE_BUFS  64
#define MAX_NAME        128
/* Bodies of built-in answers: hello, health, stats JSON (name escaped) and error messages. */
#define TEXT_MAX (2 * MAX_NAME + BE_ERROR_TEXT + 64)

enum state { ST_HEAD, ST_BODY, ST_WAIT, ST_SEND, ST_DRIP, ST_HANG, ST_DRAIN, ST_LINGER, ST_CLOSED };
enum step { STEP_PROGRESS, STEP_WAIT };
enum io_result { IO_OK, IO_BLOCKED, IO_EOF, IO_ERROR };
enum gen { GEN_DONE, GEN_FULL, GEN_PAUSE, GEN_ERROR };
enum source { SRC_TEXT, SRC_ECHO, SRC_PATTERN };

struct client {
    struct conn conn;             /* first: the loop's pointer is the client's */
    struct loop_timer idle_timer; /* inactivity; see on_idle() */
    struct loop_timer wait_timer; /* delay, drip pauses, lingering close */
    struct loop_task task;        /* resumes client_drive() after a yield */
    struct client *prev, *next;   /* srv.conns, or srv.dead / srv.spare (next only) */
    uint8_t state;                /* enum state */
    bool peer_eof;                /* the peer will send nothing more */
    bool rst_when_flushed;        /* DRAIN ends with an RST rather than a FIN */
    bool limit_on;                /* reset_after: at most limit_left more bytes go out */
    uint64_t limit_left;
    uint64_t last_active; /* loop time of the last read or write that moved bytes */
    struct buf in, out;
    struct http1_scan scan;
    struct http1_chunked chunked;

    /* the request being answered */
    uint8_t method, version, body_kind;
    bool keep_alive;
    uint64_t body_left; /* Content-Length bytes still to read */
    uint64_t body_bytes;
    uint32_t crc;
    char *echo; /* echo=1: the head, then the decoded body */
    size_t echo_len, echo_cap, echo_head;
    uint16_t echo_fail; /* 413 or 500 once echo could not keep the body */
    struct be_plan plan;

    /* the response body generator */
    uint8_t source; /* enum source */
    uint8_t framing;
    bool gen_body; /* false for HEAD, 204 and 304: the head is all */
    bool chunk_open, last_chunk_done;
    uint64_t body_len, body_off, chunk_left, piece_left;
    uint64_t linger_bytes;
    size_t text_len;
    char text[TEXT_MAX];
};

static struct server {
    struct loop *loop;
    struct buf_pool inpool, outpool;
    struct loop_io listen_io;
    struct loop_timer accept_retry;
    struct loop_io sig_io;
    const char *name;
    bool healthy;
    uint64_t slow_ms; /* POST /slow: the delay of every request without one of its own */
    uint64_t connections, active, requests;
    struct client *conns; /* open connections */
    struct client *dead;  /* closed during this batch; recycled in before_poll */
    struct client *spare;
    unsigned nspare;
    struct http1_limits limits;
    struct http1_field fields[MAX_FIELDS]; /* one request is parsed at a time */
} srv;

static void client_drive(struct client *c);

/* ---- connection lifetime ---- */

static void client_close(struct client *c, bool rst)
{
    if (c->state == ST_CLOSED)
        return;
    loop_timer_stop(srv.loop, &c->idle_timer);
    loop_timer_stop(srv.loop, &c->wait_timer);
    loop_cancel(srv.loop, &c->task);
    conn_close(&c->conn, rst); /* later events of this batch still point here: ignored */
    buf_put(&srv.inpool, &c->in);
    buf_put(&srv.outpool, &c->out);
    free(c->echo);
    c->echo = NULL;
    c->state = ST_CLOSED;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = srv.dead;
    srv.dead = c;
    srv.active--;
}

static void before_poll(struct loop *loop, void *arg)
{
    while (srv.dead) {
        struct client *c = srv.dead;
        srv.dead = c->next;
        if (srv.nspare < MAX_SPARE_CONNS) {
            c->next = srv.spare;
            srv.spare = c;
            srv.nspare++;
        } else {
            free(c);
        }
    }
}

static void free_conn_list(struct client *c)
{
    while (c) {
        struct client *next = c->next;
        free(c);
        c = next;
    }
}

/* ---- buffered I/O ---- */

static void touch(struct client *c)
{
    c->last_active = loop_now_ms(srv.loop);
}

/* One read into the in buffer (core/conn.h keeps the readiness rules). */
static enum io_result client_read(struct client *c)
{
    if (!(c->conn.io.ready & LOOP_READABLE))
        return IO_BLOCKED;
    if (!c->in.data && buf_get(&srv.inpool, &c->in) < 0) {
        log_error("out of memory for an input buffer");
        return IO_ERROR;
    }
    if (c->in.start > 0 && (c->in.start == c->in.end || srv.inpool.size - c->in.end < 4096))
        buf_compact(&c->in);
    size_t room = srv.inpool.size - c->in.end;
    if (room == 0)
        return IO_ERROR; /* cannot happen: heads are limited below the buffer size */
    size_t n;
    switch (conn_read(&c->conn, c->in.data + c->in.end, room, &n)) {
    case CONN_DONE:
        c->in.end += (uint32_t)n;
        touch(c);
        return IO_OK;
    case CONN_EOF:
        buf_release_if_empty(&srv.inpool, &c->in);
        return IO_EOF;
    case CONN_BLOCKED:
        buf_release_if_empty(&srv.inpool, &c->in);
        return IO_BLOCKED;
    default:
        return IO_ERROR;
    }
}

/*
 * Writes queued output. Returns 0 when everything went out (the buffer is given back), 1 when the
 * socket is full, -1 when the connection was closed (an error, or reset_after reached its count).
 */
static int client_flush(struct client *c)
{
    while (!buf_empty(&c->out)) {
        if (c->limit_on && c->limit_left == 0) {
            client_close(c, true);
            return -1;
        }
        size_t len = buf_len(&c->out);
        if (c->limit_on && len > c->limit_left)
            len = (size_t)c->limit_left;
        size_t n;
        enum conn_status r = conn_write(&c->conn, c->out.data + c->out.start, len, &n);
        if (r == CONN_BLOCKED)
            return 1;
        if (r == CONN_ERROR) {
            client_close(c, false); /* EPIPE, ECONNRESET: the peer is gone */
            return -1;
        }
        c->out.start += (uint32_t)n;
        if (c->limit_on)
            c->limit_left -= (uint64_t)n;
        touch(c);
    }
    buf_put(&srv.outpool, &c->out);
    if (c->limit_on && c->limit_left == 0) {
        client_close(c, true);
        return -1;
    }
    return 0;
}

/* Attaches the out buffer and makes its free space contiguous. Returns the free bytes, or -1. */
static long out_prepare(struct client *c, size_t want)
{
    if (!c->out.data && buf_get(&srv.outpool, &c->out) < 0) {
        log_error("out of memory for an output buffer");
        return -1;
    }
    if (c->out.start > 0 && (c->out.start == c->out.end || OUT_BUF_SIZE - c->out.end < want))
        buf_compact(&c->out);
    return (long)(OUT_BUF_SIZE - c->out.end);
}

static size_t out_free(const struct client *c)
{
    return OUT_BUF_SIZE - buf_len(&c->out);
}

static bool out_append(struct client *c, const char *data, size_t len)
{
    long room = out_prepare(c, len);
    if (room < 0 || (size_t)room < len)
        return false;
    memcpy(c->out.data + c->out.end, data, len);
    c->out.end += (uint32_t)len;
    return true;
}

static bool out_printf(struct client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static bool out_printf(struct client *c, const char *fmt, ...)
{
    long room = out_prepare(c, OUT_BUF_SIZE);
    if (room <= 0)
        return false;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->out.data + c->out.end, (size_t)room, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= room)
        return false;
    c->out.end += (uint32_t)n;
    return true;
}

/* ---- building responses ---- */

static void text_set(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_set(struct client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->text, sizeof(c->text), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    c->text_len = (size_t)n < sizeof(c->text) ? (size_t)n : sizeof(c->text) - 1;
}

static void stats_json(struct client *c)
{
    char name[2 * MAX_NAME + 1];
    size_t j = 0;
    for (const char *p = srv.name; *p; p++) {
        if (*p == '"' || *p == '\\')
            name[j++] = '\\';
        name[j++] = *p;
    }
    name[j] = '\0';
    /* requests read and not answered yet: held by delay= or hang= (tests wait on this) */
    uint64_t held = 0;
    for (const struct client *k = srv.conns; k; k = k->next)
        held += k->state == ST_WAIT || k->state == ST_HANG;
    text_set(c,
             "{\"name\":\"%s\",\"connections\":%" PRIu64 ",\"active_connections\":%" PRIu64
             ",\"requests\":%" PRIu64 ",\"held_requests\":%" PRIu64 ",\"healthy\":%s}\n",
             name, srv.connections, srv.active, srv.requests, held, srv.healthy ? "true" : "false");
}

/* The final head; all of it fits since HEAD_ROOM was free when the request was parsed. */
static bool write_head(struct client *c, unsigned status, const char *type, bool close_after)
{
    bool ok = out_printf(c, "HTTP/1.1 %u %s\r\nX-Backend: %s\r\nContent-Type: %s\r\n", status,
                         be_reason(status), srv.name, type);
    if (status != 204 && status != 304) {
        if (c->framing == BE_FRAME_LENGTH)
            ok = ok && out_printf(c, "Content-Length: %" PRIu64 "\r\n", c->body_len);
        else if (c->framing == BE_FRAME_CHUNKED)
            ok = ok && out_printf(c, "Transfer-Encoding: chunked\r\n%s",
                                  c->plan.trailers ? "Trailer: X-Trailer\r\n" : "");
    }
    if (c->body_kind != HTTP1_BODY_NONE)
        ok = ok && out_printf(c, "X-Body-Bytes: %" PRIu64 "\r\nX-Body-Crc32: %08" PRIx32 "\r\n",
                              c->body_bytes, ~c->crc);
    if (close_after)
        ok = ok && out_printf(c, "Connection: close\r\n");
    else if (c->version == 10)
        ok = ok && out_printf(c, "Connection: keep-alive\r\n");
    return ok && out_append(c, "\r\n", 2);
}

/* Answers with status and the built-in body for the plan's route (or c->text, for errors). */
static void start_response(struct client *c)
{
    struct be_plan *p = &c->plan;

    if (p->action == BE_RESET) {
        c->rst_when_flushed = true;
        c->state = ST_DRAIN;
        return;
    }
    if (p->action == BE_HANG) {
        c->state = ST_HANG;
        return;
    }
    srv.requests++;
    if (p->action == BE_GARBAGE) {
        static const char garbage[] = "HTTP/1.1 2000 Nope\r\nContent-Length: 0\r\n\r\n";
        if (!out_append(c, garbage, sizeof(garbage) - 1)) {
            client_close(c, false);
            return;
        }
        c->state = ST_DRAIN;
        return;
    }

    unsigned status = 200;
    const char *type = "text/plain";
    c->source = SRC_TEXT;
    if (p->bad) {
        /* Invalid controls, a parse error or an echo overflow: c->text already says which, and
         * nothing else of the request applies (a bad POST /healthcheck/fail changes nothing). */
        status = p->status;
    } else {
        switch (p->route) {
        case BE_ROUTE_HEALTH:
            status = srv.healthy ? 200 : 503;
            text_set(c, "%s\n", srv.healthy ? "ok" : "failing");
            break;
        case BE_ROUTE_HEALTH_FAIL:
            srv.healthy = false;
            text_set(c, "healthcheck: failing\n");
            break;
        case BE_ROUTE_HEALTH_OK:
            srv.healthy = true;
            text_set(c, "healthcheck: ok\n");
            break;
        case BE_ROUTE_SLOW:
            text_set(c, "slow: %llu ms\n", (unsigned long long)srv.slow_ms);
            break;
        case BE_ROUTE_STATS:
            type = "application/json";
            stats_json(c);
            break;
        default:
            text_set(c, "Hello from %s\n", srv.name);
            break;
        }
    }
    c->body_len = c->text_len;
    if (p->echo) { /* plan_fail() cleared echo and size for bad requests */
        c->source = SRC_ECHO;
        c->body_len = c->echo_len;
    } else if (p->has_size) {
        c->source = SRC_PATTERN;
        c->body_len = p->size;
    }
    if (p->has_status)
        status = p->status;

    c->framing = p->framing;
    if (c->framing == BE_FRAME_CHUNKED && c->version == 10)
        c->framing = BE_FRAME_CLOSE; /* HTTP/1.0 has no chunked coding */
    bool close_after = p->close || !c->keep_alive || c->peer_eof || c->framing == BE_FRAME_CLOSE ||
                       p->has_reset_after;
    c->gen_body = c->method != HTTP1_METHOD_HEAD && status != 204 && status != 304;
    if (!write_head(c, status, type, close_after)) {
        log_error("response head does not fit the output buffer");
        client_close(c, false);
        return;
    }
    p->close = close_after;
    c->body_off = 0;
    c->chunk_open = c->last_chunk_done = false;
    c->piece_left = p->chunk;
    if (p->has_reset_after) {
        c->limit_on = true;
        c->limit_left = buf_len(&c->out) + p->reset_after;
    }
    c->state = ST_SEND;
}

static void body_fill(struct client *c, char *dst, size_t n)
{
    if (c->source == SRC_PATTERN)
        be_pattern_fill(dst, c->body_off, n);
    else if (c->source == SRC_ECHO)
        memcpy(dst, c->echo + c->body_off, n);
    else
        memcpy(dst, c->text + c->body_off, n);
}

/*
 * Generates response body bytes into out until it is full (GEN_FULL), a drip piece is complete
 * (GEN_PAUSE) or the message is complete (GEN_DONE). Chunk boundaries and drip pieces both fall
 * on multiples of plan.chunk, so with chunked=1&drip=MS every pause ends a chunk.
 */
static enum gen generate(struct client *c)
{
    const struct be_plan *p = &c->plan;
    bool chunked = c->framing == BE_FRAME_CHUNKED;

    if (!c->gen_body)
        return GEN_DONE;
    for (;;) {
        /* reset_after: enough is queued to reach the count; generating more would be waste. */
        if (c->limit_on && buf_len(&c->out) >= c->limit_left)
            return GEN_FULL;
        long room = out_prepare(c, 1024);
        if (room < 0)
            return GEN_ERROR;
        char *dst = c->out.data + c->out.end;
        if (c->chunk_open && c->chunk_left == 0) {
            if (room < 2)
                return GEN_FULL;
            memcpy(dst, "\r\n", 2);
            c->out.end += 2;
            c->chunk_open = false;
            continue;
        }
        if (c->body_off == c->body_len) {
            if (chunked && !c->last_chunk_done) {
                static const char last[] = "0\r\n\r\n",
                                  last_trailer[] = "0\r\nX-Trailer: done\r\n\r\n";
                bool ok = p->trailers ? out_append(c, last_trailer, sizeof(last_trailer) - 1)
                                      : out_append(c, last, sizeof(last) - 1);
                if (!ok)
                    return GEN_FULL;
                c->last_chunk_done = true;
            }
            return GEN_DONE;
        }
        if (p->drip_ms && c->piece_left == 0)
            return GEN_PAUSE;
        if (chunked && !c->chunk_open) {
            if (room < 24)
                return GEN_FULL;
            uint64_t n = c->body_len - c->body_off;
            if (n > p->chunk)
                n = p->chunk;
            int w = snprintf(dst, (size_t)room, "%" PRIx64 "\r\n", n);
            if (w < 0 || w >= room)
                return GEN_FULL;
            c->out.end += (uint32_t)w;
            c->chunk_left = n;
            c->chunk_open = true;
            continue;
        }
        uint64_t n = c->body_len - c->body_off;
        if (chunked && n > c->chunk_left)
            n = c->chunk_left;
        if (p->drip_ms && n > c->piece_left)
            n = c->piece_left;
        if (n > (uint64_t)room)
            n = (uint64_t)room;
        if (n == 0)
            return GEN_FULL;
        body_fill(c, dst, (size_t)n);
        c->out.end += (uint32_t)n;
        c->body_off += n;
        if (chunked)
            c->chunk_left -= n;
        if (p->drip_ms)
            c->piece_left -= n;
    }
}

/* Replaces whatever the request asked for with a plain error answer. */
static void plan_fail(struct client *c, unsigned status, const char *why, bool close_after)
{
    uint8_t route = c->plan.route;
    memset(&c->plan, 0, sizeof(c->plan));
    c->plan.route = route;
    c->plan.bad = true;
    c->plan.status = (uint16_t)status;
    c->plan.close = close_after;
    c->plan.chunk = BE_DEFAULT_CHUNK;
    text_set(c, "%u %s: %s\n", status, be_reason(status), why);
}

/* A request that cannot be read to its end: answer, then close. */
static void respond_error(struct client *c, unsigned status, const char *why)
{
    log_info("bad request (%u): %s", status, why);
    if (c->state == ST_HEAD) { /* no head of this request was understood */
        c->method = HTTP1_METHOD_OTHER;
        c->version = 11;
        c->body_kind = HTTP1_BODY_NONE;
        c->limit_on = false;
    }
    plan_fail(c, status, why, true);
    c->keep_alive = false;
    start_response(c);
}

/* The body has been read completely: what the plan says happens now. */
static void finish_request(struct client *c)
{
    struct be_plan *p = &c->plan;

    if (p->bad) {
        char why[BE_ERROR_TEXT];
        memcpy(why, p->error, sizeof(why));
        plan_fail(c, 400, why, false);
    } else if (c->echo_fail) {
        plan_fail(c, c->echo_fail,
                  c->echo_fail == 413 ? "echo=1 keeps at most 1 MiB of body" : "out of memory",
                  false);
    }
    if (p->interim && c->version == 11 &&
        !out_printf(c, "HTTP/1.1 %u %s\r\nX-Interim: 1\r\n\r\n", p->interim,
                    be_reason(p->interim))) {
        client_close(c, false);
        return;
    }
    if (p->route == BE_ROUTE_SLOW && !p->bad) { /* its delay is the setting, not its own wait */
        srv.slow_ms = p->delay_ms;
        p->delay_ms = 0;
    }
    uint64_t delay = p->delay_ms ? p->delay_ms : p->route == BE_ROUTE_HELLO ? srv.slow_ms : 0;
    if (delay) {
        c->state = ST_WAIT;
        loop_timer_set(srv.loop, &c->wait_timer, delay);
        return;
    }
    start_response(c);
}

/* The response is fully generated (maybe not yet written). */
static void response_done(struct client *c)
{
    free(c->echo);
    c->echo = NULL;
    if (c->plan.close || c->limit_on) {
        c->rst_when_flushed = c->limit_on;
        c->state = ST_DRAIN;
        return;
    }
    memset(&c->scan, 0, sizeof(c->scan));
    buf_release_if_empty(&srv.inpool, &c->in);
    c->state = ST_HEAD;
}

/* ---- request input ---- */

static bool echo_append(struct client *c, const char *data, size_t len, size_t limit)
{
    if (c->echo_len + len > limit) {
        c->echo_fail = 413;
        return false;
    }
    if (c->echo_len + len > c->echo_cap) {
        size_t cap = c->echo_cap ? c->echo_cap : 4096;
        while (cap < c->echo_len + len)
            cap *= 2;
        char *p = realloc(c->echo, cap);
        if (!p) {
            c->echo_fail = 500;
            return false;
        }
        c->echo = p;
        c->echo_cap = cap;
    }
    memcpy(c->echo + c->echo_len, data, len);
    c->echo_len += len;
    return true;
}

static void body_data(struct client *c, const char *data, size_t len)
{
    c->body_bytes += len;
    c->crc = be_crc32_update(c->crc, data, len);
    if (c->plan.echo && !c->echo_fail)
        echo_append(c, data, len, c->echo_head + ECHO_MAX_BODY);
}

static void handle_head(struct client *c)
{
    char *base = c->in.data + c->in.start;
    struct http1_msg msg;

    msg.fields = srv.fields;
    if (http1_parse_request(&c->scan, base, &srv.limits, &msg) != HTTP1_DONE) {
        respond_error(c, msg.error_status ? msg.error_status : 400,
                      msg.error ? msg.error : "invalid request");
        return;
    }
    c->method = msg.method;
    c->version = msg.version;
    c->keep_alive = !(msg.flags & HTTP1_F_CONN_CLOSE) &&
                    (msg.version == 11 || (msg.flags & HTTP1_F_CONN_KEEP_ALIVE));
    c->body_kind = msg.body;
    c->body_bytes = 0;
    c->crc = BE_CRC_INIT;
    c->echo_len = c->echo_cap = c->echo_head = 0;
    c->echo_fail = 0;
    c->limit_on = false;
    c->rst_when_flushed = false;
    be_plan_request(&c->plan, &msg, base);
    if (c->plan.echo) {
        size_t len = c->scan.head_end - c->scan.head_start;
        if (echo_append(c, base + c->scan.head_start, len, len))
            c->echo_head = len;
    }

    c->in.start += c->scan.head_end;
    if (buf_empty(&c->in))
        c->in.start = c->in.end = 0;
    if (msg.body == HTTP1_BODY_NONE) {
        finish_request(c);
        return;
    }
    c->body_left = msg.content_length;
    memset(&c->chunked, 0, sizeof(c->chunked));
    if ((msg.flags & HTTP1_F_EXPECT_CONTINUE) &&
        !out_append(c, "HTTP/1.1 100 Continue\r\n\r\n", 25)) {
        client_close(c, false);
        return;
    }
    c->state = ST_BODY;
}

/* Consumes buffered body bytes. Returns 1 when the body ended, 0 for more, -1 on bad framing. */
static int consume_body(struct client *c)
{
    char *p = c->in.data + c->in.start;
    size_t len = buf_len(&c->in);
    int done;

    if (c->body_kind == HTTP1_BODY_LENGTH) {
        size_t n = len < c->body_left ? len : (size_t)c->body_left;
        body_data(c, p, n);
        c->in.start += (uint32_t)n;
        c->body_left -= n;
        done = c->body_left == 0;
    } else {
        size_t used = 0, out = 0;
        int r = http1_chunked_parse(&c->chunked, p, len, true, &used, &out);
        body_data(c, p, out);
        c->in.start += (uint32_t)used;
        if (r == HTTP1_ERROR)
            return -1;
        done = r == HTTP1_DONE;
    }
    if (buf_empty(&c->in))
        c->in.start = c->in.end = 0;
    return done;
}

/* ---- the state machine ---- */

/* Reads with the outcome every reading state shares: closed on error, peer_eof on EOF. */
static enum step read_step(struct client *c)
{
    switch (client_read(c)) {
    case IO_OK:
        return STEP_PROGRESS;
    case IO_EOF:
        c->peer_eof = true;
        return STEP_PROGRESS;
    case IO_BLOCKED:
        return STEP_WAIT;
    default:
        client_close(c, false);
        return STEP_PROGRESS;
    }
}

static enum step step_head(struct client *c)
{
    if (!buf_empty(&c->in)) {
        if (out_free(c) < HEAD_ROOM) {
            int f = client_flush(c);
            if (f != 0)
                return f < 0 ? STEP_PROGRESS : STEP_WAIT;
        }
        uint16_t status = 400;
        const char *why = "invalid request";
        int r = http1_scan_head(&c->scan, c->in.data + c->in.start, buf_len(&c->in), &srv.limits,
                                true, &status, &why);
        if (r == HTTP1_DONE) {
            handle_head(c);
            return STEP_PROGRESS;
        }
        if (r == HTTP1_ERROR) {
            respond_error(c, status, why);
            return STEP_PROGRESS;
        }
    }
    if (c->peer_eof) { /* no further request can arrive: finish writing, then close */
        c->state = ST_DRAIN;
        return STEP_PROGRESS;
    }
    int f = client_flush(c);
    if (f < 0)
        return STEP_PROGRESS;
    return read_step(c);
}

static enum step step_body(struct client *c)
{
    if (!buf_empty(&c->in)) {
        int r = consume_body(c);
        if (r < 0) {
            respond_error(c, 400, "invalid chunked framing");
            return STEP_PROGRESS;
        }
        if (r > 0) {
            finish_request(c);
            return STEP_PROGRESS;
        }
    }
    if (c->peer_eof) { /* the body was cut short: there is nothing sensible to answer */
        client_close(c, false);
        return STEP_PROGRESS;
    }
    if (client_flush(c) < 0) /* 100 Continue goes out before we wait for the body */
        return STEP_PROGRESS;
    return read_step(c);
}

static enum step step_send(struct client *c)
{
    enum gen g = generate(c);
    if (g == GEN_ERROR) {
        client_close(c, false);
        return STEP_PROGRESS;
    }
    if (g == GEN_DONE) {
        /* Not flushed here: the next pipelined response may share the write. */
        response_done(c);
        return STEP_PROGRESS;
    }
    int f = client_flush(c);
    if (f != 0)
        return f < 0 ? STEP_PROGRESS : STEP_WAIT;
    if (g == GEN_PAUSE) {
        c->state = ST_DRIP;
        loop_timer_set(srv.loop, &c->wait_timer, c->plan.drip_ms);
        return STEP_WAIT;
    }
    return STEP_PROGRESS;
}

/* Reads and drops input; used by HANG and LINGER. */
static enum step discard_step(struct client *c)
{
    enum step s = c->peer_eof ? STEP_PROGRESS : read_step(c);
    if (c->state == ST_CLOSED)
        return STEP_PROGRESS;
    if (c->peer_eof) {
        client_close(c, false);
        return STEP_PROGRESS;
    }
    if (c->state == ST_LINGER) {
        c->linger_bytes += buf_len(&c->in);
        if (c->linger_bytes > LINGER_MAX_BYTES) {
            client_close(c, false);
            return STEP_PROGRESS;
        }
    }
    c->in.start = c->in.end = 0;
    return s;
}

static enum step step_drain(struct client *c)
{
    int f = client_flush(c);
    if (f != 0)
        return f < 0 ? STEP_PROGRESS : STEP_WAIT;
    if (c->rst_when_flushed) {
        client_close(c, true);
        return STEP_PROGRESS;
    }
    if (c->peer_eof || conn_shutdown(&c->conn) < 0) {
        client_close(c, false);
        return STEP_PROGRESS;
    }
    buf_put(&srv.inpool, &c->in); /* unread requests will not be answered */
    c->linger_bytes = 0;
    c->state = ST_LINGER;
    loop_timer_set(srv.loop, &c->wait_timer, LINGER_MS);
    return STEP_PROGRESS;
}

static enum step client_step(struct client *c)
{
    switch (c->state) {
    case ST_HEAD:
        return step_head(c);
    case ST_BODY:
        return step_body(c);
    case ST_SEND:
        return step_send(c);
    case ST_WAIT:
    case ST_DRIP:
        /* A timer moves us on; meanwhile earlier output keeps flowing. */
        client_flush(c);
        return STEP_WAIT;
    case ST_HANG:
        if (client_flush(c) < 0)
            return STEP_PROGRESS;
        return discard_step(c);
    case ST_DRAIN:
        return step_drain(c);
    case ST_LINGER:
        return discard_step(c);
    default:
        return STEP_WAIT;
    }
}

static void client_drive(struct client *c)
{
    for (unsigned round = 0; round < MAX_ROUNDS; round++) {
        if (c->state == ST_CLOSED)
            return;
        if (c->conn.io.ready & (LOOP_HUP | LOOP_ERR)) { /* reset, or both directions shut */
            client_close(c, false);
            return;
        }
        if (client_step(c) == STEP_WAIT)
            return;
    }
    if (c->state != ST_CLOSED)
        loop_defer(srv.loop, &c->task);
}

/* ---- events ---- */

static void on_io(struct loop *loop, struct loop_io *io)
{
    client_drive((struct client *)(void *)io);
}

static void on_task(struct loop *loop, struct loop_task *task)
{
    client_drive(container_of(task, struct client, task));
}

static void on_wait(struct loop *loop, struct loop_timer *t)
{
    struct client *c = container_of(t, struct client, wait_timer);
    switch (c->state) {
    case ST_WAIT:
        start_response(c);
        break;
    case ST_DRIP:
        c->piece_left = c->plan.chunk;
        c->state = ST_SEND;
        break;
    case ST_LINGER:
        client_close(c, false);
        return;
    default:
        break;
    }
    client_drive(c);
}

/*
 * Inactivity: the timer is armed once per connection and moved only when it fires, so the hot
 * path merely records last_active. Waiting on our own timers (delay, drip) or for a hung request's
 * peer is not inactivity.
 */
static void on_idle(struct loop *loop, struct loop_timer *t)
{
    struct client *c = container_of(t, struct client, idle_timer);
    uint64_t now = loop_now_ms(loop);
    bool exempt =
        c->state == ST_WAIT || c->state == ST_DRIP || c->state == ST_HANG || c->state == ST_LINGER;
    if (exempt || now < c->last_active + IDLE_MS) {
        loop_timer_set_at(loop, t, (exempt ? now : c->last_active) + IDLE_MS);
        return;
    }
    client_close(c, false);
}

static struct client *client_new(int fd)
{
    struct client *c = srv.spare;
    if (c) {
        srv.spare = c->next;
        srv.nspare--;
    } else {
        c = malloc(sizeof(*c));
        if (!c)
            return NULL;
    }
    /* Only the head of the struct needs clearing: the rest is set per request. */
    memset(c, 0, offsetof(struct client, text));
    conn_init_tcp(&c->conn, fd, on_io);
    c->idle_timer.fn = on_idle;
    c->wait_timer.fn = on_wait;
    c->task.fn = on_task;
    c->state = ST_HEAD;
    return c;
}

static void listen_resume(struct loop *loop, struct loop_timer *t)
{
    if (loop_add(loop, &srv.listen_io, LOOP_LEVEL_IN) < 0) {
        log_error("cannot watch the listening socket again: %s", strerror(errno));
        loop_timer_set(loop, t, ACCEPT_RETRY_MS);
        return;
    }
}

static void on_accept(struct loop *loop, struct loop_io *io)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* Out of descriptors or memory: the level-triggered listener would spin, so stop
             * watching it for a moment. */
            log_warn("accept: %s; pausing for %d ms", strerror(errno), ACCEPT_RETRY_MS);
            loop_del(loop, io);
            loop_timer_set(loop, &srv.accept_retry, ACCEPT_RETRY_MS);
            return;
        }
        struct client *c = client_new(fd);
        if (!c) {
            log_error("out of memory for a connection");
            close(fd);
            continue;
        }
        if (conn_watch(loop, &c->conn) < 0) {
            log_error("epoll_ctl: %s", strerror(errno));
            close(fd);
            c->next = srv.spare; /* never registered: no stale event can point at it */
            srv.spare = c;
            srv.nspare++;
            continue;
        }
        c->next = srv.conns;
        if (srv.conns)
            srv.conns->prev = c;
        srv.conns = c;
        srv.connections++;
        srv.active++;
        touch(c);
        loop_timer_set(loop, &c->idle_timer, IDLE_MS);
    }
}

static void on_signal(struct loop *loop, struct loop_io *io)
{
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        ;
    loop_stop(loop);
}

/* ---- start-up ---- */

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fulcrum-backend: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nUsage: fulcrum-backend --listen ADDR [--name NAME] [--quiet] [--register "
                    "URL ...]; see --help\n");
    exit(2);
}

/* Accepts "--opt VALUE" and "--opt=VALUE". */
static const char *option_value(int argc, char **argv, int *i, const char *opt)
{
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc)
        usage_error("%s needs a value", opt);
    return argv[++*i];
}

/* A decimal number 0-max for option opt, or a usage error. */
static unsigned parse_count(const char *text, const char *opt, unsigned max)
{
    unsigned long n = 0;
    const char *p = text;
    for (; *p >= '0' && *p <= '9' && n <= max; p++)
        n = n * 10 + (unsigned long)(*p - '0');
    if (p == text || *p != '\0' || n > max)
        usage_error("%s: expected a number 0-%u, got '%s'", opt, max, text);
    return (unsigned)n;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_NAME)
        return false;
    for (; *s; s++)
        if (*s < 0x21 || *s > 0x7e)
            return false;
    return true;
}

static int setup_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR || sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    srv.sig_io.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (srv.sig_io.fd < 0)
        return -1;
    srv.sig_io.handler = on_signal;
    return loop_add(srv.loop, &srv.sig_io, LOOP_LEVEL_IN);
}

int main(int argc, char **argv)
{
    const char *listen_text = NULL, *name = NULL, *v;
    bool quiet = false;
    struct be_register_conf reg = {.ttl_s = BE_REGISTER_TTL_DEFAULT, .weight = 1};

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(be_help_text, stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("fulcrum-backend %s (git %s)\n", FULCRUM_VERSION, FULCRUM_GIT_REV);
            return 0;
        } else if (strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
        } else if ((v = option_value(argc, argv, &i, "--listen"))) {
            listen_text = v;
        } else if ((v = option_value(argc, argv, &i, "--name"))) {
            name = v;
        } else if ((v = option_value(argc, argv, &i, "--register"))) {
            reg.url = v;
        } else if ((v = option_value(argc, argv, &i, "--register-address"))) {
            reg.address = v;
        } else if ((v = option_value(argc, argv, &i, "--register-ttl"))) {
            reg.ttl_s = parse_count(v, "--register-ttl", 3600);
        } else if ((v = option_value(argc, argv, &i, "--register-weight"))) {
            reg.weight = parse_count(v, "--register-weight", 256);
        } else {
            usage_error("unknown argument '%s'", argv[i]);
        }
    }
    if (!listen_text)
        usage_error("%s", "--listen ADDR is required");
    if (!reg.url && (reg.address || reg.ttl_s != BE_REGISTER_TTL_DEFAULT || reg.weight != 1))
        usage_error("%s",
                    "--register-address, --register-ttl and --register-weight need --register");
    struct net_addr addr;
    const char *error;
    if (net_parse_addr(listen_text, &addr, &error) < 0) {
        fprintf(stderr, "fulcrum-backend: invalid --listen '%s': %s\n", listen_text, error);
        return 2;
    }
    srv.name = name ? name : listen_text;
    if (!valid_name(srv.name)) {
        fprintf(stderr, "fulcrum-backend: invalid name '%s': 1 to %d visible ASCII characters\n",
                srv.name, MAX_NAME);
        return 2;
    }
    if (quiet)
        log_max_level = LOG_ERROR;

    srv.healthy = true;
    srv.limits.max_head_bytes = MAX_HEAD_BYTES;
    srv.limits.max_fields = MAX_FIELDS;
    srv.accept_retry.fn = listen_resume;
    srv.listen_io.fd = srv.sig_io.fd = -1;
    be_crc32_init();
    buf_pool_init(&srv.inpool, IN_BUF_SIZE, MAX_SPARE_BUFS);
    buf_pool_init(&srv.outpool, OUT_BUF_SIZE, MAX_SPARE_BUFS);
    srv.loop = loop_new();
    if (!srv.loop || be_pattern_init(OUT_BUF_SIZE) < 0) {
        fprintf(stderr, "fulcrum-backend: out of memory\n");
        return 1;
    }
    if (setup_signals() < 0) {
        fprintf(stderr, "fulcrum-backend: signals: %s\n", strerror(errno));
        return 1;
    }
    srv.listen_io.fd = net_listen(&addr, 1024, false);
    if (srv.listen_io.fd < 0) {
        fprintf(stderr, "fulcrum-backend: cannot listen on %s: %s\n", listen_text, strerror(errno));
        return 1;
    }
    srv.listen_io.handler = on_accept;
    if (loop_add(srv.loop, &srv.listen_io, LOOP_LEVEL_IN) < 0) {
        fprintf(stderr, "fulcrum-backend: epoll_ctl: %s\n", strerror(errno));
        return 1;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    char bound_text[NET_ADDR_TEXT];
    if (getsockname(srv.listen_io.fd, (struct sockaddr *)&bound, &blen) == 0)
        net_addr_format((struct sockaddr *)&bound, bound_text, sizeof(bound_text));
    else
        snprintf(bound_text, sizeof(bound_text), "%s", listen_text);
    if (!quiet)
        fprintf(stderr, "fulcrum-backend %s listening on %s\n", srv.name, bound_text);

    /* --register: the address is the one bound (or the one given), the key's name --name or
     * that address. The thread starts with SIGTERM and SIGINT blocked (setup_signals), so they
     * keep coming to this loop. */
    struct be_register *registration = NULL;
    if (reg.url) {
        char err[256];
        if (!reg.address)
            reg.address = bound_text;
        reg.name = name ? name : reg.address;
        if (!(registration = be_register_start(&reg, err, sizeof(err)))) {
            fprintf(stderr, "fulcrum-backend: %s\n", err);
            return 2;
        }
    }

    loop_set_before_poll(srv.loop, before_poll, NULL);
    loop_run(srv.loop);
    /* A graceful stop leaves the registry first, so that balancers stop sending at once. */
    be_register_stop(registration);

    /* Orderly exit, so that leak checkers see every allocation returned. */
    while (srv.conns)
        client_close(srv.conns, false);
    before_poll(srv.loop, NULL);
    free_conn_list(srv.spare);
    close(srv.listen_io.fd);
    close(srv.sig_io.fd);
    loop_free(srv.loop);
    buf_pool_destroy(&srv.inpool);
    buf_pool_destroy(&srv.outpool);
    be_pattern_free();
    return 0;
}
