/*
 * session.c - one HTTP/2 client connection (session.h): bytes between the connection and
 * nghttp2's server session, nghttp2's callbacks, and the timers and GOAWAY of the connection.
 *
 * Everything happens in pump(), on each event of the connection and whenever a stream's user
 * changed something (h2_session_kick):
 *
 *   flush   frames nghttp2 has queued -> wbuf -> the connection
 *   read    the connection -> nghttp2_session_mem_recv() -> callbacks below -> streams
 *   notify  streams whose readiness changed: their users' handlers run (the proxy's sessions),
 *           outside of nghttp2's callbacks, so they may read, write and close freely
 *
 * until nothing moves. A client that does not read what we send stops being read (wbuf full),
 * so it cannot make us queue replies without end; nghttp2's own limits (SETTINGS and PING acks,
 * stream resets per second, CONTINUATION frames per header block) and ours (empty DATA frames,
 * empty_data_flood) end a connection that floods.
 *
 * The connection's timer is the earliest of: the least recently active stream's idle deadline
 * (stream_idle_ms: it is reset), the connection's idle deadline when no stream is open (idle_ms:
 * GOAWAY and close), and the grace deadline after a GOAWAY of ours (closed then, whatever is
 * still open).
 */
#include "h2/session.h"

#include <errno.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/tls_conn.h"
#include "h2/mem.h"
#include "h2/stream.h"

#define MAX_ROUNDS 16
/* The connection's window: large enough never to be the limit, since each stream's window
 * already bounds what it may hold. */
#define CONNECTION_WINDOW (1u << 30)
/* How long a connection that is closing may take to send its last frames (GOAWAY). */
#define CLOSING_MS 5000

static void start_closing(struct h2_session *h2)
{
    if (!h2->closing) {
        h2->closing = true;
        h2->close_by_ms = loop_now_ms(h2->env->loop) + CLOSING_MS;
    }
}

static void pump(struct h2_session *h2);

void h2_session_kick(struct h2_session *h2)
{
    if (h2->in_pump)
        h2->kicked = true;
    else if (!h2->ended)
        loop_defer(h2->env->loop, &h2->task);
}

void h2_session_notify(struct h2_session *h2, struct h2_stream *st)
{
    if (st->notify_queued)
        return;
    st->notify_queued = true;
    st->notify_next = h2->notify;
    h2->notify = st;
    h2_session_kick(h2);
}

void h2_session_touch(struct h2_session *h2, struct h2_stream *st)
{
    st->last_io_ms = loop_now_ms(h2->env->loop);
    if (h2->last == st)
        return;
    if (st->prev)
        st->prev->next = st->next;
    else
        h2->first = st->next;
    st->next->prev = st->prev; /* st is not the last one */
    st->prev = h2->last;
    st->next = NULL;
    h2->last->next = st;
    h2->last = st;
}

/* ---- nghttp2's callbacks: a request arrives ---- */

/* A local answer for a request that never reaches a user: 400 or 431, without a body. */
static void answer_locally(struct h2_session *h2, struct h2_stream *st, unsigned status)
{
    char text[4] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10), 0};
    nghttp2_nv nv[] = {{(uint8_t *)":status", (uint8_t *)text, 7, 3, NGHTTP2_NV_FLAG_NONE},
                       {(uint8_t *)"content-length", (uint8_t *)"0", 14, 1, NGHTTP2_NV_FLAG_NONE}};
    st->tx_state = H2_TX_DONE;
    if (nghttp2_submit_response(h2->ng, st->id, nv, 2, NULL) != 0)
        h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct h2_session *h2 = user;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    uint32_t size = h2->env->bufs->size;
    struct h2_stream *st;
    if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        st = h2_stream_new(h2, frame->hd.stream_id);
        if (!st)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
        h2->opened++;
        if ((!h2->scratch.data && buf_get(h2->env->bufs, &h2->scratch) < 0) ||
            buf_get(h2->env->bufs, &st->head) < 0 ||
            nghttp2_session_set_stream_user_data(ng, st->id, st) != 0) {
            st->closed = true; /* nghttp2 never knew it: nothing else holds it */
            h2_stream_release(st);
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        h2_request_init(&h2->req, st->head.data, size, h2->scratch.data, size);
    } else {
        /* trailers: kept only for a body the user reads chunked (request.h) */
        st = h2_stream_of(h2, frame->hd.stream_id);
        if (!st)
            return 0;
        if (st->chunked_rx && st->conn && !st->tail.data && buf_get(h2->env->bufs, &st->tail) == 0)
            h2_trailers_init(&h2->req, st->tail.data, size);
    }
    st->header_bytes = 0;
    return 0;
}

