/*
 * fuzz_h2_client.c - libFuzzer target: the client role of an HTTP/2 session (h2/client.h) fed a
 * server's bytes, with stream users that behave like the proxy towards a `protocol: h2` pool:
 * each writes an HTTP/1.1 request through its stream and reads the HTTP/1.1 response the stream
 * makes of the server's frames.
 *
 * Byte 0 picks the requests (bits 0-3, one stream each: a GET, a POST with a chunked body and
 * trailers, a gRPC call whose Content-Length body is larger than a stream's window, a HEAD),
 * how much a user asks for per read (bits 4-6: small rooms split the chunk framing the stream
 * makes of DATA), and whether the server's side ends (FIN) after its bytes (bit 7). The session
 * starts and its users write their requests first (the streams get ids 1, 3, ... in the reverse
 * order of the bits: the last one opened is submitted first); then the rest of the input goes to
 * the session over a socket pair as the server's bytes (a seed starts with the server's
 * SETTINGS), and the loop runs a bounded number of rounds, taking what the session sends. After
 * the first of them, a GET goes on a new stream if the session says it has room, as the proxy
 * would send one more request on the connection.
 *
 * What a user reads must be what the proxy can rely on: one final response head (never an
 * interim one) that ends within a buffer, then a body exactly as its framing says (valid chunked
 * framing that ends before the end of stream, or Content-Length bytes, or nothing for a response
 * without a body), and a clean end of stream only after all of it. Whatever the frames, the
 * session must neither crash nor leak: every stream its users took is closed, and the session
 * itself is closed at the end.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "h2/client.h"
#include "h2_rig.h"

#define BUF_SIZE  20480
#define GRPC_BODY 70000 /* more than a stream's window: the server must open it further */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct {
    uint8_t method;
    const char *text; /* the head and, but for the gRPC call, the whole body */
} requests[] = {
    {HTTP1_METHOD_GET, "GET /a?b=1 HTTP/1.1\r\nHost: backend.test\r\nAccept: */*\r\n\r\n"},
    {HTTP1_METHOD_POST,
     "POST /up HTTP/1.1\r\nHost: backend.test\r\nTransfer-Encoding: chunked\r\n"
     "Trailer: x-sum\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n"},
    {HTTP1_METHOD_POST, "POST /pkg.Svc/Call HTTP/1.1\r\nHost: backend.test\r\n"
                        "Content-Type: application/grpc\r\nTE: trailers\r\ngrpc-timeout: 1S\r\n"
                        "Content-Length: 70000\r\n\r\n"},
    {HTTP1_METHOD_HEAD, "HEAD /h HTTP/1.1\r\nHost: backend.test\r\n\r\n"},
};
#define NREQUESTS (sizeof(requests) / sizeof(requests[0]))

struct user {
    struct conn conn; /* first: the session calls the handler with &conn.io */
    unsigned kind;
    size_t sent, body_sent; /* of the request's text, then of GRPC_BODY's zeros */
    char head[BUF_SIZE];    /* the response head as read */
    size_t head_len;
    uint8_t body;               /* enum http1_body of the response */
    uint64_t left;              /* of a Content-Length body */
    struct http1_chunked chunk; /* a chunked body's framing, checked as it is read */
    bool head_seen, body_done;
};

static struct http1_field user_fields[100];

static void close_user(struct user *u, bool reset)
{
    conn_close(&u->conn, reset);
    open_users--;
    free(u);
}

/* The head is whole (it ends in an empty line): parses it as the proxy would. false: a head the
 * proxy refuses (it answers 502 and drops the stream). */
static bool take_head(struct user *u)
{
    struct http1_scan scan = {0};
    uint16_t why_status;
    const char *why;
    struct http1_msg msg = {.fields = user_fields};
    static const struct http1_limits response_limits = {.max_head_bytes = BUF_SIZE,
                                                        .max_fields = 100};
    int r =
        http1_scan_head(&scan, u->head, u->head_len, &response_limits, false, &why_status, &why);
    if (r == HTTP1_AGAIN || (r == HTTP1_DONE && scan.head_end != u->head_len))
        abort(); /* the empty line the user saw is not where the head ends */
    if (r != HTTP1_DONE || http1_parse_response(&scan, u->head, &response_limits,
                                                requests[u->kind].method, &msg) != HTTP1_DONE)
        return false;
    if (msg.status < 200)
        abort(); /* interim responses are not passed on */
    u->body = msg.body;
    u->left = msg.content_length;
    if (u->body == HTTP1_BODY_CLOSE)
        abort(); /* the stream always frames a body: nothing ends it but its framing */
    u->body_done = u->body == HTTP1_BODY_NONE || (u->body == HTTP1_BODY_LENGTH && !u->left);
    return true;
}

