/*
 * stream.c - an HTTP/2 stream as a connection transport (struct conn_ops): what its user reads is
 * the request as HTTP/1.1, what its user writes is the HTTP/1.1 response, turned into frames.
 *
 * Reading (h2_stream_recv): the request head (request.h), then the body bytes of DATA frames as
 * they came, or framed as chunks when the request has no Content-Length, then the chunked body's
 * end with the trailers. Every body byte read is handed back to the client's window
 * (nghttp2_session_consume): the window is the only buffer the client can fill.
 *
 *   head  "POST /up HTTP/1.1\r\n...Transfer-Encoding: chunked\r\n...\r\n"
 *   rx    "abc" (DATA)            ->  "3\r\nabc\r\n"
 *   tail  (END_STREAM, trailers)  ->  "0\r\nx-sum: 1\r\n\r\n"
 *
 * Writing (h2_stream_sendv): each response head, whole, becomes HEADERS (interim 1xx heads too);
 * body bytes are un-framed (Content-Length counted, chunked decoded) into tx, where nghttp2's
 * data source (h2_stream_read_body) takes them as the client's windows allow. A full tx refuses
 * more (EAGAIN), so the user stops reading its server: backpressure.
 *
 * The readiness flags of the user's connection follow the rules of conn.h: READABLE while there
 * is something to read (or an end of stream to see), WRITABLE while tx has room. A change is
 * told through the session (h2_session_notify), never from inside nghttp2's callbacks.
 */
#include "h2/stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "h2/response.h"

static const char last_chunk[] = "0\r\n\r\n";
#define LAST_CHUNK_LEN (sizeof(last_chunk) - 1)
/* A chunk's framing: up to 8 hex digits, CRLF, and CRLF after its data. */
#define CHUNK_OVERHEAD 12u

struct h2_stream *h2_stream_new(struct h2_session *h2, int32_t id)
{
    struct h2_local *local = h2->env->local;
    struct h2_stream *st = freelist_take_entry(&local->streams, struct h2_stream, spare);
    if (!st && !(st = malloc(sizeof(*st))))
        return NULL;
    memset(st, 0, sizeof(*st));
    st->h2 = h2;
    st->id = id;
    st->last_io_ms = loop_now_ms(h2->env->loop);
    st->prev = h2->last;
    if (h2->last)
        h2->last->next = st;
    else
        h2->first = st;
    h2->last = st;
    h2->nstreams++;
    return st;
}

static void free_stream(struct h2_stream *st)
{
    struct h2_session *h2 = st->h2;
    struct h2_local *local = h2->env->local;
    buf_put(h2->env->bufs, &st->head);
    h2_stream_put_rx(st);
    buf_put(h2->env->bufs, &st->tail);
    buf_put(h2->env->bufs, &st->tx);
    buf_put(h2->env->bufs, &st->trailers);
    if (st->prev)
        st->prev->next = st->next;
    else
        h2->first = st->next;
    if (st->next)
        st->next->prev = st->prev;
    else
        h2->last = st->prev;
    h2->nstreams--;
    if (h2->nstreams == 0)
        h2->idle_since_ms = loop_now_ms(h2->env->loop);
    if (!freelist_put(&local->streams, &st->spare))
        free(st);
    h2_session_stream_gone(h2);
}

void h2_stream_release(struct h2_stream *st)
{
    if (st->conn || !st->closed)
        return;
    if (st->notify_queued)
        st->free_after_notify = true;
    else
        free_stream(st);
}

void h2_stream_reset(struct h2_stream *st, uint32_t error_code)
{
    struct h2_session *h2 = st->h2;
    if (st->id <= 0) { /* a request never submitted: nghttp2 does not know the stream */
        st->closed = true;
        return;
    }
    if (st->reset_sent || st->closed || !h2->ng)
        return;
    st->reset_sent = true;
    nghttp2_submit_rst_stream(h2->ng, NGHTTP2_FLAG_NONE, st->id, error_code);
    h2_session_kick(h2);
}

