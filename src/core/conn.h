/*
 * conn.h - one connection's byte stream, whatever carries it, and the one place that knows the
 * rules of non-blocking I/O.
 *
 * Every connection fulcrum has (client, backend, health check, admin, and the demo backend's) is a
 * struct conn: the loop's readiness record (io, first, so the loop's pointer is the connection's)
 * and a table of transport operations. Plain TCP is the first transport; TLS is a second table
 * over the same socket (tls_conn.h), and an HTTP/2 stream a third whose operations move bytes to
 * and from its session's frames instead of a socket (h2/session.h): it has no descriptor of its
 * own (io.fd is its connection's, for getsockname() only), and its session, not the loop, sets
 * its readiness flags and calls its handler. Code above this layer never calls read(),
 * write() or close() on a connection itself.
 *
 * The rules live in conn.c, once, for every transport:
 *   - EINTR is retried; EAGAIN is CONN_BLOCKED.
 *   - io.ready is kept true to the transport: a short read clears LOOP_READABLE (the edge-
 *     triggered loop reports nothing new for bytes already there), unless a FIN is pending, which
 *     one more read must see; a short write clears LOOP_WRITABLE. A call whose flag is clear
 *     returns CONN_BLOCKED without a system call, and the next event sets the flag again.
 *   - Writing never raises SIGPIPE: a peer that is gone is CONN_ERROR with errno EPIPE.
 *   - conn_close(reset) ends the connection with an RST instead of a FIN, for exchanges cut short.
 */
#ifndef FULCRUM_CONN_H
#define FULCRUM_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "core/loop.h"

enum conn_status {
    CONN_DONE,    /* some bytes moved (the count is returned beside) */
    CONN_BLOCKED, /* nothing to read, no room to write, or nothing asked */
    CONN_EOF,     /* read: the peer will send nothing more */
    CONN_ERROR,   /* errno says why */
};

struct conn;

/* A transport. Each call makes one attempt and answers like the system call it stands for:
 * a count, 0 for end of stream (reads), or -1 with errno set (EAGAIN: try again later). */
struct conn_ops {
    const char *name; /* "tcp"; for log lines */
    ssize_t (*recv)(struct conn *c, void *buf, size_t len);
    ssize_t (*peek)(struct conn *c, void *buf, size_t len); /* recv without consuming */
    ssize_t (*sendv)(struct conn *c, const struct iovec *iov, int iovcnt);
    int (*shutdown)(struct conn *c);           /* stop sending; the peer sees end of stream */
    void (*close)(struct conn *c, bool reset); /* releases the transport and its descriptor */
};

struct ssl_st;    /* OpenSSL's SSL, for the TLS transport (core/tls_conn.h) */
struct h2_stream; /* an HTTP/2 stream, for the stream transport (h2/session.h) */

struct conn {
    struct loop_io io; /* first: fd, readiness and handler, as the loop sees them */
    const struct conn_ops *ops;
    struct ssl_st *ssl;       /* the TLS transport's session; NULL for plain TCP. An HTTP/2 stream
                               * borrows its connection's, for its server name and certificate */
    struct h2_stream *stream; /* the HTTP/2 stream transport's stream; NULL otherwise */
    bool drained; /* TLS: the last socket read took fewer bytes than asked (tls_conn.c) */
};

extern const struct conn_ops conn_tcp_ops;

/* Makes c a plain TCP connection on fd (already non-blocking); handler gets its events once it
 * is added to a loop. */
void conn_init_tcp(struct conn *c, int fd, loop_io_fn handler);

/* Watches c in loop, both directions, edge-triggered. Returns 0, or -1 with errno set. */
int conn_watch(struct loop *loop, struct conn *c);

/* The transfers below, once the readiness flag says one may go ahead (conn.c). */
enum conn_status conn_read_ready(struct conn *c, char *buf, size_t room, size_t *got);
enum conn_status conn_writev_ready(struct conn *c, const struct iovec *iov, int iovcnt, size_t len,
                                   size_t *sent);

/*
 * One read of up to room bytes into buf; *got is the count. The request path asks far more often
 * than there is anything to move, so the no-op case is decided here, inline, without a call.
 */