struct h2_stream *h2_session_field_stream(struct h2_session *h2, const nghttp2_frame *frame,
                                          size_t name_len, size_t value_len)
{
    struct h2_stream *st = h2_stream_of(h2, frame->hd.stream_id);
    if (!st || frame->hd.type != NGHTTP2_HEADERS)
        return NULL;
    /* An HPACK bomb decodes small frames into a huge list: it is the decoded size that counts. */
    st->header_bytes += (uint32_t)(name_len + value_len + 32);
    if (st->header_bytes > h2->lim.max_header_list_size || name_len + value_len > UINT32_MAX / 2)
        st->too_large = true;
    return st->too_large ? NULL : st;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t name_len, const uint8_t *value, size_t value_len, uint8_t flags,
                     void *user)
{
    struct h2_session *h2 = user;
    struct h2_stream *st = h2_session_field_stream(h2, frame, name_len, value_len);
    if (!st)
        return 0;
    if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        h2_request_field(&h2->req, (const char *)name, name_len, (const char *)value, value_len);
    else if (st->tail.data && !st->tail_done)
        h2_trailers_field(&h2->req, (const char *)name, name_len, (const char *)value, value_len);
    return 0;
}

/* Tells the owner of a request answered here, with its method and target if they are known:
 * from the request line, once written, else from where they wait (request.h). */
static void tell_answered(struct h2_session *h2, struct h2_stream *st, unsigned status)
{
    const struct h2_request *r = &h2->req;
    const char *method = NULL, *target = NULL;
    size_t method_len = 0, target_len = 0;
    if (r->line_written && r->len) {
        const char *sp = memchr(r->head, ' ', r->len);
        const char *sp2 = sp ? memchr(sp + 1, ' ', r->len - (size_t)(sp + 1 - r->head)) : NULL;
        if (sp2) {
            method = r->head;
            method_len = (size_t)(sp - r->head);
            target = sp + 1;
            target_len = (size_t)(sp2 - target);
        }
    } else if (!r->line_written) {
        method = r->method_len ? r->scratch + r->method_off : NULL;
        method_len = r->method_len;
        target = r->has_path ? r->scratch + r->path_off : NULL;
        target_len = r->has_path ? r->path_len : 0;
    }
    if (h2->host.answered)
        h2->host.answered(h2->host.ctx, status, method, method_len, target, target_len);
}

/* The request's header block is complete: its user comes, or a local answer goes back. */
static void request_ready(struct h2_session *h2, struct h2_stream *st, bool end_stream)
{
    st->rx_end = end_stream;
    uint32_t len = st->too_large ? 0 : h2_request_finish(&h2->req, end_stream);
    if (!len) {
        unsigned status = st->too_large ? 431 : h2->req.error_status ? h2->req.error_status : 400;
        log_debug("h2 stream %d: %u (%s)", st->id, status,
                  st->too_large ? "header list too large" : h2->req.error);
        tell_answered(h2, st, status);
        buf_put(h2->env->bufs, &h2->scratch);
        buf_put(h2->env->bufs, &st->head);
        answer_locally(h2, st, status);
        return;
    }
    buf_put(h2->env->bufs, &h2->scratch);
    st->head.end = len;
    st->method = h2->req.method;
    st->chunked_rx = h2->req.chunked;
    struct conn *conn = h2->ng && !h2->grace_until_ms ? h2->host.open_stream(h2->host.ctx) : NULL;
    if (!conn) {
        buf_put(h2->env->bufs, &st->head);
        h2_stream_reset(st, NGHTTP2_REFUSED_STREAM);
        return;
    }
    h2_stream_attach(st, conn);
}

