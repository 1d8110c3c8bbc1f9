/*
 * check_grpc.c - one gRPC health check call over HTTP/2 (check_grpc.h).
 *
 * An nghttp2 client session in memory: what it wants to send is copied into out (check.c writes
 * it when the socket takes it), what the server sent is fed to it, and its callbacks collect the
 * one stream's answer: the :status and content-type of the head, up to MESSAGE_MAX bytes of the
 * body, and grpc-status and grpc-message from the trailers (or from a trailers-only answer). The
 * verdict is taken when the stream closes, or earlier when the connection fails.
 *
 * The request body is one length-prefixed gRPC message (a flag byte 0, a 4-byte big-endian
 * length) holding HealthCheckRequest {string service = 1}; the answer's HealthCheckResponse is
 * {enum status = 1}, read by hand: two protobuf messages of one field each need no library.
 */
#include "ctl/check_grpc.h"

#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MESSAGE_MAX 256 /* a HealthCheckResponse takes 7 bytes with its prefix */
#define SERVICE_MAX 200 /* service names longer than this are refused by conf.c too */

enum serving_status { UNKNOWN = 0, SERVING = 1, NOT_SERVING = 2, SERVICE_UNKNOWN = 3 };

struct grpc_check {
    nghttp2_session *session;
    int32_t stream_id;
    uint8_t request[5 + 3 + SERVICE_MAX]; /* the one message of the request body */
    size_t request_len, request_sent;
    uint8_t *out; /* bytes the session produced, not sent yet */
    size_t out_len, out_cap, out_done;
    /* the answer */
    unsigned http_status;
    bool grpc_content; /* content-type application/grpc... */
    int grpc_status;   /* -1 until a grpc-status field came */
    char grpc_message[96];
    uint8_t message[MESSAGE_MAX];
    size_t message_len;
    bool message_cut;    /* more body than MESSAGE_MAX */
    uint32_t reset_code; /* RST_STREAM's code, if the stream was reset */
    enum grpc_check_verdict verdict;
    char why[128];
    char protocol_error[80]; /* what nghttp2 last found wrong in the server's bytes */
};

static void decide(struct grpc_check *g, enum grpc_check_verdict v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void decide(struct grpc_check *g, enum grpc_check_verdict v, const char *fmt, ...)
{
    if (g->verdict != GRPC_CHECK_MORE)
        return; /* the first reason stands */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->why, sizeof(g->why), fmt, ap);
    va_end(ap);
    g->verdict = v;
}

/* The names of gRPC's status codes, for the reasons shown. */
static const char *grpc_code_name(int code)
{
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    return code >= 0 && code < (int)(sizeof(names) / sizeof(names[0])) ? names[code] : "?";
}

/* A protobuf varint at *p (below end): its value, or -1 if it is cut short or too long. */
static int64_t read_varint(const uint8_t **p, const uint8_t *end)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v > INT64_MAX ? -1 : (int64_t)v;
    }
    return -1;
}

/* HealthCheckResponse.status from the answer's one message, or -1 if it is not one. Fields
 * other than 1 are skipped, as protobuf readers do; a missing status is 0 (UNKNOWN). */
static int64_t serving_status(const struct grpc_check *g)
{
    if (g->message_cut || g->message_len < 5 || g->message[0] != 0)
        return -1; /* compressed (flag 1) or not one whole message */
    uint32_t len = (uint32_t)g->message[1] << 24 | (uint32_t)g->message[2] << 16 |
                   (uint32_t)g->message[3] << 8 | g->message[4];
    if (len != g->message_len - 5)
        return -1;
    const uint8_t *p = g->message + 5, *end = g->message + g->message_len;
    int64_t status = UNKNOWN;
    while (p < end) {
        int64_t key = read_varint(&p, end);
        if (key < 0)
            return -1;
        int64_t value;
        switch (key & 7) {
        case 0: /* varint */
            if ((value = read_varint(&p, end)) < 0)
                return -1;
            if (key >> 3 == 1)
                status = value;
            break;
        case 1: /* 64-bit */
            if (end - p < 8)
                return -1;
            p += 8;
            break;
        case 2: /* length-delimited */
            if ((value = read_varint(&p, end)) < 0 || value > end - p)
                return -1;
            p += value;
            break;
        case 5: /* 32-bit */
            if (end - p < 4)
                return -1;
            p += 4;
            break;
        default:
            return -1;
        }
    }
    return status;
}