void h2_stream_drop_rx(struct h2_stream *st)
{
    struct h2_session *h2 = st->h2;
    size_t n = st->rx.data ? buf_len(&st->rx) : 0;
    h2_stream_put_rx(st);
    if (!n || !h2->ng)
        return;
    if (st->closed)
        nghttp2_session_consume_connection(h2->ng, n);
    else
        nghttp2_session_consume(h2->ng, st->id, n);
    h2_session_kick(h2);
}

/* ---- readiness ---- */

static bool has_bytes(const struct buf *b)
{
    return b->data && !buf_empty(b);
}

static bool readable(const struct h2_stream *st)
{
    return has_bytes(&st->head) || has_bytes(&st->rx) || st->frame_off < st->frame_len ||
           (st->rx_end && !st->eof_given) || st->closed;
}

static bool writable(const struct h2_stream *st)
{
    if (st->closed || st->tx_state == H2_TX_HEAD)
        return true;
    return !st->tx.data || st->tx.end < st->h2->env->bufs->size || st->tx.start > 0;
}

void h2_stream_ready(struct h2_stream *st)
{
    struct conn *c = st->conn;
    if (!c)
        return;
    if (readable(st))
        c->io.ready |= LOOP_READABLE;
    if (writable(st))
        c->io.ready |= LOOP_WRITABLE;
}

void h2_stream_refresh(struct h2_stream *st)
{
    struct conn *c = st->conn;
    if (!c)
        return;
    uint32_t before = c->io.ready;
    h2_stream_ready(st);
    if (c->io.ready != before)
        h2_session_notify(st->h2, st);
}

void h2_stream_attach(struct h2_stream *st, struct conn *conn)
{
    struct h2_session *h2 = st->h2;
    st->conn = conn;
    conn->ops = &h2_stream_ops;
    conn->stream = st;
    conn->ssl = h2->conn.ssl; /* for its server name and client certificate, never for I/O */
    conn->io.fd = h2->conn.io.fd;
    conn->io.ready = 0;
    conn->drained = false;
    h2->attached++;
    h2_stream_refresh(st);
}

void h2_stream_closed(struct h2_stream *st, uint32_t error_code)
{
    st->closed = true;
    st->close_error = error_code;
    /* a server's whole response may close the stream before its user read it all: that stays */
    if (!(st->h2->client && st->rx_end && st->conn))
        h2_stream_drop_rx(st);
    if (st->conn) {
        /* Reset by the peer, or cut by an error: the user must not take it for complete. A
         * server may stop a request it answered whole (RFC 9113 section 8.1): only the response
         * counts there. */
        bool cut = st->h2->client ? !st->rx_end
                                  : error_code != NGHTTP2_NO_ERROR || st->tx_state != H2_TX_DONE ||
                                        has_bytes(&st->tx);
        if (cut)
            st->conn->io.ready |= LOOP_HUP | LOOP_ERR;
        h2_stream_refresh(st);
        h2_session_notify(st->h2, st);
    }
    h2_stream_release(st);
}

void h2_stream_put_rx(struct h2_stream *st)
{
    const struct h2_env *env = st->h2->env;
    buf_put(st->rx_window ? &env->local->rx : env->bufs, &st->rx);
    st->rx_window = false;
}

/* Room for len more body bytes in rx. Most bodies are small and read at once: they start in one
 * of the thread's pooled buffers, and move to a buffer as large as the window (whose pool keeps
 * few spares) only when more is waiting than that holds. */
static bool rx_room(struct h2_stream *st, size_t len)
{
    const struct h2_env *env = st->h2->env;
    if (!st->rx.data) {
        st->rx_window = len > env->bufs->size;
        if (buf_get(st->rx_window ? &env->local->rx : env->bufs, &st->rx) < 0)
            return false;
    }
    struct buf_pool *pool = st->rx_window ? &env->local->rx : env->bufs;
    if (st->rx.end + len > pool->size && st->rx.start > 0)
        buf_compact(&st->rx);
    if (st->rx.end + len <= pool->size)
        return true;
    if (st->rx_window)
        return false;
    struct buf big;
    if (buf_get(&env->local->rx, &big) < 0)
        return false;
    big.end = buf_len(&st->rx);
    memcpy(big.data, st->rx.data + st->rx.start, big.end);
    buf_put(env->bufs, &st->rx);
    st->rx = big;
    st->rx_window = true;
    return st->rx.end + len <= env->local->rx.size;
}

