/*
 * client.c - the client role of an HTTP/2 session (client.h): starting one on a connection to a
 * server, opening streams on it, submitting the request head a stream's user writes, and the
 * callbacks that turn the server's header blocks into an HTTP/1.1 response head and trailers.
 * Everything else (moving bytes, DATA both ways, windows, timers, the end of the connection) is
 * the session's and the stream's, shared with the server role (session.c, stream.c).
 */
#include "h2/client.h"

#include <errno.h>
#include <string.h>

#include "core/log.h"
#include "h2/request.h"
#include "h2/response.h"
#include "h2/stream.h"

struct h2_session *h2_client_start(const struct h2_env *env, struct conn *c,
                                   const struct h2_limits *lim, const struct h2_host *host)
{
    return h2_session_begin(env, c, NULL, 0, lim, host, true);
}

unsigned h2_client_room(const struct h2_session *h2)
{
    if (!h2->ng || h2->ended || h2->closing || h2->grace_until_ms ||
        !nghttp2_session_check_request_allowed(h2->ng))
        return 0;
    uint32_t max =
        nghttp2_session_get_remote_settings(h2->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return max > h2->nstreams ? max - h2->nstreams : 0;
}

bool h2_client_used(const struct h2_session *h2)
{
    return h2->opened > 0;
}

int h2_client_open_stream(struct h2_session *h2, struct conn *conn)
{
    /* its id comes when the request is submitted (h2_client_submit) */
    struct h2_stream *st = h2_stream_new(h2, 0);
    if (!st)
        return -1;
    h2->opened++;
    h2_stream_attach(st, conn);
    return 0;
}

/* ---- the request ---- */

ssize_t h2_client_submit(struct h2_stream *st, const char *p, size_t len)
{
    struct h2_session *h2 = st->h2;
    const struct h2_env *env = h2->env;
    /* The proxy wrote this head and applied its policies: read it as it is, counting nothing. */
    struct http1_limits limits = *env->limits;
    limits.underscores = HTTP1_UNDERSCORES_ALLOW;
    limits.underscore_drops = NULL;
    struct http1_scan scan = {0};
    uint16_t why_status;
    const char *why;
    struct http1_msg msg = {.fields = *env->fields};
    if (http1_scan_head(&scan, p, len, &limits, true, &why_status, &why) != HTTP1_DONE ||
        http1_parse_request(&scan, p, &limits, &msg) != HTTP1_DONE ||
        h2_stream_reserve_lists(env->local, msg.nfields + 5, msg.head_end) < 0) {
        errno = EPROTO;
        return -1;
    }
    int n = h2_request_fields(p, &msg, h2->conn.ssl ? "https" : "http", env->local->nv,
                              env->local->nv_cap, env->local->lower, env->local->lower_cap);
    if (n < 0) {
        errno = EPROTO;
        return -1;
    }
    uint8_t body = msg.body;
    if (body == HTTP1_BODY_LENGTH && msg.content_length == 0)
        body = HTTP1_BODY_NONE;
    st->method = msg.method;
    st->tx_body = body;
    st->tx_left = msg.content_length;
    memset(&st->tx_chunk, 0, sizeof(st->tx_chunk));
    st->tx_chunk.max_trailer = env->limits->max_head_bytes;
    nghttp2_data_provider body_source = {.source.ptr = st, .read_callback = h2_stream_read_body};
    int32_t id = nghttp2_submit_request(h2->ng, NULL, env->local->nv, (size_t)n,
                                        body == HTTP1_BODY_NONE ? NULL : &body_source, st);
    if (id < 0) {
        log_debug("h2 client: cannot submit a request: %s", nghttp2_strerror(id));
        errno = EPIPE;
        return -1;
    }
    st->id = id;
    st->tx_state = body == HTTP1_BODY_NONE ? H2_TX_DONE : H2_TX_BODY;
    return (ssize_t)msg.head_end;
}

/* ---- nghttp2's callbacks: the response ---- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct h2_session *h2 = user;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct h2_stream *st = h2_stream_of(h2, frame->hd.stream_id);
    if (!st)
        return 0;
    struct buf_pool *bufs = h2->env->bufs;
    st->header_bytes = 0;
    if (!st->head_done) { /* the response head (or an interim one) */
        if (!st->head.data && buf_get(bufs, &st->head) < 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
        st->head.start = st->head.end = 0;
        h2_reply_init(&h2->req, st->head.data, bufs->size, st->method);
    } else if (st->chunked_rx && st->conn && !st->tail.data && buf_get(bufs, &st->tail) == 0) {
        h2_trailers_init(&h2->req, st->tail.data, bufs->size);
    }
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t name_len, const uint8_t *value, size_t value_len, uint8_t flags,
                     void *user)
{
    struct h2_session *h2 = user;
    struct h2_stream *st = h2_session_field_stream(h2, frame, name_len, value_len);
    if (!st)
        return 0;
    if (!st->head_done)
        h2_reply_field(&h2->req, (const char *)name, name_len, (const char *)value, value_len);
    else if (st->tail.data && !st->tail_done)
        h2_trailers_field(&h2->req, (const char *)name, name_len, (const char *)value, value_len);
    return 0;
}

/* A response header block is complete: the final head becomes readable; an interim one goes. */
static void response_ready(struct h2_session *h2, struct h2_stream *st, bool end_stream)
{
    bool chunked;
    uint32_t len = st->too_large ? 0 : h2_reply_finish(&h2->req, end_stream, &chunked);
    if (!len) {
        log_debug("h2 client stream %d: %s", st->id,
                  st->too_large ? "response header list too large" : h2->req.error);
        buf_put(h2->env->bufs, &st->head);
        h2_stream_reset(st, NGHTTP2_CANCEL); /* its user hears of it as the stream closes */
        return;
    }
    if (h2->req.status < 200)
        return; /* the final head comes next, into the same buffer */
    st->head_done = true;
    st->head.start = 0;
    st->head.end = len;
    st->chunked_rx = chunked;
    h2_stream_refresh(st);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct h2_session *h2 = user;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    struct h2_stream *st = h2_stream_of(h2, frame->hd.stream_id);
    if (!st)
        return 0;
    h2_session_touch(h2, st);
    bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    /* (trailers after a Content-Length body have nowhere to go: on_begin_headers kept none) */
    if (frame->hd.type == NGHTTP2_HEADERS && st->head_done)
        h2_session_trailers_ready(h2, st);
    else if (frame->hd.type == NGHTTP2_HEADERS)
        response_ready(h2, st, end_stream);
    if (end_stream && st->head_done) {
        st->rx_end = true;
        h2_stream_refresh(st);
    }
    return 0;
}

void h2_client_set_callbacks(nghttp2_session_callbacks *cb)
{
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_session_on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_session_on_stream_close);
}