void h2_session_trailers_ready(struct h2_session *h2, struct h2_stream *st)
{
    if (!st->tail.data)
        return;
    uint32_t len = st->too_large ? 0 : h2_trailers_finish(&h2->req);
    if (!len) { /* trailers that do not fit are dropped: the body still ends */
        buf_put(h2->env->bufs, &st->tail);
        return;
    }
    st->tail.start = 0;
    st->tail.end = len;
}

/*
 * DATA frames without payload or END_STREAM carry nothing and take no window, so flow control
 * does not bound them, and nghttp2 has no limit of its own (CVE-2019-9518: each costs a frame's
 * work). A leaky bucket per connection lets EMPTY_DATA_BURST of them through at once, and one
 * more every EMPTY_DATA_LEAK_MS: no client needs more (a body that ends with an empty frame has
 * END_STREAM on it, which is not counted), and a flood ends after EMPTY_DATA_BURST + 1 frames,
 * however it interleaves real data. The client gets GOAWAY ENHANCE_YOUR_CALM, as with nghttp2's
 * own flood limits, and the connection closes. Returns true when it does.
 */
#define EMPTY_DATA_BURST   100
#define EMPTY_DATA_LEAK_MS 100

static bool empty_data_flood(struct h2_session *h2, const nghttp2_frame *frame)
{
    if (frame->hd.type != NGHTTP2_DATA || frame->hd.length > frame->data.padlen ||
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) || h2->closing)
        return false;
    uint64_t now = loop_now_ms(h2->env->loop);
    uint64_t leaked = (now - h2->empty_data_leak_ms) / EMPTY_DATA_LEAK_MS;
    if (leaked >= h2->empty_data) {
        h2->empty_data = 0;
        h2->empty_data_leak_ms = now;
    } else if (leaked) {
        h2->empty_data -= (uint32_t)leaked;
        h2->empty_data_leak_ms += leaked * EMPTY_DATA_LEAK_MS;
    }
    if (++h2->empty_data <= EMPTY_DATA_BURST)
        return false;
    log_debug("h2: more than %u empty DATA frames: GOAWAY ENHANCE_YOUR_CALM", EMPTY_DATA_BURST);
    if (nghttp2_session_terminate_session(h2->ng, NGHTTP2_ENHANCE_YOUR_CALM) != 0)
        log_debug("h2: cannot queue GOAWAY: the connection closes without it");
    start_closing(h2);
    return true;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct h2_session *h2 = user;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    if (empty_data_flood(h2, frame))
        return 0;
    struct h2_stream *st = h2_stream_of(h2, frame->hd.stream_id);
    if (!st)
        return 0;
    h2_session_touch(h2, st);
    bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        request_ready(h2, st, end_stream);
        return 0;
    }
    if (frame->hd.type == NGHTTP2_HEADERS)
        h2_session_trailers_ready(h2, st);
    if (end_stream) {
        st->rx_end = true;
        h2_stream_refresh(st);
    }
    return 0;
}

int h2_session_on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                             size_t len, void *user)
{
    struct h2_session *h2 = user;
    struct h2_stream *st = h2_stream_of(h2, id);
    if (st && st->conn) {
        h2_session_touch(h2, st);
        if (h2_stream_data(st, data, len))
            return 0;
        /* more than the window we gave: the peer does not follow the protocol */
        h2_stream_reset(st, NGHTTP2_FLOW_CONTROL_ERROR);
    }
    /* nobody reads it: the window it took goes back at once */
    nghttp2_session_consume(ng, id, len);
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct h2_session *h2 = user;
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct h2_stream *st = h2_stream_of(h2, frame->hd.stream_id);
    if (!st)
        return 0;
    st->end_sent = true;
    /* the response is complete and nobody reads the rest of the request: stop it */
    if (!h2->client && !st->conn && !st->rx_end)
        h2_stream_reset(st, NGHTTP2_NO_ERROR);
    return 0;
}