/* The stream is over: what its head, body and trailers say. */
static void judge(struct grpc_check *g)
{
    if (g->reset_code) {
        decide(g, GRPC_CHECK_FAIL, "stream reset by the server (%s)",
               nghttp2_http2_strerror(g->reset_code));
        return;
    }
    if (g->http_status != 200) {
        decide(g, GRPC_CHECK_FAIL, "HTTP status %u", g->http_status);
        return;
    }
    if (!g->grpc_content) {
        decide(g, GRPC_CHECK_FAIL, "not a gRPC answer (content-type)");
        return;
    }
    if (g->grpc_status < 0) {
        decide(g, GRPC_CHECK_FAIL, "no grpc-status in the answer");
        return;
    }
    if (g->grpc_status != 0) {
        decide(g, GRPC_CHECK_FAIL, "grpc-status %d (%s)%s%.80s", g->grpc_status,
               grpc_code_name(g->grpc_status), g->grpc_message[0] ? ": " : "", g->grpc_message);
        return;
    }
    int64_t status = serving_status(g);
    switch (status) {
    case SERVING:
        decide(g, GRPC_CHECK_PASS, "SERVING");
        break;
    case NOT_SERVING:
        decide(g, GRPC_CHECK_FAIL, "NOT_SERVING");
        break;
    case SERVICE_UNKNOWN:
        decide(g, GRPC_CHECK_FAIL, "SERVICE_UNKNOWN");
        break;
    case UNKNOWN:
        decide(g, GRPC_CHECK_FAIL, "serving status UNKNOWN");
        break;
    case -1:
        decide(g, GRPC_CHECK_FAIL, "not a HealthCheckResponse");
        break;
    default:
        decide(g, GRPC_CHECK_FAIL, "serving status %lld", (long long)status);
        break;
    }
}

/* ---- nghttp2's callbacks ---- */

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    (void)session;
    (void)flags;
    struct grpc_check *g = user_data;
    if (frame->hd.stream_id != g->stream_id)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        unsigned status = 0;
        for (size_t i = 0; i < valuelen && valuelen <= 3; i++)
            status = status * 10 + (unsigned)(value[i] - '0');
        g->http_status = status;
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        /* application/grpc, application/grpc+proto, ... */
        g->grpc_content = valuelen >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
                          (valuelen == 16 || value[16] == '+' || value[16] == ';');
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        int code = 0;
        for (size_t i = 0; i < valuelen && valuelen <= 3; i++)
            code = value[i] >= '0' && value[i] <= '9' ? code * 10 + (value[i] - '0') : -1000;
        g->grpc_status = valuelen && valuelen <= 3 && code >= 0 ? code : 2; /* UNKNOWN */
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        /* percent-encoded; shown as it came, without control characters */
        size_t n = valuelen < sizeof(g->grpc_message) - 1 ? valuelen : sizeof(g->grpc_message) - 1;
        for (size_t i = 0; i < n; i++)
            g->grpc_message[i] = value[i] >= 0x20 && value[i] < 0x7f ? (char)value[i] : '?';
        g->grpc_message[n] = '\0';
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data)
{
    (void)session;
    (void)flags;
    struct grpc_check *g = user_data;
    if (stream_id != g->stream_id)
        return 0;
    size_t room = sizeof(g->message) - g->message_len;
    if (len > room)
        g->message_cut = true;
    memcpy(g->message + g->message_len, data, len > room ? room : len);
    g->message_len += len > room ? room : len;
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    (void)session;
    struct grpc_check *g = user_data;
    if (stream_id != g->stream_id)
        return 0;
    g->reset_code = error_code;
    judge(g);
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    (void)session;
    struct grpc_check *g = user_data;
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.last_stream_id < g->stream_id)
        decide(g, GRPC_CHECK_FAIL, "GOAWAY before the call (%s)",
               nghttp2_http2_strerror(frame->goaway.error_code));
    return 0;
}

static int on_error(nghttp2_session *session, int code, const char *msg, size_t len,
                    void *user_data)
{
    (void)session;
    (void)code;
    struct grpc_check *g = user_data;
    snprintf(g->protocol_error, sizeof(g->protocol_error), "%.*s", (int)len, msg);
    return 0;
}

