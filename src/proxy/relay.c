/*
 * relay.c - the byte relay between two connections (relay.h), and each thread's pool of pipes.
 *
 * One round of relay_pump() visits both directions; a direction first writes what it holds
 * (buffer, then pipe: they are never both non-empty), then reads more if it has room, then gives
 * back whatever is empty and, once its source ended and nothing is left, passes the end of stream
 * on. Rounds repeat while anything moved, at most RELAY_ROUNDS per call, so a pair of sockets
 * that are always ready (loopback) cannot keep the thread from its other connections.
 *
 * The pipe pool. A pipe costs two descriptors and, while it holds bytes, kernel pages; an empty
 * one costs nothing more. A direction takes a pipe when it is about to splice and gives it back
 * as soon as it is empty, so an idle connection holds none and a busy thread reuses a handful.
 * Empty pipes wait in a small per-thread stack (RELAY_SPARE_PIPES); RELAY_MAX_PIPES bounds how many
 * a thread has open at all, in use and spare. Each is enlarged to RELAY_PIPE_SIZE with
 * F_SETPIPE_SZ (fewer system calls per byte than the default 64 KiB); if the kernel refuses (an
 * unprivileged user over fs.pipe-max-size or pipe-user-pages-soft), the pipe keeps its size.
 */
#include "proxy/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/net.h"
#include "proxy/thread.h"

/* Rounds of both directions one relay_pump() may do before yielding. */
#define RELAY_ROUNDS      16
#define RELAY_PIPE_SIZE   (256 * 1024)
#define RELAY_MAX_PIPES   256 /* open per thread, in use and spare: 512 descriptors at most */
#define RELAY_SPARE_PIPES 32

struct relay_pipe {
    int rd, wr;
    uint32_t size;
};

/* What this module keeps per worker thread (thread.h: w->relay). */
struct relay_local {
    struct relay_pipe spare[RELAY_SPARE_PIPES]; /* empty pipes, most recently used last */
    unsigned nspare;
    unsigned open; /* pipes open, in use and spare */
    bool warned;   /* pipe2() failed once: said so, not again */
};

struct relay_local *relay_local_new(void)
{
    return calloc(1, sizeof(struct relay_local));
}

void relay_local_free(struct worker *w)
{
    struct relay_local *rl = w->relay;
    if (!rl)
        return;
    while (rl->nspare) {
        struct relay_pipe *p = &rl->spare[--rl->nspare];
        close(p->rd);
        close(p->wr);
    }
    free(rl);
    w->relay = NULL;
}

/* ---- pipes ---- */

/* Gives d an empty pipe from the pool or a new one. Returns -1 if none can be had now (the
 * direction then uses a buffer). */
static int pipe_take(struct relay *r, struct relay_dir *d)
{
    struct relay_local *rl = r->w->relay;
    if (rl->nspare) {
        struct relay_pipe *p = &rl->spare[--rl->nspare];
        d->pipe_rd = p->rd;
        d->pipe_wr = p->wr;
        d->pipe_size = p->size;
        return 0;
    }
    if (rl->open >= RELAY_MAX_PIPES)
        return -1;
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        if (!rl->warned)
            log_warn("relay: cannot create a pipe (%s): relaying through buffers meanwhile",
                     strerror(errno));
        rl->warned = true;
        return -1;
    }
    int size = fcntl(fds[1], F_SETPIPE_SZ, RELAY_PIPE_SIZE);
    if (size < 0) /* refused: keep the size it has */
        size = fcntl(fds[1], F_GETPIPE_SZ);
    if (size <= 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    rl->open++;
    d->pipe_rd = fds[0];
    d->pipe_wr = fds[1];
    d->pipe_size = (uint32_t)size;
    d->in_pipe = 0;
    return 0;
}

/* Takes d's pipe back: into the pool if it is empty and there is room, closed otherwise (bytes
 * left in a pipe belong to a relay that ended; nobody may read them). */