/* Body bytes, checked against the head's framing. */
static void take_body(struct user *u, char *p, size_t n)
{
    if (!n)
        return;
    if (u->body_done)
        abort(); /* bytes after the body's end (or a body where there is none) */
    if (u->body == HTTP1_BODY_CHUNKED) {
        size_t used, out;
        int r = http1_chunked_parse(&u->chunk, p, n, false, &used, &out);
        if (r == HTTP1_ERROR || (r == HTTP1_DONE && used != n))
            abort(); /* bad framing, or bytes after the last chunk */
        u->body_done = r == HTTP1_DONE;
    } else {
        if (n > u->left)
            abort(); /* more than the Content-Length */
        u->left -= n;
        u->body_done = u->left == 0;
    }
}

/* Writes what is due of the request. false: the stream refused it (the user gives up). */
static bool write_request(struct user *u)
{
    const char *text = requests[u->kind].text;
    size_t len = strlen(text), got;
    enum conn_status r;
    while (u->sent < len) {
        r = conn_write(&u->conn, text + u->sent, len - u->sent, &got);
        u->sent += got;
        if (r == CONN_ERROR)
            return false;
        if (r != CONN_DONE)
            return true;
    }
    static const char zeros[4096];
    while (u->kind == 2 && u->body_sent < GRPC_BODY) {
        size_t n =
            GRPC_BODY - u->body_sent < sizeof(zeros) ? GRPC_BODY - u->body_sent : sizeof(zeros);
        r = conn_write(&u->conn, zeros, n, &got);
        u->body_sent += got;
        if (r == CONN_ERROR)
            return false;
        if (r != CONN_DONE)
            return true;
    }
    return true;
}

/* Reads the response as far as it goes, then writes what is due; closes once the response has
 * ended (a clean end of stream), or at once when the stream failed. */
static void user_event(struct loop *l, struct loop_io *io)
{
    struct user *u = (struct user *)io;
    if (u->conn.io.ready & (LOOP_HUP | LOOP_ERR)) {
        close_user(u, true);
        return;
    }
    char buf[4096];
    size_t got;
    enum conn_status r;
    while ((r = conn_read(&u->conn, buf, read_room, &got)) == CONN_DONE) {
        size_t i = 0;
        for (; i < got && !u->head_seen; i++) {
            if (u->head_len == sizeof(u->head))
                abort(); /* the stream made a head larger than its buffer */
            u->head[u->head_len++] = buf[i];
            u->head_seen =
                u->head_len >= 4 && memcmp(u->head + u->head_len - 4, "\r\n\r\n", 4) == 0;
            if (u->head_seen && !take_head(u)) {
                close_user(u, true);
                return;
            }
        }
        take_body(u, buf + i, got - i);
    }
    if (r == CONN_EOF) {
        if (!u->head_seen || !u->body_done)
            abort(); /* a clean end of stream before the whole response */
        close_user(u, false);
        return;
    }
    if (r == CONN_ERROR || !write_request(u)) {
        close_user(u, true);
        return;
    }
}

static void open_user(struct h2_session *h2, unsigned kind)
{
    struct user *u = calloc(1, sizeof(*u));
    if (!u)
        abort();
    u->kind = kind;
    u->conn.io.handler = user_event;
    open_users++;
    if (h2_client_open_stream(h2, &u->conn) < 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 32768)
        return 0;
    rig_init(BUF_SIZE);
    int sv[2];
    struct conn c;
    if (!rig_connect(sv, &c))
        return 0;
    unsigned mask = data[0] & 15;
    static const size_t rooms[] = {4096, 1, 2, 5, 13, 100, 4096, 4096};
    read_room = rooms[(data[0] >> 4) & 7];
    bool fin = data[0] & 0x80;

    struct h2_host host = {.closed = closed};
    struct h2_session *h2 = h2_client_start(&env, &c, &rig_limits, &host);
    if (!h2) {
        conn_close(&c, false);
        close(sv[1]);
        return 0;
    }
    session_open = true;
    if (h2_client_used(h2))
        abort();
    for (unsigned k = 0; k < NREQUESTS; k++)
        if (mask & (1u << k))
            open_user(h2, k);
    if (h2_client_used(h2) != (mask != 0))
        abort();
    run_rounds(sv[1]); /* the preface, SETTINGS and the requests go out */
    if (session_open) {
        size_t off = 1;
        while (off < size) { /* the socket takes it all: a socket pair's buffer is larger */
            ssize_t n = write(sv[1], data + off, size - off);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        if (fin)
            shutdown(sv[1], SHUT_WR);
        for (int i = 0; i < 4 && session_open; i++) {
            run_rounds(sv[1]);
            /* as the proxy does: another request goes on the connection while it has room */
            if (i == 0 && session_open && h2_client_room(h2) > 0)
                open_user(h2, 0);
        }
    }
    rig_finish(h2, sv[1]);
    return 0;
}