int h2_session_on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user)
{
    struct h2_session *h2 = user;
    log_debug("h2 stream %d: closed (%s)", id, nghttp2_http2_strerror(error_code));
    struct h2_stream *st = h2_stream_of(h2, id);
    if (st) {
        nghttp2_session_set_stream_user_data(ng, id, NULL);
        h2_stream_closed(st, error_code);
    }
    return 0;
}

/* ---- the thread's share ---- */

struct h2_local *h2_local_new(void)
{
    struct h2_local *local = calloc(1, sizeof(*local));
    if (!local)
        return NULL;
    buf_pool_init(&local->rx, H2_STREAM_WINDOW + 1, 64);
    freelist_init(&local->streams, 1024);
    if (nghttp2_session_callbacks_new(&local->callbacks) != 0) {
        free(local);
        return NULL;
    }
    nghttp2_session_callbacks *cb = local->callbacks;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_session_on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_session_on_stream_close);
    if (nghttp2_session_callbacks_new(&local->client_callbacks) != 0) {
        nghttp2_session_callbacks_del(local->callbacks);
        free(local);
        return NULL;
    }
    h2_client_set_callbacks(local->client_callbacks);
    return local;
}

void h2_local_free(struct h2_local *local)
{
    if (!local)
        return;
    struct h2_stream *st;
    while ((st = freelist_take_entry(&local->streams, struct h2_stream, spare)))
        free(st);
    buf_pool_destroy(&local->rx);
    nghttp2_session_callbacks_del(local->callbacks);
    nghttp2_session_callbacks_del(local->client_callbacks);
    free(local->nv);
    free(local->lower);
    free(local);
}

/* ---- the connection ---- */

static void bury(struct loop_grave *grave)
{
    free((char *)grave - offsetof(struct h2_session, grave));
}

/*
 * The client connection is over. Users of streams are told (LOOP_HUP | LOOP_ERR) and close them
 * right in their handlers; the session's memory goes after the batch, once no user holds a
 * stream (a user that keeps one a little longer keeps the session until it lets go).
 */
static void end(struct h2_session *h2)
{
    if (h2->ended)
        return;
    h2->ended = true;
    struct loop *loop = h2->env->loop;
    loop_timer_stop(loop, &h2->timer);
    loop_cancel(loop, &h2->task);
    for (struct h2_stream *st = h2->first; st; st = st->next) {
        st->closed = true;
        /* a server's response that came whole is still the user's to read */
        if (h2->client && st->rx_end && st->conn) {
            h2_stream_refresh(st);
            continue;
        }
        h2_stream_put_rx(st); /* no window to give back any more */
        if (st->conn) {
            st->conn->io.ready |= LOOP_HUP | LOOP_ERR;
            h2_session_notify(h2, st);
        }
    }
    nghttp2_session_del(h2->ng);
    h2->ng = NULL;
    while (h2->notify) {
        struct h2_stream *st = h2->notify;
        h2->notify = st->notify_next;
        st->notify_queued = false;
        if (st->free_after_notify) {
            h2_stream_release(st);
        } else if (st->conn && st->conn->io.handler) {
            h2_stream_ready(st); /* readable: a read tells the user the stream is cut */
            st->conn->io.handler(loop, &st->conn->io);
        }
    }
    for (struct h2_stream *st = h2->first, *next; st; st = next) {
        next = st->next;
        if (st->conn)
            st->conn->ssl = NULL; /* the TLS session goes with the connection */
        else
            h2_stream_release(st);
    }
    buf_put(h2->env->bufs, &h2->rbuf);
    buf_put(h2->env->bufs, &h2->wbuf);
    buf_put(h2->env->bufs, &h2->scratch);
    h2->npending = 0;
    conn_close(&h2->conn, false);
    h2->host.closed(h2->host.ctx);
    h2_session_stream_gone(h2);
}

/* A stream went away after end() (or end() itself is done): the last one takes the session
 * with it. */
void h2_session_stream_gone(struct h2_session *h2)
{
    if (h2->ended && h2->nstreams == 0 && !h2->buried) {
        h2->buried = true;
        loop_bury(h2->env->loop, &h2->grave);
    }
}