static void pipe_give(struct relay *r, struct relay_dir *d)
{
    struct relay_local *rl = r->w->relay;
    if (d->pipe_rd < 0)
        return;
    if (d->in_pipe == 0 && rl->nspare < RELAY_SPARE_PIPES) {
        rl->spare[rl->nspare++] =
            (struct relay_pipe){.rd = d->pipe_rd, .wr = d->pipe_wr, .size = d->pipe_size};
    } else {
        close(d->pipe_rd);
        close(d->pipe_wr);
        rl->open--;
    }
    d->pipe_rd = d->pipe_wr = -1;
    d->in_pipe = 0;
    d->pipe_full = false;
}

/* ---- relaying ---- */

static void adopt(struct worker *w, struct buf *dst, struct buf *src)
{
    *dst = (struct buf){0};
    if (!src)
        return;
    *dst = *src;
    *src = (struct buf){0};
    if (dst->data && buf_empty(dst))
        buf_put(&w->bufs, dst);
}

static void dir_init(struct relay_dir *d, struct conn *from, struct conn *to)
{
    d->from = from;
    d->to = to;
    d->pipe_rd = d->pipe_wr = -1;
    d->pipe_size = d->in_pipe = 0;
    d->bytes = 0;
    d->plain = !from->ssl && !to->ssl;
    d->pipe_full = d->eof = d->shut = d->bulk = false;
}

void relay_start(struct relay *r, struct worker *w, struct conn *a, struct conn *b,
                 struct buf *a_to_b, struct buf *b_to_a)
{
    r->w = w;
    dir_init(&r->dir[0], a, b);
    dir_init(&r->dir[1], b, a);
    adopt(w, &r->dir[0].buf, a_to_b);
    adopt(w, &r->dir[1].buf, b_to_a);
    r->last_io_ms = loop_now_ms(w->loop);
    r->error = 0;
}

void relay_stop(struct relay *r)
{
    if (!r->w)
        return;
    for (int i = 0; i < 2; i++) {
        buf_put(&r->w->bufs, &r->dir[i].buf);
        pipe_give(r, &r->dir[i]);
    }
    r->w = NULL;
}

static bool dir_pending(const struct relay_dir *d)
{
    return d->in_pipe || (d->buf.data && !buf_empty(&d->buf));
}

bool relay_pending(const struct relay *r)
{
    return dir_pending(&r->dir[0]) || dir_pending(&r->dir[1]);
}

/* The side c failed; errno says why. */
static enum relay_status failed(struct relay *r, const struct conn *c)
{
    r->error = errno ? errno : ECONNRESET;
    return c == r->dir[0].from ? RELAY_ERROR_A : RELAY_ERROR_B;
}

static void activity(struct relay *r, bool *progress)
{
    *progress = true;
    r->last_io_ms = loop_now_ms(r->w->loop);
}

/* Writes what d holds: the buffer's bytes, or the pipe's. */
static enum relay_status flush(struct relay *r, struct relay_dir *d, bool *progress)
{
    size_t n;
    if (d->buf.data && !buf_empty(&d->buf)) {
        if (conn_write(d->to, d->buf.data + d->buf.start, buf_len(&d->buf), &n) == CONN_ERROR)
            return failed(r, d->to);
        d->buf.start += (uint32_t)n;
    } else if (d->in_pipe) {
        if (conn_splice_out(d->to, d->pipe_rd, d->in_pipe, &n) == CONN_ERROR)
            return failed(r, d->to);
        d->in_pipe -= (uint32_t)n;
        if (n)
            d->pipe_full = false;
    } else {
        return RELAY_WAIT;
    }
    if (n) {
        d->bytes += n;
        activity(r, progress);
    }
    return RELAY_WAIT;
}

/* Reads into d's pipe (splice path). */
static enum relay_status fill_pipe(struct relay *r, struct relay_dir *d, bool *progress)
{
    if (d->pipe_full || d->in_pipe >= d->pipe_size)
        return RELAY_WAIT;
    size_t n;
    switch (conn_splice_in(d->from, d->pipe_wr, d->pipe_size - d->in_pipe, d->in_pipe == 0, &n)) {
    case CONN_DONE:
        d->in_pipe += (uint32_t)n;
        activity(r, progress);
        break;
    case CONN_EOF:
        d->eof = true;
        *progress = true;
        break;
    case CONN_BLOCKED:
        /* With bytes in the pipe, EAGAIN may mean "no free slot": empty it, then ask again. */
        if (d->in_pipe && (d->from->io.ready & LOOP_READABLE))
            d->pipe_full = true;
        else if (!(d->from->io.ready & LOOP_READABLE))
            d->bulk = false; /* the burst is over: the next bytes go through a buffer first */
        break;
    case CONN_ERROR:
        return failed(r, d->from);
    }
    return RELAY_WAIT;
}

