/*
 * fuzz_h2.c - libFuzzer target: an HTTP/2 session on our side (h2/session.h) fed a client's
 * bytes, with stream users that behave like the proxy: they read each request as HTTP/1.1 and
 * write an HTTP/1.1 response back, of one of several shapes, through the stream transport.
 *
 * The input is what a client sends after the connection preface (which is put in front, so the
 * fuzzer starts past it). Byte 0 picks the responses' shape, whether the client's side ends
 * (FIN) after its bytes, and how much a user asks for per read (small rooms split the chunk
 * framing a stream makes of a body, which must still parse, and end before end of stream); the
 * rest goes to the session over a socket pair, and the loop runs a bounded number of rounds.
 * Whatever the frames, the session must neither crash nor leak: every stream its users took is
 * closed, and the session itself is closed at the end.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "h2_rig.h"

#define BIG_BODY 100000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static const char *const shapes[] = {
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx: y\r\n\r\n",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    "HTTP/1.1 2x0 Broken\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
};
#define NSHAPES (sizeof(shapes) / sizeof(shapes[0]))

struct user {
    struct conn conn; /* first: the session calls the handler with &conn.io */
    unsigned shape;
    size_t sent, body_sent; /* of the shape's text, then of BIG_BODY's zeros */
    char head[16384];       /* the request head as read */
    size_t head_len;
    struct http1_chunked body; /* a chunked body's framing, checked as it is read */
    bool head_seen, chunked, body_done, eof;
};

static unsigned shape_pick;

static void close_user(struct user *u, bool reset)
{
    conn_close(&u->conn, reset);
    open_users--;
    free(u);
}

/* Reads what there is, then writes what is due; closes once the response is out and the
 * request has ended, or at once when the stream failed. */
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
                abort(); /* the session wrote a head larger than any it may */
            u->head[u->head_len++] = buf[i];
            u->head_seen =
                u->head_len >= 4 && memcmp(u->head + u->head_len - 4, "\r\n\r\n", 4) == 0;
            if (u->head_seen)
                u->chunked = memmem(u->head, u->head_len, "Transfer-Encoding: chunked", 26);
        }
        /* what the stream makes of a body must be valid chunked framing, however it is split */
        if (u->chunked && i < got) {
            size_t used, out;
            int pr = http1_chunked_parse(&u->body, buf + i, got - i, false, &used, &out);
            if (u->body_done || pr == HTTP1_ERROR || (pr == HTTP1_DONE && used != got - i))
                abort(); /* bad framing, or bytes after the body's end */
            u->body_done = pr == HTTP1_DONE;
        }
    }
    if (r == CONN_EOF) {
        if (u->chunked && !u->body_done)
            abort(); /* the end of stream came before the end of the chunked body */
        u->eof = true;
    } else if (r == CONN_ERROR) {
        close_user(u, true);
        return;
    }
    if (!u->head_seen)
        return;
    const char *text = shapes[u->shape];
    size_t len = strlen(text);
    while (u->sent < len) {
        r = conn_write(&u->conn, text + u->sent, len - u->sent, &got);
        u->sent += got;
        if (r == CONN_ERROR) {
            close_user(u, true);
            return;
        }
        if (r != CONN_DONE)
            return;
    }
    static const char zeros[4096];
    while (u->shape == 5 && u->body_sent < BIG_BODY) {
        size_t n =
            BIG_BODY - u->body_sent < sizeof(zeros) ? BIG_BODY - u->body_sent : sizeof(zeros);
        r = conn_write(&u->conn, zeros, n, &got);
        u->body_sent += got;
        if (r == CONN_ERROR) {
            close_user(u, true);
            return;
        }
        if (r != CONN_DONE)
            return;
    }
    if (u->shape == 3)
        conn_shutdown(&u->conn);
    if (u->eof || u->shape == 4)
        close_user(u, u->shape == 4);
}

static struct conn *open_stream(void *ctx)
{
    struct user *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->shape = shape_pick++ % NSHAPES;
    u->conn.io.handler = user_event;
    open_users++;
    return &u->conn;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 32768)
        return 0;
    rig_init(20480);
    int sv[2];
    struct conn c;
    if (!rig_connect(sv, &c))
        return 0;
    shape_pick = data[0];
    bool fin = data[0] & 0x80;
    static const size_t rooms[] = {4096, 1, 2, 5, 13, 100};
    read_room = rooms[(data[0] >> 3) % (sizeof(rooms) / sizeof(rooms[0]))];
    if (write(sv[1], preface, sizeof(preface) - 1) < 0 || write(sv[1], data + 1, size - 1) < 0) {
        conn_close(&c, false);
        close(sv[1]);
        return 0;
    }
    if (fin)
        shutdown(sv[1], SHUT_WR);
    struct h2_host host = {.open_stream = open_stream, .closed = closed};
    struct h2_session *h2 = h2_session_start(&env, &c, NULL, 0, &rig_limits, &host);
    if (!h2) {
        conn_close(&c, false);
        close(sv[1]);
        return 0;
    }
    session_open = true;
    for (int i = 0; i < 4; i++)
        run_rounds(sv[1]);
    rig_finish(h2, sv[1]);
    return 0;
}