bool h2_stream_data(struct h2_stream *st, const uint8_t *data, size_t len)
{
    if (!rx_room(st, len))
        return false;
    memcpy(st->rx.data + st->rx.end, data, len);
    st->rx.end += (uint32_t)len;
    h2_stream_refresh(st);
    return true;
}

/* ---- reading: the request ---- */

static size_t take(struct buf *b, char *dst, size_t room)
{
    size_t n = buf_len(b);
    if (n > room)
        n = room;
    memcpy(dst, b->data + b->start, n);
    b->start += (uint32_t)n;
    return n;
}

/*
 * Body bytes framed as chunks, as far as room goes. A chunk is decided when it starts (all of rx
 * then), its framing waits in st->frame, and its data comes out of rx as the user reads: so a
 * read is short only when nothing is left, however small the room (conn.h's rule). Returns the
 * bytes written; *payload gets the body bytes among them.
 */
static size_t take_chunks(struct h2_stream *st, char *dst, size_t room, size_t *payload)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    *payload = 0;
    while (n < room) {
        if (st->frame_off < st->frame_len) {
            size_t k = st->frame_len - st->frame_off;
            if (k > room - n)
                k = room - n;
            memcpy(dst + n, st->frame + st->frame_off, k);
            st->frame_off += (uint8_t)k;
            n += k;
        } else if (st->chunk_left) {
            size_t k = st->chunk_left < room - n ? (size_t)st->chunk_left : room - n;
            k = take(&st->rx, dst + n, k);
            st->chunk_left -= k;
            *payload += k;
            n += k;
            if (!st->chunk_left) { /* the chunk's CRLF */
                memcpy(st->frame, "\r\n", 2);
                st->frame_off = 0;
                st->frame_len = 2;
            }
        } else if (has_bytes(&st->rx)) { /* a new chunk of what there is: "size\r\n" */
            uint32_t size = buf_len(&st->rx);
            unsigned digits = 0;
            for (uint32_t v = size; v; v >>= 4)
                digits++;
            for (unsigned i = 0; i < digits; i++)
                st->frame[i] = hex[(size >> (4 * (digits - 1 - i))) & 15];
            st->frame[digits] = '\r';
            st->frame[digits + 1] = '\n';
            st->frame_off = 0;
            st->frame_len = (uint8_t)(digits + 2);
            st->chunk_left = size;
        } else {
            break;
        }
    }
    return n;
}

static ssize_t h2_stream_recv(struct conn *c, void *buf, size_t len)
{
    struct h2_stream *st = c->stream;
    struct h2_session *h2 = st->h2;
    char *dst = buf;
    size_t n = 0, body = 0;

    if (has_bytes(&st->head))
        n += take(&st->head, dst, len);
    /* (a client's response head is written in place until it is whole) */
    if (st->head.data && buf_empty(&st->head) && (!h2->client || st->head_done))
        buf_put(h2->env->bufs, &st->head);
    if (!has_bytes(&st->head) && n < len) {
        if (st->chunked_rx) {
            n += take_chunks(st, dst + n, len - n, &body);
        } else if (has_bytes(&st->rx)) {
            body = take(&st->rx, dst + n, len - n);
            n += body;
        }
    }
    if (st->rx.data && buf_empty(&st->rx))
        h2_stream_put_rx(st);
    bool chunks_done = !has_bytes(&st->rx) && !st->chunk_left && st->frame_off == st->frame_len;
    if (st->chunked_rx && st->rx_end && chunks_done && !st->tail_done && n < len) {
        if (st->tail.data) { /* the trailers arrived: the last chunk and they are in tail */
            n += take(&st->tail, dst + n, len - n);
            st->tail_done = buf_empty(&st->tail);
            if (st->tail_done)
                buf_put(h2->env->bufs, &st->tail);
        } else {
            size_t k = LAST_CHUNK_LEN - st->tail_static;
            if (k > len - n)
                k = len - n;
            memcpy(dst + n, last_chunk + st->tail_static, k);
            st->tail_static += (uint32_t)k;
            n += k;
            st->tail_done = st->tail_static == LAST_CHUNK_LEN;
        }
    }
    if (body && h2->ng) {
        if (st->closed) /* only the connection's window is left to reopen */
            nghttp2_session_consume_connection(h2->ng, body);
        else
            nghttp2_session_consume(h2->ng, st->id, body);
        h2_session_kick(h2);
    }
    if (n)
        return (ssize_t)n;
    if (st->rx_end && (!st->chunked_rx || st->tail_done)) {
        st->eof_given = true;
        return 0;
    }
    errno = st->closed ? ECONNRESET : EAGAIN;
    return -1;
}