/* Reads into d's buffer (buffer path), making room at its end first if its front was written. */
static enum relay_status fill_buf(struct relay *r, struct relay_dir *d, bool *progress)
{
    struct buf_pool *pool = &r->w->bufs;
    if (!d->buf.data && buf_get(pool, &d->buf) < 0) {
        errno = ENOMEM; /* nowhere to put the bytes: the relay cannot go on */
        return failed(r, d->from);
    }
    if (d->buf.end == pool->size && d->buf.start > 0)
        buf_compact(&d->buf);
    if (d->buf.end == pool->size)
        return RELAY_WAIT; /* full: the other side must take some first */
    size_t n;
    size_t room = pool->size - d->buf.end;
    switch (conn_read(d->from, d->buf.data + d->buf.end, room, &n)) {
    case CONN_DONE:
        d->buf.end += (uint32_t)n;
        d->bulk = n == room && d->buf.start == 0 && room == pool->size; /* a full buffer's worth */
        activity(r, progress);
        break;
    case CONN_EOF:
        d->eof = true;
        *progress = true;
        break;
    case CONN_BLOCKED:
        break;
    case CONN_ERROR:
        return failed(r, d->from);
    }
    return RELAY_WAIT;
}

/* One round of one direction. Returns RELAY_WAIT, or the error that ends the relay. */
static enum relay_status pump_dir(struct relay *r, struct relay_dir *d, bool *progress)
{
    if (d->shut)
        return RELAY_WAIT;
    enum relay_status st = flush(r, d, progress);
    if (st != RELAY_WAIT)
        return st;

    if (!d->eof && (d->from->io.ready & LOOP_READABLE)) {
        /* Bytes in the buffer go out before any byte behind them is spliced. */
        bool buffered = d->buf.data && !buf_empty(&d->buf);
        bool splice = d->plain && (d->bulk || d->in_pipe);
        if (splice && !buffered && (d->pipe_rd >= 0 || pipe_take(r, d) == 0)) {
            buf_put(&r->w->bufs, &d->buf);
            st = fill_pipe(r, d, progress);
        } else {
            st = fill_buf(r, d, progress);
        }
        if (st != RELAY_WAIT)
            return st;
    }

    /* Nothing in flight: the buffer and the pipe go back to their pools. */
    if (d->buf.data && buf_empty(&d->buf))
        buf_put(&r->w->bufs, &d->buf);
    if (d->pipe_rd >= 0 && !d->in_pipe)
        pipe_give(r, d);
    /* The source ended and everything it sent was written: so ends the other side's input. */
    if (d->eof && !dir_pending(d)) {
        if (conn_shutdown(d->to) < 0)
            return failed(r, d->to);
        d->shut = true;
        *progress = true;
    }
    return RELAY_WAIT;
}

enum relay_status relay_pump(struct relay *r)
{
    /* A reset (or another socket error) ends everything at once, whatever is still pending:
     * those bytes could only reach the other side as if the stream had ended well. */
    for (int i = 0; i < 2; i++) {
        struct conn *c = r->dir[i].from;
        if (c->io.ready & LOOP_ERR) {
            errno = net_socket_error(c->io.fd);
            return failed(r, c);
        }
    }
    for (unsigned round = 0; round < RELAY_ROUNDS; round++) {
        bool progress = false;
        for (int i = 0; i < 2; i++) {
            enum relay_status st = pump_dir(r, &r->dir[i], &progress);
            if (st != RELAY_WAIT)
                return st;
        }
        if (r->dir[0].shut && r->dir[1].shut)
            return RELAY_DONE;
        if (!progress)
            return RELAY_WAIT;
    }
    return RELAY_PROGRESS;
}
