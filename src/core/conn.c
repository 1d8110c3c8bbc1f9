/*
 * conn.c - the rules of non-blocking connection I/O (conn.h), the plain TCP transport, and
 * splice(2) between a plain TCP connection and a pipe (for proxy/relay.c).
 *
 * The generic functions (conn_read, conn_write, ...) own the rules; a transport's operations only
 * make one attempt each. A new transport (TLS, an HTTP/2 stream) is a new struct conn_ops and
 * inherits every rule here.
 */
#include "core/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/net.h"

/* ---- plain TCP ---- */

static ssize_t tcp_recv(struct conn *c, void *buf, size_t len)
{
    return recv(c->io.fd, buf, len, 0);
}

static ssize_t tcp_peek(struct conn *c, void *buf, size_t len)
{
    return recv(c->io.fd, buf, len, MSG_PEEK | MSG_DONTWAIT);
}

static ssize_t tcp_sendv(struct conn *c, const struct iovec *iov, int iovcnt)
{
    /* MSG_NOSIGNAL: a peer that is gone is EPIPE, never SIGPIPE. One buffer (the common case)
     * goes through send(), which copies no iovec in. */
    if (iovcnt == 1)
        return send(c->io.fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    return sendmsg(c->io.fd, &msg, MSG_NOSIGNAL);
}

static int tcp_shutdown(struct conn *c)
{
    return shutdown(c->io.fd, SHUT_WR);
}

static void tcp_close(struct conn *c, bool reset)
{
    if (reset)
        net_close_reset(c->io.fd);
    else
        close(c->io.fd);
}

const struct conn_ops conn_tcp_ops = {
    .name = "tcp",
    .recv = tcp_recv,
    .peek = tcp_peek,
    .sendv = tcp_sendv,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
};

void conn_init_tcp(struct conn *c, int fd, loop_io_fn handler)
{
    c->io.fd = fd;
    c->io.ready = 0;
    c->io.handler = handler;
    c->ops = &conn_tcp_ops;
    c->ssl = NULL;
    c->stream = NULL;
}

/* ---- the rules ---- */

int conn_watch(struct loop *loop, struct conn *c)
{
    return loop_add(loop, &c->io, LOOP_EDGE_RW);
}

/* A read or peek that took nothing and did not end the stream (errno says why, never EINTR):
 * nothing to read yet, which clears the readiness flag, or an error. */
static enum conn_status read_failure(struct conn *c)
{
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->io.ready &= ~LOOP_READABLE;
        return CONN_BLOCKED;
    }
    return CONN_ERROR;
}

enum conn_status conn_read_ready(struct conn *c, char *buf, size_t room, size_t *got)
{
    for (;;) {
        ssize_t n = c->ops->recv(c, buf, room);
        if (n > 0) {
            *got = (size_t)n;
            /* A short read drained the transport, unless a FIN waits behind the bytes: then one
             * more read must run to see it, and no new edge would ask for it. */
            if ((size_t)n < room && !(c->io.ready & LOOP_RDHUP))
                c->io.ready &= ~LOOP_READABLE;
            return CONN_DONE;
        }
        if (n == 0) {
            c->io.ready &= ~LOOP_READABLE;
            return CONN_EOF;
        }
        if (errno != EINTR)
            return read_failure(c);
    }
}

/* The write rules, through the given transport's sendv (c's own, or plain TCP for a preamble). */
static enum conn_status writev_via(const struct conn_ops *ops, struct conn *c,
                                   const struct iovec *iov, int iovcnt, size_t len, size_t *sent)
{
    for (;;) {
        ssize_t n = ops->sendv(c, iov, iovcnt);
        if (n > 0) {
            *sent = (size_t)n;
            if ((size_t)n < len)
                c->io.ready &= ~LOOP_WRITABLE;
            return CONN_DONE;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->io.ready &= ~LOOP_WRITABLE;
            return CONN_BLOCKED;
        }
        if (n == 0)
            errno = EPIPE; /* nothing taken from a non-empty write: the peer is gone */
        return CONN_ERROR;
    }
}

enum conn_status conn_writev_ready(struct conn *c, const struct iovec *iov, int iovcnt, size_t len,
                                   size_t *sent)
{
    return writev_via(c->ops, c, iov, iovcnt, len, sent);
}

enum conn_status conn_write_plain(struct conn *c, const char *p, size_t len, size_t *sent)
{
    *sent = 0;
    if (!len || !(c->io.ready & LOOP_WRITABLE))
        return CONN_BLOCKED;
    /* tcp_sendv only uses the descriptor, which every transport over a socket shares */
    struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
    return writev_via(&conn_tcp_ops, c, &iov, 1, len, sent);
}

enum conn_status conn_peek(struct conn *c, char *buf, size_t room, size_t *got)
{
    *got = 0;
    if (!(c->io.ready & LOOP_READABLE))
        return CONN_BLOCKED;
    for (;;) {
        ssize_t n = c->ops->peek(c, buf, room);
        if (n > 0) {
            *got = (size_t)n;
            return CONN_DONE;
        }
        if (n == 0)
            return CONN_EOF;
        if (errno != EINTR)
            return read_failure(c);
    }
}

bool conn_peer_gone(struct conn *c)
{
    char byte;
    for (;;) {
        ssize_t n = c->ops->peek(c, &byte, 1);
        if (n < 0 && errno == EINTR)
            continue;
        /* 0: end of stream with nothing before it. An error other than "nothing yet" (a reset)
         * means gone as well. */
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    }
}

/* ---- splice (conn.h says why its rules differ a little) ---- */

enum conn_status conn_splice_in(struct conn *c, int pipe_w, size_t len, bool pipe_empty,
                                size_t *got)
{
    *got = 0;
    if (!len || !(c->io.ready & LOOP_READABLE))
        return CONN_BLOCKED;
    for (;;) {
        ssize_t n = splice(c->io.fd, NULL, pipe_w, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            *got = (size_t)n;
            return CONN_DONE;
        }
        if (n == 0) {
            c->io.ready &= ~LOOP_READABLE;
            return CONN_EOF;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (pipe_empty) /* the pipe had room: it is the socket that has nothing */
                c->io.ready &= ~LOOP_READABLE;
            return CONN_BLOCKED;
        }
        return CONN_ERROR;
    }
}

enum conn_status conn_splice_out(struct conn *c, int pipe_r, size_t len, size_t *sent)
{
    *sent = 0;
    if (!len || !(c->io.ready & LOOP_WRITABLE))
        return CONN_BLOCKED;
    for (;;) {
        ssize_t n = splice(pipe_r, NULL, c->io.fd, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            *sent = (size_t)n;
            return CONN_DONE;
        }
        if (n < 0 && errno == EINTR)
            continue;
        /* The pipe holds bytes (the caller says so), so EAGAIN is the socket being full. */
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->io.ready &= ~LOOP_WRITABLE;
            return CONN_BLOCKED;
        }
        if (n == 0)
            errno = EPIPE; /* nothing moved from a pipe that has bytes: no way forward */
        return CONN_ERROR;
    }
}

int conn_shutdown(struct conn *c)
{
    return c->ops->shutdown(c);
}

void conn_close(struct conn *c, bool reset)
{
    if (c->io.fd >= 0)
        c->ops->close(c, reset);
    c->io.handler = NULL; /* events of this batch that still point here are ignored */
    c->io.fd = -1;
    c->io.ready = 0;
}