/* The request body: the one message, then end of stream. */
static ssize_t read_request(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data)
{
    (void)session;
    (void)stream_id;
    (void)source;
    struct grpc_check *g = user_data;
    size_t n = g->request_len - g->request_sent;
    if (n > length)
        n = length;
    memcpy(buf, g->request + g->request_sent, n);
    g->request_sent += n;
    if (g->request_sent == g->request_len)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* Moves what the session wants to send into out. -1 if memory ran out or nghttp2 failed. */
static int collect_output(struct grpc_check *g)
{
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(g->session, &data);
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (g->out_done) { /* the sent part is dropped before the buffer grows */
            memmove(g->out, g->out + g->out_done, g->out_len - g->out_done);
            g->out_len -= g->out_done;
            g->out_done = 0;
        }
        if (g->out_len + (size_t)n > g->out_cap) {
            size_t cap = (g->out_len + (size_t)n) * 2;
            uint8_t *grown = realloc(g->out, cap);
            if (!grown)
                return -1;
            g->out = grown;
            g->out_cap = cap;
        }
        memcpy(g->out + g->out_len, data, (size_t)n);
        g->out_len += (size_t)n;
    }
}

struct grpc_check *grpc_check_new(const char *authority, const char *service)
{
    size_t service_len = strlen(service);
    if (service_len > SERVICE_MAX)
        return NULL;
    struct grpc_check *g = calloc(1, sizeof(*g));
    nghttp2_session_callbacks *cbs = NULL;
    if (!g || nghttp2_session_callbacks_new(&cbs) != 0)
        goto fail;
    g->grpc_status = -1;
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_error_callback2(cbs, on_error);
    int rc = nghttp2_session_client_new(&g->session, cbs, g);
    nghttp2_session_callbacks_del(cbs);
    if (rc != 0)
        goto fail;

    /* HealthCheckRequest {service = 1}, an empty message when service is "" */
    size_t body = service_len ? 1 + (service_len < 128 ? 1 : 2) + service_len : 0;
    uint8_t *p = g->request;
    *p++ = 0; /* not compressed */
    *p++ = (uint8_t)(body >> 24);
    *p++ = (uint8_t)(body >> 16);
    *p++ = (uint8_t)(body >> 8);
    *p++ = (uint8_t)body;
    if (service_len) {
        *p++ = 0x0a; /* field 1, length-delimited */
        if (service_len < 128) {
            *p++ = (uint8_t)service_len;
        } else {
            *p++ = (uint8_t)(0x80 | (service_len & 0x7f));
            *p++ = (uint8_t)(service_len >> 7);
        }
        memcpy(p, service, service_len);
        p += service_len;
    }
    g->request_len = (size_t)(p - g->request);

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE             \
    }
    const nghttp2_nv head[] = {
        NV(":method", "POST"),
        NV(":scheme", "http"),
        NV(":authority", authority),
        NV(":path", "/grpc.health.v1.Health/Check"),
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
        NV("user-agent", "fulcrum-health-check"),
    };
#undef NV
    const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    nghttp2_data_provider provider = {.read_callback = read_request};
    if (nghttp2_submit_settings(g->session, NGHTTP2_FLAG_NONE, settings, 1) != 0 ||
        (g->stream_id = nghttp2_submit_request(g->session, NULL, head,
                                               sizeof(head) / sizeof(head[0]), &provider, g)) < 0 ||
        collect_output(g) < 0)
        goto fail;
    return g;
fail:
    grpc_check_free(g);
    return NULL;
}

void grpc_check_free(struct grpc_check *g)
{
    if (!g)
        return;
    nghttp2_session_del(g->session);
    free(g->out);
    free(g);
}

size_t grpc_check_pending(struct grpc_check *g, const uint8_t **out)
{
    *out = g->out + g->out_done;
    return g->out_len - g->out_done;
}

void grpc_check_sent(struct grpc_check *g, size_t n)
{
    g->out_done += n;
    if (g->out_done == g->out_len)
        g->out_done = g->out_len = 0;
}

enum grpc_check_verdict grpc_check_feed(struct grpc_check *g, const uint8_t *data, size_t len,
                                        char *why, size_t whylen)
{
    if (len == 0) {
        decide(g, GRPC_CHECK_FAIL, "connection closed before the answer");
    } else if (g->verdict == GRPC_CHECK_MORE) {
        ssize_t used = nghttp2_session_mem_recv(g->session, data, len);
        if (used < 0)
            decide(g, GRPC_CHECK_FAIL, "bad HTTP/2 from the server: %s",
                   nghttp2_strerror((int)used));
        else if (collect_output(g) < 0)
            decide(g, GRPC_CHECK_FAIL, "out of memory");
        else if (!nghttp2_session_want_read(g->session))
            /* a connection error: nghttp2 sent GOAWAY and reads no more */
            decide(g, GRPC_CHECK_FAIL, "bad HTTP/2 from the server: %s",
                   g->protocol_error[0] ? g->protocol_error : "connection error");
    }
    snprintf(why, whylen, "%s", g->verdict == GRPC_CHECK_MORE ? "" : g->why);
    return g->verdict;
}