/* Frames from nghttp2 into wbuf and out to the connection. 1: something moved, 0: nothing,
 * -1: the connection failed. */
static int flush_out(struct h2_session *h2)
{
    int moved = 0;
    uint32_t size = h2->env->bufs->size;
    for (;;) {
        if (!h2->wbuf.data && buf_get(h2->env->bufs, &h2->wbuf) < 0)
            return -1;
        while (h2->wbuf.end < size) {
            if (!h2->npending) {
                ssize_t n = nghttp2_session_mem_send(h2->ng, &h2->pending);
                if (n < 0) {
                    log_debug("h2: %s", nghttp2_strerror((int)n));
                    return -1;
                }
                if (n == 0)
                    break;
                h2->npending = (size_t)n;
            }
            size_t k = size - h2->wbuf.end < h2->npending ? size - h2->wbuf.end : h2->npending;
            memcpy(h2->wbuf.data + h2->wbuf.end, h2->pending, k);
            h2->wbuf.end += (uint32_t)k;
            h2->pending += k;
            h2->npending -= k;
        }
        if (buf_empty(&h2->wbuf)) {
            buf_put(h2->env->bufs, &h2->wbuf);
            return moved;
        }
        size_t sent;
        enum conn_status r =
            conn_write(&h2->conn, h2->wbuf.data + h2->wbuf.start, buf_len(&h2->wbuf), &sent);
        if (r == CONN_ERROR)
            return -1;
        if (r == CONN_BLOCKED)
            return moved;
        moved = 1;
        h2->wbuf.start += (uint32_t)sent;
        if (!buf_empty(&h2->wbuf))
            return moved; /* the socket is full */
        h2->wbuf.start = h2->wbuf.end = 0;
    }
}

/* One read into nghttp2. 1: bytes went in, 0: nothing to read (or not now), -1: the connection
 * is over (closed, failed, or nghttp2 gave up on it). */
static int read_in(struct h2_session *h2)
{
    if (!(h2->conn.io.ready & LOOP_READABLE) || h2->closing)
        return 0;
    /* a client that does not take our frames gets none of its own read */
    if (h2->wbuf.data && !buf_empty(&h2->wbuf))
        return 0;
    if (!h2->rbuf.data && buf_get(h2->env->bufs, &h2->rbuf) < 0)
        return -1;
    size_t got;
    enum conn_status r = conn_read(&h2->conn, h2->rbuf.data, h2->env->bufs->size, &got);
    if (r == CONN_BLOCKED) {
        buf_put(h2->env->bufs, &h2->rbuf);
        return 0;
    }
    if (r != CONN_DONE)
        return -1;
    ssize_t used = nghttp2_session_mem_recv(h2->ng, (const uint8_t *)h2->rbuf.data, got);
    buf_put(h2->env->bufs, &h2->rbuf);
    if (used < 0) {
        log_debug("h2: %s", nghttp2_strerror((int)used));
        return -1;
    }
    return 1;
}

static void dispatch(struct h2_session *h2)
{
    while (h2->notify && !h2->ended) {
        struct h2_stream *st = h2->notify;
        h2->notify = st->notify_next;
        st->notify_queued = false;
        if (st->free_after_notify) {
            h2_stream_release(st);
        } else if (st->conn && st->conn->io.handler) {
            h2_stream_ready(st);
            st->conn->io.handler(h2->env->loop, &st->conn->io);
        }
    }
}

static void arm_timer(struct h2_session *h2)
{
    uint64_t when = h2->first ? h2->first->last_io_ms + h2->lim.stream_idle_ms
                              : h2->idle_since_ms + h2->lim.idle_ms;
    if (h2->grace_until_ms && h2->grace_until_ms < when)
        when = h2->grace_until_ms;
    if (h2->closing && h2->close_by_ms < when)
        when = h2->close_by_ms;
    if (!loop_timer_armed(&h2->timer) || h2->timer.when_ms != when)
        loop_timer_set_at(h2->env->loop, &h2->timer, when);
}