static ssize_t h2_stream_peek(struct conn *c, void *buf, size_t len)
{
    struct h2_stream *st = c->stream;
    const struct buf *b = has_bytes(&st->head) ? &st->head : has_bytes(&st->rx) ? &st->rx : NULL;
    if (b && len) {
        size_t n = buf_len(b) < len ? buf_len(b) : len;
        memcpy(buf, b->data + b->start, n);
        return (ssize_t)n;
    }
    if (st->rx_end && !st->chunked_rx)
        return 0;
    errno = st->closed ? ECONNRESET : EAGAIN;
    return len ? -1 : 0;
}

/* ---- writing: the response ---- */

int h2_stream_reserve_lists(struct h2_local *local, size_t n, size_t cap)
{
    if (n > local->nv_cap) {
        nghttp2_nv *nv = realloc(local->nv, n * sizeof(*nv));
        if (!nv)
            return -1;
        local->nv = nv;
        local->nv_cap = n;
    }
    if (cap > local->lower_cap) {
        char *lower = realloc(local->lower, cap);
        if (!lower)
            return -1;
        local->lower = lower;
        local->lower_cap = cap;
    }
    return 0;
}

/*
 * One whole response head at p, as HEADERS: interim (1xx) ones as they come, the final one with
 * the body's data source unless it has no body. Returns the head's length, or -1 (errno EPROTO:
 * no complete, valid head there).
 */
static ssize_t take_head(struct h2_stream *st, const char *p, size_t len)
{
    struct h2_session *h2 = st->h2;
    if (h2->client)
        return h2_client_submit(st, p, len);
    const struct h2_env *env = h2->env;
    struct http1_scan scan = {0};
    uint16_t why_status;
    const char *why;
    struct http1_msg msg = {.fields = *env->fields};
    if (http1_scan_head(&scan, p, len, env->limits, false, &why_status, &why) != HTTP1_DONE ||
        http1_parse_response(&scan, p, env->limits, st->method, &msg) != HTTP1_DONE ||
        h2_stream_reserve_lists(env->local, msg.nfields + 1, msg.head_end) < 0) {
        errno = EPROTO;
        return -1;
    }
    char status[H2_STATUS_TEXT];
    int n = h2_response_fields(p, &msg, env->local->nv, env->local->nv_cap, status,
                               env->local->lower, env->local->lower_cap);
    if (n < 0) {
        errno = EPROTO;
        return -1;
    }
    int rv;
    if (msg.status < 200) {
        rv = nghttp2_submit_headers(h2->ng, NGHTTP2_FLAG_NONE, st->id, NULL, env->local->nv,
                                    (size_t)n, NULL);
    } else {
        uint8_t body = msg.body;
        if (body == HTTP1_BODY_LENGTH && msg.content_length == 0)
            body = HTTP1_BODY_NONE;
        st->tx_body = body;
        st->tx_left = msg.content_length;
        memset(&st->tx_chunk, 0, sizeof(st->tx_chunk));
        st->tx_chunk.max_trailer = env->limits->max_head_bytes;
        nghttp2_data_provider body_source = {.source.ptr = st,
                                             .read_callback = h2_stream_read_body};
        rv = nghttp2_submit_response(h2->ng, st->id, env->local->nv, (size_t)n,
                                     body == HTTP1_BODY_NONE ? NULL : &body_source);
        st->tx_state = body == HTTP1_BODY_NONE ? H2_TX_DONE : H2_TX_BODY;
    }
    if (rv != 0) {
        errno = EPROTO;
        return -1;
    }
    return (ssize_t)msg.head_end;
}