static inline enum conn_status conn_read(struct conn *c, char *buf, size_t room, size_t *got)
{
    *got = 0;
    if (!room || !(c->io.ready & LOOP_READABLE))
        return CONN_BLOCKED;
    return conn_read_ready(c, buf, room, got);
}

/* One write of up to len bytes; *sent is the count (a short write means the transport is full). */
static inline enum conn_status conn_write(struct conn *c, const char *p, size_t len, size_t *sent)
{
    *sent = 0;
    if (!len || !(c->io.ready & LOOP_WRITABLE))
        return CONN_BLOCKED;
    struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
    return conn_writev_ready(c, &iov, 1, len, sent);
}

/* The same with several buffers, written in order as one. */
static inline enum conn_status conn_writev(struct conn *c, const struct iovec *iov, int iovcnt,
                                           size_t *sent)
{
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    *sent = 0;
    if (!len || !(c->io.ready & LOOP_WRITABLE))
        return CONN_BLOCKED;
    return conn_writev_ready(c, iov, iovcnt, len, sent);
}

/*
 * The same as conn_write(), but straight to the socket whatever c's transport is: for a preamble
 * that goes in the clear before the transport's own bytes (a PROXY protocol header ahead of a TLS
 * handshake). Only meaningful for a connection over a socket, before its transport sent anything.
 */
enum conn_status conn_write_plain(struct conn *c, const char *p, size_t len, size_t *sent);

/* One look at the bytes waiting, without taking them: CONN_DONE with *got of them (all there
 * are, up to room), CONN_BLOCKED if none (the readiness flag is cleared), CONN_EOF or
 * CONN_ERROR. For reading a preamble (a PROXY protocol header) before deciding how much to take. */
enum conn_status conn_peek(struct conn *c, char *buf, size_t room, size_t *got);

/*
 * Has the peer gone, with nothing left unread? Meant for a peer that signalled end of stream
 * (LOOP_RDHUP) while we are not reading from it: true when a read would return end of stream at
 * once, false when bytes come first (or nothing can be said yet).
 */
bool conn_peer_gone(struct conn *c);

/*
 * splice(2) between a plain TCP connection and a pipe, so that a relay (proxy/relay.c) moves bytes
 * from one socket to another without copying them through user space. Only for c->ssl == NULL:
 * TLS bytes must be decrypted or encrypted by OpenSSL on their way. The readiness rules are those
 * of conn_read and conn_write, with two differences that splice forces:
 *   - splice answers EAGAIN both when the socket is empty and when the pipe has no free slot (a
 *     pipe counts pages, not bytes, so a pipe holding fewer bytes than its size may be full). Only
 *     with an empty pipe (pipe_empty) does EAGAIN prove the socket empty and clear LOOP_READABLE;
 *     otherwise the caller empties the pipe and asks again.
 *   - A short count proves nothing either way (the pipe's slots, a socket buffer filling midway),
 *     so it never clears a flag: the next call answers CONN_BLOCKED (EAGAIN) if nothing is left.
 * splice has no MSG_NOSIGNAL: writing to a peer that is gone raises SIGPIPE unless the process
 * ignores it, which fulcrum does (main.c); the call then fails with EPIPE.
 */
/* Up to len bytes from c's socket into the pipe's write end: CONN_DONE with *got, CONN_BLOCKED,
 * CONN_EOF or CONN_ERROR (errno). */
enum conn_status conn_splice_in(struct conn *c, int pipe_w, size_t len, bool pipe_empty,
                                size_t *got);
/* Up to len bytes (that the pipe holds) from the pipe's read end to c's socket: CONN_DONE with
 * *sent, CONN_BLOCKED (the socket is full: LOOP_WRITABLE cleared) or CONN_ERROR (errno). */
enum conn_status conn_splice_out(struct conn *c, int pipe_r, size_t len, size_t *sent);

/* Stops sending (FIN). Returns 0, or -1 with errno set. */
int conn_shutdown(struct conn *c);

/* Closes, with an RST when reset is set. Marks c closed for events still queued in this batch
 * (io.handler = NULL, io.fd = -1). */
void conn_close(struct conn *c, bool reset);

#endif