/* Is there nothing left to do but close? */
static bool finished(struct h2_session *h2)
{
    bool flushed = !h2->wbuf.data && !h2->npending && !nghttp2_session_want_write(h2->ng);
    if (!flushed)
        return false;
    return h2->closing || !nghttp2_session_want_read(h2->ng) ||
           (h2->grace_until_ms && h2->nstreams == 0);
}

static void pump(struct h2_session *h2)
{
    if (h2->ended)
        return;
    if (h2->conn.io.ready & LOOP_ERR) {
        end(h2);
        return;
    }
    h2->in_pump = true;
    unsigned round;
    for (round = 0; round < MAX_ROUNDS; round++) {
        h2->kicked = false;
        int out = flush_out(h2);
        int in = out < 0 ? -1 : read_in(h2);
        if (in < 0) {
            /* what nghttp2 queued last (a GOAWAY) goes if the socket takes it */
            if (out >= 0)
                flush_out(h2);
            h2->in_pump = false;
            end(h2);
            return;
        }
        dispatch(h2);
        if (h2->ended) {
            h2->in_pump = false;
            return;
        }
        if (!out && !in && !h2->kicked)
            break;
    }
    h2->in_pump = false;
    if (round == MAX_ROUNDS)
        loop_defer(h2->env->loop, &h2->task);
    if (finished(h2) || ((h2->conn.io.ready & LOOP_HUP) && !(h2->conn.io.ready & LOOP_READABLE)))
        end(h2);
    else
        arm_timer(h2);
}

static void on_io(struct loop *loop, struct loop_io *io)
{
    pump((struct h2_session *)io);
}

static void on_task(struct loop *loop, struct loop_task *task)
{
    pump((struct h2_session *)((char *)task - offsetof(struct h2_session, task)));
}

static void on_timer(struct loop *loop, struct loop_timer *timer)
{
    struct h2_session *h2 =
        (struct h2_session *)((char *)timer - offsetof(struct h2_session, timer));
    uint64_t now = loop_now_ms(loop);
    if (h2->closing && now >= h2->close_by_ms) {
        log_debug("h2: the client took nothing of our last frames: closed");
        end(h2);
        return;
    }
    if (h2->grace_until_ms && now >= h2->grace_until_ms) {
        log_debug("h2: GOAWAY grace time over, %u streams cut", h2->nstreams);
        end(h2);
        return;
    }
    if (!h2->first && !h2->closing && now >= h2->idle_since_ms + h2->lim.idle_ms) {
        nghttp2_submit_goaway(h2->ng, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(h2->ng), NGHTTP2_NO_ERROR,
                              NULL, 0);
        start_closing(h2);
    }
    /* streams idle too long are reset, and their users told */
    while (h2->first && h2->first->last_io_ms + h2->lim.stream_idle_ms <= now) {
        struct h2_stream *st = h2->first;
        log_debug("h2 stream %d: idle timeout", st->id);
        /* reset a stream_idle_timeout ago and still there: the client does not even take our
         * frames, and the connection goes */
        if (st->reset_sent)
            start_closing(h2);
        h2_stream_reset(st, NGHTTP2_CANCEL);
        if (st->conn) {
            st->conn->io.ready |= LOOP_HUP | LOOP_ERR;
            h2_session_notify(h2, st);
        }
        h2_session_touch(h2, st);
        if (h2->first == st)
            break; /* the only one */
    }
    pump(h2);
}

/* Our SETTINGS: as a server, the client's limits; as a client, what a server may send us. */
static int submit_settings(struct h2_session *h2)
{
    const struct h2_limits *lim = &h2->lim;
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, lim->max_header_list_size},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, lim->max_concurrent_streams},
    };
    /* a client's MAX_CONCURRENT_STREAMS would limit pushed streams, which it refuses anyway */
    size_t n = sizeof(settings) / sizeof(settings[0]) - (h2->client ? 1 : 0);
    uint32_t window = lim->max_concurrent_streams * H2_STREAM_WINDOW;
    if (h2->client || window > CONNECTION_WINDOW ||
        window / H2_STREAM_WINDOW != lim->max_concurrent_streams)
        window = CONNECTION_WINDOW;
    if (nghttp2_submit_settings(h2->ng, NGHTTP2_FLAG_NONE, settings, n) != 0 ||
        nghttp2_session_set_local_window_size(h2->ng, NGHTTP2_FLAG_NONE, 0, (int32_t)window) != 0)
        return -1;
    return 0;
}