/*
 * The decoder consumes a trailer section without output, as the last bytes it used; the chunked
 * state counts them (trailer_len, from 0 at the last chunk). What this call used of them is
 * still in place at the end of buf[0, used) (decoding only moves payload towards the front), and
 * is kept for a trailing HEADERS frame.
 */
static int keep_trailers(struct h2_stream *st, const char *buf, size_t used)
{
    uint32_t kept = st->trailers.data ? st->trailers.end : 0;
    if (st->tx_chunk.trailer_len <= kept)
        return 0;
    size_t k = st->tx_chunk.trailer_len - kept;
    if (k > used || (!st->trailers.data && buf_get(st->h2->env->bufs, &st->trailers) < 0) ||
        st->trailers.end + k > st->h2->env->bufs->size)
        return -1;
    memcpy(st->trailers.data + st->trailers.end, buf + used - k, k);
    st->trailers.end += (uint32_t)k;
    return 0;
}

/* Body bytes into tx, as many as fit, without their HTTP/1.1 framing. Returns how many of len
 * were taken, or -1 (errno EPROTO: bad chunked framing). */
static ssize_t take_body(struct h2_stream *st, const char *p, size_t len)
{
    struct h2_session *h2 = st->h2;
    uint32_t size = h2->env->bufs->size;
    if (!st->tx.data && buf_get(h2->env->bufs, &st->tx) < 0) {
        errno = ENOMEM;
        return -1;
    }
    if (st->tx.end == size && st->tx.start > 0)
        buf_compact(&st->tx);
    size_t n = size - st->tx.end;
    if (n > len)
        n = len;
    if (st->tx_body == HTTP1_BODY_LENGTH && n > st->tx_left)
        n = (size_t)st->tx_left;
    char *at = st->tx.data + st->tx.end;
    memcpy(at, p, n);
    if (st->tx_body == HTTP1_BODY_CHUNKED) {
        size_t used, out;
        int r = http1_chunked_parse(&st->tx_chunk, at, n, true, &used, &out);
        if (r == HTTP1_ERROR || keep_trailers(st, at, used) < 0) {
            errno = EPROTO;
            return -1;
        }
        st->tx.end += (uint32_t)out;
        n = used;
        if (r == HTTP1_DONE)
            st->tx_state = H2_TX_DONE;
    } else {
        st->tx.end += (uint32_t)n;
        if (st->tx_body == HTTP1_BODY_LENGTH && (st->tx_left -= n) == 0)
            st->tx_state = H2_TX_DONE;
    }
    return (ssize_t)n;
}

/* The response ended on our side: nghttp2 may send END_STREAM now. */
static void resume(struct h2_stream *st)
{
    if (st->data_deferred && st->h2->ng) {
        st->data_deferred = false;
        nghttp2_session_resume_data(st->h2->ng, st->id);
    }
    h2_session_kick(st->h2);
}