struct h2_session *h2_session_start(const struct h2_env *env, struct conn *c, const char *early,
                                    size_t early_len, const struct h2_limits *lim,
                                    const struct h2_host *host)
{
    return h2_session_begin(env, c, early, early_len, lim, host, false);
}

struct h2_session *h2_session_begin(const struct h2_env *env, struct conn *c, const char *early,
                                    size_t early_len, const struct h2_limits *lim,
                                    const struct h2_host *host, bool client)
{
    struct h2_session *h2 = calloc(1, sizeof(*h2));
    nghttp2_option *opt = NULL;
    if (!h2 || nghttp2_option_new(&opt) != 0)
        goto fail;
    h2->env = env;
    h2->client = client;
    h2->lim = *lim;
    h2->host = *host;
    h2->grave.bury = bury;
    h2->timer.fn = on_timer;
    h2->task.fn = on_task;
    h2->idle_since_ms = loop_now_ms(env->loop);
    /* windows reopen only as users read (session.h); the rest are nghttp2's protections,
     * written out so that they stay on whatever the library's defaults become */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_continuations(opt, 8);
    nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
    nghttp2_option_set_no_closed_streams(opt, 1);
    int rv =
        client
            ? nghttp2_session_client_new3(&h2->ng, env->local->client_callbacks, h2, opt, h2_mem())
            : nghttp2_session_server_new3(&h2->ng, env->local->callbacks, h2, opt, h2_mem());
    if (rv != 0)
        goto fail;
    nghttp2_option_del(opt);
    opt = NULL;
    if (submit_settings(h2) < 0)
        goto fail;
    /* the loop now reports the connection's events here */
    uint32_t ready = c->io.ready;
    loop_del(env->loop, &c->io);
    h2->conn = *c;
    h2->conn.io.handler = on_io;
    if (h2->conn.ssl)
        conn_tls_moved(&h2->conn);
    if (loop_add(env->loop, &h2->conn.io, LOOP_EDGE_RW) < 0) {
        log_error("epoll_ctl: %s", strerror(errno));
        if (c->ssl)
            conn_tls_moved(c);
        if (loop_add(env->loop, &c->io, LOOP_EDGE_RW) < 0) /* give it back as it was */
            log_error("epoll_ctl: %s", strerror(errno));
        goto fail;
    }
    h2->conn.io.ready = ready;
    c->io.handler = NULL;
    c->io.fd = -1;
    c->ssl = NULL;
    /* What was read before is the start of the stream (streams it opens need the connection in
     * place); if nghttp2 refuses it, the connection ends once what it queued went out. */
    if (early_len) {
        h2->in_pump = true;
        ssize_t used = nghttp2_session_mem_recv(h2->ng, (const uint8_t *)early, early_len);
        h2->in_pump = false;
        if (used < 0) {
            log_debug("h2: %s", nghttp2_strerror((int)used));
            start_closing(h2);
        }
    }
    loop_defer(env->loop, &h2->task); /* our SETTINGS go now, and whatever else is readable */
    return h2;
fail:
    if (opt)
        nghttp2_option_del(opt);
    if (h2 && h2->ng)
        nghttp2_session_del(h2->ng);
    free(h2);
    return NULL;
}

void h2_session_goaway(struct h2_session *h2, uint32_t grace_ms)
{
    if (h2->ended || h2->grace_until_ms)
        return;
    nghttp2_submit_goaway(h2->ng, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(h2->ng), NGHTTP2_NO_ERROR, NULL,
                          0);
    h2->grace_until_ms = loop_now_ms(h2->env->loop) + (grace_ms ? grace_ms : 1);
    h2_session_kick(h2);
}

void h2_session_close(struct h2_session *h2)
{
    end(h2);
}

uint64_t h2_session_streams(const struct h2_session *h2)
{
    return h2->opened;
}