static ssize_t h2_stream_sendv(struct conn *c, const struct iovec *iov, int iovcnt)
{
    struct h2_stream *st = c->stream;
    if (!st->h2->ng || st->closed) {
        errno = EPIPE;
        return -1;
    }
    size_t taken = 0;
    for (int i = 0; i < iovcnt; i++) {
        const char *p = iov[i].iov_base;
        size_t len = iov[i].iov_len, off = 0;
        while (off < len && st->tx_state != H2_TX_DONE) {
            ssize_t r = st->tx_state == H2_TX_HEAD ? take_head(st, p + off, len - off)
                                                   : take_body(st, p + off, len - off);
            if (r < 0) {
                if (taken)
                    break;
                return -1;
            }
            if (r == 0)
                break; /* tx is full */
            off += (size_t)r;
            taken += (size_t)r;
        }
        if (off < len)
            break;
    }
    if (!taken) {
        errno = st->tx_state == H2_TX_DONE ? EPIPE : EAGAIN;
        return -1;
    }
    h2_session_touch(st->h2, st);
    resume(st);
    return (ssize_t)taken;
}

/* The response's trailer fields, if it had any, as HEADERS with END_STREAM. */
static bool send_trailers(struct h2_stream *st)
{
    struct h2_local *local = st->h2->env->local;
    if (!st->trailers.data)
        return false;
    size_t len = buf_len(&st->trailers);
    bool sent = false;
    /* a field per line at most, each name no longer than the section */
    if (h2_stream_reserve_lists(local, len / 4 + 1, len) == 0) {
        int n = h2_trailer_fields(st->trailers.data + st->trailers.start, len, local->nv,
                                  local->nv_cap, local->lower, local->lower_cap);
        sent = n > 0 && nghttp2_submit_trailer(st->h2->ng, st->id, local->nv, (size_t)n) == 0;
    }
    buf_put(st->h2->env->bufs, &st->trailers);
    return sent;
}

ssize_t h2_stream_read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *source, void *user)
{
    struct h2_stream *st = source->ptr;
    size_t n = 0;
    if (has_bytes(&st->tx))
        n = take(&st->tx, (char *)buf, length);
    if (st->tx.data && buf_empty(&st->tx))
        buf_put(st->h2->env->bufs, &st->tx);
    if (!has_bytes(&st->tx) && st->tx_state == H2_TX_DONE) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (send_trailers(st))
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM; /* the trailers end the stream */
    } else if (!n) {
        st->data_deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (n) {
        h2_session_touch(st->h2, st);
        h2_stream_refresh(st);
    }
    return (ssize_t)n;
}

static int h2_stream_shutdown(struct conn *c)
{
    struct h2_stream *st = c->stream;
    if (st->tx_state == H2_TX_BODY && st->tx_body == HTTP1_BODY_CLOSE)
        st->tx_state = H2_TX_DONE; /* a body that ends when its server closes has ended */
    resume(st);
    return 0;
}

/*
 * The user lets go. Without reset, a response complete on our side is still sent to the end; a
 * request the client is still sending is then cut with RST_STREAM NO_ERROR (RFC 9113 section
 * 8.1), since nobody will read it. A reset, or a response not complete, is RST_STREAM CANCEL; so
 * is, in the client role, a request whose response did not come whole.
 */
static void h2_stream_close(struct conn *c, bool reset)
{
    struct h2_stream *st = c->stream;
    struct h2_session *h2 = st->h2;
    st->conn = NULL;
    c->stream = NULL;
    h2->attached--;
    if (!reset && st->tx_state == H2_TX_BODY && st->tx_body == HTTP1_BODY_CLOSE)
        st->tx_state = H2_TX_DONE;
    buf_put(h2->env->bufs, &st->head);
    if (reset || st->tx_state != H2_TX_DONE || (h2->client && !st->rx_end))
        h2_stream_reset(st, NGHTTP2_CANCEL); /* as a client: the server need not go on */
    else if (st->end_sent && !st->rx_end)
        h2_stream_reset(st, NGHTTP2_NO_ERROR);
    else if (h2->ng && !st->closed)
        resume(st);
    h2_stream_drop_rx(st);
    h2_session_kick(h2);
    h2_stream_release(st);
}

const struct conn_ops h2_stream_ops = {
    .name = "h2",
    .recv = h2_stream_recv,
    .peek = h2_stream_peek,
    .sendv = h2_stream_sendv,
    .shutdown = h2_stream_shutdown,
    .close = h2_stream_close,
};
